//! Did-you-mean messages for unknown names (options, config keys), from serde's complaints.

/// An "unknown field" complaint from serde, taken apart: (path prefix, field, expected fields).
/// serde_yaml prefixes the path (`semaphore: unknown field ...`); serde_json does not.
pub(crate) fn parse_unknown_field(msg: &str) -> Option<(&str, &str, Vec<&str>)> {
    let idx = msg.find("unknown field `")?;
    let prefix = msg[..idx].trim_end().trim_end_matches(':');
    let rest = &msg[idx + "unknown field `".len()..];
    let end = rest.find('`')?;
    let expected = rest[end..].split('`').skip(2).step_by(2).collect();
    Some((prefix, &rest[..end], expected))
}

/// "unknown {noun} `x` {where_}; did you mean `y`?" (or the list of expected names).
pub(crate) fn unknown_name_message(
    noun: &str,
    field: &str,
    where_: &str,
    expected: &[&str],
) -> String {
    let mut out = format!("unknown {noun} `{field}`");
    if !where_.is_empty() {
        out.push(' ');
        out.push_str(where_);
    }
    if let Some(best) = super::did_you_mean(field, expected.iter().copied()) {
        out.push_str(&format!("; did you mean `{best}`?"));
    } else if !expected.is_empty() {
        let list: Vec<String> = expected.iter().map(|s| format!("`{s}`")).collect();
        out.push_str(&format!("; expected one of: {}", list.join(", ")));
    }
    out
}

/// Turn serde's `unknown field `x`, expected one of `a`, `b`` into a did-you-mean message.
/// `noun` is "option" or "key"; `where_` follows the name ("for semaphore::run").
pub(crate) fn rewrite_serde_message(msg: &str, where_: &str, noun: &str) -> String {
    match parse_unknown_field(msg) {
        Some((_, field, expected)) => {
            let mut out = unknown_name_message(noun, field, where_, &expected);
            // Keep serde's trailing position info if any (" at line 3 column 5").
            if let Some(pos) = msg.find(" at line ") {
                out.push_str(&msg[pos..]);
            }
            out
        }
        None => format!("{msg} ({where_})"),
    }
}

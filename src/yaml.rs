//! The one door YAML input (config, catalog) comes through before the parser sees it: a UTF-8
//! check with the position of the first bad byte, a leading byte-order mark dropped, and size and
//! nesting limits checked in one linear pass, since the YAML parser takes quadratic time on deep
//! nesting (40,000 levels took 15 s).
//!
//! It is also the one place that names the YAML crate: `serde_yaml_ng`, the maintained fork of the
//! deprecated `serde_yaml` with the same `Value` API. Everything else uses `crate::yaml::*`.

pub use serde_yaml_ng::{from_str, to_string, Deserializer, Error, Value};

/// The line to name for a parser error that carries no position: the second document's marker
/// for "more than one document", else line 1.
pub fn unlocated_line(text: &str, message: &str) -> usize {
    if message.contains("more than one document") {
        let mut content = false;
        for (i, l) in text.lines().enumerate() {
            let marker = l.starts_with("---") || l.starts_with("...");
            if marker && content {
                return i + 1;
            }
            if !marker && !l.trim().is_empty() && !l.trim_start().starts_with('#') {
                content = true;
            }
        }
    }
    1
}

/// Largest YAML file read (config or one catalog file).
pub const MAX_BYTES: usize = 1024 * 1024;
/// Deepest nesting allowed (flow brackets plus block indentation, see [`check`]).
pub const MAX_DEPTH: usize = 200;

/// A problem found before parsing: 1-based line and column, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Check `bytes` and return the text to parse (without a byte-order mark).
pub fn text(bytes: &[u8]) -> Result<&str, Problem> {
    if bytes.len() > MAX_BYTES {
        return Err(Problem {
            line: 1,
            column: 1,
            message: format!(
                "file is {} bytes, more than the {} bytes a YAML file may have here",
                bytes.len(),
                MAX_BYTES
            ),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        let start = bytes[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|p| p + 1)
            .unwrap_or(0);
        Problem {
            line,
            column: at - start + 1,
            message: format!("not valid UTF-8 text (invalid byte 0x{:02x})", bytes[at]),
        }
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some((i, c)) = text
        .char_indices()
        .find(|&(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        let line = text[..i].matches('\n').count() + 1;
        let start = text[..i].rfind('\n').map(|p| p + 1).unwrap_or(0);
        return Err(Problem {
            line,
            column: text[start..i].chars().count() + 1,
            message: format!(
                "control character U+{:04X} is not allowed in YAML",
                c as u32
            ),
        });
    }
    check(text)?;
    Ok(text)
}

/// Nesting check in one pass: the depth of a line is its indentation, plus the `- ` sequence
/// entries that open on it, plus the flow brackets (`[`, `{`) open at that point outside quoted
/// text and comments. That is at least the real nesting depth, so a file within the limit never
/// makes the parser slow; ordinary files (2-space indents, a few levels) stay far below it.
pub fn check(text: &str) -> Result<(), Problem> {
    let mut flow = 0usize;
    for (n, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let mut rest = &line[indent..];
        let mut dashes = 0;
        while let Some(r) = rest.strip_prefix("- ") {
            dashes += 1;
            rest = r.trim_start_matches(' ');
        }
        let mut quote: Option<char> = None;
        for (i, c) in line.char_indices() {
            match (quote, c) {
                (Some('"'), '\\') => {}
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"') | (None, '\'') => quote = Some(c),
                (None, '#') if i == 0 || line[..i].ends_with([' ', '\t']) => break,
                (None, '[') | (None, '{') => flow += 1,
                (None, ']') | (None, '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
            let depth = indent + dashes + flow;
            if depth > MAX_DEPTH {
                return Err(Problem {
                    line: n + 1,
                    column: i + 1,
                    message: format!(
                        "nested deeper than {MAX_DEPTH} levels (indentation, `- ` entries and brackets); flatten the document"
                    ),
                });
            }
        }
        if indent + dashes > MAX_DEPTH {
            return Err(Problem {
                line: n + 1,
                column: 1,
                message: format!("nested deeper than {MAX_DEPTH} levels (indentation and `- ` entries); flatten the document"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bom_is_dropped_and_ordinary_files_pass() {
        assert_eq!(text(b"\xef\xbb\xbfa: 1\n").unwrap(), "a: 1\n");
        let cfg = "hosts:\n  vps:\n    address: 10.0.0.1\n    labels: { role: prod, tags: [a, b] }\n# a [ in a comment\nx: \"[[[\"\n";
        assert!(text(cfg.as_bytes()).is_ok());
    }

    #[test]
    fn non_utf8_names_line_and_column() {
        let p = text(b"a: 1\nbb: \xff\n").unwrap_err();
        assert_eq!((p.line, p.column), (2, 5));
        assert!(p.message.contains("UTF-8"), "{}", p.message);
    }

    #[test]
    fn deep_nesting_is_refused_quickly_with_a_position() {
        let deep = format!("{}{}", "[".repeat(40_000), "]".repeat(40_000));
        let t = std::time::Instant::now();
        let p = text(deep.as_bytes()).unwrap_err();
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(p.line, 1);
        assert_eq!(p.column, MAX_DEPTH + 1);
        let mut block = String::new();
        for i in 0..300 {
            block.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        assert_eq!(text(block.as_bytes()).unwrap_err().line, MAX_DEPTH + 2);
        let dashes = "- ".repeat(250) + "x\n";
        assert!(text(dashes.as_bytes()).is_err());
        assert!(text(&vec![b'a'; MAX_BYTES + 1]).is_err());
    }
}

//! Ground-floor text helpers every layer may use.

mod duration;
mod names;
mod quote;

pub use duration::{parse_duration, Secs};
pub(crate) use names::{parse_unknown_field, rewrite_serde_message, unknown_name_message};
pub(crate) use quote::{join_argv, quote};

use std::borrow::Cow;
use std::time::Duration;

/// `s` with every terminal control character made visible, for remote text shown on a terminal
/// (task output and names, ssh output, LLM answers): ESC becomes `\x1b`, so `\x1b]0;title\x07`
/// or `\x1b[2J` print as text instead of retitling or clearing the terminal. Newlines and tabs stay;
/// a carriage return, the other C0 controls, DEL and the C1 controls are shown as `\xNN`/`\u{NN}`.
pub(crate) fn visible_controls(s: &str) -> Cow<'_, str> {
    let bad = |c: char| (c.is_control() && c != '\n' && c != '\t') || c == '\u{7f}';
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !bad(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    Cow::Owned(out)
}

/// An aligned text table: one header row, columns padded to their widest cell (by characters),
/// two spaces between columns, each cell cut to its first line. Every table ralf-sh prints (the
/// REPL's arrays of maps, `table()`, the deploy report) has this one style.
pub(crate) fn table(headers: &[String], rows: &[Vec<String>]) -> String {
    let cell = |s: &str| s.lines().next().unwrap_or("").to_string();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cell(c)).collect())
        .collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate().take(widths.len()) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, w) in widths.iter().enumerate() {
            let c = cells.get(i).map(String::as_str).unwrap_or("");
            if i + 1 == widths.len() {
                out.push_str(c);
            } else {
                out.push_str(c);
                out.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(headers);
    for r in &rows {
        out.push('\n');
        out.push_str(&line(r));
    }
    out
}

/// "1.5s", "2m 3s", "250ms".
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = d.as_secs_f64();
        if (s - s.round()).abs() < 0.05 {
            format!("{}s", s.round() as u64)
        } else {
            format!("{s:.1}s")
        }
    } else if ms < 3_600_000 {
        let s = d.as_secs();
        if s.is_multiple_of(60) {
            format!("{}m", s / 60)
        } else {
            format!("{}m {}s", s / 60, s % 60)
        }
    } else {
        let s = d.as_secs();
        format!("{}h {}m", s / 3600, (s % 3600) / 60)
    }
}

/// The closest candidate by edit distance, if it is close enough to be a plausible typo.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best: Option<(&str, f64)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(word, c);
        let lev = strsim::levenshtein(word, c);
        let close = lev <= 2.max(word.len() / 3) || score >= 0.85;
        if close && best.map(|(_, s)| score > s).unwrap_or(true) {
            best = Some((c, score));
        }
    }
    best.map(|(c, _)| c)
}

/// Whether `host` (a name or an IP literal, brackets allowed) is a loopback address.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    h.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// Normalise a user-given fingerprint: hex with or without colons/spaces, any case.
/// Returns the canonical `AB:CD:...` form, or an error text.
pub fn normalize_fingerprint(s: &str) -> Result<String, String> {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect::<String>()
        .to_ascii_uppercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "fingerprint `{s}` is not a SHA-256 fingerprint (expected 32 hex bytes like AB:CD:..., got {} hex digits)",
            hex.chars().filter(|c| c.is_ascii_hexdigit()).count()
        ));
    }
    Ok(hex
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap_or("00"))
        .collect::<Vec<_>>()
        .join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_by_characters_and_keep_one_line_per_cell() {
        let t = table(
            &["service".into(), "status".into()],
            &[
                vec!["vaultwärden".into(), "deployed".into()],
                vec!["n8n".into(), "failed\nwith details".into()],
            ],
        );
        assert_eq!(
            t,
            "service      status\nvaultwärden  deployed\nn8n          failed"
        );
    }

    #[test]
    fn escapes_become_visible_text() {
        assert_eq!(visible_controls("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(
            visible_controls("\u{1b}]0;pwned\u{7}x\u{1b}[2J\r\u{9b}"),
            "\\x1b]0;pwned\\x07x\\x1b[2J\\x0d\\u{9b}"
        );
        assert!(!visible_controls("a\u{1b}[31mred").contains('\u{1b}'));
    }
}

//! Ground-floor text helpers every layer may use.

use std::borrow::Cow;

/// `s` with every terminal control character made visible, for remote text shown on a terminal
/// (task output and names, ssh output, LLM answers): ESC becomes `\x1b`, so `\x1b]0;title\x07`
/// or `\x1b[2J` print as text instead of retitling or clearing the terminal. Newlines and tabs stay;
/// a carriage return, the other C0 controls, DEL and the C1 controls are shown as `\xNN`/`\u{NN}`.
pub fn visible_controls(s: &str) -> Cow<'_, str> {
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

#[cfg(test)]
mod tests {
    use super::*;

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

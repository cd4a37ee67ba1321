//! A small incremental Server-Sent Events parser, as OpenAI-compatible servers use it.
//!
//! Rules (WHATWG event-stream, as the OpenAI SDK applies them): lines end with `\n`, `\r\n` or `\r`;
//! a line starting with `:` is a comment (exo sends `: keep-alive` and `: prefill_progress {..}`);
//! `data:` lines of one event are joined with `\n`; `event:` names the event; a blank line dispatches.
//! At the end of the stream a pending event is dispatched too (legacy exo ends without `[DONE]`).

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field, empty when absent.
    pub event: String,
    /// The joined `data:` lines.
    pub data: String,
}

/// Feed bytes with [`SseParser::push`], take events as they complete; call [`SseParser::finish`] at EOF.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: String,
    data: Vec<String>,
    has_data: bool,
    /// A `\r` ended the previous chunk: a following `\n` belongs to it.
    pending_cr: bool,
    /// Number of comment lines seen (keep-alives, progress).
    pub comments: usize,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add bytes; returns every event completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.line(&mut out),
                b'\r' => {
                    self.pending_cr = true;
                    self.line(&mut out);
                }
                _ => self.buf.push(b),
            }
        }
        out
    }

    /// End of stream: the last line (without newline) and a pending event are dispatched.
    pub fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        if !self.buf.is_empty() {
            self.line(&mut out);
        }
        self.dispatch(&mut out);
        out
    }

    fn line(&mut self, out: &mut Vec<Event>) {
        let raw = std::mem::take(&mut self.buf);
        let line = String::from_utf8_lossy(&raw);
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line.starts_with(':') {
            self.comments += 1;
            return;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                self.data.push(value.to_string());
                self.has_data = true;
            }
            "event" => self.event = value.to_string(),
            _ => {} // id, retry and unknown fields do not matter here
        }
    }

    fn dispatch(&mut self, out: &mut Vec<Event>) {
        if self.has_data {
            out.push(Event {
                event: std::mem::take(&mut self.event),
                data: self.data.join("\n"),
            });
        }
        self.event.clear();
        self.data.clear();
        self.has_data = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&str]) -> (Vec<Event>, usize) {
        let mut p = SseParser::new();
        let mut v = Vec::new();
        for c in chunks {
            v.extend(p.push(c.as_bytes()));
        }
        v.extend(p.finish());
        (v, p.comments)
    }

    #[test]
    fn comments_multiline_and_split_chunks() {
        let (ev, comments) = all(&[
            ": keep-alive\n\n",
            "data: {\"a\":\ndata: 1}\n",
            "\n: prefill_progress {}\r\n\r\nda",
            "ta: [DONE]\n\n",
        ]);
        assert_eq!(comments, 2);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].data, "{\"a\":\n1}");
        assert_eq!(ev[1].data, "[DONE]");
    }

    #[test]
    fn event_name_and_eof_without_blank_line() {
        let (ev, _) = all(&["event: error\ndata: {\"error\":\"x\"}\n\ndata: tail"]);
        assert_eq!(ev[0].event, "error");
        assert_eq!(
            ev[1],
            Event {
                event: String::new(),
                data: "tail".into()
            }
        );
    }

    #[test]
    fn cr_only_line_endings() {
        let (ev, _) = all(&["data: a\r", "\rdata: b\r\r"]);
        assert_eq!(
            ev.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }
}

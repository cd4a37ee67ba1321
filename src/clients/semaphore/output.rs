//! A task's `/output`: a JSON array of line objects that the server sends whole, every time (the
//! real `GetTaskOutput` is not paginated). A long task's answer runs to tens of megabytes, so it
//! is split into its elements while it arrives and only the newest `semaphore.max_output` bytes of
//! lines are kept: the body is never held whole, nor parsed into a `Value` tree.

use super::*;
use std::collections::VecDeque;

impl Client {
    /// A task's output (oldest first), at most `semaphore.max_output` bytes of it: older lines are
    /// dropped while the answer arrives (a 300,000-line task used to take the client to 576 MB),
    /// and a first line says how many.
    pub async fn output(&self, task_id: i64) -> RResult<Vec<OutputLine>> {
        let (mut lines, total) = self.output_tail(task_id).await?;
        let dropped = total - lines.len();
        if dropped > 0 {
            lines.insert(
                0,
                OutputLine {
                    time: String::new(),
                    output: format!(
                        "[ralf-sh: {dropped} earlier lines not kept (semaphore.max_output = {} bytes)]",
                        self.max_output
                    ),
                },
            );
        }
        Ok(lines)
    }

    /// Output lines after the first `seen` ones; advances `seen`.
    pub async fn new_output(&self, task_id: i64, seen: &mut usize) -> RResult<Vec<OutputLine>> {
        let (lines, total) = self.output_tail(task_id).await?;
        let first_kept = total - lines.len();
        let skip = (*seen).max(first_kept) - first_kept;
        *seen = total;
        Ok(lines.into_iter().skip(skip).collect())
    }

    /// The kept tail of a task's output and the total number of lines.
    async fn output_tail(&self, task_id: i64) -> RResult<(Vec<OutputLine>, usize)> {
        let path = format!("{}/tasks/{task_id}/output", self.p());
        let what = format!("task {task_id}");
        let r = self
            .get_retrying(&path, || async {
                let mut resp = self.respond(&Method::GET, &path, None, &what).await?;
                let mut tail = Tail::new(self.max_output);
                while let Some(chunk) = resp.chunk().await.map_err(|e| {
                    RalfError::unavailable(format!(
                        "semaphore: GET {path}: the answer broke off: {e}"
                    ))
                })? {
                    tail.feed(&chunk).map_err(|e| not_json(&path, e))?;
                }
                tail.finish().map_err(|e| not_json(&path, e))
            })
            .await;
        match r {
            Ok((lines, total)) => Ok((lines.into(), total)),
            Err(e) if e.details.get("status") == Some(&json!(400)) => Err(RalfError::not_found(
                format!("semaphore: task {task_id} not found"),
            )),
            Err(e) => Err(e),
        }
    }
}

/// One line of `/output` as the server sends it (other fields ignored).
#[derive(serde::Deserialize)]
struct RawLine {
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    output: Option<String>,
}

/// Where the splitter is in the array.
#[derive(PartialEq)]
enum At {
    /// Before the opening `[`.
    Start,
    /// Between elements (or before the first).
    Between,
    /// Inside an element that began at `start` in `buf`.
    Element,
    /// After the closing `]`.
    End,
}

/// The `/output` array fed in chunks: complete elements are parsed as they close, and only the
/// newest lines within `max_bytes` are kept.
struct Tail {
    max_bytes: usize,
    kept: VecDeque<OutputLine>,
    bytes: usize,
    total: usize,
    /// The unfinished element so far.
    buf: Vec<u8>,
    at: At,
    depth: u32,
    in_str: bool,
    esc: bool,
}

impl Tail {
    fn new(max_bytes: usize) -> Tail {
        Tail {
            max_bytes,
            kept: VecDeque::new(),
            bytes: 0,
            total: 0,
            buf: Vec::new(),
            at: At::Start,
            depth: 0,
            in_str: false,
            esc: false,
        }
    }

    fn feed(&mut self, chunk: &[u8]) -> serde_json::Result<()> {
        let mut from = 0; // start of the current element within `chunk`
        for (i, &b) in chunk.iter().enumerate() {
            match self.at {
                At::Element => {
                    if self.in_str {
                        match (self.esc, b) {
                            (true, _) => self.esc = false,
                            (false, b'\\') => self.esc = true,
                            (false, b'"') => self.in_str = false,
                            _ => {}
                        }
                        continue;
                    }
                    match b {
                        b'"' => self.in_str = true,
                        b'{' | b'[' => self.depth += 1,
                        b'}' | b']' => {
                            self.depth -= 1;
                            if self.depth == 0 {
                                self.buf.extend_from_slice(&chunk[from..=i]);
                                let el = std::mem::take(&mut self.buf);
                                self.push(serde_json::from_slice(&el)?);
                                self.at = At::Between;
                            }
                        }
                        _ => {}
                    }
                }
                _ if b.is_ascii_whitespace() => {}
                At::Start if b == b'[' => self.at = At::Between,
                At::Between if b == b',' => {}
                At::Between if b == b']' => self.at = At::End,
                At::Between if b == b'{' => {
                    self.at = At::Element;
                    self.depth = 1;
                    from = i;
                }
                _ => {
                    return Err(serde::de::Error::custom(
                        "expected an array of line objects",
                    ))
                }
            }
        }
        if self.at == At::Element {
            self.buf.extend_from_slice(&chunk[from..]);
        }
        Ok(())
    }

    fn push(&mut self, l: RawLine) {
        let line = OutputLine {
            time: l.time.unwrap_or_default(),
            output: l.output.unwrap_or_default(),
        };
        self.bytes += line.output.len() + line.time.len();
        self.total += 1;
        self.kept.push_back(line);
        while self.bytes > self.max_bytes && self.kept.len() > 1 {
            if let Some(old) = self.kept.pop_front() {
                self.bytes -= old.output.len() + old.time.len();
            }
        }
    }

    fn finish(self) -> serde_json::Result<(VecDeque<OutputLine>, usize)> {
        if self.at != At::End {
            return Err(serde::de::Error::custom("the array of lines is not closed"));
        }
        Ok((self.kept, self.total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: usize) -> Vec<u8> {
        let lines: Vec<Value> = (0..n)
            .map(|i| json!({"task_id": 1, "time": "t", "output": format!("line {i:04}"), "stage_id": null}))
            .collect();
        serde_json::to_vec_pretty(&lines).unwrap()
    }

    #[test]
    fn only_the_newest_lines_within_the_cap_are_kept_and_counted() {
        let mut t = Tail::new(100);
        t.feed(&body(1000)).unwrap();
        let (kept, total) = t.finish().unwrap();
        assert_eq!(total, 1000);
        assert_eq!(kept.len(), 10, "10 lines of 10 bytes");
        assert_eq!(kept.back().unwrap().output, "line 0999");
        assert_eq!(kept.front().unwrap().output, "line 0990");
    }

    #[test]
    fn any_chunking_gives_the_same_lines_even_inside_strings_and_escapes() {
        let tricky = json!([
            {"time": "a", "output": "braces } { ] [ and \"quotes\", commas"},
            {"time": "b", "output": "back\\slash \\\" and unicode \u{e9}", "nested": {"x": [1, {"y": "}"}]}},
            {"output": null}
        ]);
        let whole = serde_json::to_vec(&tricky).unwrap();
        for size in 1..=whole.len() {
            let mut t = Tail::new(1 << 20);
            for c in whole.chunks(size) {
                t.feed(c).unwrap();
            }
            let (kept, total) = t.finish().unwrap();
            assert_eq!(total, 3, "chunk size {size}");
            assert_eq!(kept[0].output, "braces } { ] [ and \"quotes\", commas");
            assert_eq!(kept[1].output, "back\\slash \\\" and unicode \u{e9}");
            assert_eq!(kept[2].output, "");
        }
    }

    #[test]
    fn a_cut_or_foreign_answer_is_an_error() {
        let whole = body(3);
        let mut t = Tail::new(1 << 20);
        t.feed(&whole[..whole.len() - 5]).unwrap();
        assert!(t.finish().is_err(), "cut off");
        let mut t = Tail::new(1 << 20);
        assert!(t.feed(br#"{"error": "x"}"#).is_err(), "not an array");
        let mut t = Tail::new(1 << 20);
        assert!(t.feed(br#"[{"output": 5}]"#).is_err(), "wrong field type");
        let mut t = Tail::new(1 << 20);
        t.feed(b"[]").unwrap();
        assert_eq!(t.finish().unwrap().1, 0);
    }
}

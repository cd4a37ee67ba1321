//! Capturing a command's stdout and stderr within the output cap (the pid marker removed).

use super::*;

/// Reads both streams with a cap, watching stderr for the pid marker.
pub(super) struct Capture {
    out: Vec<u8>,
    err: Vec<u8>,
    out_total: usize,
    err_total: usize,
    cap: usize,
    pid: Arc<AtomicI64>,
    marker_done: bool,
    err_pending: Vec<u8>,
}

impl Capture {
    pub(super) fn new(cap: usize, pid: Arc<AtomicI64>) -> Self {
        Capture {
            out: Vec::new(),
            err: Vec::new(),
            out_total: 0,
            err_total: 0,
            cap,
            pid,
            marker_done: false,
            err_pending: Vec::new(),
        }
    }

    pub(super) fn push_out(&mut self, b: &[u8]) {
        self.out_total += b.len();
        let room = self.cap.saturating_sub(self.out.len());
        self.out.extend_from_slice(&b[..b.len().min(room)]);
    }

    pub(super) fn push_err_raw(&mut self, b: &[u8]) {
        self.err_total += b.len();
        let room = self.cap.saturating_sub(self.err.len());
        self.err.extend_from_slice(&b[..b.len().min(room)]);
    }

    pub(super) fn push_err(&mut self, b: &[u8]) {
        if self.marker_done {
            return self.push_err_raw(b);
        }
        // Until the marker line has been seen, hold stderr back and look for it.
        self.err_pending.extend_from_slice(b);
        let marker = PID_MARKER.as_bytes();
        if let Some(start) = find(&self.err_pending, marker) {
            if let Some(nl) = self.err_pending[start..].iter().position(|c| *c == b'\n') {
                let line = &self.err_pending[start + marker.len()..start + nl];
                if let Ok(pid) = String::from_utf8_lossy(line).trim().parse::<i64>() {
                    self.pid.store(pid, Ordering::SeqCst);
                }
                let mut rest = self.err_pending[..start].to_vec();
                rest.extend_from_slice(&self.err_pending[start + nl + 1..]);
                self.err_pending.clear();
                self.marker_done = true;
                self.push_err_raw(&rest);
            }
        } else if self.err_pending.len() > 64 * 1024 {
            // Something is very chatty before our prologue ran; give up looking.
            let p = std::mem::take(&mut self.err_pending);
            self.marker_done = true;
            self.push_err_raw(&p);
        }
    }

    pub(super) fn finish(&mut self) {
        if !self.err_pending.is_empty() {
            let p = std::mem::take(&mut self.err_pending);
            self.push_err_raw(&p);
        }
    }

    pub(super) async fn drain<O, E>(
        &mut self,
        out: &mut Option<O>,
        err: &mut Option<E>,
    ) -> std::io::Result<()>
    where
        O: AsyncRead + Unpin,
        E: AsyncRead + Unpin,
    {
        let mut b1 = vec![0u8; 32 * 1024];
        let mut b2 = vec![0u8; 32 * 1024];
        loop {
            if out.is_none() && err.is_none() {
                return Ok(());
            }
            tokio::select! {
                r = async { out.as_mut().expect("checked").read(&mut b1).await }, if out.is_some() => {
                    let n = r?;
                    if n == 0 { *out = None; } else { self.push_out(&b1[..n]); }
                }
                r = async { err.as_mut().expect("checked").read(&mut b2).await }, if err.is_some() => {
                    let n = r?;
                    if n == 0 { *err = None; } else { self.push_err(&b2[..n]); }
                }
            }
        }
    }

    pub(super) fn output(mut self, code: i64, started: Instant) -> Output {
        self.finish();
        Output {
            code,
            stdout: self.out,
            stderr: self.err,
            stdout_total: self.out_total,
            stderr_total: self.err_total,
            duration: started.elapsed(),
        }
    }
}

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub(super) fn timeout_error(host: &str, spec: &RunSpec, d: Duration, cap: &Capture) -> RalfError {
    let tail = String::from_utf8_lossy(&cap.err);
    let tail: Vec<&str> = tail.trim_end().lines().collect();
    let tail = tail[tail.len().saturating_sub(5)..].join("\n");
    RalfError::timeout(format!(
        "{host}: command did not finish within {} and was killed: {}",
        crate::text::human_duration(d),
        short_cmd(&spec.cmd)
    ))
    .with("host", host)
    .with("stdout", String::from_utf8_lossy(&cap.out))
    .with("stderr_tail", tail)
}

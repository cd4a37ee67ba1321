//! Waiting for a task: `/api/ws` events when the socket works (`ws://`, or `wss://` with the
//! client's CA / insecure settings), adaptive polling otherwise.
//!
//! `/output` is never paginated (`GetTaskOutput`): every call returns the whole log. So the log is
//! fetched once when the socket opens (later lines arrive as `log` events), and while polling at
//! most every [`OUTPUT_EVERY`] (and once at the end), skipping the lines already seen by count.

use super::{is_terminal, Client, Task};
use crate::error::{RResult, RalfError};
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::hub::{Io, Ws};

/// While polling, the whole output is fetched at most this often.
pub const OUTPUT_EVERY: Duration = Duration::from_secs(5);

/// How to wait.
#[derive(Debug, Clone)]
pub struct WaitOptions {
    /// Deadline of the whole wait.
    pub timeout: Duration,
    /// The interval right after the start, growing by a quarter per poll up to `poll_min`: a short
    /// task is seen soon after it ends, and once the ramp is over polling is as frequent as before.
    pub poll_first: Duration,
    /// Poll interval used again after a change (status or output).
    pub poll_min: Duration,
    /// Ceiling of the poll interval.
    pub poll_max: Duration,
    /// Fetch output lines while polling (for the log / spinner).
    pub follow_output: bool,
    /// Use the websocket when available.
    pub websocket: bool,
    /// Also stop at this (non-final) status, e.g. `waiting_confirmation` for a plan.
    pub until: Option<String>,
}

impl WaitOptions {
    /// The task is where the wait ends: finished, or at the `until` status.
    fn reached(&self, t: &Task) -> bool {
        t.is_terminal() || self.until.as_deref() == Some(t.status.as_str())
    }
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            timeout: Duration::from_secs(30 * 60),
            poll_first: Duration::from_millis(20),
            poll_min: Duration::from_millis(100),
            poll_max: Duration::from_secs(5),
            follow_output: true,
            websocket: true,
            until: None,
        }
    }
}

/// Something observed while waiting.
#[derive(Debug, Clone)]
pub enum WaitEvent {
    Status(String),
    Line(String),
}

/// How often a websocket wait double-checks over REST (the socket has no replay).
const WS_RECONCILE: Duration = Duration::from_secs(5);

/// After a terminal `update` without `end`, how long to wait for the one with it (the server sends
/// it one database write later) before reading the row instead.
const END_GRACE: Duration = Duration::from_millis(500);

/// Apply an `update` event's status, start and end to the task as known.
fn merge_update(t: &mut Task, ev: &Value) {
    if let Some(s) = ev.get("status").and_then(Value::as_str) {
        t.status = s.to_string();
        t.raw["status"] = Value::String(s.to_string());
    }
    for k in ["start", "end"] {
        if let Some(v) = ev.get(k).filter(|v| !v.is_null()) {
            t.raw[k] = v.clone();
        }
    }
}

fn has_end(t: &Task) -> bool {
    t.raw.get("end").is_some_and(|v| !v.is_null())
}

impl Client {
    /// Wait until the task is terminal (success, error, stopped) or the deadline passes (`timeout` error;
    /// the task keeps running). `on` sees status changes and new output lines.
    pub async fn wait(
        &self,
        task_id: i64,
        opts: &WaitOptions,
        on: &mut (dyn FnMut(WaitEvent) + Send),
    ) -> RResult<Task> {
        let deadline = Instant::now() + opts.timeout;
        let mut last_status = String::new();
        let r = tokio::time::timeout_at(
            deadline,
            self.wait_inner(task_id, opts, on, &mut last_status),
        )
        .await;
        match r {
            Ok(r) => r,
            Err(_) => {
                if last_status.is_empty() {
                    if let Ok(Ok(t)) =
                        tokio::time::timeout(Duration::from_secs(2), self.task(task_id)).await
                    {
                        last_status = t.status;
                    }
                }
                Err(RalfError::timeout(format!(
                    "semaphore: task {task_id} is still `{}` after {} (it keeps running; stop it with task.stop())",
                    if last_status.is_empty() { "unknown" } else { &last_status },
                    crate::text::human_duration(opts.timeout)
                ))
                .with("task_id", task_id)
                .with("status", last_status))
            }
        }
    }

    async fn wait_inner(
        &self,
        task_id: i64,
        opts: &WaitOptions,
        on: &mut (dyn FnMut(WaitEvent) + Send),
        last: &mut String,
    ) -> RResult<Task> {
        let mut shown = 0usize;
        if opts.websocket && self.websocket {
            match self.subscribe(task_id).await {
                Ok(sub) => {
                    if let Some(t) = self
                        .wait_ws(task_id, sub, opts, on, last, &mut shown)
                        .await?
                    {
                        return Ok(t);
                    }
                    tracing::debug!(target: "ralf::semaphore", "websocket closed; polling task {task_id}");
                }
                Err(e) => {
                    tracing::debug!(target: "ralf::semaphore", "websocket unavailable ({e}); polling task {task_id}")
                }
            }
        }
        // After a dropped socket, polling skips the lines the socket already showed.
        self.wait_poll(task_id, opts, on, last, shown).await
    }

    pub(crate) async fn ws_connect(&self, url: &str) -> Result<Ws, String> {
        let mut req = url.into_client_request().map_err(|e| e.to_string())?;
        let (hn, hv) = self.auth_header();
        let hv = hv.parse().map_err(|_| "bad auth header".to_string())?;
        req.headers_mut().insert(hn, hv);
        let uri = req.uri().clone();
        let host = uri
            .host()
            .ok_or("no host")?
            .trim_matches(['[', ']'])
            .to_string();
        let tls = uri.scheme_str() == Some("wss");
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let connect = async {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| e.to_string())?;
            let io: Box<dyn Io> = if tls {
                let cfg = super::tls::client_config(self.ca_pem.as_deref(), self.insecure)?;
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| format!("bad server name `{host}`: {e}"))?;
                let s = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                Box::new(s)
            } else {
                Box::new(tcp)
            };
            let (ws, _) = tokio_tungstenite::client_async(req, io)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<Ws, String>(ws)
        };
        tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| "connect timed out".to_string())?
    }

    /// Ok(None) when the socket closed before the task finished (caller falls back to polling).
    async fn wait_ws(
        &self,
        task_id: i64,
        mut sub: super::hub::Subscription,
        opts: &WaitOptions,
        on: &mut (dyn FnMut(WaitEvent) + Send),
        last: &mut String,
        shown: &mut usize,
    ) -> RResult<Option<Task>> {
        // Socket first, then REST: nothing between the two is lost.
        let t = self.task(task_id).await?;
        self.note_status(&t.status, on, last);
        if opts.reached(&t) && !t.is_terminal() {
            return Ok(Some(t));
        }
        let mut seen_lines: HashSet<(String, String)> = HashSet::new();
        if opts.follow_output {
            for l in self.output(task_id).await.unwrap_or_default() {
                on(WaitEvent::Line(l.output.clone()));
                seen_lines.insert((l.time, l.output));
                *shown += 1;
            }
        }
        if t.is_terminal() {
            return Ok(Some(t));
        }
        let mut reconcile = tokio::time::interval_at(Instant::now() + WS_RECONCILE, WS_RECONCILE);
        // The task as last known: the REST read, updated by the socket's `update` events.
        let mut known = t;
        // Set by the first terminal `update`: the status is final, the `end` comes next.
        let mut end_due: Option<Instant> = None;
        loop {
            let end_wait = async {
                match end_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = sub.rx.recv() => {
                    // None: the socket closed.
                    let Some(text) = msg else { return Ok(None) };
                    let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                    if v.get("task_id").and_then(Value::as_i64) != Some(task_id) {
                        continue;
                    }
                    match v.get("type").and_then(Value::as_str) {
                        Some("log") => {
                            let out = v.get("output").and_then(Value::as_str).unwrap_or("").to_string();
                            let time = v.get("time").and_then(Value::as_str).unwrap_or("").to_string();
                            // Only events that repeat lines of the first fetch are dropped; after
                            // the first new one every event is new, so the set is let go (it held
                            // every line of the task before: unbounded memory on long tasks).
                            if seen_lines.is_empty() || !seen_lines.remove(&(time, out.clone())) {
                                seen_lines = HashSet::new();
                                *shown += 1;
                                on(WaitEvent::Line(out));
                            }
                        }
                        Some("update") => {
                            let status = v.get("status").and_then(Value::as_str).unwrap_or("");
                            if is_terminal(status) {
                                // The event is the server's word (`saveStatus`); the row is
                                // written after it (S6), so it is not read back. The first
                                // terminal event comes from `SetStatus` with `end: null`, the
                                // second from the runner's end with `end` set.
                                merge_update(&mut known, &v);
                                self.note_status(status, on, last);
                                if has_end(&known) {
                                    return Ok(Some(known));
                                }
                                end_due.get_or_insert(Instant::now() + END_GRACE);
                            } else {
                                merge_update(&mut known, &v);
                                self.note_status(status, on, last);
                                if opts.until.as_deref() == Some(status) {
                                    let t = self.task(task_id).await?;
                                    if opts.reached(&t) {
                                        return Ok(Some(t));
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
                _ = end_wait => {
                    // No second event: take the row if it shows the end, else the event's word.
                    let t = self.task(task_id).await?;
                    return Ok(Some(if t.is_terminal() && has_end(&t) { t } else { known }));
                }
                _ = reconcile.tick() => {
                    let t = self.task(task_id).await?;
                    if end_due.is_some() && !t.is_terminal() {
                        continue; // the row lags the terminal event (S6)
                    }
                    self.note_status(&t.status, on, last);
                    if opts.reached(&t) {
                        return Ok(Some(t));
                    }
                    known = t;
                }
            }
        }
    }

    async fn wait_poll(
        &self,
        task_id: i64,
        opts: &WaitOptions,
        on: &mut (dyn FnMut(WaitEvent) + Send),
        last: &mut String,
        shown: usize,
    ) -> RResult<Task> {
        let mut interval = opts.poll_min;
        let mut ramp = opts.poll_first;
        let mut seen = shown;
        let mut fetched: Option<Instant> = None;
        loop {
            let t = self.task(task_id).await?;
            let mut changed = self.note_status(&t.status, on, last);
            let due = fetched.is_none_or(|f| f.elapsed() >= OUTPUT_EVERY);
            if (opts.follow_output && due) || opts.reached(&t) {
                fetched = Some(Instant::now());
                if let Ok(lines) = self.new_output(task_id, &mut seen).await {
                    changed |= !lines.is_empty();
                    for l in lines {
                        on(WaitEvent::Line(l.output));
                    }
                }
            }
            if opts.reached(&t) {
                return Ok(t);
            }
            let next = if changed {
                opts.poll_min
            } else {
                interval.mul_f64(1.5).min(opts.poll_max)
            };
            interval = if ramp < opts.poll_min {
                let r = ramp;
                ramp = ramp.mul_f64(1.25);
                r.min(next)
            } else {
                next
            };
            tokio::time::sleep(interval).await;
        }
    }

    fn note_status(
        &self,
        status: &str,
        on: &mut (dyn FnMut(WaitEvent) + Send),
        last: &mut String,
    ) -> bool {
        if status != last {
            *last = status.to_string();
            on(WaitEvent::Status(status.to_string()));
            true
        } else {
            false
        }
    }
}

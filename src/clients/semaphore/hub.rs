//! One `/api/ws` connection per client, shared by all its waits.
//!
//! Semaphore sends every event of the project to every socket. With a socket per waiting task,
//! 32 parallel waits each received (and decoded) every other task's events, so the cost of a wait
//! grew with the parallelism, and each task paid a connection and upgrade. Here one reader task
//! decodes each message once and hands it to the waits of the task it names; a wait subscribes
//! before it reads the task over REST, so nothing between the two is lost. When the socket closes
//! every subscription ends (its waits fall back to polling) and the next wait connects again; a
//! socket nobody listens to is closed after [`IDLE_CLOSE`].

use super::Client;
use futures_util::StreamExt;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// The websocket's transport: plain TCP or TLS over it.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub(crate) type Ws = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// A shared socket with no subscriber for this long is closed.
const IDLE_CLOSE: Duration = Duration::from_secs(10);

/// The client's socket, if one is open.
#[derive(Default)]
pub(crate) struct Hub {
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

/// A subscriber: its key (to unsubscribe) and where its messages go.
type Sub = (u64, mpsc::UnboundedSender<Utf8Bytes>);

/// Subscribers by task id.
#[derive(Default)]
struct Conn {
    subs: Mutex<HashMap<i64, Vec<Sub>>>,
    alive: AtomicBool,
    next: AtomicU64,
}

/// The messages about one task; ends (`None`) when the socket closes.
pub(crate) struct Subscription {
    pub rx: mpsc::UnboundedReceiver<Utf8Bytes>,
    conn: Arc<Conn>,
    task_id: i64,
    key: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self.conn.subs.lock();
        if let Some(v) = subs.get_mut(&self.task_id) {
            v.retain(|(k, _)| *k != self.key);
            if v.is_empty() {
                subs.remove(&self.task_id);
            }
        }
    }
}

impl Client {
    /// Subscribe to the socket's messages about `task_id`, connecting it first if none is open.
    pub(crate) async fn subscribe(&self, task_id: i64) -> Result<Subscription, String> {
        let url = self.ws_url().ok_or("the websocket is turned off")?;
        let conn = {
            let mut open = self.hub.conn.lock().await;
            match open.as_ref().filter(|c| c.alive.load(Ordering::Acquire)) {
                Some(c) => c.clone(),
                None => {
                    let ws = self.ws_connect(&url).await?;
                    let c = Arc::new(Conn::default());
                    c.alive.store(true, Ordering::Release);
                    tokio::spawn(read(ws, c.clone()));
                    *open = Some(c.clone());
                    c
                }
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let key = conn.next.fetch_add(1, Ordering::Relaxed);
        conn.subs.lock().entry(task_id).or_default().push((key, tx));
        if !conn.alive.load(Ordering::Acquire) {
            // Closed between the check and the registration: nothing will come.
            return Err("the websocket closed".into());
        }
        Ok(Subscription {
            rx,
            conn,
            task_id,
            key,
        })
    }
}

/// Marks the connection dead and ends every subscription when the reader stops for any reason
/// (socket closed, idle, or the runtime dropping the task).
struct Dead(Arc<Conn>);

impl Drop for Dead {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::Release);
        self.0.subs.lock().clear();
    }
}

async fn read(mut ws: Ws, c: Arc<Conn>) {
    let _dead = Dead(c.clone());
    let mut idle = tokio::time::interval(IDLE_CLOSE / 2);
    idle.tick().await;
    let mut empty_ticks = 0;
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let subs = c.subs.lock();
                    for id in task_ids(&t) {
                        for (_, tx) in subs.get(&id).into_iter().flatten() {
                            let _ = tx.send(t.clone());
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = idle.tick() => {
                if c.subs.lock().is_empty() {
                    empty_ticks += 1;
                    if empty_ticks >= 2 {
                        let _ = ws.close(None).await;
                        return;
                    }
                } else {
                    empty_ticks = 0;
                }
            }
        }
    }
}

/// The task ids a message names, read without parsing it: every `"task_id":` followed by a
/// number (inside a JSON string a quote is escaped, so the pattern only matches a real key).
pub(crate) fn task_ids(text: &str) -> Vec<i64> {
    const KEY: &str = "\"task_id\":";
    let mut ids = Vec::new();
    for (at, _) in text.match_indices(KEY) {
        let rest = text[at + KEY.len()..].trim_start();
        let end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '-')
            .unwrap_or(rest.len());
        if let Ok(id) = rest[..end].parse::<i64>() {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::task_ids;

    #[test]
    fn task_ids_are_read_from_the_key_only() {
        let upd = r#"{"end":null,"project_id":1,"start":null,"status":"running","task_id":57,"template_id":3,"type":"update","version":null}"#;
        assert_eq!(task_ids(upd), vec![57]);
        // A log line quoting another task id in its text names only its own task.
        let log = r#"{"output":"{\"task_id\":9, \"msg\": \"x\"}","project_id":1,"task_id":12,"time":"t","type":"log"}"#;
        assert_eq!(task_ids(log), vec![12]);
        // Spaces after the colon (a reformatting proxy).
        assert_eq!(task_ids(r#"{"type": "log", "task_id": 7}"#), vec![7]);
        assert!(task_ids(r#"{"type":"ping"}"#).is_empty());
    }
}

//! `/api/ws`: status and log events.

use super::*;
// ---------------------------------------------------------------- websocket

pub(super) async fn ws(State(sh): State<Arc<Shared>>, up: WebSocketUpgrade) -> Response {
    let rx = sh.events.subscribe();
    sh.sockets
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let kick = sh.kick.subscribe();
    up.on_upgrade(move |socket| ws_forward(socket, rx, kick))
}

pub(super) async fn ws_forward(
    mut socket: WebSocket,
    mut rx: broadcast::Receiver<String>,
    mut kick: broadcast::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = kick.recv() => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            ev = rx.recv() => match ev {
                Ok(text) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                // A slow client is disconnected, like the real server's full buffer.
                Err(_) => return,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Send an `update` event (the shape of `saveStatus`); `next` = (status, start, end) about to be
/// written, for the real order: the event goes out before the database row is updated.
pub(super) fn emit_update(sh: &Shared, id: i64, next: Option<(&str, Value, Value)>) {
    let ev = {
        let st = sh.st.lock();
        let Some(t) = st.task(id) else { return };
        let (status, start, end) = match next {
            Some((s, a, b)) => (json!(s), a, b),
            None => (
                t.v["status"].clone(),
                t.v.get("start").cloned().unwrap_or(Value::Null),
                t.v.get("end").cloned().unwrap_or(Value::Null),
            ),
        };
        json!({
            "type": "update", "start": start, "end": end, "status": status,
            "task_id": id, "template_id": t.v["template_id"], "project_id": t.v["project_id"], "version": Value::Null
        })
    };
    let _ = sh.events.send(ev.to_string());
}

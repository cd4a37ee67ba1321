//! Notification sink: accepts what `notify::send` sends to real services and records it.
//!
//! - ntfy JSON publishing: `POST /ntfy` or `POST /ntfy/` with `{"topic", "message", ...}` (like `POST /` on
//!   an ntfy server), and header-style `POST /ntfy/<topic>` with the message as the body. Answers like ntfy
//!   (`{"id","time","event":"message","topic","message"}`); 400 without a topic.
//! - Matrix: `PUT /_matrix/client/v3/rooms/<room>/send/m.room.message/<txn>` with a Bearer token
//!   (401 `M_MISSING_TOKEN` without one, 401 `M_UNKNOWN_TOKEN` for a wrong one); a repeated txn id returns the
//!   same `event_id` and is not recorded twice, as on a homeserver.
//! - Telegram Bot API: `POST /telegram/bot<token>/sendMessage` (set `api_url` to `<sink>/telegram`);
//!   a wrong token gets 401 `{"ok":false,"error_code":401,"description":"Unauthorized"}`.
//! - Webhook: `POST /webhook[/<anything>]` with any JSON body.
//! - `ANY /status/<code>`: answers with that status (a channel that is up but failing).
//!
//! A Bearer token that does not match the sink's token is refused with 401 (ntfy, webhook).
//! Control API: `GET /_lab/notifications` lists `{kind, path, auth, body}` (auth is "bearer" or "none",
//! never the token); `DELETE /_lab/notifications` clears the list.

mod gates;

use crate::error::{RResult, RalfError};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Default)]
pub(super) struct Inner {
    pub(super) records: Vec<Value>,
    matrix_txns: HashMap<String, String>,
    pub(super) next_id: u64,
    /// Gates: what phones and chat clients have answered (see `super::gates`).
    pub(super) gates: gates::GateState,
}

#[derive(Clone)]
pub(super) struct AppState {
    pub(super) inner: Arc<Mutex<Inner>>,
    pub(super) token: Arc<String>,
    /// Wakes Telegram long polls when an update arrives.
    pub(super) updates: Arc<tokio::sync::Notify>,
}

/// A running sink. Dropping it stops the server.
pub struct NotifySink {
    pub url: String,
    /// Token the sink accepts (Bearer for ntfy/Matrix/webhook, the bot token for Telegram).
    pub token: String,
    state: AppState,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NotifySink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NotifySink {
    /// Everything received so far.
    pub fn notifications(&self) -> Vec<Value> {
        self.state.inner.lock().records.clone()
    }
    pub fn clear(&self) {
        self.state.inner.lock().records.clear();
    }
}

/// Start the sink on 127.0.0.1 with an ephemeral port. Must be called within a tokio runtime.
pub async fn spawn() -> RResult<NotifySink> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| RalfError::io(format!("notify lab: cannot bind 127.0.0.1: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| RalfError::io(format!("notify lab: {e}")))?;
    let token = format!("lab-notify-{:016x}", rand::random::<u64>());
    let state = AppState {
        inner: Arc::new(Mutex::new(Inner::default())),
        token: Arc::new(token.clone()),
        updates: Arc::new(tokio::sync::Notify::new()),
    };
    let app = Router::new()
        .route("/ntfy", post(ntfy_json))
        .route("/ntfy/", post(ntfy_json))
        .route("/ntfy/{topic}", post(ntfy_topic))
        .route(
            "/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}",
            put(matrix_send),
        )
        .route("/telegram/{bot}/sendMessage", post(telegram_send))
        .route("/webhook", post(webhook))
        .route("/webhook/{*rest}", post(webhook))
        .route("/status/{code}", any(status))
        .route("/_lab/notifications", get(list).delete(clear_records));
    let app = gates::routes(app).with_state(state.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(NotifySink {
        url: format!("http://{addr}"),
        token,
        state,
        task,
    })
}

/// Start the sink and add `"notify": {"url", "token"}` to `lab.info`.
pub async fn start(lab: &mut super::Lab) -> RResult<()> {
    let s = spawn().await?;
    lab.info
        .insert("notify".into(), json!({"url": s.url, "token": s.token}));
    lab.guards.push(Box::new(s));
    Ok(())
}

/// "none", "bearer" (right token) or Err(401) for a wrong token.
#[allow(clippy::result_large_err)]
fn check_bearer(st: &AppState, headers: &HeaderMap) -> Result<&'static str, Response> {
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        None => Ok("none"),
        Some(v) => match v.strip_prefix("Bearer ") {
            Some(t) if t == st.token.as_str() => Ok("bearer"),
            _ => Err((
                StatusCode::UNAUTHORIZED,
                Json(json!({"code": 40101, "http": 401, "error": "unauthorized"})),
            )
                .into_response()),
        },
    }
}

pub(super) fn record(st: &AppState, kind: &str, path: String, auth: &str, body: Value) -> u64 {
    let mut g = st.inner.lock();
    g.next_id += 1;
    let id = g.next_id;
    g.records.push(
        json!({"kind": kind, "path": path, "auth": auth, "body": body, "id": id,
        "time": chrono::Utc::now().timestamp()}),
    );
    id
}

#[allow(clippy::result_large_err)]
fn body_json(b: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(b).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("invalid JSON: {e}")})),
        )
            .into_response()
    })
}

async fn ntfy_json(State(st): State<AppState>, headers: HeaderMap, b: Bytes) -> Response {
    let auth = match check_bearer(&st, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let v = match body_json(&b) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(topic) = v.get("topic").and_then(|t| t.as_str()).map(str::to_string) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"code": 40009, "http": 400, "error": "invalid request: topic invalid"})),
        )
            .into_response();
    };
    let id = record(&st, "ntfy", format!("/ntfy/{topic}"), auth, v.clone());
    Json(
        json!({"id": format!("lab{id}"), "time": chrono::Utc::now().timestamp(), "event": "message",
        "topic": topic, "message": v.get("message").cloned().unwrap_or(Value::Null)}),
    )
    .into_response()
}

async fn ntfy_topic(
    State(st): State<AppState>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    b: Bytes,
) -> Response {
    let auth = match check_bearer(&st, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let message = String::from_utf8_lossy(&b).into_owned();
    let body = json!({"topic": topic, "message": message, "title": h("title"),
        "priority": h("priority"), "tags": h("tags")});
    let id = record(&st, "ntfy", format!("/ntfy/{topic}"), auth, body);
    Json(json!({"id": format!("lab{id}"), "event": "message", "topic": topic, "message": message}))
        .into_response()
}

/// The Matrix access token check: `None` when the Bearer token is the sink's.
pub(super) fn matrix_auth(st: &AppState, headers: &HeaderMap) -> Option<Response> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")) {
        None => Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"errcode": "M_MISSING_TOKEN", "error": "Missing access token"})),
            )
                .into_response(),
        ),
        Some(t) if t != st.token.as_str() => Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"errcode": "M_UNKNOWN_TOKEN", "error": "Unknown access token"})),
            )
                .into_response(),
        ),
        Some(_) => None,
    }
}

async fn matrix_send(
    State(st): State<AppState>,
    Path((room, txn)): Path<(String, String)>,
    headers: HeaderMap,
    b: Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")) {
        None => {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"errcode": "M_MISSING_TOKEN", "error": "Missing access token"})),
            )
                .into_response()
        }
        Some(t) if t != st.token.as_str() => {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"errcode": "M_UNKNOWN_TOKEN", "error": "Unknown access token"})),
            )
                .into_response()
        }
        Some(_) => {}
    }
    let v = match body_json(&b) {
        Ok(v) => v,
        Err(_) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"errcode": "M_NOT_JSON", "error": "Content not JSON."})),
            )
                .into_response()
        }
    };
    let key = format!("{room}/{txn}");
    if let Some(ev) = st.inner.lock().matrix_txns.get(&key).cloned() {
        return Json(json!({"event_id": ev})).into_response();
    }
    let id = record(
        &st,
        "matrix",
        format!("/rooms/{room}/send/m.room.message/{txn}"),
        "bearer",
        json!({"room": room, "txn": txn, "content": v}),
    );
    let ev = format!("$lab{id}:lab");
    st.inner.lock().matrix_txns.insert(key, ev.clone());
    Json(json!({"event_id": ev})).into_response()
}

/// The Telegram token check: `None` when `bot<token>` is the sink's.
pub(super) fn telegram_auth(st: &AppState, bot: &str) -> Option<Response> {
    match bot.strip_prefix("bot") {
        Some(t) if t == st.token.as_str() => None,
        _ => Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"ok": false, "error_code": 401, "description": "Unauthorized"})),
            )
                .into_response(),
        ),
    }
}

async fn telegram_send(State(st): State<AppState>, Path(bot): Path<String>, b: Bytes) -> Response {
    if let Some(r) = telegram_auth(&st, &bot) {
        return r;
    }
    let v = match body_json(&b) {
        Ok(v) => v,
        Err(_) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"ok": false, "error_code": 400, "description": "Bad Request: can't parse JSON"})),
            )
                .into_response()
        }
    };
    if v.get("chat_id").is_none() || v.get("text").and_then(|t| t.as_str()).is_none() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"ok": false, "error_code": 400, "description": "Bad Request: chat_id and text are required"})),
        )
            .into_response();
    }
    let id = record(&st, "telegram", "/sendMessage".into(), "token", v.clone());
    gates::after_send(&st, &v, id);
    Json(json!({"ok": true, "result": {"message_id": id, "chat": {"id": v["chat_id"]}, "text": v["text"],
        "date": chrono::Utc::now().timestamp(), "reply_markup": v.get("reply_markup")}}))
        .into_response()
}

async fn webhook(State(st): State<AppState>, headers: HeaderMap, b: Bytes) -> Response {
    let auth = match check_bearer(&st, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let v = serde_json::from_slice::<Value>(&b)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).into_owned()));
    record(&st, "webhook", "/webhook".into(), auth, v);
    Json(json!({"ok": true})).into_response()
}

async fn status(Path(code): Path<u16>) -> Response {
    let s = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (s, format!("status {code}\n")).into_response()
}

async fn list(State(st): State<AppState>) -> Json<Value> {
    Json(Value::Array(st.inner.lock().records.clone()))
}

async fn clear_records(State(st): State<AppState>) -> StatusCode {
    st.inner.lock().records.clear();
    StatusCode::NO_CONTENT
}

//! The notification sink's side of approval gates: the parts of the Telegram Bot API, the Matrix
//! client API and ntfy that `gate()` reads answers from, and a control endpoint that answers a
//! pending gate the way a phone or a chat client would.
//!
//! - Telegram: `getUpdates` (`offset` confirms and drops earlier updates; `timeout` long-polls; a
//!   second poll while one waits ends the waiting one with 409 "Conflict: terminated by other
//!   getUpdates request", as Telegram does), `answerCallbackQuery`, `editMessageText`.
//! - Matrix: `GET /_matrix/client/v1/rooms/{room}/relations/{event}/m.annotation` (newest first).
//! - ntfy: `GET /ntfy/{topic}/json?poll=1&since=UNIX` (newline-delimited messages of the topic).
//! - `POST /_lab/gates/{id}/answer {"approve": true|false, "user": NAME, "via": "telegram"|"matrix"|"ntfy",
//!   "nonce": N}`: presses the gate's button (Telegram: a callback query from user NAME; ntfy: the
//!   action's POST to the reply topic, with `user` NAME) or reacts to its message (Matrix: ✅/❌ from
//!   `@NAME:lab`). `nonce` replaces the button's nonce (a replayed or forged answer); for Matrix it
//!   names the event to react to instead of the gate's. 404 when no question of that gate was sent
//!   on that channel.
//! - `POST /_lab/gates/auto {"answer": "approve"|"deny"|"none", "user": NAME}`: every later Telegram
//!   question is answered so (scenarios `gate-approve`, `gate-deny`).

use super::{matrix_auth, record, telegram_auth, AppState};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// Answers given so far.
#[derive(Default)]
pub struct GateState {
    /// Telegram updates not yet confirmed by an `offset`.
    updates: Vec<Value>,
    next_update: i64,
    /// Bumped by every `getUpdates`: a waiting poll that sees a newer one ends with 409.
    poll_gen: u64,
    /// Matrix reaction events.
    reactions: Vec<Value>,
    /// Scenarios `gate-approve` / `gate-deny`: every Telegram question is answered so by this user.
    auto: Option<(bool, String)>,
}

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/telegram/{bot}/getUpdates", post(get_updates))
        .route("/telegram/{bot}/answerCallbackQuery", post(answer_callback))
        .route("/telegram/{bot}/editMessageText", post(edit_message))
        .route(
            "/_matrix/client/v1/rooms/{room}/relations/{event}/{rel}",
            get(relations),
        )
        .route("/ntfy/{topic}/json", get(ntfy_poll))
        .route("/_lab/gates/{id}/answer", post(answer))
        .route("/_lab/gates/auto", post(set_auto))
}

/// `POST /_lab/gates/auto {"answer": "approve"|"deny"|"none", "user": "admin"}`: from now on every
/// gate question sent on Telegram is answered so, 300 ms later, as that user presses the button.
async fn set_auto(State(st): State<AppState>, b: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&b).unwrap_or(json!({}));
    let user = v["user"].as_str().unwrap_or("admin").to_string();
    st.inner.lock().gates.auto = match v["answer"].as_str() {
        Some("approve") => Some((true, user)),
        Some("deny") => Some((false, user)),
        _ => None,
    };
    Json(json!({"ok": true})).into_response()
}

/// Called by `sendMessage` for every message: answers a gate question when a scenario says so.
pub(super) fn after_send(st: &AppState, body: &Value, message_id: u64) {
    let Some((approve, user)) = st.inner.lock().gates.auto.clone() else {
        return;
    };
    let buttons = &body["reply_markup"]["inline_keyboard"][0];
    let Some(data) = buttons[if approve { 0 } else { 1 }]["callback_data"]
        .as_str()
        .map(str::to_string)
    else {
        return;
    };
    if !data.starts_with("rg:") {
        return;
    }
    let message =
        json!({"message_id": message_id, "chat": {"id": body["chat_id"]}, "text": body["text"]});
    let st = st.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        push_callback(&mut st.inner.lock().gates, &user, data, message);
        st.updates.notify_waiters();
    });
}

/// A button press as Telegram delivers it: a `callback_query` update.
fn push_callback(g: &mut GateState, user: &str, data: String, message: Value) {
    g.next_update += 1;
    let uid = 500_000 + g.next_update;
    g.updates.push(json!({"update_id": uid, "callback_query": {
        "id": format!("cq{uid}"), "from": {"id": user_id(user), "is_bot": false, "first_name": user, "username": user},
        "message": message, "chat_instance": "-42", "data": data}}));
}

fn bad(code: u16, description: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
        Json(json!({"ok": false, "error_code": code, "description": description})),
    )
        .into_response()
}

async fn get_updates(State(st): State<AppState>, Path(bot): Path<String>, b: Bytes) -> Response {
    if let Some(r) = telegram_auth(&st, &bot) {
        return r;
    }
    let v: Value = serde_json::from_slice(&b).unwrap_or(json!({}));
    let offset = v["offset"].as_i64().unwrap_or(0);
    let timeout = v["timeout"].as_u64().unwrap_or(0).min(50);
    let my_gen = {
        let mut g = st.inner.lock();
        g.gates.poll_gen += 1;
        if offset > 0 {
            g.gates
                .updates
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
        }
        g.gates.poll_gen
    };
    // A poll that was waiting hears of this one and ends.
    st.updates.notify_waiters();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        {
            let g = st.inner.lock();
            if g.gates.poll_gen != my_gen {
                return bad(409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running");
            }
            if !g.gates.updates.is_empty() || tokio::time::Instant::now() >= deadline {
                return Json(json!({"ok": true, "result": g.gates.updates.iter().take(100).cloned().collect::<Vec<_>>()}))
                    .into_response();
            }
        }
        let _ = tokio::time::timeout_at(deadline, st.updates.notified()).await;
    }
}

async fn answer_callback(
    State(st): State<AppState>,
    Path(bot): Path<String>,
    b: Bytes,
) -> Response {
    if let Some(r) = telegram_auth(&st, &bot) {
        return r;
    }
    let v: Value = serde_json::from_slice(&b).unwrap_or(json!({}));
    if v["callback_query_id"].as_str().is_none() {
        return bad(
            400,
            "Bad Request: query is too old and response timeout expired or query ID is invalid",
        );
    }
    record(
        &st,
        "telegram_callback_answer",
        "/answerCallbackQuery".into(),
        "token",
        v,
    );
    Json(json!({"ok": true, "result": true})).into_response()
}

async fn edit_message(State(st): State<AppState>, Path(bot): Path<String>, b: Bytes) -> Response {
    if let Some(r) = telegram_auth(&st, &bot) {
        return r;
    }
    let v: Value = serde_json::from_slice(&b).unwrap_or(json!({}));
    let id = v["message_id"].as_i64().unwrap_or(0);
    let mut g = st.inner.lock();
    let Some(m) = g
        .records
        .iter_mut()
        .find(|r| r["kind"] == "telegram" && r["id"] == json!(id))
    else {
        return bad(400, "Bad Request: message to edit not found");
    };
    if m["body"]["text"] == v["text"]
        && v.get("reply_markup").is_none()
        && m["body"].get("reply_markup").is_none()
    {
        return bad(400, "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message");
    }
    m["body"]["text"] = v["text"].clone();
    match v.get("reply_markup") {
        Some(k) => m["body"]["reply_markup"] = k.clone(),
        None => {
            if let Some(o) = m["body"].as_object_mut() {
                o.remove("reply_markup");
            }
        }
    }
    let out = json!({"message_id": id, "text": v["text"], "chat": {"id": v["chat_id"]}});
    drop(g);
    record(&st, "telegram_edit", "/editMessageText".into(), "token", v);
    Json(json!({"ok": true, "result": out})).into_response()
}

async fn relations(
    State(st): State<AppState>,
    Path((room, event, rel)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = matrix_auth(&st, &headers) {
        return r;
    }
    let g = st.inner.lock();
    let chunk: Vec<Value> = g
        .gates
        .reactions
        .iter()
        .rev()
        .filter(|e| {
            e["room_id"] == json!(room)
                && e["content"]["m.relates_to"]["event_id"] == json!(event)
                && e["content"]["m.relates_to"]["rel_type"] == json!(rel)
        })
        .cloned()
        .collect();
    Json(json!({"chunk": chunk})).into_response()
}

async fn ntfy_poll(
    State(st): State<AppState>,
    Path(topic): Path<String>,
    q: Query<HashMap<String, String>>,
) -> Response {
    if q.get("poll").map(String::as_str) != Some("1") {
        // Streaming subscriptions are not part of the stand-in.
        return (StatusCode::BAD_REQUEST, "lab: only poll=1 is supported\n").into_response();
    }
    let since: i64 = q.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
    let g = st.inner.lock();
    let mut out = String::new();
    for r in g
        .records
        .iter()
        .filter(|r| r["kind"] == "ntfy" && r["body"]["topic"] == json!(topic))
    {
        if r["time"].as_i64().unwrap_or(0) < since {
            continue;
        }
        out.push_str(
            &json!({"id": format!("lab{}", r["id"]), "time": r["time"], "event": "message",
            "topic": topic, "message": r["body"]["message"]})
            .to_string(),
        );
        out.push('\n');
    }
    ([("content-type", "application/x-ndjson")], out).into_response()
}

/// A stable numeric Telegram user id for a lab user name.
fn user_id(name: &str) -> i64 {
    name.bytes().fold(1_000_003i64, |h, b| {
        (h.wrapping_mul(31) + b as i64) % 900_000_000
    }) + 100_000
}

async fn answer(State(st): State<AppState>, Path(id): Path<String>, b: Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&b) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad JSON: {e}\n")).into_response(),
    };
    let approve = v["approve"].as_bool().unwrap_or(false);
    let user = v["user"].as_str().unwrap_or("admin").to_string();
    let via = v["via"].as_str().unwrap_or("telegram").to_string();
    let nonce = v["nonce"].as_str().map(str::to_string);
    let mut g = st.inner.lock();
    match via.as_str() {
        "telegram" => {
            let needle = format!("rg:{id}:");
            let Some(m) = g
                .records
                .iter()
                .rev()
                .find(|r| r["kind"] == "telegram" && r["body"].to_string().contains(&needle))
            else {
                return (
                    StatusCode::NOT_FOUND,
                    format!("no Telegram question of gate {id}\n"),
                )
                    .into_response();
            };
            let buttons = m["body"]["reply_markup"]["inline_keyboard"][0].clone();
            let mut data = buttons[if approve { 0 } else { 1 }]["callback_data"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if let Some(n) = &nonce {
                let p: Vec<&str> = data.split(':').collect();
                data = format!("{}:{}:{n}:{}", p[0], p[1], p[3]);
            }
            let message = json!({"message_id": m["id"], "chat": {"id": m["body"]["chat_id"]}, "text": m["body"]["text"]});
            push_callback(&mut g.gates, &user, data, message);
            drop(g);
            st.updates.notify_waiters();
        }
        "matrix" => {
            let needle = format!("[gate {id}]");
            let Some(m) = g.records.iter().rev().find(|r| {
                r["kind"] == "matrix"
                    && r["body"]["content"]["body"]
                        .as_str()
                        .is_some_and(|t| t.contains(&needle) && t.starts_with("Approval needed"))
            }) else {
                return (
                    StatusCode::NOT_FOUND,
                    format!("no Matrix question of gate {id}\n"),
                )
                    .into_response();
            };
            let target = nonce.unwrap_or_else(|| format!("$lab{}:lab", m["id"]));
            let room = m["body"]["room"].clone();
            g.gates.next_update += 1;
            let ev = format!("$react{}:lab", g.gates.next_update);
            let sender = if user.starts_with('@') {
                user.clone()
            } else {
                format!("@{user}:lab")
            };
            g.gates.reactions.push(json!({"type": "m.reaction", "event_id": ev, "sender": sender, "room_id": room,
                "origin_server_ts": chrono::Utc::now().timestamp_millis(),
                "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": if approve { "✅\u{fe0f}" } else { "❌" }}}}));
        }
        "ntfy" => {
            let needle = format!("\\\"gate\\\":\\\"{id}\\\"");
            let Some(m) = g.records.iter().rev().find(|r| {
                r["kind"] == "ntfy" && r["body"]["actions"].to_string().contains(&needle)
            }) else {
                return (
                    StatusCode::NOT_FOUND,
                    format!("no ntfy question of gate {id}\n"),
                )
                    .into_response();
            };
            let action = m["body"]["actions"][if approve { 0 } else { 1 }].clone();
            let url = action["url"].as_str().unwrap_or("").to_string();
            let topic = url.rsplit('/').next().unwrap_or("").to_string();
            let mut body: Value =
                serde_json::from_str(action["body"].as_str().unwrap_or("{}")).unwrap_or(json!({}));
            body["user"] = json!(user);
            if let Some(n) = nonce {
                body["nonce"] = json!(n);
            }
            drop(g);
            record(
                &st,
                "ntfy",
                format!("/ntfy/{topic}"),
                "none",
                json!({"topic": topic, "message": body.to_string()}),
            );
        }
        other => {
            return (
                StatusCode::BAD_REQUEST,
                format!("via must be telegram, matrix or ntfy, not {other}\n"),
            )
                .into_response()
        }
    }
    Json(json!({"ok": true})).into_response()
}

//! Shaping an answer as each server sends it: one JSON body, or an event stream (exo: a keep-alive
//! first, `chat.completion` chunks, `prefill_progress` comments; Ollama and llama.cpp:
//! `chat.completion.chunk`), with each server's reasoning field and mid-stream error.

use super::{Answer, AppState, Asked};
use crate::lab::LlmProfile;
use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::time::Duration;

/// The non-streamed answer.
pub(super) fn complete(st: &AppState, asked: &Asked, a: &Answer) -> Response {
    let id = format!("chatcmpl-{:016x}", rand::random::<u64>());
    let created = chrono::Utc::now().timestamp();
    let mut message = json!({"role": "assistant", "content": a.text});
    if !a.reasoning.is_empty() {
        message[reasoning_field(st.profile)] = json!(a.reasoning);
    }
    let full = json!({
        "id": id, "object": "chat.completion", "created": created, "model": asked.model,
        "choices": [{"index": 0, "message": message, "finish_reason": a.finish}],
        "usage": a.usage,
    });
    let s = full.to_string();
    if a.mode == "cut_body" {
        // exo v1 sends 200 before generating; a failure then cuts the body.
        let cut = s[..s.len() / 2].to_string();
        return ([(header::CONTENT_TYPE, "application/json")], cut).into_response();
    }
    ([(header::CONTENT_TYPE, "application/json")], s).into_response()
}

fn reasoning_field(p: LlmProfile) -> &'static str {
    match p {
        LlmProfile::Ollama => "reasoning",
        _ => "reasoning_content",
    }
}

/// The streamed answer: parts with the pause before each, shaped per profile.
pub(super) fn stream(st: &AppState, asked: &Asked, a: &Answer) -> Response {
    let id = format!("chatcmpl-{:016x}", rand::random::<u64>());
    let created = chrono::Utc::now().timestamp();
    let object = match st.profile {
        LlmProfile::Exo => "chat.completion",
        _ => "chat.completion.chunk",
    };
    let model = asked.model.clone();
    let chunk = |delta: Value, finish: Option<&str>, usage: Option<&Value>| {
        let mut c = json!({"id": id, "object": object, "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        if let Some(u) = usage {
            c["usage"] = u.clone();
        }
        format!("data: {c}\n\n")
    };
    let mut parts: Vec<String> = Vec::new();
    let exo = st.profile == LlmProfile::Exo;
    if exo {
        parts.push(": keep-alive\n\n".to_string());
    }
    let rfield = reasoning_field(st.profile);
    for w in split_keep_spaces(&a.reasoning) {
        parts.push(chunk(json!({"role": "assistant", rfield: w}), None, None));
    }
    let words: Vec<String> = split_keep_spaces(&a.text);
    let n = words.len();
    for (i, w) in words.iter().enumerate() {
        let last = i + 1 == n;
        parts.push(chunk(
            json!({"role": "assistant", "content": w}),
            if last { Some(a.finish) } else { None },
            if last { Some(&a.usage) } else { None },
        ));
        if exo && (a.mode == "keepalive" || i == n / 2) {
            parts.push(": prefill_progress {\"processed\": 1}\n\n".to_string());
        }
    }
    if n == 0 {
        parts.push(chunk(
            json!({"role": "assistant", "content": ""}),
            Some(a.finish),
            Some(&a.usage),
        ));
    }
    let cut = a.mode == "cut_stream";
    match a.mode.as_str() {
        "error_event" => {
            parts.truncate(2.min(parts.len()));
            match st.profile {
                LlmProfile::Exo => {
                    parts.push("data: {\"error\":{\"message\":\"runner crashed\",\"type\":\"InternalServerError\",\"code\":500}}\n\n".into());
                    parts.push("data: [DONE]\n\n".into());
                }
                // llama.cpp: the error as a data event, no [DONE]
                LlmProfile::Llamacpp => parts.push(
                    "data: {\"error\":{\"code\":500,\"message\":\"runner crashed: failed to decode the batch\",\"type\":\"server_error\"}}\n\n".into(),
                ),
                // Ollama: the error is lost in the /v1 layer; the stream just ends
                LlmProfile::Ollama => {}
            }
        }
        "no_done" => {}
        "cut_stream" => {
            let keep = (parts.len() / 2).max(1);
            parts.truncate(keep);
        }
        _ => parts.push("data: [DONE]\n\n".into()),
    }
    let pause = if a.mode == "keepalive" {
        Duration::from_millis(30)
    } else {
        Duration::ZERO
    };
    // exo: a keep-alive goes out first, then the stall of a slow prefill.
    let stall = if a.mode == "slow" && exo {
        Duration::from_secs_f64(a.delay.unwrap_or(2.0))
    } else {
        Duration::ZERO
    };
    // `stall`: silent after the first token (a generation that hangs).
    let hang_at = if exo { 2 } else { 1 };
    let hang = if a.mode == "stall" {
        Duration::from_secs_f64(a.delay.unwrap_or(2.0))
    } else {
        Duration::ZERO
    };
    let timed: Vec<(Duration, String)> = parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let mut wait = match i {
                0 => Duration::ZERO,
                1 => pause + stall,
                _ => pause,
            };
            if i == hang_at {
                wait += hang;
            }
            (wait, p)
        })
        .collect();
    let stream =
        futures_util::stream::unfold((timed.into_iter(), cut), move |(mut it, cut)| async move {
            match it.next() {
                Some((wait, p)) => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(p)), (it, cut)))
                }
                None if cut => Some((
                    {
                        // let what was sent reach the client before the connection breaks
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "lab: stream cut",
                        ))
                    },
                    (it, false),
                )),
                None => None,
            }
        });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .expect("response")
}

/// Split text into word pieces that concatenate back to the original.
fn split_keep_spaces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        cur.push(c);
        if c == ' ' || c == '\n' {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

//! exo stand-in: an OpenAI-compatible chat server on loopback that behaves like exo v1.
//!
//! - `GET /v1/models` (and `/models`): the model catalog, `{"object":"list","data":[{id, object, created, owned_by, name}]}`.
//! - `GET /node_id`: the node id as a JSON string (exo v1's reachability probe; there is no `/healthcheck`).
//! - `POST /v1/chat/completions`: exact model match (unknown -> 404 `No instance found for model X`
//!   in exo v1's `{"error":{message,type,param,code}}` shape), missing fields -> FastAPI 422 `{"detail":[..]}`.
//!   Streams are `text/event-stream`: a `: keep-alive` comment first, chunks whose object is
//!   `chat.completion` (as exo v1 sends them), the last one with `finish_reason` and `usage`, then `data: [DONE]`.
//!
//! Answers are scriptable per request pattern (substring of the last user message) through a control
//! API outside `/v1`:
//! - `POST /_lab/script` `{"rules": [{"match": "deploy", "reply": "text"} | {"match": "x", "mode": "garbage",
//!   "times": 1, "delay": 0.2, "retry_after": 0}]}` appends rules (first match wins; `times` limits how often
//!   a rule applies); `DELETE /_lab/script` clears them.
//! - `GET /_lab/requests`: every request received (`{path, body}`); `DELETE /_lab/requests` clears the list.
//!
//! A directive in a user message does the same without the control API (used by script tests
//! and doc examples): `[lab:MODE]` applies to every request of that conversation, `[lab:MODE*N]` only to
//! the first N requests whose first user message is exactly the same.
//!
//! Modes: `valid_json`, `wrapped_json` (JSON inside prose and a code fence), `invalid_json` (JSON that
//! fails the decision schema), `garbage`, `slow` (waits `delay` s, default 2, then answers), `unknown_model`
//! (404), `loading_503` (503 llama.cpp "Loading model" with `Retry-After`), `cut_body` (200 whose JSON
//! body breaks off), `cut_stream` (stream that breaks off without the last chunk), `no_done` (legacy exo:
//! stream ends without `[DONE]`), `keepalive` (stream with several keep-alive comments), `error_event`
//! (exo's mid-stream `data: {"error": ..}`), `detail_error` (legacy exo 400 `{"detail": ".."}`),
//! `error_string` (Ollama-style 400 `{"error": ".."}`).
//!
//! Default answers: a valid decision JSON for decide-like prompts (`wait` when the context mentions
//! something unhealthy/failed/down, else `proceed`) and a short prose sentence otherwise.

use crate::engine::error::{RResult, RalfError};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The default model id of the stand-in (exo v1 ids are Hugging Face repo ids).
pub const DEFAULT_MODEL: &str = "mlx-community/Llama-3.2-3B-Instruct-4bit";

/// One scripted answer.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Substring of the last user message; absent = every request.
    #[serde(rename = "match", default)]
    pub pattern: Option<String>,
    /// Literal answer text.
    #[serde(default)]
    pub reply: Option<String>,
    /// A failure or answer mode (see the module doc).
    #[serde(default)]
    pub mode: Option<String>,
    /// How many requests the rule applies to (absent = all).
    #[serde(default)]
    pub times: Option<u32>,
    /// Seconds to wait before answering (`slow`; default 2).
    #[serde(default)]
    pub delay: Option<f64>,
    /// `Retry-After` seconds sent with `loading_503` (default 1).
    #[serde(default)]
    pub retry_after: Option<f64>,
}

const MODES: &[&str] = &[
    "valid_json",
    "wrapped_json",
    "invalid_json",
    "garbage",
    "slow",
    "unknown_model",
    "loading_503",
    "cut_body",
    "cut_stream",
    "no_done",
    "keepalive",
    "error_event",
    "detail_error",
    "error_string",
];

#[derive(Default)]
struct Inner {
    rules: Vec<Rule>,
    requests: Vec<Value>,
    /// Requests seen per exact last user message (for `[lab:MODE*N]`).
    seen: HashMap<String, u32>,
}

/// Options of a stand-in started alone.
#[derive(Debug, Clone)]
pub struct ExoLabOptions {
    pub models: Vec<String>,
}

impl Default for ExoLabOptions {
    fn default() -> Self {
        ExoLabOptions {
            models: vec![
                DEFAULT_MODEL.to_string(),
                "mlx-community/Llama-3.2-1B-Instruct-4bit".to_string(),
            ],
        }
    }
}

#[derive(Clone)]
struct AppState {
    inner: Arc<Mutex<Inner>>,
    models: Arc<Vec<String>>,
    node_id: String,
}

/// A running stand-in; dropping it stops the server.
pub struct ExoLab {
    pub url: String,
    pub model: String,
    state: AppState,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ExoLab {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ExoLab {
    /// Add scripted rules (first match wins).
    pub fn script(&self, rules: Vec<Rule>) -> RResult<()> {
        for r in &rules {
            check_rule(r)?;
        }
        self.state.inner.lock().rules.extend(rules);
        Ok(())
    }
    /// Remove every rule and recorded request.
    pub fn reset(&self) {
        let mut i = self.state.inner.lock();
        i.rules.clear();
        i.requests.clear();
        i.seen.clear();
    }
    /// Every request received so far: `{path, body}`.
    pub fn requests(&self) -> Vec<Value> {
        self.state.inner.lock().requests.clone()
    }
}

fn check_rule(r: &Rule) -> RResult<()> {
    if let Some(m) = &r.mode {
        if !MODES.contains(&m.as_str()) {
            let hint = crate::engine::options::did_you_mean(m, MODES.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(RalfError::invalid(format!(
                "exo lab: unknown mode `{m}`{hint}"
            )));
        }
    }
    if r.reply.is_none() && r.mode.is_none() {
        return Err(RalfError::invalid(
            "exo lab: a rule needs `reply` or `mode`",
        ));
    }
    Ok(())
}

/// Start a stand-in on 127.0.0.1 with an ephemeral port.
pub async fn spawn(opts: ExoLabOptions) -> RResult<ExoLab> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| RalfError::io(format!("exo lab: cannot bind 127.0.0.1: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| RalfError::io(format!("exo lab: {e}")))?;
    let model = opts
        .models
        .first()
        .cloned()
        .unwrap_or_else(|| DEFAULT_MODEL.to_string());
    let state = AppState {
        inner: Arc::new(Mutex::new(Inner::default())),
        models: Arc::new(opts.models),
        node_id: format!("12D3KooWLab{:08x}", rand::random::<u32>()),
    };
    let app = Router::new()
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/node_id", get(node_id))
        .route("/v1/chat/completions", axum::routing::post(chat))
        .route(
            "/_lab/script",
            axum::routing::post(add_script).delete(clear_script),
        )
        .route("/_lab/requests", get(list_requests).delete(clear_requests))
        .with_state(state.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(ExoLab {
        url: format!("http://{addr}"),
        model,
        state,
        task,
    })
}

/// Start the stand-in and add its key to `lab.info`.
pub async fn start(lab: &mut super::Lab) -> RResult<()> {
    let s = spawn(ExoLabOptions::default()).await?;
    lab.info
        .insert("exo".into(), json!({"url": s.url, "model": s.model}));
    lab.guards.push(Box::new(s));
    Ok(())
}

async fn models(State(st): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = st
        .models
        .iter()
        .map(|id| {
            json!({
                "id": id,
                "object": "model",
                "created": 1_730_000_000,
                "owned_by": "exo",
                "name": id.rsplit('/').next().unwrap_or(id),
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn node_id(State(st): State<AppState>) -> Json<Value> {
    Json(Value::String(st.node_id.clone()))
}

#[derive(Deserialize)]
struct ScriptBody {
    rules: Vec<Rule>,
}

async fn add_script(State(st): State<AppState>, body: axum::body::Bytes) -> Response {
    let parsed: Result<ScriptBody, _> = serde_json::from_slice(&body);
    match parsed {
        Ok(b) => {
            for r in &b.rules {
                if let Err(e) = check_rule(r) {
                    return (StatusCode::BAD_REQUEST, Json(json!({"error": e.message})))
                        .into_response();
                }
            }
            let n = b.rules.len();
            st.inner.lock().rules.extend(b.rules);
            Json(json!({"added": n})).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("bad script: {e}")})),
        )
            .into_response(),
    }
}

async fn clear_script(State(st): State<AppState>) -> StatusCode {
    let mut i = st.inner.lock();
    i.rules.clear();
    i.seen.clear();
    StatusCode::NO_CONTENT
}

async fn list_requests(State(st): State<AppState>) -> Json<Value> {
    Json(Value::Array(st.inner.lock().requests.clone()))
}

async fn clear_requests(State(st): State<AppState>) -> StatusCode {
    st.inner.lock().requests.clear();
    StatusCode::NO_CONTENT
}

fn exo_error(status: StatusCode, msg: &str) -> Response {
    let body = json!({"error": {
        "message": msg,
        "type": status.canonical_reason().unwrap_or("Error"),
        "param": null,
        "code": status.as_u16(),
    }});
    (status, Json(body)).into_response()
}

/// What to answer, decided from the rules and directives.
struct Plan {
    mode: Option<String>,
    reply: Option<String>,
    delay: Option<f64>,
    retry_after: Option<f64>,
}

fn plan_for(st: &AppState, last_user: &str, first_user: &str, all_user: &str) -> Plan {
    let mut inner = st.inner.lock();
    let seen = {
        let c = inner.seen.entry(first_user.to_string()).or_insert(0);
        *c += 1;
        *c
    };
    let idx = inner.rules.iter().position(|r| {
        r.pattern
            .as_deref()
            .map(|p| last_user.contains(p))
            .unwrap_or(true)
    });
    if let Some(i) = idx {
        let r = inner.rules[i].clone();
        if let Some(t) = r.times {
            if t <= 1 {
                inner.rules.remove(i);
            } else {
                inner.rules[i].times = Some(t - 1);
            }
        }
        return Plan {
            mode: r.mode,
            reply: r.reply,
            delay: r.delay,
            retry_after: r.retry_after,
        };
    }
    drop(inner);
    // Directive in any user message: [lab:MODE] or [lab:MODE*N] (N counted per conversation start)
    if let Some(start) = all_user.find("[lab:") {
        if let Some(end) = all_user[start..].find(']') {
            let spec = &all_user[start + 5..start + end];
            let (mode, limit) = match spec.split_once('*') {
                Some((m, n)) => (m, n.trim().parse::<u32>().ok()),
                None => (spec, None),
            };
            if limit.map(|n| seen <= n).unwrap_or(true) {
                return Plan {
                    mode: Some(mode.trim().to_string()),
                    reply: None,
                    delay: None,
                    retry_after: Some(0.0),
                };
            }
        }
    }
    Plan {
        mode: None,
        reply: None,
        delay: None,
        retry_after: None,
    }
}

fn looks_like_decide(all_text: &str) -> bool {
    let t = all_text.to_lowercase();
    t.contains("json") && t.contains("decision")
}

fn default_decision(last_user: &str) -> Value {
    let t = last_user.to_lowercase();
    let bad = ["unhealthy", "failed", "down", "not ready", "error"];
    match bad.iter().find(|w| t.contains(*w)) {
        Some(w) => {
            json!({"decision": "wait", "reason": format!("the context reports something {w}; wait until it is resolved")})
        }
        None => {
            json!({"decision": "proceed", "reason": "nothing in the context argues against it"})
        }
    }
}

fn default_prose(last_user: &str, all_text: &str) -> String {
    let lower = all_text.to_lowercase();
    if lower.contains("log") && lower.contains("service") {
        let last_line = last_user
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        return format!(
            "Most likely cause: the last error in the log (`{}`). Check the service configuration and its dependencies, then redeploy.",
            last_line.chars().take(120).collect::<String>()
        );
    }
    let first: String = last_user.chars().take(60).collect();
    format!("Lab stand-in answer: noted \"{first}\".")
}

async fn chat(State(st): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let _ = headers;
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"detail": [{"loc": ["body"], "msg": format!("JSON decode error: {e}"), "type": "json_invalid"}]})),
            )
                .into_response()
        }
    };
    st.inner
        .lock()
        .requests
        .push(json!({"path": "/v1/chat/completions", "body": req.clone()}));
    let mut missing = Vec::new();
    for f in ["model", "messages"] {
        if req.get(f).is_none() {
            missing.push(json!({"loc": ["body", f], "msg": "Field required", "type": "missing"}));
        }
    }
    if !missing.is_empty() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"detail": missing})),
        )
            .into_response();
    }
    let model = req["model"].as_str().unwrap_or("").to_string();
    let messages = req["messages"].as_array().cloned().unwrap_or_default();
    let text_of = |m: &Value| {
        m.get("content")
            .and_then(|c| c.as_str())
            .unwrap_or("")
            .to_string()
    };
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(|r| r.as_str()) == Some("user"))
        .map(text_of)
        .unwrap_or_default();
    let all_text: String = messages.iter().map(text_of).collect::<Vec<_>>().join("\n");
    let stream = req.get("stream").and_then(|s| s.as_bool()).unwrap_or(false);

    let user_texts: Vec<String> = messages
        .iter()
        .filter(|m| m.get("role").and_then(|r| r.as_str()) == Some("user"))
        .map(text_of)
        .collect();
    let first_user = user_texts.first().cloned().unwrap_or_default();
    let plan = plan_for(&st, &last_user, &first_user, &user_texts.join("\n"));
    let mode = plan.mode.as_deref().unwrap_or("");
    if mode == "unknown_model" || !st.models.contains(&model) {
        return exo_error(
            StatusCode::NOT_FOUND,
            &format!("No instance found for model {model}"),
        );
    }
    match mode {
        "loading_503" => {
            let mut r = (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}})),
            )
                .into_response();
            let ra = plan.retry_after.unwrap_or(1.0);
            r.headers_mut()
                .insert(header::RETRY_AFTER, format!("{ra}").parse().expect("header value"));
            return r;
        }
        "detail_error" => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"detail": format!("Unsupported model: {model} for inference engine MLXDynamicShardInferenceEngine")})),
            )
                .into_response()
        }
        "error_string" => {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid request: lab says no"}))).into_response()
        }
        // A slow stream sends its headers and a keep-alive first, then stalls (like exo v1 in prefill).
        "slow" if !stream => {
            tokio::time::sleep(Duration::from_secs_f64(plan.delay.unwrap_or(2.0))).await;
        }
        "slow" => {}
        _ => {
            if let Some(d) = plan.delay {
                tokio::time::sleep(Duration::from_secs_f64(d)).await;
            }
        }
    }

    let decision = default_decision(&first_user);
    let text = match (plan.reply.clone(), mode) {
        (Some(r), _) => r,
        (None, "valid_json") => decision.to_string(),
        (None, "wrapped_json") => format!(
            "Sure! Here is my assessment:\n```json\n{}\n```\nLet me know if you need more.",
            serde_json::to_string_pretty(&decision).unwrap_or_default()
        ),
        (None, "invalid_json") => {
            json!({"decision": "deploy postgresql first", "reason": "order matters"}).to_string()
        }
        (None, "garbage") => {
            "As an AI language model I think the deployment is probably fine, maybe.".to_string()
        }
        _ if looks_like_decide(&all_text) => decision.to_string(),
        _ => default_prose(&last_user, &all_text),
    };

    let id = format!("{:032x}", rand::random::<u128>());
    let created = chrono::Utc::now().timestamp();
    let usage = json!({"prompt_tokens": all_text.split_whitespace().count(), "completion_tokens": text.split_whitespace().count(),
        "total_tokens": all_text.split_whitespace().count() + text.split_whitespace().count()});
    if !stream {
        let full = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        });
        let s = full.to_string();
        if mode == "cut_body" {
            // exo v1 sends 200 before generating; a failure then cuts the body.
            let cut = s[..s.len() / 2].to_string();
            return ([(header::CONTENT_TYPE, "application/json")], cut).into_response();
        }
        return ([(header::CONTENT_TYPE, "application/json")], s).into_response();
    }

    // Streaming, exo v1 style.
    let mut parts: Vec<String> = Vec::new();
    parts.push(": keep-alive\n\n".to_string());
    let chunk = |delta: Value, finish: Option<&str>, usage: Option<&Value>| {
        let mut c = json!({"id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        if let Some(u) = usage {
            c["usage"] = u.clone();
        }
        format!("data: {c}\n\n")
    };
    let words: Vec<String> = split_keep_spaces(&text);
    let n = words.len();
    for (i, w) in words.iter().enumerate() {
        let last = i + 1 == n;
        parts.push(chunk(
            json!({"role": "assistant", "content": w}),
            if last { Some("stop") } else { None },
            if last { Some(&usage) } else { None },
        ));
        if mode == "keepalive" || i == n / 2 {
            parts.push(": prefill_progress {\"processed\": 1}\n\n".to_string());
        }
    }
    if n == 0 {
        parts.push(chunk(
            json!({"role": "assistant", "content": ""}),
            Some("stop"),
            Some(&usage),
        ));
    }
    let cut = mode == "cut_stream";
    match mode {
        "error_event" => {
            parts.truncate(2.min(parts.len()));
            parts.push("data: {\"error\":{\"message\":\"runner crashed\",\"type\":\"InternalServerError\",\"code\":500}}\n\n".into());
            parts.push("data: [DONE]\n\n".into());
        }
        "no_done" => {}
        "cut_stream" => {
            let keep = (parts.len() / 2).max(1);
            parts.truncate(keep);
        }
        _ => parts.push("data: [DONE]\n\n".into()),
    }
    let pause = if mode == "keepalive" {
        Duration::from_millis(30)
    } else {
        Duration::ZERO
    };
    let stall = if mode == "slow" {
        Duration::from_secs_f64(plan.delay.unwrap_or(2.0))
    } else {
        Duration::ZERO
    };
    let timed: Vec<(Duration, String)> = parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            (
                if i == 1 {
                    pause + stall
                } else if i > 1 {
                    pause
                } else {
                    Duration::ZERO
                },
                p,
            )
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

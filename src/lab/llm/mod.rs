//! LLM stand-in: an OpenAI-compatible chat server on loopback that behaves like one of the real
//! servers, chosen by `lab.setup.llm` (`ralf-sh lab --llm exo|ollama|llamacpp`, default exo):
//! - [`exo`]: exo v1 — `/v1/models` is the model catalog (models with no running instance
//!   included), chat needs a running instance (404 "No instance found for model X"), instances in
//!   `/ollama/api/ps` and `/state`, `: keep-alive` comments, `chat.completion` chunk objects,
//!   `reasoning_content`, `response_format` accepted and ignored.
//! - [`ollama`]: Ollama's `/v1` layer — `/v1/models` and `/api/tags` list pulled models, `/api/ps`
//!   the loaded ones; a pulled model loads on first use (silence before the first token, no
//!   keep-alives), 404 "model 'x' not found", `reasoning` chunks, `response_format` enforced.
//! - [`llamacpp`]: llama.cpp's llama-server — one model, `model` ignored, `/health` (503 "Loading
//!   model" on every route while loading), silence before the first token, `reasoning_content`,
//!   `response_format` (json_object / json_schema) enforced, other types rejected with 400.
//!
//! Answers are scriptable per request pattern (substring of the last user message) through a
//! control API outside `/v1`:
//! - `POST /_lab/script` `{"rules": [{"match": "deploy", "reply": "text"} | {"match": "x", "mode": "garbage",
//!   "times": 1, "delay": 0.2, "retry_after": 0}]}` appends rules (first match wins; `times` limits how often
//!   a rule applies); `DELETE /_lab/script` clears them.
//! - `GET /_lab/requests`: every request received (`{path, body}`); `DELETE /_lab/requests` clears the list.
//! - `POST /_lab/load {"model": "m", "delay": 0}`: place an instance (exo), load the model (Ollama), or
//!   load the server's model (llama.cpp: `/health` 503 for `delay` seconds first).
//!   `POST /_lab/unload {"model": "m"}`: the reverse (llama.cpp: loading until the next load).
//! - `POST /_lab/reasoning {"mode": "off" | "switchable" | "always", "words": 300}`: make the model a
//!   reasoning model. `switchable` thinks unless the request turns thinking off the way this server
//!   understands (exo: `enable_thinking: false` / `reasoning_effort: "none"`; Ollama:
//!   `reasoning_effort: "none"`; llama.cpp: `chat_template_kwargs.enable_thinking: false` /
//!   `reasoning_effort: "none"`); `always` thinks regardless (like DeepSeek-R1 distills). Thinking
//!   words count against `max_tokens`: a budget spent thinking leaves `content` empty
//!   (`finish_reason: "length"`).
//!
//! A directive in a user message does the same without the control API (used by script tests
//! and doc examples): `[lab:MODE]` applies to every request of that conversation, `[lab:MODE*N]` only to
//! the first N requests whose first user message is exactly the same.
//!
//! Modes: `valid_json`, `wrapped_json` (JSON inside prose and a code fence), `invalid_json` (JSON that
//! fails the decision schema), `garbage`, `slow` (waits `delay` s, default 2, then answers: exo sends a
//! keep-alive first, Ollama and llama.cpp send nothing), `unknown_model` (404), `loading_503` (503 llama.cpp
//! "Loading model" with `Retry-After`), `cut_body` (200 whose JSON body breaks off), `cut_stream` (stream
//! that breaks off without the last chunk), `no_done` (legacy exo: stream ends without `[DONE]`),
//! `keepalive` (stream with several keep-alive comments), `error_event` (the server's mid-stream error:
//! exo `data: {"error"..}` + `[DONE]`, llama.cpp `data: {"error"..}`, Ollama: the stream just ends),
//! `detail_error` (legacy exo 400 `{"detail": ".."}`), `error_string` (Ollama-style 400 `{"error": ".."}`),
//! `think` (this request thinks, as `always`), `reject_response_format` (400 naming `response_format`,
//! as servers without JSON mode answer), `stall` (silent for `delay` s after the first token).
//!
//! Default answers: a valid decision JSON for decide-like prompts (`wait` when the context mentions
//! something unhealthy/failed/down, else `proceed`) and a short prose sentence otherwise.

mod answer;
mod control;
pub mod exo;
pub mod llamacpp;
pub mod ollama;

use super::LlmProfile;
use crate::error::{RResult, RalfError};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The default model id of the exo profile (exo v1 ids are Hugging Face repo ids).
pub const DEFAULT_MODEL: &str = exo::DEFAULT_MODEL;

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
    "think",
    "reject_response_format",
    "stall",
];

/// How the stand-in's model thinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reasoning {
    /// Not a reasoning model.
    #[default]
    Off,
    /// Thinks unless the request turns thinking off the way the server understands.
    Switchable,
    /// Thinks whatever the request says.
    Always,
}

#[derive(Default)]
struct Inner {
    rules: Vec<Rule>,
    requests: Vec<Value>,
    /// Requests seen per exact last user message (for `[lab:MODE*N]`).
    seen: HashMap<String, u32>,
    /// exo: models with a running instance; Ollama: loaded models; llama.cpp: {the model} when ready.
    loaded: BTreeSet<String>,
    /// llama.cpp: loading until then (`None` with an empty `loaded` = loading until told).
    loading_until: Option<Instant>,
    reasoning: Reasoning,
    reasoning_words: usize,
}

/// Options of a stand-in started alone.
#[derive(Debug, Clone)]
pub struct LlmLabOptions {
    pub profile: LlmProfile,
    /// exo: the catalog; Ollama: the pulled models; llama.cpp: the one model (first entry).
    /// Empty: the profile's defaults.
    pub models: Vec<String>,
    /// Models that can answer at start (exo: instances; Ollama: loaded). `None`: the first model.
    pub loaded: Option<Vec<String>>,
    pub reasoning: Reasoning,
    /// Ollama: seconds a pulled model takes to load on first use (silence before the first token).
    pub load_delay: f64,
}

impl Default for LlmLabOptions {
    fn default() -> Self {
        LlmLabOptions {
            profile: LlmProfile::Exo,
            models: Vec::new(),
            loaded: None,
            reasoning: Reasoning::Off,
            load_delay: 0.2,
        }
    }
}

impl LlmLabOptions {
    pub fn profile(profile: LlmProfile) -> Self {
        LlmLabOptions {
            profile,
            ..Self::default()
        }
    }
}

#[derive(Clone)]
struct AppState {
    inner: Arc<Mutex<Inner>>,
    profile: LlmProfile,
    models: Arc<Vec<String>>,
    node_id: String,
    load_delay: f64,
}

impl AppState {
    fn ready(&self, model: &str) -> bool {
        self.inner.lock().loaded.contains(model)
    }
    /// llama.cpp: still loading?
    fn loading(&self) -> bool {
        let mut i = self.inner.lock();
        if let Some(t) = i.loading_until {
            if Instant::now() >= t {
                i.loading_until = None;
                let m = self.models[0].clone();
                i.loaded.insert(m);
            }
        }
        i.loaded.is_empty()
    }
}

/// A running stand-in; dropping it stops the server.
pub struct LlmLab {
    pub url: String,
    /// The model the run config names (the profile's first model).
    pub model: String,
    pub profile: LlmProfile,
    state: AppState,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LlmLab {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LlmLab {
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
    /// Make a model answer now (exo instance, Ollama load, llama.cpp loaded).
    pub fn load(&self, model: &str) {
        load_model(&self.state, model, 0.0);
    }
    /// The reverse of [`LlmLab::load`].
    pub fn unload(&self, model: &str) {
        unload_model(&self.state, Some(model));
    }
    /// Make the model a reasoning model (see the module doc).
    pub fn set_reasoning(&self, r: Reasoning) {
        self.state.inner.lock().reasoning = r;
    }
}

fn load_model(st: &AppState, model: &str, delay: f64) {
    let mut i = st.inner.lock();
    if st.profile == LlmProfile::Llamacpp {
        i.loaded.clear();
        if delay > 0.0 {
            i.loading_until = Some(Instant::now() + Duration::from_secs_f64(delay));
            return;
        }
        i.loading_until = None;
        i.loaded.insert(st.models[0].clone());
        return;
    }
    i.loaded.insert(model.to_string());
}

fn unload_model(st: &AppState, model: Option<&str>) {
    let mut i = st.inner.lock();
    match (st.profile, model) {
        (LlmProfile::Llamacpp, _) | (_, None) => {
            i.loaded.clear();
            i.loading_until = None;
        }
        (_, Some(m)) => {
            i.loaded.remove(m);
        }
    }
}

fn check_rule(r: &Rule) -> RResult<()> {
    if let Some(m) = &r.mode {
        if !MODES.contains(&m.as_str()) {
            let hint = crate::text::did_you_mean(m, MODES.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(RalfError::invalid(format!(
                "llm lab: unknown mode `{m}`{hint}"
            )));
        }
    }
    if r.reply.is_none() && r.mode.is_none() {
        return Err(RalfError::invalid(
            "llm lab: a rule needs `reply` or `mode`",
        ));
    }
    Ok(())
}

/// Start a stand-in on 127.0.0.1 with an ephemeral port.
pub async fn spawn(opts: LlmLabOptions) -> RResult<LlmLab> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| RalfError::io(format!("llm lab: cannot bind 127.0.0.1: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| RalfError::io(format!("llm lab: {e}")))?;
    let models: Vec<String> = if opts.models.is_empty() {
        match opts.profile {
            LlmProfile::Exo => exo::default_models(),
            LlmProfile::Ollama => ollama::default_models(),
            LlmProfile::Llamacpp => llamacpp::default_models(),
        }
    } else {
        opts.models.clone()
    };
    let model = models[0].clone();
    let loaded = opts.loaded.clone().unwrap_or_else(|| vec![model.clone()]);
    let inner = Inner {
        loaded: loaded.into_iter().collect(),
        reasoning: opts.reasoning,
        reasoning_words: 300,
        ..Inner::default()
    };
    let state = AppState {
        inner: Arc::new(Mutex::new(inner)),
        profile: opts.profile,
        models: Arc::new(models),
        node_id: format!("12D3KooWLab{:08x}", rand::random::<u32>()),
        load_delay: opts.load_delay,
    };
    let control = Router::new()
        .route(
            "/_lab/script",
            post(control::add_script).delete(control::clear_script),
        )
        .route(
            "/_lab/requests",
            get(control::list_requests).delete(control::clear_requests),
        )
        .route("/_lab/load", post(control::load))
        .route("/_lab/unload", post(control::unload))
        .route("/_lab/reasoning", post(control::reasoning))
        .route("/v1/chat/completions", post(chat));
    let app = match opts.profile {
        LlmProfile::Exo => exo::routes(control),
        LlmProfile::Ollama => ollama::routes(control),
        LlmProfile::Llamacpp => llamacpp::routes(control, state.clone()),
    }
    .with_state(state.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(LlmLab {
        url: format!("http://{addr}"),
        model,
        profile: opts.profile,
        state,
        task,
    })
}

/// Start the stand-in of `lab.setup.llm` and add its key (`exo`, kept for every profile) to
/// `lab.info`.
pub async fn start(lab: &mut super::Lab) -> RResult<()> {
    let s = spawn(LlmLabOptions::profile(lab.setup.llm)).await?;
    let name = match s.profile {
        LlmProfile::Exo => "exo",
        LlmProfile::Ollama => "ollama",
        LlmProfile::Llamacpp => "llamacpp",
    };
    lab.info.insert(
        "exo".into(),
        json!({"url": s.url, "model": s.model, "profile": name}),
    );
    lab.guards.push(Box::new(s));
    Ok(())
}

/// An OpenAI-style error body `{"error": {message, type, param, code}}`.
fn openai_error(status: StatusCode, msg: &str, ty: &str, code: Value) -> Response {
    let body = json!({"error": {"message": msg, "type": ty, "param": null, "code": code}});
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

/// An instance of a JSON schema, as a grammar-constrained model would produce one: `decision`
/// (when the schema has the decision's shape) fills in the planned decision.
fn instance_of(schema: &Value, decision: &Value) -> Value {
    match schema.get("type").and_then(|t| t.as_str()) {
        Some("object") | None if schema.get("properties").is_some() => {
            let mut out = serde_json::Map::new();
            let props = schema["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for (k, p) in props {
                let v = match decision.get(&k) {
                    Some(d)
                        if p.get("enum")
                            .and_then(|e| e.as_array())
                            .map(|e| e.contains(d))
                            .unwrap_or(true) =>
                    {
                        d.clone()
                    }
                    _ => instance_of(&p, &Value::Null),
                };
                out.insert(k, v);
            }
            Value::Object(out)
        }
        _ if schema.get("enum").is_some() => schema["enum"][0].clone(),
        Some("string") => json!("lab"),
        Some("integer") | Some("number") => json!(0),
        Some("boolean") => json!(false),
        Some("array") => json!([]),
        _ => json!({}),
    }
}

/// What one chat request asked for, as the handlers need it.
pub(crate) struct Asked {
    pub model: String,
    pub stream: bool,
    pub max_tokens: Option<usize>,
}

/// A finished answer, before the profile shapes it.
pub(crate) struct Answer {
    pub text: String,
    pub reasoning: String,
    pub finish: &'static str,
    pub usage: Value,
    pub mode: String,
    pub delay: Option<f64>,
}

async fn chat(State(st): State<AppState>, body: axum::body::Bytes) -> Response {
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return profile_invalid(&st, &format!("JSON decode error: {e}"), "body"),
    };
    st.inner
        .lock()
        .requests
        .push(json!({"path": "/v1/chat/completions", "body": req.clone()}));
    if st.profile == LlmProfile::Llamacpp && st.loading() {
        return llamacpp::loading_response();
    }
    for f in ["model", "messages"] {
        if req.get(f).is_none() && !(f == "model" && st.profile == LlmProfile::Llamacpp) {
            return profile_invalid(&st, "Field required", f);
        }
    }
    // Field checks each real server makes.
    if let Some(resp) = match st.profile {
        LlmProfile::Exo => None,
        LlmProfile::Ollama => ollama::check_request(&req),
        LlmProfile::Llamacpp => llamacpp::check_request(&req),
    } {
        return resp;
    }
    let asked = Asked {
        model: req["model"].as_str().unwrap_or("").to_string(),
        stream: req.get("stream").and_then(|s| s.as_bool()).unwrap_or(false),
        max_tokens: req
            .get("max_tokens")
            .and_then(|m| m.as_u64())
            .map(|m| m as usize),
    };
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
    let user_texts: Vec<String> = messages
        .iter()
        .filter(|m| m.get("role").and_then(|r| r.as_str()) == Some("user"))
        .map(text_of)
        .collect();
    let first_user = user_texts.first().cloned().unwrap_or_default();
    let plan = plan_for(&st, &last_user, &first_user, &user_texts.join("\n"));
    let mode = plan.mode.clone().unwrap_or_default();

    // Is the model there? (each server says it its own way)
    let known = match st.profile {
        LlmProfile::Exo => mode != "unknown_model" && st.ready(&asked.model),
        LlmProfile::Ollama => mode != "unknown_model" && st.models.contains(&asked.model),
        LlmProfile::Llamacpp => true, // single-model server: `model` is not checked
    };
    if !known {
        return match st.profile {
            LlmProfile::Ollama => ollama::not_found(&asked.model),
            _ => exo::not_found(&asked.model),
        };
    }
    match mode.as_str() {
        "loading_503" => {
            let mut r = llamacpp::loading_response();
            let ra = plan.retry_after.unwrap_or(1.0);
            r.headers_mut().insert(
                header::RETRY_AFTER,
                format!("{ra}").parse().expect("header value"),
            );
            return r;
        }
        "detail_error" => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"detail": format!("Unsupported model: {} for inference engine MLXDynamicShardInferenceEngine", asked.model)})),
            )
                .into_response()
        }
        "error_string" => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid request: lab says no"})),
            )
                .into_response()
        }
        "reject_response_format" if req.get("response_format").is_some() => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                "Unrecognized request argument supplied: response_format",
                "invalid_request_error",
                Value::Null,
            )
        }
        _ => {}
    }
    // Ollama loads a pulled model on first use: nothing is sent meanwhile.
    if st.profile == LlmProfile::Ollama && !st.ready(&asked.model) {
        tokio::time::sleep(Duration::from_secs_f64(st.load_delay)).await;
        st.inner.lock().loaded.insert(asked.model.clone());
    }
    // Silence before the first token: exo sends a keep-alive first (see exo::stream), the
    // others nothing at all, not even headers.
    if mode == "slow" && (!asked.stream || st.profile != LlmProfile::Exo) {
        tokio::time::sleep(Duration::from_secs_f64(plan.delay.unwrap_or(2.0))).await;
    } else if mode != "slow" && mode != "stall" {
        if let Some(d) = plan.delay {
            tokio::time::sleep(Duration::from_secs_f64(d)).await;
        }
    }

    let decision = default_decision(&first_user);
    let mut text = match (plan.reply.clone(), mode.as_str()) {
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
    // Servers that enforce `response_format` make the model answer in shape.
    let enforced = match st.profile {
        LlmProfile::Exo => None,
        LlmProfile::Ollama => ollama::enforced_schema(&req),
        LlmProfile::Llamacpp => llamacpp::enforced_schema(&req),
    };
    if let Some(schema) = enforced {
        if serde_json::from_str::<Value>(&text)
            .map(|v| !v.is_object())
            .unwrap_or(true)
            || schema.get("properties").is_some()
        {
            let basis = serde_json::from_str::<Value>(&text).unwrap_or(decision.clone());
            text = instance_of(&schema, &basis).to_string();
        }
    }
    // Thinking, and the token budget it eats.
    let (reasoning_mode, words) = {
        let i = st.inner.lock();
        (i.reasoning, i.reasoning_words)
    };
    let thinking_off = match st.profile {
        LlmProfile::Exo => exo::thinking_off(&req),
        LlmProfile::Ollama => ollama::thinking_off(&req),
        LlmProfile::Llamacpp => llamacpp::thinking_off(&req),
    };
    let thinks = mode == "think"
        || reasoning_mode == Reasoning::Always
        || (reasoning_mode == Reasoning::Switchable && !thinking_off);
    let mut reasoning = String::new();
    let mut finish = "stop";
    if thinks {
        let budget = asked.max_tokens.unwrap_or(usize::MAX);
        let n = words.min(budget);
        reasoning = (0..n)
            .map(|i| {
                if i == 0 {
                    "Okay, let me think."
                } else {
                    " hmm"
                }
            })
            .collect();
        if n == budget {
            // The whole budget went into thinking: no answer.
            text.clear();
            finish = "length";
        } else {
            let left = budget - n;
            let ws: Vec<&str> = text.split_inclusive(' ').collect();
            if ws.len() > left {
                text = ws[..left].concat();
                finish = "length";
            }
        }
    }
    let prompt_tokens = all_text.split_whitespace().count();
    let completion_tokens = text.split_whitespace().count() + reasoning.split(' ').count();
    let answer = Answer {
        usage: json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}),
        text,
        reasoning,
        finish,
        mode,
        delay: plan.delay,
    };
    if !asked.stream {
        return answer::complete(&st, &asked, &answer);
    }
    answer::stream(&st, &asked, &answer)
}

fn profile_invalid(st: &AppState, msg: &str, field: &str) -> Response {
    match st.profile {
        // FastAPI's 422 `{"detail": [..]}`
        LlmProfile::Exo => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"detail": [{"loc": ["body", field], "msg": msg, "type": "missing"}]})),
        )
            .into_response(),
        LlmProfile::Ollama => openai_error(
            StatusCode::BAD_REQUEST,
            &format!("{field}: {msg}"),
            "invalid_request_error",
            Value::Null,
        ),
        LlmProfile::Llamacpp => llamacpp::error(
            StatusCode::BAD_REQUEST,
            &format!("'{field}' is required"),
            "invalid_request_error",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_instances() {
        // The shape the advisor asks for (a decision enum and a reason).
        let schema = json!({"type": "object", "required": ["decision", "reason"],
            "properties": {"decision": {"type": "string", "enum": ["proceed", "wait", "skip"]},
                           "reason": {"type": "string"}}});
        let d = json!({"decision": "wait", "reason": "r"});
        assert_eq!(instance_of(&schema, &d), d);
        let v = instance_of(&schema, &json!({"decision": "later"}));
        assert_eq!(v["decision"], "proceed");
        assert_eq!(v["reason"], "lab");
    }
}

//! Client for OpenAI-compatible chat servers: exo (legacy v0 and v1), Ollama, llama.cpp `llama-server`.
//!
//! Facts it is built on (see `specs/EXO-DOCKER-SSH.md` section A):
//! - `POST /v1/chat/completions`, streaming or not; `GET /v1/models` is the portable health probe.
//! - exo v1 sends 200 and headers before generating, so a generation error leaves a 200 with a cut or
//!   empty body: such a body is an `unavailable` error, never an empty answer.
//! - Streams: `:` comments (keep-alives every 10 s on exo), multi-line `data:`, `data: [DONE]` or plain
//!   EOF (legacy exo), `{"error": ..}` payloads or `event: error`, chunk objects named `chat.completion`
//!   (exo v1) or `chat.completion.chunk` (everyone else): the object name is never checked.
//! - Errors: `{"error": {"message", ..}}` (OpenAI, exo v1, llama.cpp), `{"error": "text"}` (Ollama
//!   native), `{"detail": "text" | [..]}` (FastAPI 422, legacy exo).
//! - Retries: 408, 409, 429, 5xx and connection errors, exponential backoff, `Retry-After` honoured (≤ 120 s),
//!   `x-should-retry` obeyed. Never other 4xx.
//!
//! Every message content goes through [`crate::redact::redact`] before it leaves the machine.

pub mod advisor;
pub mod parse;
pub mod probe;
pub mod proposal;
mod retry;
pub mod sse;

use parse::{apply_chunk, excerpt, parse_completion};
pub use parse::{error_message, model_ids};
pub use probe::Health;
use retry::Attempt;

use crate::error::{RResult, RalfError};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Longest wait a `Retry-After` header may impose.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// Default wait for the first token of a stream: a cold load of a 7–14B model on Ollama, or the CPU
/// prefill of a long prompt on llama.cpp, takes from tens of seconds to a few minutes with no byte sent.
pub const DEFAULT_FIRST_TOKEN_TIMEOUT: Duration = Duration::from_secs(300);

/// Request fields a server may reject; the client drops one that a 4xx names and remembers that
/// for the rest of the run (per server root).
pub const OPTIONAL_FIELDS: [&str; 4] = [
    "response_format",
    "reasoning_effort",
    "enable_thinking",
    "chat_template_kwargs",
];

/// How to reach the server and how long to wait.
#[derive(Clone)]
pub struct ExoOptions {
    /// Server root, e.g. `http://127.0.0.1:52415` (the API is under `/v1`). A trailing `/v1` is accepted.
    pub url: String,
    /// Exact model id (exo v1 matches it exactly, e.g. `mlx-community/Llama-3.2-3B-Instruct-4bit`).
    pub model: String,
    /// Bearer token; servers that need none get a dummy one.
    pub api_key: Option<String>,
    /// TCP connect timeout (default 5 s).
    pub connect_timeout: Duration,
    /// Streams: longest wait from sending the request to the first token (headers, keep-alives and
    /// prefill included; default 5 min, for a cold model load on Ollama or a long CPU prefill on
    /// llama.cpp, which send nothing at all before the first token).
    pub first_token_timeout: Duration,
    /// Streams, after the first token: longest silence (no byte at all, comments included) before
    /// giving up (default 60 s).
    pub idle_timeout: Duration,
    /// Overall deadline of one call, retries included (default 10 min).
    pub timeout: Duration,
    /// Retries after the first attempt for retryable failures (default 2).
    pub retries: u32,
    /// First backoff delay (doubles each retry, at most 8 s; default 0.5 s).
    pub backoff: Duration,
}

impl std::fmt::Debug for ExoOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExoOptions")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "«set»"))
            .field("connect_timeout", &self.connect_timeout)
            .field("first_token_timeout", &self.first_token_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

impl ExoOptions {
    pub fn new(url: impl Into<String>, model: impl Into<String>) -> Self {
        ExoOptions {
            url: url.into(),
            model: model.into(),
            api_key: None,
            connect_timeout: Duration::from_secs(5),
            first_token_timeout: DEFAULT_FIRST_TOKEN_TIMEOUT,
            idle_timeout: Duration::from_secs(60),
            timeout: Duration::from_secs(600),
            retries: 2,
            backoff: Duration::from_millis(500),
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Message {
            role: role.to_string(),
            content: content.into(),
        }
    }
    pub fn system(c: impl Into<String>) -> Self {
        Self::new("system", c)
    }
    pub fn user(c: impl Into<String>) -> Self {
        Self::new("user", c)
    }
    pub fn assistant(c: impl Into<String>) -> Self {
        Self::new("assistant", c)
    }
}

/// A chat request (the model comes from the client unless overridden).
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u64>,
    pub model: Option<String>,
    /// A JSON schema the answer must follow: sent as `response_format` (OpenAI `json_schema` form;
    /// `json_object` + `schema`, the llama-cpp-python form, when the server rejects that).
    pub json_schema: Option<Value>,
    /// `Some(false)`: ask the server not to think (`reasoning_effort: "none"` for exo, Ollama and
    /// llama.cpp, `enable_thinking: false` for exo, `chat_template_kwargs.enable_thinking: false`
    /// for llama.cpp). Servers that know none of these ignore them.
    pub thinking: Option<bool>,
}

/// The answer of a chat request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatResponse {
    pub text: String,
    /// The model's thinking, apart from the answer (`reasoning_content` on exo and llama.cpp,
    /// `reasoning` on Ollama, `thinking` elsewhere). Never part of `text`.
    pub reasoning: String,
    pub finish_reason: Option<String>,
    pub model: Option<String>,
    pub usage: Option<Value>,
    /// Streams only: comment lines seen (keep-alives).
    pub comments: usize,
}

/// An OpenAI-compatible chat client.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    opts: ExoOptions,
    base: String,
}

impl Client {
    pub fn new(opts: ExoOptions) -> RResult<Client> {
        let base = base_url(&opts.url)?;
        if opts.model.trim().is_empty() {
            return Err(RalfError::config(
                "exo: no model given (llm.model in the config)",
            ));
        }
        let http = crate::clients::http_builder()
            .connect_timeout(opts.connect_timeout)
            .user_agent(concat!("ralf-sh/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RalfError::internal(format!("exo: cannot build HTTP client: {e}")))?;
        Ok(Client { http, opts, base })
    }

    pub fn options(&self) -> &ExoOptions {
        &self.opts
    }

    /// Server root without a trailing slash or `/v1`.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        rb.bearer_auth(self.opts.api_key.as_deref().unwrap_or("ralf-sh"))
    }

    /// Model ids the server offers (`GET /v1/models`).
    pub async fn models(&self) -> RResult<Vec<String>> {
        let v = self.get_json("/v1/models", self.opts.timeout, true).await?;
        Ok(model_ids(&v))
    }

    async fn get_json(&self, path: &str, limit: Duration, retry: bool) -> RResult<Value> {
        let url = format!("{}{path}", self.base);
        let deadline = Instant::now() + limit;
        let retries = if retry { self.opts.retries } else { 0 };
        self.with_retries(&format!("GET {path}"), deadline, retries, true, || async {
            let resp = self
                .auth(self.http.get(&url))
                .timeout(remaining(deadline))
                .send()
                .await
                .map_err(|e| self.send_error(e, &url))?;
            let resp = self.check_status(resp, &url).await?;
            read_json_body(resp, &url).await.map_err(Attempt::from)
        })
        .await
    }

    /// Non-streaming chat completion.
    pub async fn chat(&self, req: &ChatRequest) -> RResult<ChatResponse> {
        self.chat_inner(req, true).await
    }

    async fn chat_inner(&self, req: &ChatRequest, retry_connect: bool) -> RResult<ChatResponse> {
        let url = format!("{}/v1/chat/completions", self.base);
        let mut dropped = 0;
        loop {
            let body = self.request_body(req, false);
            let deadline = Instant::now() + self.opts.timeout;
            let r = self
                .with_retries(
                    "chat completion",
                    deadline,
                    self.opts.retries,
                    retry_connect,
                    || async {
                        let resp = self
                            .auth(self.http.post(&url))
                            .json(&body)
                            .timeout(remaining(deadline))
                            .send()
                            .await
                            .map_err(|e| self.send_error(e, &url))?;
                        let resp = self.check_status(resp, &url).await?;
                        let v = read_json_body(resp, &url).await?;
                        parse_completion(&v, &url).map_err(Attempt::from)
                    },
                )
                .await;
            match r {
                Err(e) if dropped < OPTIONAL_FIELDS.len() && self.drop_rejected(&e, &body) => {
                    dropped += 1;
                }
                r => return self.explain_unknown_model(r, req).await,
            }
        }
    }

    /// Streaming chat completion: `on_delta` gets each piece of text as it arrives; the whole text is
    /// returned. Until the first token `first_token_timeout` applies (headers, keep-alives and
    /// prefill included); after it, silence longer than `idle_timeout` (no byte, not even a
    /// keep-alive comment) fails with `timeout`. `timeout` bounds the whole call.
    pub async fn chat_stream(
        &self,
        req: &ChatRequest,
        on_delta: impl FnMut(&str),
    ) -> RResult<ChatResponse> {
        self.chat_stream_inner(req, true, on_delta).await
    }

    /// Streaming chat that does not retry connection failures (the advisor falls back at once when
    /// the server is down). Streaming lets the idle timeout catch a server that went silent, while
    /// exo's keep-alives keep a slow but live generation going.
    pub async fn chat_stream_fail_fast(&self, req: &ChatRequest) -> RResult<ChatResponse> {
        self.chat_stream_inner(req, false, |_| {}).await
    }

    async fn chat_stream_inner(
        &self,
        req: &ChatRequest,
        retry_connect: bool,
        mut on_delta: impl FnMut(&str),
    ) -> RResult<ChatResponse> {
        let url = format!("{}/v1/chat/completions", self.base);
        let started = Instant::now();
        let deadline = started + self.opts.timeout;
        let first_deadline = started + self.opts.first_token_timeout;
        let idle = self.opts.idle_timeout;
        let first_token_error = |received: usize| {
            RalfError::timeout(format!(
                "exo: no token from {url} within {} (first_token_timeout; a cold model load or a long prefill may need more)",
                crate::text::human_duration(self.opts.first_token_timeout)
            ))
            .with("received_bytes", received)
            .with("url", &url)
        };
        // Retries only until the response headers arrived; once text flowed, a failure is final.
        // A 4xx naming an optional field drops that field and asks again (once per field).
        let mut dropped = 0;
        let resp = loop {
            let body = self.request_body(req, true);
            let r = self
                .with_retries(
                    "chat completion stream",
                    deadline,
                    self.opts.retries,
                    retry_connect,
                    || async {
                        // Ollama and llama.cpp send the headers only with the first token.
                        match tokio::time::timeout(
                            remaining(first_deadline.min(deadline)),
                            self.auth(self.http.post(&url)).json(&body).send(),
                        )
                        .await
                        {
                            Err(_) => Err(Attempt::from(first_token_error(0))),
                            Ok(r) => {
                                let resp = r.map_err(|e| self.send_error(e, &url))?;
                                self.check_status(resp, &url).await
                            }
                        }
                    },
                )
                .await;
            match r {
                Err(e) if dropped < OPTIONAL_FIELDS.len() && self.drop_rejected(&e, &body) => {
                    dropped += 1;
                }
                r => break r,
            }
        };
        let resp = self.explain_unknown_model(resp, req).await?;
        let is_json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| ct.starts_with("application/json"))
            .unwrap_or(false);
        if is_json {
            // A server (or proxy) that ignored `stream: true` and answered in one piece.
            let v = read_json_body(resp, &url).await?;
            let r = parse_completion(&v, &url)?;
            if !r.text.is_empty() {
                on_delta(&r.text);
            }
            return Ok(r);
        }
        let mut out = ChatResponse::default();
        let mut parser = sse::SseParser::new();
        let mut stream = resp.bytes_stream();
        let mut received = 0usize;
        let mut done = false;
        let mut events_seen = 0usize;
        let mut first_token = false;
        loop {
            let left = remaining(deadline);
            if left.is_zero() {
                return Err(RalfError::timeout(format!(
                    "exo: stream from {url} did not finish within {}",
                    crate::text::human_duration(self.opts.timeout)
                )));
            }
            // Before the first token the first-token limit applies (keep-alives do not extend it).
            let (wait, first_phase) = if first_token {
                (idle.min(left), false)
            } else {
                let f = remaining(first_deadline);
                if f.is_zero() {
                    return Err(first_token_error(received));
                }
                (f.min(left), true)
            };
            let next = tokio::time::timeout(wait, stream.next()).await;
            let eof = matches!(next, Ok(None));
            let events = match next {
                Err(_) if first_phase && remaining(first_deadline).is_zero() => {
                    return Err(first_token_error(received))
                }
                Err(_) if !first_phase && idle <= left => {
                    return Err(RalfError::timeout(format!(
                        "exo: stream from {url} was silent for {} (idle timeout; not even a keep-alive)",
                        crate::text::human_duration(idle)
                    ))
                    .with("received_bytes", received))
                }
                Err(_) => continue, // deadline reached: reported at the top of the loop
                Ok(None) => parser.finish(),
                Ok(Some(Err(e))) => {
                    return Err(RalfError::unavailable(format!(
                        "exo: stream from {url} was cut off after {received} bytes: {}",
                        error_chain(&e)
                    ))
                    .with("received_bytes", received))
                }
                Ok(Some(Ok(bytes))) => {
                    received += bytes.len();
                    parser.push(&bytes)
                }
            };
            for ev in events {
                events_seen += 1;
                if ev.data.trim_start().starts_with("[DONE]") {
                    done = true;
                    break;
                }
                if ev.event == "error" && serde_json::from_str::<Value>(&ev.data).is_err() {
                    return Err(RalfError::unavailable(format!(
                        "exo: the server reported an error mid-stream: {}",
                        excerpt(&ev.data)
                    ))
                    .with("url", &url));
                }
                let v: Value = serde_json::from_str(&ev.data).map_err(|e| {
                    RalfError::unavailable(format!(
                        "exo: stream from {url} sent an event that is not JSON ({e}): {}",
                        excerpt(&ev.data)
                    ))
                })?;
                if ev.event == "error" || v.get("error").is_some() {
                    let msg = error_message(&v).unwrap_or_else(|| excerpt(&ev.data));
                    return Err(RalfError::unavailable(format!(
                        "exo: the server reported an error mid-stream: {msg}"
                    ))
                    .with("url", &url));
                }
                apply_chunk(&v, &mut out, &mut on_delta);
                if !out.text.is_empty() || !out.reasoning.is_empty() || out.finish_reason.is_some()
                {
                    first_token = true;
                }
            }
            if done || eof {
                break;
            }
        }
        if events_seen == 0 {
            return Err(RalfError::unavailable(format!(
                "exo: stream from {url} ended without any data ({received} bytes, {} comment lines)",
                parser.comments
            )));
        }
        if !done && out.finish_reason.is_none() {
            // Legacy exo ends without [DONE] but with a finish_reason; a stream with neither broke
            // off (Ollama ends a stream that way when generation fails mid-way).
            return Err(RalfError::unavailable(format!(
                "exo: stream from {url} ended without a finish_reason or [DONE] after {received} bytes (generation failed on the server?); partial text: {}",
                excerpt(&out.text)
            ))
            .with("received_bytes", received));
        }
        out.comments = parser.comments;
        Ok(out)
    }

    /// The fields this server rejected earlier in the run.
    fn rejected(&self) -> std::collections::HashSet<String> {
        rejected_fields()
            .lock()
            .get(&self.base)
            .cloned()
            .unwrap_or_default()
    }

    /// A 400/422 that names an optional field of `body` (or a 500 that does: llama-cpp-python's
    /// error handler turns its request validation errors into 500s): remember it and say so (the
    /// caller asks again without it). `response_format` falls back from `json_schema` to
    /// `json_object` + `schema` first, then goes.
    fn drop_rejected(&self, e: &RalfError, body: &Value) -> bool {
        let status = e.details.get("status").and_then(|s| s.as_u64());
        if !matches!(status, Some(400 | 422 | 500)) {
            return false;
        }
        let msg = e.message.to_lowercase();
        let named = |f: &str| {
            msg.contains(f) || (f == "reasoning_effort" && msg.contains("reasoning value"))
        };
        let Some(field) = OPTIONAL_FIELDS
            .iter()
            .find(|f| body.get(**f).is_some() && named(f))
        else {
            return false;
        };
        let key = if *field == "response_format"
            && body
                .pointer("/response_format/type")
                .and_then(|t| t.as_str())
                == Some("json_schema")
        {
            "response_format:json_schema".to_string()
        } else {
            field.to_string()
        };
        tracing::warn!(
            target: "ralf::exo",
            "{} rejected `{key}` ({}); asking again without it for the rest of the run",
            self.base,
            e.message
        );
        rejected_fields()
            .lock()
            .entry(self.base.clone())
            .or_default()
            .insert(key);
        true
    }

    /// The request body; optional fields the server rejected earlier are left out.
    pub fn request_body(&self, req: &ChatRequest, stream: bool) -> Value {
        let messages: Vec<Value> = req
            .messages
            .iter()
            .map(|m| json!({"role": m.role, "content": crate::redact::redact(&m.content)}))
            .collect();
        let mut body = json!({
            "model": req.model.as_deref().unwrap_or(&self.opts.model),
            "messages": messages,
            "stream": stream,
        });
        if let Some(t) = req.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(m) = req.max_tokens {
            body["max_tokens"] = json!(m);
        }
        let rejected = self.rejected();
        if let Some(schema) = &req.json_schema {
            if !rejected.contains("response_format") {
                body["response_format"] = if rejected.contains("response_format:json_schema") {
                    json!({"type": "json_object", "schema": schema})
                } else {
                    json!({"type": "json_schema", "json_schema": {"name": "answer", "strict": true, "schema": schema}})
                };
            }
        }
        if req.thinking == Some(false) {
            body["reasoning_effort"] = json!("none");
            body["enable_thinking"] = json!(false);
            body["chat_template_kwargs"] = json!({"enable_thinking": false});
        }
        if let Value::Object(m) = &mut body {
            m.retain(|k, _| !rejected.contains(k.as_str()));
        }
        body
    }
}

/// Optional fields each server root rejected in this run.
fn rejected_fields(
) -> &'static parking_lot::Mutex<std::collections::HashMap<String, std::collections::HashSet<String>>>
{
    static R: std::sync::OnceLock<
        parking_lot::Mutex<std::collections::HashMap<String, std::collections::HashSet<String>>>,
    > = std::sync::OnceLock::new();
    R.get_or_init(Default::default)
}

/// `Retry-After`: seconds, or an HTTP date.
pub fn parse_retry_after(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        return (n.is_finite() && n >= 0.0).then(|| Duration::from_secs_f64(n));
    }
    let t = chrono::DateTime::parse_from_rfc2822(s).ok()?;
    let secs = (t.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds();
    Some(Duration::from_millis(secs.max(0) as u64))
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn base_url(url: &str) -> RResult<String> {
    let t = url.trim().trim_end_matches('/');
    let t = t.strip_suffix("/v1").unwrap_or(t);
    let parsed = reqwest::Url::parse(t).map_err(|e| {
        RalfError::config(format!(
            "exo: invalid url `{url}`: {e} (expected e.g. http://127.0.0.1:52415)"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(RalfError::config(format!(
            "exo: url `{url}` must start with http:// or https://"
        )));
    }
    Ok(t.to_string())
}

async fn read_json_body(resp: reqwest::Response, url: &str) -> RResult<Value> {
    let bytes = resp.bytes().await.map_err(|e| {
        RalfError::unavailable(format!(
            "exo: {url} answered 200 but the body was cut off: {}",
            error_chain(&e)
        ))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let text = String::from_utf8_lossy(&bytes);
        RalfError::unavailable(format!(
            "exo: {url} answered 200 but the body is {} ({e}): {}",
            if text.trim().is_empty() {
                "empty"
            } else {
                "not valid JSON (cut off?)"
            },
            excerpt(&text)
        ))
        .with("url", url)
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn base_urls() {
        assert_eq!(base_url("http://h:52415/v1/").unwrap(), "http://h:52415");
        assert_eq!(base_url("http://h:52415").unwrap(), "http://h:52415");
        assert!(base_url("h:52415").is_err() || base_url("ftp://h").is_err());
        assert!(base_url("ftp://h").is_err());
    }
}

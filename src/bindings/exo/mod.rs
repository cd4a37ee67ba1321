//! `exo::` bindings: an OpenAI-compatible LLM (exo, Ollama, llama.cpp) as an **advisor, never the authority**.
//!
//! The deterministic planner (catalog dependency order) decides what is deployed and in which order.
//! Scripts may use `ai.decide(..)` only to hold a service back (`wait`/`skip`) or to explain; they must
//! never reorder or add work because of an answer. `decide` answers are schema-checked; when the model
//! is down, disabled or answers nonsense, the configured fallback answers instead (`source: "fallback"`).
//! Every prompt is scrubbed of registered secrets before it leaves the machine, and every exchange is
//! recorded in the run journal (kind `llm`).

pub(crate) mod fix;

use crate::bindings::{host, AtCall};
use crate::clients::exo::advisor::{self, DecideOptions, Decision};
use crate::clients::exo::{ChatRequest, ChatResponse, Client, ExoOptions, Message};
use crate::error::{RResult, RalfError, RhaiResult};
use crate::host::Host;
use crate::script::bridge::block_on;
use crate::script::decode::{decode, decode_dynamic};
use crate::text::Secs;
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map, NativeCallContext};
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Exo>("Exo");
    engine.register_static_module("exo", exported_module!(exo_mod).into());
    engine.register_global_module(exported_module!(exo_methods).into());
}

/// Default token budget of `suggest_fix` and `propose_fix`: five short lines need about 150 tokens; the rest is room
/// for a model that thinks although asked not to.
pub(crate) const DEFAULT_FIX_TOKENS: u64 = 1024;

/// Default budget (characters) of the log excerpt sent by `suggest_fix`.
pub(crate) const DEFAULT_LOG_BUDGET: usize = 6000;

/// A connection to an OpenAI-compatible server, used as an advisor.
#[derive(Clone)]
pub(crate) struct Exo(Arc<ExoInner>);

struct ExoInner {
    client: Client,
    enabled: bool,
    fallback: String,
    decide: DecideOptions,
    /// After a failed connect, `decide` falls back at once until then (a powered-off host would
    /// otherwise cost a connect timeout per decision).
    down_until: parking_lot::Mutex<Option<Instant>>,
}

/// How long `decide` skips a server it could not connect to.
pub(crate) const DOWN_MEMO: Duration = Duration::from_secs(30);

impl std::fmt::Debug for Exo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl Exo {
    fn describe(&self) -> String {
        format!(
            "Exo({}, model {}{})",
            self.0.client.base(),
            self.0.client.options().model,
            if self.0.enabled { "" } else { ", disabled" }
        )
    }
    pub(crate) fn model(&self) -> &str {
        &self.0.client.options().model
    }
    fn require_enabled(&self, what: &str) -> RResult<()> {
        if self.0.enabled {
            Ok(())
        } else {
            Err(RalfError::unavailable(format!(
                "exo: {what}: the advisor is disabled (llm.enabled: false)"
            )))
        }
    }
    /// Outer safety limit for block_on (the client enforces its own deadline first).
    fn limit(&self) -> Duration {
        self.0.client.options().timeout + Duration::from_secs(5)
    }
}

/// Options of `exo::connect`; each overrides the `llm:` section of the config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectOpts {
    pub url: Option<String>,
    pub model: Option<String>,
    pub enabled: Option<bool>,
    pub api_key_env: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub connect_timeout: Option<Secs>,
    pub first_token_timeout: Option<Secs>,
    pub idle_timeout: Option<Secs>,
    pub timeout: Option<Secs>,
    pub fallback_decision: Option<String>,
    pub retries: Option<u32>,
    pub response_format: Option<bool>,
}

/// Options of `ask` and `chat`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AskOpts {
    pub system: Option<String>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u64>,
    pub stream: Option<bool>,
    pub model: Option<String>,
}

fn connect_impl(h: &Host, o: ConnectOpts) -> RResult<Exo> {
    let cfg = h.cfg().llm.clone();
    let url = o
        .url
        .or_else(|| cfg.as_ref().map(|c| c.url.clone()))
        .ok_or_else(|| {
            RalfError::config(
                "exo::connect: no server configured: add an `llm:` section (url, model) to the config or pass #{ url, model }",
            )
        })?;
    let model = o
        .model
        .or_else(|| cfg.as_ref().map(|c| c.model.clone()))
        .ok_or_else(|| {
            RalfError::config(
                "exo::connect: no model given (llm.model in the config, or #{ model })",
            )
        })?;
    let mut opts = ExoOptions::new(url, model);
    let pick = |a: Option<Secs>, b: Option<Secs>| a.or(b).map(|s| s.0);
    if let Some(d) = pick(
        o.connect_timeout,
        cfg.as_ref().and_then(|c| c.connect_timeout),
    ) {
        opts.connect_timeout = d;
    }
    if let Some(d) = pick(
        o.first_token_timeout,
        cfg.as_ref().and_then(|c| c.first_token_timeout),
    ) {
        opts.first_token_timeout = d;
    }
    if let Some(d) = pick(o.idle_timeout, cfg.as_ref().and_then(|c| c.idle_timeout)) {
        opts.idle_timeout = d;
    }
    if let Some(d) = pick(o.timeout, cfg.as_ref().and_then(|c| c.timeout)) {
        opts.timeout = d;
    }
    for (name, d) in [
        ("connect_timeout", opts.connect_timeout),
        ("first_token_timeout", opts.first_token_timeout),
        ("idle_timeout", opts.idle_timeout),
        ("timeout", opts.timeout),
    ] {
        if d.is_zero() {
            return Err(RalfError::invalid(format!(
                "exo::connect: {name} must be greater than 0"
            )));
        }
    }
    if let Some(r) = o.retries {
        opts.retries = r;
    }
    let key_env = o
        .api_key_env
        .or_else(|| cfg.as_ref().and_then(|c| c.api_key_env.clone()));
    let key_file = o
        .api_key_file
        .or_else(|| cfg.as_ref().and_then(|c| c.api_key_file.clone()));
    opts.api_key =
        crate::secrets::load_ref(key_env.as_deref(), key_file.as_deref(), "llm api key")?;
    let enabled = o
        .enabled
        .or_else(|| cfg.as_ref().map(|c| c.enabled))
        .unwrap_or(true);
    let fallback = o
        .fallback_decision
        .or_else(|| cfg.as_ref().and_then(|c| c.fallback_decision.clone()))
        .unwrap_or_else(|| "proceed".to_string());
    advisor::check_fallback(&fallback).map_err(|e| e.context("exo::connect"))?;
    let decide = DecideOptions {
        response_format: o
            .response_format
            .or_else(|| cfg.as_ref().and_then(|c| c.response_format))
            .unwrap_or(true),
        ..DecideOptions::default()
    };
    let client = Client::new(opts)?;
    Ok(Exo(Arc::new(ExoInner {
        client,
        enabled,
        fallback,
        decide,
        down_until: parking_lot::Mutex::new(None),
    })))
}

fn decision_map(d: &Decision) -> Map {
    let mut m = Map::new();
    m.insert("decision".into(), d.decision.clone().into());
    m.insert("reason".into(), crate::redact::redact(&d.reason).into());
    m.insert("source".into(), d.source.clone().into());
    if let Some(e) = &d.error {
        m.insert("error".into(), crate::redact::redact(e).into());
    }
    m
}

pub(crate) fn run_chat(
    h: &Arc<Host>,
    ai: &Exo,
    op: &str,
    req: ChatRequest,
    stream: bool,
) -> RResult<ChatResponse> {
    ai.require_enabled(op)?;
    let client = ai.0.client.clone();
    let r2 = req.clone();
    let resp = if stream {
        block_on(h, &format!("exo {op}"), Some(ai.limit()), async move {
            let mut printed = false;
            let r = client
                .chat_stream(&r2, |piece| {
                    use std::io::Write;
                    printed = true;
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(piece.as_bytes());
                    let _ = out.flush();
                })
                .await;
            if printed {
                println!();
            }
            r
        })
    } else {
        let spinner = h.progress.spinner(format!("asking {}", ai.model()));
        let r = block_on(h, &format!("exo {op}"), Some(ai.limit()), async move {
            client.chat(&r2).await
        });
        drop(spinner);
        r
    };
    let answers: Vec<String> = resp.iter().map(|r| r.text.clone()).collect();
    let mut extra = json!({"stream": stream});
    if let Some(r) = resp.as_ref().ok().filter(|r| !r.reasoning.is_empty()) {
        extra["reasoning"] = json!([r.reasoning]);
    }
    if let Err(e) = &resp {
        extra["error"] = json!(e.message);
    }
    h.record_event(
        "llm",
        advisor::journal_record(
            op,
            req.model.as_deref().unwrap_or(ai.model()),
            &req.messages,
            &answers,
            extra,
        ),
    );
    resp
}

fn ask_impl(ctx: &NativeCallContext, ai: &Exo, prompt: &str, opts: &Map) -> RhaiResult<String> {
    let h = host(ctx)?;
    let o: AskOpts = decode(opts, "ai.ask").at(ctx)?;
    let mut messages = Vec::new();
    if let Some(s) = o.system {
        messages.push(Message::system(s));
    }
    messages.push(Message::user(prompt));
    let req = ChatRequest {
        messages,
        temperature: o.temperature,
        max_tokens: o.max_tokens,
        model: o.model,
        ..Default::default()
    };
    let r = run_chat(&h, ai, "ask", req, o.stream.unwrap_or(false)).at(ctx)?;
    Ok(crate::redact::redact(&r.text))
}

fn chat_impl(ctx: &NativeCallContext, ai: &Exo, messages: Array, opts: &Map) -> RhaiResult<String> {
    let h = host(ctx)?;
    let o: AskOpts = decode(opts, "ai.chat").at(ctx)?;
    let list: Vec<Message> =
        decode_dynamic(&Dynamic::from_array(messages), "ai.chat messages").at(ctx)?;
    if list.is_empty() {
        return Err(RalfError::invalid("ai.chat: messages is empty").into());
    }
    let mut messages = Vec::new();
    if let Some(s) = o.system {
        messages.push(Message::system(s));
    }
    for (i, m) in list.into_iter().enumerate() {
        if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
            return Err(crate::bindings::at(
                ctx,
                RalfError::invalid(format!(
                    "ai.chat: messages[{i}].role must be system, user or assistant, got `{}`",
                    m.role
                )),
            ));
        }
        messages.push(m);
    }
    let req = ChatRequest {
        messages,
        temperature: o.temperature,
        max_tokens: o.max_tokens,
        model: o.model,
        ..Default::default()
    };
    let r = run_chat(&h, ai, "chat", req, o.stream.unwrap_or(false)).at(ctx)?;
    Ok(crate::redact::redact(&r.text))
}

fn decide_impl(
    ctx: &NativeCallContext,
    ai: &Exo,
    question: &str,
    context: Dynamic,
) -> RhaiResult<Map> {
    let h = host(ctx)?;
    let context: Value = rhai::serde::from_dynamic(&context).map_err(|e| {
        crate::bindings::at(
            ctx,
            RalfError::invalid(format!("ai.decide: context is not plain data: {e}")),
        )
    })?;
    if !ai.0.enabled {
        let d = Decision::fallback(
            &ai.0.fallback,
            "advisor unavailable",
            Some("disabled (llm.enabled: false)".into()),
        );
        h.record_event(
            "llm",
            json!({"op": "decide", "question": question, "result": d}),
        );
        return Ok(decision_map(&d));
    }
    let down = *ai.0.down_until.lock();
    if let Some(until) = down.filter(|u| Instant::now() < *u) {
        let left = until.saturating_duration_since(Instant::now());
        let d = Decision::fallback(
            &ai.0.fallback,
            "advisor unavailable",
            Some(format!(
                "{} could not be reached a moment ago; not retried for another {}",
                ai.0.client.base(),
                crate::text::human_duration(left)
            )),
        );
        h.record_event(
            "llm",
            json!({"op": "decide", "question": question, "result": d}),
        );
        return Ok(decision_map(&d));
    }
    let client = ai.0.client.clone();
    let fallback = ai.0.fallback.clone();
    let dopts = ai.0.decide.clone();
    let q = question.to_string();
    let c2 = context.clone();
    let (res, tr) = block_on(&h, "exo decide", Some(ai.limit() * 2), async move {
        Ok(advisor::decide(&client, &q, &c2, &fallback, &dopts).await)
    })
    .at(ctx)?;
    let d = res.at(ctx)?;
    *ai.0.down_until.lock() = tr.unreachable.then(|| Instant::now() + DOWN_MEMO);
    h.record_event(
        "llm",
        advisor::journal_record(
            "decide",
            ai.model(),
            &tr.messages,
            &tr.answers,
            json!({"question": question, "reasoning": tr.reasoning, "problems": tr.problems, "result": d}),
        ),
    );
    Ok(decision_map(&d))
}

#[export_module]
mod exo_mod {
    use super::*;

    /// Connect to the OpenAI-compatible server named by the `llm:` section of the config
    /// (exo, Ollama, llama.cpp). Nothing is sent yet; use `ai.available()` to probe.
    ///
    /// ```rhai
    /// let ai = exo::connect();
    /// print(ai);            // Exo(http://127.0.0.1:PORT, model mlx-community/Llama-3.2-3B-Instruct-4bit)
    /// ```
    #[rhai_fn(name = "connect", return_raw)]
    pub fn connect0(ctx: NativeCallContext) -> RhaiResult<Exo> {
        let h = host(&ctx)?;
        connect_impl(&h, ConnectOpts::default()).at(&ctx)
    }

    /// Connect with options overriding the config: `url`, `model` (exact id), `enabled`,
    /// `api_key_env`, `api_key_file`, `connect_timeout` (default 5s), `first_token_timeout`
    /// (streams: wait for the first token, default 5m, enough for a cold model load or a long CPU
    /// prefill), `idle_timeout` (streams after the first token, default 60s, reset by any byte),
    /// `timeout` (overall, default 10m), `retries` (default 2), `fallback_decision` (`proceed` |
    /// `wait` | `skip`, what `decide` answers when the advisor cannot), `response_format` (send the
    /// decision's JSON schema, default true).
    ///
    /// ```rhai
    /// // A disabled advisor answers every decide() with the fallback, without any network call.
    /// let ai = exo::connect(#{ url: "http://127.0.0.1:9", model: "m", enabled: false, fallback_decision: "wait" });
    /// let d = ai.decide("Deploy gitea now?", #{});
    /// assert(d.decision == "wait" && d.source == "fallback");
    /// ```
    #[rhai_fn(name = "connect", return_raw)]
    pub fn connect1(ctx: NativeCallContext, opts: Map) -> RhaiResult<Exo> {
        let h = host(&ctx)?;
        let o: ConnectOpts = decode(&opts, "exo::connect").at(&ctx)?;
        connect_impl(&h, o).at(&ctx)
    }
}

#[export_module]
mod exo_methods {
    use super::*;

    /// `Exo(url, model ...)`.
    ///
    /// ```rhai
    /// let ai = exo::connect();
    /// assert(ai.to_string().starts_with("Exo("));
    /// ```
    #[rhai_fn(global, name = "to_string", pure)]
    pub fn to_string(ai: &mut Exo) -> String {
        ai.describe()
    }

    /// Same as `to_string`.
    ///
    /// ```rhai
    /// let ai = exo::connect();
    /// debug(ai);
    /// ```
    #[rhai_fn(global, name = "to_debug", pure)]
    pub fn to_debug(ai: &mut Exo) -> String {
        ai.describe()
    }

    /// The server root URL.
    ///
    /// ```rhai
    /// let ai = exo::connect();
    /// assert(ai.url.starts_with("http"));
    /// ```
    #[rhai_fn(global, get = "url", pure)]
    pub fn get_url(ai: &mut Exo) -> String {
        ai.0.client.base().to_string()
    }

    /// The model id requests are sent for.
    ///
    /// ```rhai
    /// let ai = exo::connect();
    /// print(ai.model);
    /// ```
    #[rhai_fn(global, get = "model", pure)]
    pub fn get_model(ai: &mut Exo) -> String {
        ai.model().to_string()
    }

    /// Whether the advisor is enabled (`llm.enabled`).
    ///
    /// ```rhai
    /// let ai = exo::connect();
    /// assert(ai.enabled);
    /// ```
    #[rhai_fn(global, get = "enabled", pure)]
    pub fn get_enabled(ai: &mut Exo) -> bool {
        ai.0.enabled
    }

    /// True only when the configured model can answer now: exo v1 has a running instance of it
    /// (`/ollama/api/ps` or `/state`; its `/v1/models` is a catalog that also lists models with no
    /// instance), Ollama has it loaded or pulled, llama.cpp's `/health` says ok (503 while loading).
    /// `health().error` says why not. Never throws; false when disabled. Waits at most the connect
    /// timeout plus 5 s per probe.
    ///
    /// ```rhai
    /// let ai = exo::connect();
    /// assert(ai.available());
    /// let off = exo::connect(#{ url: "http://127.0.0.1:9", model: "m", connect_timeout: 1 });
    /// assert(!off.available());
    /// ```
    #[rhai_fn(global, return_raw, pure)]
    pub fn available(ctx: NativeCallContext, ai: &mut Exo) -> RhaiResult<bool> {
        if !ai.0.enabled {
            return Ok(false);
        }
        let h = host(&ctx)?;
        let client = ai.0.client.clone();
        let limit = client.options().connect_timeout + Duration::from_secs(5);
        let up = block_on(&h, "exo available", Some(limit * 8), async move {
            Ok(client.available(limit).await)
        })
        .at(&ctx)?;
        if up {
            *ai.0.down_until.lock() = None;
        }
        Ok(up)
    }

    /// Probe the server: `#{ ok, ready, server, models, loaded, error }`. `ok` and `ready` are true
    /// only when the configured model can answer now (as `available()`); `error` says why not.
    /// `server` is `exo-v1` (answers `/node_id`), `exo-v0` (`/healthcheck`), `llama.cpp`
    /// (`/health`), `ollama` (`/api/version`) or `openai-compatible`; `models` is what
    /// `/v1/models` lists, `loaded` what the server runs now (exo, Ollama; `()` elsewhere).
    /// Never throws.
    ///
    /// ```rhai
    /// let h = exo::connect().health();
    /// assert(h.ok && h.ready && h.server == "exo-v1");
    /// assert(h.loaded.contains(exo::connect().model));
    /// ```
    #[rhai_fn(global, return_raw, pure)]
    pub fn health(ctx: NativeCallContext, ai: &mut Exo) -> RhaiResult<Map> {
        let h = host(&ctx)?;
        let client = ai.0.client.clone();
        let limit = client.options().connect_timeout + Duration::from_secs(5);
        let r = block_on(&h, "exo health", Some(limit * 8), async move {
            Ok(client.health(limit).await)
        })
        .at(&ctx)?;
        let ready = r.ready && ai.0.enabled;
        let mut m = Map::new();
        m.insert("ok".into(), ready.into());
        m.insert("ready".into(), ready.into());
        m.insert("server".into(), r.server.into());
        m.insert(
            "models".into(),
            Dynamic::from_array(r.models.into_iter().map(Dynamic::from).collect()),
        );
        m.insert(
            "loaded".into(),
            r.loaded
                .map(|l| Dynamic::from_array(l.into_iter().map(Dynamic::from).collect()))
                .unwrap_or(Dynamic::UNIT),
        );
        let err = if ai.0.enabled {
            r.error
        } else {
            Some("disabled (llm.enabled: false)".into())
        };
        m.insert(
            "error".into(),
            err.map(Dynamic::from).unwrap_or(Dynamic::UNIT),
        );
        Ok(m)
    }

    /// Model ids the server offers (`GET /v1/models`). On exo v1 this is the catalog of known models,
    /// not only the loaded ones; the configured model must match one id exactly.
    ///
    /// ```rhai
    /// let ai = exo::connect();
    /// assert(ai.models().contains(ai.model));
    /// ```
    #[rhai_fn(global, return_raw, pure)]
    pub fn models(ctx: NativeCallContext, ai: &mut Exo) -> RhaiResult<Array> {
        let h = host(&ctx)?;
        ai.require_enabled("models").at(&ctx)?;
        let client = ai.0.client.clone();
        let v = block_on(&h, "exo models", Some(ai.limit()), async move {
            client.models().await
        })
        .at(&ctx)?;
        Ok(v.into_iter().map(Dynamic::from).collect())
    }

    /// Ask one question; returns the answer text. Throws `unavailable`, `timeout`, `not_found`
    /// (unknown model, listing the ones offered) ... Registered secrets are scrubbed from the prompt.
    ///
    /// ```rhai
    /// let text = exo::connect().ask("Say hello in five words.");
    /// assert(text.len() > 0);
    /// ```
    #[rhai_fn(global, name = "ask", return_raw, pure)]
    pub fn ask1(ctx: NativeCallContext, ai: &mut Exo, prompt: &str) -> RhaiResult<String> {
        ask_impl(&ctx, ai, prompt, &Map::new())
    }

    /// Ask with options: `system` (system prompt), `temperature`, `max_tokens`, `model` (override),
    /// `stream` (print the answer as it arrives; the full text is still returned).
    ///
    /// ```rhai
    /// let ai = exo::connect();
    /// let text = ai.ask("Name one Linux init system.", #{ system: "Answer in one word.", temperature: 0, max_tokens: 20, stream: true });
    /// assert(text.len() > 0);
    /// ```
    #[rhai_fn(global, name = "ask", return_raw, pure)]
    pub fn ask2(
        ctx: NativeCallContext,
        ai: &mut Exo,
        prompt: &str,
        opts: Map,
    ) -> RhaiResult<String> {
        ask_impl(&ctx, ai, prompt, &opts)
    }

    /// A chat with several messages `#{ role: "system"|"user"|"assistant", content }`; returns the
    /// answer text.
    ///
    /// ```rhai
    /// let ai = exo::connect();
    /// let text = ai.chat([
    ///     #{ role: "system", content: "You are terse." },
    ///     #{ role: "user", content: "What does systemd do?" },
    /// ]);
    /// assert(text.len() > 0);
    /// ```
    #[rhai_fn(global, name = "chat", return_raw, pure)]
    pub fn chat1(ctx: NativeCallContext, ai: &mut Exo, messages: Array) -> RhaiResult<String> {
        chat_impl(&ctx, ai, messages, &Map::new())
    }

    /// `chat` with the options of `ask` (`system`, `temperature`, `max_tokens`, `model`, `stream`).
    ///
    /// ```rhai
    /// let ai = exo::connect();
    /// let text = ai.chat([#{ role: "user", content: "Hi" }], #{ stream: true, max_tokens: 50 });
    /// assert(text.len() > 0);
    /// ```
    #[rhai_fn(global, name = "chat", return_raw, pure)]
    pub fn chat2(
        ctx: NativeCallContext,
        ai: &mut Exo,
        messages: Array,
        opts: Map,
    ) -> RhaiResult<String> {
        chat_impl(&ctx, ai, messages, &opts)
    }

    /// Ask the advisor for a decision: `#{ decision: "proceed"|"wait"|"skip", reason, source }`.
    /// The decision's JSON schema goes along as `response_format` (enforced by Ollama and llama.cpp;
    /// a server that rejects the field is asked again without it, and not sent it again in this
    /// run), thinking is switched off where the server allows it, and thinking the model does
    /// anyway is journaled apart, never read as the answer. The model must answer a JSON object
    /// (found even inside prose or a code fence); an answer that fails the check is asked again
    /// once, then the fallback answers (`source: "fallback"`, plus `error`). When the server is down or the advisor disabled the fallback answers at once
    /// (`proceed` with the reason "advisor unavailable", or `llm.fallback_decision`); after a failed
    /// connect the server is not tried again for 30 s (or until `available()` sees it back). Never
    /// throws for server trouble.
    ///
    /// **Never the authority**: use the answer only to hold a service back or to explain. The
    /// deterministic planner decides the order; never reorder or add work because of an answer.
    ///
    /// ```rhai
    /// let ai = exo::connect();
    /// let d = ai.decide("Deploy vaultwarden now?", #{ deps: ["postgresql"], postgresql: "healthy" });
    /// assert(["proceed", "wait", "skip"].contains(d.decision));
    /// if d.decision != "proceed" { print(`holding vaultwarden back: ${d.reason}`); }
    /// ```
    #[rhai_fn(global, return_raw, pure)]
    pub fn decide(
        ctx: NativeCallContext,
        ai: &mut Exo,
        question: &str,
        context: Dynamic,
    ) -> RhaiResult<Map> {
        decide_impl(&ctx, ai, question, context)
    }
}

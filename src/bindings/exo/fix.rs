//! The advisor after a failure: `ai.suggest_fix` (a likely cause in a few lines of prose) and
//! `ai.propose_fix` (one typed action the flow may carry out once it has checked it against the
//! catalog's allow-list, see `ralf/heal`). Both send only the log's tail, scrubbed of secrets, and
//! are journaled like every exchange.

use super::{run_chat, Exo, DEFAULT_FIX_TOKENS, DEFAULT_LOG_BUDGET};
use crate::bindings::{host, AtCall};
use crate::clients::exo::advisor;
use crate::clients::exo::proposal::{self, Proposal};
use crate::clients::exo::ChatRequest;
use crate::error::{RResult, RalfError, RhaiResult};
use crate::script::decode::decode;
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map, NativeCallContext};
use serde::Deserialize;
use std::collections::BTreeMap;

pub(crate) fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(fix_methods).into());
}

/// Options of `suggest_fix`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FixOpts {
    /// Characters of log to send at most (default 6000; the tail is kept).
    pub max_chars: Option<usize>,
    pub max_tokens: Option<u64>,
}

fn log_lines(v: &Dynamic, what: &str) -> RResult<Vec<String>> {
    if let Some(s) = v.read_lock::<rhai::ImmutableString>() {
        return Ok(s.lines().map(String::from).collect());
    }
    if let Some(a) = v.read_lock::<Array>() {
        let mut out = Vec::new();
        for x in a.iter() {
            let s = x.to_string();
            out.extend(s.lines().map(String::from));
        }
        return Ok(out);
    }
    Err(RalfError::invalid(format!(
        "{what}: log_lines must be a string or an array of strings, got {}",
        v.type_name()
    )))
}

fn fix_impl(
    ctx: &NativeCallContext,
    ai: &Exo,
    service: &str,
    log: Dynamic,
    opts: &Map,
) -> RhaiResult<String> {
    let h = host(ctx)?;
    let o: FixOpts = decode(opts, "ai.suggest_fix").at(ctx)?;
    let budget = o.max_chars.unwrap_or(DEFAULT_LOG_BUDGET);
    if budget < 100 {
        return Err(crate::bindings::at(
            ctx,
            RalfError::invalid(format!(
                "ai.suggest_fix: max_chars must be at least 100, got {budget}"
            )),
        ));
    }
    let lines = log_lines(&log, "ai.suggest_fix").at(ctx)?;
    let trimmed = advisor::trim_log(&lines, budget);
    let req = ChatRequest {
        messages: advisor::fix_messages(service, &trimmed),
        temperature: Some(0.2),
        max_tokens: Some(o.max_tokens.unwrap_or(DEFAULT_FIX_TOKENS)),
        thinking: Some(false),
        ..Default::default()
    };
    let r = run_chat(&h, ai, "suggest_fix", req, false).at(ctx)?;
    Ok(crate::redact::redact(&r.text))
}

/// What a proposal may be about: `allow` as the catalog's `self_heal` gives it, and the service's
/// current task variables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposeOpts {
    /// Keys a retry may change.
    #[serde(default)]
    env: Vec<String>,
    /// Whether a restart is allowed.
    #[serde(default)]
    restart: bool,
    /// The service's current task variables (catalog data).
    #[serde(default)]
    current: BTreeMap<String, String>,
    max_chars: Option<usize>,
    max_tokens: Option<u64>,
}

fn proposal_map(p: &Proposal, source: &str) -> Map {
    let mut m = Map::new();
    m.insert("action".into(), p.action.clone().into());
    let mut env = Map::new();
    for (k, v) in &p.env {
        env.insert(k.as_str().into(), crate::redact::redact(v).into());
    }
    m.insert("env".into(), env.into());
    m.insert("reason".into(), crate::redact::redact(&p.reason).into());
    m.insert("source".into(), source.into());
    m
}

fn propose_impl(
    ctx: &NativeCallContext,
    ai: &Exo,
    service: &str,
    log: Dynamic,
    opts: &Map,
) -> RhaiResult<Map> {
    let h = host(ctx)?;
    let o: ProposeOpts = decode(opts, "ai.propose_fix").at(ctx)?;
    let lines = log_lines(&log, "ai.propose_fix").at(ctx)?;
    let trimmed = advisor::trim_log(&lines, o.max_chars.unwrap_or(DEFAULT_LOG_BUDGET).max(100));
    let req = ChatRequest {
        messages: proposal::propose_messages(service, &trimmed, &o.current, &o.env, o.restart),
        temperature: Some(0.1),
        max_tokens: Some(o.max_tokens.unwrap_or(DEFAULT_FIX_TOKENS)),
        thinking: Some(false),
        ..Default::default()
    };
    let r = run_chat(&h, ai, "propose_fix", req, false).at(ctx)?;
    let out = match proposal::parse_proposal(&r.text) {
        Ok(p) => proposal_map(&p, "llm"),
        Err(why) => {
            let none = Proposal {
                action: "none".into(),
                env: BTreeMap::new(),
                reason: format!("the advisor's answer is not a valid proposal: {why}"),
            };
            proposal_map(&none, "invalid")
        }
    };
    h.record_event(
        "llm",
        serde_json::json!({"op": "propose_fix", "service": service,
            "result": rhai::serde::from_dynamic::<serde_json::Value>(&Dynamic::from_map(out.clone())).unwrap_or_default()}),
    );
    Ok(out)
}

#[export_module]
mod fix_methods {
    use super::*;

    /// Ask for a likely cause and first fix of a failed service, given its log (a string or an
    /// array of lines). The log is trimmed to fit a budget of 6000 characters, keeping the tail.
    /// Throws like `ask` when the server cannot answer.
    ///
    /// ```rhai
    /// let ai = exo::connect();
    /// let hint = ai.suggest_fix("vaultwarden", ["starting", "error: database connection refused (postgresql:5432)"]);
    /// print(hint);
    /// ```
    #[rhai_fn(global, name = "suggest_fix", return_raw, pure)]
    pub fn suggest_fix2(
        ctx: NativeCallContext,
        ai: &mut Exo,
        service: &str,
        log_lines: Dynamic,
    ) -> RhaiResult<String> {
        fix_impl(&ctx, ai, service, log_lines, &Map::new())
    }

    /// `suggest_fix` with options: `max_chars` (log budget, default 6000), `max_tokens` (default 1024, room for a model that thinks).
    ///
    /// ```rhai
    /// let ai = exo::connect();
    /// let hint = ai.suggest_fix("gitea", "line 1\nline 2\nfatal: port 3000 already in use", #{ max_chars: 2000 });
    /// assert(hint.len() > 0);
    /// ```
    #[rhai_fn(global, name = "suggest_fix", return_raw, pure)]
    pub fn suggest_fix3(
        ctx: NativeCallContext,
        ai: &mut Exo,
        service: &str,
        log_lines: Dynamic,
        opts: Map,
    ) -> RhaiResult<String> {
        fix_impl(&ctx, ai, service, log_lines, &opts)
    }

    /// Ask for one typed fix of a failed service: `#{ action, env, reason, source }` with `action`
    /// one of "retry" (with changed task variables `env`), "restart", "rollback" or "none". Options:
    /// `env` (the keys a retry may change), `restart` (whether a restart is allowed), `current` (the
    /// service's task variables), `max_chars`, `max_tokens`. The answer is only shape-checked here:
    /// an answer that is not a valid proposal becomes `none` with `source: "invalid"`. Whether a
    /// proposal may be carried out is the flow's decision (`ralf/heal` checks it against the
    /// catalog's `self_heal` allow-list). Throws like `ask` when the server cannot answer.
    ///
    /// ```rhai
    /// let ai = exo::connect();
    /// let p = ai.propose_fix("n8n", ["fatal: N8N_PORT 5678 already in use"], #{ env: ["N8N_PORT"] });
    /// assert(["retry", "restart", "rollback", "none"].contains(p.action));
    /// ```
    #[rhai_fn(global, name = "propose_fix", return_raw, pure)]
    pub fn propose_fix(
        ctx: NativeCallContext,
        ai: &mut Exo,
        service: &str,
        log_lines: Dynamic,
        opts: Map,
    ) -> RhaiResult<Map> {
        propose_impl(&ctx, ai, service, log_lines, &opts)
    }
}

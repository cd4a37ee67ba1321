//! `gate(question, opts)`: a human approval that works from cron. The question goes to the chat
//! channels of `gates:` (and the terminal when there is one); the first answer of a listed approver
//! with the gate's nonce decides; on timeout `on_timeout` decides ("deny" unless set). The gate is the
//! journal step `gate/NAME`: the pending question and its nonce are its detail, so after a kill -9
//! `ralf-sh resume` does not ask again but reads the answers given meanwhile. `--yes` never
//! approves a gate. Every question, answer (accepted or ignored, and why) and outcome is journaled.

use crate::bindings::{host, AtCall};
use crate::clients::gate::protocol::{self, Decision, Pending, Run};
use crate::clients::gate::{Channels, Question, Seen};
use crate::error::{RResult, RalfError, RhaiResult};
use crate::host::Host;
use crate::script::bridge::block_on;
use crate::script::decode::decode;
use crate::text::Secs;
use rhai::plugin::*;
use rhai::{Dynamic, Engine, Map, NativeCallContext};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

pub(crate) fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(gate_fns).into());
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GateOpts {
    /// Step name (`gate/NAME`); default: from the question.
    name: Option<String>,
    timeout: Option<Secs>,
    /// Channel identities whose answer counts (default `gates.approvers`).
    approvers: Option<Vec<String>>,
    /// Channels to ask: any of "terminal", "telegram", "matrix", "ntfy", "dashboard" (default: all
    /// configured; the dashboard when `gates.dashboard` is on).
    via: Option<Vec<String>>,
    /// Extra text shown with the question (e.g. a plan's tail).
    details: Option<String>,
    /// "deny" (default) or "approve": what a timeout decides. (`default` is a Rhai keyword; it
    /// works only quoted.)
    #[serde(alias = "default")]
    on_timeout: Option<String>,
    /// The plan hash this approval is for (`deploy_all --plan`): shown with the question; a
    /// resumed run whose plan resolves to another hash does not take the answer given for it.
    plan: Option<String>,
}

/// The protocol's view of the run: the bridge, the journal and the dashboard's answers.
struct HostRun<'a>(&'a Host);

impl Run for HostRun<'_> {
    fn block<T, F>(&self, what: &str, timeout: Duration, fut: F) -> RResult<T>
    where
        F: std::future::Future<Output = RResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        block_on(self.0, what, Some(timeout), fut)
    }

    fn journal(&self, q: &Question, event: &str, data: serde_json::Value) {
        let mut v = json!({"gate": q.id, "event": event});
        if let (Some(m), serde_json::Value::Object(d)) = (v.as_object_mut(), data) {
            m.extend(d);
        }
        self.0.record_event("gate", v);
    }

    fn other_answers(&self, q: &Question) -> Vec<Seen> {
        dashboard_answers(self.0, q)
    }

    fn check_cancelled(&self) -> RResult<()> {
        self.0.check_cancelled()
    }
}

/// Answers given on the dashboard (rows the dashboard wrote into the state store).
fn dashboard_answers(h: &Host, q: &Question) -> Vec<Seen> {
    let Ok(rc) = crate::session::run_ctx(h) else {
        return Vec::new();
    };
    match rc.store.gate_answers(&q.id) {
        Ok(rows) => rows
            .into_iter()
            .map(|a| Seen {
                via: "dashboard",
                user: format!("dashboard:{}", a.by),
                aliases: vec!["dashboard".into()],
                approve: a.approve,
                gate: a.gate,
                nonce: a.nonce,
                key: format!("dashboard-{}", a.id),
                callback_id: None,
            })
            .collect(),
        Err(e) => {
            tracing::warn!(target: "ralf::gate", "gate {}: cannot read dashboard answers: {e}", q.id);
            Vec::new()
        }
    }
}

fn gate_body(h: &Host, question: &str, o: &GateOpts) -> RResult<Map> {
    let cfg = h.cfg();
    let approvers = o
        .approvers
        .clone()
        .unwrap_or_else(|| cfg.gates.approvers.clone());
    let via: Option<HashSet<String>> = o
        .via
        .as_ref()
        .map(|v| v.iter().map(|x| x.to_ascii_lowercase()).collect());
    for v in via.iter().flatten() {
        if !["terminal", "telegram", "matrix", "ntfy", "dashboard"].contains(&v.as_str()) {
            return Err(RalfError::invalid(format!(
                "gate: via `{v}` is not one of terminal, telegram, matrix, ntfy, dashboard"
            )));
        }
    }
    let default_approve = match o.on_timeout.as_deref().unwrap_or("deny") {
        "deny" => false,
        "approve" => true,
        other => {
            return Err(RalfError::invalid(format!(
                "gate: on_timeout must be \"deny\" or \"approve\", got `{other}`"
            )))
        }
    };
    let specs: Vec<_> = if cfg.gates.channels.is_empty() {
        cfg.notify.channels.clone()
    } else {
        cfg.gates.channels.clone()
    };
    let specs: Vec<_> = specs
        .into_iter()
        .filter(|s| {
            let kind = crate::clients::notify::describe(s)
                .split(':')
                .next()
                .unwrap_or("")
                .to_string();
            via.as_ref().is_none_or(|v| v.contains(&kind))
        })
        .collect();
    let poll = cfg
        .gates
        .poll
        .map(|p| p.as_duration())
        .unwrap_or(Duration::from_secs(2));
    let channels = Channels::load(&specs, cfg.gates.reply_topic.clone(), poll)?;
    let timeout = o
        .timeout
        .or(cfg.gates.timeout)
        .map(|t| t.as_duration())
        .unwrap_or(Duration::from_secs(4 * 3600));
    let details = o.details.clone().unwrap_or_default();

    // A resumed attempt goes on waiting for the question asked before.
    let run = HostRun(h);
    let earlier = h
        .journal()
        .and_then(|j| j.previous_step_detail("gate"))
        .and_then(|v| serde_json::from_value::<Pending>(v).ok());
    let p = match earlier {
        // The question was about another plan than the one this attempt resolved: an answer
        // given to it approves that plan, not this one.
        Some(p) if p.question.plan != o.plan => {
            let asked = p.question.plan.as_deref().unwrap_or("none");
            let now = o.plan.as_deref().unwrap_or("none");
            let reason = format!(
                "the question was asked for plan {asked}, and the run now resolves plan {now}: an answer to it does not approve this plan (start a new run to ask about it)"
            );
            run.journal(
                &p.question,
                "plan_changed",
                json!({"asked_for": asked, "now": now}),
            );
            protocol::close(
                &run,
                &channels,
                &p,
                &Decision {
                    approved: false,
                    by: String::new(),
                    via: String::new(),
                    reason: reason.clone(),
                },
            );
            tracing::warn!(target: "ralf::gate", "gate {}: {reason}", p.question.id);
            let mut m = Map::new();
            m.insert("approved".into(), false.into());
            m.insert("reason".into(), reason.into());
            m.insert("gate".into(), p.question.id.clone().into());
            m.insert("plan".into(), now.into());
            return Ok(m);
        }
        Some(p) => {
            run.journal(&p.question, "resumed", json!({"asked_at": p.asked_at}));
            tracing::info!(target: "ralf::gate", "gate {}: still waiting for an answer (asked before the interruption)", p.question.id);
            p
        }
        None => {
            let dashboard = match &via {
                Some(v) => v.contains("dashboard"),
                None => cfg.gates.dashboard,
            };
            let q = Question::new(question, &details).for_plan(o.plan.clone());
            protocol::ask(&run, &channels, q, dashboard, &approvers, timeout)?
        }
    };
    h.record_step_detail("gate", serde_json::to_value(&p).unwrap_or_default());
    let terminal = if via.as_ref().is_none_or(|v| v.contains("terminal")) {
        protocol::terminal_answers(&p.question)
    } else {
        None
    };
    if p.sent.is_empty() && terminal.is_none() {
        return Err(RalfError::unavailable(format!(
            "gate {}: nobody can be asked: no gate channel answered and there is no terminal (configure gates.channels)",
            p.question.id
        )));
    }
    if approvers.is_empty() && !p.sent.is_empty() {
        tracing::warn!(target: "ralf::gate", "gate {}: no approvers are configured (gates.approvers): only the terminal can answer", p.question.id);
    }
    tracing::info!(target: "ralf::gate", "gate {}: waiting for an approval: {}", p.question.id, p.question.text);
    let decision = protocol::wait(&run, &channels, &p, &approvers, terminal.as_ref(), poll)?;
    let d = decision.unwrap_or_else(|| Decision {
        approved: default_approve,
        by: String::new(),
        via: String::new(),
        reason: format!(
            "no answer within {} (default: {})",
            crate::text::human_duration(timeout),
            if default_approve { "approve" } else { "deny" }
        ),
    });
    protocol::close(&run, &channels, &p, &d);
    tracing::info!(target: "ralf::gate", "gate {}: {}", p.question.id, d.reason);
    let mut m = Map::new();
    m.insert("approved".into(), d.approved.into());
    m.insert(
        "by".into(),
        if d.by.is_empty() {
            Dynamic::UNIT
        } else {
            d.by.into()
        },
    );
    m.insert(
        "via".into(),
        if d.via.is_empty() {
            Dynamic::UNIT
        } else {
            d.via.into()
        },
    );
    m.insert(
        "at".into(),
        chrono::Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            .into(),
    );
    m.insert("reason".into(), d.reason.into());
    m.insert("gate".into(), p.question.id.clone().into());
    if let Some(h) = &p.question.plan {
        m.insert("plan".into(), h.clone().into());
    }
    Ok(m)
}

fn gate_impl(ctx: &NativeCallContext, question: &str, opts: &Map) -> RhaiResult<Map> {
    let h = host(ctx)?;
    let o: GateOpts = decode(opts, "gate").at(ctx)?;
    if question.trim().is_empty() {
        return Err(RalfError::invalid("gate: the question is empty").into());
    }
    let name = format!(
        "gate/{}",
        o.name.clone().unwrap_or_else(|| protocol::slug(question))
    );
    if h.opts.dry_run {
        h.dry_run("gate", format!("ask `{question}` and wait for an approval"));
        let mut m = Map::new();
        m.insert("approved".into(), false.into());
        m.insert("reason".into(), "dry run: nobody was asked".into());
        return Ok(m);
    }
    let v = crate::bindings::run::run_step(ctx, &name, None, || {
        gate_body(&h, question, &o).map(Dynamic::from_map).at(ctx)
    })?;
    Ok(v.try_cast::<Map>().unwrap_or_default())
}

#[export_module]
mod gate_fns {
    use super::*;

    /// Ask for a human approval and wait: through the chat channels of `gates:` (Telegram buttons,
    /// a Matrix message to react to with ✅/❌, ntfy action buttons) and the terminal when there is
    /// one. Returns `#{ approved, by, via, at, reason, gate }`. Only the identities in
    /// `gates.approvers` count; each question has a one-time nonce; after the timeout (4h) the gate
    /// is denied. `--yes` never approves a gate. A killed run resumed with `ralf-sh resume` goes on
    /// waiting for the same question.
    ///
    /// ```rhai,no_run
    /// let g = gate("Apply the production plan?");
    /// if !g.approved { throw error::make("cancelled", `not approved: ${g.reason}`); }
    /// ```
    #[rhai_fn(name = "gate", return_raw)]
    pub fn gate1(ctx: NativeCallContext, question: &str) -> RhaiResult<Map> {
        gate_impl(&ctx, question, &Map::new())
    }

    /// `gate` with options: `timeout` ("30m"), `approvers` (identities, overriding the config),
    /// `via` (["telegram", "matrix", "ntfy", "terminal"]), `details` (text shown with the question,
    /// e.g. a plan), `on_timeout` ("deny", the default, or "approve"), `name` (the step `gate/NAME`),
    /// `plan` (the plan hash the approval is for: shown with the question and returned as
    /// `plan`; a resumed run that resolves another plan does not take an answer given to it).
    ///
    /// ```rhai,no_run
    /// let plan_tail = "Plan: 1 to add, 0 to change, 0 to destroy.";
    /// let g = gate("Deploy v1.2 to production?", #{ timeout: "2h", details: plan_tail, via: ["telegram"] });
    /// print(g.reason);
    /// ```
    #[rhai_fn(name = "gate", return_raw)]
    pub fn gate2(ctx: NativeCallContext, question: &str, opts: Map) -> RhaiResult<Map> {
        gate_impl(&ctx, question, &opts)
    }
}

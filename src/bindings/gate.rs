//! `gate(question, opts)`: a human approval that works from cron. The question goes to the chat
//! channels of `gates:` (and the terminal when there is one); the first answer of a listed approver
//! with the gate's nonce decides; on timeout `on_timeout` decides ("deny" unless set). The gate is the
//! journal step `gate/NAME`: the pending question and its nonce are its detail, so after a kill -9
//! `ralf-sh resume` does not ask again but reads the answers given meanwhile. `--yes` never
//! approves a gate. Every question, answer (accepted or ignored, and why) and outcome is journaled.

use crate::bindings::{host, AtCall};
use crate::clients::gate::{Channels, Question, Seen, Sent};
use crate::error::{RResult, RalfError, RhaiResult};
use crate::host::Host;
use crate::script::bridge::block_on;
use crate::script::decode::decode;
use crate::text::Secs;
use rhai::plugin::*;
use rhai::{Dynamic, Engine, Map, NativeCallContext};
use serde::{Deserialize, Serialize};
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
}

/// The pending gate, kept as the step detail `gate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    question: Question,
    sent: Vec<Sent>,
    /// Unix seconds.
    asked_at: i64,
    deadline: i64,
}

/// Telegram's `getUpdates` is one stream per bot: a process reads it once for every gate and
/// hands each answer to the gate it names.
struct TelegramHub {
    offset: i64,
    inbox: Vec<Seen>,
}

static TELEGRAM: tokio::sync::Mutex<TelegramHub> = tokio::sync::Mutex::const_new(TelegramHub {
    offset: 0,
    inbox: Vec::new(),
});

/// Gates open in this process (answers for other gate ids are stale or replayed).
static OPEN: parking_lot::Mutex<Vec<String>> = parking_lot::Mutex::new(Vec::new());

fn slug(q: &str) -> String {
    let s: String = q
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    s.chars().take(48).collect()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn journal(h: &Host, q: &Question, event: &str, data: serde_json::Value) {
    let mut v = json!({"gate": q.id, "event": event});
    if let (Some(m), serde_json::Value::Object(d)) = (v.as_object_mut(), data) {
        m.extend(d);
    }
    h.record_event("gate", v);
}

/// Read every channel once; Telegram through the shared hub.
async fn read_all(ch: &Channels, p: &Pending) -> RResult<Vec<Seen>> {
    let t0 = tokio::time::Instant::now();
    let out = read_once(ch, p).await?;
    // At most one round per interval (a Telegram long poll already waited).
    tokio::time::sleep_until(t0 + ch.poll).await;
    Ok(out)
}

async fn read_once(ch: &Channels, p: &Pending) -> RResult<Vec<Seen>> {
    let mut out = Vec::new();
    let tg: Vec<Sent> = p
        .sent
        .iter()
        .filter(|s| s.via() == "telegram")
        .cloned()
        .collect();
    let others: Vec<Sent> = p
        .sent
        .iter()
        .filter(|s| s.via() != "telegram")
        .cloned()
        .collect();
    out.extend(ch.read(&others, &p.question, &mut 0).await?);
    if !tg.is_empty() {
        let mut hub = TELEGRAM.lock().await;
        let mut off = hub.offset;
        let got = ch.read(&tg, &p.question, &mut off).await?;
        hub.offset = off;
        hub.inbox.extend(got);
        let open = OPEN.lock().clone();
        let (mine, rest): (Vec<Seen>, Vec<Seen>) = std::mem::take(&mut hub.inbox)
            .into_iter()
            .partition(|s| s.gate == p.question.id || !open.contains(&s.gate));
        hub.inbox = rest;
        out.extend(mine);
    }
    Ok(out)
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

struct Decision {
    approved: bool,
    by: String,
    via: String,
    reason: String,
}

/// Whether an answer counts; `Err(why)` when it is ignored.
fn judge(s: &Seen, q: &Question, approvers: &[String]) -> Result<(), String> {
    if s.gate != q.id {
        return Err(format!(
            "it answers gate {}, which is not open (a replayed or expired answer)",
            s.gate
        ));
    }
    if s.nonce != q.nonce {
        return Err("its nonce is not this gate's (a replayed or forged answer)".into());
    }
    let me = std::iter::once(&s.user).chain(s.aliases.iter());
    if !me
        .clone()
        .any(|u| approvers.iter().any(|a| a.eq_ignore_ascii_case(u)))
    {
        return Err(format!("{} is not an approver of this gate", s.user));
    }
    Ok(())
}

fn terminal_answers(q: &Question) -> Option<std::sync::mpsc::Receiver<bool>> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return None;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let prompt = format!("{} [gate {}] approve? [y/N] ", q.text, q.id);
    std::thread::spawn(move || {
        eprint!("{prompt}");
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line).is_ok() {
            let a = line.trim().to_ascii_lowercase();
            let _ = tx.send(a == "y" || a == "yes");
        }
    });
    Some(rx)
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
    let earlier = h
        .journal()
        .and_then(|j| j.previous_step_detail("gate"))
        .and_then(|v| serde_json::from_value::<Pending>(v).ok());
    let p = match earlier {
        Some(p) => {
            journal(h, &p.question, "resumed", json!({"asked_at": p.asked_at}));
            tracing::info!(target: "ralf::gate", "gate {}: still waiting for an answer (asked before the interruption)", p.question.id);
            p
        }
        None => {
            let q = Question::new(question, &details);
            let c2 = channels.clone();
            let q2 = q.clone();
            let (mut sent, failed) =
                block_on(h, "gate ask", Some(Duration::from_secs(60)), async move {
                    Ok(c2.ask(&q2).await)
                })?;
            let dashboard = match &via {
                Some(v) => v.contains("dashboard"),
                None => cfg.gates.dashboard,
            };
            if dashboard {
                // Shown by `serve`'s dashboard from this step's detail; answered through the store.
                sent.push(Sent::Dashboard {});
            }
            journal(
                h,
                &q,
                "asked",
                json!({"question": q.text, "channels": sent.iter().map(|s| s.via()).collect::<Vec<_>>(),
                "failed": failed, "approvers": approvers, "timeout_s": timeout.as_secs()}),
            );
            for (c, e) in &failed {
                tracing::warn!(target: "ralf::gate", "gate {}: the question did not reach {c}: {e}", q.id);
            }
            Pending {
                question: q,
                sent,
                asked_at: now(),
                deadline: now() + timeout.as_secs() as i64,
            }
        }
    };
    h.record_step_detail("gate", serde_json::to_value(&p).unwrap_or_default());
    let terminal = if via.as_ref().is_none_or(|v| v.contains("terminal")) {
        terminal_answers(&p.question)
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
    OPEN.lock().push(p.question.id.clone());
    let _open = OpenGuard(p.question.id.clone());
    let mut seen: HashSet<String> = HashSet::new();
    let decision = loop {
        if let Some(rx) = &terminal {
            if let Ok(yes) = rx.try_recv() {
                break Some(Decision {
                    approved: yes,
                    by: "terminal".into(),
                    via: "terminal".into(),
                    reason: format!(
                        "{} at the terminal",
                        if yes { "approved" } else { "denied" }
                    ),
                });
            }
        }
        if now() >= p.deadline {
            break None;
        }
        let c2 = channels.clone();
        let p2 = p.clone();
        let got = block_on(
            h,
            "gate poll",
            Some(poll + Duration::from_secs(30)),
            async move { read_all(&c2, &p2).await },
        );
        let got = match got {
            Ok(mut g) => {
                if p.sent.contains(&Sent::Dashboard {}) {
                    g.extend(dashboard_answers(h, &p.question));
                }
                g
            }
            Err(e) if e.kind == crate::error::ErrorKind::Cancelled => return Err(e),
            Err(e) => {
                tracing::warn!(target: "ralf::gate", "gate {}: reading the answers failed: {}", p.question.id, e.message);
                h.check_cancelled()?;
                std::thread::sleep(poll);
                continue;
            }
        };
        let mut accepted = None;
        for s in got {
            if !seen.insert(s.key.clone()) {
                continue;
            }
            let verdict = if accepted.is_some() {
                Err("the gate was already decided".to_string())
            } else {
                judge(&s, &p.question, &approvers)
            };
            let ack = match &verdict {
                Ok(()) => {
                    journal(
                        h,
                        &p.question,
                        "answer",
                        json!({"via": s.via, "user": s.user, "approve": s.approve, "accepted": true}),
                    );
                    accepted = Some(Decision {
                        approved: s.approve,
                        by: s.user.clone(),
                        via: s.via.into(),
                        reason: format!(
                            "{} by {} via {}",
                            if s.approve { "approved" } else { "denied" },
                            s.user,
                            s.via
                        ),
                    });
                    if s.approve {
                        "Approved, thank you"
                    } else {
                        "Denied, thank you"
                    }
                    .to_string()
                }
                Err(why) => {
                    journal(
                        h,
                        &p.question,
                        "answer",
                        json!({"via": s.via, "user": s.user, "approve": s.approve, "accepted": false, "why": why}),
                    );
                    tracing::warn!(target: "ralf::gate", "gate {}: answer from {} via {} ignored: {why}", p.question.id, s.user, s.via);
                    format!("Not counted: {why}")
                }
            };
            let c2 = channels.clone();
            let sent = p.sent.clone();
            let _ = block_on(h, "gate ack", Some(Duration::from_secs(20)), async move {
                c2.acknowledge(&s, &sent, &ack).await;
                Ok(())
            });
        }
        if let Some(d) = accepted {
            break Some(d);
        }
    };
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
    let outcome = if d.by.is_empty() {
        format!("Timed out: {}", d.reason)
    } else {
        format!("{} {}", if d.approved { "✅" } else { "❌" }, d.reason)
    };
    let c2 = channels.clone();
    let (sent, q) = (p.sent.clone(), p.question.clone());
    let failed = block_on(h, "gate close", Some(Duration::from_secs(60)), async move {
        Ok(c2.close(&sent, &q, &outcome).await)
    })
    .unwrap_or_default();
    journal(
        h,
        &p.question,
        "outcome",
        json!({"approved": d.approved, "by": d.by, "via": d.via, "reason": d.reason, "close_failed": failed}),
    );
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
    Ok(m)
}

/// Removes the gate from the open list when the wait ends (also on errors).
struct OpenGuard(String);
impl Drop for OpenGuard {
    fn drop(&mut self) {
        OPEN.lock().retain(|g| g != &self.0);
    }
}

fn gate_impl(ctx: &NativeCallContext, question: &str, opts: &Map) -> RhaiResult<Map> {
    let h = host(ctx)?;
    let o: GateOpts = decode(opts, "gate").at(ctx)?;
    if question.trim().is_empty() {
        return Err(RalfError::invalid("gate: the question is empty").into());
    }
    let name = format!("gate/{}", o.name.clone().unwrap_or_else(|| slug(question)));
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
    /// e.g. a plan), `on_timeout` ("deny", the default, or "approve"), `name` (the step `gate/NAME`).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(user: &str, gate: &str, nonce: &str) -> Seen {
        Seen {
            via: "telegram",
            user: user.into(),
            aliases: vec!["telegram:42".into()],
            approve: true,
            gate: gate.into(),
            nonce: nonce.into(),
            key: "k".into(),
            callback_id: None,
        }
    }

    #[test]
    fn only_listed_approvers_with_the_gates_nonce_count() {
        let q = Question::new("ok?", "");
        let ap = vec!["telegram:@alice".to_string(), "matrix:@bob:lab".to_string()];
        assert!(judge(&seen("telegram:@alice", &q.id, &q.nonce), &q, &ap).is_ok());
        assert!(judge(&seen("telegram:@mallory", &q.id, &q.nonce), &q, &ap)
            .unwrap_err()
            .contains("not an approver"));
        assert!(judge(&seen("telegram:@alice", &q.id, "0000"), &q, &ap)
            .unwrap_err()
            .contains("nonce"));
        assert!(
            judge(&seen("telegram:@alice", "deadbeef", &q.nonce), &q, &ap)
                .unwrap_err()
                .contains("not open")
        );
        // The numeric id counts too.
        assert!(judge(
            &seen("telegram:@x", &q.id, &q.nonce),
            &q,
            &["telegram:42".into()]
        )
        .is_ok());
        assert_eq!(
            slug("Apply the production plan?"),
            "apply-the-production-plan"
        );
        assert!(crate::clients::gate::telegram::callback_data(&q, true).len() <= 64);
    }
}

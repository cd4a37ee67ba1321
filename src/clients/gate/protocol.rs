//! The approval protocol: ask the question on every channel, wait for the first answer that counts
//! (a listed approver, the gate's own id and nonce, the gate still open), acknowledge every answer
//! with whether it counted, and close the question with the outcome. What the protocol needs of
//! the run it is part of (waiting on futures, the journal, answers given on the dashboard) comes
//! through [`Run`], so this module knows nothing of scripts or of the state store.

use super::{Channels, Question, Seen, Sent};
use crate::error::{ErrorKind, RResult};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashSet;
use std::future::Future;
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// What the protocol asks of the run it is part of.
pub(crate) trait Run {
    /// Wait for `fut` within `timeout` (and the run's cancellation).
    fn block<T, F>(&self, what: &str, timeout: Duration, fut: F) -> RResult<T>
    where
        F: Future<Output = RResult<T>> + Send + 'static,
        T: Send + 'static;
    /// Record a gate event (`asked`, `resumed`, `answer`, `outcome`).
    fn journal(&self, q: &Question, event: &str, data: serde_json::Value);
    /// Answers that reach the gate outside the chat channels (the dashboard's).
    fn other_answers(&self, q: &Question) -> Vec<Seen>;
    /// `Err(cancelled)` once the run is cancelled.
    fn check_cancelled(&self) -> RResult<()>;
}

/// The pending gate, kept as the step detail `gate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub(crate) question: Question,
    pub(crate) sent: Vec<Sent>,
    /// Unix seconds.
    pub(crate) asked_at: i64,
    pub(crate) deadline: i64,
}

/// How a gate was decided (`by` empty: nobody answered in time).
pub(crate) struct Decision {
    pub(crate) approved: bool,
    pub(crate) by: String,
    pub(crate) via: String,
    pub(crate) reason: String,
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

/// Removes the gate from the open list when the wait ends (also on errors).
struct OpenGuard(String);
impl Drop for OpenGuard {
    fn drop(&mut self) {
        OPEN.lock().retain(|g| g != &self.0);
    }
}

/// The step name of a question: lower-case words joined by `-`, at most 48 characters.
pub(crate) fn slug(q: &str) -> String {
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

/// Send the question on every channel (and list the dashboard when it is asked too); journaled.
pub(crate) fn ask(
    run: &impl Run,
    channels: &Channels,
    q: Question,
    dashboard: bool,
    approvers: &[String],
    timeout: Duration,
) -> RResult<Pending> {
    let c2 = channels.clone();
    let q2 = q.clone();
    let (mut sent, failed) = run.block("gate ask", Duration::from_secs(60), async move {
        Ok(c2.ask(&q2).await)
    })?;
    if dashboard {
        // Shown by `serve`'s dashboard from the step's detail; answered through the store.
        sent.push(Sent::Dashboard {});
    }
    run.journal(
        &q,
        "asked",
        json!({"question": q.text, "plan": q.plan, "channels": sent.iter().map(|s| s.via()).collect::<Vec<_>>(),
        "failed": failed, "approvers": approvers, "timeout_s": timeout.as_secs()}),
    );
    for (c, e) in &failed {
        tracing::warn!(target: "ralf::gate", "gate {}: the question did not reach {c}: {e}", q.id);
    }
    Ok(Pending {
        question: q,
        sent,
        asked_at: now(),
        deadline: now() + timeout.as_secs() as i64,
    })
}

/// Wait until an answer counts or the deadline passes (`None`). Every answer read is judged,
/// journaled and acknowledged on its channel; `terminal` is the terminal's answer, if it is asked.
pub(crate) fn wait(
    run: &impl Run,
    channels: &Channels,
    p: &Pending,
    approvers: &[String],
    terminal: Option<&Receiver<bool>>,
    poll: Duration,
) -> RResult<Option<Decision>> {
    OPEN.lock().push(p.question.id.clone());
    let _open = OpenGuard(p.question.id.clone());
    let mut seen: HashSet<String> = HashSet::new();
    loop {
        if let Some(rx) = terminal {
            if let Ok(yes) = rx.try_recv() {
                return Ok(Some(Decision {
                    approved: yes,
                    by: "terminal".into(),
                    via: "terminal".into(),
                    reason: format!(
                        "{} at the terminal",
                        if yes { "approved" } else { "denied" }
                    ),
                }));
            }
        }
        if now() >= p.deadline {
            return Ok(None);
        }
        let c2 = channels.clone();
        let p2 = p.clone();
        let got = run.block("gate poll", poll + Duration::from_secs(30), async move {
            read_all(&c2, &p2).await
        });
        let got = match got {
            Ok(mut g) => {
                if p.sent.contains(&Sent::Dashboard {}) {
                    g.extend(run.other_answers(&p.question));
                }
                g
            }
            Err(e) if e.kind == ErrorKind::Cancelled => return Err(e),
            Err(e) => {
                tracing::warn!(target: "ralf::gate", "gate {}: reading the answers failed: {}", p.question.id, e.message);
                run.check_cancelled()?;
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
                judge(&s, &p.question, approvers)
            };
            let ack = match &verdict {
                Ok(()) => {
                    run.journal(
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
                    run.journal(
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
            let _ = run.block("gate ack", Duration::from_secs(20), async move {
                c2.acknowledge(&s, &sent, &ack).await;
                Ok(())
            });
        }
        if accepted.is_some() {
            return Ok(accepted);
        }
    }
}

/// Tell every channel how the gate ended; journaled with the channels that could not be told.
pub(crate) fn close(run: &impl Run, channels: &Channels, p: &Pending, d: &Decision) {
    let outcome = if d.by.is_empty() {
        format!("Timed out: {}", d.reason)
    } else {
        format!("{} {}", if d.approved { "✅" } else { "❌" }, d.reason)
    };
    let c2 = channels.clone();
    let (sent, q) = (p.sent.clone(), p.question.clone());
    let failed = run
        .block("gate close", Duration::from_secs(60), async move {
            Ok(c2.close(&sent, &q, &outcome).await)
        })
        .unwrap_or_default();
    run.journal(
        &p.question,
        "outcome",
        json!({"approved": d.approved, "by": d.by, "via": d.via, "reason": d.reason, "close_failed": failed}),
    );
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

/// Whether an answer counts; `Err(why)` when it is ignored.
pub(crate) fn judge(s: &Seen, q: &Question, approvers: &[String]) -> Result<(), String> {
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

/// Ask the question on the terminal (when stdin is one) on a thread of its own; the answer
/// arrives on the returned channel.
pub(crate) fn terminal_answers(q: &Question) -> Option<Receiver<bool>> {
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
        assert!(super::super::telegram::callback_data(&q, true).len() <= 64);
    }
}

//! Approval gates over chat channels, with no listening port: the question goes out with buttons
//! (Telegram inline keyboard, ntfy HTTP actions) or as a message to react to (Matrix), and the
//! answers are read back by polling (`getUpdates`, the ntfy reply topic, the relations API).
//!
//! Every question carries a gate id and a one-time nonce; an answer is only taken from the gate's
//! own message (Matrix) or with the gate's nonce (Telegram, ntfy). Whether an answer counts (the
//! approver list, the nonce, whether the gate is still open) is the caller's decision: this module
//! sends, reads and acknowledges. What a channel remembers of a sent question ([`Sent`]) is plain
//! data, kept by the caller as a step detail, so a resumed run reads the answers without asking again.

pub mod matrix;
pub mod ntfy;
pub(crate) mod protocol;
pub mod telegram;

use crate::clients::notify::Channel;
use crate::config::NotifyChannel;
use crate::error::{RResult, RalfError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One question.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Question {
    /// Short id (8 hex digits), shown in the message.
    pub id: String,
    /// One-time secret of this gate (16 hex digits), inside the buttons.
    pub nonce: String,
    pub text: String,
    /// Extra lines (e.g. a plan's tail), already scrubbed.
    pub details: String,
    /// The plan hash the approval is for (`deploy_all --plan` prints it): shown with the question,
    /// and an answer to it approves that plan only (a run that resolves another plan refuses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

impl Question {
    pub fn new(text: &str, details: &str) -> Question {
        Question {
            id: format!("{:08x}", rand::random::<u32>()),
            nonce: format!("{:016x}", rand::random::<u64>()),
            text: crate::redact::redact(text),
            details: crate::redact::redact(details),
            plan: None,
        }
    }

    /// The question about plan `hash` (see [`Question::plan`]).
    pub fn for_plan(mut self, hash: Option<String>) -> Question {
        self.plan = hash;
        self
    }

    /// The message text every channel shows.
    pub fn body(&self, how: &str) -> String {
        let mut s = format!("Approval needed [gate {}]\n{}", self.id, self.text);
        if !self.details.is_empty() {
            s.push_str("\n\n");
            s.push_str(&self.details);
        }
        if let Some(h) = &self.plan {
            s.push_str(&format!(
                "\n\nPlan {h}: an approval approves this plan only."
            ));
        }
        s.push_str("\n\n");
        s.push_str(how);
        s
    }
}

/// What a channel remembers of a sent question.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "via", rename_all = "lowercase")]
pub enum Sent {
    Telegram {
        chat_id: String,
        message_id: i64,
    },
    Matrix {
        room: String,
        event_id: String,
    },
    Ntfy {
        reply_topic: String,
        since: i64,
    },
    /// Answerable on `serve`'s dashboard (the answer comes through the state store).
    Dashboard {},
}

impl Sent {
    pub fn via(&self) -> &'static str {
        match self {
            Sent::Telegram { .. } => "telegram",
            Sent::Matrix { .. } => "matrix",
            Sent::Ntfy { .. } => "ntfy",
            Sent::Dashboard {} => "dashboard",
        }
    }
}

/// An answer read from a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub via: &'static str,
    /// The channel identity of whoever answered (`telegram:@name`, `matrix:@u:server`, `ntfy:name`).
    pub user: String,
    /// Other spellings of the same identity (`telegram:<user id>`).
    pub aliases: Vec<String>,
    pub approve: bool,
    /// The gate and nonce the answer names (Matrix: the gate's own, by construction).
    pub gate: String,
    pub nonce: String,
    /// Unique per answer (update id, event id, message id): read once.
    pub key: String,
    /// Telegram: the callback query to acknowledge.
    pub callback_id: Option<String>,
}

/// The channels a gate can ask through, with their tokens loaded.
#[derive(Clone)]
pub struct Channels {
    pub http: reqwest::Client,
    pub list: Vec<Channel>,
    pub reply_topic: Option<String>,
    /// Long-poll / poll interval.
    pub poll: Duration,
}

impl Channels {
    /// The gate-capable channels of `specs` (ntfy, telegram, matrix), tokens loaded.
    pub fn load(
        specs: &[NotifyChannel],
        reply_topic: Option<String>,
        poll: Duration,
    ) -> RResult<Channels> {
        let mut list = Vec::new();
        for s in specs {
            if matches!(s, NotifyChannel::Webhook { .. }) {
                continue;
            }
            list.push(Channel::load(s)?);
        }
        let http = crate::clients::http_builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(5))
            .timeout(poll + Duration::from_secs(15))
            .user_agent(concat!("ralf-sh/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RalfError::internal(format!("gate: http client: {e}")))?;
        Ok(Channels {
            http,
            list,
            reply_topic,
            poll,
        })
    }

    /// Ask on every channel; a channel that fails is reported, the others go on.
    pub async fn ask(&self, q: &Question) -> (Vec<Sent>, Vec<(String, String)>) {
        let mut sent = Vec::new();
        let mut failed = Vec::new();
        for ch in &self.list {
            let r = match &ch.spec {
                NotifyChannel::Telegram { .. } => telegram::ask(self, ch, q).await,
                NotifyChannel::Matrix { .. } => matrix::ask(self, ch, q).await,
                NotifyChannel::Ntfy { .. } => ntfy::ask(self, ch, q).await,
                NotifyChannel::Webhook { .. } => continue,
            };
            match r {
                Ok(s) => sent.push(s),
                Err(e) => failed.push((ch.describe(), crate::redact::redact(&e.message))),
            }
        }
        (sent, failed)
    }

    fn channel_for(&self, s: &Sent) -> Option<&Channel> {
        self.list.iter().find(|c| match (&c.spec, s) {
            (NotifyChannel::Telegram { chat_id, .. }, Sent::Telegram { chat_id: c2, .. }) => {
                chat_id == c2
            }
            (NotifyChannel::Matrix { room, .. }, Sent::Matrix { room: r2, .. }) => room == r2,
            (NotifyChannel::Ntfy { .. }, Sent::Ntfy { .. }) => true,
            _ => false,
        })
    }

    /// Read what arrived for the sent questions. `telegram_offset` is the next update id to read
    /// (kept by the caller across polls).
    pub async fn read(
        &self,
        sent: &[Sent],
        q: &Question,
        telegram_offset: &mut i64,
    ) -> RResult<Vec<Seen>> {
        let mut out = Vec::new();
        for s in sent {
            let Some(ch) = self.channel_for(s) else {
                continue;
            };
            match s {
                Sent::Telegram { .. } => {
                    out.extend(telegram::read(self, ch, telegram_offset).await?)
                }
                Sent::Matrix { room, event_id } => {
                    out.extend(matrix::read(self, ch, room, event_id, q).await?)
                }
                Sent::Ntfy { reply_topic, since } => {
                    out.extend(ntfy::read(self, ch, reply_topic, *since).await?)
                }
                Sent::Dashboard {} => {}
            }
        }
        Ok(out)
    }

    /// Tell the answerer what became of their answer (Telegram only; the others have no such call).
    pub async fn acknowledge(&self, seen: &Seen, sent: &[Sent], text: &str) {
        if let (Some(id), Some(s)) = (
            &seen.callback_id,
            sent.iter().find(|s| s.via() == "telegram"),
        ) {
            if let Some(ch) = self.channel_for(s) {
                let _ = telegram::answer_callback(self, ch, id, text).await;
            }
        }
    }

    /// Show the outcome where the question was asked (edit the Telegram message, reply in Matrix,
    /// publish to the ntfy topic). Failures are returned per channel, never fatal.
    pub async fn close(&self, sent: &[Sent], q: &Question, outcome: &str) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        for s in sent {
            let Some(ch) = self.channel_for(s) else {
                continue;
            };
            let r = match s {
                Sent::Telegram {
                    chat_id,
                    message_id,
                } => telegram::close(self, ch, chat_id, *message_id, q, outcome).await,
                Sent::Matrix { room, event_id } => {
                    matrix::close(self, ch, room, event_id, q, outcome).await
                }
                Sent::Ntfy { .. } => ntfy::close(self, ch, q, outcome).await,
                Sent::Dashboard {} => Ok(()),
            };
            if let Err(e) = r {
                failed.push((ch.describe(), crate::redact::redact(&e.message)));
            }
        }
        failed
    }
}

/// A failed request, named without its URL (the Telegram URL carries the bot token).
pub(crate) fn http_error(name: &str, e: reqwest::Error) -> RalfError {
    let kind = if e.is_timeout() {
        crate::error::ErrorKind::Timeout
    } else {
        crate::error::ErrorKind::Unavailable
    };
    RalfError::new(
        kind,
        crate::redact::redact(&format!("{name}: {}", e.without_url())),
    )
}

/// The JSON body of a response, or an error naming the channel and the status.
pub(crate) async fn json_of(name: &str, r: reqwest::Response) -> RResult<serde_json::Value> {
    let status = r.status();
    let text = r.text().await.map_err(|e| http_error(name, e))?;
    if !status.is_success() {
        let snippet: String = text.chars().take(200).collect();
        let kind = if status.as_u16() == 401 || status.as_u16() == 403 {
            crate::error::ErrorKind::Auth
        } else {
            crate::error::ErrorKind::Unavailable
        };
        return Err(RalfError::new(
            kind,
            crate::redact::redact(&format!("{name}: HTTP {status}: {snippet}")),
        ));
    }
    serde_json::from_str(&text)
        .map_err(|e| RalfError::unavailable(format!("{name}: the answer is not JSON: {e}")))
}

//! Notification client: sends one message to every configured channel (ntfy, Matrix, Telegram bot,
//! generic JSON webhook). Plain async Rust; a channel that fails is reported, never fatal.
//!
//! Wire formats (as the real servers expect them):
//! - ntfy: JSON publishing, `POST <url>/` with `{"topic","title","message","priority","tags"}`
//!   (priority 1..5), optional `Authorization: Bearer <token>`.
//! - Matrix client-server API: `PUT <homeserver>/_matrix/client/v3/rooms/<room>/send/m.room.message/<txn>`
//!   with `{"msgtype":"m.text","body"}` and `Authorization: Bearer <access token>`.
//! - Telegram Bot API: `POST <api_url>/bot<token>/sendMessage` with `{"chat_id","text"}`; the answer is
//!   `{"ok": true, ...}` or `{"ok": false, "description": ...}`.
//! - Webhook: `POST <url>` with `{"title","message","priority","tags","source":"ralf-sh"}`, optional Bearer token.

use crate::config::NotifyChannel;
use crate::error::{RResult, RalfError};
use crate::redact::redact;
use serde_json::{json, Value};
use std::time::Duration;

/// Default Telegram Bot API root.
pub const TELEGRAM_API: &str = "https://api.telegram.org";

/// Per-channel request timeout.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Priority on ntfy's scale: 1 min, 2 low, 3 default, 4 high, 5 urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority(pub u8);

impl Priority {
    pub const NAMES: [&'static str; 5] = ["min", "low", "default", "high", "urgent"];

    /// Parse `1..5` or `min|low|default|high|max|urgent`.
    pub fn parse_name(s: &str) -> RResult<Priority> {
        let p = match s.to_ascii_lowercase().as_str() {
            "min" => 1,
            "low" => 2,
            "default" | "normal" => 3,
            "high" => 4,
            "max" | "urgent" => 5,
            other => {
                if let Ok(n) = other.parse::<i64>() {
                    return Self::from_int(n);
                }
                let hint = crate::text::did_you_mean(other, Self::NAMES.iter().copied())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(RalfError::invalid(format!(
                    "notify: unknown priority `{s}` (use min, low, default, high, urgent or 1..5){hint}"
                )));
            }
        };
        Ok(Priority(p))
    }

    pub fn from_int(n: i64) -> RResult<Priority> {
        if (1..=5).contains(&n) {
            Ok(Priority(n as u8))
        } else {
            Err(RalfError::invalid(format!(
                "notify: priority must be between 1 and 5, got {n}"
            )))
        }
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[(self.0.clamp(1, 5) - 1) as usize]
    }
}

impl Default for Priority {
    fn default() -> Self {
        Priority(3)
    }
}

/// One notification.
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub title: String,
    pub message: String,
    pub priority: Priority,
    pub tags: Vec<String>,
}

impl Message {
    /// The same message with every registered secret scrubbed.
    pub fn scrubbed(&self) -> Message {
        Message {
            title: redact(&self.title),
            message: redact(&self.message),
            priority: self.priority,
            tags: self.tags.iter().map(|t| redact(t)).collect(),
        }
    }

    fn text(&self) -> String {
        let mut s = String::new();
        if !self.title.is_empty() {
            s.push_str(&self.title);
            s.push('\n');
        }
        s.push_str(&self.message);
        if self.priority.0 >= 4 {
            s.push_str(&format!("\n[priority: {}]", self.priority.name()));
        }
        if !self.tags.is_empty() {
            s.push_str(&format!("\n[tags: {}]", self.tags.join(", ")));
        }
        s
    }
}

/// A channel with its token loaded.
#[derive(Debug, Clone)]
pub struct Channel {
    pub spec: NotifyChannel,
    token: Option<String>,
}

impl Channel {
    /// Load the channel's token (from `token_env`; registered with the redactor).
    pub fn load(spec: &NotifyChannel) -> RResult<Channel> {
        let env = match spec {
            NotifyChannel::Ntfy { token_env, .. }
            | NotifyChannel::Matrix { token_env, .. }
            | NotifyChannel::Telegram { token_env, .. }
            | NotifyChannel::Webhook { token_env, .. } => token_env.clone(),
        };
        let token = match env.as_deref() {
            Some(var) => {
                let t = crate::secrets::load_ref(Some(var), None, &format!("notify {var}"))?;
                if t.is_none() {
                    return Err(RalfError::config(format!(
                        "notify channel {}: environment variable {var} (token_env) is not set",
                        describe(spec)
                    )));
                }
                t
            }
            None => None,
        };
        if matches!(spec, NotifyChannel::Telegram { .. }) && token.is_none() {
            return Err(RalfError::config(format!(
                "notify channel {}: a Telegram channel needs token_env (the bot token)",
                describe(spec)
            )));
        }
        if matches!(spec, NotifyChannel::Matrix { .. }) && token.is_none() {
            return Err(RalfError::config(format!(
                "notify channel {}: a Matrix channel needs token_env (an access token)",
                describe(spec)
            )));
        }
        Ok(Channel {
            spec: spec.clone(),
            token,
        })
    }

    pub fn describe(&self) -> String {
        describe(&self.spec)
    }

    /// The loaded token (registered with the redactor).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

/// A short, secret-free name of a channel: `ntfy:http://host/topic`, `matrix:!room:server`, ...
pub fn describe(spec: &NotifyChannel) -> String {
    match spec {
        NotifyChannel::Ntfy { url, topic, .. } => {
            format!("ntfy:{}/{}", url.trim_end_matches('/'), topic)
        }
        NotifyChannel::Matrix {
            homeserver, room, ..
        } => format!("matrix:{room}@{}", homeserver.trim_end_matches('/')),
        NotifyChannel::Telegram { chat_id, .. } => format!("telegram:{chat_id}"),
        NotifyChannel::Webhook { url, .. } => format!("webhook:{url}"),
    }
}

/// What happened to one send.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub sent: Vec<String>,
    /// (channel, error message), both secret-free.
    pub failed: Vec<(String, String)>,
}

/// The notifier: an HTTP client and the configured channels.
#[derive(Clone)]
pub struct Notifier {
    http: reqwest::Client,
    channels: Vec<NotifyChannel>,
}

impl Notifier {
    pub fn new(channels: Vec<NotifyChannel>) -> RResult<Notifier> {
        let http = crate::clients::http_builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(5))
            .timeout(SEND_TIMEOUT)
            .user_agent(concat!("ralf-sh/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RalfError::internal(format!("notify: http client: {e}")))?;
        Ok(Notifier { http, channels })
    }

    pub fn channels(&self) -> &[NotifyChannel] {
        &self.channels
    }

    /// Send `msg` (scrubbed first) to every channel, concurrently. Never fails as a whole.
    pub async fn send(&self, msg: &Message, txn_prefix: &str) -> Report {
        let msg = msg.scrubbed();
        let futs = self.channels.iter().enumerate().map(|(i, spec)| {
            let msg = &msg;
            let txn = format!("{txn_prefix}-{i}");
            async move {
                let name = describe(spec);
                let r = match Channel::load(spec) {
                    Ok(ch) => self.send_one(&ch, msg, &txn).await,
                    Err(e) => Err(e),
                };
                (name, r)
            }
        });
        let mut report = Report::default();
        for (name, r) in futures_util::future::join_all(futs).await {
            match r {
                Ok(()) => report.sent.push(name),
                Err(e) => {
                    let m = redact(&e.message);
                    tracing::warn!(target: "ralf::notify", "notification to {name} failed: {m}");
                    report.failed.push((name, m));
                }
            }
        }
        report
    }

    /// Send to one channel.
    pub async fn send_one(&self, ch: &Channel, msg: &Message, txn: &str) -> RResult<()> {
        let name = ch.describe();
        let req = match &ch.spec {
            NotifyChannel::Ntfy { url, topic, .. } => {
                let body = json!({
                    "topic": topic,
                    "title": msg.title,
                    "message": msg.message,
                    "priority": msg.priority.0,
                    "tags": msg.tags,
                });
                self.http
                    .post(format!("{}/", url.trim_end_matches('/')))
                    .json(&body)
            }
            NotifyChannel::Matrix {
                homeserver, room, ..
            } => {
                let mut u = parse_url(homeserver, &name)?;
                u.path_segments_mut()
                    .map_err(|_| {
                        RalfError::config(format!("{name}: homeserver is not a base URL"))
                    })?
                    .pop_if_empty()
                    .extend([
                        "_matrix",
                        "client",
                        "v3",
                        "rooms",
                        room.as_str(),
                        "send",
                        "m.room.message",
                        txn,
                    ]);
                self.http
                    .put(u)
                    .json(&json!({"msgtype": "m.text", "body": msg.text()}))
            }
            NotifyChannel::Telegram {
                chat_id, api_url, ..
            } => {
                let base = api_url.as_deref().unwrap_or(TELEGRAM_API);
                let token = ch.token.as_deref().unwrap_or_default();
                self.http
                    .post(format!(
                        "{}/bot{token}/sendMessage",
                        base.trim_end_matches('/')
                    ))
                    .json(&json!({"chat_id": chat_id, "text": msg.text()}))
            }
            NotifyChannel::Webhook { url, .. } => {
                parse_url(url, &name)?;
                self.http.post(url).json(&json!({
                    "title": msg.title,
                    "message": msg.message,
                    "priority": msg.priority.0,
                    "priority_name": msg.priority.name(),
                    "tags": msg.tags,
                    "source": "ralf-sh",
                }))
            }
        };
        let req = match (&ch.spec, &ch.token) {
            (NotifyChannel::Telegram { .. }, _) | (_, None) => req,
            (_, Some(t)) => req.bearer_auth(t),
        };
        let resp = req.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                crate::error::ErrorKind::Timeout
            } else {
                crate::error::ErrorKind::Unavailable
            };
            // without_url: the Telegram URL carries the bot token.
            RalfError::new(kind, redact(&format!("{name}: {}", e.without_url())))
        })?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let snippet: String = body.chars().take(200).collect();
            return Err(RalfError::unavailable(redact(&format!(
                "{name}: HTTP {status}: {snippet}"
            ))));
        }
        if matches!(ch.spec, NotifyChannel::Telegram { .. }) {
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if v.get("ok") != Some(&Value::Bool(true)) {
                let d = v
                    .get("description")
                    .and_then(|d| d.as_str())
                    .unwrap_or("answer without \"ok\": true");
                return Err(RalfError::unavailable(redact(&format!("{name}: {d}"))));
            }
        }
        Ok(())
    }
}

fn parse_url(s: &str, name: &str) -> RResult<reqwest::Url> {
    let u = reqwest::Url::parse(s)
        .map_err(|e| RalfError::config(format!("{name}: invalid URL `{s}`: {e}")))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(RalfError::config(format!(
            "{name}: URL must be http or https, got `{s}`"
        )));
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities() {
        assert_eq!(Priority::parse_name("high").unwrap(), Priority(4));
        assert_eq!(Priority::parse_name("MAX").unwrap(), Priority(5));
        assert_eq!(Priority::parse_name("2").unwrap(), Priority(2));
        let e = Priority::parse_name("hihg").unwrap_err();
        assert!(e.message.contains("did you mean `high`"), "{e}");
        assert!(Priority::from_int(0).is_err());
        assert!(Priority::from_int(6).is_err());
    }

    #[test]
    fn describe_has_no_token() {
        let d = describe(&NotifyChannel::Telegram {
            chat_id: "42".into(),
            token_env: Some("X".into()),
            api_url: None,
        });
        assert_eq!(d, "telegram:42");
    }
}

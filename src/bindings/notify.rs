//! `notify::` bindings: send a message to every channel under `notify.channels` in the config.
//! Failing channels are logged and reported in the result, never thrown.

use crate::bindings::{host, AtCall};
use crate::clients::notify::{describe, Message, Notifier, Priority};
use crate::error::{RResult, RhaiResult};
use crate::host::Host;
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map, NativeCallContext};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub(crate) fn register(engine: &mut Engine) {
    engine.register_static_module("notify", exported_module!(notify_mod).into());
}

/// Options of `notify::send`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendOpts {
    /// Short title (default "ralf-sh").
    title: Option<String>,
    /// The text.
    message: String,
    /// 1..5 or min/low/default/high/urgent.
    priority: Option<PriorityArg>,
    /// ntfy tags (emoji short codes) / labels.
    tags: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PriorityArg {
    Int(i64),
    Name(String),
}

#[derive(Clone)]
struct NotifierExt(Arc<Notifier>);

fn notifier(h: &Host) -> RResult<Arc<Notifier>> {
    // The channel list is fixed for a run; build the HTTP client once.
    let n = Notifier::new(h.cfg().notify.channels.clone())?;
    Ok(h.extension(|| NotifierExt(Arc::new(n))).0)
}

fn send_impl(ctx: &NativeCallContext, opts: &Map) -> RhaiResult<Map> {
    let h = host(ctx)?;
    let o: SendOpts = crate::script::decode::decode(opts, "notify::send").at(ctx)?;
    let priority = match o.priority {
        None => Priority::default(),
        Some(PriorityArg::Int(n)) => Priority::from_int(n).at(ctx)?,
        Some(PriorityArg::Name(s)) => Priority::parse_name(&s).at(ctx)?,
    };
    let msg = Message {
        title: o.title.unwrap_or_else(|| "ralf-sh".into()),
        message: o.message,
        priority,
        tags: o.tags.unwrap_or_default(),
    }
    .scrubbed();
    let n = notifier(&h).at(ctx)?;
    let channels: Vec<String> = n.channels().iter().map(describe).collect();
    let mut out = Map::new();
    if h.dry_run(
        "notify",
        format!(
            "send \"{}\" ({}) to {} channel(s)",
            msg.title,
            priority.name(),
            channels.len()
        ),
    ) {
        out.insert("sent".into(), Dynamic::from_int(0));
        out.insert("failed".into(), Dynamic::from_array(Array::new()));
        out.insert("dry_run".into(), true.into());
        return Ok(out);
    }
    let txn = format!("ralf-{}-{}", h.run_id, rand::random::<u32>());
    let n2 = n.clone();
    let msg2 = msg.clone();
    let report = crate::script::bridge::block_on(
        &h,
        "notify::send",
        Some(crate::clients::notify::SEND_TIMEOUT * 2),
        async move { Ok(n2.send(&msg2, &txn).await) },
    )
    .at(ctx)?;
    h.record_event(
        "notify",
        json!({
            "title": msg.title,
            "message": msg.message,
            "priority": priority.name(),
            "tags": msg.tags,
            "sent": report.sent,
            "failed": report.failed.iter().map(|(c, e)| json!({"channel": c, "error": e})).collect::<Vec<_>>(),
        }),
    );
    let failed: Array = report
        .failed
        .iter()
        .map(|(c, e)| {
            let mut m = Map::new();
            m.insert("channel".into(), c.clone().into());
            m.insert("error".into(), e.clone().into());
            Dynamic::from_map(m)
        })
        .collect();
    out.insert("sent".into(), Dynamic::from_int(report.sent.len() as i64));
    out.insert("failed".into(), Dynamic::from_array(failed));
    out.insert("dry_run".into(), false.into());
    Ok(out)
}

#[export_module]
mod notify_mod {
    use super::*;

    /// Send a notification to every channel in the config (`notify.channels`: ntfy, Matrix,
    /// Telegram, webhook), all at once. Keys: `message` (required), `title` (default "ralf-sh"),
    /// `priority` (1..5 or "min", "low", "default", "high", "urgent"), `tags` (array of strings).
    /// Secrets are scrubbed from every text before it leaves. A channel that fails is logged and
    /// listed in `failed` (`#{ channel, error }`); it never makes the script fail.
    /// Returns `#{ sent, failed, dry_run }`; with `--dry-run` nothing is sent.
    ///
    /// ```rhai
    /// let r = notify::send(#{ title: "RALF", message: "vaultwarden deployed", priority: "default", tags: ["rocket"] });
    /// assert(r.failed.len() == 0);
    /// print(`sent to ${r.sent} channel(s)`);
    /// ```
    #[rhai_fn(name = "send", return_raw)]
    pub fn send(ctx: NativeCallContext, opts: Map) -> RhaiResult<Map> {
        send_impl(&ctx, &opts)
    }

    /// Send a plain message (title "ralf-sh", default priority) to every configured channel.
    ///
    /// ```rhai
    /// let r = notify::send("nightly deploy finished");
    /// assert(type_of(r.failed) == "array");
    /// ```
    #[rhai_fn(name = "send", return_raw)]
    pub fn send_text(ctx: NativeCallContext, message: &str) -> RhaiResult<Map> {
        let mut m = Map::new();
        m.insert("message".into(), message.into());
        send_impl(&ctx, &m)
    }

    /// The configured channels, described without their tokens (`"ntfy:http://host/topic"`, ...).
    ///
    /// ```rhai
    /// for c in notify::channels() { print(c); }
    /// ```
    #[rhai_fn(name = "channels", return_raw)]
    pub fn channels(ctx: NativeCallContext) -> RhaiResult<Array> {
        let h = host(&ctx)?;
        Ok(h.cfg()
            .notify
            .channels
            .iter()
            .map(|c| Dynamic::from(describe(c)))
            .collect())
    }
}

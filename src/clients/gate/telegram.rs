//! Telegram Bot API: the question with an inline keyboard (callback data `rg:<gate>:<nonce>:y|n`,
//! 29 bytes, under the 64-byte limit), answers read with `getUpdates` (long polling, only
//! `callback_query` updates), each acknowledged with `answerCallbackQuery`, and the message edited
//! to show the outcome (the keyboard removed).

use super::{http_error, json_of, Channels, Question, Seen, Sent};
use crate::clients::notify::{Channel, TELEGRAM_API};
use crate::config::NotifyChannel;
use crate::error::{RResult, RalfError};
use serde_json::{json, Value};

fn base(ch: &Channel) -> (String, String) {
    let api = match &ch.spec {
        NotifyChannel::Telegram { api_url, .. } => {
            api_url.clone().unwrap_or_else(|| TELEGRAM_API.into())
        }
        _ => TELEGRAM_API.into(),
    };
    (
        api.trim_end_matches('/').to_string(),
        ch.token().unwrap_or_default().to_string(),
    )
}

async fn call(c: &Channels, ch: &Channel, method: &str, body: Value) -> RResult<Value> {
    let (api, token) = base(ch);
    let name = ch.describe();
    let r = c
        .http
        .post(format!("{api}/bot{token}/{method}"))
        .json(&body)
        .send()
        .await
        .map_err(|e| http_error(&name, e))?;
    let v = json_of(&format!("{name} {method}"), r).await?;
    if v["ok"] != json!(true) {
        let d = v["description"]
            .as_str()
            .unwrap_or("answer without \"ok\": true");
        return Err(RalfError::unavailable(crate::redact::redact(&format!(
            "{name} {method}: {d}"
        ))));
    }
    Ok(v["result"].clone())
}

/// The callback data of a button.
pub fn callback_data(q: &Question, approve: bool) -> String {
    format!(
        "rg:{}:{}:{}",
        q.id,
        q.nonce,
        if approve { "y" } else { "n" }
    )
}

pub async fn ask(c: &Channels, ch: &Channel, q: &Question) -> RResult<Sent> {
    let NotifyChannel::Telegram { chat_id, .. } = &ch.spec else {
        return Err(RalfError::internal("telegram::ask on another channel"));
    };
    let r = call(
        c,
        ch,
        "sendMessage",
        json!({
            "chat_id": chat_id,
            "text": q.body("Press a button to answer."),
            "reply_markup": {"inline_keyboard": [[
                {"text": "✅ Approve", "callback_data": callback_data(q, true)},
                {"text": "❌ Deny", "callback_data": callback_data(q, false)},
            ]]},
        }),
    )
    .await?;
    let message_id = r["message_id"].as_i64().ok_or_else(|| {
        RalfError::unavailable(format!(
            "{}: sendMessage answered no message_id",
            ch.describe()
        ))
    })?;
    Ok(Sent::Telegram {
        chat_id: chat_id.clone(),
        message_id,
    })
}

/// Callback queries since `offset` (which then moves past them: Telegram forgets confirmed updates).
pub async fn read(c: &Channels, ch: &Channel, offset: &mut i64) -> RResult<Vec<Seen>> {
    let timeout = c.poll.as_secs();
    let r = call(
        c,
        ch,
        "getUpdates",
        json!({
            "offset": *offset, "timeout": timeout, "allowed_updates": ["callback_query"],
        }),
    )
    .await?;
    let mut out = Vec::new();
    for u in r.as_array().into_iter().flatten() {
        let id = u["update_id"].as_i64().unwrap_or(0);
        *offset = (*offset).max(id + 1);
        let cq = &u["callback_query"];
        let Some(data) = cq["data"].as_str() else {
            continue;
        };
        let parts: Vec<&str> = data.split(':').collect();
        if parts.len() != 4 || parts[0] != "rg" {
            continue;
        }
        let from = &cq["from"];
        let uid = from["id"]
            .as_i64()
            .map(|i| format!("telegram:{i}"))
            .unwrap_or_default();
        let user = from["username"]
            .as_str()
            .map(|n| format!("telegram:@{n}"))
            .unwrap_or(uid.clone());
        out.push(Seen {
            via: "telegram",
            user,
            aliases: vec![uid],
            approve: parts[3] == "y",
            gate: parts[1].to_string(),
            nonce: parts[2].to_string(),
            key: format!("telegram:{id}"),
            callback_id: cq["id"].as_str().map(str::to_string),
        });
    }
    Ok(out)
}

pub async fn answer_callback(c: &Channels, ch: &Channel, id: &str, text: &str) -> RResult<()> {
    call(
        c,
        ch,
        "answerCallbackQuery",
        json!({"callback_query_id": id, "text": text}),
    )
    .await?;
    Ok(())
}

pub async fn close(
    c: &Channels,
    ch: &Channel,
    chat_id: &str,
    message_id: i64,
    q: &Question,
    outcome: &str,
) -> RResult<()> {
    // No reply_markup: the keyboard goes away, so nobody answers a closed gate.
    call(
        c,
        ch,
        "editMessageText",
        json!({
            "chat_id": chat_id, "message_id": message_id, "text": q.body(outcome),
        }),
    )
    .await?;
    Ok(())
}

//! ntfy: the question published with two HTTP action buttons; pressing one makes the phone POST
//! `{"gate","nonce","approve","user"}` to the reply topic (`gates.reply_topic`, default
//! `<topic>-answers`), which is read with `GET /<reply topic>/json?poll=1&since=<asked at>`.
//! `user` is the channel's `approver`: ntfy has no sender identity, so the identity is whose phone
//! subscribes to the (access-controlled) topic. The outcome is published to the topic.

use super::{http_error, json_of, Channels, Question, Seen, Sent};
use crate::clients::notify::Channel;
use crate::config::NotifyChannel;
use crate::error::{RResult, RalfError};
use serde_json::{json, Value};

fn parts(ch: &Channel) -> RResult<(String, String, String)> {
    let NotifyChannel::Ntfy {
        url,
        topic,
        approver,
        ..
    } = &ch.spec
    else {
        return Err(RalfError::internal("ntfy call on another channel"));
    };
    Ok((
        url.trim_end_matches('/').to_string(),
        topic.clone(),
        approver.clone().unwrap_or_else(|| "phone".into()),
    ))
}

fn with_token(ch: &Channel, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match ch.token() {
        Some(t) => r.bearer_auth(t),
        None => r,
    }
}

async fn publish(c: &Channels, ch: &Channel, body: Value) -> RResult<()> {
    let (url, _, _) = parts(ch)?;
    let name = ch.describe();
    let r = with_token(ch, c.http.post(format!("{url}/")).json(&body))
        .send()
        .await
        .map_err(|e| http_error(&name, e))?;
    json_of(&name, r).await?;
    Ok(())
}

pub fn reply_topic(c: &Channels, topic: &str) -> String {
    c.reply_topic
        .clone()
        .unwrap_or_else(|| format!("{topic}-answers"))
}

pub async fn ask(c: &Channels, ch: &Channel, q: &Question) -> RResult<Sent> {
    let (url, topic, user) = parts(ch)?;
    let reply = reply_topic(c, &topic);
    let action = |label: &str, approve: bool| {
        json!({"action": "http", "label": label, "url": format!("{url}/{reply}"), "method": "POST",
               "body": json!({"gate": q.id, "nonce": q.nonce, "approve": approve, "user": user}).to_string(),
               "clear": true})
    };
    let since = chrono::Utc::now().timestamp() - 1;
    publish(
        c,
        ch,
        json!({
            "topic": topic, "title": format!("Approval needed [gate {}]", q.id),
            "message": q.body("Answer with a button."), "priority": 4, "tags": ["question"],
            "actions": [action("Approve", true), action("Deny", false)],
        }),
    )
    .await?;
    Ok(Sent::Ntfy {
        reply_topic: reply,
        since,
    })
}

pub async fn read(c: &Channels, ch: &Channel, reply: &str, since: i64) -> RResult<Vec<Seen>> {
    let (url, _, _) = parts(ch)?;
    let name = ch.describe();
    let r = with_token(
        ch,
        c.http
            .get(format!("{url}/{reply}/json"))
            .query(&[("poll", "1"), ("since", &since.to_string())]),
    )
    .send()
    .await
    .map_err(|e| http_error(&name, e))?;
    if !r.status().is_success() {
        json_of(&name, r).await?;
        return Ok(vec![]);
    }
    let text = r.text().await.map_err(|e| http_error(&name, e))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(m) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if m["event"] != "message" {
            continue;
        }
        let Ok(a) = serde_json::from_str::<Value>(m["message"].as_str().unwrap_or("")) else {
            continue;
        };
        let (Some(gate), Some(nonce), Some(approve)) = (
            a["gate"].as_str(),
            a["nonce"].as_str(),
            a["approve"].as_bool(),
        ) else {
            continue;
        };
        out.push(Seen {
            via: "ntfy",
            user: format!("ntfy:{}", a["user"].as_str().unwrap_or("?")),
            aliases: vec![],
            approve,
            gate: gate.to_string(),
            nonce: nonce.to_string(),
            key: format!("ntfy:{}", m["id"].as_str().unwrap_or(line)),
            callback_id: None,
        });
    }
    Ok(out)
}

pub async fn close(c: &Channels, ch: &Channel, q: &Question, outcome: &str) -> RResult<()> {
    let (_, topic, _) = parts(ch)?;
    publish(c, ch, json!({"topic": topic, "title": format!("[gate {}] {outcome}", q.id), "message": q.text, "tags": ["answered"]})).await
}

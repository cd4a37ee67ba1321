//! Matrix client-server API: the question as an `m.text` message; the answer is a reaction to it
//! (✅ approves, ❌ denies; emoji variation selectors ignored), read through the relations API
//! (`GET /_matrix/client/v1/rooms/{room}/relations/{event}/m.annotation`). A reaction can only
//! point at one event, so it is bound to its gate. The outcome is posted as a reply.

use super::{http_error, json_of, Channels, Question, Seen, Sent};
use crate::clients::notify::Channel;
use crate::config::NotifyChannel;
use crate::error::{RResult, RalfError};
use serde_json::{json, Value};

fn url(ch: &Channel, path: &[&str]) -> RResult<reqwest::Url> {
    let NotifyChannel::Matrix { homeserver, .. } = &ch.spec else {
        return Err(RalfError::internal("matrix call on another channel"));
    };
    let mut u = reqwest::Url::parse(homeserver).map_err(|e| {
        RalfError::config(format!("{}: invalid homeserver URL: {e}", ch.describe()))
    })?;
    u.path_segments_mut()
        .map_err(|_| RalfError::config(format!("{}: homeserver is not a base URL", ch.describe())))?
        .pop_if_empty()
        .extend(path);
    Ok(u)
}

async fn send(c: &Channels, ch: &Channel, room: &str, content: Value) -> RResult<String> {
    let txn = format!("rg{:016x}", rand::random::<u64>());
    let u = url(
        ch,
        &[
            "_matrix",
            "client",
            "v3",
            "rooms",
            room,
            "send",
            "m.room.message",
            &txn,
        ],
    )?;
    let name = ch.describe();
    let r = c
        .http
        .put(u)
        .bearer_auth(ch.token().unwrap_or_default())
        .json(&content)
        .send()
        .await
        .map_err(|e| http_error(&name, e))?;
    let v = json_of(&name, r).await?;
    v["event_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| RalfError::unavailable(format!("{name}: send answered no event_id")))
}

pub async fn ask(c: &Channels, ch: &Channel, q: &Question) -> RResult<Sent> {
    let NotifyChannel::Matrix { room, .. } = &ch.spec else {
        return Err(RalfError::internal("matrix::ask on another channel"));
    };
    let body = q.body("React with ✅ to approve or ❌ to deny.");
    let event_id = send(c, ch, room, json!({"msgtype": "m.text", "body": body})).await?;
    Ok(Sent::Matrix {
        room: room.clone(),
        event_id,
    })
}

/// The reactions to the question so far (every page).
pub async fn read(
    c: &Channels,
    ch: &Channel,
    room: &str,
    event_id: &str,
    q: &Question,
) -> RResult<Vec<Seen>> {
    let name = ch.describe();
    let mut out = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..20 {
        let mut u = url(
            ch,
            &[
                "_matrix",
                "client",
                "v1",
                "rooms",
                room,
                "relations",
                event_id,
                "m.annotation",
            ],
        )?;
        if let Some(f) = &from {
            u.query_pairs_mut().append_pair("from", f);
        }
        let r = c
            .http
            .get(u)
            .bearer_auth(ch.token().unwrap_or_default())
            .send()
            .await
            .map_err(|e| http_error(&name, e))?;
        let v = json_of(&name, r).await?;
        // Servers list relations newest first; answers are judged in the order they were given.
        let mut chunk: Vec<&Value> = v["chunk"].as_array().into_iter().flatten().collect();
        chunk.sort_by_key(|e| e["origin_server_ts"].as_i64().unwrap_or(0));
        for ev in chunk {
            if ev["type"] != "m.reaction" {
                continue;
            }
            let rel = &ev["content"]["m.relates_to"];
            if rel["event_id"] != json!(event_id) {
                continue;
            }
            let key: String = rel["key"]
                .as_str()
                .unwrap_or("")
                .chars()
                .filter(|c| *c != '\u{fe0f}')
                .collect();
            let approve = match key.as_str() {
                "✅" | "👍" => true,
                "❌" | "👎" => false,
                _ => continue,
            };
            out.push(Seen {
                via: "matrix",
                user: format!("matrix:{}", ev["sender"].as_str().unwrap_or("?")),
                aliases: vec![],
                approve,
                gate: q.id.clone(),
                nonce: q.nonce.clone(),
                key: format!("matrix:{}", ev["event_id"].as_str().unwrap_or("?")),
                callback_id: None,
            });
        }
        match v["next_batch"].as_str() {
            Some(n) => from = Some(n.to_string()),
            None => break,
        }
    }
    Ok(out)
}

pub async fn close(
    c: &Channels,
    ch: &Channel,
    room: &str,
    event_id: &str,
    q: &Question,
    outcome: &str,
) -> RResult<()> {
    send(
        c,
        ch,
        room,
        json!({
            "msgtype": "m.notice",
            "body": format!("[gate {}] {outcome}", q.id),
            "m.relates_to": {"m.in_reply_to": {"event_id": event_id}},
        }),
    )
    .await?;
    Ok(())
}

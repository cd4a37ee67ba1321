//! serve's HTTP listener: `POST /hooks/NAME` (signed webhook deliveries), `GET /metrics`
//! (Prometheus text format), `GET /healthz`.
//!
//! A delivery is answered at once (202 with the run id; the run is its own process): the body is
//! refused above 1 MiB, its signature checked in constant time before anything parses it, a bad
//! signature answered 401 and its address backed off (429 with Retry-After, doubling up to 5 min,
//! starting again after 10 quiet minutes; a delivery whose signature verifies is always heard),
//! a delivery id seen in the last 72 h starts nothing.

use super::hooks;
use super::runner::Launch;
use super::Served;
use crate::config::TriggerConfig;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A webhook trigger as served.
pub struct Hook {
    pub cfg: TriggerConfig,
    pub secret: String,
    pub script: PathBuf,
}

pub(super) async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

fn answer(code: StatusCode, body: serde_json::Value) -> Response {
    (code, Json(body)).into_response()
}

/// After this long without a bad signature, an address's back-off starts again from 1 s.
const BACKOFF_DECAY: Duration = Duration::from_secs(600);

/// How long `ip` still waits for its bad signatures, if it does.
fn backed_off(s: &Served, ip: std::net::IpAddr) -> Option<Duration> {
    let until = s.backoff.lock().get(&ip)?.1;
    until.checked_duration_since(Instant::now())
}

pub(super) async fn hook(
    State(s): State<Arc<Served>>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ip = peer.ip();
    let Some(h) = s.hooks.get(&name) else {
        return answer(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no webhook trigger `{name}`")}),
        );
    };
    let d = hooks::delivery(|k| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    let signed = d
        .signature
        .as_deref()
        .is_some_and(|sig| hooks::verify(h.secret.as_bytes(), &body, sig));
    if !signed {
        // An address that sent bad signatures waits before it is heard again (a signed delivery
        // is always heard: behind a reverse proxy every sender shares one address).
        if let Some(wait) = backed_off(&s, ip) {
            let mut r = answer(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": "too many bad signatures from this address; retry later"}),
            );
            // Whole seconds, rounded up: a client that waits that long is heard.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
        s.count(&name, "bad_signature");
        let mut b = s.backoff.lock();
        let now = Instant::now();
        let e = b.entry(ip).or_insert((0, now));
        if now > e.1 + BACKOFF_DECAY {
            // Long quiet since the last window: start again from 1 s.
            e.0 = 0;
        }
        e.0 += 1;
        let wait = Duration::from_secs(1u64 << (e.0 - 1).min(8)).min(Duration::from_secs(300));
        e.1 = now + wait;
        tracing::warn!(target: "ralf::serve", "trigger {name}: delivery from {ip} refused: {}", if d.signature.is_some() { "the signature does not match" } else { "no signature header" });
        let msg = match d.signature {
            None => "no signature (X-Hub-Signature-256, X-Gitea-Signature, X-Forgejo-Signature or X-Ralf-Signature)",
            Some(_) => "the signature does not match",
        };
        return answer(StatusCode::UNAUTHORIZED, json!({ "error": msg }));
    }
    s.backoff.lock().remove(&ip);
    if d.event.as_deref() == Some("ping") {
        s.count(&name, "ping");
        return answer(StatusCode::OK, json!({"pong": true, "trigger": name}));
    }
    let mut env = vec![("RALF_EVENT_SENDER".to_string(), d.sender.to_string())];
    if let Some(id) = &d.id {
        env.push(("RALF_DELIVERY".into(), id.clone()));
    }
    let mut args = h.cfg.args.clone();
    if h.cfg.on == "push" {
        if let Some(ev) = d.event.as_deref().filter(|e| *e != "push") {
            s.count(&name, "ignored");
            return answer(
                StatusCode::OK,
                json!({"ignored": format!("event `{ev}` (this trigger runs on push)")}),
            );
        }
        let Some(p) = serde_json::from_slice(&body)
            .ok()
            .as_ref()
            .and_then(hooks::push)
        else {
            s.count(&name, "bad_payload");
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"error": "not a push payload (no ref or repository.full_name)"}),
            );
        };
        if let Some(want) = h.cfg.repository.as_deref().filter(|w| *w != p.repository) {
            s.count(&name, "ignored");
            return answer(
                StatusCode::OK,
                json!({"ignored": format!("repository {} (this trigger runs for {want})", p.repository)}),
            );
        }
        if let Some(want) = h.cfg.branch.as_deref().filter(|w| *w != p.branch) {
            s.count(&name, "ignored");
            return answer(
                StatusCode::OK,
                json!({"ignored": format!("branch {} (this trigger runs for {want})", p.branch)}),
            );
        }
        for a in &mut args {
            *a = a
                .replace("{commit}", &p.commit)
                .replace("{branch}", &p.branch)
                .replace("{repository}", &p.repository);
        }
        env.push(("RALF_EVENT_REPOSITORY".into(), p.repository));
        env.push(("RALF_EVENT_BRANCH".into(), p.branch));
        env.push(("RALF_EVENT_COMMIT".into(), p.commit));
    }
    let launch = Launch {
        trigger: name.clone(),
        script: h.script.clone(),
        args,
        env,
    };
    let _one = s.admit.lock().await;
    if let Some(id) = d.id.clone() {
        let st = s.store.clone();
        let seen = tokio::task::spawn_blocking(move || st.delivery(&id))
            .await
            .unwrap_or_else(|e| Err(crate::error::RalfError::internal(e.to_string())));
        match seen {
            Ok(Some(run_id)) => {
                s.count(&name, "duplicate");
                return answer(
                    StatusCode::OK,
                    json!({"duplicate": true, "run_id": run_id, "trigger": name}),
                );
            }
            Ok(None) => {}
            Err(e) => {
                s.count(&name, "error");
                tracing::error!(target: "ralf::serve", "trigger {name}: cannot read the delivery record: {e}");
                return answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "the state store is unavailable; deliver again later"}),
                );
            }
        }
    }
    let taken = s.runner.submit(launch);
    if let Some(id) = d.id.clone() {
        let (st, run_id, trig) = (s.store.clone(), taken.run_id().to_string(), name.clone());
        let rec =
            tokio::task::spawn_blocking(move || st.record_delivery(&id, &trig, &run_id)).await;
        if let Ok(Err(e)) = rec {
            tracing::warn!(target: "ralf::serve", "trigger {name}: could not record the delivery id: {e}");
        }
    }
    s.count(&name, "accepted");
    answer(
        StatusCode::ACCEPTED,
        json!({"run_id": taken.run_id(), "state": taken.state(), "trigger": name}),
    )
}

pub(super) async fn metrics(State(s): State<Arc<Served>>, headers: HeaderMap) -> Response {
    if let Some(tok) = &s.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !super::same_secret(given, tok) {
            return (StatusCode::UNAUTHORIZED, "bearer token required\n").into_response();
        }
    }
    let st = s.store.clone();
    let text = match tokio::task::spawn_blocking(move || crate::state::metrics::render(&st)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("state store: {}\n", crate::redact::redact(&e.message)),
            )
                .into_response()
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    let mut text = text;
    text.push_str(
        "# HELP ralf_webhook_deliveries_total Webhook deliveries by trigger and result.\n\
         # TYPE ralf_webhook_deliveries_total counter\n",
    );
    for ((trigger, result), n) in s.deliveries.lock().iter() {
        text.push_str(&format!(
            "ralf_webhook_deliveries_total{{trigger=\"{}\",result=\"{result}\"}} {n}\n",
            crate::state::metrics::label(trigger)
        ));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

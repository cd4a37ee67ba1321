//! Smoke endpoint of the lab: where every smoke check of a lab run ends up.
//!
//! The lab config sets `net.redirect_all` to this server and `net.only_loopback: true`, so
//! `net::http("https://vault.example.net/alive")` becomes `GET http://127.0.0.1:PORT/alive` with the
//! original URL in the `X-Ralf-Original-Url` header, and `net::tcp("10.10.20.10", 5432)` connects
//! here. Nothing leaves loopback.
//!
//! - any path, any method, any Host: `200 ok` (or `503 failing` when the original URL matches a
//!   failure pattern).
//! - `POST /_lab/command?host=H` with a shell command as the body: the lab's stand-in for the
//!   catalog's command and script checks (`ralf/deploy` uses it through `RALF_LAB_SMOKE_URL`);
//!   answers `{"ok", "code", "stdout", "stderr"}` with `stdout` "active\n10/10 PASS".
//! - `POST /_lab/fail {"match": ["pg_isready", "vault.example.net"]}`: checks whose command or
//!   original URL contains one of these fail from now on (`[]` clears).
//! - `GET /_lab/requests`: what arrived (`{kind, target}`), in order.

use crate::error::{RResult, RalfError};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Default)]
struct Inner {
    fail: Vec<String>,
    requests: Vec<Value>,
    /// URL -> text a healthy service's answer contains (the catalog's `contains`).
    bodies: HashMap<String, String>,
}

/// The `http` checks of a catalog folder with a `contains`: URL -> expected text.
pub fn catalog_bodies(dir: &std::path::Path) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for f in rd.filter_map(|e| e.ok().map(|e| e.path())) {
        if !matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let Ok(v) = crate::yaml::from_str::<crate::yaml::Value>(&text) else {
            continue;
        };
        for c in v
            .get("smoke")
            .and_then(|s| s.as_sequence())
            .into_iter()
            .flatten()
        {
            if let (Some(u), Some(t)) = (
                c.get("http").and_then(|x| x.as_str()),
                c.get("contains").and_then(|x| x.as_str()),
            ) {
                out.insert(u.to_string(), t.to_string());
            }
        }
    }
    out
}

type St = Arc<Mutex<Inner>>;

/// A running smoke endpoint. Dropping it stops the server.
pub struct SmokeEndpoint {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    state: St,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmokeEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmokeEndpoint {
    /// Make checks whose command or original URL contains one of `patterns` fail.
    pub fn fail(&self, patterns: Vec<String>) {
        self.state.lock().fail = patterns;
    }
    /// Everything received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.state.lock().requests.clone()
    }
}

/// Start the endpoint on 127.0.0.1 with an ephemeral port. Must be called within a tokio runtime.
/// `catalog_dir`: answers of healthy services are built from its `http` checks (`contains`).
pub async fn spawn(catalog_dir: Option<&std::path::Path>) -> RResult<SmokeEndpoint> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| RalfError::io(format!("smoke lab: cannot bind 127.0.0.1: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| RalfError::io(format!("smoke lab: {e}")))?;
    let state: St = Arc::default();
    if let Some(d) = catalog_dir {
        state.lock().bodies = catalog_bodies(d);
    }
    let app = Router::new()
        .route("/_lab/command", post(command))
        .route("/_lab/fail", post(set_fail))
        .route("/_lab/requests", get(requests))
        .fallback(any_path)
        .with_state(state.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(SmokeEndpoint {
        url: format!("http://{addr}"),
        addr: addr.to_string(),
        state,
        task,
    })
}

/// `lab::start_all` hook: `"smoke": {"url", "addr"}` in the lab's info line.
pub async fn start(lab: &mut super::Lab) -> RResult<()> {
    let dir = lab.setup.catalog();
    let s = spawn(Some(&dir)).await?;
    lab.info
        .insert("smoke".into(), json!({"url": s.url, "addr": s.addr}));
    lab.guards.push(Box::new(s));
    Ok(())
}

fn failing(st: &St, target: &str) -> bool {
    st.lock().fail.iter().any(|p| target.contains(p.as_str()))
}

async fn any_path(State(st): State<St>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let target = headers
        .get("x-ralf-original-url")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| uri.to_string());
    let fail = failing(&st, &target);
    let mut g = st.lock();
    g.requests
        .push(json!({"kind": "http", "target": target, "failed": fail}));
    if fail {
        (StatusCode::SERVICE_UNAVAILABLE, "failing (lab smoke-fails)").into_response()
    } else {
        let body = match g.bodies.get(&target) {
            Some(t) => format!("ok {t}"),
            None => "ok".to_string(),
        };
        (StatusCode::OK, body).into_response()
    }
}

async fn command(
    State(st): State<St>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Json<Value> {
    let cmd = String::from_utf8_lossy(&body).into_owned();
    let host = q.get("host").cloned().unwrap_or_default();
    let fail = failing(&st, &cmd);
    st.lock()
        .requests
        .push(json!({"kind": "command", "host": host, "target": cmd, "failed": fail}));
    if fail {
        Json(
            json!({"ok": false, "code": 1, "stdout": "3/10 PASS\n", "stderr": "lab: check failing"}),
        )
    } else {
        Json(json!({"ok": true, "code": 0, "stdout": "active\n10/10 PASS\n", "stderr": ""}))
    }
}

async fn set_fail(State(st): State<St>, Json(v): Json<Value>) -> Response {
    let Some(list) = v.get("match").and_then(|m| m.as_array()) else {
        return (
            StatusCode::BAD_REQUEST,
            "expected {\"match\": [\"pattern\", ...]}",
        )
            .into_response();
    };
    st.lock().fail = list
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    StatusCode::NO_CONTENT.into_response()
}

async fn requests(State(st): State<St>) -> Json<Value> {
    Json(Value::Array(st.lock().requests.clone()))
}

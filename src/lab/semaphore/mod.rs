//! Semaphore UI stand-in (axum) for `ralf-sh lab` and the tests.
//!
//! Behaves like the real server where `specs/SEMAPHORE.md` states facts: token (Bearer) and login (cookie)
//! auth, 401/403/404 with empty bodies, unknown task id = 400 empty, 204 bodies empty, lists newest first,
//! `environment`/`arguments` as JSON strings, stop needs a body, no trailing slashes (`/project/1/` is 404),
//! task lifecycle `waiting -> starting -> running -> success|error|stopped` with output lines over time
//! and `/api/ws` events, one task at a time per template unless `allow_parallel_tasks`.
//!
//! Control API (no auth, outside `/api`):
//! - `POST /_lab/templates/{name}/behaviour` with a [`Behaviour`] JSON object
//! - `POST /_lab/fail_task_create` `{"count": N, "mode": "500" | "drop" | "delay", "ms": M}`: the next N task creations
//!   create the task and THEN answer 500 (or drop the connection mid-answer)
//! - `GET /_lab/tasks`: every task, with its `template_name` (for checking that nothing was started twice)

// Handlers return early with a ready `Response` as the error value; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use crate::error::{RResult, RalfError};
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

pub use crate::lab::profiles::SemaphoreVersion;

mod control;
mod profiles;
mod projects;
mod runner;
mod seed;
mod tasks;
mod templates;
mod ws;

use control::*;
pub use profiles::Profile;
use projects::*;
use runner::*;
use seed::*;
pub use seed::{catalog_templates, BUILTIN_TEMPLATES};
use tasks::*;
use templates::*;
use ws::*;

/// How tasks of one template behave.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Behaviour {
    /// Running time in milliseconds (output lines are spread over it).
    pub duration_ms: u64,
    /// Number of output lines.
    pub lines: u32,
    /// "success" or "error".
    pub outcome: String,
    /// Flaky: the first N runs end in error, later ones succeed.
    pub fail_times: u32,
    /// Never finish on its own (until stopped).
    pub hang: bool,
    /// Stop in `waiting_confirmation` halfway (like a Terraform plan) until confirmed or rejected.
    pub confirm: bool,
    /// Time spent in `starting`, milliseconds.
    pub starting_ms: u64,
    /// Lines written all at once after the timed ones (a chatty task: 300,000 lines in a second).
    pub burst_lines: u32,
    /// Output written when the task fails, instead of the generic Ansible `fatal:` line and recap
    /// (an OpenTofu error, a smoke script's report).
    pub fail_lines: Vec<String>,
    /// The task fails unless its effective extra variables hold these values (a task that only
    /// works once an operator, or an allowed fix, changes a setting).
    pub require_env: std::collections::BTreeMap<String, String>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            duration_ms: 200,
            lines: 4,
            outcome: "success".into(),
            fail_times: 0,
            hang: false,
            confirm: false,
            starting_ms: 10,
            burst_lines: 0,
            fail_lines: Vec::new(),
            require_env: Default::default(),
        }
    }
}

/// Options of [`spawn`].
#[derive(Debug, Clone, Default)]
pub struct LabOptions {
    /// Login user (default "admin").
    pub user: Option<String>,
    /// Random when None.
    pub password: Option<String>,
    /// Random when None.
    pub token: Option<String>,
    /// Folder of catalog YAML files whose `semaphore.template` / `smoke_template` names are seeded.
    pub catalog_dir: Option<std::path::PathBuf>,
    /// The release to behave like (default: the newest).
    pub version: SemaphoreVersion,
    /// Override the version string of `/api/info` (e.g. `undefined-00000000-` like a build from source).
    pub version_string: Option<String>,
    /// Serve HTTPS (a fresh CA and a certificate for 127.0.0.1); the CA is in [`Handle::ca_pem`].
    pub tls: bool,
}

/// One request/response pair seen by the stand-in (for contract tests).
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    /// Route template without `/api`, e.g. `/project/{project_id}/tasks/{task_id}`.
    pub route: String,
    /// Actual path (without the query string).
    pub uri: String,
    pub status: u16,
    pub request: Option<Value>,
    pub response: Bytes,
    pub content_type: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Signal {
    None,
    Stop(bool),
    Confirm,
    Reject,
}

struct TaskRec {
    v: Value,
    /// A confirm/reject that arrived while the task was running (before `waiting_confirmation`).
    early: Option<Signal>,
    output: Vec<Value>,
    signal: watch::Sender<Signal>,
    finished_at: Option<std::time::Instant>,
}

#[derive(Default)]
struct St {
    projects: Vec<Value>,
    templates: Vec<Value>,
    tasks: Vec<TaskRec>,
    inventory: Vec<Value>,
    environment: Vec<Value>,
    repositories: Vec<Value>,
    keys: Vec<Value>,
    sessions: HashSet<String>,
    tokens: Vec<Value>,
    behaviours: HashMap<String, Behaviour>,
    runs: HashMap<i64, u32>,
    fail_creates: u32,
    fail_mode: String,
    /// With `fail_mode` "delay": how long the answer to a task creation is held back.
    fail_delay_ms: u64,
    /// The last [`EXCHANGES_KEPT`] exchanges (a ring: dropping the oldest is O(1)).
    exchanges: std::collections::VecDeque<Exchange>,
    next_id: i64,
}

impl St {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }
    // Lookups by id are binary searches (ids only grow, so both lists stay sorted), with a scan
    // as the fallback: at 1,000 templates and thousands of tasks a scan per request made the
    // stand-in, not the client, the slow side of the scale benchmark (the real server looks
    // rows up by primary key).
    fn task(&self, id: i64) -> Option<&TaskRec> {
        let i = index_of(&self.tasks, id, |t| &t.v)?;
        self.tasks.get(i)
    }
    fn task_mut(&mut self, id: i64) -> Option<&mut TaskRec> {
        let i = index_of(&self.tasks, id, |t| &t.v)?;
        self.tasks.get_mut(i)
    }
    fn template(&self, id: i64) -> Option<&Value> {
        let i = index_of(&self.templates, id, |t| t)?;
        self.templates.get(i)
    }
}

/// How many request/response pairs `exchanges()` keeps.
const EXCHANGES_KEPT: usize = 5000;

/// Position of the item with `id` in a list ordered by id (a scan if it is not).
fn index_of<T>(items: &[T], id: i64, v: impl Fn(&T) -> &Value) -> Option<usize> {
    let id_of = |t: &T| v(t)["id"].as_i64().unwrap_or(i64::MIN);
    match items.binary_search_by_key(&id, id_of) {
        Ok(i) => Some(i),
        Err(_) => items.iter().position(|t| id_of(t) == id),
    }
}

struct Shared {
    st: Mutex<St>,
    events: broadcast::Sender<String>,
    /// `/api/ws` connections accepted so far.
    sockets: std::sync::atomic::AtomicU64,
    /// Closes every open `/api/ws` connection (a restart or a proxy timeout, as clients see it).
    kick: broadcast::Sender<()>,
    profile: Profile,
    user: String,
    password: String,
    url: String,
}

/// A running stand-in. Dropping it stops the server.
pub struct Handle {
    pub url: String,
    pub addr: SocketAddr,
    pub user: String,
    pub password: String,
    pub token: String,
    /// PEM of the CA that signed the server certificate (with [`LabOptions::tls`]).
    pub ca_pem: Option<String>,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Handle {
    /// The `lab.info` entry.
    pub fn info(&self) -> Value {
        json!({"url": self.url, "project_id": 1, "user": self.user, "password": self.password, "token": self.token,
            "version": self.shared.profile.version})
    }
    /// Set how tasks of a template behave.
    pub fn set_behaviour(&self, template: &str, b: Behaviour) -> RResult<()> {
        let mut st = self.shared.st.lock();
        if !st.templates.iter().any(|t| t["name"] == json!(template)) {
            return Err(RalfError::not_found(format!(
                "lab: no template `{template}`"
            )));
        }
        st.behaviours.insert(template.to_string(), b);
        Ok(())
    }
    /// The next `n` task creations create the task and then fail (`"500"` or `"drop"`).
    pub fn fail_task_creates(&self, n: u32, mode: &str) {
        let mut st = self.shared.st.lock();
        st.fail_creates = n;
        st.fail_mode = mode.to_string();
    }
    /// Every task (raw JSON, oldest first).
    pub fn tasks(&self) -> Vec<Value> {
        self.shared
            .st
            .lock()
            .tasks
            .iter()
            .map(|t| t.v.clone())
            .collect()
    }
    /// When the stand-in made the task terminal.
    pub fn finished_at(&self, task_id: i64) -> Option<std::time::Instant> {
        self.shared
            .st
            .lock()
            .task(task_id)
            .and_then(|t| t.finished_at)
    }
    /// How many `/api/ws` connections the stand-in has accepted.
    pub fn sockets_opened(&self) -> u64 {
        self.shared
            .sockets
            .load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Close every open `/api/ws` connection now.
    pub fn close_sockets(&self) {
        let _ = self.shared.kick.send(());
    }
    /// Every request/response pair under `/api` so far (capped to the last 5000).
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.shared.st.lock().exchanges.iter().cloned().collect()
    }
    /// Template names seeded.
    pub fn template_names(&self) -> Vec<String> {
        self.shared
            .st
            .lock()
            .templates
            .iter()
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect()
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn random_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(bytes)
        .to_lowercase()
}

fn random_password() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

/// Start the stand-in on 127.0.0.1 (ephemeral port).
pub async fn spawn(opts: LabOptions) -> RResult<Handle> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| RalfError::io(format!("lab semaphore: bind 127.0.0.1:0: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| RalfError::io(format!("lab semaphore: {e}")))?;
    let addr = listener.local_addr().map_err(RalfError::from)?;
    let url = format!("{}://{addr}", if opts.tls { "https" } else { "http" });
    let user = opts.user.unwrap_or_else(|| "admin".into());
    let password = opts.password.unwrap_or_else(random_password);
    let token = opts.token.unwrap_or_else(random_token);
    let mut names: Vec<String> = opts
        .catalog_dir
        .as_deref()
        .map(catalog_templates)
        .unwrap_or_default();
    names.extend(BUILTIN_TEMPLATES.iter().map(|s| s.to_string()));
    let mut st = St::default();
    seed(&mut st, &names);
    st.tokens.push(
        json!({"id": token, "created": now(), "expired": false, "user_id": 1, "name": "lab"}),
    );
    let (events, _) = broadcast::channel(1024);
    let shared = Arc::new(Shared {
        st: Mutex::new(st),
        events,
        sockets: Default::default(),
        kick: broadcast::channel(1).0,
        profile: Profile::new(opts.version, opts.version_string),
        user: user.clone(),
        password: password.clone(),
        url: url.clone(),
    });
    let app = router(shared.clone());
    let (server, ca_pem) = if opts.tls {
        let (cfg, ca_pem) = tls_config()?;
        let srv = axum_server::from_tcp_rustls(listener, cfg);
        let server = tokio::spawn(async move {
            let _ = srv.serve(app.into_make_service()).await;
        });
        (server, Some(ca_pem))
    } else {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| RalfError::io(format!("lab semaphore: {e}")))?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (server, None)
    };
    Ok(Handle {
        url,
        addr,
        user,
        password,
        token,
        ca_pem,
        shared,
        server,
    })
}

/// A fresh CA and a server certificate for 127.0.0.1/localhost signed by it.
fn tls_config() -> RResult<(axum_server::tls_rustls::RustlsConfig, String)> {
    let e = |e: rcgen::Error| RalfError::internal(format!("lab semaphore: certificate: {e}"));
    let ca_key = rcgen::KeyPair::generate().map_err(e)?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Semaphore lab CA");
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let key = rcgen::KeyPair::generate().map_err(e)?;
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(e)?
        .signed_by(&key, &ca_cert, &ca_key)
        .map_err(e)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RalfError::internal(format!("lab semaphore: tls: {e}")))?
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(leaf.der().to_vec())],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .map_err(|e| RalfError::internal(format!("lab semaphore: tls: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(cfg)),
        ca_cert.pem(),
    ))
}

/// Start the stand-in and add its key to `lab.info`. Seeds templates from `$RALF_LAB_CATALOG`
/// or `./catalog/projects` when present, plus a built-in list; behaves like `lab.setup.semaphore`.
pub async fn start(lab: &mut super::Lab) -> RResult<()> {
    let dir = lab.setup.catalog();
    let h = spawn(LabOptions {
        catalog_dir: Some(dir),
        version: lab.setup.semaphore,
        ..Default::default()
    })
    .await?;
    crate::redact::register(&h.password);
    crate::redact::register(&h.token);
    lab.info.insert("semaphore".into(), h.info());
    lab.guards.push(Box::new(h));
    Ok(())
}

// ---------------------------------------------------------------- responses

fn empty(code: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn json_resp(code: StatusCode, v: &Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error(code: StatusCode, msg: &str) -> Response {
    json_resp(code, &json!({"error": msg}))
}

fn not_found_text() -> Response {
    let mut r = Response::new(Body::from("Not Found\n"));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

type Resp = Result<Response, Response>;

fn body_json(b: &Bytes) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(b) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(empty(StatusCode::BAD_REQUEST)),
    }
}

/// Fields must have the Go struct's types, else decoding fails (400 empty).
fn check_types(m: &Map<String, Value>, spec: &[(&str, &str)]) -> Result<(), Response> {
    for (k, ty) in spec {
        let Some(v) = m.get(*k) else { continue };
        let ok = match *ty {
            "int" => v.is_i64() || v.is_null(),
            "string" => v.is_string() || v.is_null(),
            "bool" => v.is_boolean() || v.is_null(),
            "object" => v.is_object() || v.is_null(),
            "strings" => {
                v.is_null() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
            }
            "ints" => v.is_null() || v.as_array().is_some_and(|a| a.iter().all(Value::is_i64)),
            _ => true,
        };
        if !ok {
            return Err(empty(StatusCode::BAD_REQUEST));
        }
    }
    Ok(())
}

fn project(sh: &Shared, p: &str) -> Result<i64, Response> {
    let id: i64 = p
        .parse()
        .map_err(|_| error(StatusCode::BAD_REQUEST, "Invalid project ID"))?;
    if sh.st.lock().projects.iter().any(|x| x["id"] == json!(id)) {
        Ok(id)
    } else {
        Err(empty(StatusCode::NOT_FOUND))
    }
}

fn int_id(s: &str) -> Result<i64, Response> {
    s.parse().map_err(|_| empty(StatusCode::BAD_REQUEST))
}

// ---------------------------------------------------------------- router

fn router(sh: Arc<Shared>) -> Router {
    let p = "/api/project/{project_id}";
    let mut api = Router::new()
        .route(
            "/api/ping",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    "pong",
                )
            }),
        )
        .route("/api/info", get(info))
        .route("/api/auth/login", get(login_meta).post(login))
        .route("/api/auth/logout", post(logout))
        .route("/api/ws", get(ws))
        .route("/api/user", get(user_get))
        .route("/api/users", get(users))
        .route("/api/user/tokens", get(tokens).post(new_token))
        .route(
            "/api/user/tokens/{token_id}",
            axum::routing::delete(token_delete),
        )
        .route("/api/events", get(events))
        .route("/api/events/last", get(events))
        .route("/api/projects", get(projects))
        .route(p, get(project_get))
        .route(&format!("{p}/role"), get(project_role))
        .route(&format!("{p}/users"), get(project_users))
        .route(&format!("{p}/events"), get(events))
        .route(&format!("{p}/events/last"), get(events))
        .route(&format!("{p}/schedules"), get(empty_list))
        .route(&format!("{p}/views"), get(empty_list))
        .route(&format!("{p}/integrations"), get(empty_list))
        .route(
            &format!("{p}/templates"),
            get(templates).post(template_create),
        )
        .route(
            &format!("{p}/templates/{{template_id}}"),
            get(template_get).put(template_put).delete(template_delete),
        )
        .route(
            &format!("{p}/templates/{{template_id}}/tasks"),
            get(template_tasks),
        )
        .route(
            &format!("{p}/templates/{{template_id}}/tasks/last"),
            get(template_tasks),
        )
        .route(
            &format!("{p}/templates/{{template_id}}/schedules"),
            get(empty_list),
        )
        .route(
            &format!("{p}/templates/{{template_id}}/stop_all_tasks"),
            post(stop_all),
        )
        .route(&format!("{p}/tasks"), get(tasks_all).post(task_create))
        .route(&format!("{p}/tasks/last"), get(tasks_last))
        .route(&format!("{p}/tasks/{{task_id}}"), get(task_get))
        .route(&format!("{p}/tasks/{{task_id}}/output"), get(task_output))
        .route(&format!("{p}/tasks/{{task_id}}/stop"), post(task_stop))
        .route(
            &format!("{p}/tasks/{{task_id}}/confirm"),
            post(task_confirm),
        );
    if sh.profile.has_reject_route() {
        // Both are newer than v2.10.32: there they answer the router's 404.
        api = api
            .route(&format!("{p}/tasks/{{task_id}}/reject"), post(task_reject))
            .route(
                &format!("{p}/tasks/{{task_id}}/raw_output"),
                get(task_raw_output),
            );
    }
    let api = api
        .route(&format!("{p}/{{kind}}"), get(res_list).post(res_create))
        .route(&format!("{p}/{{kind}}/{{id}}"), get(res_get))
        .route_layer(axum::middleware::from_fn_with_state(sh.clone(), auth_mw))
        .route_layer(axum::middleware::from_fn_with_state(sh.clone(), record_mw));
    let control = Router::new()
        .route("/_lab/templates/{name}/behaviour", post(lab_behaviour))
        .route("/_lab/fail_task_create", post(lab_fail_create))
        .route("/_lab/tasks", get(lab_tasks));
    api.merge(control)
        .fallback(|| async { not_found_text() })
        .method_not_allowed_fallback(|| async { not_found_text() })
        .with_state(sh)
}

fn authenticated(sh: &Shared, headers: &HeaderMap) -> bool {
    if let Some(a) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let lower = a.to_lowercase();
        if lower.contains("bearer") {
            let tok = lower.replacen("bearer ", "", 1);
            let tok = tok.trim();
            return sh
                .st
                .lock()
                .tokens
                .iter()
                .any(|t| t["id"].as_str() == Some(tok) && t["expired"] == json!(false));
        }
    }
    if let Some(c) = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()) {
        let st = sh.st.lock();
        return c
            .split(';')
            .filter_map(|kv| kv.trim().strip_prefix("semaphore="))
            .any(|s| st.sessions.contains(s));
    }
    false
}

async fn auth_mw(State(sh): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let public = path == "/api/ping" || path == "/api/auth/login";
    if !public && !authenticated(&sh, req.headers()) {
        return empty(StatusCode::UNAUTHORIZED);
    }
    next.run(req).await
}

async fn record_mw(State(sh): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().trim_start_matches("/api").to_string())
        .unwrap_or_default();
    if route == "/ws" {
        return next.run(req).await;
    }
    let method = req.method().to_string();
    let uri = req.uri().path().to_string();
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    let request = if bytes.is_empty() {
        None
    } else {
        Some(
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into())),
        )
    };
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (parts, body) = resp.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => {
            let mut st = sh.st.lock();
            if st.exchanges.len() >= EXCHANGES_KEPT {
                st.exchanges.pop_front();
            }
            st.exchanges.push_back(Exchange {
                method,
                route,
                uri,
                status: parts.status.as_u16(),
                request,
                response: b.clone(),
                content_type,
            });
            Response::from_parts(parts, Body::from(b))
        }
        Err(_) => Response::from_parts(parts, broken_body()),
    }
}

/// A body that fails after the headers went out: the client sees a dropped connection.
fn broken_body() -> Body {
    let s = futures_util::stream::iter(vec![
        Ok::<Bytes, std::io::Error>(Bytes::from_static(b"{\"id\":")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "lab: dropped",
        )),
    ]);
    Body::from_stream(s)
}

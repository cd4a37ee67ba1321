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
//! - `POST /_lab/fail_task_create` `{"count": N, "mode": "500" | "drop"}`: the next N task creations
//!   create the task and THEN answer 500 (or drop the connection mid-answer)
//! - `GET /_lab/tasks`: every task (for checking that nothing was started twice)

// Handlers return early with a ready `Response` as the error value; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use crate::engine::error::{RResult, RalfError};
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
    exchanges: Vec<Exchange>,
    next_id: i64,
}

impl St {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }
    fn task(&self, id: i64) -> Option<&TaskRec> {
        self.tasks.iter().find(|t| t.v["id"] == json!(id))
    }
    fn task_mut(&mut self, id: i64) -> Option<&mut TaskRec> {
        self.tasks.iter_mut().find(|t| t.v["id"] == json!(id))
    }
    fn template(&self, id: i64) -> Option<&Value> {
        self.templates.iter().find(|t| t["id"] == json!(id))
    }
}

struct Shared {
    st: Mutex<St>,
    events: broadcast::Sender<String>,
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
        json!({"url": self.url, "project_id": 1, "user": self.user, "password": self.password, "token": self.token})
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
    /// Every request/response pair under `/api` so far (capped to the last 5000).
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.shared.st.lock().exchanges.clone()
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
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 24)
}

/// Built-in template names (used when no catalog is found, and always present).
pub const BUILTIN_TEMPLATES: &[&str] = &[
    "RALF Vault Apply",
    "RALF Vault Smoke",
    "RALF Automation Apply",
    "RALF Automation Smoke",
    "RALF Communication Apply",
    "RALF Communication Smoke",
    "RALF AI Apply",
    "RALF AI Smoke",
    "RALF PostgreSQL Apply",
    "RALF Gitea Apply",
    "RALF Traefik Apply",
    "RALF Infra Plan",
    "Lab Fail",
    "Lab Hang",
    "Lab Slow",
    "Lab Confirm",
    "Lab Parallel",
];

/// Built-in behaviours of the lab-only templates (scripts can rely on them without the control API).
fn builtin_behaviour(name: &str) -> Option<Behaviour> {
    let d = Behaviour::default();
    match name {
        "Lab Fail" => Some(Behaviour {
            outcome: "error".into(),
            ..d
        }),
        "Lab Hang" => Some(Behaviour { hang: true, ..d }),
        "Lab Slow" => Some(Behaviour {
            duration_ms: 3000,
            lines: 10,
            ..d
        }),
        "Lab Confirm" | "RALF Infra Plan" => Some(Behaviour { confirm: true, ..d }),
        _ => None,
    }
}

/// Template names named by catalog YAML files (`semaphore.template`, `semaphore.smoke_template`).
pub fn catalog_templates(dir: &std::path::Path) -> Vec<String> {
    fn walk(v: &serde_yaml::Value, out: &mut Vec<String>) {
        match v {
            serde_yaml::Value::Mapping(m) => {
                for (k, val) in m {
                    if k.as_str() == Some("semaphore") {
                        if let serde_yaml::Value::Mapping(sm) = val {
                            for key in ["template", "smoke_template", "apply_template"] {
                                if let Some(s) = sm.get(key).and_then(|x| x.as_str()) {
                                    out.push(s.to_string());
                                }
                            }
                        }
                    }
                    walk(val, out);
                }
            }
            serde_yaml::Value::Sequence(s) => s.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut files: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for f in files {
        if !matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for doc in serde_yaml::Deserializer::from_str(&text) {
            if let Ok(v) = serde_yaml::Value::deserialize(doc) {
                walk(&v, &mut out);
            }
        }
    }
    out
}

fn seed(st: &mut St, names: &[String]) {
    let created = now();
    st.projects.push(json!({"id": 1, "name": "RALF", "created": created, "alert": false, "max_parallel_tasks": 0, "type": ""}));
    st.next_id = 0;
    st.keys
        .push(json!({"id": 1, "name": "None", "type": "none", "project_id": 1}));
    st.repositories.push(json!({"id": 1, "name": "ralf-homelab", "project_id": 1, "git_url": "https://git.example.invalid/ralf/homelab.git", "git_branch": "main", "ssh_key_id": 1}));
    st.inventory.push(json!({"id": 1, "name": "homelab", "project_id": 1, "inventory": "[all]\n", "ssh_key_id": 1, "type": "static"}));
    st.environment
        .push(json!({"id": 1, "name": "default", "project_id": 1, "json": "{}", "env": "{}"}));
    let mut seen = HashSet::new();
    let mut tid = 0;
    for n in names {
        if !seen.insert(n.clone()) {
            continue;
        }
        tid += 1;
        let playbook = format!(
            "playbooks/{}.yml",
            n.to_lowercase()
                .trim_start_matches("ralf ")
                .replace(' ', "_")
        );
        st.templates.push(json!({
            "id": tid, "project_id": 1, "inventory_id": 1, "repository_id": 1, "environment_id": 1,
            "environment_ids": [1], "name": n, "playbook": playbook, "arguments": "[]", "description": "",
            "allow_override_args_in_task": true, "allow_override_branch_in_task": true, "allow_parallel_tasks": false,
            "app": "ansible", "git_branch": "main", "type": "", "autorun": false, "survey_vars": [], "vaults": []
        }));
        if n == "Lab Parallel" {
            if let Some(t) = st.templates.last_mut() {
                t["allow_parallel_tasks"] = json!(true);
            }
        }
        if let Some(b) = builtin_behaviour(n) {
            st.behaviours.insert(n.clone(), b);
        }
    }
    st.next_id = 0;
}

/// Start the stand-in on 127.0.0.1 (ephemeral port).
pub async fn spawn(opts: LabOptions) -> RResult<Handle> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| RalfError::io(format!("lab semaphore: bind 127.0.0.1:0: {e}")))?;
    let addr = listener.local_addr().map_err(RalfError::from)?;
    let url = format!("http://{addr}");
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
        user: user.clone(),
        password: password.clone(),
        url: url.clone(),
    });
    let app = router(shared.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Handle {
        url,
        addr,
        user,
        password,
        token,
        shared,
        server,
    })
}

/// Start the stand-in and add its key to `lab.info`. Seeds templates from `$RALF_LAB_CATALOG`
/// or `./catalog/projects` when present, plus a built-in list.
pub async fn start(lab: &mut super::Lab) -> RResult<()> {
    let dir = lab.setup.catalog();
    let h = spawn(LabOptions {
        catalog_dir: Some(dir),
        ..Default::default()
    })
    .await?;
    crate::secrets::register(&h.password);
    crate::secrets::register(&h.token);
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
    let api = Router::new()
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
        .route("/api/user/tokens", get(tokens).post(new_token))
        .route("/api/projects", get(projects))
        .route("/api/project/{project_id}", get(project_get))
        .route(
            "/api/project/{project_id}/templates",
            get(templates).post(template_create),
        )
        .route(
            "/api/project/{project_id}/templates/{template_id}",
            get(template_get).put(template_put).delete(template_delete),
        )
        .route(
            "/api/project/{project_id}/templates/{template_id}/tasks",
            get(template_tasks),
        )
        .route(
            "/api/project/{project_id}/templates/{template_id}/stop_all_tasks",
            post(stop_all),
        )
        .route(
            "/api/project/{project_id}/tasks",
            get(tasks_all).post(task_create),
        )
        .route("/api/project/{project_id}/tasks/last", get(tasks_last))
        .route("/api/project/{project_id}/tasks/{task_id}", get(task_get))
        .route(
            "/api/project/{project_id}/tasks/{task_id}/output",
            get(task_output),
        )
        .route(
            "/api/project/{project_id}/tasks/{task_id}/raw_output",
            get(task_raw_output),
        )
        .route(
            "/api/project/{project_id}/tasks/{task_id}/stop",
            post(task_stop),
        )
        .route(
            "/api/project/{project_id}/tasks/{task_id}/confirm",
            post(task_confirm),
        )
        .route(
            "/api/project/{project_id}/tasks/{task_id}/reject",
            post(task_reject),
        )
        .route(
            "/api/project/{project_id}/{kind}",
            get(res_list).post(res_create),
        )
        .route("/api/project/{project_id}/{kind}/{id}", get(res_get))
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
            if st.exchanges.len() >= 5000 {
                st.exchanges.remove(0);
            }
            st.exchanges.push(Exchange {
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

// ---------------------------------------------------------------- auth, info, projects

async fn info(State(sh): State<Arc<Shared>>) -> Response {
    json_resp(
        StatusCode::OK,
        &json!({
            "version": "2.19.8-ralf-lab", "ansible": "ansible [core 2.17.0] (lab stand-in)", "web_host": sh.url,
            "use_remote_runner": false, "auth_methods": {"totp": {"enabled": false}},
            "git_client": "cmd_git", "schedule_timezone": "UTC", "features": {}
        }),
    )
}

async fn login_meta() -> Response {
    json_resp(
        StatusCode::OK,
        &json!({"oidc_providers": [], "login_with_password": true}),
    )
}

async fn login(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(m) = body_json(&body) else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let auth = m
        .get("auth")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_lowercase();
    let pw = m.get("password").and_then(Value::as_str).unwrap_or("");
    if auth != sh.user.to_lowercase() || pw != sh.password {
        return empty(StatusCode::UNAUTHORIZED);
    }
    let session = random_token();
    sh.st.lock().sessions.insert(session.clone());
    let mut r = empty(StatusCode::NO_CONTENT);
    r.headers_mut().remove(header::CONTENT_TYPE);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "semaphore={session}; Path=/; HttpOnly; SameSite=Lax"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout(State(sh): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(c) = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()) {
        let mut st = sh.st.lock();
        for s in c
            .split(';')
            .filter_map(|kv| kv.trim().strip_prefix("semaphore="))
        {
            st.sessions.remove(s);
        }
    }
    empty(StatusCode::NO_CONTENT)
}

async fn tokens(State(sh): State<Arc<Shared>>) -> Response {
    json_resp(StatusCode::OK, &Value::Array(sh.st.lock().tokens.clone()))
}

async fn new_token(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let name = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_string));
    let mut t = json!({"id": random_token(), "created": now(), "expired": false, "user_id": 1});
    if let Some(n) = name {
        t["name"] = json!(n);
    }
    sh.st.lock().tokens.push(t.clone());
    json_resp(StatusCode::CREATED, &t)
}

async fn projects(State(sh): State<Arc<Shared>>) -> Response {
    json_resp(StatusCode::OK, &Value::Array(sh.st.lock().projects.clone()))
}

async fn project_get(State(sh): State<Arc<Shared>>, Path(p): Path<String>) -> Resp {
    let p = project(&sh, &p)?;
    let st = sh.st.lock();
    let v = st
        .projects
        .iter()
        .find(|x| x["id"] == json!(p))
        .cloned()
        .unwrap_or_default();
    Ok(json_resp(StatusCode::OK, &v))
}

// ---------------------------------------------------------------- templates

fn last_task(st: &St, template_id: i64) -> Option<Value> {
    st.tasks
        .iter()
        .rev()
        .find(|t| t.v["template_id"] == json!(template_id))
        .map(|t| t.v.clone())
}

async fn templates(State(sh): State<Arc<Shared>>, Path(p): Path<String>) -> Resp {
    let p = project(&sh, &p)?;
    let st = sh.st.lock();
    let mut list: Vec<Value> = st
        .templates
        .iter()
        .filter(|t| t["project_id"] == json!(p))
        .map(|t| {
            let mut t = t.clone();
            if let Some(lt) = last_task(&st, t["id"].as_i64().unwrap_or(0)) {
                t["last_task"] = lt;
            }
            t
        })
        .collect();
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(json_resp(StatusCode::OK, &Value::Array(list)))
}

const APPS: &[&str] = &[
    "ansible",
    "terraform",
    "tofu",
    "terragrunt",
    "bash",
    "powershell",
    "python",
    "pulumi",
];
const TEMPLATE_TYPES: &[(&str, &str)] = &[
    ("id", "int"),
    ("project_id", "int"),
    ("inventory_id", "int"),
    ("repository_id", "int"),
    ("environment_id", "int"),
    ("environment_ids", "ints"),
    ("view_id", "int"),
    ("name", "string"),
    ("playbook", "string"),
    ("arguments", "string"),
    ("description", "string"),
    ("allow_override_args_in_task", "bool"),
    ("allow_parallel_tasks", "bool"),
    ("app", "string"),
    ("git_branch", "string"),
    ("type", "string"),
    ("autorun", "bool"),
];

/// Validate a template body (after type checks); returns the message of the first problem.
fn validate_template(st: &St, p: i64, m: &Map<String, Value>) -> Result<(), Response> {
    let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let app = if s("app").is_empty() {
        "ansible".to_string()
    } else {
        s("app")
    };
    if s("name").trim().is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "template name can not be empty",
        ));
    }
    if !APPS.contains(&app.as_str()) {
        return Err(error(StatusCode::BAD_REQUEST, "Invalid app id"));
    }
    let terraform = matches!(app.as_str(), "terraform" | "tofu" | "terragrunt");
    if !terraform && s("playbook").is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "template playbook can not be empty",
        ));
    }
    let inv = m.get("inventory_id").and_then(Value::as_i64).unwrap_or(0);
    if app == "ansible" && inv == 0 {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "template inventory can not be empty",
        ));
    }
    if inv != 0
        && !st
            .inventory
            .iter()
            .any(|i| i["id"] == json!(inv) && i["project_id"] == json!(p))
    {
        return Err(empty(StatusCode::NOT_FOUND));
    }
    let args = s("arguments");
    if !args.is_empty() && !matches!(serde_json::from_str::<Value>(&args), Ok(Value::Array(_))) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "template arguments must be valid JSON",
        ));
    }
    if let Some(pid) = m.get("project_id").and_then(Value::as_i64) {
        if pid != p {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "Project ID in body and URL must be the same",
            ));
        }
    }
    Ok(())
}

fn template_value(id: i64, p: i64, m: &Map<String, Value>) -> Value {
    let mut t = m.clone();
    t.remove("last_task");
    t.insert("id".into(), json!(id));
    t.insert("project_id".into(), json!(p));
    for (k, d) in [
        ("app", json!("ansible")),
        ("type", json!("")),
        ("arguments", json!("[]")),
        ("description", json!("")),
        ("git_branch", json!("")),
        ("allow_parallel_tasks", json!(false)),
        ("allow_override_args_in_task", json!(false)),
        ("survey_vars", json!([])),
        ("vaults", json!([])),
    ] {
        let missing = t.get(k).is_none_or(Value::is_null);
        if missing {
            t.insert(k.into(), d);
        }
    }
    if t.get("app").and_then(Value::as_str) == Some("") {
        t.insert("app".into(), json!("ansible"));
    }
    for k in ["environment_id", "view_id", "repository_id", "inventory_id"] {
        if t.get(k).is_some_and(|v| v.is_null() || v == &json!(0)) {
            t.remove(k);
        }
    }
    if let Some(e) = t.get("environment_id").cloned() {
        t.entry("environment_ids").or_insert_with(|| json!([e]));
    }
    t.retain(|_, v| !v.is_null());
    Value::Object(t)
}

async fn template_create(
    State(sh): State<Arc<Shared>>,
    Path(p): Path<String>,
    body: Bytes,
) -> Resp {
    let p = project(&sh, &p)?;
    let m = body_json(&body)?;
    check_types(&m, TEMPLATE_TYPES)?;
    let mut st = sh.st.lock();
    validate_template(&st, p, &m)?;
    let id = st
        .templates
        .iter()
        .filter_map(|t| t["id"].as_i64())
        .max()
        .unwrap_or(0)
        + 1;
    let t = template_value(id, p, &m);
    st.templates.push(t.clone());
    Ok(json_resp(StatusCode::CREATED, &t))
}

fn template_of(st: &St, p: i64, t: &str) -> Result<Value, Response> {
    let id = int_id(t)?;
    st.template(id)
        .filter(|x| x["project_id"] == json!(p))
        .cloned()
        .ok_or_else(|| empty(StatusCode::NOT_FOUND))
}

async fn template_get(State(sh): State<Arc<Shared>>, Path((p, t)): Path<(String, String)>) -> Resp {
    let p = project(&sh, &p)?;
    let st = sh.st.lock();
    Ok(json_resp(StatusCode::OK, &template_of(&st, p, &t)?))
}

async fn template_put(
    State(sh): State<Arc<Shared>>,
    Path((p, t)): Path<(String, String)>,
    body: Bytes,
) -> Resp {
    let p = project(&sh, &p)?;
    let m = body_json(&body)?;
    check_types(&m, TEMPLATE_TYPES)?;
    let mut st = sh.st.lock();
    let old = template_of(&st, p, &t)?;
    let id = old["id"].as_i64().unwrap_or(0);
    if m.get("id").and_then(Value::as_i64) != Some(id) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "Template ID in body and URL must be the same",
        ));
    }
    validate_template(&st, p, &m)?;
    let v = template_value(id, p, &m);
    if let Some(slot) = st.templates.iter_mut().find(|x| x["id"] == json!(id)) {
        *slot = v;
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn template_delete(
    State(sh): State<Arc<Shared>>,
    Path((p, t)): Path<(String, String)>,
) -> Resp {
    let p = project(&sh, &p)?;
    let mut st = sh.st.lock();
    let old = template_of(&st, p, &t)?;
    st.templates.retain(|x| x["id"] != old["id"]);
    Ok(empty(StatusCode::NO_CONTENT))
}

fn with_tpl(st: &St, t: &Value) -> Value {
    let mut v = t.clone();
    if let Some(tpl) = st.template(t["template_id"].as_i64().unwrap_or(0)) {
        v["tpl_playbook"] = tpl["playbook"].clone();
        v["tpl_alias"] = tpl["name"].clone();
        v["tpl_type"] = tpl["type"].clone();
        v["tpl_app"] = tpl["app"].clone();
    }
    v["user_name"] = json!("admin");
    v
}

async fn template_tasks(
    State(sh): State<Arc<Shared>>,
    Path((p, t)): Path<(String, String)>,
) -> Resp {
    let p = project(&sh, &p)?;
    let st = sh.st.lock();
    let tpl = template_of(&st, p, &t)?;
    let list: Vec<Value> = st
        .tasks
        .iter()
        .rev()
        .filter(|x| x.v["template_id"] == tpl["id"])
        .map(|x| with_tpl(&st, &x.v))
        .collect();
    Ok(json_resp(StatusCode::OK, &Value::Array(list)))
}

fn stop_force(body: &Bytes) -> Result<bool, Response> {
    let m = body_json(body)?;
    check_types(&m, &[("force", "bool")])?;
    Ok(m.get("force").and_then(Value::as_bool).unwrap_or(false))
}

async fn stop_all(
    State(sh): State<Arc<Shared>>,
    Path((p, t)): Path<(String, String)>,
    body: Bytes,
) -> Resp {
    let p = project(&sh, &p)?;
    let force = stop_force(&body)?;
    let st = sh.st.lock();
    let tpl = template_of(&st, p, &t)?;
    let mut ids = Vec::new();
    for x in st.tasks.iter().filter(|x| x.v["template_id"] == tpl["id"]) {
        if !is_final(&x.v) {
            x.signal.send_replace(Signal::Stop(force));
            ids.push(x.v["id"].as_i64().unwrap_or(0));
        }
    }
    drop(st);
    if force {
        for id in ids {
            log_line(&sh, id, "Task stopped".into());
            set_status(&sh, id, "stopped");
        }
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

// ---------------------------------------------------------------- tasks

fn is_final(v: &Value) -> bool {
    matches!(v["status"].as_str(), Some("success" | "error" | "stopped"))
}

async fn tasks_all(State(sh): State<Arc<Shared>>, Path(p): Path<String>) -> Resp {
    let p = project(&sh, &p)?;
    let st = sh.st.lock();
    let list: Vec<Value> = st
        .tasks
        .iter()
        .rev()
        .filter(|x| x.v["project_id"] == json!(p))
        .take(1000)
        .map(|x| with_tpl(&st, &x.v))
        .collect();
    Ok(json_resp(StatusCode::OK, &Value::Array(list)))
}

async fn tasks_last(
    State(sh): State<Arc<Shared>>,
    Path(p): Path<String>,
    q: axum::extract::Query<HashMap<String, String>>,
) -> Resp {
    let p = project(&sh, &p)?;
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(200)
        .clamp(1, 200);
    let st = sh.st.lock();
    let list: Vec<Value> = st
        .tasks
        .iter()
        .rev()
        .filter(|x| x.v["project_id"] == json!(p))
        .take(limit)
        .map(|x| with_tpl(&st, &x.v))
        .collect();
    Ok(json_resp(StatusCode::OK, &Value::Array(list)))
}

const TASK_TYPES: &[(&str, &str)] = &[
    ("template_id", "int"),
    ("template_name", "string"),
    ("environment", "string"),
    ("secret", "string"),
    ("arguments", "string"),
    ("git_branch", "string"),
    ("playbook", "string"),
    ("inventory_id", "int"),
    ("limit", "string"),
    ("message", "string"),
    ("params", "object"),
    ("debug", "bool"),
    ("dry_run", "bool"),
    ("diff", "bool"),
    ("build_task_id", "int"),
];

async fn task_create(State(sh): State<Arc<Shared>>, Path(p): Path<String>, body: Bytes) -> Resp {
    let p = project(&sh, &p)?;
    let m = body_json(&body)?;
    check_types(&m, TASK_TYPES)?;
    if let Some(Value::Object(params)) = m.get("params") {
        check_types(
            params,
            &[
                ("debug", "bool"),
                ("dry_run", "bool"),
                ("diff", "bool"),
                ("limit", "strings"),
                ("tags", "strings"),
                ("skip_tags", "strings"),
                ("skip_galaxy_install", "bool"),
                ("plan", "bool"),
                ("destroy", "bool"),
                ("auto_approve", "bool"),
                ("upgrade", "bool"),
                ("reconfigure", "bool"),
            ],
        )?;
    }
    if let Some(env) = m.get("environment").and_then(Value::as_str) {
        if !env.is_empty() && !matches!(serde_json::from_str::<Value>(env), Ok(Value::Object(_))) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "environment must be a JSON object",
            ));
        }
    }
    if let Some(a) = m.get("arguments").and_then(Value::as_str) {
        if !a.is_empty() && !matches!(serde_json::from_str::<Value>(a), Ok(Value::Array(_))) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "arguments must be a JSON array",
            ));
        }
    }
    let (rx, id, fail) = {
        let mut st = sh.st.lock();
        let tpl = match (
            m.get("template_id").and_then(Value::as_i64),
            m.get("template_name").and_then(Value::as_str),
        ) {
            (Some(id), _) => st.template(id).cloned(),
            (None, Some(n)) => st.templates.iter().find(|t| t["name"] == json!(n)).cloned(),
            _ => None,
        };
        let Some(tpl) = tpl.filter(|t| t["project_id"] == json!(p)) else {
            return Err(empty(StatusCode::NOT_FOUND));
        };
        let id = st.id();
        let mut t = Map::new();
        t.insert("id".into(), json!(id));
        t.insert("template_id".into(), tpl["id"].clone());
        t.insert("project_id".into(), json!(p));
        t.insert("status".into(), json!("waiting"));
        t.insert("playbook".into(), json!(""));
        t.insert("user_id".into(), json!(1));
        t.insert("created".into(), json!(now()));
        for k in [
            "environment",
            "arguments",
            "git_branch",
            "message",
            "inventory_id",
        ] {
            if let Some(v) = m.get(k).filter(|v| !v.is_null()) {
                t.insert(k.into(), v.clone());
            }
        }
        let mut params = m
            .get("params")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(l) = m
            .get("limit")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            params.insert(
                "limit".into(),
                json!(l.split(',').map(str::trim).collect::<Vec<_>>()),
            );
        }
        for k in ["debug", "dry_run", "diff"] {
            if let Some(v) = m.get(k).filter(|v| v.is_boolean()) {
                params.entry(k).or_insert(v.clone());
            }
        }
        params.retain(|_, v| !v.is_null());
        t.insert("params".into(), Value::Object(params));
        let (tx, rx) = watch::channel(Signal::None);
        st.tasks.push(TaskRec {
            v: Value::Object(t),
            output: Vec::new(),
            signal: tx,
            finished_at: None,
        });
        let fail = if st.fail_creates > 0 {
            st.fail_creates -= 1;
            Some(st.fail_mode.clone())
        } else {
            None
        };
        (rx, id, fail)
    };
    emit_update(&sh, id);
    tokio::spawn(run_task(sh.clone(), id, rx));
    match fail.as_deref() {
        Some("drop") => {
            let mut r = Response::new(broken_body());
            *r.status_mut() = StatusCode::CREATED;
            Ok(r)
        }
        Some(_) => Ok(empty(StatusCode::INTERNAL_SERVER_ERROR)),
        None => {
            let v = sh
                .st
                .lock()
                .task(id)
                .map(|t| t.v.clone())
                .unwrap_or_default();
            Ok(json_resp(StatusCode::CREATED, &v))
        }
    }
}

fn task_of(sh: &Shared, p: &str, t: &str) -> Result<(i64, i64), Response> {
    let p = project(sh, p)?;
    let id = t
        .parse::<i64>()
        .map_err(|_| empty(StatusCode::BAD_REQUEST))?;
    let st = sh.st.lock();
    match st.task(id) {
        Some(x) if x.v["project_id"] == json!(p) => Ok((p, id)),
        _ => Err(empty(StatusCode::BAD_REQUEST)),
    }
}

async fn task_get(State(sh): State<Arc<Shared>>, Path((p, t)): Path<(String, String)>) -> Resp {
    let (_, id) = task_of(&sh, &p, &t)?;
    let v = sh
        .st
        .lock()
        .task(id)
        .map(|t| t.v.clone())
        .unwrap_or_default();
    Ok(json_resp(StatusCode::OK, &v))
}

async fn task_output(State(sh): State<Arc<Shared>>, Path((p, t)): Path<(String, String)>) -> Resp {
    let (_, id) = task_of(&sh, &p, &t)?;
    let v = sh
        .st
        .lock()
        .task(id)
        .map(|t| t.output.clone())
        .unwrap_or_default();
    Ok(json_resp(StatusCode::OK, &Value::Array(v)))
}

async fn task_raw_output(
    State(sh): State<Arc<Shared>>,
    Path((p, t)): Path<(String, String)>,
) -> Resp {
    let (_, id) = task_of(&sh, &p, &t)?;
    let text: String = sh
        .st
        .lock()
        .task(id)
        .map(|t| {
            t.output
                .iter()
                .map(|l| format!("{}\n", l["output"].as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

async fn task_stop(
    State(sh): State<Arc<Shared>>,
    Path((p, t)): Path<(String, String)>,
    body: Bytes,
) -> Resp {
    let (_, id) = task_of(&sh, &p, &t)?;
    let force = stop_force(&body)?;
    let mut st = sh.st.lock();
    let Some(x) = st.task_mut(id) else {
        return Err(empty(StatusCode::BAD_REQUEST));
    };
    if is_final(&x.v) {
        // Not in the pool any more: newer servers leave finished tasks alone.
        return Ok(empty(StatusCode::NO_CONTENT));
    }
    x.signal.send_replace(Signal::Stop(force));
    drop(st);
    if force {
        // A forced stop is immediate (TaskPool.StopTask with force).
        log_line(&sh, id, "Task stopped".into());
        set_status(&sh, id, "stopped");
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn confirm_or_reject(sh: &Shared, p: &str, t: &str, body: &Bytes, sig: Signal) -> Resp {
    let (_, id) = task_of(sh, p, t)?;
    if !body.is_empty() {
        body_json(body)?;
    }
    let st = sh.st.lock();
    let Some(x) = st.task(id) else {
        return Err(empty(StatusCode::BAD_REQUEST));
    };
    if x.v["status"] != json!("waiting_confirmation") {
        return Err(empty(StatusCode::BAD_REQUEST));
    }
    x.signal.send_replace(sig);
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn task_confirm(
    State(sh): State<Arc<Shared>>,
    Path((p, t)): Path<(String, String)>,
    body: Bytes,
) -> Resp {
    confirm_or_reject(&sh, &p, &t, &body, Signal::Confirm).await
}

async fn task_reject(
    State(sh): State<Arc<Shared>>,
    Path((p, t)): Path<(String, String)>,
    body: Bytes,
) -> Resp {
    confirm_or_reject(&sh, &p, &t, &body, Signal::Reject).await
}

// ---------------------------------------------------------------- other resources

fn kind_list<'a>(st: &'a mut St, kind: &str) -> Option<&'a mut Vec<Value>> {
    match kind {
        "inventory" => Some(&mut st.inventory),
        "environment" => Some(&mut st.environment),
        "repositories" => Some(&mut st.repositories),
        "keys" => Some(&mut st.keys),
        _ => None,
    }
}

async fn res_list(State(sh): State<Arc<Shared>>, Path((p, kind)): Path<(String, String)>) -> Resp {
    let mut st = sh.st.lock();
    let list = kind_list(&mut st, &kind)
        .ok_or_else(not_found_text)?
        .clone();
    drop(st);
    let p = project(&sh, &p)?;
    let items: Vec<Value> = list
        .into_iter()
        .filter(|x| x["project_id"] == json!(p))
        .collect();
    Ok(json_resp(StatusCode::OK, &Value::Array(items)))
}

async fn res_get(
    State(sh): State<Arc<Shared>>,
    Path((p, kind, id)): Path<(String, String, String)>,
) -> Resp {
    let mut st = sh.st.lock();
    let list = kind_list(&mut st, &kind)
        .ok_or_else(not_found_text)?
        .clone();
    drop(st);
    let p = project(&sh, &p)?;
    let id = int_id(&id)?;
    list.into_iter()
        .find(|x| x["project_id"] == json!(p) && x["id"] == json!(id))
        .map(|v| json_resp(StatusCode::OK, &v))
        .ok_or_else(|| empty(StatusCode::NOT_FOUND))
}

async fn res_create(
    State(sh): State<Arc<Shared>>,
    Path((p, kind)): Path<(String, String)>,
    body: Bytes,
) -> Resp {
    if kind_list(&mut sh.st.lock(), &kind).is_none() {
        return Err(not_found_text());
    }
    let p = project(&sh, &p)?;
    let m = body_json(&body)?;
    check_types(
        &m,
        &[
            ("id", "int"),
            ("name", "string"),
            ("project_id", "int"),
            ("ssh_key_id", "int"),
            ("become_key_id", "int"),
            ("repository_id", "int"),
            ("inventory", "string"),
            ("type", "string"),
            ("json", "string"),
            ("env", "string"),
            ("password", "string"),
            ("git_url", "string"),
            ("git_branch", "string"),
            ("login_password", "object"),
            ("ssh", "object"),
        ],
    )?;
    if m.get("project_id")
        .and_then(Value::as_i64)
        .is_some_and(|x| x != p)
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "Project ID in body and URL must be the same",
        ));
    }
    if m.get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            &format!("{kind} name can not be empty"),
        ));
    }
    let mut st = sh.st.lock();
    let list = kind_list(&mut st, &kind).ok_or_else(not_found_text)?;
    let id = list
        .iter()
        .filter_map(|x| x["id"].as_i64())
        .max()
        .unwrap_or(0)
        + 1;
    let mut v = m.clone();
    v.insert("id".into(), json!(id));
    v.insert("project_id".into(), json!(p));
    if kind == "keys" {
        // Secrets are never echoed.
        v.retain(|k, _| matches!(k.as_str(), "id" | "name" | "type" | "project_id"));
    }
    v.retain(|_, x| !x.is_null());
    let v = Value::Object(v);
    list.push(v.clone());
    Ok(json_resp(StatusCode::CREATED, &v))
}

// ---------------------------------------------------------------- websocket

async fn ws(State(sh): State<Arc<Shared>>, up: WebSocketUpgrade) -> Response {
    let rx = sh.events.subscribe();
    up.on_upgrade(move |socket| ws_forward(socket, rx))
}

async fn ws_forward(mut socket: WebSocket, mut rx: broadcast::Receiver<String>) {
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(text) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                // A slow client is disconnected, like the real server's full buffer.
                Err(_) => return,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

fn emit_update(sh: &Shared, id: i64) {
    let ev = {
        let st = sh.st.lock();
        let Some(t) = st.task(id) else { return };
        json!({
            "type": "update", "start": t.v.get("start").cloned().unwrap_or(Value::Null),
            "end": t.v.get("end").cloned().unwrap_or(Value::Null), "status": t.v["status"],
            "task_id": id, "template_id": t.v["template_id"], "project_id": t.v["project_id"], "version": Value::Null
        })
    };
    let _ = sh.events.send(ev.to_string());
}

// ---------------------------------------------------------------- task runner

fn set_status(sh: &Shared, id: i64, status: &str) {
    {
        let mut st = sh.st.lock();
        let Some(t) = st.task_mut(id) else { return };
        if is_final(&t.v) {
            return;
        }
        t.v["status"] = json!(status);
        if status == "running" && t.v.get("start").is_none() {
            t.v["start"] = json!(now());
        }
        if matches!(status, "success" | "error" | "stopped") {
            t.v["end"] = json!(now());
            t.finished_at = Some(std::time::Instant::now());
        }
    }
    emit_update(sh, id);
}

fn log_line(sh: &Shared, id: i64, text: String) {
    let time = now();
    let ev = {
        let mut st = sh.st.lock();
        let Some(t) = st.task_mut(id) else { return };
        let line_id = t.output.len() as i64 + 1;
        t.output
            .push(json!({"id": line_id, "task_id": id, "time": time, "output": text, "stage_id": Value::Null}));
        if let Some(o) = t.output.last_mut().and_then(Value::as_object_mut) {
            o.remove("stage_id");
        }
        json!({"type": "log", "output": text, "time": time, "task_id": id, "project_id": t.v["project_id"]})
    };
    let _ = sh.events.send(ev.to_string());
}

/// Sleep `d`, returning early with any signal that arrives.
async fn pause(rx: &mut watch::Receiver<Signal>, d: Duration) -> Signal {
    let cur = *rx.borrow_and_update();
    if cur != Signal::None {
        return cur;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => Signal::None,
        r = rx.changed() => if r.is_ok() { *rx.borrow_and_update() } else { std::future::pending().await },
    }
}

async fn stop_now(sh: &Shared, id: i64, force: bool) {
    if sh.st.lock().task(id).is_none_or(|t| is_final(&t.v)) {
        return;
    }
    if !force {
        set_status(sh, id, "stopping");
        log_line(sh, id, "Stopping task".into());
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    log_line(sh, id, "Task stopped".into());
    set_status(sh, id, "stopped");
}

async fn run_task(sh: Arc<Shared>, id: i64, mut rx: watch::Receiver<Signal>) {
    let (tpl_id, name, parallel) = {
        let st = sh.st.lock();
        let Some(t) = st.task(id) else { return };
        let tpl_id = t.v["template_id"].as_i64().unwrap_or(0);
        let tpl = st.template(tpl_id).cloned().unwrap_or_default();
        (
            tpl_id,
            tpl["name"].as_str().unwrap_or("").to_string(),
            tpl["allow_parallel_tasks"].as_bool().unwrap_or(false),
        )
    };
    // waiting: one task at a time per template unless allow_parallel_tasks.
    loop {
        let blocked = !parallel && {
            let st = sh.st.lock();
            st.tasks.iter().any(|t| {
                t.v["template_id"] == json!(tpl_id)
                    && t.v["id"].as_i64().unwrap_or(0) < id
                    && !is_final(&t.v)
            })
        };
        if !blocked {
            break;
        }
        if let Signal::Stop(_) = pause(&mut rx, Duration::from_millis(10)).await {
            return stop_now(&sh, id, true).await;
        }
    }
    let b = sh
        .st
        .lock()
        .behaviours
        .get(&name)
        .cloned()
        .unwrap_or_default();
    let run_no = {
        let mut st = sh.st.lock();
        let n = st.runs.entry(tpl_id).or_insert(0);
        *n += 1;
        *n
    };
    set_status(&sh, id, "starting");
    if let Signal::Stop(f) = pause(&mut rx, Duration::from_millis(b.starting_ms)).await {
        return stop_now(&sh, id, f).await;
    }
    set_status(&sh, id, "running");
    log_line(&sh, id, format!("PLAY [{name}] *****"));
    let lines = b.lines.max(1);
    let step = Duration::from_millis(b.duration_ms / lines as u64);
    let half = lines / 2;
    for i in 0..lines {
        if b.confirm && i == half {
            log_line(&sh, id, "Plan: 1 to add, 0 to change, 0 to destroy.".into());
            set_status(&sh, id, "waiting_confirmation");
            loop {
                match pause(&mut rx, Duration::from_secs(3600)).await {
                    Signal::Confirm => {
                        set_status(&sh, id, "confirmed");
                        set_status(&sh, id, "running");
                        break;
                    }
                    Signal::Reject => {
                        set_status(&sh, id, "rejected");
                        log_line(&sh, id, "Apply rejected".into());
                        set_status(&sh, id, "error");
                        return;
                    }
                    Signal::Stop(f) => return stop_now(&sh, id, f).await,
                    Signal::None => {}
                }
            }
            // Consume the signal so later pauses do not see it again.
            let _ = rx.borrow_and_update();
        }
        if let Signal::Stop(f) = pause(&mut rx, step).await {
            return stop_now(&sh, id, f).await;
        }
        log_line(&sh, id, format!("TASK [step {}] ok: [lab-host]", i + 1));
    }
    if b.hang {
        loop {
            if let Signal::Stop(f) = pause(&mut rx, Duration::from_secs(3600)).await {
                return stop_now(&sh, id, f).await;
            }
        }
    }
    let ok = b.outcome != "error" && run_no > b.fail_times;
    if ok {
        log_line(
            &sh,
            id,
            "PLAY RECAP ***** lab-host : ok=4 changed=1 failed=0".into(),
        );
        set_status(&sh, id, "success");
    } else {
        log_line(
            &sh,
            id,
            "fatal: [lab-host]: FAILED! => {\"msg\": \"lab: simulated failure\"}".into(),
        );
        log_line(
            &sh,
            id,
            "PLAY RECAP ***** lab-host : ok=2 changed=0 failed=1".into(),
        );
        set_status(&sh, id, "error");
    }
}

// ---------------------------------------------------------------- control API

async fn lab_behaviour(
    State(sh): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let b: Behaviour = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("behaviour: {e}")),
    };
    let mut st = sh.st.lock();
    if !st.templates.iter().any(|t| t["name"] == json!(name)) {
        return error(StatusCode::NOT_FOUND, &format!("no template `{name}`"));
    }
    st.behaviours.insert(name, b);
    empty(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailCreate {
    count: u32,
    #[serde(default = "default_mode")]
    mode: String,
}

fn default_mode() -> String {
    "500".into()
}

async fn lab_fail_create(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let f: FailCreate = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("fail_task_create: {e}")),
    };
    if f.mode != "500" && f.mode != "drop" {
        return error(StatusCode::BAD_REQUEST, "mode must be \"500\" or \"drop\"");
    }
    let mut st = sh.st.lock();
    st.fail_creates = f.count;
    st.fail_mode = f.mode;
    empty(StatusCode::NO_CONTENT)
}

async fn lab_tasks(State(sh): State<Arc<Shared>>) -> Response {
    let list: Vec<Value> = sh.st.lock().tasks.iter().map(|t| t.v.clone()).collect();
    json_resp(StatusCode::OK, &Value::Array(list))
}

//! Semaphore UI client: plain async Rust, no Rhai types.
//!
//! Follows the facts sheet (`specs/SEMAPHORE.md`): `environment`/`arguments` are JSON-encoded strings,
//! stop always sends `{"force": bool}`, paths have no trailing slash, an unknown task id answers 400 with
//! an empty body, 204 bodies are empty, task lists are newest first, new servers take `params`.
//!
//! Waiting ([`Client::wait`]) listens on `/api/ws` (`ws://` or `wss://` with the same CA/insecure
//! settings as the REST calls) and otherwise polls adaptively; every wait has a deadline. Creating a
//! task is never blindly retried: after an ambiguous failure the client looks for the task it may
//! have created before trying again, and an empty 500 (the server's answer to invalid input) is
//! looked up once and then reported with its usual causes.
//!
//! Release differences (`specs/UPSTREAM.md` §1): servers after v2.10 drop a run's limit, tags,
//! skip_tags, debug, inventory and branch unless the template opts in (`task_params.allow_*`,
//! `allow_override_branch_in_task`), and `arguments` need `allow_override_args_in_task` everywhere;
//! [`Client::prepare_run`] checks this before a run. v2.10 has no tags, no reject route, and lets the
//! template environment win over the task's.

mod hub;
mod output;
mod run;
mod tasks;
mod templates;
mod tls;
mod wait;

pub use run::StopOutcome;
pub use wait::{WaitEvent, WaitOptions};

use crate::config::{IdOrName, SemaphoreConfig};
use crate::error::{ErrorKind, RResult, RalfError};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// Terminal task statuses (`IsFinished()` upstream).
pub const TERMINAL: [&str; 3] = ["success", "error", "stopped"];

/// True for `success`, `error` and `stopped`.
pub fn is_terminal(status: &str) -> bool {
    TERMINAL.contains(&status)
}

/// How the client authenticates.
#[derive(Clone)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Token(String),
    /// `POST /api/auth/login` and a session cookie.
    Login { user: String, password: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Token(_) => f.write_str("Token(«redacted»)"),
            Auth::Login { user, .. } => {
                write!(f, "Login {{ user: {user:?}, password: «redacted» }}")
            }
        }
    }
}

/// Everything needed to connect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Server root (`http://127.0.0.1:3000`); the API is under `/api`.
    pub url: String,
    /// Project id or name; `None` = the only project the user can see.
    pub project: Option<IdOrName>,
    pub auth: Auth,
    /// Per-request timeout.
    pub timeout: Duration,
    pub ca_file: Option<std::path::PathBuf>,
    pub insecure: bool,
    /// Use `/api/ws` for waiting when possible (default true).
    pub websocket: bool,
    /// Bytes of a task's output kept in memory; older lines are dropped (and counted).
    pub max_output: usize,
}

/// Default of `semaphore.max_output` (as `ssh.max_output`): 4 MiB.
pub const DEFAULT_MAX_OUTPUT: usize = 4 * 1024 * 1024;

impl ClientOptions {
    /// Options from the `semaphore:` config section; secrets are loaded (and registered for redaction).
    pub fn from_config(c: &SemaphoreConfig) -> RResult<ClientOptions> {
        let token = crate::secrets::load_ref(
            c.token_env.as_deref(),
            c.token_file.as_deref(),
            "semaphore token",
        )?;
        let auth = if let Some(t) = token {
            Auth::Token(t.trim().to_string())
        } else if let Some(user) = &c.user {
            let pw = crate::secrets::load_ref(
                c.password_env.as_deref(),
                c.password_file.as_deref(),
                "semaphore password",
            )?
            .ok_or_else(|| {
                RalfError::config(
                    "semaphore: `user` is set but no password: set semaphore.password_env or semaphore.password_file",
                )
            })?;
            Auth::Login {
                user: user.clone(),
                password: pw.trim_end_matches(['\n', '\r']).to_string(),
            }
        } else {
            return Err(RalfError::config(
                "semaphore: no credentials configured: set semaphore.token_env or semaphore.token_file \
                 (API token), or semaphore.user with password_env/password_file",
            ));
        };
        Ok(ClientOptions {
            url: c.url.clone(),
            project: c.project.clone(),
            auth,
            timeout: c.timeout.map(|s| s.0).unwrap_or(Duration::from_secs(30)),
            ca_file: c.ca_file.clone(),
            insecure: c.insecure,
            websocket: true,
            max_output: c.max_output.unwrap_or(DEFAULT_MAX_OUTPUT),
        })
    }
}

/// A task template (the raw object is kept for everything not modelled).
#[derive(Debug, Clone)]
pub struct Template {
    pub id: i64,
    pub name: String,
    pub raw: Value,
}

impl Template {
    fn from_value(v: Value) -> RResult<Template> {
        let id = v
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| RalfError::internal("semaphore: template without an integer `id`"))?;
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(Template { id, name, raw: v })
    }
}

/// A task as last seen from the server.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: i64,
    pub template_id: i64,
    pub status: String,
    pub raw: Value,
}

impl Task {
    pub fn from_value(v: Value) -> RResult<Task> {
        let id = v
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| RalfError::internal("semaphore: task without an integer `id`"))?;
        let template_id = v.get("template_id").and_then(Value::as_i64).unwrap_or(0);
        let status = v
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("waiting")
            .to_string();
        Ok(Task {
            id,
            template_id,
            status,
            raw: v,
        })
    }
    pub fn is_terminal(&self) -> bool {
        is_terminal(&self.status)
    }
    /// A string field (missing and null are both `None`).
    pub fn field(&self, k: &str) -> Option<&str> {
        self.raw.get(k).and_then(Value::as_str)
    }
}

/// What to start (`POST /api/project/{p}/tasks`).
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// Extra variables; sent as a JSON-encoded string.
    pub env: Option<Map<String, Value>>,
    pub message: Option<String>,
    pub limit: Vec<String>,
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
    pub dry_run: bool,
    pub debug: bool,
    pub diff: bool,
    pub branch: Option<String>,
    /// Extra CLI arguments; sent as a JSON-encoded array string.
    pub arguments: Vec<String>,
    pub inventory_id: Option<i64>,
}

/// One line of task output.
#[derive(Debug, Clone)]
pub struct OutputLine {
    pub time: String,
    pub output: String,
}

/// Connected Semaphore client (cheap to share behind an `Arc`).
pub struct Client {
    http: reqwest::Client,
    root: String,
    auth: Auth,
    /// Session cookie after login (`semaphore=...`).
    cookie: parking_lot::Mutex<Option<String>>,
    pub project_id: i64,
    pub project_name: String,
    /// Server version from `GET /api/info`.
    pub version: String,
    pub info: Value,
    /// v2.10 or older (by version, or by probing when the version is `undefined-...`).
    legacy: bool,
    websocket: bool,
    max_output: usize,
    /// PEM of `ca_file` (for the `wss://` connector).
    ca_pem: Option<Vec<u8>>,
    insecure: bool,
    pub timeout: Duration,
    /// Templates read once and reused (see [`TemplateCache`]).
    template_cache: parking_lot::Mutex<Option<TemplateCache>>,
    /// One template-list refresh at a time: concurrent misses wait for it instead of each
    /// downloading the whole list (32 parallel services on an expired cache).
    template_refresh: tokio::sync::Mutex<()>,
    /// The websocket shared by this client's waits.
    hub: hub::Hub,
}

/// The project's templates by name and id, as last read. A run starts many tasks of the same
/// templates; reading the whole list for each would make every task cost as much as the project
/// is large. Kept for [`TEMPLATE_TTL`]; a name or id that is not in it is read again before it is
/// reported missing, and a task creation that finds the template gone drops it.
pub(crate) struct TemplateCache {
    at: std::time::Instant,
    by_name: std::collections::HashMap<String, Template>,
    by_id: std::collections::HashMap<i64, Template>,
}

/// How long the template list is reused.
pub const TEMPLATE_TTL: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("root", &self.root)
            .field("project_id", &self.project_id)
            .field("version", &self.version)
            .field("auth", &self.auth)
            .finish()
    }
}

/// Whether an error happened before the request could have reached the server.
fn not_sent(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_builder()
}

fn transport_error(method: &Method, path: &str, e: reqwest::Error) -> RalfError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut src = String::new();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(s) = cur {
        src = s.to_string();
        cur = s.source();
    }
    let detail = if src.is_empty() {
        String::new()
    } else {
        format!(" ({src})")
    };
    RalfError::unavailable(format!("semaphore: {method} {path}: {what}{detail}"))
        .with("method", method.as_str())
        .with("path", path)
        .with("sent", !not_sent(&e))
}

/// Map an HTTP failure to an error kind (401 auth, 403 forbidden, 404 not_found, 400 invalid, 5xx unavailable).
/// The whole body of a response as text; a body that breaks off is a transport error marked `sent`.
async fn body_text(method: &Method, path: &str, resp: reqwest::Response) -> RResult<String> {
    resp.text().await.map_err(|e| {
        let mut err = transport_error(method, path, e);
        err.details.insert("sent".into(), Value::Bool(true));
        err
    })
}

fn not_json(path: &str, e: serde_json::Error) -> RalfError {
    RalfError::internal(format!("semaphore: GET {path}: answer is not JSON: {e}"))
}

pub fn status_error(
    method: &Method,
    path: &str,
    status: StatusCode,
    body: &str,
    what: &str,
) -> RalfError {
    let server_msg = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .or_else(|| {
            let t = body.trim();
            (!t.is_empty() && t.len() < 300).then(|| t.to_string())
        });
    let suffix = server_msg
        .as_ref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    let code = status.as_u16();
    let e = match code {
        401 => {
            let hint = if server_msg.as_deref() == Some("TOTP_REQUIRED") {
                "the user has TOTP enabled; use an API token (semaphore.token_env / token_file) instead"
            } else {
                "check the API token (semaphore.token_env / token_file) or user/password; \
                 tokens are created under User > API tokens or with POST /api/user/tokens"
            };
            RalfError::auth(format!(
                "semaphore: authentication rejected (401) for {method} {path}; {hint}"
            ))
        }
        403 => RalfError::new(
            ErrorKind::Forbidden,
            format!("semaphore: {method} {path} is not allowed for this user (403){suffix}"),
        ),
        404 => RalfError::not_found(format!(
            "semaphore: {what} not found (404 for {method} {path})"
        )),
        409 => RalfError::new(
            ErrorKind::Conflict,
            format!("semaphore: {method} {path} conflicts with the current state (409){suffix}"),
        ),
        400..=499 => RalfError::invalid(format!(
            "semaphore: {method} {path} was rejected ({code}){}",
            if suffix.is_empty() {
                ": the server gave no reason".to_string()
            } else {
                suffix
            }
        )),
        _ => RalfError::unavailable(format!(
            "semaphore: {method} {path} failed with {code}{suffix}"
        )),
    };
    let e = e
        .with("status", code)
        .with("method", method.as_str())
        .with("path", path);
    if body.trim().is_empty() {
        e.with("empty_body", true)
    } else {
        e
    }
}

/// Parse `"v2.10.32-..."` into (major, minor).
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let v = v.trim_start_matches('v');
    let mut it = v.split(['.', '-']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// Encode a path segment (project/template names never go into paths, ids only; this is for query values).
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// Connect: build the HTTP client, log in if needed, read `/api/info`, resolve the project.
    pub async fn connect(opts: ClientOptions) -> RResult<Arc<Client>> {
        let root = opts.url.trim().trim_end_matches('/').to_string();
        if !(root.starts_with("http://") || root.starts_with("https://")) {
            return Err(RalfError::config(format!(
                "semaphore: url `{root}` must start with http:// or https:// (the server root; the API is under /api)"
            )));
        }
        let root = root.strip_suffix("/api").unwrap_or(&root).to_string();
        let mut b = crate::clients::http_builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("ralf-sh/", env!("CARGO_PKG_VERSION")));
        let mut ca_pem = None;
        if let Some(ca) = &opts.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                RalfError::config(format!(
                    "semaphore: cannot read ca_file {}: {e}",
                    ca.display()
                ))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                RalfError::config(format!(
                    "semaphore: ca_file {} is not PEM: {e}",
                    ca.display()
                ))
            })?;
            b = b.add_root_certificate(cert);
            ca_pem = Some(pem);
        }
        if opts.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b
            .build()
            .map_err(|e| RalfError::internal(format!("semaphore: http client: {e}")))?;
        let mut c = Client {
            http,
            root,
            auth: opts.auth,
            cookie: parking_lot::Mutex::new(None),
            project_id: 0,
            project_name: String::new(),
            version: String::new(),
            info: Value::Null,
            legacy: false,
            websocket: opts.websocket,
            max_output: opts.max_output,
            ca_pem,
            insecure: opts.insecure,
            timeout: opts.timeout,
            template_cache: parking_lot::Mutex::new(None),
            template_refresh: tokio::sync::Mutex::new(()),
            hub: hub::Hub::default(),
        };
        if let Auth::Login { .. } = c.auth {
            c.login().await?;
        }
        let info = c.get_json("/info", "server info").await?;
        c.version = info
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        c.info = info;
        let (pid, pname) = c.resolve_project(opts.project.as_ref()).await?;
        c.project_id = pid;
        c.project_name = pname;
        c.legacy = match parse_version(&c.version) {
            Some((major, minor)) => major < 2 || (major == 2 && minor <= 10),
            None => c.probe_legacy().await,
        };
        Ok(Arc::new(c))
    }

    /// Server root (without `/api`).
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Web UI address of a task (the server's own `Task.GetUrl` form: the history view).
    pub fn task_url(&self, _template_id: i64, task_id: i64) -> String {
        format!(
            "{}/project/{}/history?t={}",
            self.root, self.project_id, task_id
        )
    }

    /// True when the server behaves like v2.10 or older (no `params`, no tags, no reject route).
    pub fn is_legacy(&self) -> bool {
        self.legacy
    }

    /// A build from source reports `undefined-00000000-` (`util/version.go`): tell v2.10 from newer
    /// by a route v2.10.32 does not have (`…/tasks/{id}/raw_output`: 404 from the router there, 400
    /// for the unknown task 0 on newer servers).
    async fn probe_legacy(&self) -> bool {
        let path = format!("/project/{}/tasks/0/raw_output", self.project_id);
        let legacy = matches!(
            self.send_once(&Method::GET, &path, None)
                .await
                .map(|r| r.status()),
            Ok(StatusCode::NOT_FOUND)
        );
        tracing::debug!(target: "ralf::semaphore", "server version `{}` is not a release number; probed: {}", self.version,
            if legacy { "v2.10 or older" } else { "newer than v2.10" });
        legacy
    }

    async fn login(&self) -> RResult<()> {
        let Auth::Login { user, password } = &self.auth else {
            return Ok(());
        };
        let path = "/auth/login";
        let url = format!("{}/api{path}", self.root);
        let resp = self
            .http
            .post(&url)
            .json(&json!({"auth": user, "password": password}))
            .send()
            .await
            .map_err(|e| transport_error(&Method::POST, path, e))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            if status == StatusCode::UNAUTHORIZED {
                return Err(RalfError::auth(format!(
                    "semaphore: login as `{user}` was rejected (401); check semaphore.user and the password \
                     (semaphore.password_env / password_file), or use an API token"
                ))
                .with("status", 401));
            }
            return Err(status_error(&Method::POST, path, status, &body, "login"));
        }
        let cookie = resp
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|kv| kv.trim_start().starts_with("semaphore="))
            .map(|s| s.trim().to_string())
            .ok_or_else(|| {
                RalfError::auth(
                    "semaphore: login succeeded but the server set no `semaphore` session cookie",
                )
            })?;
        if let Some(v) = cookie.split_once('=').map(|x| x.1) {
            crate::redact::register(v);
        }
        *self.cookie.lock() = Some(cookie);
        Ok(())
    }

    /// Header (name, value) that authenticates a request.
    pub(crate) fn auth_header(&self) -> (reqwest::header::HeaderName, String) {
        match &self.auth {
            Auth::Token(t) => (reqwest::header::AUTHORIZATION, format!("Bearer {t}")),
            Auth::Login { .. } => (
                reqwest::header::COOKIE,
                self.cookie.lock().clone().unwrap_or_default(),
            ),
        }
    }

    /// One request, no retries: the response with its headers read (the body still to come).
    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> RResult<reqwest::Response> {
        let url = format!("{}/api{path}", self.root);
        let (hn, hv) = self.auth_header();
        let mut rb = self.http.request(method.clone(), &url).header(hn, hv);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        rb.send()
            .await
            .map_err(|e| transport_error(method, path, e))
    }

    /// A request with error mapping; re-logs in once on 401 with login auth. Returns the
    /// successful response, its body not yet read.
    pub(super) async fn respond(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> RResult<reqwest::Response> {
        let mut resp = self.send_once(method, path, body).await?;
        if resp.status() == StatusCode::UNAUTHORIZED && matches!(self.auth, Auth::Login { .. }) {
            self.login().await?;
            resp = self.send_once(method, path, body).await?;
        }
        let status = resp.status();
        if !status.is_success() {
            let text = body_text(method, path, resp).await?;
            return Err(status_error(method, path, status, &text, what));
        }
        Ok(resp)
    }

    /// A request with error mapping. Returns (status, body text).
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> RResult<(StatusCode, String)> {
        let resp = self.respond(&method, path, body, what).await?;
        let status = resp.status();
        Ok((status, body_text(&method, path, resp).await?))
    }

    /// Idempotent GET with retries (backoff 200ms, 400ms, 800ms) on `unavailable`.
    pub async fn get_json(&self, path: &str, what: &str) -> RResult<Value> {
        self.get_retrying(path, || async {
            let (_, text) = self.request(Method::GET, path, None, what).await?;
            serde_json::from_str(&text).map_err(|e| not_json(path, e))
        })
        .await
    }

    /// Runs `attempt` again after 200, 400 and 800 ms while it fails `unavailable`.
    pub(super) async fn get_retrying<T, F, Fut>(&self, path: &str, attempt: F) -> RResult<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = RResult<T>>,
    {
        let mut delay = Duration::from_millis(200);
        let mut n = 1;
        loop {
            match attempt().await {
                Err(e) if e.kind == ErrorKind::Unavailable && n < 4 => {
                    tracing::debug!(target: "ralf::semaphore", "GET {path} failed ({e}); retry {n}/3");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    n += 1;
                }
                other => return other,
            }
        }
    }

    /// A changing call (POST/PUT/DELETE), never retried. Returns the body (empty for 204).
    pub async fn change(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        what: &str,
    ) -> RResult<String> {
        self.request(method, path, Some(body), what)
            .await
            .map(|(_, t)| t)
    }

    async fn resolve_project(&self, p: Option<&IdOrName>) -> RResult<(i64, String)> {
        match p {
            Some(IdOrName::Id(id)) => {
                let v = self
                    .get_json(&format!("/project/{id}"), &format!("project {id}"))
                    .await?;
                Ok((
                    *id,
                    v.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                ))
            }
            Some(IdOrName::Name(n)) if n.parse::<i64>().is_ok() => {
                Box::pin(self.resolve_project(Some(&IdOrName::Id(n.parse().unwrap_or(0))))).await
            }
            other => {
                let list = self.get_json("/projects", "projects").await?;
                let items: Vec<(i64, String)> = list
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|p| {
                                Some((
                                    p.get("id")?.as_i64()?,
                                    p.get("name")?.as_str().unwrap_or("").to_string(),
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                match other {
                    Some(IdOrName::Name(n)) => {
                        if let Some(x) = items.iter().find(|(_, name)| name == n) {
                            return Ok(x.clone());
                        }
                        let names: Vec<&str> = items.iter().map(|(_, n)| n.as_str()).collect();
                        let hint = crate::text::did_you_mean(n, names.iter().copied())
                            .map(|s| format!("; did you mean `{s}`?"))
                            .unwrap_or_else(|| format!("; projects visible to this user: {}", names.join(", ")));
                        Err(RalfError::not_found(format!("semaphore: project `{n}` not found{hint}")))
                    }
                    _ => match items.as_slice() {
                        [one] => Ok(one.clone()),
                        [] => Err(RalfError::not_found("semaphore: this user can see no project")),
                        many => Err(RalfError::config(format!(
                            "semaphore: {} projects are visible ({}); set semaphore.project (id or name)",
                            many.len(),
                            many.iter().map(|(i, n)| format!("{i}={n}")).collect::<Vec<_>>().join(", ")
                        ))),
                    },
                }
            }
        }
    }

    pub(super) fn p(&self) -> String {
        format!("/project/{}", self.project_id)
    }
}

impl Client {
    /// `ws://` or `wss://` address of `/api/ws` (None when the websocket is turned off).
    pub(crate) fn ws_url(&self) -> Option<String> {
        if !self.websocket {
            return None;
        }
        if let Some(r) = self.root.strip_prefix("http://") {
            return Some(format!("ws://{r}/api/ws"));
        }
        self.root
            .strip_prefix("https://")
            .map(|r| format!("wss://{r}/api/ws"))
    }

    /// A query-string-safe form of a value.
    pub fn encode_query(s: &str) -> String {
        enc(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("v2.10.32"), Some((2, 10)));
        assert_eq!(parse_version("2.19.8-abc"), Some((2, 19)));
        assert_eq!(parse_version("dev"), None);
    }

    #[test]
    fn status_mapping() {
        let m = Method::GET;
        assert_eq!(
            status_error(&m, "/x", StatusCode::UNAUTHORIZED, "", "x").kind,
            ErrorKind::Auth
        );
        assert_eq!(
            status_error(&m, "/x", StatusCode::FORBIDDEN, "", "x").kind,
            ErrorKind::Forbidden
        );
        assert_eq!(
            status_error(&m, "/x", StatusCode::NOT_FOUND, "", "x").kind,
            ErrorKind::NotFound
        );
        let e = status_error(
            &m,
            "/x",
            StatusCode::BAD_REQUEST,
            r#"{"error":"template name can not be empty"}"#,
            "x",
        );
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(e.message.contains("template name can not be empty"));
        assert_eq!(
            status_error(&m, "/x", StatusCode::BAD_GATEWAY, "", "x").kind,
            ErrorKind::Unavailable
        );
        let e = status_error(
            &m,
            "/x",
            StatusCode::UNAUTHORIZED,
            r#"{"error":"TOTP_REQUIRED"}"#,
            "x",
        );
        assert!(e.message.contains("TOTP"));
    }
}

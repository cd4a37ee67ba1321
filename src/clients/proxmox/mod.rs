//! Proxmox VE REST client (plain async Rust).
//!
//! Follows `specs/PROXMOX.md`: API under `/api2/json`, `{"data": ...}` envelope, API-token auth
//! (`Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET`) or ticket auth (cookie `PVEAuthCookie` +
//! `CSRFPreventionToken` header on writes), state-changing guest calls answered with a UPID that is
//! polled until the task stops. TLS is verified by default; a self-signed cluster is accepted by
//! pinning the SHA-256 fingerprint of its certificate, or through a CA file.

pub mod errors;
pub mod exec;
pub mod names;
mod tasks;
pub mod tls;

use crate::config::ProxmoxConfig;
use crate::error::{ErrorKind, RResult, RalfError};
pub use errors::{flock_timeout_file, http_error, lock_name, NO_SNAPSHOT_FEATURE};
use errors::{guest_error, task_error, task_hint};
pub use names::{check_snapshot_name, Kind, Upid};
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How to reach and authenticate to a Proxmox VE API.
#[derive(Clone, Default)]
pub struct Options {
    /// `https://pve.lab:8006` (the API is under `/api2/json`).
    pub url: String,
    /// Default node.
    pub node: Option<String>,
    pub token_id: Option<String>,
    pub token_secret: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// SHA-256 certificate fingerprint to pin (any hex form).
    pub fingerprint: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub insecure: bool,
    /// Per-request timeout (default 30s).
    pub timeout: Option<Duration>,
    /// Interval between task status polls (default 1s, like proxmoxer).
    pub poll: Option<Duration>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("url", &self.url)
            .field("node", &self.node)
            .field("token_id", &self.token_id)
            .field(
                "token_secret",
                &self.token_secret.as_ref().map(|_| "«redacted»"),
            )
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "«redacted»"))
            .field("fingerprint", &self.fingerprint)
            .field("ca_file", &self.ca_file)
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl Options {
    /// Options from the config's `proxmox:` section, loading the secrets it names.
    pub fn from_config(c: &ProxmoxConfig) -> RResult<Options> {
        let token_secret = crate::secrets::load_ref(
            c.token_secret_env.as_deref(),
            c.token_secret_file.as_deref(),
            "proxmox.token_secret",
        )?;
        let password = crate::secrets::load_ref(
            c.password_env.as_deref(),
            c.password_file.as_deref(),
            "proxmox.password",
        )?;
        Ok(Options {
            url: c.url.clone(),
            node: c.node.clone(),
            token_id: c.token_id.clone(),
            token_secret,
            user: c.user.clone(),
            password,
            fingerprint: c.fingerprint.clone(),
            ca_file: c.ca_file.clone(),
            insecure: c.insecure,
            timeout: c.timeout.map(|s| s.0),
            poll: None,
        })
    }
}

enum Auth {
    Token(String),
    Ticket {
        user: String,
        password: String,
        state: tokio::sync::Mutex<Option<Ticket>>,
    },
}

#[derive(Clone)]
struct Ticket {
    ticket: String,
    csrf: String,
    at: Instant,
}

/// Renew tickets well before their 2 h lifetime ends.
const TICKET_RENEW: Duration = Duration::from_secs(3600);

/// A connected Proxmox VE API.
pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    pub url: String,
    pub default_node: Option<String>,
    /// `GET /version` as answered on connect.
    pub version: Value,
    pub poll: Duration,
    /// The guests as `/cluster/resources` last listed them, and when (see [`Client::find_guest`]).
    guests_seen: parking_lot::Mutex<Option<(Instant, Arc<Vec<GuestRef>>)>>,
    /// One listing at a time: callers that miss the cache together wait for one answer.
    guests_listing: tokio::sync::Mutex<()>,
}

/// How long a listing of the cluster's guests answers `find_guest` (where a guest is: its node
/// and kind). A guest that is not in it is looked for in a new listing at once.
pub const GUESTS_FRESH: Duration = Duration::from_secs(5);

/// A guest as found in `/cluster/resources`.
#[derive(Debug, Clone)]
pub struct GuestRef {
    pub vmid: u32,
    pub node: String,
    pub kind: Kind,
    pub name: String,
    pub status: String,
    pub raw: Value,
}

/// A finished (or still running) task.
#[derive(Debug, Clone)]
pub struct TaskStatus {
    pub upid: String,
    pub status: String,
    pub exitstatus: Option<String>,
    pub raw: Value,
}

impl TaskStatus {
    pub fn running(&self) -> bool {
        self.status == "running"
    }
    /// Success iff `OK` or `WARNINGS: n`.
    pub fn ok(&self) -> bool {
        matches!(&self.exitstatus, Some(s) if s == "OK" || s.starts_with("WARNINGS:"))
    }
}

fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                parts.push(inner.to_string());
            }
        }
        cur = err.source();
        if let Some(s) = cur {
            parts.push(s.to_string());
        }
    }
    parts.dedup();
    parts.join(": ")
}

impl Client {
    /// Connect: set up TLS and auth, log in (ticket auth), and read `/version`.
    pub async fn connect(opts: Options) -> RResult<Client> {
        let url = opts.url.trim_end_matches('/').to_string();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(RalfError::config(format!(
                "proxmox: url `{url}` must start with https:// (e.g. https://pve.lab:8006)"
            )));
        }
        let timeout = opts.timeout.unwrap_or(Duration::from_secs(30));
        let pinned = match &opts.fingerprint {
            Some(f) if !f.trim().is_empty() => Some(
                tls::normalize_fingerprint(f)
                    .map_err(|e| RalfError::config(format!("proxmox: {e}")))?,
            ),
            _ => None,
        };
        let mut b = crate::clients::http_builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("ralf-sh/", env!("CARGO_PKG_VERSION")));
        let pin_seen = if opts.insecure {
            b = b.danger_accept_invalid_certs(true);
            None
        } else if let Some(fp) = &pinned {
            let v = Arc::new(tls::PinVerifier::new(Some(fp.clone())));
            let seen = v.seen.clone();
            let cfg = tls::client_config(v).map_err(RalfError::internal)?;
            b = b.use_preconfigured_tls(cfg);
            Some(seen)
        } else {
            if let Some(ca) = &opts.ca_file {
                let pem = std::fs::read(ca).map_err(|e| {
                    RalfError::config(format!(
                        "proxmox: cannot read ca_file {}: {e}",
                        ca.display()
                    ))
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    RalfError::config(format!("proxmox: ca_file {} is not PEM: {e}", ca.display()))
                })?;
                if certs.is_empty() {
                    return Err(RalfError::config(format!(
                        "proxmox: ca_file {} holds no certificate",
                        ca.display()
                    )));
                }
                for c in certs {
                    b = b.add_root_certificate(c);
                }
            }
            None
        };
        let http = b
            .build()
            .map_err(|e| RalfError::internal(format!("proxmox: http client: {e}")))?;
        let auth = match (&opts.token_id, &opts.token_secret, &opts.user, &opts.password) {
            (Some(id), Some(secret), _, _) => {
                names::check_token_id(id).map_err(|e| RalfError::config(format!("proxmox: {e}")))?;
                Auth::Token(format!("PVEAPIToken={id}={secret}"))
            }
            (Some(id), None, None, _) => {
                return Err(RalfError::auth(format!(
                    "proxmox: token id `{id}` is configured but its secret is not set (proxmox.token_secret_env / token_secret_file, or #{{ token_secret: secret(\"...\") }})"
                )))
            }
            (_, _, Some(user), Some(pw)) => Auth::Ticket {
                user: user.clone(),
                password: pw.clone(),
                state: tokio::sync::Mutex::new(None),
            },
            (_, _, Some(user), None) => {
                return Err(RalfError::auth(format!(
                    "proxmox: user `{user}` is configured but no password is set (proxmox.password_env / password_file)"
                )))
            }
            _ => {
                return Err(RalfError::auth(
                    "proxmox: no credentials: configure proxmox.token_id + token_secret_env (or _file), or user + password_env (or _file)",
                ))
            }
        };
        let mut client = Client {
            http,
            base: format!("{url}/api2/json"),
            auth,
            url: url.clone(),
            default_node: opts.node.clone(),
            version: Value::Null,
            poll: opts.poll.unwrap_or(Duration::from_secs(1)),
            guests_seen: Default::default(),
            guests_listing: Default::default(),
        };
        let first = client.get("/version", &[]).await;
        let version = match first {
            Ok(v) => v,
            Err(e) if e.details.get("tls").is_some() => {
                return Err(client.tls_error(e, &pinned, pin_seen, &opts).await)
            }
            Err(e) => return Err(e),
        };
        client.version = version;
        Ok(client)
    }

    /// Turn a TLS handshake failure into the message that tells the user what to do.
    async fn tls_error(
        &self,
        e: RalfError,
        pinned: &Option<String>,
        seen: Option<Arc<Mutex<Option<String>>>>,
        opts: &Options,
    ) -> RalfError {
        let url = &self.url;
        if let (Some(exp), Some(seen)) = (pinned, seen) {
            let actual = seen.lock().clone().unwrap_or_else(|| "(unknown)".into());
            return RalfError::auth(format!(
                "proxmox: refusing {url}: its TLS certificate fingerprint does not match the pinned one\n  expected: {exp}\n  actual:   {actual}\nIf the node's certificate was renewed on purpose, check the new one on the node (`pvenode cert info`) and update proxmox.fingerprint."
            ))
            .with("expected", exp)
            .with("actual", actual)
            .with("url", url);
        }
        // Not pinned and not trusted: learn what the server presents, so the hint can name it.
        let actual = probe_fingerprint(url).await;
        let shown = actual
            .clone()
            .unwrap_or_else(|| "(could not be read)".into());
        let ca_hint = if opts.ca_file.is_some() {
            " (the configured ca_file does not vouch for it)"
        } else {
            ""
        };
        RalfError::auth(format!(
            "proxmox: refusing {url}: its TLS certificate is not trusted{ca_hint} ({}).\nProxmox signs it with its own cluster CA, so it looks self-signed to clients. To trust it, pin its SHA-256 fingerprint:\n  the server presented {shown}\n  compare it with `pvenode cert info` on the node (or `ssl_fingerprint` in GET /nodes), then set\n    proxmox:\n      fingerprint: \"{shown}\"\n  in the config (or pass #{{ fingerprint: \"...\" }} to proxmox::connect), or point proxmox.ca_file at the cluster CA (/etc/pve/pve-root-ca.pem).",
            e.message
        ))
        .with("actual", actual)
        .with("url", url)
    }

    fn api_url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn ticket(&self, force: bool) -> RResult<Option<Ticket>> {
        let Auth::Ticket {
            user,
            password,
            state,
        } = &self.auth
        else {
            return Ok(None);
        };
        let mut st = state.lock().await;
        if let Some(t) = st.as_ref() {
            if !force && t.at.elapsed() < TICKET_RENEW {
                return Ok(Some(t.clone()));
            }
        }
        let resp = self
            .http
            .post(self.api_url("/access/ticket"))
            .form(&[("username", user.as_str()), ("password", password.as_str())])
            .send()
            .await
            .map_err(|e| self.transport_error(e, "POST /access/ticket"))?;
        let data = self.envelope(resp, "POST /access/ticket").await?["data"].take();
        let ticket = data["ticket"].as_str().unwrap_or_default().to_string();
        let csrf = data["CSRFPreventionToken"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if data.get("NeedTFA").and_then(|v| v.as_i64()) == Some(1) || ticket.contains("!tfa!") {
            return Err(RalfError::auth(format!(
                "proxmox: user `{user}` has two-factor authentication enabled; use an API token instead"
            )));
        }
        if ticket.is_empty() || csrf.is_empty() {
            return Err(RalfError::internal(
                "proxmox: login answer lacks ticket or CSRFPreventionToken",
            ));
        }
        crate::redact::register(&ticket);
        crate::redact::register(&csrf);
        let t = Ticket {
            ticket,
            csrf,
            at: Instant::now(),
        };
        *st = Some(t.clone());
        Ok(Some(t))
    }

    pub async fn get(&self, path: &str, params: &[(&str, String)]) -> RResult<Value> {
        self.call(Method::GET, path, params).await
    }

    /// One API call; returns the envelope's `data`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
    ) -> RResult<Value> {
        let mut body = self.request(method, path, params).await?;
        Ok(body["data"].take())
    }

    /// One API call; returns the whole envelope (`data`, and `total` where the server counts).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
    ) -> RResult<Value> {
        match self.call_once(method.clone(), path, params, false).await {
            // A ticket can expire or be invalidated (server restart): log in again once.
            Err(e)
                if e.kind == ErrorKind::Auth
                    && e.details.get("status").and_then(|s| s.as_u64()) == Some(401)
                    && matches!(self.auth, Auth::Ticket { .. }) =>
            {
                self.call_once(method, path, params, true).await
            }
            r => r,
        }
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
        relogin: bool,
    ) -> RResult<Value> {
        let what = format!("{method} {path}");
        let mut rb = self.http.request(method.clone(), self.api_url(path));
        rb = if method == Method::GET || method == Method::DELETE {
            rb.query(params)
        } else {
            rb.form(params)
        };
        match &self.auth {
            Auth::Token(h) => rb = rb.header("Authorization", h.as_str()),
            Auth::Ticket { .. } => {
                let t = self.ticket(relogin).await?.expect("ticket auth");
                rb = rb.header("Cookie", format!("PVEAuthCookie={}", t.ticket));
                if method != Method::GET {
                    rb = rb.header("CSRFPreventionToken", t.csrf);
                }
            }
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| self.transport_error(e, &what))?;
        self.envelope(resp, &what).await
    }

    fn transport_error(&self, e: reqwest::Error, what: &str) -> RalfError {
        let text = chain_text(&e);
        let url = &self.url;
        if e.is_timeout() {
            return RalfError::timeout(format!("proxmox: {what} on {url} timed out ({text})"));
        }
        let lower = text.to_lowercase();
        if lower.contains("certificate")
            || lower.contains("fingerprint")
            || lower.contains("invalid peer")
        {
            return RalfError::auth(format!("proxmox: TLS handshake with {url} failed: {text}"))
                .with("tls", true);
        }
        RalfError::unavailable(format!("proxmox: cannot reach {url} ({what}): {text}"))
            .with("url", url)
    }

    /// Decode a response: the envelope on 2xx, a typed error otherwise. Proxmox servers before
    /// libpve-http-server-perl 5.2.0 put the error text only in the HTTP reason phrase, which
    /// hyper keeps in the response extensions when it differs from the canonical one.
    async fn envelope(&self, resp: reqwest::Response, what: &str) -> RResult<Value> {
        let status = resp.status();
        let reason = resp
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(e, what))?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return match body.get("data") {
                Some(_) => Ok(body),
                None => Err(RalfError::internal(format!(
                    "proxmox: {what}: answer is not a {{\"data\": ...}} envelope: {}",
                    String::from_utf8_lossy(&bytes)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ))),
            };
        }
        Err(http_error(status.as_u16(), &body, reason.as_deref(), what))
    }

    // ---- cluster, nodes, guests ----

    pub async fn nodes(&self) -> RResult<Vec<Value>> {
        Ok(as_array(self.get("/nodes", &[]).await?))
    }

    /// Guests from `/cluster/resources?type=vm`.
    pub async fn guests(&self) -> RResult<Vec<GuestRef>> {
        let v = self
            .get("/cluster/resources", &[("type", "vm".into())])
            .await?;
        let all: Vec<GuestRef> = as_array(v).iter().filter_map(guest_ref).collect();
        *self.guests_seen.lock() = Some((Instant::now(), Arc::new(all.clone())));
        Ok(all)
    }

    /// Find a guest's node and kind. A listing of the cluster younger than [`GUESTS_FRESH`]
    /// answers (a deploy looks its guests up several times each; listing 1,000 guests per call
    /// made the lookups quadratic); a vmid it does not hold is looked for in a new listing, read
    /// once for all the callers waiting at that moment.
    pub async fn find_guest(&self, vmid: u32) -> RResult<GuestRef> {
        let asked = Instant::now();
        let seen = |since: Instant| -> Option<Arc<Vec<GuestRef>>> {
            let s = self.guests_seen.lock();
            let (at, all) = s.as_ref()?;
            (*at >= since).then(|| all.clone())
        };
        let find = |all: &[GuestRef]| all.iter().find(|g| g.vmid == vmid).cloned();
        if let Some(g) =
            seen(asked.checked_sub(GUESTS_FRESH).unwrap_or(asked)).and_then(|all| find(&all))
        {
            return Ok(g);
        }
        let _one = self.guests_listing.lock().await;
        // A listing read while this call waited answers it, found or not.
        let all = match seen(asked) {
            Some(all) => all,
            None => Arc::new(self.guests().await?),
        };
        find(&all).ok_or_else(|| {
            RalfError::not_found(format!(
                "proxmox: no guest with vmid {vmid} in the cluster (as seen by this token/user)"
            ))
            .with("vmid", vmid)
        })
    }

    fn guest_path(g: &GuestRef, rest: &str) -> String {
        format!("/nodes/{}/{}/{}{}", g.node, g.kind.as_str(), g.vmid, rest)
    }

    /// Run a guest call, naming the guest in errors.
    async fn guest_call(
        &self,
        g: &GuestRef,
        method: Method,
        rest: &str,
        params: &[(&str, String)],
    ) -> RResult<Value> {
        self.call(method, &Self::guest_path(g, rest), params)
            .await
            .map_err(|e| guest_error(e, g))
    }

    pub async fn status(&self, g: &GuestRef) -> RResult<Value> {
        self.guest_call(g, Method::GET, "/status/current", &[])
            .await
    }

    pub async fn config(&self, g: &GuestRef) -> RResult<Value> {
        self.guest_call(g, Method::GET, "/config", &[]).await
    }

    /// `PUT .../config` (synchronous for both kinds).
    pub async fn set_config(&self, g: &GuestRef, params: &[(&str, String)]) -> RResult<()> {
        self.guest_call(g, Method::PUT, "/config", params).await?;
        Ok(())
    }

    /// `POST .../status/{action}` -> UPID.
    pub async fn power(
        &self,
        g: &GuestRef,
        action: &str,
        params: &[(&str, String)],
    ) -> RResult<String> {
        let v = self
            .guest_call(g, Method::POST, &format!("/status/{action}"), params)
            .await?;
        upid_of(v)
    }

    pub async fn snapshots(&self, g: &GuestRef) -> RResult<Vec<Value>> {
        Ok(as_array(
            self.guest_call(g, Method::GET, "/snapshot", &[]).await?,
        ))
    }

    pub async fn snapshot(
        &self,
        g: &GuestRef,
        name: &str,
        description: Option<&str>,
    ) -> RResult<String> {
        check_snapshot_name(name, Some(g.kind)).map_err(RalfError::invalid)?;
        let mut p = vec![("snapname", name.to_string())];
        if let Some(d) = description {
            p.push(("description", d.to_string()));
        }
        upid_of(self.guest_call(g, Method::POST, "/snapshot", &p).await?)
    }

    /// `POST .../snapshot/{name}/rollback`; `start=1` only when `start` (the parameter exists since
    /// PVE 7.3, and older nodes reject any unknown parameter). On a node without it, the answer is
    /// an `invalid` error saying so (details `unsupported: "rollback_start"`), and nothing was done.
    pub async fn rollback(&self, g: &GuestRef, name: &str, start: bool) -> RResult<String> {
        check_snapshot_name(name, Some(g.kind)).map_err(RalfError::invalid)?;
        let mut p = Vec::new();
        if start {
            p.push(("start", "1".to_string()));
        }
        let path = format!("/snapshot/{name}/rollback");
        match self.guest_call(g, Method::POST, &path, &p).await {
            Ok(v) => upid_of(v),
            Err(e)
                if start
                    && e.kind == ErrorKind::Invalid
                    && e.details["errors"].get("start").is_some() =>
            {
                let version = self.version["version"].as_str().unwrap_or("?");
                Err(RalfError::invalid(format!(
                    "proxmox: {} {} on {}: this server (Proxmox VE {version}) does not support starting the guest after a rollback (the rollback `start` parameter came with PVE 7.3); nothing was rolled back. Roll back without `start` and start the guest afterwards.",
                    g.kind.prefix(), g.vmid, g.node
                ))
                .with("unsupported", "rollback_start")
                .with("server_version", version)
                .with("vmid", g.vmid)
                .with("status", 400))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the guest's storage can do `feature` (`snapshot`, `clone`, `copy`):
    /// `GET .../feature?feature=...` (`hasFeature`).
    pub async fn has_feature(&self, g: &GuestRef, feature: &str) -> RResult<bool> {
        let v = self
            .guest_call(
                g,
                Method::GET,
                "/feature",
                &[("feature", feature.to_string())],
            )
            .await?;
        Ok(match &v["hasFeature"] {
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_i64().unwrap_or(0) != 0,
            Value::String(s) => !s.is_empty() && s != "0",
            _ => false,
        })
    }

    /// Poll the guest's status until it is `want` (`running` / `stopped`) or `deadline` passes
    /// (`timeout`). For HA-managed guests, whose start/stop task only asks the HA stack.
    pub async fn wait_guest_status(
        &self,
        g: &GuestRef,
        want: &str,
        deadline: Duration,
    ) -> RResult<Value> {
        let start = Instant::now();
        loop {
            let s = self.status(g).await?;
            if s["status"].as_str() == Some(want) {
                return Ok(s);
            }
            if start.elapsed() >= deadline {
                let now = s["status"].as_str().unwrap_or("unknown").to_string();
                return Err(RalfError::timeout(format!(
                    "proxmox: {} {} is HA-managed: the HA stack was asked to make it {want}, but it is still {now} after {} (see `ha-manager status` on the node)",
                    g.kind.prefix(),
                    g.vmid,
                    crate::text::human_duration(deadline)
                ))
                .with("vmid", g.vmid)
                .with("status", now));
            }
            let left = deadline.saturating_sub(start.elapsed());
            tokio::time::sleep(self.poll.min(Duration::from_millis(200)).min(left)).await;
        }
    }

    pub async fn delete_snapshot(&self, g: &GuestRef, name: &str) -> RResult<String> {
        check_snapshot_name(name, Some(g.kind)).map_err(RalfError::invalid)?;
        upid_of(
            self.guest_call(g, Method::DELETE, &format!("/snapshot/{name}"), &[])
                .await?,
        )
    }
}

fn enc(s: &str) -> String {
    s.replace(':', "%3A")
        .replace('@', "%40")
        .replace('!', "%21")
}

fn as_array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        _ => Vec::new(),
    }
}

fn upid_of(v: Value) -> RResult<String> {
    match v.as_str() {
        Some(s) if Upid::parse(s).is_ok() => Ok(s.to_string()),
        _ => Err(RalfError::internal(format!(
            "proxmox: expected a task id (UPID), got {v}"
        ))),
    }
}

fn num(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn guest_ref(v: &Value) -> Option<GuestRef> {
    let kind = Kind::parse(v["type"].as_str()?)?;
    let vmid = num(&v["vmid"])? as u32;
    Some(GuestRef {
        vmid,
        node: v["node"].as_str()?.to_string(),
        kind,
        name: v["name"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| match kind {
                Kind::Lxc => format!("CT{vmid}"),
                Kind::Qemu => format!("VM {vmid}"),
            }),
        status: v["status"].as_str().unwrap_or("unknown").to_string(),
        raw: v.clone(),
    })
}

/// `(Vec<(&str, String)>)` from a JSON object of scalar values (config updates).
pub fn form_params(map: &serde_json::Map<String, Value>) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
                other => other.to_string(),
            };
            (k.clone(), s)
        })
        .collect()
}

/// Learn the SHA-256 fingerprint a server presents, without trusting it (for error hints).
pub async fn probe_fingerprint(url: &str) -> Option<String> {
    let v = Arc::new(tls::PinVerifier::new(None));
    let seen = v.seen.clone();
    let cfg = tls::client_config(v).ok()?;
    let http = crate::clients::http_builder()
        .use_preconfigured_tls(cfg)
        .timeout(Duration::from_secs(10))
        .build()
        .ok()?;
    let _ = http.get(format!("{url}/api2/json/version")).send().await;
    let r = seen.lock().clone();
    r
}

//! Proxmox VE stand-in: an HTTPS server (self-signed certificate generated at start) that speaks the
//! subset of the PVE API in `specs/PROXMOX.md`: token and ticket auth (CSRF on writes), the `{"data": ...}`
//! envelope, 400 with per-parameter `errors`, 500s whose text is in the reason phrase (and, on 9.2,
//! in the body's `message`), 501 for unknown paths, nodes, LXC and QEMU guests with status, config
//! and snapshots (incl. the `current` pseudo-entry), locks while an operation runs, and UPID tasks
//! that take time, keep a log and end `OK` or with an error.
//!
//! It behaves like one Proxmox VE release, chosen by `SpawnOpts::version` (`ralf-sh lab
//! --pve-version 7.2|8.2|9.2`); what differs is listed in [`profiles`]. In every release:
//! - CT 2030 (`ha-proxy`) is HA-managed: start/stop answer with a `hastart`/`hastop` task that ends
//!   before the guest changes state (it does a few task durations later);
//! - CT 2031 (`file-share`) has its root disk on directory storage: a snapshot task fails with
//!   "snapshot feature is not available".
//!
//! Files: `state` (guests, tasks, seeding), `http` (errors, forms, auth headers, parameter checks),
//! `cluster` (top-level routes), `guests` (status, config, power, HA), `snapshots`, `tasks`,
//! `control` (below), `profiles` (the releases).
//!
//! Control API (no auth, outside `/api2`), for failure injection from tests:
//! - `GET  /_lab/state`                        whole state as JSON
//! - `GET  /_lab/guests/{vmid}`                one guest (incl. `lab_marker`)
//! - `POST /_lab/guests/{vmid}/marker`         `{"value": "..."}`: change the guest's "disk content" marker
//! - `POST /_lab/guests/{vmid}/config`         `{"key": value, ...}`: change config behind the API's back
//!   (`lab_hang_on_shutdown: 1` makes a shutdown without `forceStop` fail with `container did not stop`;
//!   `rootfs: "local:N/vm-N-disk-0.raw"` puts the disk on storage without snapshots)
//! - `POST /_lab/guests/{vmid}/fail_next`      `{"message": "..."}`: the guest's next task fails with it
//! - `POST /_lab/guests/{vmid}/lock`           `{"lock": "backup"}`; `DELETE` removes it
//! - `POST /_lab/guests/{vmid}/slow`           `{"ms": 5000}`: extra time for this guest's tasks
//! - `POST /_lab/guests/{vmid}/running`        `{"running": true}`: change the state behind the API's back
//! - `POST /_lab/guests/{vmid}/ha`             `{"managed": true}`: put the guest under HA (or take it out)
//! - `POST /_lab/guests/{vmid}/flock_timeout`  `{"times": N}`: the next N operations that take the
//!   guest's config flock fail with "can't lock file '...' - got timeout"
//! - `POST /_lab/tasks/duration`               `{"ms": 300}`: base duration of every task

use crate::error::{RResult, RalfError};
pub use crate::lab::profiles::PveVersion;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod cluster;
mod control;
mod guests;
mod http;
pub mod profiles;
mod snapshots;
mod state;
mod tasks;

use cluster::*;
use control::*;
use guests::*;
use http::*;
pub use profiles::Profile;
use snapshots::*;
use state::*;
pub use state::{Guest, Kind, LabState, Snapshot, Task};
use tasks::*;

/// How to start the stand-in.
#[derive(Debug, Clone)]
pub struct SpawnOpts {
    /// Delay of every 401 answer (the real server waits 3 s).
    pub auth_fail_delay: Duration,
    /// Base duration of a task.
    pub task_time: Duration,
    /// Folder with catalog YAML files whose services name a `guest` (default `catalog/projects`).
    pub catalog_dir: Option<PathBuf>,
    /// The Proxmox VE release to behave like (see [`profiles`]).
    pub version: PveVersion,
}

impl Default for SpawnOpts {
    fn default() -> Self {
        SpawnOpts {
            auth_fail_delay: Duration::from_secs(3),
            task_time: Duration::from_millis(300),
            catalog_dir: Some(PathBuf::from("catalog/projects")),
            version: PveVersion::default(),
        }
    }
}

impl SpawnOpts {
    /// Quick settings for tests: short delays, built-in guests only.
    pub fn fast() -> Self {
        SpawnOpts {
            auth_fail_delay: Duration::from_millis(20),
            task_time: Duration::from_millis(150),
            catalog_dir: None,
            version: PveVersion::default(),
        }
    }
}

/// A running stand-in. Dropping it stops the server.
pub struct Handle {
    pub url: String,
    pub node: String,
    pub user: String,
    pub password: String,
    pub token_id: String,
    pub token_secret: String,
    /// SHA-256 of the certificate, `AB:CD:...`.
    pub fingerprint: String,
    /// The node certificate (PEM).
    pub cert_pem: String,
    /// The cluster CA that signed it (PEM), for `ca_file`.
    pub ca_pem: String,
    pub state: Arc<Mutex<LabState>>,
    pub(super) server: axum_server::Handle,
    pub(super) task: tokio::task::JoinHandle<()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.server.shutdown();
        self.task.abort();
    }
}

impl Handle {
    /// The JSON object `ralf-sh lab serve` prints under `"proxmox"`.
    pub fn info(&self) -> Value {
        json!({
            "url": self.url,
            "node": self.node,
            "user": self.user,
            "password": self.password,
            "token_id": self.token_id,
            "token_secret": self.token_secret,
            "fingerprint": self.fingerprint,
        })
    }
}

/// The config section that points at a stand-in described by `info` (the `"proxmox"` object of
/// the lab's JSON line); the token secret is read from the environment variable `token_env`.
pub fn config_section(info: &Value, token_env: &str) -> crate::config::ProxmoxConfig {
    let s = |k: &str| info[k].as_str().map(String::from);
    crate::config::ProxmoxConfig {
        url: s("url").unwrap_or_default(),
        node: s("node"),
        token_id: s("token_id"),
        token_secret_env: Some(token_env.to_string()),
        fingerprint: s("fingerprint"),
        ..Default::default()
    }
}

/// Start the stand-in and add its key to `lab.info`.
pub async fn start(lab: &mut super::Lab) -> RResult<()> {
    let h = spawn(SpawnOpts {
        catalog_dir: Some(lab.setup.catalog()),
        version: lab.setup.pve,
        ..SpawnOpts::default()
    })
    .await?;
    lab.info.insert("proxmox".into(), h.info());
    lab.guards.push(Box::new(h));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Server

pub(super) struct App {
    pub(super) state: Arc<Mutex<LabState>>,
    pub(super) user: String,
    pub(super) password: String,
    pub(super) token_id: String,
    pub(super) token_secret: String,
    pub(super) auth_fail_delay: Duration,
    pub(super) profile: Profile,
}

/// Start the stand-in on 127.0.0.1 (ephemeral port). Must be called within a tokio runtime.
pub async fn spawn(opts: SpawnOpts) -> RResult<Handle> {
    // Like a real node: a cluster CA (`pve-root-ca`) and the node certificate it signs (`pve-ssl`).
    let tls_err = |e: rcgen::Error| RalfError::internal(format!("lab proxmox: certificate: {e}"));
    let ca_key = rcgen::KeyPair::generate().map_err(tls_err)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "Proxmox Virtual Environment (lab)",
    );
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(tls_err)?;
    let leaf_key = rcgen::KeyPair::generate().map_err(tls_err)?;
    let mut leaf_params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(tls_err)?;
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pve.lab");
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .map_err(tls_err)?;
    let cert_der = leaf.der().to_vec();
    let cert_pem = leaf.pem();
    let ca_pem = ca_cert.pem();
    let fingerprint = sha256_fingerprint(&cert_der);
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RalfError::internal(format!("lab proxmox: tls: {e}")))?
        .with_no_client_auth()
        .with_single_cert(vec![rustls::pki_types::CertificateDer::from(cert_der)], key)
        .map_err(|e| RalfError::internal(format!("lab proxmox: tls: {e}")))?;
    let mut server_cfg = server_cfg;
    server_cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(server_cfg));

    let nodes = vec!["pve".to_string(), "pve2".to_string()];
    let mut guests = BTreeMap::new();
    for s in seeds(opts.catalog_dir.as_ref()) {
        let g = new_guest(s, &nodes);
        guests.insert(g.vmid, g);
    }
    let state = Arc::new(Mutex::new(LabState {
        nodes: nodes.clone(),
        guests,
        tasks: Vec::new(),
        tickets: HashMap::new(),
        task_ms: opts.task_time.as_millis() as u64,
        requests: 0,
        next_pid: 0x1000 + (rand::random::<u16>() as u32),
        fingerprint: fingerprint.clone(),
    }));
    let password = format!("lab-{}", rand_hex(20));
    let token_secret = uuid();
    crate::redact::register(&password);
    crate::redact::register(&token_secret);
    let app = Arc::new(App {
        state: state.clone(),
        user: "root@pam".into(),
        password: password.clone(),
        token_id: "root@pam!ralf".into(),
        token_secret: token_secret.clone(),
        auth_fail_delay: opts.auth_fail_delay,
        profile: Profile::new(opts.version),
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| RalfError::io(format!("lab proxmox: bind: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| RalfError::io(format!("lab proxmox: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| RalfError::io(format!("lab proxmox: {e}")))?
        .port();
    let router = axum::Router::new().fallback(handle).with_state(app);
    let server = axum_server::Handle::new();
    let srv = axum_server::from_tcp_rustls(listener, tls).handle(server.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = srv.serve(router.into_make_service()).await {
            tracing::error!("lab proxmox: server stopped: {e}");
        }
    });
    Ok(Handle {
        url: format!("https://127.0.0.1:{port}"),
        node: nodes[0].clone(),
        user: "root@pam".into(),
        password,
        token_id: "root@pam!ralf".into(),
        token_secret,
        fingerprint,
        cert_pem,
        ca_pem,
        state,
        server,
        task,
    })
}

pub(super) async fn handle(
    AxState(app): AxState<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = url_decode(&uri.path().replace('+', "%2B"));
    if let Some(rest) = path.strip_prefix("/_lab/") {
        return control(&app, &method, rest, &body);
    }
    app.state.lock().requests += 1;
    let Some(rest) = path.strip_prefix("/api2/") else {
        return error_response(
            app.profile,
            err(501, format!("Method '{method} {path}' not implemented")),
        );
    };
    let Some(api_path) = rest.strip_prefix("json") else {
        return error_response(app.profile, err(501, "no such uri"));
    };
    let api_path = if api_path.is_empty() { "/" } else { api_path };
    if !api_path.starts_with('/') {
        return error_response(app.profile, err(501, "no such uri"));
    }

    // Parameters: query + body (form or JSON); query values win.
    let mut params: Vec<(String, String)> = Vec::new();
    if !body.is_empty() {
        if method == Method::GET || method == Method::DELETE {
            return error_response(
                app.profile,
                err(501, format!("Unexpected content for method '{method}'")),
            );
        }
        let ctype = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/x-www-form-urlencoded");
        if ctype.starts_with("application/json") {
            match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(m)) => {
                    for (k, v) in m {
                        let s = match v {
                            Value::String(s) => s,
                            Value::Bool(b) => if b { "1" } else { "0" }.into(),
                            other => other.to_string(),
                        };
                        params.push((k, s));
                    }
                }
                _ => return error_response(app.profile, err(400, "malformed JSON body")),
            }
        } else if ctype.starts_with("application/x-www-form-urlencoded") {
            params.extend(parse_form(&String::from_utf8_lossy(&body)));
        } else {
            let mut r = error_response(
                app.profile,
                err(506, format!("unsupported content type '{ctype}'")),
            );
            *r.status_mut() = StatusCode::from_u16(506).unwrap_or(StatusCode::BAD_REQUEST);
            return r;
        }
    }
    if let Some(q) = uri.query() {
        for (k, v) in parse_form(q) {
            params.retain(|(pk, _)| *pk != k);
            params.push((k, v));
        }
    }

    // Exempt paths.
    if api_path == "/access/ticket" {
        if method == Method::GET {
            return json_response(200, json!({"data": null}));
        }
        if method == Method::POST {
            if token_header(&headers).is_some() {
                return error_response(app.profile, err(
                    403,
                    "Permission check failed (URI /access/ticket not available with API token, need proper ticket.)",
                ));
            }
            return login(&app, &params).await;
        }
    }

    // Authenticate: cookie/ticket first, then token.
    let caller = if let Some(ticket) = cookie_ticket(&headers) {
        let csrf = app.state.lock().tickets.get(&ticket).cloned();
        let Some(csrf) = csrf else {
            return unauthorized(&app).await;
        };
        if method != Method::GET {
            let sent = headers
                .get("csrfpreventiontoken")
                .and_then(|v| v.to_str().ok());
            if sent != Some(csrf.as_str()) {
                return unauthorized(&app).await;
            }
        }
        Caller {
            user: app.user.clone(),
            tokenid: None,
            ticket: true,
        }
    } else if let Some((id, secret)) = token_header(&headers) {
        if id != app.token_id || secret != app.token_secret {
            return unauthorized(&app).await;
        }
        Caller {
            user: app.user.clone(),
            tokenid: Some(id),
            ticket: false,
        }
    } else {
        return unauthorized(&app).await;
    };
    let _ = caller.ticket;

    match api_route(&app, &method, api_path, &params, &caller) {
        Ok(Value::Object(m)) if m.contains_key("__total") => {
            let total = m.get("__total").cloned().unwrap_or(Value::Null);
            let data = m.get("data").cloned().unwrap_or(Value::Null);
            json_response(200, json!({"data": data, "total": total}))
        }
        Ok(v) => json_response(200, json!({ "data": v })),
        Err(e) => error_response(app.profile, e),
    }
}

pub(super) async fn login(app: &App, params: &[(String, String)]) -> Response {
    let get = |k: &str| {
        params
            .iter()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.clone())
    };
    let mut user = get("username").unwrap_or_default();
    if let Some(realm) = get("realm") {
        if !user.contains('@') {
            user = format!("{user}@{realm}");
        }
    }
    let pw = get("password").unwrap_or_default();
    if user != app.user || pw != app.password {
        tokio::time::sleep(app.auth_fail_delay).await;
        return error_response(app.profile, err(401, "authentication failure"));
    }
    let t = now();
    let ticket = format!(
        "PVE:{user}:{t:08X}::{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, rand_hex(64))
    );
    let csrf = format!(
        "{t:08X}:{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            rand_hex(32)
        )
    );
    app.state
        .lock()
        .tickets
        .insert(ticket.clone(), csrf.clone());
    json_response(
        200,
        json!({"data": {"username": user, "ticket": ticket, "CSRFPreventionToken": csrf,
            "cap": {"vms": {"VM.PowerMgmt": 1, "VM.Snapshot": 1, "VM.Audit": 1}}}}),
    )
}

/// The certificate's SHA-256 fingerprint as PVE shows it (`pvenode cert info`): upper-case hex
/// pairs joined by colons.
fn sha256_fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(der);
    let pairs: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    pairs.join(":")
}

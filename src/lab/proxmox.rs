//! Proxmox VE stand-in: an HTTPS server (self-signed certificate generated at start) that speaks the
//! subset of the PVE API in `specs/PROXMOX.md`: token and ticket auth (CSRF on writes), the `{"data": ...}`
//! envelope, 400 with per-parameter `errors`, 500 with `message`, 501 for unknown paths, nodes, LXC and
//! QEMU guests with status, config and snapshots (incl. the `current` pseudo-entry), locks while an
//! operation runs, and UPID tasks that take time, keep a log and end `OK` or with an error.
//!
//! Control API (no auth, outside `/api2`), for failure injection from tests:
//! - `GET  /_lab/state`                        whole state as JSON
//! - `GET  /_lab/guests/{vmid}`                one guest (incl. `lab_marker`)
//! - `POST /_lab/guests/{vmid}/marker`         `{"value": "..."}`: change the guest's "disk content" marker
//! - `POST /_lab/guests/{vmid}/config`         `{"key": value, ...}`: change config behind the API's back
//!   (`lab_hang_on_shutdown: 1` makes a shutdown without `forceStop` fail with `container did not stop`)
//! - `POST /_lab/guests/{vmid}/fail_next`      `{"message": "..."}`: the guest's next task fails with it
//! - `POST /_lab/guests/{vmid}/lock`           `{"lock": "backup"}`; `DELETE` removes it
//! - `POST /_lab/guests/{vmid}/slow`           `{"ms": 5000}`: extra time for this guest's tasks
//! - `POST /_lab/tasks/duration`               `{"ms": 300}`: base duration of every task

use crate::engine::error::{RResult, RalfError};
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

/// How to start the stand-in.
#[derive(Debug, Clone)]
pub struct SpawnOpts {
    /// Delay of every 401 answer (the real server waits 3 s).
    pub auth_fail_delay: Duration,
    /// Base duration of a task.
    pub task_time: Duration,
    /// Folder with catalog YAML files whose services name a `guest` (default `catalog/projects`).
    pub catalog_dir: Option<PathBuf>,
}

impl Default for SpawnOpts {
    fn default() -> Self {
        SpawnOpts {
            auth_fail_delay: Duration::from_secs(3),
            task_time: Duration::from_millis(300),
            catalog_dir: Some(PathBuf::from("catalog/projects")),
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
    server: axum_server::Handle,
    task: tokio::task::JoinHandle<()>,
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
        ..SpawnOpts::default()
    })
    .await?;
    lab.info.insert("proxmox".into(), h.info());
    lab.guards.push(Box::new(h));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// State

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Lxc,
    Qemu,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Lxc => "lxc",
            Kind::Qemu => "qemu",
        }
    }
    fn prefix(self) -> &'static str {
        match self {
            Kind::Lxc => "CT",
            Kind::Qemu => "VM",
        }
    }
    fn task(self, what: &str) -> String {
        match self {
            Kind::Lxc => format!("vz{what}"),
            Kind::Qemu => format!("qm{what}"),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Snapshot {
    pub name: String,
    pub description: String,
    pub snaptime: i64,
    pub parent: Option<String>,
    pub config: BTreeMap<String, Value>,
    pub lab_marker: String,
    pub vmstate: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Guest {
    pub vmid: u32,
    pub kind: Kind,
    pub node: String,
    pub running: bool,
    pub started_at: i64,
    /// Applied config (hostname/name, memory, cores, description, ...).
    pub config: BTreeMap<String, Value>,
    pub lock: Option<String>,
    /// Current parent snapshot.
    pub parent: Option<String>,
    pub snapshots: Vec<Snapshot>,
    /// Stands for the guest's disk content: restored by a rollback.
    pub lab_marker: String,
    pub fail_next: Option<String>,
    pub slow_ms: u64,
}

impl Guest {
    fn name(&self) -> String {
        let key = if self.kind == Kind::Lxc {
            "hostname"
        } else {
            "name"
        };
        self.config
            .get(key)
            .and_then(|v| v.as_str())
            .map(String::from)
            .unwrap_or_else(|| match self.kind {
                Kind::Lxc => format!("CT{}", self.vmid),
                Kind::Qemu => format!("VM {}", self.vmid),
            })
    }
    fn maxmem(&self) -> i64 {
        self.config.get("memory").and_then(num).unwrap_or(512) * 1024 * 1024
    }
    fn digest(&self) -> String {
        use sha2::Digest;
        let text =
            serde_json::to_string(&(&self.config, &self.parent, &self.lock)).unwrap_or_default();
        hex::encode(sha2::Sha256::digest(text.as_bytes()))[..40].to_string()
    }
    fn uptime(&self) -> i64 {
        if self.running {
            (now() - self.started_at).max(1)
        } else {
            0
        }
    }
    fn locked_msg(&self) -> Option<String> {
        self.lock
            .as_ref()
            .map(|l| format!("{} is locked ({l})", self.kind.prefix()))
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Task {
    pub upid: String,
    pub node: String,
    pub pid: u32,
    pub pstart: u64,
    pub starttime: i64,
    pub kind: String,
    pub id: String,
    pub user: String,
    pub tokenid: Option<String>,
    pub log: Vec<String>,
    pub exitstatus: Option<String>,
    pub endtime: Option<i64>,
}

#[derive(Debug, serde::Serialize)]
pub struct LabState {
    pub nodes: Vec<String>,
    pub guests: BTreeMap<u32, Guest>,
    pub tasks: Vec<Task>,
    #[serde(skip)]
    tickets: HashMap<String, String>,
    pub task_ms: u64,
    /// Number of `/api2` requests served (lets tests prove that no request was sent).
    pub requests: u64,
    next_pid: u32,
    #[serde(skip)]
    fingerprint: String,
}

impl LabState {
    /// Invalidate every login ticket (as a restarted or re-keyed server would).
    pub fn revoke_tickets(&mut self) {
        self.tickets.clear();
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn num(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn rand_hex(n: usize) -> String {
    use rand::Rng;
    let mut r = rand::thread_rng();
    (0..n)
        .map(|_| format!("{:x}", r.gen_range(0..16u8)))
        .collect()
}

fn uuid() -> String {
    let h = rand_hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

// ---------------------------------------------------------------------------------------------
// Seeding

struct Seed {
    vmid: u32,
    name: String,
    kind: Kind,
    node: Option<String>,
    running: bool,
}

fn builtin_seeds() -> Vec<Seed> {
    let s = |vmid, name: &str, kind, node: Option<&str>, running| Seed {
        vmid,
        name: name.to_string(),
        kind,
        node: node.map(String::from),
        running,
    };
    vec![
        s(2010, "postgresql", Kind::Lxc, Some("pve"), true),
        s(2012, "gitea", Kind::Lxc, Some("pve"), true),
        s(2013, "vaultwarden", Kind::Lxc, Some("pve"), false),
        s(10015, "semaphore", Kind::Lxc, Some("pve"), true),
        s(4012, "n8n", Kind::Lxc, Some("pve2"), false),
        s(4013, "exo", Kind::Qemu, Some("pve2"), true),
        s(9000, "lab-vm", Kind::Qemu, Some("pve2"), false),
    ]
}

/// Walk any YAML shape and collect `guest:` entries (an integer vmid, or a map with `vmid` and `node`).
fn collect_guests(v: &serde_yaml::Value, key_name: Option<&str>, out: &mut Vec<Seed>) {
    use serde_yaml::Value as Y;
    match v {
        Y::Mapping(m) => {
            if let Some(g) = m.get(Y::from("guest")) {
                let name = m
                    .get(Y::from("name"))
                    .and_then(|n| n.as_str())
                    .or(key_name)
                    .unwrap_or("guest")
                    .to_string();
                let (vmid, node, kind) = match g {
                    Y::Number(n) => (n.as_u64(), None, None),
                    Y::String(s) => (s.parse().ok(), None, None),
                    Y::Mapping(gm) => (
                        gm.get(Y::from("vmid"))
                            .and_then(|x| x.as_u64().or_else(|| x.as_str()?.parse().ok())),
                        gm.get(Y::from("node"))
                            .and_then(|x| x.as_str())
                            .map(String::from),
                        gm.get(Y::from("type"))
                            .or_else(|| gm.get(Y::from("kind")))
                            .and_then(|x| x.as_str())
                            .map(|k| {
                                if k == "qemu" || k == "vm" {
                                    Kind::Qemu
                                } else {
                                    Kind::Lxc
                                }
                            }),
                    ),
                    _ => (None, None, None),
                };
                if let Some(vmid) = vmid.filter(|v| (100..1_000_000_000).contains(v)) {
                    let vmid = vmid as u32;
                    out.push(Seed {
                        vmid,
                        name: sanitize_hostname(&name),
                        kind: kind.unwrap_or(Kind::Lxc),
                        node,
                        running: vmid % 5 != 3,
                    });
                }
            }
            for (k, val) in m {
                collect_guests(val, k.as_str(), out);
            }
        }
        Y::Sequence(s) => {
            for x in s {
                collect_guests(x, None, out);
            }
        }
        _ => {}
    }
}

fn sanitize_hostname(s: &str) -> String {
    let h: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let h = h.trim_matches('-').to_string();
    if h.is_empty() {
        "guest".into()
    } else {
        h
    }
}

fn seeds(catalog_dir: Option<&PathBuf>) -> Vec<Seed> {
    let mut out = Vec::new();
    if let Some(dir) = catalog_dir {
        if let Ok(rd) = std::fs::read_dir(dir) {
            let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for f in files {
                let is_yaml =
                    matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
                if !is_yaml {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&f) else {
                    continue;
                };
                for doc in serde_yaml::Deserializer::from_str(&text) {
                    match <serde_yaml::Value as serde::Deserialize>::deserialize(doc) {
                        Ok(v) => collect_guests(&v, None, &mut out),
                        Err(_) => break,
                    }
                }
            }
        }
    }
    for b in builtin_seeds() {
        if !out.iter().any(|s| s.vmid == b.vmid) {
            out.push(b);
        }
    }
    out
}

fn new_guest(s: Seed, nodes: &[String]) -> Guest {
    let node = s
        .node
        .filter(|n| nodes.contains(n))
        .unwrap_or_else(|| nodes[0].clone());
    let mut config = BTreeMap::new();
    match s.kind {
        Kind::Lxc => {
            config.insert("hostname".into(), json!(s.name));
            config.insert("arch".into(), json!("amd64"));
            config.insert("ostype".into(), json!("debian"));
            config.insert("memory".into(), json!(1024));
            config.insert("swap".into(), json!(512));
            config.insert("cores".into(), json!(2));
            config.insert(
                "rootfs".into(),
                json!(format!("local-lvm:vm-{}-disk-0,size=8G", s.vmid)),
            );
            config.insert(
                "net0".into(),
                json!("name=eth0,bridge=vmbr0,ip=dhcp,type=veth"),
            );
            config.insert("unprivileged".into(), json!(1));
        }
        Kind::Qemu => {
            config.insert("name".into(), json!(s.name));
            config.insert("memory".into(), json!(4096));
            config.insert("cores".into(), json!(4));
            config.insert("sockets".into(), json!(1));
            config.insert("ostype".into(), json!("l26"));
            config.insert(
                "scsi0".into(),
                json!(format!("local-lvm:vm-{}-disk-0,size=32G", s.vmid)),
            );
            config.insert(
                "net0".into(),
                json!("virtio=BC:24:11:00:00:01,bridge=vmbr0"),
            );
            config.insert("agent".into(), json!("1"));
        }
    }
    Guest {
        vmid: s.vmid,
        kind: s.kind,
        node,
        running: s.running,
        started_at: now() - 3600,
        config,
        lock: None,
        parent: None,
        snapshots: Vec::new(),
        lab_marker: "initial".into(),
        fail_next: None,
        slow_ms: 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Server

struct App {
    state: Arc<Mutex<LabState>>,
    user: String,
    password: String,
    token_id: String,
    token_secret: String,
    auth_fail_delay: Duration,
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
    let fingerprint = crate::clients::proxmox::tls::fingerprint_of(&cert_der);
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
    crate::secrets::register(&password);
    crate::secrets::register(&token_secret);
    let app = Arc::new(App {
        state: state.clone(),
        user: "root@pam".into(),
        password: password.clone(),
        token_id: "root@pam!ralf".into(),
        token_secret: token_secret.clone(),
        auth_fail_delay: opts.auth_fail_delay,
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

/// An API error: status, message, optional per-parameter errors.
struct ApiErr {
    status: u16,
    message: String,
    errors: Option<Map<String, Value>>,
}

fn err(status: u16, msg: impl Into<String>) -> ApiErr {
    ApiErr {
        status,
        message: msg.into(),
        errors: None,
    }
}

fn param_err(name: &str, msg: impl Into<String>) -> ApiErr {
    let mut m = Map::new();
    m.insert(name.into(), Value::String(format!("{}\n", msg.into())));
    ApiErr {
        status: 400,
        message: "Parameter verification failed.".into(),
        errors: Some(m),
    }
}

type ApiResult = Result<Value, ApiErr>;

fn base_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert("server", HeaderValue::from_static("pve-api-daemon/3.0"));
    h.insert("cache-control", HeaderValue::from_static("max-age=0"));
    h.insert("pragma", HeaderValue::from_static("no-cache"));
}

fn json_response(status: u16, body: Value) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body.to_string(),
    )
        .into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    base_headers(&mut r);
    r
}

fn error_response(e: ApiErr) -> Response {
    let mut body = json!({"data": null, "message": format!("{}\n", e.message.trim_end())});
    if let Some(errs) = e.errors {
        body["errors"] = Value::Object(errs);
    }
    json_response(e.status, body)
}

async fn unauthorized(app: &App) -> Response {
    tokio::time::sleep(app.auth_fail_delay).await;
    let mut r = StatusCode::UNAUTHORIZED.into_response();
    base_headers(&mut r);
    r
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (url_decode(k), url_decode(v)),
            None => (url_decode(p), String::new()),
        })
        .collect()
}

/// Who made the request.
struct Caller {
    user: String,
    tokenid: Option<String>,
    ticket: bool,
}

fn cookie_ticket(headers: &HeaderMap) -> Option<String> {
    for c in headers.get_all("cookie") {
        let Ok(s) = c.to_str() else { continue };
        for part in s.split(';') {
            if let Some(v) = part.trim().strip_prefix("PVEAuthCookie=") {
                return Some(url_decode(v));
            }
        }
    }
    let auth = headers.get("authorization")?.to_str().ok()?;
    auth.strip_prefix("PVEAuthCookie=").map(url_decode)
}

fn token_header(headers: &HeaderMap) -> Option<(String, String)> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let rest = auth.strip_prefix("PVEAPIToken")?;
    let rest = rest.strip_prefix('=').or_else(|| rest.strip_prefix(' '))?;
    let rest = rest.split(';').next().unwrap_or_default();
    let rest = url_decode(rest);
    let (id, secret) = rest.rsplit_once('=')?;
    Some((id.to_string(), secret.to_string()))
}

async fn handle(
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
        return error_response(err(
            501,
            format!("Method '{method} {path}' not implemented"),
        ));
    };
    let Some(api_path) = rest.strip_prefix("json") else {
        return error_response(err(501, "no such uri"));
    };
    let api_path = if api_path.is_empty() { "/" } else { api_path };
    if !api_path.starts_with('/') {
        return error_response(err(501, "no such uri"));
    }

    // Parameters: query + body (form or JSON); query values win.
    let mut params: Vec<(String, String)> = Vec::new();
    if !body.is_empty() {
        if method == Method::GET || method == Method::DELETE {
            return error_response(err(
                501,
                format!("Unexpected content for method '{method}'"),
            ));
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
                _ => return error_response(err(400, "malformed JSON body")),
            }
        } else if ctype.starts_with("application/x-www-form-urlencoded") {
            params.extend(parse_form(&String::from_utf8_lossy(&body)));
        } else {
            let mut r = error_response(err(506, format!("unsupported content type '{ctype}'")));
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
                return error_response(err(
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

    match route(&app, &method, api_path, &params, &caller) {
        Ok(Value::Object(m)) if m.contains_key("__total") => {
            let total = m.get("__total").cloned().unwrap_or(Value::Null);
            let data = m.get("data").cloned().unwrap_or(Value::Null);
            json_response(200, json!({"data": data, "total": total}))
        }
        Ok(v) => json_response(200, json!({ "data": v })),
        Err(e) => error_response(e),
    }
}

async fn login(app: &App, params: &[(String, String)]) -> Response {
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
        return error_response(err(401, "authentication failure"));
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

fn not_impl(method: &Method, path: &str) -> ApiErr {
    err(501, format!("Method '{method} {path}' not implemented"))
}

/// Check that only `allowed` parameters were sent (schemas are additionalProperties: 0).
fn check_params(params: &[(String, String)], allowed: &[&str]) -> Result<(), ApiErr> {
    let mut errors = Map::new();
    for (k, _) in params {
        if !allowed.contains(&k.as_str()) {
            errors.insert(
                k.clone(),
                Value::String(
                    "property is not defined in schema and the schema does not allow additional properties\n".into(),
                ),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiErr {
            status: 400,
            message: "Parameter verification failed.".into(),
            errors: Some(errors),
        })
    }
}

fn bool_param(params: &[(String, String)], name: &str) -> Result<bool, ApiErr> {
    match params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
    {
        None => Ok(false),
        Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(other) => Err(param_err(
            name,
            format!("type check ('boolean') failed - got '{other}'"),
        )),
    }
}

fn int_param(params: &[(String, String)], name: &str) -> Result<Option<i64>, ApiErr> {
    match params.iter().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| param_err(name, format!("type check ('integer') failed - got '{v}'"))),
    }
}

fn str_param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn valid_configid(s: &str) -> bool {
    let mut c = s.chars();
    s.len() >= 2
        && s.len() <= 40
        && c.next().is_some_and(|c| c.is_ascii_alphabetic())
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn route(
    app: &App,
    method: &Method,
    path: &str,
    params: &[(String, String)],
    caller: &Caller,
) -> ApiResult {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let mut st = app.state.lock();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["version"]) => Ok(json!({"version": "9.2.11", "release": "9.2", "repoid": "14a22df35955"})),
        ("GET", ["nodes"]) => Ok(Value::Array(
            st.nodes
                .iter()
                .map(|n| {
                    json!({"node": n, "status": "online", "cpu": 0.03, "maxcpu": 8, "mem": 4_294_967_296u64,
                    "maxmem": 34_359_738_368u64, "uptime": 86400, "level": "", "ssl_fingerprint": st.fingerprint,
                    "id": format!("node/{n}"), "type": "node"})
                })
                .collect(),
        )),
        ("GET", ["nodes", node, "status"]) => {
            check_node(&st, node)?;
            Ok(json!({"uptime": 86400, "loadavg": ["0.10", "0.08", "0.05"], "cpu": 0.03, "wait": 0.0,
                "memory": {"total": 34_359_738_368u64, "used": 4_294_967_296u64, "free": 30_064_771_072u64},
                "pveversion": "pve-manager/9.2.11/14a22df35955", "kversion": "Linux 6.14.8-2-pve"}))
        }
        ("GET", ["cluster", "resources"]) => {
            check_params(params, &["type"])?;
            let ty = str_param(params, "type");
            if let Some(t) = ty {
                if !matches!(t, "vm" | "storage" | "node" | "sdn") {
                    return Err(param_err("type", format!("value '{t}' does not have a value in the enumeration 'vm, storage, node, sdn'")));
                }
            }
            let mut out = Vec::new();
            if ty.is_none() || ty == Some("node") {
                for n in &st.nodes {
                    out.push(json!({"id": format!("node/{n}"), "type": "node", "node": n, "status": "online"}));
                }
            }
            if ty.is_none() || ty == Some("vm") {
                for g in st.guests.values() {
                    let mut v = json!({"id": format!("{}/{}", g.kind.as_str(), g.vmid), "type": g.kind.as_str(),
                        "vmid": g.vmid, "node": g.node, "name": g.name(),
                        "status": if g.running { "running" } else { "stopped" },
                        "maxmem": g.maxmem(), "uptime": g.uptime(), "template": 0});
                    if let Some(l) = &g.lock {
                        v["lock"] = json!(l);
                    }
                    out.push(v);
                }
            }
            Ok(Value::Array(out))
        }
        ("GET", ["nodes", node, kind @ ("lxc" | "qemu")]) => {
            check_node(&st, node)?;
            Ok(Value::Array(
                st.guests
                    .values()
                    .filter(|g| g.node == *node && g.kind.as_str() == *kind)
                    .map(status_json)
                    .collect(),
            ))
        }
        ("GET", ["nodes", node, "tasks"]) => {
            check_node(&st, node)?;
            let list: Vec<Value> = st
                .tasks
                .iter()
                .rev()
                .filter(|t| t.node == *node && t.exitstatus.is_some())
                .map(|t| {
                    let mut v = task_status_json(t);
                    v["status"] = json!(t.exitstatus);
                    v["endtime"] = json!(t.endtime);
                    v
                })
                .collect();
            let n = list.len();
            Ok(json!({"__total": n, "data": list}))
        }
        ("GET", ["nodes", node, "tasks", upid, "status"]) => {
            check_node(&st, node)?;
            let t = find_task(&st, upid)?;
            Ok(task_status_json(t))
        }
        ("GET", ["nodes", node, "tasks", upid, "log"]) => {
            check_node(&st, node)?;
            check_params(params, &["start", "limit", "download"])?;
            let start = int_param(params, "start")?.unwrap_or(0).max(0) as usize;
            let limit = int_param(params, "limit")?.unwrap_or(50).max(0) as usize;
            let t = find_task(&st, upid)?;
            let total = t.log.len();
            let lines: Vec<Value> = if t.log.is_empty() {
                vec![json!({"n": 1, "t": "no content"})]
            } else {
                t.log
                    .iter()
                    .enumerate()
                    .skip(start)
                    .take(if limit == 0 { usize::MAX } else { limit })
                    .map(|(i, l)| json!({"n": i + 1, "t": l}))
                    .collect()
            };
            Ok(json!({"__total": total, "data": lines}))
        }
        (m, ["nodes", node, kind @ ("lxc" | "qemu"), vmid, rest @ ..]) => {
            check_node(&st, node)?;
            let vmid: u32 = vmid
                .parse()
                .map_err(|_| param_err("vmid", format!("type check ('integer') failed - got '{vmid}'")))?;
            let found = st
                .guests
                .get(&vmid)
                .filter(|g| g.node == *node && g.kind.as_str() == *kind)
                .is_some();
            if !found {
                let file = if *kind == "lxc" {
                    format!("nodes/{node}/lxc/{vmid}.conf")
                } else {
                    format!("nodes/{node}/qemu-server/{vmid}.conf")
                };
                if rest.is_empty() && m == "GET" {
                    return Err(not_impl(method, path));
                }
                return Err(err(500, format!("Configuration file '{file}' does not exist")));
            }
            guest_route(app, &mut st, method, path, vmid, rest, params, caller)
        }
        _ => Err(not_impl(method, path)),
    }
}

fn check_node(st: &LabState, node: &str) -> Result<(), ApiErr> {
    if st.nodes.iter().any(|n| n == node) {
        Ok(())
    } else {
        Err(err(
            500,
            format!("hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"),
        ))
    }
}

fn find_task<'a>(st: &'a LabState, upid: &str) -> Result<&'a Task, ApiErr> {
    if crate::clients::proxmox::Upid::parse(upid).is_err() {
        return Err(param_err("upid", "unable to parse worker upid"));
    }
    st.tasks
        .iter()
        .find(|t| t.upid == upid)
        .ok_or_else(|| param_err("upid", "no such task"))
}

fn task_status_json(t: &Task) -> Value {
    let mut v = json!({"upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart, "starttime": t.starttime,
        "type": t.kind, "id": t.id, "user": t.user,
        "status": if t.exitstatus.is_some() { "stopped" } else { "running" }});
    if let Some(e) = &t.exitstatus {
        v["exitstatus"] = json!(e);
    }
    if let Some(tok) = &t.tokenid {
        v["tokenid"] = json!(tok);
    }
    v
}

fn status_json(g: &Guest) -> Value {
    let mut v = json!({
        "vmid": g.vmid, "status": if g.running { "running" } else { "stopped" }, "name": g.name(),
        "cpus": g.config.get("cores").and_then(num).unwrap_or(1),
        "cpu": if g.running { 0.012 } else { 0.0 },
        "mem": if g.running { g.maxmem() / 4 } else { 0 }, "maxmem": g.maxmem(),
        "disk": if g.running { 1_073_741_824i64 } else { 0 }, "maxdisk": 8_589_934_592i64,
        "uptime": g.uptime(), "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
        "ha": {"managed": 0},
    });
    match g.kind {
        Kind::Lxc => {
            v["type"] = json!("lxc");
            v["swap"] = json!(0);
            v["maxswap"] = json!(g.config.get("swap").and_then(num).unwrap_or(512) * 1024 * 1024);
        }
        Kind::Qemu => {
            v["qmpstatus"] = json!(if g.running { "running" } else { "stopped" });
            if g.config.get("agent").and_then(num) == Some(1) {
                v["agent"] = json!(1);
            }
        }
    }
    if g.running {
        v["pid"] = json!(100_000 + g.vmid);
    }
    if let Some(l) = &g.lock {
        v["lock"] = json!(l);
    }
    if let Some(t) = g.config.get("tags") {
        v["tags"] = t.clone();
    }
    v
}

fn config_json(g: &Guest) -> Value {
    let mut m: Map<String, Value> = g
        .config
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(p) = &g.parent {
        m.insert("parent".into(), json!(p));
    }
    if let Some(l) = &g.lock {
        m.insert("lock".into(), json!(l));
    }
    m.insert("digest".into(), json!(g.digest()));
    Value::Object(m)
}

const LXC_CONFIG_KEYS: &[&str] = &[
    "hostname",
    "memory",
    "swap",
    "cores",
    "cpulimit",
    "cpuunits",
    "description",
    "onboot",
    "tags",
    "net0",
    "net1",
    "nameserver",
    "searchdomain",
    "startup",
    "protection",
    "features",
];
const QEMU_CONFIG_KEYS: &[&str] = &[
    "name",
    "memory",
    "cores",
    "sockets",
    "description",
    "onboot",
    "tags",
    "net0",
    "net1",
    "agent",
    "balloon",
    "startup",
    "protection",
    "cpu",
];

#[allow(clippy::too_many_arguments)]
fn guest_route(
    app: &App,
    st: &mut LabState,
    method: &Method,
    path: &str,
    vmid: u32,
    rest: &[&str],
    params: &[(String, String)],
    caller: &Caller,
) -> ApiResult {
    let kind = st.guests[&vmid].kind;
    let p = kind.prefix();
    match (method.as_str(), rest) {
        ("GET", ["status", "current"]) => Ok(status_json(&st.guests[&vmid])),
        ("GET", ["config"]) => {
            check_params(params, &["current", "snapshot"])?;
            let g = &st.guests[&vmid];
            if let Some(s) = str_param(params, "snapshot") {
                return snap_config(g, s);
            }
            Ok(config_json(g))
        }
        ("PUT", ["config"]) => {
            let keys = if kind == Kind::Lxc {
                LXC_CONFIG_KEYS
            } else {
                QEMU_CONFIG_KEYS
            };
            let mut allowed: Vec<&str> = keys.to_vec();
            allowed.extend(["delete", "digest", "revert"]);
            check_params(params, &allowed)?;
            let g = st.guests.get_mut(&vmid).expect("checked");
            if let Some(d) = str_param(params, "digest") {
                if d != g.digest() {
                    return Err(err(
                        500,
                        "detected modified configuration - file changed by other user? Try again.",
                    ));
                }
            }
            if let Some(msg) = g.locked_msg() {
                return Err(err(500, msg));
            }
            for (k, v) in params {
                if keys.contains(&k.as_str()) {
                    let val = v
                        .parse::<i64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| Value::String(v.clone()));
                    g.config.insert(k.clone(), val);
                }
            }
            if let Some(del) = str_param(params, "delete") {
                for k in del.split([',', ';', ' ']).filter(|k| !k.is_empty()) {
                    g.config.remove(k);
                }
            }
            Ok(Value::Null)
        }
        ("POST", ["status", action @ ("start" | "stop" | "shutdown" | "reboot")]) => {
            let allowed: &[&str] = match *action {
                "start" => &["skiplock", "timeout"],
                "stop" => &["skiplock", "overrule-shutdown", "timeout"],
                "shutdown" => &["timeout", "forceStop", "keepActive"],
                _ => &["timeout"],
            };
            check_params(params, allowed)?;
            if bool_param(params, "skiplock")? && caller.tokenid.is_some() {
                return Err(param_err("skiplock", "Only root may use this option."));
            }
            let force = bool_param(params, "forceStop")?;
            int_param(params, "timeout")?;
            let running = st.guests[&vmid].running;
            match (kind, *action, running) {
                (Kind::Lxc, "start", true) => {
                    return Err(err(500, format!("CT {vmid} already running")))
                }
                (Kind::Lxc, "stop" | "shutdown", false) => {
                    return Err(err(500, format!("CT {vmid} not running")))
                }
                (_, "reboot", false) => return Err(err(500, format!("VM {vmid} not running"))),
                _ => {}
            }
            let action = action.to_string();
            let upid = spawn_task(
                app,
                st,
                vmid,
                &kind.task(&action),
                caller,
                None,
                move |st, log| {
                    let g = st.guests.get_mut(&vmid).expect("guest");
                    if action != "reboot" {
                        if let Some(m) = g.locked_msg() {
                            return Err(m);
                        }
                    }
                    match action.as_str() {
                        "start" => {
                            if g.running {
                                return Err(format!("VM {vmid} already running"));
                            }
                            log.push(format!("starting {p} {vmid}"));
                            g.running = true;
                            g.started_at = now();
                        }
                        "stop" | "shutdown" => {
                            if !g.running {
                                log.push(format!("{p} {vmid} is not running"));
                            } else {
                                if action == "shutdown"
                                    && !force
                                    && g.config.contains_key("lab_hang_on_shutdown")
                                {
                                    return Err("container did not stop".into());
                                }
                                log.push(format!("stopping {p} {vmid}"));
                                g.running = false;
                            }
                        }
                        _ => {
                            log.push(format!("rebooting {p} {vmid}"));
                            g.started_at = now();
                        }
                    }
                    Ok(())
                },
            )?;
            Ok(json!(upid))
        }
        ("GET", ["snapshot"]) => {
            let g = &st.guests[&vmid];
            let mut list: Vec<Value> = g
                .snapshots
                .iter()
                .map(|s| {
                    let mut v = json!({"name": s.name, "description": s.description, "snaptime": s.snaptime});
                    if let Some(p) = &s.parent {
                        v["parent"] = json!(p);
                    }
                    if kind == Kind::Qemu {
                        v["vmstate"] = json!(s.vmstate as i32);
                    }
                    v
                })
                .collect();
            let mut cur = json!({"name": "current", "description": "You are here!", "digest": g.digest(),
                "running": g.running as i32});
            if let Some(p) = &g.parent {
                cur["parent"] = json!(p);
            }
            list.push(cur);
            Ok(Value::Array(list))
        }
        ("POST", ["snapshot"]) => {
            let mut allowed = vec!["snapname", "description"];
            if kind == Kind::Qemu {
                allowed.push("vmstate");
            }
            check_params(params, &allowed)?;
            let name = str_param(params, "snapname")
                .ok_or_else(|| param_err("snapname", "property is missing and it is not optional"))?
                .to_string();
            if !valid_configid(&name) {
                return Err(param_err(
                    "snapname",
                    format!("invalid format - invalid configuration ID '{name}'"),
                ));
            }
            let lower = name.to_ascii_lowercase();
            if lower == "current"
                || (kind == Kind::Lxc && lower == "vzdump")
                || (kind == Kind::Qemu && lower == "pending")
            {
                return Err(err(
                    500,
                    format!("unable to use snapshot name '{name}' (reserved name)"),
                ));
            }
            let description = str_param(params, "description").unwrap_or("").to_string();
            let vmstate = bool_param(params, "vmstate")?;
            let upid = spawn_task(
                app,
                st,
                vmid,
                &kind.task("snapshot"),
                caller,
                Some("snapshot"),
                move |st, log| {
                    let g = st.guests.get_mut(&vmid).expect("guest");
                    if g.snapshots.iter().any(|s| s.name == name) {
                        return Err(format!("snapshot name '{name}' already used"));
                    }
                    log.push(format!("create snapshot '{name}'"));
                    g.snapshots.push(Snapshot {
                        name: name.clone(),
                        description,
                        snaptime: now(),
                        parent: g.parent.clone(),
                        config: g.config.clone(),
                        lab_marker: g.lab_marker.clone(),
                        vmstate: vmstate && g.running,
                    });
                    g.parent = Some(name);
                    Ok(())
                },
            )?;
            Ok(json!(upid))
        }
        ("GET", ["snapshot", name, "config"]) => snap_config(&st.guests[&vmid], name),
        ("GET", ["snapshot", name]) => {
            let g = &st.guests[&vmid];
            if !g.snapshots.iter().any(|s| s.name == *name) {
                return Err(err(500, format!("snapshot '{name}' does not exist")));
            }
            Ok(json!([{"rel": "child", "href": "config"}, {"rel": "child", "href": "rollback"}]))
        }
        ("DELETE", ["snapshot", name]) => {
            check_params(params, &["force"])?;
            bool_param(params, "force")?;
            if !valid_configid(name) {
                return Err(param_err(
                    "snapname",
                    format!("invalid format - invalid configuration ID '{name}'"),
                ));
            }
            let name = name.to_string();
            let upid = spawn_task(
                app,
                st,
                vmid,
                &kind.task("delsnapshot"),
                caller,
                Some("snapshot-delete"),
                move |st, log| {
                    let g = st.guests.get_mut(&vmid).expect("guest");
                    let Some(i) = g.snapshots.iter().position(|s| s.name == name) else {
                        return Err(format!("snapshot '{name}' does not exist"));
                    };
                    log.push(format!("delete snapshot '{name}'"));
                    let gone = g.snapshots.remove(i);
                    for s in g.snapshots.iter_mut() {
                        if s.parent.as_deref() == Some(name.as_str()) {
                            s.parent = gone.parent.clone();
                        }
                    }
                    if g.parent.as_deref() == Some(name.as_str()) {
                        g.parent = gone.parent.clone();
                    }
                    Ok(())
                },
            )?;
            Ok(json!(upid))
        }
        ("POST", ["snapshot", name, "rollback"]) => {
            check_params(params, &["start"])?;
            let start = bool_param(params, "start")?;
            if !valid_configid(name) {
                return Err(param_err(
                    "snapname",
                    format!("invalid format - invalid configuration ID '{name}'"),
                ));
            }
            let name = name.to_string();
            let caller_user = caller.user.clone();
            let caller_tok = caller.tokenid.clone();
            let state = app.state.clone();
            let task_ms = st.task_ms;
            let upid = spawn_task(
                app,
                st,
                vmid,
                &kind.task("rollback"),
                caller,
                Some("rollback"),
                move |st, log| {
                    let node;
                    {
                        let g = st.guests.get_mut(&vmid).expect("guest");
                        let Some(s) = g.snapshots.iter().find(|s| s.name == name).cloned() else {
                            return Err(format!("snapshot '{name}' does not exist"));
                        };
                        if g.running {
                            log.push(format!("stopping {p} {vmid} for rollback"));
                            g.running = false;
                        }
                        log.push(format!("rollback to snapshot '{name}'"));
                        g.config = s.config.clone();
                        g.lab_marker = s.lab_marker.clone();
                        g.parent = Some(name.clone());
                        if kind == Kind::Qemu && s.vmstate {
                            log.push("resuming VM from saved RAM state".into());
                            g.running = true;
                            g.started_at = now();
                        }
                        node = g.node.clone();
                    }
                    if start && !st.guests[&vmid].running {
                        let upid = new_task(
                            st,
                            &node,
                            &kind.task("start"),
                            vmid,
                            &caller_user,
                            caller_tok.clone(),
                        );
                        log.push(format!("starting after rollback: {upid}"));
                        let state = state.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(task_ms)).await;
                            let mut st = state.lock();
                            if let Some(g) = st.guests.get_mut(&vmid) {
                                g.running = true;
                                g.started_at = now();
                            }
                            finish_task(
                                &mut st,
                                &upid,
                                vec![format!("starting {p} {vmid}")],
                                Ok(()),
                            );
                        });
                    }
                    Ok(())
                },
            )?;
            Ok(json!(upid))
        }
        _ => Err(not_impl(method, path)),
    }
}

fn snap_config(g: &Guest, name: &str) -> ApiResult {
    let s = g
        .snapshots
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| err(500, format!("snapshot '{name}' does not exist")))?;
    let mut m: Map<String, Value> = s
        .config
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    m.insert("snaptime".into(), json!(s.snaptime));
    m.insert("description".into(), json!(s.description));
    if let Some(p) = &s.parent {
        m.insert("parent".into(), json!(p));
    }
    Ok(Value::Object(m))
}

fn new_task(
    st: &mut LabState,
    node: &str,
    kind: &str,
    vmid: u32,
    user: &str,
    tokenid: Option<String>,
) -> String {
    st.next_pid += 1;
    let starttime = now();
    let full_user = match &tokenid {
        Some(t) => t.clone(),
        None => user.to_string(),
    };
    let u = crate::clients::proxmox::Upid {
        node: node.to_string(),
        pid: st.next_pid,
        pstart: 0x0123_0000 + st.next_pid as u64,
        starttime,
        kind: kind.to_string(),
        id: vmid.to_string(),
        user: full_user,
    };
    let upid = u.format();
    st.tasks.push(Task {
        upid: upid.clone(),
        node: node.to_string(),
        pid: u.pid,
        pstart: u.pstart,
        starttime,
        kind: kind.to_string(),
        id: vmid.to_string(),
        user: user.to_string(),
        tokenid,
        log: Vec::new(),
        exitstatus: None,
        endtime: None,
    });
    if st.tasks.len() > 1000 {
        st.tasks.remove(0);
    }
    upid
}

fn finish_task(st: &mut LabState, upid: &str, lines: Vec<String>, result: Result<(), String>) {
    if let Some(t) = st.tasks.iter_mut().find(|t| t.upid == upid) {
        t.log.extend(lines);
        match result {
            Ok(()) => {
                t.log.push("TASK OK".into());
                t.exitstatus = Some("OK".into());
            }
            Err(e) => {
                t.log.push(format!("TASK ERROR: {e}"));
                t.exitstatus = Some(e.replace('\n', " "));
            }
        }
        t.endtime = Some(now());
    }
}

/// Start a worker task for `vmid`. With `lock`, the lock check happens now (a held lock makes the
/// task fail with `CT is locked (x)`, as the real worker does) and the guest holds `lock` until the
/// task ends. The work runs after the task's duration. Returns the UPID.
fn spawn_task<F>(
    app: &App,
    st: &mut LabState,
    vmid: u32,
    kind: &str,
    caller: &Caller,
    lock: Option<&str>,
    work: F,
) -> Result<String, ApiErr>
where
    F: FnOnce(&mut LabState, &mut Vec<String>) -> Result<(), String> + Send + 'static,
{
    let g = st.guests.get_mut(&vmid).expect("guest");
    let node = g.node.clone();
    let delay = Duration::from_millis(st.task_ms + g.slow_ms);
    let fail = g.fail_next.take();
    let early: Option<String> = match lock {
        Some(l) => match g.locked_msg() {
            Some(m) => Some(m),
            None => {
                g.lock = Some(l.to_string());
                None
            }
        },
        None => None,
    };
    let holds_lock = lock.is_some() && early.is_none();
    let upid = new_task(st, &node, kind, vmid, &caller.user, caller.tokenid.clone());
    if let Some(t) = st.tasks.iter_mut().find(|t| t.upid == upid) {
        t.log.push(format!(
            "task started by {}",
            caller.tokenid.as_deref().unwrap_or(&caller.user)
        ));
    }
    let state = app.state.clone();
    let upid2 = upid.clone();
    tokio::spawn(async move {
        tokio::time::sleep(if early.is_some() { delay / 4 } else { delay }).await;
        let mut st = state.lock();
        let mut lines = Vec::new();
        let result = if let Some(m) = early {
            Err(m)
        } else if let Some(f) = fail {
            lines.push("lab: injected failure".into());
            Err(f)
        } else {
            work(&mut st, &mut lines)
        };
        if holds_lock {
            if let Some(g) = st.guests.get_mut(&vmid) {
                g.lock = None;
            }
        }
        finish_task(&mut st, &upid2, lines, result);
    });
    Ok(upid)
}

// ---------------------------------------------------------------------------------------------
// Control API

fn control(app: &App, method: &Method, rest: &str, body: &[u8]) -> Response {
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return json_response(400, json!({"error": format!("body is not JSON: {e}")}))
            }
        }
    };
    let segs: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let mut st = app.state.lock();
    let ok = |v: Value| json_response(200, v);
    let bad = |m: String| json_response(400, json!({"error": m}));
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["state"]) => ok(serde_json::to_value(&*st).unwrap_or(Value::Null)),
        ("POST", ["tasks", "duration"]) => match body["ms"].as_u64() {
            Some(ms) => {
                st.task_ms = ms;
                ok(json!({"task_ms": ms}))
            }
            None => bad("expected {\"ms\": N}".into()),
        },
        (m, ["guests", vmid, action @ ..]) => {
            let Some(g) = vmid.parse::<u32>().ok().and_then(|v| st.guests.get_mut(&v)) else {
                return json_response(404, json!({"error": format!("no guest {vmid}")}));
            };
            match (m, action) {
                ("GET", []) => ok(serde_json::to_value(&*g).unwrap_or(Value::Null)),
                ("POST", ["marker"]) => match body["value"].as_str() {
                    Some(v) => {
                        g.lab_marker = v.to_string();
                        ok(json!({"lab_marker": v}))
                    }
                    None => bad("expected {\"value\": \"...\"}".into()),
                },
                ("POST", ["config"]) => match body.as_object() {
                    Some(m) => {
                        for (k, v) in m {
                            if v.is_null() {
                                g.config.remove(k);
                            } else {
                                g.config.insert(k.clone(), v.clone());
                            }
                        }
                        ok(Value::Object(g.config.clone().into_iter().collect()))
                    }
                    None => bad("expected a JSON object".into()),
                },
                ("POST", ["fail_next"]) => {
                    let m = body["message"]
                        .as_str()
                        .unwrap_or("lab: injected failure")
                        .to_string();
                    g.fail_next = Some(m.clone());
                    ok(json!({"fail_next": m}))
                }
                ("POST", ["lock"]) => match body["lock"].as_str() {
                    Some(l) => {
                        g.lock = Some(l.to_string());
                        ok(json!({"lock": l}))
                    }
                    None => bad("expected {\"lock\": \"backup\"}".into()),
                },
                ("DELETE", ["lock"]) => {
                    g.lock = None;
                    ok(json!({"lock": null}))
                }
                ("POST", ["slow"]) => match body["ms"].as_u64() {
                    Some(ms) => {
                        g.slow_ms = ms;
                        ok(json!({"slow_ms": ms}))
                    }
                    None => bad("expected {\"ms\": N}".into()),
                },
                ("POST", ["running"]) => match body["running"].as_bool() {
                    Some(r) => {
                        g.running = r;
                        ok(json!({"running": r}))
                    }
                    None => bad("expected {\"running\": true|false}".into()),
                },
                _ => json_response(
                    404,
                    json!({"error": format!("no control endpoint {method} /_lab/{rest}")}),
                ),
            }
        }
        _ => json_response(
            404,
            json!({"error": format!("no control endpoint {method} /_lab/{rest}")}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_from_catalog_leniently() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "services:\n  - name: postgresql\n    guest: 2010\n  - name: Gitea Server\n    guest: {vmid: 2012, node: pve2}\n  - name: nothing\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.yml"),
            "n8n:\n  guest: '4012'\nbroken: [\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("c.yaml"),
            "vm:\n  guest: {vmid: 777, type: qemu}\n",
        )
        .unwrap();
        let s = seeds(Some(&dir.path().to_path_buf()));
        let g = s.iter().find(|s| s.vmid == 2012).unwrap();
        assert_eq!(g.name, "gitea-server");
        assert_eq!(g.node.as_deref(), Some("pve2"));
        assert!(s.iter().any(|s| s.vmid == 777 && s.kind == Kind::Qemu));
        assert!(s.iter().any(|s| s.vmid == 10015), "built-ins fill in");
        assert_eq!(s.iter().filter(|s| s.vmid == 2010).count(), 1);
    }

    #[test]
    fn decodes_forms() {
        assert_eq!(
            parse_form("a=1&b=x+y%21&c"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y!".into()),
                ("c".into(), String::new())
            ]
        );
        assert_eq!(url_decode("100%"), "100%");
    }
}

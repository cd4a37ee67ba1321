//! SSH client: multiplexed OpenSSH sessions (the `openssh` crate, native-mux), one master per host
//! per run, plus a local runner with the same shape.
//!
//! Every command runs under a small POSIX-shell prologue that reports the remote shell's pid (a
//! session leader on the remote side, since sshd calls `setsid()` for each channel) on stderr,
//! so a timed-out or cancelled command can be killed as a whole process group over a second
//! channel. The marker line is removed from the captured stderr.

use crate::config::{HostConfig, SshConfig};
use crate::engine::error::{ErrorKind, RResult, RalfError};
use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder, Stdio};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Default cap on captured stdout / stderr per command.
pub const DEFAULT_MAX_OUTPUT: usize = 4 * 1024 * 1024;
const PID_MARKER: &str = "\u{1e}ralf-pid ";
/// The master exits by itself after this much idle time (so a killed run leaves nothing behind for long).
const PERSIST_SECS: usize = 120;

/// Known-hosts policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownHostsPolicy {
    Strict,
    AcceptNew,
}

/// Client-wide SSH settings (from the `ssh:` config section).
#[derive(Debug, Clone)]
pub struct Settings {
    pub known_hosts: KnownHostsPolicy,
    pub known_hosts_file: Option<PathBuf>,
    pub use_ssh_config: bool,
    pub connect_timeout: Duration,
    pub keepalive: Duration,
    pub control_dir: PathBuf,
    pub max_output: usize,
}

impl Settings {
    pub fn from_config(c: &SshConfig) -> Settings {
        let uid = unsafe { libc::getuid() };
        Settings {
            known_hosts: if c.known_hosts == "accept_new" {
                KnownHostsPolicy::AcceptNew
            } else {
                KnownHostsPolicy::Strict
            },
            known_hosts_file: c.known_hosts_file.clone(),
            use_ssh_config: c.use_ssh_config,
            connect_timeout: c
                .connect_timeout
                .map(|s| s.0)
                .unwrap_or(Duration::from_secs(10)),
            keepalive: c.keepalive.map(|s| s.0).unwrap_or(Duration::from_secs(15)),
            // Short on purpose: a unix socket path is limited to ~104-108 bytes.
            control_dir: c
                .control_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("/tmp/ralf-ssh-{uid}"))),
            max_output: c.max_output.unwrap_or(DEFAULT_MAX_OUTPUT),
        }
    }
}

/// Where to connect: a resolved alias or a `user@host:port` literal.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// What the script called it (alias or literal).
    pub name: String,
    pub address: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<PathBuf>,
    /// Jump host (resolved), used with `ssh -J`.
    pub jump: Option<Box<Target>>,
    /// Exported for every command on this host (`hosts.<name>.env`).
    pub env: BTreeMap<String, String>,
}

/// Resolve an alias from the config's `hosts:` or parse a `[user@]host[:port]` literal.
pub fn resolve(name: &str, hosts: &BTreeMap<String, HostConfig>) -> RResult<Target> {
    resolve_depth(name, hosts, 0)
}

fn resolve_depth(
    name: &str,
    hosts: &BTreeMap<String, HostConfig>,
    depth: usize,
) -> RResult<Target> {
    if depth > 4 {
        return Err(RalfError::config(format!(
            "ssh host `{name}`: jump hosts nest too deep (a loop in hosts.*.jump?)"
        )));
    }
    if let Some(h) = hosts.get(name) {
        let jump = match &h.jump {
            Some(j) => Some(Box::new(resolve_depth(j, hosts, depth + 1)?)),
            None => None,
        };
        return Ok(Target {
            name: name.to_string(),
            address: h.address.clone(),
            user: h.user.clone(),
            port: h.port,
            identity_file: h.identity_file.clone(),
            jump,
            env: h.env.clone(),
        });
    }
    parse_literal(name).map_err(|why| {
        let hint = crate::text::did_you_mean(name, hosts.keys().map(|s| s.as_str()))
            .map(|s| format!("; did you mean the alias `{s}`?"))
            .unwrap_or_default();
        RalfError::invalid(format!(
            "ssh host `{name}` is neither an alias under `hosts:` in the config nor a valid `user@host:port` ({why}){hint}"
        ))
    })
}

/// Parse `[user@]host[:port]`, `[user@][v6addr]:port`.
pub fn parse_literal(s: &str) -> Result<Target, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty host".into());
    }
    if t.chars()
        .any(|c| c.is_whitespace() || c == '/' || c == '\'' || c == '"')
    {
        return Err("contains whitespace, quotes or `/`".into());
    }
    let (user, rest) = match t.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
        Some(_) => return Err("empty user before `@`".into()),
        None => (None, t),
    };
    let (address, port) = if let Some(r) = rest.strip_prefix('[') {
        let (addr, after) = r.split_once(']').ok_or("unclosed `[`")?;
        match after.strip_prefix(':') {
            Some(p) => (addr.to_string(), Some(p)),
            None if after.is_empty() => (addr.to_string(), None),
            None => return Err(format!("unexpected `{after}` after `]`")),
        }
    } else if rest.matches(':').count() > 1 {
        // bare IPv6 address without port
        (rest.to_string(), None)
    } else {
        match rest.split_once(':') {
            Some((a, p)) => (a.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    if address.is_empty() || address.starts_with('-') {
        return Err("missing host name".into());
    }
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("port `{p}` is not a number between 1 and 65535"))?,
        ),
        None => None,
    };
    Ok(Target {
        name: s.to_string(),
        address,
        user,
        port,
        identity_file: None,
        jump: None,
        env: BTreeMap::new(),
    })
}

impl Target {
    /// `[user@]host[:port]` (for `ssh -J`).
    pub fn destination_with_port(&self) -> String {
        let mut s = String::new();
        if let Some(u) = &self.user {
            s.push_str(u);
            s.push('@');
        }
        if self.address.contains(':') {
            s.push_str(&format!("[{}]", self.address));
        } else {
            s.push_str(&self.address);
        }
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s
    }
}

/// Quote one word for a POSIX shell.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=/,.+:@%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Join an argv into one POSIX shell command line.
pub fn join_argv<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One command to run.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    /// Shell command line (interpreted by the remote POSIX shell).
    pub cmd: String,
    pub stdin: Option<Vec<u8>>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub timeout: Option<Duration>,
    /// Override the output cap (None = the configured `ssh.max_output`; Some(usize::MAX) = unlimited).
    pub max_output: Option<usize>,
}

impl RunSpec {
    pub fn new(cmd: impl Into<String>) -> Self {
        RunSpec {
            cmd: cmd.into(),
            ..Default::default()
        }
    }
}

/// What a command produced. A non-zero exit is a value, not an error.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: i64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_total: usize,
    pub stderr_total: usize,
    pub duration: Duration,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
    pub fn truncated(&self) -> bool {
        self.stdout_total > self.stdout.len() || self.stderr_total > self.stderr.len()
    }
    fn text(buf: &[u8], total: usize) -> String {
        let mut s = String::from_utf8_lossy(buf).into_owned();
        if total > buf.len() {
            if !s.ends_with('\n') && !s.is_empty() {
                s.push('\n');
            }
            s.push_str(&format!(
                "[ralf-sh: output truncated: kept the first {} of {} bytes (ssh.max_output)]",
                buf.len(),
                total
            ));
        }
        s
    }
    pub fn stdout_text(&self) -> String {
        Self::text(&self.stdout, self.stdout_total)
    }
    pub fn stderr_text(&self) -> String {
        Self::text(&self.stderr, self.stderr_total)
    }
    /// The last `n` lines of stderr (for error messages).
    pub fn stderr_tail(&self, n: usize) -> String {
        let s = String::from_utf8_lossy(&self.stderr);
        let lines: Vec<&str> = s.trim_end().lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

struct Live {
    session: Arc<Session>,
    last_used: Instant,
}

/// One cached master per host name. Lives in `host.extension(...)` for the run.
pub struct Pool {
    pub settings: Settings,
    slots: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Live>>>>>,
    kills: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Number of masters opened (for tests and diagnostics).
    pub masters_opened: AtomicI64,
}

impl Pool {
    pub fn new(settings: Settings) -> Arc<Pool> {
        Arc::new(Pool {
            settings,
            slots: parking_lot::Mutex::new(HashMap::new()),
            kills: parking_lot::Mutex::new(Vec::new()),
            masters_opened: AtomicI64::new(0),
        })
    }

    fn slot(&self, key: &str) -> Arc<tokio::sync::Mutex<Option<Live>>> {
        self.slots
            .lock()
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    /// The live master for `target`, opening it if needed.
    pub async fn session(&self, target: &Target) -> RResult<Arc<Session>> {
        let slot = self.slot(&target.name);
        let mut guard = slot.lock().await;
        if let Some(live) = guard.as_mut() {
            // A master idle for a while may have exited (ControlPersist); check before reuse.
            let fresh = live.last_used.elapsed() < Duration::from_secs(PERSIST_SECS as u64 / 2);
            if fresh || live.session.check().await.is_ok() {
                live.last_used = Instant::now();
                return Ok(live.session.clone());
            }
            *guard = None;
        }
        let session = Arc::new(self.connect(target).await?);
        self.masters_opened.fetch_add(1, Ordering::SeqCst);
        *guard = Some(Live {
            session: session.clone(),
            last_used: Instant::now(),
        });
        Ok(session)
    }

    /// Forget a master that turned out dead (next use reconnects).
    pub async fn evict(&self, target: &Target) {
        let slot = self.slot(&target.name);
        let mut g = slot.lock().await;
        *g = None;
    }

    async fn connect(&self, t: &Target) -> RResult<Session> {
        let s = &self.settings;
        std::fs::create_dir_all(&s.control_dir).map_err(|e| {
            RalfError::io(format!(
                "ssh: cannot create control directory {}: {e}",
                s.control_dir.display()
            ))
        })?;
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            // The control sockets give shell access to the hosts: the dir must be ours alone.
            let meta = std::fs::metadata(&s.control_dir)?;
            if meta.uid() != unsafe { libc::getuid() } {
                return Err(RalfError::config(format!(
                    "ssh: control directory {} belongs to another user; set ssh.control_dir",
                    s.control_dir.display()
                )));
            }
            let _ =
                std::fs::set_permissions(&s.control_dir, std::fs::Permissions::from_mode(0o700));
        }
        let mut b = SessionBuilder::default();
        b.known_hosts_check(match s.known_hosts {
            KnownHostsPolicy::Strict => KnownHosts::Strict,
            KnownHostsPolicy::AcceptNew => KnownHosts::Add,
        })
        .connect_timeout(s.connect_timeout.max(Duration::from_secs(1)))
        .server_alive_interval(s.keepalive.max(Duration::from_secs(1)))
        .control_directory(&s.control_dir)
        .control_persist(ControlPersist::IdleFor(
            std::num::NonZeroUsize::new(PERSIST_SECS).expect("non-zero"),
        ));
        if let Some(f) = &s.known_hosts_file {
            b.user_known_hosts_file(f);
        }
        if let Some(j) = &t.jump {
            // `ssh -J` passes only `-F` on to the jump connection (not -o/-i), so the jump host's
            // key, known-hosts file and batch mode go into a generated config file.
            b.config_file(self.jump_config(t, j)?);
            b.jump_hosts([j.destination_with_port()]);
        } else if !s.use_ssh_config {
            b.config_file("/dev/null");
        }
        if let Some(u) = &t.user {
            b.user(u.clone());
        }
        if let Some(p) = t.port {
            b.port(p);
        }
        if let Some(k) = &t.identity_file {
            b.keyfile(expand_tilde(k));
        }
        let dest = if t.address.contains(':') {
            format!("[{}]", t.address)
        } else {
            t.address.clone()
        };
        let connect = b.connect_mux(&dest);
        // The master is bounded by ConnectTimeout for TCP, but not for a server that accepts and
        // then stalls; bound the whole handshake too.
        let limit = s.connect_timeout.max(Duration::from_secs(1)) * 2 + Duration::from_secs(5);
        match tokio::time::timeout(limit, connect).await {
            Ok(Ok(sess)) => Ok(sess),
            Ok(Err(e)) => Err(classify_connect(&t.name, &e)),
            Err(_) => Err(RalfError::unavailable(format!(
                "ssh {}: connection not established within {}",
                t.name,
                crate::text::human_duration(limit)
            ))
            .with("host", &t.name)),
        }
    }

    fn jump_config(&self, t: &Target, j: &Target) -> RResult<PathBuf> {
        let s = &self.settings;
        let mut text = String::new();
        if let Some(k) = &j.identity_file {
            text.push_str(&format!(
                "Host {}\n  IdentityFile \"{}\"\n  IdentitiesOnly yes\n",
                j.address,
                expand_tilde(k).display()
            ));
        }
        text.push_str(&format!(
            "Host *\n  BatchMode yes\n  StrictHostKeyChecking {}\n  ConnectTimeout {}\n  ServerAliveInterval {}\n",
            match s.known_hosts {
                KnownHostsPolicy::Strict => "yes",
                KnownHostsPolicy::AcceptNew => "accept-new",
            },
            s.connect_timeout.as_secs().max(1),
            s.keepalive.as_secs().max(1)
        ));
        if let Some(f) = &s.known_hosts_file {
            text.push_str(&format!(
                "  UserKnownHostsFile \"{}\"\n",
                expand_tilde(f).display()
            ));
        }
        if s.use_ssh_config {
            text.push_str("  Include ~/.ssh/config\n");
        }
        let safe: String = t
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = s.control_dir.join(format!("jump-{safe}.conf"));
        std::fs::write(&path, text).map_err(|e| {
            RalfError::io(format!(
                "ssh {}: cannot write {}: {e}",
                t.name,
                path.display()
            ))
        })?;
        Ok(path)
    }

    /// Wait (bounded) for background kills of cancelled commands to be delivered.
    pub async fn finish_kills(&self, limit: Duration) {
        let handles: Vec<_> = std::mem::take(&mut *self.kills.lock());
        let _ = tokio::time::timeout(limit, futures_util::future::join_all(handles)).await;
    }

    /// Close every master (best effort).
    pub async fn close_all(&self) {
        let slots: Vec<_> = self.slots.lock().values().cloned().collect();
        for s in slots {
            let live = s.lock().await.take();
            if let Some(l) = live {
                if let Ok(sess) = Arc::try_unwrap(l.session) {
                    let _ = sess.close().await;
                }
            }
        }
    }
}

fn expand_tilde(p: &std::path::Path) -> PathBuf {
    match p.to_str().and_then(|s| s.strip_prefix("~/")) {
        Some(rest) => crate::config::home().join(rest),
        None => p.to_path_buf(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Map a connection failure to an error kind with a message naming the host.
pub fn classify_connect(host: &str, e: &openssh::Error) -> RalfError {
    let text = error_chain(e);
    let lower = text.to_lowercase();
    let (kind, what) = if lower.contains("host key verification failed")
        || lower.contains("remote host identification has changed")
        || lower.contains("no ed25519 host key is known")
        || lower.contains("host key for")
    {
        (
            ErrorKind::Auth,
            "host key verification failed (the host key is unknown or does not match known_hosts)",
        )
    } else if lower.contains("permission denied") {
        (
            ErrorKind::Auth,
            "authentication refused (permission denied)",
        )
    } else if lower.contains("connection refused") {
        (ErrorKind::Unavailable, "connection refused")
    } else if lower.contains("timed out") {
        (ErrorKind::Unavailable, "connection timed out")
    } else if lower.contains("could not resolve") {
        (ErrorKind::Unavailable, "host name does not resolve")
    } else if lower.contains("unreachable") {
        (ErrorKind::Unavailable, "network unreachable")
    } else {
        (ErrorKind::Unavailable, "connection failed")
    };
    RalfError::new(kind, format!("ssh {host}: {what} ({})", text.trim())).with("host", host)
}

/// What executes commands: a remote host through the pool, or the control machine.
#[derive(Clone)]
pub enum Runner {
    Remote {
        target: Target,
        pool: Arc<Pool>,
    },
    /// Commands run on this machine under `/bin/sh`. `name` is the alias (or "local"); `env` is
    /// exported for every command (a spec's own env wins).
    Local {
        name: String,
        env: BTreeMap<String, String>,
        max_output: usize,
    },
}

/// A host handle: cheap to clone; the master is opened on first use.
#[derive(Clone)]
pub struct Handle {
    pub runner: Runner,
}

impl Handle {
    pub fn remote(target: Target, pool: Arc<Pool>) -> Handle {
        Handle {
            runner: Runner::Remote { target, pool },
        }
    }

    /// The control machine itself, as `ssh::local()`.
    pub fn local(max_output: usize) -> Handle {
        Handle::local_alias("local", BTreeMap::new(), max_output)
    }

    /// An alias whose `transport` is `local`: commands run here with the host's `env`.
    pub fn local_alias(name: &str, env: BTreeMap<String, String>, max_output: usize) -> Handle {
        Handle {
            runner: Runner::Local {
                name: name.to_string(),
                env,
                max_output,
            },
        }
    }

    pub fn name(&self) -> &str {
        match &self.runner {
            Runner::Remote { target, .. } => &target.name,
            Runner::Local { name, .. } => name,
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self.runner, Runner::Local { .. })
    }

    /// Open the master now (no-op for local).
    pub async fn connect(&self) -> RResult<()> {
        if let Runner::Remote { target, pool } = &self.runner {
            pool.session(target).await?;
        }
        Ok(())
    }

    /// Run a command; a non-zero exit is `Ok` with that code.
    pub async fn exec(&self, spec: &RunSpec) -> RResult<Output> {
        match &self.runner {
            Runner::Local {
                name,
                env,
                max_output,
            } => {
                let cap = spec.max_output.unwrap_or(*max_output);
                let script = wrap_with(spec, env)?;
                exec_local(name, &script, spec, cap).await
            }
            Runner::Remote { target, pool } => {
                let script = wrap_with(spec, &target.env)?;
                let cap = spec.max_output.unwrap_or(pool.settings.max_output);
                let mut attempt = 0;
                loop {
                    let session = pool.session(target).await?;
                    match exec_remote(target, pool, session.clone(), &script, spec, cap).await {
                        Err(RemoteFail::NotStarted(e)) => {
                            pool.evict(target).await;
                            attempt += 1;
                            if attempt >= 2 {
                                return Err(RalfError::unavailable(format!(
                                    "ssh {}: cannot open a channel on the master connection ({e})",
                                    target.name
                                ))
                                .with("host", &target.name));
                            }
                        }
                        Err(RemoteFail::Lost(e)) => {
                            // The master may be gone (host down, network cut): check and evict.
                            if session.check().await.is_err() {
                                pool.evict(target).await;
                                return Err(RalfError::unavailable(format!(
                                    "ssh {}: connection lost while running the command ({e})",
                                    target.name
                                ))
                                .with("host", &target.name));
                            }
                            return Err(RalfError::unavailable(format!(
                                "ssh {}: remote command was terminated ({e})",
                                target.name
                            ))
                            .with("host", &target.name));
                        }
                        Err(RemoteFail::Error(e)) => return Err(e),
                        Ok(o) => return Ok(o),
                    }
                }
            }
        }
    }

    /// Is the host reachable (master up and a trivial command runs)?
    pub async fn reachable(&self) -> bool {
        let mut spec = RunSpec::new("true");
        spec.timeout = Some(Duration::from_secs(15));
        matches!(self.exec(&spec).await, Ok(o) if o.ok())
    }
}

/// Build the remote script: pid marker, cwd, env, then the command via `eval`.
/// [`wrap`] with a host's environment exported first (the command's own env overrides it).
fn wrap_with(spec: &RunSpec, host_env: &BTreeMap<String, String>) -> RResult<String> {
    if host_env.is_empty() {
        return wrap(spec);
    }
    let mut merged = spec.clone();
    merged.env = host_env
        .iter()
        .filter(|(k, _)| !spec.env.iter().any(|(sk, _)| sk == *k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(spec.env.iter().cloned())
        .collect();
    wrap(&merged)
}

fn wrap(spec: &RunSpec) -> RResult<String> {
    let mut s = format!(
        "printf '{}%s\\n' \"$$\" >&2; ",
        PID_MARKER.replace('\u{1e}', "\\036")
    );
    if let Some(d) = &spec.cwd {
        s.push_str(&format!("cd -- {} || exit 1; ", quote(d)));
    }
    for (k, v) in &spec.env {
        let valid = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(RalfError::invalid(format!(
                "env: `{k}` is not a valid environment variable name"
            )));
        }
        s.push_str(&format!("export {k}={}; ", quote(v)));
    }
    s.push_str("eval ");
    s.push_str(&quote(&spec.cmd));
    Ok(s)
}

enum RemoteFail {
    /// The channel could not be opened: the command did not start.
    NotStarted(String),
    /// The connection dropped or the remote process vanished.
    Lost(String),
    Error(RalfError),
}

/// Kills a remote (or local) process group when dropped while armed (cancellation).
struct KillGuard {
    pid: Arc<AtomicI64>,
    killer: Killer,
    armed: bool,
    pool: Option<Arc<Pool>>,
}

#[derive(Clone)]
enum Killer {
    Remote(Arc<Session>),
    Local,
}

impl Killer {
    async fn kill(self, pid: i64) {
        if pid <= 1 {
            return;
        }
        match self {
            Killer::Local => unsafe {
                libc::kill(-(pid as i32), libc::SIGTERM);
                libc::kill(pid as i32, libc::SIGTERM);
                let p = pid as i32;
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    libc::kill(-p, libc::SIGKILL);
                });
            },
            Killer::Remote(sess) => {
                let cmd = format!(
                    "kill -TERM -- -{pid} {pid} 2>/dev/null; (sleep 2; kill -KILL -- -{pid} {pid}) >/dev/null 2>&1 </dev/null & exit 0"
                );
                let fut = async move {
                    let _ = sess
                        .raw_command(&cmd)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .await;
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), fut).await;
            }
        }
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let pid = self.pid.load(Ordering::SeqCst);
        if pid <= 1 {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let jh = rt.spawn(self.killer.clone().kill(pid));
            if let Some(p) = &self.pool {
                p.kills.lock().push(jh);
            }
        } else if let Killer::Local = self.killer {
            unsafe {
                libc::kill(-(pid as i32), libc::SIGKILL);
            }
        }
    }
}

/// Reads both streams with a cap, watching stderr for the pid marker.
struct Capture {
    out: Vec<u8>,
    err: Vec<u8>,
    out_total: usize,
    err_total: usize,
    cap: usize,
    pid: Arc<AtomicI64>,
    marker_done: bool,
    err_pending: Vec<u8>,
}

impl Capture {
    fn new(cap: usize, pid: Arc<AtomicI64>) -> Self {
        Capture {
            out: Vec::new(),
            err: Vec::new(),
            out_total: 0,
            err_total: 0,
            cap,
            pid,
            marker_done: false,
            err_pending: Vec::new(),
        }
    }

    fn push_out(&mut self, b: &[u8]) {
        self.out_total += b.len();
        let room = self.cap.saturating_sub(self.out.len());
        self.out.extend_from_slice(&b[..b.len().min(room)]);
    }

    fn push_err_raw(&mut self, b: &[u8]) {
        self.err_total += b.len();
        let room = self.cap.saturating_sub(self.err.len());
        self.err.extend_from_slice(&b[..b.len().min(room)]);
    }

    fn push_err(&mut self, b: &[u8]) {
        if self.marker_done {
            return self.push_err_raw(b);
        }
        // Until the marker line has been seen, hold stderr back and look for it.
        self.err_pending.extend_from_slice(b);
        let marker = PID_MARKER.as_bytes();
        if let Some(start) = find(&self.err_pending, marker) {
            if let Some(nl) = self.err_pending[start..].iter().position(|c| *c == b'\n') {
                let line = &self.err_pending[start + marker.len()..start + nl];
                if let Ok(pid) = String::from_utf8_lossy(line).trim().parse::<i64>() {
                    self.pid.store(pid, Ordering::SeqCst);
                }
                let mut rest = self.err_pending[..start].to_vec();
                rest.extend_from_slice(&self.err_pending[start + nl + 1..]);
                self.err_pending.clear();
                self.marker_done = true;
                self.push_err_raw(&rest);
            }
        } else if self.err_pending.len() > 64 * 1024 {
            // Something is very chatty before our prologue ran; give up looking.
            let p = std::mem::take(&mut self.err_pending);
            self.marker_done = true;
            self.push_err_raw(&p);
        }
    }

    fn finish(&mut self) {
        if !self.err_pending.is_empty() {
            let p = std::mem::take(&mut self.err_pending);
            self.push_err_raw(&p);
        }
    }

    async fn drain<O, E>(&mut self, out: &mut Option<O>, err: &mut Option<E>) -> std::io::Result<()>
    where
        O: AsyncRead + Unpin,
        E: AsyncRead + Unpin,
    {
        let mut b1 = vec![0u8; 32 * 1024];
        let mut b2 = vec![0u8; 32 * 1024];
        loop {
            if out.is_none() && err.is_none() {
                return Ok(());
            }
            tokio::select! {
                r = async { out.as_mut().expect("checked").read(&mut b1).await }, if out.is_some() => {
                    let n = r?;
                    if n == 0 { *out = None; } else { self.push_out(&b1[..n]); }
                }
                r = async { err.as_mut().expect("checked").read(&mut b2).await }, if err.is_some() => {
                    let n = r?;
                    if n == 0 { *err = None; } else { self.push_err(&b2[..n]); }
                }
            }
        }
    }

    fn output(mut self, code: i64, started: Instant) -> Output {
        self.finish();
        Output {
            code,
            stdout: self.out,
            stderr: self.err,
            stdout_total: self.out_total,
            stderr_total: self.err_total,
            duration: started.elapsed(),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn timeout_error(host: &str, spec: &RunSpec, d: Duration, cap: &Capture) -> RalfError {
    let tail = String::from_utf8_lossy(&cap.err);
    let tail: Vec<&str> = tail.trim_end().lines().collect();
    let tail = tail[tail.len().saturating_sub(5)..].join("\n");
    RalfError::timeout(format!(
        "{host}: command did not finish within {} and was killed: {}",
        crate::text::human_duration(d),
        short_cmd(&spec.cmd)
    ))
    .with("host", host)
    .with("stdout", String::from_utf8_lossy(&cap.out))
    .with("stderr_tail", tail)
}

/// The command shortened for messages.
pub fn short_cmd(cmd: &str) -> String {
    let one = cmd.replace('\n', " ");
    if one.chars().count() > 120 {
        format!("{}…", one.chars().take(120).collect::<String>())
    } else {
        one
    }
}

async fn exec_remote(
    target: &Target,
    pool: &Arc<Pool>,
    session: Arc<Session>,
    script: &str,
    spec: &RunSpec,
    cap: usize,
) -> Result<Output, RemoteFail> {
    let started = Instant::now();
    let mut cmd = session.clone().arc_raw_command(script);
    cmd.stdin(if spec.stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = match cmd.spawn().await {
        Ok(c) => c,
        Err(openssh::Error::InvalidCommand) => {
            return Err(RemoteFail::Error(RalfError::invalid(format!(
                "{}: the command contains a NUL byte",
                target.name
            ))))
        }
        Err(e) => return Err(RemoteFail::NotStarted(error_chain(&e))),
    };
    let pid = Arc::new(AtomicI64::new(0));
    let mut guard = KillGuard {
        pid: pid.clone(),
        killer: Killer::Remote(session.clone()),
        armed: true,
        pool: Some(pool.clone()),
    };
    let mut capture = Capture::new(cap, pid.clone());
    let stdin = child.stdin().take();
    let mut out = child.stdout().take();
    let mut err = child.stderr().take();
    let res = match feed_and_drain(&mut capture, spec, stdin, &mut out, &mut err).await {
        Ok(r) => r,
        Err(d) => {
            guard.armed = false;
            // The pid marker comes after the login shell's startup files; give a slow
            // start a moment to report it, so the command can still be killed.
            let until = Instant::now() + Duration::from_secs(5);
            while pid.load(Ordering::SeqCst) <= 0
                && Instant::now() < until
                && (out.is_some() || err.is_some())
            {
                let _ = tokio::time::timeout(
                    Duration::from_millis(100),
                    capture.drain(&mut out, &mut err),
                )
                .await;
            }
            Killer::Remote(session.clone())
                .kill(pid.load(Ordering::SeqCst))
                .await;
            let _ = tokio::time::timeout(Duration::from_secs(2), capture.drain(&mut out, &mut err))
                .await;
            return Err(RemoteFail::Error(timeout_error(
                &target.name,
                spec,
                d,
                &capture,
            )));
        }
    };
    if let Err(e) = res {
        return Err(RemoteFail::Lost(e.to_string()));
    }
    let status = child.wait().await;
    guard.armed = false;
    let code = match status {
        Ok(s) => s.code().map(|c| c as i64).unwrap_or(-1),
        Err(openssh::Error::Remote(e)) if e.kind() == std::io::ErrorKind::NotFound => 127,
        Err(e) => return Err(RemoteFail::Lost(error_chain(&e))),
    };
    Ok(capture.output(code, started))
}

/// Feed the spec's stdin to the command and drain its stdout/stderr into `capture` until both
/// close, within the spec's timeout: `Ok(read result)`, or `Err(timeout)` when it ran out first
/// (the caller kills the command).
async fn feed_and_drain<W, O, E>(
    capture: &mut Capture,
    spec: &RunSpec,
    stdin: Option<W>,
    out: &mut Option<O>,
    err: &mut Option<E>,
) -> Result<std::io::Result<()>, Duration>
where
    W: tokio::io::AsyncWrite + Unpin,
    O: AsyncRead + Unpin,
    E: AsyncRead + Unpin,
{
    let data = spec.stdin.clone();
    let feed = async move {
        if let (Some(data), Some(mut w)) = (data, stdin) {
            // A command that does not read its stdin closes the pipe: not an error.
            let _ = w.write_all(&data).await;
            let _ = w.shutdown().await;
        }
    };
    let io = async {
        let (_, r) = tokio::join!(feed, capture.drain(out, err));
        r
    };
    match spec.timeout {
        Some(d) => tokio::time::timeout(d, io).await.map_err(|_| d),
        None => Ok(io.await),
    }
}

async fn exec_local(name: &str, script: &str, spec: &RunSpec, cap: usize) -> RResult<Output> {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .stdin(if spec.stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| RalfError::io(format!("{name}: cannot start /bin/sh: {e}")))?;
    let pid = Arc::new(AtomicI64::new(child.id().map(|p| p as i64).unwrap_or(0)));
    let mut guard = KillGuard {
        pid: pid.clone(),
        killer: Killer::Local,
        armed: true,
        pool: None,
    };
    let mut capture = Capture::new(cap, Arc::new(AtomicI64::new(0)));
    let stdin = child.stdin.take();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let res = match feed_and_drain(&mut capture, spec, stdin, &mut out, &mut err).await {
        Ok(r) => r,
        Err(d) => {
            guard.armed = false;
            Killer::Local.kill(pid.load(Ordering::SeqCst)).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), capture.drain(&mut out, &mut err))
                .await;
            let _ = child.wait().await;
            return Err(timeout_error(name, spec, d, &capture));
        }
    };
    res.map_err(|e| RalfError::io(format!("{name}: reading command output: {e}")))?;
    let status = child
        .wait()
        .await
        .map_err(|e| RalfError::io(format!("{name}: waiting for command: {e}")))?;
    guard.armed = false;
    use std::os::unix::process::ExitStatusExt;
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c as i64,
        (None, Some(sig)) => 128 + sig as i64,
        _ => -1,
    };
    Ok(capture.output(code, started))
}

/// `df -Pk` output -> available bytes of the filesystem holding the path.
pub fn parse_df_available(text: &str) -> Option<i64> {
    let line = text.lines().filter(|l| !l.trim().is_empty()).nth(1)?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    // Filesystem 1024-blocks Used Available Capacity Mounted-on (a long fs name may wrap; count from the end)
    if fields.len() < 6 {
        return None;
    }
    let avail = fields[fields.len() - 3].parse::<i64>().ok()?;
    Some(avail * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        let t = parse_literal("deploy@10.0.0.5:2222").unwrap();
        assert_eq!(t.user.as_deref(), Some("deploy"));
        assert_eq!(t.address, "10.0.0.5");
        assert_eq!(t.port, Some(2222));
        let t = parse_literal("[::1]:22").unwrap();
        assert_eq!(t.address, "::1");
        assert_eq!(t.port, Some(22));
        assert_eq!(t.destination_with_port(), "[::1]:22");
        assert!(parse_literal("host:99999").is_err());
        assert!(parse_literal("a b").is_err());
        assert!(parse_literal("@host").is_err());
        let t = parse_literal("vps").unwrap();
        assert_eq!(t.port, None);
    }

    #[test]
    fn alias_and_jump() {
        let mut hosts = BTreeMap::new();
        hosts.insert(
            "bastion".to_string(),
            HostConfig {
                address: "1.2.3.4".into(),
                user: Some("jump".into()),
                port: Some(2200),
                ..Default::default()
            },
        );
        hosts.insert(
            "gpu".to_string(),
            HostConfig {
                address: "10.0.0.9".into(),
                jump: Some("bastion".into()),
                ..Default::default()
            },
        );
        let t = resolve("gpu", &hosts).unwrap();
        assert_eq!(t.jump.unwrap().destination_with_port(), "jump@1.2.3.4:2200");
        let e = resolve("gpuu x", &hosts).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("docker"), "docker");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(join_argv(&["echo", "$(id)", ";ls"]), "echo '$(id)' ';ls'");
    }

    #[test]
    fn df() {
        let t = "Filesystem     1024-blocks      Used Available Capacity Mounted on\n/dev/sda1        100000     40000     60000      40% /\n";
        assert_eq!(parse_df_available(t), Some(60000 * 1024));
    }

    #[test]
    fn capture_strips_marker_and_caps() {
        let pid = Arc::new(AtomicI64::new(0));
        let mut c = Capture::new(5, pid.clone());
        c.push_err(b"warn\n\x1eralf-");
        c.push_err(b"pid 4242\nboom\n");
        c.push_out(b"0123456789");
        let o = c.output(0, Instant::now());
        assert_eq!(pid.load(Ordering::SeqCst), 4242);
        assert_eq!(o.stderr, b"warn\n");
        assert_eq!(o.stderr_total, 10);
        assert!(o.truncated());
        assert!(o.stdout_text().contains("output truncated"));
    }

    #[tokio::test]
    async fn local_runs_with_env_cwd_stdin() {
        let h = Handle::local(1 << 20);
        let mut spec = RunSpec::new("cat; echo \"$FOO\"; pwd; echo err >&2; exit 3");
        spec.env.push(("FOO".into(), "a b'c".into()));
        spec.cwd = Some("/tmp".into());
        spec.stdin = Some(b"in\n".to_vec());
        let o = h.exec(&spec).await.unwrap();
        assert_eq!(o.code, 3);
        assert_eq!(String::from_utf8_lossy(&o.stdout), "in\na b'c\n/tmp\n");
        assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    }

    #[tokio::test]
    async fn local_alias_exports_the_host_env_under_the_command_env() {
        let env: BTreeMap<String, String> = [("A", "1"), ("B", "2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let h = Handle::local_alias("box", env, 1 << 20);
        assert_eq!(h.name(), "box");
        assert!(h.is_local());
        let mut spec = RunSpec::new("echo \"$A $B\"; exit 3");
        spec.env = vec![("B".into(), "3".into())];
        let o = h.exec(&spec).await.unwrap();
        assert_eq!(o.stdout_text(), "1 3\n");
        assert_eq!(o.code, 3);
        let mut spec = RunSpec::new("sleep 5");
        spec.timeout = Some(Duration::from_millis(200));
        let e = h.exec(&spec).await.unwrap_err();
        assert!(e.message.contains("box"), "{}", e.message);
    }

    #[tokio::test]
    async fn local_timeout_kills_group() {
        let h = Handle::local(1 << 20);
        let mut spec = RunSpec::new("sleep 30 & sleep 31; echo done");
        spec.timeout = Some(Duration::from_millis(300));
        let e = h.exec(&spec).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout);
    }
}

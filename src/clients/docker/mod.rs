//! Docker over SSH: the docker CLI (and `docker compose` / `docker-compose`) run through an
//! [`ssh::Handle`](crate::clients::ssh::Handle), with the JSON output parsed and errors mapped to kinds.
//!
//! Facts (see specs/EXO-DOCKER-SSH.md section B): `docker ps --format json` is NDJSON with string
//! values (`{{json .}}` on CLIs older than 23.0); `--size=false` avoids the slow size query;
//! `docker inspect` prints an array and exits 1 when something is missing; `docker compose ps
//! --format json` is an array before v2.21 and NDJSON after; compose v1 has neither `--format` nor
//! `--wait`, so containers are found with `ps -q` + `docker inspect` and readiness is polled.

use crate::clients::ssh::{Handle, Output, RunSpec};
use crate::error::{ErrorKind, RResult, RalfError};
use crate::text::quote;
use serde_json::{json, Map as JMap, Value};
use std::time::{Duration, Instant};

/// Default timeout of one docker CLI call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Which compose implementation the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavour {
    /// `docker compose` plugin (v2+), with its version.
    Plugin(String),
    /// Standalone `docker-compose` v2+ binary.
    StandaloneV2(String),
    /// Python `docker-compose` v1.
    V1(String),
}

impl Flavour {
    pub fn program(&self) -> &'static str {
        match self {
            Flavour::Plugin(_) => "docker compose",
            _ => "docker-compose",
        }
    }
    pub fn version(&self) -> &str {
        match self {
            Flavour::Plugin(v) | Flavour::StandaloneV2(v) | Flavour::V1(v) => v,
        }
    }
    pub fn is_v1(&self) -> bool {
        matches!(self, Flavour::V1(_))
    }
    /// `up --wait` exists since 2.1.1.
    pub fn has_wait(&self) -> bool {
        !self.is_v1() && version_at_least(self.version(), (2, 1, 1))
    }
    /// `--wait-timeout` exists since 2.17.0.
    pub fn has_wait_timeout(&self) -> bool {
        !self.is_v1() && version_at_least(self.version(), (2, 17, 0))
    }
}

/// Compare a dotted version (a leading `v` and any suffix ignored) with (major, minor, patch).
pub fn version_at_least(v: &str, want: (u64, u64, u64)) -> bool {
    let v = v.trim().trim_start_matches('v');
    let nums: Vec<u64> = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(3)
        .map(|s| s.parse().unwrap_or(0))
        .collect();
    let got = (
        nums.first().copied().unwrap_or(0),
        nums.get(1).copied().unwrap_or(0),
        nums.get(2).copied().unwrap_or(0),
    );
    got >= want
}

/// Docker on one host.
pub struct Docker {
    pub exec: Handle,
    /// `DOCKER_HOST` for every call (None = the remote default).
    pub docker_host: Option<String>,
    flavour: tokio::sync::OnceCell<Flavour>,
}

impl Docker {
    pub fn new(exec: Handle, docker_host: Option<String>) -> Docker {
        Docker {
            exec,
            docker_host,
            flavour: tokio::sync::OnceCell::new(),
        }
    }

    pub fn host_name(&self) -> &str {
        self.exec.name()
    }

    async fn call(&self, cmd: String, cwd: Option<&str>, timeout: Duration) -> RResult<Output> {
        let mut spec = RunSpec::new(cmd);
        spec.cwd = cwd.map(|s| s.to_string());
        spec.timeout = Some(timeout);
        spec.max_output = Some(64 * 1024 * 1024);
        if let Some(h) = &self.docker_host {
            spec.env.push(("DOCKER_HOST".into(), h.clone()));
        }
        self.exec.exec(&spec).await
    }

    /// Run and require exit 0; map failures to kinds.
    async fn ok(
        &self,
        what: &str,
        cmd: String,
        cwd: Option<&str>,
        timeout: Duration,
    ) -> RResult<Output> {
        let o = self.call(cmd, cwd, timeout).await?;
        if o.ok() {
            Ok(o)
        } else {
            Err(classify(self.host_name(), what, &o))
        }
    }

    /// Server and client versions; fails when the daemon is not reachable.
    pub async fn ping(&self) -> RResult<Value> {
        let o = self
            .ok(
                "docker version",
                "docker version --format '{{json .}}'".into(),
                None,
                CALL_TIMEOUT,
            )
            .await?;
        let v: Value = serde_json::from_str(o.stdout_text().trim()).map_err(|e| {
            RalfError::internal(format!(
                "{}: docker version printed no JSON: {e}",
                self.host_name()
            ))
        })?;
        Ok(json!({
            "ok": true,
            "host": self.host_name(),
            "server_version": v.pointer("/Server/Version").cloned().unwrap_or(Value::Null),
            "api_version": v.pointer("/Server/ApiVersion").cloned().unwrap_or(Value::Null),
            "client_version": v.pointer("/Client/Version").cloned().unwrap_or(Value::Null),
        }))
    }

    /// `docker ps` as a list of normalised containers.
    pub async fn ps(&self, all: bool) -> RResult<Vec<Value>> {
        let a = if all { " -a" } else { "" };
        let o = self
            .ok(
                "docker ps",
                format!("docker ps{a} --no-trunc --size=false --format json"),
                None,
                CALL_TIMEOUT,
            )
            .await?;
        let text = o.stdout_text();
        // CLIs before 23.0 print the literal word for an unknown template: fall back to {{json .}}.
        let text = if text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('{'))
        {
            self.ok(
                "docker ps",
                format!("docker ps{a} --no-trunc --size=false --format '{{{{json .}}}}'"),
                None,
                CALL_TIMEOUT,
            )
            .await?
            .stdout_text()
        } else {
            text
        };
        parse_ps(&text)
            .map_err(|e| RalfError::internal(format!("{}: docker ps: {e}", self.host_name())))
    }

    /// `docker inspect` of one container.
    pub async fn inspect(&self, name: &str) -> RResult<Value> {
        check_name(name)?;
        let o = self
            .ok(
                &format!("docker inspect {name}"),
                format!("docker inspect --type container -- {}", quote(name)),
                None,
                CALL_TIMEOUT,
            )
            .await?;
        let v: Value = serde_json::from_str(o.stdout_text().trim()).map_err(|e| {
            RalfError::internal(format!("{}: docker inspect: {e}", self.host_name()))
        })?;
        v.as_array()
            .and_then(|a| a.first().cloned())
            .ok_or_else(|| not_found(self.host_name(), name))
    }

    /// healthy | unhealthy | starting | none
    pub async fn health(&self, name: &str) -> RResult<String> {
        check_name(name)?;
        let o = self
            .ok(
                &format!("docker inspect {name}"),
                format!(
                    "docker inspect --type container --format '{{{{json .State}}}}' -- {}",
                    quote(name)
                ),
                None,
                CALL_TIMEOUT,
            )
            .await?;
        let v: Value = serde_json::from_str(o.stdout_text().trim()).map_err(|e| {
            RalfError::internal(format!("{}: docker inspect state: {e}", self.host_name()))
        })?;
        Ok(health_of_state(&v))
    }

    /// Container logs (stdout and stderr interleaved as the CLI writes them).
    pub async fn logs(
        &self,
        name: &str,
        tail: Option<i64>,
        since: Option<&str>,
    ) -> RResult<String> {
        check_name(name)?;
        let mut cmd = String::from("docker logs");
        if let Some(t) = tail {
            cmd.push_str(&format!(" --tail {}", t.max(0)));
        }
        if let Some(s) = since {
            cmd.push_str(&format!(" --since {}", quote(s)));
        }
        cmd.push_str(&format!(" -- {} 2>&1", quote(name)));
        let o = self.call(cmd, None, CALL_TIMEOUT).await?;
        if !o.ok() {
            // stderr was merged into stdout: classify on it.
            let merged = Output {
                stderr: o.stdout.clone(),
                stderr_total: o.stdout_total,
                ..o.clone()
            };
            return Err(classify(
                self.host_name(),
                &format!("docker logs {name}"),
                &merged,
            ));
        }
        Ok(o.stdout_text())
    }

    /// Detect the compose flavour once per handle.
    pub async fn flavour(&self) -> RResult<Flavour> {
        self.flavour
            .get_or_try_init(|| async {
                let probe = "if v=$(docker compose version --short 2>/dev/null); then echo \"plugin $v\"; \
                             elif command -v docker-compose >/dev/null 2>&1; then echo \"standalone $(docker-compose version --short 2>/dev/null)\"; \
                             else echo none; fi";
                let o = self.call(probe.into(), None, CALL_TIMEOUT).await?;
                parse_flavour(&o.stdout_text()).ok_or_else(|| {
                    RalfError::not_found(format!(
                        "{}: neither `docker compose` (v2 plugin) nor `docker-compose` is installed",
                        self.host_name()
                    ))
                    .with("host", self.host_name())
                })
            })
            .await
            .cloned()
    }
}

fn check_name(name: &str) -> RResult<()> {
    if name.trim().is_empty() {
        return Err(RalfError::invalid("container name is empty"));
    }
    Ok(())
}

fn not_found(host: &str, name: &str) -> RalfError {
    RalfError::not_found(format!("{host}: no such container: {name}"))
        .with("host", host)
        .with("container", name)
}

/// `plugin 2.29.1` / `standalone 1.29.2` / `none`.
pub fn parse_flavour(text: &str) -> Option<Flavour> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let (kind, ver) = line.split_once(' ').unwrap_or((line, ""));
    let ver = ver.trim().trim_start_matches('v').to_string();
    match kind {
        "plugin" => Some(Flavour::Plugin(ver)),
        "standalone" if ver.starts_with("1.") => Some(Flavour::V1(ver)),
        "standalone" if !ver.is_empty() => Some(Flavour::StandaloneV2(ver)),
        // a docker-compose whose --short failed: v1 lacked --short before 1.24
        "standalone" => Some(Flavour::V1(ver)),
        _ => None,
    }
}

/// Map a failed docker/compose call to an error kind; the message names the host.
pub fn classify(host: &str, what: &str, o: &Output) -> RalfError {
    let text = String::from_utf8_lossy(&o.stderr).to_string();
    let lower = text.to_lowercase();
    let tail = o.stderr_tail(8);
    let (kind, msg) = if lower.contains("cannot connect to the docker daemon")
        || lower.contains("failed to connect to the docker api")
        || lower.contains("is the docker daemon running")
    {
        (
            ErrorKind::Unavailable,
            format!(
                "{host}: the docker daemon is not running or not reachable ({})",
                tail.trim()
            ),
        )
    } else if lower.contains("permission denied while trying to connect to the") {
        (
            ErrorKind::Forbidden,
            format!(
                "{host}: permission denied on the docker socket (is the ssh user in the `docker` group?): {}",
                tail.trim()
            ),
        )
    } else if lower.contains("no such container") || lower.contains("no such object") {
        (
            ErrorKind::NotFound,
            format!("{host}: {what}: {}", tail.trim()),
        )
    } else if o.code == 127 || lower.contains("command not found") || lower.contains(": not found")
    {
        (
            ErrorKind::NotFound,
            format!(
                "{host}: {what}: the docker CLI is not installed ({})",
                tail.trim()
            ),
        )
    } else if lower.contains("is invalid because")
        || lower.contains("yaml.")
        || lower.contains("yaml:")
        || lower.contains("unsupported config option")
        || lower.contains("validating ")
        || lower.contains("top level object")
        || lower.contains("additional property")
        || lower.contains("no configuration file provided")
        || lower.contains("can't find a suitable configuration file")
        || lower.contains("service \"") && lower.contains("refers to undefined")
    {
        (
            ErrorKind::Invalid,
            format!(
                "{host}: {what}: the compose file is invalid: {}",
                tail.trim()
            ),
        )
    } else {
        (
            ErrorKind::CommandFailed,
            format!(
                "{host}: {what} failed with exit code {}: {}",
                o.code,
                tail.trim()
            ),
        )
    };
    RalfError::new(kind, msg)
        .with("host", host)
        .with("code", o.code)
        .with("stderr_tail", tail)
}

/// Parse NDJSON (or a JSON array) of `docker ps` objects into normalised containers.
pub fn parse_ps(text: &str) -> Result<Vec<Value>, String> {
    parse_json_list(text)?
        .into_iter()
        .map(|v| Ok(normalize_ps(&v)))
        .collect()
}

/// A JSON array or one JSON object per line.
pub fn parse_json_list(text: &str) -> Result<Vec<Value>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(Vec::new());
    }
    if t.starts_with('[') {
        return match serde_json::from_str::<Value>(t) {
            Ok(Value::Array(a)) => Ok(a),
            Ok(_) => Err("expected a JSON array".into()),
            Err(e) => Err(format!("invalid JSON: {e}")),
        };
    }
    t.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(l).map_err(|e| format!("invalid JSON line `{l}`: {e}"))
        })
        .collect()
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Health from the `Status` text ("Up 3 minutes (healthy)", "(health: starting)").
pub fn health_from_status(status: &str) -> &'static str {
    let l = status.to_lowercase();
    if l.contains("(unhealthy)") {
        "unhealthy"
    } else if l.contains("(healthy)") {
        "healthy"
    } else if l.contains("health: starting") {
        "starting"
    } else {
        "none"
    }
}

fn labels_map(text: &str) -> Value {
    let mut m = JMap::new();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    Value::Object(m)
}

fn normalize_ps(v: &Value) -> Value {
    let names = s(v, "Names");
    let status = s(v, "Status");
    let hs = s(v, "HealthStatus");
    let health = if hs.is_empty() {
        health_from_status(&status).to_string()
    } else {
        hs
    };
    json!({
        "id": s(v, "ID"),
        "name": names.split(',').next().unwrap_or("").to_string(),
        "names": names.split(',').filter(|n| !n.is_empty()).collect::<Vec<_>>(),
        "image": s(v, "Image"),
        "command": s(v, "Command"),
        "created_at": s(v, "CreatedAt"),
        "running_for": s(v, "RunningFor"),
        "state": s(v, "State"),
        "status": status,
        "health": health,
        "ports": s(v, "Ports"),
        "networks": s(v, "Networks"),
        "labels": labels_map(&s(v, "Labels")),
    })
}

/// healthy | unhealthy | starting | none, from a container's `State` object.
pub fn health_of_state(state: &Value) -> String {
    state
        .pointer("/Health/Status")
        .and_then(|s| s.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("none")
        .to_string()
}

/// Normalise one `docker compose ps --format json` object (array or NDJSON form).
pub fn normalize_compose_ps(v: &Value) -> Value {
    let status = s(v, "Status");
    let h = s(v, "Health");
    let health = if h.is_empty() {
        health_from_status(&status).to_string()
    } else {
        h
    };
    json!({
        "id": s(v, "ID"),
        "name": s(v, "Name"),
        "service": s(v, "Service"),
        "image": s(v, "Image"),
        "state": s(v, "State"),
        "status": status,
        "health": health,
        "exit_code": v.get("ExitCode").and_then(|c| c.as_i64()).unwrap_or(0),
    })
}

/// Normalise a `docker inspect` object into the compose ps shape (compose v1 path).
pub fn normalize_inspect_for_compose(v: &Value) -> Value {
    let id = v.get("Id").and_then(|x| x.as_str()).unwrap_or("");
    json!({
        "id": id.chars().take(12).collect::<String>(),
        "name": v.get("Name").and_then(|x| x.as_str()).unwrap_or("").trim_start_matches('/'),
        "service": v.pointer("/Config/Labels/com.docker.compose.service").and_then(|x| x.as_str()).unwrap_or(""),
        "image": v.pointer("/Config/Image").and_then(|x| x.as_str()).unwrap_or(""),
        "state": v.pointer("/State/Status").and_then(|x| x.as_str()).unwrap_or(""),
        "status": v.pointer("/State/Status").and_then(|x| x.as_str()).unwrap_or(""),
        "health": health_of_state(v.get("State").unwrap_or(&Value::Null)),
        "exit_code": v.pointer("/State/ExitCode").and_then(|c| c.as_i64()).unwrap_or(0),
    })
}

/// The `image:` of each service in a parsed compose config (only `services` when given), except
/// services with a `build:` section.
pub fn images_of(cfg: &Value, services: &[String]) -> Vec<String> {
    let mut out: Vec<String> = cfg
        .get("services")
        .and_then(|s| s.as_object())
        .map(|m| {
            m.iter()
                .filter(|(name, _)| services.is_empty() || services.contains(name))
                .filter(|(_, svc)| svc.get("build").is_none())
                .filter_map(|(_, svc)| svc.get("image").and_then(|i| i.as_str()))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

/// Options of `compose up`.
#[derive(Debug, Clone, Default)]
pub struct UpOpts {
    pub services: Vec<String>,
    pub pull: bool,
    /// Never pull: check first that every image is on the host (compose v1 has no `--pull never`
    /// and would pull a missing image on its own).
    pub never_pull: bool,
    pub wait: bool,
    pub timeout: Option<Duration>,
}

/// A compose project in a directory on the host.
pub struct Compose<'a> {
    pub docker: &'a Docker,
    pub dir: String,
}

impl Compose<'_> {
    fn host(&self) -> &str {
        self.docker.host_name()
    }

    async fn run(&self, what: &str, args: &str, timeout: Duration) -> RResult<Output> {
        let f = self.docker.flavour().await?;
        let cmd = format!("{} {args}", f.program());
        self.docker
            .ok(
                &format!("compose {what} in {}", self.dir),
                cmd,
                Some(&self.dir),
                timeout,
            )
            .await
    }

    fn services_args(services: &[String]) -> String {
        if services.is_empty() {
            String::new()
        } else {
            format!(" -- {}", crate::text::join_argv(services))
        }
    }

    pub async fn pull(&self, services: &[String]) -> RResult<()> {
        self.run(
            "pull",
            &format!("pull{}", Self::services_args(services)),
            Duration::from_secs(1800),
        )
        .await
        .map(|_| ())
    }

    pub async fn up(&self, o: &UpOpts) -> RResult<Vec<Value>> {
        let f = self.docker.flavour().await?;
        if o.pull {
            self.pull(&o.services).await?;
        }
        if o.never_pull {
            self.require_local_images(&o.services).await?;
        }
        let wait_for = o.timeout.unwrap_or(Duration::from_secs(300));
        let mut args = String::from("up -d");
        let native_wait = o.wait && f.has_wait();
        if native_wait {
            args.push_str(" --wait");
            if f.has_wait_timeout() {
                args.push_str(&format!(" --wait-timeout {}", wait_for.as_secs().max(1)));
            }
        }
        args.push_str(&Self::services_args(&o.services));
        let r = self
            .run("up", &args, wait_for + Duration::from_secs(600))
            .await;
        if let Err(e) = r {
            if native_wait && e.kind == ErrorKind::CommandFailed {
                // `--wait` failed: say which service, from the current state.
                let ps = self.ps().await.unwrap_or_default();
                if let Some(err) = readiness_error(self.host(), &self.dir, &ps, &o.services) {
                    return Err(err);
                }
            }
            return Err(e);
        }
        if o.wait && !native_wait {
            self.poll_ready(&o.services, wait_for).await?;
        }
        self.ps().await
    }

    /// Fail (`not_found`, before compose runs) when an image of the project's services (or of
    /// `services`) is not on the host; services that `build:` their image are left to compose.
    pub async fn require_local_images(&self, services: &[String]) -> RResult<()> {
        let cfg = self.config().await?;
        let images = images_of(&cfg, services);
        if images.is_empty() {
            return Ok(());
        }
        let mut missing = Vec::new();
        for img in &images {
            let cmd = format!(
                "docker image inspect --format '{{{{.Id}}}}' -- {}",
                crate::text::quote(img)
            );
            let o = self.docker.call(cmd, None, CALL_TIMEOUT).await?;
            if !o.ok() {
                missing.push(img.clone());
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(RalfError::not_found(format!(
            "{}: compose project in {}: image {} not on this host, and pulling is off (docker.pull: never); build or load {} first",
            self.host(),
            self.dir,
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" }
        ))
        .with("host", self.host())
        .with("images", missing.join(",")))
    }

    /// Compose v1 (or v2 < 2.1.1): poll state and health until every container is ready.
    async fn poll_ready(&self, services: &[String], limit: Duration) -> RResult<()> {
        let deadline = Instant::now() + limit;
        loop {
            let ps = self.ps().await?;
            if let Some(err) = readiness_error(self.host(), &self.dir, &ps, services) {
                return Err(err);
            }
            let pending: Vec<String> = ps
                .iter()
                .filter(|c| in_services(c, services))
                .filter(|c| !is_ready(c))
                .map(|c| {
                    format!(
                        "{} ({}, health {})",
                        s(c, "service"),
                        s(c, "state"),
                        s(c, "health")
                    )
                })
                .collect();
            let any = ps.iter().any(|c| in_services(c, services));
            if any && pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RalfError::timeout(format!(
                    "{}: compose project in {} not ready after {}: {}",
                    self.host(),
                    self.dir,
                    crate::text::human_duration(limit),
                    if pending.is_empty() {
                        "no containers".to_string()
                    } else {
                        pending.join(", ")
                    }
                ))
                .with("host", self.host())
                .with("pending", pending));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub async fn ps(&self) -> RResult<Vec<Value>> {
        let f = self.docker.flavour().await?;
        if f.is_v1() {
            let o = self.run("ps", "ps -a -q", CALL_TIMEOUT).await?;
            let ids: Vec<String> = o
                .stdout_text()
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let o = self
                .docker
                .ok(
                    "docker inspect",
                    format!(
                        "docker inspect --type container -- {}",
                        crate::text::join_argv(&ids)
                    ),
                    None,
                    CALL_TIMEOUT,
                )
                .await?;
            let list = parse_json_list(&o.stdout_text()).map_err(|e| {
                RalfError::internal(format!("{}: docker inspect: {e}", self.host()))
            })?;
            return Ok(list.iter().map(normalize_inspect_for_compose).collect());
        }
        let o = self.run("ps", "ps -a --format json", CALL_TIMEOUT).await?;
        let list = parse_json_list(&o.stdout_text())
            .map_err(|e| RalfError::internal(format!("{}: compose ps: {e}", self.host())))?;
        Ok(list.iter().map(normalize_compose_ps).collect())
    }

    pub async fn down(&self) -> RResult<()> {
        self.run("down", "down", Duration::from_secs(600))
            .await
            .map(|_| ())
    }

    pub async fn restart(&self, services: &[String]) -> RResult<()> {
        self.run(
            "restart",
            &format!("restart{}", Self::services_args(services)),
            Duration::from_secs(600),
        )
        .await
        .map(|_| ())
    }

    /// The resolved compose model (validates the file).
    pub async fn config(&self) -> RResult<Value> {
        let f = self.docker.flavour().await?;
        if !f.is_v1() {
            let o = self
                .run("config", "config --format json", CALL_TIMEOUT)
                .await?;
            if let Ok(v) = serde_json::from_str::<Value>(o.stdout_text().trim()) {
                return Ok(v);
            }
        }
        let o = self.run("config", "config", CALL_TIMEOUT).await?;
        crate::yaml::from_str::<Value>(&o.stdout_text()).map_err(|e| {
            RalfError::internal(format!(
                "{}: compose config printed invalid YAML: {e}",
                self.host()
            ))
        })
    }
}

fn in_services(c: &Value, services: &[String]) -> bool {
    services.is_empty() || services.iter().any(|x| *x == s(c, "service"))
}

fn is_ready(c: &Value) -> bool {
    s(c, "state") == "running" && matches!(s(c, "health").as_str(), "healthy" | "none" | "")
}

/// A hard failure while waiting: a container exited / died, or is unhealthy.
fn readiness_error(host: &str, dir: &str, ps: &[Value], services: &[String]) -> Option<RalfError> {
    for c in ps.iter().filter(|c| in_services(c, services)) {
        let state = s(c, "state");
        if matches!(state.as_str(), "exited" | "dead") {
            let code = c.get("exit_code").and_then(|x| x.as_i64()).unwrap_or(0);
            return Some(
                RalfError::command_failed(format!(
                    "{host}: service {} in {dir} {state} with code {code} while waiting for it",
                    s(c, "service")
                ))
                .with("host", host)
                .with("service", s(c, "service"))
                .with("code", code),
            );
        }
        if s(c, "health") == "unhealthy" {
            return Some(
                RalfError::command_failed(format!(
                    "{host}: service {} in {dir} is unhealthy after waiting",
                    s(c, "service")
                ))
                .with("host", host)
                .with("service", s(c, "service"))
                .with("health", "unhealthy"),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_ndjson_and_health_from_status() {
        let t = r#"{"Command":"\"sh\"","ID":"7ebf147ed6aa","Image":"img:1","Labels":"a=b,com.docker.compose.service=web","Names":"cmp1_web_1","State":"running","Status":"Up 4 seconds (healthy)","Size":"0B"}
{"ID":"abc","Names":"x,y","State":"exited","Status":"Exited (0) 8 days ago","HealthStatus":""}"#;
        let v = parse_ps(t).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["health"], "healthy");
        assert_eq!(v[0]["labels"]["com.docker.compose.service"], "web");
        assert_eq!(v[1]["name"], "x");
        assert_eq!(v[1]["health"], "none");
        assert_eq!(
            health_from_status("Up 1 second (health: starting)"),
            "starting"
        );
        assert!(parse_ps("").unwrap().is_empty());
    }

    #[test]
    fn compose_ps_array_and_ndjson() {
        let arr = r#"[{"ID":"1","Name":"p-web-1","Service":"web","State":"running","Health":"healthy","ExitCode":0,"Publishers":[]}]"#;
        let nd = "{\"ID\":\"1\",\"Name\":\"p-web-1\",\"Service\":\"web\",\"State\":\"running\",\"Health\":\"healthy\",\"ExitCode\":0}\n{\"ID\":\"2\",\"Name\":\"p-db-1\",\"Service\":\"db\",\"State\":\"exited\",\"Health\":\"\",\"Status\":\"Exited (1)\",\"ExitCode\":1}\n";
        let a: Vec<Value> = parse_json_list(arr)
            .unwrap()
            .iter()
            .map(normalize_compose_ps)
            .collect();
        let b: Vec<Value> = parse_json_list(nd)
            .unwrap()
            .iter()
            .map(normalize_compose_ps)
            .collect();
        assert_eq!(a[0], b[0]);
        assert_eq!(b[1]["exit_code"], 1);
        let e = readiness_error("vps", "/srv", &b, &[]).unwrap();
        assert_eq!(e.kind, ErrorKind::CommandFailed);
        assert!(e.message.contains("vps") && e.message.contains("db"));
    }

    #[test]
    fn flavours() {
        assert_eq!(
            parse_flavour("plugin 2.29.1\n"),
            Some(Flavour::Plugin("2.29.1".into()))
        );
        assert_eq!(
            parse_flavour("standalone 1.29.2"),
            Some(Flavour::V1("1.29.2".into()))
        );
        assert_eq!(
            parse_flavour("standalone v2.20.0"),
            Some(Flavour::StandaloneV2("2.20.0".into()))
        );
        assert_eq!(parse_flavour("none"), None);
        assert!(Flavour::Plugin("2.17.0".into()).has_wait_timeout());
        assert!(!Flavour::Plugin("2.1.0".into()).has_wait());
        assert!(!Flavour::V1("1.29.2".into()).has_wait());
    }

    #[test]
    fn classify_messages() {
        let mk = |code, err: &str| Output {
            code,
            stdout: vec![],
            stderr: err.as_bytes().to_vec(),
            stdout_total: 0,
            stderr_total: err.len(),
            duration: Duration::ZERO,
        };
        let c = |o: &Output| classify("vps", "x", o).kind;
        assert_eq!(c(&mk(1, "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")), ErrorKind::Unavailable);
        assert_eq!(c(&mk(1, "failed to connect to the docker API at unix:///x; check if the path is correct and if the daemon is running")), ErrorKind::Unavailable);
        assert_eq!(c(&mk(1, "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: ...")), ErrorKind::Forbidden);
        assert_eq!(
            c(&mk(1, "Error response from daemon: No such container: web")),
            ErrorKind::NotFound
        );
        assert_eq!(c(&mk(1, "error: no such object: web")), ErrorKind::NotFound);
        assert_eq!(c(&mk(1, "The Compose file './docker-compose.yml' is invalid because:\nUnsupported config option")), ErrorKind::Invalid);
        assert_eq!(c(&mk(127, "sh: docker: not found")), ErrorKind::NotFound);
        assert_eq!(c(&mk(1, "something else")), ErrorKind::CommandFailed);
        assert!(
            classify("vps", "x", &mk(1, "Is the docker daemon running?"))
                .message
                .starts_with("vps:")
        );
    }
}

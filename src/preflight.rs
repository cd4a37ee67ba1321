//! Preflight: before a flow's first side effect, resolve every reference its plan will touch
//! against the live systems and report every problem at once, each at the catalog or config
//! `file:line` that causes it. Read-only: it lists templates, guests and features, connects to
//! SSH ports and reads environment variables; it never starts, snapshots or changes anything.
//!
//! Per service of the plan: the Semaphore template (and smoke template) exists and accepts the
//! overrides the run will pass; the Proxmox guest exists and, where the catalog asks for a
//! rollback point under the "require" policy, its storage can snapshot; the host of every command
//! or script smoke check (the catalog loader makes sure there is one) resolves and, when checks go
//! over SSH, its SSH port answers (never beyond loopback under `net.only_loopback`). Per config:
//! every secret variable and file it names is present.

use crate::catalog::model::Service;
use crate::catalog::{nested_key_line, top_key_line};
use crate::clients::{proxmox, semaphore};
use crate::config::{Config, IdOrName};
use crate::error::{RResult, RalfError};
use futures_util::stream::{self, StreamExt};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One thing that would make the run fail, where it is written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// An endpoint as the flow connected to it.
pub enum Endpoint<T> {
    /// The config has no section for it.
    Absent,
    /// Connecting failed (the message says why).
    Failed(String),
    Up(T),
}

/// What the run will do, as far as the checks depend on it.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Take the catalog's pre-install snapshots.
    pub snapshots: bool,
    /// The snapshot policy is "require": storage that cannot snapshot stops the service.
    pub require_snapshot: bool,
    /// Also run each service's Semaphore smoke template.
    pub smoke_template: bool,
    /// Command and script smoke checks go over SSH (false when a runner replaces SSH, as in the lab).
    pub smoke_over_ssh: bool,
    /// Check that the config's secrets are present.
    pub secrets: bool,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            snapshots: true,
            require_snapshot: true,
            smoke_template: true,
            smoke_over_ssh: true,
            secrets: true,
        }
    }
}

/// What the checks found: the problems (sorted by file and line) and how many references were
/// resolved.
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<Problem>,
    pub checked: usize,
    /// Things worth saying that do not stop the run (e.g. a rollback point that cannot be taken
    /// under the "if_supported" policy).
    pub notes: Vec<String>,
    /// What the run would do, resolved against the live systems, one entry per service in plan
    /// order: the template (id, name, a digest of its definition) with the overrides it gets,
    /// the smoke template, the guest (vmid, node, kind) and the snapshot, the smoke hosts.
    pub resolved: Vec<serde_json::Value>,
    /// SHA-256 (first 16 hex digits) of `resolved` and the options: the same for the same inputs
    /// and the same reality.
    pub hash: String,
}

impl Report {
    /// The problems as one `config` error that exits 2 ("nothing was started"), or Ok.
    pub fn into_result(self) -> RResult<Report> {
        if self.problems.is_empty() {
            return Ok(self);
        }
        let n = self.problems.len();
        let lines: Vec<String> = self.problems.iter().map(|p| format!("  {p}")).collect();
        Err(RalfError::config(format!(
            "preflight found {n} problem{} before anything was started (nothing was changed):\n{}",
            if n == 1 { "" } else { "s" },
            lines.join("\n")
        ))
        .with(
            "problems",
            serde_json::Value::from(
                self.problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>(),
            ),
        )
        .with("exit_code", 2))
    }
}

/// How long one SSH port may take to accept a connection.
const CONNECT_LIMIT: Duration = Duration::from_secs(3);
/// References resolved at once.
const AT_ONCE: usize = 8;

/// Check `services` (the plan) against the endpoints and the config.
pub async fn check(
    cfg: &Config,
    cfg_path: Option<&Path>,
    services: &[Service],
    sem: &Endpoint<Arc<semaphore::Client>>,
    pve: &Endpoint<Arc<proxmox::Client>>,
    o: &Opts,
) -> Report {
    let mut r = Report::default();
    let cfg_file = cfg_path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("<no config file>"));
    let cfg_text = cfg_path
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let cfg_line = |needle: &str| crate::config::line_of(&cfg_text, needle).unwrap_or(1);

    // Endpoints the plan needs but cannot have: said once, at the config.
    let needs_sem = services.iter().any(|s| s.semaphore.is_some());
    let needs_pve = services
        .iter()
        .any(|s| s.guest.is_some() && wants_pve(s, o));
    if needs_sem {
        endpoint_problem(&mut r, sem, "semaphore", &cfg_file, cfg_line("semaphore:"));
    }
    if needs_pve {
        endpoint_problem(&mut r, pve, "proxmox", &cfg_file, cfg_line("proxmox:"));
    }

    let per_service = stream::iter(services.iter())
        .map(|s| service_checks(s, sem, pve, o))
        .buffered(AT_ONCE)
        .collect::<Vec<_>>()
        .await;
    let mut hosts: BTreeSet<(String, PathBuf, usize)> = BTreeSet::new();
    for c in per_service {
        hosts.extend(c.hosts);
        r.problems.extend(c.problems);
        r.notes.extend(c.notes);
        r.checked += c.checked;
        r.resolved.push(c.resolved);
    }
    r.hash = plan_hash(&r.resolved, o);

    // Smoke hosts (every command/script check has one: the catalog loader refuses one without):
    // over SSH each resolves and answers, once however many checks name it.
    if o.smoke_over_ssh {
        let answers = stream::iter(hosts)
            .map(|(h, file, line)| async move {
                host_problem(cfg, &h).await.map(|message| Problem {
                    file,
                    line,
                    message,
                })
            })
            .buffer_unordered(AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        r.problems.extend(answers.into_iter().flatten());
    }

    if o.secrets {
        for (key, env, file) in cfg.secret_refs() {
            r.checked += 1;
            if let Some(var) = env {
                match std::env::var_os(&var) {
                    Some(v) if !v.is_empty() => {}
                    got => r.problems.push(Problem {
                        file: cfg_file.clone(),
                        line: cfg_line(&var),
                        message: format!(
                            "{key}_env names the variable {var}, which is {}",
                            if got.is_some() { "empty" } else { "not set" }
                        ),
                    }),
                }
            }
            if let Some(path) = file {
                if let Err(e) = std::fs::metadata(&path) {
                    r.problems.push(Problem {
                        file: cfg_file.clone(),
                        line: cfg_line(&path.display().to_string()),
                        message: format!("{key}_file {}: {e}", path.display()),
                    });
                }
            }
        }
    }
    r.problems.sort();
    r.problems.dedup();
    r
}

fn wants_pve(s: &Service, o: &Opts) -> bool {
    o.snapshots && wants_snapshot(s) || s.self_heal.as_ref().is_some_and(|h| h.restart)
}

fn wants_snapshot(s: &Service) -> bool {
    use crate::catalog::Snapshot;
    s.guest.is_some()
        && match &s.snapshot {
            None | Some(Snapshot::Enabled(false)) => false,
            Some(Snapshot::Named(n)) => !n.is_empty(),
            Some(Snapshot::Enabled(true)) => true,
        }
}

fn endpoint_problem<T>(r: &mut Report, e: &Endpoint<T>, what: &str, file: &Path, line: usize) {
    let message = match e {
        Endpoint::Up(_) => return,
        Endpoint::Absent => {
            format!("the plan needs {what}, but the config has no `{what}:` section")
        }
        Endpoint::Failed(why) => format!("{what} is unavailable: {why}"),
    };
    r.problems.push(Problem {
        file: file.to_path_buf(),
        line,
        message,
    });
}

/// The first 16 hex digits of the SHA-256 of a JSON value's text (serde_json's maps are sorted,
/// no preserve_order, so the text is canonical).
fn short_digest(v: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(v.to_string().as_bytes()))[..16].to_string()
}

/// The hash of a resolved plan (see [`Report::hash`]).
fn plan_hash(resolved: &[serde_json::Value], o: &Opts) -> String {
    let doc = serde_json::json!({
        "services": resolved,
        "snapshots": o.snapshots,
        "require_snapshot": o.require_snapshot,
        "smoke_template": o.smoke_template,
    });
    short_digest(&doc)
}

/// A template as the plan depends on it: what a run of it does, without the fields that change
/// with every run (the last task).
fn template_fact(t: &semaphore::Template) -> serde_json::Value {
    let mut def = t.raw.clone();
    if let Some(m) = def.as_object_mut() {
        m.retain(|k, _| !k.starts_with("last_") && k != "tasks");
    }
    serde_json::json!({ "id": t.id, "name": t.name, "definition": short_digest(&def) })
}

/// What the checks of one service found.
struct ServiceChecks {
    /// SSH hosts its command and script smoke checks run on, with the `smoke:` line.
    hosts: Vec<(String, PathBuf, usize)>,
    problems: Vec<Problem>,
    notes: Vec<String>,
    checked: usize,
    resolved: serde_json::Value,
}

/// The checks of one service.
async fn service_checks(
    s: &Service,
    sem: &Endpoint<Arc<semaphore::Client>>,
    pve: &Endpoint<Arc<proxmox::Client>>,
    o: &Opts,
) -> ServiceChecks {
    let text = std::fs::read_to_string(&s.file).unwrap_or_default();
    let at = |path: &[&str]| nested_key_line(&text, path).unwrap_or(s.line);
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut n = 0;
    let mut resolved = serde_json::json!({
        "service": s.name,
        "priority": s.priority.as_str(),
        "depends_on": s.depends_on,
        "env": s.semaphore.as_ref().map(|x| x.env.clone()).unwrap_or_default(),
        "smoke_hosts": s.smoke.iter().filter_map(|c| c.on.clone().or(s.host.clone())).collect::<Vec<_>>(),
    });
    let mut problem = |line: usize, message: String| {
        problems.push(Problem {
            file: s.file.clone(),
            line,
            message: format!("{}: {message}", s.name),
        })
    };

    match &s.semaphore {
        None => problem(
            s.line,
            "has no `semaphore:` section, so there is no template to deploy it with".into(),
        ),
        Some(spec) => {
            if spec.template.is_none() {
                problem(
                    at(&["semaphore"]),
                    "names no semaphore.template to deploy it with".into(),
                );
            }
            if let Endpoint::Up(c) = sem {
                let mut wanted = vec![(spec.template.clone(), "template", true)];
                if o.smoke_template {
                    wanted.push((spec.smoke_template.clone(), "smoke_template", false));
                }
                for (name, key, with_env) in wanted {
                    let Some(name) = name else { continue };
                    n += 1;
                    let line = at(&["semaphore", key]);
                    let r = match name.parse::<i64>() {
                        Ok(id) => c.template(&IdOrName::Id(id)).await,
                        Err(_) => c.template(&IdOrName::Name(name.clone())).await,
                    };
                    if let Ok(t) = &r {
                        resolved[key] = template_fact(t);
                    }
                    match r {
                        Err(e) => problem(line, e.message),
                        Ok(t) if with_env => {
                            let env: serde_json::Map<String, serde_json::Value> = spec
                                .env
                                .iter()
                                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                                .collect();
                            let req = semaphore::RunRequest {
                                env: (!env.is_empty()).then_some(env),
                                message: Some(format!("ralf-sh: deploy {}", s.name)),
                                ..Default::default()
                            };
                            if let Err(e) = c.prepare_run(&t, &req, false).await {
                                problem(line, e.message);
                            }
                        }
                        Ok(_) => {}
                    }
                }
            }
        }
    }

    if let (Some(g), Endpoint::Up(c)) = (&s.guest, pve) {
        if wants_pve(s, o) {
            n += 1;
            let line = at(&["guest"]);
            match c.find_guest(g.vmid).await {
                Err(e) => problem(line, e.message),
                Ok(gr) => {
                    resolved["guest"] = serde_json::json!({
                        "vmid": gr.vmid, "node": gr.node, "kind": gr.kind.as_str(),
                        "snapshot": (o.snapshots && wants_snapshot(s)).then(|| match &s.snapshot {
                            Some(crate::catalog::Snapshot::Named(n)) => n.clone(),
                            _ => format!("ralf-pre-{}", s.name),
                        }),
                    });
                    if let Some(node) = &g.node {
                        if node != &gr.node {
                            notes.push(format!(
                                "{}: guest {} is on node {}, not {node} as the catalog says",
                                s.name, g.vmid, gr.node
                            ));
                        }
                    }
                    if o.snapshots && wants_snapshot(s) {
                        match c.has_feature(&gr, "snapshot").await {
                            Ok(true) => {}
                            Ok(false) if o.require_snapshot => problem(
                                at(&["snapshot"]),
                                format!(
                                    "the storage of guest {} cannot take the snapshot the catalog asks for (policy \"require\"; `--snapshot if_supported` deploys without a rollback point)",
                                    g.vmid
                                ),
                            ),
                            Ok(false) => notes.push(format!(
                                "{}: guest {} cannot snapshot; it will be deployed without a rollback point",
                                s.name, g.vmid
                            )),
                            Err(e) => problem(line, e.message),
                        }
                    }
                }
            }
        }
    }
    if let Some(crate::catalog::Snapshot::Named(name)) = &s.snapshot {
        if let Err(why) = proxmox::names::check_snapshot_name(name, None) {
            problem(at(&["snapshot"]), format!("snapshot name `{name}`: {why}"));
        }
    }
    let smoke_line = top_key_line(&text, "smoke").unwrap_or(s.line);
    let hosts: Vec<(String, PathBuf, usize)> = s
        .smoke
        .iter()
        .filter(|c| matches!(c.kind(), "command" | "script"))
        .filter_map(|c| c.on.clone().or_else(|| s.host.clone()))
        .map(|h| (h, s.file.clone(), smoke_line))
        .collect();
    n += hosts.len();
    ServiceChecks {
        hosts,
        problems,
        notes,
        checked: n,
        resolved,
    }
}

/// Why SSH host `name` cannot be used, or None when its SSH port accepts a connection.
async fn host_problem(cfg: &Config, name: &str) -> Option<String> {
    use crate::clients::ssh::resolve;
    let t = match resolve(name, &cfg.hosts) {
        Ok(t) => t,
        Err(e) => return Some(e.message),
    };
    if cfg
        .hosts
        .get(name)
        .is_some_and(|h| h.transport.as_deref() == Some("local"))
    {
        return None;
    }
    // Through a jump host only the first hop can be reached from here.
    let mut first = &t;
    while let Some(j) = &first.jump {
        first = j;
    }
    let port = first.port.unwrap_or(22);
    let addr = first.address.clone();
    // `net.only_loopback` (the lab, tests): nothing beyond loopback is ever connected to.
    if cfg.net.only_loopback && !crate::text::is_loopback_host(&addr) {
        return None;
    }
    match tokio::time::timeout(
        CONNECT_LIMIT,
        tokio::net::TcpStream::connect((addr.as_str(), port)),
    )
    .await
    {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(format!(
            "ssh host `{name}` ({addr}:{port}) does not answer: {e}"
        )),
        Err(_) => Some(format!(
            "ssh host `{name}` ({addr}:{port}) did not answer within {}s",
            CONNECT_LIMIT.as_secs()
        )),
    }
}

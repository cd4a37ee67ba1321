//! Local stand-ins of the APIs that cannot run here (Semaphore, Proxmox, an OpenAI-compatible LLM),
//! used by `ralf-sh lab` and by the tests. Each stand-in listens on loopback only.

pub mod hosts;
pub mod image;
pub mod llm;
pub mod notify;
pub mod profiles;
pub mod proxmox;
pub mod semaphore;
pub mod smoke;

use crate::error::RResult;
pub use profiles::{LabSetup, LlmProfile, PveVersion, SemaphoreVersion};
use serde_json::{Map, Value};

/// Running stand-ins. Dropping it stops them.
#[derive(Default)]
pub struct Lab {
    /// One JSON object per stand-in, keyed by its name ("semaphore", "proxmox", "exo").
    pub info: Map<String, Value>,
    /// Whatever keeps each stand-in alive (server task handles, temp dirs); dropped with the lab.
    pub guards: Vec<Box<dyn std::any::Any + Send + Sync>>,
    /// Stand-ins a scenario declared unreachable: `run_config` points their clients at a closed
    /// loopback port (e.g. "exo" for `exo-down`).
    pub down: parking_lot::Mutex<Vec<String>>,
    /// Versions, LLM profile and catalog the stand-ins were started with.
    pub setup: LabSetup,
    /// `gates.timeout` of the run config in seconds (scenario `gate-timeout`).
    pub gate_timeout: parking_lot::Mutex<Option<u64>>,
}

impl Lab {
    /// The JSON line printed by `ralf-sh lab serve`.
    pub fn info_line(&self) -> String {
        Value::Object(self.info.clone()).to_string()
    }
}

/// Start every stand-in on 127.0.0.1 with ephemeral ports. Must be called within a tokio runtime.
pub async fn start_all(setup: &LabSetup) -> RResult<Lab> {
    crate::tls::ensure_crypto();
    let mut lab = Lab {
        setup: setup.clone(),
        ..Lab::default()
    };
    semaphore::start(&mut lab).await?;
    proxmox::start(&mut lab).await?;
    llm::start(&mut lab).await?;
    hosts::start(&mut lab).await?;
    notify::start(&mut lab).await?;
    smoke::start(&mut lab).await?;
    Ok(lab)
}

/// A config file (YAML) and environment variables that point ralf-sh at running stand-ins, from the
/// JSON object `lab serve` prints. Secrets go into the environment, never into the file.
pub fn client_config(info: &Value) -> (String, Vec<(String, String)>) {
    let mut yaml = String::new();
    let mut env = Vec::new();
    let s = |v: &Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    if let Some(sem) = info.get("semaphore") {
        if let Some(url) = s(sem, "url") {
            yaml.push_str(&format!("semaphore:\n  url: {url}\n"));
            if let Some(p) = sem.get("project_id").and_then(|p| p.as_i64()) {
                yaml.push_str(&format!("  project: {p}\n"));
            }
            if let Some(t) = s(sem, "token") {
                yaml.push_str("  token_env: RALF_LAB_SEMAPHORE_TOKEN\n");
                env.push(("RALF_LAB_SEMAPHORE_TOKEN".to_string(), t));
            }
        }
    }
    if let Some(pve) = info.get("proxmox") {
        if let Some(url) = s(pve, "url") {
            yaml.push_str(&format!("proxmox:\n  url: {url}\n"));
            if let Some(n) = s(pve, "node") {
                yaml.push_str(&format!("  node: {n}\n"));
            }
            if let Some(t) = s(pve, "token_id") {
                yaml.push_str(&format!("  token_id: \"{t}\"\n"));
            }
            if let Some(t) = s(pve, "token_secret") {
                yaml.push_str("  token_secret_env: RALF_LAB_PVE_TOKEN_SECRET\n");
                env.push(("RALF_LAB_PVE_TOKEN_SECRET".to_string(), t));
            }
            if let Some(f) = s(pve, "fingerprint") {
                yaml.push_str(&format!("  fingerprint: \"{f}\"\n"));
            }
        }
    }
    if let Some(exo) = info.get("exo") {
        if let (Some(url), Some(model)) = (s(exo, "url"), s(exo, "model")) {
            yaml.push_str(&format!("llm:\n  url: {url}\n  model: \"{model}\"\n"));
        }
    }
    if let Some(n) = info.get("notify") {
        if let Some(url) = s(n, "url") {
            // A webhook and an ntfy channel into the lab's notification sink.
            yaml.push_str(&format!(
                "notify:\n  channels:\n    - type: webhook\n      url: {url}/webhook\n    - type: ntfy\n      url: {url}/ntfy\n      topic: ralf-lab\n"
            ));
            if let Some(t) = s(n, "token") {
                yaml.push_str("      token_env: RALF_LAB_NOTIFY_TOKEN\n");
                env.push(("RALF_LAB_NOTIFY_TOKEN".to_string(), t));
                // Approval gates ask on all three chat channels of the sink; `admin` answers.
                if let Some(t) = n.get("gate_timeout").and_then(|t| t.as_u64()) {
                    yaml.push_str(&format!("gates:\n  timeout: {t}\n"));
                } else {
                    yaml.push_str("gates:\n");
                }
                yaml.push_str(&format!(
                    "  poll: 0.2\n  approvers: [\"telegram:@admin\", \"matrix:@admin:lab\", \"ntfy:admin\"]\n  channels:\n    \
                     - {{ type: telegram, chat_id: \"4242\", api_url: \"{url}/telegram\", token_env: RALF_LAB_NOTIFY_TOKEN }}\n    \
                     - {{ type: matrix, homeserver: \"{url}\", room: \"!ralf:lab\", token_env: RALF_LAB_NOTIFY_TOKEN }}\n    \
                     - {{ type: ntfy, url: \"{url}/ntfy\", topic: ralf-gates, approver: admin, token_env: RALF_LAB_NOTIFY_TOKEN }}\n"
                ));
            }
        }
    }
    if let Some(h) = info.get("hosts") {
        yaml.push_str(&hosts::config_yaml(h));
        // The lab's images are built here; nothing may ever be pulled.
        yaml.push_str("docker:\n  pull: never\n");
    }
    (yaml, env)
}

/// The `net:` section (and `RALF_LAB_SMOKE_URL`) of a lab run: every smoke check goes to the lab's
/// smoke endpoint and nothing else may be reached (`only_loopback`). Part of `run_config`; add it to
/// a `client_config` for a `lab serve` that should behave like a lab run.
pub fn net_config(info: &Value) -> (String, Vec<(String, String)>) {
    let s = |v: &Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    match info.get("smoke").map(|sm| (s(sm, "addr"), s(sm, "url"))) {
        Some((Some(addr), Some(url))) => (
            format!("net:\n  redirect_all: \"{addr}\"\n  only_loopback: true\n"),
            vec![("RALF_LAB_SMOKE_URL".to_string(), url)],
        ),
        _ => (String::new(), Vec::new()),
    }
}

/// The scenarios `ralf-sh lab --scenario NAME` knows.
pub const SCENARIOS: &[&str] = &[
    "staging-fails",
    "tests-fail",
    "production-fails",
    "vps-fails",
    "verify-fails",
    "exo-down",
    "semaphore-flaky",
    "smoke-fails",
    "slow-tasks",
    "tofu-fails",
    "ansible-fails",
    "semaphore-down",
    "phase1-fails",
    "secrets-drift",
    "gate-approve",
    "gate-deny",
    "gate-timeout",
];

/// Inject a failure scenario into running stand-ins.
///
/// - `exo-down`: the LLM is unreachable (its URL in the run config is a closed loopback port), so
///   `decide` answers the fallback and the deployment goes on; the fallback is recorded.
/// - `semaphore-flaky`: the next 3 task creations are carried out but their answers are lost
///   (connection dropped), the ambiguous failure a client must not answer with a duplicate task.
/// - `smoke-fails`: postgresql's smoke checks (`pg_isready`, port 5432) fail, so its snapshot is
///   rolled back and its dependents are skipped; and the vault group's smoke fails the way a
///   broken reverse proxy does: `RALF Vault Smoke` reports vaultwarden's TLS endpoint failing, and
///   so does the check of `https://vault.example.net` itself.
/// - `tofu-fails`: `RALF Vault Apply` fails in OpenTofu's state backend (MinIO refuses the
///   connection), and the MinIO health URL fails too.
/// - `ansible-fails`: `RALF Automation Apply` fails in Ansible on the n8n host (a `fatal:` line and
///   a recap with `n8n ... failed=1`).
/// - `semaphore-down`: Semaphore is unreachable (its URL in the run config is a closed port).
/// - `phase1-fails`: the shared base's smoke (`RALF Phase1 Smoke`) fails.
/// - `secrets-drift`: the app's `app.env` on rtx1080 holds a stale secret (the release's secrets
///   phase repairs it from the control machine's source).
/// - `gate-approve` / `gate-deny`: every approval gate's Telegram question is answered (approve /
///   deny) by the approver `admin` 300 ms after it is asked.
/// - `gate-timeout`: nobody answers, and gates time out after 3 s.
/// - `slow-tasks`: every catalog template's task takes 3 s.
/// - The five release scenarios rewrite the release target (`v1.2`) on one lab host so that it
///   fails at one phase, while the commit checked out now (`v1.1`) stays good (rollbacks succeed):
///   `staging-fails` (the target's healthcheck fails on thinkpad), `tests-fail` (its
///   `run-tests.sh` exits 1 on thinkpad), `production-fails` (healthcheck fails on rtx1080),
///   `vps-fails` (healthcheck fails on vps) and `verify-fails` (the app on vps is healthy but
///   `verify.sh` reports that it serves no routes).
pub async fn apply_scenario(lab: &Lab, name: &str) -> RResult<()> {
    if !SCENARIOS.contains(&name) {
        let hint = crate::text::did_you_mean(name, SCENARIOS.iter().copied())
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_else(|| format!("; known: {}", SCENARIOS.join(", ")));
        return Err(crate::error::RalfError::invalid(format!(
            "unknown scenario `{name}`{hint}"
        )));
    }
    let release = match name {
        "staging-fails" => Some(("thinkpad", "health")),
        "tests-fail" => Some(("thinkpad", "tests")),
        "production-fails" => Some(("rtx1080", "health")),
        "vps-fails" => Some(("vps", "health")),
        "verify-fails" => Some(("vps", "verify")),
        _ => None,
    };
    if let Some((host, broken)) = release {
        let info = lab.info.get("hosts").cloned().unwrap_or_default();
        let dir = hosts::app_dir(&info, host).ok_or_else(|| {
            crate::error::RalfError::unavailable(format!(
                "scenario `{name}` needs the lab hosts, which are not running ({})",
                info.get("reason")
                    .and_then(|r| r.as_str())
                    .unwrap_or("no lab hosts")
            ))
        })?;
        hosts::break_target(&dir, broken)?;
        return Ok(());
    }
    let url = |k: &str| {
        lab.info
            .get(k)
            .and_then(|v| v.get("url"))
            .and_then(|u| u.as_str())
            .map(str::to_string)
    };
    if name == "secrets-drift" {
        let info = lab.info.get("hosts").cloned().unwrap_or_default();
        let dir = hosts::app_dir(&info, "rtx1080").ok_or_else(|| {
            crate::error::RalfError::unavailable(format!(
                "scenario `{name}` needs the lab hosts, which are not running"
            ))
        })?;
        hosts::drift_secrets(&dir)?;
        return Ok(());
    }
    let behave = |template: &str, lines: &[&str]| {
        let url = url("semaphore").map(|u| format!("{u}/_lab/templates/{template}/behaviour"));
        let body = serde_json::json!({"duration_ms": 100, "lines": 2, "outcome": "error", "fail_lines": lines});
        async move {
            match url {
                Some(u) => control(&u, body).await,
                None => Ok(()),
            }
        }
    };
    let smoke_fail = |matches: &[&str]| {
        let url = url("smoke").map(|u| format!("{u}/_lab/fail"));
        let body = serde_json::json!({"match": matches});
        async move {
            match url {
                Some(u) => control(&u, body).await,
                None => Ok(()),
            }
        }
    };
    match name {
        "exo-down" => lab.down.lock().push("exo".into()),
        "semaphore-down" => lab.down.lock().push("semaphore".into()),
        "gate-approve" | "gate-deny" => {
            if let Some(u) = url("notify") {
                let answer = if name == "gate-approve" {
                    "approve"
                } else {
                    "deny"
                };
                control(
                    &format!("{u}/_lab/gates/auto"),
                    serde_json::json!({"answer": answer, "user": "admin"}),
                )
                .await?;
            }
        }
        "gate-timeout" => *lab.gate_timeout.lock() = Some(3),
        "tofu-fails" => {
            behave("RALF Vault Apply", TOFU_FAILURE).await?;
            smoke_fail(&["10.10.20.11:9000"]).await?;
        }
        "ansible-fails" => behave("RALF Automation Apply", ANSIBLE_FAILURE).await?,
        "phase1-fails" => behave("RALF Phase1 Smoke", PHASE1_FAILURE).await?,
        "semaphore-flaky" => {
            if let Some(u) = url("semaphore") {
                control(
                    &format!("{u}/_lab/fail_task_create"),
                    serde_json::json!({"count": 3, "mode": "drop"}),
                )
                .await?;
            }
        }
        "smoke-fails" => {
            smoke_fail(&["pg_isready", "vault.example.net"]).await?;
            behave("RALF Vault Smoke", VAULT_SMOKE_FAILURE).await?;
        }
        "slow-tasks" => {
            if let Some(u) = url("semaphore") {
                for t in semaphore::catalog_templates(&lab.setup.catalog()) {
                    control(
                        &format!("{u}/_lab/templates/{t}/behaviour"),
                        serde_json::json!({"duration_ms": 3000, "lines": 10, "outcome": "success"}),
                    )
                    .await?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// What `tofu-fails` makes `RALF Vault Apply` print: OpenTofu cannot reach its S3 state (MinIO).
const TOFU_FAILURE: &[&str] = &[
    "TASK [tofu : tofu init] *****",
    "OpenTofu v1.8.5 on linux_amd64",
    "Initializing the backend...",
    "╷",
    "│ Error: Failed to get existing workspaces: operation error S3: ListObjectsV2, https response error StatusCode: 0, RequestID: , HostID: , request send failed, Get \"http://10.10.20.11:9000/tofu-state?list-type=2&prefix=env%3A%2F\": dial tcp 10.10.20.11:9000: connect: connection refused",
    "╵",
    "fatal: [localhost]: FAILED! => {\"changed\": false, \"msg\": \"tofu init exited 1\"}",
    "PLAY RECAP ***** localhost : ok=1 changed=0 failed=1",
];

/// What `ansible-fails` makes `RALF Automation Apply` print: a play that fails on the n8n host.
const ANSIBLE_FAILURE: &[&str] = &[
    "TASK [n8n : Start n8n] *****",
    "ok: [gitea]",
    "fatal: [n8n]: FAILED! => {\"changed\": false, \"msg\": \"Unable to start service n8n: Job for n8n.service failed because the control process exited with error code.\"}",
    "PLAY RECAP *****",
    "gitea                      : ok=14   changed=0    unreachable=0    failed=0    skipped=2",
    "n8n                        : ok=9    changed=1    unreachable=0    failed=1    skipped=0",
];

/// What `smoke-fails` makes `RALF Vault Smoke` print.
const VAULT_SMOKE_FAILURE: &[&str] = &[
    "smoke: openbao http://10.10.20.21:8200/v1/sys/health -> 200 OK",
    "smoke: vaultwarden https://vault.example.net/alive -> 502 Bad Gateway",
    "smoke: FAILED 1 of 2 (vaultwarden)",
];

/// What `phase1-fails` makes `RALF Phase1 Smoke` print.
const PHASE1_FAILURE: &[&str] = &[
    "smoke: runner ssh-agent -> ok",
    "smoke: seeders /opt/ralf/seed -> missing",
    "smoke: FAILED 1 of 2 (phase1 base)",
];

/// POST a JSON body to a stand-in's control API (loopback only).
pub async fn control(url: &str, body: Value) -> RResult<()> {
    let u = reqwest::Url::parse(url)
        .map_err(|e| crate::error::RalfError::invalid(format!("lab: bad URL {url}: {e}")))?;
    if !crate::text::is_loopback_host(u.host_str().unwrap_or_default()) {
        return Err(crate::error::RalfError::invalid(format!(
            "lab: control URL {url} is not loopback"
        )));
    }
    crate::tls::ensure_crypto();
    let r = reqwest::Client::new()
        .post(u)
        .json(&body)
        .send()
        .await
        .map_err(|e| crate::error::RalfError::unavailable(format!("lab: {url}: {e}")))?;
    if !r.status().is_success() {
        return Err(crate::error::RalfError::unavailable(format!(
            "lab: {url}: HTTP {}",
            r.status()
        )));
    }
    Ok(())
}

/// The full config of a lab run: stand-in endpoints, the example catalog (when `./catalog/projects`
/// exists), and a state store at `state`.
pub fn run_config(
    lab: &Lab,
    state: &std::path::Path,
    _dir: &std::path::Path,
) -> RResult<(String, Vec<(String, String)>)> {
    let mut info = lab.info.clone();
    for name in lab.down.lock().iter() {
        // A port nothing listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(crate::error::RalfError::from)?;
        if let Some(Value::Object(o)) = info.get_mut(name) {
            o.insert(
                "url".into(),
                Value::String(format!("http://127.0.0.1:{port}")),
            );
        }
    }
    if let (Some(t), Some(Value::Object(n))) = (*lab.gate_timeout.lock(), info.get_mut("notify")) {
        n.insert("gate_timeout".into(), Value::from(t));
    }
    let info = Value::Object(info);
    let (mut yaml, mut env) = client_config(&info);
    let (net, net_env) = net_config(&info);
    yaml.push_str(&net);
    env.extend(net_env);
    let catalog = lab.setup.catalog();
    if catalog.is_dir() {
        let abs = std::fs::canonicalize(&catalog).map_err(crate::error::RalfError::from)?;
        yaml.push_str(&format!(
            "catalog:\n  path: {:?}\n",
            abs.display().to_string()
        ));
    }
    yaml.push_str(&format!(
        "state:\n  path: {:?}\n",
        state.display().to_string()
    ));
    Ok((yaml, env))
}

//! `ralf-sh doctor`: check a configuration against the real endpoints before a real run. For each
//! configured endpoint (Semaphore, Proxmox, the LLM, every notify channel, every host) it checks
//! reachability, TLS (pin or CA), that the credentials are accepted, that every `*_env` variable
//! and `*_file` the config names exists (files with safe permissions), and that each SSH host key
//! is known; then the catalog: it loads, and the preflight of every service (templates and the
//! overrides they get, guests and snapshot support, smoke hosts) passes against those endpoints.
//! Prints one table (what, result, how to fix), or with `--output json` one JSON object with the
//! rows; exit 0 when every row passes, else 1 (also when no config file is found: the rows name
//! the paths searched).

use crate::config::{Config, NotifyChannel};
use crate::error::exit;
use crate::error::{ErrorKind, RalfError};
use crate::host::Host;
use crate::preflight::Endpoint;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// One row of the table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub what: String,
    pub ok: bool,
    pub result: String,
    pub fix: String,
}

impl Row {
    fn pass(what: impl Into<String>, result: impl Into<String>) -> Row {
        Row {
            what: what.into(),
            ok: true,
            result: result.into(),
            fix: String::new(),
        }
    }
    fn fail(what: impl Into<String>, result: impl Into<String>, fix: impl Into<String>) -> Row {
        Row {
            what: what.into(),
            ok: false,
            result: result.into(),
            fix: fix.into(),
        }
    }
}

/// How long one endpoint may take to answer.
const LIMIT: Duration = Duration::from_secs(15);

pub(crate) fn run(host: &Arc<Host>) -> i32 {
    let rows = host.rt.block_on(check_all(host));
    if host.opts.json_output {
        let v = serde_json::json!({
            "ok": rows.iter().all(|r| r.ok),
            "checks": rows.len(),
            "failed": rows.iter().filter(|r| !r.ok).count(),
            "rows": rows.iter().map(|r| serde_json::json!({
                "what": r.what, "ok": r.ok, "result": r.result, "fix": r.fix,
            })).collect::<Vec<_>>(),
        });
        crate::out!("{}", crate::redact::redact(&v.to_string()));
    } else {
        // Rows carry servers' own error texts: their control sequences are shown, not obeyed.
        let table = crate::redact::redact(&render(&rows));
        crate::out!("{}", crate::text::visible_controls(&table));
    }
    if rows.iter().all(|r| r.ok) {
        exit::OK
    } else {
        exit::FAILED
    }
}

/// Every check, in table order (config and secrets first, then endpoints, then hosts).
pub(crate) async fn check_all(host: &Arc<Host>) -> Vec<Row> {
    let cfg = host.cfg().clone();
    let mut rows = vec![match &host.config.path {
        Some(p) => Row::pass("config", p.display().to_string()),
        None => Row::fail(
            "config",
            format!(
                "no config file found; searched: {}",
                crate::config::candidates(None)
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "write one (README, Configuration) at one of those paths, or pass --config FILE / set RALF_CONFIG",
        ),
    }];
    rows.extend(secret_rows(&cfg, host.config.path.as_deref()));
    rows.push(state_row(host));
    let ((sem_rows, sem), (pve_rows, pve), llm, notify, hosts) = tokio::join!(
        semaphore(&cfg),
        proxmox(&cfg),
        llm(&cfg),
        notify(&cfg),
        hosts(host)
    );
    rows.extend(sem_rows);
    rows.extend(pve_rows);
    rows.extend(llm);
    rows.extend(notify);
    rows.extend(hosts);
    rows.extend(catalog_rows(host, &cfg, &sem, &pve).await);
    rows
}

/// The catalog loads, and the preflight of every service passes (one row per problem, at its
/// `file:line`). Secrets and smoke hosts have rows of their own above.
async fn catalog_rows(
    host: &Arc<Host>,
    cfg: &Config,
    sem: &Endpoint<Arc<crate::clients::semaphore::Client>>,
    pve: &Endpoint<Arc<crate::clients::proxmox::Client>>,
) -> Vec<Row> {
    let path = match crate::session::default_catalog_path(host) {
        Ok(p) => p,
        Err(e) => {
            return vec![Row::fail(
                "catalog",
                e.message,
                "set catalog.path in the config",
            )]
        }
    };
    let what = format!("catalog {}", path.display());
    let opts = crate::catalog::LoadOpts {
        allow_priority_inversion: cfg
            .catalog
            .as_ref()
            .is_some_and(|c| c.allow_priority_inversion),
    };
    let cat = match crate::catalog::Catalog::load_with(&path, opts) {
        Ok(c) => c,
        Err(e) => {
            return vec![Row::fail(
                what,
                e.message,
                "fix the catalog files at the lines named (`ralf-sh check` runs the same loader)",
            )]
        }
    };
    let o = crate::preflight::Opts {
        // The hosts and secrets have rows of their own.
        smoke_over_ssh: false,
        secrets: false,
        ..Default::default()
    };
    let report = crate::preflight::check(
        cfg,
        host.config.path.as_deref(),
        &cat.services,
        sem,
        pve,
        &o,
    )
    .await;
    let mut rows = vec![if report.problems.is_empty() {
        Row::pass(
            what,
            format!(
                "{} services, {} references resolved against the endpoints",
                cat.services.len(),
                report.checked
            ),
        )
    } else {
        Row::fail(
            what,
            format!(
                "{} services, {} problem(s) a deploy would stop at",
                cat.services.len(),
                report.problems.len()
            ),
            "fix each line below; `deploy_all` runs the same preflight and exits 2 before changing anything",
        )
    }];
    for p in report.problems {
        rows.push(Row::fail(
            format!("  {}:{}", p.file.display(), p.line),
            p.message,
            String::new(),
        ));
    }
    rows
}

/// The state store: a SQLite file (exists or will be made), or a PostgreSQL store reached,
/// migrated and its run lease read.
fn state_row(host: &Arc<Host>) -> Row {
    let Some(o) = crate::session::pg_options(host) else {
        let p = crate::session::state_path(host);
        return Row::pass(
            "state",
            match p.exists() {
                true => format!("SQLite {}", p.display()),
                false => format!("SQLite {} (made by the first recorded run)", p.display()),
            },
        );
    };
    let st = o.and_then(|o| crate::state::Store::connect(&o));
    match st {
        Ok(st) => {
            let lease = match crate::session::lock_holder(host, &st) {
                Some(h) => format!("run lease held by {h}"),
                None => "run lease free".into(),
            };
            Row::pass(
                "state",
                format!(
                    "PostgreSQL {}: schema v{}, {lease}",
                    st.location,
                    st.schema_version()
                ),
            )
        }
        Err(e) => Row::fail(
            "state",
            e.message,
            "check state.url (host, port, database, user), the password variable named by state.password_env, and that the server accepts this machine (pg_hba.conf)",
        ),
    }
}

/// The table: `what | result | how to fix`, one row per check, then a count.
pub(crate) fn render(rows: &[Row]) -> String {
    let w = rows.iter().map(|r| r.what.len()).max().unwrap_or(4).max(4);
    let mut out = format!("{:<w$}  {:<4}  {}\n", "what", "", "result / how to fix");
    for r in rows {
        let mark = if r.ok { "ok" } else { "FAIL" };
        out.push_str(&format!(
            "{:<w$}  {:<4}  {}\n",
            r.what,
            mark,
            one_line(&r.result)
        ));
        if !r.fix.is_empty() {
            out.push_str(&format!(
                "{:<w$}  {:<4}  fix: {}\n",
                "",
                "",
                one_line(&r.fix)
            ));
        }
    }
    let failed = rows.iter().filter(|r| !r.ok).count();
    out.push_str(&format!(
        "\n{} checks, {} passed, {} failed\n",
        rows.len(),
        rows.len() - failed,
        failed
    ));
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn secret_rows(cfg: &Config, path: Option<&Path>) -> Vec<Row> {
    let mut rows = Vec::new();
    let text = path
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    // Where the config names the variable: `file:line: ` (empty without a file).
    let at = |var: &str| match (path, crate::config::line_of(&text, var)) {
        (Some(p), Some(l)) => format!("{}:{l}: ", p.display()),
        _ => String::new(),
    };
    for (key, env, file) in cfg.secret_refs() {
        if let Some(var) = env {
            let what = format!("env {var}");
            rows.push(match std::env::var_os(&var) {
                Some(v) if !v.is_empty() => Row::pass(what, format!("set ({key}_env)")),
                Some(_) => Row::fail(
                    what,
                    format!("{}{key}_env names the variable {var}, which is empty", at(&var)),
                    format!("give {var} the secret's value"),
                ),
                None => Row::fail(
                    what,
                    format!("{}{key}_env names the variable {var}, which is not set", at(&var)),
                    format!("export {var}=... (cron: in the crontab line's environment; systemd: in the unit's EnvironmentFile)"),
                ),
            });
        }
        if let Some(path) = file {
            rows.push(file_row(&key, &path));
        }
    }
    rows
}

fn file_row(key: &str, path: &Path) -> Row {
    use std::os::unix::fs::PermissionsExt;
    let what = format!("file {}", path.display());
    match std::fs::metadata(path) {
        Err(e) => Row::fail(
            what,
            format!("cannot read it ({key}_file): {e}"),
            format!(
                "create it with the secret and `chmod 600 {}`",
                path.display()
            ),
        ),
        Ok(m) if m.permissions().mode() & 0o077 != 0 => Row::fail(
            what,
            format!(
                "readable by group or others (mode {:o}, {key}_file)",
                m.permissions().mode() & 0o777
            ),
            format!("chmod 600 {}", path.display()),
        ),
        Ok(_) => Row::pass(what, format!("present, mode 0600 or stricter ({key}_file)")),
    }
}

/// What to do about an endpoint error, by kind.
fn fix_for(e: &RalfError, service: &str, key: &str) -> String {
    let m = e.message.to_lowercase();
    if m.contains("fingerprint") {
        return format!("check {key}.fingerprint against the server's certificate (the error names the one it presented); never switch to insecure: true");
    }
    if m.contains("certificate") || m.contains("tls") {
        return format!("set {key}.ca_file to the CA that signed the server's certificate (or pin its fingerprint)");
    }
    match e.kind {
        ErrorKind::Auth | ErrorKind::Forbidden => {
            format!("the {service} credentials were refused: check the token/password the config names, and its permissions on the server")
        }
        ErrorKind::Config | ErrorKind::Invalid => format!("fix the `{key}:` section of the config"),
        ErrorKind::NotFound => format!("check {key}.url and the project/node/model names"),
        _ => format!(
            "is {service} running and reachable from here? check {key}.url, DNS and firewalls"
        ),
    }
}

async fn semaphore(cfg: &Config) -> (Vec<Row>, Endpoint<Arc<crate::clients::semaphore::Client>>) {
    let Some(c) = &cfg.semaphore else {
        return (Vec::new(), Endpoint::Absent);
    };
    let what = format!("semaphore {}", c.url);
    let r = async {
        let opts = crate::clients::semaphore::ClientOptions::from_config(c)?;
        tokio::time::timeout(LIMIT, crate::clients::semaphore::Client::connect(opts))
            .await
            .map_err(|_| RalfError::timeout(format!("no answer within {}s", LIMIT.as_secs())))?
    }
    .await;
    match r {
        Ok(cl) => (
            vec![Row::pass(
                what,
                format!(
                    "reachable, token accepted, server {}, project `{}`",
                    cl.version, cl.project_name
                ),
            )],
            Endpoint::Up(cl),
        ),
        Err(e) => (
            vec![Row::fail(
                what,
                e.message.clone(),
                fix_for(&e, "Semaphore", "semaphore"),
            )],
            Endpoint::Failed(e.message),
        ),
    }
}

async fn proxmox(cfg: &Config) -> (Vec<Row>, Endpoint<Arc<crate::clients::proxmox::Client>>) {
    let Some(c) = &cfg.proxmox else {
        return (Vec::new(), Endpoint::Absent);
    };
    let what = format!("proxmox {}", c.url);
    let r = async {
        let opts = crate::clients::proxmox::Options::from_config(c)?;
        tokio::time::timeout(LIMIT, crate::clients::proxmox::Client::connect(opts))
            .await
            .map_err(|_| RalfError::timeout(format!("no answer within {}s", LIMIT.as_secs())))?
    }
    .await;
    let tls = if c.insecure {
        "TLS NOT VERIFIED (insecure: true)"
    } else if c.fingerprint.is_some() {
        "TLS pin matches"
    } else {
        "TLS verified"
    };
    match r {
        Ok(cl) => {
            let row = if c.insecure {
                Row::fail(
                    what,
                    format!("reachable, credentials accepted, PVE {}, but {tls}", pve_version(&cl.version)),
                    "pin the certificate instead: proxmox.fingerprint (the SHA-256 shown by `pvenode cert info`)",
                )
            } else {
                Row::pass(
                    what,
                    format!(
                        "reachable, {tls}, credentials accepted, PVE {}",
                        pve_version(&cl.version)
                    ),
                )
            };
            (vec![row], Endpoint::Up(Arc::new(cl)))
        }
        Err(e) => (
            vec![Row::fail(
                what,
                e.message.clone(),
                fix_for(&e, "Proxmox VE", "proxmox"),
            )],
            Endpoint::Failed(e.message),
        ),
    }
}

fn pve_version(v: &serde_json::Value) -> String {
    v.get("version")
        .and_then(|x| x.as_str())
        .unwrap_or("?")
        .to_string()
}

async fn llm(cfg: &Config) -> Vec<Row> {
    let Some(c) = &cfg.llm else {
        return Vec::new();
    };
    let what = format!("llm {}", c.url);
    let r = async {
        let mut opts = crate::clients::exo::ExoOptions::new(c.url.clone(), c.model.clone());
        opts.api_key = crate::secrets::load_ref(
            c.api_key_env.as_deref(),
            c.api_key_file.as_deref(),
            "llm api key",
        )?;
        let client = crate::clients::exo::Client::new(opts)?;
        Ok::<_, RalfError>(client.health(LIMIT).await)
    }
    .await;
    vec![match r {
        Ok(h) if h.ok => Row::pass(
            what,
            format!("reachable ({}), model `{}`", h.server, c.model),
        ),
        Ok(h) => Row::fail(
            what,
            h.error.unwrap_or_else(|| "not ready".into()),
            "is the LLM server running with the configured model (llm.model)? ralf-sh falls back without it, but decisions are then rule-based",
        ),
        Err(e) => Row::fail(what, e.message.clone(), fix_for(&e, "the LLM server", "llm")),
    }]
}

async fn notify(cfg: &Config) -> Vec<Row> {
    let mut rows = Vec::new();
    for (i, c) in cfg.notify.channels.iter().enumerate() {
        rows.push(notify_row(i, c).await);
    }
    rows
}

/// Reachability of a channel, and for Telegram and Matrix a read-only call that proves the token
/// (ntfy and webhooks cannot check a token without posting a message).
async fn notify_row(i: usize, c: &NotifyChannel) -> Row {
    let http = match crate::clients::http_builder().timeout(LIMIT).build() {
        Ok(h) => h,
        Err(e) => return Row::fail(format!("notify[{i}]"), e.to_string(), ""),
    };
    let token = c.token_env().and_then(|v| std::env::var(v).ok());
    let (what, req, proves_token) = match c {
        NotifyChannel::Ntfy { url, topic, .. } => (
            format!("notify[{i}] ntfy {url}/{topic}"),
            http.get(url.trim_end_matches('/').to_string()),
            false,
        ),
        NotifyChannel::Webhook { url, .. } => (
            format!("notify[{i}] webhook {url}"),
            http.head(url.clone()),
            false,
        ),
        NotifyChannel::Telegram { api_url, .. } => {
            let api = api_url
                .clone()
                .unwrap_or_else(|| "https://api.telegram.org".into());
            let t = token.clone().unwrap_or_default();
            (
                format!("notify[{i}] telegram {api}"),
                http.get(format!("{}/bot{t}/getMe", api.trim_end_matches('/'))),
                true,
            )
        }
        NotifyChannel::Matrix { homeserver, .. } => (
            format!("notify[{i}] matrix {homeserver}"),
            http.get(format!(
                "{}/_matrix/client/v3/account/whoami",
                homeserver.trim_end_matches('/')
            ))
            .bearer_auth(token.clone().unwrap_or_default()),
            true,
        ),
    };
    match req.send().await {
        Err(e) => {
            let msg = crate::redact::redact(&format!("not reachable: {e}"));
            Row::fail(what, msg, "check the channel's URL, DNS and firewalls")
        }
        Ok(r) if proves_token && (r.status() == 401 || r.status() == 403 || r.status() == 404) => {
            Row::fail(
                what,
                format!(
                    "reachable, but the token was refused (HTTP {})",
                    r.status().as_u16()
                ),
                "check the token the channel's token_env names",
            )
        }
        Ok(r) if proves_token && !r.status().is_success() => Row::fail(
            what,
            format!("reachable, but HTTP {}", r.status().as_u16()),
            "check the channel's URL",
        ),
        Ok(_) if proves_token => Row::pass(what, "reachable, token accepted"),
        Ok(_) => Row::pass(
            what,
            "reachable (the token is not checked: that would post a message)",
        ),
    }
}

async fn hosts(host: &Arc<Host>) -> Vec<Row> {
    let names: Vec<String> = host.cfg().hosts.keys().cloned().collect();
    let checks = names.iter().map(|name| host_row(host, name));
    futures_util::future::join_all(checks).await
}

async fn host_row(host: &Arc<Host>, name: &str) -> Row {
    let cfg = &host.cfg().hosts[name];
    let local = cfg.transport.as_deref() == Some("local");
    let what = if local {
        format!("host {name} (local transport)")
    } else {
        format!(
            "host {name} {}{}",
            cfg.address,
            cfg.port.map(|p| format!(":{p}")).unwrap_or_default()
        )
    };
    let r = async {
        let h = crate::session::ssh::handle_for(host, name)?;
        let spec = crate::clients::ssh::RunSpec {
            timeout: Some(LIMIT),
            ..crate::clients::ssh::RunSpec::new("true")
        };
        let out = tokio::time::timeout(LIMIT + Duration::from_secs(5), h.exec(&spec))
            .await
            .map_err(|_| RalfError::timeout(format!("no answer within {}s", LIMIT.as_secs())))??;
        if out.ok() {
            Ok(())
        } else {
            Err(RalfError::command_failed(format!(
                "`true` exited {} on {name}",
                out.code
            )))
        }
    }
    .await;
    match r {
        Ok(()) if local => Row::pass(what, "commands run on this machine"),
        Ok(()) => Row::pass(what, "reachable, host key known, login accepted"),
        Err(e) => {
            let m = e.message.to_lowercase();
            let fix = if m.contains("host key") {
                format!(
                    "verify the host's key fingerprint out of band, then add it: ssh-keyscan -p {} {} >> {}",
                    cfg.port.unwrap_or(22),
                    cfg.address,
                    host.cfg()
                        .ssh
                        .known_hosts_file
                        .as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "~/.ssh/known_hosts".into())
                )
            } else if e.kind == ErrorKind::Auth || m.contains("permission denied") {
                format!("check the user and identity_file for host {name}, and its authorized_keys")
            } else {
                format!(
                    "is host {name} up and reachable on port {}?",
                    cfg.port.unwrap_or(22)
                )
            };
            Row::fail(what, e.message.clone(), fix)
        }
    }
}

//! `ralf-sh serve`: a long-running controller that starts runs from triggers (config `serve:`).
//!
//! Schedule triggers: at every tick of a trigger's cron expression the tick is
//! claimed in the state store (one row per trigger and tick), so it runs exactly once across
//! restarts of `serve` and across two controllers sharing a PostgreSQL store; the run is this
//! binary started on the trigger's script, so it goes through the same engine, run lock and
//! journal as a cron run. Ticks missed while no controller ran follow `catch_up`: `one` (default)
//! runs the latest missed tick once, `none` skips them.
//!
//! Webhook triggers (`on: push` from GitHub, Gitea or Forgejo, `on: webhook` from any sender that
//! signs with HMAC-SHA256) listen at `/hooks/NAME` on `serve.listen` (see [`http`]).

pub mod dash;
pub mod hooks;
pub mod http;
pub mod runner;

use crate::config::TriggerConfig;
use crate::error::exit;
use crate::error::{RResult, RalfError};
use crate::host::Host;
use crate::state::Store;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use http::Hook;
use parking_lot::Mutex;
use runner::Runner;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

/// Run the triggers until SIGINT/SIGTERM.
pub fn run(host: &Arc<Host>) -> i32 {
    match run_impl(host) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {}", crate::redact::redact(&e.message));
            // A config mistake found before anything was started is a usage error.
            if e.kind == crate::error::ErrorKind::Config {
                exit::USAGE
            } else {
                exit::FAILED
            }
        }
    }
}

/// Whether a presented secret equals the expected one, in time that does not depend on where
/// they differ.
pub(crate) fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The shortest dashboard and `/metrics` token serve accepts.
const MIN_TOKEN_CHARS: usize = 16;

/// The token `serve.token_env` names. A variable that is named but not set, or holds a short
/// token, is a config error: serve never starts without the authentication its config asks for.
fn serve_token(cfg: &crate::config::ServeConfig) -> RResult<Option<String>> {
    let Some(var) = &cfg.token_env else {
        return Ok(None);
    };
    match crate::secrets::read_env(var, "serve.token_env")? {
        None => Err(RalfError::config(format!(
            "serve.token_env names the variable {var}, which is not set: serve would run without the authentication its config asks for (set {var}, or remove serve.token_env to serve on loopback without a token)"
        ))),
        Some(t) if t.chars().count() < MIN_TOKEN_CHARS => Err(RalfError::config(format!(
            "serve.token_env: the token in {var} has {} characters; use at least {MIN_TOKEN_CHARS} (e.g. `openssl rand -hex 24`)",
            t.chars().count()
        ))),
        Some(t) => Ok(Some(t)),
    }
}

struct Trigger {
    cfg: TriggerConfig,
    schedule: crate::config::cron::Schedule,
    script: PathBuf,
}

fn run_impl(host: &Arc<Host>) -> RResult<()> {
    let cfg = host.cfg().clone();
    // The authentication the config asks for, before anything is opened or bound.
    let token = serve_token(&cfg.serve)?;
    let public = match &cfg.serve.public_url {
        Some(u) => Some(
            crate::config::public_host(u)
                .map_err(|e| RalfError::config(format!("serve.public_url: {e}")))?,
        ),
        None => None,
    };
    if cfg.serve.triggers.is_empty() {
        tracing::info!(target: "ralf::serve", "no triggers in the config (serve.triggers): serving the dashboard and /metrics only");
    }
    let store = crate::session::store(host)?;
    let runner = runner::Runner::new(host.clone());
    let mut schedules = Vec::new();
    let mut hooks = std::collections::HashMap::new();
    let mut manual = Vec::new();
    for t in &cfg.serve.triggers {
        let script = crate::session::relative_to_config(host, &t.script);
        if !script.exists() {
            return Err(RalfError::config(format!(
                "serve trigger {}: script {} does not exist",
                t.name,
                script.display()
            )));
        }
        if t.on == "manual" {
            manual.push(runner::Launch {
                trigger: t.name.clone(),
                script,
                args: t.args.clone(),
                env: Vec::new(),
            });
            continue;
        }
        if t.on != "schedule" {
            let file = t
                .secret_file
                .as_ref()
                .map(|p| crate::session::relative_to_config(host, p));
            let what = format!("serve trigger {} signing secret", t.name);
            let secret = crate::secrets::load_ref(t.secret_env.as_deref(), file.as_deref(), &what)?
                .ok_or_else(|| RalfError::config(format!("{what}: not configured")))?;
            hooks.insert(
                t.name.clone(),
                http::Hook {
                    cfg: t.clone(),
                    secret,
                    script,
                },
            );
            continue;
        }
        let cron = crate::config::cron::parse(t.cron.as_deref().unwrap_or_default())
            .map_err(|e| RalfError::config(format!("serve trigger {}: {e}", t.name)))?;
        let tz = t
            .timezone
            .as_deref()
            .unwrap_or("UTC")
            .parse::<chrono_tz::Tz>()
            .map_err(|e| RalfError::config(format!("serve trigger {}: {e}", t.name)))?;
        schedules.push(Trigger {
            cfg: t.clone(),
            schedule: crate::config::cron::Schedule { cron, tz },
            script,
        });
    }
    let listen = cfg.serve.listen.as_deref().unwrap_or("127.0.0.1:8470");
    let listener = host
        .rt
        .block_on(tokio::net::TcpListener::bind(listen))
        .map_err(|e| RalfError::io(format!("serve: cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| RalfError::io(format!("serve: {e}")))?;
    let app = router(Served::new(
        store.clone(),
        runner.clone(),
        hooks,
        token,
        dash::Dash::new(catalog_deps(host), manual),
        Hosts::new(addr, public),
    ));
    let cancel = host.cancel.clone();
    let server = host.rt.spawn(async move {
        let svc = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, svc)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await
    });
    crate::outln!(
        "{}",
        serde_json::json!({ "listen": format!("http://{addr}") })
    );
    let me = format!(
        "{} pid {}",
        crate::state::lock::hostname(),
        std::process::id()
    );
    tracing::info!(target: "ralf::serve", "serving {} trigger(s) on http://{addr} and the state store {} as {me}", cfg.serve.triggers.len(), store.location);
    std::thread::scope(|s| {
        for t in &schedules {
            let (store, me, runner) = (store.clone(), me.clone(), runner.clone());
            s.spawn(move || schedule_loop(host, &store, &runner, t, &me));
        }
    });
    if let Err(e) = host.rt.block_on(server) {
        tracing::warn!(target: "ralf::serve", "the HTTP listener ended: {e}");
    }
    tracing::info!(target: "ralf::serve", "stopped");
    Ok(())
}

/// The catalog's dependencies (service -> its depends_on) for the dashboard's graphs; empty when
/// no catalog is configured or it does not load (the graph then has no edges; a warning says why).
fn catalog_deps(host: &Arc<Host>) -> std::collections::HashMap<String, Vec<String>> {
    if host.cfg().catalog.is_none() {
        return Default::default();
    }
    let loaded = crate::session::default_catalog_path(host).and_then(crate::catalog::Catalog::load);
    match loaded {
        Ok(c) => c
            .services
            .iter()
            .map(|s| (s.name.clone(), s.depends_on.clone()))
            .collect(),
        Err(e) => {
            tracing::warn!(target: "ralf::serve", "dashboard graphs without dependencies: the catalog does not load: {e}");
            Default::default()
        }
    }
}

/// Sleep until `t` or cancellation; false when cancelled.
fn sleep_until(host: &Host, t: DateTime<Utc>) -> bool {
    loop {
        if host.cancel.is_cancelled() {
            return false;
        }
        let left = (t - Utc::now()).to_std().unwrap_or_default();
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(200)));
    }
}

fn schedule_loop(
    host: &Arc<Host>,
    store: &Arc<Store>,
    runner: &Arc<runner::Runner>,
    t: &Trigger,
    me: &str,
) {
    let name = &t.cfg.name;
    let now = Utc::now();
    // Ticks missed while no controller served this trigger.
    match store.last_tick(name) {
        Ok(Some(last)) => {
            let last = DateTime::parse_from_rfc3339(&last)
                .map(|d| d.with_timezone(&Utc))
                .unwrap_or(now);
            if let Some(missed) = t.schedule.latest_between(last, now) {
                match t.cfg.catch_up.as_deref().unwrap_or("one") {
                    "none" => {
                        tracing::info!(target: "ralf::serve", "trigger {name}: ticks missed since {} skipped (catch_up: none)", crate::config::cron::tick_key(last))
                    }
                    _ => {
                        tracing::info!(target: "ralf::serve", "trigger {name}: catching up the latest missed tick {} (catch_up: one)", crate::config::cron::tick_key(missed));
                        fire(store, runner, t, missed, me);
                    }
                }
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(target: "ralf::serve", "trigger {name}: cannot read its last tick: {e}")
        }
    }
    let mut after = now;
    while let Some(next) = t.schedule.next_after(after) {
        if !sleep_until(host, next) {
            return;
        }
        fire(store, runner, t, next, me);
        after = next;
    }
    tracing::warn!(target: "ralf::serve", "trigger {name}: its schedule has no further ticks");
}

/// Claim the tick; the controller that claims it starts the run.
fn fire(store: &Store, runner: &Arc<runner::Runner>, t: &Trigger, tick: DateTime<Utc>, me: &str) {
    let name = &t.cfg.name;
    let key = crate::config::cron::tick_key(tick);
    let run_id = crate::host::new_run_id();
    match store.claim_tick(name, &key, &run_id, me) {
        Ok(true) => {
            tracing::info!(target: "ralf::serve", "trigger {name}: tick {key}");
            runner.start(
                &run_id,
                &runner::Launch {
                    trigger: name.clone(),
                    script: t.script.clone(),
                    args: t.cfg.args.clone(),
                    env: vec![("RALF_TICK".into(), key)],
                },
            );
        }
        Ok(false) => {
            tracing::debug!(target: "ralf::serve", "trigger {name}: tick {key} was claimed by another controller")
        }
        Err(e) => {
            tracing::error!(target: "ralf::serve", "trigger {name}: cannot claim tick {key}: {e}")
        }
    }
}

pub struct Served {
    pub dash: dash::Dash,
    pub store: Arc<Store>,
    pub runner: Arc<Runner>,
    pub hooks: HashMap<String, Hook>,
    /// Bearer token `/metrics` requires (listening beyond loopback).
    pub token: Option<String>,
    /// The `Host` headers answered.
    hosts: Hosts,
    backoff: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    deliveries: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// One delivery at a time between the replay check and its record.
    admit: tokio::sync::Mutex<()>,
}

impl Served {
    pub(crate) fn new(
        store: Arc<Store>,
        runner: Arc<Runner>,
        hooks: HashMap<String, Hook>,
        token: Option<String>,
        dash: dash::Dash,
        hosts: Hosts,
    ) -> Arc<Served> {
        Arc::new(Served {
            dash,
            store,
            runner,
            hooks,
            token,
            hosts,
            backoff: Mutex::new(HashMap::new()),
            deliveries: Mutex::new(BTreeMap::new()),
            admit: tokio::sync::Mutex::new(()),
        })
    }

    fn count(&self, trigger: &str, result: &'static str) {
        *self
            .deliveries
            .lock()
            .entry((trigger.to_string(), result))
            .or_default() += 1;
    }
}

/// The controller's HTTP surface: the dashboard pages (behind the login), the webhooks, metrics
/// and the health check, with the body limit and the security headers on every answer.
pub(crate) fn router(s: Arc<Served>) -> Router {
    let pages = dash::routes().layer(axum::middleware::from_fn_with_state(
        s.clone(),
        dash::require_login,
    ));
    Router::new()
        .merge(pages)
        .merge(dash::login_routes())
        .route("/hooks/{name}", post(http::hook))
        .route("/metrics", get(http::metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(hooks::MAX_BODY))
        .layer(axum::middleware::map_response(http::security_headers))
        .layer(axum::middleware::from_fn_with_state(s.clone(), check_host))
        .with_state(s)
}

/// Which `Host` headers the listener answers to: its own address (any IP literal when it listens
/// on all addresses, any loopback one on loopback), `localhost` when it listens on loopback or on
/// all addresses, and `serve.public_url`'s host. A page that points a name of its own at this
/// machine (DNS rebinding) sends that name and is refused.
pub(crate) struct Hosts {
    listen: std::net::SocketAddr,
    public: Option<String>,
}

impl Hosts {
    pub(crate) fn new(listen: std::net::SocketAddr, public: Option<String>) -> Hosts {
        Hosts { listen, public }
    }

    pub(crate) fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        if self.public.as_deref() == Some(host.as_str()) {
            return true;
        }
        let (name, port) = match host.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((ip, rest)) => (ip, rest.strip_prefix(':')),
                None => return false,
            },
            None => match host.rsplit_once(':') {
                Some((n, p)) => (n, Some(p)),
                None => (host.as_str(), None),
            },
        };
        if port.and_then(|p| p.parse::<u16>().ok()) != Some(self.listen.port()) {
            return false;
        }
        let ip = self.listen.ip();
        match name.parse::<IpAddr>() {
            Ok(given) => {
                ip.is_unspecified() || given == ip || (ip.is_loopback() && given.is_loopback())
            }
            Err(_) => name == "localhost" && (ip.is_loopback() || ip.is_unspecified()),
        }
    }
}

/// Refuses a request whose `Host` this listener does not answer to (421); requests without one
/// (HTTP/1.0 tools) pass.
async fn check_host(
    axum::extract::State(s): axum::extract::State<Arc<Served>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(h) = req.headers().get(axum::http::header::HOST) {
        if !h.to_str().is_ok_and(|h| s.hosts.allows(h)) {
            return (
                axum::http::StatusCode::MISDIRECTED_REQUEST,
                "this server does not answer to that host name (serve.public_url names the one it answers to besides its address)\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::Hosts;

    #[test]
    fn host_headers_answered() {
        let lo = Hosts::new("127.0.0.1:8470".parse().unwrap(), None);
        for ok in [
            "127.0.0.1:8470",
            "localhost:8470",
            "LOCALHOST:8470",
            "[::1]:8470",
            "127.0.0.2:8470",
        ] {
            assert!(lo.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example:8470",
            "127.0.0.1:8471",
            "127.0.0.1",
            "localhost",
            "10.0.0.1:8470",
            "[::1",
        ] {
            assert!(!lo.allows(bad), "{bad}");
        }
        let any = Hosts::new(
            "0.0.0.0:8470".parse().unwrap(),
            Some("ralf.example.org".into()),
        );
        assert!(any.allows("192.0.2.7:8470") && any.allows("ralf.example.org"));
        assert!(!any.allows("ralf.example.org:8470") && !any.allows("evil.example:8470"));
    }
}

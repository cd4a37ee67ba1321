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
            exit::FAILED
        }
    }
}

struct Trigger {
    cfg: TriggerConfig,
    schedule: crate::config::cron::Schedule,
    script: PathBuf,
}

fn run_impl(host: &Arc<Host>) -> RResult<()> {
    let cfg = host.cfg().clone();
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
    let token = match &cfg.serve.token_env {
        Some(var) => crate::secrets::read_env(var, "serve.token_env")?,
        None => None,
    };
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
    backoff: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    deliveries: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// One delivery at a time between the replay check and its record.
    admit: tokio::sync::Mutex<()>,
}

impl Served {
    pub fn new(
        store: Arc<Store>,
        runner: Arc<Runner>,
        hooks: HashMap<String, Hook>,
        token: Option<String>,
        dash: dash::Dash,
    ) -> Arc<Served> {
        Arc::new(Served {
            dash,
            store,
            runner,
            hooks,
            token,
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
pub fn router(s: Arc<Served>) -> Router {
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
        .with_state(s)
}

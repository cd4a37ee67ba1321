//! `ralf-sh serve`: a long-running controller that starts runs from triggers (config `serve:`).
//!
//! This version has schedule triggers. At every tick of a trigger's cron expression the tick is
//! claimed in the state store (one row per trigger and tick), so it runs exactly once across
//! restarts of `serve` and across two controllers sharing a PostgreSQL store; the run is this
//! binary started on the trigger's script, so it goes through the same engine, run lock and
//! journal as a cron run. Ticks missed while no controller ran follow `catch_up`: `one` (default)
//! runs the latest missed tick once, `none` skips them.

pub mod schedule;

use crate::config::TriggerConfig;
use crate::engine::error::{RResult, RalfError};
use crate::engine::exit;
use crate::host::Host;
use crate::state::Store;
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Run the triggers until SIGINT/SIGTERM.
pub fn run(host: &Arc<Host>) -> i32 {
    match run_impl(host) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {}", crate::secrets::redact(&e.message));
            exit::FAILED
        }
    }
}

struct Trigger {
    cfg: TriggerConfig,
    schedule: schedule::Schedule,
    script: PathBuf,
}

fn run_impl(host: &Arc<Host>) -> RResult<()> {
    let cfg = host.cfg().clone();
    if cfg.serve.triggers.is_empty() {
        return Err(RalfError::config(
            "serve: no triggers in the config (`serve: { triggers: [ { name, on: schedule, cron, script } ] }`)",
        ));
    }
    let store = crate::state::store(host)?;
    let mut triggers = Vec::new();
    for t in &cfg.serve.triggers {
        let cron = schedule::parse(t.cron.as_deref().unwrap_or_default())
            .map_err(|e| RalfError::config(format!("serve trigger {}: {e}", t.name)))?;
        let tz = t
            .timezone
            .as_deref()
            .unwrap_or("UTC")
            .parse::<chrono_tz::Tz>()
            .map_err(|e| RalfError::config(format!("serve trigger {}: {e}", t.name)))?;
        let script = crate::state::relative_to_config(host, &t.script);
        if !script.exists() {
            return Err(RalfError::config(format!(
                "serve trigger {}: script {} does not exist",
                t.name,
                script.display()
            )));
        }
        triggers.push(Trigger {
            cfg: t.clone(),
            schedule: schedule::Schedule { cron, tz },
            script,
        });
    }
    let me = format!(
        "{} pid {}",
        crate::state::lock::hostname(),
        std::process::id()
    );
    tracing::info!(target: "ralf::serve", "serving {} trigger(s) on the state store {} as {me}", triggers.len(), store.location);
    std::thread::scope(|s| {
        for t in &triggers {
            let (store, me) = (store.clone(), me.clone());
            s.spawn(move || schedule_loop(host, &store, t, &me));
        }
    });
    tracing::info!(target: "ralf::serve", "stopped");
    Ok(())
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

fn schedule_loop(host: &Arc<Host>, store: &Arc<Store>, t: &Trigger, me: &str) {
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
                        tracing::info!(target: "ralf::serve", "trigger {name}: ticks missed since {} skipped (catch_up: none)", schedule::tick_key(last))
                    }
                    _ => {
                        tracing::info!(target: "ralf::serve", "trigger {name}: catching up the latest missed tick {} (catch_up: one)", schedule::tick_key(missed));
                        fire(host, store, t, missed, me);
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
        fire(host, store, t, next, me);
        after = next;
    }
    tracing::warn!(target: "ralf::serve", "trigger {name}: its schedule has no further ticks");
}

/// This binary's path; after an upgrade replaced the file, the new one at the same path (Linux
/// reports the running, deleted one as `PATH (deleted)`).
fn this_binary() -> std::io::Result<PathBuf> {
    let p = std::env::current_exe()?;
    Ok(
        match p.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
            Some(s) => PathBuf::from(s),
            None => p,
        },
    )
}

/// Claim the tick; the controller that claims it starts the run (a child process of this binary).
fn fire(host: &Arc<Host>, store: &Store, t: &Trigger, tick: DateTime<Utc>, me: &str) {
    let name = &t.cfg.name;
    let key = schedule::tick_key(tick);
    let run_id = crate::host::new_run_id();
    match store.claim_tick(name, &key, &run_id, me) {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(target: "ralf::serve", "trigger {name}: tick {key} was claimed by another controller");
            return;
        }
        Err(e) => {
            tracing::error!(target: "ralf::serve", "trigger {name}: cannot claim tick {key}: {e}");
            return;
        }
    }
    let exe = match this_binary() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(target: "ralf::serve", "trigger {name}: cannot find this binary: {e}");
            return;
        }
    };
    let mut cmd = std::process::Command::new(exe);
    if let Some(c) = &host.config.path {
        cmd.arg("--config").arg(c);
    }
    cmd.arg("--run-id")
        .arg(&run_id)
        .arg(&t.script)
        .args(&t.cfg.args)
        .stdin(std::process::Stdio::null());
    match cmd.spawn() {
        Ok(mut child) => {
            tracing::info!(target: "ralf::serve", "trigger {name}: tick {key}: run {run_id} started ({} {})", t.script.display(), t.cfg.args.join(" "));
            let (name, run_id) = (name.clone(), run_id.clone());
            std::thread::spawn(move || match child.wait() {
                Ok(st) => {
                    tracing::info!(target: "ralf::serve", "trigger {name}: run {run_id} ended ({st})")
                }
                Err(e) => {
                    tracing::warn!(target: "ralf::serve", "trigger {name}: run {run_id}: {e}")
                }
            });
        }
        Err(e) => {
            tracing::error!(target: "ralf::serve", "trigger {name}: tick {key}: cannot start the run: {e}")
        }
    }
}

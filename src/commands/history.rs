//! `ralf-sh history` and `ralf-sh resume`: the state store for people (the app layer; `state`
//! stays below it).

use crate::error::{RResult, RalfError};
use crate::host::Host;
use crate::session::{existing_store, lock_holder, store_location};
use crate::state::{RunRecord, StepRecord};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

fn print_runs(runs: &[RunRecord]) {
    if runs.is_empty() {
        crate::outln!("no runs recorded");
        return;
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.started_at.clone(),
                duration(&r.started_at, r.ended_at.as_deref()),
                r.status.clone(),
                r.exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
                r.attempts.to_string(),
                one_line(&format!("{} {}", r.script, r.args.join(" ")), 70),
            ]
        })
        .collect();
    let headers = [
        "run", "started", "duration", "status", "exit", "try", "script",
    ];
    crate::outln!("{}", crate::text::table(&headers.map(String::from), &rows));
}

/// First line of `s`, at most `max` characters (marked with `…` when cut).
fn one_line(s: &str, max: usize) -> String {
    let s = s.trim();
    let first = s.lines().next().unwrap_or("");
    let cut = first.chars().count() > max || first.len() < s.len();
    let mut out: String = first.chars().take(max).collect();
    if cut {
        out.push('…');
    }
    out
}

fn duration(start: &str, end: Option<&str>) -> String {
    let (Ok(s), Some(Ok(e))) = (
        chrono::DateTime::parse_from_rfc3339(start),
        end.map(chrono::DateTime::parse_from_rfc3339),
    ) else {
        return "-".into();
    };
    let d = (e - s).to_std().unwrap_or_default();
    crate::text::human_duration(d)
}

fn print_steps(steps: &[StepRecord]) {
    if steps.is_empty() {
        crate::outln!("no steps recorded");
        return;
    }
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|s| {
            let mut details = match &s.details {
                Value::Object(o) if !o.is_empty() => Value::Object(o.clone()).to_string(),
                _ => String::new(),
            };
            if let Some(e) = &s.error {
                if !details.is_empty() {
                    details.push(' ');
                }
                details.push_str(&format!("error: {}", e.lines().next().unwrap_or("")));
            }
            vec![
                s.key.clone(),
                s.service.clone().unwrap_or_else(|| "-".into()),
                s.attempt.to_string(),
                s.status.clone(),
                duration(&s.started_at, s.ended_at.as_deref()),
                details,
            ]
        })
        .collect();
    let headers = ["step", "service", "try", "status", "duration", "details"];
    crate::outln!("{}", crate::text::table(&headers.map(String::from), &rows));
}

fn history_impl(
    host: &Arc<Host>,
    service: Option<String>,
    run: Option<String>,
    json: bool,
) -> RResult<()> {
    let path = store_location(host);
    let Some(st) = existing_store(host)? else {
        if json {
            crate::outln!("[]");
        } else {
            crate::outln!("no runs recorded yet (no state store at {path})");
        }
        return Ok(());
    };
    if let Some(id) = run {
        let r = st.run(&id)?.ok_or_else(|| {
            RalfError::not_found(format!("no run `{id}` in the state store at {path}"))
        })?;
        let steps = st.steps(&id)?;
        let events = st.events(&id)?;
        if json {
            let v = serde_json::json!({ "run": r, "steps": steps, "events": events });
            crate::outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            print_runs(std::slice::from_ref(&r));
            crate::outln!();
            print_steps(&steps);
            if !events.is_empty() {
                crate::outln!(
                    "\n{} event(s): {}",
                    events.len(),
                    events
                        .iter()
                        .map(|e| e.kind.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        return Ok(());
    }
    if let Some(name) = service {
        let cur = st.service_status(&name)?;
        let hist = st.service_history(&name, 50)?;
        let runs = st.runs_for_service(&name, 20)?;
        if json {
            let v = serde_json::json!({ "service": name, "status": cur, "history": hist, "runs": runs });
            crate::outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            match &cur {
                Some(c) => crate::outln!(
                    "{name}: {} since {}{}{}",
                    c.status,
                    c.at,
                    c.run_id
                        .as_ref()
                        .map(|r| format!(" (run {r})"))
                        .unwrap_or_default(),
                    c.version
                        .as_ref()
                        .map(|v| format!(", version {v}"))
                        .unwrap_or_default()
                ),
                None => crate::outln!("{name}: pending (no status recorded)"),
            }
            if !hist.is_empty() {
                crate::outln!(
                    "\n{:<24}  {:<11}  {:<22}  {:<12}  DETAILS",
                    "AT",
                    "STATUS",
                    "RUN",
                    "VERSION"
                );
                for h in &hist {
                    crate::outln!(
                        "{:<24}  {:<11}  {:<22}  {:<12}  {}",
                        h.at,
                        h.status,
                        h.run_id.as_deref().unwrap_or("-"),
                        h.version.as_deref().unwrap_or("-"),
                        h.details
                    );
                }
            }
            if !runs.is_empty() {
                crate::outln!();
                print_runs(&runs);
            }
        }
        return Ok(());
    }
    let runs = st.runs(30)?;
    if json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&runs).unwrap_or_default()
        );
    } else {
        if let Some(h) = lock_holder(host, &st) {
            crate::outln!("run lock held by {h}\n");
        }
        print_runs(&runs);
    }
    Ok(())
}

/// `ralf-sh history [--service NAME] [--run ID] [--json]` (read-only; never takes the lock).
pub(crate) fn cli_history(
    host: &Arc<Host>,
    service: Option<String>,
    run: Option<String>,
    json: bool,
) -> i32 {
    match history_impl(host, service, run, json) {
        Ok(()) => crate::error::exit::OK,
        Err(e) => {
            eprintln!("error: {}", crate::redact::redact(&e.message));
            crate::error::exit::FAILED
        }
    }
}

/// `ralf-sh resume RUN_ID`: re-run the recorded script with its args under the same run id;
/// steps already done are skipped by `run::step`.
pub(crate) fn cli_resume(host: &Arc<Host>, run_id: &str, abandon: bool) -> i32 {
    let path = store_location(host);
    let fail = |msg: String, code: i32| {
        eprintln!("error: {}", crate::redact::redact(&msg));
        code
    };
    let st = match existing_store(host) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return fail(
                format!("no state store at {path}: nothing to resume"),
                crate::error::exit::FAILED,
            )
        }
        Err(e) => return fail(e.message, crate::error::exit::FAILED),
    };
    let run = match st.run(run_id) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return fail(
                format!("no run `{run_id}` in the state store at {path} (see `ralf-sh history`)"),
                crate::error::exit::FAILED,
            )
        }
        Err(e) => return fail(e.message, crate::error::exit::FAILED),
    };
    if abandon {
        if run.status == "running" {
            return fail(
                format!(
                    "run {run_id} is still running (pid {} on {}); stop it first",
                    run.pid, run.host
                ),
                crate::error::exit::LOCKED,
            );
        }
        return match st.end_run(run_id, "abandoned", crate::error::exit::FAILED) {
            Ok(()) => {
                crate::outln!(
                    "run {run_id} abandoned: a new run of {} starts over instead of resuming it (Semaphore tasks it started are not stopped)",
                    run.script
                );
                crate::error::exit::OK
            }
            Err(e) => fail(e.message, crate::error::exit::FAILED),
        };
    }
    match run.status.as_str() {
        "ok" => {
            crate::outln!("run {run_id} already completed successfully; nothing to resume");
            return crate::error::exit::OK;
        }
        "running" => {
            return fail(
                format!(
                    "run {run_id} is still running (pid {} on {})",
                    run.pid, run.host
                ),
                crate::error::exit::LOCKED,
            )
        }
        _ => {}
    }
    let host2 = host.with_run_id(run_id.to_string());
    tracing::info!(target: "ralf::state", "resuming run {run_id} ({} {})", run.script, run.args.join(" "));
    if run.script == "-e" {
        let expr = run.args.first().cloned().unwrap_or_default();
        return crate::engine::run::run_eval(&host2, &expr);
    }
    let script = PathBuf::from(&run.script);
    if !script.exists() {
        return fail(
            format!("run {run_id}: script {} no longer exists", script.display()),
            crate::error::exit::FAILED,
        );
    }
    crate::engine::run::run_script(&host2, &script, run.args.clone())
}

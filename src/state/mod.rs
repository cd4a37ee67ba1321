//! State store (SQLite): runs, steps, service status, events; the run lock; the run journal.
//!
//! Where: config `state.path` (relative to the config file), else `$XDG_STATE_HOME/ralf/state.db`.
//!
//! When the journal is attached: a script run ([`begin_run`], called by `app`) opens the store at
//! once when the config has a `state` or `catalog` section or the database already exists, so
//! every event of the run is recorded; otherwise the store is opened lazily, the first time the
//! run uses it (`run::step`, `run::lock`, `catalog::mark`, ...). Read-only use (`svc.status`,
//! `catalog::history`, `ralf-sh history`) opens the store without recording a run.

pub mod lock;
pub mod store;

use crate::engine::error::{RResult, RalfError};
use crate::host::{Host, Journal};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::ThreadId;
pub use store::{EventRecord, RunRecord, ServiceRecord, StepRecord, Store};

/// The state database path for this host's config.
pub fn state_path(host: &Host) -> PathBuf {
    match host.cfg().state.as_ref() {
        Some(s) => relative_to_config(host, &s.path),
        None => crate::config::xdg_state_home().join("ralf/state.db"),
    }
}

/// A path from the config, relative to the config file's folder.
pub fn relative_to_config(host: &Host, p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match host.config.path.as_ref().and_then(|c| c.parent()) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

/// The run lock file beside the database.
pub fn lock_path(host: &Host) -> PathBuf {
    let mut p = state_path(host).into_os_string();
    p.push(".lock");
    PathBuf::from(p)
}

/// What the script run is (recorded with the run, re-run by `resume`).
#[derive(Debug, Clone, Default)]
pub struct RunMeta {
    pub script: String,
    pub args: Vec<String>,
}

/// Per-host state: the opened store, the run context (once the run is recorded).
#[derive(Clone, Default)]
struct Slot(Arc<SlotInner>);

#[derive(Default)]
struct SlotInner {
    store: Mutex<Option<Arc<Store>>>,
    run: Mutex<Option<Arc<RunCtx>>>,
    meta: Mutex<Option<RunMeta>>,
}

fn slot(host: &Host) -> Slot {
    host.extension(Slot::default)
}

/// The recorded run: the store, the journal, the lock when taken.
pub struct RunCtx {
    pub store: Arc<Store>,
    pub journal: Arc<RunJournal>,
    pub run_id: String,
    lock: Mutex<Option<lock::RunLock>>,
}

impl RunCtx {
    /// Take the run lock (idempotent within the run).
    pub fn lock(&self, host: &Host) -> RResult<lock::Holder> {
        let mut l = self.lock.lock();
        if let Some(held) = l.as_ref() {
            return Ok(held.holder.clone());
        }
        let me = lock::Holder {
            pid: std::process::id() as i64,
            host: lock::hostname(),
            run_id: self.run_id.clone(),
            since: store::now(),
            script: host
                .script
                .read()
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        };
        let held = lock::acquire(&lock_path(host), me)?;
        let h = held.holder.clone();
        *l = Some(held);
        Ok(h)
    }

    pub fn holds_lock(&self) -> bool {
        self.lock.lock().is_some()
    }
}

/// The state store for reading (opened and migrated on first use, cached on the host).
pub fn store(host: &Host) -> RResult<Arc<Store>> {
    let s = slot(host);
    let mut g = s.0.store.lock();
    if let Some(st) = g.as_ref() {
        return Ok(st.clone());
    }
    let st = Arc::new(Store::open(&state_path(host))?);
    *g = Some(st.clone());
    Ok(st)
}

/// The store only if its file already exists (never creates it).
pub fn existing_store(host: &Host) -> RResult<Option<Arc<Store>>> {
    if slot(host).0.store.lock().is_none() && !state_path(host).exists() {
        return Ok(None);
    }
    store(host).map(Some)
}

/// The recorded run (records it and attaches the journal on first use).
pub fn run_ctx(host: &Host) -> RResult<Arc<RunCtx>> {
    let s = slot(host);
    let mut g = s.0.run.lock();
    if let Some(r) = g.as_ref() {
        return Ok(r.clone());
    }
    let st = store(host)?;
    let meta = s.0.meta.lock().clone().unwrap_or_else(|| RunMeta {
        script: host
            .script
            .read()
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<repl>".into()),
        args: Vec::new(),
    });
    let rec = RunRecord {
        id: host.run_id.clone(),
        script: meta.script,
        args: meta.args,
        user: std::env::var("USER").unwrap_or_else(|_| unsafe { libc::getuid() }.to_string()),
        host: lock::hostname(),
        pid: std::process::id() as i64,
        started_at: store::now(),
        ended_at: None,
        status: "running".into(),
        exit_code: None,
        attempts: 1,
    };
    st.begin_run(&rec)?;
    let journal = Arc::new(RunJournal {
        store: st.clone(),
        run_id: host.run_id.clone(),
        current: Mutex::new(HashMap::new()),
    });
    host.set_journal(journal.clone());
    let ctx = Arc::new(RunCtx {
        store: st,
        journal,
        run_id: host.run_id.clone(),
        lock: Mutex::new(None),
    });
    *g = Some(ctx.clone());
    Ok(ctx)
}

/// Called by `app` when a script (or `-e`) starts. Records what is run; opens the store and the
/// journal at once when the config names a state store or a catalog, or the database exists.
pub fn begin_run(host: &Host, script: &str, args: &[String]) {
    *slot(host).0.meta.lock() = Some(RunMeta {
        script: script.to_string(),
        args: args.to_vec(),
    });
    let eager =
        host.cfg().state.is_some() || host.cfg().catalog.is_some() || state_path(host).exists();
    if eager {
        if let Err(e) = run_ctx(host) {
            tracing::warn!(target: "ralf::state", "state store unavailable, this run is not recorded: {e}");
        }
    }
}

/// The interrupted run that a fresh start of `script ARGS` continues instead of starting over:
/// the newest run of the same script and arguments on this machine, when it never finished (its
/// process is gone) or was cancelled, and some of its steps did not finish. Starting over would
/// start a second Semaphore task for a step whose task may still be running; resuming re-attaches.
pub fn interrupted_run(host: &Host, script: &str, args: &[String]) -> Option<RunRecord> {
    let st = existing_store(host).ok()??;
    let r = st
        .runs(500)
        .ok()?
        .into_iter()
        .find(|r| r.script == script && r.args == args)?;
    if !matches!(r.status.as_str(), "interrupted" | "cancelled") || r.host != lock::hostname() {
        return None;
    }
    let steps = st.steps(&r.id).ok()?;
    let done: std::collections::HashSet<&str> = steps
        .iter()
        .filter(|s| s.status == "done")
        .map(|s| s.key.as_str())
        .collect();
    steps
        .iter()
        .any(|s| !done.contains(s.key.as_str()))
        .then_some(r)
}

/// Called by `app` when the run ends: records the end and exit code, releases the run lock.
/// Does nothing when the run never used the state store.
pub fn finish_run(host: &Host, exit_code: i32) {
    let Some(ctx) = slot(host).0.run.lock().take() else {
        return;
    };
    let status = match exit_code {
        0 => "ok",
        crate::engine::exit::CANCELLED => "cancelled",
        crate::engine::exit::LOCKED => "locked",
        crate::engine::exit::PARTIAL => "partial",
        _ => "failed",
    };
    if let Err(e) = ctx.store.end_run(&ctx.run_id, status, exit_code) {
        tracing::warn!(target: "ralf::state", "could not record the end of run {}: {e}", ctx.run_id);
    }
    drop(ctx.lock.lock().take());
}

/// The journal of one run: events and step details go to the store.
pub struct RunJournal {
    pub store: Arc<Store>,
    pub run_id: String,
    /// Steps open on each thread (innermost last).
    current: Mutex<HashMap<ThreadId, Vec<(i64, String)>>>,
}

impl RunJournal {
    pub fn push_step(&self, id: i64, key: &str) {
        self.current
            .lock()
            .entry(std::thread::current().id())
            .or_default()
            .push((id, key.to_string()));
    }

    pub fn pop_step(&self, id: i64) {
        let mut g = self.current.lock();
        let tid = std::thread::current().id();
        if let Some(v) = g.get_mut(&tid) {
            v.retain(|(i, _)| *i != id);
            if v.is_empty() {
                g.remove(&tid);
            }
        }
    }

    /// The step running on this thread; else the only step open in the run (e.g. inside `parallel`).
    fn current_step(&self) -> Option<(i64, String)> {
        let g = self.current.lock();
        if let Some(s) = g.get(&std::thread::current().id()).and_then(|v| v.last()) {
            return Some(s.clone());
        }
        let open: Vec<&(i64, String)> = g.values().filter_map(|v| v.last()).collect();
        if open.len() == 1 {
            return Some(open[0].clone());
        }
        None
    }
}

impl Journal for RunJournal {
    fn event(&self, kind: &str, data: &Value) {
        if let Err(e) = self.store.event(Some(&self.run_id), kind, data) {
            tracing::warn!(target: "ralf::state", "could not record event {kind}: {e}");
        }
    }

    fn step_detail(&self, key: &str, value: &Value) {
        match self.current_step() {
            Some((id, _)) => {
                if let Err(e) = self.store.step_add_detail(id, key, value) {
                    tracing::warn!(target: "ralf::state", "could not record step detail {key}: {e}");
                }
            }
            None => {
                let data = serde_json::json!({ "key": key, "value": value });
                self.event("step_detail", &data);
            }
        }
    }

    fn previous_step_detail(&self, key: &str) -> Option<Value> {
        let (id, step_key) = self.current_step()?;
        let earlier = self
            .store
            .earlier_attempts(&self.run_id, &step_key, id)
            .ok()?;
        earlier
            .into_iter()
            .find_map(|s| s.details.get(key).cloned())
    }

    fn current_step_detail(&self, key: &str) -> Option<Value> {
        let (id, _) = self.current_step()?;
        let steps = self.store.steps(&self.run_id).ok()?;
        steps
            .into_iter()
            .find(|s| s.id == id)
            .and_then(|s| s.details.get(key).cloned())
    }
}

// ---- CLI ------------------------------------------------------------------------------

fn print_runs(runs: &[RunRecord]) {
    if runs.is_empty() {
        crate::outln!("no runs recorded");
        return;
    }
    crate::outln!(
        "{:<22}  {:<24}  {:<9}  {:<11}  {:>4}  {:>3}  SCRIPT",
        "RUN",
        "STARTED",
        "DURATION",
        "STATUS",
        "EXIT",
        "TRY"
    );
    for r in runs {
        crate::outln!(
            "{:<22}  {:<24}  {:<9}  {:<11}  {:>4}  {:>3}  {}",
            r.id,
            r.started_at,
            duration(&r.started_at, r.ended_at.as_deref()),
            r.status,
            r.exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            r.attempts,
            one_line(&format!("{} {}", r.script, r.args.join(" ")), 70),
        );
    }
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
    crate::engine::render::human_duration(d)
}

fn print_steps(steps: &[StepRecord]) {
    if steps.is_empty() {
        crate::outln!("no steps recorded");
        return;
    }
    crate::outln!(
        "{:<32}  {:<14}  {:>3}  {:<11}  {:<9}  DETAILS",
        "STEP",
        "SERVICE",
        "TRY",
        "STATUS",
        "DURATION"
    );
    for s in steps {
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
        crate::outln!(
            "{:<32}  {:<14}  {:>3}  {:<11}  {:<9}  {}",
            s.key,
            s.service.as_deref().unwrap_or("-"),
            s.attempt,
            s.status,
            duration(&s.started_at, s.ended_at.as_deref()),
            details
        );
    }
}

fn history_impl(
    host: &Arc<Host>,
    service: Option<String>,
    run: Option<String>,
    json: bool,
) -> RResult<()> {
    let path = state_path(host);
    let Some(st) = existing_store(host)? else {
        if json {
            crate::outln!("[]");
        } else {
            crate::outln!(
                "no runs recorded yet (no state store at {})",
                path.display()
            );
        }
        return Ok(());
    };
    if let Some(id) = run {
        let r = st.run(&id)?.ok_or_else(|| {
            RalfError::not_found(format!(
                "no run `{id}` in the state store at {}",
                path.display()
            ))
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
        if let Some(h) = lock::current_holder(&lock_path(host)) {
            crate::outln!("run lock held by {h}\n");
        }
        print_runs(&runs);
    }
    Ok(())
}

/// `ralf-sh history [--service NAME] [--run ID] [--json]` (read-only; never takes the lock).
pub fn cli_history(
    host: &Arc<Host>,
    service: Option<String>,
    run: Option<String>,
    json: bool,
) -> i32 {
    match history_impl(host, service, run, json) {
        Ok(()) => crate::engine::exit::OK,
        Err(e) => {
            eprintln!("error: {}", crate::secrets::redact(&e.message));
            crate::engine::exit::FAILED
        }
    }
}

/// `ralf-sh resume RUN_ID`: re-run the recorded script with its args under the same run id;
/// steps already done are skipped by `run::step`.
pub fn cli_resume(host: &Arc<Host>, run_id: &str, abandon: bool) -> i32 {
    let path = state_path(host);
    let fail = |msg: String, code: i32| {
        eprintln!("error: {}", crate::secrets::redact(&msg));
        code
    };
    let st = match existing_store(host) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return fail(
                format!("no state store at {}: nothing to resume", path.display()),
                crate::engine::exit::FAILED,
            )
        }
        Err(e) => return fail(e.message, crate::engine::exit::FAILED),
    };
    let run = match st.run(run_id) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return fail(
                format!(
                    "no run `{run_id}` in the state store at {} (see `ralf-sh history`)",
                    path.display()
                ),
                crate::engine::exit::FAILED,
            )
        }
        Err(e) => return fail(e.message, crate::engine::exit::FAILED),
    };
    if abandon {
        if run.status == "running" {
            return fail(
                format!(
                    "run {run_id} is still running (pid {} on {}); stop it first",
                    run.pid, run.host
                ),
                crate::engine::exit::LOCKED,
            );
        }
        return match st.end_run(run_id, "abandoned", crate::engine::exit::FAILED) {
            Ok(()) => {
                crate::outln!(
                    "run {run_id} abandoned: a new run of {} starts over instead of resuming it (Semaphore tasks it started are not stopped)",
                    run.script
                );
                crate::engine::exit::OK
            }
            Err(e) => fail(e.message, crate::engine::exit::FAILED),
        };
    }
    match run.status.as_str() {
        "ok" => {
            crate::outln!("run {run_id} already completed successfully; nothing to resume");
            return crate::engine::exit::OK;
        }
        "running" => {
            return fail(
                format!(
                    "run {run_id} is still running (pid {} on {})",
                    run.pid, run.host
                ),
                crate::engine::exit::LOCKED,
            )
        }
        _ => {}
    }
    let host2 = host.with_run_id(run_id.to_string());
    tracing::info!(target: "ralf::state", "resuming run {run_id} ({} {})", run.script, run.args.join(" "));
    if run.script == "-e" {
        let expr = run.args.first().cloned().unwrap_or_default();
        return crate::app::run_eval(&host2, &expr);
    }
    let script = PathBuf::from(&run.script);
    if !script.exists() {
        return fail(
            format!("run {run_id}: script {} no longer exists", script.display()),
            crate::engine::exit::FAILED,
        );
    }
    crate::app::run_script(&host2, &script, run.args.clone())
}

#[cfg(test)]
mod tests;

//! The run session: the per-run services bindings, commands and serve share: the state store
//! handle, the run context and its journal, the run lock, the paths taken from the config.
//!
//! Where: config `state.url` (a PostgreSQL store shared by several controllers), else `state.path`
//! (a SQLite file, relative to the config file), else `$XDG_STATE_HOME/ralf/state.db`.
//!
//! When the journal is attached: a script run ([`begin_run`], called by `app`) opens the store at
//! once when the config has a `state` or `catalog` section or the database already exists, so
//! every event of the run is recorded; otherwise the store is opened lazily, the first time the
//! run uses it (`run::step`, `run::lock`, `catalog::mark`, ...). Read-only use (`svc.status`,
//! `catalog::history`, `ralf-sh history`) opens the store without recording a run.

pub mod ssh;

use crate::error::{RResult, RalfError};
use crate::host::{Host, Journal};
use crate::state::{lease, lock, metrics, model, postgres, RunRecord, Store};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::ThreadId;

/// The SQLite state file for this host's config (meaningless when the store is PostgreSQL).
pub fn state_path(host: &Host) -> PathBuf {
    match host.cfg().state.as_ref().and_then(|s| s.path.as_ref()) {
        Some(p) => relative_to_config(host, p),
        None => crate::config::xdg_state_home().join("ralf/state.db"),
    }
}

/// Where the store is, for messages: the PostgreSQL URL or the SQLite file.
pub fn store_location(host: &Host) -> String {
    match host.cfg().state.as_ref().and_then(|s| s.url.clone()) {
        Some(url) => url,
        None => state_path(host).display().to_string(),
    }
}

/// Who holds the run lock now (read-only: the lease of a shared store, else the lock file).
pub fn lock_holder(host: &Host, st: &Store) -> Option<lock::Holder> {
    match st.lease() {
        Some(l) => l.current().ok().flatten(),
        None => lock::current_holder(&lock_path(host)),
    }
}

/// The PostgreSQL store of this host's config, if it names one (`state.url`).
pub fn pg_options(host: &Host) -> Option<RResult<postgres::PgOptions>> {
    let st = host.cfg().state.clone()?;
    st.url.as_ref()?;
    Some(pg_options_for(&st).map(|mut o| {
        o.ca_file = st.ca_file.as_ref().map(|p| relative_to_config(host, p));
        o
    }))
}

/// Options for the PostgreSQL store `st` names (`url`), the password read from `password_env`
/// and registered with the redactor (an unset variable is an error).
pub fn pg_options_for(st: &crate::config::StateConfig) -> RResult<postgres::PgOptions> {
    let url = st
        .url
        .clone()
        .ok_or_else(|| crate::error::RalfError::config("state: no url (postgres://...) given"))?;
    let password = match st.password_env.as_deref() {
        None => None,
        Some(var) => Some(
            crate::secrets::read_env(var, "state.password_env")?.ok_or_else(|| {
                crate::error::RalfError::config(format!(
                    "state.password_env: the variable {var} (the PostgreSQL password) is not set"
                ))
            })?,
        ),
    };
    Ok(postgres::PgOptions {
        url,
        password,
        ca_file: st.ca_file.clone(),
        lease: std::time::Duration::from_secs_f64(st.lease_seconds.unwrap_or(30.0)),
    })
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
    lock: Mutex<Option<Held>>,
    /// Shared stores: the run's heartbeat (and lease renewal).
    heartbeat: Mutex<Option<lease::Heartbeat>>,
}

/// The run lock as held: a file lock (SQLite) or the store's lease (PostgreSQL).
enum Held {
    File(lock::RunLock),
    Lease(lock::Holder),
}

impl Held {
    fn holder(&self) -> &lock::Holder {
        match self {
            Held::File(l) => &l.holder,
            Held::Lease(h) => h,
        }
    }
}

impl RunCtx {
    /// Take the run lock (idempotent within the run).
    pub fn lock(&self, host: &Host) -> RResult<lock::Holder> {
        let mut l = self.lock.lock();
        if let Some(held) = l.as_ref() {
            return Ok(held.holder().clone());
        }
        let script = host
            .script
            .read()
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let me = lock::Holder::me(&self.run_id, &script);
        if self.store.is_shared() {
            lease::acquire(&self.store, &me)?;
            if let Some(hb) = self.heartbeat.lock().as_ref() {
                hb.hold_lease(&me);
            }
            *l = Some(Held::Lease(me.clone()));
            return Ok(me);
        }
        let held = lock::acquire(&lock_path(host), me)?;
        let h = held.holder.clone();
        *l = Some(Held::File(held));
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
    let st = Arc::new(match pg_options(host) {
        Some(o) => Store::connect(&o?)?,
        None => Store::open(&state_path(host))?,
    });
    *g = Some(st.clone());
    Ok(st)
}

/// The store only if it already exists (never creates a SQLite file; a PostgreSQL store always exists).
pub fn existing_store(host: &Host) -> RResult<Option<Arc<Store>>> {
    if slot(host).0.store.lock().is_none()
        && pg_options(host).is_none()
        && !state_path(host).exists()
    {
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
        user: {
            let u = std::env::var("USER").unwrap_or_else(|_| unsafe { libc::getuid() }.to_string());
            // Runs started by `serve` name their trigger.
            match std::env::var("RALF_TRIGGER") {
                Ok(t) if !t.is_empty() => format!("{u} via {t}"),
                _ => u,
            }
        },
        host: lock::hostname(),
        pid: std::process::id() as i64,
        started_at: model::now(),
        ended_at: None,
        status: "running".into(),
        exit_code: None,
        attempts: 1,
        machine: lock::machine_id(),
    };
    st.begin_run(&rec)?;
    let journal = Arc::new(RunJournal {
        store: st.clone(),
        run_id: host.run_id.clone(),
        current: Mutex::new(HashMap::new()),
    });
    host.set_journal(journal.clone());
    {
        let j = journal.clone();
        crate::logging::set_journal_sink(Arc::new(move |level, target, message| {
            let data = serde_json::json!({ "level": level, "target": target, "message": message });
            if let Err(e) = j.store.event(Some(&j.run_id), "log", &data) {
                tracing::warn!(target: "ralf::state", "could not record a log line: {e}");
            }
        }));
    }
    let heartbeat = st.is_shared().then(|| {
        let cancel = host.cancel.clone();
        lease::Heartbeat::start(st.clone(), &host.run_id, move || cancel.cancel())
    });
    let ctx = Arc::new(RunCtx {
        store: st,
        journal,
        run_id: host.run_id.clone(),
        lock: Mutex::new(None),
        heartbeat: Mutex::new(heartbeat),
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
        // Runs refused by the lock did nothing: look past them (a standby's cron ticks while
        // another controller's lease has not expired yet).
        .find(|r| r.script == script && r.args == args && r.status != "locked")?;
    // A shared store's run may be resumed by any controller (its lease tells it is dead); a
    // SQLite store's only on the machine whose process it was.
    if !matches!(r.status.as_str(), "interrupted" | "cancelled")
        || (!st.is_shared() && r.host != lock::hostname())
    {
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
        crate::error::exit::CANCELLED => "cancelled",
        crate::error::exit::LOCKED => "locked",
        crate::error::exit::PARTIAL => "partial",
        _ => "failed",
    };
    if let Err(e) = ctx.store.end_run(&ctx.run_id, status, exit_code) {
        tracing::warn!(target: "ralf::state", "could not record the end of run {}: {e}", ctx.run_id);
    }
    if let Some(p) = host.cfg().metrics.textfile.clone() {
        let p = relative_to_config(host, &p);
        if let Err(e) = metrics::render(&ctx.store).and_then(|t| metrics::write_textfile(&p, &t)) {
            tracing::warn!(target: "ralf::state", "could not write the metrics textfile: {e}");
        }
    }
    drop(ctx.lock.lock().take());
    // Stops the heartbeat and releases a held lease.
    drop(ctx.heartbeat.lock().take());
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
        let step = self.store.step(id).ok()??;
        step.details.get(key).cloned()
    }
}

/// Where `catalog::load()` looks: config `catalog.path` (relative to the config file), else
/// `./catalog/projects`.
pub fn default_catalog_path(h: &Host) -> RResult<PathBuf> {
    if let Some(c) = h.cfg().catalog.as_ref() {
        return Ok(crate::session::relative_to_config(h, &c.path));
    }
    let p = PathBuf::from("catalog/projects");
    if p.is_dir() {
        return Ok(p);
    }
    Err(RalfError::config(
        "catalog::load: no catalog configured (set `catalog.path` in the config, or pass a path: catalog::load(\"catalog/projects\"))",
    ))
}

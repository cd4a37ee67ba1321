//! The host: everything a run shares across bindings (config, runtime, cancel token, progress,
//! dry-run recorder, journal hook). Bindings reach it through [`crate::bindings::host`].

use crate::config::LoadedConfig;
use crate::error::{RResult, RalfError};
use crate::progress::Progress;
use parking_lot::{Mutex, RwLock};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The run's cancel token. Behaves like a `CancellationToken` (`cancel`, `is_cancelled`,
/// `cancelled().await`), but the REPL can `reset` it after an interrupted evaluation.
#[derive(Clone, Default)]
pub struct Cancel(Arc<RwLock<CancellationToken>>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.read().cancel();
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.read().is_cancelled()
    }
    /// A future that resolves when the current token is cancelled.
    pub fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.token().cancelled_owned()
    }
    /// The current token (a child token cancels with it).
    pub fn token(&self) -> CancellationToken {
        self.0.read().clone()
    }
    pub fn child_token(&self) -> CancellationToken {
        self.0.read().child_token()
    }
    /// Replace a cancelled token by a fresh one (REPL: the next line runs normally).
    pub fn reset(&self) {
        let mut t = self.0.write();
        if t.is_cancelled() {
            *t = CancellationToken::new();
        }
    }
}

/// Options from the command line that shape a run.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// Record changing calls instead of executing them.
    pub dry_run: bool,
    /// Answer yes to `confirm()` when not interactive.
    pub yes: bool,
    /// stdin is a terminal (confirm may ask).
    pub interactive: bool,
    /// `-q`: no banners or summaries, warnings and errors only.
    pub quiet: bool,
    /// `--output json`: results (`-e`, a script's final value or `exit(code, value)`) as JSON.
    pub json_output: bool,
}

/// Hook through which bindings write to the run journal (the state store implements it).
pub trait Journal: Send + Sync {
    /// Record an event (LLM prompt/answer, notification, ...).
    fn event(&self, kind: &str, data: &serde_json::Value);
    /// Attach a detail to the step currently running on this thread (e.g. a Semaphore task id).
    fn step_detail(&self, key: &str, value: &serde_json::Value);
    /// A detail recorded for the current step by an earlier, interrupted attempt of the same run.
    fn previous_step_detail(&self, key: &str) -> Option<serde_json::Value>;
    /// A detail this attempt of the current step has recorded already.
    fn current_step_detail(&self, _key: &str) -> Option<serde_json::Value> {
        None
    }
}

/// One action that `--dry-run` did not execute.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DryRunAction {
    pub binding: String,
    pub action: String,
}

pub struct Host {
    pub config: Arc<LoadedConfig>,
    pub rt: tokio::runtime::Handle,
    pub cancel: Cancel,
    pub opts: HostOptions,
    pub run_id: String,
    pub(crate) progress: Progress,
    /// The script being run (None for -e and the REPL).
    pub script: RwLock<Option<PathBuf>>,
    /// The script's arguments (`ARGS`; `args::argv()`).
    pub args: RwLock<Vec<String>>,
    journal: RwLock<Option<Arc<dyn Journal>>>,
    dry_run_log: Mutex<Vec<DryRunAction>>,
    /// Changing calls made so far (every binding that changes something asks [`Host::dry_run`]
    /// first): a configuration error met while this is 0 exits 2, "nothing was started".
    changes: std::sync::atomic::AtomicUsize,
    /// Typed per-domain state (clients cache sessions here: ssh masters, http clients ...).
    extensions: Mutex<anymap::Map>,
}

mod anymap {
    use std::any::{Any, TypeId};
    use std::collections::HashMap;
    #[derive(Default)]
    pub struct Map(HashMap<TypeId, Box<dyn Any + Send + Sync>>);
    impl Map {
        pub fn get_or_insert_with<T: Any + Send + Sync + Clone>(
            &mut self,
            f: impl FnOnce() -> T,
        ) -> T {
            self.0
                .entry(TypeId::of::<T>())
                .or_insert_with(|| Box::new(f()))
                .downcast_ref::<T>()
                .expect("type id matches")
                .clone()
        }
    }
}

impl Host {
    pub fn new(config: LoadedConfig, rt: tokio::runtime::Handle, opts: HostOptions) -> Arc<Host> {
        Arc::new(Host {
            config: Arc::new(config),
            rt,
            cancel: Cancel::default(),
            opts,
            run_id: new_run_id(),
            progress: Progress::new(),
            script: RwLock::new(None),
            args: RwLock::new(Vec::new()),
            journal: RwLock::new(None),
            dry_run_log: Mutex::new(Vec::new()),
            changes: Default::default(),
            extensions: Mutex::new(anymap::Map::default()),
        })
    }

    /// Same host with a different run id (used by `resume`).
    pub fn with_run_id(self: &Arc<Self>, run_id: String) -> Arc<Host> {
        Arc::new(Host {
            config: self.config.clone(),
            rt: self.rt.clone(),
            cancel: self.cancel.clone(),
            opts: self.opts.clone(),
            run_id,
            progress: self.progress.clone(),
            script: RwLock::new(self.script.read().clone()),
            args: RwLock::new(self.args.read().clone()),
            journal: RwLock::new(self.journal.read().clone()),
            dry_run_log: Mutex::new(Vec::new()),
            changes: Default::default(),
            extensions: Mutex::new(anymap::Map::default()),
        })
    }

    pub fn cfg(&self) -> &crate::config::Config {
        &self.config.config
    }

    /// A shared per-host value of type T, created on first use (HTTP clients, SSH session pools ...).
    pub fn extension<T: std::any::Any + Send + Sync + Clone>(&self, f: impl FnOnce() -> T) -> T {
        self.extensions.lock().get_or_insert_with(f)
    }

    pub fn set_journal(&self, j: Arc<dyn Journal>) {
        *self.journal.write() = Some(j);
    }

    pub fn journal(&self) -> Option<Arc<dyn Journal>> {
        self.journal.read().clone()
    }

    /// Record an event in the run journal (no-op without a state store). Data is redacted.
    pub fn record_event(&self, kind: &str, data: serde_json::Value) {
        if let Some(j) = self.journal() {
            j.event(kind, &redact_json(data));
        }
    }

    /// Attach a detail to the current step (no-op without a state store).
    pub fn record_step_detail(&self, key: &str, value: serde_json::Value) {
        if let Some(j) = self.journal() {
            j.step_detail(key, &redact_json(value));
        }
    }

    /// In dry-run mode, record `action` and return true: the caller must not execute it.
    /// Outside dry-run mode, return false.
    pub fn dry_run(&self, binding: &str, action: impl Into<String>) -> bool {
        if !self.opts.dry_run {
            self.changes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return false;
        }
        let action = crate::redact::redact(&action.into());
        tracing::info!(target: "ralf::dry_run", "would {binding}: {action}");
        self.dry_run_log.lock().push(DryRunAction {
            binding: binding.to_string(),
            action,
        });
        true
    }

    /// Whether this run has made (or started) a changing call yet.
    pub fn changed_anything(&self) -> bool {
        self.changes.load(std::sync::atomic::Ordering::Relaxed) > 0
    }

    pub fn dry_run_actions(&self) -> Vec<DryRunAction> {
        self.dry_run_log.lock().clone()
    }

    /// Fail fast when the run was cancelled.
    pub fn check_cancelled(&self) -> RResult<()> {
        if self.cancel.is_cancelled() {
            Err(RalfError::cancelled())
        } else {
            Ok(())
        }
    }
}

/// Redact every string inside a JSON value.
pub fn redact_json(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    if !crate::redact::any_registered() {
        return v;
    }
    match v {
        Value::String(s) => Value::String(crate::redact::redact(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(redact_json).collect()),
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, redact_json(v))).collect())
        }
        other => other,
    }
}

/// A run id: sortable by time, unique enough for one controller (`20261123T113522-4f2a`).
pub fn new_run_id() -> String {
    let now = chrono::Utc::now();
    let r: u16 = rand::random();
    format!("{}-{:04x}", now.format("%Y%m%dT%H%M%S"), r)
}

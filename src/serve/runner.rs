//! Starting runs for triggers: this binary on the trigger's script, as its own process (the same
//! engine, run lock and journal as a run from cron), with a run id chosen up front so a webhook can
//! answer with it at once. Webhook runs coalesce: per trigger at most one running and one pending
//! run; a burst of deliveries while one runs folds into the pending one (which takes the newest
//! event's data).

use crate::host::Host;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// What a run is started with.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    pub trigger: String,
    pub script: PathBuf,
    pub args: Vec<String>,
    /// Extra environment for the run (`RALF_TRIGGER`, `RALF_EVENT_COMMIT`, ...).
    pub env: Vec<(String, String)>,
}

/// How a submitted run was taken.
#[derive(Debug, Clone, PartialEq)]
pub enum Taken {
    Started(String),
    Queued(String),
    Coalesced(String),
}

impl Taken {
    pub fn run_id(&self) -> &str {
        match self {
            Taken::Started(id) | Taken::Queued(id) | Taken::Coalesced(id) => id,
        }
    }
    pub fn state(&self) -> &'static str {
        match self {
            Taken::Started(_) => "started",
            Taken::Queued(_) => "queued",
            Taken::Coalesced(_) => "coalesced",
        }
    }
}

#[derive(Default)]
struct Slot {
    running: Option<String>,
    pending: Option<(String, Launch)>,
}

/// The runs `serve` starts.
pub struct Runner {
    host: Arc<Host>,
    slots: Mutex<HashMap<String, Slot>>,
}

/// This binary's path; after an upgrade replaced the file, the new one at the same path (Linux
/// reports the running, deleted one as `PATH (deleted)`).
pub(crate) fn this_binary() -> std::io::Result<PathBuf> {
    let p = std::env::current_exe()?;
    Ok(
        match p.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
            Some(s) => PathBuf::from(s),
            None => p,
        },
    )
}

impl Runner {
    pub fn new(host: Arc<Host>) -> Arc<Runner> {
        Arc::new(Runner {
            host,
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// Start a run now, whatever else runs (schedule ticks: each tick is its own run).
    pub fn start(self: &Arc<Self>, run_id: &str, l: &Launch) {
        self.spawn(run_id, l, false);
    }

    /// Start a run, or queue it behind the trigger's running one (coalescing a burst).
    pub fn submit(self: &Arc<Self>, l: Launch) -> Taken {
        let mut slots = self.slots.lock();
        let slot = slots.entry(l.trigger.clone()).or_default();
        if slot.running.is_some() {
            if let Some((id, pending)) = slot.pending.as_mut() {
                *pending = l;
                return Taken::Coalesced(id.clone());
            }
            let id = crate::host::new_run_id();
            slot.pending = Some((id.clone(), l));
            return Taken::Queued(id);
        }
        let id = crate::host::new_run_id();
        slot.running = Some(id.clone());
        drop(slots);
        self.spawn(&id, &l, true);
        Taken::Started(id)
    }

    /// Runs of a trigger: (running, pending) ids.
    pub fn state(&self, trigger: &str) -> (Option<String>, Option<String>) {
        let slots = self.slots.lock();
        slots.get(trigger).map_or((None, None), |s| {
            (s.running.clone(), s.pending.as_ref().map(|p| p.0.clone()))
        })
    }

    /// The trigger's run ended: start its pending run, if any.
    fn ended(self: &Arc<Self>, trigger: &str) {
        let next = {
            let mut slots = self.slots.lock();
            let slot = slots.entry(trigger.to_string()).or_default();
            slot.running = None;
            let next = slot.pending.take();
            if let Some((id, _)) = &next {
                slot.running = Some(id.clone());
            }
            next
        };
        if let Some((id, l)) = next {
            self.spawn(&id, &l, true);
        }
    }

    /// This binary with `args` (after `--config`), for the dashboard's resume and re-run.
    pub fn spawn_cli(&self, who: &str, args: &[String]) {
        let exe = match this_binary() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(target: "ralf::serve", "{who}: cannot find this binary: {e}");
                return;
            }
        };
        let mut cmd = std::process::Command::new(exe);
        if let Some(c) = &self.host.config.path {
            cmd.arg("--config").arg(c);
        }
        cmd.args(args).stdin(std::process::Stdio::null());
        let what = args.join(" ");
        match cmd.spawn() {
            Ok(mut child) => {
                tracing::info!(target: "ralf::serve", "{who}: started `ralf-sh {what}`");
                let who = who.to_string();
                std::thread::spawn(move || match child.wait() {
                    Ok(st) => {
                        tracing::info!(target: "ralf::serve", "{who}: `ralf-sh {what}` ended ({st})")
                    }
                    Err(e) => tracing::warn!(target: "ralf::serve", "{who}: `ralf-sh {what}`: {e}"),
                });
            }
            Err(e) => {
                tracing::error!(target: "ralf::serve", "{who}: cannot start `ralf-sh {what}`: {e}")
            }
        }
    }

    fn spawn(self: &Arc<Self>, run_id: &str, l: &Launch, coalesced: bool) {
        let name = l.trigger.clone();
        let exe = match this_binary() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(target: "ralf::serve", "trigger {name}: cannot find this binary: {e}");
                if coalesced {
                    self.ended(&name);
                }
                return;
            }
        };
        let mut cmd = std::process::Command::new(exe);
        if let Some(c) = &self.host.config.path {
            cmd.arg("--config").arg(c);
        }
        cmd.arg("--run-id")
            .arg(run_id)
            .arg(&l.script)
            .args(&l.args)
            .envs(l.env.iter().map(|(k, v)| (k, v)))
            .env("RALF_TRIGGER", &l.trigger)
            .stdin(std::process::Stdio::null());
        match cmd.spawn() {
            Ok(mut child) => {
                tracing::info!(target: "ralf::serve", "trigger {name}: run {run_id} started ({} {})", l.script.display(), l.args.join(" "));
                let me = self.clone();
                let run_id = run_id.to_string();
                std::thread::spawn(move || {
                    match child.wait() {
                        Ok(st) => {
                            tracing::info!(target: "ralf::serve", "trigger {name}: run {run_id} ended ({st})")
                        }
                        Err(e) => {
                            tracing::warn!(target: "ralf::serve", "trigger {name}: run {run_id}: {e}")
                        }
                    }
                    if coalesced {
                        me.ended(&name);
                    }
                });
            }
            Err(e) => {
                tracing::error!(target: "ralf::serve", "trigger {name}: cannot start run {run_id}: {e}");
                if coalesced {
                    self.ended(&name);
                }
            }
        }
    }
}

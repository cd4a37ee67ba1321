//! What the state store holds and what a backend must do: runs, steps, service status, events,
//! the run lease; one interface over two backends, a SQLite file ([`super::sqlite`]) and a PostgreSQL database ([`super::postgres`]).
//!
//! Both keep the same schema and migrations and the same guarantees: one short transaction per
//! write, so `kill -9` at any instant leaves a consistent record (a step's start row is committed
//! before the work begins).

use super::lock::Holder;
use crate::error::RResult;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// Service statuses `catalog::mark` accepts.
pub const SERVICE_STATUSES: &[&str] = &["deployed", "failed", "rolled_back", "pending"];

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub script: String,
    pub args: Vec<String>,
    pub user: String,
    pub host: String,
    pub pid: i64,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// running | ok | failed | cancelled | locked | interrupted (running, but its process is gone)
    pub status: String,
    pub exit_code: Option<i64>,
    /// 1 + number of resumes.
    pub attempts: i64,
    /// Where `pid` means something ([`super::lock::machine_id`]); empty in runs recorded before.
    #[serde(default)]
    pub machine: String,
}

/// One step attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub id: i64,
    pub run_id: String,
    pub key: String,
    pub service: Option<String>,
    pub attempt: i64,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// running | done | failed | interrupted
    pub status: String,
    pub result: Option<Value>,
    pub details: Value,
    pub error: Option<String>,
}

/// A service status record (current or historical).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub service: String,
    pub status: String,
    pub at: String,
    pub run_id: Option<String>,
    pub version: Option<String>,
    pub details: Value,
}

/// An event (LLM prompt/answer, notification, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: i64,
    pub run_id: Option<String>,
    pub at: String,
    pub kind: String,
    pub data: Value,
}

/// An answer to an approval gate given on the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateAnswer {
    pub id: i64,
    pub gate: String,
    /// The gate's nonce, as the dashboard read it from the pending gate.
    pub nonce: String,
    pub approve: bool,
    /// Who answered (the dashboard's user).
    pub by: String,
}

/// Every row of a store (what `state migrate` copies), ids kept.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Dump {
    pub runs: Vec<RunRecord>,
    pub steps: Vec<StepRecord>,
    pub service_status: Vec<ServiceRecord>,
    /// (id, record)
    pub service_history: Vec<(i64, ServiceRecord)>,
    pub events: Vec<EventRecord>,
}

impl Dump {
    /// Every table in key order (the backends read rows back in different orders).
    pub fn sorted(mut self) -> Dump {
        self.runs.sort_by(|a, b| a.id.cmp(&b.id));
        self.steps.sort_by_key(|s| s.id);
        self.service_status
            .sort_by(|a, b| a.service.cmp(&b.service));
        self.service_history.sort_by_key(|(id, _)| *id);
        self.events.sort_by_key(|e| e.id);
        self
    }

    /// Rows per table, in a fixed order.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("runs", self.runs.len()),
            ("steps", self.steps.len()),
            ("service_status", self.service_status.len()),
            ("service_history", self.service_history.len()),
            ("events", self.events.len()),
        ]
    }
}

/// What `serve` and the dashboard keep beside the run journal, and the figures of `/metrics`.
pub(crate) trait ServeRecords {
    /// Claim `tick` of a schedule trigger for a run: true for exactly one caller per tick, across
    /// controllers and restarts.
    fn claim_tick(&self, trigger: &str, tick: &str, run_id: &str, by: &str) -> RResult<bool>;
    /// The latest tick claimed for a trigger (RFC 3339, UTC).
    fn last_tick(&self, trigger: &str) -> RResult<Option<String>>;
    /// Record a webhook delivery id (and drop those recorded before `keep_after`): None when it is
    /// new, else the run id recorded with it the first time.
    fn record_delivery(
        &self,
        id: &str,
        trigger: &str,
        run_id: &str,
        keep_after: &str,
    ) -> RResult<Option<String>>;
    /// A run's events with ids above `after`, oldest first (a live log resuming where it was).
    fn events_after(&self, run_id: &str, after: i64, limit: usize) -> RResult<Vec<EventRecord>>;
    fn add_gate_answer(&self, a: &GateAnswer) -> RResult<()>;
    /// Dashboard answers to a gate, oldest first.
    fn gate_answers(&self, gate: &str) -> RResult<Vec<GateAnswer>>;
    /// Running steps whose details hold the key `detail` (pending gates).
    fn running_steps_with(&self, detail: &str) -> RResult<Vec<StepRecord>>;
    /// The run id a delivery id was recorded with.
    fn delivery(&self, id: &str) -> RResult<Option<String>>;
    /// Runs per (script, status).
    fn run_counts(&self) -> RResult<Vec<(String, String, i64)>>;
    /// When each service was last marked `deployed`.
    fn last_successes(&self) -> RResult<Vec<(String, String)>>;
    /// A numeric field of the events of one kind: cumulative counts at each bound, count, sum.
    fn event_histogram(
        &self,
        kind: &str,
        field: &str,
        bounds: &[f64],
    ) -> RResult<(Vec<i64>, i64, f64)>;
    /// Finished step durations: cumulative counts at each bound (seconds), count, sum.
    fn step_durations(&self, bounds: &[f64]) -> RResult<(Vec<i64>, i64, f64)>;
}

/// What a backend does; [`Store`] is the one type the rest of ralf-sh sees.
pub(crate) trait Backend: ServeRecords + Send + Sync {
    fn schema_version(&self) -> i64;
    /// Record the start of a run, or of a new attempt of an existing run (resume): the run goes
    /// back to `running` and steps left `running` by the dead attempt become `interrupted`.
    fn begin_run(&self, r: &RunRecord) -> RResult<()>;
    fn end_run(&self, id: &str, status: &str, exit_code: i32) -> RResult<()>;
    /// The run is alive (shared stores: a run whose heartbeat is older than the lease reads as
    /// `interrupted`). A no-op where liveness is the process itself (SQLite on one machine).
    fn heartbeat(&self, _run_id: &str) -> RResult<()> {
        Ok(())
    }
    fn run(&self, id: &str) -> RResult<Option<RunRecord>>;
    fn runs(&self, limit: usize) -> RResult<Vec<RunRecord>>;
    fn runs_for_service(&self, service: &str, limit: usize) -> RResult<Vec<RunRecord>>;
    fn step_start(&self, run_id: &str, key: &str, service: Option<&str>) -> RResult<i64>;
    fn step_end(
        &self,
        id: i64,
        status: &str,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> RResult<()>;
    fn step_add_detail(&self, id: i64, key: &str, value: &Value) -> RResult<()>;
    fn step_done(&self, run_id: &str, key: &str) -> RResult<Option<StepRecord>>;
    fn earlier_attempts(&self, run_id: &str, key: &str, before: i64) -> RResult<Vec<StepRecord>>;
    fn steps(&self, run_id: &str) -> RResult<Vec<StepRecord>>;
    /// One step attempt by id.
    fn step(&self, id: i64) -> RResult<Option<StepRecord>>;
    fn mark(&self, rec: &ServiceRecord) -> RResult<()>;
    fn statuses(&self) -> RResult<HashMap<String, String>>;
    fn service_status(&self, service: &str) -> RResult<Option<ServiceRecord>>;
    fn service_history(&self, service: &str, limit: usize) -> RResult<Vec<ServiceRecord>>;
    fn event(&self, run_id: Option<&str>, kind: &str, data: &Value) -> RResult<()>;
    fn events(&self, run_id: &str) -> RResult<Vec<EventRecord>>;
    fn dump(&self) -> RResult<Dump>;
    /// Copy every row in (ids kept) into an empty store, in one transaction.
    fn load(&self, d: &Dump) -> RResult<()>;
    /// Whether any run, step, status or event is recorded.
    fn is_empty(&self) -> RResult<bool>;
    /// The shared run lease (PostgreSQL); `None` where the run lock is a file lock.
    fn lease(&self) -> Option<&dyn Lease> {
        None
    }
}

/// The shared run lease of a store (PostgreSQL).
pub trait Lease: Send + Sync {
    /// How long the lease lasts without a renewal.
    fn ttl(&self) -> Duration;
    /// Take the lease for `me`: `Ok(previous)` (the holder of an expired lease taken over, if
    /// any), or `Err((holder, until))` while another run holds it.
    fn acquire(&self, me: &Holder) -> RResult<Result<Option<Holder>, (Holder, String)>>;
    /// Extend the lease; false when `me` no longer holds it.
    fn renew(&self, me: &Holder) -> RResult<bool>;
    fn release(&self, me: &Holder) -> RResult<()>;
    /// The holder of an unexpired lease.
    fn current(&self) -> RResult<Option<Holder>>;
}

/// JSON text from a column (None when absent or not JSON).
pub(crate) fn parse_json(s: Option<String>) -> Option<Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

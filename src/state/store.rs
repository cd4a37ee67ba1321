//! The state store: one [`Store`] over the SQLite or PostgreSQL backend (the records and the
//! backend traits are in [`super::model`]).

use super::model::*;
use crate::error::RResult;
use serde_json::Value;
use std::collections::HashMap;

/// The state store.
pub struct Store {
    /// Where it is, for messages: the SQLite file or the PostgreSQL URL without its password.
    pub location: String,
    pub(crate) b: Box<dyn Backend>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.location)
    }
}

impl Store {
    /// Open (creating the file and its folder if needed) and migrate a SQLite store.
    pub fn open(path: &std::path::Path) -> RResult<Store> {
        let b = super::sqlite::Sqlite::open(path)?;
        Ok(Store {
            location: path.display().to_string(),
            b: Box::new(b),
        })
    }

    /// Connect to and migrate a PostgreSQL store.
    pub fn connect(pg: &super::postgres::PgOptions) -> RResult<Store> {
        let b = super::postgres::Pg::connect(pg)?;
        Ok(Store {
            location: pg.display(),
            b: Box::new(b),
        })
    }

    pub fn is_shared(&self) -> bool {
        self.b.lease().is_some()
    }

    pub fn schema_version(&self) -> i64 {
        self.b.schema_version()
    }

    pub fn begin_run(&self, r: &RunRecord) -> RResult<()> {
        self.b.begin_run(r)
    }

    pub fn end_run(&self, id: &str, status: &str, exit_code: i32) -> RResult<()> {
        self.b.end_run(id, status, exit_code)
    }

    pub fn heartbeat(&self, run_id: &str) -> RResult<()> {
        self.b.heartbeat(run_id)
    }

    pub fn run(&self, id: &str) -> RResult<Option<RunRecord>> {
        self.b.run(id)
    }

    /// Most recent runs first.
    pub fn runs(&self, limit: usize) -> RResult<Vec<RunRecord>> {
        self.b.runs(limit)
    }

    /// Runs that touched a service (steps or marks), most recent first.
    pub fn runs_for_service(&self, service: &str, limit: usize) -> RResult<Vec<RunRecord>> {
        self.b.runs_for_service(service, limit)
    }

    /// Commit a `running` row for a new attempt of step `key`; returns its id.
    pub fn step_start(&self, run_id: &str, key: &str, service: Option<&str>) -> RResult<i64> {
        self.b.step_start(run_id, key, service)
    }

    pub fn step_end(
        &self,
        id: i64,
        status: &str,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> RResult<()> {
        self.b.step_end(id, status, result, error)
    }

    /// Merge `key: value` into a step's details (one transaction).
    pub fn step_add_detail(&self, id: i64, key: &str, value: &Value) -> RResult<()> {
        self.b.step_add_detail(id, key, value)
    }

    /// The successful attempt of step `key` in a run, if any.
    pub fn step_done(&self, run_id: &str, key: &str) -> RResult<Option<StepRecord>> {
        self.b.step_done(run_id, key)
    }

    /// Earlier attempts of step `key` in a run (before step id `before`), newest first.
    pub fn earlier_attempts(
        &self,
        run_id: &str,
        key: &str,
        before: i64,
    ) -> RResult<Vec<StepRecord>> {
        self.b.earlier_attempts(run_id, key, before)
    }

    pub fn steps(&self, run_id: &str) -> RResult<Vec<StepRecord>> {
        self.b.steps(run_id)
    }

    /// One step attempt by id.
    pub fn step(&self, id: i64) -> RResult<Option<StepRecord>> {
        self.b.step(id)
    }

    /// Set a service's status (and append it to its history) in one transaction.
    pub fn mark(
        &self,
        service: &str,
        status: &str,
        run_id: Option<&str>,
        version: Option<&str>,
        details: &Value,
    ) -> RResult<ServiceRecord> {
        let rec = ServiceRecord {
            service: service.to_string(),
            status: status.to_string(),
            at: now(),
            run_id: run_id.map(str::to_string),
            version: version.map(str::to_string),
            details: details.clone(),
        };
        self.b.mark(&rec)?;
        Ok(rec)
    }

    /// Current status of every recorded service.
    pub fn statuses(&self) -> RResult<HashMap<String, String>> {
        self.b.statuses()
    }

    pub fn service_status(&self, service: &str) -> RResult<Option<ServiceRecord>> {
        self.b.service_status(service)
    }

    /// Status changes of a service, most recent first.
    pub fn service_history(&self, service: &str, limit: usize) -> RResult<Vec<ServiceRecord>> {
        self.b.service_history(service, limit)
    }

    pub fn event(&self, run_id: Option<&str>, kind: &str, data: &Value) -> RResult<()> {
        self.b.event(run_id, kind, data)
    }

    pub fn events(&self, run_id: &str) -> RResult<Vec<EventRecord>> {
        self.b.events(run_id)
    }

    /// Claim `tick` of a schedule trigger (true for exactly one caller per tick).
    pub fn claim_tick(&self, trigger: &str, tick: &str, run_id: &str, by: &str) -> RResult<bool> {
        self.b.claim_tick(trigger, tick, run_id, by)
    }

    /// The latest tick claimed for a trigger.
    pub fn last_tick(&self, trigger: &str) -> RResult<Option<String>> {
        self.b.last_tick(trigger)
    }

    /// Record a webhook delivery id, kept 72 h: None when new, else the run id it started.
    pub fn record_delivery(
        &self,
        id: &str,
        trigger: &str,
        run_id: &str,
    ) -> RResult<Option<String>> {
        let keep_after = (chrono::Utc::now() - chrono::Duration::hours(72))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        self.b.record_delivery(id, trigger, run_id, &keep_after)
    }

    /// A run's events with ids above `after`, oldest first, at most `limit`.
    pub fn events_after(
        &self,
        run_id: &str,
        after: i64,
        limit: usize,
    ) -> RResult<Vec<EventRecord>> {
        self.b.events_after(run_id, after, limit)
    }

    /// Record a dashboard answer to a gate (the waiting run reads it on its next poll).
    pub fn add_gate_answer(&self, a: &GateAnswer) -> RResult<()> {
        self.b.add_gate_answer(a)
    }

    pub fn gate_answers(&self, gate: &str) -> RResult<Vec<GateAnswer>> {
        self.b.gate_answers(gate)
    }

    /// Running steps whose details hold the key `detail`.
    pub fn running_steps_with(&self, detail: &str) -> RResult<Vec<StepRecord>> {
        self.b.running_steps_with(detail)
    }

    /// The run id a webhook delivery id was recorded with (None: not seen in the last 72 h).
    pub fn delivery(&self, id: &str) -> RResult<Option<String>> {
        self.b.delivery(id)
    }

    pub fn run_counts(&self) -> RResult<Vec<(String, String, i64)>> {
        self.b.run_counts()
    }

    pub fn last_successes(&self) -> RResult<Vec<(String, String)>> {
        self.b.last_successes()
    }

    /// A numeric field of the events of one kind, as a histogram (cumulative counts, count, sum).
    pub fn event_histogram(
        &self,
        kind: &str,
        field: &str,
        bounds: &[f64],
    ) -> RResult<(Vec<i64>, i64, f64)> {
        self.b.event_histogram(kind, field, bounds)
    }

    pub fn step_durations(&self, bounds: &[f64]) -> RResult<(Vec<i64>, i64, f64)> {
        self.b.step_durations(bounds)
    }

    pub fn dump(&self) -> RResult<Dump> {
        self.b.dump()
    }

    pub fn load(&self, d: &Dump) -> RResult<()> {
        self.b.load(d)
    }

    pub fn is_empty(&self) -> RResult<bool> {
        self.b.is_empty()
    }

    pub fn lease(&self) -> Option<&dyn Lease> {
        self.b.lease()
    }
}

//! The SQLite backend: one file, WAL mode, a busy timeout; liveness of a `running` run is its
//! process on this machine.

use super::model::{
    now, parse_json, Backend, Dump, EventRecord, RunRecord, ServiceRecord, StepRecord,
};
use crate::error::{RResult, RalfError};
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod records;
pub(crate) use records::field_name;

/// Versioned migrations; `PRAGMA user_version` holds the number applied.
const MIGRATIONS: &[&str] = &[
    // v1
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        script TEXT NOT NULL,
        args TEXT NOT NULL DEFAULT '[]',
        user TEXT NOT NULL DEFAULT '',
        host TEXT NOT NULL DEFAULT '',
        pid INTEGER NOT NULL DEFAULT 0,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        status TEXT NOT NULL,
        exit_code INTEGER,
        attempts INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE steps (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL REFERENCES runs(id),
        key TEXT NOT NULL,
        service TEXT,
        attempt INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        status TEXT NOT NULL,
        result TEXT,
        details TEXT NOT NULL DEFAULT '{}',
        error TEXT
    );
    CREATE INDEX steps_run ON steps(run_id, key);
    CREATE TABLE service_status (
        service TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        at TEXT NOT NULL,
        run_id TEXT,
        version TEXT,
        details TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE service_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        service TEXT NOT NULL,
        status TEXT NOT NULL,
        at TEXT NOT NULL,
        run_id TEXT,
        version TEXT,
        details TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX service_history_name ON service_history(service, id);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX events_run ON events(run_id, id);",
    // v2: the liveness of a run and the run lease of shared stores (PostgreSQL); a SQLite store
    // has them too so both backends keep one schema version, but its lock is a file lock.
    "ALTER TABLE runs ADD COLUMN heartbeat_at TEXT;
    CREATE TABLE run_lease (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        run_id TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );",
    // v3: schedule ticks claimed by `serve` (one row per trigger and tick: each tick runs once)
    "CREATE TABLE trigger_ticks (
        trigger TEXT NOT NULL,
        tick TEXT NOT NULL,
        run_id TEXT NOT NULL,
        claimed_by TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (trigger, tick)
    );",
    // v4: webhook deliveries seen (a replayed delivery id starts nothing); kept 72 h
    "CREATE TABLE webhook_deliveries (
        id TEXT PRIMARY KEY,
        trigger TEXT NOT NULL,
        run_id TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX webhook_deliveries_at ON webhook_deliveries(at);",
    // v5: approval gates answered on the dashboard
    "CREATE TABLE gate_answers (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        gate TEXT NOT NULL,
        nonce TEXT NOT NULL,
        approve BOOLEAN NOT NULL,
        answered_by TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX gate_answers_gate ON gate_answers(gate, id);
    CREATE INDEX events_kind ON events(kind);",
    // v6: where a run's pid means something (kernel boot + pid namespace), so a run killed on
    // this machine reads as interrupted at once on a shared store too
    "ALTER TABLE runs ADD COLUMN machine TEXT NOT NULL DEFAULT '';",
];

fn db_err(path: &Path, e: rusqlite::Error) -> RalfError {
    let kind_busy = matches!(
        &e,
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseBusy || f.code == rusqlite::ErrorCode::DatabaseLocked
    );
    let msg = format!("state store {}: {e}", path.display());
    if kind_busy {
        RalfError::unavailable(msg)
    } else {
        RalfError::io(msg)
    }
}

pub struct Sqlite {
    pub path: PathBuf,
    conn: Mutex<Connection>,
}

impl Sqlite {
    /// Open (creating the file and its folder if needed) and migrate.
    pub fn open(path: &Path) -> RResult<Sqlite> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    RalfError::from(e)
                        .context(format!("state store: cannot create {}", dir.display()))
                })?;
            }
        }
        let conn = Connection::open(path).map_err(|e| db_err(path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| db_err(path, e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| db_err(path, e))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| db_err(path, e))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| db_err(path, e))?;
        let store = Sqlite {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> RResult<()> {
        let mut conn = self.conn.lock();
        let p = &self.path;
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| db_err(p, e))?;
        let known = MIGRATIONS.len() as i64;
        if v > known {
            return Err(RalfError::config(format!(
                "state store {}: schema version {v} is newer than this ralf-sh understands ({known}); upgrade ralf-sh",
                p.display()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(v as usize) {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| db_err(p, e))?;
            // Another process may have migrated while we waited for the write lock.
            let now_v: i64 = tx
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(|e| db_err(p, e))?;
            if now_v > i as i64 {
                continue;
            }
            tx.execute_batch(sql).map_err(|e| db_err(p, e))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(|e| db_err(p, e))?;
            tx.commit().map_err(|e| db_err(p, e))?;
        }
        Ok(())
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> RResult<T> {
        let conn = self.conn.lock();
        f(&conn).map_err(|e| db_err(&self.path, e))
    }

    fn run_from_row(r: &rusqlite::Row) -> rusqlite::Result<RunRecord> {
        let args: String = r.get(2)?;
        Ok(RunRecord {
            id: r.get(0)?,
            script: r.get(1)?,
            args: serde_json::from_str(&args).unwrap_or_default(),
            user: r.get(3)?,
            host: r.get(4)?,
            pid: r.get(5)?,
            started_at: r.get(6)?,
            ended_at: r.get(7)?,
            status: r.get(8)?,
            exit_code: r.get(9)?,
            attempts: r.get(10)?,
            machine: r.get(11)?,
        })
    }

    const RUN_COLS: &'static str =
        "id, script, args, user, host, pid, started_at, ended_at, status, exit_code, attempts, machine";

    fn step_from_row(r: &rusqlite::Row) -> rusqlite::Result<StepRecord> {
        Ok(StepRecord {
            id: r.get(0)?,
            run_id: r.get(1)?,
            key: r.get(2)?,
            service: r.get(3)?,
            attempt: r.get(4)?,
            started_at: r.get(5)?,
            ended_at: r.get(6)?,
            status: r.get(7)?,
            result: parse_json(r.get(8)?),
            details: parse_json(r.get(9)?).unwrap_or(Value::Object(Default::default())),
            error: r.get(10)?,
        })
    }

    const STEP_COLS: &'static str =
        "id, run_id, key, service, attempt, started_at, ended_at, status, result, details, error";

    fn svc_from_row(r: &rusqlite::Row) -> rusqlite::Result<ServiceRecord> {
        Ok(ServiceRecord {
            service: r.get(0)?,
            status: r.get(1)?,
            at: r.get(2)?,
            run_id: r.get(3)?,
            version: r.get(4)?,
            details: parse_json(r.get(5)?).unwrap_or(Value::Object(Default::default())),
        })
    }
}

impl Backend for Sqlite {
    fn schema_version(&self) -> i64 {
        self.conn
            .lock()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap_or(0)
    }

    /// Record the start of a run, or of a new attempt of an existing run (resume): the run goes
    /// back to `running` and steps left `running` by the dead attempt become `interrupted`.
    fn begin_run(&self, r: &RunRecord) -> RResult<()> {
        self.with(|c| {
            let exists: bool = c
                .query_row("SELECT 1 FROM runs WHERE id = ?1", [&r.id], |_| Ok(true))
                .optional()?
                .unwrap_or(false);
            if exists {
                c.execute(
                    "UPDATE runs SET status = 'running', ended_at = NULL, exit_code = NULL, pid = ?2, host = ?3,
                     machine = ?4, attempts = attempts + 1 WHERE id = ?1",
                    params![r.id, r.pid, r.host, r.machine],
                )?;
                c.execute(
                    "UPDATE steps SET status = 'interrupted', ended_at = ?2 WHERE run_id = ?1 AND status = 'running'",
                    params![r.id, now()],
                )?;
            } else {
                c.execute(
                    "INSERT INTO runs (id, script, args, user, host, pid, started_at, status, attempts, machine)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', 1, ?8)",
                    params![
                        r.id,
                        r.script,
                        serde_json::to_string(&r.args).unwrap_or_else(|_| "[]".into()),
                        r.user,
                        r.host,
                        r.pid,
                        r.started_at,
                        r.machine
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn end_run(&self, id: &str, status: &str, exit_code: i32) -> RResult<()> {
        self.with(|c| {
            c.execute(
                "UPDATE steps SET status = 'interrupted', ended_at = ?2 WHERE run_id = ?1 AND status = 'running'",
                params![id, now()],
            )?;
            c.execute(
                "UPDATE runs SET status = ?2, exit_code = ?3, ended_at = ?4 WHERE id = ?1",
                params![id, status, exit_code, now()],
            )?;
            Ok(())
        })
    }

    fn run(&self, id: &str) -> RResult<Option<RunRecord>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {} FROM runs WHERE id = ?1", Self::RUN_COLS),
                [id],
                Self::run_from_row,
            )
            .optional()
        })
        .map(|r| r.map(with_liveness))
    }

    /// Most recent runs first.
    fn runs(&self, limit: usize) -> RResult<Vec<RunRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {} FROM runs ORDER BY started_at DESC, id DESC LIMIT ?1",
                Self::RUN_COLS
            ))?;
            let rows = st.query_map([limit as i64], Self::run_from_row)?;
            rows.collect()
        })
        .map(|v: Vec<RunRecord>| v.into_iter().map(with_liveness).collect())
    }

    /// Runs that touched a service (steps or marks), most recent first.
    fn runs_for_service(&self, service: &str, limit: usize) -> RResult<Vec<RunRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {} FROM runs WHERE id IN (
                    SELECT run_id FROM steps WHERE service = ?1
                    UNION SELECT run_id FROM service_history WHERE service = ?1)
                 ORDER BY started_at DESC, id DESC LIMIT ?2",
                Self::RUN_COLS
            ))?;
            let rows = st.query_map(params![service, limit as i64], Self::run_from_row)?;
            rows.collect()
        })
        .map(|v: Vec<RunRecord>| v.into_iter().map(with_liveness).collect())
    }

    /// Commit a `running` row for a new attempt of step `key`; returns its id.
    fn step_start(&self, run_id: &str, key: &str, service: Option<&str>) -> RResult<i64> {
        self.with(|c| {
            let attempt: i64 = c.query_row(
                "SELECT COUNT(*) FROM steps WHERE run_id = ?1 AND key = ?2",
                params![run_id, key],
                |r| r.get(0),
            )?;
            c.execute(
                "INSERT INTO steps (run_id, key, service, attempt, started_at, status) VALUES (?1, ?2, ?3, ?4, ?5, 'running')",
                params![run_id, key, service, attempt + 1, now()],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    fn step_end(
        &self,
        id: i64,
        status: &str,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> RResult<()> {
        let result = result.map(|v| v.to_string());
        self.with(|c| {
            c.execute(
                "UPDATE steps SET status = ?2, ended_at = ?3, result = ?4, error = ?5 WHERE id = ?1",
                params![id, status, now(), result, error],
            )?;
            Ok(())
        })
    }

    /// Merge `key: value` into a step's details (one transaction).
    fn step_add_detail(&self, id: i64, key: &str, value: &Value) -> RResult<()> {
        let mut conn = self.conn.lock();
        let p = &self.path;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| db_err(p, e))?;
        let cur: Option<String> = tx
            .query_row("SELECT details FROM steps WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| db_err(p, e))?;
        let mut obj = match parse_json(cur) {
            Some(Value::Object(o)) => o,
            _ => serde_json::Map::new(),
        };
        obj.insert(key.to_string(), value.clone());
        tx.execute(
            "UPDATE steps SET details = ?2 WHERE id = ?1",
            params![id, Value::Object(obj).to_string()],
        )
        .map_err(|e| db_err(p, e))?;
        tx.commit().map_err(|e| db_err(p, e))
    }

    /// The successful attempt of step `key` in a run, if any.
    fn step_done(&self, run_id: &str, key: &str) -> RResult<Option<StepRecord>> {
        self.with(|c| {
            c.query_row(
                &format!(
                    "SELECT {} FROM steps WHERE run_id = ?1 AND key = ?2 AND status = 'done' ORDER BY id DESC LIMIT 1",
                    Self::STEP_COLS
                ),
                params![run_id, key],
                Self::step_from_row,
            )
            .optional()
        })
    }

    /// Earlier attempts of step `key` in a run (before step id `before`), newest first.
    fn earlier_attempts(&self, run_id: &str, key: &str, before: i64) -> RResult<Vec<StepRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {} FROM steps WHERE run_id = ?1 AND key = ?2 AND id < ?3 ORDER BY id DESC",
                Self::STEP_COLS
            ))?;
            let rows = st.query_map(params![run_id, key, before], Self::step_from_row)?;
            rows.collect()
        })
    }

    fn steps(&self, run_id: &str) -> RResult<Vec<StepRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {} FROM steps WHERE run_id = ?1 ORDER BY id",
                Self::STEP_COLS
            ))?;
            let rows = st.query_map([run_id], Self::step_from_row)?;
            rows.collect()
        })
    }

    fn step(&self, id: i64) -> RResult<Option<StepRecord>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {} FROM steps WHERE id = ?1", Self::STEP_COLS),
                [id],
                Self::step_from_row,
            )
            .optional()
        })
    }

    /// Set a service's status (and append it to its history) in one transaction.
    fn mark(&self, rec: &ServiceRecord) -> RResult<()> {
        let mut conn = self.conn.lock();
        let p = &self.path;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| db_err(p, e))?;
        let d = rec.details.to_string();
        tx.execute(
            "INSERT INTO service_status (service, status, at, run_id, version, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(service) DO UPDATE SET status = excluded.status, at = excluded.at, run_id = excluded.run_id,
             version = excluded.version, details = excluded.details",
            params![rec.service, rec.status, rec.at, rec.run_id, rec.version, d],
        )
        .map_err(|e| db_err(p, e))?;
        tx.execute(
            "INSERT INTO service_history (service, status, at, run_id, version, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![rec.service, rec.status, rec.at, rec.run_id, rec.version, d],
        )
        .map_err(|e| db_err(p, e))?;
        tx.commit().map_err(|e| db_err(p, e))
    }

    /// Current status of every recorded service.
    fn statuses(&self) -> RResult<HashMap<String, String>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT service, status FROM service_status")?;
            let rows =
                st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            rows.collect()
        })
    }

    fn service_status(&self, service: &str) -> RResult<Option<ServiceRecord>> {
        self.with(|c| {
            c.query_row(
                "SELECT service, status, at, run_id, version, details FROM service_status WHERE service = ?1",
                [service],
                Self::svc_from_row,
            )
            .optional()
        })
    }

    /// Status changes of a service, most recent first.
    fn service_history(&self, service: &str, limit: usize) -> RResult<Vec<ServiceRecord>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT service, status, at, run_id, version, details FROM service_history WHERE service = ?1
                 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![service, limit as i64], Self::svc_from_row)?;
            rows.collect()
        })
    }

    fn event(&self, run_id: Option<&str>, kind: &str, data: &Value) -> RResult<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO events (run_id, at, kind, data) VALUES (?1, ?2, ?3, ?4)",
                params![run_id, now(), kind, data.to_string()],
            )?;
            Ok(())
        })
    }

    fn events(&self, run_id: &str) -> RResult<Vec<EventRecord>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, run_id, at, kind, data FROM events WHERE run_id = ?1 ORDER BY id",
            )?;
            let rows = st.query_map([run_id], event_from_row)?;
            rows.collect()
        })
    }

    fn dump(&self) -> RResult<Dump> {
        self.with(|c| {
            let all = |sql: &str| -> String { format!("{sql} ORDER BY rowid") };
            let mut d = Dump::default();
            let mut st = c.prepare(&all(&format!("SELECT {} FROM runs", Self::RUN_COLS)))?;
            d.runs = st
                .query_map([], Self::run_from_row)?
                .collect::<Result<_, _>>()?;
            let mut st = c.prepare(&all(&format!("SELECT {} FROM steps", Self::STEP_COLS)))?;
            d.steps = st
                .query_map([], Self::step_from_row)?
                .collect::<Result<_, _>>()?;
            let mut st = c.prepare(&all(&format!("SELECT {SVC_COLS} FROM service_status")))?;
            d.service_status = st
                .query_map([], Self::svc_from_row)?
                .collect::<Result<_, _>>()?;
            let mut st = c.prepare(&all(&format!("SELECT {SVC_COLS}, id FROM service_history")))?;
            d.service_history = st
                .query_map([], |r| Ok((r.get(6)?, Self::svc_from_row(r)?)))?
                .collect::<Result<_, _>>()?;
            let mut st = c.prepare(&all("SELECT id, run_id, at, kind, data FROM events"))?;
            d.events = st
                .query_map([], event_from_row)?
                .collect::<Result<_, _>>()?;
            Ok(d)
        })
    }

    fn load(&self, d: &Dump) -> RResult<()> {
        let mut conn = self.conn.lock();
        let p = &self.path;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| db_err(p, e))?;
        let run = |tx: &rusqlite::Transaction| -> rusqlite::Result<()> {
            for r in &d.runs {
                tx.execute(
                    &format!("INSERT INTO runs ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)", Self::RUN_COLS),
                    params![r.id, r.script, serde_json::to_string(&r.args).unwrap_or_default(), r.user, r.host,
                        r.pid, r.started_at, r.ended_at, r.status, r.exit_code, r.attempts, r.machine],
                )?;
            }
            for s in &d.steps {
                tx.execute(
                    &format!("INSERT INTO steps ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)", Self::STEP_COLS),
                    params![s.id, s.run_id, s.key, s.service, s.attempt, s.started_at, s.ended_at, s.status,
                        s.result.as_ref().map(|v| v.to_string()), s.details.to_string(), s.error],
                )?;
            }
            for r in &d.service_status {
                tx.execute(
                    &format!(
                        "INSERT INTO service_status ({SVC_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                    ),
                    params![
                        r.service,
                        r.status,
                        r.at,
                        r.run_id,
                        r.version,
                        r.details.to_string()
                    ],
                )?;
            }
            for (id, r) in &d.service_history {
                tx.execute(
                    &format!("INSERT INTO service_history ({SVC_COLS}, id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                    params![r.service, r.status, r.at, r.run_id, r.version, r.details.to_string(), id],
                )?;
            }
            for e in &d.events {
                tx.execute(
                    "INSERT INTO events (id, run_id, at, kind, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![e.id, e.run_id, e.at, e.kind, e.data.to_string()],
                )?;
            }
            Ok(())
        };
        run(&tx).map_err(|e| db_err(p, e))?;
        tx.commit().map_err(|e| db_err(p, e))
    }

    fn is_empty(&self) -> RResult<bool> {
        self.with(|c| {
            c.query_row(
                "SELECT NOT EXISTS (SELECT 1 FROM runs) AND NOT EXISTS (SELECT 1 FROM service_status)
                 AND NOT EXISTS (SELECT 1 FROM service_history) AND NOT EXISTS (SELECT 1 FROM events)",
                [],
                |r| r.get(0),
            )
        })
    }
}

const SVC_COLS: &str = "service, status, at, run_id, version, details";

fn event_from_row(r: &rusqlite::Row) -> rusqlite::Result<EventRecord> {
    Ok(EventRecord {
        id: r.get(0)?,
        run_id: r.get(1)?,
        at: r.get(2)?,
        kind: r.get(3)?,
        data: parse_json(r.get(4)?).unwrap_or(Value::Null),
    })
}

/// A run still marked `running` whose process is gone (on this host) is shown as `interrupted`.
fn with_liveness(mut r: RunRecord) -> RunRecord {
    if r.status == "running" && r.host == super::lock::hostname() && !super::lock::pid_alive(r.pid)
    {
        r.status = "interrupted".into();
    }
    r
}

//! The PostgreSQL backend: a store shared by several controllers (cron on one machine, a standby
//! or the REPL on another).
//!
//! tokio-postgres pooled by deadpool on a small runtime of its own, so the store's synchronous
//! interface works from script threads and from inside async code alike. The same tables and
//! migration versions as the SQLite file; every write is one transaction; times that decide
//! liveness (run heartbeats, the run lease) are the database server's, so the controllers' clocks
//! do not matter. Nothing here needs a session to outlive a transaction (no advisory session
//! locks, no prepared statements kept across transactions), so PgBouncer in transaction pooling works.

use super::lock::Holder;
use super::model::{
    now, parse_json, Backend, Dump, EventRecord, RunRecord, ServiceRecord, StepRecord,
};
use crate::error::{RResult, RalfError};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::Row;

mod lease;
mod records;

/// Versioned migrations, numbered like the SQLite ones (`ralf_schema.version` holds the number applied).
const MIGRATIONS: &[&str] = &[
    // v1
    r#"CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        script TEXT NOT NULL,
        args TEXT NOT NULL DEFAULT '[]',
        "user" TEXT NOT NULL DEFAULT '',
        host TEXT NOT NULL DEFAULT '',
        pid BIGINT NOT NULL DEFAULT 0,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        status TEXT NOT NULL,
        exit_code BIGINT,
        attempts BIGINT NOT NULL DEFAULT 1
    );
    CREATE TABLE steps (
        id BIGSERIAL PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id),
        key TEXT NOT NULL,
        service TEXT,
        attempt BIGINT NOT NULL,
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
        id BIGSERIAL PRIMARY KEY,
        service TEXT NOT NULL,
        status TEXT NOT NULL,
        at TEXT NOT NULL,
        run_id TEXT,
        version TEXT,
        details TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX service_history_name ON service_history(service, id);
    CREATE TABLE events (
        id BIGSERIAL PRIMARY KEY,
        run_id TEXT,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX events_run ON events(run_id, id);"#,
    // v2: run heartbeats and the run lease
    "ALTER TABLE runs ADD COLUMN heartbeat_at TIMESTAMPTZ;
    CREATE TABLE run_lease (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        run_id TEXT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );",
    // v3: schedule ticks claimed by `serve`
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
        id BIGSERIAL PRIMARY KEY,
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

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://USER@HOST:PORT/DB[?sslmode=...]`, without a password.
    pub url: String,
    /// The password (from `state.password_env`); never shown.
    pub password: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// How long a run lease and a run heartbeat stay valid.
    pub lease: Duration,
}

impl PgOptions {
    /// The URL for messages (it never holds a password: the config refuses one).
    pub fn display(&self) -> String {
        self.url.clone()
    }
}

pub struct Pg {
    location: String,
    pool: Pool,
    rt: tokio::runtime::Runtime,
    lease: Duration,
}

fn pg_err(location: &str, e: impl std::fmt::Display) -> RalfError {
    RalfError::unavailable(format!("state store {location}: {e}"))
}

/// The error of a database call, with the server's own message when there is one.
fn db_err(location: &str, e: tokio_postgres::Error) -> RalfError {
    match e.as_db_error() {
        Some(d) => RalfError::io(format!(
            "state store {location}: {} ({})",
            d.message(),
            d.code().code()
        )),
        None => pg_err(location, e),
    }
}

fn tls_config(ca_file: Option<&std::path::Path>) -> RResult<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| RalfError::config(format!("state.ca_file {}: {e}", ca.display())))?;
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            let c = c.map_err(|e| RalfError::config(format!("state.ca_file: {e}")))?;
            roots.add(c).map_err(|e| {
                RalfError::config(format!("state.ca_file: certificate not usable: {e}"))
            })?;
        }
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| b.with_root_certificates(roots).with_no_client_auth())
    .map_err(|e| RalfError::config(format!("state store TLS setup failed: {e}")))
}

impl Pg {
    pub fn connect(o: &PgOptions) -> RResult<Pg> {
        let location = o.display();
        let mut cfg = tokio_postgres::Config::from_str(&o.url)
            .map_err(|e| RalfError::config(format!("state.url {location}: {e}")))?;
        if let Some(p) = &o.password {
            cfg.password(p);
        }
        cfg.application_name("ralf-sh");
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(Duration::from_secs(10));
        }
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(o.ca_file.as_deref())?);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ralf-pg")
            .on_thread_start(crate::logging::never_journal_this_thread)
            .enable_all()
            .build()
            .map_err(|e| pg_err(&location, e))?;
        let mgr = Manager::from_config(
            cfg,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            let _g = rt.enter();
            Pool::builder(mgr)
                .max_size(4)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(Duration::from_secs(30)))
                .create_timeout(Some(Duration::from_secs(15)))
                .build()
                .map_err(|e| pg_err(&location, e))?
        };
        let pg = Pg {
            location,
            pool,
            rt,
            lease: o.lease,
        };
        pg.migrate()?;
        Ok(pg)
    }

    /// Runs the future `make` builds to completion on the store's runtime, from any thread (inside
    /// async code it blocks a helper thread, never the caller's runtime).
    fn block<T: Send, F: Future<Output = T>>(&self, make: impl FnOnce() -> F + Send) -> T {
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| {
                s.spawn(|| {
                    crate::logging::never_journal_this_thread();
                    self.rt.block_on(make())
                })
                .join()
                .expect("state store thread panicked")
            })
        } else {
            self.rt.block_on(make())
        }
    }

    async fn client(&self) -> RResult<deadpool_postgres::Client> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => db_err(&self.location, e),
            other => pg_err(&self.location, other),
        })
    }

    /// Runs `f` with a pooled connection.
    fn with<T: Send>(
        &self,
        f: impl AsyncFnOnce(&deadpool_postgres::Client) -> Result<T, tokio_postgres::Error> + Send,
    ) -> RResult<T> {
        self.block(|| async {
            let c = self.client().await?;
            f(&c).await.map_err(|e| db_err(&self.location, e))
        })
    }

    /// Runs `f` in one transaction (committed when it returns Ok).
    fn tx<T: Send>(
        &self,
        f: impl AsyncFnOnce(&tokio_postgres::Transaction<'_>) -> Result<T, tokio_postgres::Error> + Send,
    ) -> RResult<T> {
        self.block(|| async {
            let mut c = self.client().await?;
            let tx = c
                .transaction()
                .await
                .map_err(|e| db_err(&self.location, e))?;
            let v = f(&tx).await.map_err(|e| db_err(&self.location, e))?;
            tx.commit().await.map_err(|e| db_err(&self.location, e))?;
            Ok(v)
        })
    }

    fn migrate(&self) -> RResult<()> {
        let known = MIGRATIONS.len() as i64;
        let v = self.tx(async |tx| {
            // One migrator at a time (a transaction-scoped lock: fine behind PgBouncer).
            tx.execute("SELECT pg_advisory_xact_lock(424207265)", &[])
                .await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS ralf_schema (version BIGINT NOT NULL);
                 INSERT INTO ralf_schema SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM ralf_schema);",
            )
            .await?;
            let v: i64 = tx
                .query_one("SELECT version FROM ralf_schema", &[])
                .await?
                .get(0);
            if v > known {
                return Ok(v);
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(v as usize) {
                tx.batch_execute(sql).await?;
                tx.execute("UPDATE ralf_schema SET version = $1", &[&(i as i64 + 1)])
                    .await?;
            }
            Ok(v)
        })?;
        if v > known {
            return Err(RalfError::config(format!(
                "state store {}: schema version {v} is newer than this ralf-sh understands ({known}); upgrade ralf-sh",
                self.location
            )));
        }
        Ok(())
    }

    /// A `running` run whose heartbeat is still fresh but whose process ran on this machine and
    /// is gone (a kill -9 here) is interrupted now, not once its heartbeat is out of date.
    fn with_liveness(mut r: RunRecord) -> RunRecord {
        if r.status == "running" && super::lock::gone_here(&r.host, &r.machine, r.pid) {
            r.status = "interrupted".into();
        }
        r
    }

    /// `status` as readers see it: a `running` run without a heartbeat within the lease is interrupted.
    fn run_cols(&self) -> String {
        format!(
            r#"id, script, args, "user", host, pid, started_at, ended_at,
            CASE WHEN status = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < now() - make_interval(secs => {}))
                THEN 'interrupted' ELSE status END,
            exit_code, attempts, machine"#,
            self.lease.as_secs_f64()
        )
    }
}

const RAW_RUN_COLS: &str = r#"id, script, args, "user", host, pid, started_at, ended_at, status, exit_code, attempts, machine"#;
const STEP_COLS: &str =
    "id, run_id, key, service, attempt, started_at, ended_at, status, result, details, error";
const SVC_COLS: &str = "service, status, at, run_id, version, details";

fn run_from_row(r: &Row) -> RunRecord {
    let args: String = r.get(2);
    RunRecord {
        id: r.get(0),
        script: r.get(1),
        args: serde_json::from_str(&args).unwrap_or_default(),
        user: r.get(3),
        host: r.get(4),
        pid: r.get(5),
        started_at: r.get(6),
        ended_at: r.get(7),
        status: r.get(8),
        exit_code: r.get(9),
        attempts: r.get(10),
        machine: r.get(11),
    }
}

fn step_from_row(r: &Row) -> StepRecord {
    StepRecord {
        id: r.get(0),
        run_id: r.get(1),
        key: r.get(2),
        service: r.get(3),
        attempt: r.get(4),
        started_at: r.get(5),
        ended_at: r.get(6),
        status: r.get(7),
        result: parse_json(r.get(8)),
        details: parse_json(r.get(9)).unwrap_or(Value::Object(Default::default())),
        error: r.get(10),
    }
}

fn svc_from_row(r: &Row) -> ServiceRecord {
    ServiceRecord {
        service: r.get(0),
        status: r.get(1),
        at: r.get(2),
        run_id: r.get(3),
        version: r.get(4),
        details: parse_json(r.get(5)).unwrap_or(Value::Object(Default::default())),
    }
}

fn event_from_row(r: &Row) -> EventRecord {
    EventRecord {
        id: r.get(0),
        run_id: r.get(1),
        at: r.get(2),
        kind: r.get(3),
        data: parse_json(r.get(4)).unwrap_or(Value::Null),
    }
}

impl Backend for Pg {
    fn schema_version(&self) -> i64 {
        self.with(async |c| {
            Ok(c.query_one("SELECT version FROM ralf_schema", &[])
                .await?
                .get(0))
        })
        .unwrap_or(0)
    }

    fn begin_run(&self, r: &RunRecord) -> RResult<()> {
        let args = serde_json::to_string(&r.args).unwrap_or_else(|_| "[]".into());
        self.tx(async |tx| {
            let n = tx
                .execute(
                    "UPDATE runs SET status = 'running', ended_at = NULL, exit_code = NULL, pid = $2, host = $3,
                     machine = $4, attempts = attempts + 1, heartbeat_at = now() WHERE id = $1",
                    &[&r.id, &r.pid, &r.host, &r.machine],
                )
                .await?;
            if n > 0 {
                tx.execute(
                    "UPDATE steps SET status = 'interrupted', ended_at = $2 WHERE run_id = $1 AND status = 'running'",
                    &[&r.id, &now()],
                )
                .await?;
            } else {
                tx.execute(
                    r#"INSERT INTO runs (id, script, args, "user", host, pid, started_at, status, attempts, heartbeat_at, machine)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', 1, now(), $8)"#,
                    &[&r.id, &r.script, &args, &r.user, &r.host, &r.pid, &r.started_at, &r.machine],
                )
                .await?;
            }
            Ok(())
        })
    }

    fn end_run(&self, id: &str, status: &str, exit_code: i32) -> RResult<()> {
        self.tx(async |tx| {
            tx.execute(
                "UPDATE steps SET status = 'interrupted', ended_at = $2 WHERE run_id = $1 AND status = 'running'",
                &[&id, &now()],
            )
            .await?;
            tx.execute(
                "UPDATE runs SET status = $2, exit_code = $3, ended_at = $4 WHERE id = $1",
                &[&id, &status, &(exit_code as i64), &now()],
            )
            .await?;
            Ok(())
        })
    }

    fn heartbeat(&self, run_id: &str) -> RResult<()> {
        self.with(async |c| {
            c.execute(
                "UPDATE runs SET heartbeat_at = now() WHERE id = $1 AND status = 'running'",
                &[&run_id],
            )
            .await?;
            Ok(())
        })
    }

    fn run(&self, id: &str) -> RResult<Option<RunRecord>> {
        let sql = format!("SELECT {} FROM runs WHERE id = $1", self.run_cols());
        let r =
            self.with(async |c| Ok(c.query_opt(&sql, &[&id]).await?.as_ref().map(run_from_row)))?;
        Ok(r.map(Self::with_liveness))
    }

    fn runs(&self, limit: usize) -> RResult<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {} FROM runs ORDER BY started_at DESC, id DESC LIMIT $1",
            self.run_cols()
        );
        let rs: Vec<RunRecord> = self.with(async |c| {
            let rows = c.query(&sql, &[&(limit as i64)]).await?;
            Ok(rows.iter().map(run_from_row).collect())
        })?;
        Ok(rs.into_iter().map(Self::with_liveness).collect())
    }

    fn runs_for_service(&self, service: &str, limit: usize) -> RResult<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {} FROM runs WHERE id IN (
                SELECT run_id FROM steps WHERE service = $1
                UNION SELECT run_id FROM service_history WHERE service = $1)
             ORDER BY started_at DESC, id DESC LIMIT $2",
            self.run_cols()
        );
        let rs: Vec<RunRecord> = self.with(async |c| {
            let rows = c.query(&sql, &[&service, &(limit as i64)]).await?;
            Ok(rows.iter().map(run_from_row).collect())
        })?;
        Ok(rs.into_iter().map(Self::with_liveness).collect())
    }

    fn step_start(&self, run_id: &str, key: &str, service: Option<&str>) -> RResult<i64> {
        self.with(async |c| {
            let row = c
                .query_one(
                    "INSERT INTO steps (run_id, key, service, attempt, started_at, status)
                     SELECT $1, $2, $3, COUNT(*) + 1, $4, 'running' FROM steps WHERE run_id = $1 AND key = $2
                     RETURNING id",
                    &[&run_id, &key, &service, &now()],
                )
                .await?;
            Ok(row.get(0))
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
        self.with(async |c| {
            c.execute(
                "UPDATE steps SET status = $2, ended_at = $3, result = $4, error = $5 WHERE id = $1",
                &[&id, &status, &now(), &result, &error],
            )
            .await?;
            Ok(())
        })
    }

    fn step_add_detail(&self, id: i64, key: &str, value: &Value) -> RResult<()> {
        self.tx(async |tx| {
            let cur: Option<String> = tx
                .query_opt("SELECT details FROM steps WHERE id = $1 FOR UPDATE", &[&id])
                .await?
                .map(|r| r.get(0));
            let mut obj = match parse_json(cur) {
                Some(Value::Object(o)) => o,
                _ => serde_json::Map::new(),
            };
            obj.insert(key.to_string(), value.clone());
            tx.execute(
                "UPDATE steps SET details = $2 WHERE id = $1",
                &[&id, &Value::Object(obj).to_string()],
            )
            .await?;
            Ok(())
        })
    }

    fn step_done(&self, run_id: &str, key: &str) -> RResult<Option<StepRecord>> {
        let sql = format!(
            "SELECT {STEP_COLS} FROM steps WHERE run_id = $1 AND key = $2 AND status = 'done' ORDER BY id DESC LIMIT 1"
        );
        self.with(async |c| {
            Ok(c.query_opt(&sql, &[&run_id, &key])
                .await?
                .as_ref()
                .map(step_from_row))
        })
    }

    fn earlier_attempts(&self, run_id: &str, key: &str, before: i64) -> RResult<Vec<StepRecord>> {
        let sql = format!(
            "SELECT {STEP_COLS} FROM steps WHERE run_id = $1 AND key = $2 AND id < $3 ORDER BY id DESC"
        );
        self.with(async |c| {
            let rows = c.query(&sql, &[&run_id, &key, &before]).await?;
            Ok(rows.iter().map(step_from_row).collect())
        })
    }

    fn steps(&self, run_id: &str) -> RResult<Vec<StepRecord>> {
        let sql = format!("SELECT {STEP_COLS} FROM steps WHERE run_id = $1 ORDER BY id");
        self.with(async |c| {
            let rows = c.query(&sql, &[&run_id]).await?;
            Ok(rows.iter().map(step_from_row).collect())
        })
    }

    fn step(&self, id: i64) -> RResult<Option<StepRecord>> {
        let sql = format!("SELECT {STEP_COLS} FROM steps WHERE id = $1");
        self.with(async |c| Ok(c.query_opt(&sql, &[&id]).await?.as_ref().map(step_from_row)))
    }

    fn mark(&self, rec: &ServiceRecord) -> RResult<()> {
        let d = rec.details.to_string();
        self.tx(async |tx| {
            let p: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
                [&rec.service, &rec.status, &rec.at, &rec.run_id, &rec.version, &d];
            tx.execute(
                &format!(
                    "INSERT INTO service_status ({SVC_COLS}) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (service) DO UPDATE SET status = excluded.status, at = excluded.at,
                     run_id = excluded.run_id, version = excluded.version, details = excluded.details"
                ),
                &p,
            )
            .await?;
            tx.execute(
                &format!("INSERT INTO service_history ({SVC_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"),
                &p,
            )
            .await?;
            Ok(())
        })
    }

    fn statuses(&self) -> RResult<HashMap<String, String>> {
        self.with(async |c| {
            let rows = c
                .query("SELECT service, status FROM service_status", &[])
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn service_status(&self, service: &str) -> RResult<Option<ServiceRecord>> {
        let sql = format!("SELECT {SVC_COLS} FROM service_status WHERE service = $1");
        self.with(async |c| {
            Ok(c.query_opt(&sql, &[&service])
                .await?
                .as_ref()
                .map(svc_from_row))
        })
    }

    fn service_history(&self, service: &str, limit: usize) -> RResult<Vec<ServiceRecord>> {
        let sql = format!(
            "SELECT {SVC_COLS} FROM service_history WHERE service = $1 ORDER BY id DESC LIMIT $2"
        );
        self.with(async |c| {
            let rows = c.query(&sql, &[&service, &(limit as i64)]).await?;
            Ok(rows.iter().map(svc_from_row).collect())
        })
    }

    fn event(&self, run_id: Option<&str>, kind: &str, data: &Value) -> RResult<()> {
        let data = data.to_string();
        self.with(async |c| {
            c.execute(
                "INSERT INTO events (run_id, at, kind, data) VALUES ($1, $2, $3, $4)",
                &[&run_id, &now(), &kind, &data],
            )
            .await?;
            Ok(())
        })
    }

    fn events(&self, run_id: &str) -> RResult<Vec<EventRecord>> {
        self.with(async |c| {
            let rows = c
                .query(
                    "SELECT id, run_id, at, kind, data FROM events WHERE run_id = $1 ORDER BY id",
                    &[&run_id],
                )
                .await?;
            Ok(rows.iter().map(event_from_row).collect())
        })
    }

    fn dump(&self) -> RResult<Dump> {
        self.tx(async |tx| {
            let q = async |sql: String| tx.query(&sql, &[]).await;
            Ok(Dump {
                runs: q(format!(
                    "SELECT {RAW_RUN_COLS} FROM runs ORDER BY started_at, id"
                ))
                .await?
                .iter()
                .map(run_from_row)
                .collect(),
                steps: q(format!("SELECT {STEP_COLS} FROM steps ORDER BY id"))
                    .await?
                    .iter()
                    .map(step_from_row)
                    .collect(),
                service_status: q(format!(
                    "SELECT {SVC_COLS} FROM service_status ORDER BY service"
                ))
                .await?
                .iter()
                .map(svc_from_row)
                .collect(),
                service_history: q(format!(
                    "SELECT {SVC_COLS}, id FROM service_history ORDER BY id"
                ))
                .await?
                .iter()
                .map(|r| (r.get(6), svc_from_row(r)))
                .collect(),
                events: q("SELECT id, run_id, at, kind, data FROM events ORDER BY id".into())
                    .await?
                    .iter()
                    .map(event_from_row)
                    .collect(),
            })
        })
    }

    fn load(&self, d: &Dump) -> RResult<()> {
        self.tx(async |tx| {
            let st = tx
                .prepare(&format!(
                    "INSERT INTO runs ({RAW_RUN_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                ))
                .await?;
            for r in &d.runs {
                let args = serde_json::to_string(&r.args).unwrap_or_default();
                tx.execute(
                    &st,
                    &[&r.id, &r.script, &args, &r.user, &r.host, &r.pid, &r.started_at,
                      &r.ended_at, &r.status, &r.exit_code, &r.attempts, &r.machine],
                )
                .await?;
            }
            let st = tx
                .prepare(&format!(
                    "INSERT INTO steps ({STEP_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                ))
                .await?;
            for s in &d.steps {
                let result = s.result.as_ref().map(|v| v.to_string());
                tx.execute(
                    &st,
                    &[&s.id, &s.run_id, &s.key, &s.service, &s.attempt, &s.started_at,
                      &s.ended_at, &s.status, &result, &s.details.to_string(), &s.error],
                )
                .await?;
            }
            let st = tx
                .prepare(&format!(
                    "INSERT INTO service_status ({SVC_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"
                ))
                .await?;
            for r in &d.service_status {
                tx.execute(
                    &st,
                    &[&r.service, &r.status, &r.at, &r.run_id, &r.version, &r.details.to_string()],
                )
                .await?;
            }
            let st = tx
                .prepare(&format!(
                    "INSERT INTO service_history ({SVC_COLS}, id) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ))
                .await?;
            for (id, r) in &d.service_history {
                tx.execute(
                    &st,
                    &[&r.service, &r.status, &r.at, &r.run_id, &r.version, &r.details.to_string(), id],
                )
                .await?;
            }
            let st = tx
                .prepare("INSERT INTO events (id, run_id, at, kind, data) VALUES ($1, $2, $3, $4, $5)")
                .await?;
            for e in &d.events {
                tx.execute(&st, &[&e.id, &e.run_id, &e.at, &e.kind, &e.data.to_string()])
                    .await?;
            }
            // The id sequences go on after the copied rows.
            for t in ["steps", "service_history", "events"] {
                tx.execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{t}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {t}"
                    ),
                    &[],
                )
                .await?;
            }
            Ok(())
        })
    }

    fn is_empty(&self) -> RResult<bool> {
        self.with(async |c| {
            Ok(c.query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM runs) AND NOT EXISTS (SELECT 1 FROM service_status)
                 AND NOT EXISTS (SELECT 1 FROM service_history) AND NOT EXISTS (SELECT 1 FROM events)",
                &[],
            )
            .await?
            .get(0))
        })
    }

    fn lease(&self) -> Option<&dyn crate::state::model::Lease> {
        Some(self)
    }
}

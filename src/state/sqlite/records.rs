//! SQLite: the records `serve` and the dashboard keep beside the run journal (schedule ticks,
//! webhook deliveries, dashboard gate answers) and the figures `/metrics` reads.

use super::*;
use crate::state::model::{GateAnswer, ServeRecords};

impl ServeRecords for Sqlite {
    fn claim_tick(&self, trigger: &str, tick: &str, run_id: &str, by: &str) -> RResult<bool> {
        self.with(|c| {
            let n = c.execute(
                "INSERT INTO trigger_ticks (trigger, tick, run_id, claimed_by, at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (trigger, tick) DO NOTHING",
                params![trigger, tick, run_id, by, now()],
            )?;
            Ok(n == 1)
        })
    }

    fn last_tick(&self, trigger: &str) -> RResult<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT max(tick) FROM trigger_ticks WHERE trigger = ?1",
                [trigger],
                |r| r.get(0),
            )
        })
    }

    fn record_delivery(
        &self,
        id: &str,
        trigger: &str,
        run_id: &str,
        keep_after: &str,
    ) -> RResult<Option<String>> {
        let mut conn = self.conn.lock();
        let p = &self.path;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| db_err(p, e))?;
        let seen: Option<String> = tx
            .query_row(
                "SELECT run_id FROM webhook_deliveries WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db_err(p, e))?;
        if seen.is_none() {
            tx.execute("DELETE FROM webhook_deliveries WHERE at < ?1", [keep_after])
                .map_err(|e| db_err(p, e))?;
            tx.execute(
                "INSERT INTO webhook_deliveries (id, trigger, run_id, at) VALUES (?1, ?2, ?3, ?4)",
                params![id, trigger, run_id, now()],
            )
            .map_err(|e| db_err(p, e))?;
        }
        tx.commit().map_err(|e| db_err(p, e))?;
        Ok(seen)
    }

    fn events_after(&self, run_id: &str, after: i64, limit: usize) -> RResult<Vec<EventRecord>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, run_id, at, kind, data FROM events WHERE run_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )?;
            let rows = st.query_map(params![run_id, after, limit as i64], event_from_row)?;
            rows.collect()
        })
    }

    fn add_gate_answer(&self, a: &GateAnswer) -> RResult<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO gate_answers (gate, nonce, approve, answered_by, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![a.gate, a.nonce, a.approve, a.by, now()],
            )?;
            Ok(())
        })
    }

    fn gate_answers(&self, gate: &str) -> RResult<Vec<GateAnswer>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, gate, nonce, approve, answered_by FROM gate_answers WHERE gate = ?1 ORDER BY id",
            )?;
            let rows = st.query_map([gate], |r| {
                Ok(GateAnswer { id: r.get(0)?, gate: r.get(1)?, nonce: r.get(2)?, approve: r.get(3)?, by: r.get(4)? })
            })?;
            rows.collect()
        })
    }

    fn running_steps_with(&self, detail: &str) -> RResult<Vec<StepRecord>> {
        let like = format!("%\"{detail}\"%");
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {} FROM steps WHERE status = 'running' AND details LIKE ?1 ORDER BY id",
                Self::STEP_COLS
            ))?;
            let rows = st.query_map([like], Self::step_from_row)?;
            rows.collect()
        })
    }

    fn delivery(&self, id: &str) -> RResult<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT run_id FROM webhook_deliveries WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
        })
    }

    fn run_counts(&self) -> RResult<Vec<(String, String, i64)>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT script, status, count(*) FROM runs GROUP BY script, status ORDER BY script, status")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })
    }

    fn last_successes(&self) -> RResult<Vec<(String, String)>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT service, max(at) FROM service_history WHERE status = 'deployed' GROUP BY service ORDER BY service")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    fn step_durations(&self, bounds: &[f64]) -> RResult<(Vec<i64>, i64, f64)> {
        let cases: Vec<String> = bounds
            .iter()
            .map(|b| format!("sum(CASE WHEN d <= {b} THEN 1 ELSE 0 END)"))
            .collect();
        let sql = format!(
            "SELECT {}, count(*), coalesce(sum(d), 0) FROM (SELECT (julianday(ended_at) - julianday(started_at)) * 86400.0 AS d
             FROM steps WHERE ended_at IS NOT NULL AND status IN ('done', 'failed'))",
            if cases.is_empty() { "0".to_string() } else { cases.join(", ") }
        );
        self.with(|c| {
            c.query_row(&sql, [], |r| {
                let mut v = Vec::new();
                for i in 0..bounds.len() {
                    v.push(r.get::<_, Option<i64>>(i)?.unwrap_or(0));
                }
                Ok((
                    v,
                    r.get(bounds.len().max(1))?,
                    r.get(bounds.len().max(1) + 1)?,
                ))
            })
        })
    }

    fn event_histogram(
        &self,
        kind: &str,
        field: &str,
        bounds: &[f64],
    ) -> RResult<(Vec<i64>, i64, f64)> {
        let v = format!(
            "CAST(json_extract(data, '$.{}') AS REAL)",
            field_name(field)?
        );
        let cases: Vec<String> = bounds
            .iter()
            .map(|b| format!("sum(CASE WHEN v <= {b} THEN 1 ELSE 0 END)"))
            .collect();
        let sql = format!(
            "SELECT {}, count(*), coalesce(sum(v), 0) FROM (SELECT {v} AS v FROM events WHERE kind = ?1) WHERE v IS NOT NULL",
            if cases.is_empty() { "0".to_string() } else { cases.join(", ") }
        );
        let n = bounds.len().max(1);
        self.with(|c| {
            c.query_row(&sql, [kind], |r| {
                let mut out = Vec::new();
                for i in 0..bounds.len() {
                    out.push(r.get::<_, Option<i64>>(i)?.unwrap_or(0));
                }
                Ok((out, r.get(n)?, r.get(n + 1)?))
            })
        })
    }
}

/// A JSON field name for a query (letters, digits, `_` only).
pub(crate) fn field_name(f: &str) -> RResult<&str> {
    if !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(f)
    } else {
        Err(RalfError::internal(format!("not a field name: {f}")))
    }
}

//! PostgreSQL: the records `serve` and the dashboard keep beside the run journal (schedule ticks,
//! webhook deliveries, dashboard gate answers) and the figures `/metrics` reads.

use super::*;
use crate::state::model::{GateAnswer, ServeRecords};

impl ServeRecords for Pg {
    fn claim_tick(&self, trigger: &str, tick: &str, run_id: &str, by: &str) -> RResult<bool> {
        self.with(async |c| {
            let n = c
                .execute(
                    "INSERT INTO trigger_ticks (trigger, tick, run_id, claimed_by, at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (trigger, tick) DO NOTHING",
                    &[&trigger, &tick, &run_id, &by, &now()],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn last_tick(&self, trigger: &str) -> RResult<Option<String>> {
        self.with(async |c| {
            Ok(c.query_one(
                "SELECT max(tick) FROM trigger_ticks WHERE trigger = $1",
                &[&trigger],
            )
            .await?
            .get(0))
        })
    }

    fn record_delivery(
        &self,
        id: &str,
        trigger: &str,
        run_id: &str,
        keep_after: &str,
    ) -> RResult<Option<String>> {
        self.tx(async |tx| {
            tx.execute("DELETE FROM webhook_deliveries WHERE at < $1", &[&keep_after])
                .await?;
            let n = tx
                .execute(
                    "INSERT INTO webhook_deliveries (id, trigger, run_id, at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO NOTHING",
                    &[&id, &trigger, &run_id, &now()],
                )
                .await?;
            if n == 1 {
                return Ok(None);
            }
            Ok(tx
                .query_opt("SELECT run_id FROM webhook_deliveries WHERE id = $1", &[&id])
                .await?
                .map(|r| r.get(0)))
        })
    }

    fn events_after(&self, run_id: &str, after: i64, limit: usize) -> RResult<Vec<EventRecord>> {
        self.with(async |c| {
            let rows = c
                .query(
                    "SELECT id, run_id, at, kind, data FROM events WHERE run_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                    &[&run_id, &after, &(limit as i64)],
                )
                .await?;
            Ok(rows.iter().map(event_from_row).collect())
        })
    }

    fn add_gate_answer(&self, a: &GateAnswer) -> RResult<()> {
        self.with(async |c| {
            c.execute(
                "INSERT INTO gate_answers (gate, nonce, approve, answered_by, at) VALUES ($1, $2, $3, $4, $5)",
                &[&a.gate, &a.nonce, &a.approve, &a.by, &now()],
            )
            .await?;
            Ok(())
        })
    }

    fn gate_answers(&self, gate: &str) -> RResult<Vec<GateAnswer>> {
        self.with(async |c| {
            let rows = c
                .query(
                    "SELECT id, gate, nonce, approve, answered_by FROM gate_answers WHERE gate = $1 ORDER BY id",
                    &[&gate],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| GateAnswer { id: r.get(0), gate: r.get(1), nonce: r.get(2), approve: r.get(3), by: r.get(4) })
                .collect())
        })
    }

    fn running_steps_with(&self, detail: &str) -> RResult<Vec<StepRecord>> {
        let like = format!("%\"{detail}\"%");
        let sql = format!("SELECT {STEP_COLS} FROM steps WHERE status = 'running' AND details LIKE $1 ORDER BY id");
        self.with(async |c| {
            let rows = c.query(&sql, &[&like]).await?;
            Ok(rows.iter().map(step_from_row).collect())
        })
    }

    fn delivery(&self, id: &str) -> RResult<Option<String>> {
        self.with(async |c| {
            Ok(c.query_opt(
                "SELECT run_id FROM webhook_deliveries WHERE id = $1",
                &[&id],
            )
            .await?
            .map(|r| r.get(0)))
        })
    }

    fn run_counts(&self) -> RResult<Vec<(String, String, i64)>> {
        self.with(async |c| {
            let rows = c
                .query("SELECT script, status, count(*) FROM runs GROUP BY script, status ORDER BY script, status", &[])
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
        })
    }

    fn last_successes(&self) -> RResult<Vec<(String, String)>> {
        self.with(async |c| {
            let rows = c
                .query("SELECT service, max(at) FROM service_history WHERE status = 'deployed' GROUP BY service ORDER BY service", &[])
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn step_durations(&self, bounds: &[f64]) -> RResult<(Vec<i64>, i64, f64)> {
        let cases: Vec<String> = bounds
            .iter()
            .map(|b| format!("count(*) FILTER (WHERE d <= {b})"))
            .collect();
        let sql = format!(
            "SELECT {}, count(*), coalesce(sum(d), 0)::float8 FROM (SELECT extract(epoch FROM ended_at::timestamptz - started_at::timestamptz)::float8 AS d
             FROM steps WHERE ended_at IS NOT NULL AND status IN ('done', 'failed')) s",
            if cases.is_empty() { "0::bigint".to_string() } else { cases.join(", ") }
        );
        let n = bounds.len().max(1);
        self.with(async |c| {
            let r = c.query_one(&sql, &[]).await?;
            let v = (0..bounds.len()).map(|i| r.get::<_, i64>(i)).collect();
            Ok((v, r.get(n), r.get(n + 1)))
        })
    }

    fn event_histogram(
        &self,
        kind: &str,
        field: &str,
        bounds: &[f64],
    ) -> RResult<(Vec<i64>, i64, f64)> {
        let f = crate::state::sqlite::field_name(field)?;
        let cases: Vec<String> = bounds
            .iter()
            .map(|b| format!("count(*) FILTER (WHERE v <= {b})"))
            .collect();
        let sql = format!(
            "SELECT {}, count(*), coalesce(sum(v), 0)::float8 FROM (SELECT (data::json->>'{f}')::float8 AS v FROM events WHERE kind = $1) s WHERE v IS NOT NULL",
            if cases.is_empty() { "0::bigint".to_string() } else { cases.join(", ") }
        );
        let n = bounds.len().max(1);
        self.with(async |c| {
            let r = c.query_one(&sql, &[&kind]).await?;
            let v = (0..bounds.len()).map(|i| r.get::<_, i64>(i)).collect();
            Ok((v, r.get(n), r.get(n + 1)))
        })
    }
}

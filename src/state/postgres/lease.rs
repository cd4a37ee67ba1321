//! The run lease of a PostgreSQL store (see [`crate::state::lease`]).

use super::*;
use crate::state::model::Lease;

/// The run lease: one row, taken in a transaction that locks it (`FOR UPDATE`), so two controllers
/// asking at once serialise on the row and exactly one gets it.
const LEASE: &str = "run";

impl Lease for Pg {
    fn ttl(&self) -> Duration {
        self.lease
    }

    fn acquire(&self, me: &Holder) -> RResult<Result<Option<Holder>, (Holder, String)>> {
        let holder = serde_json::to_string(me).unwrap_or_default();
        let secs = self.lease.as_secs_f64();
        self.tx(async |tx| {
            tx.execute(
                "INSERT INTO run_lease (name, holder, run_id, expires_at) VALUES ($1, '', '', '-infinity')
                 ON CONFLICT (name) DO NOTHING",
                &[&LEASE],
            )
            .await?;
            let row = tx
                .query_one(
                    "SELECT holder, run_id, expires_at < now(), expires_at::text FROM run_lease WHERE name = $1 FOR UPDATE",
                    &[&LEASE],
                )
                .await?;
            let (old, expired, until): (String, bool, String) =
                (row.get(0), row.get(2), row.get(3));
            let old: Option<Holder> = serde_json::from_str(&old).ok();
            let mine = |h: &Holder| h.host == me.host && h.pid == me.pid;
            if let Some(h) = &old {
                // Held by another process (even one running the same run) until it expires,
                // unless that process ran on this machine and is gone (a kill -9 here).
                if !expired && !mine(h) && !h.is_dead_here() {
                    return Ok(Err((h.clone(), until)));
                }
            }
            tx.execute(
                "UPDATE run_lease SET holder = $2, run_id = $3, expires_at = now() + make_interval(secs => $4)
                 WHERE name = $1",
                &[&LEASE, &holder, &me.run_id, &secs],
            )
            .await?;
            Ok(Ok(old.filter(|h| !mine(h))))
        })
    }

    fn renew(&self, me: &Holder) -> RResult<bool> {
        let secs = self.lease.as_secs_f64();
        let holder = serde_json::to_string(me).unwrap_or_default();
        self.with(async |c| {
            let n = c
                .execute(
                    "UPDATE run_lease SET expires_at = now() + make_interval(secs => $3)
                     WHERE name = $1 AND holder = $2",
                    &[&LEASE, &holder, &secs],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn release(&self, me: &Holder) -> RResult<()> {
        let holder = serde_json::to_string(me).unwrap_or_default();
        self.with(async |c| {
            c.execute(
                "UPDATE run_lease SET holder = '', run_id = '', expires_at = '-infinity'
                 WHERE name = $1 AND holder = $2",
                &[&LEASE, &holder],
            )
            .await?;
            Ok(())
        })
    }

    fn current(&self) -> RResult<Option<Holder>> {
        self.with(async |c| {
            let row = c
                .query_opt(
                    "SELECT holder FROM run_lease WHERE name = $1 AND expires_at >= now()",
                    &[&LEASE],
                )
                .await?;
            Ok(row.and_then(|r| serde_json::from_str(&r.get::<_, String>(0)).ok()))
        })
    }
}

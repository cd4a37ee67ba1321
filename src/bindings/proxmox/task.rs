//! `PveTask` handles: a task's status, exit status, log, and waiting for it.

use super::*;

impl PveTask {
    /// The task as it is now: read again when never read, or still running and read more than a
    /// second ago (on an error the last known status stays).
    fn live(&self, ctx: &NativeCallContext) -> Option<TaskStatus> {
        let stale = match &*self.last.lock() {
            None => true,
            Some((s, at)) => s.status != "stopped" && at.elapsed() > Duration::from_secs(1),
        };
        if stale {
            if let Ok(h) = host(ctx) {
                let (c, upid) = (self.c.clone(), self.upid.clone());
                match block_on(
                    &h,
                    "proxmox task status",
                    Some(Duration::from_secs(30)),
                    async move { c.task_status(&upid).await },
                ) {
                    Ok(st) => *self.last.lock() = Some((st, Instant::now())),
                    Err(e) => {
                        tracing::debug!(target: "ralf::proxmox", "could not read task {}: {e}", self.upid)
                    }
                }
            }
        }
        self.last.lock().as_ref().map(|(s, _)| s.clone())
    }
}

#[export_module]
pub(crate) mod task_handles {
    use super::*;

    // ---- PveTask ----

    /// `PveTask(UPID:..., stopped, OK)`.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2012);
    /// let t = g.snapshot("ex-print");
    /// print(t);
    /// g.delete_snapshot("ex-print");
    /// ```
    #[rhai_fn(global, name = "to_string", name = "to_debug", pure)]
    pub fn task_to_string(ctx: NativeCallContext, t: &mut PveTask) -> String {
        match &t.live(&ctx) {
            Some(s) => format!(
                "PveTask({}, {}, {})",
                t.upid,
                s.status,
                s.exitstatus.as_deref().unwrap_or("-")
            ),
            None => format!("PveTask({})", t.upid),
        }
    }

    /// The task id.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2012);
    /// assert(g.snapshot("ex-upid").upid.starts_with("UPID:"));
    /// g.delete_snapshot("ex-upid");
    /// ```
    #[rhai_fn(global, get = "upid", pure)]
    pub fn task_upid(t: &mut PveTask) -> String {
        t.upid.clone()
    }

    /// "running" or "stopped", as it is now ("unknown" when the server cannot be asked).
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2012);
    /// assert(g.snapshot("ex-status").status == "stopped");
    /// g.delete_snapshot("ex-status");
    /// ```
    #[rhai_fn(global, get = "status", pure)]
    pub fn task_status(ctx: NativeCallContext, t: &mut PveTask) -> String {
        t.live(&ctx)
            .map(|s| s.status)
            .unwrap_or_else(|| "unknown".into())
    }

    /// Exit status (`OK`, `WARNINGS: n`, or the error) once stopped, else "".
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2012);
    /// assert(g.snapshot("ex-exit").exitstatus == "OK");
    /// g.delete_snapshot("ex-exit");
    /// ```
    #[rhai_fn(global, get = "exitstatus", pure)]
    pub fn task_exitstatus(ctx: NativeCallContext, t: &mut PveTask) -> String {
        t.live(&ctx).and_then(|s| s.exitstatus).unwrap_or_default()
    }

    /// True when the task ended with `OK` or `WARNINGS: n`.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2012);
    /// assert(g.snapshot("ex-ok").ok);
    /// g.delete_snapshot("ex-ok");
    /// ```
    #[rhai_fn(global, get = "ok", pure)]
    pub fn task_ok(ctx: NativeCallContext, t: &mut PveTask) -> bool {
        t.live(&ctx).is_some_and(|s| s.ok())
    }

    /// Wait until the task stops (default deadline 10 minutes) and return it, failed or not (check
    /// `t.ok`, as with a Semaphore task); `timeout` when the deadline passes first (the task keeps
    /// running on the server). `wait_ok` throws on a failed task instead.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2012);
    /// let t = g.snapshot("ex-wait", #{ wait: false });
    /// assert(t.wait().ok);
    /// g.delete_snapshot("ex-wait");
    /// ```
    #[rhai_fn(global, name = "wait", return_raw)]
    pub fn task_wait0(ctx: NativeCallContext, t: &mut PveTask) -> RhaiResult<PveTask> {
        wait_impl(&ctx, t, WaitOpts::default(), false)
    }

    /// Wait with `#{ timeout }`.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2012);
    /// let t = g.snapshot("ex-wait2", #{ wait: false });
    /// t.wait(#{ timeout: "1m" });
    /// g.delete_snapshot("ex-wait2");
    /// ```
    #[rhai_fn(global, name = "wait", return_raw)]
    pub fn task_wait1(ctx: NativeCallContext, t: &mut PveTask, opts: Map) -> RhaiResult<PveTask> {
        let o: WaitOpts = decode(&opts, "wait").at(&ctx)?;
        wait_impl(&ctx, t, o, false)
    }

    /// Wait, and throw when the task failed: exit status and log tail in the message, kind
    /// `locked`, `not_found` or `command_failed`.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2012);
    /// let t = g.snapshot("ex-wait3", #{ wait: false });
    /// t.wait_ok();
    /// g.delete_snapshot("ex-wait3");
    /// ```
    #[rhai_fn(global, name = "wait_ok", return_raw)]
    pub fn task_wait_ok0(ctx: NativeCallContext, t: &mut PveTask) -> RhaiResult<PveTask> {
        wait_impl(&ctx, t, WaitOpts::default(), true)
    }

    /// `wait_ok` with `#{ timeout }`.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2012);
    /// let t = g.snapshot("ex-wait4", #{ wait: false });
    /// t.wait_ok(#{ timeout: "1m" });
    /// g.delete_snapshot("ex-wait4");
    /// ```
    #[rhai_fn(global, name = "wait_ok", return_raw)]
    pub fn task_wait_ok1(
        ctx: NativeCallContext,
        t: &mut PveTask,
        opts: Map,
    ) -> RhaiResult<PveTask> {
        let o: WaitOpts = decode(&opts, "wait_ok").at(&ctx)?;
        wait_impl(&ctx, t, o, true)
    }

    /// The last `n` lines of the task's log.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2012);
    /// let t = g.snapshot("ex-log");
    /// assert(t.log(5)[-1] == "TASK OK");
    /// g.delete_snapshot("ex-log");
    /// ```
    #[rhai_fn(global, name = "log", return_raw)]
    pub fn task_log(ctx: NativeCallContext, t: &mut PveTask, n: i64) -> RhaiResult<Array> {
        let h = host(&ctx)?;
        let c = t.c.clone();
        let upid = t.upid.clone();
        let n = n.max(0) as usize;
        let lines = block_on(&h, "proxmox task log", None, async move {
            c.task_log_tail(&upid, n).await
        })
        .at(&ctx)?;
        Ok(lines.into_iter().map(Dynamic::from).collect())
    }
}

/// Wait until the task stops; with `ok`, a failed task is its error.
fn wait_impl(
    ctx: &NativeCallContext,
    t: &mut PveTask,
    o: WaitOpts,
    ok: bool,
) -> RhaiResult<PveTask> {
    let h = host(ctx)?;
    let c = t.c.clone();
    let upid = t.upid.clone();
    let deadline = o.timeout.map(|t| t.0).unwrap_or(DEFAULT_WAIT);
    let st = block_on(&h, "proxmox task wait", None, async move {
        if ok {
            c.wait_task(&upid, Some(deadline)).await
        } else {
            c.wait_stopped(&upid, Some(deadline)).await
        }
    })
    .at(ctx)?;
    *t.last.lock() = Some((st, Instant::now()));
    Ok(t.clone())
}

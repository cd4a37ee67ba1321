//! `Guest` handles: status, config, power actions (HA-aware), snapshots, rollback, `pct exec`.

use super::*;

#[export_module]
pub(crate) mod guest_handles {
    use super::*;

    // ---- Guest ----

    /// `CT 2010 (postgresql) on pve`.
    ///
    /// ```rhai
    /// print(proxmox::connect().guest(2010));
    /// ```
    #[rhai_fn(global, name = "to_string", name = "to_debug", pure)]
    pub fn guest_to_string(g: &mut Guest) -> String {
        guest_label(&g.g)
    }

    /// VMID.
    ///
    /// ```rhai
    /// assert(proxmox::connect().guest(2010).vmid == 2010);
    /// ```
    #[rhai_fn(global, get = "vmid", pure)]
    pub fn guest_vmid(g: &mut Guest) -> i64 {
        g.g.vmid as i64
    }

    /// Name (container hostname or VM name).
    ///
    /// ```rhai
    /// print(proxmox::connect().guest(2010).name);
    /// ```
    #[rhai_fn(global, get = "name", pure)]
    pub fn guest_name(g: &mut Guest) -> String {
        g.g.name.clone()
    }

    /// The node the guest lives on.
    ///
    /// ```rhai
    /// print(proxmox::connect().guest(2010).node);
    /// ```
    #[rhai_fn(global, get = "node", pure)]
    pub fn guest_node(g: &mut Guest) -> String {
        g.g.node.clone()
    }

    /// "lxc" or "qemu".
    ///
    /// ```rhai
    /// assert(proxmox::connect().guest(2010).kind == "lxc");
    /// ```
    #[rhai_fn(global, get = "kind", pure)]
    pub fn guest_kind(g: &mut Guest) -> String {
        g.g.kind.as_str().to_string()
    }

    /// Whether the guest runs right now (asks the server each time).
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2010);
    /// print(if g.running { "up" } else { "down" });
    /// ```
    #[rhai_fn(global, get = "running", pure, return_raw)]
    pub fn guest_running(ctx: NativeCallContext, g: &mut Guest) -> RhaiResult<bool> {
        let h = host(&ctx)?;
        let c = g.c.clone();
        let gr = g.g.clone();
        let v = block_on(
            &h,
            "proxmox status",
            None,
            async move { c.status(&gr).await },
        )
        .at(&ctx)?;
        Ok(v["status"].as_str() == Some("running"))
    }

    /// Whether the storage of the guest's disks can take snapshots (`GET .../feature?feature=snapshot`).
    /// Directory or NFS storage with raw images or container volumes cannot; a snapshot there fails
    /// with `invalid` (details `unsupported: "snapshot"`).
    ///
    /// ```rhai
    /// let pve = proxmox::connect();
    /// assert(pve.guest(2010).snapshot_supported());
    /// assert(!pve.guest(2031).snapshot_supported());
    /// ```
    #[rhai_fn(global, name = "snapshot_supported", return_raw)]
    pub fn guest_snapshot_supported(ctx: NativeCallContext, g: &mut Guest) -> RhaiResult<bool> {
        let h = host(&ctx)?;
        let c = g.c.clone();
        let gr = g.g.clone();
        block_on(&h, "proxmox feature", None, async move {
            c.has_feature(&gr, "snapshot").await
        })
        .at(&ctx)
    }

    /// Whether the HA stack manages the guest (`/cluster/resources` lists it with a `hastate`).
    /// Its `start()`/`stop()` then wait until the guest really is running/stopped.
    ///
    /// ```rhai
    /// let pve = proxmox::connect();
    /// assert(pve.guest(2030).ha_managed);
    /// assert(!pve.guest(2010).ha_managed);
    /// ```
    #[rhai_fn(global, get = "ha_managed", pure)]
    pub fn guest_ha_managed(g: &mut Guest) -> bool {
        g.g.raw.get("hastate").is_some()
    }

    /// The guest's current status: `status`, `name`, `cpu`, `mem`, `maxmem`, `uptime`, `lock` (when
    /// locked), `qmpstatus` (VMs), ...
    ///
    /// ```rhai
    /// let s = proxmox::connect().guest(2010).status();
    /// print(`${s.status}, up ${s.uptime}s`);
    /// ```
    #[rhai_fn(global, name = "status", return_raw)]
    pub fn guest_status(ctx: NativeCallContext, g: &mut Guest) -> RhaiResult<Dynamic> {
        describe_guest(&ctx, g)
    }

    /// The guest's configuration (flat map: `hostname`/`name`, `memory`, `cores`, `net0`, `parent`,
    /// `lock`, `digest`, ...).
    ///
    /// ```rhai
    /// let cfg = proxmox::connect().guest(2010).config();
    /// print(cfg.memory);
    /// ```
    #[rhai_fn(global, name = "config", return_raw)]
    pub fn guest_config(ctx: NativeCallContext, g: &mut Guest) -> RhaiResult<Dynamic> {
        let h = host(&ctx)?;
        let c = g.c.clone();
        let gr = g.g.clone();
        let v = block_on(
            &h,
            "proxmox config",
            None,
            async move { c.config(&gr).await },
        )
        .at(&ctx)?;
        to_dyn(v).at(&ctx)
    }

    /// Change configuration keys (`PUT .../config`), e.g. `#{ description: "...", memory: 2048 }`;
    /// a `()` value deletes the key. A snapshot rollback restores the old values.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(4012);
    /// g.set_config(#{ description: "managed by ralf-sh" });
    /// assert(g.config().description == "managed by ralf-sh");
    /// ```
    #[rhai_fn(global, name = "set_config", return_raw)]
    pub fn guest_set_config(ctx: NativeCallContext, g: &mut Guest, values: Map) -> RhaiResult<()> {
        let h = host(&ctx)?;
        let json: serde_json::Value = rhai::serde::from_dynamic(&Dynamic::from_map(values))
            .map_err(|e| RalfError::invalid(format!("set_config: values are not plain data: {e}")))
            .at(&ctx)?;
        let obj = json.as_object().cloned().unwrap_or_default();
        let (set, del): (Vec<_>, Vec<_>) = obj.into_iter().partition(|(_, v)| !v.is_null());
        let mut params = pve::form_params(&set.into_iter().collect());
        if !del.is_empty() {
            params.push((
                "delete".into(),
                del.iter()
                    .map(|(k, _)| k.clone())
                    .collect::<Vec<_>>()
                    .join(","),
            ));
        }
        let keys: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
        if h.dry_run(
            "proxmox",
            format!("set config {} of {}", keys.join(", "), guest_label(&g.g)),
        ) {
            return Ok(());
        }
        let c = g.c.clone();
        let gr = g.g.clone();
        block_on(&h, "proxmox set_config", None, async move {
            let p: Vec<(&str, String)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            c.set_config(&gr, &p).await
        })
        .at(&ctx)
    }

    /// Start the guest and wait for the task. Starting a running container throws `conflict`. For
    /// an HA-managed guest the task (`hastart`) only asks the HA stack, so this also waits until the
    /// guest runs (within the same deadline, default 10m; `timeout` when it does not).
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(9000);
    /// if g.running { g.stop(); }
    /// g.start();
    /// assert(g.running);
    /// g.stop();
    /// ```
    #[rhai_fn(global, name = "start", return_raw)]
    pub fn guest_start0(ctx: NativeCallContext, g: &mut Guest) -> RhaiResult<Dynamic> {
        power(&ctx, g, "start", ActionOpts::default())
    }

    /// Start with options `#{ timeout, wait }` (`wait: false` returns the running `PveTask`).
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2013);
    /// if g.running { g.stop(); }
    /// let t = g.start(#{ wait: false });
    /// t.wait(#{ timeout: "2m" });
    /// g.stop();
    /// ```
    #[rhai_fn(global, name = "start", return_raw)]
    pub fn guest_start1(ctx: NativeCallContext, g: &mut Guest, opts: Map) -> RhaiResult<Dynamic> {
        let o: ActionOpts = decode(&opts, "start").at(&ctx)?;
        power(&ctx, g, "start", o)
    }

    /// Hard-stop the guest (no clean shutdown) and wait for the task; for an HA-managed guest
    /// (`hastop`) also until it has stopped.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2013);
    /// if !g.running { g.start(); }
    /// g.stop();
    /// assert(!g.running);
    /// ```
    #[rhai_fn(global, name = "stop", return_raw)]
    pub fn guest_stop0(ctx: NativeCallContext, g: &mut Guest) -> RhaiResult<Dynamic> {
        power(&ctx, g, "stop", ActionOpts::default())
    }

    /// Stop with options `#{ timeout, wait }`.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2013);
    /// if !g.running { g.start(); }
    /// g.stop(#{ timeout: "1m" });
    /// ```
    #[rhai_fn(global, name = "stop", return_raw)]
    pub fn guest_stop1(ctx: NativeCallContext, g: &mut Guest, opts: Map) -> RhaiResult<Dynamic> {
        let o: ActionOpts = decode(&opts, "stop").at(&ctx)?;
        power(&ctx, g, "stop", o)
    }

    /// Shut the guest down cleanly and wait for the task.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(4012);
    /// if !g.running { g.start(); }
    /// g.shutdown();
    /// ```
    #[rhai_fn(global, name = "shutdown", return_raw)]
    pub fn guest_shutdown0(ctx: NativeCallContext, g: &mut Guest) -> RhaiResult<Dynamic> {
        shutdown_impl(&ctx, g, ShutdownOpts::default())
    }

    /// Shut down with `#{ timeout, force, wait }`: `timeout` is the time the guest gets (Proxmox
    /// default 60s), `force: true` hard-stops it after that instead of failing.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(4012);
    /// if !g.running { g.start(); }
    /// g.shutdown(#{ timeout: 30, force: true });
    /// ```
    #[rhai_fn(global, name = "shutdown", return_raw)]
    pub fn guest_shutdown1(
        ctx: NativeCallContext,
        g: &mut Guest,
        opts: Map,
    ) -> RhaiResult<Dynamic> {
        let o: ShutdownOpts = decode(&opts, "shutdown").at(&ctx)?;
        shutdown_impl(&ctx, g, o)
    }

    /// Reboot a running guest and wait for the task.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2012);
    /// if !g.running { g.start(); }
    /// g.reboot();
    /// ```
    #[rhai_fn(global, name = "reboot", return_raw)]
    pub fn guest_reboot0(ctx: NativeCallContext, g: &mut Guest) -> RhaiResult<Dynamic> {
        power(&ctx, g, "reboot", ActionOpts::default())
    }

    /// Reboot with `#{ timeout, wait }`.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2012);
    /// if !g.running { g.start(); }
    /// g.reboot(#{ timeout: "5m" });
    /// ```
    #[rhai_fn(global, name = "reboot", return_raw)]
    pub fn guest_reboot1(ctx: NativeCallContext, g: &mut Guest, opts: Map) -> RhaiResult<Dynamic> {
        let o: ActionOpts = decode(&opts, "reboot").at(&ctx)?;
        power(&ctx, g, "reboot", o)
    }

    /// Take a snapshot and wait for it. The name is checked against Proxmox's rules first (starts
    /// with a letter; letters, digits, `_`, `-`; 2..40 chars; not `current`): a bad name throws
    /// `invalid` without contacting the server. On storage without snapshot support the task fails
    /// ("snapshot feature is not available"): `invalid` with details `unsupported: "snapshot"`
    /// (`snapshot_supported()` asks first); a config-lock timeout is `locked`.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2010);
    /// let name = "ex" + (time::unix() * 1000.0).to_int();
    /// g.snapshot(name);
    /// assert(g.snapshots().some(|s| s.name == name));
    /// g.delete_snapshot(name);
    /// ```
    #[rhai_fn(global, name = "snapshot", return_raw)]
    pub fn guest_snapshot1(
        ctx: NativeCallContext,
        g: &mut Guest,
        name: &str,
    ) -> RhaiResult<Dynamic> {
        snapshot_impl(&ctx, g, name, SnapshotOpts::default())
    }

    /// Snapshot with `#{ description, timeout, wait }`.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2010);
    /// let name = "ex" + (time::unix() * 1000.0).to_int();
    /// g.snapshot(name, #{ description: "before upgrade" });
    /// g.delete_snapshot(name);
    /// ```
    #[rhai_fn(global, name = "snapshot", return_raw)]
    pub fn guest_snapshot2(
        ctx: NativeCallContext,
        g: &mut Guest,
        name: &str,
        opts: Map,
    ) -> RhaiResult<Dynamic> {
        let o: SnapshotOpts = decode(&opts, "snapshot").at(&ctx)?;
        snapshot_impl(&ctx, g, name, o)
    }

    /// The guest's snapshots (`name`, `description`, `snaptime`, `parent`), ending with Proxmox's
    /// `current` pseudo-entry ("You are here!", `running`, `parent` = latest snapshot).
    ///
    /// ```rhai
    /// let snaps = proxmox::connect().guest(2010).snapshots();
    /// assert(snaps[-1].name == "current");
    /// ```
    #[rhai_fn(global, name = "snapshots", return_raw)]
    pub fn guest_snapshots(ctx: NativeCallContext, g: &mut Guest) -> RhaiResult<Array> {
        let h = host(&ctx)?;
        let c = g.c.clone();
        let gr = g.g.clone();
        let v = block_on(&h, "proxmox snapshots", None, async move {
            c.snapshots(&gr).await
        })
        .at(&ctx)?;
        v.into_iter().map(|s| to_dyn(s).at(&ctx)).collect()
    }

    /// Roll back to a snapshot and wait: config and disks return to the snapshot's state. A running
    /// guest is stopped first and stays stopped (use `#{ start: true }`). A locked guest throws
    /// `locked` naming the lock.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(10015);
    /// g.snapshot("ex-rollback");
    /// g.rollback("ex-rollback");
    /// g.delete_snapshot("ex-rollback");
    /// ```
    #[rhai_fn(global, name = "rollback", return_raw)]
    pub fn guest_rollback1(
        ctx: NativeCallContext,
        g: &mut Guest,
        name: &str,
    ) -> RhaiResult<Dynamic> {
        rollback_impl(&ctx, g, name, RollbackOpts::default())
    }

    /// Roll back with `#{ start, start_fallback, timeout, wait }`; `start: true` starts the guest
    /// afterwards and waits until it runs. `start` is sent only when true: PVE <= 7.2 does not know
    /// it, and there the binding rolls back and then starts the guest with a start task of its own
    /// (a warning says so); `start_fallback: false` makes that an `invalid` error instead (details
    /// `unsupported: "rollback_start"`), before anything is rolled back.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(10015);
    /// g.snapshot("ex-rollback2");
    /// g.rollback("ex-rollback2", #{ start: true });
    /// assert(g.running);
    /// g.delete_snapshot("ex-rollback2");
    /// ```
    #[rhai_fn(global, name = "rollback", return_raw)]
    pub fn guest_rollback2(
        ctx: NativeCallContext,
        g: &mut Guest,
        name: &str,
        opts: Map,
    ) -> RhaiResult<Dynamic> {
        let o: RollbackOpts = decode(&opts, "rollback").at(&ctx)?;
        rollback_impl(&ctx, g, name, o)
    }

    /// Delete a snapshot and wait. An unknown name throws `not_found`.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(4013);
    /// g.snapshot("ex-delete");
    /// g.delete_snapshot("ex-delete");
    /// ```
    #[rhai_fn(global, name = "delete_snapshot", return_raw)]
    pub fn guest_delete_snapshot(
        ctx: NativeCallContext,
        g: &mut Guest,
        name: &str,
    ) -> RhaiResult<Dynamic> {
        pve::check_snapshot_name(name, Some(g.g.kind))
            .map_err(RalfError::invalid)
            .at(&ctx)?;
        let action = format!("delete snapshot `{name}` of {}", guest_label(&g.g));
        let gr = g.g.clone();
        let n = name.to_string();
        run_task(&ctx, &g.c, action, None, None, move |c| async move {
            c.delete_snapshot(&gr, &n).await
        })
    }

    /// Run a shell command inside the container with `pct exec` on its node, over SSH: needs the
    /// node's SSH alias (`proxmox.node_hosts: { pve: pve-root }` plus `hosts: pve-root: ...`), since the
    /// API has no exec for containers. Returns `#{ ok, code, stdout, stderr, duration }`.
    ///
    /// ```rhai,no_run
    /// let r = proxmox::connect().guest(2010).exec("pg_isready");
    /// if !r.ok { print(r.stderr); }
    /// ```
    #[rhai_fn(global, name = "exec", return_raw)]
    pub fn guest_exec(ctx: NativeCallContext, g: &mut Guest, cmd: &str) -> RhaiResult<Map> {
        let h = host(&ctx)?;
        if g.g.kind != Kind::Lxc {
            return Err(crate::bindings::at(
                &ctx,
                RalfError::invalid(format!(
                    "exec: {} is a QEMU VM; `pct exec` only works for containers (use the guest agent)",
                    guest_label(&g.g)
                )),
            ));
        }
        if h.dry_run(
            "proxmox",
            format!("pct exec {} -- {cmd} (on {})", g.g.vmid, g.g.node),
        ) {
            let mut m = Map::new();
            m.insert("ok".into(), true.into());
            m.insert("code".into(), 0_i64.into());
            m.insert("stdout".into(), "".into());
            m.insert("stderr".into(), "".into());
            m.insert("duration".into(), 0.0f64.into());
            return Ok(m);
        }
        let cfg = h.cfg().clone();
        let node = g.g.node.clone();
        let vmid = g.g.vmid;
        let cmd = cmd.to_string();
        let out = block_on(&h, "proxmox exec", None, async move {
            pve::exec::pct_exec(&cfg, &node, vmid, &cmd).await
        })
        .at(&ctx)?;
        let mut m = Map::new();
        m.insert("ok".into(), (out.code == 0).into());
        m.insert("code".into(), (out.code as i64).into());
        m.insert("stdout".into(), out.stdout.into());
        m.insert("stderr".into(), out.stderr.into());
        m.insert("duration".into(), out.duration.as_secs_f64().into());
        Ok(m)
    }
}

fn power(
    ctx: &NativeCallContext,
    g: &Guest,
    action: &'static str,
    o: ActionOpts,
) -> RhaiResult<Dynamic> {
    let label = format!("{action} {}", guest_label(&g.g));
    let gr = g.g.clone();
    let started = Instant::now();
    let wait = o.wait.unwrap_or(true);
    let deadline = o.timeout.map(|t| t.0).unwrap_or(DEFAULT_WAIT);
    let t = run_task(ctx, &g.c, label, o.wait, o.timeout, move |c| async move {
        c.power(&gr, action, &[]).await
    })?;
    let want = match action {
        "start" => "running",
        "stop" | "shutdown" => "stopped",
        _ => return Ok(t),
    };
    if wait {
        settle_ha(ctx, g, &t, want, deadline.saturating_sub(started.elapsed()))?;
    }
    Ok(t)
}

/// An HA-managed guest's start/stop task (`hastart`/`hastop`, or any task of a guest that
/// `/cluster/resources` lists with a `hastate`) only asks the HA stack, which acts later: wait until
/// the guest is `want`, within what is left of the deadline.
fn settle_ha(
    ctx: &NativeCallContext,
    g: &Guest,
    t: &Dynamic,
    want: &'static str,
    left: Duration,
) -> RhaiResult<()> {
    let Some(task) = t.clone().try_cast::<PveTask>() else {
        return Ok(()); // dry run
    };
    let ha_task = pve::Upid::parse(&task.upid).is_ok_and(|u| u.kind.starts_with("ha"));
    if !ha_task && g.g.raw.get("hastate").is_none() {
        return Ok(());
    }
    let h = host(ctx)?;
    let c = g.c.clone();
    let gr = g.g.clone();
    let what = format!("proxmox: wait until {} is {want} (HA)", guest_label(&g.g));
    block_on(&h, &what, None, async move {
        c.wait_guest_status(&gr, want, left.max(Duration::from_millis(1)))
            .await
    })
    .at(ctx)?;
    Ok(())
}

fn shutdown_impl(ctx: &NativeCallContext, g: &Guest, o: ShutdownOpts) -> RhaiResult<Dynamic> {
    let label = format!("shut down {}", guest_label(&g.g));
    let gr = g.g.clone();
    let mut params: Vec<(&'static str, String)> = Vec::new();
    let grace = o.timeout.map(|t| t.0.as_secs().max(1));
    if let Some(s) = grace {
        params.push(("timeout", s.to_string()));
    }
    if o.force == Some(true) {
        params.push(("forceStop", "1".into()));
    }
    // The task may take the whole grace period plus a hard stop.
    let wait_for = Secs(Duration::from_secs(grace.unwrap_or(60) + 120));
    let started = Instant::now();
    let wait = o.wait.unwrap_or(true);
    let t = run_task(
        ctx,
        &g.c,
        label,
        o.wait,
        Some(wait_for),
        move |c| async move { c.power(&gr, "shutdown", &params).await },
    )?;
    if wait {
        settle_ha(
            ctx,
            g,
            &t,
            "stopped",
            wait_for.0.saturating_sub(started.elapsed()),
        )?;
    }
    Ok(t)
}

fn snapshot_impl(
    ctx: &NativeCallContext,
    g: &Guest,
    name: &str,
    o: SnapshotOpts,
) -> RhaiResult<Dynamic> {
    pve::check_snapshot_name(name, Some(g.g.kind))
        .map_err(RalfError::invalid)
        .at(ctx)?;
    let action = format!("snapshot {} as `{name}`", guest_label(&g.g));
    let gr = g.g.clone();
    let n = name.to_string();
    run_task(ctx, &g.c, action, o.wait, o.timeout, move |c| async move {
        c.snapshot(&gr, &n, o.description.as_deref()).await
    })
}

fn rollback_impl(
    ctx: &NativeCallContext,
    g: &Guest,
    name: &str,
    o: RollbackOpts,
) -> RhaiResult<Dynamic> {
    pve::check_snapshot_name(name, Some(g.g.kind))
        .map_err(RalfError::invalid)
        .at(ctx)?;
    let start = o.start.unwrap_or(false);
    let fallback = o.start_fallback.unwrap_or(true);
    let action = format!(
        "roll back {} to `{name}`{}",
        guest_label(&g.g),
        if start { " and start it" } else { "" }
    );
    let gr = g.g.clone();
    let n = name.to_string();
    let started = Instant::now();
    let deadline = o.timeout.map(|t| t.0).unwrap_or(DEFAULT_WAIT);
    let wait = o.wait.unwrap_or(true);
    // PVE <= 7.2 has no rollback `start`: roll back, then start with a task of its own.
    let separate_start = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sep = separate_start.clone();
    let label = guest_label(&g.g);
    let t = run_task(ctx, &g.c, action, o.wait, o.timeout, move |c| async move {
        match c.rollback(&gr, &n, start).await {
            Err(e) if fallback && e.details["unsupported"] == "rollback_start" => {
                tracing::warn!(
                    "proxmox: {label}: this server cannot start a guest as part of a rollback (PVE < 7.3); rolling back, then starting it with a separate start task"
                );
                sep.store(true, std::sync::atomic::Ordering::SeqCst);
                c.rollback(&gr, &n, false).await
            }
            r => r,
        }
    })?;
    if !(start && wait) || t.is_unit() {
        return Ok(t);
    }
    let left = deadline.saturating_sub(started.elapsed());
    if separate_start.load(std::sync::atomic::Ordering::SeqCst) {
        let h = host(ctx)?;
        h.record_event(
            "proxmox.rollback_start_fallback",
            serde_json::json!({"vmid": g.g.vmid, "snapshot": name}),
        );
        if g.running_now(ctx)? {
            return Ok(t); // a VM with a RAM snapshot resumes on its own
        }
        let _start_task = power(
            ctx,
            g,
            "start",
            ActionOpts {
                timeout: Some(Secs(left.max(Duration::from_secs(1)))),
                wait: Some(true),
            },
        )?;
        return Ok(t);
    }
    // Proxmox starts the guest in a separate task spawned by the rollback: wait until it runs.
    let h = host(ctx)?;
    let c = g.c.clone();
    let gr = g.g.clone();
    block_on(&h, "proxmox start after rollback", Some(left), async move {
        loop {
            let s = c.status(&gr).await?;
            if s["status"].as_str() == Some("running") {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100).min(c.poll)).await;
        }
    })
    .at(ctx)?;
    Ok(t)
}

impl Guest {
    /// Whether the guest runs right now (one status call).
    fn running_now(&self, ctx: &NativeCallContext) -> RhaiResult<bool> {
        Ok(super::guest_status(ctx, self)?["status"].as_str() == Some("running"))
    }
}

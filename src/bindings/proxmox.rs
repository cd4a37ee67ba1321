//! `proxmox::` bindings: typed handles on a Proxmox VE cluster (`Proxmox`), its guests (`Guest`)
//! and its tasks (`PveTask`). Every changing call waits for its UPID task and raises with the task's
//! exit status and log tail when it fails; `--dry-run` records the change instead of making it.

use crate::bindings::{host, AtCall};
use crate::clients::proxmox::{self as pve, Client, GuestRef, Kind, Options, TaskStatus};
use crate::engine::bridge::block_on;
use crate::engine::error::{RResult, RalfError, RhaiResult};
use crate::engine::options::{decode, Secs};
use crate::host::Host;
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map, NativeCallContext};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Pve>("Proxmox");
    engine.register_type_with_name::<Guest>("Guest");
    engine.register_type_with_name::<PveTask>("PveTask");
    engine.register_static_module("proxmox", exported_module!(proxmox_mod).into());
    engine.register_global_module(exported_module!(handles).into());
}

/// A connected cluster.
#[derive(Clone)]
pub struct Pve {
    c: Arc<Client>,
}

/// One LXC container or QEMU VM.
#[derive(Clone)]
pub struct Guest {
    c: Arc<Client>,
    g: GuestRef,
}

/// A Proxmox task (UPID).
#[derive(Clone)]
pub struct PveTask {
    c: Arc<Client>,
    upid: String,
    last: Option<TaskStatus>,
}

/// Options of `proxmox::connect`; anything not given comes from the config's `proxmox:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectOpts {
    url: Option<String>,
    node: Option<String>,
    token_id: Option<String>,
    token_secret: Option<String>,
    user: Option<String>,
    password: Option<String>,
    fingerprint: Option<String>,
    ca_file: Option<String>,
    insecure: Option<bool>,
    timeout: Option<Secs>,
}

/// Options of actions that start a task.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionOpts {
    /// How long to wait for the task (default 10m).
    timeout: Option<Secs>,
    /// false: return the running task at once.
    wait: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShutdownOpts {
    /// Seconds the guest gets to shut down (Proxmox `timeout`, default 60).
    timeout: Option<Secs>,
    /// Hard-stop the guest when it does not shut down in time.
    force: Option<bool>,
    wait: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotOpts {
    description: Option<String>,
    timeout: Option<Secs>,
    wait: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackOpts {
    /// Start the guest after the rollback (default false: it stays stopped).
    start: Option<bool>,
    timeout: Option<Secs>,
    wait: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GuestsOpts {
    #[serde(rename = "type")]
    kind: Option<String>,
    node: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitOpts {
    timeout: Option<Secs>,
}

const DEFAULT_WAIT: Duration = Duration::from_secs(600);

fn to_dyn(v: serde_json::Value) -> RResult<Dynamic> {
    rhai::serde::to_dynamic(v)
        .map_err(|e| RalfError::internal(format!("proxmox: cannot convert answer: {e}")))
}

fn connect_impl(h: &Arc<Host>, o: ConnectOpts) -> RResult<Pve> {
    let mut opts = match h.cfg().proxmox.as_ref() {
        Some(c) if o.url.is_none() || o.url.as_deref() == Some(c.url.as_str()) => {
            Options::from_config(c)?
        }
        Some(_) | None => {
            if o.url.is_none() {
                return Err(RalfError::config(
                    "proxmox::connect: no `proxmox:` section in the config and no `url` option given",
                ));
            }
            Options::default()
        }
    };
    if let Some(v) = o.url {
        opts.url = v;
    }
    if o.node.is_some() {
        opts.node = o.node;
    }
    if o.token_id.is_some() {
        opts.token_id = o.token_id;
    }
    if let Some(s) = o.token_secret {
        crate::secrets::register(&s);
        opts.token_secret = Some(s);
    }
    if o.user.is_some() {
        opts.user = o.user;
    }
    if let Some(p) = o.password {
        crate::secrets::register(&p);
        opts.password = Some(p);
    }
    if o.fingerprint.is_some() {
        opts.fingerprint = o.fingerprint;
    }
    if let Some(f) = o.ca_file {
        opts.ca_file = Some(f.into());
    }
    if let Some(i) = o.insecure {
        opts.insecure = i;
    }
    if let Some(t) = o.timeout {
        opts.timeout = Some(t.0);
    }
    if opts.insecure {
        tracing::warn!(
            "proxmox: TLS verification is OFF for {} (insecure: true)",
            opts.url
        );
    }
    let what = format!("proxmox::connect {}", opts.url);
    let c = block_on(h, &what, None, Client::connect(opts))?;
    Ok(Pve { c: Arc::new(c) })
}

fn guest_label(g: &GuestRef) -> String {
    format!("{} {} ({}) on {}", g.kind.prefix(), g.vmid, g.name, g.node)
}

/// Start a task with `start`, then wait for it unless `wait` is false. Dry-run: record and return ().
fn run_task<F, Fut>(
    ctx: &NativeCallContext,
    c: &Arc<Client>,
    action: String,
    wait: Option<bool>,
    timeout: Option<Secs>,
    start: F,
) -> RhaiResult<Dynamic>
where
    F: FnOnce(Arc<Client>) -> Fut,
    Fut: std::future::Future<Output = RResult<String>>,
{
    let h = host(ctx)?;
    if h.dry_run("proxmox", action.clone()) {
        return Ok(Dynamic::UNIT);
    }
    let deadline = timeout.map(|t| t.0).unwrap_or(DEFAULT_WAIT);
    let spinner = h.progress.spinner(format!("proxmox: {action}"));
    let c2 = c.clone();
    let h2 = h.clone();
    let action2 = action.clone();
    let wait = wait.unwrap_or(true);
    let r = block_on(&h, &action, None, async move {
        let upid = start(c2.clone()).await?;
        h2.record_step_detail(
            "proxmox_task",
            serde_json::json!({"upid": upid, "action": action2}),
        );
        if !wait {
            return Ok((upid, None));
        }
        let st = c2.wait_task(&upid, Some(deadline)).await?;
        Ok((upid, Some(st)))
    });
    drop(spinner);
    let (upid, st) = r.at(ctx)?;
    h.record_event(
        "proxmox.task",
        serde_json::json!({"action": action, "upid": upid}),
    );
    Ok(Dynamic::from(PveTask {
        c: c.clone(),
        upid,
        last: st,
    }))
}

fn describe_guest(ctx: &NativeCallContext, g: &Guest) -> RhaiResult<Dynamic> {
    let h = host(ctx)?;
    let c = g.c.clone();
    let gr = g.g.clone();
    let v = block_on(
        &h,
        "proxmox status",
        None,
        async move { c.status(&gr).await },
    )
    .at(ctx)?;
    to_dyn(v).at(ctx)
}

#[export_module]
mod proxmox_mod {
    use super::*;

    /// Connect to the Proxmox VE API named in the config's `proxmox:` section (token or user/password
    /// ticket auth, TLS verified, or pinned by `fingerprint`, or trusted through `ca_file`). Reads
    /// `/version` to check the connection and the credentials.
    ///
    /// ```rhai
    /// let pve = proxmox::connect();
    /// print(pve);
    /// assert(pve.version.version != "");
    /// ```
    #[rhai_fn(name = "connect", return_raw)]
    pub fn connect0(ctx: NativeCallContext) -> RhaiResult<Pve> {
        let h = host(&ctx)?;
        connect_impl(&h, ConnectOpts::default()).at(&ctx)
    }

    /// Connect with options that override the config: `url`, `node`, `token_id`, `token_secret`,
    /// `user`, `password`, `fingerprint` (SHA-256, `AB:CD:...`), `ca_file`, `insecure`, `timeout`.
    /// Pass secrets through `secret("name")`, never as literals.
    ///
    /// ```rhai
    /// let pve = proxmox::connect(#{ timeout: "20s" });
    /// assert(pve.nodes().len() > 0);
    /// ```
    #[rhai_fn(name = "connect", return_raw)]
    pub fn connect1(ctx: NativeCallContext, opts: Map) -> RhaiResult<Pve> {
        let h = host(&ctx)?;
        let o: ConnectOpts = decode(&opts, "proxmox::connect").at(&ctx)?;
        connect_impl(&h, o).at(&ctx)
    }

    /// Check a snapshot name against Proxmox's rules without contacting the server: returns "" when
    /// it is valid, else the reason.
    ///
    /// ```rhai
    /// assert(proxmox::snapshot_name_error("pre-install") == "");
    /// assert(proxmox::snapshot_name_error("1st") != "");
    /// ```
    pub fn snapshot_name_error(name: &str) -> String {
        pve::check_snapshot_name(name, None)
            .err()
            .unwrap_or_default()
    }
}

#[export_module]
mod handles {
    use super::*;

    // ---- Proxmox ----

    /// `Proxmox(https://pve:8006, 9.2.11)`.
    ///
    /// ```rhai
    /// print(proxmox::connect().to_string());
    /// ```
    #[rhai_fn(global, name = "to_string", name = "to_debug", pure)]
    pub fn pve_to_string(p: &mut Pve) -> String {
        format!(
            "Proxmox({}, {})",
            p.c.url,
            p.c.version["version"].as_str().unwrap_or("?")
        )
    }

    /// The server's `/version` answer as a map (`version`, `release`, `repoid`).
    ///
    /// ```rhai
    /// print(proxmox::connect().version.release);
    /// ```
    #[rhai_fn(global, get = "version", pure, return_raw)]
    pub fn pve_version(p: &mut Pve) -> RhaiResult<Dynamic> {
        to_dyn(p.c.version.clone()).map_err(Into::into)
    }

    /// The cluster's nodes (`node`, `status`, `ssl_fingerprint`, `cpu`, `mem`, ...).
    ///
    /// ```rhai
    /// for n in proxmox::connect().nodes() { print(`${n.node}: ${n.status}`); }
    /// ```
    #[rhai_fn(global, name = "nodes", return_raw)]
    pub fn pve_nodes(ctx: NativeCallContext, p: &mut Pve) -> RhaiResult<Array> {
        let h = host(&ctx)?;
        let c = p.c.clone();
        let v = block_on(&h, "proxmox nodes", None, async move { c.nodes().await }).at(&ctx)?;
        v.into_iter().map(|n| to_dyn(n).at(&ctx)).collect()
    }

    /// Every guest (LXC and QEMU) the credentials can see, as `Guest` handles.
    ///
    /// ```rhai
    /// for g in proxmox::connect().guests() { print(g); }
    /// ```
    #[rhai_fn(global, name = "guests", return_raw)]
    pub fn pve_guests0(ctx: NativeCallContext, p: &mut Pve) -> RhaiResult<Array> {
        guests_impl(&ctx, p, GuestsOpts::default())
    }

    /// Guests filtered by `type` ("lxc" | "qemu") and/or `node`.
    ///
    /// ```rhai
    /// let cts = proxmox::connect().guests(#{ type: "lxc" });
    /// assert(cts.all(|g| g.kind == "lxc"));
    /// ```
    #[rhai_fn(global, name = "guests", return_raw)]
    pub fn pve_guests1(ctx: NativeCallContext, p: &mut Pve, opts: Map) -> RhaiResult<Array> {
        let o: GuestsOpts = decode(&opts, "guests").at(&ctx)?;
        if let Some(k) = &o.kind {
            if Kind::parse(k).is_none() {
                return Err(crate::bindings::at(
                    &ctx,
                    RalfError::invalid(format!(
                        "guests: type must be \"lxc\" or \"qemu\", got \"{k}\""
                    )),
                ));
            }
        }
        guests_impl(&ctx, p, o)
    }

    /// The guest with this VMID; its node and kind (lxc/qemu) are found through `/cluster/resources`.
    /// Throws `not_found` naming the vmid when there is none.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2010);
    /// print(`${g.name} is CT ${g.vmid} on ${g.node}`);
    /// ```
    #[rhai_fn(global, name = "guest", return_raw)]
    pub fn pve_guest(ctx: NativeCallContext, p: &mut Pve, vmid: i64) -> RhaiResult<Guest> {
        let h = host(&ctx)?;
        if !(1..=999_999_999).contains(&vmid) {
            return Err(crate::bindings::at(
                &ctx,
                RalfError::invalid(format!(
                    "guest: vmid {vmid} is out of range (100..999999999)"
                )),
            ));
        }
        let c = p.c.clone();
        let g = block_on(&h, "proxmox guest", None, async move {
            c.find_guest(vmid as u32).await
        })
        .at(&ctx)?;
        Ok(Guest { c: p.c.clone(), g })
    }

    /// A handle on an existing task by its UPID (e.g. from a log); `wait()` on it.
    ///
    /// ```rhai
    /// let pve = proxmox::connect();
    /// let t = pve.guest(2012).snapshot("ex-task", #{ wait: false });
    /// pve.task(t.upid).wait(#{ timeout: "1m" });
    /// pve.guest(2012).delete_snapshot("ex-task");
    /// ```
    #[rhai_fn(global, name = "task", return_raw)]
    pub fn pve_task(ctx: NativeCallContext, p: &mut Pve, upid: &str) -> RhaiResult<PveTask> {
        pve::Upid::parse(upid)
            .map_err(RalfError::invalid)
            .at(&ctx)?;
        Ok(PveTask {
            c: p.c.clone(),
            upid: upid.to_string(),
            last: None,
        })
    }

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

    /// Start the guest and wait for the task. Starting a running container throws `conflict`.
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

    /// Hard-stop the guest (no clean shutdown) and wait for the task.
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
    /// `invalid` without contacting the server.
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

    /// Roll back with `#{ start, timeout, wait }`; `start: true` starts the guest afterwards and
    /// waits until it runs.
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
    pub fn task_to_string(t: &mut PveTask) -> String {
        match &t.last {
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

    /// "running" or "stopped" as last seen ("unknown" before the first `wait`).
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2012);
    /// assert(g.snapshot("ex-status").status == "stopped");
    /// g.delete_snapshot("ex-status");
    /// ```
    #[rhai_fn(global, get = "status", pure)]
    pub fn task_status(t: &mut PveTask) -> String {
        t.last
            .as_ref()
            .map(|s| s.status.clone())
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
    pub fn task_exitstatus(t: &mut PveTask) -> String {
        t.last
            .as_ref()
            .and_then(|s| s.exitstatus.clone())
            .unwrap_or_default()
    }

    /// True when the task ended with `OK` or `WARNINGS: n`.
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2012);
    /// assert(g.snapshot("ex-ok").ok);
    /// g.delete_snapshot("ex-ok");
    /// ```
    #[rhai_fn(global, get = "ok", pure)]
    pub fn task_ok(t: &mut PveTask) -> bool {
        t.last.as_ref().is_some_and(|s| s.ok())
    }

    /// Wait until the task stops (default deadline 10 minutes). Throws when it failed (exit status
    /// and log tail in the message, kind `locked`, `not_found` or `command_failed`), or `timeout`
    /// when the deadline passes first (the task keeps running on the server).
    ///
    /// ```rhai
    /// let g = proxmox::connect().guest(2012);
    /// let t = g.snapshot("ex-wait", #{ wait: false });
    /// t.wait();
    /// g.delete_snapshot("ex-wait");
    /// ```
    #[rhai_fn(global, name = "wait", return_raw)]
    pub fn task_wait0(ctx: NativeCallContext, t: &mut PveTask) -> RhaiResult<PveTask> {
        wait_impl(&ctx, t, WaitOpts::default())
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
        wait_impl(&ctx, t, o)
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

fn guests_impl(ctx: &NativeCallContext, p: &Pve, o: GuestsOpts) -> RhaiResult<Array> {
    let h = host(ctx)?;
    let c = p.c.clone();
    let all = block_on(&h, "proxmox guests", None, async move { c.guests().await }).at(ctx)?;
    Ok(all
        .into_iter()
        .filter(|g| o.kind.as_deref().is_none_or(|k| g.kind.as_str() == k))
        .filter(|g| o.node.as_deref().is_none_or(|n| g.node == n))
        .map(|g| Dynamic::from(Guest { c: p.c.clone(), g }))
        .collect())
}

fn power(
    ctx: &NativeCallContext,
    g: &Guest,
    action: &'static str,
    o: ActionOpts,
) -> RhaiResult<Dynamic> {
    let label = format!("{action} {}", guest_label(&g.g));
    let gr = g.g.clone();
    run_task(ctx, &g.c, label, o.wait, o.timeout, move |c| async move {
        c.power(&gr, action, &[]).await
    })
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
    run_task(
        ctx,
        &g.c,
        label,
        o.wait,
        Some(wait_for),
        move |c| async move { c.power(&gr, "shutdown", &params).await },
    )
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
    let action = format!(
        "roll back {} to `{name}`{}",
        guest_label(&g.g),
        if start { " and start it" } else { "" }
    );
    let gr = g.g.clone();
    let n = name.to_string();
    let deadline = o.timeout.map(|t| t.0).unwrap_or(DEFAULT_WAIT);
    let wait = o.wait.unwrap_or(true);
    let t = run_task(ctx, &g.c, action, o.wait, o.timeout, move |c| async move {
        c.rollback(&gr, &n, start).await
    })?;
    if start && wait && !t.is_unit() {
        // Proxmox starts the guest in a separate task spawned by the rollback: wait until it runs.
        let h = host(ctx)?;
        let c = g.c.clone();
        let gr = g.g.clone();
        block_on(
            &h,
            "proxmox start after rollback",
            Some(deadline),
            async move {
                loop {
                    let s = c.status(&gr).await?;
                    if s["status"].as_str() == Some("running") {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(100).min(c.poll)).await;
                }
            },
        )
        .at(ctx)?;
    }
    Ok(t)
}

fn wait_impl(ctx: &NativeCallContext, t: &mut PveTask, o: WaitOpts) -> RhaiResult<PveTask> {
    let h = host(ctx)?;
    let c = t.c.clone();
    let upid = t.upid.clone();
    let deadline = o.timeout.map(|t| t.0).unwrap_or(DEFAULT_WAIT);
    let st = block_on(&h, "proxmox task wait", None, async move {
        c.wait_task(&upid, Some(deadline)).await
    })
    .at(ctx)?;
    t.last = Some(st);
    Ok(t.clone())
}

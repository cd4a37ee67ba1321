//! `proxmox::` bindings: typed handles on a Proxmox VE cluster (`Proxmox`), its guests (`Guest`)
//! and its tasks (`PveTask`). Every changing call waits for its UPID task and raises with the task's
//! exit status and log tail when it fails; `--dry-run` records the change instead of making it.

use crate::bindings::{host, AtCall};
use crate::clients::proxmox::{self as pve, Client, GuestRef, Kind, Options, TaskStatus};
use crate::error::{RResult, RalfError, RhaiResult};
use crate::host::Host;
use crate::script::bridge::block_on;
use crate::script::decode::decode;
use crate::text::Secs;
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map, NativeCallContext};
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod guest;
mod task;

pub(crate) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Pve>("Proxmox");
    engine.register_type_with_name::<Guest>("Guest");
    engine.register_type_with_name::<PveTask>("PveTask");
    engine.register_static_module("proxmox", exported_module!(proxmox_mod).into());
    engine.register_global_module(exported_module!(cluster_handles).into());
    engine.register_global_module(exported_module!(guest::guest_handles).into());
    engine.register_global_module(exported_module!(task::task_handles).into());
}

/// A connected cluster.
#[derive(Clone)]
pub(crate) struct Pve {
    pub(crate) c: Arc<Client>,
}

/// One LXC container or QEMU VM.
#[derive(Clone)]
pub(crate) struct Guest {
    c: Arc<Client>,
    g: GuestRef,
}

/// A Proxmox task (UPID).
#[derive(Clone)]
pub(crate) struct PveTask {
    c: Arc<Client>,
    upid: String,
    /// The status last read and when; shared by every copy of the handle.
    last: Arc<parking_lot::Mutex<Option<(TaskStatus, Instant)>>>,
}

impl PveTask {
    fn new(c: Arc<Client>, upid: String, st: Option<TaskStatus>) -> PveTask {
        PveTask {
            c,
            upid,
            last: Arc::new(parking_lot::Mutex::new(st.map(|s| (s, Instant::now())))),
        }
    }
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
    /// On a server without the rollback `start` parameter (PVE <= 7.2), roll back and then start
    /// the guest with a start task of its own (default true; false: fail with `invalid`).
    start_fallback: Option<bool>,
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
        crate::redact::register(&s);
        opts.token_secret = Some(s);
    }
    if o.user.is_some() {
        opts.user = o.user;
    }
    if let Some(p) = o.password {
        crate::redact::register(&p);
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
    let t0 = std::time::Instant::now();
    let spinner = h.progress.spinner(format!("proxmox: {action}"));
    let c2 = c.clone();
    let h2 = h.clone();
    let action2 = action.clone();
    let wait = wait.unwrap_or(true);
    // The task an earlier, interrupted attempt of this step started (resume, or a fresh start
    // that continues an interrupted run): `(upid, action)`.
    // Only for this attempt's first Proxmox task: once it started one of its own (a delete
    // before a new snapshot, say), the earlier attempt's task is history.
    let earlier = h
        .journal()
        .filter(|j| j.current_step_detail("proxmox_task").is_none())
        .and_then(|j| j.previous_step_detail("proxmox_task"))
        .and_then(|v| {
            Some((
                v.get("upid")?.as_str()?.to_string(),
                v.get("action")?.as_str()?.to_string(),
            ))
        });
    let r = block_on(&h, &action, None, async move {
        if let Some((upid, act)) = &earlier {
            if *act == action2 {
                // The same action: take its task over while it runs or when it succeeded; a
                // failed one is started again.
                if let Ok(st) = c2.task_status(upid).await {
                    if st.running() || st.ok() {
                        tracing::info!(target: "ralf::proxmox", upid = upid.as_str(), action = action2.as_str(), "{action2}: taking over task {upid} of the interrupted attempt");
                        h2.record_step_detail(
                            "proxmox_task",
                            serde_json::json!({"upid": upid, "action": action2}),
                        );
                        if !wait {
                            return Ok((upid.clone(), None));
                        }
                        let st = c2.wait_task(upid, Some(deadline)).await?;
                        return Ok((upid.clone(), Some(st)));
                    }
                }
            }
            // Another action's task of the interrupted attempt (the snapshot before a delete, say)
            // still holds the guest's lock: let it end first, so our own lock never fails the step.
            if let Ok(st) = c2.task_status(upid).await {
                if st.running() {
                    tracing::info!(target: "ralf::proxmox", "{action2}: waiting for task {upid} of the interrupted attempt to end first");
                    c2.wait_stopped(upid, Some(deadline)).await?;
                }
            }
        }
        let upid = start(c2.clone()).await?;
        tracing::info!(target: "ralf::proxmox", upid = upid.as_str(), action = action2.as_str(), "{action2}: task started");
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
    if let Some(st) = &st {
        tracing::info!(target: "ralf::proxmox", upid = upid.as_str(), action = action.as_str(),
            status = st.exitstatus.as_deref().unwrap_or(""), duration = t0.elapsed().as_secs_f64(),
            "{action}: task finished ({})", crate::text::human_duration(t0.elapsed()));
    }
    h.record_event(
        "proxmox.task",
        serde_json::json!({"action": action, "upid": upid}),
    );
    Ok(Dynamic::from(PveTask::new(c.clone(), upid, st)))
}

/// The guest's current status object (one status call).
fn guest_status(ctx: &NativeCallContext, g: &Guest) -> RhaiResult<serde_json::Value> {
    let h = host(ctx)?;
    let c = g.c.clone();
    let gr = g.g.clone();
    block_on(
        &h,
        "proxmox status",
        None,
        async move { c.status(&gr).await },
    )
    .at(ctx)
}

fn describe_guest(ctx: &NativeCallContext, g: &Guest) -> RhaiResult<Dynamic> {
    to_dyn(guest_status(ctx, g)?).at(ctx)
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
mod cluster_handles {
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
        Ok(PveTask::new(p.c.clone(), upid.to_string(), None))
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

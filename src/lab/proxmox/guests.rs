//! Guests: status, config (read and `PUT`), and the power actions (start/stop/shutdown/reboot).

use super::*;

pub(super) fn status_json(g: &Guest) -> Value {
    let mut v = json!({
        "vmid": g.vmid, "status": if g.running { "running" } else { "stopped" }, "name": g.name(),
        "cpus": g.config.get("cores").and_then(num).unwrap_or(1),
        "cpu": if g.running { 0.012 } else { 0.0 },
        "mem": if g.running { g.maxmem() / 4 } else { 0 }, "maxmem": g.maxmem(),
        "disk": if g.running { 1_073_741_824i64 } else { 0 }, "maxdisk": 8_589_934_592i64,
        "uptime": g.uptime(), "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
    });
    // `PVE::HA::Config::get_service_status`: `{managed: 0}`, or the resource's state.
    v["ha"] = if g.ha_managed {
        json!({"managed": 1, "state": g.ha_state})
    } else {
        json!({"managed": 0})
    };
    match g.kind {
        Kind::Lxc => {
            v["type"] = json!("lxc");
            v["swap"] = json!(0);
            v["maxswap"] = json!(g.config.get("swap").and_then(num).unwrap_or(512) * 1024 * 1024);
        }
        Kind::Qemu => {
            v["qmpstatus"] = json!(if g.running { "running" } else { "stopped" });
            if g.config.get("agent").and_then(num) == Some(1) {
                v["agent"] = json!(1);
            }
        }
    }
    if g.running {
        v["pid"] = json!(100_000 + g.vmid);
    }
    if let Some(l) = &g.lock {
        v["lock"] = json!(l);
    }
    if let Some(t) = g.config.get("tags") {
        v["tags"] = t.clone();
    }
    v
}

pub(super) fn config_json(g: &Guest) -> Value {
    let mut m: Map<String, Value> = g
        .config
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(p) = &g.parent {
        m.insert("parent".into(), json!(p));
    }
    if let Some(l) = &g.lock {
        m.insert("lock".into(), json!(l));
    }
    m.insert("digest".into(), json!(g.digest()));
    Value::Object(m)
}

/// The settable keys of `PUT .../config` (the real schemas' properties in
/// `proxmox-api-subset.json`, less the path and control parameters); `name[n]` stands for
/// `name0`, `name1`, ...
pub(super) const LXC_CONFIG_KEYS: &[&str] = &[
    "arch",
    "cmode",
    "console",
    "cores",
    "cpulimit",
    "cpuunits",
    "debug",
    "description",
    "dev[n]",
    "entrypoint",
    "env",
    "features",
    "hookscript",
    "hostname",
    "lock",
    "memory",
    "mp[n]",
    "nameserver",
    "net[n]",
    "onboot",
    "ostype",
    "protection",
    "rootfs",
    "searchdomain",
    "startup",
    "swap",
    "tags",
    "template",
    "timezone",
    "tty",
    "unprivileged",
    "unused[n]",
];
pub(super) const QEMU_CONFIG_KEYS: &[&str] = &[
    "acpi",
    "affinity",
    "agent",
    "allow-ksm",
    "amd-sev",
    "arch",
    "args",
    "audio0",
    "autostart",
    "balloon",
    "bios",
    "boot",
    "bootdisk",
    "cdrom",
    "cicustom",
    "cipassword",
    "citype",
    "ciupgrade",
    "ciuser",
    "cores",
    "cpu",
    "cpulimit",
    "cpuunits",
    "description",
    "efidisk0",
    "freeze",
    "hookscript",
    "hostpci[n]",
    "hotplug",
    "hugepages",
    "ide[n]",
    "intel-tdx",
    "ipconfig[n]",
    "ivshmem",
    "keephugepages",
    "keyboard",
    "kvm",
    "localtime",
    "lock",
    "machine",
    "memory",
    "migrate_downtime",
    "migrate_speed",
    "name",
    "nameserver",
    "net[n]",
    "numa",
    "numa[n]",
    "onboot",
    "ostype",
    "parallel[n]",
    "protection",
    "reboot",
    "rng0",
    "sata[n]",
    "scsi[n]",
    "scsihw",
    "searchdomain",
    "serial[n]",
    "shares",
    "smbios1",
    "smp",
    "sockets",
    "spice_enhancements",
    "sshkeys",
    "startdate",
    "startup",
    "tablet",
    "tags",
    "tdf",
    "template",
    "tpmstate0",
    "unused[n]",
    "usb[n]",
    "vcpus",
    "vga",
    "virtio[n]",
    "virtiofs[n]",
    "vmgenid",
    "vmstatestorage",
    "watchdog",
];
/// Parameters of `PUT .../config` that are not settings.
const LXC_CONFIG_CONTROL: &[&str] = &["delete", "digest", "revert"];
const QEMU_CONFIG_CONTROL: &[&str] = &["delete", "digest", "revert", "force", "skiplock"];

/// Whether `key` is one of `keys` (with `name[n]` matching `name` followed by digits).
pub(super) fn config_key(keys: &[&str], key: &str) -> bool {
    keys.iter().any(|k| match k.strip_suffix("[n]") {
        Some(base) => key
            .strip_prefix(base)
            .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit())),
        None => *k == key,
    })
}

#[allow(clippy::too_many_arguments)]
pub(super) fn guest_route(
    app: &App,
    st: &mut LabState,
    method: &Method,
    path: &str,
    vmid: u32,
    rest: &[&str],
    params: &[(String, String)],
    caller: &Caller,
) -> ApiResult {
    let kind = st.guests[&vmid].kind;
    let p = kind.prefix();
    match (method.as_str(), rest) {
        ("GET", ["feature"]) => {
            // `vm_feature` (`API2/LXC.pm`, `API2/Qemu.pm`): can the storage do it?
            check_params(params, &["feature", "snapname"])?;
            let feature = str_param(params, "feature").ok_or_else(|| {
                param_err("feature", "property is missing and it is not optional")
            })?;
            if !matches!(feature, "snapshot" | "clone" | "copy") {
                return Err(param_err(
                    "feature",
                    format!("value '{feature}' does not have a value in the enumeration 'snapshot, clone, copy'"),
                ));
            }
            let g = &st.guests[&vmid];
            let has = feature != "snapshot" || g.can_snapshot();
            let mut v = json!({"hasFeature": has as i32});
            if kind == Kind::Qemu {
                v["nodes"] = json!(st.nodes);
            }
            Ok(v)
        }
        ("GET", ["status", "current"]) => Ok(status_json(&st.guests[&vmid])),
        ("GET", ["config"]) => {
            check_params(params, &["current", "snapshot"])?;
            let g = &st.guests[&vmid];
            if let Some(s) = str_param(params, "snapshot") {
                return snap_config(g, s);
            }
            Ok(config_json(g))
        }
        ("PUT", ["config"]) => {
            let (keys, control) = if kind == Kind::Lxc {
                (LXC_CONFIG_KEYS, LXC_CONFIG_CONTROL)
            } else {
                (QEMU_CONFIG_KEYS, QEMU_CONFIG_CONTROL)
            };
            let unknown: Vec<(String, String)> = params
                .iter()
                .filter(|(k, _)| !config_key(keys, k) && !control.contains(&k.as_str()))
                .cloned()
                .collect();
            check_params(&unknown, &[])?;
            if let Some(del) = str_param(params, "delete") {
                for k in del.split([',', ';', ' ']).filter(|k| !k.is_empty()) {
                    if !config_key(keys, k) {
                        return Err(param_err(
                            "delete",
                            format!("invalid format - invalid configuration key '{k}'"),
                        ));
                    }
                }
            }
            let g = st.guests.get_mut(&vmid).expect("checked");
            // The handler runs under the config flock.
            g.flock().map_err(|m| err(500, m))?;
            if let Some(d) = str_param(params, "digest") {
                if d != g.digest() {
                    return Err(err(
                        500,
                        "detected modified configuration - file changed by other user? Try again.",
                    ));
                }
            }
            if let Some(msg) = g.locked_msg() {
                return Err(err(500, msg));
            }
            for (k, v) in params {
                if config_key(keys, k) {
                    let val = v
                        .parse::<i64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| Value::String(v.clone()));
                    g.config.insert(k.clone(), val);
                }
            }
            if let Some(del) = str_param(params, "delete") {
                for k in del.split([',', ';', ' ']).filter(|k| !k.is_empty()) {
                    g.config.remove(k);
                }
            }
            Ok(Value::Null)
        }
        ("POST", ["status", action @ ("start" | "stop" | "shutdown" | "reboot")]) => {
            let allowed: &[&str] = match *action {
                "start" => &["skiplock", "timeout"],
                "stop" => &["skiplock", "overrule-shutdown", "timeout"],
                "shutdown" => &["timeout", "forceStop", "keepActive"],
                _ => &["timeout"],
            };
            check_params(params, allowed)?;
            if bool_param(params, "skiplock")? && caller.tokenid.is_some() {
                return Err(param_err("skiplock", "Only root may use this option."));
            }
            let force = bool_param(params, "forceStop")?;
            int_param(params, "timeout")?;
            let running = st.guests[&vmid].running;
            match (kind, *action, running) {
                (Kind::Lxc, "start", true) => {
                    return Err(err(500, format!("CT {vmid} already running")))
                }
                (Kind::Lxc, "stop" | "shutdown", false) => {
                    return Err(err(500, format!("CT {vmid} not running")))
                }
                (_, "reboot", false) => return Err(err(500, format!("VM {vmid} not running"))),
                _ => {}
            }
            if st.guests[&vmid].ha_managed && *action != "reboot" {
                return ha_request(app, st, vmid, action, caller);
            }
            let action = action.to_string();
            let upid = spawn_task(
                app,
                st,
                vmid,
                &kind.task(&action),
                caller,
                None,
                move |st, log| {
                    let g = st.guests.get_mut(&vmid).expect("guest");
                    if action != "reboot" {
                        if let Some(m) = g.locked_msg() {
                            return Err(m);
                        }
                    }
                    match action.as_str() {
                        "start" => {
                            if g.running {
                                return Err(format!("VM {vmid} already running"));
                            }
                            log.push(format!("starting {p} {vmid}"));
                            g.running = true;
                            g.started_at = now();
                        }
                        "stop" | "shutdown" => {
                            if !g.running {
                                log.push(format!("{p} {vmid} is not running"));
                            } else {
                                if action == "shutdown"
                                    && !force
                                    && g.config.contains_key("lab_hang_on_shutdown")
                                {
                                    return Err("container did not stop".into());
                                }
                                log.push(format!("stopping {p} {vmid}"));
                                g.running = false;
                            }
                        }
                        _ => {
                            log.push(format!("rebooting {p} {vmid}"));
                            g.started_at = now();
                        }
                    }
                    Ok(())
                },
            )?;
            Ok(json!(upid))
        }
        (_, ["snapshot", ..]) => {
            super::snapshots::route(app, st, method, path, vmid, rest, params, caller)
        }
        _ => Err(not_impl(method, path)),
    }
}

/// Start/stop/shutdown of an HA-managed guest (`Status.pm` `vm_start`/`vm_stop`/`vm_shutdown`):
/// the API forks a `hastart`/`hastop` worker that only runs `ha-manager set ct:N --state started`
/// (or `crm-command stop`) and ends; the HA stack changes the guest's state a while later.
fn ha_request(app: &App, st: &mut LabState, vmid: u32, action: &str, caller: &Caller) -> ApiResult {
    let start = action == "start";
    let p = st.guests[&vmid].kind.prefix();
    let state = app.state.clone();
    // The CRM/LRM act on their next rounds: a few task durations later.
    let later = Duration::from_millis(st.task_ms.max(50) * 4);
    let upid = spawn_task(
        app,
        st,
        vmid,
        if start { "hastart" } else { "hastop" },
        caller,
        None,
        move |st, log| {
            let g = st.guests.get_mut(&vmid).expect("guest");
            log.push(format!(
                "Requesting HA {} for {p} {vmid}",
                if start { "start" } else { "stop" }
            ));
            g.ha_state = if start { "started" } else { "stopped" }.into();
            tokio::spawn(async move {
                tokio::time::sleep(later).await;
                let mut st = state.lock();
                if let Some(g) = st.guests.get_mut(&vmid) {
                    let wanted = g.ha_state == "started";
                    if g.ha_managed && g.running != wanted {
                        g.running = wanted;
                        g.started_at = now();
                    }
                }
            });
            Ok(())
        },
    )?;
    Ok(json!(upid))
}

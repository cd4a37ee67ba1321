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
        "ha": {"managed": 0},
    });
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

pub(super) const LXC_CONFIG_KEYS: &[&str] = &[
    "hostname",
    "memory",
    "swap",
    "cores",
    "cpulimit",
    "cpuunits",
    "description",
    "onboot",
    "tags",
    "net0",
    "net1",
    "nameserver",
    "searchdomain",
    "startup",
    "protection",
    "features",
];
pub(super) const QEMU_CONFIG_KEYS: &[&str] = &[
    "name",
    "memory",
    "cores",
    "sockets",
    "description",
    "onboot",
    "tags",
    "net0",
    "net1",
    "agent",
    "balloon",
    "startup",
    "protection",
    "cpu",
];

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
            let keys = if kind == Kind::Lxc {
                LXC_CONFIG_KEYS
            } else {
                QEMU_CONFIG_KEYS
            };
            let mut allowed: Vec<&str> = keys.to_vec();
            allowed.extend(["delete", "digest", "revert"]);
            check_params(params, &allowed)?;
            let g = st.guests.get_mut(&vmid).expect("checked");
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
                if keys.contains(&k.as_str()) {
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

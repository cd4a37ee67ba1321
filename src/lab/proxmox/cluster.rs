//! The API's top-level routes: version, nodes, cluster resources, node task lists and logs, and the
//! dispatch to a guest's routes.

use super::*;

pub(super) fn api_route(
    app: &App,
    method: &Method,
    path: &str,
    params: &[(String, String)],
    caller: &Caller,
) -> ApiResult {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let mut st = app.state.lock();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["version"]) => Ok(app.profile.version_json()),
        ("GET", ["nodes"]) => Ok(Value::Array(
            st.nodes
                .iter()
                .map(|n| {
                    json!({"node": n, "status": "online", "cpu": 0.03, "maxcpu": 8, "mem": 4_294_967_296u64,
                    "maxmem": 34_359_738_368u64, "uptime": 86400, "level": "", "ssl_fingerprint": st.fingerprint,
                    "id": format!("node/{n}"), "type": "node"})
                })
                .collect(),
        )),
        ("GET", ["nodes", node, "status"]) => {
            check_node(&st, node)?;
            let release = app.profile.kversion().split_whitespace().nth(1).unwrap_or_default();
            Ok(json!({"uptime": 86400, "loadavg": ["0.10", "0.08", "0.05"], "cpu": 0.03, "wait": 0.0,
                "memory": {"total": 34_359_738_368u64, "used": 4_294_967_296u64, "free": 30_064_771_072u64,
                    "available": 30_064_771_072u64},
                "rootfs": {"total": 100_861_726_720u64, "used": 9_663_676_416u64, "free": 91_198_050_304u64,
                    "avail": 86_000_000_000u64},
                "cpuinfo": {"cores": 8, "cpus": 8, "sockets": 1, "model": "AMD Ryzen 7 5700G with Radeon Graphics"},
                "boot-info": {"mode": "efi", "secureboot": 0},
                "current-kernel": {"sysname": "Linux", "release": release, "machine": "x86_64",
                    "version": app.profile.kversion().split_once(" #").map(|(_, v)| format!("#{v}")).unwrap_or_default()},
                "pveversion": app.profile.pveversion(), "kversion": app.profile.kversion()}))
        }
        ("GET", ["cluster", "resources"]) => {
            check_params(params, &["type"])?;
            let ty = str_param(params, "type");
            if let Some(t) = ty {
                if !matches!(t, "vm" | "storage" | "node" | "sdn") {
                    return Err(param_err("type", format!("value '{t}' does not have a value in the enumeration 'vm, storage, node, sdn'")));
                }
            }
            let mut out = Vec::new();
            if ty.is_none() || ty == Some("node") {
                for n in &st.nodes {
                    out.push(json!({"id": format!("node/{n}"), "type": "node", "node": n, "status": "online"}));
                }
            }
            if ty.is_none() || ty == Some("vm") {
                for g in st.guests.values() {
                    let mut v = json!({"id": format!("{}/{}", g.kind.as_str(), g.vmid), "type": g.kind.as_str(),
                        "vmid": g.vmid, "node": g.node, "name": g.name(),
                        "status": if g.running { "running" } else { "stopped" },
                        "maxmem": g.maxmem(), "uptime": g.uptime(), "template": 0});
                    if let Some(l) = &g.lock {
                        v["lock"] = json!(l);
                    }
                    // `Cluster.pm`: HA-managed guests carry the HA resource's state.
                    if g.ha_managed {
                        v["hastate"] = json!(g.ha_state);
                    }
                    out.push(v);
                }
            }
            Ok(Value::Array(out))
        }
        ("GET", ["nodes", node, kind @ ("lxc" | "qemu")]) => {
            check_node(&st, node)?;
            Ok(Value::Array(
                st.guests
                    .values()
                    .filter(|g| g.node == *node && g.kind.as_str() == *kind)
                    .map(status_json)
                    .collect(),
            ))
        }
        ("GET", ["nodes", node, "tasks"]) => {
            check_node(&st, node)?;
            let list: Vec<Value> = st
                .tasks
                .iter()
                .rev()
                .filter(|t| t.node == *node && t.exitstatus.is_some())
                .map(|t| {
                    let mut v = task_status_json(t);
                    v["status"] = json!(t.exitstatus);
                    v["endtime"] = json!(t.endtime);
                    v
                })
                .collect();
            let n = list.len();
            Ok(json!({"__total": n, "data": list}))
        }
        ("GET", ["nodes", node, "tasks", upid, "status"]) => {
            check_node(&st, node)?;
            let t = find_task(&st, upid)?;
            Ok(task_status_json(t))
        }
        ("GET", ["nodes", node, "tasks", upid, "log"]) => {
            check_node(&st, node)?;
            check_params(params, &["start", "limit", "download"])?;
            let start = int_param(params, "start")?.unwrap_or(0).max(0) as usize;
            let limit = int_param(params, "limit")?.unwrap_or(50).max(0) as usize;
            let t = find_task(&st, upid)?;
            let total = t.log.len();
            // `PVE::Tools::dump_logfile`: `total` counts every line; `limit=0` reads to the end
            // only since libpve-common-perl 7.3-1 (before, it returns no line); an empty log
            // gets the "no content" placeholder.
            let take = match limit {
                0 if app.profile.log_limit0_is_whole() => usize::MAX,
                n => n,
            };
            let lines: Vec<Value> = if t.log.is_empty() {
                vec![json!({"n": 1, "t": "no content"})]
            } else {
                t.log
                    .iter()
                    .enumerate()
                    .skip(start)
                    .take(take)
                    .map(|(i, l)| json!({"n": i + 1, "t": l}))
                    .collect()
            };
            Ok(json!({"__total": total.max(1), "data": lines}))
        }
        (m, ["nodes", node, kind @ ("lxc" | "qemu"), vmid, rest @ ..]) => {
            check_node(&st, node)?;
            let vmid: u32 = vmid
                .parse()
                .map_err(|_| param_err("vmid", format!("type check ('integer') failed - got '{vmid}'")))?;
            // The parameter schema is checked before the handler looks the guest up.
            super::snapshots::schema_check(&app.profile, method, kind, rest, params)?;
            let found = st
                .guests
                .get(&vmid)
                .filter(|g| g.node == *node && g.kind.as_str() == *kind)
                .is_some();
            if !found {
                let file = if *kind == "lxc" {
                    format!("nodes/{node}/lxc/{vmid}.conf")
                } else {
                    format!("nodes/{node}/qemu-server/{vmid}.conf")
                };
                if rest.is_empty() && m == "GET" {
                    return Err(not_impl(method, path));
                }
                return Err(err(500, format!("Configuration file '{file}' does not exist")));
            }
            guest_route(app, &mut st, method, path, vmid, rest, params, caller)
        }
        _ => Err(not_impl(method, path)),
    }
}

pub(super) fn check_node(st: &LabState, node: &str) -> Result<(), ApiErr> {
    if st.nodes.iter().any(|n| n == node) {
        Ok(())
    } else {
        Err(err(
            500,
            format!("hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"),
        ))
    }
}

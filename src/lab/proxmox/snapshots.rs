//! Snapshots: list, create, config, delete, rollback (with `start` where the profile has it).

use super::*;

/// The parameter schema of the snapshot routes (`pve-snapshot-name` = `pve-configid`, max 40;
/// `additionalProperties => 0`), which the real server checks before the handler runs, so a bad
/// name gives 400 `errors.snapname` even for a guest that does not exist. The rollback schema has
/// `start` only where the profile has it.
pub(super) fn schema_check(
    profile: &Profile,
    method: &Method,
    kind: &str,
    rest: &[&str],
    params: &[(String, String)],
) -> Result<(), ApiErr> {
    let name_ok = |n: &str| {
        if valid_configid(n) {
            Ok(())
        } else {
            Err(param_err(
                "snapname",
                format!("invalid format - invalid configuration ID '{n}'"),
            ))
        }
    };
    match (method.as_str(), rest) {
        ("POST", ["snapshot"]) => {
            let mut allowed = vec!["snapname", "description"];
            if kind == "qemu" {
                allowed.push("vmstate");
            }
            check_params(params, &allowed)?;
            match str_param(params, "snapname") {
                None => Err(param_err(
                    "snapname",
                    "property is missing and it is not optional",
                )),
                Some(n) => name_ok(n),
            }
        }
        ("POST", ["snapshot", name, "rollback"]) => {
            let allowed: &[&str] = if profile.rollback_start() {
                &["start"]
            } else {
                &[]
            };
            check_params(params, allowed)?;
            bool_param(params, "start")?;
            name_ok(name)
        }
        ("DELETE", ["snapshot", name]) => {
            check_params(params, &["force"])?;
            bool_param(params, "force")?;
            name_ok(name)
        }
        (_, ["snapshot", name, ..]) => name_ok(name),
        _ => Ok(()),
    }
}

/// `.../{vmid}/snapshot...` routes of an existing guest.
#[allow(clippy::too_many_arguments)]
pub(super) fn route(
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
        ("GET", ["snapshot"]) => {
            let g = &st.guests[&vmid];
            let mut list: Vec<Value> = g
                .snapshots
                .iter()
                .map(|s| {
                    let mut v = json!({"name": s.name, "description": s.description, "snaptime": s.snaptime});
                    if let Some(p) = &s.parent {
                        v["parent"] = json!(p);
                    }
                    if kind == Kind::Qemu {
                        v["vmstate"] = json!(s.vmstate as i32);
                    }
                    v
                })
                .collect();
            let mut cur = json!({"name": "current", "description": "You are here!", "digest": g.digest(),
                "running": g.running as i32});
            if let Some(p) = &g.parent {
                cur["parent"] = json!(p);
            }
            list.push(cur);
            Ok(Value::Array(list))
        }
        ("POST", ["snapshot"]) => {
            let mut allowed = vec!["snapname", "description"];
            if kind == Kind::Qemu {
                allowed.push("vmstate");
            }
            check_params(params, &allowed)?;
            let name = str_param(params, "snapname")
                .ok_or_else(|| param_err("snapname", "property is missing and it is not optional"))?
                .to_string();
            if !valid_configid(&name) {
                return Err(param_err(
                    "snapname",
                    format!("invalid format - invalid configuration ID '{name}'"),
                ));
            }
            let lower = name.to_ascii_lowercase();
            if lower == "current"
                || (kind == Kind::Lxc && lower == "vzdump")
                || (kind == Kind::Qemu && lower == "pending")
            {
                return Err(err(
                    500,
                    format!("unable to use snapshot name '{name}' (reserved name)"),
                ));
            }
            let description = str_param(params, "description").unwrap_or("").to_string();
            let vmstate = bool_param(params, "vmstate")?;
            let upid = spawn_task(
                app,
                st,
                vmid,
                &kind.task("snapshot"),
                caller,
                Some("snapshot"),
                move |st, log| {
                    let g = st.guests.get_mut(&vmid).expect("guest");
                    if g.snapshots.iter().any(|s| s.name == name) {
                        return Err(format!("snapshot name '{name}' already used"));
                    }
                    // `AbstractConfig::snapshot_prepare`: the storage must support snapshots.
                    if !g.can_snapshot() {
                        return Err("snapshot feature is not available".into());
                    }
                    log.push(format!("create snapshot '{name}'"));
                    g.snapshots.push(Snapshot {
                        name: name.clone(),
                        description,
                        snaptime: now(),
                        parent: g.parent.clone(),
                        config: g.config.clone(),
                        lab_marker: g.lab_marker.clone(),
                        vmstate: vmstate && g.running,
                    });
                    g.parent = Some(name);
                    Ok(())
                },
            )?;
            Ok(json!(upid))
        }
        ("GET", ["snapshot", name, "config"]) => snap_config(&st.guests[&vmid], name),
        ("GET", ["snapshot", name]) => {
            let g = &st.guests[&vmid];
            if !g.snapshots.iter().any(|s| s.name == *name) {
                return Err(err(500, format!("snapshot '{name}' does not exist")));
            }
            Ok(json!([{"rel": "child", "href": "config"}, {"rel": "child", "href": "rollback"}]))
        }
        ("DELETE", ["snapshot", name]) => {
            check_params(params, &["force"])?;
            bool_param(params, "force")?;
            if !valid_configid(name) {
                return Err(param_err(
                    "snapname",
                    format!("invalid format - invalid configuration ID '{name}'"),
                ));
            }
            let name = name.to_string();
            let upid = spawn_task(
                app,
                st,
                vmid,
                &kind.task("delsnapshot"),
                caller,
                Some("snapshot-delete"),
                move |st, log| {
                    let g = st.guests.get_mut(&vmid).expect("guest");
                    let Some(i) = g.snapshots.iter().position(|s| s.name == name) else {
                        return Err(format!("snapshot '{name}' does not exist"));
                    };
                    log.push(format!("delete snapshot '{name}'"));
                    let gone = g.snapshots.remove(i);
                    for s in g.snapshots.iter_mut() {
                        if s.parent.as_deref() == Some(name.as_str()) {
                            s.parent = gone.parent.clone();
                        }
                    }
                    if g.parent.as_deref() == Some(name.as_str()) {
                        g.parent = gone.parent.clone();
                    }
                    Ok(())
                },
            )?;
            Ok(json!(upid))
        }
        ("POST", ["snapshot", name, "rollback"]) => {
            check_params(params, &["start"])?;
            let start = bool_param(params, "start")?;
            if !valid_configid(name) {
                return Err(param_err(
                    "snapname",
                    format!("invalid format - invalid configuration ID '{name}'"),
                ));
            }
            let name = name.to_string();
            let caller_user = caller.user.clone();
            let caller_tok = caller.tokenid.clone();
            let state = app.state.clone();
            let task_ms = st.task_ms;
            let upid = spawn_task(
                app,
                st,
                vmid,
                &kind.task("rollback"),
                caller,
                Some("rollback"),
                move |st, log| {
                    let node;
                    {
                        let g = st.guests.get_mut(&vmid).expect("guest");
                        let Some(s) = g.snapshots.iter().find(|s| s.name == name).cloned() else {
                            return Err(format!("snapshot '{name}' does not exist"));
                        };
                        if g.running {
                            log.push(format!("stopping {p} {vmid} for rollback"));
                            g.running = false;
                        }
                        log.push(format!("rollback to snapshot '{name}'"));
                        g.config = s.config.clone();
                        g.lab_marker = s.lab_marker.clone();
                        g.parent = Some(name.clone());
                        if kind == Kind::Qemu && s.vmstate {
                            log.push("resuming VM from saved RAM state".into());
                            g.running = true;
                            g.started_at = now();
                        }
                        node = g.node.clone();
                    }
                    if start && !st.guests[&vmid].running {
                        let upid = new_task(
                            st,
                            &node,
                            &kind.task("start"),
                            vmid,
                            &caller_user,
                            caller_tok.clone(),
                        );
                        log.push(format!("starting after rollback: {upid}"));
                        let state = state.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(task_ms)).await;
                            let mut st = state.lock();
                            if let Some(g) = st.guests.get_mut(&vmid) {
                                g.running = true;
                                g.started_at = now();
                            }
                            finish_task(
                                &mut st,
                                &upid,
                                vec![format!("starting {p} {vmid}")],
                                Ok(()),
                            );
                        });
                    }
                    Ok(())
                },
            )?;
            Ok(json!(upid))
        }
        _ => Err(not_impl(method, path)),
    }
}

pub(super) fn snap_config(g: &Guest, name: &str) -> ApiResult {
    let s = g
        .snapshots
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| err(500, format!("snapshot '{name}' does not exist")))?;
    let mut m: Map<String, Value> = s
        .config
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    m.insert("snaptime".into(), json!(s.snaptime));
    m.insert("description".into(), json!(s.description));
    if let Some(p) = &s.parent {
        m.insert("parent".into(), json!(p));
    }
    Ok(Value::Object(m))
}

//! Tasks: UPIDs, their status and log, and the worker that runs a guest operation after a delay.

use super::*;

pub(super) fn find_task<'a>(st: &'a LabState, upid: &str) -> Result<&'a Task, ApiErr> {
    if crate::clients::proxmox::Upid::parse(upid).is_err() {
        return Err(param_err("upid", "unable to parse worker upid"));
    }
    st.tasks
        .iter()
        .find(|t| t.upid == upid)
        .ok_or_else(|| param_err("upid", "no such task"))
}

pub(super) fn task_status_json(t: &Task) -> Value {
    let mut v = json!({"upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart, "starttime": t.starttime,
        "type": t.kind, "id": t.id, "user": t.user,
        "status": if t.exitstatus.is_some() { "stopped" } else { "running" }});
    if let Some(e) = &t.exitstatus {
        v["exitstatus"] = json!(e);
    }
    if let Some(tok) = &t.tokenid {
        v["tokenid"] = json!(tok);
    }
    v
}

pub(super) fn new_task(
    st: &mut LabState,
    node: &str,
    kind: &str,
    vmid: u32,
    user: &str,
    tokenid: Option<String>,
) -> String {
    st.next_pid += 1;
    let starttime = now();
    let full_user = match &tokenid {
        Some(t) => t.clone(),
        None => user.to_string(),
    };
    let u = crate::clients::proxmox::Upid {
        node: node.to_string(),
        pid: st.next_pid,
        pstart: 0x0123_0000 + st.next_pid as u64,
        starttime,
        kind: kind.to_string(),
        id: vmid.to_string(),
        user: full_user,
    };
    let upid = u.format();
    st.tasks.push(Task {
        upid: upid.clone(),
        node: node.to_string(),
        pid: u.pid,
        pstart: u.pstart,
        starttime,
        kind: kind.to_string(),
        id: vmid.to_string(),
        user: user.to_string(),
        tokenid,
        log: Vec::new(),
        exitstatus: None,
        endtime: None,
    });
    if st.tasks.len() > 1000 {
        st.tasks.remove(0);
    }
    upid
}

pub(super) fn finish_task(
    st: &mut LabState,
    upid: &str,
    lines: Vec<String>,
    result: Result<(), String>,
) {
    if let Some(t) = st.tasks.iter_mut().find(|t| t.upid == upid) {
        t.log.extend(lines);
        match result {
            Ok(()) => {
                t.log.push("TASK OK".into());
                t.exitstatus = Some("OK".into());
            }
            Err(e) => {
                t.log.push(format!("TASK ERROR: {e}"));
                t.exitstatus = Some(e.replace('\n', " "));
            }
        }
        t.endtime = Some(now());
    }
}

/// Start a worker task for `vmid`. With `lock`, the lock check happens now (a held lock makes the
/// task fail with `CT is locked (x)`, as the real worker does) and the guest holds `lock` until the
/// task ends. The work runs after the task's duration. Returns the UPID.
pub(super) fn spawn_task<F>(
    app: &App,
    st: &mut LabState,
    vmid: u32,
    kind: &str,
    caller: &Caller,
    lock: Option<&str>,
    work: F,
) -> Result<String, ApiErr>
where
    F: FnOnce(&mut LabState, &mut Vec<String>) -> Result<(), String> + Send + 'static,
{
    let g = st.guests.get_mut(&vmid).expect("guest");
    let node = g.node.clone();
    let delay = Duration::from_millis(st.task_ms + g.slow_ms);
    let fail = g.fail_next.take();
    let early: Option<String> = match lock {
        Some(l) => match g.locked_msg() {
            Some(m) => Some(m),
            None => {
                g.lock = Some(l.to_string());
                None
            }
        },
        None => None,
    };
    let holds_lock = lock.is_some() && early.is_none();
    // Workers lock the guest's config file; the HA request workers only call `ha-manager`.
    let takes_flock = !kind.starts_with("ha");
    let upid = new_task(st, &node, kind, vmid, &caller.user, caller.tokenid.clone());
    if let Some(t) = st.tasks.iter_mut().find(|t| t.upid == upid) {
        t.log.push(format!(
            "task started by {}",
            caller.tokenid.as_deref().unwrap_or(&caller.user)
        ));
    }
    let state = app.state.clone();
    let upid2 = upid.clone();
    tokio::spawn(async move {
        tokio::time::sleep(if early.is_some() { delay / 4 } else { delay }).await;
        let mut st = state.lock();
        let mut lines = Vec::new();
        let result = if let Some(m) = early {
            Err(m)
        } else if let Some(f) = fail {
            lines.push("lab: injected failure".into());
            Err(f)
        } else if let Some(m) = takes_flock
            .then(|| st.guests.get_mut(&vmid).and_then(|g| g.flock().err()))
            .flatten()
        {
            Err(m)
        } else {
            work(&mut st, &mut lines)
        };
        if holds_lock {
            if let Some(g) = st.guests.get_mut(&vmid) {
                g.lock = None;
            }
        }
        finish_task(&mut st, &upid2, lines, result);
    });
    Ok(upid)
}

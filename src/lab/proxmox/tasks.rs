//! Tasks: UPIDs, their status and log, and the worker that runs a guest operation after a delay.

use super::*;

pub(super) fn find_task<'a>(st: &'a LabState, upid: &str) -> Result<&'a Task, ApiErr> {
    if !upid_is_valid(upid) {
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
    let pid = st.next_pid;
    let pstart = 0x0123_0000 + st.next_pid as u64;
    // PVE's worker id (pve-common PVE::Tools::upid_encode): node, pid, pstart and start time in hex.
    let upid =
        format!("UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{kind}:{vmid}:{full_user}:");
    st.tasks.push(Task {
        upid: upid.clone(),
        node: node.to_string(),
        pid,
        pstart,
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

/// Whether `upid` has the shape pve-common's `upid_decode` accepts:
/// `UPID:node:PID(8 hex):PSTART(8-9 hex):STARTTIME(8 hex):type:id:user:`.
fn upid_is_valid(upid: &str) -> bool {
    let Some(rest) = upid.strip_prefix("UPID:").and_then(|r| r.strip_suffix(':')) else {
        return false;
    };
    let f: Vec<&str> = rest.split(':').collect();
    let hex = |s: &str, lens: &[usize]| {
        lens.contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
    };
    let node_ok = !f.is_empty()
        && !f[0].is_empty()
        && f[0].chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !f[0].starts_with('-')
        && !f[0].ends_with('-');
    let word = |s: &str| !s.chars().any(char::is_whitespace);
    f.len() == 7
        && node_ok
        && hex(f[1], &[8])
        && hex(f[2], &[8, 9])
        && hex(f[3], &[8])
        && !f[4].is_empty()
        && word(f[4])
        && word(f[5])
        && !f[6].is_empty()
        && word(f[6])
}

#[cfg(test)]
mod tests {
    use super::upid_is_valid;

    #[test]
    fn upids_are_checked_like_pve_common_decodes_them() {
        // As a PVE node writes them: a user task, a token's task, a task without an id.
        for ok in [
            "UPID:pve:000B5F2A:0113D6E5:6560A1B2:vzsnapshot:2013:root@pam:",
            "UPID:pve-2:000B5F2A:10113D6E5:6560A1B2:qmstart:101:root@pam!ralf:",
            "UPID:pve:000B5F2A:0113D6E5:6560A1B2:aptupdate::root@pam:",
        ] {
            assert!(upid_is_valid(ok), "{ok}");
        }
        for bad in [
            "UPID:pve:000B5F2A:0113D6E5:6560A1B2:vzsnapshot:2013:root@pam", // no closing ':'
            "UPID:pve:0B5F2A:0113D6E5:6560A1B2:vzsnapshot:2013:root@pam:",  // pid not 8 hex
            "UPID:-pve:000B5F2A:0113D6E5:6560A1B2:vzsnapshot:2013:root@pam:", // node starts with '-'
            "UPID:pve:000B5F2A:0113D6E5:6560A1B2:vz snap:2013:root@pam:",     // space in the type
            "UPID:pve:000B5F2A:0113D6E5:6560A1B2:vzsnapshot:2013::",          // no user
            "UPID:pve:000B5F2A:0113D6E5:6560A1B2:vzsnapshot:root@pam:",       // a field missing
            "pve:000B5F2A:0113D6E5:6560A1B2:vzsnapshot:2013:root@pam:",       // no UPID prefix
        ] {
            assert!(!upid_is_valid(bad), "{bad}");
        }
    }
}

//! The task runner: status changes and output lines over time.

use super::*;
// ---------------------------------------------------------------- task runner

/// How long the stand-in takes between sending a status `update` and writing the row: the real
/// `saveStatus` sends first and then calls `store.UpdateTask`, so a REST read right after the event
/// can still see the old status (S6).
const WRITE_AFTER_EVENT: Duration = Duration::from_millis(40);

/// The `SetStatus` guards: `stopped` and finished tasks never change, `confirmed` cannot go back
/// to `waiting_confirmation`, `stopping` cannot go back to waiting/running.
fn transition_allowed(from: &str, to: &str) -> bool {
    !matches!(
        (from, to),
        ("success" | "error" | "stopped", _)
            | ("confirmed", "waiting_confirmation")
            | ("stopping", "waiting" | "running" | "starting")
    )
}

/// Change a task's status like `TaskRunner.SetStatus` + `saveStatus`: guard, event, then the write.
/// Returns false when the guard refused. Like the real `SetStatus` it never sets `end`: a finished
/// task's first terminal `update` carries `end: null`; the end comes with [`finish_run`].
pub(super) async fn set_status(sh: &Shared, id: i64, status: &str) -> bool {
    let next = {
        let st = sh.st.lock();
        let Some(t) = st.task(id) else { return false };
        if !transition_allowed(t.v["status"].as_str().unwrap_or(""), status) {
            return false;
        }
        let start = match t.v.get("start").filter(|v| !v.is_null()) {
            Some(s) => s.clone(),
            None if status == "running" => json!(now()),
            None => Value::Null,
        };
        (start, t.v.get("end").cloned().unwrap_or(Value::Null))
    };
    emit_update(sh, id, Some((status, next.0.clone(), next.1.clone())));
    tokio::time::sleep(WRITE_AFTER_EVENT).await;
    write_status(sh, id, status, next.0, next.1);
    true
}

/// The runner's deferred end (`finishRun` on develop, the `defer` in v2.10 `run()`): once the task
/// is finished, `End = now` and `saveStatus` again, so every finished task sends a second terminal
/// `update`, this time with its `end`, one database write after the first.
async fn finish_run(sh: &Shared, id: i64) {
    let (status, start) = {
        let st = sh.st.lock();
        let Some(t) = st.task(id) else { return };
        if !is_final(&t.v) {
            return;
        }
        (
            t.v["status"].as_str().unwrap_or("").to_string(),
            t.v.get("start").cloned().unwrap_or(Value::Null),
        )
    };
    let end = json!(now());
    emit_update(sh, id, Some((&status, start.clone(), end.clone())));
    tokio::time::sleep(WRITE_AFTER_EVENT).await;
    write_status(sh, id, &status, start, end);
}

fn write_status(sh: &Shared, id: i64, status: &str, start: Value, end: Value) {
    let mut st = sh.st.lock();
    let Some(t) = st.task_mut(id) else { return };
    t.v["status"] = json!(status);
    if !start.is_null() {
        t.v["start"] = start;
    }
    if !end.is_null() {
        t.v["end"] = end;
    }
    if is_final(&t.v) && t.finished_at.is_none() {
        // The first moment a REST read can see that the task finished.
        t.finished_at = Some(std::time::Instant::now());
    }
}

/// `StopTask` on a finished task (not in the pool): the empty `success`/`error` arms of the guard
/// let `stopped` through (S5).
pub(super) async fn overwrite_status(sh: &Shared, id: i64, status: &str) {
    let (start, end) = {
        let st = sh.st.lock();
        let Some(t) = st.task(id) else { return };
        if t.v["status"] == json!("stopped") {
            return;
        }
        // `SetStatus` leaves `End` as it was.
        (t.v["start"].clone(), t.v["end"].clone())
    };
    emit_update(sh, id, Some((status, start.clone(), end.clone())));
    write_status(sh, id, status, start, end);
}

pub(super) fn log_line(sh: &Shared, id: i64, text: String) {
    let time = now();
    let ev = {
        let mut st = sh.st.lock();
        let Some(t) = st.task_mut(id) else { return };
        let line_id = t.output.len() as i64 + 1;
        t.output
            .push(json!({"id": line_id, "task_id": id, "time": time, "output": text, "stage_id": Value::Null}));
        json!({"type": "log", "output": text, "time": time, "task_id": id, "project_id": t.v["project_id"]})
    };
    let _ = sh.events.send(ev.to_string());
}

/// Sleep `d`, returning early with any signal that arrives.
pub(super) async fn pause(rx: &mut watch::Receiver<Signal>, d: Duration) -> Signal {
    let cur = *rx.borrow_and_update();
    if cur != Signal::None {
        return cur;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => Signal::None,
        r = rx.changed() => if r.is_ok() { *rx.borrow_and_update() } else { std::future::pending().await },
    }
}

pub(super) async fn stop_now(sh: &Shared, id: i64, force: bool) {
    if sh.st.lock().task(id).is_none_or(|t| is_final(&t.v)) {
        return;
    }
    if !force {
        set_status(sh, id, "stopping").await;
        log_line(sh, id, "Stopping task".into());
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    log_line(sh, id, "Task stopped".into());
    set_status(sh, id, "stopped").await;
}

/// Run a task to its end, then record the end like the real runner's deferred `finishRun`.
pub(super) async fn run_task(sh: Arc<Shared>, id: i64, rx: watch::Receiver<Signal>) {
    run_job(&sh, id, rx).await;
    finish_run(&sh, id).await;
}

async fn run_job(sh: &Arc<Shared>, id: i64, mut rx: watch::Receiver<Signal>) {
    let (tpl_id, name, parallel) = {
        let st = sh.st.lock();
        let Some(t) = st.task(id) else { return };
        let tpl_id = t.v["template_id"].as_i64().unwrap_or(0);
        let tpl = st.template(tpl_id).cloned().unwrap_or_default();
        (
            tpl_id,
            tpl["name"].as_str().unwrap_or("").to_string(),
            tpl["allow_parallel_tasks"].as_bool().unwrap_or(false),
        )
    };
    // waiting: one task at a time per template unless allow_parallel_tasks.
    loop {
        let blocked = !parallel && {
            let st = sh.st.lock();
            st.tasks.iter().any(|t| {
                t.v["template_id"].as_i64() == Some(tpl_id)
                    && t.v["id"].as_i64().unwrap_or(0) < id
                    && !is_final(&t.v)
            })
        };
        if !blocked {
            break;
        }
        if let Signal::Stop(_) = pause(&mut rx, Duration::from_millis(10)).await {
            return stop_now(sh, id, true).await;
        }
    }
    let b = sh
        .st
        .lock()
        .behaviours
        .get(&name)
        .cloned()
        .unwrap_or_default();
    let run_no = {
        let mut st = sh.st.lock();
        let n = st.runs.entry(tpl_id).or_insert(0);
        *n += 1;
        *n
    };
    set_status(sh, id, "starting").await;
    if let Signal::Stop(f) = pause(&mut rx, Duration::from_millis(b.starting_ms)).await {
        return stop_now(sh, id, f).await;
    }
    set_status(sh, id, "running").await;
    let (checkout, command, vars) = effective_run(sh, id);
    log_line(sh, id, format!("lab: {checkout}"));
    log_line(sh, id, format!("lab: {command}"));
    log_line(
        sh,
        id,
        format!("lab: extra vars {}", Value::Object(vars.clone())),
    );
    // The first required variable the task does not carry with the required value.
    let unmet = b.require_env.iter().find(|(k, want)| {
        vars.get(k.as_str())
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .as_deref()
            != Some(want.as_str())
    });
    log_line(sh, id, format!("PLAY [{name}] *****"));
    let lines = b.lines.max(1);
    let step = Duration::from_millis(b.duration_ms / lines as u64);
    let half = lines / 2;
    for i in 0..lines {
        if b.confirm && i == half {
            log_line(sh, id, "Plan: 1 to add, 0 to change, 0 to destroy.".into());
            // A confirm that came while running set `confirmed`; the guard refuses
            // confirmed -> waiting_confirmation, and the plan is applied without a wait (S2).
            if !set_status(sh, id, "waiting_confirmation").await {
                log_line(sh, id, "Apply started (already confirmed)".into());
                let _ = rx.borrow_and_update();
                continue;
            }
            loop {
                match pause(&mut rx, Duration::from_secs(3600)).await {
                    Signal::Confirm => {
                        set_status(sh, id, "confirmed").await;
                        set_status(sh, id, "running").await;
                        break;
                    }
                    Signal::Reject => {
                        set_status(sh, id, "rejected").await;
                        log_line(sh, id, "Apply rejected".into());
                        set_status(sh, id, "error").await;
                        return;
                    }
                    Signal::Stop(f) => return stop_now(sh, id, f).await,
                    Signal::None => {}
                }
            }
            // Consume the signal so later pauses do not see it again.
            let _ = rx.borrow_and_update();
        }
        match pause(&mut rx, step).await {
            Signal::Stop(f) => return stop_now(sh, id, f).await,
            // An early reject (the task was `rejected` while running) fails it.
            Signal::Reject => {
                log_line(sh, id, "Task rejected".into());
                set_status(sh, id, "error").await;
                return;
            }
            _ => {}
        }
        log_line(sh, id, format!("TASK [step {}] ok: [lab-host]", i + 1));
    }
    for i in 0..b.burst_lines {
        log_line(
            sh,
            id,
            format!(
                "ok: [lab-host] => (item={i:07}) changed=false msg=\"nothing to do for this item\""
            ),
        );
    }
    if b.hang {
        loop {
            if let Signal::Stop(f) = pause(&mut rx, Duration::from_secs(3600)).await {
                return stop_now(sh, id, f).await;
            }
        }
    }
    let ok = b.outcome != "error" && run_no > b.fail_times && unmet.is_none();
    if let (false, Some((k, want))) = (ok, unmet) {
        let got = vars
            .get(k.as_str())
            .map(|v| v.to_string())
            .unwrap_or("unset".into());
        log_line(
            sh,
            id,
            format!("fatal: [lab-host]: FAILED! => {{\"msg\": \"{k} must be {want} (is {got})\"}}"),
        );
        log_line(
            sh,
            id,
            "PLAY RECAP ***** lab-host : ok=2 changed=0 failed=1".into(),
        );
        set_status(sh, id, "error").await;
    } else if !ok && !b.fail_lines.is_empty() {
        for l in &b.fail_lines {
            log_line(sh, id, l.clone());
        }
        set_status(sh, id, "error").await;
    } else if ok {
        log_line(
            sh,
            id,
            "PLAY RECAP ***** lab-host : ok=4 changed=1 failed=0".into(),
        );
        set_status(sh, id, "success").await;
    } else {
        log_line(
            sh,
            id,
            "fatal: [lab-host]: FAILED! => {\"msg\": \"lab: simulated failure\"}".into(),
        );
        log_line(
            sh,
            id,
            "PLAY RECAP ***** lab-host : ok=2 changed=0 failed=1".into(),
        );
        set_status(sh, id, "error").await;
    }
}

/// What the runner really does with a task, per release (S1, S8): the branch checked out, the
/// command line and the extra variables. Overrides the template does not allow are dropped silently
/// on ≥ 2.11; v2.10 applies limit, inventory and branch unchecked, has no tags, and lets the template
/// environment win over the task's.
fn effective_run(sh: &Shared, id: i64) -> (String, String, Map<String, Value>) {
    let st = sh.st.lock();
    let Some(t) = st.task(id) else {
        return Default::default();
    };
    let task = &t.v;
    let tpl = st
        .template(task["template_id"].as_i64().unwrap_or(0))
        .cloned()
        .unwrap_or_default();
    let old = sh.profile.v2_10();
    let tp = &tpl["task_params"];
    let allowed = |flag: &str| old || tp[flag] == json!(true);
    let params = &task["params"];
    let list = |k: &str| -> Vec<String> {
        params[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let branch_ok = old || tpl["allow_override_branch_in_task"] == json!(true);
    let branch = task["git_branch"]
        .as_str()
        .filter(|b| branch_ok && !b.is_empty())
        .or(tpl["git_branch"].as_str())
        .unwrap_or("main");
    let mut cmd = vec![
        "ansible-playbook".to_string(),
        tpl["playbook"].as_str().unwrap_or("").to_string(),
    ];
    let inv = match task["inventory_id"].as_i64() {
        Some(i) if allowed("allow_override_inventory") => i,
        _ => tpl["inventory_id"].as_i64().unwrap_or(0),
    };
    let inv_name = st
        .inventory
        .iter()
        .find(|i| i["id"] == json!(inv))
        .and_then(|i| i["name"].as_str())
        .unwrap_or("?");
    cmd.push(format!("-i {inv_name}"));
    let limit = list("limit");
    if !limit.is_empty() && allowed("allow_override_limit") {
        cmd.push(format!("--limit {}", limit.join(",")));
    }
    if !old {
        for (k, flag, opt) in [
            ("tags", "allow_override_tags", "--tags"),
            ("skip_tags", "allow_override_skip_tags", "--skip-tags"),
        ] {
            let v = list(k);
            if !v.is_empty() && allowed(flag) {
                cmd.push(format!("{opt} {}", v.join(",")));
            }
        }
    }
    if params["debug"] == json!(true) && allowed("allow_debug") {
        cmd.push("-vvvv".into());
    }
    if params["dry_run"] == json!(true) {
        cmd.push("--check".into());
    }
    if params["diff"] == json!(true) {
        cmd.push("--diff".into());
    }
    let args_src = if tpl["allow_override_args_in_task"] == json!(true)
        && task["arguments"].as_str().is_some_and(|a| !a.is_empty())
    {
        &task["arguments"]
    } else {
        &tpl["arguments"]
    };
    if let Some(Value::Array(a)) = args_src.as_str().and_then(|s| serde_json::from_str(s).ok()) {
        cmd.extend(a.iter().filter_map(Value::as_str).map(str::to_string));
    }
    let tpl_env: Map<String, Value> = st
        .environment
        .iter()
        .find(|e| e["id"] == tpl["environment_id"])
        .and_then(|e| e["json"].as_str())
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    let task_env: Map<String, Value> = task["environment"]
        .as_str()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    let (first, second) = if sh.profile.template_env_wins() {
        (task_env, tpl_env)
    } else {
        (tpl_env, task_env)
    };
    let mut vars = first;
    vars.extend(second);
    (format!("checkout {branch}"), cmd.join(" "), vars)
}

//! Tasks: create, list, read, output, stop, confirm/reject.

use super::*;
// ---------------------------------------------------------------- tasks

pub(super) fn is_final(v: &Value) -> bool {
    matches!(v["status"].as_str(), Some("success" | "error" | "stopped"))
}

pub(super) async fn tasks_all(State(sh): State<Arc<Shared>>, Path(p): Path<String>) -> Resp {
    let p = project(&sh, &p)?;
    let st = sh.st.lock();
    let list: Vec<Value> = st
        .tasks
        .iter()
        .rev()
        .filter(|x| x.v["project_id"] == json!(p))
        .take(1000)
        .map(|x| with_tpl(&sh, &st, &x.v))
        .collect();
    Ok(json_resp(StatusCode::OK, &Value::Array(list)))
}

pub(super) async fn tasks_last(
    State(sh): State<Arc<Shared>>,
    Path(p): Path<String>,
    q: axum::extract::Query<HashMap<String, String>>,
) -> Resp {
    let p = project(&sh, &p)?;
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(200)
        .clamp(1, 200);
    let st = sh.st.lock();
    let list: Vec<Value> = st
        .tasks
        .iter()
        .rev()
        .filter(|x| x.v["project_id"] == json!(p))
        .take(limit)
        .map(|x| with_tpl(&sh, &st, &x.v))
        .collect();
    Ok(json_resp(StatusCode::OK, &Value::Array(list)))
}

pub(super) const TASK_TYPES: &[(&str, &str)] = &[
    ("template_id", "int"),
    ("template_name", "string"),
    ("environment", "string"),
    ("secret", "string"),
    ("arguments", "string"),
    ("git_branch", "string"),
    ("playbook", "string"),
    ("inventory_id", "int"),
    ("limit", "string"),
    ("message", "string"),
    ("params", "object"),
    ("debug", "bool"),
    ("dry_run", "bool"),
    ("diff", "bool"),
    ("build_task_id", "int"),
];

const NO_TEMPLATE_ENV: &str = "template has no environment to merge the task environment into";

/// Why AddTask fails for this body, if it does: the real handler answers **500 with an empty
/// body** for these (v2.10 `AddTask`; develop `ValidateNewTask` / `populateDetails`), so the
/// reason is only in the server log.
fn add_task_problem(sh: &Shared, tpl: &Value, m: &Map<String, Value>) -> Option<String> {
    if let Some(Value::Object(params)) = m.get("params").filter(|_| sh.profile.has_params()) {
        let types = [
            ("debug", "bool"),
            ("dry_run", "bool"),
            ("diff", "bool"),
            ("limit", "strings"),
            ("tags", "strings"),
            ("skip_tags", "strings"),
            ("skip_galaxy_install", "bool"),
            ("plan", "bool"),
            ("destroy", "bool"),
            ("auto_approve", "bool"),
            ("upgrade", "bool"),
            ("reconfigure", "bool"),
        ];
        if check_types(params, &types).is_err() {
            return Some("params do not decode into the app's parameters".into());
        }
    }
    let env = m.get("environment").and_then(Value::as_str).unwrap_or("");
    let env_obj = if env.is_empty() {
        Map::new()
    } else {
        match serde_json::from_str::<Value>(env) {
            Ok(Value::Object(o)) => o,
            _ => return Some("environment is not a JSON object".into()),
        }
    };
    if let Some(a) = m.get("arguments").and_then(Value::as_str) {
        if !a.is_empty() && !matches!(serde_json::from_str::<Value>(a), Ok(Value::Array(_))) {
            return Some("arguments is not a JSON array".into());
        }
    }
    if sh.profile.v2_10() && !env_obj.is_empty() && tpl["environment_id"].as_i64().unwrap_or(0) == 0
    {
        // TaskRunner.populateDetails: json.Unmarshal("") of the missing template environment.
        return Some(NO_TEMPLATE_ENV.into());
    }
    if sh.profile.validates_survey_vars() && tpl["allow_any_vars_in_task"] != json!(true) {
        let declared: Vec<&str> = tpl["survey_vars"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v["name"].as_str()).collect())
            .unwrap_or_default();
        if let Some(k) = env_obj.keys().find(|k| !declared.contains(&k.as_str())) {
            return Some(format!(
                "variable {k} is not declared in the template survey"
            ));
        }
    }
    None
}

pub(super) async fn task_create(
    State(sh): State<Arc<Shared>>,
    Path(p): Path<String>,
    body: Bytes,
) -> Resp {
    let p = project(&sh, &p)?;
    let m = body_json(&body)?;
    // Field types are checked by decoding into db.Task: a mismatch is a 400 with an empty body.
    check_types(&m, TASK_TYPES)?;
    let (rx, id, fail) = {
        let mut st = sh.st.lock();
        let tpl = match (
            m.get("template_id").and_then(Value::as_i64),
            m.get("template_name")
                .and_then(Value::as_str)
                .filter(|_| !sh.profile.v2_10()),
        ) {
            (Some(id), _) => st.template(id).cloned(),
            (None, Some(n)) => st.templates.iter().find(|t| t["name"] == json!(n)).cloned(),
            _ => None,
        };
        let Some(tpl) = tpl.filter(|t| t["project_id"] == json!(p)) else {
            // v2.10 only finds out inside TaskPool.AddTask: 500, empty.
            return Err(empty(if sh.profile.v2_10() {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::NOT_FOUND
            }));
        };
        let problem = add_task_problem(&sh, &tpl, &m);
        // v2.10 has already inserted the task when populateDetails fails: it stays in `error`.
        let created_in_error = problem.as_deref() == Some(NO_TEMPLATE_ENV);
        if let Some(why) = &problem {
            tracing::debug!(target: "ralf::lab", "semaphore stand-in: AddTask fails: {why}");
            if !created_in_error {
                return Err(empty(StatusCode::INTERNAL_SERVER_ERROR));
            }
        }
        let id = st.id();
        let mut t = Map::new();
        t.insert("id".into(), json!(id));
        t.insert("template_id".into(), tpl["id"].clone());
        t.insert("project_id".into(), json!(p));
        t.insert(
            "status".into(),
            json!(if created_in_error { "error" } else { "waiting" }),
        );
        t.insert("playbook".into(), json!(""));
        t.insert("user_id".into(), json!(1));
        t.insert("created".into(), json!(now()));
        for k in [
            "environment",
            "arguments",
            "git_branch",
            "message",
            "inventory_id",
        ] {
            if let Some(v) = m.get(k).filter(|v| !v.is_null()) {
                t.insert(k.into(), v.clone());
            }
        }
        let mut params = if sh.profile.has_params() {
            m.get("params")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        } else {
            Map::new()
        };
        if let Some(l) = m
            .get("limit")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            params.insert(
                "limit".into(),
                json!(l.split(',').map(str::trim).collect::<Vec<_>>()),
            );
        }
        if !sh.profile.has_params() {
            // v2.10's db.Task has the flags top-level; newer releases have no such fields.
            for k in ["debug", "dry_run", "diff"] {
                if let Some(v) = m.get(k).filter(|v| v.is_boolean()) {
                    params.insert(k.into(), v.clone());
                }
            }
        }
        params.retain(|_, v| !v.is_null());
        t.insert("params".into(), Value::Object(params));
        if created_in_error {
            t.insert("end".into(), json!(now()));
        }
        let (tx, rx) = watch::channel(Signal::None);
        st.tasks.push(TaskRec {
            v: Value::Object(t),
            early: None,
            output: Vec::new(),
            signal: tx,
            finished_at: None,
        });
        if created_in_error {
            return Err(empty(StatusCode::INTERNAL_SERVER_ERROR));
        }
        let fail = if st.fail_creates > 0 {
            st.fail_creates -= 1;
            Some(st.fail_mode.clone())
        } else {
            None
        };
        (rx, id, fail)
    };
    emit_update(&sh, id, None);
    tokio::spawn(run_task(sh.clone(), id, rx));
    if fail.as_deref() == Some("delay") {
        // The task runs; its answer is late (a slow proxy, a loaded server).
        let ms = sh.st.lock().fail_delay_ms;
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    match fail.as_deref().filter(|f| *f != "delay") {
        Some("drop") => {
            let mut r = Response::new(broken_body());
            *r.status_mut() = StatusCode::CREATED;
            Ok(r)
        }
        Some(_) => Ok(empty(StatusCode::INTERNAL_SERVER_ERROR)),
        None => {
            let v = sh
                .st
                .lock()
                .task(id)
                .map(|t| sh.profile.task(&t.v))
                .unwrap_or_default();
            Ok(json_resp(StatusCode::CREATED, &v))
        }
    }
}

pub(super) fn task_of(sh: &Shared, p: &str, t: &str) -> Result<(i64, i64), Response> {
    let p = project(sh, p)?;
    let id = t
        .parse::<i64>()
        .map_err(|_| empty(StatusCode::BAD_REQUEST))?;
    let st = sh.st.lock();
    match st.task(id) {
        Some(x) if x.v["project_id"] == json!(p) => Ok((p, id)),
        _ => Err(empty(StatusCode::BAD_REQUEST)),
    }
}

pub(super) async fn task_get(
    State(sh): State<Arc<Shared>>,
    Path((p, t)): Path<(String, String)>,
) -> Resp {
    let (_, id) = task_of(&sh, &p, &t)?;
    let v = sh
        .st
        .lock()
        .task(id)
        .map(|t| sh.profile.task(&t.v))
        .unwrap_or_default();
    Ok(json_resp(StatusCode::OK, &v))
}

/// The whole log, every time: the real `GetTaskOutput` is not paginated.
pub(super) async fn task_output(
    State(sh): State<Arc<Shared>>,
    Path((p, t)): Path<(String, String)>,
) -> Resp {
    let (_, id) = task_of(&sh, &p, &t)?;
    let v: Vec<Value> = sh
        .st
        .lock()
        .task(id)
        .map(|t| t.output.iter().map(|l| sh.profile.output_line(l)).collect())
        .unwrap_or_default();
    Ok(json_resp(StatusCode::OK, &Value::Array(v)))
}

pub(super) async fn task_raw_output(
    State(sh): State<Arc<Shared>>,
    Path((p, t)): Path<(String, String)>,
) -> Resp {
    let (_, id) = task_of(&sh, &p, &t)?;
    let text: String = sh
        .st
        .lock()
        .task(id)
        .map(|t| {
            t.output
                .iter()
                .map(|l| format!("{}\n", l["output"].as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

pub(super) async fn task_stop(
    State(sh): State<Arc<Shared>>,
    Path((p, t)): Path<(String, String)>,
    body: Bytes,
) -> Resp {
    let (_, id) = task_of(&sh, &p, &t)?;
    let force = stop_force(&body)?;
    let finished = {
        let st = sh.st.lock();
        let Some(x) = st.task(id) else {
            return Err(empty(StatusCode::BAD_REQUEST));
        };
        if !is_final(&x.v) {
            x.signal.send_replace(Signal::Stop(force));
        }
        is_final(&x.v)
    };
    if finished {
        // Not in the pool any more: StopTask makes a runner and calls SetStatus(stopped), whose
        // success/error arms are empty, so the final status is overwritten (v2.10, 2025 develop);
        // the 2026 taskStatusTransitionAllowed refuses the transition.
        if sh.profile.stop_overwrites_finished() {
            overwrite_status(&sh, id, "stopped").await;
        }
        return Ok(empty(StatusCode::NO_CONTENT));
    }
    if force {
        // A forced stop is immediate (TaskPool.StopTask with force).
        log_line(&sh, id, "Task stopped".into());
        set_status(&sh, id, "stopped").await;
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `TaskPool.ConfirmTask` / `RejectTask`: only "is it still in the pool?" is checked (400 empty
/// otherwise); the status is set whatever it was, so a running task becomes `confirmed` and its
/// later confirmation step is skipped (S2).
async fn confirm_or_reject(sh: &Shared, p: &str, t: &str, body: &Bytes, sig: Signal) -> Resp {
    let (_, id) = task_of(sh, p, t)?;
    if !body.is_empty() {
        body_json(body)?;
    }
    let waiting = {
        let mut st = sh.st.lock();
        let Some(x) = st.task_mut(id) else {
            return Err(empty(StatusCode::BAD_REQUEST));
        };
        if is_final(&x.v) {
            return Err(empty(StatusCode::BAD_REQUEST));
        }
        let waiting = x.v["status"] == json!("waiting_confirmation");
        if waiting {
            x.signal.send_replace(sig);
        } else {
            x.early = Some(sig);
        }
        waiting
    };
    if !waiting {
        let status = if sig == Signal::Confirm {
            "confirmed"
        } else {
            "rejected"
        };
        set_status(sh, id, status).await;
        if sig == Signal::Reject {
            if let Some(x) = sh.st.lock().task(id) {
                x.signal.send_replace(Signal::Reject);
            }
        }
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

pub(super) async fn task_confirm(
    State(sh): State<Arc<Shared>>,
    Path((p, t)): Path<(String, String)>,
    body: Bytes,
) -> Resp {
    confirm_or_reject(&sh, &p, &t, &body, Signal::Confirm).await
}

pub(super) async fn task_reject(
    State(sh): State<Arc<Shared>>,
    Path((p, t)): Path<(String, String)>,
    body: Bytes,
) -> Resp {
    confirm_or_reject(&sh, &p, &t, &body, Signal::Reject).await
}

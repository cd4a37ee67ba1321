//! Task templates.

use super::*;
// ---------------------------------------------------------------- templates

pub(super) fn last_task(st: &St, template_id: i64) -> Option<Value> {
    st.tasks
        .iter()
        .rev()
        .find(|t| t.v["template_id"] == json!(template_id))
        .map(|t| t.v.clone())
}

/// A template as the modelled release answers: `last_task` (a `TaskWithTpl`) and the `tasks` count
/// filled in, then shaped by the profile (nulls on v2.10, omitempty on newer releases).
pub(super) fn shaped(sh: &Shared, st: &St, t: &Value) -> Value {
    let mut t = t.clone();
    let id = t["id"].as_i64().unwrap_or(0);
    t["last_task"] = last_task(st, id)
        .map(|lt| with_tpl(sh, st, &lt))
        .unwrap_or(Value::Null);
    t["tasks"] = json!(st
        .tasks
        .iter()
        .filter(|x| x.v["template_id"] == json!(id))
        .count());
    sh.profile.template(&t)
}

pub(super) async fn templates(State(sh): State<Arc<Shared>>, Path(p): Path<String>) -> Resp {
    let p = project(&sh, &p)?;
    let st = sh.st.lock();
    let mut list: Vec<Value> = st
        .templates
        .iter()
        .filter(|t| t["project_id"] == json!(p))
        .map(|t| shaped(&sh, &st, t))
        .collect();
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(json_resp(StatusCode::OK, &Value::Array(list)))
}

pub(super) const APPS: &[&str] = &[
    "ansible",
    "terraform",
    "tofu",
    "terragrunt",
    "bash",
    "powershell",
    "python",
    "pulumi",
];
pub(super) const TEMPLATE_TYPES: &[(&str, &str)] = &[
    ("id", "int"),
    ("project_id", "int"),
    ("inventory_id", "int"),
    ("repository_id", "int"),
    ("environment_id", "int"),
    ("environment_ids", "ints"),
    ("view_id", "int"),
    ("name", "string"),
    ("playbook", "string"),
    ("arguments", "string"),
    ("description", "string"),
    ("allow_override_args_in_task", "bool"),
    ("allow_parallel_tasks", "bool"),
    ("app", "string"),
    ("git_branch", "string"),
    ("type", "string"),
    ("autorun", "bool"),
    ("task_params", "object"),
    ("allow_override_branch_in_task", "bool"),
    ("allow_any_vars_in_task", "bool"),
    ("suppress_success_alerts", "bool"),
];

/// Validate a template body (after type checks); returns the message of the first problem.
pub(super) fn validate_template(st: &St, p: i64, m: &Map<String, Value>) -> Result<(), Response> {
    let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let app = if s("app").is_empty() {
        "ansible".to_string()
    } else {
        s("app")
    };
    if s("name").trim().is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "template name can not be empty",
        ));
    }
    if !APPS.contains(&app.as_str()) {
        return Err(error(StatusCode::BAD_REQUEST, "Invalid app id"));
    }
    let terraform = matches!(app.as_str(), "terraform" | "tofu" | "terragrunt");
    if !terraform && s("playbook").is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "template playbook can not be empty",
        ));
    }
    let inv = m.get("inventory_id").and_then(Value::as_i64).unwrap_or(0);
    if app == "ansible" && inv == 0 {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "template inventory can not be empty",
        ));
    }
    if inv != 0
        && !st
            .inventory
            .iter()
            .any(|i| i["id"] == json!(inv) && i["project_id"] == json!(p))
    {
        return Err(empty(StatusCode::NOT_FOUND));
    }
    let args = s("arguments");
    if !args.is_empty() && !matches!(serde_json::from_str::<Value>(&args), Ok(Value::Array(_))) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "template arguments must be valid JSON",
        ));
    }
    if let Some(pid) = m.get("project_id").and_then(Value::as_i64) {
        if pid != p {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "Project ID in body and URL must be the same",
            ));
        }
    }
    Ok(())
}

pub(super) fn template_value(id: i64, p: i64, m: &Map<String, Value>) -> Value {
    let mut t = m.clone();
    t.remove("last_task");
    t.insert("id".into(), json!(id));
    t.insert("project_id".into(), json!(p));
    for (k, d) in [
        ("app", json!("ansible")),
        ("type", json!("")),
        ("arguments", json!("[]")),
        ("description", json!("")),
        ("git_branch", json!("")),
        ("allow_parallel_tasks", json!(false)),
        ("allow_override_args_in_task", json!(false)),
        ("survey_vars", json!([])),
        ("vaults", json!([])),
    ] {
        let missing = t.get(k).is_none_or(Value::is_null);
        if missing {
            t.insert(k.into(), d);
        }
    }
    if t.get("app").and_then(Value::as_str) == Some("") {
        t.insert("app".into(), json!("ansible"));
    }
    for k in ["environment_id", "view_id", "repository_id", "inventory_id"] {
        if t.get(k).is_some_and(|v| v.is_null() || v == &json!(0)) {
            t.remove(k);
        }
    }
    if let Some(e) = t.get("environment_id").cloned() {
        t.entry("environment_ids").or_insert_with(|| json!([e]));
    }
    t.retain(|_, v| !v.is_null());
    Value::Object(t)
}

pub(super) async fn template_create(
    State(sh): State<Arc<Shared>>,
    Path(p): Path<String>,
    body: Bytes,
) -> Resp {
    let p = project(&sh, &p)?;
    let m = body_json(&body)?;
    check_types(&m, TEMPLATE_TYPES)?;
    let mut st = sh.st.lock();
    validate_template(&st, p, &m)?;
    let id = st
        .templates
        .iter()
        .filter_map(|t| t["id"].as_i64())
        .max()
        .unwrap_or(0)
        + 1;
    let t = template_value(id, p, &m);
    st.templates.push(t.clone());
    Ok(json_resp(StatusCode::CREATED, &shaped(&sh, &st, &t)))
}

pub(super) fn template_of(st: &St, p: i64, t: &str) -> Result<Value, Response> {
    let id = int_id(t)?;
    st.template(id)
        .filter(|x| x["project_id"] == json!(p))
        .cloned()
        .ok_or_else(|| empty(StatusCode::NOT_FOUND))
}

pub(super) async fn template_get(
    State(sh): State<Arc<Shared>>,
    Path((p, t)): Path<(String, String)>,
) -> Resp {
    let p = project(&sh, &p)?;
    let st = sh.st.lock();
    let t = template_of(&st, p, &t)?;
    Ok(json_resp(StatusCode::OK, &shaped(&sh, &st, &t)))
}

pub(super) async fn template_put(
    State(sh): State<Arc<Shared>>,
    Path((p, t)): Path<(String, String)>,
    body: Bytes,
) -> Resp {
    let p = project(&sh, &p)?;
    let m = body_json(&body)?;
    check_types(&m, TEMPLATE_TYPES)?;
    let mut st = sh.st.lock();
    let old = template_of(&st, p, &t)?;
    let id = old["id"].as_i64().unwrap_or(0);
    if m.get("id").and_then(Value::as_i64) != Some(id) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "Template ID in body and URL must be the same",
        ));
    }
    validate_template(&st, p, &m)?;
    let v = template_value(id, p, &m);
    if let Some(slot) = st.templates.iter_mut().find(|x| x["id"] == json!(id)) {
        *slot = v;
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

pub(super) async fn template_delete(
    State(sh): State<Arc<Shared>>,
    Path((p, t)): Path<(String, String)>,
) -> Resp {
    let p = project(&sh, &p)?;
    let mut st = sh.st.lock();
    let old = template_of(&st, p, &t)?;
    st.templates.retain(|x| x["id"] != old["id"]);
    Ok(empty(StatusCode::NO_CONTENT))
}

/// A `TaskWithTpl` (list endpoints): the task plus its template's playbook, name, type and app.
pub(super) fn with_tpl(sh: &Shared, st: &St, t: &Value) -> Value {
    let mut v = sh.profile.task(t);
    if let Some(tpl) = st.template(t["template_id"].as_i64().unwrap_or(0)) {
        v["tpl_playbook"] = tpl["playbook"].clone();
        v["tpl_alias"] = tpl["name"].clone();
        v["tpl_type"] = tpl["type"].clone();
        v["tpl_app"] = tpl["app"].clone();
    }
    v["user_name"] = json!("admin");
    v
}

pub(super) async fn template_tasks(
    State(sh): State<Arc<Shared>>,
    Path((p, t)): Path<(String, String)>,
) -> Resp {
    let p = project(&sh, &p)?;
    let st = sh.st.lock();
    let tpl = template_of(&st, p, &t)?;
    let list: Vec<Value> = st
        .tasks
        .iter()
        .rev()
        .filter(|x| x.v["template_id"] == tpl["id"])
        .map(|x| with_tpl(&sh, &st, &x.v))
        .collect();
    Ok(json_resp(StatusCode::OK, &Value::Array(list)))
}

pub(super) fn stop_force(body: &Bytes) -> Result<bool, Response> {
    let m = body_json(body)?;
    check_types(&m, &[("force", "bool")])?;
    Ok(m.get("force").and_then(Value::as_bool).unwrap_or(false))
}

pub(super) async fn stop_all(
    State(sh): State<Arc<Shared>>,
    Path((p, t)): Path<(String, String)>,
    body: Bytes,
) -> Resp {
    let p = project(&sh, &p)?;
    let force = stop_force(&body)?;
    let ids = {
        let st = sh.st.lock();
        let tpl = template_of(&st, p, &t)?;
        let mut ids = Vec::new();
        for x in st.tasks.iter().filter(|x| x.v["template_id"] == tpl["id"]) {
            if !is_final(&x.v) {
                x.signal.send_replace(Signal::Stop(force));
                ids.push(x.v["id"].as_i64().unwrap_or(0));
            }
        }
        ids
    };
    if force {
        for id in ids {
            log_line(&sh, id, "Task stopped".into());
            set_status(&sh, id, "stopped").await;
        }
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

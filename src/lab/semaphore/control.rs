//! The control API (`/_lab/...`, no auth) that tests and scenarios use to shape behaviour.

use super::*;

// ---------------------------------------------------------------- control API

pub(super) async fn lab_behaviour(
    State(sh): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let b: Behaviour = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("behaviour: {e}")),
    };
    let mut st = sh.st.lock();
    if !st.templates.iter().any(|t| t["name"] == json!(name)) {
        return error(StatusCode::NOT_FOUND, &format!("no template `{name}`"));
    }
    st.behaviours.insert(name, b);
    empty(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FailCreate {
    count: u32,
    #[serde(default = "default_mode")]
    mode: String,
    /// For mode "delay": the answer comes this many milliseconds after the task started.
    #[serde(default)]
    ms: u64,
}

pub(super) fn default_mode() -> String {
    "500".into()
}

pub(super) async fn lab_fail_create(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let f: FailCreate = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("fail_task_create: {e}")),
    };
    if !matches!(f.mode.as_str(), "500" | "drop" | "delay") {
        return error(
            StatusCode::BAD_REQUEST,
            "mode must be \"500\", \"drop\" or \"delay\"",
        );
    }
    let mut st = sh.st.lock();
    st.fail_creates = f.count;
    st.fail_mode = f.mode;
    st.fail_delay_ms = f.ms;
    empty(StatusCode::NO_CONTENT)
}

pub(super) async fn lab_tasks(State(sh): State<Arc<Shared>>) -> Response {
    let st = sh.st.lock();
    let list: Vec<Value> = st
        .tasks
        .iter()
        .map(|t| {
            let mut v = t.v.clone();
            // The template's name beside its id, so a test can read the order of what ran.
            if let Some(tpl) = st.template(v["template_id"].as_i64().unwrap_or(0)) {
                v["template_name"] = tpl["name"].clone();
            }
            v
        })
        .collect();
    json_resp(StatusCode::OK, &Value::Array(list))
}

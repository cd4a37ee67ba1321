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
    let list: Vec<Value> = sh.st.lock().tasks.iter().map(|t| t.v.clone()).collect();
    json_resp(StatusCode::OK, &Value::Array(list))
}

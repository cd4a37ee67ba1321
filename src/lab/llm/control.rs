//! The stand-in's control API under `/_lab/` (see the parent module's doc).

use super::{check_rule, load_model, unload_model, AppState, Reasoning, Rule};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct ScriptBody {
    rules: Vec<Rule>,
}

fn bad(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": msg}))).into_response()
}

pub(super) async fn add_script(State(st): State<AppState>, body: axum::body::Bytes) -> Response {
    let parsed: Result<ScriptBody, _> = serde_json::from_slice(&body);
    match parsed {
        Ok(b) => {
            for r in &b.rules {
                if let Err(e) = check_rule(r) {
                    return bad(e.message);
                }
            }
            let n = b.rules.len();
            st.inner.lock().rules.extend(b.rules);
            Json(json!({"added": n})).into_response()
        }
        Err(e) => bad(format!("bad script: {e}")),
    }
}

pub(super) async fn clear_script(State(st): State<AppState>) -> StatusCode {
    let mut i = st.inner.lock();
    i.rules.clear();
    i.seen.clear();
    StatusCode::NO_CONTENT
}

pub(super) async fn list_requests(State(st): State<AppState>) -> Json<Value> {
    Json(Value::Array(st.inner.lock().requests.clone()))
}

pub(super) async fn clear_requests(State(st): State<AppState>) -> StatusCode {
    st.inner.lock().requests.clear();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadBody {
    model: Option<String>,
    #[serde(default)]
    delay: f64,
}

pub(super) async fn load(State(st): State<AppState>, body: axum::body::Bytes) -> Response {
    let b: LoadBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad(format!("bad load request: {e}")),
    };
    let model = b.model.unwrap_or_else(|| st.models[0].clone());
    if !st.models.contains(&model) {
        return bad(format!(
            "llm lab: `{model}` is not one of this stand-in's models ({})",
            st.models.join(", ")
        ));
    }
    load_model(&st, &model, b.delay.max(0.0));
    Json(json!({"loaded": model})).into_response()
}

pub(super) async fn unload(State(st): State<AppState>, body: axum::body::Bytes) -> Response {
    let b: LoadBody = if body.is_empty() {
        LoadBody {
            model: None,
            delay: 0.0,
        }
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return bad(format!("bad unload request: {e}")),
        }
    };
    unload_model(&st, b.model.as_deref());
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasoningBody {
    mode: Reasoning,
    words: Option<usize>,
}

pub(super) async fn reasoning(State(st): State<AppState>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<ReasoningBody>(&body) {
        Ok(b) => {
            let mut i = st.inner.lock();
            i.reasoning = b.mode;
            if let Some(w) = b.words {
                i.reasoning_words = w;
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad(format!(
            "bad reasoning request (mode: off | switchable | always): {e}"
        )),
    }
}

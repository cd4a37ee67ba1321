//! exo v1 shapes (`exo-explore/exo` `src/exo/api/main.py`, `api/types/api.py`,
//! `shared/types/text_generation.py`): the catalog in `/v1/models`, instances in
//! `/ollama/api/ps` and `/state`, `/node_id`, 404 "No instance found for model X".

use super::{openai_error, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// The default model id of the stand-in (exo v1 ids are Hugging Face repo ids).
pub const DEFAULT_MODEL: &str = "mlx-community/Llama-3.2-3B-Instruct-4bit";

/// The catalog: the first model has a running instance at start, the second one does not.
pub fn default_models() -> Vec<String> {
    vec![
        DEFAULT_MODEL.to_string(),
        "mlx-community/Llama-3.2-1B-Instruct-4bit".to_string(),
    ]
}

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/node_id", get(node_id))
        .route("/ollama/api/ps", get(ps))
        .route(
            "/ollama/api/version",
            get(|| async { Json(json!({"version": "1.0.0"})) }),
        )
        .route("/state", get(state))
}

/// `get_models`: model cards, whether or not an instance runs them.
async fn models(State(st): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = st
        .models
        .iter()
        .map(|id| {
            json!({
                "id": id,
                "object": "model",
                "created": 1_730_000_000,
                "owned_by": "exo",
                "name": id.rsplit('/').next().unwrap_or(id),
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn node_id(State(st): State<AppState>) -> Json<Value> {
    Json(Value::String(st.node_id.clone()))
}

/// `ollama_ps`: one entry per model with an instance (`name` = `model` = the model id, `size` 0).
async fn ps(State(st): State<AppState>) -> Json<Value> {
    let models: Vec<Value> = st
        .inner
        .lock()
        .loaded
        .iter()
        .map(|m| json!({"name": m, "model": m, "size": 0}))
        .collect();
    Json(json!({"models": models}))
}

/// A cut of `GET /state`: instances are tagged unions holding `shard_assignments.model_id`.
async fn state(State(st): State<AppState>) -> Json<Value> {
    let mut instances = serde_json::Map::new();
    for (i, m) in st.inner.lock().loaded.iter().enumerate() {
        instances.insert(
            format!("instance-{i}"),
            json!({"MlxRingInstance": {"instance_id": format!("instance-{i}"), "shard_assignments": {"model_id": m, "node_to_runner": {}}}}),
        );
    }
    Json(json!({"instances": instances, "runners": {}, "downloads": {}, "topology": {}}))
}

/// `_validate_model_has_instance`: an HTTPException re-shaped to `{"error": {message, type, param, code}}`.
pub(super) fn not_found(model: &str) -> Response {
    openai_error(
        StatusCode::NOT_FOUND,
        &format!("No instance found for model {model}"),
        "Not Found",
        json!(404),
    )
}

/// `resolve_reasoning_params`: `enable_thinking: false` or `reasoning_effort: "none"` turn it off.
pub(super) fn thinking_off(req: &Value) -> bool {
    req.get("enable_thinking").and_then(|v| v.as_bool()) == Some(false)
        || req.get("reasoning_effort").and_then(|v| v.as_str()) == Some("none")
}

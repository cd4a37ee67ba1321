//! Ollama's `/v1` layer (`ollama/ollama` `openai/openai.go` `FromChatRequest`, `middleware/openai.go`,
//! `server/routes.go` `ChatHandler` / `PsHandler` / `ListHandler`): pulled models in `/v1/models` and
//! `/api/tags`, loaded ones in `/api/ps`, 404 "model 'x' not found", `reasoning` beside `content`,
//! `reasoning_effort` high|medium|low|none (`none` = think false), `response_format` json_object
//! (any JSON) or json_schema (that schema) enforced.

use super::{openai_error, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// Pulled models; the first one is loaded at start, the second loads on first use.
pub fn default_models() -> Vec<String> {
    vec!["llama3.2:3b".to_string(), "qwen3:4b".to_string()]
}

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/v1/models", get(models))
        .route("/api/tags", get(tags))
        .route("/api/ps", get(ps))
        .route(
            "/api/version",
            get(|| async { Json(json!({"version": "0.12.6"})) }),
        )
}

async fn models(State(st): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = st
        .models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 1_730_000_000, "owned_by": "library"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

fn entry(m: &str) -> Value {
    json!({"name": m, "model": m, "size": 2_019_393_189u64, "digest": "a80c4f17acd5",
        "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}})
}

async fn tags(State(st): State<AppState>) -> Json<Value> {
    let models: Vec<Value> = st.models.iter().map(|m| entry(m)).collect();
    Json(json!({"models": models}))
}

async fn ps(State(st): State<AppState>) -> Json<Value> {
    let models: Vec<Value> = st.inner.lock().loaded.iter().map(|m| entry(m)).collect();
    Json(json!({"models": models}))
}

/// `ChatHandler`'s 404, re-shaped by the middleware (`openai.NewError`: type `not_found_error`).
pub(super) fn not_found(model: &str) -> Response {
    openai_error(
        StatusCode::NOT_FOUND,
        &format!("model '{model}' not found"),
        "not_found_error",
        Value::Null,
    )
}

/// `FromChatRequest`'s checks.
pub(super) fn check_request(req: &Value) -> Option<Response> {
    let effort = req
        .pointer("/reasoning/effort")
        .or_else(|| req.get("reasoning_effort"))
        .and_then(|v| v.as_str())
        .filter(|e| !e.is_empty())?;
    if ["high", "medium", "low", "none"].contains(&effort) {
        return None;
    }
    Some(openai_error(
        StatusCode::BAD_REQUEST,
        &format!("invalid reasoning value: '{effort}' (must be \"high\", \"medium\", \"low\", or \"none\")"),
        "invalid_request_error",
        Value::Null,
    ))
}

pub(super) fn thinking_off(req: &Value) -> bool {
    req.pointer("/reasoning/effort")
        .or_else(|| req.get("reasoning_effort"))
        .and_then(|v| v.as_str())
        == Some("none")
}

/// The format Ollama hands to its sampler: json_object = any JSON object, json_schema = the schema.
pub(super) fn enforced_schema(req: &Value) -> Option<Value> {
    let rf = req.get("response_format")?;
    match rf.get("type")?.as_str()?.trim().to_lowercase().as_str() {
        "json_object" => Some(json!({"type": "object"})),
        "json_schema" => rf.pointer("/json_schema/schema").cloned(),
        _ => None,
    }
}

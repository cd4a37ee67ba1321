//! llama.cpp's llama-server (`ggml-org/llama.cpp` `tools/server/server-http.cpp` (the ready
//! middleware: 503 "Loading model" on every route), `server-context.cpp` (`get_health`, streams that
//! wait for the first result before sending headers, errors as `data: {"error": ..}`),
//! `server-common.cpp` (`oaicompat_chat_params_parse`: `response_format`, `chat_template_kwargs`,
//! `reasoning_effort`), `format_error_response`).

use super::{AppState, StatusCode};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// The one model (llama-server names it after its file or `--alias`).
pub fn default_models() -> Vec<String> {
    vec!["qwen2.5-1.5b-instruct-q4_k_m.gguf".to_string()]
}

pub(super) fn routes(r: Router<AppState>, st: AppState) -> Router<AppState> {
    r.route("/health", get(health))
        .route("/v1/health", get(health))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let st = st.clone();
                async move {
                    // No route answers while the model loads (control routes aside).
                    if !req.uri().path().starts_with("/_lab/") && st.loading() {
                        return loading_response();
                    }
                    next.run(req).await
                }
            },
        ))
}

/// `format_error_response`: `{"error": {code, message, type}}`.
pub(super) fn error(status: StatusCode, msg: &str, ty: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": status.as_u16(), "message": msg, "type": ty}})),
    )
        .into_response()
}

pub(super) fn loading_response() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Loading model",
        "unavailable_error",
    )
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn models(State(st): State<AppState>) -> Json<Value> {
    let m = &st.models[0];
    Json(
        json!({"object": "list", "data": [{"id": m, "object": "model", "created": 1_730_000_000,
        "owned_by": "llamacpp", "meta": {"n_ctx_train": 32768, "n_params": 1_543_714_304u64}}]}),
    )
}

/// `oaicompat_chat_params_parse`'s `response_format` check.
pub(super) fn check_request(req: &Value) -> Option<Response> {
    let ty = req.pointer("/response_format/type")?.as_str().unwrap_or("");
    if ["", "text", "json_object", "json_schema"].contains(&ty) {
        return None;
    }
    Some(error(
        StatusCode::BAD_REQUEST,
        &format!("response_format type must be one of \"text\" or \"json_object\", but got: {ty}"),
        "invalid_request_error",
    ))
}

/// `chat_template_kwargs.enable_thinking: false` or `reasoning_effort: "none"`.
pub(super) fn thinking_off(req: &Value) -> bool {
    req.pointer("/chat_template_kwargs/enable_thinking")
        .and_then(|v| v.as_bool())
        == Some(false)
        || req.get("reasoning_effort").and_then(|v| v.as_str()) == Some("none")
}

/// json_object (with `schema`, or any object) and json_schema are turned into a grammar.
pub(super) fn enforced_schema(req: &Value) -> Option<Value> {
    let rf = req.get("response_format")?;
    match rf.get("type")?.as_str()? {
        "json_object" => Some(
            rf.get("schema")
                .cloned()
                .unwrap_or(json!({"type": "object"})),
        ),
        "json_schema" => Some(
            rf.pointer("/json_schema/schema")
                .cloned()
                .unwrap_or(json!({"type": "object"})),
        ),
        _ => None,
    }
}

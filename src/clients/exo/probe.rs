//! Is the configured model able to answer now? Which kind of server is it?
//!
//! `GET /v1/models` answering 200 is not enough: on exo v1 it is the static catalog of model cards,
//! 200 with no model loaded, while every chat gets 404 "No instance found". So the probe asks each
//! kind of server its own question:
//! - exo v1 (`GET /node_id` answers a JSON string): the model needs a running instance, listed by the
//!   Ollama shim `GET /ollama/api/ps` (`models[].model` = the instance's model id), else by
//!   `GET /state` (`instances.*..shard_assignments.model_id`).
//! - Ollama (`GET /api/version`): loaded (`GET /api/ps`) or at least pulled (`GET /api/tags`; the
//!   first request then loads it, which takes a while).
//! - llama.cpp (`GET /health`): 200 `{"status":"ok"}`; 503 "Loading model" while it loads.
//! - legacy exo and anything else: the model is listed by `GET /v1/models`.

use super::{model_ids, Client};
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    /// The configured model can answer now (same as `ready`; kept for callers of the first version).
    pub ok: bool,
    /// The configured model can answer now.
    pub ready: bool,
    /// `exo-v1`, `exo-v0`, `llama.cpp`, `ollama` or `openai-compatible`.
    pub server: String,
    /// What `/v1/models` lists (on exo v1 the catalog, loaded or not).
    pub models: Vec<String>,
    /// Models loaded now, where the server says (exo instances, Ollama `/api/ps`).
    pub loaded: Option<Vec<String>>,
    /// Why the model cannot answer now (absent when ready).
    pub error: Option<String>,
}

/// Model ids in an Ollama-style `{"models": [{"name", "model"}]}` list.
fn ollama_names(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for m in v
        .get("models")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
    {
        for k in ["model", "name"] {
            if let Some(s) = m.get(k).and_then(|s| s.as_str()) {
                if !out.iter().any(|o| o == s) {
                    out.push(s.to_string());
                }
            }
        }
    }
    out
}

/// Every `model_id` found under exo's `/state` `instances` (instances are tagged unions, so the
/// search is by key, at any depth).
fn state_instance_models(v: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("model_id", Value::String(s)) => out.push(s.clone()),
                        _ => walk(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(i) = v.get("instances") {
        walk(i, &mut out);
    }
    out
}

/// Ollama accepts `llama3.2` for `llama3.2:latest`.
fn ollama_match(list: &[String], model: &str) -> bool {
    list.iter()
        .any(|m| m == model || m.strip_suffix(":latest") == Some(model))
}

impl Client {
    /// True only when the configured model can answer now (see [`Client::health`]). Never retries;
    /// waits at most `limit` per request.
    pub async fn available(&self, limit: Duration) -> bool {
        self.health(limit).await.ready
    }

    /// Probe the server: what kind it is, which models it lists and loads, and whether the
    /// configured model can answer now (with the reason when it cannot).
    pub async fn health(&self, limit: Duration) -> Health {
        let model = self.opts.model.clone();
        let (server, llama_health) = self.server_kind(limit).await;
        let listed = self.get_json("/v1/models", limit, false).await;
        let mut h = Health {
            ok: false,
            ready: false,
            server: server.clone(),
            models: listed.as_ref().map(model_ids).unwrap_or_default(),
            loaded: None,
            error: None,
        };
        let verdict: Result<(), String> = match server.as_str() {
            "llama.cpp" => match llama_health {
                Some(Ok(())) => Ok(()),
                Some(Err(why)) => Err(format!("llama.cpp at {} is not ready: {why}", self.base)),
                None => Err(format!("llama.cpp at {} did not answer /health", self.base)),
            },
            "exo-v1" => {
                let loaded = match self.get_json("/ollama/api/ps", limit, false).await {
                    Ok(v) => Ok(ollama_names(&v)),
                    Err(_) => self
                        .get_json("/state", limit, false)
                        .await
                        .map(|v| state_instance_models(&v)),
                };
                match loaded {
                    Ok(l) => {
                        let r = if l.contains(&model) {
                            Ok(())
                        } else if h.models.contains(&model) {
                            Err(format!(
                                "model `{model}` is in exo's catalog but has no running instance (place one, e.g. POST /place_instance {{\"model_id\": \"{model}\"}}); running: {}",
                                list_or_none(&l)
                            ))
                        } else {
                            Err(format!(
                                "model `{model}` is not known to exo (names must match exactly); running: {}",
                                list_or_none(&l)
                            ))
                        };
                        h.loaded = Some(l);
                        r
                    }
                    Err(e) => Err(format!("cannot tell which models exo runs: {}", e.message)),
                }
            }
            "ollama" => {
                let ps = self.get_json("/api/ps", limit, false).await;
                let tags = self.get_json("/api/tags", limit, false).await;
                let loaded = ps.as_ref().map(ollama_names).unwrap_or_default();
                let pulled = tags.as_ref().map(ollama_names).unwrap_or_default();
                h.loaded = ps.is_ok().then(|| loaded.clone());
                if ollama_match(&loaded, &model) || ollama_match(&pulled, &model) {
                    Ok(())
                } else if let Err(e) = &tags {
                    Err(format!("Ollama did not list its models: {}", e.message))
                } else {
                    Err(format!(
                        "model `{model}` is not pulled on this Ollama (ollama pull {model}); pulled: {}",
                        list_or_none(&pulled)
                    ))
                }
            }
            _ => match &listed {
                Ok(_) if h.models.is_empty() || h.models.contains(&model) => Ok(()),
                Ok(_) => Err(format!(
                    "model `{model}` is not offered; the server offers: {}",
                    h.models.join(", ")
                )),
                Err(e) => Err(e.message.clone()),
            },
        };
        // Ollama lists what is loadable in /v1/models too; a ready verdict stands on its own.
        match verdict {
            Ok(()) => {
                h.ready = true;
                h.ok = true;
            }
            Err(why) => h.error = Some(crate::redact::redact(&why)),
        }
        h
    }

    /// Which kind of server this is: exo v1 answers `GET /node_id` with a JSON string, legacy exo
    /// `GET /healthcheck`, llama.cpp `GET /health` (503 while loading), Ollama `GET /api/version`.
    /// For llama.cpp also its health verdict.
    async fn server_kind(&self, limit: Duration) -> (String, Option<Result<(), String>>) {
        for (path, name) in [
            ("/node_id", "exo-v1"),
            ("/healthcheck", "exo-v0"),
            ("/health", "llama.cpp"),
            ("/api/version", "ollama"),
        ] {
            let probe = self
                .auth(self.http.get(format!("{}{path}", self.base)))
                .timeout(limit)
                .send()
                .await;
            match probe {
                Ok(r)
                    if r.status().is_success()
                        || (name == "llama.cpp" && r.status().as_u16() == 503) =>
                {
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    let fits = match name {
                        "exo-v1" => body.is_string(),
                        "exo-v0" | "llama.cpp" => {
                            body.get("status").is_some() || body.get("error").is_some()
                        }
                        _ => body.get("version").is_some(),
                    };
                    if fits {
                        let verdict = (name == "llama.cpp").then(|| {
                            if status == 200 {
                                Ok(())
                            } else {
                                Err(format!(
                                    "/health answered {status}: {}",
                                    super::error_message(&body)
                                        .unwrap_or_else(|| "loading".to_string())
                                ))
                            }
                        });
                        return (name.to_string(), verdict);
                    }
                }
                Ok(_) => {}
                Err(_) => break, // not reachable at all: no point probing further
            }
        }
        ("openai-compatible".to_string(), None)
    }
}

fn list_or_none(l: &[String]) -> String {
    if l.is_empty() {
        "none".to_string()
    } else {
        l.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn instance_lists() {
        let ps =
            json!({"models": [{"name": "mlx-community/A", "model": "mlx-community/A", "size": 0}]});
        assert_eq!(ollama_names(&ps), ["mlx-community/A"]);
        let state = json!({"instances": {"i1": {"MlxRingInstance": {"shard_assignments": {"model_id": "m/B"}}}}, "downloads": {"model_id": "x"}});
        assert_eq!(state_instance_models(&state), ["m/B"]);
        assert!(ollama_match(&["llama3.2:latest".to_string()], "llama3.2"));
        assert!(!ollama_match(&["llama3.2:3b".to_string()], "llama3.2"));
    }
}

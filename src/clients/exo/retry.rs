//! Retries, status checks and error shaping of the chat client (see the parent module's doc).

use super::{
    error_chain, error_message, excerpt, model_ids, parse_retry_after, remaining, ChatRequest,
    Client, MAX_RETRY_AFTER,
};
use crate::error::{ErrorKind, RResult, RalfError};
use serde_json::Value;
use std::time::{Duration, Instant};

/// What failed in one attempt, and whether trying again may help.
pub(super) struct Attempt {
    pub(super) err: RalfError,
    pub(super) retry: bool,
    pub(super) retry_after: Option<Duration>,
}

impl From<RalfError> for Attempt {
    fn from(err: RalfError) -> Self {
        Attempt {
            err,
            retry: false,
            retry_after: None,
        }
    }
}

impl Client {
    /// A 404 mentioning the model becomes "model X is not offered; the server offers: ...".
    pub(super) async fn explain_unknown_model<T>(
        &self,
        r: RResult<T>,
        req: &ChatRequest,
    ) -> RResult<T> {
        let e = match r {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let status = e.details.get("status").and_then(|s| s.as_u64());
        let lower = e.message.to_lowercase();
        if !(status == Some(404) || (status == Some(400) && lower.contains("model")))
            || !lower.contains("model")
        {
            return Err(e);
        }
        let model = req.model.clone().unwrap_or_else(|| self.opts.model.clone());
        let offered = match self
            .get_json("/v1/models", self.opts.connect_timeout * 2, false)
            .await
        {
            Ok(v) => model_ids(&v),
            Err(_) => return Err(e),
        };
        if offered.contains(&model) {
            return Err(e); // the model exists: the 404/400 means something else
        }
        // exo v1 wants the full Hugging Face id: `llama-3.2-3b` -> `mlx-community/Llama-3.2-3B-Instruct-4bit`.
        let lower = model.to_lowercase();
        let hint = offered
            .iter()
            .find(|m| !lower.is_empty() && m.to_lowercase().contains(&lower))
            .map(|s| s.as_str())
            .or_else(|| crate::text::did_you_mean(&model, offered.iter().map(|s| s.as_str())))
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        let list = if offered.is_empty() {
            "none".to_string()
        } else {
            offered.join(", ")
        };
        Err(RalfError::not_found(format!(
            "exo: model `{model}` is not available on {} (names must match exactly). The server offers: {list}{hint} (server said: {})",
            self.base, e.message
        ))
        .with("status", status)
        .with("model", &model)
        .with("available", &offered))
    }

    pub(super) async fn with_retries<T, F, Fut>(
        &self,
        what: &str,
        deadline: Instant,
        retries: u32,
        retry_connect: bool,
        mut f: F,
    ) -> RResult<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Attempt>>,
    {
        let mut attempt = 0u32;
        loop {
            let left = remaining(deadline);
            if left.is_zero() {
                return Err(RalfError::timeout(format!(
                    "exo: {what} at {} did not finish within {}",
                    self.base,
                    crate::text::human_duration(self.opts.timeout)
                )));
            }
            let r = match tokio::time::timeout(left, f()).await {
                Ok(r) => r,
                Err(_) => continue,
            };
            let a = match r {
                Ok(v) => return Ok(v),
                Err(a) => a,
            };
            let is_connect = a.err.details.get("connect").and_then(|v| v.as_bool()) == Some(true);
            if !a.retry || attempt >= retries || (is_connect && !retry_connect) {
                let mut e = a.err;
                if attempt > 0 {
                    e = e.with("attempts", attempt + 1);
                }
                return Err(e);
            }
            let backoff =
                (self.opts.backoff * 2u32.pow(attempt.min(4))).min(Duration::from_secs(8));
            let wait = a
                .retry_after
                .map(|w| w.min(MAX_RETRY_AFTER))
                .unwrap_or(backoff);
            if wait >= remaining(deadline) {
                return Err(a.err.with("attempts", attempt + 1));
            }
            tracing::warn!(
                target: "ralf::exo",
                "{what}: {} (attempt {}/{}); retrying in {}",
                a.err.message,
                attempt + 1,
                retries + 1,
                crate::text::human_duration(wait)
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    pub(super) fn send_error(&self, e: reqwest::Error, url: &str) -> Attempt {
        let chain = error_chain(&e);
        if e.is_timeout() {
            let connect = e.is_connect();
            let err = RalfError::timeout(format!(
                "exo: {} {url} timed out{}",
                if connect {
                    "connecting to"
                } else {
                    "request to"
                },
                if connect {
                    format!(
                        " after {}",
                        crate::text::human_duration(self.opts.connect_timeout)
                    )
                } else {
                    String::new()
                }
            ))
            .with("url", url)
            .with("connect", connect);
            return Attempt {
                err,
                retry: true,
                retry_after: None,
            };
        }
        let connect = e.is_connect();
        Attempt {
            err: RalfError::unavailable(format!("exo: cannot reach {url}: {chain}"))
                .with("url", url)
                .with("connect", connect),
            retry: true,
            retry_after: None,
        }
    }

    pub(super) async fn check_status(
        &self,
        resp: reqwest::Response,
        url: &str,
    ) -> Result<reqwest::Response, Attempt> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let code = status.as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| error_message(&v))
            .unwrap_or_else(|| {
                if text.trim().is_empty() {
                    status
                        .canonical_reason()
                        .unwrap_or("no message")
                        .to_string()
                } else {
                    excerpt(&text)
                }
            });
        let kind = match code {
            400 | 405 | 413 | 415 | 422 => ErrorKind::Invalid,
            401 => ErrorKind::Auth,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            408 => ErrorKind::Timeout,
            409 => ErrorKind::Conflict,
            _ => ErrorKind::Unavailable,
        };
        let hint = match code {
            401 => " (check llm.api_key_env / api_key_file)",
            _ => "",
        };
        let mut retry = matches!(code, 408 | 409 | 429) || code >= 500;
        match headers.get("x-should-retry").and_then(|v| v.to_str().ok()) {
            Some("true") => retry = true,
            Some("false") => retry = false,
            _ => {}
        }
        let retry_after = headers
            .get("retry-after-ms")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|ms| ms.is_finite() && *ms >= 0.0)
            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
            .or_else(|| {
                headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after)
            });
        Err(Attempt {
            err: RalfError::new(kind, format!("exo: {url} answered {code}: {msg}{hint}"))
                .with("status", code)
                .with("url", url),
            retry,
            retry_after,
        })
    }
}

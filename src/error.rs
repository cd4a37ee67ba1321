//! The one error type every binding raises.
//!
//! A binding returns `RResult<T>`; on the Rhai side the error becomes a runtime error whose
//! value is an object map `#{ kind, message, details }` (plus a private marker), so a script can
//! `catch (e) { if e.kind == "timeout" { ... } }`. A script's own `throw` stays a plain value and
//! is therefore distinguishable (`type_of(e)`/no `kind`).

use rhai::{Dynamic, EvalAltResult, Map, Position};
use serde::Serialize;
use std::fmt;

/// Exit codes of the process.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const PARTIAL: i32 = 3;
    pub const LOCKED: i32 = 75;
    pub const CANCELLED: i32 = 130;
}

/// What went wrong, coarse enough for a script to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A deadline passed.
    Timeout,
    /// The run was cancelled (Ctrl-C, SIGTERM).
    Cancelled,
    /// Credentials missing or rejected.
    Auth,
    /// Authenticated but not allowed.
    Forbidden,
    /// The named thing does not exist.
    NotFound,
    /// Bad input: options, arguments, values.
    Invalid,
    /// The remote side could not be reached or answered with a server error.
    Unavailable,
    /// A remote command or task ran and failed.
    CommandFailed,
    /// The target is locked by another operation.
    Locked,
    /// The request conflicts with the current state.
    Conflict,
    /// Local file or OS failure.
    Io,
    /// Configuration problem.
    Config,
    /// A bug or an unexpected answer.
    Internal,
    /// A script's own `throw` (only when converted for Rust code; scripts see the thrown value).
    Script,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::Timeout,
        ErrorKind::Cancelled,
        ErrorKind::Auth,
        ErrorKind::Forbidden,
        ErrorKind::NotFound,
        ErrorKind::Invalid,
        ErrorKind::Unavailable,
        ErrorKind::CommandFailed,
        ErrorKind::Locked,
        ErrorKind::Conflict,
        ErrorKind::Io,
        ErrorKind::Config,
        ErrorKind::Internal,
        ErrorKind::Script,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Auth => "auth",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::CommandFailed => "command_failed",
            ErrorKind::Locked => "locked",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Io => "io",
            ErrorKind::Config => "config",
            ErrorKind::Internal => "internal",
            ErrorKind::Script => "script",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// Kinds that `retry()` retries by default: transient by nature.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::Locked
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error every binding and client raises.
#[derive(Debug, Clone)]
pub struct RalfError {
    pub kind: ErrorKind,
    pub message: String,
    /// Structured details (exit code, http status, task id, ...). Always a JSON object.
    pub details: serde_json::Map<String, serde_json::Value>,
}

pub type RResult<T> = Result<T, RalfError>;

/// Key of the private marker in the Rhai error map, so the renderer knows the map is ours.
pub const MARKER: &str = "__ralf_error";

impl RalfError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RalfError {
            kind,
            message: message.into(),
            details: serde_json::Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        self.details.insert(
            key.to_string(),
            serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
        );
        self
    }

    pub fn timeout(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, m)
    }
    pub fn cancelled() -> Self {
        Self::new(ErrorKind::Cancelled, "cancelled")
    }
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, m)
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, m)
    }
    pub fn auth(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Auth, m)
    }
    pub fn config(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, m)
    }
    pub fn io(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Io, m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, m)
    }
    pub fn command_failed(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::CommandFailed, m)
    }

    /// Prefix the message with context ("semaphore::run: ...").
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.message = format!("{ctx}: {}", self.message);
        self
    }

    /// The Rhai value scripts see in `catch (e)`.
    pub fn to_dynamic(&self) -> Dynamic {
        let mut m = Map::new();
        m.insert("kind".into(), self.kind.as_str().into());
        m.insert(
            "message".into(),
            crate::redact::redact(&self.message).into(),
        );
        let details = rhai::serde::to_dynamic(serde_json::Value::Object(self.details.clone()))
            .unwrap_or(Dynamic::UNIT);
        m.insert("details".into(), details);
        m.insert(MARKER.into(), true.into());
        m.into()
    }

    /// Recover a `RalfError` from a Rhai error value produced by [`RalfError::to_dynamic`].
    pub fn from_dynamic(v: &Dynamic) -> Option<RalfError> {
        let m = v.read_lock::<Map>()?;
        if !m.contains_key(MARKER) {
            return None;
        }
        let kind = m
            .get("kind")
            .and_then(|k| k.clone().into_string().ok())
            .and_then(|k| ErrorKind::parse(&k))?;
        let message = m
            .get("message")
            .and_then(|k| k.clone().into_string().ok())
            .unwrap_or_default();
        let details = m
            .get("details")
            .and_then(|d| rhai::serde::from_dynamic::<serde_json::Value>(d).ok())
            .and_then(|v| match v {
                serde_json::Value::Object(o) => Some(o),
                _ => None,
            })
            .unwrap_or_default();
        Some(RalfError {
            kind,
            message,
            details,
        })
    }
}

impl fmt::Display for RalfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, crate::redact::redact(&self.message))
    }
}

impl std::error::Error for RalfError {}

impl From<RalfError> for Box<EvalAltResult> {
    fn from(e: RalfError) -> Self {
        Box::new(EvalAltResult::ErrorRuntime(e.to_dynamic(), Position::NONE))
    }
}

impl From<std::io::Error> for RalfError {
    fn from(e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => ErrorKind::Forbidden,
            std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Io,
        };
        RalfError::new(kind, e.to_string())
    }
}

/// Convert any Rhai error into a `RalfError` (ours are recovered exactly; others become `invalid`/`internal`).
pub fn from_rhai(e: &EvalAltResult) -> RalfError {
    match e {
        EvalAltResult::ErrorRuntime(v, _) => RalfError::from_dynamic(v).unwrap_or_else(|| {
            RalfError::new(ErrorKind::Script, format!("uncaught exception: {v}"))
                .with("thrown", v.to_string())
        }),
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => from_rhai(inner),
        EvalAltResult::ErrorTerminated(_, _) => RalfError::cancelled(),
        other => RalfError::new(ErrorKind::Invalid, other.to_string()),
    }
}

/// The value a script would see in `catch (e)` for this error (unwrapping function/module frames).
pub fn caught_value(e: &EvalAltResult) -> Dynamic {
    match e {
        EvalAltResult::ErrorRuntime(v, _) => v.clone(),
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => caught_value(inner),
        other => from_rhai(other).to_dynamic(),
    }
}

/// True when the innermost error was raised by ralf-sh (not a script's own `throw`).
pub fn is_ralf_error(e: &EvalAltResult) -> bool {
    match e {
        EvalAltResult::ErrorRuntime(v, _) => RalfError::from_dynamic(v).is_some(),
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => is_ralf_error(inner),
        _ => true,
    }
}

/// Shorthand for bindings: `Result<T, Box<EvalAltResult>>`.
pub type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_through_dynamic() {
        let e = RalfError::timeout("waited 30s for task 4").with("task_id", 4);
        let d = e.to_dynamic();
        let back = RalfError::from_dynamic(&d).unwrap();
        assert_eq!(back.kind, ErrorKind::Timeout);
        assert_eq!(back.message, "waited 30s for task 4");
        assert_eq!(back.details["task_id"], 4);
    }

    #[test]
    fn kinds_parse_back() {
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(k.as_str()), Some(k));
        }
        assert!(ErrorKind::Unavailable.retryable());
        assert!(!ErrorKind::Auth.retryable());
    }
}

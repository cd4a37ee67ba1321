//! Strict decoding of Rhai option maps into Rust structs (the duration type lives in `crate::text`).
//!
//! Options structs derive `Deserialize` with `#[serde(deny_unknown_fields)]`; [`decode`] turns serde's
//! "unknown field" complaint into "unknown option `timout` for semaphore::run; did you mean `timeout`?".

use crate::error::{RResult, RalfError};
use crate::text::parse_duration;
use crate::text::rewrite_serde_message;
use rhai::{Dynamic, Map};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Decode an options map for the function `func` (used in messages).
pub(crate) fn decode<T: DeserializeOwned>(map: &Map, func: &str) -> RResult<T> {
    let value: serde_json::Value = rhai::serde::from_dynamic(&Dynamic::from_map(map.clone()))
        .map_err(|e| RalfError::invalid(format!("{func}: options are not plain data: {e}")))?;
    decode_json(value, func)
}

/// Decode options given as a JSON value (used by [`decode`] and by config-like inputs).
pub(crate) fn decode_json<T: DeserializeOwned>(value: serde_json::Value, func: &str) -> RResult<T> {
    serde_json::from_value::<T>(value).map_err(|e| {
        let msg = e.to_string();
        RalfError::invalid(rewrite_serde_message(
            &msg,
            &format!("for {func}"),
            "option",
        ))
    })
}

/// Decode a Dynamic (any shape) into T via serde, with the same message rewriting.
pub(crate) fn decode_dynamic<T: DeserializeOwned>(value: &Dynamic, func: &str) -> RResult<T> {
    let v: serde_json::Value = rhai::serde::from_dynamic(value)
        .map_err(|e| RalfError::invalid(format!("{func}: value is not plain data: {e}")))?;
    decode_json(v, func)
}

/// Read a duration argument given to a Rhai function as INT, FLOAT or string.
pub(crate) fn duration_arg(v: &Dynamic, func: &str) -> RResult<Duration> {
    if let Ok(i) = v.as_int() {
        if i < 0 {
            return Err(RalfError::invalid(format!(
                "{func}: duration must not be negative, got {i}"
            )));
        }
        return Ok(Duration::from_secs(i as u64));
    }
    if let Ok(f) = v.as_float() {
        if !f.is_finite() || f < 0.0 {
            return Err(RalfError::invalid(format!(
                "{func}: duration must be a non-negative number, got {f}"
            )));
        }
        return Ok(Duration::from_secs_f64(f));
    }
    if let Some(s) = v.read_lock::<rhai::ImmutableString>() {
        return parse_duration(&s).map_err(|e| RalfError::invalid(format!("{func}: {e}")));
    }
    Err(RalfError::invalid(format!(
        "{func}: expected a duration (seconds as a number, or a string like \"90s\"), got {}",
        v.type_name()
    )))
}

/// A JSON value as a script value (objects as maps).
pub(crate) fn json_to_dynamic(v: &serde_json::Value) -> Dynamic {
    rhai::serde::to_dynamic(v).unwrap_or(Dynamic::UNIT)
}

/// Any serialisable value as a script value, through its JSON form (`()` when it has none).
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Dynamic {
    serde_json::to_value(v)
        .map(|j| json_to_dynamic(&j))
        .unwrap_or(Dynamic::UNIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::Secs;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Opts {
        timeout: Option<Secs>,
        message: Option<String>,
    }

    #[test]
    fn unknown_option_did_you_mean() {
        let mut m = Map::new();
        m.insert("timout".into(), Dynamic::from(5_i64));
        let e = decode::<Opts>(&m, "semaphore::run").unwrap_err();
        assert_eq!(
            e.message,
            "unknown option `timout` for semaphore::run; did you mean `timeout`?"
        );
    }

    #[test]
    fn decode_durations_from_strings_and_numbers() {
        let mut m = Map::new();
        m.insert("timeout".into(), Dynamic::from("10m"));
        let o: Opts = decode(&m, "f").unwrap();
        assert_eq!(o.timeout.unwrap().0, Duration::from_secs(600));
        m.insert("timeout".into(), Dynamic::from(1.5_f64));
        let o: Opts = decode(&m, "f").unwrap();
        assert_eq!(o.timeout.unwrap().0, Duration::from_millis(1500));
    }
}

//! Strict decoding of Rhai option maps into Rust structs, and the duration type used everywhere.
//!
//! Options structs derive `Deserialize` with `#[serde(deny_unknown_fields)]`; [`decode`] turns serde's
//! "unknown field" complaint into "unknown option `timout` for semaphore::run; did you mean `timeout`?".

use crate::engine::error::{RResult, RalfError};
use rhai::{Dynamic, Map};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Decode an options map for the function `func` (used in messages).
pub fn decode<T: DeserializeOwned>(map: &Map, func: &str) -> RResult<T> {
    let value: serde_json::Value = rhai::serde::from_dynamic(&Dynamic::from_map(map.clone()))
        .map_err(|e| RalfError::invalid(format!("{func}: options are not plain data: {e}")))?;
    decode_json(value, func)
}

/// Decode options given as a JSON value (used by [`decode`] and by config-like inputs).
pub fn decode_json<T: DeserializeOwned>(value: serde_json::Value, func: &str) -> RResult<T> {
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
pub fn decode_dynamic<T: DeserializeOwned>(value: &Dynamic, func: &str) -> RResult<T> {
    let v: serde_json::Value = rhai::serde::from_dynamic(value)
        .map_err(|e| RalfError::invalid(format!("{func}: value is not plain data: {e}")))?;
    decode_json(v, func)
}

/// An "unknown field" complaint from serde, taken apart: (path prefix, field, expected fields).
/// serde_yaml prefixes the path (`semaphore: unknown field ...`); serde_json does not.
pub fn parse_unknown_field(msg: &str) -> Option<(&str, &str, Vec<&str>)> {
    let idx = msg.find("unknown field `")?;
    let prefix = msg[..idx].trim_end().trim_end_matches(':');
    let rest = &msg[idx + "unknown field `".len()..];
    let end = rest.find('`')?;
    let expected = rest[end..].split('`').skip(2).step_by(2).collect();
    Some((prefix, &rest[..end], expected))
}

/// "unknown {noun} `x` {where_}; did you mean `y`?" (or the list of expected names).
pub fn unknown_name_message(noun: &str, field: &str, where_: &str, expected: &[&str]) -> String {
    let mut out = format!("unknown {noun} `{field}`");
    if !where_.is_empty() {
        out.push(' ');
        out.push_str(where_);
    }
    if let Some(best) = crate::text::did_you_mean(field, expected.iter().copied()) {
        out.push_str(&format!("; did you mean `{best}`?"));
    } else if !expected.is_empty() {
        let list: Vec<String> = expected.iter().map(|s| format!("`{s}`")).collect();
        out.push_str(&format!("; expected one of: {}", list.join(", ")));
    }
    out
}

/// Turn serde's `unknown field `x`, expected one of `a`, `b`` into a did-you-mean message.
/// `noun` is "option" or "key"; `where_` follows the name ("for semaphore::run").
pub fn rewrite_serde_message(msg: &str, where_: &str, noun: &str) -> String {
    match parse_unknown_field(msg) {
        Some((_, field, expected)) => {
            let mut out = unknown_name_message(noun, field, where_, &expected);
            // Keep serde's trailing position info if any (" at line 3 column 5").
            if let Some(pos) = msg.find(" at line ") {
                out.push_str(&msg[pos..]);
            }
            out
        }
        None => format!("{msg} ({where_})"),
    }
}

/// A duration given as seconds (number) or as a string like "90s", "10m", "1h30m", "500ms".
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Secs(pub Duration);

impl Secs {
    pub fn from_secs_f64(s: f64) -> Self {
        Secs(Duration::from_secs_f64(s.max(0.0)))
    }
    pub fn as_duration(self) -> Duration {
        self.0
    }
}

/// Parse "90s", "10m", "1h30m", "500ms", "2.5" (seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(n) = t.parse::<f64>() {
        if n.is_finite() && n >= 0.0 {
            return Ok(Duration::from_secs_f64(n));
        }
        return Err(format!(
            "duration `{s}` must be a non-negative number of seconds"
        ));
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = t.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = String::from(c);
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let v: f64 = num.parse().map_err(|_| {
            format!("invalid duration `{s}` (expected e.g. 90s, 10m, 1h30m, 500ms)")
        })?;
        num.clear();
        let mult = match unit.as_str() {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hours" => 3600.0,
            "d" | "days" => 86400.0,
            _ => {
                return Err(format!(
                    "invalid duration unit `{unit}` in `{s}` (use ms, s, m, h or d)"
                ))
            }
        };
        total += v * mult;
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(format!(
            "invalid duration `{s}` (a number needs a unit: e.g. 90s, 10m, 1h30m, 500ms)"
        ));
    }
    Ok(Duration::from_secs_f64(total))
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(f64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) if n.is_finite() && n >= 0.0 => Ok(Secs::from_secs_f64(n)),
            Raw::N(n) => Err(serde::de::Error::custom(format!(
                "duration must be a non-negative number of seconds, got {n}"
            ))),
            Raw::S(s) => parse_duration(&s)
                .map(Secs)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl serde::Serialize for Secs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0.as_secs_f64())
    }
}

/// Read a duration argument given to a Rhai function as INT, FLOAT or string.
pub fn duration_arg(v: &Dynamic, func: &str) -> RResult<Duration> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2.5").unwrap(), Duration::from_millis(2500));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("10").is_ok());
        assert!(parse_duration("m").is_err());
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

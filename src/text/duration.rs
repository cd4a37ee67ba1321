//! Durations as scripts and config write them: seconds (number) or "90s", "10m", "1h30m", "500ms".

use serde::{Deserialize, Deserializer};
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}

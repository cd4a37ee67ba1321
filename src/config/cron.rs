//! Schedule triggers: cron expressions in a time zone, each tick claimed in the state store so it
//! runs exactly once across restarts of `serve` and across controllers sharing a store.

use chrono::{DateTime, Utc};
use std::str::FromStr;

/// Parse a cron expression: 5 fields (minute hour day month weekday, as crontab) or 6/7 with
/// seconds first (and a year last).
pub fn parse(expr: &str) -> Result<cron::Schedule, String> {
    let fields = expr.split_whitespace().count();
    let full = match fields {
        5 => format!("0 {expr}"),
        6 | 7 => expr.to_string(),
        n => {
            return Err(format!(
                "`{expr}` has {n} fields; give 5 (minute hour day month weekday) or 6 with seconds first"
            ))
        }
    };
    cron::Schedule::from_str(&full).map_err(|e| format!("`{expr}` is not a cron expression: {e}"))
}

/// A schedule in its time zone.
pub struct Schedule {
    pub cron: cron::Schedule,
    pub tz: chrono_tz::Tz,
}

impl Schedule {
    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .after(&t.with_timezone(&self.tz))
            .next()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The latest tick in (`from`, `to`], if any.
    pub fn latest_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut last = None;
        let mut t = from;
        while let Some(n) = self.next_after(t) {
            if n > to {
                break;
            }
            last = Some(n);
            t = n;
        }
        last
    }
}

/// How a tick is written in the store: RFC 3339 in UTC, whole seconds.
pub fn tick_key(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_fields_and_time_zones() {
        assert!(parse("0 * * * *").is_ok());
        assert!(parse("*/5 * * * * *").is_ok());
        let e = parse("* * *").unwrap_err();
        assert!(e.contains("has 3 fields"), "{e}");
        let e = parse("61 * * * *").unwrap_err();
        assert!(e.contains("not a cron expression"), "{e}");
        // 02:30 in Berlin is 01:30 UTC in winter.
        let s = Schedule {
            cron: parse("30 2 * * *").unwrap(),
            tz: "Europe/Berlin".parse().unwrap(),
        };
        let t = DateTime::parse_from_rfc3339("2026-12-07T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(tick_key(s.next_after(t).unwrap()), "2026-12-07T01:30:00Z");
        let to = DateTime::parse_from_rfc3339("2026-12-10T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            tick_key(s.latest_between(t, to).unwrap()),
            "2026-12-09T01:30:00Z"
        );
        assert!(s.latest_between(t, t).is_none());
    }
}

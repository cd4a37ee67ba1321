//! The `serve`, `metrics` and `state` sections: what `ralf-sh serve` starts and where, and the
//! state store (a SQLite file or a shared PostgreSQL database), with their validation.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `metrics:`: where a run writes the store's metrics when it ends.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// A node_exporter textfile (`*.prom` in its `--collector.textfile.directory`), replaced
    /// atomically at the end of every recorded run (relative to the config file).
    #[serde(default)]
    pub textfile: Option<PathBuf>,
}

/// `serve:`: what `ralf-sh serve` starts, and when.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address of the HTTP listener (webhooks at `/hooks/NAME`, `/metrics`); default 127.0.0.1:8470.
    #[serde(default)]
    pub listen: Option<String>,
    /// Variable holding the bearer token that `/metrics` requires on an address other than
    /// loopback (webhooks are authenticated by their signatures).
    #[serde(default)]
    pub token_env: Option<String>,
    /// The URL serve is reached at when that is not the listen address (a DNS name, a reverse
    /// proxy): its host and port are accepted in the `Host` header besides the listen address's.
    /// Any other host name is refused (421), so a web page that re-points a name at this machine
    /// (DNS rebinding) cannot read or drive the dashboard.
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default)]
    pub triggers: Vec<TriggerConfig>,
}

/// One trigger: `on: schedule` runs `script` with `args` at every tick of `cron` in `timezone`;
/// `on: push` (GitHub, Gitea, Forgejo) and `on: webhook` (any sender signing with HMAC-SHA256) run
/// it for each signed delivery to `/hooks/NAME` (`{commit}`, `{branch}`, `{repository}` in `args`
/// are replaced by the push's); `on: manual` is a button on the dashboard.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    pub name: String,
    pub on: String,
    /// Cron expression: 5 fields (min hour day month weekday) or 6 with seconds first.
    #[serde(default)]
    pub cron: Option<String>,
    /// IANA time zone of the expression (default UTC).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Ticks missed while no controller ran: `one` (run the latest once) or `none` (skip them).
    #[serde(default)]
    pub catch_up: Option<String>,
    /// Push triggers: only this repository (`owner/name`) and branch.
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
    /// Webhook signing secret: the variable that holds it, or a file (mode 0600).
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Script to run (relative to the config file).
    pub script: PathBuf,
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// SQLite file (default `$XDG_STATE_HOME/ralf/state.db`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A PostgreSQL store shared by several controllers: `postgres://USER@HOST:PORT/DB`
    /// (`?sslmode=...` as libpq; TLS verified against the web PKI roots and `ca_file`). The password
    /// never goes in the URL: `password_env` names the variable that holds it.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// PEM file of extra CAs to trust for the PostgreSQL TLS connection.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds a controller's run lease lasts without a heartbeat (PostgreSQL; default 30).
    #[serde(default)]
    pub lease_seconds: Option<f64>,
}

/// The `host[:port]` that `serve.public_url` names, as a `Host` header carries it (lower case; the
/// port only when the URL has a non-default one).
pub(crate) fn public_host(url: &str) -> Result<String, String> {
    let u = reqwest::Url::parse(url)
        .map_err(|e| format!("`{url}` is not a URL ({e}); e.g. https://ralf.example.org"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("`{url}` is not an http(s) URL"));
    }
    let host = u
        .host_str()
        .ok_or_else(|| format!("`{url}` names no host"))?
        .to_ascii_lowercase();
    Ok(match u.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// Line of `key` inside the `i`th item of `serve.triggers`; the item's own line when the key is
/// not written (a missing key), 1 when the item is not found.
pub(super) fn trigger_line(text: &str, i: usize, key: &str) -> usize {
    let mut item: Option<usize> = None;
    let mut item_line = 1;
    let mut inside = false;
    for (n, l) in text.lines().enumerate() {
        let t = l.trim_start();
        if !l.starts_with(' ') && !l.is_empty() {
            if inside && item == Some(i) {
                return item_line;
            }
            inside = l.starts_with("serve:");
            continue;
        }
        if !inside {
            continue;
        }
        if t.starts_with("- ") {
            if item == Some(i) {
                return item_line;
            }
            item = Some(item.map_or(0, |k| k + 1));
            if item == Some(i) {
                item_line = n + 1;
            }
        }
        let flow = t.contains(&format!(" {key}:")) || t.contains(&format!("{{{key}:"));
        if item == Some(i) && (t.trim_start_matches("- ").starts_with(&format!("{key}:")) || flow) {
            return n + 1;
        }
    }
    item_line
}

/// A trigger: a unique name, a known kind; a schedule's expression, time zone and catch-up policy.
pub(crate) fn validate_trigger(
    t: &TriggerConfig,
    earlier: &[TriggerConfig],
) -> Result<(), (&'static str, String)> {
    if t.name.is_empty()
        || !t
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err((
            "name",
            format!("`{}`: use letters, digits, - and _", t.name),
        ));
    }
    if earlier.iter().any(|e| e.name == t.name) {
        return Err((
            "name",
            format!("`{}` is used by an earlier trigger", t.name),
        ));
    }
    let hook = match t.on.as_str() {
        "schedule" => false,
        "push" | "webhook" => true,
        "manual" => {
            for (key, set) in [
                ("cron", t.cron.is_some()),
                ("timezone", t.timezone.is_some()),
                ("catch_up", t.catch_up.is_some()),
                ("repository", t.repository.is_some()),
                ("branch", t.branch.is_some()),
                ("secret_env", t.secret_env.is_some()),
                ("secret_file", t.secret_file.is_some()),
            ] {
                if set {
                    return Err((
                        key,
                        "does not apply to `on: manual` (a button on the dashboard)".into(),
                    ));
                }
            }
            return Ok(());
        }
        other => {
            return Err((
                "on",
                format!("unknown trigger kind `{other}` (schedule, push, webhook, manual)"),
            ))
        }
    };
    if hook {
        if t.secret_env.is_none() && t.secret_file.is_none() {
            return Err((
                "secret_env",
                format!(
                    "a `{}` trigger needs its signing secret: secret_env or secret_file",
                    t.on
                ),
            ));
        }
        for (key, set) in [
            ("cron", t.cron.is_some()),
            ("timezone", t.timezone.is_some()),
            ("catch_up", t.catch_up.is_some()),
        ] {
            if set {
                return Err((key, "only applies to `on: schedule`".into()));
            }
        }
        if t.on == "webhook" && (t.repository.is_some() || t.branch.is_some()) {
            return Err((
                "repository",
                "repository and branch filters only apply to `on: push`".into(),
            ));
        }
        return Ok(());
    }
    for (key, set) in [
        ("repository", t.repository.is_some()),
        ("branch", t.branch.is_some()),
        ("secret_env", t.secret_env.is_some()),
        ("secret_file", t.secret_file.is_some()),
    ] {
        if set {
            return Err((key, "does not apply to `on: schedule`".into()));
        }
    }
    let Some(expr) = t.cron.as_deref() else {
        return Err((
            "cron",
            "a schedule needs a cron expression (e.g. \"0 * * * *\")".into(),
        ));
    };
    crate::config::cron::parse(expr).map_err(|e| ("cron", e))?;
    if let Some(tz) = &t.timezone {
        tz.parse::<chrono_tz::Tz>().map_err(|_| {
            (
                "timezone",
                format!("unknown time zone `{tz}` (an IANA name such as Europe/Berlin)"),
            )
        })?;
    }
    match t.catch_up.as_deref() {
        None | Some("one") | Some("none") => {}
        Some(other) => {
            return Err((
                "catch_up",
                format!("must be `one` or `none`, got `{other}`"),
            ))
        }
    }
    Ok(())
}

/// The `state` section: a SQLite `path` or a PostgreSQL `url` (without a password), not both.
pub(crate) fn validate_state(st: &StateConfig) -> Result<(), (&'static str, String)> {
    let Some(url) = st.url.as_deref() else {
        for (key, set) in [
            ("password_env", st.password_env.is_some()),
            ("ca_file", st.ca_file.is_some()),
            ("lease_seconds", st.lease_seconds.is_some()),
        ] {
            if set {
                return Err((
                    key,
                    "only applies to a PostgreSQL store (`state.url`)".into(),
                ));
            }
        }
        return Ok(());
    };
    if st.path.is_some() {
        return Err((
            "url",
            "give either `path` (SQLite) or `url` (PostgreSQL), not both".into(),
        ));
    }
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return Err((
            "url",
            "must start with postgres:// (e.g. postgres://ralf@db.lan:5432/ralf)".into(),
        ));
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        if userinfo.contains(':') {
            return Err((
                "url",
                "carries a password; remove it from the URL and name the variable that holds it in `state.password_env`".into(),
            ));
        }
    }
    if url.contains("password=") {
        return Err((
            "url",
            "carries a password parameter; name the variable that holds it in `state.password_env` instead".into(),
        ));
    }
    if let Some(s) = st.lease_seconds {
        if !(1.0..=3600.0).contains(&s) {
            return Err((
                "lease_seconds",
                format!("must be between 1 and 3600 seconds, got {s}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn err(yaml: &str) -> String {
        crate::config::parse(yaml, Path::new("/etc/ralf/ralf.yaml"))
            .unwrap_err()
            .message
    }

    #[test]
    fn bad_serve_and_state_sections_name_file_line_and_key() {
        let base = "serve:\n  triggers:\n    - name: hourly\n      on: schedule\n";
        let e = err(&format!(
            "{base}      cron: \"61 * * * *\"\n      script: x.rhai\n"
        ));
        assert!(
            e.starts_with("/etc/ralf/ralf.yaml:5: serve.triggers[0] (hourly).cron:"),
            "{e}"
        );
        let e = err(&format!(
            "{base}      cron: \"0 * * * *\"\n      timezone: Mars/Olympus\n      script: x.rhai\n"
        ));
        assert!(
            e.contains(":6: serve.triggers[0] (hourly).timezone: unknown time zone"),
            "{e}"
        );
        let e = err(&format!(
            "{base}      cron: \"0 * * * *\"\n      catch_up: all\n      script: x.rhai\n"
        ));
        assert!(e.contains(".catch_up: must be `one` or `none`"), "{e}");
        let e =
            err("serve:\n  triggers:\n    - name: push\n      on: push\n      script: x.rhai\n");
        assert!(e.contains(":3: serve.triggers[0] (push).secret_env: a `push` trigger needs its signing secret"), "{e}");
        let e = err("serve:\n  triggers:\n    - name: a\n      on: poll\n      script: x.rhai\n");
        assert!(e.contains("unknown trigger kind `poll`"), "{e}");
        let e = err("serve:\n  triggers:\n    - { name: a, on: manual, script: x.rhai }\n    - { name: a, on: manual, script: y.rhai }\n");
        assert!(
            e.contains("serve.triggers[1] (a).name: `a` is used by an earlier trigger"),
            "{e}"
        );
        let e = err("serve:\n  listen: 0.0.0.0:8470\n");
        assert!(e.contains(":2: serve.listen: 0.0.0.0:8470 is reachable from other machines; set serve.token_env"), "{e}");
        let e = err("state:\n  url: postgres://ralf:hunter2@db/ralf\n");
        assert!(e.contains(":2: state.url: carries a password"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = err("state:\n  path: s.db\n  url: postgres://ralf@db/ralf\n");
        assert!(
            e.contains("state.url: give either `path` (SQLite) or `url` (PostgreSQL), not both"),
            "{e}"
        );
        let e = err("state:\n  path: s.db\n  lease_seconds: 10\n");
        assert!(
            e.contains("state.lease_seconds: only applies to a PostgreSQL store"),
            "{e}"
        );
    }
}

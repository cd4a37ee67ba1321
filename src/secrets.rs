//! Secrets: loading from environment variables or protected files, and the process-wide redactor.
//!
//! Every secret value that is loaded is registered here; [`redact`] scrubs all registered values
//! from any text before it reaches a log, an error, the REPL, history or an LLM prompt.

use crate::engine::error::{RResult, RalfError};
use parking_lot::RwLock;
use std::path::Path;

/// Placeholder written where a secret was.
pub const MASK: &str = "«redacted»";

/// Secrets shorter than this are not scrubbed (they would mangle ordinary text) and are refused.
pub const MIN_LEN: usize = 4;

static REGISTRY: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Register a secret value with the redactor. Values shorter than [`MIN_LEN`] are ignored.
pub fn register(value: &str) {
    let v = value.trim_end_matches(['\n', '\r']);
    if v.len() < MIN_LEN {
        return;
    }
    let mut reg = REGISTRY.write();
    if !reg.iter().any(|s| s == v) {
        reg.push(v.to_string());
        // Longest first, so a secret containing another is masked whole.
        reg.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// True when at least one secret is registered.
pub fn any_registered() -> bool {
    !REGISTRY.read().is_empty()
}

/// Scrub every registered secret from `text`.
pub fn redact(text: &str) -> String {
    let reg = REGISTRY.read();
    if reg.is_empty() || !reg.iter().any(|s| text.contains(s.as_str())) {
        return text.to_string();
    }
    let mut out = text.to_string();
    for s in reg.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    out
}

/// Turn a secret name into its environment variable: `semaphore-token` -> `RALF_SECRET_SEMAPHORE_TOKEN`.
pub fn env_name(name: &str) -> String {
    let mut s = String::from("RALF_SECRET_");
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_uppercase());
        } else {
            s.push('_');
        }
    }
    s
}

/// Read a secret from a file, refusing files that the group or others can read.
pub fn read_file(path: &Path, what: &str) -> RResult<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| {
        RalfError::config(format!(
            "secret {what}: cannot read {}: {e}",
            path.display()
        ))
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(RalfError::new(
            crate::engine::error::ErrorKind::Forbidden,
            format!(
                "secret {what}: {} is readable by group or others (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode,
                path.display()
            ),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        RalfError::config(format!(
            "secret {what}: cannot read {}: {e}",
            path.display()
        ))
    })?;
    let v = text.trim_end_matches(['\n', '\r']).to_string();
    check_value(&v, what)?;
    register(&v);
    Ok(v)
}

/// Read a secret from an environment variable (None when unset).
pub fn read_env(var: &str, what: &str) -> RResult<Option<String>> {
    match std::env::var(var) {
        Ok(v) => {
            check_value(&v, what)?;
            register(&v);
            Ok(Some(v))
        }
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(RalfError::config(format!(
            "secret {what}: environment variable {var} is not valid UTF-8"
        ))),
    }
}

fn check_value(v: &str, what: &str) -> RResult<()> {
    if v.is_empty() {
        return Err(RalfError::config(format!("secret {what} is empty")));
    }
    if v.len() < MIN_LEN {
        return Err(RalfError::config(format!(
            "secret {what} is shorter than {MIN_LEN} characters; such a value cannot be scrubbed from output safely"
        )));
    }
    Ok(())
}

/// Load a secret given an optional env var name and an optional file path (env wins).
/// `what` names the secret in messages. Returns None when neither source is configured; a named
/// variable that is not set (with no file to fall back on) is a `config` error naming it.
pub fn load_ref(env: Option<&str>, file: Option<&Path>, what: &str) -> RResult<Option<String>> {
    if let Some(var) = env {
        if let Some(v) = read_env(var, what)? {
            return Ok(Some(v));
        }
    }
    if let Some(p) = file {
        return read_file(p, what).map(Some);
    }
    if let Some(var) = env {
        return Err(RalfError::config(format!(
            "secret {what}: the config names the environment variable {var}, which is not set \
             (export it, or list it in the systemd unit's EnvironmentFile)"
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_registered_values() {
        register("canary-0123456789");
        assert_eq!(
            redact("token=canary-0123456789; again canary-0123456789"),
            format!("token={MASK}; again {MASK}")
        );
        assert_eq!(redact("nothing here"), "nothing here");
    }

    #[test]
    fn a_named_variable_that_is_not_set_is_a_config_error_naming_it() {
        let var = "RALF_TEST_UNSET_TOKEN_6093";
        std::env::remove_var(var);
        let e = load_ref(Some(var), None, "semaphore token").unwrap_err();
        assert_eq!(e.kind, crate::engine::error::ErrorKind::Config);
        assert!(
            e.message.contains(var) && e.message.contains("not set"),
            "{}",
            e.message
        );
        assert!(load_ref(None, None, "semaphore token").unwrap().is_none());
    }

    #[test]
    fn env_names() {
        assert_eq!(env_name("semaphore-token"), "RALF_SECRET_SEMAPHORE_TOKEN");
        assert_eq!(env_name("pve.token"), "RALF_SECRET_PVE_TOKEN");
    }

    #[test]
    fn refuses_world_readable_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        std::fs::write(&p, "abcdefgh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_file(&p, "t").unwrap_err();
        assert!(e.message.contains("readable by group or others"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_file(&p, "t").unwrap(), "abcdefgh");
    }
}

//! Secrets: loading from environment variables, protected files and config references.
//!
//! Every secret value that is loaded is registered with the redactor ([`crate::redact`]), which
//! scrubs it from any text before it reaches a log, an error, the REPL, history or an LLM prompt.

use crate::error::{RResult, RalfError};
use crate::redact::{register, MIN_LEN};
use std::path::Path;

/// Register every secret the config names (`*_env` variables that are set, `*_file` files that
/// can be read), when the config loads: a value printed before its client connects is scrubbed too.
pub(crate) fn register_configured(cfg: &crate::config::Config) {
    for (_, env, file) in cfg.secret_refs() {
        if let Some(v) = env.and_then(|e| std::env::var(e).ok()) {
            register(&v);
        }
        if let Some(t) = file.and_then(|f| std::fs::read_to_string(f).ok()) {
            register(t.trim_end_matches(['\n', '\r']));
        }
    }
}

/// Turn a secret name into its environment variable: `semaphore-token` -> `RALF_SECRET_SEMAPHORE_TOKEN`.
pub(crate) fn env_name(name: &str) -> String {
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
pub(crate) fn read_file(path: &Path, what: &str) -> RResult<String> {
    check_private(path, what)?;
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

/// A secret that is a whole file, byte for byte (an app's env file): from the variable `env` or
/// the file `file` (which must not be readable by group or others). The content and every value
/// of its `KEY=VALUE` lines are registered with the redactor. None when neither is configured.
pub(crate) fn load_file_secret(
    env: Option<&str>,
    file: Option<&Path>,
    what: &str,
) -> RResult<Option<Vec<u8>>> {
    let text = match (env.map(|v| (v, std::env::var(v))), file) {
        (Some((_, Ok(v))), _) => v,
        (_, Some(p)) => {
            check_private(p, what)?;
            std::fs::read_to_string(p).map_err(|e| {
                RalfError::config(format!("secret {what}: cannot read {}: {e}", p.display()))
            })?
        }
        (Some((var, Err(_))), None) => {
            return Err(RalfError::config(format!(
                "secret {what}: the config names the environment variable {var}, which is not set"
            )))
        }
        (None, None) => return Ok(None),
    };
    check_value(text.trim_end_matches(['\n', '\r']), what)?;
    register(&text);
    register_env_values(&text);
    Ok(Some(text.into_bytes()))
}

/// Register the value of every `KEY=VALUE` line (quotes removed) of an env file.
pub(crate) fn register_env_values(text: &str) {
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some((_, v)) = line.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                .unwrap_or(v);
            register(v);
        }
    }
}

/// Refuse a secret file that the group or others can read.
fn check_private(path: &Path, what: &str) -> RResult<()> {
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
            crate::error::ErrorKind::Forbidden,
            format!(
                "secret {what}: {} is readable by group or others (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode,
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Read a secret from an environment variable (None when unset).
pub(crate) fn read_env(var: &str, what: &str) -> RResult<Option<String>> {
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
pub(crate) fn load_ref(
    env: Option<&str>,
    file: Option<&Path>,
    what: &str,
) -> RResult<Option<String>> {
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
    use crate::redact::{percent, redact, MASK};

    #[test]
    fn a_file_secret_is_read_exactly_and_its_values_are_scrubbed() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("app.env");
        std::fs::write(&p, "# app\nAPP_SECRET=\"canary-file-7391\"\nMODE=x\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_file_secret(None, Some(&p), "app_env").unwrap_err();
        assert!(e.message.contains("chmod 600"), "{}", e.message);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let b = load_file_secret(None, Some(&p), "app_env")
            .unwrap()
            .unwrap();
        assert_eq!(b, std::fs::read(&p).unwrap(), "byte for byte, newline kept");
        assert_eq!(redact("got canary-file-7391"), format!("got {MASK}"));
        assert_eq!(redact("MODE=x"), "MODE=x", "short values are left alone");
        assert!(load_file_secret(None, None, "x").unwrap().is_none());
    }

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
        assert_eq!(e.kind, crate::error::ErrorKind::Config);
        assert!(
            e.message.contains(var) && e.message.contains("not set"),
            "{}",
            e.message
        );
        assert!(load_ref(None, None, "semaphore token").unwrap().is_none());
    }

    #[test]
    fn every_encoded_form_is_scrubbed() {
        let secret = "pa\"ss\\w'o%rd ü-0042";
        register(secret);
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let cases = [
            secret.to_string(),
            serde_json::to_string(secret).unwrap(),
            serde_json::to_string(&serde_json::to_string(secret).unwrap()).unwrap(),
            crate::text::quote(secret),
            percent(secret, false, true),
            percent(secret, true, false),
            b64(&format!("admin:{secret}")),
            b64(&format!("ab:{secret}")),
            b64(&format!("a:{secret}")),
            format!("{secret:?}"),
            format!("{}\n{}", &secret[..5], &secret[5..]),
            format!("{}\r\n{}", &secret[..9], &secret[9..]),
        ];
        for c in cases {
            let r = redact(&format!("before {c} after"));
            assert!(
                r.contains(MASK) && !r.contains(&c),
                "not scrubbed: {c} -> {r}"
            );
        }
        assert_eq!(redact("plain text\nwith lines"), "plain text\nwith lines");
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

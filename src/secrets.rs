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

/// Every registered secret (raw), and every form it may take on the way out, longest first.
struct Registry {
    raw: Vec<String>,
    forms: Vec<String>,
}

static REGISTRY: RwLock<Registry> = RwLock::new(Registry {
    raw: Vec::new(),
    forms: Vec::new(),
});

/// Register a secret value with the redactor, in every form it can take in output: raw,
/// JSON-escaped, shell-quoted, percent-encoded (URL and form style), and base64 at each of the
/// three byte alignments (so it is found inside `base64("user:" + secret)` of HTTP basic auth).
/// Values shorter than [`MIN_LEN`] are ignored.
pub fn register(value: &str) {
    let v = value.trim_end_matches(['\n', '\r']);
    if v.len() < MIN_LEN {
        return;
    }
    let mut reg = REGISTRY.write();
    if reg.raw.iter().any(|s| s == v) {
        return;
    }
    reg.raw.push(v.to_string());
    for f in forms(v) {
        if f.len() >= MIN_LEN && !reg.forms.contains(&f) {
            reg.forms.push(f);
        }
    }
    // Longest first, so a secret containing another is masked whole.
    reg.forms.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// The encoded forms of `v` (its raw form included).
fn forms(v: &str) -> Vec<String> {
    let mut out = vec![v.to_string()];
    let json = serde_json::to_string(v).unwrap_or_default();
    out.push(json[1..json.len().saturating_sub(1)].to_string());
    // The JSON form inside another JSON string (a JSON document logged as a string field).
    let json2 = serde_json::to_string(&json[1..json.len().saturating_sub(1)]).unwrap_or_default();
    out.push(json2[1..json2.len().saturating_sub(1)].to_string());
    let q = crate::clients::ssh::quote(v);
    out.push(
        q.trim_start_matches('\'')
            .trim_end_matches('\'')
            .to_string(),
    );
    for (form, upper) in [(false, true), (false, false), (true, true), (true, false)] {
        out.push(percent(v, form, upper));
    }
    out.extend(base64_cores(v.as_bytes()));
    // Rhai's own debug form of a string (`to_debug`, error values).
    out.push(format!("{v:?}").trim_matches('"').to_string());
    out.sort();
    out.dedup();
    out
}

/// Percent-encoding of every byte outside `A-Z a-z 0-9 - . _ ~`; `form` writes a space as `+`.
fn percent(v: &str, form: bool, upper: bool) -> String {
    let mut s = String::new();
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                s.push(b as char)
            }
            b' ' if form => s.push('+'),
            _ if upper => s.push_str(&format!("%{b:02X}")),
            _ => s.push_str(&format!("%{b:02x}")),
        }
    }
    s
}

/// For each alignment k in 0..3 (the secret starting at byte k mod 3 of an encoded string), the
/// base64 characters that depend only on the secret's bytes: any base64 text that encodes the
/// secret at that alignment contains them.
fn base64_cores(v: &[u8]) -> Vec<String> {
    use base64::Engine;
    let mut out = Vec::new();
    for k in 0..3usize {
        let mut buf = vec![0u8; k];
        buf.extend_from_slice(v);
        let enc = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&buf);
        // Characters before this index mix in the k leading bytes; after `end` the trailing ones.
        let start = (k * 4).div_ceil(3);
        let end = (buf.len() / 3) * 4;
        if end > start + 6 {
            let core = &enc[start..end];
            out.push(core.to_string());
            out.push(core.replace('+', "-").replace('/', "_"));
        }
    }
    out
}

/// Register every secret the config names (`*_env` variables that are set, `*_file` files that
/// can be read), when the config loads: a value printed before its client connects is scrubbed too.
pub fn register_configured(cfg: &crate::config::Config) {
    for (_, env, file) in cfg.secret_refs() {
        if let Some(v) = env.and_then(|e| std::env::var(e).ok()) {
            register(&v);
        }
        if let Some(t) = file.and_then(|f| std::fs::read_to_string(f).ok()) {
            register(t.trim_end_matches(['\n', '\r']));
        }
    }
}

/// True when at least one secret is registered.
pub fn any_registered() -> bool {
    !REGISTRY.read().raw.is_empty()
}

/// Scrub every registered secret, in each of its forms, from `text`; a raw secret split by line
/// breaks (wrapped output) is masked too.
pub fn redact(text: &str) -> String {
    let reg = REGISTRY.read();
    if reg.raw.is_empty() {
        return text.to_string();
    }
    let mut out = std::borrow::Cow::Borrowed(text);
    for s in reg.forms.iter() {
        if out.contains(s.as_str()) {
            out = std::borrow::Cow::Owned(out.replace(s.as_str(), MASK));
        }
    }
    if out.contains('\n') {
        for s in reg.raw.iter() {
            if let Some(masked) = mask_split(&out, s) {
                out = std::borrow::Cow::Owned(masked);
            }
        }
    }
    out.into_owned()
}

/// `text` with every occurrence of `secret` that line breaks (`\n`, `\r`) interrupt masked, or
/// None when there is none.
fn mask_split(text: &str, secret: &str) -> Option<String> {
    // The text without line breaks, and where each kept byte stood in `text`.
    let mut flat = String::with_capacity(text.len());
    let mut at = Vec::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        if c != '\n' && c != '\r' {
            flat.push(c);
            at.extend(std::iter::repeat_n(i, c.len_utf8()));
        }
    }
    if !flat.contains(secret) {
        return None;
    }
    let mut out = String::new();
    let mut done = 0;
    let mut from = 0;
    while let Some(p) = flat[from..].find(secret) {
        let s = at[from + p];
        let last = at[from + p + secret.len() - 1];
        let e = last + text[last..].chars().next().map(char::len_utf8).unwrap_or(1);
        out.push_str(&text[done..s]);
        out.push_str(MASK);
        done = e;
        from += p + secret.len();
    }
    out.push_str(&text[done..]);
    Some(out)
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
pub fn load_file_secret(
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
pub fn register_env_values(text: &str) {
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
            crate::engine::error::ErrorKind::Forbidden,
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
        assert_eq!(e.kind, crate::engine::error::ErrorKind::Config);
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
            crate::clients::ssh::quote(secret),
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

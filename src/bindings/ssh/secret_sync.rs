//! `host.sync_secret(name, path)`: make a file on a host hold exactly a secret of the control
//! machine (an app's env file), upload only where it differs, and verify. The value never passes
//! through the script: it is read here, compared by checksum, written through stdin, and
//! registered with the redactor on the way in.

use crate::bindings::ssh::{put_file, simple, SshHost};
use crate::bindings::{host, AtCall};
use crate::error::{RResult, RalfError};
use crate::host::Host;
use rhai::plugin::*;
use rhai::{Engine, Map, NativeCallContext};
use sha2::{Digest, Sha256};

pub(crate) fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(sync_methods).into());
}

/// The secret `name` byte for byte: `RALF_SECRET_<NAME>`, else its source under `secrets:`.
fn load(h: &Host, name: &str) -> RResult<Vec<u8>> {
    let var = crate::secrets::env_name(name);
    if std::env::var_os(&var).is_some() {
        if let Some(v) = crate::secrets::load_file_secret(Some(&var), None, name)? {
            return Ok(v);
        }
    }
    let cfg = h.cfg();
    let Some(src) = cfg.secrets.get(name) else {
        return Err(RalfError::not_found(format!(
            "secret `{name}` is not set: name its file (mode 0600) under `secrets: {name}: file:` in \
             the config, or export {var}"
        )));
    };
    crate::secrets::load_file_secret(src.env.as_deref(), src.file.as_deref(), name)?.ok_or_else(
        || {
            RalfError::config(format!(
                "secret `{name}`: its entry under `secrets:` names no env or file"
            ))
        },
    )
}

/// The sha256 of the remote file, None when it does not exist.
fn remote_sum(h: &Host, s: &SshHost, remote: &str) -> RResult<Option<String>> {
    let cmd = format!(
        "if [ -e {p} ]; then sha256sum -- {p}; else echo absent; fi",
        p = crate::text::quote(remote)
    );
    let o = simple(
        h,
        s,
        cmd,
        None,
        &format!("checksum of {remote} on {}", s.name()),
    )?;
    let out = o.stdout_text();
    if !o.ok() {
        return Err(RalfError::command_failed(format!(
            "{}: cannot read the checksum of {remote}: {}",
            s.name(),
            o.stderr_tail(2).trim()
        ))
        .with("host", s.name()));
    }
    let first = out.split_whitespace().next().unwrap_or_default();
    Ok(if first == "absent" {
        None
    } else {
        Some(first.to_string())
    })
}

fn sync(h: &Host, s: &SshHost, name: &str, remote: &str) -> RResult<Map> {
    if remote.is_empty() {
        return Err(RalfError::invalid("sync_secret: the remote path is empty"));
    }
    let data = load(h, name)?;
    let want = hex::encode(Sha256::digest(&data));
    let have = remote_sum(h, s, remote)?;
    let mut m = Map::new();
    m.insert("host".into(), s.name().into());
    m.insert("path".into(), remote.into());
    m.insert("existed".into(), have.is_some().into());
    if have.as_deref() == Some(want.as_str()) {
        m.insert("changed".into(), false.into());
        m.insert("verified".into(), true.into());
        return Ok(m);
    }
    m.insert("changed".into(), true.into());
    m.insert("verified".into(), false.into());
    let what = if have.is_some() {
        "differs"
    } else {
        "is missing"
    };
    if h.dry_run(
        "ssh",
        format!(
            "replace {}:{remote} with secret `{name}` (it {what})",
            s.name()
        ),
    ) {
        return Ok(m);
    }
    put_file(h, s, remote, data, "sync_secret", true)?;
    match remote_sum(h, s, remote)? {
        Some(now) if now == want => {
            m.insert("verified".into(), true.into());
            Ok(m)
        }
        _ => Err(RalfError::command_failed(format!(
            "{}: {remote} still differs from secret `{name}` after the upload",
            s.name()
        ))
        .with("host", s.name())),
    }
}

#[export_module]
mod sync_methods {
    use super::*;

    /// Make `path` on the host hold exactly the secret `name` of the control machine (a file of
    /// mode 0600 named under `secrets:` in the config, or `RALF_SECRET_<NAME>`): compared by sha256,
    /// replaced (mode 0600, atomically) only where it differs or is missing, then read back and
    /// compared again. Returns `#{ host, path, existed, changed, verified }`; the value is never
    /// returned, printed or logged. Under `--dry-run` nothing is written (`changed` says what would be).
    ///
    /// ```rhai,no_run
    /// let r = ssh::connect("vps").sync_secret("app_env", "/srv/app/app.env");
    /// if r.changed { log::warn(`app.env on vps was out of date: replaced and verified`); }
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn sync_secret(
        ctx: NativeCallContext,
        s: &mut SshHost,
        name: &str,
        path: &str,
    ) -> Result<Map, Box<rhai::EvalAltResult>> {
        let h = host(&ctx)?;
        sync(&h, s, name, path).at(&ctx)
    }
}

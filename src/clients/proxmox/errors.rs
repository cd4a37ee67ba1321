//! How Proxmox VE answers turn into `RalfError`s: the HTTP status, the error text (the body's
//! `message` since libpve-http-server-perl 5.2.0, before that only the HTTP reason phrase), the
//! per-parameter `errors` of a 400, and the exit status of a failed task.

use super::GuestRef;
use crate::error::{ErrorKind, RalfError};
use serde_json::Value;

/// The task error of a snapshot on storage that cannot snapshot
/// (`PVE::AbstractConfig::snapshot_prepare`).
pub const NO_SNAPSHOT_FEATURE: &str = "snapshot feature is not available";

/// `CT is locked (snapshot)` -> `snapshot`.
pub fn lock_name(msg: &str) -> Option<String> {
    let i = msg.find("is locked (")?;
    let rest = &msg[i + "is locked (".len()..];
    rest.find(')').map(|j| rest[..j].to_string())
}

/// `can't lock file '/run/lock/lxc/pve-config-100.lock' - got timeout` -> the file
/// (`PVE::Tools::lock_file_full`: another operation holds the guest's config flock).
pub fn flock_timeout_file(msg: &str) -> Option<String> {
    let i = msg.find("can't lock file '")?;
    let rest = &msg[i + "can't lock file '".len()..];
    let j = rest.find('\'')?;
    rest[j..]
        .contains("got timeout")
        .then(|| rest[..j].to_string())
}

/// Kind and details for an error text, shared by synchronous 5xx answers and failed tasks.
fn classify(text: &str) -> Option<(ErrorKind, Vec<(&'static str, Value)>)> {
    if let Some(lock) = lock_name(text) {
        return Some((ErrorKind::Locked, vec![("lock", Value::String(lock))]));
    }
    if let Some(file) = flock_timeout_file(text) {
        return Some((
            ErrorKind::Locked,
            vec![
                ("lock", Value::String("flock".into())),
                ("lock_file", Value::String(file)),
            ],
        ));
    }
    if text.contains(NO_SNAPSHOT_FEATURE) {
        return Some((
            ErrorKind::Invalid,
            vec![("unsupported", Value::String("snapshot".into()))],
        ));
    }
    if text.contains("does not exist") {
        return Some((ErrorKind::NotFound, Vec::new()));
    }
    if text.contains("already running") || text.contains("not running") {
        return Some((ErrorKind::Conflict, Vec::new()));
    }
    None
}

/// What to add to an error text so that it says what happened and what to do.
fn explain(text: &str) -> Option<&'static str> {
    if flock_timeout_file(text).is_some() {
        Some("another operation holds the guest's configuration lock; try again when it is done")
    } else if text.contains(NO_SNAPSHOT_FEATURE) {
        Some("the storage of the guest's disks does not support snapshots (directory or NFS storage with raw images or container volumes); move the disks to LVM-thin, ZFS or Ceph (or qcow2 images), or go on without a snapshot")
    } else {
        None
    }
}

/// The kind of a failed task's exit status, with its details.
pub(super) fn task_error(exit: &str) -> (ErrorKind, Vec<(&'static str, Value)>) {
    if let Some(c) = classify(exit) {
        return c;
    }
    if exit.contains("already used") {
        return (ErrorKind::Conflict, Vec::new());
    }
    (ErrorKind::CommandFailed, Vec::new())
}

/// The explanation appended to a failed task's message, if any.
pub(super) fn task_hint(exit: &str) -> Option<&'static str> {
    explain(exit)
}

/// Map a non-2xx answer to an error kind, keeping Proxmox's text and per-parameter errors. The
/// text is the body's `message`, else the HTTP reason phrase `reason` (servers before
/// libpve-http-server-perl 5.2.0 send it only there), else `HTTP {status}`.
pub fn http_error(status: u16, body: &Value, reason: Option<&str>, what: &str) -> RalfError {
    let message = body["message"]
        .as_str()
        .or(reason)
        .map(|s| s.trim_end().to_string())
        .filter(|s| !s.is_empty());
    let errors: Vec<(String, String)> = body["errors"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().unwrap_or_default().trim_end().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let text = message.clone().unwrap_or_else(|| format!("HTTP {status}"));
    let e = match status {
        401 => RalfError::auth(format!(
            "proxmox: authentication failed ({what}): the token or ticket was rejected{}",
            message.map(|m| format!(" ({m})")).unwrap_or_default()
        )),
        403 => RalfError::new(ErrorKind::Forbidden, format!("proxmox: {what}: {text}")),
        400 => {
            let mut m = format!("proxmox: {what}: {text}");
            for (k, v) in &errors {
                m.push_str(&format!("\n  {k}: {v}"));
            }
            let mut e = RalfError::invalid(m);
            if !errors.is_empty() {
                e = e.with(
                    "errors",
                    errors
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect::<serde_json::Map<String, Value>>(),
                );
            }
            e
        }
        501 => RalfError::internal(format!(
            "proxmox: {what}: not implemented by this server ({text})"
        )),
        595..=599 => RalfError::unavailable(format!(
            "proxmox: {what}: the cluster could not forward the request ({status}{})",
            message.map(|m| format!(": {m}")).unwrap_or_default()
        )),
        _ => {
            let mut m = format!("proxmox: {what}: {text}");
            if let Some(hint) = explain(&text) {
                m.push_str(&format!(" ({hint})"));
            }
            match classify(&text) {
                Some((kind, details)) => details
                    .into_iter()
                    .fold(RalfError::new(kind, m), |e, (k, v)| e.with(k, v)),
                None => RalfError::unavailable(m),
            }
        }
    };
    e.with("status", status)
}

/// Name the guest in an error.
pub(super) fn guest_error(e: RalfError, g: &GuestRef) -> RalfError {
    let e = e.with("vmid", g.vmid).with("node", &g.node);
    if e.kind == ErrorKind::NotFound && !e.message.contains(&g.vmid.to_string()) {
        let m = format!(
            "{} (guest {} {} on node {})",
            e.message,
            g.kind.prefix(),
            g.vmid,
            g.node
        );
        return RalfError { message: m, ..e };
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_http_errors() {
        let e = http_error(
            400,
            &json!({"data": null, "errors": {"snapname": "invalid format - invalid configuration ID '1x'\n"}, "message": "Parameter verification failed.\n"}),
            None,
            "POST /x",
        );
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(
            e.message.contains("snapname: invalid format"),
            "{}",
            e.message
        );
        assert_eq!(
            e.details["errors"]["snapname"],
            "invalid format - invalid configuration ID '1x'"
        );
        let e = http_error(
            500,
            &json!({"data": null, "message": "CT is locked (backup)\n"}),
            None,
            "POST /y",
        );
        assert_eq!(e.kind, ErrorKind::Locked);
        assert_eq!(e.details["lock"], "backup");
        let e = http_error(
            500,
            &json!({"data": null, "message": "CT 100 already running\n"}),
            None,
            "POST /y",
        );
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert_eq!(
            http_error(401, &Value::Null, None, "GET /").kind,
            ErrorKind::Auth
        );
        assert_eq!(
            http_error(403, &Value::Null, None, "GET /").kind,
            ErrorKind::Forbidden
        );
        assert_eq!(
            http_error(596, &Value::Null, None, "GET /").kind,
            ErrorKind::Unavailable
        );
        let e = http_error(
            500,
            &json!({"data": null, "message": "Configuration file 'nodes/pve/lxc/100.conf' does not exist\n"}),
            None,
            "GET /z",
        );
        assert_eq!(e.kind, ErrorKind::NotFound);
    }

    /// Before libpve-http-server-perl 5.2.0 the body is `{"data": null}` and the text only in the
    /// reason phrase.
    #[test]
    fn takes_the_text_from_the_reason_phrase() {
        let body = json!({"data": null});
        let e = http_error(500, &body, Some("CT 100 already running"), "POST /s");
        assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
        assert!(
            e.message.contains("CT 100 already running"),
            "{}",
            e.message
        );
        let e = http_error(500, &body, Some("CT is locked (backup)"), "POST /s");
        assert_eq!(e.kind, ErrorKind::Locked);
        assert_eq!(e.details["lock"], "backup");
        let e = http_error(
            500,
            &body,
            Some("Configuration file 'nodes/pve/lxc/100.conf' does not exist"),
            "GET /c",
        );
        assert_eq!(e.kind, ErrorKind::NotFound);
        // the body's message wins over the reason phrase
        let e = http_error(
            500,
            &json!({"data": null, "message": "CT 100 not running\n"}),
            Some("something else"),
            "POST /s",
        );
        assert!(e.message.contains("CT 100 not running"), "{}", e.message);
        // no text at all: the status
        let e = http_error(500, &body, None, "POST /s");
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(e.message.ends_with("HTTP 500"), "{}", e.message);
    }

    #[test]
    fn flock_timeout_is_locked() {
        let t = "can't lock file '/run/lock/lxc/pve-config-2010.lock' - got timeout";
        let e = http_error(500, &json!({"data": null}), Some(t), "PUT /config");
        assert_eq!(e.kind, ErrorKind::Locked, "{e}");
        assert_eq!(e.details["lock"], "flock");
        assert_eq!(e.details["lock_file"], "/run/lock/lxc/pve-config-2010.lock");
        assert!(e.message.contains("try again"), "{}", e.message);
        assert_eq!(task_error(t).0, ErrorKind::Locked);
        assert_eq!(flock_timeout_file("can't lock file '/x' - busy"), None);
    }

    #[test]
    fn task_kinds() {
        assert_eq!(task_error("CT is locked (rollback)").0, ErrorKind::Locked);
        assert_eq!(
            task_error("snapshot 'x' does not exist").0,
            ErrorKind::NotFound
        );
        assert_eq!(
            task_error("snapshot name 'x' already used").0,
            ErrorKind::Conflict
        );
        assert_eq!(task_error("disk full").0, ErrorKind::CommandFailed);
        let (kind, details) = task_error(NO_SNAPSHOT_FEATURE);
        assert_eq!(kind, ErrorKind::Invalid);
        assert_eq!(details[0].1, "snapshot");
        assert!(task_hint(NO_SNAPSHOT_FEATURE)
            .unwrap()
            .contains("does not support snapshots"));
        assert_eq!(
            lock_name("VM is locked (snapshot-delete)").as_deref(),
            Some("snapshot-delete")
        );
    }
}

//! The run lock: one deploy run at a time, shared by cron, scripts and the REPL.
//!
//! An exclusive `flock` on `<state db>.lock`; the file holds the holder's identity as JSON so a
//! second run can name it. The kernel drops the flock when its process dies, so a lock left by a
//! `kill -9`ed run is free; finding such a leftover holder record (dead pid on this host) is
//! reported as a stale lock taken over, with a warning.

use crate::error::{ErrorKind, RResult, RalfError};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Who holds the lock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    pub pid: i64,
    pub host: String,
    pub run_id: String,
    pub since: String,
    #[serde(default)]
    pub script: String,
    /// The kernel boot and pid namespace the pid belongs to ([`machine_id`]); empty in records
    /// written before it existed.
    #[serde(default)]
    pub machine: String,
}

impl Holder {
    /// This process, holding the lock for `run_id`.
    pub fn me(run_id: &str, script: &str) -> Holder {
        Holder {
            pid: std::process::id() as i64,
            host: hostname(),
            run_id: run_id.to_string(),
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            script: script.to_string(),
            machine: machine_id(),
        }
    }

    /// The holder's process ran where this one runs (same kernel boot, same pid namespace) and is
    /// gone ([`gone_here`]).
    pub fn is_dead_here(&self) -> bool {
        gone_here(&self.host, &self.machine, self.pid)
    }
}

/// A process recorded as (host, machine, pid) ran where this one runs and is gone. Only then does
/// its pid say anything: a pid from another machine or container, or a record without the
/// machine, never counts as gone.
pub fn gone_here(host: &str, machine: &str, pid: i64) -> bool {
    !machine.is_empty() && machine == machine_id() && host == hostname() && !pid_alive(pid)
}

/// Where pids mean something: the kernel's boot id and this process's pid namespace (two
/// containers on one kernel share the boot id, not the namespace). Empty when unreadable.
pub fn machine_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(read_machine_id).clone()
}

fn read_machine_id() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if boot.trim().is_empty() || ns.is_empty() {
        return String::new();
    }
    format!("{}/{ns}", boot.trim())
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on host {}, run {}, since {}",
            self.pid, self.host, self.run_id, self.since
        )?;
        if !self.script.is_empty() {
            write!(f, " ({})", self.script)?;
        }
        Ok(())
    }
}

/// A held lock; released (and its holder record cleared) on drop.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    pub path: PathBuf,
    pub holder: Holder,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.sync_data();
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    let r = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if r != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// True when a process with this pid exists (on this host).
pub fn pid_alive(pid: i64) -> bool {
    if pid <= 0 || pid > i32::MAX as i64 {
        return false;
    }
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    if r == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut s).ok()?;
    serde_json::from_str(s.trim()).ok()
}

/// Take the lock at `path` for `me`, or fail with kind `locked` (exit code 75) naming the holder.
pub fn acquire(path: &Path, me: Holder) -> RResult<RunLock> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| {
                RalfError::from(e).context(format!("run lock: cannot create {}", dir.display()))
            })?;
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| RalfError::from(e).context(format!("run lock {}", path.display())))?;
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(RalfError::io(format!("run lock {}: {err}", path.display())));
        }
        let holder = read_holder(&mut file);
        let who = holder
            .as_ref()
            .map(|h| h.to_string())
            .unwrap_or_else(|| "a process that has not written its name yet".into());
        let mut e = RalfError::new(
            ErrorKind::Locked,
            format!(
                "another run holds the run lock: {who}; lock file {}",
                path.display()
            ),
        )
        .with("exit_code", crate::error::exit::LOCKED)
        .with("lock_file", path.display().to_string());
        if let Some(h) = holder {
            e = e
                .with("pid", h.pid)
                .with("host", h.host)
                .with("run_id", h.run_id)
                .with("since", h.since);
        }
        return Err(e);
    }
    if let Some(old) = read_holder(&mut file) {
        if old.host == me.host && old.pid == me.pid && old.run_id == me.run_id {
            // Our own record (same process re-acquiring): nothing to report.
        } else if old.host == me.host && !pid_alive(old.pid) {
            tracing::warn!(
                target: "ralf::lock",
                "taking over a stale run lock: {old} (that process is gone)"
            );
        } else {
            tracing::warn!(target: "ralf::lock", "taking over a run lock record left by {old} (its lock was released)");
        }
    }
    file.set_len(0)
        .map_err(|e| RalfError::io(format!("run lock {}: {e}", path.display())))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| RalfError::io(format!("run lock {}: {e}", path.display())))?;
    let text = serde_json::to_string(&me).unwrap_or_default();
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_data())
        .map_err(|e| RalfError::io(format!("run lock {}: {e}", path.display())))?;
    Ok(RunLock {
        file,
        path: path.to_path_buf(),
        holder: me,
    })
}

/// The current holder, if the lock is held (read-only: used by `history`).
pub fn current_holder(path: &Path) -> Option<Holder> {
    let mut file = File::open(path).ok()?;
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if r == 0 {
        unsafe {
            libc::flock(file.as_raw_fd(), libc::LOCK_UN);
        }
        return None;
    }
    read_holder(&mut file)
}

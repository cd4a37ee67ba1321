//! SSH client: multiplexed OpenSSH sessions (the `openssh` crate, native-mux), one master per host
//! per run, plus a local runner with the same shape.
//!
//! Every command runs under a small POSIX-shell prologue that reports the remote shell's pid (a
//! session leader on the remote side, since sshd calls `setsid()` for each channel) on stderr,
//! so a timed-out or cancelled command can be killed as a whole process group over a second
//! channel. The marker line is removed from the captured stderr.

use crate::config::{HostConfig, SshConfig};
use crate::error::{ErrorKind, RResult, RalfError};
use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder, Stdio};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

mod capture;
mod exec;
mod pool;
mod target;

use capture::*;
pub use exec::*;
pub use pool::*;
pub use target::*;

/// Default cap on captured stdout / stderr per command.
pub const DEFAULT_MAX_OUTPUT: usize = 4 * 1024 * 1024;
const PID_MARKER: &str = "\u{1e}ralf-pid ";
/// The master exits by itself after this much idle time (so a killed run leaves nothing behind for long).
const PERSIST_SECS: usize = 120;

/// Known-hosts policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownHostsPolicy {
    Strict,
    AcceptNew,
}

/// Client-wide SSH settings (from the `ssh:` config section).
#[derive(Debug, Clone)]
pub struct Settings {
    pub known_hosts: KnownHostsPolicy,
    pub known_hosts_file: Option<PathBuf>,
    pub use_ssh_config: bool,
    pub connect_timeout: Duration,
    pub keepalive: Duration,
    pub control_dir: PathBuf,
    pub max_output: usize,
}

impl Settings {
    pub fn from_config(c: &SshConfig) -> Settings {
        let uid = unsafe { libc::getuid() };
        Settings {
            known_hosts: if c.known_hosts == "accept_new" {
                KnownHostsPolicy::AcceptNew
            } else {
                KnownHostsPolicy::Strict
            },
            known_hosts_file: c.known_hosts_file.clone(),
            use_ssh_config: c.use_ssh_config,
            connect_timeout: c
                .connect_timeout
                .map(|s| s.0)
                .unwrap_or(Duration::from_secs(10)),
            keepalive: c.keepalive.map(|s| s.0).unwrap_or(Duration::from_secs(15)),
            // Short on purpose: a unix socket path is limited to ~104-108 bytes.
            control_dir: c
                .control_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("/tmp/ralf-ssh-{uid}"))),
            max_output: c.max_output.unwrap_or(DEFAULT_MAX_OUTPUT),
        }
    }
}

/// One command to run.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    /// Shell command line (interpreted by the remote POSIX shell).
    pub cmd: String,
    pub stdin: Option<Vec<u8>>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub timeout: Option<Duration>,
    /// Override the output cap (None = the configured `ssh.max_output`; Some(usize::MAX) = unlimited).
    pub max_output: Option<usize>,
}

impl RunSpec {
    pub fn new(cmd: impl Into<String>) -> Self {
        RunSpec {
            cmd: cmd.into(),
            ..Default::default()
        }
    }
}

/// What a command produced. A non-zero exit is a value, not an error.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: i64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_total: usize,
    pub stderr_total: usize,
    pub duration: Duration,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
    pub fn truncated(&self) -> bool {
        self.stdout_total > self.stdout.len() || self.stderr_total > self.stderr.len()
    }
    fn text(buf: &[u8], total: usize) -> String {
        let mut s = String::from_utf8_lossy(buf).into_owned();
        if total > buf.len() {
            if !s.ends_with('\n') && !s.is_empty() {
                s.push('\n');
            }
            s.push_str(&format!(
                "[ralf-sh: output truncated: kept the first {} of {} bytes (ssh.max_output)]",
                buf.len(),
                total
            ));
        }
        s
    }
    pub fn stdout_text(&self) -> String {
        Self::text(&self.stdout, self.stdout_total)
    }
    pub fn stderr_text(&self) -> String {
        Self::text(&self.stderr, self.stderr_total)
    }
    /// The last `n` lines of stderr (for error messages).
    pub fn stderr_tail(&self, n: usize) -> String {
        let s = String::from_utf8_lossy(&self.stderr);
        let lines: Vec<&str> = s.trim_end().lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// `df -Pk` output -> available bytes of the filesystem holding the path.
pub fn parse_df_available(text: &str) -> Option<i64> {
    let line = text.lines().filter(|l| !l.trim().is_empty()).nth(1)?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    // Filesystem 1024-blocks Used Available Capacity Mounted-on (a long fs name may wrap; count from the end)
    if fields.len() < 6 {
        return None;
    }
    let avail = fields[fields.len() - 3].parse::<i64>().ok()?;
    Some(avail * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::join_argv;

    #[test]
    fn literals() {
        let t = parse_literal("deploy@10.0.0.5:2222").unwrap();
        assert_eq!(t.user.as_deref(), Some("deploy"));
        assert_eq!(t.address, "10.0.0.5");
        assert_eq!(t.port, Some(2222));
        let t = parse_literal("[::1]:22").unwrap();
        assert_eq!(t.address, "::1");
        assert_eq!(t.port, Some(22));
        assert_eq!(t.destination_with_port(), "[::1]:22");
        assert!(parse_literal("host:99999").is_err());
        assert!(parse_literal("a b").is_err());
        assert!(parse_literal("@host").is_err());
        let t = parse_literal("vps").unwrap();
        assert_eq!(t.port, None);
    }

    #[test]
    fn alias_and_jump() {
        let mut hosts = BTreeMap::new();
        hosts.insert(
            "bastion".to_string(),
            HostConfig {
                address: "1.2.3.4".into(),
                user: Some("jump".into()),
                port: Some(2200),
                ..Default::default()
            },
        );
        hosts.insert(
            "gpu".to_string(),
            HostConfig {
                address: "10.0.0.9".into(),
                jump: Some("bastion".into()),
                ..Default::default()
            },
        );
        let t = resolve("gpu", &hosts).unwrap();
        assert_eq!(t.jump.unwrap().destination_with_port(), "jump@1.2.3.4:2200");
        let e = resolve("gpuu x", &hosts).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("docker"), "docker");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(join_argv(&["echo", "$(id)", ";ls"]), "echo '$(id)' ';ls'");
    }

    #[test]
    fn df() {
        let t = "Filesystem     1024-blocks      Used Available Capacity Mounted on\n/dev/sda1        100000     40000     60000      40% /\n";
        assert_eq!(parse_df_available(t), Some(60000 * 1024));
    }

    #[test]
    fn capture_strips_marker_and_caps() {
        let pid = Arc::new(AtomicI64::new(0));
        let mut c = Capture::new(5, pid.clone());
        c.push_err(b"warn\n\x1eralf-");
        c.push_err(b"pid 4242\nboom\n");
        c.push_out(b"0123456789");
        let o = c.output(0, Instant::now());
        assert_eq!(pid.load(Ordering::SeqCst), 4242);
        assert_eq!(o.stderr, b"warn\n");
        assert_eq!(o.stderr_total, 10);
        assert!(o.truncated());
        assert!(o.stdout_text().contains("output truncated"));
    }

    #[tokio::test]
    async fn local_runs_with_env_cwd_stdin() {
        let h = Handle::local(1 << 20);
        let mut spec = RunSpec::new("cat; echo \"$FOO\"; pwd; echo err >&2; exit 3");
        spec.env.push(("FOO".into(), "a b'c".into()));
        spec.cwd = Some("/tmp".into());
        spec.stdin = Some(b"in\n".to_vec());
        let o = h.exec(&spec).await.unwrap();
        assert_eq!(o.code, 3);
        assert_eq!(String::from_utf8_lossy(&o.stdout), "in\na b'c\n/tmp\n");
        assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    }

    #[tokio::test]
    async fn local_alias_exports_the_host_env_under_the_command_env() {
        let env: BTreeMap<String, String> = [("A", "1"), ("B", "2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let h = Handle::local_alias("box", env, 1 << 20);
        assert_eq!(h.name(), "box");
        assert!(h.is_local());
        let mut spec = RunSpec::new("echo \"$A $B\"; exit 3");
        spec.env = vec![("B".into(), "3".into())];
        let o = h.exec(&spec).await.unwrap();
        assert_eq!(o.stdout_text(), "1 3\n");
        assert_eq!(o.code, 3);
        let mut spec = RunSpec::new("sleep 5");
        spec.timeout = Some(Duration::from_millis(200));
        let e = h.exec(&spec).await.unwrap_err();
        assert!(e.message.contains("box"), "{}", e.message);
    }

    #[tokio::test]
    async fn local_timeout_kills_group() {
        let h = Handle::local(1 << 20);
        let mut spec = RunSpec::new("sleep 30 & sleep 31; echo done");
        spec.timeout = Some(Duration::from_millis(300));
        let e = h.exec(&spec).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout);
    }
}

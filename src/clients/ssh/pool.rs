//! The connection pool: one multiplexed OpenSSH master per host per run, and connect errors.

use super::*;

pub(super) struct Live {
    pub(super) session: Arc<Session>,
    pub(super) last_used: Instant,
}

/// One cached master per host name. Lives in `host.extension(...)` for the run.
pub struct Pool {
    pub settings: Settings,
    pub(super) slots: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Live>>>>>,
    pub(super) kills: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Number of masters opened (for tests and diagnostics).
    pub masters_opened: AtomicI64,
}

impl Pool {
    pub fn new(settings: Settings) -> Arc<Pool> {
        Arc::new(Pool {
            settings,
            slots: parking_lot::Mutex::new(HashMap::new()),
            kills: parking_lot::Mutex::new(Vec::new()),
            masters_opened: AtomicI64::new(0),
        })
    }

    pub(super) fn slot(&self, key: &str) -> Arc<tokio::sync::Mutex<Option<Live>>> {
        self.slots
            .lock()
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    /// The live master for `target`, opening it if needed.
    pub async fn session(&self, target: &Target) -> RResult<Arc<Session>> {
        let slot = self.slot(&target.name);
        let mut guard = slot.lock().await;
        if let Some(live) = guard.as_mut() {
            // A master idle for a while may have exited (ControlPersist); check before reuse.
            let fresh = live.last_used.elapsed() < Duration::from_secs(PERSIST_SECS as u64 / 2);
            if fresh || live.session.check().await.is_ok() {
                live.last_used = Instant::now();
                return Ok(live.session.clone());
            }
            *guard = None;
        }
        let session = Arc::new(self.connect(target).await?);
        self.masters_opened.fetch_add(1, Ordering::SeqCst);
        *guard = Some(Live {
            session: session.clone(),
            last_used: Instant::now(),
        });
        Ok(session)
    }

    /// Forget a master that turned out dead (next use reconnects).
    pub async fn evict(&self, target: &Target) {
        let slot = self.slot(&target.name);
        let mut g = slot.lock().await;
        *g = None;
    }

    pub(super) async fn connect(&self, t: &Target) -> RResult<Session> {
        let s = &self.settings;
        std::fs::create_dir_all(&s.control_dir).map_err(|e| {
            RalfError::io(format!(
                "ssh: cannot create control directory {}: {e}",
                s.control_dir.display()
            ))
        })?;
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            // The control sockets give shell access to the hosts: the dir must be ours alone.
            let meta = std::fs::metadata(&s.control_dir)?;
            if meta.uid() != unsafe { libc::getuid() } {
                return Err(RalfError::config(format!(
                    "ssh: control directory {} belongs to another user; set ssh.control_dir",
                    s.control_dir.display()
                )));
            }
            let _ =
                std::fs::set_permissions(&s.control_dir, std::fs::Permissions::from_mode(0o700));
        }
        let mut b = SessionBuilder::default();
        b.known_hosts_check(match s.known_hosts {
            KnownHostsPolicy::Strict => KnownHosts::Strict,
            KnownHostsPolicy::AcceptNew => KnownHosts::Add,
        })
        .connect_timeout(s.connect_timeout.max(Duration::from_secs(1)))
        .server_alive_interval(s.keepalive.max(Duration::from_secs(1)))
        .control_directory(&s.control_dir)
        .control_persist(ControlPersist::IdleFor(
            std::num::NonZeroUsize::new(PERSIST_SECS).expect("non-zero"),
        ));
        if let Some(f) = &s.known_hosts_file {
            b.user_known_hosts_file(f);
        }
        if let Some(j) = &t.jump {
            // `ssh -J` passes only `-F` on to the jump connection (not -o/-i), so the jump host's
            // key, known-hosts file and batch mode go into a generated config file.
            b.config_file(self.jump_config(t, j)?);
            b.jump_hosts([j.destination_with_port()]);
        } else if !s.use_ssh_config {
            b.config_file("/dev/null");
        }
        if let Some(u) = &t.user {
            b.user(u.clone());
        }
        if let Some(p) = t.port {
            b.port(p);
        }
        if let Some(k) = &t.identity_file {
            b.keyfile(expand_tilde(k));
        }
        let dest = if t.address.contains(':') {
            format!("[{}]", t.address)
        } else {
            t.address.clone()
        };
        let connect = b.connect_mux(&dest);
        // The master is bounded by ConnectTimeout for TCP, but not for a server that accepts and
        // then stalls; bound the whole handshake too.
        let limit = s.connect_timeout.max(Duration::from_secs(1)) * 2 + Duration::from_secs(5);
        match tokio::time::timeout(limit, connect).await {
            Ok(Ok(sess)) => Ok(sess),
            Ok(Err(e)) => Err(classify_connect(&t.name, &e)),
            Err(_) => Err(RalfError::unavailable(format!(
                "ssh {}: connection not established within {}",
                t.name,
                crate::text::human_duration(limit)
            ))
            .with("host", &t.name)),
        }
    }

    pub(super) fn jump_config(&self, t: &Target, j: &Target) -> RResult<PathBuf> {
        let s = &self.settings;
        let mut text = String::new();
        if let Some(k) = &j.identity_file {
            text.push_str(&format!(
                "Host {}\n  IdentityFile \"{}\"\n  IdentitiesOnly yes\n",
                j.address,
                expand_tilde(k).display()
            ));
        }
        text.push_str(&format!(
            "Host *\n  BatchMode yes\n  StrictHostKeyChecking {}\n  ConnectTimeout {}\n  ServerAliveInterval {}\n",
            match s.known_hosts {
                KnownHostsPolicy::Strict => "yes",
                KnownHostsPolicy::AcceptNew => "accept-new",
            },
            s.connect_timeout.as_secs().max(1),
            s.keepalive.as_secs().max(1)
        ));
        if let Some(f) = &s.known_hosts_file {
            text.push_str(&format!(
                "  UserKnownHostsFile \"{}\"\n",
                expand_tilde(f).display()
            ));
        }
        if s.use_ssh_config {
            text.push_str("  Include ~/.ssh/config\n");
        }
        let safe: String = t
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = s.control_dir.join(format!("jump-{safe}.conf"));
        std::fs::write(&path, text).map_err(|e| {
            RalfError::io(format!(
                "ssh {}: cannot write {}: {e}",
                t.name,
                path.display()
            ))
        })?;
        Ok(path)
    }

    /// Wait (bounded) for background kills of cancelled commands to be delivered.
    pub async fn finish_kills(&self, limit: Duration) {
        let handles: Vec<_> = std::mem::take(&mut *self.kills.lock());
        let _ = tokio::time::timeout(limit, futures_util::future::join_all(handles)).await;
    }

    /// Close every master (best effort).
    pub async fn close_all(&self) {
        let slots: Vec<_> = self.slots.lock().values().cloned().collect();
        for s in slots {
            let live = s.lock().await.take();
            if let Some(l) = live {
                if let Ok(sess) = Arc::try_unwrap(l.session) {
                    let _ = sess.close().await;
                }
            }
        }
    }
}

pub(super) fn expand_tilde(p: &std::path::Path) -> PathBuf {
    match p.to_str().and_then(|s| s.strip_prefix("~/")) {
        Some(rest) => crate::config::home().join(rest),
        None => p.to_path_buf(),
    }
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Map a connection failure to an error kind with a message naming the host.
pub fn classify_connect(host: &str, e: &openssh::Error) -> RalfError {
    let text = error_chain(e);
    let lower = text.to_lowercase();
    let (kind, what) = if lower.contains("host key verification failed")
        || lower.contains("remote host identification has changed")
        || lower.contains("no ed25519 host key is known")
        || lower.contains("host key for")
    {
        (
            ErrorKind::Auth,
            "host key verification failed (the host key is unknown or does not match known_hosts)",
        )
    } else if lower.contains("permission denied") {
        (
            ErrorKind::Auth,
            "authentication refused (permission denied)",
        )
    } else if lower.contains("connection refused") {
        (ErrorKind::Unavailable, "connection refused")
    } else if lower.contains("timed out") {
        (ErrorKind::Unavailable, "connection timed out")
    } else if lower.contains("could not resolve") {
        (ErrorKind::Unavailable, "host name does not resolve")
    } else if lower.contains("unreachable") {
        (ErrorKind::Unavailable, "network unreachable")
    } else {
        (ErrorKind::Unavailable, "connection failed")
    };
    RalfError::new(kind, format!("ssh {host}: {what} ({})", text.trim())).with("host", host)
}

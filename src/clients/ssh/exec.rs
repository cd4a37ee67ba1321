//! Running one command: on a pooled session or locally, under the pid-reporting prologue, with
//! timeouts and cancellation that kill the remote process group.

use super::*;

/// What executes commands: a remote host through the pool, or the control machine.
#[derive(Clone)]
pub enum Runner {
    Remote {
        target: Target,
        pool: Arc<Pool>,
    },
    /// Commands run on this machine under `/bin/sh`. `name` is the alias (or "local"); `env` is
    /// exported for every command (a spec's own env wins).
    Local {
        name: String,
        env: BTreeMap<String, String>,
        max_output: usize,
    },
}

/// A host handle: cheap to clone; the master is opened on first use.
#[derive(Clone)]
pub struct Handle {
    pub runner: Runner,
}

impl Handle {
    pub fn remote(target: Target, pool: Arc<Pool>) -> Handle {
        Handle {
            runner: Runner::Remote { target, pool },
        }
    }

    /// The control machine itself, as `ssh::local()`.
    pub fn local(max_output: usize) -> Handle {
        Handle::local_alias("local", BTreeMap::new(), max_output)
    }

    /// An alias whose `transport` is `local`: commands run here with the host's `env`.
    pub fn local_alias(name: &str, env: BTreeMap<String, String>, max_output: usize) -> Handle {
        Handle {
            runner: Runner::Local {
                name: name.to_string(),
                env,
                max_output,
            },
        }
    }

    pub fn name(&self) -> &str {
        match &self.runner {
            Runner::Remote { target, .. } => &target.name,
            Runner::Local { name, .. } => name,
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self.runner, Runner::Local { .. })
    }

    /// Open the master now (no-op for local).
    pub async fn connect(&self) -> RResult<()> {
        if let Runner::Remote { target, pool } = &self.runner {
            pool.session(target).await?;
        }
        Ok(())
    }

    /// Run a command; a non-zero exit is `Ok` with that code.
    pub async fn exec(&self, spec: &RunSpec) -> RResult<Output> {
        match &self.runner {
            Runner::Local {
                name,
                env,
                max_output,
            } => {
                let cap = spec.max_output.unwrap_or(*max_output);
                let script = wrap_with(spec, env)?;
                exec_local(name, &script, spec, cap).await
            }
            Runner::Remote { target, pool } => {
                let script = wrap_with(spec, &target.env)?;
                let cap = spec.max_output.unwrap_or(pool.settings.max_output);
                let mut attempt = 0;
                loop {
                    let session = pool.session(target).await?;
                    match exec_remote(target, pool, session.clone(), &script, spec, cap).await {
                        Err(RemoteFail::NotStarted(e)) => {
                            pool.evict(target).await;
                            attempt += 1;
                            if attempt >= 2 {
                                return Err(RalfError::unavailable(format!(
                                    "ssh {}: cannot open a channel on the master connection ({e})",
                                    target.name
                                ))
                                .with("host", &target.name));
                            }
                        }
                        Err(RemoteFail::Lost(e)) => {
                            // The master may be gone (host down, network cut): check and evict.
                            if session.check().await.is_err() {
                                pool.evict(target).await;
                                return Err(RalfError::unavailable(format!(
                                    "ssh {}: connection lost while running the command ({e})",
                                    target.name
                                ))
                                .with("host", &target.name));
                            }
                            return Err(RalfError::unavailable(format!(
                                "ssh {}: remote command was terminated ({e})",
                                target.name
                            ))
                            .with("host", &target.name));
                        }
                        Err(RemoteFail::Error(e)) => return Err(e),
                        Ok(o) => return Ok(o),
                    }
                }
            }
        }
    }

    /// Is the host reachable (master up and a trivial command runs)?
    pub async fn reachable(&self) -> bool {
        let mut spec = RunSpec::new("true");
        spec.timeout = Some(Duration::from_secs(15));
        matches!(self.exec(&spec).await, Ok(o) if o.ok())
    }
}

/// Build the remote script: pid marker, cwd, env, then the command via `eval`.
/// [`wrap`] with a host's environment exported first (the command's own env overrides it).
pub(super) fn wrap_with(spec: &RunSpec, host_env: &BTreeMap<String, String>) -> RResult<String> {
    if host_env.is_empty() {
        return wrap(spec);
    }
    let mut merged = spec.clone();
    merged.env = host_env
        .iter()
        .filter(|(k, _)| !spec.env.iter().any(|(sk, _)| sk == *k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(spec.env.iter().cloned())
        .collect();
    wrap(&merged)
}

pub(super) fn wrap(spec: &RunSpec) -> RResult<String> {
    let mut s = format!(
        "printf '{}%s\\n' \"$$\" >&2; ",
        PID_MARKER.replace('\u{1e}', "\\036")
    );
    if let Some(d) = &spec.cwd {
        s.push_str(&format!("cd -- {} || exit 1; ", quote(d)));
    }
    for (k, v) in &spec.env {
        let valid = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(RalfError::invalid(format!(
                "env: `{k}` is not a valid environment variable name"
            )));
        }
        s.push_str(&format!("export {k}={}; ", quote(v)));
    }
    s.push_str("eval ");
    s.push_str(&quote(&spec.cmd));
    Ok(s)
}

pub(super) enum RemoteFail {
    /// The channel could not be opened: the command did not start.
    NotStarted(String),
    /// The connection dropped or the remote process vanished.
    Lost(String),
    Error(RalfError),
}

/// Kills a remote (or local) process group when dropped while armed (cancellation).
pub(super) struct KillGuard {
    pid: Arc<AtomicI64>,
    killer: Killer,
    armed: bool,
    pool: Option<Arc<Pool>>,
}

#[derive(Clone)]
pub(super) enum Killer {
    Remote(Arc<Session>),
    Local,
}

impl Killer {
    pub(super) async fn kill(self, pid: i64) {
        if pid <= 1 {
            return;
        }
        match self {
            Killer::Local => unsafe {
                libc::kill(-(pid as i32), libc::SIGTERM);
                libc::kill(pid as i32, libc::SIGTERM);
                let p = pid as i32;
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    libc::kill(-p, libc::SIGKILL);
                });
            },
            Killer::Remote(sess) => {
                let cmd = format!(
                    "kill -TERM -- -{pid} {pid} 2>/dev/null; (sleep 2; kill -KILL -- -{pid} {pid}) >/dev/null 2>&1 </dev/null & exit 0"
                );
                let fut = async move {
                    let _ = sess
                        .raw_command(&cmd)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .await;
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), fut).await;
            }
        }
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let pid = self.pid.load(Ordering::SeqCst);
        if pid <= 1 {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let jh = rt.spawn(self.killer.clone().kill(pid));
            if let Some(p) = &self.pool {
                p.kills.lock().push(jh);
            }
        } else if let Killer::Local = self.killer {
            unsafe {
                libc::kill(-(pid as i32), libc::SIGKILL);
            }
        }
    }
}

/// The command shortened for messages.
pub fn short_cmd(cmd: &str) -> String {
    let one = cmd.replace('\n', " ");
    if one.chars().count() > 120 {
        format!("{}…", one.chars().take(120).collect::<String>())
    } else {
        one
    }
}

pub(super) async fn exec_remote(
    target: &Target,
    pool: &Arc<Pool>,
    session: Arc<Session>,
    script: &str,
    spec: &RunSpec,
    cap: usize,
) -> Result<Output, RemoteFail> {
    let started = Instant::now();
    let mut cmd = session.clone().arc_raw_command(script);
    cmd.stdin(if spec.stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = match cmd.spawn().await {
        Ok(c) => c,
        Err(openssh::Error::InvalidCommand) => {
            return Err(RemoteFail::Error(RalfError::invalid(format!(
                "{}: the command contains a NUL byte",
                target.name
            ))))
        }
        Err(e) => return Err(RemoteFail::NotStarted(error_chain(&e))),
    };
    let pid = Arc::new(AtomicI64::new(0));
    let mut guard = KillGuard {
        pid: pid.clone(),
        killer: Killer::Remote(session.clone()),
        armed: true,
        pool: Some(pool.clone()),
    };
    let mut capture = Capture::new(cap, pid.clone());
    let stdin = child.stdin().take();
    let mut out = child.stdout().take();
    let mut err = child.stderr().take();
    let res = match feed_and_drain(&mut capture, spec, stdin, &mut out, &mut err).await {
        Ok(r) => r,
        Err(d) => {
            guard.armed = false;
            // The pid marker comes after the login shell's startup files; give a slow
            // start a moment to report it, so the command can still be killed.
            let until = Instant::now() + Duration::from_secs(5);
            while pid.load(Ordering::SeqCst) <= 0
                && Instant::now() < until
                && (out.is_some() || err.is_some())
            {
                let _ = tokio::time::timeout(
                    Duration::from_millis(100),
                    capture.drain(&mut out, &mut err),
                )
                .await;
            }
            Killer::Remote(session.clone())
                .kill(pid.load(Ordering::SeqCst))
                .await;
            let _ = tokio::time::timeout(Duration::from_secs(2), capture.drain(&mut out, &mut err))
                .await;
            return Err(RemoteFail::Error(timeout_error(
                &target.name,
                spec,
                d,
                &capture,
            )));
        }
    };
    if let Err(e) = res {
        return Err(RemoteFail::Lost(e.to_string()));
    }
    let status = child.wait().await;
    guard.armed = false;
    let code = match status {
        Ok(s) => s.code().map(|c| c as i64).unwrap_or(-1),
        Err(openssh::Error::Remote(e)) if e.kind() == std::io::ErrorKind::NotFound => 127,
        Err(e) => return Err(RemoteFail::Lost(error_chain(&e))),
    };
    Ok(capture.output(code, started))
}

/// Feed the spec's stdin to the command and drain its stdout/stderr into `capture` until both
/// close, within the spec's timeout: `Ok(read result)`, or `Err(timeout)` when it ran out first
/// (the caller kills the command).
pub(super) async fn feed_and_drain<W, O, E>(
    capture: &mut Capture,
    spec: &RunSpec,
    stdin: Option<W>,
    out: &mut Option<O>,
    err: &mut Option<E>,
) -> Result<std::io::Result<()>, Duration>
where
    W: tokio::io::AsyncWrite + Unpin,
    O: AsyncRead + Unpin,
    E: AsyncRead + Unpin,
{
    let data = spec.stdin.clone();
    let feed = async move {
        if let (Some(data), Some(mut w)) = (data, stdin) {
            // A command that does not read its stdin closes the pipe: not an error.
            let _ = w.write_all(&data).await;
            let _ = w.shutdown().await;
        }
    };
    let io = async {
        let (_, r) = tokio::join!(feed, capture.drain(out, err));
        r
    };
    match spec.timeout {
        Some(d) => tokio::time::timeout(d, io).await.map_err(|_| d),
        None => Ok(io.await),
    }
}

pub(super) async fn exec_local(
    name: &str,
    script: &str,
    spec: &RunSpec,
    cap: usize,
) -> RResult<Output> {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .stdin(if spec.stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| RalfError::io(format!("{name}: cannot start /bin/sh: {e}")))?;
    let pid = Arc::new(AtomicI64::new(child.id().map(|p| p as i64).unwrap_or(0)));
    let mut guard = KillGuard {
        pid: pid.clone(),
        killer: Killer::Local,
        armed: true,
        pool: None,
    };
    let mut capture = Capture::new(cap, Arc::new(AtomicI64::new(0)));
    let stdin = child.stdin.take();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let res = match feed_and_drain(&mut capture, spec, stdin, &mut out, &mut err).await {
        Ok(r) => r,
        Err(d) => {
            guard.armed = false;
            Killer::Local.kill(pid.load(Ordering::SeqCst)).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), capture.drain(&mut out, &mut err))
                .await;
            let _ = child.wait().await;
            return Err(timeout_error(name, spec, d, &capture));
        }
    };
    res.map_err(|e| RalfError::io(format!("{name}: reading command output: {e}")))?;
    let status = child
        .wait()
        .await
        .map_err(|e| RalfError::io(format!("{name}: waiting for command: {e}")))?;
    guard.armed = false;
    use std::os::unix::process::ExitStatusExt;
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c as i64,
        (None, Some(sig)) => 128 + sig as i64,
        _ => -1,
    };
    Ok(capture.output(code, started))
}

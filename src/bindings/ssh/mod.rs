//! `ssh::` bindings: multiplexed SSH sessions to hosts from the config (or `user@host:port`), and
//! the same handle shape for the control machine (`ssh::local()`).

pub(crate) mod secret_sync;

use crate::bindings::{host, AtCall};
use crate::clients::ssh::{self as client, Handle, Output, RunSpec};
use crate::error::{RResult, RalfError, RhaiResult};
use crate::host::Host;
use crate::script::bridge::block_on;
use crate::script::decode::decode;
use crate::session::ssh::{handle_for, pool};
use crate::text::Secs;
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map, NativeCallContext};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A host handle in scripts (`SshHost`).
#[derive(Clone)]
pub(crate) struct SshHost {
    pub handle: Handle,
}

impl SshHost {
    pub fn name(&self) -> &str {
        self.handle.name()
    }
}

pub(crate) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<SshHost>("SshHost");
    let mut m = exported_module!(ssh_mod);
    m.combine_flatten(exported_module!(crate::bindings::inventory::inventory_mod));
    engine.register_static_module("ssh", m.into());
    engine.register_global_module(exported_module!(ssh_methods).into());
}

/// A host given as an `SshHost` or as a name.
pub(crate) fn handle_from_dynamic(h: &Host, v: &Dynamic, func: &str) -> RResult<Handle> {
    if let Some(s) = v.read_lock::<SshHost>() {
        return Ok(s.handle.clone());
    }
    if let Some(s) = v.read_lock::<rhai::ImmutableString>() {
        return handle_for(h, s.as_str());
    }
    // A host as `ssh::hosts()` lists it.
    if let Some(name) = v.read_lock::<Map>().and_then(|m| {
        m.get("name")
            .filter(|n| n.is_string())
            .map(|n| n.to_string())
    }) {
        return handle_for(h, &name);
    }
    Err(RalfError::invalid(format!(
        "{func}: expected a host (an SshHost from ssh::connect, a host map from ssh::hosts, or an alias / \"user@host:port\" string), got {}",
        v.type_name()
    )))
}

/// Options of `run` / `run_ok`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunOpts {
    /// Kill the command and raise `timeout` after this long.
    pub timeout: Option<Secs>,
    /// Text fed to the command's stdin.
    pub stdin: Option<String>,
    /// Environment variables set for the command.
    pub env: Option<BTreeMap<String, String>>,
    /// Working directory on the host.
    pub cwd: Option<String>,
    /// The command only reads (changes nothing), so it runs under `--dry-run` too. Default false:
    /// under `--dry-run` a command is recorded in the plan, not run.
    pub read_only: Option<bool>,
}

/// Options of `ssh::run_all`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunAllOpts {
    /// Hosts worked on at the same time (default 10).
    pub parallel: Option<i64>,
    /// Per-host command timeout.
    pub timeout: Option<Secs>,
    /// The command only reads, so it runs under `--dry-run` too (see `run`).
    pub read_only: Option<bool>,
}

/// Turn a command given as a string or an argv array into shell text.
pub(crate) fn command_text(cmd: &Dynamic, func: &str) -> RResult<String> {
    if let Some(s) = cmd.read_lock::<rhai::ImmutableString>() {
        if s.trim().is_empty() {
            return Err(RalfError::invalid(format!("{func}: the command is empty")));
        }
        return Ok(s.to_string());
    }
    if let Some(a) = cmd.read_lock::<Array>() {
        if a.is_empty() {
            return Err(RalfError::invalid(format!(
                "{func}: the argv array is empty"
            )));
        }
        let mut words = Vec::with_capacity(a.len());
        for (i, w) in a.iter().enumerate() {
            if w.is_string() || w.is_int() || w.is_float() || w.is_bool() {
                words.push(w.to_string());
            } else {
                return Err(RalfError::invalid(format!(
                    "{func}: argv[{i}] must be a string or number, got {}",
                    w.type_name()
                )));
            }
        }
        return Ok(crate::text::join_argv(&words));
    }
    Err(RalfError::invalid(format!(
        "{func}: the command must be a string or an array of words, got {}",
        cmd.type_name()
    )))
}

/// The command to run, and whether it only reads (`read_only`).
fn spec_from(cmd: &Dynamic, opts: &Map, func: &str) -> RResult<(RunSpec, bool)> {
    let o: RunOpts = decode(opts, func)?;
    let mut spec = RunSpec::new(command_text(cmd, func)?);
    spec.timeout = o.timeout.map(|s| s.0);
    spec.stdin = o.stdin.map(|s| s.into_bytes());
    spec.env = o.env.unwrap_or_default().into_iter().collect();
    spec.cwd = o.cwd;
    Ok((spec, o.read_only.unwrap_or(false)))
}

/// Under `--dry-run`, record a changing command and answer for it; `None`: run it.
fn dry_run_answer(h: &Host, host_name: &str, spec: &RunSpec, read_only: bool) -> Option<Map> {
    if read_only {
        return None;
    }
    h.dry_run(
        "ssh",
        format!("run on {host_name}: {}", client::short_cmd(&spec.cmd)),
    )
    .then(|| dry_result(host_name))
}

/// The `#{ ok, code, stdout, stderr, duration, truncated, host }` map.
pub(crate) fn output_map(host_name: &str, o: &Output) -> Map {
    let mut m = Map::new();
    m.insert("ok".into(), o.ok().into());
    m.insert("code".into(), o.code.into());
    m.insert("stdout".into(), o.stdout_text().into());
    m.insert("stderr".into(), o.stderr_text().into());
    m.insert("duration".into(), o.duration.as_secs_f64().into());
    m.insert("truncated".into(), o.truncated().into());
    m.insert("host".into(), host_name.into());
    m
}

fn dry_result(host_name: &str) -> Map {
    let mut m = Map::new();
    m.insert("ok".into(), true.into());
    m.insert("code".into(), 0_i64.into());
    m.insert("stdout".into(), "".into());
    m.insert("stderr".into(), "".into());
    m.insert("duration".into(), 0.0_f64.into());
    m.insert("truncated".into(), false.into());
    m.insert("host".into(), host_name.into());
    m.insert("dry_run".into(), true.into());
    m
}

/// Run on a handle through the bridge; on cancellation wait briefly for the remote kill to land.
pub(crate) fn exec_blocking(
    h: &Host,
    handle: &Handle,
    spec: &RunSpec,
    what: &str,
) -> RResult<Output> {
    // The command's own timeout is enforced by the client (which kills the remote process);
    // the bridge only adds cancellation.
    let r = block_on(h, what, None, handle.exec(spec));
    if let Err(e) = &r {
        if e.kind == crate::error::ErrorKind::Cancelled {
            let p = pool(h);
            h.rt.block_on(p.finish_kills(Duration::from_secs(5)));
        }
    }
    r
}

fn run_impl(
    ctx: &NativeCallContext,
    s: &SshHost,
    cmd: &Dynamic,
    opts: &Map,
    func: &str,
) -> RResult<Map> {
    let h = host(ctx)?;
    let (spec, read_only) = spec_from(cmd, opts, func)?;
    if let Some(dry) = dry_run_answer(&h, s.name(), &spec, read_only) {
        return Ok(dry);
    }
    let o = exec_blocking(&h, &s.handle, &spec, &format!("{func} on {}", s.name()))?;
    Ok(output_map(s.name(), &o))
}

fn run_ok_impl(ctx: &NativeCallContext, s: &SshHost, cmd: &Dynamic, opts: &Map) -> RResult<Map> {
    let h = host(ctx)?;
    let (spec, read_only) = spec_from(cmd, opts, "run_ok")?;
    if let Some(dry) = dry_run_answer(&h, s.name(), &spec, read_only) {
        return Ok(dry);
    }
    let o = exec_blocking(&h, &s.handle, &spec, &format!("run_ok on {}", s.name()))?;
    if !o.ok() {
        return Err(failed(s.name(), &spec.cmd, &o));
    }
    Ok(output_map(s.name(), &o))
}

/// `command_failed` naming host, command, exit code and the tail of stderr.
pub(crate) fn failed(host_name: &str, cmd: &str, o: &Output) -> RalfError {
    let tail = o.stderr_tail(10);
    let mut msg = format!(
        "{host_name}: command exited with code {}: {}",
        o.code,
        client::short_cmd(cmd)
    );
    if !tail.is_empty() {
        msg.push_str(&format!("\n{tail}"));
    }
    RalfError::command_failed(msg)
        .with("host", host_name)
        .with("code", o.code)
        .with("stderr_tail", tail)
        .with("stdout", o.stdout_text())
}

pub(crate) fn simple(
    h: &Host,
    s: &SshHost,
    cmd: String,
    stdin: Option<Vec<u8>>,
    what: &str,
) -> RResult<Output> {
    let mut spec = RunSpec::new(cmd);
    spec.stdin = stdin;
    spec.max_output = Some(usize::MAX);
    exec_blocking(h, &s.handle, &spec, what)
}

fn file_error(host_name: &str, action: &str, path: &str, o: &Output) -> RalfError {
    let tail = o.stderr_tail(3);
    let lower = tail.to_lowercase();
    let kind = if lower.contains("no such file") {
        crate::error::ErrorKind::NotFound
    } else if lower.contains("permission denied") || lower.contains("read-only") {
        crate::error::ErrorKind::Forbidden
    } else {
        crate::error::ErrorKind::CommandFailed
    };
    RalfError::new(
        kind,
        format!("{host_name}: cannot {action} {path}: {}", tail.trim()),
    )
    .with("host", host_name)
    .with("path", path)
    .with("code", o.code)
}

fn put_bytes(h: &Host, s: &SshHost, remote: &str, data: Vec<u8>, what: &str) -> RResult<()> {
    put_file(h, s, remote, data, what, false)
}

/// Write `data` to `remote` atomically; `private` creates it readable by its owner only (0600).
pub(crate) fn put_file(
    h: &Host,
    s: &SshHost,
    remote: &str,
    data: Vec<u8>,
    what: &str,
    private: bool,
) -> RResult<()> {
    if remote.is_empty() {
        return Err(RalfError::invalid(format!(
            "{what}: the remote path is empty"
        )));
    }
    // Write to a temporary name beside the target, then rename: readers never see half a file.
    let tmp = format!("{remote}.ralf-tmp-{:08x}", rand::random::<u32>());
    let cmd = format!(
        "{umask}cat > {t} && mv -f -- {t} {r} || {{ rc=$?; rm -f -- {t}; exit $rc; }}",
        umask = if private { "umask 077 && " } else { "" },
        t = crate::text::quote(&tmp),
        r = crate::text::quote(remote)
    );
    let o = simple(h, s, cmd, Some(data), &format!("{what} to {}", s.name()))?;
    if !o.ok() {
        return Err(file_error(s.name(), "write", remote, &o));
    }
    Ok(())
}

fn get_bytes(h: &Host, s: &SshHost, remote: &str, what: &str) -> RResult<Vec<u8>> {
    let o = simple(
        h,
        s,
        format!("cat -- {}", crate::text::quote(remote)),
        None,
        &format!("{what} from {}", s.name()),
    )?;
    if !o.ok() {
        return Err(file_error(s.name(), "read", remote, &o));
    }
    Ok(o.stdout)
}

#[export_module]
mod ssh_mod {
    use super::*;

    /// A handle on a host: an alias under `hosts:` in the config, or a `user@host:port` literal.
    /// The multiplexed master connection is opened on first use and reused by every later call
    /// on the same host during the run. `~/.ssh/config` applies unless `ssh.use_ssh_config: false`.
    ///
    /// ```rhai,no_run
    /// let h = ssh::connect("rtx1080");
    /// let r = h.run("uptime");
    /// print(r.stdout);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn connect(ctx: NativeCallContext, name: &str) -> RhaiResult<SshHost> {
        let h = host(&ctx)?;
        let handle = handle_for(&h, name).at(&ctx)?;
        Ok(SshHost { handle })
    }

    /// A handle on the control machine itself: same methods, commands run locally under `/bin/sh`.
    ///
    /// ```rhai
    /// let me = ssh::local();
    /// let r = me.run(["echo", "hello world"]);
    /// assert(r.ok && r.stdout == "hello world\n");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn local(ctx: NativeCallContext) -> RhaiResult<SshHost> {
        let h = host(&ctx)?;
        Ok(SshHost {
            handle: Handle::local(pool(&h).settings.max_output),
        })
    }

    /// Run one command on many hosts at once (default 10 at a time). Returns a map
    /// host -> result; a host that cannot be reached gets `#{ ok: false, error: #{ kind, message } }`
    /// instead of failing the others.
    ///
    /// ```rhai,no_run
    /// let rs = ssh::run_all(["vps", "thinkpad", "rtx1080"], "uptime");
    /// for name in rs.keys() { print(`${name}: ${rs[name].stdout}`); }
    /// ```
    #[rhai_fn(name = "run_all", return_raw)]
    pub fn run_all2(ctx: NativeCallContext, hosts: Array, cmd: Dynamic) -> RhaiResult<Map> {
        run_all_impl(&ctx, hosts, cmd, Map::new()).at(&ctx)
    }

    /// `ssh::run_all` on the configured hosts a selection picks (see `ssh::hosts`).
    ///
    /// ```rhai,no_run
    /// print(ssh::run_all(#{ label: "role=production" }, "uptime"));
    /// ```
    #[rhai_fn(name = "run_all", return_raw)]
    pub fn run_all_sel2(ctx: NativeCallContext, sel: Map, cmd: Dynamic) -> RhaiResult<Map> {
        run_all_sel(&ctx, sel, cmd, Map::new()).at(&ctx)
    }

    /// `ssh::run_all(selection, cmd, #{ parallel, timeout })`.
    ///
    /// ```rhai,no_run
    /// let rs = ssh::run_all(#{ label: "gpu" }, "nvidia-smi -L", #{ timeout: 10 });
    /// ```
    #[rhai_fn(name = "run_all", return_raw)]
    pub fn run_all_sel3(
        ctx: NativeCallContext,
        sel: Map,
        cmd: Dynamic,
        opts: Map,
    ) -> RhaiResult<Map> {
        run_all_sel(&ctx, sel, cmd, opts).at(&ctx)
    }

    /// `ssh::run_all` with options `#{ parallel, timeout }`.
    ///
    /// ```rhai,no_run
    /// let rs = ssh::run_all(["vps", "thinkpad"], ["df", "-h", "/"], #{ parallel: 2, timeout: 30 });
    /// let down = rs.values().filter(|r| !r.ok);
    /// ```
    #[rhai_fn(name = "run_all", return_raw)]
    pub fn run_all3(
        ctx: NativeCallContext,
        hosts: Array,
        cmd: Dynamic,
        opts: Map,
    ) -> RhaiResult<Map> {
        run_all_impl(&ctx, hosts, cmd, opts).at(&ctx)
    }
}

fn run_all_sel(ctx: &NativeCallContext, sel: Map, cmd: Dynamic, opts: Map) -> RResult<Map> {
    let h = host(ctx)?;
    let names = crate::bindings::inventory::select(h.cfg(), &sel, "ssh::run_all")?;
    run_all_impl(
        ctx,
        names.into_iter().map(Dynamic::from).collect(),
        cmd,
        opts,
    )
}

fn run_all_impl(ctx: &NativeCallContext, hosts: Array, cmd: Dynamic, opts: Map) -> RResult<Map> {
    let h = host(ctx)?;
    let o: RunAllOpts = decode(&opts, "ssh::run_all")?;
    let parallel = o.parallel.unwrap_or(10);
    if parallel < 1 {
        return Err(RalfError::invalid(format!(
            "ssh::run_all: parallel must be at least 1, got {parallel}"
        )));
    }
    let text = command_text(&cmd, "ssh::run_all")?;
    let mut handles = Vec::new();
    for v in &hosts {
        handles.push(handle_from_dynamic(&h, v, "ssh::run_all")?);
    }
    let mut out = Map::new();
    let mut todo = Vec::new();
    let mut spec = RunSpec::new(text);
    spec.timeout = o.timeout.map(|s| s.0);
    for hd in handles {
        match dry_run_answer(&h, hd.name(), &spec, o.read_only.unwrap_or(false)) {
            Some(dry) => {
                out.insert(hd.name().into(), dry.into());
            }
            None => todo.push(hd),
        }
    }
    if todo.is_empty() {
        return Ok(out);
    }
    let spec = Arc::new(spec);
    let fut = async move {
        use futures_util::stream::StreamExt;
        let results: Vec<(String, RResult<Output>)> = futures_util::stream::iter(todo)
            .map(|hd| {
                let spec = spec.clone();
                async move {
                    let r = hd.exec(&spec).await;
                    (hd.name().to_string(), r)
                }
            })
            .buffer_unordered(parallel as usize)
            .collect()
            .await;
        Ok(results)
    };
    let results = block_on(&h, "ssh::run_all", None, fut);
    let results = match results {
        Ok(r) => r,
        Err(e) => {
            if e.kind == crate::error::ErrorKind::Cancelled {
                let p = pool(&h);
                h.rt.block_on(p.finish_kills(Duration::from_secs(5)));
            }
            return Err(e);
        }
    };
    for (name, r) in results {
        let v = match r {
            Ok(o) => output_map(&name, &o),
            Err(e) => {
                let mut m = Map::new();
                m.insert("ok".into(), false.into());
                m.insert("code".into(), (-1_i64).into());
                m.insert("stdout".into(), "".into());
                m.insert("stderr".into(), "".into());
                m.insert("duration".into(), 0.0_f64.into());
                m.insert("truncated".into(), false.into());
                m.insert("host".into(), name.clone().into());
                m.insert("error".into(), e.to_dynamic());
                m
            }
        };
        out.insert(name.into(), v.into());
    }
    Ok(out)
}

#[export_module]
mod ssh_methods {
    use super::*;

    /// Run a shell command (string) or an argv array (each word quoted for the remote POSIX shell).
    /// Returns `#{ ok, code, stdout, stderr, duration, truncated, host }`: a non-zero exit is a
    /// value, not an error. Output beyond `ssh.max_output` bytes is cut with a note.
    ///
    /// ```rhai
    /// let r = ssh::local().run("echo hi; exit 3");
    /// assert(!r.ok && r.code == 3 && r.stdout == "hi\n");
    /// ```
    #[rhai_fn(global, name = "run", return_raw)]
    pub fn run1(ctx: NativeCallContext, s: &mut SshHost, cmd: Dynamic) -> RhaiResult<Map> {
        run_impl(&ctx, s, &cmd, &Map::new(), "run").at(&ctx)
    }

    /// `run` with options `#{ timeout, stdin, env, cwd, read_only }`. On timeout the remote command
    /// (its whole process group) is killed and a `timeout` error is raised. Under `--dry-run` a
    /// command is recorded, not run, unless `read_only: true` says it changes nothing.
    ///
    /// ```rhai
    /// let r = ssh::local().run("cat; echo $GREETING", #{ stdin: "x\n", env: #{ GREETING: "hello" }, cwd: "/", timeout: 10 });
    /// assert(r.stdout == "x\nhello\n");
    /// ```
    #[rhai_fn(global, name = "run", return_raw)]
    pub fn run2(
        ctx: NativeCallContext,
        s: &mut SshHost,
        cmd: Dynamic,
        opts: Map,
    ) -> RhaiResult<Map> {
        run_impl(&ctx, s, &cmd, &opts, "run").at(&ctx)
    }

    /// Like `run`, but a non-zero exit raises `command_failed` (details: `host`, `code`, `stderr_tail`).
    ///
    /// ```rhai
    /// let me = ssh::local();
    /// me.run_ok(["true"]);
    /// try { me.run_ok("echo boom >&2; exit 4"); } catch (e) { assert(e.kind == "command_failed" && e.details.code == 4); }
    /// ```
    #[rhai_fn(global, name = "run_ok", return_raw)]
    pub fn run_ok1(ctx: NativeCallContext, s: &mut SshHost, cmd: Dynamic) -> RhaiResult<Map> {
        run_ok_impl(&ctx, s, &cmd, &Map::new()).at(&ctx)
    }

    /// `run_ok` with options `#{ timeout, stdin, env, cwd, read_only }`.
    ///
    /// ```rhai
    /// let r = ssh::local().run_ok("pwd", #{ cwd: "/" });
    /// assert(r.stdout == "/\n");
    /// ```
    #[rhai_fn(global, name = "run_ok", return_raw)]
    pub fn run_ok2(
        ctx: NativeCallContext,
        s: &mut SshHost,
        cmd: Dynamic,
        opts: Map,
    ) -> RhaiResult<Map> {
        run_ok_impl(&ctx, s, &cmd, &opts).at(&ctx)
    }

    /// Copy a local file to the host (written to a temporary name, then renamed).
    ///
    /// ```rhai,no_run
    /// ssh::connect("vps").upload("stacks/traefik/.env", "/srv/traefik/.env");
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn upload(
        ctx: NativeCallContext,
        s: &mut SshHost,
        local: &str,
        remote: &str,
    ) -> RhaiResult<()> {
        let h = host(&ctx)?;
        if h.dry_run("ssh", format!("upload {local} to {}:{remote}", s.name())) {
            return Ok(());
        }
        let data = std::fs::read(local)
            .map_err(|e| {
                RalfError::from(e).context(format!("upload: cannot read local file {local}"))
            })
            .at(&ctx)?;
        put_bytes(&h, s, remote, data, "upload").at(&ctx)
    }

    /// Copy a file from the host to a local path.
    ///
    /// ```rhai,no_run
    /// ssh::connect("vps").download("/srv/traefik/acme.json", "backup/acme.json");
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn download(
        ctx: NativeCallContext,
        s: &mut SshHost,
        remote: &str,
        local: &str,
    ) -> RhaiResult<()> {
        let h = host(&ctx)?;
        let data = get_bytes(&h, s, remote, "download").at(&ctx)?;
        std::fs::write(local, data)
            .map_err(|e| {
                RalfError::from(e).context(format!("download: cannot write local file {local}"))
            })
            .at(&ctx)
    }

    /// Write text to a file on the host (atomically, via a temporary name).
    ///
    /// ```rhai
    /// let me = ssh::local();
    /// let p = `/tmp/ralf-doc-${time::unix()}.txt`;
    /// me.write(p, "hello\n");
    /// assert(me.read(p) == "hello\n");
    /// me.run(["rm", "-f", p]);
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn write(
        ctx: NativeCallContext,
        s: &mut SshHost,
        remote: &str,
        text: &str,
    ) -> RhaiResult<()> {
        let h = host(&ctx)?;
        if h.dry_run(
            "ssh",
            format!("write {} bytes to {}:{remote}", text.len(), s.name()),
        ) {
            return Ok(());
        }
        put_bytes(&h, s, remote, text.as_bytes().to_vec(), "write").at(&ctx)
    }

    /// Read a text file from the host (`not_found` when it does not exist).
    ///
    /// ```rhai
    /// let hosts = ssh::local().read("/etc/passwd");
    /// assert(hosts.len() > 0);
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn read(ctx: NativeCallContext, s: &mut SshHost, remote: &str) -> RhaiResult<String> {
        let h = host(&ctx)?;
        let data = get_bytes(&h, s, remote, "read").at(&ctx)?;
        Ok(String::from_utf8_lossy(&data).into_owned())
    }

    /// True when the host answers (master connection up and a trivial command runs); never throws
    /// for a host that is down.
    ///
    /// ```rhai
    /// assert(ssh::local().reachable());
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn reachable(ctx: NativeCallContext, s: &mut SshHost) -> RhaiResult<bool> {
        let h = host(&ctx)?;
        let handle = s.handle.clone();
        block_on(&h, "reachable", None, async move {
            Ok(handle.reachable().await)
        })
        .at(&ctx)
    }

    /// Free bytes on the filesystem holding `path` (from `df -Pk`).
    ///
    /// ```rhai
    /// let free = ssh::local().disk_free("/");
    /// assert(free > 0);
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn disk_free(ctx: NativeCallContext, s: &mut SshHost, path: &str) -> RhaiResult<i64> {
        let h = host(&ctx)?;
        let cmd = format!("df -Pk -- {}", crate::text::quote(path));
        let o = simple(&h, s, cmd, None, "disk_free").at(&ctx)?;
        if !o.ok() {
            return Err(file_error(s.name(), "measure free space of", path, &o)).at(&ctx);
        }
        let text = o.stdout_text();
        client::parse_df_available(&text)
            .ok_or_else(|| {
                RalfError::internal(format!(
                    "{}: cannot parse `df -Pk` output: {}",
                    s.name(),
                    text.trim()
                ))
            })
            .at(&ctx)
    }

    /// The name the host was opened with (alias, literal, or "local").
    ///
    /// ```rhai
    /// assert(ssh::local().name == "local");
    /// ```
    #[rhai_fn(global, get = "name", pure)]
    pub fn get_name(s: &mut SshHost) -> String {
        s.name().to_string()
    }

    /// `SshHost(name)`.
    ///
    /// ```rhai
    /// print(ssh::local());
    /// ```
    #[rhai_fn(global, name = "to_string", pure)]
    pub fn to_string(s: &mut SshHost) -> String {
        describe(s)
    }

    /// Same as `to_string`.
    ///
    /// ```rhai
    /// debug(ssh::local());
    /// ```
    #[rhai_fn(global, name = "to_debug", pure)]
    pub fn to_debug(s: &mut SshHost) -> String {
        describe(s)
    }
}

fn describe(s: &SshHost) -> String {
    match &s.handle.runner {
        client::Runner::Local { name, .. } if name == "local" => "SshHost(local)".to_string(),
        client::Runner::Local { name, .. } => format!("SshHost({name} -> local)"),
        client::Runner::Remote { target, .. } => {
            if target.name == target.destination_with_port() {
                format!("SshHost({})", target.name)
            } else {
                format!(
                    "SshHost({} -> {})",
                    target.name,
                    target.destination_with_port()
                )
            }
        }
    }
}

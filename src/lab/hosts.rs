//! Lab hosts for the SSH names of a release: `thinkpad` (staging), `rtx1080` (production) and `vps`
//! (the public VPS).
//!
//! When OpenSSH's `sshd` is installed, every host is a real `sshd` process on its own loopback
//! address (127.0.0.21..23, ephemeral port) with throwaway host and user keys in a temp dir, a
//! `known_hosts` file for strict host key checking, and the current user allowed by key only. All
//! three share this machine's filesystem and Docker engine, so each host gets its own directory as
//! its filesystem root for the app: sshd sets `RALF_HOST_ROOT=<labdir>/hosts/<name>` in every session
//! (`SetEnv`), and the app of a host lives at `$RALF_HOST_ROOT/srv/app` (`/srv/app` on a real host).
//!
//! Each app directory is a git repository with three tagged commits of a tiny app (`v1.0`, `v1.1`,
//! `v1.2`; checked out: `v1.1`, the release target: `v1.2`): a compose file running the local image
//! [`IMAGE`] (this machine's `/bin/sh` and a few tools in an empty image, see [`super::image`];
//! built once and reused by tag) with a 1 s healthcheck,
//! `app.sh` (writes `data/status`), `run-tests.sh` (the test suite run on staging) and `verify.sh`
//! (post-release verification). Untracked: `app.env` (the app's secrets, identical on every host, for
//! the secrets-in-sync check) and `.env` (a compose project name unique per lab and host). No
//! container runs until a script deploys one; dropping the lab removes the containers it started.
//!
//! Without `sshd` (or with `RALF_LAB_HOSTS=local`) the same three hosts use the local transport
//! (`lab.info.hosts.transport = "local"` with the reason): the aliases are configured with
//! `transport: local` and `env: { RALF_HOST_ROOT: <root> }`, so every command runs here under
//! `/bin/sh` in that host's directory tree, and the release flow behaves the same way.

use crate::error::{RResult, RalfError};
use serde_json::{json, Value};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The image every lab app runs.
pub const IMAGE: &str = "ralf-lab-app:2";
/// The commit checked out on every host when the lab starts.
pub const CURRENT: &str = "v1.1";
/// The release target.
pub const TARGET: &str = "v1.2";

/// (SSH name, role, loopback address).
pub const HOSTS: &[(&str, &str, &str)] = &[
    ("thinkpad", "staging", "127.0.0.21"),
    ("rtx1080", "production", "127.0.0.22"),
    ("vps", "vps", "127.0.0.23"),
];

/// Keeps the sshd processes, the host directories and the app containers; drop to remove them.
pub struct LabHosts {
    pub dir: PathBuf,
    children: Vec<Child>,
    projects: Vec<String>,
}

impl Drop for LabHosts {
    fn drop(&mut self) {
        for c in &mut self.children {
            kill_tree(c);
        }
        for p in &self.projects {
            remove_project(p);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Remove every container and the default network of a compose project (best effort).
fn remove_project(project: &str) {
    let Ok(o) = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=com.docker.compose.project={project}"))
        .stderr(Stdio::null())
        .output()
    else {
        return;
    };
    let ids: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v"])
            .args(&ids)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("docker")
            .args(["network", "rm"])
            .arg(format!("{project}_default"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn sshd_path() -> Option<PathBuf> {
    ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn sh(cmd: &mut Command, what: &str) -> RResult<String> {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| RalfError::io(format!("lab hosts: {what}: cannot start: {e}")))?;
    if !o.status.success() {
        return Err(RalfError::io(format!(
            "lab hosts: {what} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn keygen(path: &Path) -> RResult<()> {
    sh(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "ralf-lab", "-f"])
            .arg(path),
        "ssh-keygen",
    )
    .map(|_| ())
}

fn free_port(addr: &str) -> RResult<u16> {
    let l = TcpListener::bind((addr, 0))
        .map_err(|e| RalfError::io(format!("lab hosts: cannot bind {addr}: {e}")))?;
    Ok(l.local_addr().map_err(RalfError::from)?.port())
}

/// True when the docker CLI talks to a running daemon.
pub fn docker_ok() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Build [`IMAGE`] unless it exists (once per machine).
fn ensure_image(work: &Path) -> RResult<()> {
    super::image::ensure(IMAGE, work)
}

fn git(dir: &Path, args: &[&str]) -> RResult<String> {
    sh(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=ralf-lab", "-c", "user.email=lab@localhost"])
            .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
            .args(args)
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z"),
        &format!("git {}", args.first().copied().unwrap_or("")),
    )
}

/// The tracked files of one app version. `broken` selects a failure built into that commit.
pub fn app_files(version: &str, broken: Option<&str>) -> Vec<(&'static str, String)> {
    let health = if broken == Some("health") {
        // The new version cannot reach its database: the healthcheck fails.
        "error: cannot connect to database"
    } else {
        "ok"
    };
    let routes = if broken == Some("verify") { 0 } else { 3 };
    let compose = format!(
        "version: \"2.4\"\nservices:\n  app:\n    image: {IMAGE}\n    command: [\"sh\", \"/app/app.sh\"]\n    \
         env_file: [app.env]\n    environment:\n      APP_VERSION: \"{version}\"\n    volumes:\n      - ./:/app\n    \
         labels:\n      lab.ralf.version: \"{version}\"\n    stop_grace_period: 1s\n    healthcheck:\n      \
         test: [\"CMD\", \"sh\", \"-c\", \"grep -q '^ok ' /app/data/status\"]\n      interval: 1s\n      timeout: 2s\n      \
         retries: 2\n"
    );
    let app = format!(
        "#!/bin/sh\n# The lab app: reports its state in data/status once a second.\nmkdir -p /app/data\n\
         while true; do\n  echo \"{health} $APP_VERSION routes={routes}\" > /app/data/status.tmp\n  \
         mv /app/data/status.tmp /app/data/status\n  sleep 1\ndone\n"
    );
    let tests = if broken == Some("tests") {
        "#!/bin/sh\n# The app's test suite (run on staging after a deploy).\necho \"test_status ... ok\"\n\
         echo \"test_login ... FAILED (expected 200, got 500)\"\necho \"test_routes ... ok\"\necho \"2/3 PASS\"\nexit 1\n"
            .to_string()
    } else {
        "#!/bin/sh\n# The app's test suite (run on staging after a deploy).\ncd \"$(dirname \"$0\")\"\n\
         grep -q \"^ok $(cat VERSION) \" data/status || { echo \"test_status ... FAILED: $(cat data/status 2>&1)\"; exit 1; }\n\
         echo \"test_status ... ok\"\necho \"test_login ... ok\"\necho \"test_routes ... ok\"\necho \"3/3 PASS\"\n"
            .to_string()
    };
    let verify = "#!/bin/sh\n# Post-release verification: the app serves the deployed version with its routes.\n\
         cd \"$(dirname \"$0\")\"\nst=$(cat data/status 2>/dev/null)\ncase \"$st\" in\n  \
         \"ok $(cat VERSION) routes=0\"*) echo \"verify: version $(cat VERSION) serves no routes\"; exit 1;;\n  \
         \"ok $(cat VERSION) \"*) echo \"verify: $st\";;\n  *) echo \"verify: unexpected status: $st\"; exit 1;;\nesac\n"
        .to_string();
    vec![
        ("VERSION", format!("{version}\n")),
        ("docker-compose.yml", compose),
        ("app.sh", app),
        ("run-tests.sh", tests),
        ("verify.sh", verify),
        (".gitignore", "/data/\n/app.env\n/.env\n".to_string()),
    ]
}

fn write_version(repo: &Path, version: &str, broken: Option<&str>) -> RResult<()> {
    for (name, text) in app_files(version, broken) {
        let p = repo.join(name);
        std::fs::write(&p, text)?;
        if name.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

/// Create the app repository of one host.
fn make_repo(repo: &Path, project: &str, secret: &str) -> RResult<()> {
    std::fs::create_dir_all(repo)?;
    git(repo, &["init", "-q", "-b", "main"])?;
    for (v, msg) in [
        ("1.0", "app 1.0: first release"),
        ("1.1", "app 1.1: status page"),
        ("1.2", "app 1.2: routes"),
    ] {
        write_version(repo, v, None)?;
        git(repo, &["add", "-A"])?;
        git(repo, &["commit", "-q", "-m", msg])?;
        git(repo, &["tag", &format!("v{v}")])?;
    }
    git(repo, &["checkout", "-q", "--detach", CURRENT])?;
    std::fs::write(
        repo.join(".env"),
        format!("COMPOSE_PROJECT_NAME={project}\n"),
    )?;
    std::fs::write(repo.join("app.env"), app_env(secret))?;
    Ok(())
}

/// The app's secrets file.
fn app_env(secret: &str) -> String {
    format!("APP_SECRET={secret}\nAPP_DB_URL=postgres://app@db/app\n")
}

fn write_private(path: &Path, text: &str) -> RResult<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// `secrets-drift`: the host's `app.env` holds a stale secret.
pub fn drift_secrets(repo: &Path) -> RResult<()> {
    let stale = hex::encode(rand::random::<[u8; 12]>());
    std::fs::write(repo.join("app.env"), app_env(&format!("stale-{stale}")))?;
    Ok(())
}

/// Replace the target tag on one host with a commit that has the failure `broken` built in
/// (`health`, `tests` or `verify`), leaving the checked-out commit as it is.
pub fn break_target(repo: &Path, broken: &str) -> RResult<()> {
    let head = git(repo, &["rev-parse", "HEAD"])?;
    git(repo, &["checkout", "-q", "--detach", TARGET])?;
    write_version(repo, "1.2", Some(broken))?;
    git(repo, &["commit", "-q", "-am", "app 1.2: routes"])?;
    git(repo, &["tag", "-f", TARGET])?;
    git(repo, &["checkout", "-q", "--detach", &head])?;
    Ok(())
}

fn supports(sshd: &Path, dir: &Path, directive: &str) -> bool {
    let cfg = dir.join("probe.conf");
    if std::fs::write(
        &cfg,
        format!("HostKey {}\n{directive}\n", dir.join("hostkey").display()),
    )
    .is_err()
    {
        return false;
    }
    let ok = Command::new(sshd)
        .arg("-t")
        .arg("-f")
        .arg(&cfg)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let _ = std::fs::remove_file(cfg);
    ok
}

fn whoami() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "root".to_string())
}

/// Start one sshd; returns (child, port).
async fn spawn_sshd(
    sshd: &Path,
    dir: &Path,
    name: &str,
    addr: &str,
    root: &Path,
    extra: &str,
) -> RResult<(Child, u16)> {
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port(addr)?;
        let cfg = dir.join(format!("sshd_{name}.conf"));
        let log = dir.join(format!("sshd_{name}.log"));
        let text = format!(
            "Port {port}\nListenAddress {addr}\nHostKey {d}/hostkey\nPidFile {d}/sshd_{name}.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
             Subsystem sftp internal-sftp\nMaxSessions 40\nMaxStartups 200\nLogLevel INFO\n\
             SetEnv RALF_HOST_ROOT={root}\n{extra}",
            d = dir.display(),
            root = root.display()
        );
        std::fs::write(&cfg, &text)?;
        let logf = std::fs::File::create(&log)?;
        let mut cmd = Command::new(sshd);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec. The sshd
        // dies with the thread that started the lab even when that process is killed with SIGKILL
        // (e.g. `ralf-sh lab serve` stopped by a test), instead of lingering on its port.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .map_err(|e| RalfError::io(format!("lab hosts: cannot start sshd: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect((addr, port)).is_ok() {
                return Ok((child, port));
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        last = std::fs::read_to_string(&log).unwrap_or_default();
    }
    Err(RalfError::unavailable(format!(
        "lab hosts: sshd for {name} did not start: {}",
        last.trim()
    )))
}

fn unique_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}x{}x{:04x}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        rand::random::<u16>()
    )
}

/// Remove host directories left by labs whose process is gone (e.g. `lab serve` killed with
/// SIGKILL, which skips the cleanup on drop). The directory name starts with the owner's pid.
fn remove_stale_dirs() {
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix("rlh")
            .and_then(|r| r.split('x').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let owned = e
            .metadata()
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                // SAFETY: getuid has no preconditions.
                m.is_dir() && m.uid() == unsafe { libc::getuid() }
            })
            .unwrap_or(false);
        if owned && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Start the lab hosts and describe them in `lab.info["hosts"]`.
///
/// Transport: real `sshd` processes when OpenSSH's server is installed, else (or with
/// `RALF_LAB_HOSTS=local`) the local transport: the same host directories, repositories and compose
/// projects, with the aliases configured as `transport: local` and `RALF_HOST_ROOT` in their `env`.
pub async fn start(lab: &mut super::Lab) -> RResult<()> {
    let sshd = match std::env::var("RALF_LAB_HOSTS").ok().as_deref() {
        None | Some("") | Some("sshd") => match sshd_path() {
            Some(p) => Ok(p),
            None => Err("OpenSSH server (sshd) is not installed".to_string()),
        },
        Some("local") => Err("RALF_LAB_HOSTS=local".to_string()),
        Some(other) => {
            return Err(RalfError::config(format!(
                "RALF_LAB_HOSTS must be `sshd` or `local`, got `{other}`"
            )))
        }
    };
    remove_stale_dirs();
    let id = unique_id();
    let dir = std::env::temp_dir().join(format!("rlh{id}"));
    std::fs::create_dir_all(dir.join("c"))?;
    let mut guard = LabHosts {
        dir: dir.clone(),
        children: Vec::new(),
        projects: Vec::new(),
    };
    let docker = docker_ok();
    let image = if docker {
        match ensure_image(&dir) {
            Ok(()) => Value::String(IMAGE.into()),
            Err(e) => {
                tracing::warn!(target: "ralf::lab", "{e}");
                Value::Null
            }
        }
    } else {
        Value::Null
    };
    let secret = hex::encode(rand::random::<[u8; 12]>());
    // The source of truth of the app's secrets on the control machine (mode 0600), from which a
    // release synchronises every host's `app.env` (the config's secret `app_env`).
    let source = dir.join("secrets").join("app.env");
    write_private(&source, &app_env(&secret))?;
    let user = whoami();
    let mut hosts = serde_json::Map::new();
    for (name, role, addr) in HOSTS {
        let root = dir.join("hosts").join(name);
        let repo = root.join("srv/app");
        let project = format!("rl{}{}", id.replace('x', ""), name);
        make_repo(&repo, &project, &secret)?;
        guard.projects.push(project.clone());
        hosts.insert(
            name.to_string(),
            json!({
                "role": role,
                "address": addr,
                "user": user,
                "root": root,
                "app_dir": repo,
                "compose_project": project,
            }),
        );
    }
    let mut info = json!({
        "dir": dir,
        "docker": docker,
        "image": image,
        "current": CURRENT,
        "target": TARGET,
    });
    match sshd {
        Ok(sshd) => {
            keygen(&dir.join("hostkey"))?;
            keygen(&dir.join("id_ed25519"))?;
            std::fs::copy(dir.join("id_ed25519.pub"), dir.join("authorized_keys"))?;
            // SAFETY: getuid has no preconditions.
            if unsafe { libc::getuid() } == 0 {
                // A root-run sshd needs its privilege separation directory.
                let _ = std::fs::create_dir_all("/run/sshd");
            }
            let extra = if supports(&sshd, &dir, "PerSourcePenalties no") {
                "PerSourcePenalties no\n"
            } else {
                ""
            };
            let hostkey = std::fs::read_to_string(dir.join("hostkey.pub"))?;
            let hostkey: String = hostkey
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            let mut known = String::new();
            for (name, _, addr) in HOSTS {
                let root = dir.join("hosts").join(name);
                let (child, port) = spawn_sshd(&sshd, &dir, name, addr, &root, extra).await?;
                guard.children.push(child);
                known.push_str(&format!("[{addr}]:{port} {hostkey}\n"));
                let h = &mut hosts[*name];
                h["port"] = json!(port);
                h["identity_file"] = json!(dir.join("id_ed25519"));
            }
            std::fs::write(dir.join("known_hosts"), known)?;
            info["transport"] = json!("sshd");
            info["known_hosts_file"] = json!(dir.join("known_hosts"));
            info["control_dir"] = json!(dir.join("c"));
        }
        Err(reason) => {
            tracing::debug!(target: "ralf::lab", "lab hosts use the local transport ({reason})");
            info["transport"] = json!("local");
            info["reason"] = json!(reason);
        }
    }
    info["hosts"] = Value::Object(hosts);
    info["secrets_file"] = json!(source);
    lab.info.insert("hosts".into(), info);
    lab.guards.push(Box::new(guard));
    Ok(())
}

/// The `hosts:`, `ssh:` and `secrets:` (the app's secrets source, `app_env`) config sections for the
/// lab hosts described by `info` (`lab.info["hosts"]`).
pub fn config_yaml(info: &Value) -> String {
    let Some(hosts) = info.get("hosts").and_then(|h| h.as_object()) else {
        return String::new();
    };
    let s = |v: &Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let local = s(info, "transport").as_deref() == Some("local");
    let mut y = String::from("hosts:\n");
    for (name, h) in hosts {
        y.push_str(&format!("  {name}:\n"));
        if local {
            y.push_str(&format!(
                "    transport: local\n    env:\n      RALF_HOST_ROOT: {:?}\n",
                s(h, "root").unwrap_or_default()
            ));
        } else {
            y.push_str(&format!(
                "    address: {:?}\n    port: {}\n    user: {:?}\n    identity_file: {:?}\n",
                s(h, "address").unwrap_or_default(),
                h.get("port").and_then(|p| p.as_u64()).unwrap_or(22),
                s(h, "user").unwrap_or_default(),
                s(h, "identity_file").unwrap_or_default(),
            ));
        }
        y.push_str(&format!(
            "    labels:\n      role: {:?}\n      app_dir: {:?}\n",
            s(h, "role").unwrap_or_default(),
            s(h, "app_dir").unwrap_or_default(),
        ));
    }
    y.push_str("ssh:\n  known_hosts: strict\n  use_ssh_config: false\n  connect_timeout: 5\n  keepalive: 5\n");
    if let Some(k) = s(info, "known_hosts_file") {
        y.push_str(&format!("  known_hosts_file: {k:?}\n"));
    }
    if let Some(c) = s(info, "control_dir") {
        y.push_str(&format!("  control_dir: {c:?}\n"));
    }
    if let Some(f) = s(info, "secrets_file") {
        y.push_str(&format!("secrets:\n  app_env:\n    file: {f:?}\n"));
    }
    y
}

/// The app directory of lab host `name`, from `lab.info["hosts"]`.
pub fn app_dir(info: &Value, name: &str) -> Option<PathBuf> {
    info.get("hosts")?
        .get(name)?
        .get("app_dir")?
        .as_str()
        .map(PathBuf::from)
}

/// Kill a child process and everything below it (sshd forks per connection), then reap it.
pub fn kill_tree(c: &mut Child) {
    let kids = descendants(c.id());
    let _ = c.kill();
    for k in kids {
        // SAFETY: plain kill(2) of a pid we found below our own child.
        unsafe {
            libc::kill(k as i32, libc::SIGKILL);
        }
    }
    let _ = c.wait();
}

/// Every descendant pid of `pid` (from /proc).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
                if let Some(close) = stat.rfind(')') {
                    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
                    if let Some(pp) = fields.get(1).and_then(|s| s.parse::<u32>().ok()) {
                        parent_of.push((p, pp));
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(cur) = frontier.pop() {
        for (p, pp) in &parent_of {
            if *pp == cur && !out.contains(p) {
                out.push(*p);
                frontier.push(*p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_yaml_parses() {
        let info = json!({
            "known_hosts_file": "/tmp/kh",
            "control_dir": "/tmp/c",
            "hosts": {"vps": {"address": "127.0.0.23", "port": 2222, "user": "root",
                              "identity_file": "/tmp/id", "role": "vps", "app_dir": "/tmp/h/vps/srv/app"}}
        });
        let y = config_yaml(&info);
        let c = crate::config::parse(&y, Path::new("lab.yaml")).expect("parses");
        let h = &c.hosts["vps"];
        assert_eq!(h.port, Some(2222));
        assert_eq!(h.labels["role"], "vps");
        assert_eq!(
            c.ssh.known_hosts_file.as_deref(),
            Some(Path::new("/tmp/kh"))
        );
        assert!(!c.ssh.use_ssh_config);
    }

    #[test]
    fn broken_variants_differ() {
        let good = app_files("1.2", None);
        let bad = app_files("1.2", Some("tests"));
        let get = |v: &Vec<(&str, String)>, n: &str| {
            v.iter().find(|(k, _)| *k == n).map(|(_, t)| t.clone())
        };
        assert_ne!(get(&good, "run-tests.sh"), get(&bad, "run-tests.sh"));
        assert_eq!(
            get(&good, "docker-compose.yml"),
            get(&bad, "docker-compose.yml")
        );
        assert!(get(&app_files("1.2", Some("health")), "app.sh")
            .unwrap()
            .contains("error:"));
    }
}

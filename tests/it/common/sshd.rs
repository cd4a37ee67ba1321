//! Test harness: several real OpenSSH `sshd` processes on 127.0.0.x with throwaway host and user
//! keys in a temp dir, plus a ralf config whose `hosts:` point at them, and an in-process engine.
#![allow(dead_code)]

use ralf_sh::error::{from_rhai, RalfError};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Sshd {
    pub name: String,
    pub addr: String,
    pub port: u16,
    pub log: PathBuf,
    child: Option<Child>,
}

pub struct SshLab {
    pub dir: tempfile::TempDir,
    pub hosts: Vec<Sshd>,
    pub user: String,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub config_path: PathBuf,
    /// A port on 127.0.0.9 that nothing listens on (alias `dead`).
    pub dead_port: u16,
}

fn sshd_path() -> Option<PathBuf> {
    for p in ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"] {
        if Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    None
}

/// True when sshd and ssh-keygen exist; otherwise tests print a loud SKIP.
pub fn available() -> bool {
    let ok = sshd_path().is_some()
        && Command::new("ssh-keygen")
            .arg("-?")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
    if !ok {
        crate::common::skip_suite(
            "ssh tests",
            "the OpenSSH server (sshd) is not installed",
            "apt-get install openssh-server openssh-client",
        );
    }
    ok
}

fn free_port(addr: &str) -> u16 {
    let l = TcpListener::bind((addr, 0)).expect("bind probe port");
    l.local_addr().unwrap().port()
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ralf-test", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .expect("ssh-keygen");
    assert!(st.success(), "ssh-keygen failed");
}

fn whoami() -> String {
    let o = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

impl SshLab {
    /// Start `n` sshd hosts named h0..h{n-1}.
    pub fn start(n: usize) -> SshLab {
        Self::start_as(n, None)
    }

    /// Start `n` hosts; log in as `user` (default: the current user). Another user must be able to
    /// read the key files, so the lab dir is opened up (StrictModes is off).
    pub fn start_as(n: usize, user: Option<&str>) -> SshLab {
        let dir = tempfile::Builder::new()
            .prefix("rs")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let d = dir.path().to_path_buf();
        keygen(&d.join("hostkey"));
        keygen(&d.join("hostkey2"));
        keygen(&d.join("id_ed25519"));
        std::fs::copy(d.join("id_ed25519.pub"), d.join("authorized_keys")).unwrap();
        if unsafe { libc::getuid() } == 0 {
            // Root-run sshd needs its privilege separation directory.
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        std::fs::create_dir_all(d.join("c")).unwrap();
        if user.is_some() {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755));
            let _ = std::fs::set_permissions(
                d.join("authorized_keys"),
                std::fs::Permissions::from_mode(0o644),
            );
        }
        let mut lab = SshLab {
            known_hosts: d.join("known_hosts"),
            key: d.join("id_ed25519"),
            config_path: d.join("ralf.yaml"),
            user: user.map(str::to_string).unwrap_or_else(whoami),
            hosts: Vec::new(),
            dead_port: free_port("127.0.0.9"),
            dir,
        };
        for i in 0..n {
            let addr = format!("127.0.0.{}", 10 + i);
            lab.spawn(&format!("h{i}"), &addr, "hostkey");
        }
        lab.write_known_hosts();
        lab.write_config("");
        lab
    }

    /// Start one more sshd (e.g. with a different host key) and return its index.
    pub fn spawn(&mut self, name: &str, addr: &str, hostkey: &str) -> usize {
        let d = self.dir.path().to_path_buf();
        let sshd = sshd_path().expect("sshd");
        let mut last_err = String::new();
        for _attempt in 0..5 {
            let port = free_port(addr);
            let cfg = d.join(format!("sshd_{name}.conf"));
            let log = d.join(format!("sshd_{name}.log"));
            let mut text = format!(
                "Port {port}\nListenAddress {addr}\nHostKey {hk}\nPidFile {d}/sshd_{name}.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\nMaxSessions 40\n\
                 MaxStartups 200\nLogLevel INFO\n",
                hk = d.join(hostkey).display(),
                d = d.display()
            );
            if supports_per_source_penalties(&sshd, &d) {
                text.push_str("PerSourcePenalties no\n");
            }
            std::fs::write(&cfg, &text).unwrap();
            let t = Command::new(&sshd)
                .arg("-t")
                .arg("-f")
                .arg(&cfg)
                .output()
                .unwrap();
            assert!(
                t.status.success(),
                "sshd -t rejected the config: {}",
                String::from_utf8_lossy(&t.stderr)
            );
            let logf = std::fs::File::create(&log).unwrap();
            let child = Command::new(&sshd)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(logf)
                .spawn()
                .expect("spawn sshd");
            let mut s = Sshd {
                name: name.to_string(),
                addr: addr.to_string(),
                port,
                log,
                child: Some(child),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut up = false;
            while Instant::now() < deadline {
                if TcpStream::connect((addr, port)).is_ok() {
                    up = true;
                    break;
                }
                if let Some(c) = s.child.as_mut() {
                    if let Ok(Some(_)) = c.try_wait() {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if up {
                self.hosts.push(s);
                return self.hosts.len() - 1;
            }
            last_err = std::fs::read_to_string(&s.log).unwrap_or_default();
            s.kill();
        }
        panic!("sshd {name} did not start: {last_err}");
    }

    fn host_pub(&self, hostkey: &str) -> String {
        let p = std::fs::read_to_string(self.dir.path().join(format!("{hostkey}.pub"))).unwrap();
        let mut it = p.split_whitespace();
        format!("{} {}", it.next().unwrap(), it.next().unwrap())
    }

    /// known_hosts with the (first) host key for every host.
    pub fn write_known_hosts(&self) {
        let key = self.host_pub("hostkey");
        let mut f = std::fs::File::create(&self.known_hosts).unwrap();
        for h in &self.hosts {
            writeln!(f, "[{}]:{} {}", h.addr, h.port, key).unwrap();
        }
    }

    pub fn host_yaml(&self, name: &str, addr: &str, port: u16) -> String {
        format!(
            "  {name}:\n    address: \"{addr}\"\n    port: {port}\n    user: {u}\n    identity_file: {k}\n",
            u = self.user,
            k = self.key.display()
        )
    }

    /// Write the ralf config (hosts h*, `dead`, plus `extra_ssh` lines under `ssh:`).
    pub fn write_config(&self, extra_ssh: &str) {
        let mut y = String::from("hosts:\n");
        for h in &self.hosts {
            y.push_str(&self.host_yaml(&h.name, &h.addr, h.port));
        }
        y.push_str(&self.host_yaml("dead", "127.0.0.9", self.dead_port));
        // Tests build their images locally; nothing may ever be pulled.
        y.push_str("docker:\n  pull: never\n");
        y.push_str(&format!(
            "ssh:\n  known_hosts_file: {}\n  use_ssh_config: false\n  connect_timeout: 3\n  keepalive: 2\n  control_dir: {}\n{extra_ssh}",
            self.known_hosts.display(),
            self.dir.path().join("c").display()
        ));
        std::fs::write(&self.config_path, y).unwrap();
    }

    pub fn config(&self) -> ralf_sh::config::LoadedConfig {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        ralf_sh::config::LoadedConfig {
            config: ralf_sh::config::parse(&text, &self.config_path).expect("config parses"),
            path: Some(self.config_path.clone()),
        }
    }

    /// How many logins this host accepted (one per master connection).
    pub fn logins(&self, i: usize) -> usize {
        std::fs::read_to_string(&self.hosts[i].log)
            .unwrap_or_default()
            .matches("Accepted publickey")
            .count()
    }

    /// Kill host i: the listening sshd and every process below it (its sessions).
    pub fn kill(&mut self, i: usize) {
        self.hosts[i].kill();
    }

    pub fn engine(&self) -> TestEngine {
        TestEngine::new(self.config())
    }
}

fn supports_per_source_penalties(sshd: &Path, d: &Path) -> bool {
    let cfg = d.join("probe.conf");
    std::fs::write(
        &cfg,
        format!(
            "HostKey {}\nPerSourcePenalties no\n",
            d.join("hostkey").display()
        ),
    )
    .unwrap();
    Command::new(sshd)
        .arg("-t")
        .arg("-f")
        .arg(&cfg)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

impl Sshd {
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            ralf_sh::lab::hosts::kill_tree(&mut c);
        }
    }
}

impl Drop for SshLab {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            h.kill();
        }
    }
}

/// An engine with every binding, on its own runtime, for a given config.
pub struct TestEngine {
    pub rt: tokio::runtime::Runtime,
    pub host: Arc<ralf_sh::host::Host>,
    pub se: ralf_sh::engine::ScriptEngine,
}

impl TestEngine {
    pub fn new(config: ralf_sh::config::LoadedConfig) -> TestEngine {
        Self::with_opts(config, ralf_sh::host::HostOptions::default())
    }

    pub fn with_opts(
        config: ralf_sh::config::LoadedConfig,
        opts: ralf_sh::host::HostOptions,
    ) -> TestEngine {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let host = ralf_sh::host::Host::new(config, rt.handle().clone(), opts);
        let mut se = ralf_sh::engine::build(&host);
        // `assert` for script tests (the same semantics as the core global, in case it is absent).
        se.engine.register_fn(
            "assert",
            |c: bool| -> Result<(), Box<rhai::EvalAltResult>> {
                if c {
                    Ok(())
                } else {
                    Err("assertion failed".into())
                }
            },
        );
        se.engine.register_fn(
            "assert",
            |c: bool, m: &str| -> Result<(), Box<rhai::EvalAltResult>> {
                if c {
                    Ok(())
                } else {
                    Err(format!("assertion failed: {m}").into())
                }
            },
        );
        TestEngine { rt, host, se }
    }

    /// Evaluate a script; errors come back as the RalfError a script would catch.
    pub fn eval(&self, script: &str) -> Result<rhai::Dynamic, RalfError> {
        self.se
            .engine
            .eval::<rhai::Dynamic>(script)
            .map_err(|e| from_rhai(&e))
    }

    pub fn eval_ok(&self, script: &str) -> rhai::Dynamic {
        match self.eval(script) {
            Ok(v) => v,
            Err(e) => panic!("script failed: {e}\n--- script ---\n{script}"),
        }
    }

    /// Run every `fn test_*()` in a Rhai file; returns (passed, failures).
    pub fn run_rhai_tests(&self, path: &Path) -> (usize, Vec<String>) {
        let text = std::fs::read_to_string(path).unwrap();
        let ast = self
            .se
            .engine
            .compile(&text)
            .expect("rhai test file compiles");
        let names: Vec<String> = ast
            .iter_functions()
            .filter(|f| f.name.starts_with("test_") && f.params.is_empty())
            .map(|f| f.name.to_string())
            .collect();
        assert!(
            !names.is_empty(),
            "no test_* functions in {}",
            path.display()
        );
        let mut passed = 0;
        let mut fails = Vec::new();
        for n in names {
            let mut scope = rhai::Scope::new();
            match self
                .se
                .engine
                .call_fn::<rhai::Dynamic>(&mut scope, &ast, &n, ())
            {
                Ok(_) => passed += 1,
                Err(e) => fails.push(format!("{n}: {}", from_rhai(&e))),
            }
        }
        (passed, fails)
    }
}

//! ssh benchmarks against real sshd hosts on 127.0.0.x (harness = false).
//!
//! 1. `uptime` on 20 hosts: `ssh::run_all` (cold: 20 new masters) vs `ansible all -m raw -a uptime -f 20`
//!    (ansible-core is installed into target/bench-ansible with pip when `ansible` is not on PATH).
//! 2. 100 sequential commands on one host: the multiplexed session vs 100 fresh `ssh` invocations.
//!
//! Logs in as `ralfbench` (login shell /bin/sh, created when running as root) so a heavy root
//! `~/.bashrc` does not hide what is measured. Prints rows of the benchmark table.

#[path = "../tests/it/common/mod.rs"]
mod common;

use common::sshd;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BENCH_USER: &str = "ralfbench";
const ROUNDS: usize = 3;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn row(name: &str, ours: Duration, base: Duration, target: f64) {
    let ratio = ours.as_secs_f64() / base.as_secs_f64();
    let verdict = if ratio <= target { "" } else { " (missed)" };
    println!(
        "| ssh: {name} | {} | {} (baseline) | {ratio:.3}x{verdict} | <= {target}x |",
        ms(ours),
        ms(base)
    );
}

/// The bench user with a plain /bin/sh login shell (created when we are root).
fn bench_user() -> Option<String> {
    let exists = Command::new("id")
        .arg(BENCH_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if exists {
        return Some(BENCH_USER.into());
    }
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    // `*` (not `!`): sshd with UsePAM no refuses accounts whose password field says locked.
    let ok = Command::new("useradd")
        .args(["-m", "-s", "/bin/sh", "-p", "*", BENCH_USER])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then(|| BENCH_USER.to_string())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// `ansible` from PATH, else from a venv under target/ (installing ansible-core with pip).
fn ansible() -> Result<PathBuf, String> {
    if let Ok(o) = Command::new("sh")
        .args(["-c", "command -v ansible"])
        .output()
    {
        let p = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if o.status.success() && !p.is_empty() {
            return Ok(PathBuf::from(p));
        }
    }
    let venv = target_dir().join("bench-ansible");
    let bin = venv.join("bin/ansible");
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!("installing ansible-core into {} ...", venv.display());
    let st = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .map_err(|e| format!("python3 -m venv: {e}"))?;
    if !st.success() {
        return Err("python3 -m venv failed".into());
    }
    let o = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "ansible-core"])
        .output()
        .map_err(|e| format!("pip: {e}"))?;
    if !o.status.success() || !bin.exists() {
        return Err(format!(
            "pip install ansible-core failed: {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    Ok(bin)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !sshd::available() {
        println!("| ssh: benchmarks | skipped: sshd not installed | | | |");
        return;
    }
    let user = bench_user();
    if user.is_none() {
        eprintln!("note: cannot create {BENCH_USER}; logging in as the current user");
    }
    let lab = sshd::SshLab::start_as(20, user.as_deref());
    let names: Vec<String> = (0..20).map(|i| format!("\"h{i}\"")).collect();
    let hosts = names.join(", ");

    // 1a. ssh::run_all, cold (new engine = new masters each round)
    let mut ours = Vec::new();
    for _ in 0..ROUNDS {
        let e = lab.engine();
        let script = format!(
            "let rs = ssh::run_all([{hosts}], \"uptime\", #{{ parallel: 20 }}); \
             for k in rs.keys() {{ if !rs[k].ok {{ throw `${{k}}: ${{rs[k]}}`; }} }} rs.len()"
        );
        let t = Instant::now();
        let n = e.eval_ok(&script).as_int().unwrap();
        ours.push(t.elapsed());
        assert_eq!(n, 20);
        drop(e);
    }
    let ours = median(ours);

    // 1a'. ssh::run_all with the masters already open (later calls in the same run)
    let e = lab.engine();
    let script = format!(
        "ssh::run_all([{hosts}], \"uptime\", #{{ parallel: 20 }}).values().filter(|r| r.ok).len()"
    );
    assert_eq!(e.eval_ok(&script).as_int().unwrap(), 20);
    let mut warm = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let n = e.eval_ok(&script).as_int().unwrap();
        warm.push(t.elapsed());
        assert_eq!(n, 20);
    }
    let warm = median(warm);
    drop(e);

    // 1b. ansible raw
    match ansible() {
        Err(why) => println!(
            "| ssh: uptime on 20 hosts (ssh::run_all vs ansible -m raw -f 20) | {} | ansible-core could not be installed: {why} | | <= 0.2x |",
            ms(ours)
        ),
        Ok(ansible) => {
            let inv = lab.dir.path().join("inventory.ini");
            let mut text = String::from("[all]\n");
            for h in &lab.hosts {
                text.push_str(&format!("{} ansible_host={} ansible_port={}\n", h.name, h.addr, h.port));
            }
            text.push_str(&format!(
                "[all:vars]\nansible_user={}\nansible_ssh_private_key_file={}\nansible_ssh_common_args='-F /dev/null -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes'\n",
                lab.user,
                lab.key.display(),
                lab.known_hosts.display()
            ));
            std::fs::write(&inv, text).unwrap();
            let mut base = Vec::new();
            let mut failed = None;
            for i in 0..ROUNDS {
                // a fresh control-path dir per round: cold connections, like ours
                let cp = lab.dir.path().join(format!("a{i}"));
                std::fs::create_dir_all(&cp).unwrap();
                let t = Instant::now();
                let o = Command::new(&ansible)
                    .args(["all", "-i"])
                    .arg(&inv)
                    .args(["-m", "raw", "-a", "uptime", "-f", "20"])
                    .env("ANSIBLE_SSH_CONTROL_PATH_DIR", &cp)
                    .env("ANSIBLE_HOST_KEY_CHECKING", "True")
                    .env("ANSIBLE_LOCAL_TEMP", lab.dir.path().join("atmp"))
                    .env("ANSIBLE_NOCOLOR", "1")
                    .output()
                    .expect("run ansible");
                base.push(t.elapsed());
                if !o.status.success() {
                    failed = Some(String::from_utf8_lossy(&o.stdout).lines().take(3).collect::<Vec<_>>().join(" / "));
                    break;
                }
            }
            match failed {
                Some(f) => println!(
                    "| ssh: uptime on 20 hosts (ssh::run_all vs ansible -m raw -f 20) | {} | ansible failed: {f} | | <= 0.2x |",
                    ms(ours)
                ),
                None => {
                    let base = median(base);
                    row("uptime on 20 hosts, cold: 20 new masters (ssh::run_all vs ansible -m raw -f 20)", ours, base, 0.2);
                    row("uptime on 20 hosts, masters open (ssh::run_all vs ansible -m raw -f 20)", warm, base, 0.2);
                }
            }
        }
    }

    // 2a. 100 sequential commands through one multiplexed master (opened before timing)
    let e = lab.engine();
    let _ = e.eval_ok("let h = ssh::connect(\"h0\"); h.run_ok(\"true\");");
    let mut ours = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let _ = e.eval_ok("let h = ssh::connect(\"h0\"); for i in 0..100 { h.run_ok(\"true\"); }");
        ours.push(t.elapsed());
    }
    let ours = median(ours);
    drop(e);

    // 2b. 100 fresh ssh invocations
    let h0 = &lab.hosts[0];
    let mut base = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..100 {
            let st = Command::new("ssh")
                .args([
                    "-F",
                    "/dev/null",
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "StrictHostKeyChecking=yes",
                ])
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", lab.known_hosts.display()))
                .arg("-i")
                .arg(&lab.key)
                .arg("-p")
                .arg(h0.port.to_string())
                .arg(format!("{}@{}", lab.user, h0.addr))
                .arg("true")
                .stdin(Stdio::null())
                .status()
                .expect("ssh");
            assert!(st.success(), "fresh ssh failed");
        }
        base.push(t.elapsed());
    }
    row(
        "100 sequential commands (mux session vs 100 fresh ssh)",
        ours,
        median(base),
        0.1,
    );
}

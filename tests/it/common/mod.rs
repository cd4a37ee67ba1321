//! Shared helpers for the integration tests. Domain-specific harnesses live beside this file
//! (e.g. `tests/it/common/sshd.rs`) and are included by the tests that need them.
#![allow(dead_code)]

pub mod deploy;
pub mod docker;
pub mod exo;
pub mod postgres;
pub mod semaphore;
pub mod sshd;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the built binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ralf-sh"))
}

/// A command for the binary with a clean, isolated environment rooted in `home`:
/// no inherited RALF_* variables, XDG dirs inside `home`, CI set (no progress bars).
pub fn cmd(home: &Path) -> Command {
    let mut c = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("RALF_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_STATE_HOME", home.join(".state"))
        .env("CI", "1")
        .env("NO_COLOR", "1")
        .current_dir(home);
    c
}

/// GET `url` (loopback only; the lab's self-signed HTTPS too) and return the body, on a throwaway runtime (from sync test code).
pub fn get_text(url: &str) -> String {
    assert!(
        ["http://127.", "http://[::1]", "https://127."]
            .iter()
            .any(|p| url.starts_with(p)),
        "tests only talk to loopback: {url}"
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            ralf_sh::clients::http_builder()
                // The lab's Proxmox stand-in has a self-signed certificate (loopback only).
                .danger_accept_invalid_certs(url.starts_with("https://"))
                .build()
                .unwrap()
                .get(url)
                .send()
                .await
                .expect("GET")
                .text()
                .await
                .expect("body")
        })
}

/// [`get_text`], parsed as JSON.
pub fn get_json(url: &str) -> serde_json::Value {
    let body = get_text(url);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run and return (code, stdout, stderr).
pub fn run(mut c: Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("run ralf-sh");
    (status.code().unwrap_or(-1), text(&stdout), text(&stderr))
}

/// `ralf-sh test FILE` with `c` (config and environment set by the caller): asserts that it passed
/// and that at least `min_tests` script tests ran; returns (stdout, stderr).
pub fn script_tests(mut c: Command, file: &Path, min_tests: usize) -> (String, String) {
    c.arg("test").arg(file);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    let passed: usize = out
        .lines()
        .find_map(|l| l.strip_suffix(" passed, 0 failed"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no summary line in:\n{out}"));
    assert!(passed >= min_tests, "{passed} tests ran:\n{out}");
    (out, err)
}

/// Read `child`'s stdout (it must be piped) until a line equal to `line` arrives: the readiness
/// signal a script prints once it is where the test wants it. The rest of stdout is drained on a
/// thread so the child never blocks on a full pipe. Panics if stdout closes first.
pub fn wait_for_line(child: &mut std::process::Child, line: &str) {
    use std::io::BufRead;
    let out = child.stdout.take().expect("stdout piped");
    let mut r = std::io::BufReader::new(out);
    let mut got = String::new();
    loop {
        got.clear();
        let n = r.read_line(&mut got).expect("read stdout");
        assert!(n > 0, "stdout closed before the line {line:?}");
        if got.trim_end() == line {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut r, &mut std::io::sink()));
}

/// For test suites whose real part is missing on this machine: print a loud SKIP that names what
/// is missing and the one command that enables the suite, and return `true` (skip). Under
/// `CI=true` a skip is a failure: it panics instead, so CI proves that every suite ran.
pub fn skip_suite(what: &str, missing: &str, enable: &str) -> bool {
    let ci = std::env::var("CI")
        .map(|v| !v.is_empty() && v != "false" && v != "0")
        .unwrap_or(false);
    if ci {
        panic!(
            "{what} cannot run: {missing}; under CI a skip is a failure (enable with: {enable})"
        );
    }
    eprintln!("\n**** SKIP: {what} did not run: {missing}; enable with: {enable} ****\n");
    true
}

/// Wait up to `limit` for `child` to exit: its exit code, or None (after killing it) when it is
/// still running then.
pub fn wait_exit(child: &mut std::process::Child, limit: std::time::Duration) -> Option<i32> {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

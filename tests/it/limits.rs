//! Resource exhaustion is an error a script can catch, never a panic: `parallel` run by an
//! unprivileged user whose process limit (RLIMIT_NPROC, which root is exempt from) leaves no room
//! for its worker threads. Needs root (to drop to `nobody` with `setpriv`) and util-linux's `prlimit`.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// `ralf-sh -e EXPR` as `nobody` with at most `nproc` processes/threads; (exit code, stdout, stderr).
fn as_nobody_limited(nproc: u32, expr: &str) -> Option<(i32, String, String)> {
    let tools = Command::new("sh")
        .args(["-c", "command -v setpriv && command -v prlimit"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !tools {
        crate::common::skip_suite(
            "the thread-limit test",
            "it needs root and util-linux's setpriv and prlimit",
            "run the tests as root with util-linux installed",
        );
        return None;
    }
    // A copy of the binary that `nobody` can reach, and a home it can write.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let bin = dir.path().join("ralf-sh");
    std::fs::copy(common::bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = Command::new("setpriv");
    c.env_clear()
        .env("HOME", dir.path())
        .env("CI", "1")
        .env("NO_COLOR", "1")
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .current_dir(dir.path())
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "prlimit",
        ])
        .arg(format!("--nproc={nproc}"))
        .arg(&bin)
        .args(["-e", expr]);
    Some(common::run(c))
}

#[test]
fn parallel_without_room_for_threads_is_a_catchable_error_or_fewer_workers() {
    // No room for a single worker: `unavailable`, caught by the script.
    let Some((code, out, err)) = as_nobody_limited(
        4,
        r#"let r = "no error"; try { parallel([1, 2, 3], 3, |x| x); } catch (e) { r = `${e.kind}: ${e.message}`; } r"#,
    ) else {
        return;
    };
    assert_eq!(code, 0, "code {code}: {out}\n{err}");
    assert!(
        out.starts_with("unavailable: parallel: cannot start a worker thread"),
        "{out}\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // Room for some: every item still runs, on the workers that started, with a warning.
    let (code, out, err) = as_nobody_limited(
        8,
        "let a = []; for i in 0..20 { a.push(i); } parallel(a, 20, |x| { sleep(0.1); x * 2 }).filter(|r| r.ok).len()",
    )
    .unwrap();
    assert_eq!(code, 0, "code {code}: {out}\n{err}");
    assert_eq!(out.trim(), "20", "{err}");
    assert!(err.contains("worker threads started"), "{err}");
}

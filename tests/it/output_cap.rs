//! A chatty Semaphore task: 300,000 output lines (about 30 MB of `/output`). The client parses the
//! answer while it arrives and keeps only the newest `semaphore.max_output` bytes (4 MiB), so its
//! peak RSS stays under 64 MB; the first kept line says how many were dropped.

use crate::common::deploy as deploy_h;

use deploy_h::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

/// Peak resident set size of a live process, in kB.
fn peak_rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn a_300000_line_task_keeps_the_client_under_64_mb() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    lab.post(
        &format!(
            "{}/_lab/templates/RALF Postgresql Apply/behaviour",
            lab.url("semaphore")
        ),
        serde_json::json!({"duration_ms": 10, "lines": 1, "burst_lines": 300000}),
    );
    let mut c = lab.cmd(home.path());
    // The script prints, then sleeps so that its peak RSS can be read while it is alive.
    c.args([
        "-e",
        r#"let t = semaphore::connect().run("RALF Postgresql Apply").wait();
           let o = t.output();
           print(`status ${t.status} kept ${o.len()}`);
           print(o[0]);
           print(o[o.len() - 1]);
           sleep(5);"#,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..3 {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        lines.push(l.trim_end().to_string());
    }
    let peak = peak_rss_kb(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines[0].starts_with("status success kept "), "{lines:?}");
    let kept: usize = lines[0]["status success kept ".len()..].parse().unwrap();
    assert!(
        (20_000..300_000).contains(&kept),
        "a bounded tail is kept: {lines:?}"
    );
    assert!(
        lines[1].contains("earlier lines not kept") && lines[1].contains("semaphore.max_output"),
        "the first line counts the dropped ones: {lines:?}"
    );
    let dropped: usize = lines[1]
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{lines:?}"));
    // 300,000 burst lines plus the runner's own lines (checkout, command, play, steps, recap).
    assert!(
        dropped + kept - 1 > 300_000,
        "{dropped} + {kept}: {lines:?}"
    );
    assert!(
        lines[2].contains("PLAY RECAP"),
        "the newest line is kept: {lines:?}"
    );
    eprintln!("peak RSS of the client: {} MB", peak / 1024);
    assert!(peak < 64 * 1024, "peak RSS {} kB", peak);
}

//! Shared helpers for the benchmark binaries (included with `#[path]`).
#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

/// Run `cmd` and return (wall time, peak RSS in KiB) via wait4.
// The child is reaped with wait4 (to read its peak RSS), which clippy cannot see.
#[allow(clippy::zombie_processes)]
pub fn time_and_rss(cmd: &mut Command) -> (Duration, i64) {
    let start = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id() as i32;
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    (start.elapsed(), ru.ru_maxrss)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

pub fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// One row of the benchmark table.
pub fn row(name: &str, result: &str, baseline: &str, ratio: &str, target: &str) {
    println!("| {name} | {result} | {baseline} | {ratio} | {target} |");
}

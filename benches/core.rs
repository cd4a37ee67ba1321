//! Start-up time and peak memory of `ralf-sh -e 1`, against `python3 -c 'import json, urllib.request'`
//! measured in the same run. Targets: median <= 20 ms, <= 20 MB RSS.

#[path = "common.rs"]
mod common;

use common::{median, row, time_and_rss};
use std::process::Command;

fn measure(mut make: impl FnMut() -> Command, n: usize) -> (f64, f64) {
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..3 {
        time_and_rss(&mut make()); // warm-up
    }
    for _ in 0..n {
        let (t, r) = time_and_rss(&mut make());
        times.push(t.as_secs_f64() * 1000.0);
        rss.push(r as f64 / 1024.0);
    }
    (median(times), median(rss))
}

fn main() {
    let n = 31;
    let home = std::env::temp_dir().join("ralf-bench-core");
    let _ = std::fs::create_dir_all(&home);
    let (t, m) = measure(
        || {
            let mut c = Command::new(env!("CARGO_BIN_EXE_ralf-sh"));
            c.args(["-e", "1"])
                .env("HOME", &home)
                .env("CI", "1")
                .current_dir(&home);
            c
        },
        n,
    );
    let py = Command::new("python3").arg("--version").output().is_ok();
    let (pt, pm) = if py {
        measure(
            || {
                let mut c = Command::new("python3");
                c.args(["-c", "import json, urllib.request"]);
                c
            },
            n,
        )
    } else {
        (f64::NAN, f64::NAN)
    };
    row(
        &format!("core: start-up `ralf-sh -e 1` (median of {n})"),
        &format!("{t:.1} ms"),
        &format!("{pt:.1} ms (python3 import json, urllib.request)"),
        &format!("{:.2}x", t / pt),
        "<= 20 ms",
    );
    row(
        "core: peak RSS `ralf-sh -e 1`",
        &format!("{m:.1} MB"),
        &format!("{pm:.1} MB (python3)"),
        &format!("{:.2}x", m / pm),
        "<= 20 MB",
    );
}

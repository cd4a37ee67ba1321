//! Prometheus text-format metrics derived from the state store: runs by script and status, the
//! last successful deployment of each service, finished step durations. `serve` adds its webhook
//! counters; a run without `serve` writes the same to a node_exporter textfile (`metrics.textfile`,
//! atomic rename), so "no successful deploy in 26 h" can alert from the file alone.

use super::store::Store;
use crate::error::{RResult, RalfError};
use std::fmt::Write;
use std::path::Path;

/// Step duration buckets, seconds.
pub const BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// A label value escaped for the text format.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn epoch(rfc3339: &str) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|d| d.timestamp_millis() as f64 / 1000.0)
}

/// The store's metrics in the Prometheus text format.
pub fn render(store: &Store) -> RResult<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP ralf_runs Runs recorded in the state store, by script and status.\n# TYPE ralf_runs gauge"
    );
    for (script, status, n) in store.run_counts()? {
        let _ = writeln!(
            out,
            "ralf_runs{{script=\"{}\",status=\"{}\"}} {n}",
            label(&script),
            label(&status)
        );
    }
    let _ = writeln!(
        out,
        "# HELP ralf_service_last_success_timestamp_seconds When the service was last marked deployed (Unix time).\n\
         # TYPE ralf_service_last_success_timestamp_seconds gauge"
    );
    for (svc, at) in store.last_successes()? {
        if let Some(t) = epoch(&at) {
            let _ = writeln!(
                out,
                "ralf_service_last_success_timestamp_seconds{{service=\"{}\"}} {t:.3}",
                label(&svc)
            );
        }
    }
    histogram(
        &mut out,
        "ralf_step_duration_seconds",
        "Duration of finished steps (done or failed).",
        BUCKETS,
        store.step_durations(BUCKETS)?,
    );
    histogram(
        &mut out,
        "ralf_semaphore_task_duration_seconds",
        "How long Semaphore tasks ran (the server's start to end).",
        BUCKETS,
        store.event_histogram("semaphore_task", "task_s", BUCKETS)?,
    );
    histogram(
        &mut out,
        "ralf_semaphore_wait_seconds",
        "How long runs waited for a Semaphore task (from the wait's start until it noticed the end).",
        BUCKETS,
        store.event_histogram("semaphore_task", "waited_s", BUCKETS)?,
    );
    Ok(out)
}

fn histogram(out: &mut String, name: &str, help: &str, bounds: &[f64], h: (Vec<i64>, i64, f64)) {
    let (cum, count, sum) = h;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (b, n) in bounds.iter().zip(&cum) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum:.3}\n{name}_count {count}"
    );
}

/// Write `text` to `path` atomically (a temporary file beside it, then rename), as node_exporter's
/// textfile collector expects.
pub fn write_textfile(path: &Path, text: &str) -> RResult<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d).map_err(|e| {
            RalfError::io(format!(
                "metrics.textfile: cannot create {}: {e}",
                d.display()
            ))
        })?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            RalfError::io(format!("metrics.textfile {}: {e}", path.display()))
        })
}

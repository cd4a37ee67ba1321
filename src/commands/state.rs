//! `ralf-sh state migrate --to postgres://...`: copy a SQLite store into PostgreSQL.

use crate::error::exit;
use crate::error::{RResult, RalfError};
use crate::host::Host;
use crate::session::state_path;
use crate::state::{lock, Store};
use std::path::PathBuf;
use std::sync::Arc;

pub(crate) fn migrate(
    host: &Arc<Host>,
    to: &str,
    password_env: Option<&str>,
    from: Option<PathBuf>,
) -> i32 {
    match migrate_impl(host, to, password_env, from) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {}", crate::redact::redact(&e.message));
            exit::FAILED
        }
    }
}

fn migrate_impl(
    host: &Arc<Host>,
    to: &str,
    password_env: Option<&str>,
    from: Option<PathBuf>,
) -> RResult<()> {
    let cfg = crate::config::StateConfig {
        url: Some(to.to_string()),
        password_env: password_env.map(str::to_string),
        ..Default::default()
    };
    crate::config::validate_state(&cfg).map_err(|(key, msg)| {
        let flag = if key == "url" { "to" } else { key };
        RalfError::invalid(format!("--{}: {msg}", flag.replace('_', "-")))
    })?;
    let configured_pg = host.cfg().state.as_ref().is_some_and(|s| s.url.is_some());
    let src_path = match from {
        Some(p) => p,
        None if configured_pg => {
            return Err(RalfError::invalid(
                "the configured state store is already PostgreSQL (state.url); name the SQLite file with --from FILE",
            ))
        }
        None => state_path(host),
    };
    if !src_path.exists() {
        return Err(RalfError::not_found(format!(
            "no SQLite state store at {}: nothing to migrate",
            src_path.display()
        )));
    }
    // No run may write the file while it is copied: hold its run lock (`<file>.lock`).
    let mut lock_file = src_path.clone().into_os_string();
    lock_file.push(".lock");
    let lock_file = PathBuf::from(lock_file);
    let _held = lock::acquire(
        &lock_file,
        lock::Holder::me(&host.run_id, "ralf-sh state migrate"),
    )?;
    let src = Store::open(&src_path)?;
    let live: Vec<String> = src
        .runs(1_000_000)?
        .into_iter()
        .filter(|r| r.status == "running")
        .map(|r| format!("{} (pid {} on {})", r.id, r.pid, r.host))
        .collect();
    if !live.is_empty() {
        return Err(RalfError::new(
            crate::error::ErrorKind::Locked,
            format!(
                "runs still running in {}: {}; migrate when they have ended",
                src_path.display(),
                live.join(", ")
            ),
        ));
    }
    let opts = crate::session::pg_options_for(&cfg)?;
    let dst = Store::connect(&opts)?;
    if !dst.is_empty()? {
        return Err(RalfError::invalid(format!(
            "{}: the database already holds ralf-sh runs or statuses; migrate into an empty database",
            dst.location
        )));
    }
    let dump = src.dump()?;
    dst.load(&dump)?;
    let copied = dst.dump()?;
    let (want, got) = (dump.sorted(), copied.sorted());
    for ((table, n), (_, m)) in want.counts().into_iter().zip(got.counts()) {
        if n != m {
            return Err(RalfError::io(format!(
                "verification failed: {table} has {m} rows in {}, {n} in {}",
                dst.location,
                src_path.display()
            )));
        }
    }
    if want != got {
        return Err(RalfError::io(format!(
            "verification failed: the rows read back from {} differ from {}",
            dst.location,
            src_path.display()
        )));
    }
    crate::outln!(
        "copied {} to {} (schema version {}):",
        src_path.display(),
        dst.location,
        dst.schema_version()
    );
    for (table, n) in want.counts() {
        crate::outln!("  {table:<16} {n:>8} rows, verified");
    }
    crate::outln!(
        "next: set `state: {{ url: {}, password_env: ... }}` in the config of every controller",
        dst.location
    );
    Ok(())
}

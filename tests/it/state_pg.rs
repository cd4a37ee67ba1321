//! The PostgreSQL state store end to end, through the binary: two controllers sharing one store
//! (a kill -9 of the lease holder mid-deploy, the standby's next cron tick finishes the run without
//! a duplicate Semaphore task) and `state migrate` from a SQLite store.
//!
//! The database is a throwaway cluster (Debian's `postgresql` server binaries, initdb in a temporary
//! folder); without them the tests skip loudly, and fail under CI=true.

use crate::common;
use crate::common::deploy as deploy_h;

use crate::common::postgres::{Cluster, PASSWORD};
use common::run;
use deploy_h::*;
use std::path::Path;
use std::time::{Duration, Instant};

const PW_VAR: &str = "RALF_TEST_PG_PASSWORD";

fn cluster(home: &Path) -> Option<Cluster> {
    pg_cluster(home, "the PostgreSQL state store tests")
}

/// Point a served lab's config at the PostgreSQL store (lease of `lease` seconds).
fn use_pg(lab: &mut Served, pg: &Cluster, lease: u32) {
    let yaml = std::fs::read_to_string(&lab.config).unwrap();
    let at = yaml.find("state:\n").expect("a state section");
    let yaml = format!(
        "{}state:\n  url: {}\n  password_env: {PW_VAR}\n  lease_seconds: {lease}\n",
        &yaml[..at],
        pg.url()
    );
    std::fs::write(&lab.config, yaml).unwrap();
    lab.env.push((PW_VAR.into(), PASSWORD.into()));
}

/// Runs as (id, status, attempts), oldest first.
fn pg_runs(pg: &Cluster) -> Vec<(String, String, i64)> {
    let out = pg
        .psql("SELECT id || '|' || status || '|' || attempts FROM runs ORDER BY started_at")
        .unwrap();
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Vec<&str> = l.split('|').collect();
            (v[0].into(), v[1].into(), v[2].parse().unwrap())
        })
        .collect()
}

#[test]
fn standby_takes_over_an_expired_lease_and_finishes_without_duplicate_tasks() {
    let home = tempfile::tempdir().unwrap();
    let Some(pg) = cluster(home.path()) else {
        return;
    };
    let mut lab = Served::start_on(home.path(), Backend::Sqlite).unwrap();
    use_pg(&mut lab, &pg, 3);
    slow_templates(&lab, 1500);
    // Controller A (its own home) holds the lease and is killed with -9 mid-deploy.
    let home_a = home.path().join("controller-a");
    std::fs::create_dir_all(&home_a).unwrap();
    let mut a = spawn_deploy_all(&lab, &home_a);
    wait_for(
        || {
            lab.tasks()
                .iter()
                .any(|t| t["message"].as_str().unwrap_or("").contains("deploy n8n"))
        },
        "a wave-2 task",
    );
    a.kill().unwrap();
    a.wait().unwrap();
    let killed = Instant::now();
    // Both controllers run on this machine here; A's rows are made to say it ran on another one
    // (on this machine its dead pid would hand the lease over at once).
    pg.psql(
        "UPDATE run_lease SET holder = jsonb_set(holder::jsonb, '{machine}', '\"controller-a\"')::text; \
         UPDATE runs SET machine = 'controller-a'",
    )
    .unwrap();
    let crashed = pg_runs(&pg)[0].0.clone();
    assert_eq!(
        pg.psql("SELECT run_id FROM run_lease").unwrap(),
        crashed,
        "A held the lease"
    );
    // Controller B: cron ticks every second. While A's lease lasts, a tick is refused (75)
    // naming A; after the expiry the tick continues A's run.
    let home_b = home.path().join("controller-b");
    std::fs::create_dir_all(&home_b).unwrap();
    let (mut refused, mut finished) = (0, None);
    while finished.is_none() {
        assert!(
            killed.elapsed() < Duration::from_secs(3 + 30),
            "the standby did not finish within 30 s of the lease expiry"
        );
        let mut c = lab.cmd(&home_b);
        c.arg(script("deploy_all.rhai"));
        let (code, out, err) = run(c);
        match code {
            75 => {
                assert!(err.contains(&format!("run {crashed}")), "{err}");
                refused += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            0 => finished = Some((out, err)),
            _ => panic!("standby tick failed ({code}):\n{out}\n{err}"),
        }
    }
    let (_, err) = finished.unwrap();
    eprintln!(
        "standby finished {:.1} s after the kill -9 (lease 3 s), {refused} tick(s) refused before",
        killed.elapsed().as_secs_f64()
    );
    assert!(refused >= 1, "the first tick came before the lease expired");
    assert!(
        err.contains(&format!("run {crashed} of this script")),
        "the standby continued A's run: {err}"
    );
    assert!(err.contains("taking over an expired run lease"), "{err}");
    // Every service deployed once: the standby re-attached to A's in-flight task.
    let per = deploy_tasks_per(&lab.tasks(), "message");
    assert_eq!(per.len(), 7, "{per:?}");
    assert!(per.values().all(|n| *n == 1), "duplicate tasks: {per:?}");
    let runs = pg_runs(&pg);
    let a_run = runs.iter().find(|r| r.0 == crashed).unwrap();
    assert_eq!((a_run.1.as_str(), a_run.2), ("ok", 2), "{runs:?}");
    assert!(
        runs.iter().all(|r| r.0 == crashed || r.1 == "locked"),
        "only refused ticks beside the continued run: {runs:?}"
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM service_status WHERE status = 'deployed'")
            .unwrap(),
        "7"
    );
    // The lease was released at the end.
    assert_eq!(pg.psql("SELECT run_id FROM run_lease").unwrap(), "");
    // `history` reads the shared store.
    let mut c = lab.cmd(&home_a);
    c.args(["history"]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&crashed), "{out}");
}

/// `ralf-sh state migrate` into the cluster's database, with the password variable set.
fn migrate_cmd(lab: &Served, home: &Path, pg: &Cluster) -> std::process::Command {
    let mut c = lab.cmd(home);
    c.env(PW_VAR, PASSWORD).args([
        "state",
        "migrate",
        "--to",
        &pg.url(),
        "--password-env",
        PW_VAR,
    ]);
    c
}

#[test]
fn state_migrate_copies_a_sqlite_store_and_verifies_it() {
    let home = tempfile::tempdir().unwrap();
    let Some(pg) = cluster(home.path()) else {
        return;
    };
    let lab = Served::start_on(home.path(), Backend::Sqlite).unwrap();
    // A SQLite store with runs, steps, statuses, history and events: a deploy in the lab.
    let mut c = lab.cmd(home.path());
    c.arg(script("deploy_all.rhai"));
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    let TestState::Sqlite(db) = &lab.state else {
        unreachable!("started on SQLite")
    };
    let sqlite = rusqlite::Connection::open(db).unwrap();
    let count = |t: &str| -> i64 {
        sqlite
            .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
            .unwrap()
    };
    let tables = [
        "runs",
        "steps",
        "service_status",
        "service_history",
        "events",
    ];
    let want: Vec<i64> = tables.iter().map(|t| count(t)).collect();
    assert!(want.iter().all(|n| *n > 0), "{want:?}");

    // Bad input first: a password in the URL, an unset password variable.
    let mut c = lab.cmd(home.path());
    c.args([
        "state",
        "migrate",
        "--to",
        "postgres://ralf:hunter2@127.0.0.1/ralf",
    ]);
    let (code, _, err) = run(c);
    assert_eq!(code, 1);
    assert!(err.contains("--to: carries a password"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let mut c = lab.cmd(home.path());
    c.args([
        "state",
        "migrate",
        "--to",
        &pg.url(),
        "--password-env",
        "RALF_UNSET_PW",
    ]);
    let (code, _, err) = run(c);
    assert_eq!(code, 1);
    assert!(
        err.contains("RALF_UNSET_PW") && err.contains("not set"),
        "{err}"
    );

    let c = migrate_cmd(&lab, home.path(), &pg);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    for (t, n) in tables.iter().zip(&want) {
        assert!(
            out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
                == vec![*t, &n.to_string(), "rows,", "verified"]),
            "{t}: {out}"
        );
        assert_eq!(
            pg.psql(&format!("SELECT count(*) FROM {t}")).unwrap(),
            n.to_string(),
            "{t}"
        );
    }
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));
    // Every row alike: compare each table's rows as text on both sides.
    for (t, order) in [
        ("runs", "id"),
        ("steps", "id"),
        ("service_status", "service"),
        ("service_history", "id"),
        ("events", "id"),
    ] {
        let cols = match t {
            "runs" => "id, script, args, host, pid, started_at, ended_at, status, exit_code, attempts",
            "steps" => "id, run_id, key, service, attempt, started_at, ended_at, status, result, details, error",
            "events" => "id, run_id, at, kind, data",
            "service_history" => "id, service, status, at, run_id, version, details",
            _ => "service, status, at, run_id, version, details",
        };
        let pg_rows = pg
            .psql(&format!(
                "SELECT concat_ws('|', {}) FROM {t} ORDER BY {order}",
                cols.split(", ")
                    .map(|c| format!("coalesce({c}::text, '∅')"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .unwrap();
        let mut st = sqlite
            .prepare(&format!(
                "SELECT {} FROM {t} ORDER BY {order}",
                cols.split(", ")
                    .map(|c| format!("coalesce(CAST({c} AS TEXT), '∅')"))
                    .collect::<Vec<_>>()
                    .join(" || '|' || ")
            ))
            .unwrap();
        let sq_rows: Vec<String> = st
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(pg_rows, sq_rows.join("\n"), "{t} differs");
    }
    // Into a database that already holds runs: refused.
    let c = migrate_cmd(&lab, home.path(), &pg);
    let (code, _, err) = run(c);
    assert_eq!(code, 1);
    assert!(err.contains("already holds ralf-sh runs"), "{err}");
}

/// The self-orchestration flow on a PostgreSQL store, as on SQLite: everything deployed in
/// dependency order, a second run finds nothing pending, `history --service` reads it back.
#[test]
fn deploy_all_on_postgres_then_nothing_pending() {
    let home = tempfile::tempdir().unwrap();
    let Some(pg) = cluster(home.path()) else {
        return;
    };
    let mut lab = Served::start_on(home.path(), Backend::Sqlite).unwrap();
    use_pg(&mut lab, &pg, 30);
    let mut c = lab.cmd(home.path());
    c.arg(script("deploy_all.rhai"));
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("deployed 7, failed 0"), "{out}");
    assert_eq!(
        pg.psql("SELECT count(*) FROM service_status WHERE status = 'deployed'")
            .unwrap(),
        "7"
    );
    // Dependencies were marked before their dependents started.
    let order = |key: &str| -> i64 {
        pg.psql(&format!("SELECT min(id) FROM steps WHERE key = '{key}'"))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(order("postgresql/mark") < order("n8n/apply"));
    let mut c = lab.cmd(home.path());
    c.arg(script("deploy_all.rhai"));
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("nothing to deploy"), "{out}");
    let mut c = lab.cmd(home.path());
    c.args(["history", "--service", "n8n"]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deployed"), "{out}");
    assert_eq!(
        pg.psql("SELECT count(*) FROM runs WHERE status = 'ok'")
            .unwrap(),
        "2"
    );
}

/// A run whose lease is taken from it (its database was out of reach past the expiry and another
/// controller took over) stops at once: the heartbeat finds the lease gone and cancels the run,
/// which ends as cancelled, not after its 30 s of work.
#[test]
fn a_run_that_lost_its_lease_stops() {
    let home = tempfile::tempdir().unwrap();
    let Some(pg) = cluster(home.path()) else {
        return;
    };
    let config = home.path().join("ralf.yaml");
    std::fs::write(
        &config,
        format!(
            "state:\n  url: {}\n  password_env: {PW_VAR}\n  lease_seconds: 2\n",
            pg.url()
        ),
    )
    .unwrap();
    let script = home.path().join("long.rhai");
    std::fs::write(
        &script,
        "run::lock();\nrun::step(\"work\", || { for i in 0..300 { sleep(0.1); } });\nprint(\"finished the work\");\n",
    )
    .unwrap();
    let mut c = common::cmd(home.path());
    c.env("RALF_CONFIG", &config)
        .env(PW_VAR, PASSWORD)
        .arg(&script)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    wait_for(
        || {
            pg.psql("SELECT run_id FROM run_lease")
                .is_ok_and(|r| !r.is_empty())
        },
        "the run to take the lease",
    );
    let run_id = pg.psql("SELECT run_id FROM run_lease").unwrap();
    // Another controller's takeover, as it looks in the row.
    pg.psql(
        "UPDATE run_lease SET run_id = 'other-run', expires_at = now() + interval '1 minute', \
         holder = '{\"pid\": 4242, \"host\": \"standby\", \"run_id\": \"other-run\", \"since\": \"2026-12-07T00:00:00Z\"}'",
    )
    .unwrap();
    let taken = Instant::now();
    let out = child.wait_with_output().unwrap();
    let stopped_after = taken.elapsed();
    let (stdout, stderr) = (common::text(&out.stdout), common::text(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("run {run_id} lost its run lease")),
        "{stderr}"
    );
    assert!(!stdout.contains("finished the work"), "{stdout}");
    assert!(
        stopped_after < Duration::from_secs(15),
        "stopped {stopped_after:?} after the takeover (the work takes 30 s)"
    );
    let status = pg
        .psql(&format!("SELECT status FROM runs WHERE id = '{run_id}'"))
        .unwrap();
    assert_eq!(status, "cancelled");
    // The taker's lease is left alone.
    assert_eq!(
        pg.psql("SELECT run_id FROM run_lease").unwrap(),
        "other-run"
    );
}

/// The store's connections are cut under a running script (`pg_terminate_backend`): the pool's
/// complaint about it goes to stderr and is not written back into the store from the store's own
/// thread (which waited on itself for ever), and the run goes on on fresh connections.
#[test]
fn a_run_goes_on_when_the_stores_connections_are_cut() {
    let home = tempfile::tempdir().unwrap();
    let Some(pg) = cluster(home.path()) else {
        return;
    };
    let cfg = home.path().join("ralf.yaml");
    std::fs::write(
        &cfg,
        format!("state:\n  url: {}\n  password_env: {PW_VAR}\n", pg.url()),
    )
    .unwrap();
    let go = home.path().join("go");
    std::fs::write(
        home.path().join("cut.rhai"),
        format!(
            "run::step(\"before\", || 1);\nlog::info(\"before the cut\");\nprint(\"ready\");\n\
             ssh::local().run(\"while [ ! -e {} ]; do sleep 0.05; done\");\n\
             log::info(\"after the cut\");\nrun::step(\"after\", || 2);\nprint(\"done\");\n",
            go.display()
        ),
    )
    .unwrap();
    let mut c = common::cmd(home.path());
    c.arg("--config")
        .arg(&cfg)
        .arg(home.path().join("cut.rhai"))
        .env(PW_VAR, PASSWORD)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(home.path().join("err.log")).unwrap());
    let mut child = c.spawn().unwrap();
    common::wait_for_line(&mut child, "ready");
    let cut = pg
        .psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'ralf-sh'")
        .unwrap();
    assert_ne!(cut, "0", "no connection of the run was cut");
    std::fs::write(&go, "").unwrap();
    let code = common::wait_exit(&mut child, Duration::from_secs(60));
    let err = std::fs::read_to_string(home.path().join("err.log")).unwrap_or_default();
    assert_eq!(
        code,
        Some(0),
        "the run hung or failed after its connections were cut:\n{err}"
    );
    let steps = pg
        .psql("SELECT key || '=' || status FROM steps ORDER BY id")
        .unwrap();
    assert_eq!(steps, "before=done\nafter=done", "{err}");
    let logs = pg
        .psql("SELECT count(*) FROM events WHERE kind = 'log' AND data LIKE '%after the cut%'")
        .unwrap();
    assert_eq!(logs, "1", "the run's own lines are still journaled");
}

//! The state store through its public interface, on both backends: runs, steps and resume,
//! service status and history, deliveries and figures, gate answers, ticks; on PostgreSQL (a
//! throwaway cluster) also liveness by heartbeat, the run lease between two controllers and a
//! SQLite copy.

use crate::common::postgres as postgres_lab;
use ralf_sh::error::ErrorKind;
use ralf_sh::state::lock::{self, acquire, Holder};
use ralf_sh::state::{lease, model, postgres, GateAnswer, RunRecord, Store};
use std::sync::Arc;

fn rec(id: &str) -> RunRecord {
    RunRecord {
        id: id.into(),
        script: "/x/deploy.rhai".into(),
        args: vec!["--all".into()],
        user: "tester".into(),
        host: lock::hostname(),
        pid: std::process::id() as i64,
        started_at: model::now(),
        ended_at: None,
        status: "running".into(),
        exit_code: None,
        attempts: 1,
        machine: lock::machine_id(),
    }
}

#[test]
fn migrations_are_versioned_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sub/state.db");
    let s = Store::open(&p).unwrap();
    assert_eq!(s.schema_version(), 6);
    drop(s);
    let s = Store::open(&p).unwrap();
    assert_eq!(s.schema_version(), 6);
    drop(s);
    let c = rusqlite::Connection::open(&p).unwrap();
    let mode: String = c
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    // A newer schema is refused with a clear message.
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    let e = Store::open(&p).unwrap_err();
    assert!(
        e.message.contains("schema version 99 is newer"),
        "{}",
        e.message
    );
}

/// What both backends must do alike: runs, steps, resume bookkeeping.
fn check_runs_steps_and_resume(s: &Store) {
    s.begin_run(&rec("r1")).unwrap();
    let a = s.step_start("r1", "one", Some("pg")).unwrap();
    s.step_add_detail(a, "task_id", &serde_json::json!(17))
        .unwrap();
    s.step_add_detail(a, "template", &serde_json::json!("Deploy PG"))
        .unwrap();
    s.step_end(a, "done", Some(&serde_json::json!({"ok": true})), None)
        .unwrap();
    let b = s.step_start("r1", "two", None).unwrap();
    s.step_add_detail(b, "task_id", &serde_json::json!(18))
        .unwrap();
    // The process dies here; a resume begins a new attempt of the same run.
    s.begin_run(&rec("r1")).unwrap();
    let steps = s.steps("r1").unwrap();
    assert_eq!(steps[0].status, "done");
    assert_eq!(steps[0].details["task_id"], 17);
    assert_eq!(steps[0].details["template"], "Deploy PG");
    assert_eq!(steps[0].result, Some(serde_json::json!({"ok": true})));
    assert_eq!(steps[1].status, "interrupted");
    assert!(s.step_done("r1", "one").unwrap().is_some());
    assert!(s.step_done("r1", "two").unwrap().is_none());
    let b2 = s.step_start("r1", "two", None).unwrap();
    let earlier = s.earlier_attempts("r1", "two", b2).unwrap();
    assert_eq!(earlier.len(), 1);
    assert_eq!(earlier[0].details["task_id"], 18);
    s.step_end(b2, "done", None, Some("note")).unwrap();
    s.end_run("r1", "ok", 0).unwrap();
    let r = s.run("r1").unwrap().unwrap();
    assert_eq!(
        (r.status.as_str(), r.exit_code, r.attempts),
        ("ok", Some(0), 2)
    );
    assert_eq!(r.args, vec!["--all".to_string()]);
    assert_eq!(s.steps("r1").unwrap()[2].attempt, 2);
    assert_eq!(s.step(b2).unwrap().unwrap().error.as_deref(), Some("note"));
    assert!(s.step(b2 + 1000).unwrap().is_none());
    assert_eq!(s.runs(10).unwrap()[0].id, "r1");
    assert_eq!(s.runs_for_service("pg", 10).unwrap().len(), 1);
}

fn check_service_status_and_history(s: &Store) {
    s.mark("vw", "failed", Some("r1"), None, &serde_json::json!({}))
        .unwrap();
    s.mark(
        "vw",
        "deployed",
        Some("r2"),
        Some("1.32"),
        &serde_json::json!({"task_id": 4}),
    )
    .unwrap();
    assert_eq!(s.statuses().unwrap()["vw"], "deployed");
    assert_eq!(
        s.service_status("vw").unwrap().unwrap().details["task_id"],
        4
    );
    let h = s.service_history("vw", 10).unwrap();
    assert_eq!(
        h.iter().map(|r| r.status.as_str()).collect::<Vec<_>>(),
        vec!["deployed", "failed"]
    );
    assert_eq!(h[0].version.as_deref(), Some("1.32"));
    s.event(Some("r2"), "llm", &serde_json::json!({"prompt": "p"}))
        .unwrap();
    assert_eq!(s.events("r2").unwrap()[0].kind, "llm");
    s.event(Some("r2"), "log", &serde_json::json!({"message": "two"}))
        .unwrap();
    let all = s.events("r2").unwrap();
    let after = s.events_after("r2", all[0].id, 10).unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].data["message"], "two");
    assert!(s.events_after("r2", all[1].id, 10).unwrap().is_empty());
}

fn check_deliveries_and_figures(s: &Store) {
    assert_eq!(s.record_delivery("d-1", "push", "r1").unwrap(), None);
    assert_eq!(
        s.record_delivery("d-1", "push", "r9").unwrap().as_deref(),
        Some("r1")
    );
    assert_eq!(s.record_delivery("d-2", "push", "r2").unwrap(), None);
    assert_eq!(s.delivery("d-2").unwrap().as_deref(), Some("r2"));
    assert_eq!(s.delivery("d-3").unwrap(), None);
    let counts = s.run_counts().unwrap();
    assert!(
        counts.contains(&("/x/deploy.rhai".into(), "ok".into(), 1)),
        "{counts:?}"
    );
    let last = s.last_successes().unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].0, "vw");
    let (buckets, n, sum) = s.step_durations(&[0.0001, 3600.0]).unwrap();
    assert_eq!(
        n, 2,
        "two finished steps (the interrupted one is not counted)"
    );
    assert_eq!(buckets[1], 2);
    assert!(buckets[0] <= buckets[1] && sum >= 0.0);
    for (w, t) in [(0.5, Some(10.0)), (2.0, None), (7.5, Some(40.0))] {
        s.event(
            Some("r1"),
            "semaphore_task",
            &serde_json::json!({"waited_s": w, "task_s": t}),
        )
        .unwrap();
    }
    let (cum, n, sum) = s
        .event_histogram("semaphore_task", "waited_s", &[1.0, 5.0])
        .unwrap();
    assert_eq!((cum, n), (vec![1, 2], 3));
    assert!((sum - 10.0).abs() < 1e-9, "{sum}");
    let (cum, n, _) = s
        .event_histogram("semaphore_task", "task_s", &[15.0])
        .unwrap();
    assert_eq!((cum, n), (vec![1], 2), "a null field is not counted");
    assert!(s
        .event_histogram("semaphore_task", "x'); DROP", &[1.0])
        .is_err());
}

fn check_gate_answers(s: &Store) {
    let a = GateAnswer {
        id: 0,
        gate: "g1".into(),
        nonce: "n1".into(),
        approve: true,
        by: "operator".into(),
    };
    s.add_gate_answer(&a).unwrap();
    let got = s.gate_answers("g1").unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].nonce.as_str(), got[0].approve), ("n1", true));
    assert!(s.gate_answers("g2").unwrap().is_empty());
    s.begin_run(&rec("gated")).unwrap();
    let st = s.step_start("gated", "gate/deploy", None).unwrap();
    s.step_add_detail(st, "gate", &serde_json::json!({"question": {"id": "g1"}}))
        .unwrap();
    let pending = s.running_steps_with("gate").unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, st);
    s.step_end(st, "done", None, None).unwrap();
    assert!(s.running_steps_with("gate").unwrap().is_empty());
}

fn check_ticks(s: &Store) {
    assert_eq!(s.last_tick("hourly").unwrap(), None);
    assert!(s
        .claim_tick("hourly", "2026-12-07T03:00:00Z", "r1", "a")
        .unwrap());
    assert!(!s
        .claim_tick("hourly", "2026-12-07T03:00:00Z", "r2", "b")
        .unwrap());
    assert!(s
        .claim_tick("hourly", "2026-12-07T04:00:00Z", "r3", "b")
        .unwrap());
    assert!(s
        .claim_tick("other", "2026-12-07T05:00:00Z", "r4", "b")
        .unwrap());
    assert_eq!(
        s.last_tick("hourly").unwrap().as_deref(),
        Some("2026-12-07T04:00:00Z")
    );
}

#[test]
fn sqlite_backend() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s.db")).unwrap();
    assert!(!s.is_shared());
    assert!(s.is_empty().unwrap());
    check_runs_steps_and_resume(&s);
    check_service_status_and_history(&s);
    check_ticks(&s);
    check_deliveries_and_figures(&s);
    check_gate_answers(&s);
    assert!(!s.is_empty().unwrap());
}

#[test]
fn dead_running_run_reads_as_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s.db")).unwrap();
    let mut r = rec("dead");
    r.pid = 999_999_999;
    s.begin_run(&r).unwrap();
    assert_eq!(s.run("dead").unwrap().unwrap().status, "interrupted");
}

/// The same checks against a real PostgreSQL (a throwaway cluster), then what only a shared store
/// does: liveness by heartbeat, the run lease between two controllers, and a SQLite copy.
#[test]
fn postgres_backend() {
    if postgres_lab::bin_dir().is_none() {
        crate::common::skip_suite(
            "the PostgreSQL state store tests",
            "no PostgreSQL server binaries (initdb)",
            "apt-get install postgresql",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pg = postgres_lab::Cluster::start(&dir.path().join("pg")).unwrap();
    let connect = |db: &str, lease: f64| {
        pg.psql(&format!("CREATE DATABASE {db}")).unwrap();
        let o = postgres::PgOptions {
            url: pg.url_for(db),
            password: Some(postgres_lab::PASSWORD.into()),
            ca_file: None,
            lease: std::time::Duration::from_secs_f64(lease),
        };
        Store::connect(&o).unwrap()
    };
    let s = connect("basics", 30.0);
    assert!(s.is_shared());
    assert_eq!(s.schema_version(), 6);
    assert!(s.is_empty().unwrap());
    check_runs_steps_and_resume(&s);
    check_service_status_and_history(&s);
    check_ticks(&s);
    check_deliveries_and_figures(&s);
    check_gate_answers(&s);
    // Connecting again migrates nothing twice.
    let o = postgres::PgOptions {
        url: pg.url_for("basics"),
        password: Some(postgres_lab::PASSWORD.into()),
        ca_file: None,
        lease: std::time::Duration::from_secs(30),
    };
    assert_eq!(Store::connect(&o).unwrap().schema_version(), 6);
    // A wrong password is a clear error that does not show the password.
    let bad = postgres::PgOptions {
        password: Some("not-the-password-xyz".into()),
        ..o.clone()
    };
    let e = Store::connect(&bad).unwrap_err();
    assert!(
        e.message.contains("password authentication failed"),
        "{}",
        e.message
    );
    assert!(!e.message.contains("not-the-password-xyz"));

    // Liveness: a run whose heartbeat is older than the lease reads as interrupted, on any host.
    let l = connect("liveness", 1.0);
    l.begin_run(&rec("alive")).unwrap();
    assert_eq!(l.run("alive").unwrap().unwrap().status, "running");
    std::thread::sleep(std::time::Duration::from_millis(1300));
    assert_eq!(l.run("alive").unwrap().unwrap().status, "interrupted");
    l.heartbeat("alive").unwrap();
    assert_eq!(l.run("alive").unwrap().unwrap().status, "running");
    // A run whose process ran on this machine and is gone is interrupted at once, heartbeat or
    // not; the same dead pid recorded on another machine (or before the machine was recorded)
    // says nothing, and the heartbeat decides.
    let l30 = connect("liveness_here", 30.0);
    let mut dead = rec("dead-here");
    dead.pid = 999_999_999;
    l30.begin_run(&dead).unwrap();
    assert_eq!(l30.run("dead-here").unwrap().unwrap().status, "interrupted");
    assert_eq!(l30.runs(5).unwrap()[0].status, "interrupted");
    for (id, machine) in [
        ("dead-elsewhere", "another-boot/pid:[1]"),
        ("dead-unknown", ""),
    ] {
        let mut r = rec(id);
        r.pid = 999_999_999;
        r.machine = machine.into();
        l30.begin_run(&r).unwrap();
        assert_eq!(l30.run(id).unwrap().unwrap().status, "running", "{id}");
    }

    // The run lease: two controllers, one holder; an expired lease is taken over.
    pg.psql("CREATE DATABASE lease").unwrap();
    let lease_store = || {
        Store::connect(&postgres::PgOptions {
            url: pg.url_for("lease"),
            lease: std::time::Duration::from_secs(1),
            ..o.clone()
        })
        .unwrap()
    };
    let (a, b) = (lease_store(), lease_store());
    let mut hb = holder("run-a", 1);
    hb.host = "controller-a".into();
    lease::acquire(&a, &hb).unwrap();
    let mut other = holder("run-b", 2);
    other.host = "controller-b".into();
    let e = lease::acquire(&b, &other).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Locked);
    assert!(
        e.message.contains("pid 1 on host controller-a, run run-a"),
        "{}",
        e.message
    );
    assert_eq!(e.details["exit_code"], 75);
    // A holder on this machine whose process is gone is taken over at once (a kill -9 here,
    // then `resume`); one that is alive, or that ran on another machine, is not.
    let mut gone = holder("run-a", 999_999_999);
    gone.host = lock::hostname();
    pg.psql("CREATE DATABASE lease_here").unwrap();
    let here = Store::connect(&postgres::PgOptions {
        url: pg.url_for("lease_here"),
        ..o.clone()
    })
    .unwrap();
    lease::acquire(&here, &gone).unwrap();
    let alive = holder("run-c", std::process::id() as i64);
    lease::acquire(&here, &alive).unwrap();
    assert_eq!(
        here.lease().unwrap().current().unwrap().unwrap().run_id,
        "run-c"
    );
    let mut elsewhere = holder("run-d", 999_999_999);
    elsewhere.machine = "another-boot/pid:[1]".into();
    assert_eq!(
        lease::acquire(&here, &elsewhere).unwrap_err().kind,
        ErrorKind::Locked,
        "a live holder keeps the lease"
    );
    // Resuming the same run from another controller waits for the expiry as well.
    let mut same_run = holder("run-a", 3);
    same_run.host = "controller-b".into();
    assert_eq!(
        lease::acquire(&b, &same_run).unwrap_err().kind,
        ErrorKind::Locked
    );
    assert!(a.lease().unwrap().renew(&hb).unwrap());
    assert!(!b.lease().unwrap().renew(&same_run).unwrap());
    assert_eq!(
        b.lease().unwrap().current().unwrap().unwrap().run_id,
        "run-a"
    );
    // a stops renewing (kill -9): after the expiry b takes over, and a learns it lost the lease.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert!(b.lease().unwrap().current().unwrap().is_none());
    lease::acquire(&b, &other).unwrap();
    assert!(!a.lease().unwrap().renew(&hb).unwrap());
    b.lease().unwrap().release(&other).unwrap();
    assert!(a.lease().unwrap().current().unwrap().is_none());

    // A holder whose lease another controller took (it could not renew in time) is told so by its
    // heartbeat, and stops.
    pg.psql("CREATE DATABASE lost").unwrap();
    let lost = Arc::new(
        Store::connect(&postgres::PgOptions {
            url: pg.url_for("lost"),
            lease: std::time::Duration::from_secs(1),
            ..o.clone()
        })
        .unwrap(),
    );
    lost.begin_run(&rec("holder")).unwrap();
    let me = holder("holder", std::process::id() as i64);
    lease::acquire(&lost, &me).unwrap();
    let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f2 = fired.clone();
    let hb = lease::Heartbeat::start(lost.clone(), "holder", move || {
        f2.store(true, std::sync::atomic::Ordering::SeqCst)
    });
    hb.hold_lease(&me);
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert!(
        !fired.load(std::sync::atomic::Ordering::SeqCst),
        "renewed while held"
    );
    assert_eq!(
        lost.run("holder").unwrap().unwrap().status,
        "running",
        "the heartbeat keeps it alive"
    );
    pg.psql_in("lost", "UPDATE run_lease SET holder = '{\"pid\":1,\"host\":\"other\",\"run_id\":\"x\",\"since\":\"\"}', run_id = 'x'")
        .unwrap();
    let t0 = std::time::Instant::now();
    while !fired.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "the lost lease went unnoticed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(hb);
    // Dropping the heartbeat of a lost lease does not release the new holder's lease.
    assert_eq!(
        lost.lease().unwrap().current().unwrap().unwrap().run_id,
        "x"
    );

    // Two controllers asking at the same instant: exactly one gets it.
    pg.psql("CREATE DATABASE race").unwrap();
    let race = || {
        Store::connect(&postgres::PgOptions {
            url: pg.url_for("race"),
            ..o.clone()
        })
        .unwrap()
    };
    let stores: Vec<Store> = (0..6).map(|_| race()).collect();
    let barrier = std::sync::Barrier::new(stores.len());
    let won: usize = std::thread::scope(|sc| {
        let hs: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, st)| {
                let barrier = &barrier;
                sc.spawn(move || {
                    // Six live controllers: each on a host of its own (a made-up pid on this
                    // machine would read as a process that is gone, whose lease anyone may take).
                    let mut me = holder(&format!("r{i}"), std::process::id() as i64);
                    me.host = format!("controller-{i}");
                    barrier.wait();
                    lease::acquire(st, &me).is_ok() as usize
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(won, 1);

    // SQLite → PostgreSQL: every row of every table, ids kept, sequences continued.
    let sq = Store::open(&dir.path().join("src.db")).unwrap();
    check_runs_steps_and_resume(&sq);
    check_service_status_and_history(&sq);
    let m = connect("migrated", 30.0);
    let want = sq.dump().unwrap();
    m.load(&want).unwrap();
    assert_eq!(m.dump().unwrap().sorted(), want.sorted());
    let next = m.step_start("r1", "three", None).unwrap();
    assert!(
        next > 3,
        "the step id sequence goes on after the copied rows: {next}"
    );
    // Used from inside async code (a runtime thread), the store does not panic.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let n = rt.block_on(async { m.runs(10).unwrap().len() });
    assert_eq!(n, 1);
}

fn holder(run: &str, pid: i64) -> Holder {
    Holder {
        pid,
        host: lock::hostname(),
        run_id: run.into(),
        since: "2026-11-23T11:00:00.000Z".into(),
        script: "deploy.rhai".into(),
        machine: lock::machine_id(),
    }
}

#[test]
fn second_lock_holder_is_refused_with_75_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("state.db.lock");
    let first = acquire(&p, holder("run-a", std::process::id() as i64)).unwrap();
    let e = acquire(&p, holder("run-b", std::process::id() as i64)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Locked);
    assert_eq!(e.details["exit_code"], 75);
    assert_eq!(
        e.message,
        format!(
            "another run holds the run lock: pid {} on host {}, run run-a, since 2026-11-23T11:00:00.000Z (deploy.rhai); lock file {}",
            std::process::id(),
            lock::hostname(),
            p.display()
        )
    );
    drop(first);
    // Released: the file is empty and the next run takes it silently.
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
    let again = acquire(&p, holder("run-b", std::process::id() as i64)).unwrap();
    assert_eq!(lock::current_holder(&p).unwrap().run_id, "run-b");
    drop(again);
    assert!(lock::current_holder(&p).is_none());
}

#[test]
fn stale_lock_record_of_dead_pid_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("l");
    // A record left by a process killed with -9 (its flock is gone with it).
    std::fs::write(
        &p,
        serde_json::to_string(&holder("old", 999_999_999)).unwrap(),
    )
    .unwrap();
    let l = acquire(&p, holder("new", std::process::id() as i64)).unwrap();
    assert_eq!(l.holder.run_id, "new");
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains("\"run_id\":\"new\""), "{text}");
}

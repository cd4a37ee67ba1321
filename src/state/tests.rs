use super::lock::{acquire, Holder};
use super::*;
use crate::engine::error::ErrorKind;

fn rec(id: &str) -> RunRecord {
    RunRecord {
        id: id.into(),
        script: "/x/deploy.rhai".into(),
        args: vec!["--all".into()],
        user: "tester".into(),
        host: lock::hostname(),
        pid: std::process::id() as i64,
        started_at: store::now(),
        ended_at: None,
        status: "running".into(),
        exit_code: None,
        attempts: 1,
    }
}

#[test]
fn migrations_are_versioned_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sub/state.db");
    let s = Store::open(&p).unwrap();
    assert_eq!(s.schema_version(), 1);
    drop(s);
    let s = Store::open(&p).unwrap();
    assert_eq!(s.schema_version(), 1);
    let mode: String = s
        .with(|c| c.pragma_query_value(None, "journal_mode", |r| r.get(0)))
        .unwrap();
    assert_eq!(mode, "wal");
    // A newer schema is refused with a clear message.
    s.with(|c| c.pragma_update(None, "user_version", 99))
        .unwrap();
    drop(s);
    let e = Store::open(&p).unwrap_err();
    assert!(
        e.message.contains("schema version 99 is newer"),
        "{}",
        e.message
    );
}

#[test]
fn runs_steps_and_resume_bookkeeping() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s.db")).unwrap();
    s.begin_run(&rec("r1")).unwrap();
    let a = s.step_start("r1", "one", Some("pg")).unwrap();
    s.step_add_detail(a, "task_id", &serde_json::json!(17))
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
    assert_eq!(steps[1].status, "interrupted");
    assert!(s.step_done("r1", "one").unwrap().is_some());
    assert!(s.step_done("r1", "two").unwrap().is_none());
    let b2 = s.step_start("r1", "two", None).unwrap();
    let earlier = s.earlier_attempts("r1", "two", b2).unwrap();
    assert_eq!(earlier.len(), 1);
    assert_eq!(earlier[0].details["task_id"], 18);
    s.step_end(b2, "done", None, None).unwrap();
    s.end_run("r1", "ok", 0).unwrap();
    let r = s.run("r1").unwrap().unwrap();
    assert_eq!(
        (r.status.as_str(), r.exit_code, r.attempts),
        ("ok", Some(0), 2)
    );
    assert_eq!(r.args, vec!["--all".to_string()]);
    assert_eq!(s.steps("r1").unwrap()[2].attempt, 2);
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

#[test]
fn service_status_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s.db")).unwrap();
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
    let h = s.service_history("vw", 10).unwrap();
    assert_eq!(
        h.iter().map(|r| r.status.as_str()).collect::<Vec<_>>(),
        vec!["deployed", "failed"]
    );
    assert_eq!(h[0].version.as_deref(), Some("1.32"));
    s.event(Some("r2"), "llm", &serde_json::json!({"prompt": "p"}))
        .unwrap();
    assert_eq!(s.events("r2").unwrap()[0].kind, "llm");
}

fn holder(run: &str, pid: i64) -> Holder {
    Holder {
        pid,
        host: lock::hostname(),
        run_id: run.into(),
        since: "2026-11-23T11:00:00.000Z".into(),
        script: "deploy.rhai".into(),
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

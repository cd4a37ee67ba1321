//! The fault campaign of issue 15, bounded: a lab deploy with slow tasks is interrupted by
//! kill -9, SIGINT or SIGTERM at points spread over it (the advisor call, inside the Proxmox
//! snapshot, between a Semaphore POST and its answer, while an apply task runs, during the smoke
//! test, in the second wave), then continued by `ralf-sh resume RUN` or by cron's next plain start.
//! Every trial must converge: all 7 services deployed, one apply task per service over both
//! processes (no duplicate task, no re-deploy), nothing rolled back, the store consistent (one
//! run, `ok`, no step left `running`).

use crate::common;
use crate::common::deploy as deploy_h;

use common::run;
use deploy_h::*;

#[derive(Clone, Copy, Debug)]
enum Then {
    /// `ralf-sh resume RUN`
    Resume,
    /// `ralf-sh scripts/deploy_all.rhai` again (cron's next tick)
    Fresh,
}

/// Where a trial interrupts the deploy.
#[derive(Clone, Copy, Debug)]
enum At {
    /// While the named step is `running` (and, for a snapshot, its Proxmox task too).
    Step(&'static str),
    /// After the Semaphore stand-in created postgresql's apply task but before it answered the POST.
    PostUnanswered,
    /// While postgresql's apply task runs on the stand-in (the POST answered, the task id recorded).
    TaskRunning,
}

/// Whether a running step matches `cond` (SQL over the steps table; false while the store or its
/// tables do not exist yet).
fn running_step_where(lab: &Served, cond: &str) -> bool {
    let sql = format!("SELECT count(*) FROM steps WHERE status = 'running' AND {cond}");
    let n = match &lab.state {
        TestState::Sqlite(db) => rusqlite::Connection::open(db)
            .ok()
            .and_then(|c| c.query_row(&sql, [], |r| r.get::<_, i64>(0)).ok()),
        TestState::Postgres(pg) => pg.psql(&sql).ok().and_then(|n| n.parse().ok()),
    };
    n.is_some_and(|n| n > 0)
}

/// The step is running.
fn step_running(lab: &Served, key: &str) -> bool {
    running_step_where(lab, &format!("key = '{key}'"))
}

/// A running step has recorded its Semaphore task id (the run knows the task it waits for).
fn task_id_recorded(lab: &Served) -> bool {
    running_step_where(lab, "details LIKE '%semaphore_task_id%'")
}

fn postgresql_task(lab: &Served) -> bool {
    lab.tasks().iter().any(|t| {
        t["message"]
            .as_str()
            .unwrap_or("")
            .contains("deploy postgresql")
    })
}

fn trial(at: At, signal: i32, then: Then) {
    trial_on(Backend::Sqlite, at, signal, then)
}

fn trial_on(backend: Backend, at: At, signal: i32, then: Then) {
    let label = format!("{backend:?}: {at:?} / signal {signal} / {then:?}");
    let home = tempfile::tempdir().unwrap();
    let Some(lab) = Served::start_on(home.path(), backend) else {
        return;
    };
    slow_templates(&lab, 800);
    // postgresql's guest (CT 2010): its Proxmox tasks (the snapshot) take 1.5 s more.
    lab.post(
        &format!("{}/_lab/guests/2010/slow", lab.url("proxmox")),
        serde_json::json!({"ms": 1500}),
    );
    if matches!(at, At::Step(k) if k.ends_with("/advice")) {
        // The advisor thinks for 1.5 s before each answer.
        lab.post(
            &format!("{}/_lab/script", lab.url("exo")),
            serde_json::json!({"rules": [{"mode": "slow", "delay": 1.5}]}),
        );
    }
    if matches!(at, At::PostUnanswered) {
        // The first task creation answers 3 s after the task started.
        lab.post(
            &format!("{}/_lab/fail_task_create", lab.url("semaphore")),
            serde_json::json!({"count": 1, "mode": "delay", "ms": 3000}),
        );
    }
    let mut child = spawn_deploy_all(&lab, home.path());
    match at {
        At::Step(key) => wait_for(|| step_running(&lab, key), key),
        At::PostUnanswered => wait_for(|| postgresql_task(&lab), "postgresql's task"),
        At::TaskRunning => {
            wait_for(|| postgresql_task(&lab), "postgresql's task");
            wait_for(|| task_id_recorded(&lab), "the task id in the journal");
        }
    }
    if let At::Step(k) = at {
        if k.ends_with("/snapshot") {
            // Inside the Proxmox task, not before it started.
            wait_for(
                || lab.pve_snapshot_task_running(),
                "the Proxmox snapshot task",
            );
        }
    }
    unsafe { libc::kill(child.id() as i32, signal) };
    let status = child.wait().unwrap();
    if signal != libc::SIGKILL {
        assert_eq!(
            status.code(),
            Some(130),
            "{label}: a signal cancels with 130"
        );
    }
    let before: Vec<_> = runs(&lab.state);
    assert_eq!(before.len(), 1, "{label}: {before:?}");
    let mut c = lab.cmd(home.path());
    match then {
        Then::Resume => c.args(["resume", &before[0].0]),
        Then::Fresh => c.arg(script("deploy_all.rhai")),
    };
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{label}: stdout:\n{out}\nstderr:\n{err}");
    assert!(!err.contains("is locked"), "{label}: {err}");
    assert!(!out.contains("rolled back"), "{label}: {out}");
    let st = statuses(&lab.state);
    assert_eq!(
        st.values().filter(|s| *s == "deployed").count(),
        7,
        "{label}: {st:?}"
    );
    let per = deploy_tasks_per(&lab.tasks(), "message");
    assert_eq!(per.len(), 7, "{label}: {per:?}");
    assert!(
        per.values().all(|n| *n == 1),
        "{label}: a task started twice: {per:?}"
    );
    let rs = runs(&lab.state);
    assert_eq!(
        rs.len(),
        1,
        "{label}: the interrupted run is continued: {rs:?}"
    );
    assert_eq!(rs[0].1, "ok", "{label}: {rs:?}");
    let all = steps(&lab.state);
    assert!(
        all.iter().all(|s| s.3 != "running"),
        "{label}: a step left running: {all:?}"
    );
    assert!(
        !all.iter().any(|s| s.2.ends_with("/rollback")),
        "{label}: a rollback ran: {all:?}"
    );
    // Each service's apply step finished exactly once.
    for svc in st.keys() {
        let key = format!("{svc}/apply");
        let done = all.iter().filter(|s| s.2 == key && s.3 == "done").count();
        assert_eq!(done, 1, "{label}: {key} finished {done} times: {all:?}");
    }
}

#[test]
fn kill_9_at_points_spread_over_a_deploy() {
    trial(At::PostUnanswered, libc::SIGKILL, Then::Resume);
    trial(At::Step("postgresql/smoke"), libc::SIGKILL, Then::Fresh);
    trial(At::Step("n8n/apply"), libc::SIGKILL, Then::Resume);
}

#[test]
fn sigint_at_points_spread_over_a_deploy() {
    trial(At::Step("postgresql/snapshot"), libc::SIGINT, Then::Resume);
    trial(At::TaskRunning, libc::SIGINT, Then::Fresh);
}

#[test]
fn sigterm_at_points_spread_over_a_deploy() {
    trial(At::Step("postgresql/advice"), libc::SIGTERM, Then::Fresh);
    trial(At::PostUnanswered, libc::SIGTERM, Then::Resume);
    trial(At::Step("redis/apply"), libc::SIGTERM, Then::Fresh);
}

/// The same faults on a PostgreSQL store: the killed run's lease (held on this machine by a process
/// that is gone) is taken over at once, and the store is as consistent and resumable as SQLite.
#[test]
fn signals_at_points_spread_over_a_deploy_on_postgres() {
    let pg = Backend::Postgres;
    trial_on(pg, At::PostUnanswered, libc::SIGKILL, Then::Resume);
    trial_on(pg, At::Step("n8n/apply"), libc::SIGKILL, Then::Fresh);
    trial_on(
        pg,
        At::Step("postgresql/snapshot"),
        libc::SIGTERM,
        Then::Resume,
    );
    trial_on(pg, At::TaskRunning, libc::SIGINT, Then::Fresh);
}

//! End-to-end tests of the self-orchestration flow (`scripts/deploy_all.rhai` + `ralf/deploy`) in
//! the lab, through the binary. Lab tasks take ~200 ms each.

use crate::common;
use crate::common::deploy as deploy_h;

use common::run;
use deploy_h::*;

fn id_of(steps: &[(i64, String, String, String, Option<String>)], key: &str) -> i64 {
    steps
        .iter()
        .find(|s| s.2 == key)
        .unwrap_or_else(|| panic!("no step {key}: {steps:?}"))
        .0
}

#[test]
fn deploy_all_deploys_in_dependency_order_then_finds_nothing_pending() {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("state.db");
    let mut c = cmd_in_repo(home.path());
    c.arg("lab")
        .arg("--state")
        .arg(&db)
        .arg(script("deploy_all.rhai"));
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let st = statuses(&db);
    for s in [
        "postgresql",
        "redis",
        "traefik",
        "exo",
        "mail",
        "n8n",
        "netbox",
    ] {
        assert_eq!(
            st.get(s).map(String::as_str),
            Some("deployed"),
            "{s}: {st:?}"
        );
    }
    assert!(out.contains("deployed 7, failed 0"), "{out}");
    let steps = steps(&db);
    // Dependencies finished (marked deployed) before their dependents started.
    for (dep, svc) in [
        ("postgresql", "n8n"),
        ("redis", "netbox"),
        ("traefik", "mail"),
    ] {
        assert!(
            id_of(&steps, &format!("{dep}/mark")) < id_of(&steps, &format!("{svc}/apply")),
            "{dep} before {svc}"
        );
    }
    // Wave 1 ran in parallel: every wave-1 apply started before the first wave-1 service was done.
    // (postgresql takes a snapshot first, so compare the three without one.)
    let wave1 = ["redis", "traefik", "exo"];
    let first_done = wave1
        .iter()
        .map(|s| id_of(&steps, &format!("{s}/mark")))
        .min()
        .unwrap();
    let last_start = wave1
        .iter()
        .map(|s| id_of(&steps, &format!("{s}/apply")))
        .max()
        .unwrap();
    assert!(
        last_start < first_done,
        "wave 1 was not parallel: {steps:?}"
    );

    // A second run finds nothing pending.
    let mut c = cmd_in_repo(home.path());
    c.arg("lab")
        .arg("--state")
        .arg(&db)
        .arg(script("deploy_all.rhai"));
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("nothing to deploy"), "{out}");
}

#[test]
fn smoke_failure_rolls_the_snapshot_back_and_skips_dependents() {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("state.db");
    let mut c = cmd_in_repo(home.path());
    c.args(["lab", "--scenario", "smoke-fails", "--state"])
        .arg(&db)
        .arg(script("deploy_all.rhai"));
    let (code, out, err) = run(c);
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    let st = statuses(&db);
    assert_eq!(st["postgresql"], "rolled_back", "{st:?}");
    assert_eq!(st["redis"], "deployed");
    assert!(!st.contains_key("n8n") || st["n8n"] != "deployed", "{st:?}");
    let steps = steps(&db);
    let rb = steps
        .iter()
        .find(|s| s.2 == "postgresql/rollback")
        .expect("rollback step");
    assert_eq!(rb.3, "done");
    assert!(steps
        .iter()
        .all(|s| s.2 != "n8n/apply" && s.2 != "netbox/apply"));
    assert!(out.contains("n8n") && out.contains("skipped"), "{out}");
    assert!(steps
        .iter()
        .any(|s| s.2 == "postgresql/suggest_fix" && s.3 == "done"));
}

/// A dependency that is recorded as deployed but fails its smoke checks now holds its dependents
/// back: no Semaphore task is started for them.
#[test]
fn an_unhealthy_dependency_skips_its_dependents() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    let mut c = lab.cmd(home.path());
    c.arg(script("deploy_all.rhai")).arg("--no-advisor");
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(statuses(&lab.state)["netbox"], "deployed");
    let before = lab.tasks().len();
    // postgresql goes bad; netbox is to be deployed again.
    lab.post(
        &format!("{}/_lab/fail", lab.url("smoke")),
        serde_json::json!({"match": ["pg_isready"]}),
    );
    let mut c = lab.cmd(home.path());
    c.args(["-e", r#"catalog::mark("netbox", "pending")"#]);
    let (code, _, err) = run(c);
    assert_eq!(code, 0, "{err}");
    let mut c = lab.cmd(home.path());
    c.arg(script("deploy_service.rhai"))
        .args(["netbox", "--no-advisor"]);
    let (code, out, err) = run(c);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("skipped") && out.contains("dependency postgresql is unhealthy: smoke 1/2"),
        "{out}"
    );
    assert_eq!(lab.tasks().len(), before, "a task was started for netbox");
    assert_eq!(statuses(&lab.state)["netbox"], "pending");
}

/// `--dry-run` walks the whole plan: every service's apply (dependents after their dependencies),
/// the snapshot and the marks are listed in order, and nothing reaches Semaphore or the state store.
#[test]
fn dry_run_lists_the_whole_plan_and_changes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    for extra in [None, Some("--dag")] {
        let mut c = lab.cmd(home.path());
        c.arg("--dry-run").arg(script("deploy_all.rhai"));
        c.args(extra);
        let (code, out, err) = run(c);
        assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
        assert!(
            out.contains("dry run: what would be done") && out.contains("deployed 7, failed 0"),
            "{out}"
        );
        let table = &err[err.find("would have run, in order").expect("dry-run table")..];
        let at = |what: &str| {
            table
                .find(what)
                .unwrap_or_else(|| panic!("`{what}` not in the dry-run table:\n{table}"))
        };
        for svc in [
            "Postgresql",
            "Redis",
            "Traefik",
            "Exo",
            "Mail",
            "N8n",
            "Netbox",
        ] {
            at(&format!("run template `RALF {svc} Apply`"));
        }
        assert!(
            at("RALF Postgresql Apply") < at("RALF Netbox Apply"),
            "{table}"
        );
        assert!(at("RALF Redis Apply") < at("RALF Netbox Apply"), "{table}");
        assert!(at("RALF Traefik Apply") < at("RALF Mail Apply"), "{table}");
        assert!(
            at("snapshot CT 2010") < at("RALF Postgresql Apply"),
            "{table}"
        );
        at("mark netbox as deployed");
    }
    assert!(lab.tasks().is_empty(), "{:?}", lab.tasks());
    assert!(
        statuses(&lab.state).is_empty(),
        "{:?}",
        statuses(&lab.state)
    );
}

#[test]
fn exo_down_still_deploys_with_the_fallback_recorded() {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("state.db");
    let mut c = cmd_in_repo(home.path());
    c.args(["lab", "--scenario", "exo-down", "--state"])
        .arg(&db)
        .arg(script("deploy_all.rhai"))
        .args(["--only", "redis"]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let st = statuses(&db);
    assert_eq!(st.len(), 1, "only redis was selected: {st:?}");
    assert_eq!(st["redis"], "deployed");
    let steps = steps(&db);
    let advice = steps
        .iter()
        .find(|s| s.2 == "redis/advice")
        .expect("advice step");
    let r: serde_json::Value = serde_json::from_str(advice.4.as_deref().unwrap()).unwrap();
    assert_eq!(r["source"], "fallback", "{r}");
    assert_eq!(r["decision"], "proceed");
}

#[test]
fn smoke_checks_of_the_catalog_never_leave_loopback() {
    // The lab's net section redirects 10.x / example.net checks to the lab smoke endpoint, and a
    // non-loopback target is refused outright when only_loopback is set without a redirect.
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("ralf.yaml");
    std::fs::write(&cfg, "net:\n  only_loopback: true\n").unwrap();
    let mut c = common::cmd(home.path());
    c.arg("--config").arg(&cfg).args([
        "-e",
        r#"let n = 0;
           try { net::http("https://vault.example.net/alive", #{ timeout: 2 }); }
           catch (e) { assert(e.kind == "forbidden" && e.message.contains("only loopback"), e.message); n += 1; }
           try { net::tcp("10.10.20.10", 5432, #{ timeout: 2 }); }
           catch (e) { assert(e.kind == "forbidden" && e.message.contains("only loopback"), e.message); n += 1; }
           assert_eq(n, 2);
           print("refused");"#,
    ]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("refused"));

    // In a lab run the same checks reach the lab smoke endpoint (and pass).
    let home = tempfile::tempdir().unwrap();
    let probe = home.path().join("probe.rhai");
    std::fs::write(
        &probe,
        r#"let r = net::http("https://vault.example.net/alive");
           assert(r.ok, `${r}`);
           let t = net::tcp("10.10.20.10", 5432, #{ timeout: 2 });
           assert(t.ok, `${t}`);
           let seen = net::http(env("RALF_LAB_SMOKE_URL") + "/_lab/requests");
           assert(seen.body.contains("https://vault.example.net/alive"), seen.body);
           print("redirected");"#,
    )
    .unwrap();
    let mut c = cmd_in_repo(home.path());
    c.arg("lab").arg(&probe);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("redirected"));
}

#[test]
fn flaky_semaphore_never_causes_a_duplicate_task() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    lab.post(
        &format!("{}/_lab/fail_task_create", lab.url("semaphore")),
        serde_json::json!({"count": 3, "mode": "drop"}),
    );
    let mut c = lab.cmd(home.path());
    c.arg(script("deploy_all.rhai"));
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let tasks = lab.tasks();
    let per_template = deploy_tasks_per(&tasks, "template_id");
    assert_eq!(per_template.len(), 7, "{tasks:?}");
    assert!(
        per_template.values().all(|n| *n == 1),
        "duplicate task: {per_template:?}"
    );
}

#[test]
fn second_concurrent_run_exits_75_and_ctrl_c_exits_130() {
    concurrent_run_and_ctrl_c(Backend::Sqlite);
}

#[test]
fn second_concurrent_run_exits_75_and_ctrl_c_exits_130_on_postgres() {
    concurrent_run_and_ctrl_c(Backend::Postgres);
}

fn concurrent_run_and_ctrl_c(backend: Backend) {
    let home = tempfile::tempdir().unwrap();
    let Some(lab) = Served::start_on(home.path(), backend) else {
        return;
    };
    slow_templates(&lab, 3000);
    let mut child = spawn_deploy_all(&lab, home.path());
    wait_for(|| !lab.tasks().is_empty(), "the first run to start a task");
    let mut second = lab.cmd(home.path());
    second.arg(script("deploy_all.rhai"));
    let (code, out, err) = run(second);
    assert_eq!(code, 75, "{out}\n{err}");
    assert!(err.contains("lock"), "{err}");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let runs = runs(&lab.state);
    let first_run = runs
        .iter()
        .find(|r| r.2 == Some(130))
        .expect("the interrupted run recorded");
    assert_eq!(first_run.1, "cancelled", "{runs:?}");
}

#[test]
fn kill_9_then_resume_finishes_without_redoing_work() {
    kill_9_then_resume(Backend::Sqlite);
}

#[test]
fn kill_9_then_resume_finishes_without_redoing_work_on_postgres() {
    kill_9_then_resume(Backend::Postgres);
}

fn kill_9_then_resume(backend: Backend) {
    let home = tempfile::tempdir().unwrap();
    let Some(lab) = Served::start_on(home.path(), backend) else {
        return;
    };
    slow_templates(&lab, 1500);
    let mut child = spawn_deploy_all(&lab, home.path());
    // Kill once wave 2 has a task in flight (wave 1 finished and marked).
    wait_for(
        || {
            lab.tasks().iter().any(|t| {
                t["message"].as_str().unwrap_or("").contains("deploy n8n")
                    || t["message"]
                        .as_str()
                        .unwrap_or("")
                        .contains("deploy netbox")
            })
        },
        "a wave-2 task",
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let before = lab.tasks().len();
    let run_id = runs(&lab.state)[0].0.clone();
    let mut c = lab.cmd(home.path());
    c.args(["resume", &run_id]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let st = statuses(&lab.state);
    assert_eq!(
        st.values().filter(|s| *s == "deployed").count(),
        7,
        "{st:?}"
    );
    // One apply task per service over both attempts: nothing re-run, the in-flight task re-attached.
    let tasks = lab.tasks();
    let per = deploy_tasks_per(&tasks, "message");
    assert_eq!(per.len(), 7, "{per:?}");
    assert!(per.values().all(|n| *n == 1), "{per:?}");
    assert!(tasks.len() >= before);
}

/// Cron's next tick after a crash: a fresh `deploy_all` (not `resume`) continues the interrupted
/// run, so no task is started twice; `resume --abandon` closes a run on purpose.
#[test]
fn kill_9_then_a_fresh_run_continues_without_duplicate_tasks() {
    kill_9_then_a_fresh_run(Backend::Sqlite);
}

#[test]
fn kill_9_then_a_fresh_run_continues_without_duplicate_tasks_on_postgres() {
    kill_9_then_a_fresh_run(Backend::Postgres);
}

fn kill_9_then_a_fresh_run(backend: Backend) {
    let home = tempfile::tempdir().unwrap();
    let Some(lab) = Served::start_on(home.path(), backend) else {
        return;
    };
    slow_templates(&lab, 1500);
    let mut child = spawn_deploy_all(&lab, home.path());
    wait_for(
        || {
            lab.tasks()
                .iter()
                .any(|t| t["message"].as_str().unwrap_or("").contains("deploy n8n"))
        },
        "a wave-2 task",
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let crashed = runs(&lab.state)[0].0.clone();
    let mut c = lab.cmd(home.path());
    c.arg(script("deploy_all.rhai"));
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains(&format!("run {crashed} of this script")),
        "{err}"
    );
    let st = statuses(&lab.state);
    assert_eq!(
        st.values().filter(|s| *s == "deployed").count(),
        7,
        "{st:?}"
    );
    let per = deploy_tasks_per(&lab.tasks(), "message");
    assert_eq!(per.len(), 7, "{per:?}");
    assert!(per.values().all(|n| *n == 1), "duplicate tasks: {per:?}");
    let rs = runs(&lab.state);
    assert_eq!(
        rs.len(),
        1,
        "the crashed run was continued, not a new one: {rs:?}"
    );
    assert_eq!(rs[0].1, "ok", "{rs:?}");
}

/// A kill inside the pre-install snapshot step (its Proxmox task still running): the resumed
/// step takes that task over instead of hitting `CT is locked (snapshot)` from it and rolling the
/// guest back. Both ways in: `resume`, and a fresh start that continues the run.
#[test]
fn kill_9_inside_the_snapshot_step_then_resume_takes_the_task_over() {
    kill_9_inside_the_snapshot_step(Backend::Sqlite);
}

#[test]
fn kill_9_inside_the_snapshot_step_then_resume_takes_the_task_over_on_postgres() {
    kill_9_inside_the_snapshot_step(Backend::Postgres);
}

fn kill_9_inside_the_snapshot_step(backend: Backend) {
    for how in ["resume", "fresh"] {
        let home = tempfile::tempdir().unwrap();
        let Some(lab) = Served::start_on(home.path(), backend) else {
            return;
        };
        slow_templates(&lab, 300);
        // postgresql's guest (CT 2010): every task takes 2 s more.
        lab.post(
            &format!("{}/_lab/guests/2010/slow", lab.url("proxmox")),
            serde_json::json!({"ms": 2000}),
        );
        let mut child = spawn_deploy_all(&lab, home.path());
        // The state store has its tables once a first task runs.
        wait_for(|| !lab.tasks().is_empty(), "a first task");
        wait_for(
            || {
                steps(&lab.state)
                    .iter()
                    .any(|s| s.2 == "postgresql/snapshot" && s.3 == "running")
            },
            "postgresql's snapshot step",
        );
        wait_for(
            || lab.pve_snapshot_task_running(),
            "the Proxmox snapshot task",
        );
        child.kill().unwrap();
        child.wait().unwrap();
        let run_id = runs(&lab.state)[0].0.clone();
        let mut c = lab.cmd(home.path());
        if how == "resume" {
            c.args(["resume", &run_id]);
        } else {
            c.arg(script("deploy_all.rhai"));
        }
        let (code, out, err) = run(c);
        assert_eq!(code, 0, "{how}: stdout:\n{out}\nstderr:\n{err}");
        assert!(!err.contains("is locked"), "{how}: {err}");
        assert!(!err.contains("rolled back"), "{how}: {err}");
        let st = statuses(&lab.state);
        assert_eq!(
            st.values().filter(|s| *s == "deployed").count(),
            7,
            "{how}: {st:?}"
        );
        let per = deploy_tasks_per(&lab.tasks(), "message");
        assert!(
            per.values().all(|n| *n == 1),
            "{how}: duplicate tasks: {per:?}"
        );
    }
}

#[test]
fn an_abandoned_run_is_not_continued() {
    abandoned_run(Backend::Sqlite);
}

#[test]
fn an_abandoned_run_is_not_continued_on_postgres() {
    abandoned_run(Backend::Postgres);
}

fn abandoned_run(backend: Backend) {
    let home = tempfile::tempdir().unwrap();
    let Some(lab) = Served::start_on(home.path(), backend) else {
        return;
    };
    slow_templates(&lab, 1500);
    let mut child = spawn_deploy_all(&lab, home.path());
    // Past postgresql's snapshot (a kill inside the snapshot step is issue 15's resume case).
    wait_for(
        || {
            lab.tasks().iter().any(|t| {
                t["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("deploy postgresql")
            })
        },
        "postgresql's apply task",
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let crashed = runs(&lab.state)[0].0.clone();
    let mut c = lab.cmd(home.path());
    c.args(["resume", "--abandon", &crashed]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("run {crashed} abandoned")), "{out}");
    let mut c = lab.cmd(home.path());
    c.arg(script("deploy_all.rhai"));
    let (code, _, err) = run(c);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("did not finish: resuming"), "{err}");
    let rs = runs(&lab.state);
    assert_eq!(rs.len(), 2, "{rs:?}");
    assert!(
        rs.iter().any(|r| r.0 == crashed && r.1 == "abandoned"),
        "{rs:?}"
    );
}

#[test]
fn dag_schedule_starts_services_without_waiting_for_the_wave_and_still_skips_dependents() {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("state.db");
    let mut c = cmd_in_repo(home.path());
    c.args(["lab", "--scenario", "smoke-fails", "--state"])
        .arg(&db)
        .arg(script("deploy_all.rhai"))
        .arg("--dag");
    let (code, out, err) = run(c);
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    let st = statuses(&db);
    assert_eq!(st["postgresql"], "rolled_back", "{st:?}");
    assert_eq!(st["mail"], "deployed", "{st:?}");
    let steps = steps(&db);
    assert!(steps
        .iter()
        .all(|s| s.2 != "n8n/apply" && s.2 != "netbox/apply"));
    // Dependencies before dependents.
    assert!(id_of(&steps, "traefik/mark") < id_of(&steps, "mail/apply"));
    assert!(
        out.contains("dependency postgresql did not deploy"),
        "{out}"
    );
}

#[test]
fn stdlib_seams_from_a_user_script() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    common::script_tests(
        lab.cmd(home.path()),
        &repo().join("tests/rhai/seams.rhai"),
        4,
    );
}

/// After a service is set back to pending by hand (its newest history entry has no duration), a
/// `--dag` run still weighs the services and redeploys it (the weight lookup once threw on it).
#[test]
fn dag_run_after_a_service_is_marked_pending_by_hand() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    let mut c = lab.cmd(home.path());
    c.arg(script("deploy_all.rhai")).arg("--dag");
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    let mut c = lab.cmd(home.path());
    c.args([
        "-e",
        r#"catalog::mark("redis", "pending"); catalog::mark("n8n", "pending")"#,
    ]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    let mut c = lab.cmd(home.path());
    c.arg(script("deploy_all.rhai")).arg("--dag");
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("deployed 2, failed 0"), "{out}");
    assert_eq!(
        statuses(&lab.state).get("n8n").map(String::as_str),
        Some("deployed")
    );
}

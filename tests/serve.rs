//! `ralf-sh serve` schedule triggers through the binary: every tick runs exactly once over a
//! restart (kill -9), missed ticks follow `catch_up`, and two controllers sharing a PostgreSQL
//! store start each tick once between them.

mod common;

use chrono::{DateTime, Utc};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = "print(`tick ${ARGS}`);\n";

fn write_config(home: &Path, state: &str, catch_up: &str) -> std::path::PathBuf {
    std::fs::write(home.join("tick.rhai"), SCRIPT).unwrap();
    let cfg = home.join("ralf.yaml");
    std::fs::write(
        &cfg,
        format!(
            "{state}serve:\n  triggers:\n    - name: every-second\n      on: schedule\n      cron: \"* * * * * *\"\n      \
             timezone: Europe/Berlin\n      catch_up: {catch_up}\n      script: tick.rhai\n      args: [x]\n"
        ),
    )
    .unwrap();
    cfg
}

fn serve(home: &Path, cfg: &Path, env: &[(&str, &str)], log: &Path) -> Child {
    let mut c = common::cmd(home);
    c.arg("--config").arg(cfg).arg("serve");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start serve")
}

fn stop(mut child: Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(10), "serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (tick, run_id) of the trigger, oldest first; and the ids of recorded runs.
fn sqlite_ticks(db: &Path) -> (Vec<(DateTime<Utc>, String)>, Vec<String>) {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare("SELECT tick, run_id FROM trigger_ticks ORDER BY tick")
        .unwrap();
    let ticks = st
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|r| {
            let (t, id) = r.unwrap();
            (t.parse::<DateTime<Utc>>().unwrap(), id)
        })
        .collect();
    let mut st = c.prepare("SELECT id FROM runs ORDER BY id").unwrap();
    let runs = st
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    (ticks, runs)
}

fn wait_for(mut f: impl FnMut() -> bool, what: &str, secs: u64) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every tick once, each with its run; after a kill -9 the missed ticks follow the policy.
#[test]
fn schedule_ticks_run_once_over_a_kill_and_restart_with_catch_up_one_or_none() {
    for policy in ["one", "none"] {
        let home = tempfile::tempdir().unwrap();
        let cfg = write_config(home.path(), "state:\n  path: state.db\n", policy);
        let db = home.path().join("state.db");
        let first = serve(home.path(), &cfg, &[], &home.path().join("serve1.log"));
        wait_for(
            || db.exists() && sqlite_ticks(&db).0.len() >= 3,
            "three ticks",
            20,
        );
        let mut first = first;
        first.kill().unwrap();
        first.wait().unwrap();
        let last_before = sqlite_ticks(&db).0.last().unwrap().0;
        // At least two ticks pass with no controller.
        std::thread::sleep(Duration::from_millis(2600));
        let restarted_at = Utc::now();
        let log2 = home.path().join("serve2.log");
        let second = serve(home.path(), &cfg, &[], &log2);
        wait_for(
            || {
                sqlite_ticks(&db)
                    .0
                    .iter()
                    .filter(|t| t.0 > restarted_at)
                    .count()
                    >= 3
            },
            "three ticks after the restart",
            20,
        );
        stop(second);
        std::thread::sleep(Duration::from_millis(500));
        let (ticks, runs) = sqlite_ticks(&db);
        // Each tick started its run, once: the run ids recorded are the ticks' run ids.
        let mut ids: Vec<String> = ticks.iter().map(|t| t.1.clone()).collect();
        ids.sort();
        assert_eq!(ids, runs, "one run per tick");
        // Regular ticks one second apart before the kill.
        let log = std::fs::read_to_string(&log2).unwrap();
        let in_gap: Vec<&DateTime<Utc>> = ticks
            .iter()
            .map(|t| &t.0)
            .filter(|t| **t > last_before && **t <= restarted_at)
            .collect();
        match policy {
            "one" => {
                let line = log
                    .lines()
                    .find(|l| l.contains("catching up the latest missed tick"))
                    .unwrap_or_else(|| panic!("no catch-up in:\n{log}"));
                let caught: DateTime<Utc> = line
                    .split("missed tick ")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(ticks.iter().any(|t| t.0 == caught), "{caught} claimed");
                let caught_or_gap: Vec<_> = ticks
                    .iter()
                    .filter(|t| t.0 > last_before && t.0 <= caught)
                    .collect();
                assert_eq!(
                    caught_or_gap.len(),
                    1,
                    "only the latest missed tick: {ticks:?}"
                );
                assert!(caught.signed_duration_since(last_before).num_seconds() >= 2);
            }
            _ => {
                assert!(log.contains("skipped (catch_up: none)"), "{log}");
                assert!(in_gap.is_empty(), "missed ticks were run: {in_gap:?}");
            }
        }
    }
}

/// Two controllers on one PostgreSQL store, a schedule every second: exactly one run per tick.
#[test]
fn two_controllers_share_a_schedule_one_run_per_tick() {
    if ralf_sh::lab::postgres::bin_dir().is_none() {
        ralf_sh::lab::skip_suite(
            "the shared-schedule test",
            "no PostgreSQL server binaries (initdb)",
            "apt-get install postgresql",
        );
        return;
    }
    const TICKS: usize = 100;
    let home = tempfile::tempdir().unwrap();
    let pg = ralf_sh::lab::postgres::Cluster::start(&home.path().join("pg")).unwrap();
    let state = format!(
        "state:\n  url: {}\n  password_env: RALF_TEST_PG_PASSWORD\n",
        pg.url()
    );
    let env = [("RALF_TEST_PG_PASSWORD", ralf_sh::lab::postgres::PASSWORD)];
    let mut controllers = Vec::new();
    for name in ["a", "b"] {
        let h = home.path().join(name);
        std::fs::create_dir_all(&h).unwrap();
        let cfg = write_config(&h, &state, "none");
        controllers.push(serve(&h, &cfg, &env, &h.join("serve.log")));
    }
    let count = |sql: &str| -> usize { pg.psql(sql).unwrap_or_default().parse().unwrap_or(0) };
    wait_for(
        || count("SELECT count(*) FROM trigger_ticks") >= TICKS,
        "100 ticks",
        TICKS as u64 + 30,
    );
    for c in controllers {
        stop(c);
    }
    // Runs still finishing end within a second or two.
    wait_for(
        || count("SELECT count(*) FROM runs WHERE status = 'running'") == 0,
        "the last runs to end",
        20,
    );
    let ticks = count("SELECT count(*) FROM trigger_ticks");
    assert!(ticks >= TICKS);
    assert_eq!(
        count("SELECT count(DISTINCT tick) FROM trigger_ticks"),
        ticks
    );
    assert_eq!(
        count("SELECT count(*) FROM runs"),
        ticks,
        "one run per tick"
    );
    assert_eq!(
        count("SELECT count(*) FROM trigger_ticks t JOIN runs r ON r.id = t.run_id AND r.status = 'ok'"),
        ticks,
        "every tick's run recorded and ok"
    );
    let split = pg
        .psql("SELECT string_agg(c::text, ' / ') FROM (SELECT count(*) c FROM trigger_ticks GROUP BY claimed_by) s")
        .unwrap();
    eprintln!("{ticks} ticks, one run each; claimed per controller: {split}");
}

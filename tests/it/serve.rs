//! `ralf-sh serve` schedule triggers through the binary: every tick runs exactly once over a
//! restart (kill -9), missed ticks follow `catch_up`, and two controllers sharing a PostgreSQL
//! store start each tick once between them.

use crate::common;

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
            "{state}serve:\n  listen: 127.0.0.1:0\n  triggers:\n    - name: every-second\n      on: schedule\n      cron: \"* * * * * *\"\n      \
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

/// `ralf-sh serve` with `cfg` and `env`, once it listens: the process and its URL (from the JSON
/// line it prints when bound; its log in `home/serve.log`).
fn serve_listening(home: &Path, cfg: &Path, env: &[(&str, &str)]) -> (Child, String) {
    let mut c = common::cmd(home);
    c.arg("--config").arg(cfg).arg("serve");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdout(Stdio::piped())
        .stderr(std::fs::File::create(home.join("serve.log")).unwrap());
    let mut child = c.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        panic!(
            "{e}: {line:?} {}",
            std::fs::read_to_string(home.join("serve.log")).unwrap_or_default()
        )
    });
    (child, v["listen"].as_str().unwrap().to_string())
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
        // The last ticks' runs (processes of their own) may still be recording themselves.
        wait_for(
            || {
                let (ticks, runs) = sqlite_ticks(&db);
                runs.len() >= ticks.len()
            },
            "every tick's run recorded",
            20,
        );
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
    if crate::common::postgres::bin_dir().is_none() {
        crate::common::skip_suite(
            "the shared-schedule test",
            "no PostgreSQL server binaries (initdb)",
            "apt-get install postgresql",
        );
        return;
    }
    const TICKS: usize = 100;
    let home = tempfile::tempdir().unwrap();
    let pg = crate::common::postgres::Cluster::start(&home.path().join("pg")).unwrap();
    let state = format!(
        "state:\n  url: {}\n  password_env: RALF_TEST_PG_PASSWORD\n",
        pg.url()
    );
    let env = [("RALF_TEST_PG_PASSWORD", crate::common::postgres::PASSWORD)];
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

// ---- webhooks and metrics -------------------------------------------------------------------

const HOOK_SECRET: &str = "hook-secret-for-tests-5d1c";

/// A serve with a push trigger (Gitea/GitHub, main branch of ralf/infra) and a generic webhook;
/// both run a script that records the event and takes `pause` seconds.
struct Hooked {
    home: tempfile::TempDir,
    child: Option<Child>,
    url: String,
}

impl Hooked {
    fn start(pause: f64) -> Hooked {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("deploy.rhai"),
            format!(
                "print(`deploying ${{env(\"RALF_EVENT_COMMIT\", \"-\")}} for ${{env(\"RALF_TRIGGER\")}} ${{ARGS}}`);\nsleep({pause});\n"
            ),
        )
        .unwrap();
        let cfg = home.path().join("ralf.yaml");
        std::fs::write(
            &cfg,
            "state:\n  path: state.db\nmetrics:\n  textfile: metrics/ralf.prom\nserve:\n  listen: 127.0.0.1:0\n  triggers:\n    \
             - name: infra-push\n      on: push\n      repository: ralf/infra\n      branch: main\n      secret_env: RALF_HOOK_SECRET\n      \
             script: deploy.rhai\n      args: [--commit, \"{commit}\"]\n    \
             - name: deploy-next\n      on: webhook\n      secret_env: RALF_HOOK_SECRET\n      script: deploy.rhai\n",
        )
        .unwrap();
        let (child, url) = serve_listening(home.path(), &cfg, &[("RALF_HOOK_SECRET", HOOK_SECRET)]);
        Hooked {
            url,
            home,
            child: Some(child),
        }
    }

    fn db(&self) -> std::path::PathBuf {
        self.home.path().join("state.db")
    }

    /// Runs recorded: (id, status, args).
    fn runs(&self) -> Vec<(String, String, String)> {
        if !self.db().exists() {
            return Vec::new();
        }
        let c = rusqlite::Connection::open(self.db()).unwrap();
        let mut st = c
            .prepare("SELECT id, status, args FROM runs ORDER BY id")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    fn wait_runs_ended(&self, n: usize) {
        wait_for(
            || {
                let r = self.runs();
                r.len() >= n && r.iter().all(|x| x.1 != "running")
            },
            &format!("{n} runs to end"),
            30,
        );
    }
}

impl Drop for Hooked {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            stop(c);
        }
    }
}

/// POST a delivery from `from` (a loopback address): (status, JSON body, seconds taken).
fn post(
    url: &str,
    from: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, serde_json::Value, f64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = ralf_sh::clients::http_builder()
            .local_address(from.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap();
        let mut rq = c.post(url).body(body);
        for (k, v) in headers {
            rq = rq.header(*k, v);
        }
        let t0 = Instant::now();
        let r = rq.send().await.unwrap();
        let code = r.status().as_u16();
        let text = r.text().await.unwrap();
        let took = t0.elapsed().as_secs_f64();
        (
            code,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
            took,
        )
    })
}

fn push_body(branch: &str, commit: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ref": format!("refs/heads/{branch}"), "before": "0000", "after": commit,
        "repository": { "full_name": "ralf/infra", "name": "infra" },
        "pusher": { "login": "admin" }
    }))
    .unwrap()
}

fn github(body: &[u8], delivery: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-github-event", "push".into()),
        ("x-github-delivery", delivery.into()),
        (
            "x-hub-signature-256",
            format!(
                "sha256={}",
                ralf_sh::serve::hooks::sign(HOOK_SECRET.as_bytes(), body)
            ),
        ),
        ("content-type", "application/json".into()),
    ]
}

fn gitea(body: &[u8], delivery: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-gitea-event", "push".into()),
        ("x-gitea-delivery", delivery.into()),
        (
            "x-gitea-signature",
            ralf_sh::serve::hooks::sign(HOOK_SECRET.as_bytes(), body),
        ),
        ("content-type", "application/json".into()),
    ]
}

#[test]
fn webhooks_signed_by_github_and_gitea_start_runs_once_bad_ones_start_nothing() {
    let s = Hooked::start(0.0);
    let hook = format!("{}/hooks/infra-push", s.url);
    let mut slowest: f64 = 0.0;
    // GitHub: 202 with a run id, and that run happens with the push's commit.
    let b = push_body("main", "c0ffee1");
    let (code, v, took) = post(&hook, "127.0.0.1", &github(&b, "gh-1"), b.clone());
    slowest = slowest.max(took);
    assert_eq!(code, 202, "{v}");
    let gh_run = v["run_id"].as_str().unwrap().to_string();
    s.wait_runs_ended(1);
    // The same delivery again: nothing new starts; the answer names the first run.
    let (code, v, _) = post(&hook, "127.0.0.1", &github(&b, "gh-1"), b.clone());
    assert_eq!((code, v["duplicate"].as_bool()), (200, Some(true)), "{v}");
    assert_eq!(v["run_id"], gh_run.as_str());
    // Gitea.
    let b2 = push_body("main", "beef002");
    let (code, v, took) = post(&hook, "127.0.0.1", &gitea(&b2, "gt-1"), b2.clone());
    slowest = slowest.max(took);
    assert_eq!(code, 202, "{v}");
    let gt_run = v["run_id"].as_str().unwrap().to_string();
    s.wait_runs_ended(2);
    let runs = s.runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let args_of = |id: &str| {
        runs.iter()
            .find(|r| r.0 == id)
            .map(|r| (r.1.clone(), r.2.clone()))
            .unwrap()
    };
    assert_eq!(
        args_of(&gh_run),
        ("ok".into(), "[\"--commit\",\"c0ffee1\"]".into())
    );
    assert_eq!(
        args_of(&gt_run),
        ("ok".into(), "[\"--commit\",\"beef002\"]".into())
    );
    // Another branch, another repository: answered, ignored.
    let b3 = push_body("dev", "d3v");
    let (code, v, _) = post(&hook, "127.0.0.1", &gitea(&b3, "gt-2"), b3.clone());
    assert_eq!(code, 200);
    assert!(v["ignored"].as_str().unwrap().contains("branch dev"), "{v}");
    // The generic webhook with X-Ralf-Signature.
    let gb = b"{\"reason\": \"next service\"}".to_vec();
    let gen_headers = vec![(
        "x-ralf-signature",
        format!(
            "sha256={}",
            ralf_sh::serve::hooks::sign(HOOK_SECRET.as_bytes(), &gb)
        ),
    )];
    let (code, v, _) = post(
        &format!("{}/hooks/deploy-next", s.url),
        "127.0.0.1",
        &gen_headers,
        gb,
    );
    assert_eq!(code, 202, "{v}");
    s.wait_runs_ended(3);

    // Bad signatures from another address: 401, no run, then that address is backed off.
    let (code, v, _) = post(
        &hook,
        "127.0.0.9",
        &[("x-gitea-signature", "00".repeat(32))],
        b2.clone(),
    );
    assert_eq!(code, 401, "{v}");
    let mut wrong = gitea(&b2, "gt-9");
    wrong[2].1 = ralf_sh::serve::hooks::sign(b"not-the-secret", &b2);
    let (code, _, _) = post(&hook, "127.0.0.9", &wrong, b2.clone());
    assert_eq!(code, 429, "backed off after a bad signature");
    let (code, v, _) = post(&hook, "127.0.0.9", &[], b2.clone());
    assert_eq!(code, 429, "{v}");
    // A body over 1 MiB: refused.
    let big = vec![b' '; 2 * 1024 * 1024];
    let (code, _, _) = post(&hook, "127.0.0.1", &github(&big, "gh-big"), big.clone());
    assert_eq!(code, 413);
    // An unknown trigger.
    let (code, _, _) = post(&format!("{}/hooks/nope", s.url), "127.0.0.1", &[], vec![]);
    assert_eq!(code, 404);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.runs().len(), 3, "no run from a bad delivery");
    eprintln!(
        "slowest accepted delivery answered in {:.0} ms",
        slowest * 1000.0
    );
    assert!(
        slowest < 5.0,
        "senders give up after 5-10 s: {slowest:.1} s"
    );

    // /metrics parses as Prometheus text and counts what happened.
    let text = common::get_text(&format!("{}/metrics", s.url));
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(
        value(
            "ralf_webhook_deliveries_total",
            &[("trigger", "infra-push"), ("result", "accepted")]
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        value(
            "ralf_webhook_deliveries_total",
            &[("trigger", "infra-push"), ("result", "duplicate")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "ralf_webhook_deliveries_total",
            &[("trigger", "infra-push"), ("result", "bad_signature")]
        ),
        1.0
    );
    assert_eq!(value("ralf_runs", &[("status", "ok")]), 3.0, "{text}");
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "ralf_step_duration_seconds"),
        "{text}"
    );
    // Each run also wrote the node_exporter textfile, which parses too.
    let tf = std::fs::read_to_string(s.home.path().join("metrics/ralf.prom")).unwrap();
    let tscrape = prometheus_parse::Scrape::parse(tf.lines().map(|l| Ok(l.to_string()))).unwrap();
    assert!(
        tscrape.samples.iter().any(|x| x.metric == "ralf_runs"),
        "{tf}"
    );
    assert!(!text.contains(HOOK_SECRET) && !tf.contains(HOOK_SECRET));
    let log = std::fs::read_to_string(s.home.path().join("serve.log")).unwrap();
    assert!(!log.contains(HOOK_SECRET), "{log}");
}

/// 20 pushes in 2 s while a run takes 3 s: one running, one pending, the rest folded into it.
#[test]
fn a_burst_of_pushes_coalesces_to_one_running_and_one_pending_run() {
    let s = Hooked::start(3.0);
    let hook = format!("{}/hooks/infra-push", s.url);
    let mut states = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..20 {
        let b = push_body("main", &format!("c{i:02}"));
        let (code, v, _) = post(&hook, "127.0.0.1", &github(&b, &format!("burst-{i}")), b);
        assert_eq!(code, 202, "{v}");
        states.push(v["state"].as_str().unwrap().to_string());
        ids.insert(v["run_id"].as_str().unwrap().to_string());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(states[0], "started");
    assert_eq!(states[1], "queued");
    assert!(states[2..].iter().all(|s| s == "coalesced"), "{states:?}");
    assert_eq!(ids.len(), 2, "{ids:?}");
    s.wait_runs_ended(2);
    let runs = s.runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
    // The pending run took the newest push.
    assert!(runs.iter().any(|r| r.2.contains("c19")), "{runs:?}");
}

// ---- authentication ---------------------------------------------------------------------------

const TOKEN_VAR: &str = "RALF_TEST_SERVE_TOKEN";

/// `ralf-sh serve` with `config` and `env`: its exit code, or None (after killing it) when it is
/// still running after `limit`.
fn serve_exit(
    home: &Path,
    cfg: &Path,
    env: &[(&str, &str)],
    limit: Duration,
) -> (Option<i32>, String) {
    let log = home.join("serve-exit.log");
    let mut child = serve(home, cfg, env, &log);
    let code = common::wait_exit(&mut child, limit);
    (code, std::fs::read_to_string(&log).unwrap_or_default())
}

/// GET `url` without following redirects: (status, Location).
fn get_status(url: &str, bearer: Option<&str>) -> (u16, String) {
    assert!(url.starts_with("http://127.0.0.1"), "{url}");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let c = ralf_sh::clients::http_builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let mut r = c.get(url);
            if let Some(t) = bearer {
                r = r.bearer_auth(t);
            }
            let r = r.send().await.expect("GET");
            let loc = r
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            (r.status().as_u16(), loc)
        })
}

/// A token variable named by the config but not set (or holding a short token) stops serve at
/// start with exit 2 and the variable's name, before the store is opened or a port bound; with the
/// token set, every page and /metrics want it.
#[test]
fn serve_never_starts_without_the_token_its_config_asks_for() {
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("ralf.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state:\n  path: state.db\nserve:\n  listen: 127.0.0.1:0\n  token_env: {TOKEN_VAR}\n"
        ),
    )
    .unwrap();
    let limit = Duration::from_secs(20);
    let (code, err) = serve_exit(home.path(), &cfg, &[], limit);
    assert_eq!(
        code,
        Some(2),
        "serve started with its token variable unset:\n{err}"
    );
    assert!(
        err.contains(&format!("names the variable {TOKEN_VAR}, which is not set")),
        "{err}"
    );
    assert!(
        !home.path().join("state.db").exists(),
        "the store was opened"
    );
    let (code, err) = serve_exit(home.path(), &cfg, &[(TOKEN_VAR, "abcd-1234")], limit);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("has 9 characters; use at least 16"), "{err}");
    assert!(
        !err.contains("abcd-1234"),
        "the token is never printed: {err}"
    );

    let token = "serve-test-token-0b7e5d2a";
    let (child, url) = serve_listening(home.path(), &cfg, &[(TOKEN_VAR, token)]);
    let (status, location) = get_status(&format!("{url}/"), None);
    assert!(
        (300..400).contains(&status) && location == "/login",
        "{status} {location}"
    );
    assert_eq!(get_status(&format!("{url}/metrics"), None).0, 401);
    assert_eq!(
        get_status(&format!("{url}/metrics"), Some("wrong-token-wrong-token")).0,
        401
    );
    assert_eq!(get_status(&format!("{url}/metrics"), Some(token)).0, 200);
    assert_eq!(get_status(&format!("{url}/"), Some(token)).0, 200);
    stop(child);
}

/// Behind a reverse proxy every sender shares one address: five bad deliveries back that address
/// off, and a delivery whose signature verifies is still heard at once.
#[test]
fn bad_signatures_never_lock_out_a_signed_delivery() {
    let s = Hooked::start(0.0);
    let hook = format!("{}/hooks/infra-push", s.url);
    let body = push_body("main", "c0ffee1");
    let mut codes = Vec::new();
    for i in 0..5 {
        let mut bad = gitea(&body, &format!("bad-{i}"));
        bad[2].1 = ralf_sh::serve::hooks::sign(b"not-the-secret", &body);
        codes.push(post(&hook, "127.0.0.11", &bad, body.clone()).0);
    }
    assert_eq!(codes, [401, 429, 429, 429, 429]);
    let (code, v, _) = post(&hook, "127.0.0.11", &gitea(&body, "good-1"), body.clone());
    assert_eq!(
        code, 202,
        "a signed delivery from the backed-off address: {v}"
    );
    s.wait_runs_ended(1);
    assert_eq!(s.runs().len(), 1, "only the signed delivery ran");
}

/// GET `path` on `url`'s address with the given `Host` header, over a plain socket: the status.
fn status_with_host(url: &str, path: &str, host: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = url.strip_prefix("http://").unwrap();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    resp.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {resp:?}"))
}

/// A page that points a name of its own at this machine (DNS rebinding) sends that name as the
/// `Host`: refused on every route; the listener's own address and `localhost` are answered.
#[test]
fn a_foreign_host_name_is_refused() {
    let s = Hooked::start(0.0);
    let port = s.url.rsplit(':').next().unwrap().to_string();
    for path in ["/", "/healthz", "/metrics", "/api/runs"] {
        assert_eq!(
            status_with_host(&s.url, path, &format!("rebind.example:{port}")),
            421,
            "{path}"
        );
    }
    assert_eq!(
        status_with_host(&s.url, "/healthz", &format!("127.0.0.1:{port}")),
        200
    );
    assert_eq!(
        status_with_host(&s.url, "/healthz", &format!("localhost:{port}")),
        200
    );
    assert_eq!(s.runs().len(), 0);
}

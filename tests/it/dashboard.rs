//! The dashboard in a real browser: headless Chromium (Debian's `chromium`), driven over the
//! DevTools protocol. It loads the runs page, sees a run started by a separate CLI process appear,
//! follows it to its end with live log lines and the plan graph, and presses re-run. Screenshots
//! are kept under target/test-artifacts/.

use crate::common;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|b| {
            std::env::var_os("PATH").and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(b))
                    .find(|c| c.exists())
            })
        })
}

/// Chromium, or a loud skip (a failure under CI=true).
fn chromium_or_skip() -> Option<PathBuf> {
    let b = chromium();
    if b.is_none() {
        crate::common::skip_suite(
            "the dashboard browser test",
            "no chromium on PATH",
            "apt-get install chromium",
        );
    }
    b
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless Chromium with one page, spoken to over the DevTools protocol.
struct Browser {
    child: Child,
    rt: tokio::runtime::Runtime,
    ws: Ws,
    next: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(bin: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(bin)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--metrics-recording-only",
                "--window-size=1280,900",
                "--no-pings",
                "--disable-domain-reliability",
                "--disable-client-side-phishing-detection",
                // Nothing but loopback: every other host name fails to resolve.
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut ws_url = None;
        let mut seen = String::new();
        for _ in 0..200 {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            seen.push_str(&line);
            if let Some(u) = line.trim().strip_prefix("DevTools listening on ") {
                ws_url = Some(u.to_string());
                break;
            }
        }
        // Keep draining stderr so Chromium never blocks on it.
        std::thread::spawn(move || for _ in err.lines() {});
        let ws_url =
            ws_url.unwrap_or_else(|| panic!("no DevTools endpoint from chromium:\n{seen}"));
        assert!(ws_url.starts_with("ws://127.0.0.1:"), "{ws_url}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (ws, _) = rt
            .block_on(tokio_tungstenite::connect_async(ws_url.as_str()))
            .expect("connect to DevTools");
        let mut b = Browser {
            child,
            rt,
            ws,
            next: 0,
            session: String::new(),
            _profile: profile,
        };
        let t = b.call("Target.createTarget", json!({"url": "about:blank"}), false);
        let target = t["targetId"].as_str().unwrap().to_string();
        let a = b.call(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
            false,
        );
        b.session = a["sessionId"].as_str().unwrap().to_string();
        b.call("Page.enable", json!({}), true);
        b.call("Runtime.enable", json!({}), true);
        b
    }

    fn call(&mut self, method: &str, params: Value, on_page: bool) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if on_page {
            msg["sessionId"] = json!(self.session);
        }
        let ws = &mut self.ws;
        self.rt.block_on(async {
            ws.send(Message::Text(msg.to_string().into()))
                .await
                .unwrap();
            loop {
                let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
                    .await
                    .unwrap_or_else(|_| panic!("no answer to {method}"))
                    .expect("DevTools connection closed")
                    .unwrap();
                if let Message::Text(t) = m {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["id"].as_u64() == Some(id) {
                        assert!(v.get("error").is_none(), "{method}: {v}");
                        return v["result"].clone();
                    }
                }
            }
        })
    }

    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            true,
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}), true);
        self.wait(
            "document.readyState === 'complete' && location.href !== 'about:blank'",
            "the page to load",
        );
    }

    /// Poll `expr` until it is true; returns how long it took. While a page is still loading its
    /// elements may be missing: an exception counts as "not yet".
    fn wait(&mut self, expr: &str, what: &str) -> Duration {
        let t0 = Instant::now();
        let guarded =
            format!("(() => {{ try {{ return !!({expr}); }} catch (e) {{ return false; }} }})()");
        loop {
            if self.eval(&guarded) == json!(true) {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn screenshot(&mut self, name: &str) {
        use base64::Engine;
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}), true);
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ralf-sh serve` with `cfg`, stopped (SIGTERM) when the guard drops; and its URL.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn serve(home: &Path, cfg: &Path) -> (Serving, String) {
    let mut c = common::cmd(home);
    c.arg("--config")
        .arg(cfg)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(home.join("serve.log")).unwrap());
    let mut child = c.spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = serde_json::from_str::<Value>(&line).unwrap_or_else(|e| {
        panic!(
            "serve did not start ({e}): {}",
            std::fs::read_to_string(home.join("serve.log")).unwrap_or_default()
        )
    })["listen"]
        .as_str()
        .unwrap()
        .to_string();
    (Serving(child), url)
}

const SCRIPT: &str = r#"
// Five steps, each logging a line and taking a little while.
for i in 0..5 {
    log::info(`working on part ${i}`);
    run::step(`part${i}`, || { sleep(0.5); i });
}
"#;

#[test]
fn the_dashboard_in_chromium_follows_a_cli_run_live_and_re_runs_it() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("work.rhai"), SCRIPT).unwrap();
    let cfg = home.path().join("ralf.yaml");
    std::fs::write(
        &cfg,
        "state:\n  path: state.db\nserve:\n  listen: 127.0.0.1:0\n  triggers:\n    \
         - { name: work-now, on: manual, script: work.rhai }\n",
    )
    .unwrap();
    let (_serve, url) = serve(home.path(), &cfg);

    let mut b = Browser::start(&bin);
    b.goto(&format!("{url}/"));
    assert_eq!(
        b.eval("document.querySelectorAll('#runs tbody tr').length"),
        json!(0)
    );

    // A run started from the command line, as cron would.
    let mut run = common::cmd(home.path());
    run.arg("--config").arg(&cfg).arg("work.rhai");
    run.stdout(Stdio::null()).stderr(Stdio::null());
    let mut cli = run.spawn().unwrap();
    let appeared = b.wait(
        "document.querySelectorAll('#runs tbody tr[data-run-id]').length === 1",
        "the CLI run to appear",
    );
    eprintln!(
        "a run started by the CLI appeared on the open runs page after {} ms",
        appeared.as_millis()
    );
    let id = b.eval("document.querySelector('#runs tbody tr').dataset.runId");
    let id = id.as_str().unwrap().to_string();
    b.screenshot("dashboard-runs.png");

    // Its page: live log lines while it still runs, then its end.
    b.goto(&format!("{url}/runs/{id}"));
    b.wait(
        "document.querySelectorAll('#log .line').length >= 1",
        "a live log line",
    );
    let status_then = b.eval("document.getElementById('status').textContent");
    b.wait(
        "document.getElementById('status').textContent === 'ok'",
        "the run to end",
    );
    assert!(cli.wait().unwrap().success());
    b.wait(
        "document.querySelectorAll('#log .line').length === 5",
        "every log line",
    );
    let lines = b.eval(
        "Array.from(document.querySelectorAll('#log .line')).map(l => l.textContent).join('\\n')",
    );
    let lines = lines.as_str().unwrap();
    for i in 0..5 {
        assert!(lines.contains(&format!("working on part {i}")), "{lines}");
    }
    // Ids are the journal's, in order, none twice.
    let ids = b
        .eval("Array.from(document.querySelectorAll('#log .line')).map(l => Number(l.dataset.id))");
    let ids: Vec<i64> = serde_json::from_value(ids).unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    b.wait(
        "document.querySelectorAll('#graph g.node[data-status=done]').length === 5",
        "a green graph",
    );
    b.wait(
        "document.querySelectorAll('#steps tbody tr.st-done').length === 5 && document.querySelector('button[data-action=stop]').disabled",
        "the steps table and buttons to follow the run",
    );
    b.screenshot("dashboard-run.png");
    eprintln!("status while the first log line arrived: {status_then}");

    // Re-run from the page: a second run of the same script.
    b.eval("document.querySelector('button[data-action=rerun]').click(); true");
    b.wait(
        "location.pathname === '/' && document.querySelectorAll('#runs tbody tr[data-run-id]').length === 2",
        "the re-run to appear",
    );
    b.screenshot("dashboard-rerun.png");
    // A manual trigger's button starts a third run, named after the trigger.
    b.eval("document.querySelector('button[data-trigger=work-now]').click(); true");
    b.wait(
        "location.pathname === '/' && Array.from(document.querySelectorAll('#runs tbody tr')).some(r => r.textContent.includes('via work-now'))",
        "the manual trigger's run",
    );

    // The log stream resumes after Last-Event-ID without a gap; a POST without the CSRF token is refused.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (sse, forbidden) = rt.block_on(async {
        let c = ralf_sh::clients::http_builder().build().unwrap();
        let sse = c
            .get(format!("{url}/runs/{id}/log"))
            .header("Last-Event-ID", ids[2].to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let forbidden = c
            .post(format!("{url}/runs/{id}/rerun"))
            .form(&[("csrf", "wrong")])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        (sse, forbidden)
    });
    let got: Vec<i64> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(got, ids[3..].to_vec(), "{sse}");
    assert!(sse.contains("event: end\ndata: ok"), "{sse}");
    assert_eq!(forbidden, 403);
}

/// A run waiting at an approval gate shows on the dashboard; pressing approve in the browser lets
/// it go on, and the journal records who approved. A second gate, denied, fails its run.
#[test]
fn a_gate_pending_in_a_cli_run_is_approved_from_the_dashboard_in_chromium() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("gated.rhai"),
        r#"
let r = gate("Deploy v1.2 to production?", #{ name: "production", details: "plan: 2 to change",
    via: ["dashboard"], approvers: ["dashboard"], timeout: 60, plan: "0123456789abcdef" });
if !r.approved { throw `not approved: ${r.reason}`; }
log::info(`approved by ${r.by}`);
"#,
    )
    .unwrap();
    let cfg = home.path().join("ralf.yaml");
    std::fs::write(
        &cfg,
        "state:\n  path: state.db\ngates:\n  poll: 0.2\nserve:\n  listen: 127.0.0.1:0\n",
    )
    .unwrap();
    let (_serve, url) = serve(home.path(), &cfg);
    let mut b = Browser::start(&bin);
    b.goto(&format!("{url}/"));

    for (answer, ok) in [("approve", true), ("deny", false)] {
        let mut run = common::cmd(home.path());
        run.arg("--config").arg(&cfg).arg("gated.rhai");
        run.stdout(Stdio::null()).stderr(Stdio::piped());
        let cli = run.spawn().unwrap();
        b.wait(
            "document.querySelectorAll('#gates tbody tr[data-gate-id]').length === 1 && !document.getElementById('gates-section').hidden",
            "the pending gate",
        );
        let q = b.eval("document.querySelector('#gates tbody tr').textContent");
        assert!(
            q.as_str().unwrap().contains("Deploy v1.2 to production?"),
            "{q}"
        );
        assert!(q.as_str().unwrap().contains("plan: 2 to change"), "{q}");
        assert!(
            q.as_str()
                .unwrap()
                .contains("plan 0123456789abcdef: approving approves this plan only"),
            "{q}"
        );
        b.screenshot(&format!("dashboard-gate-{answer}.png"));
        // Press until the server has the answer (the store's gate_answers row is the signal: the
        // page may swap the row under the click, or be mid-navigation); an answer after the gate
        // was decided is ignored by the gate.
        // A page that has no button (an error page, or one between navigations) is left for the
        // dashboard again; the deadline stays well inside the gate's 60 s timeout.
        let answers_before = answers_recorded(home.path());
        let started = Instant::now();
        let mut presses = 0;
        while answers_recorded(home.path()) == answers_before {
            if started.elapsed() > Duration::from_secs(40) {
                let page = b.eval("location.href + ' | ' + document.body.innerText.slice(0, 600)");
                panic!("no {answer} recorded after {presses} presses in 40 s; the page: {page}");
            }
            let pressed = b.eval(&format!(
                "(() => {{ const x = document.querySelector('#gates button[data-answer={answer}]'); if (x) {{ x.click(); return true; }} return false; }})()"
            ));
            if pressed == serde_json::Value::Bool(true) {
                presses += 1;
            } else {
                b.goto(&format!("{url}/"));
            }
            let t0 = Instant::now();
            while answers_recorded(home.path()) == answers_before
                && t0.elapsed() < Duration::from_secs(3)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let out = cli.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), ok, "{err}");
        if ok {
            assert!(err.contains("approved by dashboard:operator"), "{err}");
        } else {
            assert!(
                err.contains("not approved: denied by dashboard:operator via dashboard"),
                "{err}"
            );
        }
        b.wait(
            "location.pathname === '/' && document.querySelectorAll('#gates tbody tr[data-gate-id]').length === 0",
            "the gate to leave the list",
        );
    }
    // The journal has the question and the dashboard's answers.
    let db = rusqlite::Connection::open(home.path().join("state.db")).unwrap();
    let answers: Vec<String> = db
        .prepare("SELECT data FROM events WHERE kind = 'gate' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .filter(|d| d.contains("\"accepted\":true"))
        .collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(answers[0].contains("dashboard:operator"), "{answers:?}");
    // A gate the dashboard was not asked about cannot be answered there; a forged POST is refused.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let code = rt.block_on(async {
        ralf_sh::clients::http_builder()
            .build()
            .unwrap()
            .post(format!("{url}/gates/deadbeef/approve"))
            .form(&[("csrf", "x")])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(code, 403);
}

/// A run killed with -9 reads as interrupted on its page; the resume button continues it: the
/// finished steps are not run again and the run ends ok on its second attempt.
#[test]
fn an_interrupted_run_is_resumed_from_its_page_in_chromium() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("long.rhai"),
        "for i in 0..6 { log::info(`part ${i}`); run::step(`part${i}`, || { sleep(0.4); i }); }\n",
    )
    .unwrap();
    let cfg = home.path().join("ralf.yaml");
    std::fs::write(
        &cfg,
        "state:\n  path: state.db\nserve:\n  listen: 127.0.0.1:0\n",
    )
    .unwrap();
    let (_serve, url) = serve(home.path(), &cfg);
    let mut run = common::cmd(home.path());
    run.arg("--config").arg(&cfg).arg("long.rhai");
    run.stdout(Stdio::null()).stderr(Stdio::null());
    let mut cli = run.spawn().unwrap();
    let db = home.path().join("state.db");
    let done = || -> i64 {
        rusqlite::Connection::open(&db)
            .and_then(|c| {
                c.query_row(
                    "SELECT count(*) FROM steps WHERE status = 'done'",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap_or(0)
    };
    let t0 = Instant::now();
    while done() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the run did not get going"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cli.kill().unwrap();
    cli.wait().unwrap();
    let id: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT id FROM runs", [], |r| r.get(0))
        .unwrap();

    let mut b = Browser::start(&bin);
    b.goto(&format!("{url}/runs/{id}"));
    b.wait(
        "document.getElementById('status').textContent === 'interrupted' && !document.querySelector('button[data-action=resume]').disabled",
        "the interrupted run with resume enabled",
    );
    b.screenshot("dashboard-interrupted.png");
    b.eval("document.querySelector('button[data-action=resume]').click(); true");
    b.wait(
        &format!("location.pathname === '/runs/{id}' && document.getElementById('status').textContent === 'ok'"),
        "the resumed run to end",
    );
    let run: Value = common::get_json(&format!("{url}/api/runs/{id}"));
    assert_eq!(run["attempts"], 2, "{run}");
    let steps = run["steps"].as_array().unwrap();
    let attempts_of = |k: &str| steps.iter().filter(|s| s["key"] == k).count();
    assert_eq!(
        attempts_of("part0"),
        1,
        "a finished step is not run again: {run}"
    );
    assert_eq!(attempts_of("part1"), 1, "{run}");
    assert_eq!(attempts_of("part5"), 1, "{run}");
    assert!(
        steps.iter().filter(|s| s["status"] == "done").count() >= 6,
        "{run}"
    );
}

/// Dashboard answers the store has recorded (0 while the store or its table does not exist yet).
fn answers_recorded(home: &std::path::Path) -> i64 {
    rusqlite::Connection::open(home.join("state.db"))
        .and_then(|c| c.query_row("SELECT count(*) FROM gate_answers", [], |r| r.get(0)))
        .unwrap_or(0)
}

//! notify::, net::, ralf/smoke and ralf/release: the script tests in tests/rhai/{notify,net,smoke,release}.rhai
//! run with `ralf-sh test` against the in-process lab (notification sink) and a small local HTTP(S)
//! server. Loopback only.

use crate::common;

use axum::extract::Path as AxPath;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Redirect;
use axum::routing::{any, get};
use axum::Router;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Tests that use the shared notification sink take this lock (the script tests clear the sink).
static SINK_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

const CANARY: &str = "canary-s3cr3t-0f1a2b3c4d";

struct World {
    rt: tokio::runtime::Runtime,
    _lab: ralf_sh::lab::Lab,
    info: Value,
    http: String,
    https: String,
    closed_port: u16,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let lab = rt
            .block_on(ralf_sh::lab::start_all(&Default::default()))
            .expect("lab");
        let info = Value::Object(lab.info.clone());
        let (http, https) = rt.block_on(test_servers());
        let closed_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        World {
            rt,
            _lab: lab,
            info,
            http,
            https,
            closed_port,
        }
    })
}

fn app() -> Router {
    Router::new()
        .route("/ok", get(|| async { "all systems ok\n" }))
        .route(
            "/status/{code}",
            any(|AxPath(code): AxPath<u16>| async move {
                (
                    StatusCode::from_u16(code).unwrap(),
                    format!("status {code}"),
                )
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/big",
            get(|| async {
                let mut s = "x".repeat(200_000);
                s.push_str("TAIL");
                s
            }),
        )
        .route(
            "/headers",
            get(|h: HeaderMap| async move {
                h.get("x-test")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_string()
            }),
        )
        .route(
            "/method",
            any(|m: Method, body: String| async move { format!("{m} {body}") }),
        )
        .route("/redirect", get(|| async { Redirect::temporary("/ok") }))
        // Points off loopback: only ever requested with net.only_loopback, which must refuse
        // the hop before any connection is made.
        .route(
            "/redirect-away",
            get(|| async { Redirect::temporary("http://10.255.255.1/ok") }),
        )
}

/// A plain HTTP server and an HTTPS server with a self-signed certificate, both on 127.0.0.1.
async fn test_servers() -> (String, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(l, app()).await;
    });

    let _ = rustls::crypto::ring::default_provider().install_default();
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cfg = axum_server::tls_rustls::RustlsConfig::from_pem(
        ck.cert.pem().into_bytes(),
        ck.key_pair.serialize_pem().into_bytes(),
    )
    .await
    .unwrap();
    let sl = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    sl.set_nonblocking(true).unwrap();
    let https = format!("https://{}", sl.local_addr().unwrap());
    let server = axum_server::from_tcp_rustls(sl, cfg);
    tokio::spawn(async move {
        let _ = server.serve(app().into_make_service()).await;
    });
    (http, https)
}

fn sink_url(w: &World) -> String {
    w.info["notify"]["url"].as_str().unwrap().to_string()
}

/// The lab config plus a Matrix and a Telegram channel into the sink, a webhook to a closed port
/// and one to a sink URL answering 500.
fn config(w: &World, home: &Path) -> (PathBuf, Vec<(String, String)>) {
    let (yaml, mut env) = ralf_sh::lab::client_config(&w.info);
    let mut v: ralf_sh::yaml::Value = ralf_sh::yaml::from_str(&yaml).unwrap();
    let sink = sink_url(w);
    let extra: ralf_sh::yaml::Value = ralf_sh::yaml::from_str(&format!(
        "- type: matrix\n  homeserver: {sink}\n  room: \"!ops:lab\"\n  token_env: RALF_LAB_NOTIFY_TOKEN\n\
         - type: telegram\n  chat_id: \"42\"\n  api_url: {sink}/telegram\n  token_env: RALF_LAB_NOTIFY_TOKEN\n\
         - type: webhook\n  url: http://127.0.0.1:{}/hook\n\
         - type: webhook\n  url: {sink}/status/500\n",
        w.closed_port
    ))
    .unwrap();
    let chans = v["notify"]["channels"].as_sequence_mut().unwrap();
    assert_eq!(
        chans.len(),
        2,
        "lab config has a webhook and an ntfy channel"
    );
    chans.extend(extra.as_sequence().unwrap().iter().cloned());
    let path = home.join("ralf.yaml");
    std::fs::write(&path, ralf_sh::yaml::to_string(&v).unwrap()).unwrap();
    env.push(("RALF_TEST_SINK".into(), sink));
    env.push(("RALF_TEST_HTTP".into(), w.http.clone()));
    env.push(("RALF_TEST_HTTPS".into(), w.https.clone()));
    env.push(("RALF_TEST_CLOSED_PORT".into(), w.closed_port.to_string()));
    env.push(("RALF_SECRET_CANARY".into(), CANARY.into()));
    (path, env)
}

fn ralf(home: &Path) -> Command {
    let w = world();
    let (cfg, env) = config(w, home);
    let mut c = common::cmd(home);
    c.env("RALF_CONFIG", cfg);
    for (k, v) in env {
        c.env(k, v);
    }
    // ./stdlib of the repository (the embedded copy is the same text).
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn run_script_tests(file: &str, min_tests: usize) -> String {
    let home = tempfile::tempdir().unwrap();
    let (out, err) = common::script_tests(
        ralf(home.path()),
        Path::new(&format!("tests/rhai/{file}")),
        min_tests,
    );
    assert!(!out.contains(CANARY) && !err.contains(CANARY));
    out
}

fn sink_records(w: &World) -> Vec<Value> {
    let url = format!("{}/_lab/notifications", sink_url(w));
    w.rt.block_on(async {
        ralf_sh::clients::http_builder()
            .build()
            .unwrap()
            .get(url)
            .send()
            .await
            .unwrap()
            .json::<Vec<Value>>()
            .await
            .unwrap()
    })
}

#[test]
fn notify_script_tests_and_sink() {
    let _g = SINK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let w = world();
    run_script_tests("notify.rhai", 6);

    // A message carrying a secret: the secret never reaches a channel.
    let home = tempfile::tempdir().unwrap();
    let mut c = ralf(home.path());
    c.args([
        "-e",
        r#"let r = notify::send(#{ title: "t", message: `the token is ${secret("canary")}` }); assert(r.sent == 4);"#,
    ]);
    let (code, out, err) = common::run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    let all = serde_json::to_string(&sink_records(w)).unwrap();
    assert!(!all.contains(CANARY), "{all}");
    assert!(all.contains("the token is «redacted»"), "{all}");

    // --dry-run: recorded, nothing sent.
    let home = tempfile::tempdir().unwrap();
    let before = sink_records(w).len();
    let mut c = ralf(home.path());
    c.args([
        "--dry-run",
        "-e",
        r#"let r = notify::send(#{ message: "dry" }); assert(r.dry_run); assert(r.sent == 0);"#,
    ]);
    let (code, out, err) = common::run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(format!("{out}{err}").contains("notify"), "{out}\n{err}");
    assert_eq!(sink_records(w).len(), before);
}

#[test]
fn net_script_tests() {
    run_script_tests("net.rhai", 8);
}

#[test]
fn only_loopback_refuses_a_redirect_off_loopback() {
    let w = world();
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("ralf.yaml"),
        "net:\n  only_loopback: true\n",
    )
    .unwrap();
    let mut c = common::cmd(home.path());
    c.env("RALF_TEST_HTTP", &w.http).args([
        "-e",
        r#"let ok = net::http(env("RALF_TEST_HTTP") + "/redirect");
           assert(ok.ok, `${ok}`);
           let r = net::http(env("RALF_TEST_HTTP") + "/redirect-away", #{ timeout: 2 });
           assert(!r.ok, `${r}`);
           assert(r.error.contains("only loopback"), r.error);
           print("refused");"#,
    ]);
    let (code, out, err) = common::run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("refused"));
}

#[test]
fn smoke_script_tests() {
    run_script_tests("smoke.rhai", 6);
}

#[test]
fn release_script_tests() {
    run_script_tests("release.rhai", 13);
}

/// The client against the sink: wrong tokens fail without leaking them, Matrix transaction ids are
/// idempotent, a channel whose token variable is unset is a reported failure.
#[test]
fn notify_client_failures_do_not_leak_tokens() {
    use ralf_sh::clients::notify::{Message, Notifier};
    use ralf_sh::config::NotifyChannel;
    let _g = SINK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let w = world();
    let sink = sink_url(w);
    let wrong = "wrong-bot-token-77aa88bb";
    std::env::set_var("RALF_FLOWS_TEST_WRONG", wrong);
    std::env::set_var(
        "RALF_FLOWS_TEST_RIGHT",
        w.info["notify"]["token"].as_str().unwrap(),
    );
    std::env::remove_var("RALF_FLOWS_TEST_UNSET");
    let chans = vec![
        NotifyChannel::Telegram {
            chat_id: "1".into(),
            token_env: Some("RALF_FLOWS_TEST_WRONG".into()),
            api_url: Some(format!("{sink}/telegram")),
        },
        NotifyChannel::Matrix {
            homeserver: sink.clone(),
            room: "!wrong:lab".into(),
            token_env: Some("RALF_FLOWS_TEST_WRONG".into()),
        },
        NotifyChannel::Webhook {
            url: format!("{sink}/webhook"),
            token_env: Some("RALF_FLOWS_TEST_UNSET".into()),
        },
    ];
    let n = Notifier::new(chans).unwrap();
    let msg = Message {
        title: "t".into(),
        message: "m".into(),
        ..Default::default()
    };
    let rep = w.rt.block_on(n.send(&msg, "txn-a"));
    assert!(rep.sent.is_empty(), "{rep:?}");
    assert_eq!(rep.failed.len(), 3);
    let text = format!("{rep:?}");
    assert!(!text.contains(wrong), "{text}");
    assert!(text.contains("Unauthorized"), "{text}");
    assert!(text.contains("M_UNKNOWN_TOKEN"), "{text}");
    assert!(text.contains("RALF_FLOWS_TEST_UNSET"), "{text}");

    // Matrix: the same txn id twice is one event on the homeserver.
    let m = Notifier::new(vec![NotifyChannel::Matrix {
        homeserver: format!("{sink}/"),
        room: "!idem:lab".into(),
        token_env: Some("RALF_FLOWS_TEST_RIGHT".into()),
    }])
    .unwrap();
    let r1 = w.rt.block_on(m.send(&msg, "txn-same"));
    let r2 = w.rt.block_on(m.send(&msg, "txn-same"));
    assert_eq!((r1.sent.len(), r2.sent.len()), (1, 1), "{r1:?} {r2:?}");
    let rooms = sink_records(w)
        .iter()
        .filter(|r| r["body"]["room"] == "!idem:lab")
        .count();
    assert_eq!(rooms, 1);
}

#[derive(Default)]
struct Events(parking_lot::Mutex<Vec<(String, Value)>>);

impl ralf_sh::host::Journal for Events {
    fn event(&self, kind: &str, data: &Value) {
        self.0.lock().push((kind.to_string(), data.clone()));
    }
    fn step_detail(&self, _key: &str, _value: &Value) {}
    fn previous_step_detail(&self, _key: &str) -> Option<Value> {
        None
    }
}

/// Every send is recorded in the run journal as a `notify` event, with the secrets scrubbed.
#[test]
fn notify_send_is_journaled() {
    let _g = SINK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let w = world();
    let sink = sink_url(w);
    let yaml = format!(
        "notify:\n  channels:\n    - type: webhook\n      url: {sink}/webhook\n    - type: webhook\n      url: {sink}/status/503\n"
    );
    let config = ralf_sh::config::parse(&yaml, Path::new("test.yaml")).unwrap();
    let host = ralf_sh::host::Host::new(
        ralf_sh::config::LoadedConfig { config, path: None },
        w.rt.handle().clone(),
        Default::default(),
    );
    let events = std::sync::Arc::new(Events::default());
    host.set_journal(events.clone());
    let se = ralf_sh::engine::build(&host);
    ralf_sh::redact::register("journal-canary-9f8e7d");
    let r: rhai::Map = se
        .engine
        .eval(r#"notify::send(#{ title: "deploy", message: "key journal-canary-9f8e7d", priority: 5 })"#)
        .unwrap();
    assert_eq!(r["sent"].as_int().unwrap(), 1);
    assert_eq!(r["failed"].clone().into_array().unwrap().len(), 1);
    let ev = events.0.lock().clone();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].0, "notify");
    let d = &ev[0].1;
    assert_eq!(d["priority"], "urgent");
    assert_eq!(d["sent"].as_array().unwrap().len(), 1);
    assert!(d["failed"][0]["error"]
        .as_str()
        .unwrap()
        .contains("HTTP 503"));
    assert_eq!(d["message"], "key «redacted»");
}

/// The sink behaves like the real services for what the client does not send itself.
#[test]
fn sink_answers_like_the_services() {
    let _g = SINK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let w = world();
    let sink = sink_url(w);
    let token = w.info["notify"]["token"].as_str().unwrap().to_string();
    w.rt.block_on(async {
        let c = ralf_sh::clients::http_builder().build().unwrap();
        let r = c
            .post(format!("{sink}/ntfy/alerts"))
            .header("Title", "hi")
            .header("Priority", "high")
            .body("body text")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["topic"], "alerts");
        let r = c
            .post(format!("{sink}/ntfy/"))
            .json(&serde_json::json!({"message": "no topic"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = c
            .post(format!("{sink}/webhook"))
            .bearer_auth("not-the-token")
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = c
            .put(format!(
                "{sink}/_matrix/client/v3/rooms/%21r%3Alab/send/m.room.message/t1"
            ))
            .json(&serde_json::json!({"msgtype": "m.text", "body": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["errcode"], "M_MISSING_TOKEN");
        let r = c
            .post(format!("{sink}/telegram/bot{token}/sendMessage"))
            .json(&serde_json::json!({"chat_id": 5}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["ok"], false);
    });
    let recs = sink_records(w);
    assert!(recs.iter().any(|r| r["kind"] == "ntfy"
        && r["body"]["title"] == "hi"
        && r["body"]["message"] == "body text"));
}

#[test]
fn text_script_tests() {
    run_script_tests("text.rhai", 5);
}

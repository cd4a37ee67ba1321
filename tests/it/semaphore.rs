//! Semaphore: client tests and contract tests against the lab stand-in, plus the script-level tests
//! in `tests/rhai/semaphore.rhai` run through the binary.

use crate::common;
use crate::common::semaphore as harness;

use ralf_sh::clients::semaphore::{
    Auth, Client, ClientOptions, RunRequest, Task, WaitEvent, WaitOptions,
};
use ralf_sh::config::IdOrName;
use ralf_sh::error::ErrorKind;
use ralf_sh::lab::semaphore::{spawn, Behaviour, Handle, LabOptions};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn opts(h: &Handle, auth: Auth) -> ClientOptions {
    ClientOptions {
        url: h.url.clone(),
        project: Some(IdOrName::Id(1)),
        auth,
        timeout: Duration::from_secs(10),
        ca_file: None,
        insecure: false,
        websocket: true,
        max_output: ralf_sh::clients::semaphore::DEFAULT_MAX_OUTPUT,
    }
}

/// Tasks of `template` take `ms` milliseconds and print `lines` lines.
fn timed(h: &Handle, template: &str, ms: u64, lines: u32) {
    h.set_behaviour(
        template,
        Behaviour {
            duration_ms: ms,
            lines,
            ..Default::default()
        },
    )
    .unwrap();
}

async fn lab() -> Handle {
    spawn(LabOptions::default()).await.unwrap()
}

async fn client(h: &Handle) -> Arc<Client> {
    Client::connect(opts(h, Auth::Token(h.token.clone())))
        .await
        .unwrap()
}

fn wo(timeout_ms: u64) -> WaitOptions {
    WaitOptions {
        timeout: Duration::from_millis(timeout_ms),
        ..Default::default()
    }
}

async fn wait(c: &Client, id: i64) -> Task {
    c.wait(id, &wo(20_000), &mut |_| {}).await.unwrap()
}

async fn run(c: &Client, name: &str, r: RunRequest) -> Task {
    let t = c.template(&IdOrName::Name(name.into())).await.unwrap();
    c.run(&t, &r).await.unwrap()
}

async fn until_status(c: &Client, id: i64, status: &str) {
    for _ in 0..500 {
        if c.task(id).await.unwrap().status == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("task {id} never reached {status}");
}

#[test]
fn run_and_wait_success_with_events_and_output() {
    rt().block_on(async {
        let h = lab().await;
        let c = client(&h).await;
        assert_eq!(c.project_name, "RALF");
        let mut env = serde_json::Map::new();
        env.insert("SERVICE_NAME".into(), json!("vaultwarden"));
        let t = run(
            &c,
            "RALF Vault Apply",
            RunRequest {
                env: Some(env),
                message: Some("test".into()),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(t.status, "waiting");
        let mut events = Vec::new();
        let fin = c
            .wait(t.id, &wo(20_000), &mut |e| events.push(e))
            .await
            .unwrap();
        assert_eq!(fin.status, "success");
        assert!(fin.field("end").is_some());
        let statuses: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                WaitEvent::Status(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(statuses.last().map(String::as_str), Some("success"));
        let out = c.output(t.id).await.unwrap();
        assert!(
            out.iter().any(|l| l.output.contains("PLAY RECAP")),
            "{out:?}"
        );
        // Skipping lines already seen.
        let mut seen = out.len() - 1;
        assert_eq!(c.new_output(t.id, &mut seen).await.unwrap().len(), 1);
        assert_eq!(c.new_output(t.id, &mut seen).await.unwrap().len(), 0);
        // The environment travelled as a JSON string.
        let raw = c.task(t.id).await.unwrap().raw;
        assert_eq!(
            raw["environment"],
            json!("{\"SERVICE_NAME\":\"vaultwarden\"}")
        );
    });
}

/// The stand-in ends a task like the real runner (S6): `SetStatus` sends a terminal `update` with
/// `end: null` before writing the row, then the runner's end sends a second one with `end`. The
/// websocket wait takes the server's word from the events: it returns the finished task with its
/// end and never reads back the row that lags the event (the old wait re-read it three times,
/// 75 ms, per task).
#[test]
fn websocket_wait_ends_on_the_servers_events_without_reading_the_lagging_row() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    rt().block_on(async {
        let h = lab().await;
        timed(&h, "RALF Vault Smoke", 50, 2);
        let c = client(&h).await;
        // Watch the socket as a second client does.
        let mut req = format!("{}/api/ws", h.url.replace("http://", "ws://"))
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "Authorization",
            format!("Bearer {}", h.token).parse().unwrap(),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let t = run(&c, "RALF Vault Smoke", RunRequest::default()).await;
        let fin = wait(&c, t.id).await;
        assert_eq!(fin.status, "success");
        let end = fin.raw["end"].clone();
        assert!(
            end.is_string(),
            "the finished task has its end: {:?}",
            fin.raw
        );
        // The row: the same end, once written (it lags the events); this test's reads counted.
        let mut own_reads = 0;
        let mut row = Value::Null;
        for _ in 0..500 {
            row = c.task(t.id).await.unwrap().raw;
            own_reads += 1;
            if row["status"] == "success" && !row["end"].is_null() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(row["end"], end);
        // The events: two terminal updates, the first without an end.
        let mut terminal = Vec::new();
        while terminal.len() < 2 {
            let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .expect("the second terminal update")
                .unwrap()
                .unwrap();
            let Ok(v) = serde_json::from_str::<Value>(m.to_text().unwrap_or("")) else {
                continue;
            };
            if v["type"] == "update" && v["task_id"] == json!(t.id) && v["status"] == "success" {
                terminal.push(v);
            }
        }
        assert!(terminal[0]["end"].is_null(), "{terminal:?}");
        assert_eq!(terminal[1]["end"], end, "{terminal:?}");
        // One read of the task (right after the socket opened), none after the events.
        let path = format!("/api/project/1/tasks/{}", t.id);
        let reads = h
            .exchanges()
            .iter()
            .filter(|x| x.method == "GET" && x.uri == path)
            .count();
        // The others are this test's own (reading the row until its end is written).
        assert_eq!(reads, 1 + own_reads, "GETs of the task");
    });
}

/// Parallel waits of one client share one websocket: a single connection, and each wait still
/// sees only its own task's lines and ends with its own status.
#[test]
fn parallel_waits_share_one_websocket() {
    rt().block_on(async {
        let h = lab().await;
        timed(&h, "Lab Parallel", 200, 3);
        let c = client(&h).await;
        let sockets = || h.sockets_opened();
        let before = sockets();
        let mut waits = Vec::new();
        for _ in 0..8 {
            let t = run(&c, "Lab Parallel", RunRequest::default()).await;
            let c = c.clone();
            waits.push(tokio::spawn(async move {
                let mut lines = Vec::new();
                let fin = c
                    .wait(t.id, &wo(20_000), &mut |e| {
                        if let WaitEvent::Line(l) = e {
                            lines.push(l)
                        }
                    })
                    .await
                    .unwrap();
                (t.id, fin, lines)
            }));
        }
        for w in waits {
            let (id, fin, lines) = w.await.unwrap();
            assert_eq!((fin.id, fin.status.as_str()), (id, "success"));
            let own = c.output(id).await.unwrap();
            assert_eq!(lines.len(), own.len(), "task {id}: {lines:?}");
        }
        assert_eq!(sockets() - before, 1, "one websocket for 8 parallel waits");
    });
}

/// When the shared socket closes mid-wait (a restart, a proxy's idle timeout), every wait on it
/// goes on by polling and still ends with its task's status; the next wait opens a new socket.
#[test]
fn waits_outlive_a_closed_shared_websocket() {
    rt().block_on(async {
        let h = lab().await;
        timed(&h, "Lab Parallel", 800, 4);
        let c = client(&h).await;
        let mut waits = Vec::new();
        let mut last = 0;
        for _ in 0..3 {
            let t = run(&c, "Lab Parallel", RunRequest::default()).await;
            last = t.id;
            let c = c.clone();
            waits.push(tokio::spawn(async move { (t.id, wait(&c, t.id).await) }));
        }
        let open = h.sockets_opened();
        // All three are on the socket and their tasks running.
        until_status(&c, last, "running").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        h.close_sockets();
        for w in waits {
            let (id, fin) = w.await.unwrap();
            assert_eq!((fin.id, fin.status.as_str()), (id, "success"));
        }
        let t = run(&c, "Lab Parallel", RunRequest::default()).await;
        assert_eq!(wait(&c, t.id).await.status, "success");
        assert_eq!(
            h.sockets_opened(),
            open + 1,
            "a new socket for the next wait"
        );
    });
}

#[test]
fn error_outcome_and_polling_fallback() {
    rt().block_on(async {
        let h = lab().await;
        let mut o = opts(&h, Auth::Token(h.token.clone()));
        o.websocket = false;
        let c = Client::connect(o).await.unwrap();
        let t = run(&c, "Lab Fail", RunRequest::default()).await;
        let fin = wait(&c, t.id).await;
        assert_eq!(fin.status, "error");
        let t2 = run(&c, "RALF Vault Smoke", RunRequest::default()).await;
        assert_eq!(wait(&c, t2.id).await.status, "success");
    });
}

#[test]
fn stop_graceful_and_forced() {
    rt().block_on(async {
        let h = lab().await;
        let c = client(&h).await;
        let t = run(&c, "Lab Hang", RunRequest::default()).await;
        until_status(&c, t.id, "running").await;
        c.stop(t.id, false).await.unwrap();
        assert_eq!(wait(&c, t.id).await.status, "stopped");
        let t = run(&c, "Lab Hang", RunRequest::default()).await;
        until_status(&c, t.id, "running").await;
        c.stop(t.id, true).await.unwrap();
        assert_eq!(c.task(t.id).await.unwrap().status, "stopped");
    });
}

#[test]
fn wait_timeout_leaves_task_running() {
    rt().block_on(async {
        let h = lab().await;
        let c = client(&h).await;
        let t = run(&c, "Lab Hang", RunRequest::default()).await;
        let e = c.wait(t.id, &wo(300), &mut |_| {}).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
        assert_eq!(e.details["task_id"], json!(t.id));
        let active = c.active(t.template_id).await.unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].id, t.id);
        c.stop(t.id, true).await.unwrap();
        assert!(c.active(t.template_id).await.unwrap().is_empty());
    });
}

#[test]
fn auth_errors_and_login() {
    rt().block_on(async {
        let h = lab().await;
        let e = Client::connect(opts(&h, Auth::Token("not-a-token".into())))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Auth);
        assert!(e.message.contains("token"), "{}", e.message);
        let e = Client::connect(opts(
            &h,
            Auth::Login {
                user: h.user.clone(),
                password: "wrong".into(),
            },
        ))
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Auth);
        assert!(!e.message.contains("wrong"));
        let c = Client::connect(opts(
            &h,
            Auth::Login {
                user: h.user.to_uppercase(),
                password: h.password.clone(),
            },
        ))
        .await
        .unwrap();
        let t = run(&c, "RALF Vault Smoke", RunRequest::default()).await;
        assert_eq!(wait(&c, t.id).await.status, "success");
    });
}

#[test]
fn unknown_things_are_not_found() {
    rt().block_on(async {
        let h = lab().await;
        let c = client(&h).await;
        let e = c
            .template(&IdOrName::Name("RALF Vault Aply".into()))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(
            e.message.contains("did you mean `RALF Vault Apply`"),
            "{}",
            e.message
        );
        assert_eq!(
            c.template(&IdOrName::Id(999)).await.unwrap_err().kind,
            ErrorKind::NotFound
        );
        let e = c.task(9999).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
        let mut o = opts(&h, Auth::Token(h.token.clone()));
        o.project = Some(IdOrName::Name("Nope".into()));
        assert_eq!(
            Client::connect(o).await.unwrap_err().kind,
            ErrorKind::NotFound
        );
        let mut o = opts(&h, Auth::Token(h.token.clone()));
        o.project = None;
        assert_eq!(Client::connect(o).await.unwrap().project_id, 1);
    });
}

#[test]
fn flaky_server_never_starts_a_task_twice() {
    rt().block_on(async {
        let h = lab().await;
        let c = client(&h).await;
        for mode in ["500", "drop"] {
            let before = h.tasks().len();
            h.fail_task_creates(1, mode);
            let t = run(
                &c,
                "RALF Automation Apply",
                RunRequest {
                    message: Some(format!("flaky {mode}")),
                    ..Default::default()
                },
            )
            .await;
            assert_eq!(
                h.tasks().len(),
                before + 1,
                "mode {mode}: a second task was started"
            );
            assert_eq!(h.tasks().last().unwrap()["id"], json!(t.id));
            assert_eq!(wait(&c, t.id).await.status, "success");
        }
    });
}

#[test]
fn waiting_confirmation_confirm_and_reject() {
    rt().block_on(async {
        let h = lab().await;
        let c = client(&h).await;
        let t = run(&c, "Lab Confirm", RunRequest::default()).await;
        let e = c.confirm(t.id, true).await;
        // Not yet waiting (or already): either conflict or ok; wait for the state first.
        if let Err(e) = e {
            assert_eq!(e.kind, ErrorKind::Conflict);
        }
        until_status(&c, t.id, "waiting_confirmation").await;
        c.confirm(t.id, true).await.unwrap();
        assert_eq!(wait(&c, t.id).await.status, "success");
        assert_eq!(
            c.confirm(t.id, true).await.unwrap_err().kind,
            ErrorKind::Conflict
        );
        let t = run(&c, "Lab Confirm", RunRequest::default()).await;
        until_status(&c, t.id, "waiting_confirmation").await;
        c.confirm(t.id, false).await.unwrap();
        assert_eq!(wait(&c, t.id).await.status, "error");
    });
}

#[test]
fn flaky_template_and_one_task_at_a_time() {
    rt().block_on(async {
        let h = lab().await;
        h.set_behaviour(
            "RALF AI Apply",
            Behaviour {
                fail_times: 1,
                duration_ms: 50,
                ..Default::default()
            },
        )
        .unwrap();
        let c = client(&h).await;
        let a = run(&c, "RALF AI Apply", RunRequest::default()).await;
        let b = run(&c, "RALF AI Apply", RunRequest::default()).await;
        let a = wait(&c, a.id).await;
        let b = wait(&c, b.id).await;
        assert_eq!((a.status.as_str(), b.status.as_str()), ("error", "success"));
        let a_end = chrono::DateTime::parse_from_rfc3339(a.field("end").unwrap()).unwrap();
        let b_start = chrono::DateTime::parse_from_rfc3339(b.field("start").unwrap()).unwrap();
        assert!(
            b_start >= a_end,
            "second task started before the first ended"
        );
        // Parallel template: the second starts while the first runs.
        let p1 = run(&c, "Lab Parallel", RunRequest::default()).await;
        let p2 = run(&c, "Lab Parallel", RunRequest::default()).await;
        let (p1, p2) = (wait(&c, p1.id).await, wait(&c, p2.id).await);
        let p1_end = chrono::DateTime::parse_from_rfc3339(p1.field("end").unwrap()).unwrap();
        let p2_start = chrono::DateTime::parse_from_rfc3339(p2.field("start").unwrap()).unwrap();
        assert!(p2_start < p1_end);
        // Lists are newest first.
        let recent = c.recent_tasks(10).await.unwrap();
        assert!(recent.windows(2).all(|w| w[0].id > w[1].id));
    });
}

#[test]
fn ensure_template_creates_updates_and_validates() {
    rt().block_on(async {
        let h = lab().await;
        let c = client(&h).await;
        let spec = |pb: &str| {
            json!({"name": "RALF Test Apply", "playbook": pb, "inventory": "homelab", "arguments": ["-v"]})
                .as_object()
                .unwrap()
                .clone()
        };
        let (t, ch) = c.ensure_template(&spec("a.yml")).await.unwrap();
        assert_eq!(ch, "created");
        assert_eq!(t.raw["arguments"], json!("[\"-v\"]"));
        assert_eq!(c.ensure_template(&spec("a.yml")).await.unwrap().1, "unchanged");
        let (t2, ch) = c.ensure_template(&spec("b.yml")).await.unwrap();
        assert_eq!((ch, t2.id), ("updated", t.id));
        assert_eq!(t2.raw["playbook"], json!("b.yml"));
        let mut bad = spec("c.yml");
        bad.insert("app".into(), json!("cobol"));
        let e = c.ensure_template(&bad).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(e.message.contains("Invalid app id"), "{}", e.message);
        let mut bad = spec("c.yml");
        bad.insert("inventory".into(), json!("nope"));
        assert_eq!(c.ensure_template(&bad).await.unwrap_err().kind, ErrorKind::NotFound);
    });
}

#[test]
fn stand_in_speaks_like_the_real_server() {
    rt().block_on(async {
        let h = lab().await;
        let http = ralf_sh::clients::http_builder().build().unwrap();
        let auth = format!("bearer {}", h.token.to_uppercase().to_lowercase());
        let get = |p: &str| {
            http.get(format!("{}/api{p}", h.url))
                .header("Authorization", auth.clone())
                .send()
        };
        // Trailing slash: 404 text/plain.
        let r = get("/project/1/").await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.text().await.unwrap().trim(), "Not Found");
        // Unknown task: 400 with an empty body; unknown project: 404 empty; bad project id: 400 error.
        let r = get("/project/1/tasks/424242").await.unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.text().await.unwrap(), "");
        assert_eq!(get("/project/7").await.unwrap().status(), 404);
        let r = get("/project/x/templates").await.unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "Invalid project ID"})
        );
        // No auth: 401 empty.
        let r = http
            .get(format!("{}/api/projects", h.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.text().await.unwrap(), "");
        // environment as an object is a decode error: 400 empty; stop without body: 400.
        let post = |p: &str, b: Option<Value>| {
            let rb = http
                .post(format!("{}/api{p}", h.url))
                .header("Authorization", auth.clone());
            match b {
                Some(b) => rb.json(&b).send(),
                None => rb.send(),
            }
        };
        let r = post(
            "/project/1/tasks",
            Some(json!({"template_id": 1, "environment": {"a": 1}})),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.text().await.unwrap(), "");
        let r = post("/project/1/tasks", Some(json!({"template_id": 999})))
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let r = post(
            "/project/1/tasks",
            Some(json!({"template_name": "Lab Hang"})),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        let r = post(&format!("/project/1/tasks/{id}/stop"), None)
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = post(
            &format!("/project/1/tasks/{id}/stop"),
            Some(json!({"force": true})),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(r.text().await.unwrap(), "");
        // Wrong method on an existing path: 404.
        let r = http
            .post(format!("{}/api/project/1/templates/1/tasks", h.url))
            .header("Authorization", auth.clone())
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    });
}

/// Drive the client through every implemented route, then check every recorded exchange against the
/// official OpenAPI definitions, and every request body the client sent against the spec's field types.
#[test]
fn contract_every_exchange_matches_the_openapi_spec() {
    let spec = harness::Spec::load();
    rt().block_on(async {
        let h = lab().await;
        let c = client(&h).await;
        let login = Client::connect(opts(
            &h,
            Auth::Login {
                user: h.user.clone(),
                password: h.password.clone(),
            },
        ))
        .await
        .unwrap();
        login.templates().await.unwrap();
        let mut env = serde_json::Map::new();
        env.insert("APP_VERSION".into(), json!("1.2"));
        let t = run(
            &c,
            "RALF Vault Apply",
            RunRequest {
                env: Some(env),
                message: Some("contract".into()),
                limit: vec!["vault".into(), "db".into()],
                tags: vec!["deploy".into()],
                skip_tags: vec!["slow".into()],
                dry_run: true,
                debug: true,
                diff: true,
                branch: Some("main".into()),
                arguments: vec!["-v".into()],
                inventory_id: Some(1),
            },
        )
        .await;
        wait(&c, t.id).await;
        c.output(t.id).await.unwrap();
        c.templates().await.unwrap();
        c.template(&IdOrName::Id(1)).await.unwrap();
        c.active(1).await.unwrap();
        c.recent_tasks(5).await.unwrap();
        let hang = run(&c, "Lab Hang", RunRequest::default()).await;
        c.stop(hang.id, false).await.unwrap();
        wait(&c, hang.id).await;
        let conf = run(&c, "Lab Confirm", RunRequest::default()).await;
        until_status(&c, conf.id, "waiting_confirmation").await;
        c.confirm(conf.id, true).await.unwrap();
        wait(&c, conf.id).await;
        let spec_map =
            json!({"name": "RALF Contract Apply", "playbook": "x.yml", "environment": "default", "repository": 1});
        c.ensure_template(spec_map.as_object().unwrap()).await.unwrap();
        let mut upd = spec_map.as_object().unwrap().clone();
        upd.insert("description".into(), json!("changed"));
        c.ensure_template(&upd).await.unwrap();
        let _ = c.task(99999).await;
        let _ = c.template(&IdOrName::Id(4242)).await;
        for kind in ["inventory", "repositories", "keys", "environment"] {
            c.resource_id(kind, &IdOrName::Id(1)).await.unwrap();
        }
        // Raw calls for routes the client does not use.
        let http = ralf_sh::clients::http_builder().build().unwrap();
        let auth = format!("Bearer {}", h.token);
        for p in ["/project/1/tasks", "/project/1/inventory/1", "/project/1/keys/1", "/user/tokens", "/auth/login"] {
            http.get(format!("{}/api{p}", h.url)).header("Authorization", &auth).send().await.unwrap();
        }
        http.post(format!("{}/api/project/1/keys", h.url))
            .header("Authorization", &auth)
            .json(&json!({"name": "k", "type": "login_password", "project_id": 1, "login_password": {"login": "u", "password": "secret-pw"}}))
            .send()
            .await
            .unwrap();

        let mut errs = Vec::new();
        let mut not_in_spec = std::collections::BTreeSet::new();
        let mut checked = 0;
        for x in h.exchanges() {
            let Some(sp) = spec.match_path(&x.uri) else {
                not_in_spec.insert(format!("{} {}", x.method, x.route));
                continue;
            };
            if spec.operation(&sp, &x.method).is_none() {
                not_in_spec.insert(format!("{} {}", x.method, sp));
                continue;
            }
            let at = format!("{} {} -> {}", x.method, x.uri, x.status);
            // Requests: body types per the spec.
            if let (Some(schema), Some(body)) = (spec.body_schema(&sp, &x.method), &x.request) {
                spec.validate(&schema, body, &format!("{at} request"), &mut errs);
            }
            if x.uri.ends_with("/stop") {
                match &x.request {
                    Some(b) if b["force"].is_boolean() => {}
                    other => errs.push(format!("{at}: stop sent without {{\"force\": bool}}: {other:?}")),
                }
            }
            if x.method == "POST" && x.uri.ends_with("/tasks") {
                let b = x.request.clone().unwrap_or_default();
                for k in ["environment", "arguments"] {
                    if b.get(k).is_some_and(|v| !v.is_string()) {
                        errs.push(format!("{at}: {k} must be a JSON-encoded string"));
                    }
                }
            }
            // Responses.
            if x.status == 204 && !x.response.is_empty() {
                errs.push(format!("{at}: 204 with a body"));
            }
            if x.status >= 400 {
                if !x.response.is_empty() {
                    let v: Value = serde_json::from_slice(&x.response).unwrap_or(Value::Null);
                    if !v["error"].is_string() {
                        errs.push(format!("{at}: error body is neither empty nor {{\"error\": ...}}"));
                    }
                }
                continue;
            }
            match spec.response(&sp, &x.method, x.status) {
                None => errs.push(format!("{at}: status not documented for {sp}")),
                Some(Value::Null) => {}
                Some(schema) => {
                    checked += 1;
                    match serde_json::from_slice::<Value>(&x.response) {
                        Ok(v) => spec.validate(&schema, &v, &at, &mut errs),
                        Err(e) => errs.push(format!("{at}: body is not JSON: {e}")),
                    }
                    if !x.content_type.starts_with("application/json") {
                        errs.push(format!("{at}: content-type {}", x.content_type));
                    }
                }
            }
            // Secrets are never echoed.
            if String::from_utf8_lossy(&x.response).contains("secret-pw") {
                errs.push(format!("{at}: echoes a key secret"));
            }
        }
        assert!(errs.is_empty(), "contract violations:\n{}", errs.join("\n"));
        assert!(checked >= 15, "only {checked} responses had a schema");
        // Routes the facts sheet documents but the spec file lacks.
        let allowed: std::collections::BTreeSet<String> = [
            "GET /project/{project_id}/templates/{template_id}/tasks",
            "POST /project/{project_id}/tasks/{task_id}/confirm",
            "GET /project/{project_id}/keys/{key_id}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let unexpected: Vec<_> = not_in_spec.difference(&allowed).collect();
        assert!(unexpected.is_empty(), "routes missing from the spec: {unexpected:?}");
    });
}

#[test]
fn lab_info_is_random_per_start_and_seeds_the_catalog() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("apps.yaml"),
            "services:\n  - name: x\n    semaphore:\n      template: RALF X Apply\n      smoke_template: RALF X Smoke\n",
        )
        .unwrap();
        let h1 = spawn(LabOptions {
            catalog_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .await
        .unwrap();
        let names = h1.template_names();
        assert!(names.contains(&"RALF X Apply".to_string()) && names.contains(&"RALF X Smoke".to_string()));
        assert!(names.contains(&"RALF Vault Apply".to_string()));
        let h2 = lab().await;
        assert_ne!(h1.password, h2.password);
        assert_ne!(h1.token, h2.token);
        let mut l = ralf_sh::lab::Lab::default();
        ralf_sh::lab::semaphore::start(&mut l).await.unwrap();
        let info = &l.info["semaphore"];
        for k in ["url", "project_id", "user", "password", "token"] {
            assert!(!info[k].is_null(), "{k} missing from lab info");
        }
        assert!(info["url"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    });
}

/// `tests/rhai/semaphore.rhai`: each `fn test_*()` runs through the binary against a stand-in of
/// every modelled release (2.10, 2.16, latest); the scripts read `sem.version` where releases differ.
#[test]
fn script_level_tests() {
    use ralf_sh::lab::profiles::SemaphoreVersion;
    for version in [
        SemaphoreVersion::V2_10,
        SemaphoreVersion::V2_16,
        SemaphoreVersion::Latest,
    ] {
        let rt = rt();
        let h = rt.block_on(async {
            spawn(LabOptions {
                version,
                ..Default::default()
            })
            .await
            .unwrap()
        });
        let home = tempfile::tempdir().unwrap();
        let tok = home.path().join("sem.token");
        std::fs::write(&tok, &h.token).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cfg = home.path().join("ralf.yaml");
        std::fs::write(
            &cfg,
            format!(
                "semaphore:\n  url: {}\n  project: 1\n  token_file: {}\n",
                h.url,
                tok.display()
            ),
        )
        .unwrap();
        let mut c = common::cmd(home.path());
        c.arg("--config").arg(&cfg);
        let file =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rhai/semaphore.rhai");
        let (out, err) = common::script_tests(c, &file, 12);
        // The token never leaked.
        assert!(
            !out.contains(&h.token) && !err.contains(&h.token),
            "{version:?}: token leaked"
        );
        drop(h);
    }
}

struct FakeJournal {
    prev: Option<Value>,
    baseline: Option<Value>,
    details: parking_lot::Mutex<Vec<(String, Value)>>,
}

impl ralf_sh::host::Journal for FakeJournal {
    fn event(&self, _kind: &str, _data: &Value) {}
    fn step_detail(&self, key: &str, value: &Value) {
        self.details.lock().push((key.to_string(), value.clone()));
    }
    fn previous_step_detail(&self, key: &str) -> Option<Value> {
        match key {
            "semaphore_task_id" => self.prev.clone(),
            "semaphore_baseline" => self.baseline.clone(),
            _ => None,
        }
    }
}

impl FakeJournal {
    fn new(prev: Option<Value>, baseline: Option<Value>) -> Arc<FakeJournal> {
        Arc::new(FakeJournal {
            prev,
            baseline,
            details: Default::default(),
        })
    }

    /// The last value recorded under `key`.
    fn detail(&self, key: &str) -> Option<Value> {
        self.details
            .lock()
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
}

/// Run a script in-process with a host of the given options; returns the value or the rendered error.
fn eval(
    rt: &tokio::runtime::Runtime,
    dry_run: bool,
    journal: Option<Arc<FakeJournal>>,
    script: &str,
) -> (Result<rhai::Dynamic, String>, Arc<ralf_sh::host::Host>) {
    let loaded = ralf_sh::config::LoadedConfig {
        config: Default::default(),
        path: None,
    };
    let host = ralf_sh::host::Host::new(
        loaded,
        rt.handle().clone(),
        ralf_sh::host::HostOptions {
            dry_run,
            ..Default::default()
        },
    );
    if let Some(j) = journal {
        host.set_journal(j);
    }
    let se = ralf_sh::engine::build(&host);
    let ast = se.compile_text("<test>", script).unwrap();
    let mut scope = rhai::Scope::new();
    let r = match se.run(&mut scope, &ast) {
        Ok(ralf_sh::engine::Outcome::Value(v)) => Ok(v),
        Ok(other) => Err(format!("{other:?}")),
        Err(e) => Err(se.render_error(&e, "<test>")),
    };
    (r, host)
}

#[test]
fn resumed_run_reattaches_and_dry_run_changes_nothing() {
    let rt = rt();
    let h = rt.block_on(lab());
    let c = rt.block_on(client(&h));
    let running = rt.block_on(run(&c, "Lab Hang", RunRequest::default()));
    let conn = format!(
        "let sem = semaphore::connect(#{{ url: \"{}\", token: \"{}\", project: 1 }});",
        h.url, h.token
    );
    let before = h.tasks().len();

    // Same template, task still running: re-attach, start nothing.
    let j = FakeJournal::new(Some(json!(running.id)), None);
    let (r, _) = eval(
        &rt,
        false,
        Some(j.clone()),
        &format!("{conn} sem.run(\"Lab Hang\").id"),
    );
    assert_eq!(r.unwrap().as_int().unwrap(), running.id);
    assert_eq!(h.tasks().len(), before);
    assert_eq!(
        j.details.lock().as_slice(),
        &[("semaphore_task_id".to_string(), json!(running.id))]
    );

    // Another template: a new task is started and recorded.
    let j2 = FakeJournal::new(Some(json!(running.id)), None);
    let (r, _) = eval(
        &rt,
        false,
        Some(j2.clone()),
        &format!("{conn} sem.run(\"RALF Vault Smoke\").wait().status"),
    );
    assert_eq!(r.unwrap().into_string().unwrap(), "success");
    assert_eq!(h.tasks().len(), before + 1);
    assert_ne!(j2.detail("semaphore_task_id").unwrap(), json!(running.id));
    assert!(j2.detail("semaphore_baseline").unwrap().as_i64().unwrap() >= running.id);

    // The previous attempt's task succeeded after the interruption: adopted, not run again.
    let done = j2.detail("semaphore_task_id").unwrap();
    let j3 = FakeJournal::new(Some(done.clone()), None);
    let (r, _) = eval(
        &rt,
        false,
        Some(j3),
        &format!("{conn} let t = sem.run(\"RALF Vault Smoke\"); t.wait(); [t.id, t.ok]"),
    );
    let a = r.unwrap().cast::<rhai::Array>();
    assert_eq!(json!(a[0].as_int().unwrap()), done);
    assert!(a[1].as_bool().unwrap());
    assert_eq!(h.tasks().len(), before + 1);

    // ... but a previous task that failed is retried with a new one.
    let failed = rt.block_on(run(&c, "Lab Fail", RunRequest::default()));
    let failed = rt
        .block_on(c.wait(failed.id, &wo(20_000), &mut |_| {}))
        .unwrap();
    assert_eq!(failed.status, "error");
    let n = h.tasks().len();
    let j4 = FakeJournal::new(Some(json!(failed.id)), None);
    let (r, _) = eval(
        &rt,
        false,
        Some(j4),
        &format!("{conn} sem.run(\"Lab Fail\").id"),
    );
    assert_ne!(r.unwrap().as_int().unwrap(), failed.id);
    assert_eq!(h.tasks().len(), n + 1);

    // Killed between the request and its answer: only the baseline was recorded. The task that
    // attempt started (same template, env and message, newer than the baseline) is taken over.
    let base = rt.block_on(c.baseline()).unwrap();
    let started = rt.block_on(run(
        &c,
        "Lab Hang",
        RunRequest {
            message: Some("deploy x".into()),
            ..Default::default()
        },
    ));
    let n = h.tasks().len();
    let (r, _) = eval(
        &rt,
        false,
        Some(FakeJournal::new(None, Some(json!(base)))),
        &format!("{conn} sem.run(\"Lab Hang\", #{{ message: \"deploy x\" }}).id"),
    );
    assert_eq!(r.unwrap().as_int().unwrap(), started.id);
    assert_eq!(h.tasks().len(), n);
    // A different message is a different request: a new task (Lab Hang allows one at a time, so
    // stop the adopted one first).
    rt.block_on(c.stop(started.id, true)).unwrap();
    rt.block_on(until_status(&c, started.id, "stopped"));
    let (r, _) = eval(
        &rt,
        false,
        Some(FakeJournal::new(None, Some(json!(base)))),
        &format!("{conn} sem.run(\"Lab Hang\", #{{ message: \"deploy y\" }}).id"),
    );
    assert!(r.unwrap().as_int().unwrap() > started.id);
    assert_eq!(h.tasks().len(), n + 1);

    // Dry run: run/stop/ensure_template are recorded, not executed.
    let n = h.tasks().len();
    let (r, host) = eval(
        &rt,
        true,
        None,
        &format!(
            "{conn} let t = sem.run(\"RALF Vault Apply\", #{{ message: \"dry\" }}); let s = t.wait().status; \
             sem.task({}).stop(#{{ force: true }}); sem.ensure_template(#{{ name: \"Dry Tpl\", playbook: \"x.yml\" }}); s",
            running.id
        ),
    );
    assert_eq!(r.unwrap().into_string().unwrap(), "dry_run");
    assert_eq!(h.tasks().len(), n);
    assert_eq!(
        host.dry_run_actions().len(),
        3,
        "{:?}",
        host.dry_run_actions()
    );
    assert!(!h.template_names().contains(&"Dry Tpl".to_string()));
    assert_eq!(rt.block_on(c.task(running.id)).unwrap().status, "running");
    rt.block_on(c.stop(running.id, true)).unwrap();
}

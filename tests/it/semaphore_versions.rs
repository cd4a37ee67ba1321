//! Semaphore releases as the real servers behave (`../shared/specs/UPSTREAM.md` §1): one test per
//! client behaviour against the stand-in's version profiles (2.10, 2.16, latest), and the object
//! shapes and routes each profile answers with.

use crate::common::semaphore as harness;

use ralf_sh::clients::semaphore::{
    Auth, Client, ClientOptions, RunRequest, StopOutcome, WaitEvent, WaitOptions,
};
use ralf_sh::config::IdOrName;
use ralf_sh::error::ErrorKind;
use ralf_sh::lab::profiles::SemaphoreVersion;
use ralf_sh::lab::semaphore::{spawn, Behaviour, Handle, LabOptions};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const ALL: [SemaphoreVersion; 3] = [
    SemaphoreVersion::V2_10,
    SemaphoreVersion::V2_16,
    SemaphoreVersion::Latest,
];

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn lab(version: SemaphoreVersion) -> Handle {
    spawn(LabOptions {
        version,
        ..Default::default()
    })
    .await
    .unwrap()
}

fn opts(h: &Handle) -> ClientOptions {
    ClientOptions {
        url: h.url.clone(),
        project: Some(IdOrName::Id(1)),
        auth: Auth::Token(h.token.clone()),
        timeout: Duration::from_secs(10),
        ca_file: None,
        insecure: false,
        websocket: true,
        max_output: ralf_sh::clients::semaphore::DEFAULT_MAX_OUTPUT,
    }
}

async fn client(h: &Handle) -> Arc<Client> {
    Client::connect(opts(h)).await.unwrap()
}

fn wo() -> WaitOptions {
    WaitOptions {
        timeout: Duration::from_secs(20),
        ..Default::default()
    }
}

/// How many recorded requests match `method` and a path ending.
fn count(h: &Handle, method: &str, suffix: &str) -> usize {
    h.exchanges()
        .iter()
        .filter(|x| x.method == method && x.uri.ends_with(suffix))
        .count()
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

/// ≥ 2.11 drops a limit the template does not allow: the client refuses before sending.
#[test]
fn limited_run_on_a_template_without_opt_in_is_invalid() {
    rt().block_on(async {
        for v in [SemaphoreVersion::V2_16, SemaphoreVersion::Latest] {
            let h = lab(v).await;
            let c = client(&h).await;
            let smoke = c
                .template(&IdOrName::Name("RALF Vault Smoke".into()))
                .await
                .unwrap();
            let r = RunRequest {
                limit: vec!["vault".into()],
                ..Default::default()
            };
            let e = c.run(&smoke, &r).await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Invalid, "{v:?}: {e}");
            assert!(
                e.message.contains("task_params.allow_override_limit"),
                "{}",
                e.message
            );
            assert!(h.tasks().is_empty(), "{v:?}: a task was started");
            // Knowingly dropped: a warning, and the request carries no limit.
            let (req, warnings) = c.prepare_run(&smoke, &r, true).await.unwrap();
            assert!(req.limit.is_empty());
            assert!(warnings[0].contains("limit"), "{warnings:?}");
            // A template that opts in gets its limit applied.
            let apply = c
                .template(&IdOrName::Name("RALF Automation Apply".into()))
                .await
                .unwrap();
            let t = c.run(&apply, &r).await.unwrap();
            c.wait(t.id, &wo(), &mut |_| {}).await.unwrap();
            let out = c.output(t.id).await.unwrap();
            assert!(
                out.iter().any(|l| l.output.contains("--limit vault")),
                "{v:?}: limit not applied"
            );
            // Branch and arguments need their own flags; inventory too.
            for (r, flag) in [
                (
                    RunRequest {
                        branch: Some("dev".into()),
                        ..Default::default()
                    },
                    "allow_override_branch_in_task",
                ),
                (
                    RunRequest {
                        arguments: vec!["-v".into()],
                        ..Default::default()
                    },
                    "allow_override_args_in_task",
                ),
                (
                    RunRequest {
                        inventory_id: Some(2),
                        ..Default::default()
                    },
                    "allow_override_inventory",
                ),
            ] {
                let e = c.run(&apply, &r).await.unwrap_err();
                assert!(e.message.contains(flag), "{v:?}: {}", e.message);
            }
        }
    });
}

/// v2.10: limit and inventory are applied unchecked, tags do not exist.
#[test]
fn v2_10_has_no_tags_applies_limits_and_lets_the_template_env_win() {
    rt().block_on(async {
        let h = lab(SemaphoreVersion::V2_10).await;
        let c = client(&h).await;
        assert!(c.is_legacy());
        let smoke = c
            .template(&IdOrName::Name("RALF Vault Smoke".into()))
            .await
            .unwrap();
        let e = c
            .run(
                &smoke,
                &RunRequest {
                    tags: vec!["deploy".into()],
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(e.message.contains("no tags"), "{}", e.message);
        let t = c
            .run(
                &smoke,
                &RunRequest {
                    limit: vec!["vault".into()],
                    inventory_id: Some(2),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        c.wait(t.id, &wo(), &mut |_| {}).await.unwrap();
        let out: Vec<String> = c
            .output(t.id)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.output)
            .collect();
        assert!(
            out.iter()
                .any(|l| l.contains("--limit vault") && l.contains("-i staging")),
            "{out:?}"
        );
        // The task row keeps v2.10's shape: a comma-separated limit, top-level flags.
        let raw = &c.task(t.id).await.unwrap().raw;
        assert_eq!(raw["limit"], json!("vault"));
        assert_eq!(raw["debug"], json!(false));
        // The template's environment wins over the run's env: a warning naming the key.
        let spec =
            json!({"name": "RALF Pinned Apply", "playbook": "p.yml", "environment": "pinned"});
        let (pinned, _) = c.ensure_template(spec.as_object().unwrap()).await.unwrap();
        let mut env = serde_json::Map::new();
        env.insert("APP_VERSION".into(), json!("run"));
        env.insert("OTHER".into(), json!("x"));
        let r = RunRequest {
            env: Some(env),
            ..Default::default()
        };
        let (_, warnings) = c.prepare_run(&pinned, &r, false).await.unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("APP_VERSION") && !warnings[0].contains("OTHER"),
            "{warnings:?}"
        );
        let t = c.run(&pinned, &r).await.unwrap();
        c.wait(t.id, &wo(), &mut |_| {}).await.unwrap();
        let out = c.output(t.id).await.unwrap();
        assert!(
            out.iter()
                .any(|l| l.output.contains("\"APP_VERSION\":\"template\"")),
            "the stand-in models the template-wins merge"
        );
        // A build from source reports `undefined-…`: the probe still finds v2.10.
        for (v, legacy) in [
            (SemaphoreVersion::V2_10, true),
            (SemaphoreVersion::Latest, false),
        ] {
            let h = spawn(LabOptions {
                version: v,
                version_string: Some("undefined-00000000-".into()),
                ..Default::default()
            })
            .await
            .unwrap();
            assert_eq!(client(&h).await.is_legacy(), legacy, "{v:?}");
        }
    });
}

/// Real servers accept a confirm on a running task (and skip the later confirmation): the
/// client checks the status first.
#[test]
fn early_confirm_is_a_conflict_and_reject_on_v2_10_is_unsupported() {
    rt().block_on(async {
        for v in ALL {
            let h = lab(v).await;
            let c = client(&h).await;
            let tpl = c
                .template(&IdOrName::Name("Lab Confirm".into()))
                .await
                .unwrap();
            let t = c.run(&tpl, &RunRequest::default()).await.unwrap();
            until_status(&c, t.id, "running").await;
            let e = c.confirm(t.id, true).await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Conflict, "{v:?}: {e}");
            assert!(e.message.contains("`running`"), "{}", e.message);
            assert_eq!(count(&h, "POST", "/confirm"), 0, "{v:?}: confirm was sent");
            // Not pre-approved: the plan still waits.
            until_status(&c, t.id, "waiting_confirmation").await;
            if v == SemaphoreVersion::V2_10 {
                let e = c.confirm(t.id, false).await.unwrap_err();
                assert_eq!(e.kind, ErrorKind::Invalid);
                assert!(
                    e.message.contains("not supported by this server version"),
                    "{}",
                    e.message
                );
                c.confirm(t.id, true).await.unwrap();
            } else {
                c.confirm(t.id, false).await.unwrap();
            }
            let fin = c.wait(t.id, &wo(), &mut |_| {}).await.unwrap();
            let want = if v == SemaphoreVersion::V2_10 {
                "success"
            } else {
                "error"
            };
            assert_eq!(fin.status, want, "{v:?}");
        }
    });
}

/// The stand-in reproduces the unsafe server behaviour the client guards against.
#[test]
fn stand_in_confirms_a_running_task_like_the_real_server() {
    rt().block_on(async {
        let h = lab(SemaphoreVersion::V2_16).await;
        let c = client(&h).await;
        let tpl = c
            .template(&IdOrName::Name("Lab Confirm".into()))
            .await
            .unwrap();
        let t = c.run(&tpl, &RunRequest::default()).await.unwrap();
        until_status(&c, t.id, "running").await;
        let r = ralf_sh::clients::http_builder()
            .build()
            .unwrap()
            .post(format!("{}/api/project/1/tasks/{}/confirm", h.url, t.id))
            .bearer_auth(&h.token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let mut seen = Vec::new();
        let fin = c
            .wait(t.id, &wo(), &mut |e| {
                if let WaitEvent::Status(s) = e {
                    seen.push(s)
                }
            })
            .await
            .unwrap();
        assert_eq!(fin.status, "success");
        assert!(
            !seen.iter().any(|s| s == "waiting_confirmation"),
            "{seen:?}"
        );
    });
}

/// AddTask answers invalid input with an empty 500: one look-up, a clear error, no retries.
#[test]
fn empty_500_is_looked_up_once_and_explained() {
    rt().block_on(async {
        let h = lab(SemaphoreVersion::Latest).await;
        let c = client(&h).await;
        // The newest servers validate env keys against the survey unless allow_any_vars_in_task.
        let spec = json!({"name": "RALF Strict Apply", "playbook": "s.yml"});
        let (tpl, _) = c
            .ensure_template(spec.as_object().unwrap())
            .await
            .unwrap();
        let mut env = serde_json::Map::new();
        env.insert("SERVICE_NAME".into(), json!("x"));
        let before = count(&h, "GET", "/tasks/last");
        let e = c
            .run(
                &tpl,
                &RunRequest {
                    env: Some(env.clone()),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
        assert!(e.message.contains("no reason"), "{}", e.message);
        assert!(e.message.contains("survey"), "{}", e.message);
        assert_eq!(count(&h, "POST", "/project/1/tasks"), 1, "retried");
        // The baseline, then exactly one look-up for a created task.
        assert_eq!(count(&h, "GET", "/tasks/last") - before, 2);
        assert!(h.tasks().is_empty());
        // With the flag on (ensure_template sets it), the same run works.
        let spec = json!({"name": "RALF Strict Apply", "playbook": "s.yml", "allow_any_vars_in_task": true});
        let (tpl, ch) = c
            .ensure_template(spec.as_object().unwrap())
            .await
            .unwrap();
        assert_eq!(ch, "updated");
        let t = c
            .run(
                &tpl,
                &RunRequest {
                    env: Some(env),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(c.wait(t.id, &wo(), &mut |_| {}).await.unwrap().status, "success");
    });
}

/// Newer servers omit empty fields and v2.10 has no `environment_ids`: a second ensure_template
/// of an unchanged template is `unchanged` and sends no PUT.
#[test]
fn ensure_template_twice_is_unchanged_on_every_release() {
    rt().block_on(async {
        for v in ALL {
            let h = lab(v).await;
            let c = client(&h).await;
            let mut spec =
                json!({"name": "RALF Twice Apply", "playbook": "t.yml", "inventory": "homelab",
                "description": "", "allow_parallel_tasks": false})
                .as_object()
                .unwrap()
                .clone();
            if v != SemaphoreVersion::V2_10 {
                spec.insert("task_params".into(), json!({"allow_override_limit": true}));
            }
            assert_eq!(c.ensure_template(&spec).await.unwrap().1, "created");
            assert_eq!(
                c.ensure_template(&spec).await.unwrap().1,
                "unchanged",
                "{v:?}"
            );
            assert_eq!(count(&h, "PUT", ""), 0, "{v:?}: a PUT was sent");
            // A real change is still written, and partial task_params merge.
            spec.insert("playbook".into(), json!("u.yml"));
            if v != SemaphoreVersion::V2_10 {
                spec.insert("task_params".into(), json!({"allow_debug": true}));
            }
            let (t, ch) = c.ensure_template(&spec).await.unwrap();
            assert_eq!(ch, "updated");
            if v != SemaphoreVersion::V2_10 {
                assert_eq!(t.raw["task_params"]["allow_override_limit"], json!(true));
                assert_eq!(t.raw["task_params"]["allow_debug"], json!(true));
            }
            assert_eq!(c.ensure_template(&spec).await.unwrap().1, "unchanged");
            assert_eq!(count(&h, "PUT", ""), 1);
        }
    });
}

/// 2.10 and 2.16 overwrite a finished task's status on stop: the client leaves it alone.
#[test]
fn stop_of_a_finished_task_changes_nothing() {
    rt().block_on(async {
        for v in ALL {
            let h = lab(v).await;
            let c = client(&h).await;
            let tpl = c
                .template(&IdOrName::Name("RALF Vault Smoke".into()))
                .await
                .unwrap();
            let t = c.run(&tpl, &RunRequest::default()).await.unwrap();
            c.wait(t.id, &wo(), &mut |_| {}).await.unwrap();
            assert_eq!(
                c.stop(t.id, false).await.unwrap(),
                StopOutcome::AlreadyFinished("success".into())
            );
            assert_eq!(count(&h, "POST", "/stop"), 0);
            assert_eq!(c.task(t.id).await.unwrap().status, "success");
            // The stand-in models the overwrite (only the newest release refuses).
            ralf_sh::clients::http_builder()
                .build()
                .unwrap()
                .post(format!("{}/api/project/1/tasks/{}/stop", h.url, t.id))
                .bearer_auth(&h.token)
                .json(&json!({"force": false}))
                .send()
                .await
                .unwrap();
            let want = if v == SemaphoreVersion::Latest {
                "success"
            } else {
                "stopped"
            };
            assert_eq!(c.task(t.id).await.unwrap().status, want, "{v:?}");
        }
    });
}

/// Over https the client uses `wss` with the configured CA: a long log is fetched once.
#[test]
fn long_output_over_wss_is_fetched_once() {
    rt().block_on(async {
        let h = spawn(LabOptions {
            tls: true,
            ..Default::default()
        })
        .await
        .unwrap();
        assert!(h.url.starts_with("https://"));
        h.set_behaviour(
            "RALF Vault Smoke",
            Behaviour {
                duration_ms: 1500,
                lines: 300,
                ..Default::default()
            },
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, h.ca_pem.as_ref().unwrap()).unwrap();
        let mut o = opts(&h);
        o.ca_file = Some(ca);
        let c = Client::connect(o).await.unwrap();
        let tpl = c
            .template(&IdOrName::Name("RALF Vault Smoke".into()))
            .await
            .unwrap();
        let t = c.run(&tpl, &RunRequest::default()).await.unwrap();
        let mut lines = 0;
        let fin = c
            .wait(t.id, &wo(), &mut |e| {
                if let WaitEvent::Line(_) = e {
                    lines += 1
                }
            })
            .await
            .unwrap();
        assert_eq!(fin.status, "success");
        assert!(lines >= 300, "{lines} lines seen");
        assert_eq!(
            count(&h, "GET", "/output"),
            1,
            "output fetched more than once"
        );
        // Without the CA the socket (like REST) refuses the server: TLS verification stays on.
        assert!(Client::connect(opts(&h)).await.is_err());
    });
}

/// Every object carries the real field set of its release, and the routes third-party clients
/// use exist with the documented shapes.
#[test]
fn objects_and_routes_have_the_real_shapes() {
    let spec = harness::Spec::load();
    let keys = |k: &str| {
        harness::REAL_KEYS
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| *v)
            .unwrap()
    };
    rt().block_on(async {
        for v in ALL {
            let h = lab(v).await;
            let c = client(&h).await;
            let tpl = c
                .template(&IdOrName::Name("RALF Vault Smoke".into()))
                .await
                .unwrap();
            let t = c.run(&tpl, &RunRequest::default()).await.unwrap();
            c.wait(t.id, &wo(), &mut |_| {}).await.unwrap();
            let http = ralf_sh::clients::http_builder().build().unwrap();
            let get = |p: String| {
                let http = http.clone();
                let url = format!("{}/api{p}", h.url);
                let tok = h.token.clone();
                async move {
                    let r = http.get(url).bearer_auth(tok).send().await.unwrap();
                    (
                        r.status().as_u16(),
                        r.json::<Value>().await.unwrap_or(Value::Null),
                    )
                }
            };
            let has_all = |obj: &Value, want: &[&str], what: &str| {
                for k in want {
                    assert!(obj.get(*k).is_some(), "{v:?}: {what} lacks `{k}`: {obj}");
                }
            };
            let (_, p) = get("/project/1".into()).await;
            if v == SemaphoreVersion::V2_10 {
                has_all(&p, keys("project"), "project");
                assert!(p["alert_chat"].is_null());
            }
            for (path, kind) in [
                ("/project/1/inventory", "inventory"),
                ("/project/1/environment", "environment"),
                ("/project/1/keys", "keys"),
            ] {
                let (_, list) = get(path.into()).await;
                has_all(&list[0], keys(kind), kind);
            }
            let (_, tv) = get(format!("/project/1/templates/{}", tpl.id)).await;
            let (_, list) = get("/project/1/templates".into()).await;
            let opted = list
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["name"] == json!("RALF Automation Apply"))
                .unwrap()
                .clone();
            let (_, out) = get(format!("/project/1/tasks/{}/output", t.id)).await;
            if v == SemaphoreVersion::V2_10 {
                has_all(&tv, keys("template_v2_10"), "template");
                for k in [
                    "task_params",
                    "environment_ids",
                    "allow_override_branch_in_task",
                ] {
                    assert!(tv.get(k).is_none(), "v2.10 has no `{k}`");
                }
                assert!(tv["view_id"].is_null() && tv["start_version"].is_null());
                has_all(&out[0], keys("output_v2_10"), "output line");
            } else {
                has_all(&tv, keys("template_new"), "template");
                // omitempty: nothing empty is sent.
                for (k, x) in tv.as_object().unwrap() {
                    let empty =
                        x.is_null() || x == &json!("") || x == &json!(false) || x == &json!([]);
                    assert!(!empty, "{v:?}: omitempty `{k}` sent as {x}");
                }
                assert_eq!(opted["task_params"]["allow_override_limit"], json!(true));
                assert!(tv["last_task"].is_object() && tv["tasks"] == json!(1));
                has_all(&out[0], keys("output_new"), "output line");
                assert!(out[0]["stage_id"].is_null());
            }
            // Routes real clients use.
            for (p, def) in [
                ("/user", Some("User")),
                ("/users", None),
                ("/user/tokens", None),
                ("/project/1/role", None),
                ("/project/1/events", None),
                ("/project/1/schedules", None),
                ("/project/1/views", None),
                ("/project/1/integrations", None),
                ("/project/1/users", None),
            ] {
                let (code, body) = get(p.into()).await;
                assert_eq!(code, 200, "{v:?}: GET {p}");
                let sp = spec
                    .match_path(p)
                    .unwrap_or_else(|| panic!("{p} not in the spec"));
                if let Some(schema) = spec.response(&sp, "GET", 200).filter(|s| !s.is_null()) {
                    let mut errs = Vec::new();
                    spec.validate(&schema, &body, p, &mut errs);
                    assert!(errs.is_empty(), "{v:?}: {errs:?}");
                }
                if let Some(d) = def {
                    assert!(body.get("username").is_some(), "{d}: {body}");
                }
            }
            let (_, role) = get("/project/1/role".into()).await;
            assert_eq!(role["role"], json!("owner"));
            // v2.10 has neither reject nor raw_output.
            let (code, _) = get(format!("/project/1/tasks/{}/raw_output", t.id)).await;
            assert_eq!(
                code == 404,
                v == SemaphoreVersion::V2_10,
                "{v:?} raw_output"
            );
        }
    });
}

//! exo client, advisor and bindings against the in-process stand-in (loopback only).

use crate::common::exo as exo_harness;

use exo_harness::{closed_port, engine, stand, stand_profile};
use ralf_sh::clients::exo::advisor;
use ralf_sh::clients::exo::{ChatRequest, Client, ExoOptions, Message};
use ralf_sh::error::ErrorKind;
use ralf_sh::lab::llm::{Rule, DEFAULT_MODEL};
use ralf_sh::lab::LlmProfile;
use serde_json::json;
use std::time::{Duration, Instant};

fn client(url: &str) -> Client {
    let mut o = ExoOptions::new(url, DEFAULT_MODEL);
    o.connect_timeout = Duration::from_secs(2);
    o.backoff = Duration::from_millis(20);
    Client::new(o).unwrap()
}

fn ask(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::user(text)],
        ..Default::default()
    }
}

fn rule(pattern: &str, mode: &str) -> Rule {
    Rule {
        pattern: Some(pattern.into()),
        mode: Some(mode.into()),
        ..Default::default()
    }
}

#[test]
fn chat_models_and_health() {
    let s = stand();
    let c = client(&s.lab.url);
    s.rt.block_on(async {
        let models = c.models().await.unwrap();
        assert!(models.contains(&DEFAULT_MODEL.to_string()), "{models:?}");
        let r = c.chat(&ask("hello there")).await.unwrap();
        assert!(r.text.contains("hello there"), "{}", r.text);
        assert_eq!(r.finish_reason.as_deref(), Some("stop"));
        let h = c.health(Duration::from_secs(2)).await;
        assert!(h.ok);
        assert_eq!(h.server, "exo-v1");
    });
    let reqs = s.lab.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0]["body"]["model"], DEFAULT_MODEL);
    assert_eq!(reqs[0]["body"]["stream"], false);
}

#[test]
fn stream_with_keepalives_and_without_done() {
    let s = stand();
    let c = client(&s.lab.url);
    let long: String = (1..=40).map(|i| format!("word{i} ")).collect();
    s.lab
        .script(vec![Rule {
            pattern: Some("long".into()),
            reply: Some(long.clone()),
            mode: Some("keepalive".into()),
            ..Default::default()
        }])
        .unwrap();
    s.lab.script(vec![rule("legacy", "no_done")]).unwrap();
    s.rt.block_on(async {
        // Keep-alive comments between chunks, 30 ms apart: they reset the idle timer.
        let mut pieces = 0;
        let r = c
            .chat_stream(&ask("long please"), |_| pieces += 1)
            .await
            .unwrap();
        assert_eq!(r.text, long);
        assert!(r.comments >= 40, "comments seen: {}", r.comments);
        assert_eq!(pieces, 40);
        assert!(r.usage.is_some());
        // Legacy exo: the stream just ends, no [DONE]: EOF is done.
        let r = c.chat_stream(&ask("legacy stream"), |_| {}).await.unwrap();
        assert!(r.text.starts_with("Lab stand-in answer"), "{}", r.text);
        assert_eq!(r.finish_reason.as_deref(), Some("stop"));
    });
}

#[test]
fn stream_failures_are_unavailable_or_timeout() {
    let s = stand();
    let mut o = ExoOptions::new(&s.lab.url, DEFAULT_MODEL);
    o.idle_timeout = Duration::from_millis(300);
    o.first_token_timeout = Duration::from_millis(600);
    let c = Client::new(o).unwrap();
    s.lab
        .script(vec![rule("cut", "cut_stream"), rule("boom", "error_event")])
        .unwrap();
    s.lab
        .script(vec![
            Rule {
                pattern: Some("stall".into()),
                mode: Some("stall".into()),
                delay: Some(5.0),
                ..Default::default()
            },
            Rule {
                pattern: Some("prefill".into()),
                mode: Some("slow".into()),
                delay: Some(5.0),
                ..Default::default()
            },
        ])
        .unwrap();
    s.rt.block_on(async {
        let e = c.chat_stream(&ask("cut please"), |_| {}).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
        assert!(e.message.contains("cut off"), "{e}");
        let e = c.chat_stream(&ask("boom"), |_| {}).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
        assert!(e.message.contains("runner crashed"), "{e}");
        // silent after the first token: the idle timeout
        let e = c.chat_stream(&ask("stall"), |_| {}).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
        assert!(e.message.contains("idle timeout"), "{e}");
        // a keep-alive, then no token: the first-token timeout, not the idle one
        let t0 = Instant::now();
        let e = c.chat_stream(&ask("prefill"), |_| {}).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
        assert!(e.message.contains("first_token_timeout"), "{e}");
        assert!(
            t0.elapsed() >= Duration::from_millis(550),
            "{:?}",
            t0.elapsed()
        );
    });
}

#[test]
fn cut_body_and_error_shapes() {
    let s = stand();
    let c = client(&s.lab.url);
    s.lab
        .script(vec![
            rule("cut", "cut_body"),
            rule("legacy", "detail_error"),
            rule("ollama", "error_string"),
        ])
        .unwrap();
    s.rt.block_on(async {
        let e = c.chat(&ask("cut")).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
        assert!(e.message.contains("answered 200"), "{e}");
        let e = c.chat(&ask("legacy")).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
        assert!(e.message.contains("answered 400: Unsupported model"), "{e}");
        let e = c.chat(&ask("ollama")).await.unwrap_err();
        assert!(
            e.message
                .contains("answered 400: invalid request: lab says no"),
            "{e}"
        );
    });
    // 4xx are never retried.
    assert_eq!(s.lab.requests().len(), 3);
}

#[test]
fn unknown_model_lists_the_offered_ones() {
    let s = stand();
    let c = Client::new(ExoOptions::new(&s.lab.url, "llama-3.2-3b")).unwrap();
    let e = s.rt.block_on(c.chat(&ask("hi"))).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert!(
        e.message.contains("model `llama-3.2-3b` is not available"),
        "{e}"
    );
    assert!(e.message.contains(DEFAULT_MODEL), "{e}");
    assert!(
        e.message
            .contains("No instance found for model llama-3.2-3b"),
        "{e}"
    );
    assert_eq!(e.details["available"].as_array().unwrap().len(), 2);
}

#[test]
fn loading_503_is_retried_honouring_retry_after() {
    let s = stand();
    let c = client(&s.lab.url);
    s.lab
        .script(vec![Rule {
            pattern: Some("warm".into()),
            mode: Some("loading_503".into()),
            times: Some(2),
            retry_after: Some(0.05),
            ..Default::default()
        }])
        .unwrap();
    let r = s.rt.block_on(c.chat(&ask("warm up"))).unwrap();
    assert!(!r.text.is_empty());
    assert_eq!(s.lab.requests().len(), 3, "two 503s, then the answer");

    // Still loading after every retry: the last error is clear and counts the attempts.
    s.lab.reset();
    s.lab
        .script(vec![Rule {
            retry_after: Some(0.0),
            ..rule("cold", "loading_503")
        }])
        .unwrap();
    let e = s.rt.block_on(c.chat(&ask("cold"))).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert!(e.message.contains("503: Loading model"), "{e}");
    assert_eq!(e.details["attempts"], 3);
    assert_eq!(s.lab.requests().len(), 3);
}

#[test]
fn decide_valid_wrapped_invalid_missing() {
    let s = stand();
    let c = client(&s.lab.url);
    let ctx = json!({"deps": ["postgresql"], "postgresql": "healthy"});
    s.rt.block_on(async {
        // valid
        let (d, tr) = advisor::decide(
            &c,
            "Deploy gitea now?",
            &ctx,
            "proceed",
            &Default::default(),
        )
        .await;
        let d = d.unwrap();
        assert_eq!((d.decision.as_str(), d.source.as_str()), ("proceed", "llm"));
        assert_eq!(tr.answers.len(), 1);
        // the stand-in says wait when the context mentions an unhealthy dependency
        let (d, _) = advisor::decide(
            &c,
            "Deploy gitea now?",
            &json!({"postgresql": "unhealthy"}),
            "proceed",
            &Default::default(),
        )
        .await;
        assert_eq!(d.unwrap().decision, "wait");
    });
    s.lab.script(vec![rule("wrapped", "wrapped_json")]).unwrap();
    s.lab
        .script(vec![Rule {
            times: Some(1),
            ..rule("once", "garbage")
        }])
        .unwrap();
    s.rt.block_on(async {
        let (d, _) =
            advisor::decide(&c, "wrapped: deploy?", &ctx, "proceed", &Default::default()).await;
        let d = d.unwrap();
        assert_eq!(d.source, "llm", "{d:?}");
        // garbage once, then a valid answer to the second request
        let before = s.lab.requests().len();
        let (d, tr) =
            advisor::decide(&c, "once: deploy?", &ctx, "proceed", &Default::default()).await;
        assert_eq!(d.unwrap().source, "llm");
        assert_eq!(tr.answers.len(), 2);
        assert_eq!(s.lab.requests().len(), before + 2);
        let second = &s.lab.requests()[before + 1]["body"]["messages"];
        assert_eq!(
            second.as_array().unwrap().len(),
            4,
            "question, bad answer, correction"
        );
        assert!(second[3]["content"].as_str().unwrap().contains("not valid"));
        // schema violation twice (the directive covers the whole conversation): fallback
        let (d, tr) = advisor::decide(
            &c,
            "[lab:invalid_json] deploy?",
            &ctx,
            "skip",
            &Default::default(),
        )
        .await;
        let d = d.unwrap();
        assert_eq!(
            (d.decision.as_str(), d.source.as_str()),
            ("skip", "fallback")
        );
        assert!(d.error.unwrap().contains("one of proceed, wait, skip"));
        assert_eq!(tr.answers.len(), 2);
        // an empty answer counts as missing (to the question and to the correction)
        for p in ["empty", "not valid"] {
            let r = Rule {
                pattern: Some(p.into()),
                reply: Some(String::new()),
                ..Default::default()
            };
            s.lab.script(vec![r]).unwrap();
        }
        let (d, _) =
            advisor::decide(&c, "empty: deploy?", &ctx, "proceed", &Default::default()).await;
        let d = d.unwrap();
        assert_eq!(
            (d.source.as_str(), d.reason.as_str()),
            ("fallback", "advisor gave no valid answer")
        );
    });
}

#[test]
fn server_down_falls_back_at_once() {
    let s = stand();
    let url = format!("http://127.0.0.1:{}", closed_port());
    let mut o = ExoOptions::new(&url, DEFAULT_MODEL);
    o.connect_timeout = Duration::from_secs(1);
    let c = Client::new(o).unwrap();
    let t0 = Instant::now();
    let (d, _) = s.rt.block_on(advisor::decide(
        &c,
        "Deploy?",
        &json!({}),
        "proceed",
        &Default::default(),
    ));
    let d = d.unwrap();
    println!("fallback after {:?}", t0.elapsed());
    assert_eq!(
        (d.decision.as_str(), d.source.as_str(), d.reason.as_str()),
        ("proceed", "fallback", "advisor unavailable")
    );
    assert!(d.error.unwrap().contains("cannot reach"));
    assert!(!s.rt.block_on(c.available(Duration::from_secs(1))));

    // A server that accepted the request and went silent: the idle timeout ends it, the fallback answers.
    let mut o = ExoOptions::new(&s.lab.url, DEFAULT_MODEL);
    o.idle_timeout = Duration::from_millis(300);
    let c = Client::new(o).unwrap();
    s.lab
        .script(vec![Rule {
            delay: Some(5.0),
            ..rule("Deploy", "stall")
        }])
        .unwrap();
    let (d, _) = s.rt.block_on(advisor::decide(
        &c,
        "Deploy?",
        &json!({}),
        "wait",
        &Default::default(),
    ));
    let d = d.unwrap();
    assert_eq!(
        (d.decision.as_str(), d.source.as_str()),
        ("wait", "fallback")
    );
    assert!(d.error.unwrap().contains("idle timeout"));
}

#[test]
fn canary_secret_never_reaches_the_server() {
    let s = stand();
    let canary = "canary-7f3e9a1c55d04b2e";
    ralf_sh::redact::register(canary);
    let (se, events) = engine(&s.rt, &s.lab.url, DEFAULT_MODEL, "");
    let script = format!(
        r#"
        let ai = exo::connect();
        let d = ai.decide("Deploy vaultwarden? token {canary}", #{{ env: #{{ ADMIN_TOKEN: "{canary}" }}, deps: ["postgresql"] }});
        let a = ai.ask("the token is {canary}", #{{ system: "secret {canary}", stream: true }});
        let c = ai.chat([#{{ role: "user", content: "{canary}" }}]);
        let f = ai.suggest_fix("vaultwarden", ["ADMIN_TOKEN={canary}", "error: boom"]);
        d.source
        "#
    );
    let v = se.engine.eval::<String>(&script).unwrap();
    assert_eq!(v, "llm");
    let reqs = serde_json::to_string(&s.lab.requests()).unwrap();
    assert!(!reqs.contains(canary), "canary reached the stand-in");
    assert!(reqs.contains("«redacted»"));
    assert_eq!(s.lab.requests().len(), 4);
    let ev = events.0.lock().clone();
    assert_eq!(ev.len(), 4);
    assert!(ev.iter().all(|(k, _)| k == "llm"));
    let ops: Vec<&str> = ev.iter().map(|(_, v)| v["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["decide", "ask", "chat", "suggest_fix"]);
    assert!(!serde_json::to_string(&ev).unwrap().contains(canary));
    assert_eq!(ev[0].1["result"]["source"], "llm");
}

#[test]
fn suggest_fix_keeps_the_log_tail_within_budget() {
    let s = stand();
    let (se, _) = engine(&s.rt, &s.lab.url, DEFAULT_MODEL, "");
    let hint = se
        .engine
        .eval::<String>(
            r#"
            let lines = [];
            for i in 0..2000 { lines.push(`line ${i} of a very chatty log`); }
            lines.push("FATAL: database connection refused");
            exo::connect().suggest_fix("vaultwarden", lines, #{ max_chars: 1000 })
            "#,
        )
        .unwrap();
    assert!(
        hint.contains("FATAL: database connection refused"),
        "{hint}"
    );
    let body = &s.lab.requests()[0]["body"]["messages"][1]["content"];
    let text = body.as_str().unwrap();
    assert!(text.contains("earlier lines omitted"));
    assert!(text.contains("line 1999 of"));
    assert!(!text.contains("line 5 of"));
    assert!(text.len() < 1200, "{}", text.len());
}

#[test]
fn disabled_and_unknown_options() {
    let s = stand();
    let (se, events) = engine(
        &s.rt,
        &s.lab.url,
        DEFAULT_MODEL,
        "  enabled: false\n  fallback_decision: wait\n",
    );
    let m = se
        .engine
        .eval::<rhai::Map>(
            r#"let ai = exo::connect(); assert(!ai.available()); ai.decide("Deploy?", #{})"#,
        )
        .unwrap();
    assert_eq!(m["decision"].clone().into_string().unwrap(), "wait");
    assert_eq!(
        m["reason"].clone().into_string().unwrap(),
        "advisor unavailable"
    );
    assert_eq!(
        s.lab.requests().len(),
        0,
        "disabled advisor must not call the server"
    );
    assert_eq!(events.0.lock().len(), 1);
    let e = se
        .engine
        .eval::<rhai::Dynamic>(r#"exo::connect().ask("hi")"#)
        .unwrap_err();
    assert!(e.to_string().contains("disabled"), "{e}");
    let e = se
        .engine
        .eval::<rhai::Dynamic>(r#"exo::connect(#{ timout: 3 })"#)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("unknown option `timout` for exo::connect; did you mean `timeout`?"),
        "{e}"
    );
}

/// Every `fn test_*()` of tests/rhai/exo.rhai, run against each stand-in profile.
#[test]
fn rhai_script_tests() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rhai/exo.rhai");
    let mut failed = Vec::new();
    let mut total = 0;
    for p in [LlmProfile::Exo, LlmProfile::Ollama, LlmProfile::Llamacpp] {
        let s = stand_profile(p);
        let (se, _) = engine(&s.rt, &s.lab.url, &s.lab.model, "");
        let ast = se.compile_file(&path).unwrap();
        let names: Vec<String> = ast
            .iter_functions()
            .filter(|f| f.name.starts_with("test_") && f.params.is_empty())
            .map(|f| f.name.to_string())
            .collect();
        assert!(names.len() >= 10, "{names:?}");
        for n in &names {
            total += 1;
            let mut scope = rhai::Scope::new();
            if let Err(e) = se.engine.call_fn::<rhai::Dynamic>(&mut scope, &ast, n, ()) {
                failed.push(format!("{p:?} {n}: {e}"));
            }
        }
    }
    println!("{} passed, {} failed", total - failed.len(), failed.len());
    assert!(failed.is_empty(), "{failed:#?}");
}

/// The ```rhai examples in the doc comments of src/bindings/exo.rs run against the stand-in.
#[test]
fn doc_examples_run_against_the_stand_in() {
    let s = stand();
    let (se, _) = engine(&s.rt, &s.lab.url, DEFAULT_MODEL, "");
    let src = include_str!("../../src/bindings/exo/mod.rs");
    let mut examples = Vec::new();
    let mut cur: Option<String> = None;
    for line in src.lines() {
        let Some(doc) = line.trim_start().strip_prefix("///") else {
            continue;
        };
        let doc = doc.strip_prefix(' ').unwrap_or(doc);
        match (&mut cur, doc.trim()) {
            (None, "```rhai") => cur = Some(String::new()),
            (Some(_), "```") => examples.push(cur.take().unwrap()),
            (Some(code), _) => {
                code.push_str(doc);
                code.push('\n');
            }
            _ => {}
        }
    }
    assert!(examples.len() >= 15, "{}", examples.len());
    for ex in &examples {
        if let Err(e) = se.engine.eval::<rhai::Dynamic>(ex) {
            panic!("example failed: {e}\n{ex}");
        }
    }
}

#[test]
fn lab_control_api_over_http() {
    let s = stand();
    let url = s.lab.url.clone();
    s.rt.block_on(async {
        let http = ralf_sh::clients::http_builder().build().unwrap();
        let r = http
            .post(format!("{url}/_lab/script"))
            .json(&json!({"rules": [{"match": "ping", "reply": "pong"}]}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let bad = http
            .post(format!("{url}/_lab/script"))
            .json(&json!({"rules": [{"match": "x", "mode": "garbge"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status().as_u16(), 400);
        assert!(bad
            .text()
            .await
            .unwrap()
            .contains("did you mean `garbage`?"));
        let c = client(&url);
        assert_eq!(c.chat(&ask("ping")).await.unwrap().text, "pong");
        let reqs: serde_json::Value = http
            .get(format!("{url}/_lab/requests"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(reqs.as_array().unwrap().len(), 1);
        assert_eq!(reqs[0]["body"]["messages"][0]["content"], "ping");
        let node: serde_json::Value = http
            .get(format!("{url}/node_id"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(node.is_string());
        // exo v1 validation errors are FastAPI 422 {"detail": [..]}
        let r = http
            .post(format!("{url}/v1/chat/completions"))
            .json(&json!({"messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 422);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            ralf_sh::clients::exo::error_message(&v).unwrap(),
            "body.model: Field required"
        );
    });
}

/// Minimal look-alikes of llama.cpp (loading), legacy exo and Ollama: the probe tells them apart and
/// their quirks (chunk objects, no [DONE], error shapes) are handled.
#[test]
fn other_servers_probe_and_quirks() {
    use axum::routing::{get, post};
    use axum::{http::StatusCode, Json, Router};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let serve = |app: Router| {
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", l.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
            url
        })
    };
    let loading = || async {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}),
            ),
        )
    };
    let llama = serve(
        Router::new()
            .route("/health", get(loading))
            .route("/v1/models", get(loading)),
    );
    let legacy = serve(
        Router::new()
            .route("/healthcheck", get(|| async { Json(json!({"status": "ok"})) }))
            .route("/v1/models", get(|| async { Json(json!({"object": "list", "data": [{"id": "llama-3.2-3b", "object": "model"}]})) }))
            .route(
                "/v1/chat/completions",
                post(|| async {
                    let body = "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                                data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n";
                    ([("content-type", "text/event-stream")], body)
                }),
            ),
    );
    let ollama = serve(
        Router::new()
            .route("/api/version", get(|| async { Json(json!({"version": "0.12.0"})) }))
            .route("/api/tags", get(|| async { Json(json!({"models": [{"name": "llama3.2:3b", "model": "llama3.2:3b"}]})) }))
            .route("/api/ps", get(|| async { Json(json!({"models": []})) }))
            .route("/v1/models", get(|| async { Json(json!({"object": "list", "data": [{"id": "llama3.2:3b", "object": "model"}]})) }))
            .route(
                "/v1/chat/completions",
                post(|| async {
                    (StatusCode::NOT_FOUND, Json(json!({"error": {"message": "model \"llama3.2\" not found, try pulling it first", "type": "not_found_error", "param": null, "code": null}})))
                }),
            ),
    );
    let plain = serve(Router::new().route(
        "/v1/chat/completions",
        post(|| async { Json(json!({"choices": [{"message": {"role": "assistant", "content": "one piece"}, "finish_reason": "stop"}]})) }),
    ));
    rt.block_on(async {
        // stream requested, JSON answered: still the answer
        let r = client(&plain)
            .chat_stream(&ask("hi"), |_| {})
            .await
            .unwrap();
        assert_eq!(r.text, "one piece");
        let lim = Duration::from_secs(2);
        let h = client(&llama).health(lim).await;
        assert_eq!((h.ok, h.server.as_str()), (false, "llama.cpp"));
        assert!(h.error.unwrap().contains("503: Loading model"));
        // legacy exo: ready when /v1/models lists the model
        let h = client(&legacy).health(lim).await;
        assert_eq!((h.ok, h.server.as_str()), (false, "exo-v0"));
        assert!(h.error.unwrap().contains("is not offered"));
        let legacy_client = Client::new(ExoOptions::new(&legacy, "llama-3.2-3b")).unwrap();
        let h = legacy_client.health(lim).await;
        assert_eq!((h.ok, h.server.as_str()), (true, "exo-v0"), "{:?}", h.error);
        let h = client(&ollama).health(lim).await;
        assert_eq!((h.ok, h.server.as_str()), (false, "ollama"));
        assert!(h.error.unwrap().contains("is not pulled"));
        let h = Client::new(ExoOptions::new(&ollama, "llama3.2:3b"))
            .unwrap()
            .health(lim)
            .await;
        assert_eq!((h.ok, h.server.as_str()), (true, "ollama"), "{:?}", h.error);
        assert_eq!(h.loaded, Some(vec![]));

        let r = Client::new(ExoOptions::new(&legacy, "llama-3.2-3b"))
            .unwrap()
            .chat_stream(&ask("hi"), |_| {})
            .await
            .unwrap();
        assert_eq!(r.text, "Hello");
        let e = Client::new(ExoOptions::new(&ollama, "llama3.2"))
            .unwrap()
            .chat(&ask("hi"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(
            e.message
                .contains("The server offers: llama3.2:3b; did you mean `llama3.2:3b`?"),
            "{e}"
        );
        assert!(e.message.contains("try pulling it first"), "{e}");
    });
}

//! The advisor against the three stand-in profiles (exo v1, Ollama, llama.cpp): readiness, reasoning
//! models, response_format, first-token and idle timeouts (loopback only).

use crate::common::exo as exo_harness;

use exo_harness::{engine, stand_profile, stand_with};
use ralf_sh::clients::exo::advisor::{self, DecideOptions};
use ralf_sh::clients::exo::{Client, ExoOptions};
use ralf_sh::error::ErrorKind;
use ralf_sh::lab::llm::{LlmLabOptions, Reasoning, Rule};
use ralf_sh::lab::LlmProfile;
use serde_json::{json, Value};
use std::time::Duration;

fn client(url: &str, model: &str) -> Client {
    let mut o = ExoOptions::new(url, model);
    o.connect_timeout = Duration::from_secs(2);
    o.backoff = Duration::from_millis(20);
    Client::new(o).unwrap()
}

fn rule(pattern: &str, mode: &str) -> Rule {
    Rule {
        pattern: Some(pattern.into()),
        mode: Some(mode.into()),
        ..Default::default()
    }
}

fn chat_bodies(reqs: &[Value]) -> Vec<Value> {
    reqs.iter()
        .filter(|r| r["path"] == "/v1/chat/completions")
        .map(|r| r["body"].clone())
        .collect()
}

/// exo v1: `/v1/models` lists the catalog; only a model with a running instance is available.
#[test]
fn exo_available_only_with_an_instance() {
    let s = stand_profile(LlmProfile::Exo);
    let lim = Duration::from_secs(2);
    let other = "mlx-community/Llama-3.2-1B-Instruct-4bit";
    let c = client(&s.lab.url, other);
    s.rt.block_on(async {
        assert!(c.models().await.unwrap().contains(&other.to_string()));
        assert!(!c.available(lim).await);
        let h = c.health(lim).await;
        assert_eq!((h.ok, h.ready, h.server.as_str()), (false, false, "exo-v1"));
        let why = h.error.unwrap();
        assert!(why.contains("no running instance"), "{why}");
        assert_eq!(h.loaded, Some(vec![s.lab.model.clone()]));
        // and chat says the same thing the real server says
        let (d, _) = advisor::decide(&c, "Deploy?", &json!({}), "wait", &Default::default()).await;
        let d = d.unwrap();
        assert_eq!(d.source, "fallback");
        assert!(d.error.unwrap().contains("No instance found"));
    });
    s.lab.load(other);
    s.rt.block_on(async {
        let h = c.health(lim).await;
        assert!(h.ready && h.ok, "{:?}", h.error);
        assert!(h.loaded.unwrap().contains(&other.to_string()));
        let (d, _) = advisor::decide(&c, "Deploy?", &json!({}), "wait", &Default::default()).await;
        assert_eq!(d.unwrap().source, "llm");
    });
    s.lab.unload(other);
    assert!(!s.rt.block_on(c.available(lim)));
}

/// llama.cpp answers 503 "Loading model" on every route while it loads.
#[test]
fn llamacpp_not_available_while_loading() {
    let s = stand_with(LlmLabOptions {
        loaded: Some(vec![]),
        ..LlmLabOptions::profile(LlmProfile::Llamacpp)
    });
    let c = client(&s.lab.url, &s.lab.model);
    let lim = Duration::from_secs(2);
    s.rt.block_on(async {
        let h = c.health(lim).await;
        assert_eq!((h.ready, h.server.as_str()), (false, "llama.cpp"));
        assert!(h.error.unwrap().contains("Loading model"));
        let http = ralf_sh::clients::http_builder().build().unwrap();
        let r = http
            .post(format!("{}/_lab/load", s.lab.url))
            .json(&json!({"delay": 0.5}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        assert!(!c.available(lim).await);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(c.available(lim).await);
    });
}

/// A model that thinks whatever it is told: the thinking eats its own budget, the answer still
/// comes, and the thinking goes to the journal, never into the decision.
#[test]
fn reasoning_model_still_decides_and_thinking_is_journaled() {
    for p in [LlmProfile::Exo, LlmProfile::Ollama, LlmProfile::Llamacpp] {
        let s = stand_with(LlmLabOptions {
            reasoning: Reasoning::Always,
            ..LlmLabOptions::profile(p)
        });
        let (se, events) = engine(&s.rt, &s.lab.url, &s.lab.model, "");
        let d: rhai::Map = se
            .engine
            .eval(r#"exo::connect().decide("Deploy gitea now?", #{ postgresql: "healthy" })"#)
            .unwrap();
        assert_eq!(d["source"].to_string(), "llm", "{p:?}: {d:?}");
        assert_eq!(d["decision"].to_string(), "proceed");
        assert!(!d["reason"].to_string().contains("hmm"), "{d:?}");
        let ev = events.0.lock();
        let (_, rec) = ev.iter().find(|(k, _)| k == "llm").expect("journal");
        let thinking = rec["reasoning"][0].as_str().unwrap_or_default();
        assert!(thinking.starts_with("Okay, let me think."), "{p:?}: {rec}");
        assert!(
            !rec["answers"][0].as_str().unwrap().contains("hmm"),
            "{rec}"
        );
    }
}

/// A model whose thinking can be switched off: every server gets its own switch, and nothing is
/// thought.
#[test]
fn thinking_is_switched_off_the_way_each_server_understands() {
    for p in [LlmProfile::Exo, LlmProfile::Ollama, LlmProfile::Llamacpp] {
        let s = stand_with(LlmLabOptions {
            reasoning: Reasoning::Switchable,
            ..LlmLabOptions::profile(p)
        });
        let c = client(&s.lab.url, &s.lab.model);
        let (d, tr) = s.rt.block_on(advisor::decide(
            &c,
            "Deploy?",
            &json!({}),
            "wait",
            &Default::default(),
        ));
        assert_eq!(d.unwrap().source, "llm");
        assert_eq!(tr.reasoning, vec![String::new()], "{p:?}");
        let body = &chat_bodies(&s.lab.requests())[0];
        assert_eq!(body["reasoning_effort"], "none");
        assert_eq!(body["enable_thinking"], false);
        assert_eq!(body["chat_template_kwargs"]["enable_thinking"], false);
        assert_eq!(body["response_format"]["type"], "json_schema");
        assert_eq!(
            body["response_format"]["json_schema"]["schema"]["properties"]["decision"]["enum"],
            json!(["proceed", "wait", "skip"])
        );
        assert!(body["max_tokens"].as_u64().unwrap() >= 1024);
    }
}

/// A server that rejects `response_format`: asked again once without it, and never sent it again
/// in the run.
#[test]
fn rejected_response_format_is_dropped_for_the_run() {
    let s = stand_profile(LlmProfile::Exo);
    s.lab
        .script(vec![rule("Deploy", "reject_response_format")])
        .unwrap();
    let c = client(&s.lab.url, &s.lab.model);
    let opts = DecideOptions::default();
    s.rt.block_on(async {
        let (d, _) = advisor::decide(&c, "Deploy a?", &json!({}), "wait", &opts).await;
        assert_eq!(d.unwrap().source, "llm");
        let (d, _) = advisor::decide(&c, "Deploy b?", &json!({}), "wait", &opts).await;
        assert_eq!(d.unwrap().source, "llm");
    });
    let bodies = chat_bodies(&s.lab.requests());
    let forms: Vec<Value> = bodies
        .iter()
        .map(|b| b["response_format"]["type"].clone())
        .collect();
    // json_schema rejected -> json_object + schema rejected -> none, then none for the rest
    assert_eq!(
        forms,
        vec![
            json!("json_schema"),
            json!("json_object"),
            Value::Null,
            Value::Null
        ]
    );
    assert!(bodies[1]["response_format"]["schema"].is_object());
}

/// llama.cpp and Ollama enforce the schema: a model that would answer garbage answers in shape.
#[test]
fn enforced_schema_turns_garbage_into_a_decision() {
    for p in [LlmProfile::Ollama, LlmProfile::Llamacpp] {
        let s = stand_profile(p);
        let c = client(&s.lab.url, &s.lab.model);
        let (d, tr) = s.rt.block_on(advisor::decide(
            &c,
            "Deploy? [lab:garbage]",
            &json!({}),
            "wait",
            &Default::default(),
        ));
        assert_eq!(d.unwrap().source, "llm", "{p:?}");
        assert_eq!(tr.answers.len(), 1);
        // without response_format the same model falls back
        let (d, _) = s.rt.block_on(advisor::decide(
            &c,
            "Deploy? [lab:garbage]",
            &json!({}),
            "wait",
            &DecideOptions {
                response_format: false,
                ..Default::default()
            },
        ));
        assert_eq!(d.unwrap().source, "fallback", "{p:?}");
    }
}

/// llama.cpp rejects a `response_format` type it does not know, with 400 naming the field.
#[test]
fn llamacpp_rejects_unknown_response_format_types() {
    let s = stand_profile(LlmProfile::Llamacpp);
    s.rt.block_on(async {
        let r = ralf_sh::clients::http_builder().build().unwrap()
            .post(format!("{}/v1/chat/completions", s.lab.url))
            .json(&json!({"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "grammar"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("response_format type must be one of"));
    });
}

/// Ollama loads a pulled model on first use and sends nothing meanwhile; exo sends a keep-alive
/// and then nothing during a long prefill. The first-token timeout covers both; the idle timeout
/// starts with the first token.
#[test]
fn cold_start_survives_a_short_idle_timeout() {
    let s = stand_with(LlmLabOptions {
        load_delay: 1.2,
        ..LlmLabOptions::profile(LlmProfile::Ollama)
    });
    let mut o = ExoOptions::new(&s.lab.url, "qwen3:4b");
    o.idle_timeout = Duration::from_millis(400);
    let c = Client::new(o).unwrap();
    let (d, _) = s.rt.block_on(advisor::decide(
        &c,
        "Deploy?",
        &json!({}),
        "wait",
        &Default::default(),
    ));
    assert_eq!(d.unwrap().source, "llm");
    assert!(s
        .rt
        .block_on(c.health(Duration::from_secs(2)))
        .loaded
        .unwrap()
        .contains(&"qwen3:4b".to_string()));

    let s = stand_profile(LlmProfile::Exo);
    s.lab
        .script(vec![Rule {
            delay: Some(1.2),
            ..rule("Deploy", "slow")
        }])
        .unwrap();
    let mut o = ExoOptions::new(&s.lab.url, &s.lab.model);
    o.idle_timeout = Duration::from_millis(400);
    let c = Client::new(o).unwrap();
    let (d, _) = s.rt.block_on(advisor::decide(
        &c,
        "Deploy?",
        &json!({}),
        "wait",
        &Default::default(),
    ));
    let d = d.unwrap();
    assert_eq!(d.source, "llm", "{:?}", d.error);
}

/// Ollama's /v1 layer loses a mid-stream error: the stream ends without finish_reason or [DONE].
/// That is a failure, not a short answer.
#[test]
fn ollama_stream_that_just_ends_is_unavailable() {
    let s = stand_profile(LlmProfile::Ollama);
    s.lab.script(vec![rule("boom", "error_event")]).unwrap();
    let c = client(&s.lab.url, &s.lab.model);
    let e =
        s.rt.block_on(c.chat_stream(
            &ralf_sh::clients::exo::ChatRequest {
                messages: vec![ralf_sh::clients::exo::Message::user("boom")],
                ..Default::default()
            },
            |_| {},
        ))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.contains("without a finish_reason"), "{e}");
}

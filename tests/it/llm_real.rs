//! The advisor against a real OpenAI-compatible server: llama.cpp as packaged by
//! `llama-cpp-python[server]` (its sdist bundles llama.cpp; `tests/llm/setup.sh` builds it into
//! `target/llm-venv`). Nothing is downloaded at run time: the test writes its own tiny model (one
//! llama block with random weights, `tests/llm/make_model.py`) on the vocabulary of a vocab-only
//! GGUF file from llama.cpp's `models/` folder. A random model answers nonsense, but the server's
//! JSON-schema grammar keeps it in the shape of a decision.
//!
//! Without the venv the test prints a loud SKIP naming the command that enables it, and fails
//! under `CI=true`. Loopback only.

use crate::common::exo as exo_harness;

use ralf_sh::clients::exo::advisor::{self, DecideOptions};
use ralf_sh::clients::exo::{ChatRequest, Client, ExoOptions, Message};
use ralf_sh::error::ErrorKind;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ALIAS: &str = "ralf-tiny-llama";
const ENABLE: &str = "bash tests/llm/setup.sh";

fn venv() -> PathBuf {
    std::env::var_os("RALF_LLM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/llm-venv"))
}

/// The server process; killed when dropped.
struct Server {
    child: Option<Child>,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Server {
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A plain HTTP/1.0 GET on loopback: did it answer 200?
fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut t) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = t.set_read_timeout(Some(Duration::from_secs(5)));
    if t.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    t.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200")
        || buf.starts_with(b"HTTP/1.0 200")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Make the model and start the server; `None` (after a loud skip) when the venv is missing.
fn start(dir: &Path) -> Option<Server> {
    let v = venv();
    let python = v.join("bin/python");
    let vocab = v.join("share/ggml-vocab-llama-spm.gguf");
    let ok = python.exists()
        && vocab.exists()
        && Command::new(&python)
            .args(["-c", "import llama_cpp.server, gguf"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if !ok {
        crate::common::skip_suite(
            "the real llama.cpp server test",
            &format!(
                "no llama-cpp-python[server] venv with the vocabulary at {}",
                v.display()
            ),
            ENABLE,
        );
        return None;
    }
    let model = dir.join("tiny.gguf");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/llm/make_model.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&vocab)
        .arg(&model)
        .output()
        .expect("run make_model.py");
    assert!(
        out.status.success(),
        "make_model.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let child = Command::new(&python)
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(&model)
        .args([
            "--model_alias",
            ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--chat_format",
            "chatml",
            "--n_ctx",
            "4096",
            "--n_threads",
            "2",
            "--verbose",
            "false",
        ])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start llama_cpp.server");
    let url = format!("http://127.0.0.1:{port}");
    let s = Server {
        child: Some(child),
        url,
    };
    // Wait until it answers (bounded).
    let t0 = Instant::now();
    loop {
        if http_ok(port, "/v1/models") {
            break;
        }
        if t0.elapsed() > Duration::from_secs(90) {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            panic!("llama_cpp.server did not come up in 90 s:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("llama_cpp.server up after {:?}", t0.elapsed());
    Some(s)
}

fn client(url: &str, model: &str) -> Client {
    let mut o = ExoOptions::new(url, model);
    o.connect_timeout = Duration::from_secs(2);
    o.retries = 0;
    o.timeout = Duration::from_secs(120);
    Client::new(o).unwrap()
}

#[test]
fn advisor_against_real_llama_cpp_server() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut server) = start(dir.path()) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let c = client(&server.url, ALIAS);
    let lim = Duration::from_secs(5);

    // Probe: an OpenAI-compatible server listing the model; ready.
    let h = rt.block_on(c.health(lim));
    assert!(h.ready, "{h:?}");
    assert_eq!(h.models, vec![ALIAS.to_string()]);

    // decide() through the binding: response_format makes the random model answer a valid
    // decision. (llama-cpp-python accepts only `json_object` + `schema`: its 422 names
    // `response_format`, and the advisor asks again in that form.)
    let (se, events) = exo_harness::engine(&rt, &server.url, ALIAS, "  timeout: 120\n");
    let t0 = Instant::now();
    let d: rhai::Map = se
        .engine
        .eval(r#"exo::connect().decide("Deploy gitea now?", #{ deps: ["postgresql"], postgresql: "healthy" })"#)
        .unwrap();
    println!("decide with response_format: {d:?} in {:?}", t0.elapsed());
    assert_eq!(d["source"].to_string(), "llm", "{d:?}");
    assert!(["proceed", "wait", "skip"].contains(&d["decision"].to_string().as_str()));
    let reason = d["reason"].to_string();
    assert!(
        !reason.trim().is_empty() && reason.chars().count() <= 200,
        "{reason}"
    );
    {
        let ev = events.0.lock();
        let (_, rec) = ev.iter().find(|(k, _)| k == "llm").expect("journal");
        let answer: serde_json::Value = serde_json::from_str(
            rec["answers"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()
                .as_str()
                .unwrap(),
        )
        .expect("the answer is JSON");
        assert!(answer["decision"].is_string() && answer["reason"].is_string());
    }

    // Without response_format the same model answers nonsense: a clean fallback. (Small budgets:
    // the random model rarely stops by itself, and 3000 tokens take minutes on two busy cores.)
    let (d, tr) = rt.block_on(advisor::decide(
        &c,
        "Deploy gitea now?",
        &json!({}),
        "wait",
        &DecideOptions {
            response_format: false,
            max_tokens: [48, 48],
        },
    ));
    let d = d.unwrap();
    assert_eq!(
        (d.decision.as_str(), d.source.as_str(), d.reason.as_str()),
        ("wait", "fallback", "advisor gave no valid answer"),
        "{tr:?}"
    );
    assert_eq!(tr.answers.len(), 2);

    // Streaming: pieces arrive, the stream ends with a finish_reason.
    let req = ChatRequest {
        messages: vec![Message::user("Say something.")],
        max_tokens: Some(24),
        temperature: Some(0.0),
        ..Default::default()
    };
    let mut pieces = 0;
    let r = rt.block_on(c.chat_stream(&req, |_| pieces += 1)).unwrap();
    assert!(pieces > 0 && !r.text.is_empty(), "{r:?}");
    assert!(
        matches!(r.finish_reason.as_deref(), Some("length" | "stop")),
        "{r:?}"
    );

    // An unknown model: the server has one model and answers with it whatever the name (as
    // llama-server does; llama-cpp-python's LlamaProxy falls back to its default alias);
    // available() says the name is not what the server offers.
    let other = client(&server.url, "llama-3.2-3b");
    let h = rt.block_on(other.health(lim));
    assert!(!h.ready);
    assert!(h.error.unwrap().contains(ALIAS));
    let r = rt
        .block_on(other.chat(&ChatRequest {
            max_tokens: Some(4),
            ..req.clone()
        }))
        .unwrap();
    // (llama-cpp-python echoes the name it was asked for)
    assert!(r.finish_reason.is_some(), "{r:?}");
    assert_eq!(r.model.as_deref(), Some("llama-3.2-3b"));

    // The server killed mid-stream: `unavailable`, then the advisor falls back at once.
    let long = ChatRequest {
        max_tokens: Some(1500),
        ..req.clone()
    };
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let handle = rt.spawn({
        let c = client(&server.url, ALIAS);
        async move {
            let mut sent = false;
            c.chat_stream(&long, move |_| {
                if !sent {
                    sent = true;
                    let _ = tx.send(());
                }
            })
            .await
        }
    });
    // kill the server as soon as the first token arrived
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the long stream started");
    server.kill();
    let r = rt.block_on(handle).unwrap();
    match r {
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
            println!("killed mid-stream: {e}");
        }
        Ok(r) => panic!("the stream outlived the server: {r:?}"),
    }
    assert!(!rt.block_on(c.available(Duration::from_secs(2))));
    let (d, tr) = rt.block_on(advisor::decide(
        &c,
        "Deploy?",
        &json!({}),
        "skip",
        &Default::default(),
    ));
    let d = d.unwrap();
    assert_eq!(
        (d.decision.as_str(), d.source.as_str(), d.reason.as_str()),
        ("skip", "fallback", "advisor unavailable")
    );
    assert!(tr.unreachable);
}

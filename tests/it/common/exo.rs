//! Harness for the exo tests: an in-process stand-in plus an engine whose config points at it.
#![allow(dead_code)]

use ralf_sh::config::LoadedConfig;
use ralf_sh::engine::{self, ScriptEngine};
use ralf_sh::host::{Host, HostOptions, Journal};
use ralf_sh::lab::llm::{spawn, LlmLab, LlmLabOptions};
use ralf_sh::lab::LlmProfile;
use std::path::Path;
use std::sync::Arc;

/// A runtime (kept alive by the caller) and a running stand-in.
pub struct Stand {
    pub rt: tokio::runtime::Runtime,
    pub lab: LlmLab,
}

/// The exo v1 stand-in.
pub fn stand() -> Stand {
    stand_with(LlmLabOptions::default())
}

/// A stand-in of the given profile.
pub fn stand_profile(p: LlmProfile) -> Stand {
    stand_with(LlmLabOptions::profile(p))
}

pub fn stand_with(opts: LlmLabOptions) -> Stand {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let lab = rt.block_on(spawn(opts)).expect("llm stand-in");
    Stand { rt, lab }
}

/// Journal that keeps every event, to check what would be recorded.
#[derive(Default)]
pub struct Events(pub parking_lot::Mutex<Vec<(String, serde_json::Value)>>);

impl Journal for Events {
    fn event(&self, kind: &str, data: &serde_json::Value) {
        self.0.lock().push((kind.to_string(), data.clone()));
    }
    fn step_detail(&self, _key: &str, _value: &serde_json::Value) {}
    fn previous_step_detail(&self, _key: &str) -> Option<serde_json::Value> {
        None
    }
}

/// An engine whose `llm:` config points at `url`/`model` (extra YAML lines appended to the section).
pub fn engine(
    rt: &tokio::runtime::Runtime,
    url: &str,
    model: &str,
    extra: &str,
) -> (ScriptEngine, Arc<Events>) {
    let yaml = format!("llm:\n  url: {url}\n  model: {model}\n  connect_timeout: 2\n{extra}");
    let config = ralf_sh::config::parse(&yaml, Path::new("test.yaml")).expect("config");
    let host = Host::new(
        LoadedConfig { config, path: None },
        rt.handle().clone(),
        HostOptions::default(),
    );
    let events = Arc::new(Events::default());
    host.set_journal(events.clone());
    let mut se = engine::build(&host);
    // `assert` comes with `ralf-sh test`; the in-process harness adds its own.
    se.engine.register_fn(
        "assert",
        |ok: bool| -> Result<(), Box<rhai::EvalAltResult>> {
            if ok {
                Ok(())
            } else {
                Err("assertion failed".into())
            }
        },
    );
    se.engine.register_fn(
        "assert",
        |ok: bool, msg: &str| -> Result<(), Box<rhai::EvalAltResult>> {
            if ok {
                Ok(())
            } else {
                Err(format!("assertion failed: {msg}").into())
            }
        },
    );
    (se, events)
}

/// A loopback port nothing listens on.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let p = l.local_addr().expect("addr").port();
    drop(l);
    p
}

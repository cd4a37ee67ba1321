//! Harness for the deployment-flow tests: a `ralf-sh lab serve` process shared by several runs
//! (so `resume` talks to the same stand-ins), a config pointing at it, and state-store queries.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn script(name: &str) -> String {
    repo().join("scripts").join(name).display().to_string()
}

/// A command for the binary, isolated in `home`, run from the repository (the lab seeds its
/// stand-ins and finds the example catalog there).
pub fn cmd_in_repo(home: &Path) -> Command {
    let mut c = crate::common::cmd(home);
    c.current_dir(repo());
    c
}

/// A running `ralf-sh lab serve` plus a config file for it.
pub struct Served {
    pub child: Child,
    pub info: serde_json::Value,
    pub config: PathBuf,
    pub state: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    pub fn start(home: &Path) -> Served {
        let mut child = cmd_in_repo(home)
            .args(["lab", "serve"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start lab serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("lab serve info line");
        let info: serde_json::Value = serde_json::from_str(&line).expect("lab info JSON");
        let (mut yaml, mut env) = ralf_sh::lab::client_config(&info);
        let (net, net_env) = ralf_sh::lab::net_config(&info);
        yaml.push_str(&net);
        env.extend(net_env);
        let state = home.join("state.db");
        yaml.push_str(&format!(
            "catalog:\n  path: {:?}\nstate:\n  path: {:?}\n",
            repo().join("catalog/projects").display().to_string(),
            state.display().to_string()
        ));
        let config = home.join("ralf.yaml");
        std::fs::write(&config, yaml).unwrap();
        Served {
            child,
            info,
            config,
            state,
            env,
        }
    }

    pub fn url(&self, k: &str) -> String {
        self.info[k]["url"].as_str().unwrap().to_string()
    }

    /// A command with the config and the lab's token variables.
    pub fn cmd(&self, home: &Path) -> Command {
        let mut c = cmd_in_repo(home);
        c.env("RALF_CONFIG", &self.config);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn post(&self, url: &str, body: serde_json::Value) {
        let r = reqwest::blocking_post(url, body);
        assert!(r, "POST {url} failed");
    }

    /// Tasks as the Semaphore stand-in knows them.
    pub fn tasks(&self) -> Vec<serde_json::Value> {
        let u = format!("{}/_lab/tasks", self.url("semaphore"));
        serde_json::from_str(&reqwest::blocking_get(&u)).unwrap()
    }
}

/// Tiny blocking HTTP helpers over a throwaway runtime (loopback only).
pub mod reqwest {
    pub fn blocking_post(url: &str, body: serde_json::Value) -> bool {
        rt().block_on(async {
            // The Proxmox stand-in's certificate is self-signed; this only ever talks to loopback.
            assert!(url.starts_with("http://127.0.0.1") || url.starts_with("https://127.0.0.1"));
            ralf_sh::clients::http_builder()
                .danger_accept_invalid_certs(true)
                .build()
                .unwrap()
                .post(url)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        })
    }
    pub fn blocking_get(url: &str) -> String {
        rt().block_on(async {
            ralf_sh::clients::http_builder()
                .build()
                .unwrap()
                .get(url)
                .send()
                .await
                .expect("GET")
                .text()
                .await
                .expect("body")
        })
    }
    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }
}

/// `service -> status` from the state store.
pub fn statuses(db: &Path) -> std::collections::BTreeMap<String, String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare("SELECT service, status FROM service_status")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// Steps of every run: (id, run_id, key, status, result).
pub fn steps(db: &Path) -> Vec<(i64, String, String, String, Option<String>)> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare("SELECT id, run_id, key, status, result FROM steps ORDER BY id")
        .unwrap();
    st.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

/// Runs: (id, status, exit_code).
pub fn runs(db: &Path) -> Vec<(String, String, Option<i64>)> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare("SELECT id, status, exit_code FROM runs ORDER BY started_at")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// How many "deploy" tasks the Semaphore stand-in saw per value of a task field.
pub fn deploy_tasks_per(
    tasks: &[serde_json::Value],
    field: &str,
) -> std::collections::BTreeMap<String, usize> {
    let mut per = std::collections::BTreeMap::new();
    for t in tasks {
        if t["message"].as_str().unwrap_or("").contains("deploy ") {
            *per.entry(t[field].to_string()).or_default() += 1;
        }
    }
    per
}

/// deploy_all against the served lab in the background, output discarded.
pub fn spawn_deploy_all(lab: &Served, home: &std::path::Path) -> std::process::Child {
    let mut c = lab.cmd(home);
    c.arg(script("deploy_all.rhai"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c.spawn().unwrap()
}

pub fn slow_templates(lab: &Served, ms: u64) {
    for t in [
        "RALF Postgresql Apply",
        "RALF Redis Apply",
        "RALF Traefik Apply",
        "RALF Exo Apply",
        "RALF Mail Apply",
        "RALF N8n Apply",
        "RALF Netbox Apply",
    ] {
        lab.post(
            &format!("{}/_lab/templates/{t}/behaviour", lab.url("semaphore")),
            serde_json::json!({"duration_ms": ms, "lines": 5, "outcome": "success"}),
        );
    }
}

pub fn wait_for(mut f: impl FnMut() -> bool, what: &str) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

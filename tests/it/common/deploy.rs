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

/// Which state store a test's runs use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// `RALF_TEST_STATE=postgres` runs every served-lab test on a throwaway PostgreSQL cluster;
    /// unset or `sqlite`, on a SQLite file.
    pub fn from_env() -> Backend {
        match std::env::var("RALF_TEST_STATE").as_deref() {
            Ok("postgres") => Backend::Postgres,
            Ok("sqlite") | Ok("") | Err(_) => Backend::Sqlite,
            Ok(other) => panic!("RALF_TEST_STATE must be `sqlite` or `postgres`, not `{other}`"),
        }
    }
}

/// The variable that carries the throwaway cluster's password to the runs.
pub const PG_PASSWORD_VAR: &str = "RALF_TEST_PG_PASSWORD";

/// A throwaway PostgreSQL cluster in `home/pg` (stopped on drop); None after a loud skip (a
/// failure under CI=true) when the server binaries are not installed.
pub fn pg_cluster(home: &Path, what: &str) -> Option<crate::common::postgres::Cluster> {
    if crate::common::postgres::bin_dir().is_none() {
        crate::common::skip_suite(
            what,
            "no PostgreSQL server binaries (initdb)",
            "apt-get install postgresql",
        );
        return None;
    }
    Some(
        crate::common::postgres::Cluster::start(&home.join("pg"))
            .expect("a throwaway PostgreSQL cluster"),
    )
}

/// Where a served lab's runs keep their state.
pub enum TestState {
    Sqlite(PathBuf),
    /// A throwaway cluster in the test's home, stopped when the test ends.
    Postgres(crate::common::postgres::Cluster),
}

impl TestState {
    fn new(home: &Path, backend: Backend) -> Option<TestState> {
        match backend {
            Backend::Sqlite => Some(TestState::Sqlite(home.join("state.db"))),
            Backend::Postgres => {
                pg_cluster(home, "a test on the PostgreSQL state store").map(TestState::Postgres)
            }
        }
    }

    /// The config's `state:` section.
    pub fn yaml(&self) -> String {
        match self {
            TestState::Sqlite(p) => format!("state:\n  path: {:?}\n", p.display().to_string()),
            TestState::Postgres(c) => format!(
                "state:\n  url: {}\n  password_env: {PG_PASSWORD_VAR}\n",
                c.url()
            ),
        }
    }

    /// Variables the runs need (the cluster's password).
    pub fn env(&self) -> Vec<(String, String)> {
        match self {
            TestState::Sqlite(_) => Vec::new(),
            TestState::Postgres(_) => vec![(
                PG_PASSWORD_VAR.into(),
                crate::common::postgres::PASSWORD.into(),
            )],
        }
    }

    /// Everything the store holds as text: the SQLite file's bytes (free pages included), or a
    /// `pg_dump` of the database. For scans that no secret was written anywhere.
    pub fn contents(&self) -> String {
        match self {
            TestState::Sqlite(p) => {
                String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
            }
            TestState::Postgres(c) => c.dump(crate::common::postgres::DB).expect("pg_dump"),
        }
    }
}

/// Something the state helpers can read: a SQLite file or a served lab's store.
pub trait AsStore {
    fn open_store(&self) -> ralf_sh::state::Store;
}

impl AsStore for Path {
    fn open_store(&self) -> ralf_sh::state::Store {
        ralf_sh::state::Store::open(self).expect("open the SQLite store")
    }
}

impl AsStore for PathBuf {
    fn open_store(&self) -> ralf_sh::state::Store {
        self.as_path().open_store()
    }
}

impl AsStore for TestState {
    fn open_store(&self) -> ralf_sh::state::Store {
        match self {
            TestState::Sqlite(p) => p.open_store(),
            TestState::Postgres(c) => {
                let o = ralf_sh::state::postgres::PgOptions {
                    url: c.url(),
                    password: Some(crate::common::postgres::PASSWORD.into()),
                    ca_file: None,
                    lease: std::time::Duration::from_secs(30),
                };
                ralf_sh::state::Store::connect(&o).expect("connect to the PostgreSQL store")
            }
        }
    }
}

/// Every row of the store, in key order.
pub fn dump(s: &(impl AsStore + ?Sized)) -> ralf_sh::state::Dump {
    s.open_store()
        .dump()
        .expect("read the state store")
        .sorted()
}

/// A running `ralf-sh lab serve` plus a config file for it.
pub struct Served {
    pub child: Child,
    pub info: serde_json::Value,
    pub config: PathBuf,
    pub state: TestState,
    pub env: Vec<(String, String)>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// A served lab on the state store `RALF_TEST_STATE` names (SQLite unless set).
    pub fn start(home: &Path) -> Served {
        Served::start_on(home, Backend::from_env())
            .expect("RALF_TEST_STATE=postgres needs Debian's PostgreSQL server binaries")
    }

    /// A served lab on the given state store; None (after a loud skip, a failure under CI=true)
    /// when PostgreSQL is asked for and not installed.
    pub fn start_on(home: &Path, backend: Backend) -> Option<Served> {
        let state = TestState::new(home, backend)?;
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
        yaml.push_str(&format!(
            "catalog:\n  path: {:?}\n{}",
            repo().join("catalog/projects").display().to_string(),
            state.yaml()
        ));
        env.extend(state.env());
        let config = home.join("ralf.yaml");
        std::fs::write(&config, yaml).unwrap();
        Some(Served {
            child,
            info,
            config,
            state,
            env,
        })
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

    /// The Proxmox stand-in's state (guests, tasks) from its control API.
    pub fn pve_state(&self) -> serde_json::Value {
        let u = format!("{}/_lab/state", self.url("proxmox"));
        serde_json::from_str(&reqwest::blocking_get(&u)).unwrap()
    }

    /// The Proxmox stand-in's worker tasks whose kind ends with `kind` (`snapshot`, `rollback`; ""
    /// for all), for guest `vmid` or every guest.
    pub fn pve_tasks(&self, kind: &str, vmid: Option<u32>) -> usize {
        let st = self.pve_state();
        st["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["kind"].as_str().is_some_and(|k| k.ends_with(kind)))
            .filter(|t| vmid.is_none_or(|v| t["id"] == v.to_string().as_str()))
            .count()
    }

    /// Whether the Proxmox stand-in has a `*snapshot` worker task still running: the readiness
    /// signal of "inside the snapshot task" (not merely in the step before the task starts).
    pub fn pve_snapshot_task_running(&self) -> bool {
        let st = self.pve_state();
        st["tasks"].as_array().into_iter().flatten().any(|t| {
            t["kind"].as_str().is_some_and(|k| k.ends_with("snapshot")) && t["exitstatus"].is_null()
        })
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
        crate::common::get_text(url)
    }
    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }
}

/// `service -> status` from the state store.
pub fn statuses(s: &(impl AsStore + ?Sized)) -> std::collections::BTreeMap<String, String> {
    dump(s)
        .service_status
        .into_iter()
        .map(|r| (r.service, r.status))
        .collect()
}

/// Steps of every run: (id, run_id, key, status, result as JSON text).
pub fn steps(s: &(impl AsStore + ?Sized)) -> Vec<(i64, String, String, String, Option<String>)> {
    dump(s)
        .steps
        .into_iter()
        .map(|r| {
            (
                r.id,
                r.run_id,
                r.key,
                r.status,
                r.result.map(|v| v.to_string()),
            )
        })
        .collect()
}

/// Runs: (id, status, exit_code), oldest first.
pub fn runs(s: &(impl AsStore + ?Sized)) -> Vec<(String, String, Option<i64>)> {
    let mut rs = dump(s).runs;
    rs.sort_by(|a, b| a.started_at.cmp(&b.started_at));
    rs.into_iter()
        .map(|r| (r.id, r.status, r.exit_code))
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

//! `ralf/deploy`'s snapshot policy against a guest whose storage cannot snapshot (Proxmox
//! "snapshot feature is not available"), through the binary and `ralf-sh lab serve`. Loopback only.

use crate::common;
use crate::common::deploy as deploy_h;

use common::run;
use deploy_h::*;
use serde_json::{json, Value};

/// The Proxmox stand-in's control API (HTTPS with the lab's self-signed certificate; test-only
/// client on loopback).
fn pve(lab: &Served, method: &str, path: &str, body: Option<Value>) -> Value {
    let url = format!("{}/_lab/{path}", lab.url("proxmox"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = ralf_sh::clients::http_builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let rb = match method {
            "POST" => http.post(&url).json(&body.unwrap_or(Value::Null)),
            _ => http.get(&url),
        };
        let r = rb.send().await.expect("lab proxmox control");
        assert!(r.status().is_success(), "{method} {url}: {}", r.status());
        r.json().await.unwrap()
    })
}

fn snapshot_tasks(lab: &Served, vmid: u32) -> usize {
    lab.pve_tasks("vzsnapshot", Some(vmid))
}

#[test]
fn snapshot_policy_on_storage_without_snapshots() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    // postgresql (CT 2010, `snapshot: true` in the catalog) moves to directory storage.
    pve(
        &lab,
        "POST",
        "guests/2010/config",
        Some(json!({"rootfs": "local:2010/vm-2010-disk-0.raw,size=8G"})),
    );
    let sem_before = lab.tasks().len();

    // Default policy "require": the preflight finds it before anything starts (exit 2, at the
    // catalog's `snapshot:` line).
    let mut c = lab.cmd(home.path());
    c.arg(script("deploy_service.rhai"))
        .args(["postgresql", "--no-advisor"]);
    let (code, out, err) = run(c);
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains(
            "postgresql.yaml:14: postgresql: the storage of guest 2010 cannot take the snapshot"
        ) && err.contains("if_supported"),
        "{err}"
    );
    assert_eq!(snapshot_tasks(&lab, 2010), 0, "a snapshot task was started");
    // Without the preflight the flow itself skips the service before any task starts.
    let mut c = lab.cmd(home.path());
    c.arg(script("deploy_service.rhai"))
        .args(["postgresql", "--no-advisor", "--no-preflight"]);
    let (code, out, err) = run(c);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("skipped") && out.contains("does not support snapshots"),
        "{out}"
    );
    assert!(out.contains("if_supported"), "the way out is named: {out}");
    assert_eq!(
        lab.tasks().len(),
        sem_before,
        "a Semaphore task was started"
    );
    assert_eq!(snapshot_tasks(&lab, 2010), 0, "a snapshot task was started");
    assert_ne!(
        statuses(&lab.state).get("postgresql").map(String::as_str),
        Some("deployed")
    );

    // "if_supported": deployed with a warning, no rollback point.
    let mut c = lab.cmd(home.path());
    c.arg(script("deploy_service.rhai")).args([
        "postgresql",
        "--no-advisor",
        "--snapshot",
        "if_supported",
    ]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("deploying without a snapshot"),
        "no warning:\n{all}"
    );
    assert_eq!(statuses(&lab.state)["postgresql"], "deployed");
    assert_eq!(snapshot_tasks(&lab, 2010), 0);
    let g = pve(&lab, "GET", "guests/2010", None);
    assert_eq!(g["snapshots"].as_array().unwrap().len(), 0, "{g}");

    // A policy that does not exist is named.
    let mut c = lab.cmd(home.path());
    c.arg(script("deploy_service.rhai")).args([
        "postgresql",
        "--no-advisor",
        "--snapshot",
        "maybe",
    ]);
    let (code, out, err) = run(c);
    assert_ne!(code, 0);
    assert!(
        format!("{out}{err}").contains(r#"must be "require" or "if_supported", got maybe"#),
        "{out}\n{err}"
    );
}

//! The Proxmox client against the stand-in's version profiles (PVE 7.2, 8.2 without the 2025
//! http-server update, 9.2), one test per real-server behaviour from UPSTREAM.md §2 (P1–P6), the
//! Proxmox script tests as a matrix over the profiles, and the stand-in's answers checked against
//! the real API schema (tests/data/proxmox-api-subset.json, from pve-docs' apidata.js).
//! Loopback only.

use crate::common;

use ralf_sh::clients::proxmox::{Client, GuestRef, Options};
use ralf_sh::error::ErrorKind;
use ralf_sh::lab::proxmox::{spawn, Handle, PveVersion, SpawnOpts};
use serde_json::Value;
use std::time::Duration;

const ALL: [PveVersion; 3] = [PveVersion::V7_2, PveVersion::V8_2, PveVersion::V9_2];

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn lab(version: PveVersion) -> (Handle, Client) {
    let h = spawn(SpawnOpts {
        version,
        ..SpawnOpts::fast()
    })
    .await
    .unwrap();
    let c = Client::connect(Options {
        url: h.url.clone(),
        token_id: Some(h.token_id.clone()),
        token_secret: Some(h.token_secret.clone()),
        fingerprint: Some(h.fingerprint.clone()),
        poll: Some(Duration::from_millis(50)),
        ..Default::default()
    })
    .await
    .unwrap();
    (h, c)
}

async fn guest(c: &Client, vmid: u32) -> GuestRef {
    c.find_guest(vmid).await.unwrap()
}

const T: Option<Duration> = Some(Duration::from_secs(30));

#[test]
fn version_endpoint_answers_per_profile() {
    rt().block_on(async {
        for (v, want) in [
            (PveVersion::V7_2, "7.2"),
            (PveVersion::V8_2, "8.2"),
            (PveVersion::V9_2, "9.2"),
        ] {
            let (_h, c) = lab(v).await;
            assert_eq!(c.version["release"], want, "{:?}", c.version);
            let n = c.get("/nodes/pve/status", &[]).await.unwrap();
            let pv = n["pveversion"].as_str().unwrap();
            assert!(pv.starts_with(&format!("pve-manager/{want}")), "{pv}");
        }
    });
}

/// P1: before libpve-http-server-perl 5.2.0 the error text is only in the reason phrase.
#[test]
fn start_of_a_running_ct_is_conflict_on_every_profile() {
    rt().block_on(async {
        for v in ALL {
            let (_h, c) = lab(v).await;
            let pg = guest(&c, 2010).await;
            let e = c.power(&pg, "start", &[]).await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Conflict, "{v:?}: {e}");
            assert!(
                e.message.contains("CT 2010 already running"),
                "{v:?}: {}",
                e.message
            );
            // ... and so are not_found and locked
            let mut wrong = pg.clone();
            wrong.node = "pve2".into();
            let e = c.status(&wrong).await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::NotFound, "{v:?}: {e}");
            assert!(e.message.contains("does not exist"), "{v:?}: {e}");
        }
    });
}

/// The 8.2 profile really sends no `message` (the reason phrase carries the text).
#[test]
fn old_profiles_send_no_message_in_the_body() {
    rt().block_on(async {
        for v in ALL {
            let h = spawn(SpawnOpts {
                version: v,
                ..SpawnOpts::fast()
            })
            .await
            .unwrap();
            let http = ralf_sh::clients::http_builder()
                .danger_accept_invalid_certs(true)
                .build()
                .unwrap();
            let r = http
                .post(format!(
                    "{}/api2/json/nodes/pve/lxc/2010/status/start",
                    h.url
                ))
                .header(
                    "Authorization",
                    format!("PVEAPIToken={}={}", h.token_id, h.token_secret),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 500);
            let body: Value = r.json().await.unwrap();
            assert_eq!(
                body.get("message").is_some(),
                v == PveVersion::V9_2,
                "{v:?}: {body}"
            );
            assert_eq!(body["data"], Value::Null);
        }
    });
}

/// P2: PVE 7.2 knows no rollback `start`; a plain rollback must not send it.
#[test]
fn rollback_works_on_pve_7_2() {
    rt().block_on(async {
        let (h, c) = lab(PveVersion::V7_2).await;
        let g = guest(&c, 2012).await;
        let upid = c.snapshot(&g, "before", None).await.unwrap();
        c.wait_task(&upid, T).await.unwrap();
        h.state.lock().guests.get_mut(&2012).unwrap().lab_marker = "changed".into();
        let upid = c.rollback(&g, "before", false).await.unwrap();
        c.wait_task(&upid, T).await.unwrap();
        assert_eq!(h.state.lock().guests[&2012].lab_marker, "initial");

        // start=1 there: a clear error, and nothing was rolled back
        h.state.lock().guests.get_mut(&2012).unwrap().lab_marker = "changed".into();
        let tasks = h.state.lock().tasks.len();
        let e = c.rollback(&g, "before", true).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
        assert_eq!(e.details["unsupported"], "rollback_start");
        assert!(
            e.message
                .contains("does not support starting the guest after a rollback"),
            "{}",
            e.message
        );
        assert!(e.message.contains("7.2"), "{}", e.message);
        assert_eq!(h.state.lock().tasks.len(), tasks, "no task may start");
        assert_eq!(h.state.lock().guests[&2012].lab_marker, "changed");

        // 8.2 has `start`
        let (h, c) = lab(PveVersion::V8_2).await;
        let g = guest(&c, 2012).await;
        let upid = c.snapshot(&g, "before", None).await.unwrap();
        c.wait_task(&upid, T).await.unwrap();
        let upid = c.rollback(&g, "before", true).await.unwrap();
        c.wait_task(&upid, T).await.unwrap();
        drop(h);
    });
}

/// P4: `limit=0` returns no line on PVE 7.2, so the tail must be read with an explicit limit.
#[test]
fn failed_task_log_tail_is_not_empty_on_pve_7_2() {
    rt().block_on(async {
        for v in ALL {
            let (h, c) = lab(v).await;
            let g = guest(&c, 10015).await;
            h.state.lock().guests.get_mut(&10015).unwrap().fail_next =
                Some("storage 'local-lvm' is full".into());
            let upid = c.snapshot(&g, "fails", None).await.unwrap();
            let e = c.wait_task(&upid, T).await.unwrap_err();
            let tail = e.details["log_tail"].as_array().unwrap();
            assert!(!tail.is_empty(), "{v:?}: {e}");
            assert_eq!(
                tail.last().unwrap(),
                "TASK ERROR: storage 'local-lvm' is full",
                "{v:?}"
            );
            assert!(e.message.contains("lab: injected failure"), "{v:?}: {e}");
            // the tail is the end of the log, not its start
            let lines = c.task_log_tail(&upid, 1).await.unwrap();
            assert_eq!(lines, vec!["TASK ERROR: storage 'local-lvm' is full"]);
        }
    });
}

/// P5: storage without snapshot support fails the task with "snapshot feature is not
/// available": its own clear error.
#[test]
fn snapshot_on_storage_without_support_is_a_clear_error() {
    rt().block_on(async {
        for v in ALL {
            let (_h, c) = lab(v).await;
            let g = guest(&c, 2031).await;
            let upid = c.snapshot(&g, "pre", None).await.unwrap();
            let e = c.wait_task(&upid, T).await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Invalid, "{v:?}: {e}");
            assert_eq!(e.details["unsupported"], "snapshot");
            assert!(
                e.message.contains("snapshot feature is not available")
                    && e.message.contains("does not support snapshots"),
                "{}",
                e.message
            );
        }
    });
}

/// P5: a config flock timeout ("can't lock file '...' - got timeout") is `locked`, both as a
/// synchronous answer and as a task's exit status.
#[test]
fn config_lock_timeout_is_locked() {
    rt().block_on(async {
        for v in ALL {
            let (h, c) = lab(v).await;
            let g = guest(&c, 2012).await;
            h.state.lock().guests.get_mut(&2012).unwrap().flock_timeouts = 2;
            let e = c
                .set_config(&g, &[("description", "x".into())])
                .await
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::Locked, "{v:?}: {e}");
            assert!(
                e.message
                    .contains("can't lock file '/run/lock/lxc/pve-config-2012.lock' - got timeout"),
                "{}",
                e.message
            );
            let upid = c.snapshot(&g, "locked", None).await.unwrap();
            let e = c.wait_task(&upid, T).await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Locked, "{v:?}: {e}");
            // the timeout is over: the next call goes through
            c.set_config(&g, &[("description", "x".into())])
                .await
                .unwrap();
        }
    });
}

/// P3 in the stand-in: the HA start request task ends before the guest runs.
#[test]
fn ha_start_task_ends_before_the_guest_runs() {
    rt().block_on(async {
        let (_h, c) = lab(PveVersion::V9_2).await;
        let g = guest(&c, 2030).await;
        assert_eq!(g.raw["hastate"], "stopped");
        assert_eq!(c.status(&g).await.unwrap()["ha"]["managed"], 1);
        let upid = c.power(&g, "start", &[]).await.unwrap();
        assert!(upid.contains(":hastart:2030:"), "{upid}");
        c.wait_task(&upid, T).await.unwrap();
        assert_eq!(c.status(&g).await.unwrap()["status"], "stopped");
        let st = c
            .wait_guest_status(&g, "running", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(st["ha"]["state"], "started");
    });
}

/// P6: the server checks the snapshot name before it looks the guest up; the PUT config key list
/// is the real one.
#[test]
fn schema_checks_come_first_and_config_keys_are_real() {
    rt().block_on(async {
        let (_h, c) = lab(PveVersion::V9_2).await;
        let e = c
            .call(
                reqwest::Method::POST,
                "/nodes/pve/lxc/777777/snapshot",
                &[("snapname", "1bad".into())],
            )
            .await
            .unwrap_err();
        assert_eq!(e.details["status"], 400, "{e}");
        assert!(e.details["errors"]["snapname"]
            .as_str()
            .unwrap()
            .contains("invalid format"));
        let g = guest(&c, 2012).await;
        c.set_config(
            &g,
            &[
                ("timezone", "Europe/Berlin".into()),
                ("mp0", "local-lvm:vm-2012-disk-1,mp=/srv,size=4G".into()),
            ],
        )
        .await
        .unwrap();
        let cfg = c.config(&g).await.unwrap();
        assert_eq!(cfg["timezone"], "Europe/Berlin");
        let e = c
            .set_config(&g, &[("no_such_key", "1".into())])
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
    });
}

// ---- object shapes against the real API schema ----

fn schema() -> Value {
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/proxmox-api-subset.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Check `v` against a PVE JSON schema (`type`, `properties` with `optional`, `items`); returns
/// the problems found.
fn check(v: &Value, s: &Value, at: &str, out: &mut Vec<String>) {
    let ty = s["type"].as_str().unwrap_or("any");
    let ok = match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        // on the wire 0/1 (JSON true/false accepted)
        "boolean" => v.is_boolean() || matches!(v.as_i64(), Some(0 | 1)),
        "null" => v.is_null(),
        _ => true,
    };
    if !ok {
        out.push(format!("{at}: expected {ty}, got {v}"));
        return;
    }
    if let (Some(props), Some(obj)) = (s["properties"].as_object(), v.as_object()) {
        for (k, ps) in props {
            match obj.get(k) {
                Some(x) => check(x, ps, &format!("{at}.{k}"), out),
                None if ps["optional"].as_i64() != Some(1) => {
                    out.push(format!("{at}: required property `{k}` missing"))
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            check(x, items, &format!("{at}[{i}]"), out);
        }
    }
}

#[test]
fn answers_match_the_real_schema() {
    let schema = schema();
    rt().block_on(async {
        for v in ALL {
            let (_h, c) = lab(v).await;
            let g = guest(&c, 2012).await;
            let upid = c.snapshot(&g, "shape", None).await.unwrap();
            c.wait_task(&upid, T).await.unwrap();
            let enc = upid
                .replace(':', "%3A")
                .replace('@', "%40")
                .replace('!', "%21");
            let gets = [
                ("/version", "/version", vec![]),
                ("/nodes", "/nodes", vec![]),
                ("/nodes/{node}/status", "/nodes/pve/status", vec![]),
                (
                    "/cluster/resources",
                    "/cluster/resources",
                    vec![("type", "vm")],
                ),
                ("/nodes/{node}/lxc", "/nodes/pve/lxc", vec![]),
                ("/nodes/{node}/qemu", "/nodes/pve2/qemu", vec![]),
                (
                    "/nodes/{node}/lxc/{vmid}/status/current",
                    "/nodes/pve/lxc/2012/status/current",
                    vec![],
                ),
                (
                    "/nodes/{node}/lxc/{vmid}/status/current",
                    "/nodes/pve/lxc/2030/status/current",
                    vec![],
                ),
                (
                    "/nodes/{node}/qemu/{vmid}/status/current",
                    "/nodes/pve2/qemu/4013/status/current",
                    vec![],
                ),
                (
                    "/nodes/{node}/lxc/{vmid}/snapshot",
                    "/nodes/pve/lxc/2012/snapshot",
                    vec![],
                ),
                (
                    "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/config",
                    "/nodes/pve/lxc/2012/snapshot/shape/config",
                    vec![],
                ),
                ("/nodes/{node}/tasks", "/nodes/pve/tasks", vec![]),
                (
                    "/nodes/{node}/tasks/{upid}/status",
                    &format!("/nodes/pve/tasks/{enc}/status"),
                    vec![],
                ),
                (
                    "/nodes/{node}/tasks/{upid}/log",
                    &format!("/nodes/pve/tasks/{enc}/log"),
                    vec![("limit", "5")],
                ),
            ];
            let mut problems = Vec::new();
            for (ep, path, q) in gets {
                let ret = &schema["endpoints"][ep]["info"]["GET"]["returns"];
                assert!(ret.is_object(), "no schema for {ep}");
                let params: Vec<(&str, String)> =
                    q.iter().map(|(k, v)| (*k, v.to_string())).collect();
                let data = c.get(path, &params).await.unwrap();
                check(&data, ret, &format!("{v:?} GET {path}"), &mut problems);
            }
            assert!(problems.is_empty(), "{}", problems.join("\n"));
        }
    });
}

// ---- the script tests on every profile ----

fn script_tests_on(version: PveVersion) {
    let rt = rt();
    let h = rt
        .block_on(spawn(SpawnOpts {
            version,
            ..SpawnOpts::fast()
        }))
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let section = ralf_sh::lab::proxmox::config_section(&h.info(), "RALF_TEST_PVE_TOKEN");
    let cfg = ralf_sh::config::Config {
        proxmox: Some(section),
        ..Default::default()
    };
    std::fs::write(
        home.path().join("ralf.yaml"),
        ralf_sh::yaml::to_string(&cfg).unwrap(),
    )
    .unwrap();
    let mut c = common::cmd(home.path());
    c.env("RALF_TEST_PVE_TOKEN", &h.token_secret);
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rhai/proxmox.rhai");
    let (out, _) = common::script_tests(c, &file, 12);
    assert!(
        out.contains("test_ha_guest_start_waits_until_running"),
        "{out}"
    );
    drop(h);
}

#[test]
fn script_tests_on_pve_7_2() {
    script_tests_on(PveVersion::V7_2);
}

#[test]
fn script_tests_on_pve_8_2() {
    script_tests_on(PveVersion::V8_2);
}

#[test]
fn script_tests_on_pve_9_2() {
    script_tests_on(PveVersion::V9_2);
}

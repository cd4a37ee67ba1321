//! Proxmox client and binding against the in-process lab stand-in (loopback only).

use ralf_sh::clients::proxmox::{Client, GuestRef, Options};
use ralf_sh::error::ErrorKind;
use ralf_sh::lab::proxmox::{spawn, Handle, SpawnOpts};
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn token_opts(h: &Handle) -> Options {
    Options {
        url: h.url.clone(),
        token_id: Some(h.token_id.clone()),
        token_secret: Some(h.token_secret.clone()),
        fingerprint: Some(h.fingerprint.clone()),
        poll: Some(Duration::from_millis(50)),
        ..Default::default()
    }
}

async fn guest(c: &Client, vmid: u32) -> GuestRef {
    c.find_guest(vmid).await.unwrap()
}

#[test]
fn tls_pinning_match_mismatch_missing() {
    rt().block_on(async {
        let h = spawn(SpawnOpts::fast()).await.unwrap();
        // match (also given without colons, lowercase)
        let mut o = token_opts(&h);
        o.fingerprint = Some(h.fingerprint.replace(':', "").to_lowercase());
        let c = Client::connect(o).await.unwrap();
        assert_eq!(c.version["version"], "9.2.11");
        let nodes = c.nodes().await.unwrap();
        assert_eq!(nodes[0]["ssl_fingerprint"], h.fingerprint.as_str());

        // mismatch: refused, expected and actual shown
        let mut o = token_opts(&h);
        let wrong = "AB:".repeat(31) + "AB";
        o.fingerprint = Some(wrong.clone());
        let e = Client::connect(o)
            .await
            .err()
            .expect("mismatch must be refused");
        assert_eq!(e.kind, ErrorKind::Auth, "{e}");
        assert!(
            e.message.contains(&format!("expected: {wrong}")),
            "{}",
            e.message
        );
        assert!(
            e.message.contains(&format!("actual:   {}", h.fingerprint)),
            "{}",
            e.message
        );

        // missing: the self-signed certificate is not trusted; the hint says how to pin
        let mut o = token_opts(&h);
        o.fingerprint = None;
        let e = Client::connect(o)
            .await
            .err()
            .expect("untrusted cert must be refused");
        assert_eq!(e.kind, ErrorKind::Auth, "{e}");
        assert!(e.message.contains("not trusted"), "{}", e.message);
        assert!(
            e.message
                .contains(&format!("fingerprint: \"{}\"", h.fingerprint)),
            "{}",
            e.message
        );

        // ca_file: the cluster CA vouches for the node certificate
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("pve-root-ca.pem");
        std::fs::write(&ca, &h.ca_pem).unwrap();
        let mut o = token_opts(&h);
        o.fingerprint = None;
        o.ca_file = Some(ca);
        Client::connect(o).await.expect("ca_file must be accepted");
        // ... and a CA that did not sign it is refused
        let other = dir.path().join("other.pem");
        std::fs::write(&other, &h.cert_pem).unwrap();
        let mut o = token_opts(&h);
        o.fingerprint = None;
        o.ca_file = Some(other);
        let e = Client::connect(o)
            .await
            .err()
            .expect("wrong CA must be refused");
        assert!(e.message.contains("does not vouch"), "{}", e.message);

        // insecure works (the app warns about it)
        let mut o = token_opts(&h);
        o.fingerprint = None;
        o.insecure = true;
        assert!(Client::connect(o).await.is_ok());
    });
}

#[test]
fn wrong_token_and_ticket_auth() {
    rt().block_on(async {
        let h = spawn(SpawnOpts::fast()).await.unwrap();
        let mut o = token_opts(&h);
        o.token_secret = Some("00000000-0000-0000-0000-000000000000".into());
        let e = Client::connect(o).await.err().expect("wrong token");
        assert_eq!(e.kind, ErrorKind::Auth);
        assert_eq!(e.details["status"], 401);

        // ticket login + CSRF on a write
        let o = Options {
            url: h.url.clone(),
            user: Some(h.user.clone()),
            password: Some(h.password.clone()),
            fingerprint: Some(h.fingerprint.clone()),
            poll: Some(Duration::from_millis(50)),
            ..Default::default()
        };
        let c = Client::connect(o).await.unwrap();
        let g = guest(&c, 2010).await;
        let upid = c.snapshot(&g, "by-ticket", None).await.unwrap();
        c.wait_task(&upid, Some(Duration::from_secs(30)))
            .await
            .unwrap();
        // an invalidated ticket is renewed once, transparently
        h.state.lock().revoke_tickets();
        let upid = c.delete_snapshot(&g, "by-ticket").await.unwrap();
        c.wait_task(&upid, Some(Duration::from_secs(30)))
            .await
            .unwrap();

        let o = Options {
            url: h.url.clone(),
            user: Some(h.user.clone()),
            password: Some("wrong-password".into()),
            fingerprint: Some(h.fingerprint.clone()),
            ..Default::default()
        };
        let e = Client::connect(o).await.err().expect("wrong password");
        assert_eq!(e.kind, ErrorKind::Auth);
    });
}

#[test]
fn guests_status_and_power() {
    rt().block_on(async {
        let h = spawn(SpawnOpts::fast()).await.unwrap();
        let c = Client::connect(token_opts(&h)).await.unwrap();
        let all = c.guests().await.unwrap();
        assert!(all
            .iter()
            .any(|g| g.vmid == 4013 && g.kind.as_str() == "qemu"));
        let e = c.find_guest(424242).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.message.contains("424242"));

        // start of a running container: synchronous 500 -> conflict naming the CT
        let pg = guest(&c, 2010).await;
        assert_eq!(c.status(&pg).await.unwrap()["status"], "running");
        let e = c.power(&pg, "start", &[]).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
        assert!(
            e.message.contains("CT 2010 already running"),
            "{}",
            e.message
        );

        // stop then start
        let upid = c.power(&pg, "stop", &[]).await.unwrap();
        c.wait_task(&upid, Some(Duration::from_secs(30)))
            .await
            .unwrap();
        assert_eq!(c.status(&pg).await.unwrap()["status"], "stopped");
        let upid = c.power(&pg, "start", &[]).await.unwrap();
        let st = c
            .wait_task(&upid, Some(Duration::from_secs(30)))
            .await
            .unwrap();
        assert_eq!(st.exitstatus.as_deref(), Some("OK"));
        assert_eq!(c.status(&pg).await.unwrap()["status"], "running");

        // QEMU start of a running VM fails inside the task
        let vm = guest(&c, 4013).await;
        let upid = c.power(&vm, "start", &[]).await.unwrap();
        let e = c
            .wait_task(&upid, Some(Duration::from_secs(30)))
            .await
            .unwrap_err();
        assert!(
            e.message.contains("VM 4013 already running"),
            "{}",
            e.message
        );

        // a guest addressed on the wrong node -> not_found naming the vmid
        let mut wrong = pg.clone();
        wrong.node = "pve2".into();
        let e = c.status(&wrong).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
        assert!(e.message.contains("2010"), "{}", e.message);
    });
}

#[test]
fn snapshot_change_rollback_restores() {
    rt().block_on(async {
        let h = spawn(SpawnOpts::fast()).await.unwrap();
        let c = Client::connect(token_opts(&h)).await.unwrap();
        let g = guest(&c, 2012).await;
        let before = c.config(&g).await.unwrap();
        h.state.lock().guests.get_mut(&2012).unwrap().lab_marker = "v1".into();

        let upid = c
            .snapshot(&g, "pre-install", Some("before install"))
            .await
            .unwrap();
        c.wait_task(&upid, Some(Duration::from_secs(30)))
            .await
            .unwrap();
        let snaps = c.snapshots(&g).await.unwrap();
        assert_eq!(snaps[0]["name"], "pre-install");
        assert_eq!(snaps[0]["description"], "before install");
        let cur = snaps.last().unwrap();
        assert_eq!(cur["name"], "current");
        assert_eq!(cur["description"], "You are here!");
        assert_eq!(cur["parent"], "pre-install");

        // change: config through the API, the "disk" through the control side
        c.set_config(
            &g,
            &[
                ("memory", "4096".into()),
                ("description", "broken install".into()),
            ],
        )
        .await
        .unwrap();
        h.state.lock().guests.get_mut(&2012).unwrap().lab_marker = "v2-broken".into();
        assert_eq!(c.config(&g).await.unwrap()["memory"], 4096);

        let upid = c.rollback(&g, "pre-install", false).await.unwrap();
        c.wait_task(&upid, Some(Duration::from_secs(30)))
            .await
            .unwrap();
        let after = c.config(&g).await.unwrap();
        assert_eq!(after["memory"], before["memory"]);
        assert!(after.get("description").is_none());
        assert_eq!(after["parent"], "pre-install");
        assert_eq!(h.state.lock().guests[&2012].lab_marker, "v1");
        // rollback leaves the guest stopped
        assert_eq!(c.status(&g).await.unwrap()["status"], "stopped");

        // duplicate snapshot name -> task error, conflict, log tail
        let upid = c.snapshot(&g, "pre-install", None).await.unwrap();
        let e = c
            .wait_task(&upid, Some(Duration::from_secs(30)))
            .await
            .unwrap_err();
        assert!(
            e.message
                .contains("snapshot name 'pre-install' already used"),
            "{}",
            e.message
        );

        let upid = c.delete_snapshot(&g, "pre-install").await.unwrap();
        c.wait_task(&upid, Some(Duration::from_secs(30)))
            .await
            .unwrap();
        let upid = c.delete_snapshot(&g, "pre-install").await.unwrap();
        let e = c
            .wait_task(&upid, Some(Duration::from_secs(30)))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    });
}

#[test]
fn locks_failures_names_and_deadlines() {
    rt().block_on(async {
        let h = spawn(SpawnOpts::fast()).await.unwrap();
        let c = Client::connect(token_opts(&h)).await.unwrap();
        let g = guest(&c, 10015).await;
        let upid = c.snapshot(&g, "base", None).await.unwrap();
        c.wait_task(&upid, Some(Duration::from_secs(30)))
            .await
            .unwrap();

        // rollback while locked -> locked, naming the lock
        h.state.lock().guests.get_mut(&10015).unwrap().lock = Some("backup".into());
        assert_eq!(c.status(&g).await.unwrap()["lock"], "backup");
        let upid = c.rollback(&g, "base", false).await.unwrap();
        let e = c
            .wait_task(&upid, Some(Duration::from_secs(30)))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Locked, "{e}");
        assert_eq!(e.details["lock"], "backup");
        assert!(e.message.contains("CT is locked (backup)"), "{}", e.message);
        h.state.lock().guests.get_mut(&10015).unwrap().lock = None;

        // lock held while a snapshot runs: a concurrent rollback fails with that lock
        h.state.lock().guests.get_mut(&10015).unwrap().slow_ms = 2000;
        let slow = c.snapshot(&g, "slow-one", None).await.unwrap();
        let upid = c.rollback(&g, "base", false).await.unwrap();
        let e = c
            .wait_task(&upid, Some(Duration::from_secs(30)))
            .await
            .unwrap_err();
        assert_eq!(e.details["lock"], "snapshot", "{e}");

        // waiting past a deadline -> timeout (the task keeps running)
        let e = c
            .wait_task(&slow, Some(Duration::from_millis(200)))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
        assert!(e.message.contains(&slow));
        h.state.lock().guests.get_mut(&10015).unwrap().slow_ms = 0;
        c.wait_task(&slow, Some(Duration::from_secs(30)))
            .await
            .unwrap();

        // a failing task surfaces its exit status and log tail
        h.state.lock().guests.get_mut(&10015).unwrap().fail_next =
            Some("storage 'local-lvm' is full".into());
        let upid = c.snapshot(&g, "fails", None).await.unwrap();
        let e = c
            .wait_task(&upid, Some(Duration::from_secs(30)))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::CommandFailed, "{e}");
        assert!(
            e.message.contains("failed: storage 'local-lvm' is full"),
            "{}",
            e.message
        );
        assert!(
            e.message
                .contains("TASK ERROR: storage 'local-lvm' is full"),
            "{}",
            e.message
        );
        assert!(e.message.contains("lab: injected failure"), "{}", e.message);
        assert_eq!(e.details["exitstatus"], "storage 'local-lvm' is full");

        // invalid snapshot names are caught before any request
        let before = h.state.lock().requests;
        for bad in [
            "1st",
            "a",
            "current",
            "has space",
            "dot.ted",
            &"x".repeat(41),
        ] {
            let e = c.snapshot(&g, bad, None).await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Invalid, "{bad}: {e}");
            assert!(e.message.contains("invalid snapshot name"), "{}", e.message);
        }
        assert!(c.rollback(&g, "9x", false).await.is_err());
        assert_eq!(
            h.state.lock().requests,
            before,
            "no request may be sent for a bad name"
        );

        // the server's own check: 400 with per-parameter errors
        let e = c
            .call(
                reqwest::Method::POST,
                "/nodes/pve/lxc/10015/snapshot",
                &[("snapname", "1x".into()), ("bogus", "1".into())],
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(e.details["errors"]["bogus"]
            .as_str()
            .unwrap()
            .contains("not defined in schema"));
        // unknown path -> 501
        let e = c.get("/nodes/pve/nothing-here", &[]).await.unwrap_err();
        assert_eq!(e.details["status"], 501);
        assert!(e.message.contains("not implemented"), "{}", e.message);
    });
}

#[test]
fn control_api_over_https() {
    rt().block_on(async {
        let h = spawn(SpawnOpts::fast()).await.unwrap();
        // test-only client: the lab's certificate is trusted via its PEM
        let http = ralf_sh::clients::http_builder()
            .add_root_certificate(reqwest::Certificate::from_pem(h.cert_pem.as_bytes()).unwrap())
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let r = http
            .post(format!("{}/_lab/guests/2010/marker", h.url))
            .json(&serde_json::json!({"value": "hello"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let g: serde_json::Value = http
            .get(format!("{}/_lab/guests/2010", h.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(g["lab_marker"], "hello");
        // no auth on /api2 -> 401 with an empty body
        let r = http
            .get(format!("{}/api2/json/version", h.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["server"], "pve-api-daemon/3.0");
        assert!(r.bytes().await.unwrap().is_empty());
    });
}

// The script-level tests (tests/rhai/proxmox.rhai) run on every version profile in
// tests/proxmox_versions.rs.

#[test]
fn unreachable_server_is_unavailable() {
    rt().block_on(async {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let o = Options {
            url: format!("https://127.0.0.1:{port}"),
            token_id: Some("root@pam!ralf".into()),
            token_secret: Some("11111111-2222-3333-4444-555555555555".into()),
            ..Default::default()
        };
        let e = Client::connect(o)
            .await
            .err()
            .expect("nothing listens there");
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
        assert!(e.message.contains("cannot reach"), "{}", e.message);
        // missing credentials are named before any connection
        let e = Client::connect(Options {
            url: format!("https://127.0.0.1:{port}"),
            token_id: Some("root@pam!ralf".into()),
            ..Default::default()
        })
        .await
        .err()
        .unwrap();
        assert_eq!(e.kind, ErrorKind::Auth);
        assert!(e.message.contains("token_secret_env"), "{}", e.message);
    });
}

/// Guest lookups share one listing of the cluster: many lookups (at once or one after another)
/// read `/cluster/resources` once; a vmid the listing does not hold is looked for in a new one.
#[test]
fn guest_lookups_share_one_listing_of_the_cluster() {
    rt().block_on(async {
        let h = spawn(SpawnOpts::fast()).await.unwrap();
        let c = std::sync::Arc::new(Client::connect(token_opts(&h)).await.unwrap());
        let requests = || h.state.lock().requests;
        let before = requests();
        let lookups: Vec<_> = (0..16)
            .map(|i| {
                let c = c.clone();
                let vmid = if i % 2 == 0 { 2010 } else { 4013 };
                tokio::spawn(async move { c.find_guest(vmid).await.map(|g| g.vmid) })
            })
            .collect();
        for l in lookups {
            assert!(l.await.unwrap().is_ok());
        }
        for _ in 0..20 {
            assert_eq!(guest(&c, 2010).await.node, h.node);
        }
        assert_eq!(requests() - before, 1, "36 lookups, one listing");
        // Unknown: looked for in a fresh listing each time, and still not_found.
        for _ in 0..2 {
            let e = c.find_guest(424242).await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::NotFound);
        }
        assert_eq!(requests() - before, 3);
    });
}

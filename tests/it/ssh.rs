//! SSH bindings against real sshd processes on 127.0.0.x.

use crate::common::sshd;

use ralf_sh::error::ErrorKind;
use sshd::{SshLab, TestEngine};
use std::time::{Duration, Instant};

/// Processes whose command line is exactly `argv` (joined by NUL).
fn procs_with_cmdline(argv: &[&str]) -> Vec<u32> {
    let want = argv.join("\0");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let c = String::from_utf8_lossy(&c);
            if c.trim_end_matches('\0') == want {
                out.push(pid);
            }
        }
    }
    out
}

fn wait_gone(argv: &[&str]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        if procs_with_cmdline(argv).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn run_exit_codes_stdin_quoting_files_and_reuse() {
    if !sshd::available() {
        return;
    }
    let lab = SshLab::start(1);
    let e = lab.engine();

    // run: values, exit codes, stdin, env, cwd
    let _ = e.eval_ok(
        r#"
        let h = ssh::connect("h0");
        let r = h.run("echo out; echo err >&2; exit 7");
        if r.ok || r.code != 7 || r.stdout != "out\n" || r.stderr != "err\n" { throw `bad result ${r}`; }
        if type_of(r.duration) != "f64" { throw "duration not float"; }
        let r = h.run("cat; echo \"[$A]\"; pwd", #{ stdin: "line1\nline2\n", env: #{ A: "x y'z" }, cwd: "/tmp" });
        if r.stdout != "line1\nline2\n[x y'z]\n/tmp\n" { throw `stdin/env/cwd: ${r.stdout}`; }
        let r = h.run("no-such-command-ralf");
        if r.code != 127 || !r.stderr.contains("not found") { throw `127: ${r}`; }
        "#,
    );

    // argv quoting with hostile arguments: every word arrives unchanged
    let hostile = [
        "a b",
        "it's",
        "$(echo pwned)",
        "; echo pwned",
        "`id`",
        "\"dq\"",
        "*",
        "$HOME",
        "back\\slash",
        "",
        "new\nline",
        "!bang",
    ];
    let arr = hostile
        .iter()
        .map(|s| format!("{:?}", s))
        .collect::<Vec<_>>()
        .join(", ");
    let out = e
        .eval_ok(&format!(
            r#"ssh::connect("h0").run_ok(["printf", "%s\x1f", {arr}]).stdout"#
        ))
        .into_string()
        .unwrap();
    let got: Vec<&str> = out.split('\x1f').collect();
    let mut want: Vec<&str> = hostile.to_vec();
    want.push("");
    assert_eq!(got, want);

    // run_ok raises command_failed with the code and stderr tail
    let err = e
        .eval(r#"ssh::connect("h0").run_ok("echo one >&2; echo two >&2; exit 5")"#)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::CommandFailed);
    assert_eq!(err.details["code"], 5);
    assert!(
        err.message.contains("h0") && err.message.contains("two"),
        "{}",
        err.message
    );

    // upload / download round-trip (binary), write / read, read of a missing file
    let d = lab.dir.path();
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(d.join("up.bin"), &payload).unwrap();
    let _ = e.eval_ok(&format!(
        r#"
        let h = ssh::connect("h0");
        h.upload("{d}/up.bin", "{d}/remote dir file.bin");
        h.download("{d}/remote dir file.bin", "{d}/down.bin");
        h.write("{d}/note.txt", "héllo\n'quoted' $(x)\n");
        if h.read("{d}/note.txt") != "héllo\n'quoted' $(x)\n" {{ throw "read back differs"; }}
        "#,
        d = d.display()
    ));
    assert_eq!(std::fs::read(d.join("down.bin")).unwrap(), payload);
    let err = e
        .eval(&format!(
            r#"ssh::connect("h0").read("{}/missing.txt")"#,
            d.display()
        ))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    let err = e
        .eval(&format!(
            r#"ssh::connect("h0").upload("{}/nope.bin", "/tmp/x")"#,
            d.display()
        ))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");

    // disk_free and reachable
    let free = e
        .eval_ok(r#"ssh::connect("h0").disk_free("/")"#)
        .as_int()
        .unwrap();
    assert!(free > 0);
    assert!(e
        .eval_ok(r#"ssh::connect("h0").reachable()"#)
        .as_bool()
        .unwrap());
    assert!(!e
        .eval_ok(r#"ssh::connect("dead").reachable()"#)
        .as_bool()
        .unwrap());

    // unknown alias / bad literal
    let err = e.eval(r#"ssh::connect("h0 x")"#).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    let err = e
        .eval(r#"ssh::connect("h0").run("true", #{ timout: 3 })"#)
        .unwrap_err();
    assert!(
        err.message.contains("did you mean `timeout`"),
        "{}",
        err.message
    );

    // one master for every call above
    assert_eq!(lab.logins(0), 1, "every call should reuse the one master");
}

#[test]
fn timeout_and_cancel_kill_the_remote_command() {
    if !sshd::available() {
        return;
    }
    let lab = SshLab::start(1);
    let e = lab.engine();
    let err = e
        .eval(r#"ssh::connect("h0").run("echo started; sleep 97.31; echo never", #{ timeout: 1 })"#)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert!(err.message.contains("h0"), "{}", err.message);
    assert!(
        wait_gone(&["sleep", "97.31"]),
        "remote sleep survived the timeout"
    );

    // Ctrl-C: cancel the run while a command is running
    let host = e.host.clone();
    let t = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while procs_with_cmdline(&["sleep", "98.41"]).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        host.cancel.cancel();
    });
    let err = e
        .eval(r#"ssh::connect("h0").run("sleep 98.41")"#)
        .unwrap_err();
    t.join().unwrap();
    assert_eq!(err.kind, ErrorKind::Cancelled, "{err}");
    assert!(
        wait_gone(&["sleep", "98.41"]),
        "remote sleep survived cancellation"
    );
}

#[test]
fn output_cap_and_dry_run() {
    if !sshd::available() {
        return;
    }
    let lab = SshLab::start(1);
    let mut cfg = lab.config();
    cfg.config.ssh.max_output = Some(1000);
    let e = TestEngine::new(cfg);
    let r = e.eval_ok(r#"ssh::connect("h0").run("head -c 5000 /dev/zero | tr '\\0' x")"#);
    let m = r.cast::<rhai::Map>();
    let out = m["stdout"].clone().into_string().unwrap();
    assert!(out.starts_with(&"x".repeat(1000)));
    assert!(!out.starts_with(&"x".repeat(1001)));
    assert!(
        out.contains("output truncated") && out.contains("5000"),
        "{out}"
    );
    assert!(m["truncated"].as_bool().unwrap());

    let e = TestEngine::with_opts(
        lab.config(),
        ralf_sh::host::HostOptions {
            dry_run: true,
            ..Default::default()
        },
    );
    let marker = lab.dir.path().join("dry-marker");
    let r = e.eval_ok(&format!(
        r#"let h = ssh::connect("h0"); h.write("{m}", "x"); let r = h.run("touch {m}"); [r.dry_run, h.reachable()]"#,
        m = marker.display()
    ));
    let a = r.cast::<rhai::Array>();
    assert!(a[0].as_bool().unwrap() && a[1].as_bool().unwrap());
    assert!(!marker.exists(), "dry-run executed a change");
    assert_eq!(e.host.dry_run_actions().len(), 2);
    // A command marked read_only runs under --dry-run (and is not listed); run_all honours it too.
    let r = e.eval_ok(
        r#"let h = ssh::connect("h0");
           [run::dry_run(), h.run_ok("echo $((6 * 7))", #{ read_only: true }).stdout,
            ssh::run_all(["h0"], "echo all", #{ read_only: true })["h0"].stdout,
            ssh::run_all(["h0"], "echo all")["h0"].dry_run]"#,
    );
    let a = r.cast::<rhai::Array>();
    assert!(a[0].as_bool().unwrap());
    assert_eq!(a[1].clone().into_string().unwrap(), "42\n");
    assert_eq!(a[2].clone().into_string().unwrap(), "all\n");
    assert!(a[3].as_bool().unwrap());
    assert_eq!(e.host.dry_run_actions().len(), 3);
}

#[test]
fn fan_out_and_a_host_killed_mid_run() {
    if !sshd::available() {
        return;
    }
    let mut lab = SshLab::start(4);
    let e = lab.engine();
    // fan-out over all hosts + the dead alias
    let r = e.eval_ok(r#"ssh::run_all(["h0", "h1", "h2", "h3", "dead"], ["sh", "-c", "echo $SSH_CONNECTION"], #{ parallel: 3 })"#);
    let m = r.cast::<rhai::Map>();
    for (i, h) in lab.hosts.iter().enumerate() {
        let res = m[format!("h{i}").as_str()].clone().cast::<rhai::Map>();
        assert!(res["ok"].as_bool().unwrap(), "h{i}: {res:?}");
        let out = res["stdout"].clone().into_string().unwrap();
        assert!(
            out.contains(&format!("{} {}", h.addr, h.port)),
            "h{i} answered {out}"
        );
    }
    let dead = m["dead"].clone().cast::<rhai::Map>();
    assert!(!dead["ok"].as_bool().unwrap());
    let err = dead["error"].clone().cast::<rhai::Map>();
    assert_eq!(err["kind"].clone().into_string().unwrap(), "unavailable");

    // kill h2 while a fan-out is running: the others still succeed, h2 reports unavailable
    let victim = lab.hosts[2].addr.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let r = e.eval(r#"ssh::run_all(["h0", "h1", "h2", "h3"], "sleep 2.25; echo done")"#);
        tx.send(()).ok();
        (r, e)
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while procs_with_cmdline(&["sleep", "2.25"]).len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    lab.kill(2);
    let (r, e) = t.join().unwrap();
    rx.recv().unwrap();
    let m = r
        .expect("run_all does not fail as a whole")
        .cast::<rhai::Map>();
    for i in [0, 1, 3] {
        let res = m[format!("h{i}").as_str()].clone().cast::<rhai::Map>();
        assert_eq!(
            res["stdout"].clone().into_string().unwrap(),
            "done\n",
            "h{i}"
        );
    }
    let res = m["h2"].clone().cast::<rhai::Map>();
    assert!(!res["ok"].as_bool().unwrap());
    let err = res["error"].clone().cast::<rhai::Map>();
    assert_eq!(
        err["kind"].clone().into_string().unwrap(),
        "unavailable",
        "{err:?} ({victim})"
    );
    // and the next call on the dead host fails fast with `unavailable`, not a hang
    let err = e.eval(r#"ssh::connect("h2").run("true")"#).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    // the survivors still use their first master
    assert_eq!(lab.logins(0), 1);
}

#[test]
fn host_key_mismatch_is_refused() {
    if !sshd::available() {
        return;
    }
    let mut lab = SshLab::start(1);
    // an impostor: a host whose key differs from the one recorded in known_hosts
    lab.spawn("evil", "127.0.0.30", "hostkey2");
    lab.write_known_hosts(); // records `hostkey` for evil too -> mismatch
    lab.write_config("");
    let mut cfg = lab.config();
    let e = TestEngine::new(cfg.clone());
    let err = e
        .eval(r#"ssh::connect("evil").run("echo should-not-run")"#)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
    assert!(err.message.contains("host key"), "{}", err.message);
    assert!(err.message.contains("evil"), "{}", err.message);

    // strict: an unknown host is refused too; accept_new adds it
    let kh = lab.dir.path().join("kh_empty");
    std::fs::write(&kh, "").unwrap();
    cfg.config.ssh.known_hosts_file = Some(kh.clone());
    let e = TestEngine::new(cfg.clone());
    let err = e.eval(r#"ssh::connect("h0").run("true")"#).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
    cfg.config.ssh.known_hosts = "accept_new".into();
    let e = TestEngine::new(cfg);
    let _ = e.eval_ok(r#"ssh::connect("h0").run_ok("true")"#);
    assert!(std::fs::read_to_string(&kh)
        .unwrap()
        .contains(&lab.hosts[0].addr));
}

#[test]
fn rhai_script_tests() {
    if !sshd::available() {
        return;
    }
    let lab = SshLab::start(2);
    let e = lab.engine();
    let (passed, fails) = e.run_rhai_tests(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rhai/ssh.rhai"),
    );
    assert!(fails.is_empty(), "{fails:#?}");
    assert!(passed >= 3);
}

#[test]
fn jump_host_is_used() {
    if !sshd::available() {
        return;
    }
    let lab = SshLab::start(2);
    let mut cfg = lab.config();
    let h1 = &lab.hosts[1];
    cfg.config.hosts.insert(
        "via".into(),
        ralf_sh::config::HostConfig {
            address: h1.addr.clone(),
            port: Some(h1.port),
            user: Some(lab.user.clone()),
            identity_file: Some(lab.key.clone()),
            jump: Some("h0".into()),
            ..Default::default()
        },
    );
    let e = TestEngine::new(cfg);
    let out = e
        .eval_ok(r#"ssh::connect("via").run_ok("echo $SSH_CONNECTION").stdout"#)
        .into_string()
        .unwrap();
    assert!(out.contains(&format!("{} {}", h1.addr, h1.port)), "{out}");
    // the jump host accepted exactly one login (the -W hop), the target one
    assert_eq!(lab.logins(0), 1, "jump host h0 was not used");
    assert_eq!(lab.logins(1), 1);
}

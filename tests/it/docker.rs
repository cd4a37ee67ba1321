//! Docker bindings through ssh to this machine's real Docker engine.

use crate::common::docker as dock;
use crate::common::sshd;

use ralf_sh::error::ErrorKind;
use sshd::SshLab;

#[test]
fn compose_lifecycle_health_logs_and_errors() {
    if !sshd::available() || !dock::available() {
        return;
    }
    let lab = SshLab::start(1);
    dock::ensure_image(lab.dir.path());
    let e = lab.engine();
    let tag = format!("ralfdk{}", std::process::id());
    let good = lab.dir.path().join(format!("{tag}ok"));
    let sick = lab.dir.path().join(format!("{tag}sick"));
    let bad = lab.dir.path().join(format!("{tag}bad"));
    for (d, text) in [
        (&good, dock::compose_yaml("true")),
        (&sick, dock::compose_yaml("false")),
        (&bad, "services: [\n".to_string()),
    ] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("docker-compose.yml"), text).unwrap();
    }
    let _g1 = dock::Down(good.clone());
    let _g2 = dock::Down(sick.clone());

    let _ = e.eval_ok(&format!(
        r#"
        let d = docker::on("h0");
        let v = d.ping();
        if v.server_version == () || v.host != "h0" {{ throw `ping: ${{v}}`; }}
        let app = d.compose("{good}");
        let cfg = app.config();
        if !cfg.services.contains("web") {{ throw `config: ${{cfg}}`; }}
        let ps = app.up(#{{ wait: true, timeout: 60 }});
        if ps.len() != 1 {{ throw `up returned ${{ps}}`; }}
        let c = ps[0];
        if c.service != "web" || c.state != "running" || c.health != "healthy" {{ throw `not ready: ${{c}}`; }}
        if d.health(c.name) != "healthy" {{ throw "health"; }}
        let listed = d.ps().filter(|x| x.name == c.name);
        if listed.len() != 1 || listed[0].health != "healthy" || listed[0].state != "running" {{ throw `ps: ${{listed}}`; }}
        let logs = d.logs(c.name, #{{ tail: 10 }});
        if !logs.contains("hello-from-web") || !logs.contains("err-line") {{ throw `logs: ${{logs}}`; }}
        if d.inspect(c.name).State.Running != true {{ throw "inspect"; }}
        app.restart();
        app.down();
        if app.ps().len() != 0 {{ throw "down left containers"; }}
        "#,
        good = good.display()
    ));

    // missing container -> not_found naming the host
    let err = e
        .eval(r#"docker::on("h0").health("ralf-no-such-container")"#)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(err.message.contains("h0"), "{}", err.message);
    let err = e
        .eval(r#"docker::on("h0").logs("ralf-no-such-container")"#)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");

    // daemon not running (DOCKER_HOST at a dead socket on the remote side) -> unavailable
    let err = e
        .eval(r#"docker::on(ssh::connect("h0"), #{ docker_host: "unix:///tmp/ralf-no-docker.sock" }).ps()"#)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert!(
        err.message.contains("h0") && err.message.contains("daemon"),
        "{}",
        err.message
    );

    // invalid compose file -> invalid
    let err = e
        .eval(&format!(
            r#"docker::on("h0").compose("{}").up()"#,
            bad.display()
        ))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid, "{err}");
    assert!(err.message.contains("h0"), "{}", err.message);

    // a healthcheck that fails -> unhealthy after wait
    let err = e
        .eval(&format!(
            r#"docker::on("h0").compose("{}").up(#{{ wait: true, timeout: 60 }})"#,
            sick.display()
        ))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::CommandFailed, "{err}");
    assert!(
        err.message.contains("unhealthy") && err.message.contains("h0"),
        "{}",
        err.message
    );
    let _ = e.eval_ok(&format!(
        r#"docker::on("h0").compose("{}").down()"#,
        sick.display()
    ));
}

#[test]
fn rhai_script_tests() {
    if !sshd::available() || !dock::available() {
        return;
    }
    let lab = SshLab::start(1);
    dock::ensure_image(lab.dir.path());
    let e = lab.engine();
    let (passed, fails) = e.run_rhai_tests(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rhai/docker.rhai"),
    );
    assert!(fails.is_empty(), "{fails:#?}");
    assert!(passed >= 2);
}

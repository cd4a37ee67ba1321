//! What `-e`, `print` and a script's result look like: handles by their text (never a Rust type
//! path), maps as lines, lists of maps as tables, and `--output json` that parses.

use crate::common;
use crate::common::deploy as deploy_h;

use common::run;
use deploy_h::*;

#[test]
fn eval_shows_handles_maps_and_tables_and_json_parses() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    let eval = |json: bool, expr: &str| {
        let mut c = lab.cmd(home.path());
        if json {
            c.args(["--output", "json"]);
        }
        c.args(["-e", expr]);
        let (code, out, err) = run(c);
        assert_eq!(code, 0, "{expr}: {out}\n{err}");
        out
    };
    let cases = [
        ("proxmox::connect().guest(2010)", "CT 2010 (postgresql) on pve"),
        ("catalog::load().get(\"redis\")", "Service(redis P0 core)"),
        (
            "let g = proxmox::connect().guest(2010); [#{ guest: g, n: 1 }, #{ guest: g, n: 2, note: () }]",
            "guest                        n\nCT 2010 (postgresql) on pve  1\nCT 2010 (postgresql) on pve  2",
        ),
    ];
    for (expr, want) in cases {
        let out = eval(false, expr);
        assert_eq!(out.trim_end(), want, "{expr}");
        assert!(!out.contains("ralf_sh::"), "{expr}: {out}");
        let j: serde_json::Value = serde_json::from_str(&eval(true, expr)).unwrap();
        assert!(!j.to_string().contains("ralf_sh::"), "{expr}: {j}");
    }
    let j: serde_json::Value =
        serde_json::from_str(&eval(true, "#{ a: 1, b: (), c: [1.5, true, \"x\"] }")).unwrap();
    assert_eq!(
        j,
        serde_json::json!({"a": 1, "b": null, "c": [1.5, true, "x"]})
    );
    // A map: one line a field, unit fields hidden, snapshot times as RFC 3339.
    let out = eval(false, "proxmox::connect().guest(2010).snapshots()[0]");
    assert!(out.contains("name: current"), "{out}");
    assert!(!out.contains("()"), "{out}");
}

#[test]
fn a_script_result_through_exit_code_value() {
    let home = tempfile::tempdir().unwrap();
    let f = home.path().join("report.rhai");
    std::fs::write(
        &f,
        "let rows = [#{ service: \"redis\", status: \"deployed\" }, #{ service: \"n8n\", status: \"failed\" }];\nexit(3, #{ failed: 1, services: rows });\n",
    )
    .unwrap();
    let mut c = common::cmd(home.path());
    c.arg(&f);
    let (code, out, err) = run(c);
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        out,
        "failed: 1\nservices:\n  service  status\n  redis    deployed\n  n8n      failed\n"
    );
    let mut c = common::cmd(home.path());
    c.args(["--output", "json"]).arg(&f);
    let (code, out, _) = run(c);
    assert_eq!(code, 3);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["services"][1]["status"], "failed");
    // A script's final value is its result only with --output json.
    let g = home.path().join("value.rhai");
    std::fs::write(&g, "#{ ok: true }").unwrap();
    let mut c = common::cmd(home.path());
    c.arg(&g);
    assert_eq!(run(c).1, "");
    let mut c = common::cmd(home.path());
    c.args(["--output", "json"]).arg(&g);
    assert_eq!(run(c).1.trim(), r#"{"ok":true}"#);
}

/// Ctrl-C while waiting stops the waiting, not the task: the message names the task still
/// running on Semaphore, its URL and how to stop it.
#[test]
fn ctrl_c_during_a_wait_names_the_task_still_running() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    let mut c = lab.cmd(home.path());
    // The script says when the task is started and the wait begins (a signal from then on
    // cancels the wait, however far it got).
    c.args([
        "-e",
        r#"let t = semaphore::connect().run("Lab Hang"); print("waiting"); t.wait()"#,
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    common::wait_for_line(&mut child, "waiting");
    wait_for(
        || lab.tasks()[0]["status"] == "running",
        "the task running on the stand-in",
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let err = String::from_utf8_lossy(&out.stderr);
    let id = lab.tasks()[0]["id"].as_i64().unwrap();
    assert!(
        err.contains(&format!(
            "task {id} of `Lab Hang` is still running on Semaphore"
        )) && err.contains(&format!("semaphore::connect().task({id}).stop()"))
            && err.contains("/history?t="),
        "{err}"
    );
    assert_eq!(
        lab.tasks()[0]["status"],
        "running",
        "the task was left alone"
    );
}

/// An uncaught error whose text came from elsewhere (a server's error body, a template name) never
/// reaches the terminal with its control sequences: they are shown as text.
#[test]
fn an_error_report_shows_control_sequences_as_text() {
    let home = tempfile::tempdir().unwrap();
    let mut c = common::cmd(home.path());
    c.args([
        "-e",
        r#"throw error::make("not_found", "template `x\x1b]0;owned\x07\x1b[2Jy` not found")"#,
    ]);
    let (code, _, err) = run(c);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    assert!(err.contains(r"x\x1b]0;owned\x07\x1b[2Jy"), "{err}");
}

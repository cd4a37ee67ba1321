//! Structured logs: fields as top-level JSON keys, built-in events with ids as keys, an uncaught
//! error as one JSON line, colour only on a terminal without NO_COLOR, timestamps off a terminal.

use crate::common;

use common::{cmd, run};
use rexpect::session::spawn_command;
use serde_json::Value;

fn json_lines(err: &str) -> Vec<Value> {
    err.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn script_log_fields_are_top_level_keys() {
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    c.args([
        "--log-format",
        "json",
        "-e",
        r#"log::info("restarting", #{ service: "redis", attempt: 2, message: "not this", level: "nor this" }); 1"#,
    ]);
    let (code, _, err) = run(c);
    assert_eq!(code, 0, "{err}");
    let l = &json_lines(&err)[0];
    assert_eq!(l["message"], "restarting", "{l}");
    assert_eq!(l["service"], "redis", "{l}");
    assert_eq!(l["attempt"], 2, "{l}");
    assert_eq!(l["level"], "info", "reserved keys are kept: {l}");
    // Human: key=value after the message, with an RFC 3339 time (stderr is not a terminal).
    let mut c = cmd(home.path());
    c.args(["-e", r#"log::warn("restarting", #{ service: "redis" }); 1"#]);
    let (_, _, err) = run(c);
    let line = err.lines().find(|l| l.contains("restarting")).unwrap();
    assert!(line.ends_with("restarting service=redis"), "{line}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(line.split_whitespace().next().unwrap()).is_ok(),
        "{line}"
    );
    let mut c = cmd(home.path());
    c.args(["--log-time", "never", "-e", r#"log::warn("x"); 1"#]);
    let (_, _, err) = run(c);
    assert!(err.trim_start().starts_with("WARN"), "{err}");
}

#[test]
fn an_uncaught_error_is_one_json_line_with_kind_place_and_chain() {
    let home = tempfile::tempdir().unwrap();
    let f = home.path().join("fails.rhai");
    std::fs::write(
        &f,
        "fn inner() { throw error::make(\"timeout\", \"took too long\"); }\nfn outer() { inner(); }\nouter();\n",
    )
    .unwrap();
    let mut c = cmd(home.path());
    c.args(["--log-format", "json"]).arg(&f);
    let (code, _, err) = run(c);
    assert_eq!(code, 1, "{err}");
    let lines = json_lines(&err);
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert_eq!(err.trim().lines().count(), 1, "nothing else: {err}");
    let l = &lines[0];
    assert_eq!(l["kind"], "timeout", "{l}");
    assert_eq!(l["level"], "error", "{l}");
    assert_eq!(l["line"], 1, "{l}");
    assert!(l["file"].as_str().unwrap().ends_with("fails.rhai"), "{l}");
    assert!(
        l["message"].as_str().unwrap().contains("took too long"),
        "{l}"
    );
    let chain = l["chain"].as_array().unwrap();
    assert_eq!(chain.len(), 2, "{l}");
    assert!(chain[0].as_str().unwrap().contains("`inner`"), "{l}");
}

#[test]
fn a_lab_deploy_can_be_filtered_by_service_and_task_id() {
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    c.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "--log-format",
        "json",
        "lab",
        "scripts/deploy_all.rhai",
    ]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    let lines = json_lines(&err);
    let pg: Vec<&Value> = lines
        .iter()
        .filter(|l| l["service"] == "postgresql")
        .collect();
    let started = pg
        .iter()
        .find(|l| l["step"] == "postgresql/apply" && l["task_id"].is_i64())
        .unwrap_or_else(|| panic!("no task line for postgresql: {pg:#?}"));
    let id = &started["task_id"];
    let finished: Vec<_> = lines
        .iter()
        .filter(|l| &l["task_id"] == id && l["status"] == "success")
        .collect();
    assert_eq!(finished.len(), 1, "{lines:#?}");
    assert!(finished[0]["duration"].as_f64().unwrap() > 0.0);
    assert_eq!(finished[0]["template"], "RALF Postgresql Apply");
    // The pre-install snapshot: a Proxmox task with its UPID, in postgresql's snapshot step.
    assert!(
        pg.iter().any(|l| l["step"] == "postgresql/snapshot"
            && l["upid"].as_str().is_some_and(|u| u.starts_with("UPID:"))
            && l["status"] == "OK"),
        "{pg:#?}"
    );
}

#[test]
fn no_color_and_colour_on_a_terminal() {
    for (no_color, want_escape) in [(Some("1"), false), (None, true)] {
        let home = tempfile::tempdir().unwrap();
        let mut c = cmd(home.path());
        c.env_remove("NO_COLOR")
            .env("TERM", "xterm")
            .args(["-e", r#"log::warn("colour check"); 1"#]);
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        let mut p = spawn_command(c, Some(20_000)).expect("spawn");
        let all = p.exp_eof().expect("output");
        assert!(all.contains("colour check"), "{all:?}");
        assert_eq!(
            all.contains('\u{1b}'),
            want_escape,
            "NO_COLOR={no_color:?}: {all:?}"
        );
    }
}

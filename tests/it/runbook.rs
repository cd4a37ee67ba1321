//! The Semaphore-first runbook (`scripts/runbook.rhai` on `ralf/runbook`) in the lab: the Phase1
//! prerequisite, patterns A and B, cleanroom checks, and the triage of each failure domain in the
//! runbook's order with its next step.

use crate::common;
use crate::common::deploy as deploy_h;

use common::run;
use deploy_h::*;

/// `ralf-sh lab --scenario S --state DB scripts/runbook.rhai ARGS`: (exit code, stdout, stderr).
fn runbook(home: &std::path::Path, scenario: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut c = cmd_in_repo(home);
    c.arg("lab");
    if let Some(s) = scenario {
        c.args(["--scenario", s]);
    }
    c.arg("--state")
        .arg(home.join("state.db"))
        .arg(script("runbook.rhai"))
        .args(args);
    run(c)
}

/// The triage lines (`ok   NAME: detail` / `FAIL NAME: detail`) in the order printed.
fn triage_lines(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("  ok   ") || l.starts_with("  FAIL "))
        .map(|l| l.trim().to_string())
        .collect()
}

fn position(lines: &[String], needle: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no triage line with {needle:?}: {lines:#?}"))
}

/// The journal keeps the triage as a step of its own, with the domain and the next step.
fn journaled_triage(home: &std::path::Path) -> serde_json::Value {
    let steps = steps(&home.join("state.db"));
    let t = steps
        .iter()
        .find(|s| s.2 == "runbook/triage")
        .unwrap_or_else(|| panic!("no triage step: {steps:?}"));
    serde_json::from_str(t.4.as_deref().unwrap_or("null")).unwrap()
}

#[test]
fn tofu_failure_checks_the_state_backend_then_the_proxmox_api() {
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = runbook(home.path(), Some("tofu-fails"), &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("Runbook stopped at \"Vault apply\" (tofu failure)"),
        "{out}"
    );
    let t = triage_lines(&out);
    let state = position(&t, "state backend (minio)");
    assert!(t[state].starts_with("FAIL"), "{t:?}");
    assert!(
        position(&t, "Proxmox API") > state,
        "the state backend first: {t:?}"
    );
    assert!(t[position(&t, "Proxmox API")].starts_with("ok"), "{t:?}");
    assert!(
        out.contains("│ Error: Failed to get existing workspaces"),
        "the evidence: {out}"
    );
    assert!(
        out.contains("Next step: Repair the first failing check (MinIO holds the OpenTofu state")
            && out.contains("--group Vault"),
        "{out}"
    );
    assert!(!out.contains("[3/9]"), "stops at the first failure: {out}");
    let j = journaled_triage(home.path());
    assert_eq!(j["domain"], "tofu", "{j}");
    assert!(j["next"].as_str().unwrap().contains("MinIO"), "{j}");
}

#[test]
fn ansible_failure_names_the_affected_stack_and_its_single_service_template() {
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = runbook(home.path(), Some("ansible-fails"), &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("Runbook stopped at \"Automation apply\" (ansible failure)"),
        "{out}"
    );
    let t = triage_lines(&out);
    assert!(
        t[position(&t, "affected hosts")].ends_with("affected hosts: n8n"),
        "{t:?}"
    );
    assert!(
        position(&t, "n8n: CT 4012") > position(&t, "affected hosts"),
        "{t:?}"
    );
    // gitea's recap line (failed=0) is not evidence; n8n's is.
    assert!(!out.contains("    gitea "), "{out}");
    assert!(out.contains("fatal: [n8n]"), "{out}");
    assert!(
        out.contains("Next step: Repeat the affected stack through its single-service template: ralf-sh scripts/runbook.rhai --service n8n"),
        "{out}"
    );
    assert_eq!(journaled_triage(home.path())["domain"], "ansible");
}

#[test]
fn smoke_failure_checks_the_ct_then_tls_then_the_app_port() {
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = runbook(home.path(), Some("smoke-fails"), &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("Runbook stopped at \"Vault smoke\" (smoke failure)"),
        "{out}"
    );
    let t = triage_lines(&out);
    // The smoke output names vaultwarden: only its checks, in the runbook's order.
    let ct = position(&t, "vaultwarden: CT 2020");
    let tls = position(
        &t,
        "vaultwarden: TLS endpoint https://vault.example.net/alive",
    );
    assert!(ct < tls, "{t:?}");
    assert!(
        t[ct].starts_with("ok") && t[tls].starts_with("FAIL"),
        "{t:?}"
    );
    assert!(
        !t.iter().any(|l| l.contains("openbao")),
        "openbao passed its smoke: {t:?}"
    );
    assert!(out.contains("Next step: Repair the first failing check (service in the CT, then Nginx/TLS, then the app port), then run \"RALF Vault Smoke\" again"), "{out}");
    assert_eq!(journaled_triage(home.path())["domain"], "smoke");
}

#[test]
fn semaphore_failure_checks_semaphore_and_rolls_out_its_config_again() {
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = runbook(home.path(), Some("semaphore-down"), &["--group", "ai"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("Runbook stopped at \"Phase1 smoke\" (semaphore failure)"),
        "{out}"
    );
    let t = triage_lines(&out);
    assert!(
        t[position(&t, "Semaphore API")].starts_with("FAIL"),
        "{t:?}"
    );
    assert!(
        t[position(&t, "semaphore: CT 10015")].starts_with("ok"),
        "{t:?}"
    );
    assert!(
        out.contains("Next step: Roll out 041-semaphore-config again"),
        "{out}"
    );
    assert_eq!(journaled_triage(home.path())["domain"], "semaphore");
}

/// The prerequisite: a failing Phase1 smoke stops the run before any group is applied.
#[test]
fn a_failing_phase1_smoke_stops_the_run_before_any_apply() {
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = runbook(home.path(), Some("phase1-fails"), &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("[1/9] Phase1 smoke: RALF Phase1 Smoke"),
        "{out}"
    );
    assert!(!out.contains("[2/9]"), "{out}");
    assert!(
        out.contains("Next step: The shared base fails its smoke: repair it with pattern B first"),
        "{out}"
    );
    let applied: Vec<_> = steps(&home.path().join("state.db"))
        .into_iter()
        .filter(|s| s.2.ends_with(" apply"))
        .collect();
    assert!(applied.is_empty(), "{applied:?}");
}

/// The templates a run started, in order.
fn templates_run(lab: &Served) -> Vec<String> {
    lab.tasks()
        .iter()
        .map(|t| t["template_name"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Pattern A (one service) and pattern B (the shared base) run the runbook's templates in the
/// runbook's order, as the Semaphore stand-in saw them.
#[test]
fn patterns_a_and_b_run_the_right_templates_in_order() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    let mut c = lab.cmd(home.path());
    c.arg(script("runbook.rhai")).args(["--service", "n8n"]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        templates_run(&lab),
        [
            "RALF Phase1 Smoke",
            "RALF N8n Apply",
            "RALF Automation Smoke"
        ]
    );
    // The single-service apply carries the service's catalog variables.
    let apply = &lab.tasks()[1];
    assert!(
        apply["environment"]
            .as_str()
            .unwrap_or("")
            .contains("N8N_CONCURRENCY_PRODUCTION_LIMIT"),
        "{apply}"
    );

    let mut c = lab.cmd(home.path());
    c.arg(script("runbook.rhai")).args(["--base"]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        templates_run(&lab)[3..],
        [
            "RALF Phase1 Config Apply",
            "RALF Phase1 Smoke",
            "RALF Vault Smoke",
            "RALF Automation Smoke",
            "RALF Communication Smoke",
            "RALF AI Smoke",
        ]
    );
    assert!(!templates_run(&lab)[3..]
        .iter()
        .any(|t| t.ends_with("Group Apply")));

    // --from: this group and the ones after it; --cleanroom checks each finished group.
    let mut c = lab.cmd(home.path());
    c.arg(script("runbook.rhai"))
        .args(["--from", "communication", "--cleanroom"]);
    let (code, out, _) = run(c);
    // The lab's exo CT (4013) is stopped: the AI cleanroom finds it.
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        templates_run(&lab)[9..],
        [
            "RALF Phase1 Smoke",
            "RALF Communication Apply",
            "RALF Communication Smoke",
            "RALF AI Apply",
            "RALF AI Smoke",
        ],
        "{out}"
    );
    assert!(
        out.contains("Communication cleanroom: checks from the control machine\n    ok"),
        "{out}"
    );
    assert!(
        out.contains("Runbook stopped at \"AI cleanroom\" (smoke failure)"),
        "{out}"
    );
    assert!(out.contains("FAIL exo: CT 4013: is stopped"), "{out}");
}

#[test]
fn unknown_groups_are_usage_errors() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    let mut c = lab.cmd(home.path());
    c.arg(script("runbook.rhai")).args(["--group", "vualt"]);
    let (code, out, err) = run(c);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("unknown group vualt; groups: Vault, Automation, Communication, AI"),
        "{err}"
    );
    assert!(lab.tasks().is_empty());
}

//! Retry with adjustments, never by the LLM alone (`ralf/heal` in `ralf/deploy`): a failed
//! service whose catalog entry has `self_heal` gets one typed proposal from the advisor, checked
//! against the allow-list and carried out at most once; anything else is reported, not done.

use crate::common;
use crate::common::deploy as deploy_h;

use common::run;
use deploy_h::*;

const KEY: &str = "N8N_CONCURRENCY_PRODUCTION_LIMIT";

/// The lab with n8n's apply failing until `KEY` is 20, and the advisor proposing `proposal`.
fn lab_with(home: &std::path::Path, proposal: serde_json::Value) -> Served {
    let lab = Served::start(home);
    lab.post(
        &format!(
            "{}/_lab/templates/RALF N8n Apply/behaviour",
            lab.url("semaphore")
        ),
        serde_json::json!({"duration_ms": 40, "lines": 2, "require_env": {KEY: "20"}}),
    );
    lab.post(
        &format!("{}/_lab/script", lab.url("exo")),
        serde_json::json!({"rules": [{"match": "Variables a retry may change", "reply": proposal.to_string()}]}),
    );
    lab
}

fn n8n_applies(lab: &Served) -> Vec<String> {
    lab.tasks()
        .iter()
        .filter(|t| t["template_name"] == "RALF N8n Apply")
        .map(|t| t["environment"].as_str().unwrap_or("").to_string())
        .collect()
}

fn step_keys(db: &TestState, prefix: &str) -> Vec<(String, String)> {
    steps(db)
        .into_iter()
        .filter(|s| s.2.starts_with(prefix))
        .map(|s| (s.2, s.3))
        .collect()
}

fn deploy_all(lab: &Served, home: &std::path::Path) -> (i32, String, String) {
    let mut c = lab.cmd(home);
    c.arg(script("deploy_all.rhai"));
    run(c)
}

#[test]
fn an_allowed_adjustment_is_retried_once_and_the_service_deploys() {
    let home = tempfile::tempdir().unwrap();
    let lab = lab_with(
        home.path(),
        serde_json::json!({"action": "retry", "env": {KEY: "20"}, "reason": "the log says the limit must be 20"}),
    );
    let (code, out, err) = deploy_all(&lab, home.path());
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(statuses(&lab.state)["n8n"], "deployed");
    let applies = n8n_applies(&lab);
    assert_eq!(
        applies.len(),
        2,
        "one failed apply, one adjusted retry: {applies:?}"
    );
    assert!(
        applies[0].contains(&format!("\"{KEY}\":\"10\"")),
        "{applies:?}"
    );
    assert!(
        applies[1].contains(&format!("\"{KEY}\":\"20\"")),
        "{applies:?}"
    );
    let keys = step_keys(&lab.state, "n8n/");
    for k in [
        "n8n/propose_fix",
        "n8n/retry/apply",
        "n8n/retry/smoke",
        "n8n/mark",
    ] {
        assert!(
            keys.contains(&(k.to_string(), "done".to_string())),
            "{k}: {keys:?}"
        );
    }
    assert!(!keys.iter().any(|k| k.0 == "n8n/rollback"), "{keys:?}");
    assert!(
        err.contains(
            "carrying out the advisor's fix once: retry with N8N_CONCURRENCY_PRODUCTION_LIMIT=20"
        ),
        "{err}"
    );
    // The advisor saw the allow-list (key names) and the log's failure line.
    let asked = deploy_h::reqwest::blocking_get(&format!("{}/_lab/requests", lab.url("exo")));
    assert!(
        asked.contains("Variables a retry may change: N8N_CONCURRENCY_PRODUCTION_LIMIT"),
        "{asked}"
    );
    assert!(asked.contains("must be 20"), "{asked}");
}

#[test]
fn a_proposal_outside_the_allow_list_is_refused_and_reported() {
    let home = tempfile::tempdir().unwrap();
    let lab = lab_with(
        home.path(),
        serde_json::json!({"action": "retry", "env": {"N8N_PORT": "5679", KEY: "20"}, "reason": "move the port"}),
    );
    let (code, out, err) = deploy_all(&lab, home.path());
    assert_eq!(code, 3, "{out}\n{err}");
    assert_eq!(statuses(&lab.state)["n8n"], "failed");
    assert_eq!(n8n_applies(&lab).len(), 1, "nothing retried");
    assert!(
        err.contains("fix proposal \"retry\" not carried out: the retry would change N8N_PORT, which the catalog does not allow (allowed: N8N_CONCURRENCY_PRODUCTION_LIMIT)"),
        "{err}"
    );
    let keys = step_keys(&lab.state, "n8n/");
    assert!(
        keys.contains(&("n8n/propose_fix".into(), "done".into())),
        "{keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.0.starts_with("n8n/retry")),
        "{keys:?}"
    );
    // The verdict is journaled with the proposal.
    let p = steps(&lab.state)
        .into_iter()
        .find(|s| s.2 == "n8n/propose_fix")
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(p.4.as_deref().unwrap()).unwrap();
    assert_eq!(v["verdict"]["ok"], false, "{v}");
    assert_eq!(v["env"]["N8N_PORT"], "5679", "{v}");
}

#[test]
fn an_allowed_retry_that_fails_again_is_not_tried_a_second_time() {
    let home = tempfile::tempdir().unwrap();
    let lab = lab_with(
        home.path(),
        serde_json::json!({"action": "retry", "env": {KEY: "30"}, "reason": "more headroom"}),
    );
    let (code, out, err) = deploy_all(&lab, home.path());
    assert_eq!(code, 3, "{out}\n{err}");
    assert_eq!(statuses(&lab.state)["n8n"], "failed");
    assert_eq!(
        n8n_applies(&lab).len(),
        2,
        "the first apply and one retry, no more"
    );
    assert!(err.contains("did not help"), "{err}");
    // The proposal stands in for the prose hint: it is not asked for as well.
    let keys = step_keys(&lab.state, "n8n/");
    assert!(!keys.iter().any(|k| k.0 == "n8n/suggest_fix"), "{keys:?}");
}

#[test]
fn services_without_self_heal_get_no_proposal() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    lab.post(
        &format!(
            "{}/_lab/templates/RALF Netbox Apply/behaviour",
            lab.url("semaphore")
        ),
        serde_json::json!({"duration_ms": 40, "lines": 2, "outcome": "error"}),
    );
    let (code, out, err) = deploy_all(&lab, home.path());
    assert_eq!(code, 3, "{out}\n{err}");
    let keys = step_keys(&lab.state, "netbox/");
    assert!(keys.iter().any(|k| k.0 == "netbox/suggest_fix"), "{keys:?}");
    assert!(
        !keys.iter().any(|k| k.0 == "netbox/propose_fix"),
        "{keys:?}"
    );
    let asked = deploy_h::reqwest::blocking_get(&format!("{}/_lab/requests", lab.url("exo")));
    assert!(!asked.contains("Variables a retry may change"), "{asked}");
}

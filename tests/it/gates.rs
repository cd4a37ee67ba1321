//! Approval gates (`gate()`) against the lab's chat stand-ins, through the binary: per channel an
//! ignored wrong approver and replayed nonce, then the approver's answer; deny; timeout → denied;
//! two gates at once; kill -9 while a gate waits, an answer meanwhile, then resume.

use crate::common;
use crate::common::deploy as deploy_h;

use deploy_h::*;
use serde_json::Value;
use std::process::{Child, Stdio};

/// Start `code` as a script against the lab (stdout piped).
fn spawn(lab: &Served, home: &std::path::Path, name: &str, code: &str) -> Child {
    let f = home.join(name);
    std::fs::write(&f, code).unwrap();
    let mut c = lab.cmd(home);
    c.arg(&f).stdout(Stdio::piped()).stderr(Stdio::piped());
    c.spawn().unwrap()
}

fn finish(child: Child) -> (i32, String, String) {
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn notifications(lab: &Served) -> Vec<Value> {
    serde_json::from_str(&reqwest::blocking_get(&format!(
        "{}/_lab/notifications",
        lab.url("notify")
    )))
    .unwrap()
}

/// The gate ids asked on `via` so far, in order.
fn asked(lab: &Served, via: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for n in notifications(lab) {
        let text = match via {
            "telegram" if n["kind"] == "telegram" => {
                n["body"]["text"].as_str().unwrap_or("").to_string()
            }
            "matrix" if n["kind"] == "matrix" => n["body"]["content"]["body"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            "ntfy" if n["kind"] == "ntfy" && n["body"]["actions"].is_array() => {
                n["body"]["message"].as_str().unwrap_or("").to_string()
            }
            _ => continue,
        };
        if let Some(rest) = text.strip_prefix("Approval needed [gate ") {
            ids.push(rest[..8].to_string());
        }
    }
    ids
}

fn wait_for_question(lab: &Served, via: &str, n: usize) -> Vec<String> {
    wait_for(
        || asked(lab, via).len() >= n,
        &format!("{n} question(s) on {via}"),
    );
    asked(lab, via)
}

fn answer(lab: &Served, gate: &str, body: Value) {
    lab.post(
        &format!("{}/_lab/gates/{gate}/answer", lab.url("notify")),
        body,
    );
}

/// The gate events of the journal.
fn gate_events(s: &TestState) -> Vec<Value> {
    dump(s)
        .events
        .into_iter()
        .filter(|e| e.kind == "gate")
        .map(|e| e.data)
        .collect()
}

fn result_line(out: &str) -> Value {
    let l = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no result in {out}"));
    serde_json::from_str(l).unwrap()
}

const GATE: &str = r#"let g = gate("Apply the production plan?", #{ timeout: "30s", via: [VIA] });
print(json::stringify(g));
"#;

fn channel_round(via: &str, replay_nonce: &str) {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    let child = spawn(
        &lab,
        home.path(),
        "g.rhai",
        &GATE.replace("VIA", &format!("{via:?}")),
    );
    let id = wait_for_question(&lab, via, 1)[0].clone();
    // Not an approver, then a replayed (wrong) nonce, then the approver.
    answer(
        &lab,
        &id,
        serde_json::json!({"approve": true, "user": "mallory", "via": via}),
    );
    answer(
        &lab,
        &id,
        serde_json::json!({"approve": true, "user": "admin", "via": via, "nonce": replay_nonce}),
    );
    // The run has seen and refused both before the approver answers (Matrix never relays the
    // replayed reaction: only mallory's is refused there).
    let refusals = if via == "matrix" { 1 } else { 2 };
    wait_for(
        || {
            gate_events(&lab.state)
                .iter()
                .filter(|e| e["event"] == "answer" && e["accepted"] == false)
                .count()
                >= refusals
        },
        "the refused answers in the journal",
    );
    answer(
        &lab,
        &id,
        serde_json::json!({"approve": true, "user": "admin", "via": via}),
    );
    let (code, out, err) = finish(child);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = result_line(&out);
    assert_eq!(r["approved"], true, "{r}");
    assert_eq!(r["via"], via, "{r}");
    assert!(r["by"].as_str().unwrap().contains("admin"), "{r}");
    let ev = gate_events(&lab.state);
    let answers: Vec<&Value> = ev.iter().filter(|e| e["event"] == "answer").collect();
    assert!(
        answers.iter().any(|a| a["accepted"] == false
            && a["why"].as_str().unwrap().contains("mallory")
            && a["why"].as_str().unwrap().contains("not an approver")),
        "{ev:#?}"
    );
    if via != "matrix" {
        // Matrix: a reaction to another event never reaches this gate's relations at all.
        assert!(
            answers
                .iter()
                .any(|a| a["accepted"] == false && a["why"].as_str().unwrap().contains("nonce")),
            "{ev:#?}"
        );
    }
    assert_eq!(
        answers.iter().filter(|a| a["accepted"] == true).count(),
        1,
        "{ev:#?}"
    );
    let outcome = ev.iter().find(|e| e["event"] == "outcome").unwrap();
    assert_eq!(outcome["approved"], true);
    assert_eq!(ev[0]["event"], "asked");
    assert_eq!(ev[0]["question"], "Apply the production plan?");
    // The outcome is shown where the question was asked; the token is nowhere.
    let all = serde_json::to_string(&notifications(&lab)).unwrap();
    assert!(
        all.contains(&format!("[gate {id}]")) && all.contains("approved by"),
        "{all}"
    );
    let token = lab.info["notify"]["token"].as_str().unwrap();
    assert!(!out.contains(token) && !err.contains(token));
    assert!(!lab.state.contents().contains(token));
    if via == "telegram" {
        let n = notifications(&lab);
        assert!(
            n.iter().any(|x| x["kind"] == "telegram_callback_answer"
                && x["body"]["text"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("Not counted")),
            "each press is answered"
        );
        let q = n
            .iter()
            .find(|x| {
                x["kind"] == "telegram" && x["body"]["text"].as_str().unwrap_or("").contains(&id)
            })
            .unwrap();
        assert!(
            q["body"].get("reply_markup").is_none(),
            "the keyboard is gone after the outcome: {q}"
        );
        assert!(
            q["body"]["text"]
                .as_str()
                .unwrap()
                .contains("✅ approved by telegram:@admin"),
            "{q}"
        );
    }
}

#[test]
fn telegram_ignores_a_stranger_and_a_replayed_nonce_then_takes_the_approver() {
    channel_round("telegram", "0000000000000000");
}

#[test]
fn matrix_ignores_a_stranger_and_a_reaction_elsewhere_then_takes_the_approver() {
    channel_round("matrix", "$some-older-question:lab");
}

#[test]
fn ntfy_ignores_a_stranger_and_a_replayed_nonce_then_takes_the_approver() {
    channel_round("ntfy", "0000000000000000");
}

#[test]
fn deny_and_timeout_both_deny() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    let child = spawn(
        &lab,
        home.path(),
        "d.rhai",
        &GATE.replace("VIA", "\"matrix\""),
    );
    let id = wait_for_question(&lab, "matrix", 1)[0].clone();
    answer(
        &lab,
        &id,
        serde_json::json!({"approve": false, "user": "admin", "via": "matrix"}),
    );
    let (code, out, err) = finish(child);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = result_line(&out);
    assert_eq!(
        (r["approved"].as_bool(), r["by"].as_str()),
        (Some(false), Some("matrix:@admin:lab")),
        "{r}"
    );

    // `--yes` answers confirm(), never a gate.
    std::fs::write(home.path().join("t.rhai"), "let g = gate(\"Rotate the keys?\", #{ timeout: 1, via: [\"ntfy\"] });\nprint(json::stringify(g));\n").unwrap();
    let mut c = lab.cmd(home.path());
    c.arg("--yes").arg(home.path().join("t.rhai"));
    let (code, out, err) = common::run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = result_line(&out);
    assert_eq!(r["approved"], false, "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("no answer within 1s (default: deny)"),
        "{r}"
    );
    assert_eq!(r["by"], Value::Null);
}

/// Two gates wait at the same time on the same bot: each gets its own answer.
#[test]
fn two_gates_pending_at_once_each_get_their_own_answer() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    let child = spawn(
        &lab,
        home.path(),
        "two.rhai",
        r#"
let out = parallel(["Deploy staging?", "Deploy production?"], 2, |q| gate(q, #{ timeout: "30s", via: ["telegram"] }));
for o in out { print(json::stringify(#{ q: o.value.reason, approved: o.value.approved, gate: o.value.gate })); }
"#,
    );
    let ids = wait_for_question(&lab, "telegram", 2);
    let text_of = |id: &str| {
        notifications(&lab)
            .into_iter()
            .find(|n| {
                n["kind"] == "telegram" && n["body"]["text"].as_str().unwrap_or("").contains(id)
            })
            .unwrap()["body"]["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (staging, production) = if text_of(&ids[0]).contains("staging") {
        (ids[0].clone(), ids[1].clone())
    } else {
        (ids[1].clone(), ids[0].clone())
    };
    // Both answers land in the same getUpdates stream.
    answer(
        &lab,
        &production,
        serde_json::json!({"approve": false, "user": "admin"}),
    );
    answer(
        &lab,
        &staging,
        serde_json::json!({"approve": true, "user": "admin"}),
    );
    let (code, out, err) = finish(child);
    assert_eq!(code, 0, "{out}\n{err}");
    let lines: Vec<Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_gate = |g: &str| lines.iter().find(|l| l["gate"] == g).unwrap()["approved"].clone();
    assert_eq!(by_gate(&staging), true, "{out}");
    assert_eq!(by_gate(&production), false, "{out}");
}

/// kill -9 while the gate waits; the approver answers meanwhile; `ralf-sh resume` does not ask
/// again, honours the answer, and the run completes.
#[test]
fn a_gate_survives_kill_9_and_resume_honours_the_answer_given_meanwhile() {
    gate_survives_kill_9(Backend::Sqlite);
}

#[test]
fn a_gate_survives_kill_9_and_resume_honours_the_answer_given_meanwhile_on_postgres() {
    gate_survives_kill_9(Backend::Postgres);
}

fn gate_survives_kill_9(backend: Backend) {
    let home = tempfile::tempdir().unwrap();
    let Some(lab) = Served::start_on(home.path(), backend) else {
        return;
    };
    let mut child = spawn(
        &lab,
        home.path(),
        "k.rhai",
        r#"
run::step("before", || 1);
let g = gate("Apply the production plan?", #{ timeout: "60s", via: ["telegram", "matrix"] });
run::step("after", || g.approved);
print(json::stringify(g));
"#,
    );
    let id = wait_for_question(&lab, "telegram", 1)[0].clone();
    wait_for_question(&lab, "matrix", 1);
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    answer(
        &lab,
        &id,
        serde_json::json!({"approve": true, "user": "admin", "via": "matrix"}),
    );
    let run_id = runs(&lab.state)[0].0.clone();
    let mut c = lab.cmd(home.path());
    c.args(["resume", &run_id]);
    let (code, out, err) = common::run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = result_line(&out);
    assert_eq!(
        (
            r["approved"].as_bool(),
            r["by"].as_str(),
            r["gate"].as_str()
        ),
        (Some(true), Some("matrix:@admin:lab"), Some(id.as_str())),
        "{r}"
    );
    assert_eq!(
        asked(&lab, "telegram"),
        vec![id.clone()],
        "no second question"
    );
    assert_eq!(asked(&lab, "matrix").len(), 1, "no second question");
    let ev: Vec<String> = gate_events(&lab.state)
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["event"].as_str().unwrap(),
                e["user"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        ev,
        ["asked ", "resumed ", "answer matrix:@admin:lab", "outcome "],
        "the journal shows the question, the answer and who gave it"
    );
    assert!(steps(&lab.state)
        .iter()
        .any(|s| s.2 == "after" && s.3 == "done"));
}

/// A gate about a plan (`plan:`, the hash `--plan` prints) names it in the question. kill -9 while
/// it waits, an approval meanwhile, then a resume that resolves another plan: the approval given
/// for the first plan does not approve the second (not approved, the reason names both), and no
/// second question is sent.
#[test]
fn an_approval_binds_to_the_plan_it_was_asked_for() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    let f = home.path().join("p.rhai");
    std::fs::write(
        &f,
        r#"
let g = gate("Deploy redis?", #{ timeout: "60s", via: ["telegram"], plan: env("PLAN_HASH", "") });
run::step("after", || g.approved);
print(json::stringify(g));
"#,
    )
    .unwrap();
    let mut c = lab.cmd(home.path());
    c.arg(&f)
        .env("PLAN_HASH", "0123456789abcdef")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let id = wait_for_question(&lab, "telegram", 1)[0].clone();
    let text: Vec<String> = notifications(&lab)
        .iter()
        .filter_map(|n| n["body"]["text"].as_str().map(str::to_string))
        .collect();
    assert!(
        text.iter()
            .any(|t| t.contains("Plan 0123456789abcdef: an approval approves this plan only")),
        "{text:?}"
    );
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    answer(
        &lab,
        &id,
        serde_json::json!({"approve": true, "user": "admin"}),
    );
    let run_id = runs(&lab.state)[0].0.clone();

    // The plan resolves differently now.
    let mut c = lab.cmd(home.path());
    c.args(["resume", &run_id])
        .env("PLAN_HASH", "fedcba9876543210");
    let (code, out, err) = common::run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = result_line(&out);
    assert_eq!(r["approved"], false, "{r}");
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("plan 0123456789abcdef") && reason.contains("plan fedcba9876543210"),
        "{reason}"
    );
    assert_eq!(asked(&lab, "telegram"), vec![id], "no second question");
    assert!(gate_events(&lab.state)
        .iter()
        .any(|e| e["event"] == "plan_changed"));
}

fn auto(lab: &Served, answer: &str) {
    lab.post(
        &format!("{}/_lab/gates/auto", lab.url("notify")),
        serde_json::json!({"answer": answer, "user": "admin"}),
    );
}

/// Plan -> approve -> apply against a template that waits for confirmation: approved, the task is
/// confirmed and succeeds; denied, it is rejected and the run ends failed with the reason.
#[test]
fn plan_approve_apply_confirms_or_rejects_the_semaphore_task() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    auto(&lab, "approve");
    let mut c = lab.cmd(home.path());
    c.arg(script("plan_apply.rhai"));
    let (code, out, err) = common::run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("RALF Infra Plan: applied (task 1), approved by telegram:@admin via telegram"),
        "{out}"
    );
    let t = &lab.tasks()[0];
    assert_eq!(t["status"], "success", "{t}");
    // The approver saw the plan with the question.
    let q = notifications(&lab)
        .into_iter()
        .find(|n| n["kind"] == "telegram")
        .unwrap();
    assert!(
        q["body"]["text"]
            .as_str()
            .unwrap()
            .contains("Plan: 1 to add, 0 to change, 0 to destroy."),
        "{q}"
    );

    auto(&lab, "deny");
    let mut c = lab.cmd(home.path());
    c.arg(script("plan_apply.rhai"));
    let (code, out, err) = common::run(c);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("RALF Infra Plan: plan of task 2 not approved (denied by telegram:@admin via telegram); the task was rejected"), "{err}");
    let t = &lab.tasks()[1];
    assert_eq!(t["status"], "error", "rejected: {t}");
    let last = runs(&lab.state).pop().unwrap();
    assert_eq!(last.1, "failed", "{last:?}");
}

/// `deploy_all --gate P0`: every P0 service waits for an approval; denied, it is held and its
/// dependents are skipped, nothing of it is changed.
#[test]
fn deploy_all_gates_the_chosen_priority() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    auto(&lab, "deny");
    let mut c = lab.cmd(home.path());
    c.arg(script("deploy_all.rhai"))
        .args(["--gate", "P0", "--no-advisor"]);
    let (code, out, err) = common::run(c);
    assert_eq!(code, 3, "{out}\n{err}");
    let st = statuses(&lab.state);
    assert!(
        !st.contains_key("postgresql") || st["postgresql"] != "deployed",
        "{st:?}"
    );
    assert_eq!(st["exo"], "deployed", "P2 is not gated: {st:?}");
    assert!(
        out.contains("not approved: denied by telegram:@admin via telegram"),
        "{out}"
    );
    let started: Vec<String> = lab
        .tasks()
        .iter()
        .map(|t| t["template_name"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        !started.iter().any(|t| t == "RALF Postgresql Apply"),
        "{started:?}"
    );
    assert_eq!(
        asked(&lab, "telegram").len(),
        3,
        "one question per P0 service (postgresql, redis, traefik)"
    );
}

/// On a terminal the gate asks there too (the first answer wins); `script` gives the run a pty.
#[test]
fn on_a_terminal_the_gate_asks_there() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    let f = home.path().join("tty.rhai");
    std::fs::write(&f, "let g = gate(\"Go?\", #{ timeout: 30, via: [\"terminal\", \"matrix\"] });\nprint(json::stringify(g));\n").unwrap();
    let ralf = env!("CARGO_BIN_EXE_ralf-sh");
    let cmdline = format!("{ralf} --config {} {}", lab.config.display(), f.display());
    let mut c = std::process::Command::new("script");
    c.args(["-qec", &cmdline, "/dev/null"])
        .env("HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &lab.env {
        c.env(k, v);
    }
    let mut child = c
        .spawn()
        .expect("util-linux `script` runs the gate on a pty");
    wait_for_question(&lab, "matrix", 1);
    use std::io::Write;
    child.stdin.as_mut().unwrap().write_all(b"y\n").unwrap();
    let (code, out, err) = finish(child);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = result_line(&out.replace('\r', ""));
    assert_eq!(
        (r["approved"].as_bool(), r["via"].as_str(), r["by"].as_str()),
        (Some(true), Some("terminal"), Some("terminal")),
        "{r}"
    );
}

//! Hosts as data: `ssh::hosts()` lists the configured hosts with their labels, a selection picks
//! them by label, and `ssh::run_all` takes the selection. The hosts use the local transport (and
//! one unreachable loopback address): nothing leaves this machine.

use crate::common;

use common::run;

const CONFIG: &str = r#"
hosts:
  alpha:
    transport: local
    labels: { role: prod, site: home }
  beta:
    transport: local
    labels: { role: staging, site: home }
  gamma:
    address: 127.0.0.1
    port: 1
    labels: { role: db }
"#;

fn eval(expr: &str) -> (i32, String, String) {
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("ralf.yaml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let mut c = common::cmd(home.path());
    c.arg("--config").arg(&cfg).args(["-e", expr]);
    run(c)
}

#[test]
fn hosts_are_listed_and_selected_by_label() {
    let (code, out, err) = eval("ssh::hosts()");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("name"), "a table: {out}");
    assert!(
        lines[1].starts_with("alpha") && lines[3].starts_with("gamma"),
        "{out}"
    );
    let (_, out, _) = eval(r#"ssh::hosts(#{ label: "role=prod" }).map(|h| h.name)"#);
    assert_eq!(out.trim(), r#"["alpha"]"#);
    let (_, out, _) = eval(r#"ssh::hosts(#{ label: ["site=home", "role"] }).map(|h| h.name)"#);
    assert_eq!(out.trim(), r#"["alpha", "beta"]"#);
    let (_, out, _) = eval(r#"ssh::hosts(#{ label: "role=db" })[0].labels.role"#);
    assert_eq!(out.trim(), "db");
}

#[test]
fn run_all_takes_a_selection_and_prints_as_a_table() {
    let (code, out, err) = eval(r#"ssh::run_all(#{ label: "site=home" }, "echo hi")"#);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[1].starts_with("alpha") && lines[1].contains(" hi "),
        "{out}"
    );
    assert!(lines[2].starts_with("beta"), "{out}");
    // Host maps from ssh::hosts() are hosts too.
    let (code, out, err) =
        eval(r#"ssh::run_all(ssh::hosts(#{ label: "role=staging" }), "echo ok").beta.stdout"#);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "ok");
}

#[test]
fn a_selection_that_matches_nothing_or_is_misspelt_is_a_clear_error() {
    let (code, _, err) = eval(r#"ssh::hosts(#{ label: "role=qa" })"#);
    assert_eq!(code, 1);
    assert!(
        err.contains("no configured host has the labels")
            && err.contains("role=prod")
            && err.contains("site=home"),
        "{err}"
    );
    let (code, _, err) = eval(r#"ssh::run_all(#{ lable: "role=prod" }, "true")"#);
    assert_eq!(code, 1);
    assert!(err.contains("lable") && err.contains("label"), "{err}");
}

//! Know before acting: a wrong reference in the catalog or the config stops `deploy_all` and
//! `deploy_service` before their first side effect (exit 2, each problem at its file:line), and
//! `doctor` names the same lines; a failure that changed nothing rolls nothing back. Against
//! `ralf-sh lab serve` on loopback; the stand-ins count what was done.

use crate::common;
use crate::common::deploy as deploy_h;

use common::run;
use deploy_h::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What the stand-ins have been asked to do: (Semaphore tasks, Proxmox snapshot tasks, Proxmox
/// rollback tasks, all Proxmox tasks).
fn side_effects(lab: &Served) -> (usize, usize, usize, usize) {
    (
        lab.tasks().len(),
        lab.pve_tasks("snapshot", None),
        lab.pve_tasks("rollback", None),
        lab.pve_tasks("", None),
    )
}

/// A copy of the example catalog in `dir`, with `edit` applied to `gitea.yaml`; the lab config
/// pointed at it. Returns the copy's gitea file.
fn catalog_with(lab: &Served, dir: &Path, edit: impl Fn(&str) -> String) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for e in std::fs::read_dir(repo().join("catalog/projects")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    let gitea = dir.join("gitea.yaml");
    let text = std::fs::read_to_string(&gitea).unwrap();
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit changed nothing");
    std::fs::write(&gitea, edited).unwrap();
    let cfg = std::fs::read_to_string(&lab.config).unwrap();
    let from = format!(
        "{:?}",
        repo().join("catalog/projects").display().to_string()
    );
    let cfg = cfg.replace(&from, &format!("{:?}", dir.display().to_string()));
    std::fs::write(&lab.config, cfg).unwrap();
    gitea
}

fn deploy_gitea(lab: &Served, home: &Path, extra: &[&str], without: Option<&str>) -> (i32, String) {
    let mut c = lab.cmd(home);
    c.arg(script("deploy_all.rhai"))
        .args(["--only", "gitea", "--no-advisor"])
        .args(extra);
    if let Some(v) = without {
        c.env_remove(v);
    }
    let (code, out, err) = run(c);
    (code, format!("{out}{err}"))
}

fn doctor(lab: &Served, home: &Path, without: Option<&str>) -> (i32, String) {
    let mut c = lab.cmd(home);
    c.arg("doctor");
    if let Some(v) = without {
        c.env_remove(v);
    }
    let (code, out, err) = run(c);
    (code, format!("{out}{err}"))
}

#[test]
fn six_mistakes_stop_before_anything_is_changed() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    // gitea's dependency first, so a good gitea would deploy.
    let mut c = lab.cmd(home.path());
    c.arg(script("deploy_service.rhai"))
        .args(["postgresql", "--no-advisor"]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    let before = side_effects(&lab);
    let cat = home.path().join("cat");
    let cat_s = cat.display().to_string();
    let cfg_s = lab.config.display().to_string();
    let cfg_text = std::fs::read_to_string(&lab.config).unwrap();
    let cfg_line = |needle: &str| {
        cfg_text
            .lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap()
    };

    // (name, catalog edit, config edit, variable removed, where each report must point, and what it says)
    type Edit = Box<dyn Fn(&str) -> String>;
    /// (what, catalog edit, config edit, variable removed, where it must be reported, what it says)
    type Case<'a> = (
        &'a str,
        Edit,
        Option<Edit>,
        Option<&'a str>,
        String,
        &'a str,
    );
    let fp_line = cfg_line("fingerprint:");
    let tok_line = cfg_line("RALF_LAB_SEMAPHORE_TOKEN");
    let cases: Vec<Case> = vec![
        (
            "template typo",
            Box::new(|t| t.replace("template: RALF Gitea Apply", "template: RALF Gitea Aply")),
            None,
            None,
            format!("{cat_s}/gitea.yaml:9:"),
            "did you mean `RALF Gitea Apply`?",
        ),
        (
            "unknown vmid",
            Box::new(|t| t.replace("vmid: 2012", "vmid: 2099")),
            None,
            None,
            format!("{cat_s}/gitea.yaml:7:"),
            "2099",
        ),
        (
            "dependency typo",
            Box::new(|t| t.replace("  - postgresql", "  - postgress")),
            None,
            None,
            format!("{cat_s}/gitea.yaml:6:"),
            "postgress",
        ),
        (
            "smoke check without a host",
            Box::new(|t| {
                t.replace(
                    "  - tcp: 10.10.20.12:22\n",
                    "  - tcp: 10.10.20.12:22\n  - command: systemctl is-active gitea\n",
                )
            }),
            None,
            None,
            format!("{cat_s}/gitea.yaml:15:"),
            "has no host",
        ),
        (
            "malformed fingerprint",
            Box::new(|t| t.replace("GITEA_DOMAIN", "GITEA_HOST")),
            Some(Box::new(|c: &str| {
                let mut out = String::new();
                for l in c.lines() {
                    if l.trim_start().starts_with("fingerprint:") {
                        out.push_str("  fingerprint: \"AB:CD:EF\"\n");
                    } else {
                        out.push_str(l);
                        out.push('\n');
                    }
                }
                out
            })),
            None,
            format!("{cfg_s}:{fp_line}:"),
            "not a SHA-256 fingerprint",
        ),
        (
            "unset secret",
            Box::new(|t| t.replace("GITEA_DOMAIN", "GITEA_HOST")),
            None,
            Some("RALF_LAB_SEMAPHORE_TOKEN"),
            format!("{cfg_s}:{tok_line}:"),
            "RALF_LAB_SEMAPHORE_TOKEN, which is not set",
        ),
    ];
    for (what, edit, cfg_edit, without, at, says) in cases {
        std::fs::write(&lab.config, &cfg_text).unwrap();
        catalog_with(&lab, &cat, edit);
        if let Some(e) = cfg_edit {
            let c = std::fs::read_to_string(&lab.config).unwrap();
            std::fs::write(&lab.config, e(&c)).unwrap();
        }
        let (code, all) = deploy_gitea(&lab, home.path(), &[], without);
        assert_eq!(
            code, 2,
            "{what}: deploy_all must exit 2 (nothing started):\n{all}"
        );
        let line = all
            .lines()
            .find(|l| l.contains(&at))
            .unwrap_or_else(|| panic!("{what}: deploy_all does not point at {at}:\n{all}"));
        assert!(line.contains(says), "{what}: `{says}` missing in: {line}");
        assert_eq!(
            side_effects(&lab),
            before,
            "{what}: a task, snapshot or rollback was started"
        );
        let (dcode, dout) = doctor(&lab, home.path(), without);
        assert_ne!(dcode, 0, "{what}: doctor passed:\n{dout}");
        assert!(
            dout.contains(at.trim_end_matches(':')) && dout.contains(says),
            "{what}: doctor does not name {at} ({says}):\n{dout}"
        );
        assert_eq!(
            side_effects(&lab),
            before,
            "{what}: doctor changed something"
        );
    }
    assert_ne!(
        statuses(&lab.state).get("gitea").map(String::as_str),
        Some("deployed")
    );

    // The same typo with the escape hatch: the snapshot is taken (the run did not look first), but
    // the failure came before the apply task started, so the live guest is not rolled back.
    std::fs::write(&lab.config, &cfg_text).unwrap();
    catalog_with(&lab, &cat, |t| {
        t.replace("template: RALF Gitea Apply", "template: RALF Gitea Aply")
    });
    let (code, all) = deploy_gitea(&lab, home.path(), &["--no-preflight"], None);
    assert_eq!(code, 1, "{all}");
    assert!(all.contains("preflight skipped"), "{all}");
    assert!(all.contains("did you mean `RALF Gitea Apply`?"), "{all}");
    assert!(all.contains("no rollback: nothing was changed"), "{all}");
    let after = side_effects(&lab);
    assert_eq!(after.0, before.0, "a Semaphore task was started");
    assert_eq!(after.1, before.1 + 1, "the snapshot was not taken");
    assert_eq!(after.2, before.2, "the guest was rolled back for a typo");

    // A clean catalog deploys, and doctor is green on it.
    std::fs::write(&lab.config, &cfg_text).unwrap();
    let (dcode, dout) = doctor(&lab, home.path(), None);
    assert!(
        dout.contains("17 services") && dout.contains("references resolved"),
        "{dout}"
    );
    assert_eq!(dcode, 0, "{dout}");
    let (code, all) = deploy_gitea(&lab, home.path(), &[], None);
    assert_eq!(code, 0, "{all}");
}

#[test]
fn a_snapshot_that_never_finished_is_never_rolled_back() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    let pve = format!("{}/_lab/guests/2010/fail_next", lab.url("proxmox"));
    lab.post(
        &pve,
        serde_json::json!({"message": "lab: storage went away"}),
    );
    let before = side_effects(&lab);
    let mut c = lab.cmd(home.path());
    c.arg(script("deploy_service.rhai"))
        .args(["postgresql", "--no-advisor"]);
    let (code, out, err) = run(c);
    let all = format!("{out}{err}");
    assert_eq!(code, 1, "{all}");
    assert!(all.contains("storage went away"), "{all}");
    let after = side_effects(&lab);
    assert_eq!(after.0, before.0, "a Semaphore task was started");
    assert_eq!(after.2, before.2, "a rollback was started:\n{all}");
    assert!(!all.contains("rollback to"), "{all}");
    let steps = steps(&lab.state);
    assert!(
        !steps.iter().any(|s| s.2.ends_with("/rollback")),
        "{steps:?}"
    );
}

#[test]
fn doctor_without_a_config_fails_naming_the_paths() {
    let home = tempfile::tempdir().unwrap();
    let mut c = common::cmd(home.path());
    c.env("XDG_CONFIG_HOME", home.path().join("xdg"))
        .args(["doctor", "--output", "json"]);
    let (code, out, err) = run(c);
    assert_eq!(code, 1, "{out}\n{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["ok"], false);
    let config = &v["rows"][0];
    assert_eq!(config["what"], "config");
    let result = config["result"].as_str().unwrap();
    for p in [
        "ralf.yaml".to_string(),
        home.path()
            .join("xdg/ralf/config.yaml")
            .display()
            .to_string(),
        "/etc/ralf/ralf.yaml".to_string(),
    ] {
        assert!(result.contains(&p), "{p} not named: {result}");
    }
}

/// The runbook resolves every template of its steps before the first one starts: with a typo in
/// the service's template, not even the Phase1 smoke (its first step) runs.
#[test]
fn the_runbook_checks_every_template_before_its_first_step() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    let cat = home.path().join("cat");
    catalog_with(&lab, &cat, |t| {
        t.replace("template: RALF Gitea Apply", "template: RALF Gitea Aply")
    });
    let before = lab.tasks().len();
    let mut c = lab.cmd(home.path());
    c.arg(script("runbook.rhai")).args(["--service", "gitea"]);
    let (code, out, err) = run(c);
    let all = format!("{out}{err}");
    assert_eq!(code, 2, "{all}");
    assert!(
        all.contains("gitea apply: ") && all.contains("did you mean `RALF Gitea Apply`?"),
        "{all}"
    );
    assert_eq!(lab.tasks().len(), before, "a task was started:\n{all}");

    // Without the check the first step (Phase1 smoke) runs before the typo is met.
    let mut c = lab.cmd(home.path());
    c.arg(script("runbook.rhai"))
        .args(["--service", "gitea", "--no-preflight"]);
    let (code, out, err) = run(c);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(lab.tasks().len(), before + 1);
}

/// The hash `--plan` prints from a line `plan hash: H (...)`.
fn plan_hash(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("plan hash: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no plan hash in:\n{out}"))
        .to_string()
}

/// `--plan` resolves the plan against the live systems and prints its hash: the same twice, a
/// different one after the template changed on the server; `--expect-plan` with the old hash then
/// refuses (conflict, exit 2) and starts nothing.
#[test]
fn a_plan_hash_binds_the_run_to_what_was_resolved() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    let plan = |extra: &[&str]| {
        let mut c = lab.cmd(home.path());
        c.arg(script("deploy_all.rhai"))
            .args(["--only", "redis", "--no-advisor"])
            .args(extra);
        let (code, out, err) = run(c);
        (code, format!("{out}{err}"))
    };
    let before = side_effects(&lab);
    let (code, out) = plan(&["--plan"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("RALF Redis Apply (#"), "{out}");
    let h1 = plan_hash(&out);
    let (_, out2) = plan(&["--plan"]);
    assert_eq!(
        plan_hash(&out2),
        h1,
        "same inputs, same reality, another hash"
    );
    assert_eq!(side_effects(&lab), before, "--plan changed something");

    // The template changes on the server (a new playbook): another plan.
    let mut c = lab.cmd(home.path());
    c.args([
        "-e",
        r#"semaphore::connect().ensure_template(#{ name: "RALF Redis Apply", playbook: "playbooks/redis-v2.yml" }).change"#,
    ]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("updated"), "{out}");
    let (_, out3) = plan(&["--plan"]);
    let h2 = plan_hash(&out3);
    assert_ne!(h2, h1, "the template changed but the plan hash did not");

    let before = side_effects(&lab);
    let (code, out) = plan(&["--expect-plan", &h1]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("[conflict]") && out.contains(&h1), "{out}");
    assert_eq!(
        side_effects(&lab),
        before,
        "a refused plan started something"
    );

    // Not a hash: said, exit 2, nothing started.
    let (code, out) = plan(&["--expect-plan", "latest"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("`latest` is not a plan hash"), "{out}");

    // The hash that matches runs.
    let (code, out) = plan(&["--expect-plan", &h2]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(side_effects(&lab).0, before.0 + 1, "{out}");
}

/// An unknown service named on the command line is bad input: exit 2 with a did-you-mean, for
/// `deploy_service NAME` and `deploy_all --only NAME`, and nothing is started.
#[test]
fn an_unknown_service_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let lab = Served::start(home.path());
    let before = side_effects(&lab);
    let mut c = lab.cmd(home.path());
    c.arg(script("deploy_service.rhai"))
        .args(["gitae", "--no-advisor"]);
    let (code, out, err) = run(c);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("no service `gitae` in the catalog; did you mean `gitea`?"),
        "{err}"
    );
    let (code, all) = {
        let mut c = lab.cmd(home.path());
        c.arg(script("deploy_all.rhai")).args(["--only", "gitae"]);
        let (code, out, err) = run(c);
        (code, format!("{out}{err}"))
    };
    assert_eq!(code, 2, "{all}");
    assert!(
        all.contains("gitae") && all.contains("did you mean `gitea`?"),
        "{all}"
    );
    assert_eq!(side_effects(&lab), before);
}

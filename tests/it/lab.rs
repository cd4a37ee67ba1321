//! The lab as a newcomer meets it: from any folder (the embedded catalog), a wrong scenario refused
//! before anything starts, `lab serve --write-config` reached by other processes, `lab repl`,
//! `doctor` against the lab and against broken configs, and the shipped systemd units.

use crate::common;
use crate::common::docker as dock;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn lab_runs_from_a_folder_outside_the_repo_with_the_embedded_catalog() {
    let home = tempfile::tempdir().unwrap();
    let mut c = common::cmd(home.path());
    c.arg("lab").arg(repo("scripts/deploy_all.rhai"));
    let (code, out, err) = common::run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("lab: catalog the example catalog embedded in ralf-sh, 17 services"),
        "{err}"
    );
    assert!(out.contains("deployed 7, failed 0"), "{out}");
    // The summary is short and human; the JSON description only comes with -v.
    assert!(!err.contains("{\"semaphore\""), "{err}");
    assert!(err.contains("state store is temporary"), "{err}");
}

#[test]
fn lab_catalog_flag_feeds_the_stand_ins_and_the_run() {
    let home = tempfile::tempdir().unwrap();
    let cat = home.path().join("mycat");
    std::fs::create_dir_all(&cat).unwrap();
    std::fs::copy(repo("catalog/projects/exo.yaml"), cat.join("exo.yaml")).unwrap();
    let mut c = common::cmd(home.path());
    c.arg("lab")
        .arg("--catalog")
        .arg(&cat)
        .arg(repo("scripts/deploy_all.rhai"));
    let (code, out, err) = common::run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("(--catalog), 1 services"), "{err}");
    assert!(out.contains("deployed 1, failed 0"), "{out}");

    let mut c = common::cmd(home.path());
    c.args(["lab", "--catalog", "/nonexistent/ralf-cat"])
        .arg(repo("scripts/deploy_all.rhai"));
    let (code, _, err) = common::run(c);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("/nonexistent/ralf-cat: no such folder"),
        "{err}"
    );
}

#[test]
fn a_wrong_scenario_or_version_is_refused_before_anything_starts() {
    let home = tempfile::tempdir().unwrap();
    let mut c = common::cmd(home.path());
    c.args(["lab", "--scenario", "smoke-fail", "scripts/deploy_all.rhai"]);
    let (code, out, err) = common::run(c);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("smoke-fails"),
        "the valid names are listed: {err}"
    );
    assert!(!err.contains("lab: Semaphore"), "nothing started: {err}");

    let mut c = common::cmd(home.path());
    c.args(["lab", "--pve-version", "6.4", "scripts/deploy_all.rhai"]);
    let (code, _, err) = common::run(c);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("7.2") && err.contains("9.2"), "{err}");

    let mut c = common::cmd(home.path());
    c.args(["lab", "--help"]);
    let (code, out, _) = common::run(c);
    assert_eq!(code, 0);
    for s in ["staging-fails", "exo-down", "semaphore-flaky", "slow-tasks"] {
        assert!(out.contains(s), "--help lists {s}: {out}");
    }
}

/// `ralf-sh lab serve --write-config DIR`, stopped when dropped.
struct Served {
    child: Child,
    dir: PathBuf,
    _home: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

fn serve() -> Served {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("lab");
    let mut c = common::cmd(home.path());
    c.args(["lab", "serve", "--write-config"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // The JSON line comes first on stdout; the config files right after it.
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with('{'),
        "first line is the JSON description: {line}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.join("env").exists() {
        assert!(
            Instant::now() < deadline,
            "lab serve wrote no {}/env",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // `env` is renamed into place whole, after ralf.yaml: both are complete now.
    Served {
        child,
        dir,
        _home: home,
    }
}

/// Run ralf-sh through `sh` after sourcing the lab's env file (as a user would).
fn sourced(s: &Served, config: &Path, args: &str, env_edit: &str) -> (i32, String, String) {
    let home = s.dir.parent().unwrap();
    let mut c = Command::new("sh");
    c.arg("-c").arg(format!(
        ". {}/env; {env_edit} exec {} --config {} {args}",
        s.dir.display(),
        common::bin().display(),
        config.display()
    ));
    for (k, _) in std::env::vars() {
        if k.starts_with("RALF_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", home)
        .env("XDG_STATE_HOME", home.join(".state"))
        .env("CI", "1")
        .env("NO_COLOR", "1");
    common::run(c)
}

#[test]
fn lab_serve_write_config_reaches_the_stand_ins_and_doctor_passes_then_names_each_fault() {
    let s = serve();
    let cfg = s.dir.join("ralf.yaml");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.dir.join("env"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the env file holds credentials");

    let (code, out, err) = sourced(&s, &cfg, "-e 'semaphore::connect().templates().len()'", "");
    assert_eq!(code, 0, "{out}\n{err}");
    let n: i64 = out.trim().parse().unwrap_or_else(|_| panic!("{out}"));
    assert!(n > 10, "{out}");

    // doctor against the lab: every row passes.
    let (code, out, err) = sourced(&s, &cfg, "doctor", "");
    assert_eq!(code, 0, "{out}\n{err}");
    for what in [
        "semaphore http",
        "proxmox https",
        "llm http",
        "env RALF_LAB_SEMAPHORE_TOKEN",
        "host vps",
    ] {
        assert!(out.contains(what), "row {what}: {out}");
    }
    assert!(!out.contains("FAIL"), "{out}");
    assert!(out.contains("0 failed"), "{out}");

    // A wrong token.
    let (code, out, _) = sourced(
        &s,
        &cfg,
        "doctor",
        "RALF_LAB_SEMAPHORE_TOKEN=wrong-token-0000;",
    );
    assert_eq!(code, 1, "{out}");
    assert!(row(&out, "semaphore http").contains("FAIL"), "{out}");
    assert!(!row(&out, "proxmox https").contains("FAIL"), "{out}");

    // An unset token_env.
    let (code, out, _) = sourced(&s, &cfg, "doctor", "unset RALF_LAB_PVE_TOKEN_SECRET;");
    assert_eq!(code, 1, "{out}");
    let r = row(&out, "env RALF_LAB_PVE_TOKEN_SECRET");
    assert!(r.contains("FAIL") && r.contains("not set"), "{out}");
    assert!(
        row(&out, "proxmox https").contains("RALF_LAB_PVE_TOKEN_SECRET"),
        "{out}"
    );

    // A wrong fingerprint pin.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let wrong = s.dir.join("wrong-pin.yaml");
    let pin = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("fingerprint: "))
        .expect("lab config pins the Proxmox certificate")
        .trim_matches('"')
        .to_string();
    let bad_pin: String = pin
        .chars()
        .map(|c| {
            if c == ':' {
                c
            } else if c == '0' {
                '1'
            } else {
                '0'
            }
        })
        .collect();
    std::fs::write(&wrong, text.replace(&pin, &bad_pin)).unwrap();
    let (code, out, _) = sourced(&s, &wrong, "doctor", "");
    assert_eq!(code, 1, "{out}");
    let r = row(&out, "proxmox https");
    assert!(
        r.contains("FAIL") && r.to_lowercase().contains("fingerprint"),
        "{out}"
    );

    // An unreachable host (a loopback port nothing listens on).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = s.dir.join("dead-host.yaml");
    let text = text.replacen(
        "hosts:\n",
        &format!(
            "hosts:\n  deadbox:\n    address: 127.0.0.1\n    port: {port}\n    user: nobody\n"
        ),
        1,
    );
    std::fs::write(&unreachable, text).unwrap();
    let (code, out, _) = sourced(&s, &unreachable, "doctor", "");
    assert_eq!(code, 1, "{out}");
    assert!(row(&out, "host deadbox").contains("FAIL"), "{out}");
    assert!(!row(&out, "host vps").contains("FAIL"), "{out}");
}

/// The table row (and its fix line) that starts with `what`.
fn row(out: &str, what: &str) -> String {
    let mut lines = out.lines().skip_while(|l| !l.starts_with(what));
    let first = lines.next().unwrap_or_default().to_string();
    let fix = lines
        .next()
        .filter(|l| l.trim_start().starts_with("fix:"))
        .unwrap_or_default();
    format!("{first}\n{fix}")
}

#[test]
fn lab_repl_has_every_handle_live() {
    use rexpect::session::spawn_command;
    let home = tempfile::tempdir().unwrap();
    let mut c = common::cmd(home.path());
    c.args(["lab", "repl"]).env("TERM", "xterm");
    let mut p = spawn_command(c, Some(30_000)).expect("spawn lab repl");
    // Ready for input: rustyline announces bracketed paste right after switching to raw mode.
    p.exp_string("\u{1b}[?2004h").expect("prompt");
    p.send_line("`templates=${semaphore::connect().templates().len()}`")
        .unwrap();
    let (_, m) = p.exp_regex("templates=[0-9]+").unwrap();
    let n: usize = m.trim_start_matches("templates=").parse().unwrap();
    assert!(n > 10, "{m}");
    p.send_line(":quit").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn shipped_systemd_units_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        crate::common::skip_suite(
            "the systemd unit check",
            "systemd-analyze is not installed",
            "apt-get install systemd",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for f in ["ralf-sh-deploy.service", "ralf-sh-deploy.timer"] {
        let text = std::fs::read_to_string(repo(&format!("contrib/systemd/{f}"))).unwrap();
        // Verify checks that ExecStart's program exists: point it at the built binary.
        let text = text.replace(
            "/usr/local/bin/ralf-sh",
            &common::bin().display().to_string(),
        );
        std::fs::write(dir.path().join(f), text).unwrap();
    }
    let o = Command::new("systemd-analyze")
        .args(["verify", "ralf-sh-deploy.service", "ralf-sh-deploy.timer"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = common::text(&o.stderr);
    assert!(
        o.status.success() && err.trim().is_empty(),
        "systemd-analyze verify: {err}"
    );
    let service = std::fs::read_to_string(repo("contrib/systemd/ralf-sh-deploy.service")).unwrap();
    assert!(
        service.contains("EnvironmentFile="),
        "secrets come from an EnvironmentFile"
    );
    for code in ["75", "130", " 3 ", " 1 "] {
        assert!(service.contains(code), "the unit explains exit code {code}");
    }
}

/// The release flow in the lab pulls nothing: `docker events` sees no `pull` during the run, and
/// a compose project whose image is missing fails before compose runs.
#[test]
fn lab_release_pulls_nothing() {
    if !dock::available_for("the lab release pull check") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let events = Command::new("docker")
        .args([
            "events",
            "--filter",
            "type=image",
            "--format",
            "{{.Action}} {{.ID}}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut c = common::cmd(home.path());
    c.arg("lab")
        .arg(repo("scripts/release.rhai"))
        .args(["main", "production"]);
    let (code, out, err) = common::run(c);
    // A compose project on a lab host whose image is not here: refused before compose runs.
    let script = home.path().join("missing.rhai");
    std::fs::write(
        &script,
        r#"
        let h = ssh::connect("vps");
        let dir = `${h.run_ok("echo $RALF_HOST_ROOT").stdout.trim()}/srv/missing`;
        h.run_ok(["mkdir", "-p", dir]);
        h.write(`${dir}/docker-compose.yml`, "version: \"2.4\"\nservices:\n  app:\n    image: ralf-no-such-image:404\n");
        try {
            docker::on(h).compose(dir).up(#{ wait: true, timeout: 20 });
            print("up succeeded");
        } catch (e) {
            print(`${e.kind}: ${e.message}`);
        }
        try { docker::on(h).compose(dir).pull(); } catch (e) { print(`pull: ${e.kind}: ${e.message}`); }
        "#,
    )
    .unwrap();
    let mut c = common::cmd(home.path());
    c.arg("lab").arg(&script);
    let (code2, out2, err2) = common::run(c);
    unsafe {
        libc::kill(events.id() as i32, libc::SIGTERM);
    }
    let seen = common::text(&events.wait_with_output().unwrap().stdout);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(code2, 0, "{out2}\n{err2}");
    assert!(
        out2.contains("not_found: vps: compose project in")
            && out2.contains("image ralf-no-such-image:404 not on this host, and pulling is off"),
        "{out2}"
    );
    assert!(out2.contains("pull: invalid: compose pull in"), "{out2}");
    assert!(
        !seen.lines().any(|l| l.starts_with("pull")),
        "docker events saw a pull: {seen}"
    );
}

/// The whole trigger → deploy → dashboard path on loopback: `lab serve --controller` runs
/// `ralf-sh serve` on the lab; `lab push` signs a push like Gitea; the controller answers 202 with
/// a run id, deploy_all runs, and the dashboard's API shows the run ending ok.
#[test]
fn lab_controller_deploys_on_a_signed_push_and_the_dashboard_shows_it() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("lab");
    let mut c = common::cmd(home.path());
    c.current_dir(repo(""))
        .args(["lab", "serve", "--controller", "--write-config"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let child = c.spawn().unwrap();
    let mut s = Served {
        child,
        dir: dir.clone(),
        _home: home,
    };
    let mut out = BufReader::new(s.child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with('{'), "{line}");
    line.clear();
    out.read_line(&mut line).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let hook = v["controller"]["hook"].as_str().unwrap().to_string();
    let url = v["controller"]["url"].as_str().unwrap().to_string();
    let cfg = dir.join("ralf.yaml");

    // A push to another branch is answered and ignored; one to main starts deploy_all.
    let (code, out1, err) = sourced(&s, &cfg, &format!("lab push --to {hook} --branch dev"), "");
    assert_eq!(code, 0, "{out1}\n{err}");
    assert!(out1.contains("ignored"), "{out1}");
    let (code, out2, err) = sourced(
        &s,
        &cfg,
        &format!("lab push --to {hook} --commit c0ffee"),
        "",
    );
    assert_eq!(code, 0, "{out2}\n{err}");
    let accepted: serde_json::Value = serde_json::from_str(out2.trim()).unwrap();
    let run_id = accepted["run_id"].as_str().unwrap().to_string();
    // A push signed with another secret is refused.
    let (code, _, err) = sourced(
        &s,
        &cfg,
        &format!("lab push --to {hook}"),
        "RALF_LAB_HOOK_SECRET=not-the-secret-123;",
    );
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let get = |path: &str| -> serde_json::Value {
        rt.block_on(async {
            let r = ralf_sh::clients::http_builder()
                .build()
                .unwrap()
                .get(format!("{url}{path}"))
                .send()
                .await
                .unwrap();
            r.json().await.unwrap_or(serde_json::Value::Null)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let run = loop {
        let r = get(&format!("/api/runs/{run_id}"));
        if r["status"].as_str().is_some_and(|s| s != "running") {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the pushed deploy did not end: {r}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(run["status"], "ok", "{run}");
    assert!(
        run["user"].as_str().unwrap().ends_with("via lab-push"),
        "{run}"
    );
    assert!(run["script_name"] == "deploy_all.rhai", "{run}");
    let steps = run["steps"].as_array().unwrap();
    assert!(
        steps.iter().any(|s| s["key"] == "postgresql/apply"),
        "{run}"
    );
    let text = |path: &str| common::get_text(&format!("{url}{path}"));
    let svg = text(&format!("/runs/{run_id}/graph.svg"));
    assert!(
        svg.contains("data-node=\"n8n\" data-status=\"done\""),
        "{svg}"
    );
    assert!(
        svg.contains("<line"),
        "dependency edges from the catalog: {svg}"
    );
    // /metrics: the deploy's Semaphore tasks, how long they ran and how long the run waited.
    let metrics = text("/metrics");
    let count = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
    };
    assert!(
        count("ralf_semaphore_wait_seconds_count") >= 7.0,
        "{metrics}"
    );
    assert!(
        count("ralf_semaphore_task_duration_seconds_count") >= 7.0,
        "{metrics}"
    );
    assert!(count("ralf_semaphore_wait_seconds_sum") > 0.0);
}

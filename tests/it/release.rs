//! The multi-host release (`scripts/release.rhai`) in the lab: success and the five failure
//! scenarios end with exactly the status, exit code and rollbacks of issue 8. The lab runs in
//! this process (so the hosts can be inspected after the script: checked-out commit and running
//! containers per host); one test goes through `ralf-sh lab` itself.

use crate::common;
use crate::common::docker as docker_common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ARGS: &[&str] = &[
    "v1.2",
    "production",
    "--min-free-gb",
    "0.5",
    "--retry-delay",
    "0.2",
    "--timeout",
    "60",
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct RunningLab {
    rt: tokio::runtime::Runtime,
    lab: Option<ralf_sh::lab::Lab>,
    home: tempfile::TempDir,
}

impl Drop for RunningLab {
    fn drop(&mut self) {
        let _g = self.rt.enter();
        self.lab.take();
    }
}

impl RunningLab {
    /// Start the lab (real sshd hosts when installed, else the local transport) and apply a scenario.
    fn start(scenario: Option<&str>) -> RunningLab {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let lab = rt
            .block_on(ralf_sh::lab::start_all(&Default::default()))
            .expect("lab starts");
        if lab.info["hosts"]["transport"] != "sshd" {
            eprintln!(
                "\n**** NOTE: lab hosts use the local transport ({}); sshd is not exercised ****\n",
                lab.info["hosts"]["reason"]
            );
        }
        if let Some(s) = scenario {
            rt.block_on(ralf_sh::lab::apply_scenario(&lab, s))
                .expect("scenario applies");
        }
        let home = tempfile::tempdir().unwrap();
        RunningLab {
            rt,
            lab: Some(lab),
            home,
        }
    }

    fn info(&self) -> &serde_json::Map<String, Value> {
        &self.lab.as_ref().unwrap().info
    }

    fn app_dir(&self, host: &str) -> PathBuf {
        PathBuf::from(
            self.info()["hosts"]["hosts"][host]["app_dir"]
                .as_str()
                .unwrap(),
        )
    }

    fn project(&self, host: &str) -> String {
        self.info()["hosts"]["hosts"][host]["compose_project"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Run release.rhai against the lab with `ralf-sh --config`: (exit code, result JSON, stderr).
    fn release(&self, extra: &[&str]) -> (i32, Value, String) {
        self.release_args(ARGS, extra)
    }

    fn release_args(&self, args: &[&str], extra: &[&str]) -> (i32, Value, String) {
        let mut c = self.ralf_sh();
        c.arg("scripts/release.rhai").args(args).args(extra);
        let (code, out, err) = common::run(c);
        (code, result_of(&out, &err), err)
    }

    /// `ralf-sh --config` for the lab, with its state store in `home`.
    fn ralf_sh(&self) -> Command {
        let lab = self.lab.as_ref().unwrap();
        let (yaml, env) =
            ralf_sh::lab::run_config(lab, &self.home.path().join("state.db"), self.home.path())
                .unwrap();
        let cfg = self.home.path().join("ralf.yaml");
        std::fs::write(&cfg, yaml).unwrap();
        let mut c = common::cmd(self.home.path());
        c.current_dir(repo_root())
            .arg("--config")
            .arg(&cfg)
            .envs(env);
        c
    }

    fn head(&self, host: &str) -> String {
        git(&self.app_dir(host), &["rev-parse", "HEAD"])
    }

    fn commit(&self, host: &str, rev: &str) -> String {
        git(
            &self.app_dir(host),
            &["rev-parse", &format!("{rev}^{{commit}}")],
        )
    }

    /// The app versions running on a host (from the containers' labels).
    fn running(&self, host: &str) -> Vec<String> {
        let o = Command::new("docker")
            .args(["ps", "--filter"])
            .arg(format!(
                "label=com.docker.compose.project={}",
                self.project(host)
            ))
            .args(["--format", "{{.Label \"lab.ralf.version\"}}"])
            .output()
            .unwrap();
        common::text(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Start the current version (v1.1) on a host, as if it had been deployed before.
    fn start_current(&self, host: &str) {
        let dir = self.app_dir(host);
        let v2 = Command::new("docker")
            .args(["compose", "version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let mut c = if v2 {
            let mut c = Command::new("docker");
            c.arg("compose");
            c
        } else {
            Command::new("docker-compose")
        };
        let o = c
            .args(["up", "-d"])
            .current_dir(&dir)
            .output()
            .expect("compose up");
        assert!(
            o.status.success(),
            "compose up on {host}: {}",
            common::text(&o.stderr)
        );
    }

    /// Assert a host's final state: checked-out commit and running version.
    fn assert_host(&self, r: &Value, host: &str, rev: &str, running: &[&str], rolled_back: bool) {
        assert_eq!(
            self.head(host),
            self.commit(host, rev),
            "{host} should have {rev} checked out; result: {r}"
        );
        assert_eq!(
            self.running(host),
            running,
            "{host} running versions; result: {r}"
        );
        assert_eq!(
            r["hosts"][host]["rolled_back"], rolled_back,
            "{host} rolled_back; result: {r}"
        );
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        common::text(&o.stderr)
    );
    common::text(&o.stdout).trim().to_string()
}

/// The JSON result line the script prints.
fn result_of(out: &str, err: &str) -> Value {
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON result in stdout:\n{out}\nstderr:\n{err}"));
    serde_json::from_str(line).expect("result is JSON")
}

fn deployed(r: &Value) -> Vec<String> {
    r["systems_deployed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn release_success_through_ralf_sh_lab() {
    if !docker_common::available_for("release tests") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let mut c = common::cmd(home.path());
    c.current_dir(repo_root())
        .args(["lab", "scripts/release.rhai"])
        .args(ARGS);
    let (code, out, err) = common::run(c);
    let r = result_of(&out, &err);
    assert_eq!(r["status"], "success", "{r}\n{err}");
    assert_eq!(code, 0, "{err}");
    assert_eq!(deployed(&r), ["thinkpad", "rtx1080", "vps"]);
    let phases: Vec<&str> = r["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "preflight",
            "secrets",
            "snapshots",
            "staging",
            "tests",
            "production",
            "vps",
            "verification"
        ]
    );
    for h in ["thinkpad", "rtx1080", "vps"] {
        assert_eq!(r["hosts"][h]["rolled_back"], false);
        assert_eq!(r["hosts"][h]["deployed"], true);
    }
    for p in r["details"].as_array().unwrap() {
        assert_eq!(p["status"], "success", "{p}");
    }
    // The secrets file is compared by checksum, never shown.
    assert!(!out.contains("APP_SECRET") && !err.contains("APP_SECRET"));
}

/// Without sshd (forced here with RALF_LAB_HOSTS=local) the lab's hosts use the local transport and
/// a release scenario ends exactly as it does over SSH.
#[test]
fn production_fails_over_the_local_transport() {
    if !docker_common::available_for("release tests") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let mut c = common::cmd(home.path());
    c.current_dir(repo_root())
        .env("RALF_LAB_HOSTS", "local")
        .args([
            "-v",
            "lab",
            "--scenario",
            "production-fails",
            "scripts/release.rhai",
        ])
        .args(ARGS);
    let (code, out, err) = common::run(c);
    assert!(
        err.contains("local transport (RALF_LAB_HOSTS=local)"),
        "the lab should say it uses the local transport: {err}"
    );
    let r = result_of(&out, &err);
    assert_eq!(r["status"], "rolled_back", "{r}\n{err}");
    assert_eq!(r["phase"], "production");
    assert_eq!(code, 1, "{err}");
    assert!(deployed(&r).is_empty(), "{r}");
    assert_eq!(r["hosts"]["thinkpad"]["rolled_back"], true, "{r}");
    assert_eq!(r["hosts"]["rtx1080"]["rolled_back"], true, "{r}");
    assert_eq!(r["hosts"]["vps"]["rolled_back"], false, "{r}");
    assert_eq!(r["hosts"]["vps"]["deployed"], false, "{r}");
    assert!(!out.contains("APP_SECRET") && !err.contains("APP_SECRET"));
}

#[test]
fn staging_fails_rolls_back_staging_only() {
    if !docker_common::available_for("release tests") {
        return;
    }
    let lab = RunningLab::start(Some("staging-fails"));
    let (code, r, err) = lab.release(&[]);
    assert_eq!(r["status"], "failed", "{r}\n{err}");
    assert_eq!(r["phase"], "staging");
    assert_eq!(code, 1);
    assert!(deployed(&r).is_empty());
    lab.assert_host(&r, "thinkpad", "v1.1", &[], true);
    lab.assert_host(&r, "rtx1080", "v1.1", &[], false);
    lab.assert_host(&r, "vps", "v1.1", &[], false);
    assert_eq!(r["hosts"]["rtx1080"]["deployed"], false);
    assert_eq!(r["hosts"]["vps"]["deployed"], false);
}

#[test]
fn tests_fail_rolls_back_staging_production_untouched() {
    if !docker_common::available_for("release tests") {
        return;
    }
    let lab = RunningLab::start(Some("tests-fail"));
    let (code, r, err) = lab.release(&[]);
    assert_eq!(r["status"], "failed", "{r}\n{err}");
    assert_eq!(r["phase"], "tests");
    assert!(r["error"].as_str().unwrap().contains("2/3 PASS"), "{r}");
    assert_eq!(code, 1);
    lab.assert_host(&r, "thinkpad", "v1.1", &[], true);
    lab.assert_host(&r, "rtx1080", "v1.1", &[], false);
    lab.assert_host(&r, "vps", "v1.1", &[], false);
}

#[test]
fn production_fails_rolls_back_staging_and_production_vps_untouched() {
    if !docker_common::available_for("release tests") {
        return;
    }
    let lab = RunningLab::start(Some("production-fails"));
    // v1.1 runs everywhere before the release: rollbacks must bring it back up.
    for h in ["thinkpad", "rtx1080", "vps"] {
        lab.start_current(h);
    }
    let (code, r, err) = lab.release(&[]);
    assert_eq!(r["status"], "rolled_back", "{r}\n{err}");
    assert_eq!(r["phase"], "production");
    assert_eq!(code, 1);
    assert!(deployed(&r).is_empty());
    lab.assert_host(&r, "thinkpad", "v1.1", &["1.1"], true);
    lab.assert_host(&r, "rtx1080", "v1.1", &["1.1"], true);
    lab.assert_host(&r, "vps", "v1.1", &["1.1"], false);
    assert_eq!(r["hosts"]["vps"]["deployed"], false);
}

#[test]
fn vps_fails_rolls_back_vps_only_partial_success_with_alert() {
    if !docker_common::available_for("release tests") {
        return;
    }
    let lab = RunningLab::start(Some("vps-fails"));
    let (code, r, err) = lab.release(&[]);
    assert_eq!(r["status"], "partial_success", "{r}\n{err}");
    assert_eq!(r["phase"], "vps");
    assert_eq!(code, 3);
    assert_eq!(r["vps_attempts"], 3, "{r}");
    assert_eq!(deployed(&r), ["thinkpad", "rtx1080"]);
    assert_eq!(r["alerts"].as_array().unwrap().len(), 1);
    lab.assert_host(&r, "thinkpad", "v1.2", &["1.2"], false);
    lab.assert_host(&r, "rtx1080", "v1.2", &["1.2"], false);
    lab.assert_host(&r, "vps", "v1.1", &[], true);
    // The alert reached the lab's notification sink.
    let url = format!(
        "{}/_lab/notifications",
        lab.info()["notify"]["url"].as_str().unwrap()
    );
    let got: Value = lab.rt.block_on(async {
        ralf_sh::clients::http_builder()
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert!(
        got.to_string().contains("VPS deploy failed"),
        "no alert in the sink: {got}"
    );
}

#[test]
fn verify_fails_rolls_back_everything() {
    if !docker_common::available_for("release tests") {
        return;
    }
    let lab = RunningLab::start(Some("verify-fails"));
    let (code, r, err) = lab.release(&[]);
    assert_eq!(r["status"], "rolled_back", "{r}\n{err}");
    assert_eq!(r["phase"], "verification");
    assert!(
        r["error"].as_str().unwrap().contains("serves no routes"),
        "{r}"
    );
    assert_eq!(code, 1);
    assert!(deployed(&r).is_empty());
    for h in ["thinkpad", "rtx1080", "vps"] {
        lab.assert_host(&r, h, "v1.1", &[], true);
    }
}

#[test]
fn preflight_and_secrets_failures_change_nothing() {
    if !docker_common::available_for("release tests") {
        return;
    }
    let lab = RunningLab::start(None);
    // A release already in progress on the VPS.
    let lock = lab.app_dir("vps").join(".ralf-release.lock");
    std::fs::create_dir(&lock).unwrap();
    let (code, r, err) = lab.release(&[]);
    assert_eq!(r["status"], "aborted", "{r}\n{err}");
    assert_eq!(r["phase"], "preflight");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("vps: another release is in progress"),
        "{r}"
    );
    assert_eq!(code, 1);
    std::fs::remove_dir(&lock).unwrap();
    // The other hosts' locks were released.
    assert!(!lab.app_dir("thinkpad").join(".ralf-release.lock").exists());

    // Secrets out of sync and only compared (--env-secret none): aborted, and neither values nor
    // checksums are printed.
    let env = lab.app_dir("rtx1080").join("app.env");
    std::fs::write(&env, "APP_SECRET=different-value\n").unwrap();
    let (code, r, err) = lab.release(&["--env-secret", "none"]);
    assert_eq!(r["status"], "aborted", "{r}\n{err}");
    assert_eq!(r["phase"], "secrets");
    assert_eq!(code, 1);
    let msg = r["error"].as_str().unwrap();
    assert!(msg.contains("app.env differs between hosts"), "{msg}");
    let all = format!("{r}{err}");
    assert!(!all.contains("different-value") && !all.contains("APP_SECRET"));
    for h in ["thinkpad", "rtx1080"] {
        use sha2::Digest;
        let text = std::fs::read(lab.app_dir(h).join("app.env")).unwrap();
        let sum = hex::encode(sha2::Sha256::digest(&text));
        assert!(
            !all.contains(&sum),
            "the checksum of {h}'s app.env was printed"
        );
    }
    for h in ["thinkpad", "rtx1080", "vps"] {
        lab.assert_host(&r, h, "v1.1", &[], false);
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    let home = tempfile::tempdir().unwrap();
    let mut c = common::cmd(home.path());
    c.current_dir(repo_root())
        .args(["scripts/release.rhai", "v1.2", "prod"]);
    let (code, out, err) = common::run(c);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("ENV must be 'production' or 'staging'"),
        "{err}"
    );
    let mut c = common::cmd(home.path());
    c.current_dir(repo_root()).args([
        "scripts/release.rhai",
        "v1.2",
        "production",
        "--timout",
        "3",
    ]);
    let (code, _, err) = common::run(c);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown option `--timout`; did you mean `--timeout`?"),
        "{err}"
    );
}

#[test]
fn staging_env_deploys_staging_only() {
    if !docker_common::available_for("release tests") {
        return;
    }
    let lab = RunningLab::start(None);
    let mut args = ARGS.to_vec();
    args[1] = "staging";
    let (code, r, err) = lab.release_args(&args, &[]);
    assert_eq!(r["status"], "success", "{r}\n{err}");
    assert_eq!(code, 0);
    assert_eq!(deployed(&r), ["thinkpad"]);
    lab.assert_host(&r, "thinkpad", "v1.2", &["1.2"], false);
    for h in ["rtx1080", "vps"] {
        assert_eq!(lab.head(h), lab.commit(h, "v1.1"));
        assert!(lab.running(h).is_empty());
    }
}

#[test]
fn dry_run_shows_the_plan_and_changes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let mut c = common::cmd(home.path());
    c.current_dir(repo_root())
        .args(["lab", "--dry-run", "scripts/release.rhai"])
        .args(ARGS);
    let (code, out, err) = common::run(c);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("4. staging (thinkpad): git checkout v1.2"),
        "{out}"
    );
    assert!(
        out.contains("7. vps (vps): the same, up to 3 attempts"),
        "{out}"
    );
    // The reads ran: each host's checked-out commit and the target's commit are shown.
    for h in ["thinkpad (staging)", "rtx1080 (production)", "vps (vps)"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(h))
            .unwrap_or_else(|| panic!("no line for {h}: {out}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let n = words.len();
        assert!(
            words[n - 5] == "at" && words[n - 4].len() == 8 && words[n - 1].len() == 7,
            "{line}"
        );
        assert_ne!(words[n - 4].trim_end_matches(','), words[n - 1], "{line}");
    }
    // The changes did not: only the host locks are in the list of what would have run.
    assert!(!out.contains("compose up on"), "{out}");
    let actions = &err[err.find("would have run").expect("dry-run table")..];
    assert_eq!(actions.matches("\n    ").count(), 3, "{actions}");
    assert!(actions.contains(".ralf-release.lock"), "{actions}");
}

#[test]
fn dry_run_reports_a_failing_preflight() {
    let home = tempfile::tempdir().unwrap();
    let mut c = common::cmd(home.path());
    c.current_dir(repo_root())
        .args(["lab", "--dry-run", "scripts/release.rhai"])
        .args(ARGS)
        .args(["--min-free-gb", "1000000000"]);
    let (code, out, err) = common::run(c);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("the release would stop before changing anything") && out.contains("GB free"),
        "{out}"
    );
}

#[test]
fn no_rollback_leaves_the_failed_phase_as_it_is() {
    if !docker_common::available_for("release tests") {
        return;
    }
    let lab = RunningLab::start(Some("production-fails"));
    let (code, r, err) = lab.release(&["--no-rollback"]);
    assert_eq!(r["status"], "failed", "{r}\n{err}");
    assert_eq!(r["phase"], "production");
    assert_eq!(code, 1);
    assert!(err.contains("rollback is off"), "{err}");
    // Staging and production keep the new commit for debugging; nothing was undone.
    for h in ["thinkpad", "rtx1080"] {
        assert_eq!(lab.head(h), lab.commit(h, "v1.2"), "{h}: {r}");
        assert_eq!(r["hosts"][h]["rolled_back"], false, "{r}");
    }
    assert_eq!(lab.running("thinkpad"), ["1.2"]);
    assert_eq!(lab.head("vps"), lab.commit("vps", "v1.1"));
}

/// The secrets phase synchronises: a host whose app.env drifted gets the control machine's source
/// (mode 0600 there and on the host), verified; the others are left alone; the result says which
/// host was repaired; the secret's value appears in no output, log line or journal entry. A source
/// that others can read stops the release before anything changes.
#[test]
fn drifted_secrets_are_repaired_from_the_source_and_never_shown() {
    if !docker_common::available_for("release tests") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let lab = RunningLab::start(Some("secrets-drift"));
    let source = PathBuf::from(lab.info()["hosts"]["secrets_file"].as_str().unwrap());
    let truth = std::fs::read_to_string(&source).unwrap();
    let canary = truth
        .lines()
        .next()
        .unwrap()
        .strip_prefix("APP_SECRET=")
        .unwrap()
        .to_string();
    let drifted = std::fs::read_to_string(lab.app_dir("rtx1080").join("app.env")).unwrap();
    assert_ne!(drifted, truth, "the scenario drifts rtx1080");
    let stale = drifted
        .lines()
        .next()
        .unwrap()
        .strip_prefix("APP_SECRET=")
        .unwrap()
        .to_string();
    let untouched = std::fs::metadata(lab.app_dir("vps").join("app.env"))
        .unwrap()
        .modified()
        .unwrap();

    let mut c = lab.ralf_sh();
    c.args(["--log-format", "json", "-v", "scripts/release.rhai"])
        .args(ARGS);
    let (code, out, err) = common::run(c);
    let r = result_of(&out, &err);
    assert_eq!(r["status"], "success", "{r}\n{err}");
    assert_eq!(code, 0);
    assert_eq!(
        r["warnings"],
        serde_json::json!([
            "secrets: app.env was out of date on rtx1080; replaced from app_env and verified"
        ]),
        "{r}"
    );
    for h in ["thinkpad", "rtx1080", "vps"] {
        let f = lab.app_dir(h).join("app.env");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), truth, "{h}'s app.env");
    }
    let mode = std::fs::metadata(lab.app_dir("rtx1080").join("app.env"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the repaired file is private");
    assert_eq!(
        std::fs::metadata(lab.app_dir("vps").join("app.env"))
            .unwrap()
            .modified()
            .unwrap(),
        untouched,
        "a host in sync is not rewritten"
    );
    let journal = std::fs::read(lab.home.path().join("state.db")).unwrap();
    let journal = String::from_utf8_lossy(&journal);
    for (what, text) in [
        ("stdout", out.as_str()),
        ("stderr", err.as_str()),
        ("journal", &*journal),
    ] {
        assert!(!text.contains(&canary), "the secret appears in {what}");
        assert!(!text.contains(&stale), "the stale secret appears in {what}");
    }

    // A source readable by others: aborted at the secrets phase, nothing deployed.
    std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, r, err) = lab.release(&[]);
    assert_eq!(
        (r["status"].as_str(), r["phase"].as_str(), code),
        (Some("aborted"), Some("secrets"), 1),
        "{r}\n{err}"
    );
    assert!(r["error"].as_str().unwrap().contains("chmod 600"), "{r}");
}

/// `--gate production`: the production phase waits for an approval; denied (scenario
/// `gate-deny`), it fails before changing production, and staging is rolled back as for any
/// production failure.
#[test]
fn a_denied_gate_stops_the_release_before_production() {
    if !docker_common::available_for("release tests") {
        return;
    }
    let lab = RunningLab::start(Some("gate-deny"));
    let (code, r, err) = lab.release(&["--gate", "production"]);
    assert_eq!(
        (r["status"].as_str(), r["phase"].as_str(), code),
        (Some("rolled_back"), Some("production"), 1),
        "{r}\n{err}"
    );
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("production not approved: denied by telegram:@admin via telegram"),
        "{r}"
    );
    assert_eq!(r["hosts"]["rtx1080"]["deployed"], false, "{r}");
    lab.assert_host(&r, "thinkpad", "v1.1", &[], true);
    assert_eq!(lab.head("rtx1080"), lab.commit("rtx1080", "v1.1"));
    let mut c = lab.ralf_sh();
    c.arg("scripts/release.rhai")
        .args(ARGS)
        .args(["--gate", "prod"]);
    let (code, _, err) = common::run(c);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--gate: no phase prod; phases: preflight, secrets, snapshots, staging, tests, production, vps, verification"), "{err}");
}

#[test]
fn skip_tests_skips_phase_5_and_says_so() {
    if !docker_common::available_for("release tests") {
        return;
    }
    // The tests would fail; skipped, the release goes through.
    let lab = RunningLab::start(Some("tests-fail"));
    let (code, r, err) = lab.release_args(
        &["v1.2", "staging", "--min-free-gb", "0.5"],
        &["--skip-tests"],
    );
    assert_eq!(r["status"], "success", "{r}\n{err}");
    assert_eq!(code, 0);
    assert_eq!(
        r["warnings"],
        serde_json::json!(["tests skipped (--skip-tests)"]),
        "{r}"
    );
    lab.assert_host(&r, "thinkpad", "v1.2", &["1.2"], false);
}

/// kill -9 while production deploys, then `ralf-sh resume`: the resumed release keeps its host
/// locks (they hold its run id) and the rollback points of its first attempt, so the failure that
/// follows rolls staging back to v1.1, not to the v1.2 the first attempt had put there.
#[test]
fn kill_9_mid_release_then_resume_rolls_back_to_the_first_rollback_points() {
    if !docker_common::available_for("release tests") {
        return;
    }
    let lab = RunningLab::start(Some("production-fails"));
    let v12 = lab.commit("thinkpad", "v1.2");
    let mut c = lab.ralf_sh();
    c.arg("scripts/release.rhai")
        .args(ARGS)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let t0 = std::time::Instant::now();
    // Staging deployed, tests passed: production's checkout is under way.
    while lab.head("rtx1080") != lab.commit("rtx1080", "v1.2") {
        assert!(t0.elapsed().as_secs() < 120, "production never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        lab.head("thinkpad"),
        v12,
        "staging was deployed before the kill"
    );
    let db = rusqlite::Connection::open(lab.home.path().join("state.db")).unwrap();
    let run: String = db
        .query_row("SELECT id FROM runs", [], |r| r.get(0))
        .unwrap();
    let mut c = lab.ralf_sh();
    c.args(["resume", &run]);
    let (code, out, err) = common::run(c);
    let r = result_of(&out, &err);
    assert_eq!(r["status"], "rolled_back", "{r}\n{err}");
    assert_eq!(r["phase"], "production", "{r}");
    assert_eq!(code, 1);
    assert!(!err.contains("another release is in progress"), "{err}");
    assert_eq!(
        r["hosts"]["thinkpad"]["before"].as_str(),
        Some(lab.commit("thinkpad", "v1.1").as_str()),
        "{r}"
    );
    lab.assert_host(&r, "thinkpad", "v1.1", &[], true);
    lab.assert_host(&r, "rtx1080", "v1.1", &[], true);
    // The locks were given back.
    assert!(!lab.app_dir("thinkpad").join(".ralf-release.lock").exists());
}

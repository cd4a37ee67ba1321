//! End-to-end tests of the CLI on the built binary: errors, exit codes, signals, shebang,
//! ARGS, config and option did-you-mean, stdlib override, secrets redaction, check, docs.

use crate::common;

use common::{cmd, run, text};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn eval_prints_value_and_exits_0() {
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    c.args(["-e", "40 + 2"]);
    let (code, out, err) = run(c);
    assert_eq!((code, out.as_str()), (0, "42\n"), "stderr: {err}");
}

#[test]
fn compile_error_exact_stderr_and_exit_2() {
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    c.current_dir(fixtures()).arg("syntax_error.rhai");
    let (code, out, err) = run(c);
    assert_eq!(code, 2);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "error: Unexpected ';'\n  --> syntax_error.rhai:2:14\n  |\n2 | let b = (a + ;\n  |              ^\n"
    );
}

#[test]
fn runtime_error_in_imported_module_exact_stderr_and_exit_1() {
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    c.current_dir(fixtures()).arg("uses_module.rhai");
    let (code, _out, err) = run(c);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: [invalid] json::parse: key must be a string at line 1 column 2\n\
         \x20 --> mods/inner.rhai:4:11\n\
         \x20 |\n\
         4 |     json::parse(x)\n\
         \x20 |           ^\n\
         \x20 = in call to `explode` at mods/inner.rhai:8:5\n\
         \x20 = in call to `outer` at uses_module.rhai:4:12\n\
         \x20 = in call to `run_it` at uses_module.rhai:7:1\n"
    );
}

#[test]
fn compile_error_inside_imported_module_names_the_module() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("bad.rhai"), "fn f( {\n").unwrap();
    std::fs::write(
        home.path().join("main.rhai"),
        "import \"bad\" as b;\nb::f();\n",
    )
    .unwrap();
    let mut c = cmd(home.path());
    c.arg("main.rhai");
    let (code, _, err) = run(c);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("in module `bad.rhai` imported at main.rhai:1:8"),
        "{err}"
    );
}

#[test]
fn uncaught_throw_is_rendered_not_dumped() {
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    c.args(["-e", "throw #{ code: 7 }"]);
    let (code, _, err) = run(c);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: uncaught exception: #{\"code\": 7}\n  --> <eval>:1:1\n"),
        "{err}"
    );
    assert!(!err.contains("ErrorRuntime"), "{err}");
}

#[test]
fn exit_code_from_script() {
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    c.args(["-e", "exit(3)"]);
    assert_eq!(run(c).0, 3);
}

#[test]
fn shebang_script_runs_with_args() {
    let home = tempfile::tempdir().unwrap();
    let bin_dir = home.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::os::unix::fs::symlink(common::bin(), bin_dir.join("ralf-sh")).unwrap();
    let script = home.path().join("greet");
    std::fs::write(
        &script,
        "#!/usr/bin/env ralf-sh\nprint(`args=${ARGS.len()} first=${ARGS[0]} second=${ARGS[1]}`);\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = std::process::Command::new(&script);
    c.args(["one two", "--flag"])
        .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
        .env("HOME", home.path())
        .env("CI", "1");
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "args=2 first=one two second=--flag\n");
}

fn sigint_exits_130(expr: &str) {
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    // The script says when it is running (the signal handlers are in place before it starts).
    c.args(["-e", &format!("print(\"started\"); {expr}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    common::wait_for_line(&mut child, "started");
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited before the signal"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    // Generous limit (shared CI machine); the behaviour under test is "stops by itself".
    let code = common::wait_exit(&mut child, Duration::from_secs(5));
    assert_eq!(code, Some(130), "did not exit 130 after SIGINT");
}

#[test]
fn sigint_stops_busy_loop() {
    sigint_exits_130("loop {}");
}

#[test]
fn sigint_stops_sleep() {
    sigint_exits_130("sleep(60)");
}

#[test]
fn sigterm_cancels_too() {
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    c.args(["-e", "print(\"started\"); sleep(60)"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    common::wait_for_line(&mut child, "started");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(
        common::wait_exit(&mut child, Duration::from_secs(5)),
        Some(130)
    );
}

#[test]
fn unknown_config_key_did_you_mean_with_line() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("ralf.yaml"),
        "hosts:\n  vps:\n    address: 203.0.113.7\n    usr: deploy\n",
    )
    .unwrap();
    let mut c = cmd(home.path());
    c.args(["-e", "1"]);
    let (code, _, err) = run(c);
    assert_eq!(code, 2);
    assert!(
        err.contains("ralf.yaml:4:5: unknown key `usr` in `hosts.vps`; did you mean `user`?"),
        "{err}"
    );
}

#[test]
fn explicit_missing_config_is_an_error() {
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    c.args(["--config", "nope.yaml", "-e", "1"]);
    let (code, _, err) = run(c);
    assert_eq!(code, 2);
    assert!(err.contains("nope.yaml: config file not found"), "{err}");
}

#[test]
fn unknown_option_key_did_you_mean() {
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    c.args(["-e", "retry(#{ attemps: 2 }, || 1)"]);
    let (code, _, err) = run(c);
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown option `attemps` for retry; did you mean `attempts`?"),
        "{err}"
    );
    assert!(err.contains("--> <eval>:1:1"), "{err}");
}

#[test]
fn stdlib_module_in_cwd_overrides_embedded() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("stdlib")).unwrap();
    std::fs::write(
        home.path().join("stdlib/hello.rhai"),
        "fn greet() { \"overridden\" }\n",
    )
    .unwrap();
    let mut c = cmd(home.path());
    c.args(["-e", "import \"ralf/hello\" as h; h::greet()"]);
    let (code, out, err) = run(c);
    assert_eq!((code, out.as_str()), (0, "overridden\n"), "{err}");
    // Without the override the embedded module answers.
    std::fs::remove_file(home.path().join("stdlib/hello.rhai")).unwrap();
    let mut c = cmd(home.path());
    c.args(["-e", "import \"ralf/hello\" as h; h::greet()"]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{err}");
    assert_ne!(out, "overridden\n");
}

#[test]
fn unknown_stdlib_module_did_you_mean() {
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    c.args(["-e", "import \"ralf/helo\" as h;"]);
    let (code, _, err) = run(c);
    assert_eq!(code, 1);
    assert!(
        err.contains("no stdlib module `ralf/helo`; did you mean `ralf/hello`?"),
        "{err}"
    );
}

const CANARY: &str = "canary-7f3c9e2b1d";

#[test]
fn canary_secret_never_printed_logged_or_in_errors() {
    let home = tempfile::tempdir().unwrap();
    let script = "let t = secret(\"api\");\n\
         print(t);\n\
         print(`token is ${t}`);\n\
         log::info(`log ${t}`, #{ tok: t });\n\
         log::warn(t);\n\
         try { json::parse(t); } catch (e) { print(e.message); }\n\
         throw `boom ${t}`;\n";
    std::fs::write(home.path().join("leak.rhai"), script).unwrap();
    for fmt in ["human", "json"] {
        let mut c = cmd(home.path());
        c.env("RALF_SECRET_API", CANARY)
            .args(["--log-format", fmt, "leak.rhai"]);
        let (code, out, err) = run(c);
        assert_eq!(code, 1);
        assert!(!out.contains(CANARY), "stdout leaked: {out}");
        assert!(!err.contains(CANARY), "stderr leaked: {err}");
        assert!(out.contains("token is «redacted»"), "{out}");
        assert!(err.contains("boom «redacted»"), "{err}");
        if fmt == "json" {
            let line = err
                .lines()
                .find(|l| l.contains("\"log «redacted»"))
                .expect("json log line");
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["level"], "info");
            assert!(v["run_id"].as_str().unwrap().len() > 10);
        }
    }
}

/// A canary with the characters that change under encoding: never seen in any form.
#[test]
fn a_hostile_canary_is_scrubbed_in_every_encoding_and_from_config_load_on() {
    let canary = "ca\"na\\ry'%ü 7788\nend";
    let home = tempfile::tempdir().unwrap();
    // Named by the config only: registered when the config loads, before any client connects.
    std::fs::write(
        home.path().join("ralf.yaml"),
        "semaphore:\n  url: http://127.0.0.1:9\n  token_env: RALF_TEST_SEM_TOKEN\n",
    )
    .unwrap();
    let script = "let t = env(\"RALF_TEST_SEM_TOKEN\");\n\
         print(t);\n\
         print(json::stringify(#{ t: t }));\n\
         print(json::stringify(json::stringify(#{ t: t })));\n\
         log::info(`log ${t}`, #{ tok: t });\n\
         log::info(json::stringify([t]));\n\
         throw `boom ${t}`;\n";
    std::fs::write(home.path().join("leak.rhai"), script).unwrap();
    let json = serde_json::to_string(canary).unwrap();
    let json = &json[1..json.len() - 1];
    let forms = [
        canary.to_string(),
        json.to_string(),
        "ca%22na%5Cry%27%25%C3%BC%207788".to_string(),
        "7788".to_string(),
    ];
    for fmt in ["human", "json"] {
        let mut c = cmd(home.path());
        c.env("RALF_TEST_SEM_TOKEN", canary)
            .args(["--log-format", fmt, "leak.rhai"]);
        let (code, out, err) = run(c);
        assert_eq!(code, 1, "{out}\n{err}");
        for f in &forms {
            assert!(!out.contains(f.as_str()), "stdout has {f:?}: {out}");
            assert!(!err.contains(f.as_str()), "stderr has {f:?}: {err}");
        }
        assert!(out.contains("«redacted»"), "{out}");
    }
    // The state store (history) holds the run's error, scrubbed.
    let mut c = cmd(home.path());
    c.env("RALF_TEST_SEM_TOKEN", canary)
        .args(["history", "--json"]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{err}");
    for f in &forms {
        assert!(!out.contains(f.as_str()), "history has {f:?}: {out}");
    }
    let db = std::fs::read(home.path().join(".state/ralf/state.db")).unwrap_or_default();
    let db = String::from_utf8_lossy(&db);
    for f in &forms {
        assert!(!db.contains(f.as_str()), "state db has {f:?}");
    }
}

#[test]
fn secret_from_config_file_requires_private_mode() {
    let home = tempfile::tempdir().unwrap();
    let f = home.path().join("tok");
    std::fs::write(&f, format!("{CANARY}\n")).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(
        home.path().join("ralf.yaml"),
        format!("secrets:\n  api:\n    file: {}\n", f.display()),
    )
    .unwrap();
    let mut c = cmd(home.path());
    c.args(["-e", "secret(\"api\").len()"]);
    let (code, _, err) = run(c);
    assert_eq!(code, 1);
    assert!(err.contains("readable by group or others"), "{err}");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut c = cmd(home.path());
    c.args(["-e", "secret(\"api\").len()"]);
    let (code, out, err) = run(c);
    assert_eq!((code, out.as_str()), (0, "17\n"), "{err}");
}

#[test]
fn missing_secret_says_how_to_set_it() {
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    c.args(["-e", "secret(\"pve-token\")"]);
    let (code, _, err) = run(c);
    assert_eq!(code, 1);
    assert!(err.contains("export RALF_SECRET_PVE_TOKEN"), "{err}");
}

#[test]
fn config_command_prints_effective_config() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("ralf.yaml"),
        "semaphore:\n  url: https://semaphore.example\n  project: 1\n  token_env: RALF_SEMAPHORE_TOKEN\n",
    )
    .unwrap();
    let mut c = cmd(home.path());
    c.arg("config");
    let (code, out, _) = run(c);
    assert_eq!(code, 0);
    assert!(out.starts_with("# config: ralf.yaml\n"), "{out}");
    assert!(out.contains("token_env: RALF_SEMAPHORE_TOKEN"), "{out}");
}

#[test]
fn check_flags_unknown_functions_and_exits_2() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("s.rhai"),
        "let x = json::pars(\"1\");\nsleeep(1);\n",
    )
    .unwrap();
    std::fs::write(home.path().join("ok.rhai"), "fn f() { sleep(0) }\nf();\n").unwrap();
    let mut c = cmd(home.path());
    c.args(["check", "ok.rhai"]);
    assert_eq!(run(c).0, 0);
    let mut c = cmd(home.path());
    c.args(["check", "s.rhai", "ok.rhai"]);
    let (code, _, err) = run(c);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "unknown function `json::pars`; did you mean `json::parse`?\n  --> s.rhai:1:15"
        ),
        "{err}"
    );
    assert!(
        err.contains("unknown function `sleeep`; did you mean `sleep`?\n  --> s.rhai:2:1"),
        "{err}"
    );
    assert!(err.contains("2 problem(s) found"), "{err}");
}

#[test]
fn check_has_no_side_effects() {
    let home = tempfile::tempdir().unwrap();
    let marker = home.path().join("marker");
    std::fs::write(
        home.path().join("s.rhai"),
        format!("exit(9);\nprint(\"{}\");\n", marker.display()),
    )
    .unwrap();
    let mut c = cmd(home.path());
    c.args(["check", "s.rhai"]);
    let (code, out, _) = run(c);
    assert_eq!(code, 0);
    assert!(out.starts_with("ok:"), "{out}");
}

#[test]
fn usage_error_exits_2() {
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    c.arg("--no-such-flag");
    assert_eq!(run(c).0, 2);
    let mut c = cmd(home.path());
    c.arg("missing-script.rhai");
    let (code, _, err) = run(c);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read missing-script.rhai"), "{err}");
}

#[test]
fn completions_are_generated() {
    let home = tempfile::tempdir().unwrap();
    for sh in ["bash", "zsh", "fish"] {
        let mut c = cmd(home.path());
        c.args(["completions", sh]);
        let (code, out, _) = run(c);
        assert_eq!(code, 0);
        assert!(out.contains("ralf-sh"), "{sh}");
    }
}

#[test]
fn script_tests_count_passes_and_failures() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("t.rhai"),
        "fn test_a() { assert(true); }\nfn test_b() { assert_eq(1, 2); }\nfn helper() { 1 }\n",
    )
    .unwrap();
    let mut c = cmd(home.path());
    c.args(["test", "t.rhai"]);
    let (code, out, _) = run(c);
    assert_eq!(code, 1);
    assert!(out.contains("ok     t.rhai::test_a"), "{out}");
    assert!(out.contains("FAILED t.rhai::test_b"), "{out}");
    assert!(out.contains("1 passed, 1 failed"), "{out}");
}

#[test]
fn core_script_tests_pass() {
    let mut c = cmd(Path::new(env!("CARGO_MANIFEST_DIR")));
    c.args(["test", "tests/rhai/core.rhai"]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
}

#[test]
fn dry_run_lists_nothing_changed_for_pure_scripts() {
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    c.args(["--dry-run", "-e", "1"]);
    let (code, _, err) = run(c);
    assert_eq!(code, 0);
    assert!(
        err.contains("dry run: nothing was changed. No changing call was made."),
        "{err}"
    );
}

#[test]
fn hello_script_runs() {
    let mut c = cmd(Path::new(env!("CARGO_MANIFEST_DIR")));
    c.args(["scripts/hello.rhai", "tester"]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("hello, tester\n"), "{out}");
    assert!(out.contains("parallel: [\"A\", \"B\", \"C\"]"), "{out}");
}

#[test]
fn stdin_is_not_a_tty_so_confirm_is_false_unless_yes() {
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    c.args(["-e", "confirm(\"go?\")"])
        .stdin(std::process::Stdio::null());
    assert_eq!(run(c).1, "false\n");
    let mut c = cmd(home.path());
    c.args(["--yes", "-e", "confirm(\"go?\")"])
        .stdin(std::process::Stdio::null());
    assert_eq!(run(c).1, "true\n");
    let _ = std::io::stdout().flush();
}

#[test]
fn script_args_arrive_intact_even_when_they_look_like_options_or_commands() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("a.rhai"), "print(ARGS);").unwrap();
    let mut c = cmd(home.path());
    c.args([
        "--log-format",
        "json",
        "a.rhai",
        "check",
        "--config",
        "x",
        "-v",
        "--",
    ]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "[\"check\", \"--config\", \"x\", \"-v\", \"--\"]\n");
}

#[test]
fn global_options_before_a_subcommand() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("c.yaml"),
        "ssh:\n  known_hosts: accept_new\n",
    )
    .unwrap();
    let mut c = cmd(home.path());
    c.args(["--config", "c.yaml", "config"]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("known_hosts: accept_new"), "{out}");
}

/// Run with stdout a pipe whose reading end is already closed: every write gets EPIPE.
fn run_into_closed_pipe(mut c: std::process::Command) -> (i32, String) {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { libc::close(fds[0]) };
    let w = unsafe { std::process::Stdio::from_raw_fd(fds[1]) };
    let o = c
        .stdout(w)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    (o.status.code().unwrap_or(-1), text(&o.stderr))
}

#[test]
fn a_closed_stdout_ends_listing_commands_quietly_with_their_normal_code() {
    let home = tempfile::tempdir().unwrap();
    // One recorded run, so history has something to print.
    let (code, _, err) = run({
        let mut c = cmd(home.path());
        c.args(["-e", "1"]);
        c
    });
    assert_eq!(code, 0, "{err}");
    for args in [
        &["history"][..],
        &["history", "--json"][..],
        &["history", "--service", "redis"][..],
        &["history", "--run", "nope"][..],
        &["docs", "--format", "json"][..],
        &["docs"][..],
        &["config"][..],
        &["completions", "bash"][..],
    ] {
        let mut c = cmd(home.path());
        c.args(args);
        let (code, err) = run_into_closed_pipe(c);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(code == 0 || code == 1, "{args:?} exited {code}: {err}");
    }
}

#[test]
fn a_runaway_loop_ends_at_the_operations_limit_with_a_clean_error() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("ralf.yaml"),
        "limits:\n  max_operations: 200000\n",
    )
    .unwrap();
    std::fs::write(
        home.path().join("spin.rhai"),
        "let n = 0;\nloop { n += 1; }\n",
    )
    .unwrap();
    let mut c = cmd(home.path());
    c.arg("spin.rhai");
    let (code, out, err) = run(c);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("spin.rhai:2"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Every shipped script has a usage: `--help` exits 0 and lists the options; a bad option is one
/// line on stderr and exit 2, before the script does anything.
#[test]
fn shipped_scripts_have_help_and_usage_errors() {
    let home = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (script, wants) in [
        (
            "deploy_all.rhai",
            &[
                "--priority VALUE",
                "--parallel N",
                "--[no-]advisor",
                "--dag",
                "--only A,B",
            ][..],
        ),
        ("deploy_service.rhai", &["NAME", "--[no-]advisor"][..]),
        ("status.rhai", &["--[no-]live"][..]),
        ("rollback.rhai", &["NAME [SNAPSHOT]"][..]),
        (
            "runbook.rhai",
            &["--group VALUE", "--service VALUE", "--timeout VALUE"][..],
        ),
        (
            "release.rhai",
            &[
                "COMMIT ENV",
                "--vps-attempts N",
                "--retry-delay N",
                "--pve A,B",
            ][..],
        ),
    ] {
        let path = repo.join("scripts").join(script);
        let mut c = cmd(home.path());
        c.arg(&path).arg("--help");
        let (code, out, err) = run(c);
        assert_eq!(code, 0, "{script} --help: {out}{err}");
        assert!(out.starts_with("usage: ralf-sh "), "{script}: {out}");
        for w in wants {
            assert!(out.contains(w), "{script} --help lacks {w}: {out}");
        }
        let mut c = cmd(home.path());
        c.arg(&path).arg("--no-such-option");
        let (code, out, err) = run(c);
        assert_eq!(code, 2, "{script}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{script}: one line: {err}");
        assert!(
            err.contains("unknown option `--no-such-option`"),
            "{script}: {err}"
        );
    }
    let mut c = cmd(home.path());
    c.arg(repo.join("scripts/deploy_all.rhai"))
        .args(["--parallel", "zero"]);
    let (code, _, err) = run(c);
    assert_eq!(code, 2);
    assert!(
        err.contains("`--parallel` needs a whole number, got `zero`"),
        "{err}"
    );
    let mut c = cmd(home.path());
    c.arg(repo.join("scripts/deploy_service.rhai"));
    let (code, _, err) = run(c);
    assert_eq!(code, 2);
    assert!(err.contains("missing NAME"), "{err}");
}

/// Every shipped script and stdlib module passes `ralf-sh check`, and the two main runbooks stay
/// readable on a screen or two (issue 16: release.rhai under 200 lines, deploy_all.rhai under 40).
#[test]
fn shipped_scripts_and_modules_check_clean_and_stay_short() {
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["scripts", "stdlib"] {
        for e in std::fs::read_dir(repo.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "rhai") {
                files.push(p);
            }
        }
    }
    assert!(files.len() >= 10, "{files:?}");
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    c.current_dir(&repo).arg("check").args(&files);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.trim(), format!("ok: {} script(s) checked", files.len()));
    let lines = |f: &str| {
        std::fs::read_to_string(repo.join(f))
            .unwrap()
            .lines()
            .count()
    };
    assert!(lines("scripts/release.rhai") < 200);
    // The flow plus its documented options (preflight, --plan, --expect-plan since issue 29).
    assert!(lines("scripts/deploy_all.rhai") < 45);
}

/// `ralf-sh docs`: namespaces, types with typed properties, stdlib modules; `.d.rhai` files with
/// script types only (no Rust result types, no `?`).
#[test]
fn docs_by_namespace_type_and_stdlib_module() {
    let home = tempfile::tempdir().unwrap();
    let mut c = cmd(home.path());
    c.arg("docs");
    let (code, md, err) = run(c);
    assert_eq!(code, 0, "{err}");
    for heading in [
        "# Namespaces",
        "## semaphore::",
        "# Types",
        "## Guest",
        "## Task",
        "# Stdlib modules",
        "## ralf/deploy",
        "## ralf/smoke",
    ] {
        assert!(md.lines().any(|l| l == heading), "no {heading}");
    }
    assert!(md.contains("| `vmid` | int | VMID. |"), "typed properties");
    assert!(md.contains("### `snapshot(g: Guest, name: string) -> PveTask`"));
    assert!(md.contains("### `deploy::run_plan("), "stdlib functions");
    assert!(!md.contains("ralf_sh::") && !md.contains("RhaiResult"));
    let dir = home.path().join("defs");
    let mut c = cmd(home.path());
    c.args(["docs", "--format", "defs", "--out"]).arg(&dir);
    let (code, _, err) = run(c);
    assert_eq!(code, 0, "{err}");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for l in text.lines().filter(|l| !l.starts_with("///")) {
            assert!(!l.contains("RhaiResult") && !l.contains('?'), "{l}");
            n += l.starts_with("fn ") as usize;
        }
    }
    assert!(n > 100, "{n} declarations");
    let stat = std::fs::read_to_string(dir.join("__static__.d.rhai")).unwrap();
    assert!(
        stat.contains("fn get vmid(this: Guest) -> int;"),
        "getters typed"
    );
}

//! REPL tests through a pseudo-terminal (rexpect).

use crate::common;

use rexpect::session::{spawn_command, PtySession};

const CANARY: &str = "canary-a1b2c3d4e5";

fn repl(home: &std::path::Path) -> PtySession {
    let mut c = common::cmd(home);
    c.arg("repl")
        .env("TERM", "xterm")
        .env("RALF_SECRET_TOKEN", CANARY);
    let mut p = spawn_command(c, Some(20_000)).expect("spawn repl");
    prompt(&mut p);
    p
}

/// Wait until the line editor is ready for input: rustyline (19, `tty/unix.rs`) switches the
/// terminal to raw mode first and announces bracketed paste right after, so from that sequence on
/// typed input is kept for the editor. Matching the prompt text alone is not enough: the editor
/// redraws it on every keystroke.
fn prompt(p: &mut PtySession) {
    p.exp_string("\u{1b}[?2004h").expect("prompt");
}

#[test]
fn multiline_function_and_variables_persist() {
    let home = tempfile::tempdir().unwrap();
    let mut p = repl(home.path());
    p.send_line("let base = 40;").unwrap();
    prompt(&mut p);
    // A function definition over three lines: continues while the block is open, each further
    // line under the continuation prompt.
    p.send_line("fn add(x) {").unwrap();
    prompt(&mut p);
    p.exp_string(" ...> ").unwrap();
    p.send_line("  x + base_arg(x)").unwrap();
    prompt(&mut p);
    p.exp_string(" ...> ").unwrap();
    p.send_line("}").unwrap();
    prompt(&mut p);
    p.exp_string("ralf> ").unwrap();
    p.send_line("fn base_arg(x) { 2 }").unwrap();
    prompt(&mut p);
    p.send_line("add(base)").unwrap();
    p.exp_string("42").unwrap();
    prompt(&mut p);
    p.send_line(":quit").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn tab_completes_namespace_function() {
    let home = tempfile::tempdir().unwrap();
    let mut p = repl(home.path());
    p.send("json::str").unwrap();
    p.flush().unwrap();
    p.exp_string("json::str").unwrap(); // the editor has read it
    p.send("\t").unwrap();
    p.flush().unwrap();
    p.exp_string("json::stringify").unwrap();
    p.send_line("(#{a: 1})").unwrap();
    p.exp_string("{\"a\":1}").unwrap();
    prompt(&mut p);
    p.send_line(":quit").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn help_shows_signature_and_doc() {
    let home = tempfile::tempdir().unwrap();
    let mut p = repl(home.path());
    p.send_line(":help retry").unwrap();
    p.exp_string("retry(opts: map, f: Fn) -> any").unwrap();
    p.exp_string("Call `f` until it succeeds").unwrap();
    prompt(&mut p);
    p.send_line(":help retyr").unwrap();
    p.exp_string("did you mean `retry`?").unwrap();
    p.send_line(":quit").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn history_is_written_without_secrets() {
    let home = tempfile::tempdir().unwrap();
    let mut p = repl(home.path());
    p.send_line("let t = secret(\"token\");").unwrap();
    prompt(&mut p);
    p.send_line("t").unwrap();
    p.exp_string("redacted").unwrap();
    prompt(&mut p);
    // A secret typed literally (after it was loaded) is scrubbed from history too.
    p.send_line(&format!("let again = \"{CANARY}\";")).unwrap();
    prompt(&mut p);
    p.send_line(":quit").unwrap();
    p.exp_eof().unwrap();
    let hist = std::fs::read_to_string(home.path().join(".state/ralf/history")).unwrap();
    assert!(hist.contains("let t = secret(\"token\");"), "{hist}");
    assert!(hist.contains("let again = \"«redacted»\";"), "{hist}");
    assert!(!hist.contains(CANARY), "{hist}");
}

#[test]
fn ctrl_c_clears_line_and_ctrl_d_leaves() {
    let home = tempfile::tempdir().unwrap();
    let mut p = repl(home.path());
    p.send("let zz = ").unwrap();
    p.flush().unwrap();
    p.send_control('c').unwrap();
    prompt(&mut p);
    p.send_line("1 + 1").unwrap();
    p.exp_string("2").unwrap();
    prompt(&mut p);
    // Ctrl-C while a line runs stops that line, not the shell.
    // The line says when it runs (its echo shows `"loop" + "ing"`, its output `looping`).
    p.send_line(r#"print("loop" + "ing"); loop { }"#).unwrap();
    p.exp_string("looping").unwrap();
    p.send_control('c').unwrap();
    p.exp_string("cancelled").unwrap();
    prompt(&mut p);
    p.send_line("40 + 2").unwrap();
    p.exp_string("42").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn escape_sequences_never_reach_the_terminal_raw() {
    let home = tempfile::tempdir().unwrap();
    let mut p = repl(home.path());
    // A value shown by the REPL, and a printed one, each with a window-title and a clear-screen sequence.
    p.send_line(r#"let hostile = "x\x1b]0;pwned\x07y\x1b[2Jz"; hostile"#)
        .unwrap();
    p.exp_string(r"x\x1b]0;pwned\x07y\x1b[2Jz").unwrap();
    prompt(&mut p);
    p.send_line(r#"print(`printed ${hostile}`)"#).unwrap();
    p.exp_string("printed x").unwrap();
    let line = p.exp_string("z").unwrap();
    assert!(
        !line.contains("\u{1b}]0;") && !line.contains("\u{1b}[2J"),
        "raw: {line:?}"
    );
    assert!(line.contains(r"\x1b]0;pwned"), "{line:?}");
    prompt(&mut p);
    p.send_line(":quit").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn method_completion_offers_no_setters_operators_or_closures() {
    let home = tempfile::tempdir().unwrap();
    let mut p = repl(home.path());
    p.send_line("let s = \"abc\";").unwrap();
    prompt(&mut p);
    p.send("s.").unwrap();
    p.flush().unwrap();
    p.exp_string("s.").unwrap(); // the editor has read it
    p.send("\t\t").unwrap();
    p.flush().unwrap();
    // The list shows real methods (`trimmed`, `to_upper`, ...), and nothing with a `$` or an operator.
    let (listed, _) = p.exp_regex("to_upper[^\\n]*").unwrap();
    let listed = listed + p.exp_string("ralf>").unwrap_or_default().as_str();
    assert!(!listed.contains('$'), "{listed}");
    assert!(
        !listed.contains(" + ") && !listed.contains(" == "),
        "{listed}"
    );
    p.send_control('c').unwrap();
    prompt(&mut p);
    p.send_line(":quit").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn help_finds_namespaces_types_and_stdlib_functions() {
    let home = tempfile::tempdir().unwrap();
    let mut p = repl(home.path());
    p.send_line(":help semaphore").unwrap();
    p.exp_string("semaphore::connect(").unwrap();
    prompt(&mut p);
    p.send_line(":help Guest").unwrap();
    p.exp_string("Guest: An LXC container").unwrap();
    p.exp_string("properties:").unwrap();
    p.exp_string("vmid").unwrap();
    p.exp_string("methods:").unwrap();
    p.exp_string("snapshot(g: Guest, name: string) -> PveTask")
        .unwrap();
    prompt(&mut p);
    p.send_line(":help smoke::run").unwrap();
    p.exp_string("smoke::run(checks)").unwrap();
    p.exp_string("Run every check").unwrap();
    prompt(&mut p);
    p.send_line(":quit").unwrap();
    p.exp_eof().unwrap();
}

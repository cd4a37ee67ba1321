//! Running a script or an expression to its exit code: the script thread, signal handling, the
//! final error report and the dry-run summary. Every entry point (app, commands, lab) uses these.

use crate::engine::{self, Outcome, ScriptEngine};
use crate::error::exit;
use crate::host::Host;
use rhai::Dynamic;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

/// An error report or summary on stderr: secrets redacted, and control sequences that remote text
/// in it may carry (a template name, a server's error body) shown as text, never obeyed.
pub(crate) fn eprint_redacted(s: &str) {
    let redacted = crate::redact::redact(s);
    let text = crate::text::visible_controls(&redacted);
    crate::progress::Progress::new().suspend(|| eprint!("{text}"));
}

pub fn print_dry_run(host: &Host) {
    if !host.opts.dry_run {
        return;
    }
    let actions = host.dry_run_actions();
    let mut out = String::from("\ndry run: nothing was changed. ");
    if actions.is_empty() {
        out.push_str("No changing call was made.\n");
    } else {
        out.push_str(&format!(
            "{} action(s) would have run, in order:\n",
            actions.len()
        ));
        for (i, a) in actions.iter().enumerate() {
            out.push_str(&format!("  {:>3}. {:<12} {}\n", i + 1, a.binding, a.action));
        }
    }
    eprint_redacted(&out);
}

/// First Ctrl-C/SIGTERM cancels the run (exit 130 when it stops); a second one exits at once.
/// The handlers are registered before this returns, so a signal that arrives as soon as the
/// script starts cancels it too (registered inside the spawned task, an early one killed the
/// process before anything was recorded).
pub fn install_signal_handlers(host: &Arc<Host>) {
    use tokio::signal::unix::{signal, SignalKind};
    let cancel = host.cancel.clone();
    let _in_runtime = host.rt.enter();
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!(
            "no SIGINT/SIGTERM handler could be installed: a signal ends the process at once"
        );
        return;
    };
    host.rt.spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
            // A second signal while the first is still being handled exits at once.
            if cancel.is_cancelled() {
                std::process::exit(exit::CANCELLED);
            }
            tracing::warn!("cancelling (press Ctrl-C again to exit at once)");
            cancel.cancel();
        }
    });
}

/// Run `f` on a thread with a large stack (Rhai recursion) and wait for it.
pub fn on_script_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .name("rhai".into())
        .stack_size(32 * 1024 * 1024)
        .spawn(f)
        .expect("spawn script thread")
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Turn the result of a run into an exit code, printing an uncaught error. `print_value`: the
/// final value is the result (`-e`); a script's final value is printed only with `--output json`.
pub fn finish(
    se: &ScriptEngine,
    name: &str,
    r: Result<Outcome, Box<rhai::EvalAltResult>>,
    print_value: bool,
) -> i32 {
    let cancelled = se.host.cancel.is_cancelled();
    let json = se.host.opts.json_output;
    let print = |v: &Dynamic| {
        let text = if json { se.show_json(v) } else { se.show(v) };
        let text = crate::redact::redact(&text);
        let text = if std::io::stdout().is_terminal() {
            crate::text::visible_controls(&text).into_owned()
        } else {
            text
        };
        // A closed stdout drops the result; the exit code and the run record still follow.
        se.host.progress.suspend(|| {
            use std::io::Write;
            let _ = writeln!(std::io::stdout().lock(), "{text}");
        });
    };
    match r {
        Ok(Outcome::Value(v)) => {
            if (print_value || json) && !v.is_unit() {
                print(&v);
            }
            if cancelled {
                exit::CANCELLED
            } else {
                exit::OK
            }
        }
        Ok(Outcome::Exit(code, v)) => {
            if !v.is_unit() {
                print(&v);
            }
            code
        }
        Err(e) => {
            let code = if cancelled {
                exit::CANCELLED
            } else {
                engine::exit_code_for(&e, se.host.changed_anything())
            };
            if crate::logging::is_json() {
                // One JSON line a log pipeline can filter: kind, message, file, line, call chain.
                let (msg, mut fields) = se.error_fields(&e, name);
                if code == exit::CANCELLED {
                    fields["kind"] = "cancelled".into();
                }
                tracing::error!(target: "ralf::error", fields = fields.to_string().as_str(), "{msg}");
            } else if code == exit::CANCELLED {
                eprint_redacted("cancelled\n");
            } else {
                eprint_redacted(&se.render_error(&e, name));
            }
            code
        }
    }
}

pub fn run_eval(host: &Arc<Host>, expr: &str) -> i32 {
    let host = host.clone();
    let expr = expr.to_string();
    on_script_thread(move || {
        let se = engine::build(&host);
        let ast = match se.compile_text("<eval>", &expr) {
            Ok(a) => a,
            Err(msg) => {
                eprint_redacted(&msg);
                return exit::USAGE;
            }
        };
        crate::session::begin_run(&host, "-e", std::slice::from_ref(&expr));
        let mut scope = engine::base_scope(Vec::new());
        let r = se.run(&mut scope, &ast);
        let code = finish(&se, "<eval>", r, true);
        crate::session::finish_run(&host, code);
        code
    })
}

/// The host for a fresh start of `script ARGS`: the interrupted run of it, when there is one
/// (see [`crate::session::interrupted_run`]), else `host` itself.
pub(crate) fn continue_interrupted(host: &Arc<Host>, script: &Path, args: &[String]) -> Arc<Host> {
    let abs = std::fs::canonicalize(script).unwrap_or_else(|_| script.to_path_buf());
    match crate::session::interrupted_run(host, &abs.display().to_string(), args) {
        Some(r) => {
            tracing::warn!(
                target: "ralf::state",
                "run {} of this script ({}, started {}) did not finish: resuming it instead of starting over, so no step runs twice (`ralf-sh resume --abandon {}` closes it)",
                r.id, r.status, r.started_at, r.id
            );
            host.with_run_id(r.id)
        }
        None => host.clone(),
    }
}

pub fn run_script(host: &Arc<Host>, script: &Path, args: Vec<String>) -> i32 {
    let host = host.clone();
    let script = script.to_path_buf();
    on_script_thread(move || {
        *host.script.write() = Some(script.clone());
        *host.args.write() = args.clone();
        let se = engine::build(&host);
        let ast = match se.compile_file(&script) {
            Ok(a) => a,
            Err(msg) => {
                eprint_redacted(&msg);
                return exit::USAGE;
            }
        };
        // Recorded with an absolute path so `ralf-sh resume` works from any folder.
        let abs = std::fs::canonicalize(&script).unwrap_or_else(|_| script.clone());
        crate::session::begin_run(&host, &abs.display().to_string(), &args);
        let mut scope = engine::base_scope(args);
        let r = se.run(&mut scope, &ast);
        let code = finish(&se, &script.display().to_string(), r, false);
        crate::session::finish_run(&host, code);
        code
    })
}

//! Entry points: script file, -e, REPL, check, test, docs, config, completions, lab.

use crate::cli::{Cli, Command, LabCommand};
use crate::engine::{self, exit, Outcome, ScriptEngine};
use crate::host::{Host, HostOptions};
use clap::{CommandFactory, Parser};
use rhai::Dynamic;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// Make `ralf-sh [OPTS] SCRIPT ARGS..` unambiguous: once the first positional word is a script
/// (not a subcommand name), everything after it belongs to the script, even words like `check`.
pub fn normalize_args(argv: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    const WITH_VALUE: &[&str] = &[
        "--config",
        "--log-format",
        "--log-time",
        "--output",
        "-e",
        "--eval",
    ];
    let subcommands: Vec<String> = Cli::command()
        .get_subcommands()
        .flat_map(|c| {
            std::iter::once(c.get_name().to_string()).chain(c.get_all_aliases().map(str::to_string))
        })
        .chain(["help".to_string()])
        .collect();
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].to_string_lossy();
        if a == "--" {
            return argv;
        }
        if a.starts_with('-') && a.len() > 1 {
            if WITH_VALUE.contains(&a.as_ref()) {
                i += 1;
            }
            i += 1;
            continue;
        }
        if subcommands.iter().any(|s| s == a.as_ref()) {
            return argv;
        }
        // A script: protect its arguments from being read as options or subcommands.
        let mut out = argv[..=i].to_vec();
        out.push("--".into());
        out.extend_from_slice(&argv[i + 1..]);
        return out;
    }
    argv
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(normalize_args(std::env::args_os().collect())) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    ExitCode::from(run(cli).clamp(0, 255) as u8)
}

/// Build the tokio runtime every entry point shares.
pub fn runtime() -> tokio::runtime::Runtime {
    crate::engine::bridge::runtime()
}

fn eprint_redacted(s: &str) {
    let text = crate::secrets::redact(s);
    crate::progress::Progress::new().suspend(|| eprint!("{text}"));
}

pub fn run(cli: Cli) -> i32 {
    if let Some(Command::Completions { shell }) = &cli.command {
        let mut cmd = Cli::command();
        let mut buf = Vec::new();
        clap_complete::generate(*shell, &mut cmd, "ralf-sh", &mut buf);
        crate::out::write(&String::from_utf8_lossy(&buf));
        return exit::OK;
    }
    let rt = runtime();
    let loaded = match crate::config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", crate::secrets::redact(&e.message));
            return exit::USAGE;
        }
    };
    let opts = HostOptions {
        dry_run: cli.dry_run,
        yes: cli.yes,
        interactive: std::io::stdin().is_terminal(),
        quiet: cli.quiet > 0,
        json_output: cli.output == crate::cli::OutputFormat::Json,
    };
    // Every secret the config names is scrubbed from the first line of output on.
    crate::secrets::register_configured(&loaded.config);
    let mut host = Host::new(loaded, rt.handle().clone(), opts);
    if let Some(id) = &cli.run_id {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            eprintln!("error: --run-id `{id}`: use letters, digits and - (at most 64)");
            return exit::USAGE;
        }
        host = host.with_run_id(id.clone());
    }
    let verbosity = cli.verbose as i8 - cli.quiet as i8;
    crate::logging::init(cli.log_format, cli.log_time, verbosity, &host.run_id);
    for (what, insecure) in [
        (
            "semaphore",
            host.cfg().semaphore.as_ref().map(|s| s.insecure),
        ),
        ("proxmox", host.cfg().proxmox.as_ref().map(|s| s.insecure)),
    ] {
        if insecure == Some(true) {
            tracing::warn!("{what}: TLS verification is OFF (insecure: true in the config)");
        }
    }
    install_signal_handlers(&host);

    // `lab SCRIPT` runs on a host of its own and prints its own dry-run summary.
    // Lab runs print the dry-run summary of their own host.
    let lab_script = matches!(&cli.command, Some(Command::Lab { .. }));
    let code = match cli.command {
        Some(Command::Repl) => crate::repl::run(&host),
        Some(Command::Check { scripts }) => crate::check::run(&host, &scripts),
        Some(Command::Test { files }) => crate::scripttest::run(&host, &files),
        Some(Command::Docs { format, out }) => crate::docs::run(&host, format, out.as_deref()),
        Some(Command::Config) => {
            crate::out!("{}", crate::config::render_effective(&host.config));
            exit::OK
        }
        Some(Command::Doctor) => crate::commands::doctor::run(&host),
        Some(Command::Completions { .. }) => unreachable!(),
        Some(Command::History { service, run, json }) => {
            crate::commands::history::cli_history(&host, service, run, json)
        }
        Some(Command::Resume { run_id, abandon }) => {
            crate::commands::history::cli_resume(&host, &run_id, abandon)
        }
        Some(Command::Serve) => crate::serve::run(&host),
        Some(Command::State {
            command:
                crate::cli::StateCommand::Migrate {
                    to,
                    password_env,
                    from,
                },
        }) => crate::commands::state::migrate(&host, &to, password_env.as_deref(), from),
        Some(Command::Lab {
            command,
            setup,
            state,
            script,
            args,
        }) => match (command, script) {
            (
                Some(LabCommand::Serve {
                    write_config,
                    controller,
                }),
                _,
            ) => crate::commands::lab::serve(
                &host,
                &rt,
                &setup,
                state,
                write_config.as_deref(),
                controller,
            ),
            (
                Some(LabCommand::Push {
                    to,
                    secret_env,
                    repository,
                    branch,
                    commit,
                }),
                _,
            ) => crate::commands::lab_controller::push(
                &host,
                &to,
                &secret_env,
                &repository,
                &branch,
                &commit.unwrap_or_else(|| hex::encode(rand::random::<[u8; 20]>())),
            ),
            (Some(LabCommand::Repl), _) => crate::commands::lab::repl(&host, &rt, &setup, state),
            (None, Some(script)) => {
                crate::commands::lab::run_script(&host, &rt, &setup, state, &script, args)
            }
            (None, None) => {
                eprintln!("error: `ralf-sh lab` needs a SCRIPT (or `ralf-sh lab repl`, `ralf-sh lab serve`)");
                exit::USAGE
            }
        },
        None => {
            if let Some(expr) = cli.eval {
                run_eval(&host, &expr)
            } else if let Some(script) = cli.script {
                let host = continue_interrupted(&host, &script, &cli.args);
                run_script(&host, &script, cli.args)
            } else {
                crate::repl::run(&host)
            }
        }
    };
    if !lab_script {
        print_dry_run(&host);
    }
    // Do not wait for stray blocking tasks (ssh masters closing etc.) beyond a moment.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    code
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
pub fn install_signal_handlers(host: &Arc<Host>) {
    let cancel = host.cancel.clone();
    host.rt.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
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
        let text = crate::secrets::redact(&text);
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
                engine::exit_code_for(&e)
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
        crate::state::begin_run(&host, "-e", std::slice::from_ref(&expr));
        let mut scope = engine::base_scope(Vec::new());
        let r = se.run(&mut scope, &ast);
        let code = finish(&se, "<eval>", r, true);
        crate::state::finish_run(&host, code);
        code
    })
}

/// The host for a fresh start of `script ARGS`: the interrupted run of it, when there is one
/// (see [`crate::state::interrupted_run`]), else `host` itself.
fn continue_interrupted(host: &Arc<Host>, script: &Path, args: &[String]) -> Arc<Host> {
    let abs = std::fs::canonicalize(script).unwrap_or_else(|_| script.to_path_buf());
    match crate::state::interrupted_run(host, &abs.display().to_string(), args) {
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
        crate::state::begin_run(&host, &abs.display().to_string(), &args);
        let mut scope = engine::base_scope(args);
        let r = se.run(&mut scope, &ast);
        let code = finish(&se, &script.display().to_string(), r, false);
        crate::state::finish_run(&host, code);
        code
    })
}

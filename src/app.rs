//! Entry points: script file, -e, REPL, check, test, docs, config, completions, lab.

use crate::cli::{Cli, Command, LabCommand};
use crate::error::exit;
use crate::host::{Host, HostOptions};
use clap::{CommandFactory, Parser};
use std::io::IsTerminal;
use std::process::ExitCode;

/// Make `ralf-sh [OPTS] SCRIPT ARGS..` unambiguous: once the first positional word is a script
/// (not a subcommand name), everything after it belongs to the script, even words like `check`.
pub(crate) fn normalize_args(argv: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
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
    crate::script::bridge::runtime()
}

pub(crate) fn run(cli: Cli) -> i32 {
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
            eprintln!("error: {}", crate::redact::redact(&e.message));
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
    crate::engine::run::install_signal_handlers(&host);

    // `lab SCRIPT` runs on a host of its own and prints its own dry-run summary.
    // Lab runs print the dry-run summary of their own host.
    let lab_script = matches!(&cli.command, Some(Command::Lab { .. }));
    let code = match cli.command {
        Some(Command::Repl) => crate::commands::repl::run(&host),
        Some(Command::Check { scripts }) => crate::commands::check::run(&host, &scripts),
        Some(Command::Test { files }) => crate::commands::test::run(&host, &files),
        Some(Command::Docs { format, out }) => {
            crate::commands::docs::run(&host, format, out.as_deref())
        }
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
            ) => crate::commands::lab::controller::push(
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
                crate::engine::run::run_eval(&host, &expr)
            } else if let Some(script) = cli.script {
                let host = crate::engine::run::continue_interrupted(&host, &script, &cli.args);
                crate::engine::run::run_script(&host, &script, cli.args)
            } else {
                crate::commands::repl::run(&host)
            }
        }
    };
    if !lab_script {
        crate::engine::run::print_dry_run(&host);
    }
    // Do not wait for stray blocking tasks (ssh masters closing etc.) beyond a moment.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}

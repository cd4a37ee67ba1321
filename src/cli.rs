//! Command line (clap).

use crate::commands::docs::DocsFormat;
use crate::commands::lab::LabArgs;
use crate::logging::{LogFormat, LogTime};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub(crate) enum OutputFormat {
    /// Readable text: multi-line maps, tables for lists of maps
    #[default]
    Text,
    /// One JSON document
    Json,
}

#[derive(Parser, Debug)]
#[command(
    name = "ralf-sh",
    version,
    about = "A Rhai shell for homelab rollouts: Semaphore, Proxmox, SSH, Docker, an LLM advisor and a service catalog",
    long_about = None,
    override_usage = "ralf-sh [OPTIONS] [SCRIPT [ARGS]...]\n       ralf-sh [OPTIONS] -e EXPR\n       ralf-sh [OPTIONS] <COMMAND>",
    after_help = "Exit codes: 0 success, 1 failed, 2 usage or compile error, 3 partial success, 75 another run holds the lock, 130 cancelled."
)]
pub(crate) struct Cli {
    /// Config file (default: $RALF_CONFIG, ./ralf.yaml, $XDG_CONFIG_HOME/ralf/config.yaml)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// How results are printed on stdout: `-e`'s value, a script's `exit(code, value)` (and,
    /// with json, its final value)
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Timestamps on human log lines (auto: when stderr is not a terminal; never: for journald)
    #[arg(long, global = true, value_enum, default_value_t = LogTime::Auto)]
    pub log_time: LogTime,

    /// More log output (-v debug, -vv trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less log output (warnings and errors only)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,

    /// Use this run id (set by `serve` for the runs it starts)
    #[arg(long, global = true, hide = true, value_name = "ID")]
    pub run_id: Option<String>,

    /// Answer yes to confirm() questions
    #[arg(long, global = true)]
    pub yes: bool,

    /// Record changing calls (runs, starts, snapshots, uploads, notifications) instead of executing them
    #[arg(long, global = true)]
    pub dry_run: bool,

    /// Evaluate an expression and print its value
    #[arg(
        short = 'e',
        long = "eval",
        value_name = "EXPR",
        conflicts_with = "script"
    )]
    pub eval: Option<String>,

    /// Script to run (`#!/usr/bin/env ralf-sh` scripts work too)
    #[arg(value_name = "SCRIPT")]
    pub script: Option<PathBuf>,

    /// Arguments for the script, visible to it as ARGS
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Interactive shell (the default with no arguments)
    Repl,
    /// Compile scripts and flag unknown functions, without running anything
    Check {
        #[arg(required = true, value_name = "SCRIPT")]
        scripts: Vec<PathBuf>,
    },
    /// Run the `fn test_*()` functions of script test files
    Test {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Reference of every namespace and function
    Docs {
        #[arg(long, value_enum, default_value_t = DocsFormat::Md)]
        format: DocsFormat,
        /// Output folder (for --format defs) or file (md/json); default stdout
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// Print the effective configuration (secrets redacted)
    Config,
    /// Check the configuration against the real endpoints: reachability, TLS, credentials, secrets, host keys
    Doctor,
    /// Generate shell completions
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Past runs and steps from the state store
    History {
        /// Only this service
        #[arg(long)]
        service: Option<String>,
        /// Only this run (with its steps)
        #[arg(long)]
        run: Option<String>,
        /// JSON output
        #[arg(long)]
        json: bool,
    },
    /// Continue an interrupted run: finished steps are skipped, running tasks re-attached
    /// (a new run of the same script and arguments does this by itself)
    Resume {
        #[arg(value_name = "RUN_ID")]
        run_id: String,
        /// Close the interrupted run on purpose instead: the next run of its script starts over
        #[arg(long)]
        abandon: bool,
    },
    /// Start runs from the triggers of the config's `serve:` section (schedules) until stopped
    Serve,
    /// Manage the state store
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Run a script against local stand-ins of Semaphore, Proxmox and the LLM (and lab hosts)
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Scenarios (--scenario):\n  staging-fails, tests-fail, production-fails, vps-fails, verify-fails: the release target fails at that phase on one lab host\n  exo-down: the LLM is unreachable (decisions fall back)\n  semaphore-flaky: the next 3 task creations lose their answers\n  smoke-fails: postgresql's smoke checks fail (rollback, dependents skipped), and the vault group's smoke\n  slow-tasks: every catalog template's task takes 3 s\n  tofu-fails, ansible-fails, semaphore-down, phase1-fails: the runbook's failure domains\n  secrets-drift: rtx1080's app.env is stale (the release repairs it)\n  gate-approve, gate-deny: approval gates are answered by the lab's approver; gate-timeout: nobody answers (3 s)\n\nNothing leaves loopback; nothing is pulled or downloaded."
    )]
    Lab {
        #[command(subcommand)]
        command: Option<LabCommand>,
        #[command(flatten)]
        setup: LabArgs,
        /// Keep the lab's state store in this file (default: a fresh one per run)
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
        /// Script to run against the stand-ins
        #[arg(value_name = "SCRIPT")]
        script: Option<PathBuf>,
        /// Arguments for the script
        #[arg(
            value_name = "ARGS",
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        args: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum StateCommand {
    /// Copy the SQLite state store (runs, steps, status, history, events) into an empty
    /// PostgreSQL database and verify every table's row count; then point `state.url` at it
    Migrate {
        /// The PostgreSQL store: postgres://USER@HOST:PORT/DB (no password in the URL)
        #[arg(long, value_name = "URL")]
        to: String,
        /// Variable holding the PostgreSQL password
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
        /// The SQLite file to copy (default: the configured `state.path`)
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum LabCommand {
    /// Start the stand-ins on loopback, print one JSON line with their URLs and credentials, run until Ctrl-C
    Serve {
        /// Also write DIR/ralf.yaml and DIR/env (export lines with the credentials, mode 0600):
        /// `. DIR/env; ralf-sh --config DIR/ralf.yaml ...` then reaches this lab
        #[arg(long, value_name = "DIR")]
        write_config: Option<PathBuf>,
        /// Also run `ralf-sh serve` on the lab with a push trigger (`lab-push`, deploy_all) and
        /// print its URLs; `ralf-sh lab push` then starts a deploy the way a Git server would
        #[arg(long)]
        controller: bool,
    },
    /// The REPL with the stand-ins running behind it (every handle live)
    Repl,
    /// Send a push event to a controller, signed the way Gitea signs (loopback only)
    Push {
        /// The webhook URL (`lab serve --controller` prints it)
        #[arg(long, value_name = "URL")]
        to: String,
        /// Variable holding the webhook secret (in the lab's env file)
        #[arg(long, value_name = "VAR", default_value = crate::commands::lab::controller::HOOK_SECRET_ENV)]
        secret_env: String,
        #[arg(long, default_value = "ralf/infra")]
        repository: String,
        #[arg(long, default_value = "main")]
        branch: String,
        /// The pushed commit (default: a made-up one)
        #[arg(long)]
        commit: Option<String>,
    },
}

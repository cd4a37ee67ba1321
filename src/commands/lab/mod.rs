//! `ralf-sh lab SCRIPT`, `lab repl` and `lab serve`: start the stand-ins on loopback, point a
//! configuration at them, then run a script, open the REPL, or keep serving (optionally writing a
//! `ralf.yaml` + `env` pair so other ralf-sh processes reach the running lab).

pub(crate) mod controller;

use crate::error::exit;
use crate::host::Host;
use crate::lab::profiles::CatalogOrigin;
use crate::lab::{Lab, LabSetup};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Options shared by `ralf-sh lab SCRIPT` and `ralf-sh lab serve`.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct LabArgs {
    /// Failure scenario to inject
    #[arg(long, value_name = "NAME", global = true, value_parser = clap::builder::PossibleValuesParser::new(crate::lab::SCENARIOS))]
    pub scenario: Option<String>,
    /// Semaphore UI version the stand-in behaves like
    #[arg(long, value_enum, global = true, default_value_t)]
    pub semaphore_version: crate::lab::SemaphoreVersion,
    /// Proxmox VE version the stand-in behaves like
    #[arg(long = "pve-version", value_enum, global = true, default_value_t)]
    pub pve_version: crate::lab::PveVersion,
    /// OpenAI-compatible server the LLM stand-in behaves like
    #[arg(long, value_enum, global = true, default_value_t)]
    pub llm: crate::lab::LlmProfile,
    /// Catalog folder that seeds the stand-ins and the run (default: $RALF_LAB_CATALOG, ./catalog/projects, else the embedded example)
    #[arg(long, value_name = "DIR", global = true)]
    pub catalog: Option<PathBuf>,
}

/// A running lab and the host (config, state store, cancel token) pointed at it.
pub(crate) struct Session {
    pub lab: Lab,
    pub host: Arc<Host>,
    /// The run's temporary folder (config, embedded catalog, default state store).
    pub dir: PathBuf,
    /// The config (YAML) and environment that reach the stand-ins.
    pub config: String,
    pub env: Vec<(String, String)>,
    /// Where the state store is, and whether it outlives the run.
    pub state: PathBuf,
    pub state_kept: bool,
    origin: CatalogOrigin,
    services: usize,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Start the lab for `host`'s run: the stand-ins with `args`' versions and catalog, the scenario,
/// and a config + environment pointed at them. On failure, the message is printed and the exit
/// code returned (2 for a usage or config error, 1 otherwise).
pub(crate) fn start(
    host: &Arc<Host>,
    rt: &tokio::runtime::Runtime,
    args: &LabArgs,
    state: Option<PathBuf>,
) -> Result<Session, i32> {
    let fail = |code: i32, msg: String| {
        eprintln!("error: lab: {}", crate::redact::redact(&msg));
        code
    };
    let dir = std::env::temp_dir().join(format!("ralf-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| fail(exit::FAILED, e.to_string()))?;
    let mut setup = LabSetup {
        semaphore: args.semaphore_version,
        pve: args.pve_version,
        llm: args.llm,
        catalog_dir: args.catalog.clone(),
    };
    let (origin, services) = setup
        .resolve_catalog(&dir)
        .map_err(|e| fail(exit::USAGE, e.message))?;
    let lab = rt
        .block_on(crate::lab::start_all(&setup))
        .map_err(|e| fail(exit::FAILED, e.to_string()))?;
    if let Some(name) = &args.scenario {
        rt.block_on(crate::lab::apply_scenario(&lab, name))
            .map_err(|e| fail(exit::USAGE, e.message))?;
    }
    let state_kept = state.is_some();
    let state = state.unwrap_or_else(|| dir.join("state.db"));
    let (config, env) =
        crate::lab::run_config(&lab, &state, &dir).map_err(|e| fail(exit::FAILED, e.message))?;
    for (k, v) in &env {
        // Credentials of the stand-ins are secrets; URLs and other settings are not.
        if ["TOKEN", "SECRET", "PASSWORD"]
            .iter()
            .any(|w| k.contains(w))
        {
            crate::redact::register(v);
        }
        // Set before the script thread starts; the clients read their token_env variables.
        std::env::set_var(k, v);
    }
    let cfg_path = dir.join("ralf.yaml");
    let _ = std::fs::write(&cfg_path, &config);
    let loaded = crate::config::parse(&config, &cfg_path)
        .map(|c| crate::config::LoadedConfig {
            config: c,
            path: Some(cfg_path),
        })
        .map_err(|e| fail(exit::FAILED, format!("config: {}", e.message)))?;
    tracing::debug!(target: "ralf::lab", "lab up: {}", crate::redact::redact(&lab.info_line()));
    let lab_host = Host::new(loaded, host.rt.clone(), host.opts.clone());
    // Ctrl-C reaches the lab run through the same token.
    let cancel = host.cancel.clone();
    let lab_cancel = lab_host.cancel.clone();
    rt.spawn(async move {
        cancel.cancelled().await;
        lab_cancel.cancel();
    });
    Ok(Session {
        lab,
        host: lab_host,
        dir,
        config,
        env,
        state,
        state_kept,
        origin,
        services,
    })
}

impl Session {
    /// The few lines a lab run opens with: what runs where, which catalog, where state goes.
    pub fn summary(&self) -> String {
        let info = &self.lab.info;
        let url = |k: &str| {
            info.get(k)
                .and_then(|v| v.get("url"))
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string()
        };
        let setup = &self.lab.setup;
        let mut out = format!(
            "lab: Semaphore {} at {}, Proxmox VE {} at {}, LLM ({}) at {}\n",
            value_name(&setup.semaphore),
            url("semaphore"),
            value_name(&setup.pve),
            url("proxmox"),
            value_name(&setup.llm),
            url("exo"),
        );
        if let Some(h) = info.get("hosts") {
            let names: Vec<&str> = h
                .get("hosts")
                .and_then(Value::as_object)
                .map(|m| m.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let how = match h.get("transport").and_then(Value::as_str) {
                Some("sshd") => "real sshd on 127.0.0.21-23".to_string(),
                _ => format!(
                    "the local transport ({})",
                    h.get("reason").and_then(Value::as_str).unwrap_or("no sshd")
                ),
            };
            let docker = match (
                h.get("docker").and_then(Value::as_bool),
                h.get("image").and_then(Value::as_str),
            ) {
                (Some(true), Some(img)) => format!("Docker image {img} (built here, never pulled)"),
                (Some(true), None) => "Docker: the lab image could not be built (see the warning above); compose steps will fail".into(),
                _ => "Docker: no engine, compose steps will fail".into(),
            };
            out.push_str(&format!(
                "lab: hosts {} over {how}; {docker}\n",
                names.join(", ")
            ));
        }
        let dir = setup
            .catalog_dir
            .as_deref()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let from = match self.origin {
            CatalogOrigin::Flag => format!("{dir} (--catalog)"),
            CatalogOrigin::Env => format!("{dir} ($RALF_LAB_CATALOG)"),
            CatalogOrigin::Cwd => format!("{dir} (./catalog/projects)"),
            CatalogOrigin::Embedded => "the example catalog embedded in ralf-sh".to_string(),
        };
        out.push_str(&format!("lab: catalog {from}, {} services", self.services));
        if self.services == 0 {
            out.push_str(": no service files, so the stand-ins are seeded with built-ins only");
        }
        out.push('\n');
        if self.state_kept {
            out.push_str(&format!("lab: state store {}\n", self.state.display()));
        } else {
            out.push_str(
                "lab: state store is temporary (gone after this run; keep it with --state FILE)\n",
            );
        }
        out
    }

    /// Write `dir/ralf.yaml` and `dir/env` (mode 0600, `export` lines with the credentials) so
    /// `. dir/env; ralf-sh --config dir/ralf.yaml ...` reaches this lab. Each file appears whole
    /// (written beside, then renamed), `env` last: once it exists, both are complete.
    pub fn write_config(&self, dir: &Path) -> std::io::Result<()> {
        use std::fmt::Write as _;
        std::fs::create_dir_all(dir)?;
        write_whole(&dir.join("ralf.yaml"), &self.config, 0o644)?;
        let mut env = format!(
            "# Credentials of the running ralf-sh lab (pid {}); source this file.\n",
            std::process::id()
        );
        for (k, v) in &self.env {
            let _ = writeln!(env, "export {k}={}", crate::text::quote(v));
        }
        write_whole(&dir.join("env"), &env, 0o600)
    }
}

/// Write `path` so that a reader sees nothing or all of `text`: a temporary file with `mode` in the
/// same folder, renamed over `path`.
fn write_whole(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A clap value's name as the user types it (`2.10`, `9.2`, `exo`).
fn value_name<T: clap::ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

fn announce(host: &Host, s: &Session) {
    if !host.opts.quiet {
        eprint!("{}", crate::redact::redact(&s.summary()));
    }
}

/// `ralf-sh lab [--scenario S] SCRIPT ARGS`.
pub(crate) fn run_script(
    host: &Arc<Host>,
    rt: &tokio::runtime::Runtime,
    args: &LabArgs,
    state: Option<PathBuf>,
    script: &Path,
    script_args: Vec<String>,
) -> i32 {
    let s = match start(host, rt, args, state) {
        Ok(s) => s,
        Err(code) => return code,
    };
    announce(host, &s);
    let code = crate::engine::run::run_script(&s.host, script, script_args);
    crate::engine::run::print_dry_run(&s.host);
    code
}

/// `ralf-sh lab repl`: the REPL with every stand-in live behind it.
pub(crate) fn repl(
    host: &Arc<Host>,
    rt: &tokio::runtime::Runtime,
    args: &LabArgs,
    state: Option<PathBuf>,
) -> i32 {
    let s = match start(host, rt, args, state) {
        Ok(s) => s,
        Err(code) => return code,
    };
    announce(host, &s);
    crate::commands::repl::run(&s.host)
}

/// `ralf-sh lab serve [--write-config DIR]`: the JSON line first on stdout, then serve until
/// Ctrl-C.
pub(crate) fn serve(
    host: &Arc<Host>,
    rt: &tokio::runtime::Runtime,
    args: &LabArgs,
    state: Option<PathBuf>,
    write_config: Option<&Path>,
    controller: bool,
) -> i32 {
    let mut s = match start(host, rt, args, state) {
        Ok(s) => s,
        Err(code) => return code,
    };
    crate::outln!("{}", s.lab.info_line());
    announce(host, &s);
    let mut serving = None;
    if controller {
        let dir = write_config
            .map(Path::to_path_buf)
            .unwrap_or_else(|| s.dir.join("controller"));
        match controller::start(host, &mut s, &dir) {
            Ok((child, url)) => {
                crate::outln!(
                    "{}",
                    serde_json::json!({ "controller": {
                        "url": url,
                        "hook": format!("{url}/hooks/lab-push"),
                        "secret_env": controller::HOOK_SECRET_ENV,
                        "config": dir.join("ralf.yaml"),
                        "env": dir.join("env"),
                    }})
                );
                if !host.opts.quiet {
                    eprintln!(
                        "lab: controller (ralf-sh serve) at {url}; push: . {0}/env; ralf-sh lab push --to {url}/hooks/lab-push",
                        dir.display()
                    );
                }
                serving = Some(child);
            }
            Err(e) => {
                eprintln!(
                    "error: lab serve --controller: {}",
                    crate::redact::redact(&e)
                );
                return exit::FAILED;
            }
        }
    } else if let Some(dir) = write_config {
        if let Err(e) = s.write_config(dir) {
            eprintln!("error: lab serve: cannot write {}: {e}", dir.display());
            return exit::FAILED;
        }
        if !host.opts.quiet {
            eprintln!(
                "lab: wrote {0}/ralf.yaml and {0}/env; use: . {0}/env; ralf-sh --config {0}/ralf.yaml ...",
                dir.display()
            );
        }
    }
    let cancel = host.cancel.clone();
    rt.block_on(cancel.cancelled());
    if let Some(mut c) = serving {
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let _ = c.wait();
    }
    exit::OK
}

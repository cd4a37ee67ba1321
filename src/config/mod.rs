//! The one YAML configuration file.
//!
//! Found as: `--config`, else `$RALF_CONFIG`, else `./ralf.yaml`, else `$XDG_CONFIG_HOME/ralf/config.yaml`
//! (`~/.config/ralf/config.yaml`), else `/etc/ralf/ralf.yaml`. No file at all is fine for scripts:
//! every section is optional (`ralf-sh doctor` fails then, naming the paths it searched).
//! Unknown keys and wrong types are errors with `file:line:col` and a did-you-mean.
//! Secrets never live here: sections name environment variables (`*_env`) or files (`*_file`).

use crate::error::{RResult, RalfError};
use crate::text::Secs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Semaphore UI endpoint.
    pub semaphore: Option<SemaphoreConfig>,
    /// Proxmox VE endpoint.
    pub proxmox: Option<ProxmoxConfig>,
    /// OpenAI-compatible LLM (exo, Ollama, llama.cpp) used as an advisor.
    pub llm: Option<LlmConfig>,
    /// SSH host aliases: name -> address, user, port, identity, jump.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostConfig>,
    /// SSH client policy.
    #[serde(default)]
    pub ssh: SshConfig,
    /// Service catalog location and rules.
    pub catalog: Option<CatalogConfig>,
    /// State store location.
    pub state: Option<StateConfig>,
    /// Notification channels.
    #[serde(default)]
    pub notify: NotifyConfig,
    /// Named secrets: name -> where to read it (`secret("name")`).
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    /// Extra folders searched for `import "ralf/<name>"` before the embedded stdlib.
    #[serde(default)]
    pub stdlib_paths: Vec<PathBuf>,
    /// Safety net for `net::http` / `net::tcp` (the lab sends every smoke check to loopback).
    #[serde(default)]
    pub net: NetConfig,
    /// Docker policy on every host (`docker::on`).
    #[serde(default)]
    pub docker: DockerConfig,
    /// Engine limits for scripts.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Approval gates (`gate()`): which chat channels ask, who may answer.
    #[serde(default)]
    pub gates: GatesConfig,
    /// `ralf-sh serve`: triggers that start runs (schedules, webhooks) and its HTTP listener.
    #[serde(default)]
    pub serve: ServeConfig,
    /// Metrics of runs without `serve`.
    #[serde(default)]
    pub metrics: MetricsConfig,
}

pub mod cron;
mod serve;
pub use serve::*;

/// `gates:`: where `gate()` asks and who may answer. Channels have the shape of `notify.channels`
/// (ntfy, telegram, matrix; their tokens from `token_env`); without any, the gate-capable notify
/// channels are used.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatesConfig {
    #[serde(default)]
    pub channels: Vec<NotifyChannel>,
    /// Gates can also be answered on `serve`'s dashboard (the identity `dashboard` must be among
    /// the approvers; default false).
    #[serde(default)]
    pub dashboard: bool,
    /// Channel identities whose answer counts: `telegram:@name` or `telegram:<user id>`,
    /// `matrix:@user:server`, `ntfy:<name>` (the `approver` of an ntfy channel).
    #[serde(default)]
    pub approvers: Vec<String>,
    /// How long a gate waits (default 4h); `default` decides then.
    pub timeout: Option<Secs>,
    /// How often the channels are read (default 2s; Telegram long-polls this long).
    pub poll: Option<Secs>,
    /// The ntfy topic the phone's buttons post answers to (default `<topic>-answers`).
    pub reply_topic: Option<String>,
}

/// `limits:`: how much a script may compute and build. Exceeding one is an error at the line
/// that did it, never a crash.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Engine operations per script run (0: none); the REPL has none (default 10,000,000,000:
    /// minutes of pure computation, far beyond any rollout, but a runaway loop ends).
    #[serde(default = "default_ops")]
    pub max_operations: u64,
    /// Items an array (or bytes a blob) may be padded or created to (default 10,000,000).
    #[serde(default = "default_items")]
    pub max_array_size: usize,
    /// Bytes a string may be padded to (default 256 MiB).
    #[serde(default = "default_string")]
    pub max_string_size: usize,
}

fn default_ops() -> u64 {
    10_000_000_000
}
fn default_items() -> usize {
    10_000_000
}
fn default_string() -> usize {
    256 * 1024 * 1024
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_operations: default_ops(),
            max_array_size: default_items(),
            max_string_size: default_string(),
        }
    }
}

/// `docker:`: policy for `docker::on(..)` handles.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DockerConfig {
    /// `missing` (default: compose pulls an image a host does not have) or `never`: `compose.up`
    /// first checks that every image is on the host and fails naming the missing ones, and
    /// `pull()` / `up(#{ pull: true })` are refused. The lab sets `never`.
    #[serde(default)]
    pub pull: PullPolicy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    #[default]
    Missing,
    Never,
}

/// `net:`: where `net::http` / `net::tcp` may connect.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// `host:port` every check is sent to instead of its target (HTTP keeps path and query, over
    /// plain http, with the original URL in `X-Ralf-Original-Url`; TCP connects there).
    pub redirect_all: Option<String>,
    /// Refuse any target (after redirection) that is not a loopback address.
    #[serde(default)]
    pub only_loopback: bool,
}

/// Where a named secret comes from.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

/// A project reference: numeric id or name.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum IdOrName {
    Id(i64),
    Name(String),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SemaphoreConfig {
    /// Server root, e.g. `https://semaphore.lab:3000` (the API is under `/api`).
    pub url: String,
    /// Project id or name.
    pub project: Option<IdOrName>,
    /// API token from this environment variable ...
    pub token_env: Option<String>,
    /// ... or from this file (mode 0600).
    pub token_file: Option<PathBuf>,
    /// Login user (cookie auth) when no token is configured.
    pub user: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Bytes of a task's output kept in memory (default 4 MiB, like ssh.max_output); the
    /// oldest lines beyond it are dropped and counted.
    pub max_output: Option<usize>,
    /// Per-request timeout (default 30s).
    pub timeout: Option<Secs>,
    /// Extra CA certificate (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Turn TLS verification off (warns on every run).
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxmoxConfig {
    /// e.g. `https://pve.lab:8006`
    pub url: String,
    /// Default node for operations that need one.
    pub node: Option<String>,
    /// API token id `USER@REALM!TOKENID`; its secret from `token_secret_env`/`token_secret_file`.
    pub token_id: Option<String>,
    pub token_secret_env: Option<String>,
    pub token_secret_file: Option<PathBuf>,
    /// Ticket login `user@realm` when no token is configured.
    pub user: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// SHA-256 fingerprint of the server certificate (`AB:CD:...`) to pin.
    pub fingerprint: Option<String>,
    /// CA certificate (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Turn TLS verification off (warns on every run).
    #[serde(default)]
    pub insecure: bool,
    /// Per-request timeout (default 30s).
    pub timeout: Option<Secs>,
    /// SSH alias per node, for `g.exec()` (`pct exec` over SSH).
    #[serde(default)]
    pub node_hosts: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// Server root, e.g. `http://10.10.40.13:52415` (API under `/v1`).
    pub url: String,
    pub model: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub api_key_env: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub connect_timeout: Option<Secs>,
    /// Streams: longest wait for the first token (default 5 min: a cold model load on Ollama or a
    /// long CPU prefill on llama.cpp sends nothing before it).
    pub first_token_timeout: Option<Secs>,
    /// Streams, after the first token: idle timeout, reset by any byte (default 60 s).
    pub idle_timeout: Option<Secs>,
    /// Overall deadline of one request.
    pub timeout: Option<Secs>,
    /// What `decide` answers when the advisor is unavailable: proceed | wait | skip.
    pub fallback_decision: Option<String>,
    /// Send the decision's JSON schema as `response_format` (default true).
    pub response_format: Option<bool>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Host name or IP address (required unless `transport: local`).
    #[serde(default)]
    pub address: String,
    /// `ssh` (default) or `local`: commands run on this machine under `/bin/sh` (for a host that is
    /// the control machine itself, or a lab host without sshd), with `env` exported.
    pub transport: Option<String>,
    /// Environment variables exported for every command run on this host.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<PathBuf>,
    /// Alias or `user@host:port` of a jump host.
    pub jump: Option<String>,
    /// Free-form labels (role: staging, ...).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    /// `strict` (default) or `accept_new`.
    #[serde(default = "strict")]
    pub known_hosts: String,
    pub known_hosts_file: Option<PathBuf>,
    /// Honour `~/.ssh/config` (default true).
    #[serde(default = "yes")]
    pub use_ssh_config: bool,
    pub connect_timeout: Option<Secs>,
    pub keepalive: Option<Secs>,
    pub control_dir: Option<PathBuf>,
    /// Cap on captured stdout/stderr per command, bytes (default 4 MiB).
    pub max_output: Option<usize>,
}

fn strict() -> String {
    "strict".into()
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            known_hosts: strict(),
            known_hosts_file: None,
            use_ssh_config: true,
            connect_timeout: None,
            keepalive: None,
            control_dir: None,
            max_output: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// Folder with one YAML file per service.
    pub path: PathBuf,
    /// Allow a service to depend on a lower-priority one (default false).
    #[serde(default)]
    pub allow_priority_inversion: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    #[serde(default)]
    pub channels: Vec<NotifyChannel>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum NotifyChannel {
    Ntfy {
        url: String,
        topic: String,
        token_env: Option<String>,
        /// Gates: the name of the person whose phone subscribes to this topic (`ntfy:<name>`).
        #[serde(default)]
        approver: Option<String>,
    },
    Matrix {
        homeserver: String,
        room: String,
        token_env: Option<String>,
    },
    Telegram {
        chat_id: String,
        token_env: Option<String>,
        api_url: Option<String>,
    },
    Webhook {
        url: String,
        token_env: Option<String>,
    },
}

impl Config {
    /// Every `*_env` variable and `*_file` the config names, as (config key, env var, file).
    pub fn secret_refs(&self) -> Vec<(String, Option<String>, Option<PathBuf>)> {
        let cfg = self;
        let mut v = Vec::new();
        if let Some(s) = &cfg.semaphore {
            v.push((
                "semaphore.token".into(),
                s.token_env.clone(),
                s.token_file.clone(),
            ));
            v.push((
                "semaphore.password".into(),
                s.password_env.clone(),
                s.password_file.clone(),
            ));
        }
        if let Some(p) = &cfg.proxmox {
            v.push((
                "proxmox.token_secret".into(),
                p.token_secret_env.clone(),
                p.token_secret_file.clone(),
            ));
            v.push((
                "proxmox.password".into(),
                p.password_env.clone(),
                p.password_file.clone(),
            ));
        }
        if let Some(l) = &cfg.llm {
            v.push((
                "llm.api_key".into(),
                l.api_key_env.clone(),
                l.api_key_file.clone(),
            ));
        }
        for (i, c) in cfg.notify.channels.iter().enumerate() {
            v.push((format!("notify.channels[{i}].token"), c.token_env(), None));
        }
        for (name, s) in &cfg.secrets {
            v.push((format!("secrets.{name}"), s.env.clone(), s.file.clone()));
        }
        v.retain(|(_, e, f)| e.is_some() || f.is_some());
        v
    }
}

impl NotifyChannel {
    /// The environment variable holding the channel's token, if it names one.
    pub fn token_env(&self) -> Option<String> {
        match self {
            NotifyChannel::Ntfy { token_env, .. }
            | NotifyChannel::Matrix { token_env, .. }
            | NotifyChannel::Telegram { token_env, .. }
            | NotifyChannel::Webhook { token_env, .. } => token_env.clone(),
        }
    }
}

/// A loaded configuration and where it came from.
#[derive(Debug, Clone, Default)]
pub struct LoadedConfig {
    pub config: Config,
    /// None when no file was found (all defaults).
    pub path: Option<PathBuf>,
}

/// Where the config is looked for, in order. The first that exists wins.
pub fn candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    let mut v = Vec::new();
    if let Ok(p) = std::env::var("RALF_CONFIG") {
        if !p.is_empty() {
            return vec![PathBuf::from(p)];
        }
    }
    v.push(PathBuf::from("ralf.yaml"));
    v.push(xdg_config_home().join("ralf/config.yaml"));
    v.push(PathBuf::from(SYSTEM_CONFIG));
    v
}

/// The system-wide config the packaged units use, looked for last.
pub const SYSTEM_CONFIG: &str = "/etc/ralf/ralf.yaml";

pub fn xdg_config_home() -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".config"))
}

pub fn xdg_state_home() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".local/state"))
}

pub fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Find and load the config. An explicit path (flag or `$RALF_CONFIG`) must exist.
pub fn load(explicit: Option<&Path>) -> RResult<LoadedConfig> {
    let must_exist = explicit.is_some()
        || std::env::var("RALF_CONFIG")
            .map(|s| !s.is_empty())
            .unwrap_or(false);
    for p in candidates(explicit) {
        if p.exists() {
            let bytes = std::fs::read(&p).map_err(|e| {
                RalfError::config(format!("{}: cannot read config: {e}", p.display()))
            })?;
            let text = crate::yaml::text(&bytes).map_err(|e| {
                RalfError::config(format!(
                    "{}:{}:{}: {}",
                    p.display(),
                    e.line,
                    e.column,
                    e.message
                ))
            })?;
            let config = parse(text, &p)?;
            return Ok(LoadedConfig {
                config,
                path: Some(p),
            });
        } else if must_exist {
            return Err(RalfError::config(format!(
                "{}: config file not found",
                p.display()
            )));
        }
    }
    Ok(LoadedConfig::default())
}

/// Parse config text; errors carry `file:line:col`.
pub fn parse(text: &str, path: &Path) -> RResult<Config> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Ok(Config::default());
    }
    crate::yaml::check(text).map_err(|e| {
        RalfError::config(format!(
            "{}:{}:{}: {}",
            path.display(),
            e.line,
            e.column,
            e.message
        ))
    })?;
    let cfg: Config =
        crate::yaml::from_str(text).map_err(|e| yaml_error(&e, path, "config", Some(text)))?;
    validate(&cfg, path, text)?;
    Ok(cfg)
}

/// Render a serde_yaml error as `file:line:col: message` with did-you-mean for unknown keys.
pub fn yaml_error(
    e: &crate::yaml::Error,
    path: &Path,
    what: &str,
    text: Option<&str>,
) -> RalfError {
    let raw = e.to_string();
    // serde_yaml appends " at line L column C"; we put the position in front instead.
    let body = match raw.find(" at line ") {
        Some(i) => raw[..i].to_string(),
        None => raw.clone(),
    };
    let body = rewrite_unknown_key(&body);
    let loc = match e.location() {
        Some(l) => format!("{}:{}:{}", path.display(), l.line(), l.column()),
        None => format!(
            "{}:{}",
            path.display(),
            text.map(|t| crate::yaml::unlocated_line(t, &body))
                .unwrap_or(1)
        ),
    };
    RalfError::config(format!("{loc}: {body}"))
        .with("file", path.display().to_string())
        .with("what", what)
}

/// `semaphore: unknown field `urll`, expected one of ...` -> `unknown key `urll` in semaphore; did you mean `url`?`
pub fn rewrite_unknown_key(body: &str) -> String {
    match crate::text::parse_unknown_field(body) {
        Some((prefix, field, expected)) => {
            let where_ = if prefix.is_empty() {
                String::new()
            } else {
                format!("in `{prefix}`")
            };
            crate::text::unknown_name_message("key", field, &where_, &expected)
        }
        None => body.to_string(),
    }
}

/// The 1-based line of `key` inside the top-level section `section` of `text` (1 if not found).
/// 1-based line of the first line of a config text that contains `needle` (e.g. the variable a
/// `*_env` key names), for `file:line` in reports about the config.
pub fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

fn key_line(text: &str, section: &str, key: &str) -> usize {
    let mut inside = false;
    for (n, l) in text.lines().enumerate() {
        if !l.starts_with([' ', '\t', '#']) && !l.trim().is_empty() {
            inside = l.trim_end().strip_suffix(':') == Some(section)
                || l.starts_with(&format!("{section}:"));
        } else if inside && l.trim_start().starts_with(&format!("{key}:")) {
            return n + 1;
        }
    }
    1
}

fn validate(cfg: &Config, path: &Path, text: &str) -> RResult<()> {
    let p = path.display();
    let tls = [
        (
            "semaphore",
            cfg.semaphore
                .as_ref()
                .map(|s| (s.insecure, None, s.ca_file.as_deref())),
        ),
        (
            "proxmox",
            cfg.proxmox
                .as_ref()
                .map(|s| (s.insecure, s.fingerprint.as_deref(), s.ca_file.as_deref())),
        ),
    ];
    for (section, v) in tls {
        let Some((insecure, pin, ca)) = v else {
            continue;
        };
        if insecure && pin.is_some_and(|f| !f.trim().is_empty()) {
            return Err(RalfError::config(format!(
                "{p}:{}: {section}.insecure: true together with a fingerprint pin: the pin would be ignored; remove `insecure` (the pin is the safe way to accept a self-signed certificate)",
                key_line(text, section, "insecure")
            )));
        }
        if let Some(f) = pin.filter(|f| !f.trim().is_empty()) {
            if let Err(why) = crate::text::normalize_fingerprint(f) {
                return Err(RalfError::config(format!(
                    "{p}:{}: {section}.fingerprint: {why}",
                    key_line(text, section, "fingerprint")
                )));
            }
        }
        if insecure && ca.is_some() {
            return Err(RalfError::config(format!(
                "{p}:{}: {section}.insecure: true together with ca_file: the CA would be ignored; remove `insecure`",
                key_line(text, section, "insecure")
            )));
        }
        if let Some(ca) = ca {
            let line = key_line(text, section, "ca_file");
            let pem = std::fs::read(ca).map_err(|e| {
                RalfError::config(format!(
                    "{p}:{line}: {section}.ca_file {}: cannot read it: {e}",
                    ca.display()
                ))
            })?;
            match reqwest::Certificate::from_pem_bundle(&pem) {
                Ok(c) if !c.is_empty() => {}
                _ => {
                    return Err(RalfError::config(format!(
                        "{p}:{line}: {section}.ca_file {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
                        ca.display()
                    )))
                }
            }
        }
    }
    for (i, t) in cfg.serve.triggers.iter().enumerate() {
        validate_trigger(t, &cfg.serve.triggers[..i]).map_err(|(key, msg)| {
            RalfError::config(format!(
                "{p}:{}: serve.triggers[{i}] ({}).{key}: {msg}",
                trigger_line(text, i, key),
                t.name
            ))
        })?;
    }
    if let Some(listen) = &cfg.serve.listen {
        let line = key_line(text, "serve", "listen");
        let addr: std::net::SocketAddr = listen.parse().map_err(|_| {
            RalfError::config(format!(
                "{p}:{line}: serve.listen: `{listen}` is not an address:port (e.g. 127.0.0.1:8470)"
            ))
        })?;
        if !addr.ip().is_loopback() && cfg.serve.token_env.is_none() {
            return Err(RalfError::config(format!(
                "{p}:{line}: serve.listen: {listen} is reachable from other machines; set serve.token_env (the variable holding the token /metrics requires)"
            )));
        }
    }
    if let Some(url) = &cfg.serve.public_url {
        serve::public_host(url).map_err(|e| {
            RalfError::config(format!(
                "{p}:{}: serve.public_url: {e}",
                key_line(text, "serve", "public_url")
            ))
        })?;
    }
    if let Some(st) = &cfg.state {
        validate_state(st).map_err(|(key, msg)| {
            RalfError::config(format!(
                "{p}:{}: state.{key}: {msg}",
                key_line(text, "state", key)
            ))
        })?;
    }
    match cfg.ssh.known_hosts.as_str() {
        "strict" | "accept_new" => {}
        other => {
            return Err(RalfError::config(format!(
                "{p}:{}: ssh.known_hosts must be `strict` or `accept_new`, got `{other}`",
                key_line(text, "ssh", "known_hosts")
            )))
        }
    }
    if let Some(llm) = &cfg.llm {
        if let Some(d) = &llm.fallback_decision {
            if !matches!(d.as_str(), "proceed" | "wait" | "skip") {
                return Err(RalfError::config(format!(
                    "{p}:{}: llm.fallback_decision must be proceed, wait or skip, got `{d}`",
                    key_line(text, "llm", "fallback_decision")
                )));
            }
        }
    }
    for (name, h) in &cfg.hosts {
        match h.transport.as_deref() {
            None | Some("ssh") => {}
            Some("local") => continue,
            Some(other) => {
                return Err(RalfError::config(format!(
                    "{p}:{}: hosts.{name}.transport must be `ssh` or `local`, got `{other}`",
                    key_line(text, "hosts", name)
                )))
            }
        }
        if h.address.trim().is_empty() {
            return Err(RalfError::config(format!(
                "{p}:{}: hosts.{name}.address is missing or empty (an ssh host needs one; `transport: local` runs on this machine)",
                key_line(text, "hosts", name)
            )));
        }
    }
    Ok(())
}

/// The effective config as YAML, for `ralf-sh config`. Secrets are never in the config, but the
/// output still goes through the redactor in case a value was pasted where it should not be.
pub fn render_effective(loaded: &LoadedConfig) -> String {
    let mut out = String::new();
    match &loaded.path {
        Some(p) => out.push_str(&format!("# config: {}\n", p.display())),
        None => out.push_str("# config: none found (defaults)\n"),
    }
    out.push_str(&crate::yaml::to_string(&loaded.config).unwrap_or_default());
    crate::redact::redact(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_document_is_named_by_its_line() {
        let e = parse("notify: {}\n# two\n---\nstate: {}\n", Path::new("/c.yaml")).unwrap_err();
        assert!(e.message.starts_with("/c.yaml:3: "), "{}", e.message);
        assert!(
            e.message.contains("more than one document"),
            "{}",
            e.message
        );
    }

    #[test]
    fn unknown_key_has_line_and_suggestion() {
        let text = "semaphore:\n  url: http://x\n  projcet: 1\n";
        let e = parse(text, Path::new("ralf.yaml")).unwrap_err();
        assert!(
            e.message.starts_with(
                "ralf.yaml:3:3: unknown key `projcet` in `semaphore`; did you mean `project`?"
            ),
            "{}",
            e.message
        );
    }

    #[test]
    fn insecure_with_a_pin_and_a_bad_ca_file_are_config_errors_with_a_line() {
        let e = parse(
            "proxmox:\n  url: https://pve:8006\n  fingerprint: \"AA:BB\"\n  insecure: true\n",
            Path::new("ralf.yaml"),
        )
        .unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::Config);
        assert!(
            e.message.starts_with("ralf.yaml:4: proxmox.insecure"),
            "{}",
            e.message
        );
        let dir = std::env::temp_dir().join(format!("ralf-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("ca.pem");
        std::fs::write(&bad, "not a certificate\n").unwrap();
        let text = format!(
            "semaphore:\n  url: https://sem\n  ca_file: {}\n",
            bad.display()
        );
        let e = parse(&text, Path::new("ralf.yaml")).unwrap_err();
        assert!(
            e.message.starts_with("ralf.yaml:3: semaphore.ca_file")
                && e.message.contains("no PEM certificate"),
            "{}",
            e.message
        );
        let text = "semaphore:\n  url: https://sem\n  ca_file: /nonexistent/ca.pem\n";
        let e = parse(text, Path::new("ralf.yaml")).unwrap_err();
        assert!(
            e.message.contains("/nonexistent/ca.pem: cannot read it"),
            "{}",
            e.message
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_bom_and_deep_nesting() {
        let c = parse(
            "\u{feff}ssh:\n  known_hosts: accept_new\n",
            Path::new("ralf.yaml"),
        )
        .unwrap();
        assert_eq!(c.ssh.known_hosts, "accept_new");
        let deep = format!("x: {}{}\n", "[".repeat(5000), "]".repeat(5000));
        let e = parse(&deep, Path::new("ralf.yaml")).unwrap_err();
        assert!(e.message.starts_with("ralf.yaml:1:"), "{}", e.message);
    }

    #[test]
    fn host_transport() {
        let c = parse(
            "hosts:\n  me: { transport: local, env: { X: y } }\n  vps: { address: 203.0.113.7 }\n",
            Path::new("ralf.yaml"),
        )
        .unwrap();
        assert_eq!(c.hosts["me"].transport.as_deref(), Some("local"));
        assert_eq!(c.hosts["me"].env["X"], "y");
        let e = parse(
            "hosts:\n  me: { transport: mosh }\n",
            Path::new("ralf.yaml"),
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("hosts.me.transport must be `ssh` or `local`, got `mosh`"),
            "{}",
            e.message
        );
        let e = parse("hosts:\n  vps: { user: x }\n", Path::new("ralf.yaml")).unwrap_err();
        assert!(
            e.message.contains("hosts.vps.address is missing"),
            "{}",
            e.message
        );
    }

    #[test]
    fn wrong_type_has_line() {
        let text = "hosts:\n  vps:\n    address: 1.2.3.4\n    port: many\n";
        let e = parse(text, Path::new("c.yaml")).unwrap_err();
        assert!(e.message.starts_with("c.yaml:4:"), "{}", e.message);
        assert!(e.message.contains("invalid type"), "{}", e.message);
    }

    #[test]
    fn top_level_unknown_key() {
        let e = parse("semafore:\n  url: x\n", Path::new("c.yaml")).unwrap_err();
        assert!(
            e.message
                .contains("unknown key `semafore`; did you mean `semaphore`?"),
            "{}",
            e.message
        );
    }

    #[test]
    fn empty_is_default() {
        let c = parse("", Path::new("x")).unwrap();
        assert!(c.semaphore.is_none());
        assert_eq!(c.ssh.known_hosts, "strict");
    }
}

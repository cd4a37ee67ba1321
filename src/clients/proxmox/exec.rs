//! `pct exec` on a guest's node over SSH (the API has no exec for containers, see PROXMOX.md §9).
//!
//! Runs the system `ssh` binary in batch mode against the node's SSH alias from the config
//! (`proxmox.node_hosts: { pve: pve-root }`, resolved through `hosts:`), so no password prompt can hang a run.

use crate::config::{Config, HostConfig};
use crate::error::{RResult, RalfError};
use std::time::{Duration, Instant};

/// Result of one remote command.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
}

/// The SSH alias of `node`: `proxmox.node_hosts[node]`, else a `hosts:` entry named like the node.
pub fn node_alias(cfg: &Config, node: &str) -> RResult<(String, HostConfig)> {
    let alias = cfg
        .proxmox
        .as_ref()
        .and_then(|p| p.node_hosts.get(node).cloned())
        .or_else(|| cfg.hosts.contains_key(node).then(|| node.to_string()))
        .ok_or_else(|| {
            RalfError::config(format!(
                "proxmox: no SSH alias for node `{node}`: `pct exec` runs on the node over SSH; add `proxmox.node_hosts: {{ {node}: <alias> }}` and that alias under `hosts:`"
            ))
        })?;
    let h = cfg.hosts.get(&alias).cloned().ok_or_else(|| {
        RalfError::config(format!(
            "proxmox: node `{node}` maps to SSH alias `{alias}`, but `hosts:` has no entry `{alias}` (address, user, port, identity_file)"
        ))
    })?;
    Ok((alias, h))
}

/// The argv for `ssh` that runs `pct exec VMID -- sh -c CMD` on the node.
pub fn ssh_argv(cfg: &Config, host: &HostConfig, vmid: u32, cmd: &str) -> Vec<String> {
    let connect = cfg
        .ssh
        .connect_timeout
        .map(|s| s.0.as_secs().max(1))
        .unwrap_or(10);
    let mut a: Vec<String> = vec![
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        format!("ConnectTimeout={connect}"),
        "-o".into(),
        format!(
            "StrictHostKeyChecking={}",
            if cfg.ssh.known_hosts == "accept_new" {
                "accept-new"
            } else {
                "yes"
            }
        ),
    ];
    if let Some(f) = &cfg.ssh.known_hosts_file {
        a.push("-o".into());
        a.push(format!("UserKnownHostsFile={}", f.display()));
    }
    if !cfg.ssh.use_ssh_config {
        a.push("-F".into());
        a.push("none".into());
    }
    if let Some(p) = host.port {
        a.push("-p".into());
        a.push(p.to_string());
    }
    if let Some(u) = &host.user {
        a.push("-l".into());
        a.push(u.clone());
    }
    if let Some(i) = &host.identity_file {
        a.push("-i".into());
        a.push(i.display().to_string());
        a.push("-o".into());
        a.push("IdentitiesOnly=yes".into());
    }
    if let Some(j) = &host.jump {
        let jump = cfg
            .hosts
            .get(j)
            .map(|h| {
                let mut s = String::new();
                if let Some(u) = &h.user {
                    s.push_str(u);
                    s.push('@');
                }
                s.push_str(&h.address);
                if let Some(p) = h.port {
                    s.push_str(&format!(":{p}"));
                }
                s
            })
            .unwrap_or_else(|| j.clone());
        a.push("-J".into());
        a.push(jump);
    }
    a.push(host.address.clone());
    a.push("--".into());
    // Single quotes: nothing inside is expanded by the node's shell; `sh -c` in the guest parses it.
    let inner = format!("'{}'", cmd.replace('\'', "'\\''"));
    a.push(format!("pct exec {vmid} -- sh -c {inner}"));
    a
}

/// Run `cmd` inside container `vmid` on `node`.
pub async fn pct_exec(cfg: &Config, node: &str, vmid: u32, cmd: &str) -> RResult<ExecOutput> {
    if cmd.contains('\0') {
        return Err(RalfError::invalid(
            "proxmox: exec: command contains a NUL byte",
        ));
    }
    let (alias, host) = node_alias(cfg, node)?;
    let argv = ssh_argv(cfg, &host, vmid, cmd);
    let start = Instant::now();
    let out = tokio::process::Command::new("ssh")
        .args(&argv)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| RalfError::unavailable(format!("proxmox: exec: cannot run ssh: {e}")))?;
    let code = out.status.code().unwrap_or(-1);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if code == 255 {
        return Err(RalfError::unavailable(format!(
            "proxmox: exec: ssh to node `{node}` (alias `{alias}`, {}) failed: {}",
            host.address,
            stderr.trim()
        ))
        .with("node", node)
        .with("alias", alias));
    }
    Ok(ExecOutput {
        code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
        duration: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_argv_from_alias() {
        let cfg: Config = crate::yaml::from_str(
            "proxmox: { url: 'https://x:8006', node_hosts: { pve: pve-root } }\nhosts:\n  pve-root: { address: 10.0.0.5, user: root, port: 2222 }\n",
        )
        .unwrap();
        let (alias, h) = node_alias(&cfg, "pve").unwrap();
        assert_eq!(alias, "pve-root");
        let a = ssh_argv(&cfg, &h, 2010, "echo 'hi there'");
        assert!(a.contains(&"BatchMode=yes".to_string()));
        assert!(a.iter().any(|s| s.starts_with("ConnectTimeout=")));
        assert_eq!(
            a.last().unwrap(),
            r"pct exec 2010 -- sh -c 'echo '\''hi there'\'''"
        );
        assert!(a.windows(2).any(|w| w[0] == "-p" && w[1] == "2222"));
        let e = node_alias(&cfg, "pve2").unwrap_err();
        assert!(e.message.contains("node_hosts"), "{}", e.message);
    }
}

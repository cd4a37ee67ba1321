//! Where a host is: config aliases (with jumps) and `user@host:port` literals.

use super::*;

/// Where to connect: a resolved alias or a `user@host:port` literal.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// What the script called it (alias or literal).
    pub name: String,
    pub address: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<PathBuf>,
    /// Jump host (resolved), used with `ssh -J`.
    pub jump: Option<Box<Target>>,
    /// Exported for every command on this host (`hosts.<name>.env`).
    pub env: BTreeMap<String, String>,
}

/// Resolve an alias from the config's `hosts:` or parse a `[user@]host[:port]` literal.
pub fn resolve(name: &str, hosts: &BTreeMap<String, HostConfig>) -> RResult<Target> {
    resolve_depth(name, hosts, 0)
}

pub(super) fn resolve_depth(
    name: &str,
    hosts: &BTreeMap<String, HostConfig>,
    depth: usize,
) -> RResult<Target> {
    if depth > 4 {
        return Err(RalfError::config(format!(
            "ssh host `{name}`: jump hosts nest too deep (a loop in hosts.*.jump?)"
        )));
    }
    if let Some(h) = hosts.get(name) {
        let jump = match &h.jump {
            Some(j) => Some(Box::new(resolve_depth(j, hosts, depth + 1)?)),
            None => None,
        };
        return Ok(Target {
            name: name.to_string(),
            address: h.address.clone(),
            user: h.user.clone(),
            port: h.port,
            identity_file: h.identity_file.clone(),
            jump,
            env: h.env.clone(),
        });
    }
    parse_literal(name).map_err(|why| {
        let hint = crate::text::did_you_mean(name, hosts.keys().map(|s| s.as_str()))
            .map(|s| format!("; did you mean the alias `{s}`?"))
            .unwrap_or_default();
        RalfError::invalid(format!(
            "ssh host `{name}` is neither an alias under `hosts:` in the config nor a valid `user@host:port` ({why}){hint}"
        ))
    })
}

/// Parse `[user@]host[:port]`, `[user@][v6addr]:port`.
pub fn parse_literal(s: &str) -> Result<Target, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty host".into());
    }
    if t.chars()
        .any(|c| c.is_whitespace() || c == '/' || c == '\'' || c == '"')
    {
        return Err("contains whitespace, quotes or `/`".into());
    }
    let (user, rest) = match t.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
        Some(_) => return Err("empty user before `@`".into()),
        None => (None, t),
    };
    let (address, port) = if let Some(r) = rest.strip_prefix('[') {
        let (addr, after) = r.split_once(']').ok_or("unclosed `[`")?;
        match after.strip_prefix(':') {
            Some(p) => (addr.to_string(), Some(p)),
            None if after.is_empty() => (addr.to_string(), None),
            None => return Err(format!("unexpected `{after}` after `]`")),
        }
    } else if rest.matches(':').count() > 1 {
        // bare IPv6 address without port
        (rest.to_string(), None)
    } else {
        match rest.split_once(':') {
            Some((a, p)) => (a.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    if address.is_empty() || address.starts_with('-') {
        return Err("missing host name".into());
    }
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("port `{p}` is not a number between 1 and 65535"))?,
        ),
        None => None,
    };
    Ok(Target {
        name: s.to_string(),
        address,
        user,
        port,
        identity_file: None,
        jump: None,
        env: BTreeMap::new(),
    })
}

impl Target {
    /// `[user@]host[:port]` (for `ssh -J`).
    pub fn destination_with_port(&self) -> String {
        let mut s = String::new();
        if let Some(u) = &self.user {
            s.push_str(u);
            s.push('@');
        }
        if self.address.contains(':') {
            s.push_str(&format!("[{}]", self.address));
        } else {
            s.push_str(&self.address);
        }
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s
    }
}

pub(super) use crate::text::quote;

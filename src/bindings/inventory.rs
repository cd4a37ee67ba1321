//! The configured hosts as data: `ssh::hosts()` lists them, `ssh::hosts(#{ label: "role=prod" })`
//! selects them by their `labels:` in the config, and `ssh::run_all` takes such a selection.

use crate::bindings::AtCall;
use crate::config::{Config, HostConfig};
use crate::error::{RResult, RalfError, RhaiResult};
use crate::script::decode::decode;
use rhai::plugin::*;
use rhai::{Array, Dynamic, Map};
use serde::Deserialize;

/// `ssh::hosts(sel)` options.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct HostSel {
    /// `"key=value"` (the label has that value), `"key"` (the host has the label), or a list of
    /// them (all must hold).
    #[serde(default)]
    label: Option<Labels>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Labels {
    One(String),
    All(Vec<String>),
}

fn matches(c: &HostConfig, want: &[String]) -> bool {
    want.iter().all(|w| match w.split_once('=') {
        Some((k, v)) => c.labels.get(k.trim()).is_some_and(|x| x == v.trim()),
        None => c.labels.contains_key(w.trim()),
    })
}

/// The names of the configured hosts that `sel` selects, sorted; none is a `not_found` error
/// naming the labels there are.
pub(crate) fn select(cfg: &Config, sel: &Map, func: &str) -> RResult<Vec<String>> {
    let s: HostSel = decode(sel, func)?;
    let want = match s.label {
        None => Vec::new(),
        Some(Labels::One(l)) => vec![l],
        Some(Labels::All(v)) => v,
    };
    let names: Vec<String> = cfg
        .hosts
        .iter()
        .filter(|(_, c)| matches(c, &want))
        .map(|(n, _)| n.clone())
        .collect();
    if names.is_empty() {
        let mut known: Vec<String> = cfg
            .hosts
            .values()
            .flat_map(|c| c.labels.iter().map(|(k, v)| format!("{k}={v}")))
            .collect();
        known.sort();
        known.dedup();
        return Err(RalfError::not_found(format!(
            "{func}: no configured host has the labels {want:?} (labels in the config: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    }
    Ok(names)
}

fn describe(name: &str, c: &HostConfig) -> Map {
    let mut m = Map::new();
    m.insert("name".into(), name.into());
    m.insert("address".into(), c.address.clone().into());
    m.insert(
        "user".into(),
        c.user.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT),
    );
    m.insert(
        "port".into(),
        c.port
            .map(|p| Dynamic::from(p as i64))
            .unwrap_or(Dynamic::UNIT),
    );
    m.insert(
        "transport".into(),
        c.transport.clone().unwrap_or_else(|| "ssh".into()).into(),
    );
    let labels: Map = c
        .labels
        .iter()
        .map(|(k, v)| (k.as_str().into(), v.clone().into()))
        .collect();
    m.insert("labels".into(), labels.into());
    m
}

fn hosts_impl(ctx: &NativeCallContext, sel: &Map) -> RResult<Array> {
    let h = crate::bindings::host(ctx)?;
    let cfg = h.cfg();
    let names = if sel.is_empty() {
        cfg.hosts.keys().cloned().collect()
    } else {
        select(cfg, sel, "ssh::hosts")?
    };
    Ok(names
        .iter()
        .map(|n| describe(n, &cfg.hosts[n]).into())
        .collect())
}

#[export_module]
pub(crate) mod inventory_mod {
    /// Every host under `hosts:` in the config, sorted by name: `#{ name, address, user, port,
    /// transport, labels }` (prints as a table).
    ///
    /// ```rhai,no_run
    /// print(ssh::hosts());
    /// ```
    #[rhai_fn(name = "hosts", return_raw)]
    pub fn hosts0(ctx: NativeCallContext) -> RhaiResult<Array> {
        hosts_impl(&ctx, &Map::new()).at(&ctx)
    }

    /// The configured hosts with the given labels: `#{ label: "role=prod" }`, `#{ label: "gpu" }`
    /// (has the label), or `#{ label: ["role=prod", "site=home"] }` (all of them). None is a
    /// `not_found` error listing the labels there are. Pass the result, or the selection itself,
    /// to `ssh::run_all`.
    ///
    /// ```rhai,no_run
    /// for h in ssh::hosts(#{ label: "role=production" }) { print(h.name); }
    /// ```
    #[rhai_fn(name = "hosts", return_raw)]
    pub fn hosts1(ctx: NativeCallContext, sel: Map) -> RhaiResult<Array> {
        hosts_impl(&ctx, &sel).at(&ctx)
    }
}

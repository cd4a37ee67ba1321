//! `preflight::check(env, plan, opts)`: the checks of [`crate::preflight`] from a script, before the
//! flow's first side effect.

use crate::bindings::catalog::{PlanRef, ServiceRef};
use crate::bindings::proxmox::Pve;
use crate::bindings::semaphore::Semaphore;
use crate::bindings::{host, AtCall};
use crate::catalog::Service;
use crate::error::{RResult, RalfError, RhaiResult};
use crate::preflight::{self, Endpoint, Opts};
use crate::script::bridge::block_on;
use crate::script::decode::decode;
use rhai::plugin::*;
use rhai::{Dynamic, Engine, Map, NativeCallContext};
use serde::Deserialize;

pub(crate) fn register(engine: &mut Engine) {
    engine.register_static_module("preflight", exported_module!(preflight_mod).into());
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreflightOpts {
    /// Take the catalog's pre-install snapshots (default true).
    snapshots: Option<bool>,
    /// "require" (default) or "if_supported".
    snapshot: Option<String>,
    /// Also run the services' smoke templates (default true).
    smoke_template: Option<bool>,
    /// Command and script smoke checks go over SSH (default true; false when a smoke runner
    /// replaces SSH, as `ralf/deploy` says for the lab).
    smoke_over_ssh: Option<bool>,
    /// Check the config's secrets (default true).
    secrets: Option<bool>,
    /// The plan hash an approver saw (`--expect-plan`): a plan that resolves differently now
    /// is refused with `conflict` before anything is started.
    expect: Option<String>,
}

/// A plan hash as `preflight` prints it: 16 lowercase hex digits.
fn check_hash(h: &str) -> RResult<String> {
    let t = h.trim().to_ascii_lowercase();
    if t.len() == 16 && t.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(t)
    } else {
        Err(RalfError::invalid(format!(
            "`{h}` is not a plan hash (16 hex digits, as `--plan` prints it)"
        ))
        .with("exit_code", 2))
    }
}

/// The services a plan, a service or a list of services names.
fn services_of(v: &Dynamic) -> RResult<Vec<Service>> {
    if let Some(p) = v.read_lock::<PlanRef>() {
        return Ok(p
            .plan
            .entries
            .iter()
            .filter_map(|e| p.cat.get(&e.name).cloned())
            .collect());
    }
    if let Some(s) = v.read_lock::<ServiceRef>() {
        return Ok(vec![s.svc().clone()]);
    }
    if let Some(a) = v.read_lock::<rhai::Array>() {
        let mut out = Vec::new();
        for x in a.iter() {
            match x.read_lock::<ServiceRef>() {
                Some(s) => out.push(s.svc().clone()),
                None => {
                    return Err(RalfError::invalid(format!(
                        "preflight: the list holds a {}, not a catalog service",
                        x.type_name()
                    )))
                }
            }
        }
        return Ok(out);
    }
    Err(RalfError::invalid(format!(
        "preflight: expected a plan, a catalog service or a list of services, got {}",
        v.type_name()
    )))
}

/// `env.sem` / `env.pve` as the checks see them; `env.down.<key>` says why one is missing.
fn endpoint<H: Clone + 'static, C>(
    env: &Map,
    key: &str,
    down_key: &str,
    configured: bool,
    get: impl Fn(&H) -> C,
) -> Endpoint<C> {
    if let Some(h) = env
        .get(key)
        .and_then(|v| v.read_lock::<H>().map(|h| get(&h)))
    {
        return Endpoint::Up(h);
    }
    let why = env
        .get("down")
        .and_then(|d| d.read_lock::<Map>().and_then(|m| m.get(down_key).cloned()))
        .map(|w| w.to_string());
    match (why, configured) {
        (Some(w), _) => Endpoint::Failed(w),
        (None, true) => Endpoint::Failed("not connected".into()),
        (None, false) => Endpoint::Absent,
    }
}

#[export_module]
mod preflight_mod {
    /// Before the first side effect of a deployment: resolve every reference the plan touches
    /// against the live systems (templates and the overrides the run passes, guests and their
    /// snapshot support, smoke check hosts, the config's secrets) and report every problem at
    /// once, each at its catalog or config `file:line`. Throws one `config` error (exit code 2,
    /// nothing started) when anything is wrong; returns `#{ checked, notes, hash, plan }`
    /// otherwise: `plan` is what the run would do, resolved (templates with a digest of their
    /// definition and the overrides, guests, snapshots, smoke hosts), `hash` its 16-hex-digit
    /// hash. With `expect: HASH` a plan that resolves to another hash is refused (`conflict`,
    /// exit code 2).
    /// `env` is `#{ sem, pve }` as `ralf/deploy`'s `connect` makes it (`env.down` says why an
    /// endpoint is missing); `plan` a plan, a catalog service or a list of services.
    ///
    /// ```rhai,no_run
    /// import "ralf/deploy" as deploy;
    /// let env = deploy::connect(#{});
    /// let plan = env.cat.plan(#{ priority: "P1" });
    /// preflight::check(env, plan, #{ snapshot: "require" });
    /// ```
    #[rhai_fn(name = "check", return_raw)]
    pub fn preflight_fn(
        ctx: NativeCallContext,
        env: Map,
        plan: Dynamic,
        opts: Map,
    ) -> RhaiResult<Map> {
        let h = host(&ctx)?;
        let o: PreflightOpts = decode(&opts, "preflight").at(&ctx)?;
        let require_snapshot = match o.snapshot.as_deref() {
            None | Some("require") => true,
            Some("if_supported") => false,
            Some(other) => {
                return Err(RalfError::invalid(format!(
                "preflight: option snapshot must be \"require\" or \"if_supported\", got {other}"
            )))
                .at(&ctx)
            }
        };
        let expect = o.expect.as_deref().map(check_hash).transpose().at(&ctx)?;
        let services = services_of(&plan).at(&ctx)?;
        let cfg = h.cfg().clone();
        let sem =
            endpoint::<Semaphore, _>(&env, "sem", "semaphore", cfg.semaphore.is_some(), |s| {
                s.client.clone()
            });
        let pve = endpoint::<Pve, _>(&env, "pve", "proxmox", cfg.proxmox.is_some(), |p| {
            p.c.clone()
        });
        let po = Opts {
            snapshots: o.snapshots.unwrap_or(true),
            require_snapshot,
            smoke_template: o.smoke_template.unwrap_or(true),
            smoke_over_ssh: o.smoke_over_ssh.unwrap_or(true),
            secrets: o.secrets.unwrap_or(true),
        };
        let path = h.config.path.clone();
        let report = block_on(&h, "preflight", None, async {
            Ok(preflight::check(&cfg, path.as_deref(), &services, &sem, &pve, &po).await)
        })
        .at(&ctx)?;
        for n in &report.notes {
            tracing::warn!(target: "ralf::preflight", "{n}");
        }
        let report = report.into_result().at(&ctx)?;
        if let Some(want) = expect {
            if want != report.hash {
                return Err(RalfError::new(
                    crate::error::ErrorKind::Conflict,
                    format!(
                        "the plan resolves to {} now, not to the approved {want}: the catalog, the options or the live systems changed since it was approved; nothing was started (look at it again with --plan)",
                        report.hash
                    ),
                )
                .with("plan_hash", report.hash.as_str())
                .with("expected", want.as_str())
                .with("exit_code", 2))
                .at(&ctx);
            }
        }
        tracing::info!(target: "ralf::preflight",
            "preflight: {} references of {} services resolved, no problem", report.checked, services.len());
        let mut m = Map::new();
        m.insert("checked".into(), (report.checked as i64).into());
        m.insert("hash".into(), report.hash.clone().into());
        m.insert(
            "plan".into(),
            crate::script::decode::json_to_dynamic(&serde_json::Value::from(report.resolved)),
        );
        m.insert(
            "notes".into(),
            Dynamic::from_array(report.notes.into_iter().map(Dynamic::from).collect()),
        );
        Ok(m)
    }
}

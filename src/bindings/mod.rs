//! The Rhai surface. One module per domain; `register_all` is the single list of domains.
//!
//! Bindings are thin: they decode arguments/options, call a client in `crate::clients`, and turn
//! results into Rhai values. They reach the run's [`Host`] with [`host`].

pub(crate) mod args;
pub(crate) mod catalog;
pub(crate) mod core;
pub(crate) mod dag;
pub(crate) mod docker;
pub(crate) mod exo;
pub(crate) mod gate;
pub(crate) mod inventory;
pub(crate) mod limits;
pub(crate) mod net;
pub(crate) mod notify;
pub(crate) mod preflight;
pub(crate) mod proxmox;
pub(crate) mod run;
pub(crate) mod semaphore;
pub(crate) mod ssh;
pub(crate) mod strings;

use crate::error::{RResult, RalfError};
use crate::host::Host;
use rhai::{Engine, NativeCallContext};
use std::sync::Arc;

/// The host, stored as the engine's default tag so every native call can reach it.
#[derive(Clone)]
pub(crate) struct HostRef(pub Arc<Host>);

/// The host of the run this call belongs to.
pub(crate) fn host(ctx: &NativeCallContext) -> RResult<Arc<Host>> {
    ctx.tag()
        .and_then(|t| t.read_lock::<HostRef>().map(|h| h.0.clone()))
        .or_else(|| {
            ctx.engine()
                .default_tag()
                .read_lock::<HostRef>()
                .map(|h| h.0.clone())
        })
        .ok_or_else(|| RalfError::internal("no host attached to this engine"))
}

/// Convert an error into a Rhai error positioned at the call site of the current native call.
/// Rhai does not fill the position of every (e.g. namespaced) native call by itself.
pub(crate) fn at(ctx: &NativeCallContext, e: RalfError) -> Box<rhai::EvalAltResult> {
    Box::new(rhai::EvalAltResult::ErrorRuntime(
        e.to_dynamic(),
        ctx.call_position(),
    ))
}

/// `result.at(&ctx)?`: position a binding's error at the script's call site.
pub(crate) trait AtCall<T> {
    fn at(self, ctx: &NativeCallContext) -> Result<T, Box<rhai::EvalAltResult>>;
}

impl<T> AtCall<T> for RResult<T> {
    fn at(self, ctx: &NativeCallContext) -> Result<T, Box<rhai::EvalAltResult>> {
        self.map_err(|e| at(ctx, e))
    }
}

/// Register every domain. Adding a domain is one line here.
pub(crate) fn register_all(engine: &mut Engine) {
    core::register(engine);
    strings::register(engine);
    args::register(engine);
    limits::register(engine);
    dag::register(engine);
    catalog::register(engine);
    run::register(engine);
    semaphore::register(engine);
    proxmox::register(engine);
    ssh::register(engine);
    ssh::secret_sync::register(engine);
    docker::register(engine);
    exo::register(engine);
    exo::fix::register(engine);
    notify::register(engine);
    preflight::register(engine);
    gate::register(engine);
    net::register(engine);
}

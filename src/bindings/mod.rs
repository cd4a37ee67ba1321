//! The Rhai surface. One module per domain; `register_all` is the single list of domains.
//!
//! Bindings are thin: they decode arguments/options, call a client in `crate::clients`, and turn
//! results into Rhai values. They reach the run's [`Host`] with [`host`].

pub mod args;
pub mod catalog;
pub mod core;
pub mod dag;
pub mod docker;
pub mod exo;
pub mod gate;
pub mod inventory;
pub mod limits;
pub mod net;
pub mod notify;
pub mod proxmox;
pub mod run;
pub mod semaphore;
pub mod ssh;
pub mod strings;

use crate::error::{RResult, RalfError};
use crate::host::Host;
use rhai::{Engine, NativeCallContext};
use std::sync::Arc;

/// The host, stored as the engine's default tag so every native call can reach it.
#[derive(Clone)]
pub struct HostRef(pub Arc<Host>);

/// The host of the run this call belongs to.
pub fn host(ctx: &NativeCallContext) -> RResult<Arc<Host>> {
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
pub fn at(ctx: &NativeCallContext, e: RalfError) -> Box<rhai::EvalAltResult> {
    Box::new(rhai::EvalAltResult::ErrorRuntime(
        e.to_dynamic(),
        ctx.call_position(),
    ))
}

/// `result.at(&ctx)?`: position a binding's error at the script's call site.
pub trait AtCall<T> {
    fn at(self, ctx: &NativeCallContext) -> Result<T, Box<rhai::EvalAltResult>>;
}

impl<T> AtCall<T> for RResult<T> {
    fn at(self, ctx: &NativeCallContext) -> Result<T, Box<rhai::EvalAltResult>> {
        self.map_err(|e| at(ctx, e))
    }
}

/// Register every domain. Adding a domain is one line here.
pub fn register_all(engine: &mut Engine) {
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
    gate::register(engine);
    net::register(engine);
}

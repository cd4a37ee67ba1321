//! The run's SSH connection pool (one master per host) and host-name resolution.

use crate::clients::ssh::{self as client, Handle, Pool, Settings};
use crate::error::RResult;
use crate::host::Host;
use std::sync::Arc;

/// The run's connection pool (one master per host).
pub fn pool(h: &Host) -> Arc<Pool> {
    h.extension(|| Pool::new(Settings::from_config(&h.cfg().ssh)))
}

/// Resolve an alias / literal to a handle (no connection yet).
pub fn handle_for(h: &Host, name: &str) -> RResult<Handle> {
    if name == "local" && !h.cfg().hosts.contains_key("local") {
        return Ok(Handle::local(pool(h).settings.max_output));
    }
    if let Some(c) = h.cfg().hosts.get(name) {
        if c.transport.as_deref() == Some("local") {
            return Ok(Handle::local_alias(
                name,
                c.env.clone(),
                pool(h).settings.max_output,
            ));
        }
    }
    let t = client::resolve(name, &h.cfg().hosts)?;
    Ok(Handle::remote(t, pool(h)))
}

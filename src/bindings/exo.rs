//! `exo::` bindings (not yet implemented).

use rhai::Engine;

pub fn register(_engine: &mut Engine) {}

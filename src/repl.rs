//! The REPL.
use crate::host::Host;
use std::sync::Arc;
pub fn run(_host: &Arc<Host>) -> i32 { todo!() }

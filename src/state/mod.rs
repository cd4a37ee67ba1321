//! State store (SQLite): runs, steps, service status, events, run lock (not yet implemented).

use crate::host::Host;
use std::sync::Arc;

/// `ralf-sh history`.
pub fn cli_history(_host: &Arc<Host>, _service: Option<String>, _run: Option<String>, _json: bool) -> i32 {
    eprintln!("error: the state store is not implemented yet");
    crate::engine::exit::FAILED
}

/// `ralf-sh resume RUN_ID`.
pub fn cli_resume(_host: &Arc<Host>, _run_id: &str) -> i32 {
    eprintln!("error: the state store is not implemented yet");
    crate::engine::exit::FAILED
}

//! `ralf-sh docs`.
use crate::host::Host;
use std::sync::Arc;
pub fn run(_host: &Arc<Host>, _f: crate::cli::DocsFormat, _out: Option<&std::path::Path>) -> i32 { todo!() }

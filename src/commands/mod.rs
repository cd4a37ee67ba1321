//! CLI commands that are not "run a script": each in a file of its own.

pub(crate) mod check;
pub(crate) mod docs;
pub(crate) mod doctor;
pub(crate) mod history;
pub(crate) mod lab;
pub(crate) mod repl;
pub(crate) mod state;
pub(crate) mod test;

//! CLI commands that are not "run a script": each in a file of its own.

pub mod check;
pub mod docs;
pub mod doctor;
pub mod history;
pub mod lab;
pub mod repl;
pub mod state;
pub mod test;

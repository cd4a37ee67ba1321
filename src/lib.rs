//! ralf-sh: a Rhai shell for homelab rollouts. See README.md and DESIGN.md.

pub mod app;
pub(crate) mod bindings;
pub mod catalog;
pub(crate) mod cli;
pub mod clients;
pub(crate) mod commands;
pub mod config;
pub mod engine;
pub mod error;
pub mod host;
pub mod lab;
pub(crate) mod logging;
pub(crate) mod out;
pub(crate) mod preflight;
pub(crate) mod progress;
pub mod redact;
pub(crate) mod script;
pub(crate) mod secrets;
pub mod serve;
pub mod session;
pub mod state;
pub mod text;
pub(crate) mod tls;
pub mod yaml;

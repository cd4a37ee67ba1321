//! ralf-sh: a Rhai shell for homelab rollouts. See README.md and DESIGN.md.

pub mod app;
pub mod bindings;
pub mod catalog;
pub mod cli;
pub mod clients;
pub mod commands;
pub mod config;
pub mod engine;
pub mod error;
pub mod host;
pub mod lab;
pub mod logging;
pub mod out;
pub mod progress;
pub mod redact;
pub mod script;
pub mod secrets;
pub mod serve;
pub mod session;
pub mod state;
pub mod text;
pub mod tls;
pub mod yaml;

//! Every integration suite in one test binary (one link of the crate instead of one per suite),
//! sharing the harness in `common/`. `cargo test --test it SUITE::` runs one suite.

mod common;

mod architecture;
mod catalog;
mod cli;
mod dashboard;
mod deploy;
mod doc_examples;
mod docker;
mod exo;
mod faults;
mod flows;
mod fuzz;
mod gates;
mod heal;
mod inventory;
mod lab;
mod limits;
mod llm_profiles;
mod llm_real;
mod logs;
mod output;
mod output_cap;
mod preflight;
mod proxmox;
mod proxmox_deploy;
mod proxmox_versions;
mod release;
mod repl;
mod runbook;
mod semaphore;
mod semaphore_versions;
mod serve;
mod ssh;
mod state_pg;
mod state_store;

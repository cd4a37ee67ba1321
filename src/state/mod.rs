//! State store: runs, steps, service status, events, the run lock and lease, metrics, on SQLite or
//! PostgreSQL. What a run does with it (the run context, the journal) is in [`crate::session`].
//!
//! Where: config `state.url` (a PostgreSQL store shared by several controllers), else `state.path`
//! (a SQLite file, relative to the config file), else `$XDG_STATE_HOME/ralf/state.db`.

pub mod lease;
pub mod lock;
pub mod metrics;
pub mod model;
pub mod postgres;
pub mod sqlite;
pub mod store;

pub use model::{Dump, EventRecord, GateAnswer, RunRecord, ServiceRecord, StepRecord};
pub use store::Store;

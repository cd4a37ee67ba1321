//! Local stand-ins of the APIs that cannot run here (Semaphore, Proxmox, an OpenAI-compatible LLM),
//! used by `ralf-sh lab` and by the tests. Each stand-in listens on loopback only.

pub mod exo;
pub mod proxmox;
pub mod semaphore;

use crate::engine::error::RResult;
use serde_json::{Map, Value};

/// Running stand-ins. Dropping it stops them.
#[derive(Default)]
pub struct Lab {
    /// One JSON object per stand-in, keyed by its name ("semaphore", "proxmox", "exo").
    pub info: Map<String, Value>,
    /// Whatever keeps each stand-in alive (server task handles, temp dirs); dropped with the lab.
    pub guards: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

impl Lab {
    /// The JSON line printed by `ralf-sh lab serve`.
    pub fn info_line(&self) -> String {
        Value::Object(self.info.clone()).to_string()
    }
}

/// Start every stand-in on 127.0.0.1 with ephemeral ports. Must be called within a tokio runtime.
pub async fn start_all() -> RResult<Lab> {
    let mut lab = Lab::default();
    semaphore::start(&mut lab).await?;
    proxmox::start(&mut lab).await?;
    exo::start(&mut lab).await?;
    Ok(lab)
}

//! exo stand-in (not yet implemented).

use crate::engine::error::RResult;

/// Start the stand-in and add its key to `lab.info`.
pub async fn start(_lab: &mut super::Lab) -> RResult<()> {
    Ok(())
}

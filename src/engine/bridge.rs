//! The async bridge: the only place where a binding waits for a future.
//!
//! Scripts run on a blocking thread; [`block_on`] runs a future on the host's tokio runtime and
//! races it against the run's cancel token and the call's deadline.

use crate::engine::error::{RResult, RalfError};
use crate::host::Host;
use std::future::Future;
use std::time::Duration;

/// Run `fut` to completion, unless the run is cancelled (`cancelled` error) or `timeout` passes
/// (`timeout` error naming `what`). Must not be called from inside the runtime's async context.
pub fn block_on<T, F>(host: &Host, what: &str, timeout: Option<Duration>, fut: F) -> RResult<T>
where
    F: Future<Output = RResult<T>>,
{
    host.check_cancelled()?;
    let cancel = host.cancel.clone();
    let run = async move {
        let deadline = async {
            match timeout {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(RalfError::cancelled()),
            r = fut => r,
            _ = deadline => Err(RalfError::timeout(format!(
                "{what} did not finish within {}",
                crate::engine::render::human_duration(timeout.unwrap_or_default())
            ))),
        }
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        // Called from a runtime thread (a bug in the caller, or a test): use block_in_place when allowed.
        return tokio::task::block_in_place(|| host.rt.block_on(run));
    }
    host.rt.block_on(run)
}

/// Sleep for `d`, waking early (with `cancelled`) when the run is cancelled.
pub fn sleep(host: &Host, d: Duration) -> RResult<()> {
    block_on(host, "sleep", None, async move {
        tokio::time::sleep(d).await;
        Ok(())
    })
}

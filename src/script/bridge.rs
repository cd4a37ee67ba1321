//! The async bridge: the only place where a binding waits for a future.
//!
//! Scripts run on a blocking thread; [`block_on`] runs a future on the host's tokio runtime and
//! races it against the run's cancel token and the call's deadline.

use crate::error::{RResult, RalfError};
use crate::host::Host;
use std::future::Future;
use std::time::Duration;

/// Run `fut` to completion, unless the run is cancelled (`cancelled` error) or `timeout` passes
/// (`timeout` error naming `what`). Must not be called from inside the runtime's async context.
pub(crate) fn block_on<T, F>(
    host: &Host,
    what: &str,
    timeout: Option<Duration>,
    fut: F,
) -> RResult<T>
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
                crate::text::human_duration(timeout.unwrap_or_default())
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
pub(crate) fn sleep(host: &Host, d: Duration) -> RResult<()> {
    block_on(host, "sleep", None, async move {
        tokio::time::sleep(d).await;
        Ok(())
    })
}

/// The tokio runtime every entry point shares (2 workers, room for blocking calls).
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .thread_stack_size(8 * 1024 * 1024)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Host, HostOptions};

    #[test]
    fn cancel_wakes_a_blocked_call() {
        let rt = runtime();
        let host = Host::new(
            Default::default(),
            rt.handle().clone(),
            HostOptions::default(),
        );
        let h2 = host.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            h2.cancel.cancel();
        });
        let start = std::time::Instant::now();
        let r = sleep(&host, Duration::from_secs(20));
        t.join().unwrap();
        assert_eq!(r.unwrap_err().kind, crate::error::ErrorKind::Cancelled);
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn deadline_gives_timeout() {
        let rt = runtime();
        let host = Host::new(
            Default::default(),
            rt.handle().clone(),
            HostOptions::default(),
        );
        let r: RResult<()> = block_on(
            &host,
            "waiting for godot",
            Some(Duration::from_millis(50)),
            async {
                tokio::time::sleep(Duration::from_secs(20)).await;
                Ok(())
            },
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::Timeout);
        assert_eq!(e.message, "waiting for godot did not finish within 50ms");
    }
}

//! The run lock of a shared (PostgreSQL) store: a lease row with an expiry that the holder's
//! heartbeat keeps renewing. A controller killed with -9 stops renewing; once the lease has
//! expired another controller takes it over (and resumes the interrupted run). Times are the
//! database server's, so controllers with skewed clocks agree.

use super::lock::Holder;
use super::store::Store;
use crate::error::{ErrorKind, RResult, RalfError};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// Take the run lease of a shared store, or fail with kind `locked` (exit code 75) naming the holder.
pub fn acquire(store: &Store, me: &Holder) -> RResult<()> {
    let lease = store
        .lease()
        .ok_or_else(|| RalfError::internal("the state store has no run lease"))?;
    match lease.acquire(me)? {
        Ok(None) => Ok(()),
        Ok(Some(old)) if old.is_dead_here() => {
            tracing::warn!(
                target: "ralf::lock",
                "taking over the run lease of a process that is gone: {old}"
            );
            Ok(())
        }
        Ok(Some(old)) => {
            tracing::warn!(
                target: "ralf::lock",
                "taking over an expired run lease: {old} (its controller stopped renewing it)"
            );
            Ok(())
        }
        Err((h, until)) => Err(RalfError::new(
            ErrorKind::Locked,
            format!(
                "another run holds the run lock: {h}; lease in {} until {until}",
                store.location
            ),
        )
        .with("exit_code", crate::error::exit::LOCKED)
        .with("pid", h.pid)
        .with("host", h.host)
        .with("run_id", h.run_id)
        .with("since", h.since)),
    }
}

/// Keeps a run alive in a shared store: renews its heartbeat (and its lease, once taken) every
/// third of the lease. When the lease is lost (the database was unreachable past the expiry and
/// another controller took over), `on_lost` is called once: the run must stop.
pub struct Heartbeat {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The holder record while this run holds the lease.
    lease_held: Arc<parking_lot::Mutex<Option<Holder>>>,
    store: Arc<Store>,
}

impl Heartbeat {
    pub fn start(
        store: Arc<Store>,
        run_id: &str,
        on_lost: impl Fn() + Send + 'static,
    ) -> Heartbeat {
        let (tx, rx) = mpsc::channel::<()>();
        let held: Arc<parking_lot::Mutex<Option<Holder>>> = Default::default();
        let every = store
            .lease()
            .map(|l| l.ttl() / 3)
            .unwrap_or(Duration::from_secs(10))
            .max(Duration::from_millis(200));
        let (st, id, h) = (store.clone(), run_id.to_string(), held.clone());
        let thread = std::thread::Builder::new()
            .name("ralf-heartbeat".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                    if let Err(e) = st.heartbeat(&id) {
                        tracing::warn!(target: "ralf::state", "run heartbeat failed: {e}");
                    }
                    let Some(me) = h.lock().clone() else {
                        continue;
                    };
                    match st.lease().map(|l| l.renew(&me)) {
                        Some(Ok(true)) | None => {}
                        Some(Ok(false)) => {
                            tracing::error!(target: "ralf::lock", "run {id} lost its run lease (another controller took it over after it expired); stopping");
                            *h.lock() = None;
                            on_lost();
                        }
                        Some(Err(e)) => {
                            tracing::warn!(target: "ralf::lock", "could not renew the run lease: {e}")
                        }
                    }
                }
            })
            .ok();
        Heartbeat {
            stop: Some(tx),
            thread,
            lease_held: held,
            store,
        }
    }

    /// The run now holds the lease as `me`: renew it with the heartbeat, release it at the end.
    pub fn hold_lease(&self, me: &Holder) {
        *self.lease_held.lock() = Some(me.clone());
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(me) = self.lease_held.lock().take() {
            if let Some(l) = self.store.lease() {
                if let Err(e) = l.release(&me) {
                    tracing::warn!(target: "ralf::lock", "could not release the run lease: {e}");
                }
            }
        }
    }
}

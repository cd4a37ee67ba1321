//! Plain async Rust clients, one folder per domain. No Rhai types here.

pub mod docker;
pub mod exo;
pub mod gate;
pub mod notify;
pub mod proxmox;
pub mod semaphore;
pub mod ssh;

/// `reqwest::Client::builder()` with the crypto provider in place.
pub fn http_builder() -> reqwest::ClientBuilder {
    crate::tls::ensure_crypto();
    reqwest::Client::builder()
}

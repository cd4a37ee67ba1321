//! Plain async Rust clients, one folder per domain. No Rhai types here.

pub mod docker;
pub mod exo;
pub mod gate;
pub mod notify;
pub mod proxmox;
pub mod semaphore;
pub mod ssh;

/// Install ring as the process's TLS crypto provider (once). reqwest is built without a provider
/// of its own (`rustls-no-provider`: no aws-lc), so every HTTP client goes through here first.
pub fn ensure_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first: that one is used, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// `reqwest::Client::builder()` with the crypto provider in place.
pub fn http_builder() -> reqwest::ClientBuilder {
    ensure_crypto();
    reqwest::Client::builder()
}

//! The process's TLS crypto provider, for every client and the lab's stand-ins alike.

/// Install ring as the process's TLS crypto provider (once). reqwest is built without a provider
/// of its own (`rustls-no-provider`: no aws-lc), so every HTTP client goes through here first.
pub(crate) fn ensure_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first: that one is used, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

//! TLS for the Proxmox client: verified by default, SHA-256 pinning for self-signed clusters.
//!
//! A pinned connection uses [`PinVerifier`]: it accepts exactly the leaf certificate whose SHA-256
//! matches the configured fingerprint (the value Proxmox shows as `ssl_fingerprint` in `GET /nodes`
//! and `pvenode cert info`), and still checks the handshake signatures with that certificate.

use parking_lot::Mutex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// `AB:CD:...` (uppercase, colon-separated) SHA-256 of a DER certificate.
pub fn fingerprint_of(der: &[u8]) -> String {
    let d = Sha256::digest(der);
    d.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub use crate::text::normalize_fingerprint;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts the server when the leaf certificate's SHA-256 equals `expected` (or, with `expected`
/// None, accepts nothing and only records what the server presented: used to tell the user which
/// fingerprint to pin). The fingerprint seen last is kept in `seen`.
#[derive(Debug)]
pub struct PinVerifier {
    pub expected: Option<String>,
    pub seen: Arc<Mutex<Option<String>>>,
    provider: Arc<CryptoProvider>,
}

impl PinVerifier {
    pub fn new(expected: Option<String>) -> Self {
        PinVerifier {
            expected,
            seen: Arc::new(Mutex::new(None)),
            provider: provider(),
        }
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = fingerprint_of(end_entity.as_ref());
        *self.seen.lock() = Some(actual.clone());
        match &self.expected {
            Some(exp) if *exp == actual => Ok(ServerCertVerified::assertion()),
            Some(exp) => Err(rustls::Error::General(format!(
                "certificate fingerprint mismatch: expected {exp}, server presented {actual}"
            ))),
            None => Err(rustls::Error::General(format!(
                "certificate not pinned (server presented {actual})"
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client config that uses `verifier` for the server certificate.
pub fn client_config(verifier: Arc<PinVerifier>) -> Result<rustls::ClientConfig, String> {
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_fingerprints() {
        let colon = "ab:cd:".repeat(16);
        let colon = colon.trim_end_matches(':');
        let n = normalize_fingerprint(colon).unwrap();
        assert_eq!(n.len(), 95);
        assert!(n.starts_with("AB:CD:AB"));
        assert_eq!(normalize_fingerprint(&"abcd".repeat(16)).unwrap(), n);
        assert!(normalize_fingerprint("AB:CD")
            .unwrap_err()
            .contains("4 hex digits"));
        assert!(normalize_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn fingerprint_format() {
        let f = fingerprint_of(b"hello");
        assert_eq!(f.split(':').count(), 32);
        assert!(f.starts_with("2C:F2:4D:BA"));
    }
}

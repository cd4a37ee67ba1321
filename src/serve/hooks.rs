//! Webhook deliveries: which sender signed them, the signature check (HMAC-SHA256, constant time,
//! before the body is parsed), the delivery id, and the push event's repository, branch and commit.
//!
//! Senders and their headers (read from their sources' docs and code):
//! - GitHub: `X-Hub-Signature-256: sha256=<hex>`, `X-GitHub-Delivery`, `X-GitHub-Event`;
//! - Gitea: `X-Gitea-Signature: <hex>`, `X-Gitea-Delivery`, `X-Gitea-Event`;
//! - Forgejo: `X-Forgejo-Signature`, `X-Forgejo-Delivery`, `X-Forgejo-Event` (Gitea's headers too);
//! - anything else: `X-Ralf-Signature: sha256=<hex>` and `X-Ralf-Delivery` (optional).

use hmac::{KeyInit, Mac};
use serde_json::Value;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Largest body accepted (GitHub caps its payloads at 25 MB; a push is far smaller).
pub const MAX_BODY: usize = 1024 * 1024;

/// What the headers say about a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub sender: &'static str,
    /// The hex signature as sent (without `sha256=`).
    pub signature: Option<String>,
    pub id: Option<String>,
    pub event: Option<String>,
}

/// Reads the sender, signature, delivery id and event from the headers (`get` by lower-case name).
pub fn delivery(get: impl Fn(&str) -> Option<String>) -> Delivery {
    let strip = |s: String| s.strip_prefix("sha256=").map(str::to_string).unwrap_or(s);
    if let Some(sig) = get("x-hub-signature-256") {
        return Delivery {
            sender: "github",
            signature: Some(strip(sig)),
            id: get("x-github-delivery"),
            event: get("x-github-event"),
        };
    }
    if let Some(sig) = get("x-forgejo-signature") {
        return Delivery {
            sender: "forgejo",
            signature: Some(sig),
            id: get("x-forgejo-delivery").or_else(|| get("x-gitea-delivery")),
            event: get("x-forgejo-event").or_else(|| get("x-gitea-event")),
        };
    }
    if let Some(sig) = get("x-gitea-signature") {
        return Delivery {
            sender: "gitea",
            signature: Some(sig),
            id: get("x-gitea-delivery"),
            event: get("x-gitea-event"),
        };
    }
    Delivery {
        sender: "generic",
        signature: get("x-ralf-signature").map(strip),
        id: get("x-ralf-delivery"),
        event: get("x-ralf-event"),
    }
}

/// Whether `hex_sig` is the HMAC-SHA256 of `body` under `secret` (constant-time comparison).
pub fn verify(secret: &[u8], body: &[u8], hex_sig: &str) -> bool {
    let Ok(sig) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The signature a sender would put on `body` (the lab's push sender and the tests use it).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A push event's facts (GitHub, Gitea and Forgejo send the same fields).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Push {
    pub repository: String,
    pub branch: String,
    pub commit: String,
}

/// Reads a push payload; None when it is not one (no `ref` or no repository).
pub fn push(v: &Value) -> Option<Push> {
    let r = v.get("ref")?.as_str()?;
    let branch = r.strip_prefix("refs/heads/").unwrap_or(r).to_string();
    let repository = v.get("repository")?.get("full_name")?.as_str()?.to_string();
    let commit = v
        .get("after")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Some(Push {
        repository,
        branch,
        commit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_signatures_and_pushes() {
        // RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?").
        let want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(sign(b"Jefe", b"what do ya want for nothing?"), want);
        assert!(verify(b"Jefe", b"what do ya want for nothing?", want));
        assert!(!verify(b"Jefe", b"what do ya want for nothing!", want));
        assert!(!verify(b"Jefe", b"x", "not hex"));
        assert!(!verify(b"Jefe", b"x", &want[..10]));

        let h = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let d = delivery(h(&[
            ("x-hub-signature-256", "sha256=ab"),
            ("x-github-delivery", "d1"),
            ("x-github-event", "push"),
        ]));
        assert_eq!(
            (d.sender, d.signature.as_deref(), d.id.as_deref()),
            ("github", Some("ab"), Some("d1"))
        );
        let d = delivery(h(&[
            ("x-gitea-signature", "cd"),
            ("x-gitea-delivery", "d2"),
            ("x-forgejo-signature", "cd"),
        ]));
        assert_eq!(d.sender, "forgejo");
        assert_eq!(d.id.as_deref(), Some("d2"));
        let d = delivery(h(&[("x-gitea-signature", "cd")]));
        assert_eq!(d.sender, "gitea");
        let d = delivery(h(&[]));
        assert_eq!((d.sender, d.signature), ("generic", None));

        let p = push(&serde_json::json!({
            "ref": "refs/heads/main", "after": "abc123",
            "repository": { "full_name": "ralf/infra" }
        }))
        .unwrap();
        assert_eq!(
            p,
            Push {
                repository: "ralf/infra".into(),
                branch: "main".into(),
                commit: "abc123".into()
            }
        );
        assert!(push(&serde_json::json!({"zen": "ping"})).is_none());
    }
}

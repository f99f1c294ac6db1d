//! Signing outgoing webhooks two ways at once, so both kinds of consumer verify them unchanged:
//! Standard Webhooks (`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`) and
//! GitHub (`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of body>`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngExt;

use crate::crypto::hmac_sha256;

/// The key Standard Webhooks signs with: the base64-decoded part after `whsec_` when the secret
/// has that form, else the secret's UTF-8 bytes.
pub fn standard_webhooks_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// `v1,<signature>` for the `webhook-signature` header.
pub fn standard_webhooks_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = standard_webhooks_key(secret);
    let timestamp = timestamp.to_string();
    let mac = hmac_sha256(
        &key,
        &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    );
    format!("v1,{}", STANDARD.encode(mac))
}

/// `sha256=<hex>` for `X-Hub-Signature-256`, keyed by the secret's UTF-8 bytes as GitHub does.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), &[body]))
    )
}

/// A fresh `whsec_` secret (24 random bytes), for hooks created without one.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill(&mut bytes);
    format!("whsec_{}", STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_published_test_vector() {
        assert_eq!(
            standard_webhooks_signature(
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                br#"{"email":"test@example.com","username":"test_user"}"#,
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn github_published_example() {
        assert_eq!(
            github_signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn generated_secrets_are_standard_webhooks_keys() {
        let secret = generate_secret();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(standard_webhooks_key(&secret).len(), 24);
    }
}

//! Messenger connectors, inbound: each takes its platform's request, checks it (signature,
//! secret token, shape), hands (contact, text) to the [bot engine](crate::bot), and turns the
//! engine's [`Reply`](crate::bot::Reply) into the platform's exact format and limits. Answers
//! that are not the HTTP response itself (Telegram, Webex, Kakao callbacks) go through the
//! delivery queue like every notification: durable, retried, paced per destination.
//!
//! **Boundary**: platform wire types live here and in `channels/`; the engine never sees them.

pub mod kakao;
pub mod kakao_gate;
pub mod plusfriend;
pub mod telegram;
pub mod webex;

/// Inbound messages longer than this are cut before they reach the engine (which answers that
/// they are too long); the body limit of the routes is larger, so the sender gets a polite reply.
pub const MAX_INBOUND_TEXT_BYTES: usize = 16 * 1024;

/// Whether a URL points at the public internet (platforms can call it back), as opposed to
/// loopback, a private network or a bare host name.
pub fn is_public_url(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) if !domain.contains('.') => false,
        Some(host) => crate::netguard::refuse_literal(&host).is_ok(),
        None => false,
    }
}

/// A secret derived from a platform credential, for when the operator set none: inbound
/// requests are always authenticated, and the value is stable across restarts and nodes.
pub fn derived_secret(purpose: &str, credential: &str) -> String {
    let mac = crate::crypto::hmac_sha256_hex(credential.as_bytes(), purpose.as_bytes());
    mac[..48].to_string()
}

/// Cuts inbound text to [`MAX_INBOUND_TEXT_BYTES`] on a character boundary.
pub fn bounded(text: &str) -> &str {
    crate::text::prefix_bytes(text, MAX_INBOUND_TEXT_BYTES)
}

//! Messenger connectors, inbound: each takes its platform's request, checks it (signature,
//! secret token, shape), hands (contact, text) to the [bot engine](crate::bot), and turns the
//! engine's [`Reply`](crate::bot::Reply) into the platform's exact format and limits. Answers
//! that are not the HTTP response itself (Telegram, Webex, Kakao callbacks) go through the
//! delivery queue like every notification: durable, retried, paced per destination.
//!
//! **Boundary**: platform wire types live here and in `channels/`; the engine never sees them.

pub mod kakao;
pub mod plusfriend;
pub mod telegram;
pub mod webex;

use crate::outbox::{self, NewDelivery};
use crate::state::AppState;
use crate::store::{Script, StoreError};

/// Inbound messages longer than this are cut before they reach the engine (which answers that
/// they are too long); the body limit of the routes is larger, so the sender gets a polite reply.
pub const MAX_INBOUND_TEXT_BYTES: usize = 16 * 1024;

/// Queues the bot's answer(s) for sending. With `inbound`, the platform's message id is recorded
/// in the same transaction, and nothing is queued if that message was already answered (the
/// platform redelivered it). Returns whether anything was queued.
pub async fn queue_replies(
    state: &AppState,
    inbound: Option<(&str, &str)>,
    deliveries: Vec<NewDelivery>,
) -> Result<bool, StoreError> {
    let mut tx = state.db.writer().begin().await?;
    if let Some((source, id)) = inbound {
        let inserted = sqlx::query(
            "INSERT INTO inbound_deliveries (source, delivery_id, received_at) VALUES ($1, $2, $3) \
             ON CONFLICT (source, delivery_id) DO NOTHING",
        )
        .bind(source)
        .bind(id)
        .bind(crate::ids::now_ms())
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(false);
        }
    }
    let queued = deliveries.len();
    let mut script = Script::new(state.db.backend);
    let leased =
        outbox::enqueue_local_first(&mut script, &state.ids, &state.local_queue, deliveries);
    if let Err(error) = script.run_in(&mut tx).await {
        state.local_queue.release(leased.len());
        return Err(error);
    }
    outbox::commit_and_dispatch(tx, &state.local_queue, &state.outbox_wake, queued, leased).await?;
    Ok(true)
}

/// Whether a platform message was already answered (a cheap read before doing the work).
pub async fn already_answered(
    state: &AppState,
    source: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM inbound_deliveries WHERE source = $1 AND delivery_id = $2",
    )
    .bind(source)
    .bind(id)
    .fetch_optional(state.db.reader())
    .await?;
    Ok(found.is_some())
}

/// One reply delivery to a contact on a channel.
pub fn reply_delivery(
    channel: &str,
    destination: &str,
    contact_id: i64,
    payload: serde_json::Value,
) -> NewDelivery {
    NewDelivery {
        channel: channel.to_string(),
        destination: destination.to_string(),
        payload: payload.to_string(),
        event_id: None,
        contact_id: Some(contact_id),
        webhook_id: None,
        event_type: Some("bot_reply".into()),
    }
}

/// Whether a URL points at the public internet (platforms can call it back), as opposed to
/// loopback, a private network or a bare host name.
pub fn is_public_url(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => {
            domain.contains('.') && !crate::watch::repo::is_private_host(domain)
        }
        Some(url::Host::Ipv4(ip)) => !crate::watch::repo::is_private_ip(ip.into()),
        Some(url::Host::Ipv6(ip)) => !crate::watch::repo::is_private_ip(ip.into()),
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

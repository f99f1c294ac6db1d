//! Queuing the engine's answers: whatever is not the HTTP response itself (a Telegram or Webex
//! message, a Kakao callback, a chat DM) goes through the delivery queue like every
//! notification — durable, retried, paced per destination — and is queued once per platform
//! message, however often the platform delivers it.

use crate::outbox::{self, NewDelivery};
use crate::state::AppState;
use crate::store::{Script, StoreError};

/// Queues the bot's answer(s) for sending. With `inbound`, the platform's message id is recorded
/// in the same transaction, and nothing is queued if that message was already answered (the
/// platform redelivered it). Returns whether anything was queued.
pub async fn queue_replies(
    state: &AppState,
    inbound: Option<(&str, &str)>,
    deliveries: Vec<NewDelivery>,
) -> Result<bool, StoreError> {
    let mut tx = state.db.writer().begin().await?;
    if let Some((source, id)) = inbound
        && !crate::inbound::record_in(&mut tx, source, id, crate::ids::now_ms()).await?
    {
        return Ok(false);
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
    crate::inbound::is_recorded(&state.db, source, id).await
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

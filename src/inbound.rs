//! Ids of inbound deliveries already handled — a forge's webhook delivery id, a Telegram update,
//! a Webex message id, a chat message to the bot — so that a platform's redelivery is recognised
//! and nothing is announced or answered twice.
//!
//! **Boundary**: this module owns `inbound_deliveries`. An id is recorded in the same
//! transaction as what handling it queued, by [`record_in`] (ignoring an id recorded already)
//! or [`record_into`] (failing the whole script if another node recorded it meanwhile, so its
//! caller reads again and finds a duplicate); retention prunes old ids through [`PRUNE_SQL`].

use crate::store::{Db, ROWS_PER_STATEMENT, Script, StoreError, values_rows};

/// Records `(source, id)` inside `tx`; `false` when it was recorded already (a redelivery).
pub async fn record_in(
    tx: &mut sqlx::AnyConnection,
    source: &str,
    id: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO inbound_deliveries (source, delivery_id, received_at) VALUES ($1, $2, $3) \
         ON CONFLICT (source, delivery_id) DO NOTHING",
    )
    .bind(source)
    .bind(id)
    .bind(now_ms)
    .execute(tx)
    .await?;
    Ok(inserted.rows_affected() > 0)
}

/// Adds the recording of `ids` to `script`, without `ON CONFLICT`: an id another node recorded
/// since the caller read makes the whole script fail (see `push::ingest`).
pub fn record_into(script: &mut Script, ids: &[(&str, &str)], now_ms: i64) {
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        script.push(format!(
            "INSERT INTO inbound_deliveries (source, delivery_id, received_at) VALUES {}",
            values_rows(chunk.len(), 3)
        ));
        for (source, id) in chunk {
            script.bind(*source).bind(*id).bind(now_ms);
        }
    }
}

/// Whether `(source, id)` was handled already (a cheap read before doing the work).
pub async fn is_recorded(db: &Db, source: &str, id: &str) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM inbound_deliveries WHERE source = $1 AND delivery_id = $2",
    )
    .bind(source)
    .bind(id)
    .fetch_optional(db.reader())
    .await?;
    Ok(found.is_some())
}

/// Deletes up to `{BATCH}` ids received before `$1`, oldest first; retention runs it in paced
/// batches (`outbox::retention`), with `{BATCH}` replaced by its batch size.
pub const PRUNE_SQL: &str = "DELETE FROM inbound_deliveries WHERE (source, delivery_id) IN \
     (SELECT source, delivery_id FROM inbound_deliveries WHERE received_at < $1 \
     ORDER BY received_at LIMIT {BATCH})";

//! What the operator's view (`web::operator`) shows of the queue: how many deliveries wait per
//! channel, and the latest failed attempts.
//!
//! Both reads are bounded by an index: waiting rows are found through `deliveries_due (status,
//! next_attempt_at)`, and failed attempts through `delivery_attempts_failed`, a partial index
//! of the attempts that carry an error (migration 0018, whose condition the query repeats word
//! for word), so a log of millions of successes is never walked to find the last failures.

use sqlx::Row;

use crate::store::{Db, StoreError};

/// The deliveries of one channel that are still to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub channel: String,
    /// Every pending row: due now, waiting for a retry, or being sent.
    pub pending: i64,
    /// Of those, due now and not being sent.
    pub due: i64,
    /// Of those, claimed by a node and being sent.
    pub in_flight: i64,
}

/// Pending deliveries per channel, by channel name. `now` is Unix ms.
pub async fn queue_depth(db: &Db, now: i64) -> Result<Vec<QueueDepth>, StoreError> {
    let rows = sqlx::query(
        "SELECT channel, COUNT(*), \
         CAST(SUM(CASE WHEN next_attempt_at <= $1 AND locked_until <= $1 THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN locked_until > $1 THEN 1 ELSE 0 END) AS BIGINT) \
         FROM deliveries WHERE status = 'pending' GROUP BY channel ORDER BY channel",
    )
    .bind(now)
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(QueueDepth {
                channel: row.try_get(0)?,
                pending: row.try_get(1)?,
                due: row.try_get::<Option<i64>, _>(2)?.unwrap_or(0),
                in_flight: row.try_get::<Option<i64>, _>(3)?.unwrap_or(0),
            })
        })
        .collect()
}

/// One failed attempt, with where it was going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedAttempt {
    pub delivery_id: i64,
    /// Unix ms.
    pub attempted_at: i64,
    /// Empty when the delivery itself was pruned since (`HERALD_DELIVERY_RETENTION`).
    pub channel: String,
    pub destination: String,
    pub status_code: Option<i64>,
    pub error: String,
}

/// The latest `limit` failed attempts, newest first.
pub async fn recent_failures(db: &Db, limit: i64) -> Result<Vec<FailedAttempt>, StoreError> {
    let rows = sqlx::query(
        "SELECT a.delivery_id, a.attempted_at, d.channel, d.destination, a.status_code, a.error \
         FROM delivery_attempts a LEFT JOIN deliveries d ON d.id = a.delivery_id \
         WHERE a.error IS NOT NULL ORDER BY a.id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(FailedAttempt {
                delivery_id: row.try_get(0)?,
                attempted_at: row.try_get(1)?,
                channel: row.try_get::<Option<String>, _>(2)?.unwrap_or_default(),
                destination: row.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
                status_code: row.try_get(4)?,
                error: row.try_get::<Option<String>, _>(5)?.unwrap_or_default(),
            })
        })
        .collect()
}

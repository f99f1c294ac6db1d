//! Pruning the delivery log: without it `deliveries`, `delivery_attempts`, `delivery_payloads`
//! and `inbound_deliveries` grow by every event for ever (about 2 KB per delivery with its
//! attempt; a busy node writes millions a day).
//!
//! What goes, once `HERALD_DELIVERY_RETENTION` (default 30 days) has passed since it last
//! changed: a *finished* delivery (delivered, failed or cancelled) with its attempts; a stored
//! payload no delivery points at any more; an inbound delivery id (a redelivered push older than
//! that is still caught by the branch head and the announced commits). A delivery still waiting
//! for a retry is never pruned, however old, and a redelivered or recovered one starts its
//! period again.
//!
//! Work goes in batches of [`BATCH`] rows, each its own short transaction, so that on SQLite
//! pushes and attempt records get the single writer between batches. Every node may prune at
//! once: deleting what another node has just deleted is harmless.

use std::time::Duration;

use sqlx::AssertSqlSafe;
use tokio_util::sync::CancellationToken;

use crate::ids::{first_id_at, now_ms};
use crate::store::{Db, StoreError, placeholders};

/// Rows per batch.
pub const BATCH: usize = 500;

/// The statuses a delivery does not leave without someone asking (redeliver, recover).
const FINISHED: &str = "'delivered', 'failed', 'cancelled'";

/// What one pruning pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub deliveries: u64,
    pub attempts: u64,
    pub payloads: u64,
    pub inbound: u64,
}

impl Pruned {
    pub fn is_empty(&self) -> bool {
        *self == Pruned::default()
    }
}

/// How often a node looks for something to prune: a tenth of the retention period, at least a
/// quarter of a second (tests use periods of seconds) and at most an hour.
pub fn interval(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_millis(250), Duration::from_secs(3600))
}

/// Prunes until `shutdown`: the first pass soon after start (within half a minute), so that a
/// node restarted more often than hourly still prunes, then every [`interval`].
pub async fn run(db: Db, retention: Duration, shutdown: CancellationToken) {
    let mut wait = interval(retention).min(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
        wait = interval(retention);
        match prune(&db, retention).await {
            Ok(pruned) if !pruned.is_empty() => tracing::info!(
                deliveries = pruned.deliveries,
                attempts = pruned.attempts,
                payloads = pruned.payloads,
                inbound_ids = pruned.inbound,
                "pruned the delivery log"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "pruning the delivery log failed"),
        }
    }
}

/// One pruning pass: removes what has been finished for longer than `retention`.
pub async fn prune(db: &Db, retention: Duration) -> Result<Pruned, StoreError> {
    let cutoff = now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut pruned = Pruned::default();
    // Ids are snowflakes: a row last changed before the cutoff was made before it, so the scan
    // is a range of the primary key, not of the whole table.
    let first_kept = first_id_at(cutoff);
    loop {
        let ids: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT id FROM deliveries WHERE id < $1 AND status IN ({FINISHED}) AND updated_at < $2 \
             ORDER BY id LIMIT {BATCH}"
        )))
        .bind(first_kept)
        .bind(cutoff)
        .fetch_all(db.reader())
        .await?;
        if ids.is_empty() {
            break;
        }
        // The conditions are checked again in the writer's transaction: a delivery redelivered
        // since the read above is pending again and stays, with its attempts.
        let finished = format!(
            "SELECT id FROM deliveries WHERE id IN ({}) AND status IN ({FINISHED}) AND updated_at < $1",
            placeholders(2, ids.len())
        );
        let mut tx = db.writer().begin().await?;
        let mut attempts = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM delivery_attempts WHERE delivery_id IN ({finished})"
        )))
        .bind(cutoff);
        let mut deliveries = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM deliveries WHERE id IN ({finished})"
        )))
        .bind(cutoff);
        for id in &ids {
            attempts = attempts.bind(*id);
            deliveries = deliveries.bind(*id);
        }
        pruned.attempts += attempts.execute(&mut *tx).await?.rows_affected();
        pruned.deliveries += deliveries.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        if ids.len() < BATCH {
            break;
        }
        tokio::task::yield_now().await;
    }
    // Payloads made before the cutoff that no delivery points at: a payload is written in the
    // same transaction as its deliveries, and no later delivery takes an old one.
    loop {
        let removed = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM delivery_payloads WHERE id IN (SELECT p.id FROM delivery_payloads p \
             WHERE p.id < $1 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.payload_id = p.id) \
             ORDER BY p.id LIMIT {BATCH})"
        )))
        .bind(first_kept)
        .execute(db.writer())
        .await?
        .rows_affected();
        pruned.payloads += removed;
        if removed < BATCH as u64 {
            break;
        }
        tokio::task::yield_now().await;
    }
    loop {
        let removed = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM inbound_deliveries WHERE (source, delivery_id) IN (SELECT source, delivery_id \
             FROM inbound_deliveries WHERE received_at < $1 ORDER BY received_at LIMIT {BATCH})"
        )))
        .bind(cutoff)
        .execute(db.writer())
        .await?
        .rows_affected();
        pruned.inbound += removed;
        if removed < BATCH as u64 {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(pruned)
}

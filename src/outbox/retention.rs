//! Pruning the delivery log: without it `deliveries`, `delivery_attempts`, `delivery_payloads`
//! and `inbound_deliveries` grow by every event for ever (about 2 KB per delivery with its
//! attempt; a busy node writes millions a day).
//!
//! What goes, once `HERALD_DELIVERY_RETENTION` (default 30 days) has passed since it last
//! changed: a *finished* delivery (delivered, failed or cancelled, and not leased to a sender)
//! with its attempts; a stored payload no delivery points at any more; and, after the retention
//! or [`INBOUND_MINIMUM`] (a week) whichever is longer, an inbound delivery id. A delivery still
//! waiting for a retry is never pruned, however old, and a redelivered or recovered one starts
//! its period again.
//!
//! Work goes in batches of [`BATCH`] rows, each its own short transaction, paced so that on
//! SQLite pushes and attempt records keep most of the single writer's time ([`PAUSE_FACTOR`]).
//! Every node may prune at once: deleting what another node has just deleted is harmless.

use std::time::Duration;

use sqlx::AssertSqlSafe;
use tokio_util::sync::CancellationToken;

use crate::ids::{first_id_at, now_ms};
use crate::store::{Db, StoreError, placeholders};

/// Rows per batch: 50 deliveries with their attempts take about 1 ms of SQLite's writer.
pub const BATCH: usize = 50;

/// After a full batch that held the writer for `t`, pruning waits `PAUSE_FACTOR × t` (at least
/// [`MIN_PAUSE`]) before the next, so that it takes about a tenth of the writer's time. Under
/// 1,000 deliveries/s a batch holds SQLite's writer about 1 ms, so a backlog of 200,000 rows
/// goes in under a minute while pushes keep their usual latency (BENCHMARKS.md).
const PAUSE_FACTOR: u32 = 9;
const MIN_PAUSE: Duration = Duration::from_millis(10);

/// Gives the writer back after a batch that took `held`.
async fn pause_after(held: Duration) {
    tokio::time::sleep((held * PAUSE_FACTOR).max(MIN_PAUSE)).await;
}

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
/// node restarted more often than hourly still prunes, then every [`interval`]. A pass cut
/// short by shutdown rolls its open batch back.
pub async fn run(db: Db, retention: Duration, shutdown: CancellationToken) {
    let mut wait = interval(retention).min(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
        wait = interval(retention);
        let outcome = tokio::select! {
            outcome = prune(&db, retention) => outcome,
            _ = shutdown.cancelled() => return,
        };
        match outcome {
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

/// Inbound delivery ids are kept at least this long whatever the retention: they catch
/// redelivered webhooks (GitHub redelivers by hand for days) and platform retries, and for a
/// branch creation, deletion or force-push they are the only de-duplication there is.
pub const INBOUND_MINIMUM: Duration = Duration::from_secs(7 * 86_400);

fn millis_before_now(period: Duration) -> i64 {
    now_ms().saturating_sub(i64::try_from(period.as_millis()).unwrap_or(i64::MAX))
}

/// One pruning pass: removes what has been finished for longer than `retention`.
pub async fn prune(db: &Db, retention: Duration) -> Result<Pruned, StoreError> {
    let cutoff = millis_before_now(retention);
    let mut pruned = Pruned::default();
    // Ids are snowflakes: a row last changed before the cutoff was made before it, so the scan
    // is a range of the primary key, walked upwards from where the last batch stopped (rows it
    // skipped, such as old deliveries still waiting for a retry, are not read again).
    // `status || ''` keeps SQLite's planner off the (status, next_attempt_at) index, which
    // would read every finished row and sort them for each batch.
    let first_kept = first_id_at(cutoff);
    let mut after = 0_i64;
    loop {
        let now = now_ms();
        let ids: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT id FROM deliveries WHERE id > $1 AND id < $2 AND status || '' IN ({FINISHED}) \
             AND updated_at < $3 AND locked_until <= $4 ORDER BY id LIMIT {BATCH}"
        )))
        .bind(after)
        .bind(first_kept)
        .bind(cutoff)
        .bind(now)
        .fetch_all(db.reader())
        .await?;
        let Some(&last) = ids.last() else {
            break;
        };
        after = last;
        // The conditions are checked again on the rows the writer deletes, and only what it
        // deleted loses its attempts: a delivery redelivered (pending again) or claimed since
        // the read above stays whole. `status || ''` here too: on the (status, next_attempt_at)
        // index SQLite walked every finished row to find the batch's 50, 18-34 ms a batch
        // under load with a 200,000-row backlog, holding every push that long.
        let mut delete = sqlx::query_scalar::<_, i64>(AssertSqlSafe(format!(
            "DELETE FROM deliveries WHERE id IN ({}) AND status || '' IN ({FINISHED}) AND updated_at < $1 \
             AND locked_until <= $2 RETURNING id",
            placeholders(3, ids.len())
        )))
        .bind(cutoff)
        .bind(now);
        for id in &ids {
            delete = delete.bind(*id);
        }
        let held = std::time::Instant::now();
        let mut tx = db.writer().begin().await?;
        let deleted = delete.fetch_all(&mut *tx).await?;
        if !deleted.is_empty() {
            let mut attempts = sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM delivery_attempts WHERE delivery_id IN ({})",
                placeholders(1, deleted.len())
            )));
            for id in &deleted {
                attempts = attempts.bind(*id);
            }
            pruned.attempts += attempts.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        pruned.deliveries += deleted.len() as u64;
        if ids.len() < BATCH {
            break;
        }
        pause_after(held.elapsed()).await;
    }
    // Payloads made before the cutoff that no delivery points at: a payload is written in the
    // same transaction as its deliveries, and no later delivery takes an old one.
    pruned.payloads = delete_in_batches(
        db,
        format!(
            "DELETE FROM delivery_payloads WHERE id IN (SELECT p.id FROM delivery_payloads p \
             WHERE p.id < $1 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.payload_id = p.id) \
             ORDER BY p.id LIMIT {BATCH})"
        ),
        first_kept,
    )
    .await?;
    pruned.inbound = delete_in_batches(
        db,
        crate::inbound::PRUNE_SQL.replace("{BATCH}", &BATCH.to_string()),
        millis_before_now(retention.max(INBOUND_MINIMUM)),
    )
    .await?;
    Ok(pruned)
}

/// Runs `delete` (a statement removing at most [`BATCH`] rows, bound to `bound`) until it
/// removes fewer than a batch; returns how many rows went.
pub async fn delete_in_batches(db: &Db, delete: String, bound: i64) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let held = std::time::Instant::now();
        let removed = sqlx::query(AssertSqlSafe(delete.as_str()))
            .bind(bound)
            .execute(db.writer())
            .await?
            .rows_affected();
        total += removed;
        if removed < BATCH as u64 {
            return Ok(total);
        }
        pause_after(held.elapsed()).await;
    }
}

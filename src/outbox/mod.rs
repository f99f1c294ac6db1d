//! The durable delivery queue ("outbox"). A notification is a row in `deliveries` before anything
//! is sent; workers claim due rows under a lease, send them through a [`Channel`], record every
//! attempt in `delivery_attempts`, and reschedule failures by the retry schedule.
//!
//! **Boundary**: the queue decides *when* and *how often*; a [`Channel`] only knows *how to send
//! one message* and says what happened. Channels never touch the queue tables.
//!
//! **Invariant**: a claimed row has `locked_until` in the future; if its node dies the lease runs
//! out and any node claims it again, so every row is sent at least once.

pub mod channel;
pub mod retention;
pub mod worker;

use std::time::Duration;

use rand::RngExt;
use sqlx::AssertSqlSafe;

use crate::ids::{IdGenerator, now_ms};
use crate::store::{Backend, Db, Script, StoreError};

pub use channel::{Attempt, Channel, Verdict};

/// How long a claim holds a row: twice the longest a send may take, plus a second, so that a
/// live node always records its attempt before the lease runs out, and a dead node's work is
/// picked up soon after.
pub fn lease_for(send_timeout: Duration) -> Duration {
    send_timeout * 2 + Duration::from_secs(1)
}

#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub channel: String,
    pub destination: String,
    /// JSON text, channel-specific.
    pub payload: String,
    pub event_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub webhook_id: Option<i64>,
    /// `push`, `ping`, … for webhook deliveries.
    pub event_type: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub channel: String,
    pub destination: String,
    pub payload: String,
    pub contact_id: Option<i64>,
    pub webhook_id: Option<i64>,
    pub event_type: Option<String>,
    pub attempts: i64,
    pub failures: i64,
}

/// A hook failing without a single success for this long is disabled.
pub const DISABLE_AFTER_FAILING_MS: i64 = 5 * 24 * 3600 * 1000;

/// Rows per INSERT statement. Kept small on purpose: SQLite looks up each `$n` parameter's
/// name with a linear scan, so binding costs grow with the square of a statement's parameters.
const INSERT_CHUNK: usize = 64;
/// One row of `deliveries` as `enqueue_into` binds it: created and updated at the same time.
const DELIVERY_ROW: &str = "($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $10, $11, $12)";

/// A payload at least this long that several deliveries of one enqueue carry is stored once
/// (`delivery_payloads`) rather than once per delivery.
const SHARED_PAYLOAD_MIN_BYTES: usize = 256;

/// Adds deliveries inside the caller's transaction, so that they commit with whatever caused
/// them (a push event, a chat message) or not at all.
pub async fn enqueue(
    conn: &mut sqlx::AnyConnection,
    ids: &IdGenerator,
    deliveries: &[NewDelivery],
) -> Result<Vec<i64>, StoreError> {
    let mut script = Script::new(Backend::of(conn));
    let created = enqueue_into(&mut script, ids, deliveries, 0);
    script.run_in(conn).await?;
    Ok(created)
}

/// Adds the statements that queue `deliveries` to `script` (which the caller commits with
/// whatever caused them), the rows leased until `locked_until` (Unix ms; 0 = not leased) for
/// deliveries this node hands straight to its own dispatcher through the [`LocalQueue`].
/// Returns the new rows' ids, in order.
pub fn enqueue_into(
    script: &mut Script,
    ids: &IdGenerator,
    deliveries: &[NewDelivery],
    locked_until: i64,
) -> Vec<i64> {
    let now = now_ms();
    let shared = share_payloads(script, ids, deliveries);
    let mut created = Vec::with_capacity(deliveries.len());
    for (chunk, shared) in deliveries
        .chunks(INSERT_CHUNK)
        .zip(shared.chunks(INSERT_CHUNK))
    {
        let sql = format!(
            "INSERT INTO deliveries (id, channel, destination, payload, event_id, contact_id, \
             webhook_id, event_type, status, next_attempt_at, created_at, updated_at, locked_until, \
             payload_id) VALUES {}",
            crate::store::values_rows_from(chunk.len(), DELIVERY_ROW, 0)
        );
        script.push(sql);
        for (delivery, payload_id) in chunk.iter().zip(shared) {
            let id = ids.next();
            created.push(id);
            let payload = if payload_id.is_some() {
                ""
            } else {
                delivery.payload.as_str()
            };
            script
                .bind(id)
                .bind(delivery.channel.as_str())
                .bind(delivery.destination.as_str())
                .bind(payload)
                .bind(delivery.event_id)
                .bind(delivery.contact_id)
                .bind(delivery.webhook_id)
                .bind(delivery.event_type.as_deref())
                .bind(now)
                .bind(now)
                .bind(locked_until)
                .bind(*payload_id);
        }
    }
    created
}

/// Stores each long payload that several of `deliveries` carry once, in `delivery_payloads`;
/// returns, delivery by delivery, the id of its stored payload if it has one.
fn share_payloads(
    script: &mut Script,
    ids: &IdGenerator,
    deliveries: &[NewDelivery],
) -> Vec<Option<i64>> {
    // Distinct long payloads, with how many deliveries carry each, and which one each delivery
    // carries. A fan-out's deliveries come in runs with one payload (a push's hooks, one after
    // another), so each is compared with the one before it first: hashing the ~2 KB body of
    // every delivery of a push cost more than the rest of this put together.
    let mut bodies: Vec<(&str, usize)> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut carried: Vec<Option<usize>> = Vec::with_capacity(deliveries.len());
    let mut last: Option<usize> = None;
    for delivery in deliveries {
        let payload = delivery.payload.as_str();
        if payload.len() < SHARED_PAYLOAD_MIN_BYTES {
            carried.push(None);
            continue;
        }
        let slot = match last {
            Some(slot) if bodies[slot].0 == payload => slot,
            _ => *index.entry(payload).or_insert_with(|| {
                bodies.push((payload, 0));
                bodies.len() - 1
            }),
        };
        bodies[slot].1 += 1;
        carried.push(Some(slot));
        last = Some(slot);
    }
    let stored: Vec<Option<i64>> = bodies
        .iter()
        .map(|(_, carriers)| (*carriers > 1).then(|| ids.next()))
        .collect();
    let rows: Vec<(&str, i64)> = bodies
        .iter()
        .zip(&stored)
        .filter_map(|((body, _), id)| Some((*body, (*id)?)))
        .collect();
    for chunk in rows.chunks(INSERT_CHUNK) {
        script.push(format!(
            "INSERT INTO delivery_payloads (id, body) VALUES {}",
            crate::store::values_rows(chunk.len(), 2)
        ));
        for (body, id) in chunk {
            script.bind(*id).bind(*body);
        }
    }
    carried.into_iter().map(|slot| stored[slot?]).collect()
}

/// Channels whose deliveries may skip the claim round trip: no global pacing, so a leased row
/// never waits in memory longer than its lease.
pub const FAST_PATH_CHANNELS: &[&str] = &["webhook", "email", "chat"];

/// Deliveries enqueued by this node, leased to it in the same transaction and handed to its
/// dispatcher in memory — no claim query in between. Bounded: when the dispatcher is behind,
/// new deliveries are enqueued unleased and claimed the ordinary way.
#[derive(Clone)]
pub struct LocalQueue {
    sender: tokio::sync::mpsc::UnboundedSender<ClaimedDelivery>,
    backlog: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    capacity: usize,
    lease: Duration,
}

pub type LocalReceiver = tokio::sync::mpsc::UnboundedReceiver<ClaimedDelivery>;

impl LocalQueue {
    pub fn new(capacity: usize, lease: Duration) -> (LocalQueue, LocalReceiver) {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let queue = LocalQueue {
            sender,
            backlog: Default::default(),
            capacity,
            lease,
        };
        (queue, receiver)
    }

    /// Makes room for `n` deliveries and returns the lease deadline to give them, or `None`
    /// when the backlog is full.
    pub fn reserve(&self, n: usize) -> Option<i64> {
        use std::sync::atomic::Ordering;
        let before = self.backlog.fetch_add(n, Ordering::AcqRel);
        if before + n > self.capacity {
            self.backlog.fetch_sub(n, Ordering::AcqRel);
            return None;
        }
        Some(now_ms() + self.lease.as_millis() as i64)
    }

    /// Gives back room reserved for deliveries that were not committed.
    pub fn release(&self, n: usize) {
        self.backlog
            .fetch_sub(n, std::sync::atomic::Ordering::AcqRel);
    }

    /// Hands committed, leased deliveries to the dispatcher.
    pub fn push(&self, deliveries: Vec<ClaimedDelivery>) {
        for delivery in deliveries {
            // If the dispatcher is gone (shutting down), the lease runs out and it is claimed.
            let _ = self.sender.send(delivery);
        }
    }

    /// Called by the dispatcher for each delivery it takes.
    pub fn taken(&self) {
        self.release(1);
    }
}

/// Enqueues into `script`, leasing fast-path deliveries to this node when its local queue has
/// room. Returns the leased ones: once the script has committed, hand them to
/// [`LocalQueue::push`]; if it does not commit, give their room back with
/// [`LocalQueue::release`].
pub fn enqueue_local_first(
    script: &mut Script,
    ids: &IdGenerator,
    local: &LocalQueue,
    deliveries: Vec<NewDelivery>,
) -> Vec<ClaimedDelivery> {
    let (fast, slow): (Vec<NewDelivery>, Vec<NewDelivery>) = deliveries
        .into_iter()
        .partition(|d| FAST_PATH_CHANNELS.contains(&d.channel.as_str()));
    let lease = if fast.is_empty() {
        None
    } else {
        local.reserve(fast.len())
    };
    let leased = match lease {
        Some(locked_until) => {
            let created = enqueue_into(script, ids, &fast, locked_until);
            fast.into_iter()
                .zip(created)
                .map(|(d, id)| ClaimedDelivery {
                    id,
                    channel: d.channel,
                    destination: d.destination,
                    payload: d.payload,
                    contact_id: d.contact_id,
                    webhook_id: d.webhook_id,
                    event_type: d.event_type,
                    attempts: 0,
                    failures: 0,
                })
                .collect()
        }
        None => {
            enqueue_into(script, ids, &fast, 0);
            Vec::new()
        }
    };
    enqueue_into(script, ids, &slow, 0);
    leased
}

/// Commits the transaction that enqueued `queued` deliveries (`leased` of them through
/// [`enqueue_local_first`]), then hands the leased ones to this node's dispatcher and wakes the
/// worker for the rest. If the commit fails, the local queue's room is given back.
pub async fn commit_and_dispatch(
    tx: sqlx::Transaction<'_, sqlx::Any>,
    local: &LocalQueue,
    wake: &tokio::sync::Notify,
    queued: usize,
    leased: Vec<ClaimedDelivery>,
) -> Result<(), StoreError> {
    let leased_count = leased.len();
    if let Err(error) = tx.commit().await {
        local.release(leased_count);
        return Err(error);
    }
    local.push(leased);
    if queued > leased_count {
        wake.notify_one();
    }
    Ok(())
}

/// Frees leases of deliveries that were handed over but never sent (at shutdown).
pub async fn release_leases(db: &Db, ids: &[i64]) -> Result<(), StoreError> {
    for chunk in ids.chunks(RECORD_CHUNK) {
        let list = crate::store::placeholders(1, chunk.len());
        let sql = format!(
            "UPDATE deliveries SET locked_until = 0 WHERE status = 'pending' AND id IN ({list})"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(*id);
        }
        query.execute(db.writer()).await?;
    }
    Ok(())
}

/// Claims up to `limit` due rows of the given channels for this node.
/// `busy` lists `channel:destination` keys to leave alone for now (destinations at their own
/// concurrency or rate limit), so their backlog neither churns nor crowds out everyone else's.
pub async fn claim(
    db: &Db,
    channels: &[&str],
    limit: usize,
    lease: Duration,
    busy: &[String],
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    if channels.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let now = now_ms();
    if !anything_due(db, channels, now).await? {
        return Ok(Vec::new());
    }
    let due = due_condition(2, 4, channels.len());
    let busy_clause = if busy.is_empty() {
        String::new()
    } else {
        let list = crate::store::placeholders(4 + channels.len(), busy.len());
        format!(" AND (channel || ':' || destination) NOT IN ({list})")
    };
    let sql = format!(
        "UPDATE deliveries SET locked_until = $1 WHERE id IN (\
           SELECT id FROM deliveries WHERE {due}{busy_clause} \
           ORDER BY next_attempt_at, id LIMIT $3{}) \
         RETURNING id, channel, destination, \
           COALESCE((SELECT body FROM delivery_payloads b WHERE b.id = deliveries.payload_id), payload) AS payload, \
           contact_id, webhook_id, event_type, attempts, failures",
        db.skip_locked()
    );
    let mut query = sqlx::query_as::<_, ClaimedDelivery>(AssertSqlSafe(sql))
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .bind(limit as i64);
    for channel in channels {
        query = query.bind(*channel);
    }
    for key in busy {
        query = query.bind(key.as_str());
    }
    query.fetch_all(db.writer()).await
}

/// Whether any delivery of `channels` is due and unleased, asked of a reader: the dispatcher
/// looks at the table four times a second, and a claim that finds nothing would still take the
/// writer (on SQLite, every push waits for it: ~0.5 ms, four times a second).
async fn anything_due(db: &Db, channels: &[&str], now: i64) -> Result<bool, StoreError> {
    let due = due_condition(1, 2, channels.len());
    let sql = format!("SELECT id FROM deliveries WHERE {due} LIMIT 1");
    let mut query = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql)).bind(now);
    for channel in channels {
        query = query.bind(*channel);
    }
    Ok(query.fetch_optional(db.reader()).await?.is_some())
}

/// Pending, due at `$now` and not leased, on one of `channels` channels bound from `$first`.
fn due_condition(now: usize, first: usize, channels: usize) -> String {
    format!(
        "status = 'pending' AND next_attempt_at <= ${now} AND locked_until <= ${now} \
         AND channel IN ({})",
        crate::store::placeholders(first, channels)
    )
}

/// The delay before retry number `failures` (1-based), with ±20 % jitter so that a burst of
/// failures does not come back as a burst; `None` once the schedule is used up.
pub fn retry_delay(schedule: &[Duration], failures: i64) -> Option<Duration> {
    let index = usize::try_from(failures.checked_sub(1)?).ok()?;
    let base = *schedule.get(index)?;
    let factor = rand::rng().random_range(0.8..1.2);
    Some(base.mul_f64(factor))
}

/// Puts a claimed row back, unsent and without counting an attempt, until `after` has passed
/// (used for pacing: the channel asked us to wait).
pub async fn defer(db: &Db, delivery_id: i64, after: Duration) -> Result<(), StoreError> {
    let now = now_ms();
    sqlx::query(
        "UPDATE deliveries SET next_attempt_at = $1, locked_until = 0, updated_at = $2 WHERE id = $3",
    )
    .bind(now + after.as_millis() as i64)
    .bind(now)
    .bind(delivery_id)
    .execute(db.writer())
    .await?;
    Ok(())
}

/// What became of a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Delivered,
    RetryAt(i64),
    Failed,
}

/// One finished attempt, waiting to be written.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub delivery: ClaimedDelivery,
    pub attempt: Attempt,
    /// When the attempt started, Unix ms.
    pub started_at: i64,
    pub duration: Duration,
}

fn settle(recorded: &Recorded, now: i64, schedule: &[Duration]) -> Settled {
    match recorded.attempt.verdict {
        Verdict::Delivered => Settled::Delivered,
        // Not attempted: the worker defers these without recording anything.
        Verdict::Deferred { after } => Settled::RetryAt(now + after.as_millis() as i64),
        Verdict::Permanent | Verdict::Gone => Settled::Failed,
        // The platform told us when; that is not a failure of ours, so it does not use up the
        // retry schedule.
        Verdict::Throttled { after } => Settled::RetryAt(now + after.as_millis() as i64),
        Verdict::Retry { after } => match retry_delay(schedule, recorded.delivery.failures + 1) {
            // A Retry-After from the receiver wins over our own schedule.
            Some(delay) => Settled::RetryAt(now + after.unwrap_or(delay).as_millis() as i64),
            None => Settled::Failed,
        },
    }
}

/// Rows per statement when recording a batch (7 parameters each; small for the same reason as
/// `INSERT_CHUNK`).
const RECORD_CHUNK: usize = 64;

/// Records finished attempts and moves their deliveries on, all in one transaction. The common
/// case — delivered — costs one multi-row INSERT and one UPDATE for the whole batch, which is
/// what lets a single SQLite writer keep up with thousands of deliveries a second.
pub async fn record_batch(
    db: &Db,
    ids: &IdGenerator,
    batch: &[Recorded],
    schedule: &[Duration],
) -> Result<Vec<Settled>, StoreError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let settled: Vec<Settled> = batch.iter().map(|r| settle(r, now, schedule)).collect();
    let mut script = Script::new(db.backend);
    for chunk in batch.chunks(RECORD_CHUNK) {
        script.push(format!(
            "INSERT INTO delivery_attempts (id, delivery_id, attempted_at, status_code, duration_ms, \
             response_body, error) VALUES {}",
            crate::store::values_rows(chunk.len(), 7)
        ));
        for recorded in chunk {
            script
                .bind(ids.next())
                .bind(recorded.delivery.id)
                .bind(recorded.started_at)
                .bind(recorded.attempt.status_code.map(i64::from))
                .bind(recorded.duration.as_millis() as i64)
                .bind(
                    recorded
                        .attempt
                        .body
                        .as_deref()
                        .map(|b| crate::text::prefix_bytes(b, 4096)),
                )
                .bind(recorded.attempt.error.as_deref());
        }
    }

    let delivered: Vec<&Recorded> = batch
        .iter()
        .zip(&settled)
        .filter(|(_, s)| **s == Settled::Delivered)
        .map(|(r, _)| r)
        .collect();
    for chunk in delivered.chunks(RECORD_CHUNK) {
        let list = crate::store::placeholders(2, chunk.len());
        script
            .push(format!(
                "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, locked_until = 0, \
                 last_error = NULL, updated_at = $1 WHERE id IN ({list})"
            ))
            .bind(now);
        for recorded in chunk {
            script.bind(recorded.delivery.id);
        }
    }
    let mut healthy_hooks: Vec<i64> = delivered
        .iter()
        .filter_map(|r| r.delivery.webhook_id)
        .collect();
    healthy_hooks.sort_unstable();
    healthy_hooks.dedup();
    if !healthy_hooks.is_empty() {
        let list = crate::store::placeholders(1, healthy_hooks.len());
        script.push(format!(
            "UPDATE webhooks SET failing_since = NULL WHERE failing_since IS NOT NULL AND id IN ({list})"
        ));
        for id in &healthy_hooks {
            script.bind(*id);
        }
    }

    // The rest, one row each: a row is written once per script (disjoint from the ones above).
    let mut failing_hooks = Vec::new();
    let mut gone_contacts = Vec::new();
    for (recorded, settled) in batch.iter().zip(&settled) {
        if *settled == Settled::Delivered {
            continue;
        }
        let attempt = &recorded.attempt;
        let failed_now = matches!(
            attempt.verdict,
            Verdict::Retry { .. } | Verdict::Permanent | Verdict::Gone
        );
        let (status, next_attempt_at) = match settled {
            Settled::Delivered => ("delivered", now),
            Settled::Failed => ("failed", now),
            Settled::RetryAt(at) => ("pending", *at),
        };
        script
            .push(
                "UPDATE deliveries SET status = $1, attempts = attempts + 1, failures = failures + $2, \
                 next_attempt_at = $3, locked_until = 0, last_error = $4, updated_at = $5 WHERE id = $6",
            )
            .bind(status)
            .bind(i64::from(failed_now))
            .bind(next_attempt_at)
            .bind(attempt.error.as_deref())
            .bind(now)
            .bind(recorded.delivery.id);
        if attempt.verdict == Verdict::Gone
            && let Some(contact_id) = recorded.delivery.contact_id
            && !gone_contacts.contains(&contact_id)
        {
            gone_contacts.push(contact_id);
            script
                .push("UPDATE contacts SET blocked = 1 WHERE id = $1")
                .bind(contact_id);
        }
        if let Some(webhook_id) = recorded.delivery.webhook_id
            && !matches!(attempt.verdict, Verdict::Deferred { .. })
        {
            failing_hooks.push((webhook_id, attempt));
        }
    }

    // Everything delivered (the common case): one round trip. A failing hook's streak is read
    // back and acted on, so those batches run the script and then each hook in a transaction.
    if failing_hooks.is_empty() {
        script.commit(db).await?;
    } else {
        let mut tx = db.writer().begin().await?;
        script.run_in(&mut tx).await?;
        for (webhook_id, attempt) in failing_hooks {
            track_webhook_health(&mut tx, ids, webhook_id, attempt, now).await?;
        }
        tx.commit().await?;
    }
    Ok(settled)
}

/// Keeps a hook's failure streak: a success clears it; a 410 Gone, or failing for five days
/// without a success, disables the hook and cancels what was still waiting for it.
async fn track_webhook_health(
    tx: &mut sqlx::AnyConnection,
    ids: &IdGenerator,
    webhook_id: i64,
    attempt: &Attempt,
    now: i64,
) -> Result<(), StoreError> {
    let disable_reason = match attempt.verdict {
        Verdict::Delivered => {
            sqlx::query("UPDATE webhooks SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL")
                .bind(webhook_id)
                .execute(&mut *tx)
                .await?;
            return Ok(());
        }
        Verdict::Deferred { .. } => return Ok(()),
        Verdict::Gone => Some("the receiver answered 410 Gone".to_string()),
        Verdict::Retry { .. } | Verdict::Throttled { .. } | Verdict::Permanent => {
            sqlx::query(
                "UPDATE webhooks SET failing_since = $1 WHERE id = $2 AND failing_since IS NULL",
            )
            .bind(now)
            .bind(webhook_id)
            .execute(&mut *tx)
            .await?;
            let since: Option<i64> =
                sqlx::query_scalar("SELECT failing_since FROM webhooks WHERE id = $1")
                    .bind(webhook_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .flatten();
            since
                .filter(|since| now - since >= DISABLE_AFTER_FAILING_MS)
                .map(|_| "failing for five days without a successful delivery".to_string())
        }
    };
    if let Some(reason) = disable_reason {
        sqlx::query("UPDATE webhooks SET active = 0, disabled_reason = $1 WHERE id = $2")
            .bind(&reason)
            .bind(webhook_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE deliveries SET status = 'cancelled', updated_at = $2 WHERE webhook_id = $1 AND status = 'pending'")
            .bind(webhook_id)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tracing::warn!(webhook = webhook_id, reason, "webhook disabled");
        // Tell the owning account by mail, in the same transaction.
        let owner: Option<(String, String, String, String)> = sqlx::query_as(
            "SELECT a.email, p.owner, p.name, w.payload_url FROM webhooks w \
             JOIN projects p ON p.id = w.project_id JOIN accounts a ON a.name = p.owner WHERE w.id = $1",
        )
        .bind(webhook_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((email, owner, project, url)) = owner {
            let mail = serde_json::json!({
                "subject": format!("[herald] webhook disabled on {owner}/{project}"),
                "text": format!(
                    "The webhook to {url} of {owner}/{project} was disabled: {reason}.\n\n\
                     Its waiting deliveries were cancelled. When the receiver works again, re-enable it \
                     (PATCH /api/v1/projects/{owner}/{project}/webhooks/{webhook_id} with {{\"active\": true}}) \
                     and recover what failed (POST …/webhooks/{webhook_id}/recover).\n\n— herald\n"
                ),
            });
            enqueue(
                tx,
                ids,
                &[NewDelivery {
                    channel: "email".into(),
                    destination: email,
                    payload: mail.to_string(),
                    event_id: None,
                    contact_id: None,
                    webhook_id: None,
                    event_type: Some("webhook_disabled".into()),
                }],
            )
            .await?;
        }
    }
    Ok(())
}

/// Counts of deliveries by status, for `/metrics` and tests.
pub async fn depth(db: &Db) -> Result<Vec<(String, i64)>, StoreError> {
    sqlx::query_as("SELECT status, COUNT(*) FROM deliveries GROUP BY status")
        .fetch_all(db.reader())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_payload_several_deliveries_carry_is_stored_once_each() {
        let long = |c: char| c.to_string().repeat(SHARED_PAYLOAD_MIN_BYTES);
        let delivery = |payload: String| NewDelivery {
            channel: "webhook".into(),
            destination: "1".into(),
            payload,
            event_id: None,
            contact_id: None,
            webhook_id: None,
            event_type: None,
        };
        // Runs and interleavings; a short payload and a long one carried once stay inline.
        let deliveries: Vec<NewDelivery> = [
            long('a'),
            long('a'),
            long('b'),
            "short".to_string(),
            long('a'),
            long('b'),
            long('c'),
        ]
        .into_iter()
        .map(delivery)
        .collect();
        let mut script = Script::new(Backend::Sqlite);
        let stored = share_payloads(&mut script, &IdGenerator::new(1), &deliveries);
        let (a, b) = (stored[0].expect("a stored"), stored[2].expect("b stored"));
        assert_ne!(a, b);
        assert_eq!(
            stored,
            vec![Some(a), Some(a), Some(b), None, Some(a), Some(b), None]
        );
        assert!(!script.is_empty());
        let mut none = Script::new(Backend::Sqlite);
        let single = share_payloads(&mut none, &IdGenerator::new(1), &deliveries[..1]);
        assert_eq!(single, vec![None]);
        assert!(none.is_empty());
    }

    #[test]
    fn retry_schedule_with_jitter_then_exhausted() {
        let schedule = [Duration::from_secs(10), Duration::from_secs(100)];
        let first = retry_delay(&schedule, 1).expect("first retry");
        assert!(first >= Duration::from_secs(8) && first <= Duration::from_secs(12));
        let second = retry_delay(&schedule, 2).expect("second retry");
        assert!(second >= Duration::from_secs(80) && second <= Duration::from_secs(120));
        assert_eq!(retry_delay(&schedule, 3), None);
        assert_eq!(retry_delay(&schedule, 0), None);
    }
}

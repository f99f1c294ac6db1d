//! The durable delivery queue ("outbox"). A notification is a row in `deliveries` before anything
//! is sent; workers claim due rows under a lease, send them through a [`Channel`], record every
//! attempt in `delivery_attempts`, and reschedule failures by the retry schedule.
//!
//! **Boundary**: the queue decides *when* and *how often*; a [`Channel`] only knows *how to send
//! one message* and says what happened. Channels never touch the queue tables.
//!
//! **Boundary**: this module is the only writer of the queue's tables (`deliveries`,
//! `delivery_attempts`, `delivery_payloads`). Other modules queue, cancel, redeliver and recover
//! through its functions ([`enqueue`], [`cancel_for_contact`], [`cancel_for_webhook`],
//! [`redeliver`], [`recover`]), inside their own transaction where they have one. In turn it
//! writes no other module's table: what an attempt means for the hook or the contact it was for
//! (a hook's failure streak, a 410 that disables it, a chat that blocked the bot) is decided and
//! written by the module that owns that table, which the worker tells through
//! [`AttemptObserver`]. The queue depends only on infrastructure (`ids`, `store`, `text`, and
//! `inbound`, whose pruning statement retention runs in its paced batches); `projects` and
//! `contacts` depend on it, so it could not call them without an import cycle — the observers are handed
//! to the [`worker::Dispatcher`] at start-up instead. They are told verdicts, not effects: the
//! queue has no notion of what a 410 means for a hook or a blocked bot for a contact, so that a
//! rule of theirs (the five failing days) changes in their module alone.
//!
//! Observers write inside the batch's own commit, not after it: one commit per batch of attempt
//! records stays one commit (the single SQLite writer's throughput rests on that), and a hook's
//! health can never disagree with the attempts it was judged on, whichever crashes when. Their
//! plain writes join the batch's [`Script`], so a batch that went well is still one round trip;
//! only an observer that must read back what the batch wrote (a failing hook's streak) asks for
//! the batch to run as a transaction, in which it then runs.
//!
//! **Invariant**: a claimed row has `locked_until` in the future and `locked_by` naming the node
//! that holds it; if that node dies, the live nodes free the row as soon as its node's lease
//! lapses ([`free_claims_of`], `node`), or else when its own lease runs out, and any node claims
//! it again, so every row is sent at least once.
//!
//! **Invariant**: a cancel holds against a send in flight. When the attempt of a delivery that was
//! cancelled while its send was in flight is recorded, the attempt is logged, but a retry or a
//! failure does not move the delivery: put back to `pending` it would be sent again after its
//! owner said not to, and marked `failed` it would be among what `recover` sends again, unlike
//! the deliveries cancelled beside it while they waited. Only `delivered` replaces `cancelled`:
//! the receiver has the message, and a log saying `cancelled` would invite a redelivery of
//! something that arrived.

pub mod channel;
pub mod log;
pub mod overview;
pub mod retention;
pub mod wake;
pub mod worker;

use std::time::Duration;

use rand::RngExt;
use sqlx::AssertSqlSafe;

use futures_util::future::BoxFuture;

use crate::ids::{IdGenerator, now_ms};
use crate::store::{Backend, Db, ROWS_PER_STATEMENT, Script, StoreError};

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

/// One row of `deliveries` as `enqueue_into` binds it: created and updated at the same time.
const DELIVERY_ROW: &str =
    "($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $10, $11, $12, $13)";

/// Who holds a delivery's lease as it is queued: nobody, or this node until a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Unix ms; 0 = not leased.
    pub until: i64,
    /// The node holding it (`node::NodeLease::id`); 0 = none.
    pub by: i64,
}

impl Lease {
    pub const NONE: Lease = Lease { until: 0, by: 0 };
}

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
    let created = enqueue_into(&mut script, ids, deliveries, Lease::NONE);
    script.run_in(conn).await?;
    Ok(created)
}

/// Adds the statements that queue `deliveries` to `script` (which the caller commits with
/// whatever caused them), the rows under `lease` (or [`Lease::NONE`]) for deliveries this node
/// hands straight to its own dispatcher through the [`LocalQueue`]. Returns the new rows' ids,
/// in order.
pub fn enqueue_into(
    script: &mut Script,
    ids: &IdGenerator,
    deliveries: &[NewDelivery],
    lease: Lease,
) -> Vec<i64> {
    let now = now_ms();
    let shared = share_payloads(script, ids, deliveries);
    let mut created = Vec::with_capacity(deliveries.len());
    for (chunk, shared) in deliveries
        .chunks(ROWS_PER_STATEMENT)
        .zip(shared.chunks(ROWS_PER_STATEMENT))
    {
        let sql = format!(
            "INSERT INTO deliveries (id, channel, destination, payload, event_id, contact_id, \
             webhook_id, event_type, status, next_attempt_at, created_at, updated_at, locked_until, \
             payload_id, locked_by) VALUES {}",
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
                .bind(lease.until)
                .bind(*payload_id)
                .bind(lease.by);
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
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
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
/// new deliveries are enqueued unleased and claimed the ordinary way. With other nodes
/// ([`LocalQueue::counting_sends`]) the bound counts the sends in flight too, so a node whose
/// worker is busy leaves new deliveries to the others (and wakes them, `wake`) instead of
/// holding them behind its own slow sends.
#[derive(Clone)]
pub struct LocalQueue {
    sender: tokio::sync::mpsc::UnboundedSender<ClaimedDelivery>,
    backlog: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The dispatcher's sends in flight, when they count against `capacity`.
    sending: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
    capacity: usize,
    lease: Duration,
    /// This node: whose leases the rows carry, and whether it may take any (fencing).
    node: std::sync::Arc<crate::node::NodeLease>,
}

pub type LocalReceiver = tokio::sync::mpsc::UnboundedReceiver<ClaimedDelivery>;

impl LocalQueue {
    pub fn new(
        capacity: usize,
        lease: Duration,
        node: std::sync::Arc<crate::node::NodeLease>,
    ) -> (LocalQueue, LocalReceiver) {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let queue = LocalQueue {
            sender,
            backlog: Default::default(),
            sending: None,
            capacity,
            lease,
            node,
        };
        (queue, receiver)
    }

    /// Counts the dispatcher's sends in flight against the capacity (which should then be the
    /// dispatcher's concurrency): only what it can start sending at once is kept in memory.
    pub fn counting_sends(mut self) -> LocalQueue {
        self.sending = Some(Default::default());
        self
    }

    /// Makes room for `n` deliveries and returns the lease to give them, or `None` when the
    /// backlog is full or this node's own lease has lapsed (it may not claim).
    pub fn reserve(&self, n: usize) -> Option<Lease> {
        use std::sync::atomic::Ordering;
        if !self.node.is_live() {
            return None;
        }
        let sending = self
            .sending
            .as_ref()
            .map_or(0, |sending| sending.load(Ordering::Acquire));
        let before = self.backlog.fetch_add(n, Ordering::AcqRel);
        if before + sending + n > self.capacity {
            self.backlog.fetch_sub(n, Ordering::AcqRel);
            return None;
        }
        Some(Lease {
            until: now_ms() + self.lease.as_millis() as i64,
            by: self.node.id(),
        })
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

    /// Called by the dispatcher as a send starts (whether handed over or claimed).
    pub fn send_started(&self) {
        if let Some(sending) = &self.sending {
            sending.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// Called by the dispatcher as a send ends.
    pub fn send_ended(&self) {
        if let Some(sending) = &self.sending {
            sending.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
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
        Some(lease) => {
            let created = enqueue_into(script, ids, &fast, lease);
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
            enqueue_into(script, ids, &fast, Lease::NONE);
            Vec::new()
        }
    };
    enqueue_into(script, ids, &slow, Lease::NONE);
    leased
}

/// Commits the transaction that enqueued `queued` deliveries (`leased` of them through
/// [`enqueue_local_first`]), then hands the leased ones to this node's dispatcher and wakes the
/// workers for the rest (every node's, with several: this one may be busy). If the commit fails, the local queue's room is given back.
pub async fn commit_and_dispatch(
    tx: sqlx::Transaction<'_, sqlx::Any>,
    local: &LocalQueue,
    wake: &wake::Wake,
    queued: usize,
    leased: Vec<ClaimedDelivery>,
) -> Result<(), StoreError> {
    commit(tx, local, queued, leased)
        .await?
        .dispatch(local, wake);
    Ok(())
}

/// Commits the transaction that enqueued `queued` deliveries (`leased` of them through
/// [`enqueue_local_first`]) and returns them, to be handed to the dispatcher later with
/// [`Committed::dispatch`]: a writer with more to commit first (the scheduler at a crowded
/// boundary) keeps the sends from competing with its own commits. The leases hold meanwhile;
/// if the room is never dispatched, they run out and the rows are claimed as usual.
pub async fn commit(
    tx: sqlx::Transaction<'_, sqlx::Any>,
    local: &LocalQueue,
    queued: usize,
    leased: Vec<ClaimedDelivery>,
) -> Result<Committed, StoreError> {
    let leased_count = leased.len();
    if let Err(error) = tx.commit().await {
        local.release(leased_count);
        return Err(error);
    }
    Ok(Committed {
        others: queued > leased_count,
        leased,
    })
}

/// Deliveries committed and not yet handed to the dispatcher (see [`commit`]).
#[derive(Default)]
pub struct Committed {
    leased: Vec<ClaimedDelivery>,
    /// Some were queued without a lease: the workers must be woken for them.
    others: bool,
}

impl Committed {
    /// Adds `other`'s deliveries to these.
    pub fn merge(&mut self, other: Committed) {
        self.leased.extend(other.leased);
        self.others |= other.others;
    }

    /// Hands the leased deliveries to this node's dispatcher and wakes the workers for the rest.
    pub fn dispatch(self, local: &LocalQueue, wake: &wake::Wake) {
        local.push(self.leased);
        if self.others {
            wake.notify_one();
        }
    }
}

/// Cancels what is still waiting to be sent to a contact (it blocked the bot or left), inside
/// the caller's transaction. Returns how many deliveries were cancelled.
pub async fn cancel_for_contact(
    conn: &mut sqlx::AnyConnection,
    contact_id: i64,
) -> Result<u64, StoreError> {
    cancel_pending(conn, Recipient::Contact, contact_id).await
}

/// Cancels what is still waiting to be sent to a hook (deleted or disabled), inside the
/// caller's transaction. Returns how many deliveries were cancelled.
pub async fn cancel_for_webhook(
    conn: &mut sqlx::AnyConnection,
    webhook_id: i64,
) -> Result<u64, StoreError> {
    cancel_pending(conn, Recipient::Webhook, webhook_id).await
}

/// Whom a delivery is for, as the queue's columns name it.
#[derive(Clone, Copy)]
enum Recipient {
    Contact,
    Webhook,
}

impl Recipient {
    fn column(self) -> &'static str {
        match self {
            Recipient::Contact => "contact_id",
            Recipient::Webhook => "webhook_id",
        }
    }
}

/// The one cancel: every pending delivery of a recipient, including one whose send is in flight
/// (its attempt, when recorded, leaves it cancelled; see the module's invariants).
async fn cancel_pending(
    conn: &mut sqlx::AnyConnection,
    recipient: Recipient,
    id: i64,
) -> Result<u64, StoreError> {
    let sql = format!(
        "UPDATE deliveries SET status = 'cancelled', updated_at = $2 \
         WHERE {} = $1 AND status = 'pending'",
        recipient.column()
    );
    let done = sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .bind(now_ms())
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// What became of a request to send one of a hook's deliveries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redelivery {
    /// Back in the queue, due now, with the same id.
    Queued,
    /// It is still waiting to be sent (or being sent): nothing changed.
    AlreadyPending,
    /// The hook has no such delivery.
    NotFound,
}

/// Puts one finished (delivered, failed or cancelled) delivery of a hook back in the queue,
/// due now and with a fresh retry schedule. It keeps its id, so that a receiver can tell it is
/// the same message.
pub async fn redeliver(
    db: &Db,
    webhook_id: i64,
    delivery_id: i64,
) -> Result<Redelivery, StoreError> {
    // Not while a send of it is in flight (leased): that send's record would then land on the
    // requeued row, and the delivery could be sent twice at once.
    let requeued = sqlx::query(AssertSqlSafe(format!(
        "{REQUEUE} WHERE id = $2 AND webhook_id = $3 AND status <> 'pending' AND locked_until <= $1"
    )))
    .bind(now_ms())
    .bind(delivery_id)
    .bind(webhook_id)
    .execute(db.writer())
    .await?
    .rows_affected();
    if requeued > 0 {
        return Ok(Redelivery::Queued);
    }
    let exists: Option<String> =
        sqlx::query_scalar("SELECT status FROM deliveries WHERE id = $1 AND webhook_id = $2")
            .bind(delivery_id)
            .bind(webhook_id)
            .fetch_optional(db.reader())
            .await?;
    Ok(match exists {
        Some(_) => Redelivery::AlreadyPending,
        None => Redelivery::NotFound,
    })
}

/// Puts every delivery of a hook that failed and was created at or after `since` (Unix ms)
/// back in the queue, due now. Returns how many.
pub async fn recover(db: &Db, webhook_id: i64, since: i64) -> Result<u64, StoreError> {
    // The last condition is implied by the status; written out so the hook's log index
    // (whose condition it is, migration 0010) serves the query.
    let recovered = sqlx::query(AssertSqlSafe(format!(
        "{REQUEUE} WHERE webhook_id = $2 AND status = 'failed' AND created_at >= $3 \
         AND (status <> 'pending' OR attempts > 0)"
    )))
    .bind(now_ms())
    .bind(webhook_id)
    .bind(since)
    .execute(db.writer())
    .await?
    .rows_affected();
    Ok(recovered)
}

/// Back to the queue, due at `$1`, unleased and with its failures forgiven (so the whole retry
/// schedule applies again); the rows are chosen by the caller's `WHERE`.
const REQUEUE: &str = "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, failures = 0, \
     locked_until = 0, updated_at = $1";

/// Frees leases of deliveries that were handed over but never sent (at shutdown).
pub async fn release_leases(db: &Db, ids: &[i64]) -> Result<(), StoreError> {
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
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

/// Frees, inside the caller's transaction, every delivery still leased to `node_id`: a node whose
/// lease lapsed (taken over by a live node) or this node saying goodbye. The rows become due
/// for claiming at once (`locked_until = now`), unsent attempts not counted. Only pending rows
/// are looked at (through `deliveries_due`), so it costs a scan of the backlog, not the log.
/// Returns how many were freed.
pub async fn free_claims_of(
    conn: &mut sqlx::AnyConnection,
    node_id: i64,
    now: i64,
) -> Result<u64, StoreError> {
    let freed = sqlx::query(
        "UPDATE deliveries SET locked_until = $1 \
         WHERE status = 'pending' AND locked_by = $2 AND locked_until > $1",
    )
    .bind(now)
    .bind(node_id)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(freed)
}

/// Claims up to `limit` due rows of the given channels for this node.
/// `busy` lists `channel:destination` keys to leave alone for now (destinations at their own
/// concurrency or rate limit), so their backlog neither churns nor crowds out everyone else's.
pub async fn claim(
    db: &Db,
    channels: &[&str],
    limit: usize,
    lease: Duration,
    node_id: i64,
    busy: &[String],
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    if channels.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let now = now_ms();
    if !anything_due(db, channels, now).await? {
        return Ok(Vec::new());
    }
    let due = due_condition(2, 5, channels.len());
    let busy_clause = if busy.is_empty() {
        String::new()
    } else {
        let list = crate::store::placeholders(5 + channels.len(), busy.len());
        format!(" AND (channel || ':' || destination) NOT IN ({list})")
    };
    let sql = format!(
        "UPDATE deliveries SET locked_until = $1, locked_by = $4 WHERE id IN (\
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
        .bind(limit as i64)
        .bind(node_id);
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

/// An attempt's outcome, as the owner of the hook or the contact it was for hears of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptOutcome {
    pub delivery_id: i64,
    pub contact_id: Option<i64>,
    pub webhook_id: Option<i64>,
    pub verdict: Verdict,
}

/// The owner of rows that deliveries are for (a project's hooks, the contacts), told of every
/// batch of recorded attempts so that it keeps its own table in step — in the batch's commit,
/// through its own SQL. Given to the [`worker::Dispatcher`] at start-up.
pub trait AttemptObserver: Send + Sync + 'static {
    /// Adds this owner's writes for `outcomes` to the batch's script. Each row at most once, and
    /// nothing that depends on another part of the script (on PostgreSQL the script is one
    /// statement). Returns whether it also needs [`AttemptObserver::after_script`], which
    /// makes the batch a transaction instead of one round trip.
    fn add_to_batch(&self, script: &mut Script, outcomes: &[AttemptOutcome]) -> bool;

    /// Runs inside the batch's transaction after its script (so it sees what the script
    /// wrote), when [`AttemptObserver::add_to_batch`] asked for it. `ids` is for what it queues.
    fn after_script<'a>(
        &'a self,
        tx: &'a mut sqlx::AnyConnection,
        ids: &'a IdGenerator,
        outcomes: &'a [AttemptOutcome],
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let _ = (tx, ids, outcomes, now);
        Box::pin(async { Ok(()) })
    }
}

/// Records finished attempts and moves their deliveries on, all in one commit with what the
/// `observers` write for them. The common case — delivered — costs one multi-row INSERT and one
/// UPDATE for the whole batch, which is what lets a single SQLite writer keep up with thousands
/// of deliveries a second. Returns what each attempt decided for its delivery; a delivery
/// cancelled while its send was in flight stays cancelled unless it was delivered (see the
/// module's invariants).
pub async fn record_batch(
    db: &Db,
    ids: &IdGenerator,
    batch: &[Recorded],
    schedule: &[Duration],
    observers: &[std::sync::Arc<dyn AttemptObserver>],
) -> Result<Vec<Settled>, StoreError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let settled: Vec<Settled> = batch.iter().map(|r| settle(r, now, schedule)).collect();
    let mut script = Script::new(db.backend);
    for chunk in batch.chunks(ROWS_PER_STATEMENT) {
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

    // Delivered is a fact about the receiver, so it settles the row whatever became of it
    // meanwhile (a cancel while in flight included).
    let delivered: Vec<&Recorded> = batch
        .iter()
        .zip(&settled)
        .filter(|(_, s)| **s == Settled::Delivered)
        .map(|(r, _)| r)
        .collect();
    for chunk in delivered.chunks(ROWS_PER_STATEMENT) {
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

    // The rest, one row each: a row is written once per script (disjoint from the ones above).
    // Only a row still pending is rescheduled or failed: one cancelled while its send was in
    // flight keeps its status (and its time), and only counts the attempt.
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
                "UPDATE deliveries SET status = CASE WHEN status = 'pending' THEN $1 ELSE status END, \
                 attempts = attempts + 1, failures = failures + $2, \
                 next_attempt_at = CASE WHEN status = 'pending' THEN $3 ELSE next_attempt_at END, \
                 locked_until = 0, last_error = $4, updated_at = $5 WHERE id = $6",
            )
            .bind(status)
            .bind(i64::from(failed_now))
            .bind(next_attempt_at)
            .bind(attempt.error.as_deref())
            .bind(now)
            .bind(recorded.delivery.id);
    }

    let outcomes: Vec<AttemptOutcome> = batch
        .iter()
        .filter(|r| !matches!(r.attempt.verdict, Verdict::Deferred { .. }))
        .map(|r| AttemptOutcome {
            delivery_id: r.delivery.id,
            contact_id: r.delivery.contact_id,
            webhook_id: r.delivery.webhook_id,
            verdict: r.attempt.verdict,
        })
        .collect();
    let mut follow_up = Vec::new();
    for observer in observers {
        if observer.add_to_batch(&mut script, &outcomes) {
            follow_up.push(observer);
        }
    }

    // Usually one round trip. An observer that reads back what the batch wrote (a failing
    // hook's streak) makes it a transaction: the script, then the observer, then the commit.
    if follow_up.is_empty() {
        script.commit(db).await?;
    } else {
        let mut tx = db.writer().begin().await?;
        script.run_in(&mut tx).await?;
        for observer in follow_up {
            observer.after_script(&mut tx, ids, &outcomes, now).await?;
        }
        tx.commit().await?;
    }
    Ok(settled)
}

/// A notification queued for a contact, as its owner's dashboard lists it.
#[derive(Debug, Clone)]
pub struct RecentDelivery {
    pub id: i64,
    pub contact_id: i64,
    pub event_id: Option<i64>,
    pub channel: String,
    pub status: String,
    pub created_at: i64,
}

/// The newest `limit` deliveries to a contact, newest first.
pub async fn recent_to_contact(
    db: &Db,
    contact_id: i64,
    limit: i64,
) -> Result<Vec<RecentDelivery>, StoreError> {
    let rows: Vec<(i64, i64, Option<i64>, String, String, i64)> = sqlx::query_as(
        "SELECT id, contact_id, event_id, channel, status, created_at FROM deliveries \
         WHERE contact_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(contact_id)
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, contact_id, event_id, channel, status, created_at)| RecentDelivery {
                id,
                contact_id,
                event_id,
                channel,
                status,
                created_at,
            },
        )
        .collect())
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

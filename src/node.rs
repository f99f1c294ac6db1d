//! This node's liveness: a row in `nodes` that it renews every `HERALD_NODE_RENEW_INTERVAL` and
//! that lapses `HERALD_NODE_LEASE` after its last renewal. Claims (deliveries' leases, watch
//! checks) record the node that holds them, so that when a node's row lapses (it was killed or
//! cut off) or is deleted (it said goodbye), the live nodes free its claims at once instead of
//! waiting for each row's own lease. Owns `nodes`; the takeover itself — which claims to free —
//! is done by the claims' owners (`outbox`, `watch`), called from `startup`.
//!
//! A node is one process run: a restarted herald is a new node with a new id, so its
//! predecessor's claims are taken over like any dead node's, by itself among others.
//!
//! **Invariant** (fencing): a node stops claiming once its own lease may have lapsed — its
//! [`NodeLease::is_live`] deadline is the time the last successful renewal was *sent* plus the
//! lease, which is no later than the `expires_at` the others read — and it claims again only
//! under a new id, registered after the others may have taken its claims over. Clocks of the
//! nodes are assumed to agree to well within a lease (NTP).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use rand::RngExt;

use crate::ids::now_ms;
use crate::store::{Db, StoreError};

/// This node's lease: who it is, and until when it may claim.
#[derive(Debug)]
pub struct NodeLease {
    /// The id claims record (`locked_by`, `claimed_by`); a new one after the lease lapsed.
    id: AtomicI64,
    /// Unix ms until which this node may claim (its own conservative view of its lease).
    live_until: AtomicI64,
    pub worker_id: u16,
    pub holder: String,
    pub address: String,
    pub started_at: i64,
    pub lease: Duration,
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The row was there and is renewed.
    Renewed,
    /// The row was gone: the others took this node for dead and freed its claims. It is
    /// registered again under the new id given.
    Registered { lapsed_id: i64, new_id: i64 },
}

/// A node whose lease lapsed, as the takeover reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LapsedNode {
    pub node_id: i64,
    /// When it last renewed (Unix ms).
    pub renewed_at: i64,
    pub expires_at: i64,
}

fn new_node_id() -> i64 {
    // Positive and never 0 (0 means "no node" in the claim columns).
    rand::rng().random_range(1..i64::MAX)
}

impl NodeLease {
    /// Registers this node (a new row, live for `lease` from now).
    pub async fn register(
        db: &Db,
        worker_id: u16,
        holder: String,
        address: String,
        lease: Duration,
    ) -> Result<NodeLease, StoreError> {
        let node = NodeLease {
            id: AtomicI64::new(new_node_id()),
            live_until: AtomicI64::new(0),
            worker_id,
            holder,
            address,
            started_at: now_ms(),
            lease,
        };
        node.insert(db).await?;
        Ok(node)
    }

    /// The id this node's claims carry now.
    pub fn id(&self) -> i64 {
        self.id.load(Ordering::Acquire)
    }

    /// Whether this node may claim: its lease has not lapsed by its own reckoning.
    pub fn is_live(&self) -> bool {
        now_ms() < self.live_until.load(Ordering::Acquire)
    }

    fn lease_ms(&self) -> i64 {
        self.lease.as_millis() as i64
    }

    async fn insert(&self, db: &Db) -> Result<(), StoreError> {
        let sent = now_ms();
        sqlx::query(
            "INSERT INTO nodes (node_id, worker_id, holder, address, version, started_at, \
             renewed_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(self.id())
        .bind(i64::from(self.worker_id))
        .bind(self.holder.as_str())
        .bind(self.address.as_str())
        .bind(env!("CARGO_PKG_VERSION"))
        .bind(self.started_at)
        .bind(sent)
        .bind(sent + self.lease_ms())
        .execute(db.writer())
        .await?;
        self.live_until
            .store(sent + self.lease_ms(), Ordering::Release);
        Ok(())
    }

    /// Renews the lease; registers this node again under a new id when its row is gone (the
    /// others took it for dead: its claims are theirs now).
    pub async fn renew(&self, db: &Db) -> Result<Renewal, StoreError> {
        let sent = now_ms();
        let renewed = sqlx::query(
            "UPDATE nodes SET renewed_at = $1, expires_at = $2 WHERE node_id = $3 AND expires_at >= $1",
        )
        .bind(sent)
        .bind(sent + self.lease_ms())
        .bind(self.id())
        .execute(db.writer())
        .await?
        .rows_affected();
        if renewed == 1 {
            self.live_until
                .store(sent + self.lease_ms(), Ordering::Release);
            return Ok(Renewal::Renewed);
        }
        // Lapsed: stop claiming under the old id at once. Its row, if still there, is left to
        // the takeover (which frees its claims with it).
        self.live_until.store(0, Ordering::Release);
        let lapsed_id = self.id();
        let new_id = new_node_id();
        self.id.store(new_id, Ordering::Release);
        self.insert(db).await?;
        Ok(Renewal::Registered { lapsed_id, new_id })
    }

    /// Stops claiming (at the start of a graceful stop).
    pub fn stop_claiming(&self) {
        self.live_until.store(0, Ordering::Release);
    }

    /// Deletes this node's row inside the caller's transaction (which frees its claims too).
    pub async fn goodbye(&self, conn: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
        self.live_until.store(0, Ordering::Release);
        sqlx::query("DELETE FROM nodes WHERE node_id = $1")
            .bind(self.id())
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// Nodes whose lease lapsed before `now`, as a reader sees them.
pub async fn lapsed(db: &Db, now: i64) -> Result<Vec<i64>, StoreError> {
    sqlx::query_scalar("SELECT node_id FROM nodes WHERE expires_at < $1 ORDER BY node_id LIMIT 64")
        .bind(now)
        .fetch_all(db.reader())
        .await
}

/// Deletes a lapsed node's row inside the caller's transaction, which then frees its claims;
/// `None` when it is not lapsed (it renewed meanwhile) or another node got to it first, so that
/// one transaction takes each dead node over.
pub async fn forget_lapsed(
    conn: &mut sqlx::AnyConnection,
    node_id: i64,
    now: i64,
) -> Result<Option<LapsedNode>, StoreError> {
    let row: Option<(i64, i64, i64)> = sqlx::query_as(
        "DELETE FROM nodes WHERE node_id = $1 AND expires_at < $2 \
         RETURNING node_id, renewed_at, expires_at",
    )
    .bind(node_id)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(node_id, renewed_at, expires_at)| LapsedNode {
        node_id,
        renewed_at,
        expires_at,
    }))
}

/// A live node, for operators and tests.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NodeRow {
    pub node_id: i64,
    pub worker_id: i64,
    pub holder: String,
    pub address: String,
    pub version: String,
    pub started_at: i64,
    pub renewed_at: i64,
    pub expires_at: i64,
}

/// Every registered node (live or lapsed and not yet taken over), oldest first.
pub async fn list(db: &Db) -> Result<Vec<NodeRow>, StoreError> {
    sqlx::query_as(
        "SELECT node_id, worker_id, holder, address, version, started_at, renewed_at, expires_at \
         FROM nodes ORDER BY started_at, node_id",
    )
    .fetch_all(db.reader())
    .await
}

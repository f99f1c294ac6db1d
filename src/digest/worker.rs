//! Sending digests when they are due: the worker sleeps on the shared clock until the earliest
//! due time of a held item, then claims and sends what is due in batches of contacts, and
//! sleeps again. It never scans what is not due: the next due time is one indexed `MIN`.
//!
//! **Invariant**: each held item is sent in exactly one digest, whichever node runs the
//! worker. The claim is the removal of the items: one `DELETE … RETURNING` takes every due
//! item of a batch of contacts, and only what it returned is rendered and queued, in the same
//! transaction. A row can be deleted once — on PostgreSQL a second node's `DELETE` waits for
//! the first's transaction and then finds the rows gone, on SQLite writers take turns — so
//! this is the compare-and-set per item, with no claim rows to keep or prune. If the
//! transaction fails, the items are back and the next round sends them.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::Row;
use tokio_util::sync::CancellationToken;

use super::render::{self, Digest, DigestEntry};
use super::{DigestState, HeldMessage, HeldPush, KIND_ANNOUNCEMENT};
use crate::outbox::{self, NewDelivery};
use crate::store::{self, ROWS_PER_STATEMENT, Script, StoreError};

/// How many held items one claim takes at most (with every other due item of their contacts,
/// so that a contact's digest is never split).
const CLAIM_ITEMS: i64 = 1000;

/// How often, in real time, the worker looks for items held by other nodes while it sleeps:
/// this node's own pushes wake it at once.
const RECHECK: Duration = Duration::from_secs(30);

/// Runs until `shutdown`: sends what is due, then sleeps until the next due time, a push that
/// held something on this node, or the periodic look for other nodes' items.
pub async fn run(state: DigestState, shutdown: CancellationToken) {
    loop {
        let now = state.clock.now_ms();
        let mut failed = false;
        loop {
            match send_due(&state, now).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "sending due digests failed; trying again shortly");
                    failed = true;
                    break;
                }
            }
        }
        let next = if failed {
            None
        } else {
            match next_due(&state).await {
                Ok(next) => next,
                Err(error) => {
                    tracing::warn!(%error, "could not read when the next digest is due");
                    failed = true;
                    None
                }
            }
        };
        let recheck = if failed {
            Duration::from_secs(1)
        } else {
            RECHECK
        };
        let clock = state.clock.clone();
        tokio::select! {
            _ = async {
                match next {
                    Some(at) => clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = state.wake.notified() => {}
            _ = tokio::time::sleep(recheck) => {}
            _ = shutdown.cancelled() => break,
        }
    }
}

/// The earliest due time of any held item.
pub async fn next_due(state: &DigestState) -> Result<Option<i64>, StoreError> {
    sqlx::query_scalar::<_, Option<i64>>("SELECT MIN(due_at) FROM digest_items")
        .fetch_one(state.db.reader())
        .await
}

/// One held item as claimed.
struct Claimed {
    id: i64,
    contact_id: i64,
    held: Held,
}

/// What a held item is.
enum Held {
    Push {
        repository: String,
        branch: String,
        push: HeldPush,
    },
    Announcement(String),
}

/// Claims the items due at `now` of a batch of contacts and queues one digest per contact, in
/// one transaction. Returns how many items were claimed (0 when nothing is due).
pub async fn send_due(state: &DigestState, now: i64) -> Result<usize, StoreError> {
    let mut tx = state.db.writer().begin().await?;
    let rows = sqlx::query(
        "DELETE FROM digest_items WHERE due_at <= $1 AND contact_id IN \
         (SELECT contact_id FROM digest_items WHERE due_at <= $1 ORDER BY due_at LIMIT $2) \
         RETURNING id, contact_id, repository, branch, summary, kind",
    )
    .bind(now)
    .bind(CLAIM_ITEMS)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut claimed: Vec<Claimed> = Vec::with_capacity(rows.len());
    for row in &rows {
        let summary: String = row.get(4);
        let kind: String = row.get(5);
        let held = if kind == KIND_ANNOUNCEMENT {
            serde_json::from_str::<HeldMessage>(&summary)
                .map(|held| Held::Announcement(held.message))
        } else {
            serde_json::from_str::<HeldPush>(&summary).map(|push| Held::Push {
                repository: row.get(2),
                branch: row.get(3),
                push,
            })
        };
        let held = match held {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(%error, item = row.get::<i64, _>(0), %kind, "a held item does not parse; dropped");
                continue;
            }
        };
        claimed.push(Claimed {
            id: row.get(0),
            contact_id: row.get(1),
            held,
        });
    }
    // Ids grow with time: in id order a contact's items are in the order of their pushes.
    claimed.sort_by_key(|c| (c.contact_id, c.id));
    let mut contact_ids: Vec<i64> = claimed.iter().map(|c| c.contact_id).collect();
    contact_ids.dedup();
    let destinations = reachable_contacts(&mut tx, &contact_ids).await?;

    let mut deliveries = Vec::with_capacity(destinations.len());
    for items in claimed.chunk_by(|a, b| a.contact_id == b.contact_id) {
        let contact_id = items[0].contact_id;
        // A contact muted, blocked or deleted since its items were held gets nothing.
        let Some((channel, address)) = destinations.get(&contact_id) else {
            continue;
        };
        let mut digest = Digest::default();
        for item in items {
            match &item.held {
                Held::Push {
                    repository,
                    branch,
                    push,
                } => digest.pushes.push(DigestEntry {
                    repository,
                    branch,
                    push,
                }),
                Held::Announcement(message) => digest.announcements.push(message),
            }
        }
        deliveries.push(NewDelivery {
            channel: channel.clone(),
            destination: address.clone(),
            payload: render::for_channel(channel, &digest).to_string(),
            event_id: None,
            contact_id: Some(contact_id),
            webhook_id: None,
            event_type: None,
        });
    }
    let queued = deliveries.len();
    let mut script = Script::new(state.db.backend);
    let leased =
        outbox::enqueue_local_first(&mut script, &state.ids, &state.local_queue, deliveries);
    let leased_count = leased.len();
    if let Err(error) = script.run_in(&mut tx).await {
        state.local_queue.release(leased_count);
        return Err(error);
    }
    outbox::commit_and_dispatch(tx, &state.local_queue, &state.outbox_wake, queued, leased).await?;
    metrics::counter!("herald_digests_queued_total").increment(queued as u64);
    tracing::debug!(items = rows.len(), digests = queued, "queued due digests");
    Ok(rows.len())
}

/// Channel and address of the contacts that may still be told something.
async fn reachable_contacts(
    conn: &mut sqlx::AnyConnection,
    contact_ids: &[i64],
) -> Result<HashMap<i64, (String, String)>, StoreError> {
    let mut found = HashMap::with_capacity(contact_ids.len());
    for chunk in contact_ids.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT id, channel, address FROM contacts WHERE id IN ({}) AND muted = 0 AND blocked = 0",
            store::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            found.insert(row.get(0), (row.get(1), row.get(2)));
        }
    }
    Ok(found)
}

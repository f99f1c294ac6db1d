//! Accepting a push event: de-duplicate it, remember the new head, and queue one notification
//! per interested contact — all in one transaction, so the event and its deliveries are durable
//! before whoever reported the push (a webhook sender, a poller) is answered.
//!
//! De-duplication works at three levels, so that a webhook and a poll of the same push, a
//! redelivered webhook, or a stale webhook arriving after a poll all notify once:
//! 1. the inbound delivery id (`inbound_deliveries`);
//! 2. the branch head: an event whose `after` is the known head is old news;
//! 3. the commits: each commit is announced once per branch (`seen_commits`); an event with no
//!    new commit is dropped unless it is a force-push, a branch creation or a deletion.
//!
//! The parts: this file queues pushes and commits them in groups (the drain task); `known`
//! reads what the decisions need (recorded ids, heads, announced commits, and who hears of
//! each repository, cached per `routing_version`); `apply` decides in arrival order and
//! writes; `fanout` plans each subscriber's notification.
//!
//! How it stays fast: concurrent pushes share one transaction (group commit). Callers queue
//! their event; one drain task takes everything queued, reads what the decisions need in one
//! call, decides in memory and in arrival order what is a duplicate, and sends every write of
//! the batch as one `store::Script`, committed as a whole; if it fails, each push is retried
//! alone. Who hears of a repository's pushes is kept in memory per repository and read again
//! only when `routing_version` moved — triggers bump it in the same transaction as any change
//! to subscriptions, contacts, projects or hooks, whoever makes it (migration 0011) — in a
//! later call than the version it is filed under. On PostgreSQL the reads are one round trip
//! and the script another; on SQLite in a file the drain task takes a turn at the writer
//! (`store::WriterTurn`) and runs the reads and the script on the writer's own connection, so
//! nothing commits between the read and the write it decides. Deliveries this node queued
//! reach its delivery worker in memory, already leased.
//!
//! **Boundary**: this module owns `push_events` and `seen_commits`; branch heads and inbound
//! ids are written through their owners (`watch::write_heads_into`, `inbound::record_into`)
//! into the same script.

mod apply;
mod fanout;
mod known;

use super::PushState;
use crate::outbox;
use crate::store::{self, Script, StoreError};
use crate::watch::Repository;
use crate::watch::event::PushEvent;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    Accepted { event_id: i64, notifications: usize },
    Duplicate,
}

/// Accepts a push event: durable (with every delivery it causes) before this returns.
///
/// Concurrent pushes are committed together (group commit): each caller queues its event and
/// one drain task writes everything queued in one transaction, so a burst of webhooks costs one
/// commit — one WAL append on SQLite, one flush on PostgreSQL — instead of one each. Events are
/// applied in arrival order inside the transaction, so two pushes to one branch see each other.
/// If the shared transaction fails, each event is retried alone, so one bad event cannot fail
/// the others.
pub async fn accept_push(
    state: &PushState,
    repository: &Repository,
    event: PushEvent,
    inbound_delivery: Option<(&str, &str)>,
) -> Result<IngestOutcome, StoreError> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = Job {
        repository: repository.clone(),
        event,
        inbound: inbound_delivery.map(|(s, d)| (s.to_string(), d.to_string())),
        reply,
    };
    if state.ingest.submit(job) {
        tokio::spawn(drain(state.clone()));
    }
    answer
        .await
        .map_err(|_| StoreError::Protocol("push ingestion stopped".into()))?
}

/// Pushes waiting to be committed, and whether a drain task is running; and who hears of a
/// push to each repository, as last read.
#[derive(Default)]
pub struct IngestQueue {
    pending: std::sync::Mutex<(Vec<Job>, bool)>,
    routing: std::sync::Mutex<known::RoutingCache>,
}

/// The most events one transaction takes.
const BATCH: usize = 64;

pub struct Job {
    repository: Repository,
    event: PushEvent,
    inbound: Option<(String, String)>,
    reply: tokio::sync::oneshot::Sender<Result<IngestOutcome, StoreError>>,
}

impl IngestQueue {
    /// Queues a job; `true` if no drain task is running and the caller must start one.
    fn submit(&self, job: Job) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.0.push(job);
        !std::mem::replace(&mut pending.1, true)
    }

    /// The next batch, or `None` (and the drain task ends) when nothing is waiting.
    fn next_batch(&self) -> Option<Vec<Job>> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.0.is_empty() {
            pending.1 = false;
            return None;
        }
        let take = pending.0.len().min(BATCH);
        Some(pending.0.drain(..take).collect())
    }

    fn stopped(&self) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).1 = false;
    }
}

/// Marks the drain task gone if it ends early (a panic, or the runtime shutting down), so the
/// next push starts another. A drain that found the queue empty has already said so under the
/// lock (`next_batch`) and must not say it again: a new drain may be running by then.
struct Draining<'a> {
    queue: &'a IngestQueue,
    finished: bool,
}

impl Drop for Draining<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.queue.stopped();
        }
    }
}

async fn drain(state: PushState) {
    let mut guard = Draining {
        queue: &state.ingest,
        finished: false,
    };
    while let Some(batch) = state.ingest.next_batch() {
        commit_batch(&state, batch).await;
    }
    guard.finished = true;
}

/// A batch applied inside a transaction, ready to be handed over once it commits.
struct Applied {
    outcomes: Vec<IngestOutcome>,
    queued: usize,
    leased: Vec<outbox::ClaimedDelivery>,
    /// Notifications held for digests (`digest_items`).
    held: usize,
}

async fn commit_batch(state: &PushState, batch: Vec<Job>) {
    tracing::debug!(events = batch.len(), "group commit of pushes");
    match apply_and_commit(state, &batch).await {
        Ok(applied) => return hand_over(state, batch, applied),
        // A push alone fails for good unless another node recorded the same delivery id or
        // commit between our read and our write: then reading again finds it a duplicate.
        Err(error) if batch.len() == 1 && !store::is_unique_violation(&error) => {
            if let Some(job) = batch.into_iter().next() {
                let _ = job.reply.send(Err(error));
            }
            return;
        }
        Err(error) => {
            tracing::warn!(%error, events = batch.len(), "group commit failed; retrying each push alone");
        }
    }
    for job in batch {
        match apply_and_commit(state, std::slice::from_ref(&job)).await {
            Ok(applied) => hand_over(state, vec![job], applied),
            Err(error) => {
                let _ = job.reply.send(Err(error));
            }
        }
    }
}

async fn apply_and_commit(state: &PushState, batch: &[Job]) -> Result<Applied, StoreError> {
    // What the decisions need is read first, then every write goes out as one script. On SQLite
    // in a file both happen in one turn at the writer, on its own connection (warm cache, no
    // commit in between); on PostgreSQL the reads run at once on pooled connections (batches
    // run one at a time on a node, so they see every earlier batch committed). The writes
    // insert the inbound ids and announced commits without `ON CONFLICT`: if another node
    // recorded one of them since our read, the script fails whole and the pushes are retried
    // alone.
    let mut turn = state.db.writer_turn().await?;
    let known = known::read_known(state, &mut turn, batch).await?;
    let mut script = Script::new(state.db.backend);
    let applied = apply::apply(&mut script, state, batch, known)?;
    if let Err(error) = script.commit_in_turn(&state.db, turn).await {
        state.local_queue.release(applied.leased.len());
        return Err(error);
    }
    Ok(applied)
}

/// After the commit: the leased deliveries go to this node's worker, the rest wake it, and
/// every caller gets its answer.
fn hand_over(state: &PushState, batch: Vec<Job>, applied: Applied) {
    let leased = applied.leased.len();
    state.local_queue.push(applied.leased);
    if applied.queued > leased {
        state.outbox_wake.notify_one();
    }
    if applied.held > 0 {
        state.digest_wake.notify_one();
    }
    for (job, outcome) in batch.into_iter().zip(applied.outcomes) {
        if let IngestOutcome::Accepted {
            notifications,
            event_id,
        } = &outcome
        {
            metrics::counter!("herald_push_events_total", "source" => job.event.source.as_str())
                .increment(1);
            tracing::info!(
                repository = %job.repository.url.key,
                branch = %job.event.branch(),
                after = %job.event.after,
                forced = job.event.forced,
                event_id,
                notifications,
                source = job.event.source.as_str(),
                "push accepted"
            );
        }
        let _ = job.reply.send(Ok(outcome));
    }
}

/// Deletes up to `{BATCH}` accepted pushes whose ids are below `$1` (the first snowflake id of
/// the cutoff), oldest first; history pruning (`retention`) runs it in paced batches. Nothing
/// needs an old push: deliveries and held digest items carry what they say.
pub const PRUNE_EVENTS_SQL: &str = "DELETE FROM push_events WHERE id IN \
     (SELECT id FROM push_events WHERE id < $1 ORDER BY id LIMIT {BATCH})";

/// Deletes up to `{BATCH}` commits first seen on their branch before `$1` (Unix ms). A commit
/// pushed to the same branch again after that would be announced again: by then the branch
/// head (`branch_heads`) has long moved past it, so only a branch reset to a very old commit
/// and pushed forward again does so.
pub const PRUNE_SEEN_COMMITS_SQL: &str = "DELETE FROM seen_commits WHERE (repository_id, ref, sha) IN \
     (SELECT repository_id, ref, sha FROM seen_commits WHERE seen_at < $1 ORDER BY seen_at LIMIT {BATCH})";

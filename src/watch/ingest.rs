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

use std::collections::{HashMap, HashSet};

use super::Repository;
use super::event::{Commit, PushEvent};
use crate::ids::now_ms;
use crate::notify::render::{self, PushSummary};
use crate::outbox::{self, NewDelivery};
use crate::state::AppState;
use crate::store::{self, Script, StoreError, Value};

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
    state: &AppState,
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
    routing: std::sync::Mutex<RoutingCache>,
}

/// Who hears of a push to one repository: its subscribers (with their contacts) and the
/// active hooks of its projects.
#[derive(Default)]
struct Routing {
    subscribers: Vec<Subscriber>,
    hooks: Vec<crate::projects::ProjectHook>,
}

/// [`Routing`] by repository, as of one `routing_version` (migration 0011). That row changes
/// in the same transaction as any change to subscriptions, contacts, projects or hooks (by
/// triggers, whoever makes it: another node, an operator's SQL), so a push reads it — one
/// small row — instead of the subscribers and hooks, and reads those only for repositories
/// not yet cached or after the version moved on. The routing is always read in a later round
/// than the version it is filed under, so it is never older than that version says.
#[derive(Default)]
struct RoutingCache {
    version: Option<i64>,
    by_repository: HashMap<i64, std::sync::Arc<Routing>>,
}

/// Repositories kept at most; past it the cache starts over.
const ROUTING_CACHE_ENTRIES: usize = 10_000;

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

async fn drain(state: AppState) {
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
}

async fn commit_batch(state: &AppState, batch: Vec<Job>) {
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

async fn apply_and_commit(state: &AppState, batch: &[Job]) -> Result<Applied, StoreError> {
    // What the decisions need is read first, then every write goes out as one script. On SQLite
    // in a file both happen in one turn at the writer, on its own connection (warm cache, no
    // commit in between); on PostgreSQL the reads run at once on pooled connections (batches
    // run one at a time on a node, so they see every earlier batch committed). The writes
    // insert the inbound ids and announced commits without `ON CONFLICT`: if another node
    // recorded one of them since our read, the script fails whole and the pushes are retried
    // alone.
    let mut turn = state.db.writer_turn().await?;
    let known = read_known(state, &mut turn, batch).await?;
    let mut script = Script::new(state.db.backend);
    let applied = apply(&mut script, state, batch, known)?;
    if let Err(error) = script.commit_in_turn(&state.db, turn).await {
        state.local_queue.release(applied.leased.len());
        return Err(error);
    }
    Ok(applied)
}

/// After the commit: the leased deliveries go to this node's worker, the rest wake it, and
/// every caller gets its answer.
fn hand_over(state: &AppState, batch: Vec<Job>, applied: Applied) {
    let leased = applied.leased.len();
    state.local_queue.push(applied.leased);
    if applied.queued > leased {
        state.outbox_wake.notify_one();
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

/// `($1, $2, …), ($k, …)`: placeholders for `rows` rows of `columns` values.
fn rows_of(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=columns)
                .map(|c| format!("${}", r * columns + c))
                .collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows per multi-row statement (SQLite binds `$n` names in quadratic time; see `outbox`).
const ROWS: usize = 64;

/// What the database knows of a batch's pushes, read before the decisions: branch heads,
/// announced commits, and who is told about each repository.
struct Known {
    /// Inbound delivery ids of the batch already recorded (source, id).
    inbound: HashSet<(String, String)>,
    heads: HashMap<(i64, String), Option<String>>,
    seen: HashSet<(i64, String, String)>,
    routing: HashMap<i64, std::sync::Arc<Routing>>,
}

/// Which pushes are new: a redelivered webhook (its id already recorded), or one sent twice in
/// the batch, is a duplicate.
fn fresh_inbound(batch: &[Job], recorded: &HashSet<(String, String)>) -> Vec<bool> {
    let mut first_seen = HashSet::new();
    batch
        .iter()
        .map(|job| match &job.inbound {
            Some((source, id)) => {
                first_seen.insert((source.as_str(), id.as_str()))
                    && !recorded.contains(&(source.clone(), id.clone()))
            }
            None => true,
        })
        .collect()
}

/// Reads recorded inbound ids, heads and announced commits (one statement) and the routing
/// version, then the subscribers and project hooks of the batch's repositories that the
/// routing cache cannot answer for ([`store::read_many_in_turn`]: on the writer connection on
/// SQLite, concurrent statements on PostgreSQL).
async fn read_known(
    state: &AppState,
    turn: &mut store::WriterTurn,
    batch: &[Job],
) -> Result<Known, StoreError> {
    let mut repositories: Vec<(i64, &str)> = Vec::new();
    for job in batch {
        let repository = &job.repository;
        if !repositories.iter().any(|(id, _)| *id == repository.id) {
            repositories.push((repository.id, repository.url.remote.as_str()));
        }
    }
    let mut reads = heads_and_seen_reads(batch);
    // The routing version rides along in the same statement (one read transaction, not two).
    if let Some((sql, _)) = reads.first_mut() {
        sql.push_str(
            " UNION ALL SELECT CAST(3 AS BIGINT) AS kind, version AS repository_id, '' AS name, \
             '' AS sha FROM routing_version",
        );
    }
    let results = store::read_many_in_turn(&state.db, turn, reads).await?;
    let mut version = None;
    let mut known = Known {
        inbound: HashSet::new(),
        heads: HashMap::new(),
        seen: HashSet::new(),
        routing: HashMap::new(),
    };
    for row in results.into_iter().flatten() {
        let kind: i64 = row.get(0);
        match kind {
            0 => {
                known
                    .heads
                    .insert((row.get(1), row.get(2)), Some(row.get(3)));
            }
            1 => {
                known.seen.insert((row.get(1), row.get(2), row.get(3)));
            }
            3 => version = Some(row.get(1)),
            _ => {
                known.inbound.insert((row.get(2), row.get(3)));
            }
        }
    }
    let version: i64 =
        version.ok_or_else(|| StoreError::Protocol("the routing_version row is missing".into()))?;
    let mut missing: Vec<(i64, &str)> = Vec::new();
    {
        let mut cache = state
            .ingest
            .routing
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if cache.version != Some(version) {
            cache.by_repository.clear();
            cache.version = Some(version);
        }
        for &(id, remote) in &repositories {
            match cache.by_repository.get(&id) {
                Some(routing) => {
                    known.routing.insert(id, routing.clone());
                }
                None => missing.push((id, remote)),
            }
        }
    }
    if missing.is_empty() {
        return Ok(known);
    }
    let mut reads = subscriber_reads(&missing);
    let subscriber_reads_end = reads.len();
    reads.extend(crate::projects::hook_target_reads(&missing));
    let mut results = store::read_many_in_turn(&state.db, turn, reads).await?;
    let hook_rows = results.split_off(subscriber_reads_end);
    let mut read: HashMap<i64, Routing> = missing
        .iter()
        .map(|(id, _)| (*id, Routing::default()))
        .collect();
    for hook in crate::projects::hook_targets_from(hook_rows.into_iter().flatten(), &missing) {
        if let Some(routing) = read.get_mut(&hook.project.repository_id) {
            routing.hooks.push(hook);
        }
    }
    for row in results.into_iter().flatten() {
        let Some(routing) = read.get_mut(&row.get(6)) else {
            continue;
        };
        routing.subscribers.push(Subscriber {
            branch: row.get(0),
            paths: serde_json::from_str(&row.get::<String>(1)).unwrap_or_default(),
            exclude_authors: serde_json::from_str(&row.get::<String>(2)).unwrap_or_default(),
            contact_id: row.get(3),
            channel: row.get(4),
            address: row.get(5),
        });
    }
    let mut cache = state
        .ingest
        .routing
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    // Filed only under the version read before these rows (another batch may have moved it on
    // meanwhile; then these are used for this batch alone).
    let file = cache.version == Some(version);
    if file && cache.by_repository.len() + read.len() > ROUTING_CACHE_ENTRIES {
        cache.by_repository.clear();
    }
    for (id, routing) in read {
        let routing = std::sync::Arc::new(routing);
        if file {
            cache.by_repository.insert(id, routing.clone());
        }
        known.routing.insert(id, routing);
    }
    Ok(known)
}

/// Recorded inbound ids, branch heads and announced commits of the batch's pushes, read in one
/// statement (per 64 of each): all are (repository, name, sha) rows, told apart by the first
/// column — 0 a head, 1 an announced commit, 2 an inbound id (source, id); [`read_known`]
/// adds 3, the routing version, to the first.
fn heads_and_seen_reads(batch: &[Job]) -> Vec<(String, Vec<Value>)> {
    let inbound_keys: Vec<(&str, &str)> = batch
        .iter()
        .filter_map(|j| j.inbound.as_ref().map(|(s, d)| (s.as_str(), d.as_str())))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let head_keys: Vec<(i64, &str)> = batch
        .iter()
        .map(|j| (j.repository.id, j.event.branch()))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let commit_keys: Vec<(i64, &str, &str)> = batch
        .iter()
        .flat_map(|j| {
            j.event
                .commits
                .iter()
                .map(move |c| (j.repository.id, j.event.ref_name.as_str(), c.id.as_str()))
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    // Chunks of ids, heads and commits side by side, so that the common case is one statement.
    let chunks = head_keys
        .len()
        .div_ceil(ROWS)
        .max(commit_keys.len().div_ceil(ROWS))
        .max(inbound_keys.len().div_ceil(ROWS));
    let mut reads = Vec::with_capacity(chunks);
    for n in 0..chunks {
        let inbound_chunk = inbound_keys.chunks(ROWS).nth(n).unwrap_or_default();
        let heads_chunk = head_keys.chunks(ROWS).nth(n).unwrap_or_default();
        let commits_chunk = commit_keys.chunks(ROWS).nth(n).unwrap_or_default();
        let mut parts = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        let mut next = |value: Value| {
            values.push(value);
            format!("${}", values.len())
        };
        // One lookup of a whole primary key per key, never `(a AND b) OR (a AND c)`: PostgreSQL
        // factors the common `a` out of such an OR and, until it has statistics on the table
        // (a new database, a fast-growing one), scans every row under it — every commit ever
        // announced on the branch (17 ms at 6,000 commits, growing without bound).
        for (source, id) in inbound_chunk {
            parts.push(format!(
                "SELECT CAST(2 AS BIGINT) AS kind, CAST(0 AS BIGINT) AS repository_id, source AS name, \
                 delivery_id AS sha FROM inbound_deliveries WHERE source = {} AND delivery_id = {}",
                next((*source).into()),
                next((*id).into())
            ));
        }
        for (repository, branch) in heads_chunk {
            parts.push(format!(
                "SELECT CAST(0 AS BIGINT) AS kind, repository_id, branch AS name, sha FROM branch_heads \
                 WHERE repository_id = {} AND branch = {}",
                next((*repository).into()),
                next((*branch).into())
            ));
        }
        for (repository, ref_name, sha) in commits_chunk {
            parts.push(format!(
                "SELECT CAST(1 AS BIGINT) AS kind, repository_id, ref AS name, sha FROM seen_commits \
                 WHERE repository_id = {} AND ref = {} AND sha = {}",
                next((*repository).into()),
                next((*ref_name).into()),
                next((*sha).into())
            ));
        }
        reads.push((parts.join(" UNION ALL "), values));
    }
    reads
}

/// The reads that find who is told about these repositories (subscriptions with their contacts).
fn subscriber_reads(repositories: &[(i64, &str)]) -> Vec<(String, Vec<Value>)> {
    repositories
        .chunks(ROWS)
        .map(|chunk| {
            let list = store::placeholders(1, chunk.len());
            let sql = format!(
                "SELECT s.branch, s.paths, s.exclude_authors, c.id, c.channel, c.address, s.repository_id \
                 FROM subscriptions s JOIN contacts c ON c.id = s.contact_id \
                 WHERE s.repository_id IN ({list}) AND s.muted = 0 AND c.muted = 0 AND c.blocked = 0"
            );
            (sql, chunk.iter().map(|(id, _)| Value::from(*id)).collect())
        })
        .collect()
}

/// Applies a batch of pushes inside the caller's transaction, in arrival order, with a fixed
/// number of statements per batch rather than per push: the order-dependent decisions (is this
/// head already known, was this commit announced, by the database or by an earlier push of
/// the same batch) are made in memory from what [`read_known`] found, then every push's
/// writes go out together.
fn apply(
    script: &mut Script,
    state: &AppState,
    batch: &[Job],
    known: Known,
) -> Result<Applied, StoreError> {
    let mut outcomes = vec![IngestOutcome::Duplicate; batch.len()];
    let now = now_ms();
    let alive = fresh_inbound(batch, &known.inbound);
    let Known {
        inbound: _,
        mut heads,
        mut seen,
        routing,
    } = known;

    // 1. The decisions, push by push, each seeing the ones before it.
    let mut accepted: Vec<(usize, PushEvent, i64)> = Vec::new();
    let mut new_commits: Vec<(i64, String, String)> = Vec::new();
    let mut changed_heads: Vec<(i64, String)> = Vec::new();
    for (i, job) in batch.iter().enumerate() {
        if !alive[i] {
            continue;
        }
        let repository = &job.repository;
        let mut event = job.event.clone();
        let key = (repository.id, event.branch().to_string());
        let known_head = heads.get(&key).cloned().flatten();
        if !event.deleted && known_head.as_deref() == Some(event.after.as_str()) {
            continue;
        }
        if event.deleted
            && known_head.is_none()
            && event.commits.is_empty()
            && job.inbound.is_none()
        {
            continue;
        }
        event.commits.retain(|commit| {
            let key = (repository.id, event.ref_name.clone(), commit.id.clone());
            let fresh = seen.insert(key.clone());
            if fresh {
                new_commits.push(key);
            }
            fresh
        });
        if event.commits.is_empty() && !event.forced && !event.created && !event.deleted {
            continue;
        }
        let head = (!event.deleted).then(|| event.after.clone());
        heads.insert(key.clone(), head);
        if !changed_heads.contains(&key) {
            changed_heads.push(key);
        }
        if event.compare.is_none() && !event.created && !event.deleted {
            event.compare = repository.url.compare_url(&event.before, &event.after);
        }
        accepted.push((i, event, state.ids.next()));
    }

    // 2. The writes: inbound ids, announced commits, heads, events.
    let inbound: Vec<(&str, &str)> = batch
        .iter()
        .zip(&alive)
        .filter(|(_, alive)| **alive)
        .filter_map(|(job, _)| job.inbound.as_ref())
        .map(|(source, id)| (source.as_str(), id.as_str()))
        .collect();
    for chunk in inbound.chunks(ROWS) {
        script.push(format!(
            "INSERT INTO inbound_deliveries (source, delivery_id, received_at) VALUES {}",
            rows_of(chunk.len(), 3)
        ));
        for (source, id) in chunk {
            script.bind(*source).bind(*id).bind(now);
        }
    }
    for chunk in new_commits.chunks(ROWS) {
        script.push(format!(
            "INSERT INTO seen_commits (repository_id, ref, sha) VALUES {}",
            rows_of(chunk.len(), 3)
        ));
        for (repository, ref_name, sha) in chunk {
            script
                .bind(*repository)
                .bind(ref_name.as_str())
                .bind(sha.as_str());
        }
    }
    let (moved, removed): (Vec<_>, Vec<_>) = changed_heads
        .iter()
        .map(|key| (key, heads.get(key).cloned().flatten()))
        .partition(|(_, head)| head.is_some());
    for chunk in moved.chunks(ROWS) {
        script.push(format!(
            "INSERT INTO branch_heads (repository_id, branch, sha, updated_at) VALUES {} \
             ON CONFLICT (repository_id, branch) DO UPDATE SET sha = excluded.sha, updated_at = excluded.updated_at",
            rows_of(chunk.len(), 4)
        ));
        for ((repository, branch), head) in chunk {
            script
                .bind(*repository)
                .bind(branch.as_str())
                .bind(head.clone().unwrap_or_default())
                .bind(now);
        }
    }
    for ((repository, branch), _) in &removed {
        script
            .push("DELETE FROM branch_heads WHERE repository_id = $1 AND branch = $2")
            .bind(*repository)
            .bind(branch.as_str());
    }
    let mut payloads = Vec::with_capacity(accepted.len());
    for (_, event, _) in &accepted {
        payloads
            .push(serde_json::to_string(event).map_err(|e| StoreError::Protocol(e.to_string()))?);
    }
    let rows: Vec<(&(usize, PushEvent, i64), &String)> = accepted.iter().zip(&payloads).collect();
    for chunk in rows.chunks(ROWS / 2) {
        script.push(format!(
            "INSERT INTO push_events (id, repository_id, ref, before_sha, after_sha, forced, source, \
             payload, created_at) VALUES {}",
            rows_of(chunk.len(), 9)
        ));
        for ((i, event, event_id), payload) in chunk {
            script
                .bind(*event_id)
                .bind(batch[*i].repository.id)
                .bind(event.ref_name.as_str())
                .bind(event.before.as_str())
                .bind(event.after.as_str())
                .bind(i64::from(event.forced))
                .bind(event.source.as_str())
                .bind(payload.as_str())
                .bind(now);
        }
    }

    // 3. The deliveries of every push, queued together.
    let mut deliveries = Vec::new();
    for (i, event, event_id) in &accepted {
        let repository = &batch[*i].repository;
        let routing = routing.get(&repository.id);
        let mut planned = plan_notifications(
            &repository.url.display_name(),
            event,
            *event_id,
            routing.map_or(&[][..], |r| r.subscribers.as_slice()),
        );
        let notifications = planned.len();
        planned.extend(crate::projects::plan_webhook_deliveries(
            routing.map_or(&[][..], |r| r.hooks.as_slice()),
            repository.id,
            event,
            *event_id,
        ));
        deliveries.extend(planned);
        outcomes[*i] = IngestOutcome::Accepted {
            event_id: *event_id,
            notifications,
        };
    }
    let queued = deliveries.len();
    let leased = outbox::enqueue_local_first(script, &state.ids, &state.local_queue, deliveries);
    Ok(Applied {
        outcomes,
        queued,
        leased,
    })
}

/// A subscription joined with its contact, as the fan-out reads it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub branch: String,
    pub paths: Vec<String>,
    pub exclude_authors: Vec<String>,
    pub contact_id: i64,
    pub channel: String,
    pub address: String,
}

fn author_excluded(commit: &Commit, excluded: &[globset::GlobMatcher]) -> bool {
    let names = [
        Some(commit.author.name.as_str()),
        Some(commit.author.email.as_str()),
        commit.author.username.as_deref(),
    ];
    names
        .into_iter()
        .flatten()
        .filter(|n| !n.is_empty())
        .any(|name| excluded.iter().any(|m| m.is_match(name.to_lowercase())))
}

/// Which commits of the push a subscriber is told about, or `None` if the push is none of its
/// business (another branch, no matching path, only excluded authors).
fn commits_for(event: &PushEvent, subscriber: &Subscriber) -> Option<Vec<usize>> {
    let branch_matches = subscriber.branch == event.branch()
        || (super::repo::is_glob(&subscriber.branch)
            && super::subscription_glob(&subscriber.branch)
                .is_some_and(|m| m.is_match(event.branch())));
    if !branch_matches {
        return None;
    }
    let mut chosen: Vec<usize> = (0..event.commits.len()).collect();
    if !subscriber.exclude_authors.is_empty() {
        let excluded: Vec<_> = subscriber
            .exclude_authors
            .iter()
            .filter_map(|a| super::subscription_glob(&a.to_lowercase()))
            .collect();
        chosen.retain(|&i| !author_excluded(&event.commits[i], &excluded));
        if chosen.is_empty() && !event.commits.is_empty() {
            return None;
        }
    }
    if !subscriber.paths.is_empty() {
        let globs: Vec<_> = subscriber
            .paths
            .iter()
            .filter_map(|p| super::subscription_glob(p))
            .collect();
        let matches = |path: &str| globs.iter().any(|g| g.is_match(path));
        let per_commit_known = event.commits.iter().any(|c| c.paths().next().is_some());
        if per_commit_known {
            chosen.retain(|&i| event.commits[i].paths().any(|p| matches(p)));
            if chosen.is_empty() {
                return None;
            }
        } else if !event.all_paths().iter().any(|p| matches(p)) {
            return None;
        }
    }
    Some(chosen)
}

/// One delivery per contact (a contact with several matching subscriptions is told once),
/// rendered once per channel and commit selection.
pub fn plan_notifications(
    repository: &str,
    event: &PushEvent,
    event_id: i64,
    subscribers: &[Subscriber],
) -> Vec<NewDelivery> {
    let mut told: HashSet<i64> = HashSet::new();
    let mut rendered: HashMap<(String, Vec<usize>), String> = HashMap::new();
    let mut deliveries = Vec::new();
    for subscriber in subscribers {
        if told.contains(&subscriber.contact_id) {
            continue;
        }
        let Some(chosen) = commits_for(event, subscriber) else {
            continue;
        };
        told.insert(subscriber.contact_id);
        let payload = rendered
            .entry((subscriber.channel.clone(), chosen.clone()))
            .or_insert_with(|| {
                let commits: Vec<&Commit> = chosen.iter().map(|&i| &event.commits[i]).collect();
                render::for_channel(
                    &subscriber.channel,
                    &PushSummary {
                        repository,
                        event,
                        commits: &commits,
                    },
                )
                .to_string()
            })
            .clone();
        deliveries.push(NewDelivery {
            channel: subscriber.channel.clone(),
            destination: subscriber.address.clone(),
            payload,
            event_id: Some(event_id),
            contact_id: Some(subscriber.contact_id),
            webhook_id: None,
            event_type: None,
        });
    }
    deliveries
}

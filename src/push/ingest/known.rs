//! What the decisions of a batch need, read before them: the inbound ids already recorded, the
//! branch heads, the commits already announced, and who hears of each repository — the last
//! kept in memory per repository as of one `routing_version`.

use std::collections::{HashMap, HashSet};

use super::fanout::Subscriber;
use super::{Job, PushState};
use crate::store::{self, ROWS_PER_STATEMENT, StoreError, Value};

/// Who hears of a push to one repository: its subscribers (with their contacts) and the
/// active hooks of its projects.
#[derive(Default)]
pub(super) struct Routing {
    pub(super) subscribers: Vec<Subscriber>,
    pub(super) hooks: Vec<crate::projects::ProjectHook>,
}

/// [`Routing`] by repository, as of one `routing_version` (migration 0011). That row changes
/// in the same transaction as any change to subscriptions, contacts, projects or hooks (by
/// triggers, whoever makes it: another node, an operator's SQL), so a push reads it — one
/// small row — instead of the subscribers and hooks, and reads those only for repositories
/// not yet cached or after the version moved on. The routing is always read in a later round
/// than the version it is filed under, so it is never older than that version says.
#[derive(Default)]
pub(super) struct RoutingCache {
    version: Option<i64>,
    by_repository: HashMap<i64, std::sync::Arc<Routing>>,
}

/// Repositories kept at most; past it the cache starts over.
const ROUTING_CACHE_ENTRIES: usize = 10_000;
/// What the database knows of a batch's pushes, read before the decisions: branch heads,
/// announced commits, and who is told about each repository.
pub(super) struct Known {
    /// Inbound delivery ids of the batch already recorded (source, id).
    pub(super) inbound: HashSet<(String, String)>,
    pub(super) heads: HashMap<(i64, String), Option<String>>,
    pub(super) seen: HashSet<(i64, String, String)>,
    pub(super) routing: HashMap<i64, std::sync::Arc<Routing>>,
}

/// Which pushes are new: a redelivered webhook (its id already recorded), or one sent twice in
/// the batch, is a duplicate.
pub(super) fn fresh_inbound(batch: &[Job], recorded: &HashSet<(String, String)>) -> Vec<bool> {
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
pub(super) async fn read_known(
    state: &PushState,
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
            hold: crate::digest::HoldRule::from_stored(
                &row.get::<String>(7),
                row.get::<i64>(8) != 0,
                &row.get::<String>(9),
                row.get::<Option<String>>(10).as_deref(),
                row.get::<i64>(11) != 0,
            ),
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
        .div_ceil(ROWS_PER_STATEMENT)
        .max(commit_keys.len().div_ceil(ROWS_PER_STATEMENT))
        .max(inbound_keys.len().div_ceil(ROWS_PER_STATEMENT));
    let mut reads = Vec::with_capacity(chunks);
    for n in 0..chunks {
        let inbound_chunk = inbound_keys
            .chunks(ROWS_PER_STATEMENT)
            .nth(n)
            .unwrap_or_default();
        let heads_chunk = head_keys
            .chunks(ROWS_PER_STATEMENT)
            .nth(n)
            .unwrap_or_default();
        let commits_chunk = commit_keys
            .chunks(ROWS_PER_STATEMENT)
            .nth(n)
            .unwrap_or_default();
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
        .chunks(ROWS_PER_STATEMENT)
        .map(|chunk| {
            let list = store::placeholders(1, chunk.len());
            let sql = format!(
                "SELECT s.branch, s.paths, s.exclude_authors, c.id, c.channel, c.address, s.repository_id, \
                 s.digest, s.urgent, c.time_zone, c.quiet_hours, c.quiet_weekends \
                 FROM subscriptions s JOIN contacts c ON c.id = s.contact_id \
                 WHERE s.repository_id IN ({list}) AND s.muted = 0 AND c.muted = 0 AND c.blocked = 0"
            );
            (sql, chunk.iter().map(|(id, _)| Value::from(*id)).collect())
        })
        .collect()
}

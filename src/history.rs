//! Pruning the features' history tables, which otherwise grow by every push, run, morning and
//! login for ever: accepted pushes and the commits seen per branch
//! (`HERALD_PUSH_HISTORY_RETENTION`), schedules' runs and teams' handled mornings
//! (`HERALD_SCHEDULE_HISTORY_RETENTION`), and expired login tokens (no setting: an expired token
//! is refused anyway). The delivery log has its own pruning (`outbox::retention`), whose paced
//! batches this reuses.
//!
//! Each owner gives the statement that removes one batch of its old rows
//! (`push::ingest::PRUNE_EVENTS_SQL`, …); this module only runs them, so it is the one place
//! besides `startup` that names several features. A row's age is read on the clock that
//! wrote it: schedules and mornings on `AppState::clock` (their due times), pushes and tokens
//! on the system's (their ids and timestamps). Every node may prune at once: deleting what
//! another node has just deleted is harmless.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::ids::first_id_at;
use crate::outbox::retention::{BATCH, delete_in_batches};
use crate::state::AppState;
use crate::store::StoreError;

/// How long after start the first pass runs (on `AppState::clock`): soon, so that a node
/// restarted more often than [`EVERY`] still prunes.
pub const FIRST_PASS_AFTER: Duration = Duration::from_secs(60);

/// How often a node prunes (on `AppState::clock`).
pub const EVERY: Duration = Duration::from_secs(3600);

/// What one pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub push_events: u64,
    pub seen_commits: u64,
    pub schedule_runs: u64,
    pub team_mornings: u64,
    pub auth_tokens: u64,
}

impl Pruned {
    pub fn is_empty(&self) -> bool {
        *self == Pruned::default()
    }
}

/// Prunes until `shutdown`: the first pass [`FIRST_PASS_AFTER`] start, then every [`EVERY`].
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let mut next = state.clock.now_ms() + millis(FIRST_PASS_AFTER);
    loop {
        tokio::select! {
            _ = state.clock.sleep_until(next) => {}
            _ = shutdown.cancelled() => return,
        }
        next = state.clock.now_ms() + millis(EVERY);
        let outcome = tokio::select! {
            outcome = prune(&state, state.clock.now_ms(), crate::ids::now_ms()) => outcome,
            _ = shutdown.cancelled() => return,
        };
        match outcome {
            Ok(pruned) if !pruned.is_empty() => tracing::info!(
                push_events = pruned.push_events,
                seen_commits = pruned.seen_commits,
                schedule_runs = pruned.schedule_runs,
                team_mornings = pruned.team_mornings,
                auth_tokens = pruned.auth_tokens,
                "pruned history"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "pruning history failed; trying again later"),
        }
    }
}

fn millis(period: Duration) -> i64 {
    i64::try_from(period.as_millis()).unwrap_or(i64::MAX)
}

fn batch(sql: &str) -> String {
    sql.replace("{BATCH}", &BATCH.to_string())
}

/// One pass: removes what is older than its retention, `clock_now` being `AppState::clock`'s
/// time and `system_now` the system's.
pub async fn prune(
    state: &AppState,
    clock_now: i64,
    system_now: i64,
) -> Result<Pruned, StoreError> {
    let db = &state.db;
    let settings = &state.settings;
    let mut pruned = Pruned::default();
    if let Some(retention) = settings.push_history_retention {
        let cutoff = system_now.saturating_sub(millis(retention));
        pruned.push_events = delete_in_batches(
            db,
            batch(crate::push::ingest::PRUNE_EVENTS_SQL),
            first_id_at(cutoff),
        )
        .await?;
        pruned.seen_commits = delete_in_batches(
            db,
            batch(crate::push::ingest::PRUNE_SEEN_COMMITS_SQL),
            cutoff,
        )
        .await?;
    }
    if let Some(retention) = settings.schedule_history_retention {
        let cutoff = clock_now.saturating_sub(millis(retention));
        pruned.schedule_runs =
            delete_in_batches(db, batch(crate::schedules::PRUNE_RUNS_SQL), cutoff).await?;
        pruned.team_mornings =
            delete_in_batches(db, batch(crate::teams::morning::PRUNE_SQL), cutoff).await?;
    }
    pruned.auth_tokens = delete_in_batches(
        db,
        batch(crate::accounts::PRUNE_EXPIRED_TOKENS_SQL),
        system_now,
    )
    .await?;
    Ok(pruned)
}

//! Polling: each watch (repository + branch pattern) is checked once per `HERALD_POLL_INTERVAL`,
//! at its own offset within the interval, so ten thousand watches make a steady stream of small
//! requests rather than a burst. Watches are claimed with an UPDATE (and `SKIP LOCKED` on
//! PostgreSQL), so with several nodes each check runs on one node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::AssertSqlSafe;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::event::{PushEvent, Source, ZERO_SHA};
use super::github::{Conditional, GithubError};
use super::repo::RepoKind;
use super::{Repository, find_repository, set_baseline_head};
use crate::ids::now_ms;
use crate::state::AppState;

const CLAIM_BATCH: usize = 256;
const CONCURRENT_CHECKS: usize = 64;
const TICK: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueWatch {
    pub id: i64,
    pub repository_id: i64,
    pub pattern: String,
    pub etag: Option<String>,
    pub last_error: Option<String>,
}

pub async fn claim_due_watches(
    state: &AppState,
    limit: usize,
) -> Result<Vec<DueWatch>, sqlx::Error> {
    let interval = state.settings.poll_interval.as_millis() as i64;
    let now = now_ms();
    // Asked of a reader first: the claim is a write, and on SQLite every write (a push's
    // commit among them) queues behind it. Twenty claims a second that found nothing due held
    // up about one push in 70 by 0.1–1.2 ms (measured at 1,000 webhook deliveries/s).
    let due: Option<i64> =
        sqlx::query_scalar("SELECT id FROM watches WHERE next_check_at <= $1 LIMIT 1")
            .bind(now)
            .fetch_optional(state.db.reader())
            .await?;
    if due.is_none() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "UPDATE watches SET last_checked_at = $2, next_check_at = CASE WHEN next_check_at + $1 > $2 \
           THEN next_check_at + $1 ELSE $2 + $1 END \
         WHERE id IN (SELECT id FROM watches WHERE next_check_at <= $2 \
           ORDER BY next_check_at LIMIT $3{}) \
         RETURNING id, repository_id, pattern, etag, last_error",
        state.db.skip_locked()
    );
    sqlx::query_as::<_, DueWatch>(AssertSqlSafe(sql))
        .bind(interval)
        .bind(now)
        .bind(limit as i64)
        .fetch_all(state.db.writer())
        .await
}

/// Repositories never change once stored, so the poller keeps the ones it has loaded.
#[derive(Clone, Default)]
pub struct RepositoryCache(Arc<std::sync::RwLock<HashMap<i64, Repository>>>);

impl RepositoryCache {
    pub async fn get(&self, state: &AppState, id: i64) -> Result<Option<Repository>, sqlx::Error> {
        if let Some(found) = self.0.read().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(Some(found.clone()));
        }
        let found = find_repository(&state.db, id).await?;
        if let Some(repository) = &found {
            self.0
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, repository.clone());
        }
        Ok(found)
    }
}

pub async fn run(state: AppState, shutdown: CancellationToken) {
    let repositories = RepositoryCache::default();
    let permits = Arc::new(Semaphore::new(CONCURRENT_CHECKS));
    let tracker = TaskTracker::new();
    loop {
        let available = permits.available_permits().min(CLAIM_BATCH);
        let mut full = false;
        if available > 0 {
            match claim_due_watches(&state, available).await {
                Ok(watches) => {
                    full = watches.len() == available;
                    for watch in watches {
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            break;
                        };
                        let state = state.clone();
                        let repositories = repositories.clone();
                        tracker.spawn(async move {
                            check_watch(&state, &repositories, &watch).await;
                            drop(permit);
                        });
                    }
                }
                Err(error) => tracing::warn!(%error, "could not claim watches"),
            }
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    tracker.close();
    tracker.wait().await;
}

/// Checks one watch and feeds any push into `ingest`; records the outcome on the watch.
pub async fn check_watch(state: &AppState, repositories: &RepositoryCache, watch: &DueWatch) {
    let repository = match repositories.get(state, watch.repository_id).await {
        Ok(Some(repository)) => repository,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, watch = watch.id, "could not load repository");
            return;
        }
    };
    let result = match &repository.url.kind {
        RepoKind::GitHub { .. } => check_github(state, &repository, watch).await,
        RepoKind::Git => check_git(state, &repository, watch).await,
    };
    let (etag, error, outcome) = match result {
        Ok(Checked::Unchanged) => (watch.etag.clone(), None, "unchanged"),
        Ok(Checked::Fetched { etag }) => (etag, None, "fetched"),
        Err(error) => {
            tracing::debug!(watch = watch.id, repository = %repository.url.key, %error, "poll failed");
            (watch.etag.clone(), Some(error), "error")
        }
    };
    metrics::counter!("herald_poll_checks_total", "outcome" => outcome).increment(1);
    // The claim already stamped `last_checked_at`; write again only when something changed, so
    // that thousands of unchanged branches cost no writes.
    if etag != watch.etag || error != watch.last_error {
        let _ = sqlx::query("UPDATE watches SET etag = $1, last_error = $2 WHERE id = $3")
            .bind(etag)
            .bind(error)
            .bind(watch.id)
            .execute(state.db.writer())
            .await;
    }
}

enum Checked {
    /// Nothing new (a 304, or GitHub asked us to wait).
    Unchanged,
    /// The heads were read; `etag` validates them next time.
    Fetched { etag: Option<String> },
}

async fn check_github(
    state: &AppState,
    repository: &Repository,
    watch: &DueWatch,
) -> Result<Checked, String> {
    let RepoKind::GitHub { owner, name } = &repository.url.kind else {
        return Err("not a GitHub repository".into());
    };
    let (heads, etag) = match state
        .github
        .branch_heads(owner, name, &watch.pattern, watch.etag.as_deref())
        .await
    {
        Ok(Conditional::NotModified) => {
            return Ok(Checked::Unchanged);
        }
        Ok(Conditional::Modified { value, etag }) => (value, etag),
        Err(GithubError::RateLimited { .. }) => {
            return Ok(Checked::Unchanged);
        }
        Err(error) => return Err(error.to_string()),
    };
    for (branch, sha) in heads {
        let Some(before) = known_head(state, repository, &branch, &sha).await? else {
            continue;
        };
        let comparison = state
            .github
            .compare(owner, name, &before, &sha)
            .await
            .map_err(|e| e.to_string())?;
        if comparison.status == "behind"
            && head_came_from_webhook(state, repository, &branch, &before).await
        {
            // GitHub's API can lag its own webhooks: an older head after a webhook announced a
            // newer one is stale, not a push back.
            continue;
        }
        let event = PushEvent {
            ref_name: format!("refs/heads/{branch}"),
            before,
            after: sha,
            forced: matches!(comparison.status.as_str(), "diverged" | "behind"),
            created: false,
            deleted: false,
            commits: comparison.commits,
            changed_paths: comparison.files,
            pusher: None,
            compare: comparison.html_url,
            source: Source::GithubPoll,
        };
        super::ingest::accept_push(state, repository, event, None)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(Checked::Fetched { etag })
}

/// Whether the known head `sha` of a branch was announced by an inbound webhook.
async fn head_came_from_webhook(
    state: &AppState,
    repository: &Repository,
    branch: &str,
    sha: &str,
) -> bool {
    let source: Option<String> = sqlx::query_scalar(
        "SELECT source FROM push_events WHERE repository_id = $1 AND ref = $2 AND after_sha = $3 \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(repository.id)
    .bind(format!("refs/heads/{branch}"))
    .bind(sha)
    .fetch_optional(state.db.reader())
    .await
    .ok()
    .flatten();
    source.is_some_and(|s| s.ends_with("_webhook"))
}

/// The head herald knew before `sha`, if the branch moved; a branch seen for the first time gets
/// `sha` as its baseline and no notification.
async fn known_head(
    state: &AppState,
    repository: &Repository,
    branch: &str,
    sha: &str,
) -> Result<Option<String>, String> {
    match super::branch_head(&state.db, repository.id, branch).await {
        Ok(Some(known)) if known == sha => Ok(None),
        Ok(Some(known)) => Ok(Some(known)),
        Ok(None) => {
            set_baseline_head(&state.db, repository.id, branch, sha)
                .await
                .map_err(|e| e.to_string())?;
            Ok(None)
        }
        Err(error) => Err(error.to_string()),
    }
}

async fn check_git(
    state: &AppState,
    repository: &Repository,
    watch: &DueWatch,
) -> Result<Checked, String> {
    let heads = state
        .git
        .ls_remote(&repository.url.remote, &watch.pattern)
        .await
        .map_err(|e| e.to_string())?;
    for (branch, sha) in heads {
        let Some(before) = known_head(state, repository, &branch, &sha).await? else {
            continue;
        };
        let (commits, forced) = state
            .git
            .describe_push(
                repository.id,
                &repository.url.remote,
                &branch,
                &before,
                &sha,
            )
            .await
            .map_err(|e| e.to_string())?;
        let commits = commits
            .into_iter()
            .map(|mut c| {
                c.url = repository.url.commit_url(&c.id);
                c
            })
            .collect();
        let event = PushEvent {
            ref_name: format!("refs/heads/{branch}"),
            before: if before.is_empty() {
                ZERO_SHA.into()
            } else {
                before
            },
            after: sha,
            forced,
            created: false,
            deleted: false,
            commits,
            changed_paths: Vec::new(),
            pusher: None,
            compare: None,
            source: Source::GitPoll,
        };
        super::ingest::accept_push(state, repository, event, None)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(Checked::Fetched { etag: None })
}

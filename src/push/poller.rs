//! Polling: each watch (repository + branch pattern) is checked once per `HERALD_POLL_INTERVAL`,
//! at its own offset within the interval, so ten thousand watches make a steady stream of small
//! requests rather than a burst. Watches are claimed with an UPDATE (and `SKIP LOCKED` on
//! PostgreSQL), so with several nodes each check runs on one node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::PushState;
use crate::watch::event::{PushEvent, Source, ZERO_SHA};
use crate::watch::github::{Conditional, GithubError};
use crate::watch::repo::RepoKind;
use crate::watch::{DueWatch, Repository, claim_due_watches, find_repository, set_baseline_head};

const CLAIM_BATCH: usize = 256;
const CONCURRENT_CHECKS: usize = 64;
const TICK: Duration = Duration::from_millis(50);

/// Repositories never change once stored, so the poller keeps the ones it has loaded.
#[derive(Clone, Default)]
pub struct RepositoriesById(Arc<std::sync::RwLock<HashMap<i64, Repository>>>);

impl RepositoriesById {
    pub async fn get(&self, state: &PushState, id: i64) -> Result<Option<Repository>, sqlx::Error> {
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

pub async fn run(state: PushState, shutdown: CancellationToken) {
    let repositories = RepositoriesById::default();
    let permits = Arc::new(Semaphore::new(CONCURRENT_CHECKS));
    let tracker = TaskTracker::new();
    loop {
        let available = permits.available_permits().min(CLAIM_BATCH);
        let mut full = false;
        if available > 0 {
            // A node whose lease lapsed claims nothing: the others may have its checks by now.
            let claimed = if state.node.is_live() {
                claim_due_watches(
                    &state.db,
                    state.settings.poll_interval,
                    available,
                    state.node.id(),
                )
                .await
            } else {
                Ok(Vec::new())
            };
            match claimed {
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
pub async fn check_watch(state: &PushState, repositories: &RepositoriesById, watch: &DueWatch) {
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
    if (etag != watch.etag || error != watch.last_error)
        && let Err(cause) = crate::watch::record_check(&state.db, watch.id, etag, error).await
    {
        tracing::warn!(watch = watch.id, error = %cause, "could not record a poll's outcome");
    }
}

enum Checked {
    /// Nothing new (a 304, or GitHub asked us to wait).
    Unchanged,
    /// The heads were read; `etag` validates them next time.
    Fetched { etag: Option<String> },
}

async fn check_github(
    state: &PushState,
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
    state: &PushState,
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
    state: &PushState,
    repository: &Repository,
    branch: &str,
    sha: &str,
) -> Result<Option<String>, String> {
    match crate::watch::branch_head(&state.db, repository.id, branch).await {
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
    state: &PushState,
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

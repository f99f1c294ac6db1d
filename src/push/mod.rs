//! Noticing pushes and turning each into deliveries. A push reaches herald three ways — signed
//! inbound webhooks (`hooks`), GitHub REST polling and git-protocol polling (`poller`) — and
//! each becomes one `watch::event::PushEvent` handed to `ingest::accept_push`, which
//! de-duplicates it and queues one notification per subscriber and one delivery per project
//! hook, durably, before the push is acknowledged.
//!
//! **Boundary**: this module sits above `watch` (repositories, heads, the remote clients),
//! `contacts` and `projects` (whose subscribers and hooks hear of a push) and `outbox`; none
//! of them imports it.

pub mod hooks;
pub mod ingest;
pub mod poller;

use std::sync::Arc;

use crate::state::AppState;

/// The push path's state: pushes waiting for their group commit with the routing cache
/// (`ingest::IngestQueue`), and the repositories looked up by inbound webhooks.
#[derive(Clone)]
pub struct PushState {
    pub app: AppState,
    ingest: Arc<ingest::IngestQueue>,
    repositories: Arc<crate::watch::RepositoryCache>,
    /// Rung when a push held notifications for a digest (`digest::DigestState::wake`).
    digest_wake: Arc<tokio::sync::Notify>,
}

crate::feature_state!(PushState);

impl PushState {
    pub fn new(app: AppState, digest_wake: Arc<tokio::sync::Notify>) -> PushState {
        PushState {
            app,
            ingest: Arc::default(),
            repositories: Arc::default(),
            digest_wake,
        }
    }
}

/// What a page says about a push: where and what.
#[derive(Debug, Clone)]
pub struct PushSummary {
    pub id: i64,
    pub repository: String,
    /// The ref without `refs/heads/`.
    pub branch: String,
    pub after_sha: String,
    pub created_at: i64,
}

/// The pushes with these ids that exist (for the pages' notification lists).
pub async fn push_summaries(
    db: &crate::store::Db,
    ids: &[i64],
) -> Result<Vec<PushSummary>, crate::store::StoreError> {
    let mut found = Vec::with_capacity(ids.len());
    for &id in ids {
        let row: Option<(i64, String, String, String, i64)> = sqlx::query_as(
            "SELECT e.id, r.remote_url, e.ref, e.after_sha, e.created_at FROM push_events e \
             JOIN repositories r ON r.id = e.repository_id WHERE e.id = $1",
        )
        .bind(id)
        .fetch_optional(db.reader())
        .await?;
        if let Some((id, repository, git_ref, after_sha, created_at)) = row {
            found.push(PushSummary {
                id,
                repository,
                branch: git_ref
                    .strip_prefix("refs/heads/")
                    .unwrap_or(&git_ref)
                    .to_string(),
                after_sha,
                created_at,
            });
        }
    }
    Ok(found)
}

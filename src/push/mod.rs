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
}

crate::feature_state!(PushState);

impl PushState {
    pub fn new(app: AppState) -> PushState {
        PushState {
            app,
            ingest: Arc::default(),
            repositories: Arc::default(),
        }
    }
}

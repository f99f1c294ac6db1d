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

use sqlx::Row;

use super::Repository;
use super::event::{Commit, PushEvent};
use crate::ids::now_ms;
use crate::notify::render::{self, PushSummary};
use crate::outbox::{self, NewDelivery};
use crate::state::AppState;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    Accepted { event_id: i64, notifications: usize },
    Duplicate,
}

pub async fn accept_push(
    state: &AppState,
    repository: &Repository,
    mut event: PushEvent,
    inbound_delivery: Option<(&str, &str)>,
) -> Result<IngestOutcome, StoreError> {
    let mut tx = state.db.writer().begin().await?;

    if let Some((source, delivery_id)) = inbound_delivery {
        let inserted = sqlx::query(
            "INSERT INTO inbound_deliveries (source, delivery_id, received_at) VALUES ($1, $2, $3) \
             ON CONFLICT (source, delivery_id) DO NOTHING",
        )
        .bind(source)
        .bind(delivery_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(IngestOutcome::Duplicate);
        }
    }

    let branch = event.branch().to_string();
    let known_head: Option<String> =
        sqlx::query_scalar("SELECT sha FROM branch_heads WHERE repository_id = $1 AND branch = $2")
            .bind(repository.id)
            .bind(&branch)
            .fetch_optional(&mut *tx)
            .await?;
    if !event.deleted && known_head.as_deref() == Some(event.after.as_str()) {
        tx.commit().await?;
        return Ok(IngestOutcome::Duplicate);
    }
    if event.deleted
        && known_head.is_none()
        && event.commits.is_empty()
        && inbound_delivery.is_none()
    {
        tx.commit().await?;
        return Ok(IngestOutcome::Duplicate);
    }

    let mut fresh = Vec::with_capacity(event.commits.len());
    for commit in event.commits.drain(..) {
        let inserted = sqlx::query(
            "INSERT INTO seen_commits (repository_id, ref, sha) VALUES ($1, $2, $3) \
             ON CONFLICT (repository_id, ref, sha) DO NOTHING",
        )
        .bind(repository.id)
        .bind(&event.ref_name)
        .bind(&commit.id)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 1 {
            fresh.push(commit);
        }
    }
    event.commits = fresh;
    if event.commits.is_empty() && !event.forced && !event.created && !event.deleted {
        tx.commit().await?;
        return Ok(IngestOutcome::Duplicate);
    }

    let now = now_ms();
    if event.deleted {
        sqlx::query("DELETE FROM branch_heads WHERE repository_id = $1 AND branch = $2")
            .bind(repository.id)
            .bind(&branch)
            .execute(&mut *tx)
            .await?;
    } else {
        sqlx::query(
            "INSERT INTO branch_heads (repository_id, branch, sha, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (repository_id, branch) DO UPDATE SET sha = excluded.sha, updated_at = excluded.updated_at",
        )
        .bind(repository.id)
        .bind(&branch)
        .bind(&event.after)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    if event.compare.is_none() && !event.created && !event.deleted {
        event.compare = repository.url.compare_url(&event.before, &event.after);
    }

    let event_id = state.ids.next();
    let payload = serde_json::to_string(&event).map_err(|e| StoreError::Protocol(e.to_string()))?;
    sqlx::query(
        "INSERT INTO push_events (id, repository_id, ref, before_sha, after_sha, forced, source, \
         payload, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(event_id)
    .bind(repository.id)
    .bind(&event.ref_name)
    .bind(&event.before)
    .bind(&event.after)
    .bind(i64::from(event.forced))
    .bind(event.source.as_str())
    .bind(payload)
    .bind(now)
    .execute(&mut *tx)
    .await?;

    let subscribers = sqlx::query(
        "SELECT s.branch, s.paths, s.exclude_authors, c.id, c.channel, c.address \
         FROM subscriptions s JOIN contacts c ON c.id = s.contact_id \
         WHERE s.repository_id = $1 AND s.muted = 0 AND c.muted = 0 AND c.blocked = 0",
    )
    .bind(repository.id)
    .fetch_all(&mut *tx)
    .await?;
    let subscribers: Vec<Subscriber> = subscribers
        .iter()
        .map(|row| Subscriber {
            branch: row.get(0),
            paths: serde_json::from_str(&row.get::<String, _>(1)).unwrap_or_default(),
            exclude_authors: serde_json::from_str(&row.get::<String, _>(2)).unwrap_or_default(),
            contact_id: row.get(3),
            channel: row.get(4),
            address: row.get(5),
        })
        .collect();
    let mut deliveries = plan_notifications(
        &repository.url.display_name(),
        &event,
        event_id,
        &subscribers,
    );
    let notifications = deliveries.len();
    let webhooks = crate::projects::plan_webhook_deliveries(
        &mut tx,
        repository.id,
        &repository.url.remote,
        &event,
        event_id,
    )
    .await?;
    let webhook_deliveries = webhooks.len();
    deliveries.extend(webhooks);
    let queued = deliveries.len();
    let leased =
        outbox::enqueue_local_first(&mut tx, &state.ids, &state.local_queue, deliveries).await?;
    outbox::commit_and_dispatch(tx, &state.local_queue, &state.outbox_wake, queued, leased).await?;

    metrics::counter!("herald_push_events_total", "source" => event.source.as_str()).increment(1);
    tracing::info!(
        repository = %repository.url.key,
        branch = %branch,
        after = %event.after,
        commits = event.commits.len(),
        forced = event.forced,
        notifications,
        webhook_deliveries,
        source = event.source.as_str(),
        "push accepted"
    );
    Ok(IngestOutcome::Accepted {
        event_id,
        notifications,
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

//! Who of a repository's subscribers hears of a push, and what each is sent: one message per
//! contact, rendered once per channel and commit selection.

use std::collections::{HashMap, HashSet};

use crate::digest::{HeldItem, HeldPush, HoldRule};
use crate::notify::render::{self, PushSummary};
use crate::outbox::NewDelivery;
use crate::watch::event::{Commit, PushEvent};

/// A subscription joined with its contact, as the fan-out reads it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub branch: String,
    pub paths: Vec<String>,
    pub exclude_authors: Vec<String>,
    pub contact_id: i64,
    pub channel: String,
    pub address: String,
    /// When this subscriber's notifications may wait for a digest (a digest mode, the
    /// contact's quiet time); `None`, the common case, sends each at once.
    pub hold: Option<HoldRule>,
}

/// What a push causes for subscribers: deliveries queued now, and notifications held for a
/// digest.
#[derive(Debug, Default)]
pub struct Planned {
    pub deliveries: Vec<NewDelivery>,
    pub held: Vec<HeldItem>,
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
        || (crate::watch::repo::is_glob(&subscriber.branch)
            && crate::watch::subscription_glob(&subscriber.branch)
                .is_some_and(|m| m.is_match(event.branch())));
    if !branch_matches {
        return None;
    }
    let mut chosen: Vec<usize> = (0..event.commits.len()).collect();
    if !subscriber.exclude_authors.is_empty() {
        let excluded: Vec<_> = subscriber
            .exclude_authors
            .iter()
            .filter_map(|a| crate::watch::subscription_glob(&a.to_lowercase()))
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
            .filter_map(|p| crate::watch::subscription_glob(p))
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

/// One delivery per contact (a contact with several matching subscriptions is told once, as
/// its first matching subscription says), rendered once per channel and commit selection; or,
/// when that subscription's [`HoldRule`] says so at `now_ms` (the shared clock's), one item
/// held for the contact's digest instead.
pub fn plan_notifications(
    repository: &str,
    event: &PushEvent,
    event_id: i64,
    subscribers: &[Subscriber],
    now_ms: i64,
) -> Planned {
    let mut told: HashSet<i64> = HashSet::new();
    let mut rendered: HashMap<(String, Vec<usize>), String> = HashMap::new();
    let mut planned = Planned::default();
    for subscriber in subscribers {
        if told.contains(&subscriber.contact_id) {
            continue;
        }
        let Some(chosen) = commits_for(event, subscriber) else {
            continue;
        };
        told.insert(subscriber.contact_id);
        if let Some(due_at) = subscriber.hold.as_ref().and_then(|rule| rule.due(now_ms)) {
            let commits: Vec<&Commit> = chosen.iter().map(|&i| &event.commits[i]).collect();
            planned.held.push(HeldItem {
                contact_id: subscriber.contact_id,
                due_at,
                event_id,
                repository: repository.to_string(),
                branch: event.branch().to_string(),
                push: HeldPush::of(event, &commits),
            });
            continue;
        }
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
        planned.deliveries.push(NewDelivery {
            channel: subscriber.channel.clone(),
            destination: subscriber.address.clone(),
            payload,
            event_id: Some(event_id),
            contact_id: Some(subscriber.contact_id),
            webhook_id: None,
            event_type: None,
        });
    }
    planned
}

//! Digest subscriptions and quiet hours (SPEC §A, §E): a notification that a subscription
//! wants in a digest (`hourly`, `daily@HH:MM`), or that falls in its contact's quiet hours, is
//! not queued but held here, with the time its digest is due; the worker (`worker.rs`) sends
//! each contact one message listing everything held for it once that time comes.
//!
//! The push path decides with [`HoldRule::due`] and writes the held items with [`hold_into`]
//! into the push's own script, so a held notification is as durable as a queued one. The
//! common case — an instant subscription of a contact without quiet time — has no rule at all
//! and costs the push path one `Option` check. A scheduled announcement to a contact inside its
//! quiet time is held the same way ([`hold_announcements_into`], in the transaction that
//! records the schedule's run) and listed first in the contact's next digest.
//!
//! **Boundary**: this module owns `digest_items`. The settings that make a notification held
//! (a subscription's `digest` and `urgent`, a contact's `time_zone`, `quiet_hours`,
//! `quiet_weekends`) belong to `contacts`, which validates them with the types of
//! `schedule.rs`. Digests are queued through the outbox like every other message.

pub mod render;
pub mod schedule;
pub mod worker;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use schedule::{
    DEFAULT_TIME_ZONE, DigestMode, HoldRule, MinuteOfDay, QuietHours, parse_time_zone,
};

use crate::ids::IdGenerator;
use crate::notify::render::MAX_COMMIT_LINES;
use crate::state::AppState;
use crate::store::{self, ROWS_PER_STATEMENT, Script};
use crate::watch::event::{Commit, PushEvent};

/// The digest worker's state: the shared infrastructure and the wake-up the push path rings
/// when it holds something, so the worker looks again at what is due next.
#[derive(Clone)]
pub struct DigestState {
    pub app: AppState,
    pub wake: Arc<Notify>,
}

crate::feature_state!(DigestState);

impl DigestState {
    pub fn new(app: AppState) -> DigestState {
        DigestState {
            app,
            wake: Arc::new(Notify::new()),
        }
    }
}

/// One commit of a held push, as a digest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldCommit {
    pub sha: String,
    /// The first line of the message.
    pub title: String,
    pub author: String,
}

impl HeldCommit {
    pub fn short_sha(&self) -> &str {
        self.sha.get(..7).unwrap_or(&self.sha)
    }
}

/// What a digest needs of one push (stored as JSON in `digest_items.summary`): how many
/// commits the subscriber was told of, the newest of them (at most as many as a message lists
/// for one push), oldest first, and what kind of push it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldPush {
    pub total: usize,
    pub commits: Vec<HeldCommit>,
    #[serde(default)]
    pub forced: bool,
    #[serde(default)]
    pub created: bool,
    #[serde(default)]
    pub deleted: bool,
}

impl HeldPush {
    /// `commits` are the ones this subscriber is told of, oldest first.
    pub fn of(event: &PushEvent, commits: &[&Commit]) -> HeldPush {
        let skip = commits.len().saturating_sub(MAX_COMMIT_LINES);
        HeldPush {
            total: commits.len(),
            commits: commits[skip..]
                .iter()
                .map(|c| HeldCommit {
                    sha: c.id.clone(),
                    title: c.title().to_string(),
                    author: c.author.name.clone(),
                })
                .collect(),
            forced: event.forced,
            created: event.created,
            deleted: event.deleted,
        }
    }
}

/// A notification held for a contact's digest due at `due_at` (Unix ms).
#[derive(Debug, Clone)]
pub struct HeldItem {
    pub contact_id: i64,
    pub due_at: i64,
    pub event_id: i64,
    pub repository: String,
    pub branch: String,
    pub push: HeldPush,
}

/// Adds the statements that store `items` to `script`, which the caller commits with the push
/// that caused them.
pub fn hold_into(script: &mut Script, ids: &IdGenerator, items: &[HeldItem], now_ms: i64) {
    for chunk in items.chunks(ROWS_PER_STATEMENT / 2) {
        script.push(format!(
            "INSERT INTO digest_items (id, contact_id, due_at, event_id, repository, branch, \
             summary, created_at) VALUES {}",
            store::values_rows(chunk.len(), 8)
        ));
        for item in chunk {
            let summary = serde_json::to_string(&item.push).unwrap_or_else(|_| "{}".into());
            script
                .bind(ids.next())
                .bind(item.contact_id)
                .bind(item.due_at)
                .bind(item.event_id)
                .bind(item.repository.as_str())
                .bind(item.branch.as_str())
                .bind(summary)
                .bind(now_ms);
        }
    }
}

/// `digest_items.kind` of a held push.
pub const KIND_PUSH: &str = "push";
/// `digest_items.kind` of a held scheduled announcement.
pub const KIND_ANNOUNCEMENT: &str = "announcement";

/// What a digest needs of a held announcement (stored as JSON in `digest_items.summary`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldMessage {
    pub message: String,
}

/// A scheduled announcement or a team's morning message held for a contact's digest due at
/// `due_at` (Unix ms), because the contact was in its quiet time when it was sent.
#[derive(Debug, Clone)]
pub struct HeldAnnouncement {
    pub contact_id: i64,
    pub due_at: i64,
    /// What held it: the schedule run (`schedule_runs.id`), or the team whose morning message
    /// it is (`teams.id`).
    pub source_id: i64,
    pub message: String,
}

/// Adds the statements that store held announcements to `script`, which the caller commits
/// with the schedule run that held them.
pub fn hold_announcements_into(
    script: &mut Script,
    ids: &IdGenerator,
    items: &[HeldAnnouncement],
    now_ms: i64,
) {
    for chunk in items.chunks(ROWS_PER_STATEMENT / 2) {
        script.push(format!(
            "INSERT INTO digest_items (id, contact_id, due_at, event_id, repository, branch, \
             summary, created_at, kind) VALUES {}",
            store::values_rows(chunk.len(), 9)
        ));
        for item in chunk {
            let summary = serde_json::to_string(&HeldMessage {
                message: item.message.clone(),
            })
            .unwrap_or_else(|_| "{}".into());
            script
                .bind(ids.next())
                .bind(item.contact_id)
                .bind(item.due_at)
                .bind(item.source_id)
                .bind("")
                .bind("")
                .bind(summary)
                .bind(now_ms)
                .bind(KIND_ANNOUNCEMENT);
        }
    }
}

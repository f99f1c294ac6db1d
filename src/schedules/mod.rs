//! Scheduled announcements (area E): a cron expression in a time zone, a message, an audience
//! (a team, listed contacts, a repository's subscribers) and optionally the channels to use.
//! `api.rs` serves `/api/v1/schedules…`, `cron.rs` computes the instants, `scheduler.rs` fires
//! them.
//!
//! **Boundary**: this module is the only writer of `schedules` and `schedule_runs`. What is sent
//! goes through the delivery queue (`outbox`), in the transaction that records the run.
//!
//! **Invariant**: `next_due_at` is the first due time not yet handled (NULL while disabled).
//! Every change that can move it (create, edit, enable) computes it from the clock and wakes the
//! scheduler.

pub mod api;
pub mod cron;
pub mod scheduler;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::sync::Notify;

use crate::state::AppState;
use crate::store::{Db, StoreError};
use crate::teams::Recipient;

/// The schedules' runtime state: the shared infrastructure and the scheduler's wake-up.
#[derive(Clone)]
pub struct SchedulesState {
    pub app: AppState,
    /// Wakes this node's scheduler when a schedule is created or changed, so that it sleeps
    /// until the new earliest due time.
    pub wake: Arc<Notify>,
    /// Wakes the digest worker (`digest::DigestState::wake`) when a run holds announcements
    /// for contacts in their quiet time.
    pub digest_wake: Arc<Notify>,
}

crate::feature_state!(SchedulesState);

impl SchedulesState {
    pub fn new(app: AppState, digest_wake: Arc<Notify>) -> SchedulesState {
        SchedulesState {
            app,
            wake: Arc::new(Notify::new()),
            digest_wake,
        }
    }
}

/// Who hears a schedule, as stored (ids as numbers, the repository by its row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Audience {
    Team {
        team_id: i64,
    },
    Contacts {
        contact_ids: Vec<i64>,
    },
    Repository {
        repository_id: i64,
        key: String,
        branch: Option<String>,
    },
}

impl Audience {
    /// The audience as the API shows it: ids as strings, the repository by its key.
    pub fn to_wire(&self) -> serde_json::Value {
        serde_json::to_value(api::AudienceOut::from(self)).unwrap_or_default()
    }

    fn team_id(&self) -> Option<i64> {
        match self {
            Audience::Team { team_id } => Some(*team_id),
            _ => None,
        }
    }
}

/// A stored schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub id: i64,
    /// The account that made it; `None` for the operator's.
    pub owner_account_id: Option<i64>,
    pub cron: String,
    pub time_zone: String,
    pub message: String,
    pub audience: Audience,
    /// Only contacts on these channels are told; `None` = every channel.
    pub channels: Option<Vec<String>>,
    pub catch_up_limit_ms: i64,
    pub enabled: bool,
    pub urgent: bool,
    pub next_due_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A schedule's settings as checked by the API, for an insert or an update.
#[derive(Debug, Clone)]
pub struct ScheduleFields {
    pub cron: String,
    pub time_zone: String,
    pub message: String,
    pub audience: Audience,
    pub channels: Option<Vec<String>>,
    pub catch_up_limit_ms: i64,
    pub enabled: bool,
    pub urgent: bool,
}

const SCHEDULE_COLUMNS: &str = "id, owner_account_id, cron, time_zone, message, audience, channels, \
     catch_up_limit_ms, enabled, urgent, next_due_at, created_at, updated_at";

fn schedule_from_row(row: &sqlx::any::AnyRow) -> Result<Schedule, StoreError> {
    let id: i64 = row.get(0);
    let audience: Audience = serde_json::from_str(&row.get::<String, _>(5))
        .map_err(|e| StoreError::Protocol(format!("schedule {id}: stored audience: {e}")))?;
    let channels: Option<Vec<String>> = row
        .get::<Option<String>, _>(6)
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| StoreError::Protocol(format!("schedule {id}: stored channels: {e}")))?;
    Ok(Schedule {
        id,
        owner_account_id: row.get(1),
        cron: row.get(2),
        time_zone: row.get(3),
        message: row.get(4),
        audience,
        channels,
        catch_up_limit_ms: row.get(7),
        enabled: row.get::<i64, _>(8) != 0,
        urgent: row.get::<i64, _>(9) != 0,
        next_due_at: row.get(10),
        created_at: row.get(11),
        updated_at: row.get(12),
    })
}

fn to_json_text<T: Serialize>(value: &T) -> String {
    // Serializing plain enums, numbers and strings cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

pub async fn insert_schedule(
    db: &Db,
    id: i64,
    owner_account_id: Option<i64>,
    fields: &ScheduleFields,
    next_due_at: Option<i64>,
    now: i64,
) -> Result<Schedule, StoreError> {
    sqlx::query(
        "INSERT INTO schedules (id, owner_account_id, team_id, cron, time_zone, message, audience, \
         channels, catch_up_limit_ms, enabled, urgent, next_due_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
    )
    .bind(id)
    .bind(owner_account_id)
    .bind(fields.audience.team_id())
    .bind(&fields.cron)
    .bind(&fields.time_zone)
    .bind(&fields.message)
    .bind(to_json_text(&fields.audience))
    .bind(fields.channels.as_ref().map(to_json_text))
    .bind(fields.catch_up_limit_ms)
    .bind(i64::from(fields.enabled))
    .bind(i64::from(fields.urgent))
    .bind(next_due_at)
    .bind(now)
    .execute(db.writer())
    .await?;
    find_schedule(db, id).await?.ok_or(StoreError::RowNotFound)
}

/// Replaces a schedule's settings and its next due time.
pub async fn update_schedule(
    db: &Db,
    id: i64,
    fields: &ScheduleFields,
    next_due_at: Option<i64>,
    now: i64,
) -> Result<Option<Schedule>, StoreError> {
    sqlx::query(
        "UPDATE schedules SET team_id = $2, cron = $3, time_zone = $4, message = $5, audience = $6, \
         channels = $7, catch_up_limit_ms = $8, enabled = $9, urgent = $10, next_due_at = $11, \
         updated_at = $12 WHERE id = $1",
    )
    .bind(id)
    .bind(fields.audience.team_id())
    .bind(&fields.cron)
    .bind(&fields.time_zone)
    .bind(&fields.message)
    .bind(to_json_text(&fields.audience))
    .bind(fields.channels.as_ref().map(to_json_text))
    .bind(fields.catch_up_limit_ms)
    .bind(i64::from(fields.enabled))
    .bind(i64::from(fields.urgent))
    .bind(next_due_at)
    .bind(now)
    .execute(db.writer())
    .await?;
    find_schedule(db, id).await
}

pub async fn find_schedule(db: &Db, id: i64) -> Result<Option<Schedule>, StoreError> {
    let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.reader())
        .await?;
    row.as_ref().map(schedule_from_row).transpose()
}

/// Every schedule (the operator's view), or those an account made or that address the teams
/// it administers.
pub async fn list_schedules(db: &Db, account_id: Option<i64>) -> Result<Vec<Schedule>, StoreError> {
    let rows = match account_id {
        None => {
            let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY id");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(db.reader())
                .await?
        }
        Some(account_id) => {
            let sql = format!(
                "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE owner_account_id = $1 OR team_id IN \
                 (SELECT team_id FROM team_members WHERE account_id = $1 AND admin = 1) ORDER BY id"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(account_id)
                .fetch_all(db.reader())
                .await?
        }
    };
    rows.iter().map(schedule_from_row).collect()
}

pub async fn delete_schedule(db: &Db, id: i64) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM schedules WHERE id = $1")
        .bind(id)
        .execute(db.writer())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The next `count` instants of `spec` after `from_ms`, as RFC 3339 with the zone's offset:
/// what the preview endpoint answers and what the schedules page shows.
pub fn next_instants(spec: &cron::CronSpec, from_ms: i64, count: usize) -> Vec<String> {
    spec.upcoming(from_ms, count)
        .into_iter()
        .map(|t| spec.rfc3339(t))
        .collect()
}

/// When a schedule is first due after `now_ms`: `None` while it is disabled (or when its
/// expression never fires again).
pub fn first_due_at(spec: &cron::CronSpec, enabled: bool, now_ms: i64) -> Option<i64> {
    enabled.then(|| spec.next_after(now_ms, None)).flatten()
}

/// A watched repository's subscribers as an audience (for the operator only; the caller
/// checks that): `Ok(Err(reason))` when `repository` is not a repository URL or nobody is
/// subscribed to it. An empty branch means every branch.
pub async fn repository_audience(
    db: &Db,
    repository: &str,
    branch: Option<String>,
    allow_private_targets: bool,
) -> Result<Result<Audience, String>, StoreError> {
    let url = match crate::watch::repo::RepoUrl::parse(repository, allow_private_targets) {
        Ok(url) => url,
        Err(error) => return Ok(Err(format!("audience: repository: {error}"))),
    };
    let Some(found) = crate::watch::find_repository_by_key(db, &url.key).await? else {
        return Ok(Err(format!(
            "audience: nobody is subscribed to {repository:?} (it is not watched)"
        )));
    };
    let branch = branch
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty());
    Ok(Ok(Audience::Repository {
        repository_id: found.id,
        key: url.key,
        branch,
    }))
}

/// Whether an account may see and change a schedule: it made it, or it administers the team
/// the schedule is addressed to. (The operator may change every schedule.)
pub async fn account_may_manage(
    db: &Db,
    schedule: &Schedule,
    account_id: i64,
) -> Result<bool, StoreError> {
    if schedule.owner_account_id == Some(account_id) {
        return Ok(true);
    }
    match schedule.audience {
        Audience::Team { team_id } => {
            Ok(crate::teams::role_of(db, team_id, account_id).await? == crate::teams::Role::Admin)
        }
        _ => Ok(false),
    }
}

/// One run of a schedule: a due time fired (with whom it went to) or skipped as too late.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: i64,
    pub due_at: i64,
    /// `None` when the run was skipped.
    pub fired_at: Option<i64>,
    pub recipients: Vec<RunRecipient>,
}

/// Someone a run told, as its history stores it (JSON in `schedule_runs.recipients`): sent at
/// once, or held for the contact's digest because it was in its quiet time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecipient {
    #[serde(flatten)]
    pub recipient: Recipient,
    /// When held: the time (Unix ms) its digest is due. Runs recorded before this was kept
    /// have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_until: Option<i64>,
}

/// A schedule's runs, newest first.
pub async fn list_runs(db: &Db, schedule_id: i64, limit: i64) -> Result<Vec<Run>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, due_at, fired_at, recipients FROM schedule_runs WHERE schedule_id = $1 \
         ORDER BY due_at DESC LIMIT $2",
    )
    .bind(schedule_id)
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|row| {
            let id: i64 = row.get(0);
            Ok(Run {
                id,
                due_at: row.get(1),
                fired_at: row.get(2),
                recipients: serde_json::from_str(&row.get::<String, _>(3)).map_err(|e| {
                    StoreError::Protocol(format!("schedule run {id}: stored recipients: {e}"))
                })?,
            })
        })
        .collect()
}

/// A run as the API shows it.
pub fn run_json(run: &Run) -> serde_json::Value {
    serde_json::to_value(api::RunOut::from(run)).unwrap_or_default()
}

/// Deletes up to `{BATCH}` runs due before `$1` (Unix ms, on `AppState::clock`), oldest first;
/// history pruning (`retention`) runs it in paced batches. A pruned run cannot fire again: the
/// schedule's `next_due_at` moved past its due time when it was claimed.
pub const PRUNE_RUNS_SQL: &str = "DELETE FROM schedule_runs WHERE id IN \
     (SELECT id FROM schedule_runs WHERE due_at < $1 ORDER BY due_at LIMIT {BATCH})";

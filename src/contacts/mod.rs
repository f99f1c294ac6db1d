//! Contacts (somebody reachable on one channel) and their subscriptions to watched branches.
//! `subscribe` is the one way a subscription is made, whichever API or bot conversation asks.

pub mod api;
pub mod reference;

use serde::Serialize;
use sqlx::Row;

use crate::digest::{DigestMode, QuietHours};
use crate::ids::{IdGenerator, now_ms, rfc3339};
use crate::outbox::{AttemptObserver, AttemptOutcome, Verdict};
use crate::state::AppState;
use crate::store::{Db, Script, StoreError};
use crate::watch::github::{Conditional, GithubError};
use crate::watch::repo::{RepoKind, RepoUrl, RepoUrlError, is_glob, valid_branch_pattern};
use crate::watch::{Repository, ensure_watch, set_baseline_head, upsert_repository};

/// The channels a contact can be reached on.
pub const CHANNELS: &[&str] = &["telegram", "email", "kakao", "webex", "chat"];

/// A contact's address, checked for its channel.
pub fn validate_address(channel: &str, address: &str) -> Result<String, String> {
    let address = address.trim();
    if address.is_empty() {
        return Err("id는 비어 있으면 안됩니다. (the contact id must not be empty)".into());
    }
    if address.len() > 320 || address.chars().any(char::is_control) {
        return Err("the contact id is too long or contains control characters".into());
    }
    match channel {
        "telegram" => {
            let ok = address.parse::<i64>().is_ok()
                || (address.starts_with('@')
                    && address.len() > 1
                    && address[1..]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_'));
            if !ok {
                return Err(format!(
                    "{address:?} is not a Telegram chat id (a number or @channel)"
                ));
            }
        }
        "email" => {
            address
                .parse::<lettre::Address>()
                .map_err(|_| format!("{address:?} is not an e-mail address"))?;
        }
        "chat" => {
            address
                .parse::<i64>()
                .map_err(|_| format!("{address:?} is not an account id"))?;
        }
        "kakao" | "webex" => {}
        other => {
            return Err(format!(
                "unknown type {other:?} (expected one of: {})",
                CHANNELS.join(", ")
            ));
        }
    }
    Ok(address.to_string())
}

/// A chat on a messenger (or an e-mail address) herald can send to.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Contact {
    #[serde(with = "crate::ids::as_string")]
    #[schema(value_type = String, example = "7340032153862881280")]
    pub id: i64,
    /// `telegram`, `kakao`, `webex`, `email` or `chat`.
    pub channel: String,
    pub address: String,
    pub nick_name: String,
    pub muted: bool,
    /// The chat blocked the bot; nothing is sent to it.
    pub blocked: bool,
    /// RFC 3339.
    pub created_at: String,
    /// IANA zone of the contact's quiet hours and daily digests.
    pub time_zone: String,
    /// `HH:MM-HH:MM` in `time_zone`, when notifications wait for a digest.
    pub quiet_hours: Option<String>,
    /// Whether Saturdays and Sundays (in `time_zone`) are quiet all day.
    pub quiet_weekends: bool,
}

/// Links a contact to an account (inside the caller's transaction): from then on the contact's
/// chats count as the account's (`GET /api/v1/auth/contacts`).
pub async fn link_to_account(
    tx: &mut sqlx::AnyConnection,
    contact_id: i64,
    account_id: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE contacts SET account_id = $1 WHERE id = $2")
        .bind(account_id)
        .bind(contact_id)
        .execute(tx)
        .await?;
    Ok(())
}

/// Unlinks a contact from an account; `false` when it was not linked to that account.
pub async fn unlink_from_account(
    db: &Db,
    contact_id: i64,
    account_id: i64,
) -> Result<bool, StoreError> {
    let unlinked =
        sqlx::query("UPDATE contacts SET account_id = NULL WHERE id = $1 AND account_id = $2")
            .bind(contact_id)
            .bind(account_id)
            .execute(db.writer())
            .await?;
    Ok(unlinked.rows_affected() > 0)
}

const CONTACT_COLUMNS: &str = "id, channel, address, nick_name, muted, blocked, created_at, \
    time_zone, quiet_hours, quiet_weekends";

/// A contact from a row whose first columns are [`CONTACT_COLUMNS`].
pub fn contact_from_row(row: &sqlx::any::AnyRow) -> Contact {
    Contact {
        id: row.get(0),
        channel: row.get(1),
        address: row.get(2),
        nick_name: row.get(3),
        muted: row.get::<i64, _>(4) != 0,
        blocked: row.get::<i64, _>(5) != 0,
        created_at: rfc3339(row.get(6)),
        time_zone: row.get(7),
        quiet_hours: row.get(8),
        quiet_weekends: row.get::<i64, _>(9) != 0,
    }
}

/// The quiet time of those of `contact_ids` that have one, as the rule that holds a message
/// sent to them at once (a scheduled announcement): contacts without quiet hours or quiet
/// weekends are not in the map. Read inside the caller's transaction.
pub async fn quiet_rules(
    conn: &mut sqlx::AnyConnection,
    contact_ids: &[i64],
) -> Result<std::collections::HashMap<i64, crate::digest::HoldRule>, StoreError> {
    let mut rules = std::collections::HashMap::new();
    for chunk in contact_ids.chunks(crate::store::ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT id, time_zone, quiet_hours, quiet_weekends FROM contacts WHERE id IN ({}) \
             AND (quiet_hours IS NOT NULL OR quiet_weekends = 1)",
            crate::store::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let time_zone: String = row.get(1);
            let quiet_hours: Option<String> = row.get(2);
            if let Some(rule) = crate::digest::HoldRule::from_stored(
                "instant",
                false,
                &time_zone,
                quiet_hours.as_deref(),
                row.get::<i64, _>(3) != 0,
            ) {
                rules.insert(row.get::<i64, _>(0), rule);
            }
        }
    }
    Ok(rules)
}

/// Creates the contact or refreshes its nickname; a contact that had blocked herald and comes
/// back is unblocked.
pub async fn upsert_contact(
    db: &Db,
    ids: &IdGenerator,
    channel: &str,
    address: &str,
    nick_name: &str,
) -> Result<Contact, StoreError> {
    sqlx::query(
        "INSERT INTO contacts (id, channel, address, nick_name, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (channel, address) DO UPDATE SET nick_name = excluded.nick_name, blocked = 0",
    )
    .bind(ids.next())
    .bind(channel)
    .bind(address)
    .bind(nick_name)
    .bind(now_ms())
    .execute(db.writer())
    .await?;
    let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE channel = $1 AND address = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(channel)
        .bind(address)
        .fetch_one(db.writer())
        .await?;
    Ok(contact_from_row(&row))
}

pub async fn find_contact(db: &Db, id: i64) -> Result<Option<Contact>, StoreError> {
    let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(contact_from_row))
}

/// The contacts linked to an account (`bot::link`), oldest first.
pub async fn contacts_of_account(db: &Db, account_id: i64) -> Result<Vec<Contact>, StoreError> {
    let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE account_id = $1 ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(account_id)
        .fetch_all(db.reader())
        .await?;
    Ok(rows.iter().map(contact_from_row).collect())
}

pub async fn list_contacts(db: &Db) -> Result<Vec<Contact>, StoreError> {
    let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(db.reader())
        .await?;
    Ok(rows.iter().map(contact_from_row).collect())
}

/// A contact told about pushes to a repository's branch (or branches matching a glob).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Subscription {
    #[serde(with = "crate::ids::as_string")]
    #[schema(value_type = String, example = "7340032153862881280")]
    pub id: i64,
    #[serde(with = "crate::ids::as_string")]
    #[schema(value_type = String, example = "7340032153862881280")]
    pub contact_id: i64,
    pub repository: String,
    pub branch: String,
    pub paths: Vec<String>,
    pub exclude_authors: Vec<String>,
    pub muted: bool,
    pub created_at: String,
    /// `instant`, `hourly` or `daily@HH:MM` (`digest::DigestMode`).
    pub digest: String,
    /// Passes the contact's quiet hours.
    pub urgent: bool,
}

const SUBSCRIPTION_QUERY: &str = "SELECT s.id, s.contact_id, r.remote_url, s.branch, s.paths, \
    s.exclude_authors, s.muted, s.created_at, s.digest, s.urgent \
    FROM subscriptions s JOIN repositories r ON r.id = s.repository_id";

fn subscription_from_row(row: &sqlx::any::AnyRow) -> Subscription {
    Subscription {
        id: row.get(0),
        contact_id: row.get(1),
        repository: row.get(2),
        branch: row.get(3),
        paths: serde_json::from_str(&row.get::<String, _>(4)).unwrap_or_default(),
        exclude_authors: serde_json::from_str(&row.get::<String, _>(5)).unwrap_or_default(),
        muted: row.get::<i64, _>(6) != 0,
        created_at: rfc3339(row.get(7)),
        digest: row.get(8),
        urgent: row.get::<i64, _>(9) != 0,
    }
}

pub async fn find_subscription(db: &Db, id: i64) -> Result<Option<Subscription>, StoreError> {
    let sql = format!("{SUBSCRIPTION_QUERY} WHERE s.id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(subscription_from_row))
}

pub async fn list_subscriptions(
    db: &Db,
    contact_id: Option<i64>,
) -> Result<Vec<Subscription>, StoreError> {
    let rows = match contact_id {
        Some(contact_id) => {
            let sql = format!("{SUBSCRIPTION_QUERY} WHERE s.contact_id = $1 ORDER BY s.id");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(contact_id)
                .fetch_all(db.reader())
                .await?
        }
        None => {
            let sql = format!("{SUBSCRIPTION_QUERY} ORDER BY s.id");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(db.reader())
                .await?
        }
    };
    Ok(rows.iter().map(subscription_from_row).collect())
}

/// Optional filters of a subscription.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub paths: Vec<String>,
    pub exclude_authors: Vec<String>,
}

impl Filters {
    pub fn validate(&self) -> Result<(), String> {
        for (what, list) in [
            ("paths", &self.paths),
            ("exclude_authors", &self.exclude_authors),
        ] {
            if list.len() > 50 {
                return Err(format!("{what}: at most 50 entries"));
            }
            for item in list {
                if item.trim().is_empty() || item.len() > 200 {
                    return Err(format!("{what}: entries must be 1 to 200 characters"));
                }
                if crate::watch::subscription_glob(item).is_none() {
                    return Err(format!("{what}: {item:?} is not a valid glob"));
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("{0}")]
    Repository(#[from] RepoUrlError),
    #[error("{0}")]
    Invalid(String),
    #[error("저장소를 찾을 수 없습니다: {0} (repository not found)")]
    RepositoryNotFound(String),
    #[error("브랜치를 찾을 수 없습니다: {branch} in {repository} (branch not found)")]
    BranchNotFound { repository: String, branch: String },
    #[error("could not reach the repository: {0}")]
    Unreachable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads the current heads of `pattern` in the repository, proving it exists. An exact branch
/// must exist; a glob may match nothing yet.
pub async fn probe_heads(
    state: &AppState,
    url: &RepoUrl,
    pattern: &str,
) -> Result<Vec<(String, String)>, SubscribeError> {
    if !state.settings.allow_private_targets
        && url.kind == RepoKind::Git
        && let Some(parsed) = url::Url::parse(&url.remote)
            .ok()
            .filter(|u| u.host_str().is_some())
    {
        let host = parsed.host_str().unwrap_or_default();
        let port = parsed.port_or_known_default().unwrap_or(443);
        crate::watch::repo::check_public_host(host, port)
            .await
            .map_err(SubscribeError::Invalid)?;
    }
    let heads = match &url.kind {
        RepoKind::GitHub { owner, name } => {
            match state.github.branch_heads(owner, name, pattern, None).await {
                Ok(Conditional::Modified { value, .. }) => value,
                Ok(Conditional::NotModified) => Vec::new(),
                Err(GithubError::NotFound) if is_glob(pattern) => {
                    return Err(SubscribeError::RepositoryNotFound(url.display_name()));
                }
                Err(GithubError::NotFound) => {
                    // Tell a missing repository from a missing branch.
                    return match state.github.branch_heads(owner, name, "*", None).await {
                        Err(GithubError::NotFound) => {
                            Err(SubscribeError::RepositoryNotFound(url.display_name()))
                        }
                        _ => Err(SubscribeError::BranchNotFound {
                            repository: url.display_name(),
                            branch: pattern.to_string(),
                        }),
                    };
                }
                Err(error) => return Err(SubscribeError::Unreachable(error.to_string())),
            }
        }
        RepoKind::Git => state
            .git
            .ls_remote(&url.remote, pattern)
            .await
            .map_err(|e| SubscribeError::RepositoryNotFound(format!("{} ({e})", url.remote)))?,
    };
    if !is_glob(pattern) && heads.is_empty() {
        return Err(SubscribeError::BranchNotFound {
            repository: url.display_name(),
            branch: pattern.to_string(),
        });
    }
    Ok(heads)
}

/// Who a subscription is for: a known contact, or one to create (or refresh) on success.
pub enum ContactRef<'a> {
    Existing(&'a Contact),
    Upsert {
        channel: &'a str,
        address: &'a str,
        nick_name: &'a str,
    },
}

/// Subscribes a contact to a branch pattern of a repository: checks that the repository (and an
/// exact branch) exists, records the current heads as the starting point, and starts watching.
/// Subscribing twice is not an error; the existing subscription's filters are replaced.
pub async fn subscribe(
    state: &AppState,
    contact: ContactRef<'_>,
    repository: &str,
    branch: &str,
    filters: Filters,
) -> Result<(Repository, Subscription, Contact), SubscribeError> {
    let url = RepoUrl::parse(repository, state.settings.allow_private_targets)?;
    let branch = branch.trim();
    valid_branch_pattern(branch).map_err(SubscribeError::Invalid)?;
    if is_glob(branch) && crate::watch::subscription_glob(branch).is_none() {
        return Err(SubscribeError::Invalid(format!(
            "{branch:?} is not a valid branch glob"
        )));
    }
    filters.validate().map_err(SubscribeError::Invalid)?;
    let heads = probe_heads(state, &url, branch).await?;

    let db = &state.db;
    // The contact is made only once everything else is known to be valid.
    let contact = match contact {
        ContactRef::Existing(contact) => contact.clone(),
        ContactRef::Upsert {
            channel,
            address,
            nick_name,
        } => upsert_contact(db, &state.ids, channel, address, nick_name).await?,
    };
    let repository = upsert_repository(db, &state.ids, &url).await?;
    for (head_branch, sha) in &heads {
        set_baseline_head(db, repository.id, head_branch, sha).await?;
    }
    ensure_watch(
        db,
        &state.ids,
        repository.id,
        branch,
        state.settings.poll_interval.as_millis() as i64,
    )
    .await?;
    let to_json = |list: &Vec<String>| serde_json::to_string(list).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "INSERT INTO subscriptions (id, contact_id, repository_id, branch, paths, exclude_authors, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (contact_id, repository_id, branch) \
         DO UPDATE SET paths = excluded.paths, exclude_authors = excluded.exclude_authors",
    )
    .bind(state.ids.next())
    .bind(contact.id)
    .bind(repository.id)
    .bind(branch)
    .bind(to_json(&filters.paths))
    .bind(to_json(&filters.exclude_authors))
    .bind(now_ms())
    .execute(db.writer())
    .await?;
    let sql = format!(
        "{SUBSCRIPTION_QUERY} WHERE s.contact_id = $1 AND s.repository_id = $2 AND s.branch = $3"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(contact.id)
        .bind(repository.id)
        .bind(branch)
        .fetch_one(db.writer())
        .await?;
    Ok((repository, subscription_from_row(&row), contact))
}

/// Removes a subscription; a watch nobody needs any more stops being polled.
pub async fn unsubscribe(db: &Db, subscription_id: i64) -> Result<bool, StoreError> {
    let mut tx = db.writer().begin().await?;
    let found: Option<(i64, String)> =
        sqlx::query_as("SELECT repository_id, branch FROM subscriptions WHERE id = $1")
            .bind(subscription_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((repository_id, branch)) = found else {
        return Ok(false);
    };
    sqlx::query("DELETE FROM subscriptions WHERE id = $1")
        .bind(subscription_id)
        .execute(&mut *tx)
        .await?;
    crate::watch::drop_unneeded_watch(&mut tx, repository_id, &branch).await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn delete_contact(db: &Db, contact_id: i64) -> Result<bool, StoreError> {
    let subscriptions = list_subscriptions(db, Some(contact_id)).await?;
    for subscription in subscriptions {
        unsubscribe(db, subscription.id).await?;
    }
    let deleted = sqlx::query("DELETE FROM contacts WHERE id = $1")
        .bind(contact_id)
        .execute(db.writer())
        .await?;
    Ok(deleted.rows_affected() > 0)
}

pub async fn set_contact_muted(db: &Db, contact_id: i64, muted: bool) -> Result<bool, StoreError> {
    let updated = sqlx::query("UPDATE contacts SET muted = $1 WHERE id = $2")
        .bind(i64::from(muted))
        .bind(contact_id)
        .execute(db.writer())
        .await?;
    Ok(updated.rows_affected() > 0)
}

/// What a `PATCH` of a subscription changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionChange {
    pub muted: Option<bool>,
    pub filters: Option<Filters>,
    pub digest: Option<DigestMode>,
    pub urgent: Option<bool>,
}

pub async fn update_subscription(
    db: &Db,
    subscription_id: i64,
    change: SubscriptionChange,
) -> Result<bool, StoreError> {
    let SubscriptionChange {
        muted,
        filters,
        digest,
        urgent,
    } = change;
    let mut tx = db.writer().begin().await?;
    let mut found = sqlx::query("SELECT 1 FROM subscriptions WHERE id = $1")
        .bind(subscription_id)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    if found {
        if let Some(muted) = muted {
            sqlx::query("UPDATE subscriptions SET muted = $1 WHERE id = $2")
                .bind(i64::from(muted))
                .bind(subscription_id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(filters) = filters {
            let to_json =
                |list: &Vec<String>| serde_json::to_string(list).unwrap_or_else(|_| "[]".into());
            sqlx::query("UPDATE subscriptions SET paths = $1, exclude_authors = $2 WHERE id = $3")
                .bind(to_json(&filters.paths))
                .bind(to_json(&filters.exclude_authors))
                .bind(subscription_id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(digest) = digest {
            sqlx::query("UPDATE subscriptions SET digest = $1 WHERE id = $2")
                .bind(digest.to_string())
                .bind(subscription_id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(urgent) = urgent {
            sqlx::query("UPDATE subscriptions SET urgent = $1 WHERE id = $2")
                .bind(i64::from(urgent))
                .bind(subscription_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    } else {
        found = false;
    }
    Ok(found)
}

/// What a `PATCH` of a contact's quiet time changes; `None` leaves a field as it is, and
/// `quiet_hours: Some(None)` removes the quiet hours.
#[derive(Debug, Clone, Default)]
pub struct QuietTimeChange {
    pub time_zone: Option<chrono_tz::Tz>,
    pub quiet_hours: Option<Option<QuietHours>>,
    pub quiet_weekends: Option<bool>,
}

/// Sets a contact's zone and quiet time in one statement (values validated by their types).
/// Returns whether the contact exists.
pub async fn set_quiet_time(
    db: &Db,
    contact_id: i64,
    change: QuietTimeChange,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(
        "UPDATE contacts SET time_zone = COALESCE($1, time_zone), \
         quiet_hours = CASE WHEN $2 = 1 THEN $3 ELSE quiet_hours END, \
         quiet_weekends = COALESCE($4, quiet_weekends) WHERE id = $5",
    )
    .bind(change.time_zone.map(|zone| zone.name().to_string()))
    .bind(i64::from(change.quiet_hours.is_some()))
    .bind(change.quiet_hours.flatten().map(|quiet| quiet.to_string()))
    .bind(change.quiet_weekends.map(i64::from))
    .bind(contact_id)
    .execute(db.writer())
    .await?;
    Ok(updated.rows_affected() > 0)
}

/// The contact blocked the bot or left the conversation (a platform said so): nothing more is
/// sent to it, including what is already queued, until it writes again or re-adds the bot.
/// Returns whether such a contact exists.
pub async fn block_contact(db: &Db, channel: &str, address: &str) -> Result<bool, StoreError> {
    let mut tx = db.writer().begin().await?;
    let id: Option<i64> = sqlx::query_scalar(
        "UPDATE contacts SET blocked = 1 WHERE channel = $1 AND address = $2 RETURNING id",
    )
    .bind(channel)
    .bind(address)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(id) = id {
        crate::outbox::cancel_for_contact(&mut tx, id).await?;
    }
    tx.commit().await?;
    Ok(id.is_some())
}

/// Adds to `script` the marks of contacts that a platform said are gone (a Telegram chat that
/// blocked the bot): nothing new is queued for them until they write again.
pub fn mark_blocked_into(script: &mut Script, contact_ids: &[i64]) {
    for id in contact_ids {
        script
            .push("UPDATE contacts SET blocked = 1 WHERE id = $1")
            .bind(*id);
    }
}

/// Marks the contacts whose deliveries met [`Verdict::Gone`], in the delivery worker's batch
/// of attempt records (given to it at start-up; `contacts` owns the table).
pub struct GoneContacts;

impl AttemptObserver for GoneContacts {
    fn add_to_batch(&self, script: &mut Script, outcomes: &[AttemptOutcome]) -> bool {
        let mut gone: Vec<i64> = Vec::new();
        for outcome in outcomes {
            if outcome.verdict == Verdict::Gone
                && let Some(contact_id) = outcome.contact_id
                && !gone.contains(&contact_id)
            {
                gone.push(contact_id);
            }
        }
        mark_blocked_into(script, &gone);
        false
    }
}

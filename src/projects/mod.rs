//! Area B: projects (`owner/name`, pointing at a repository and a branch pattern) and their
//! outgoing webhooks. A push event of the project's repository becomes one delivery per active
//! hook in the shared outbox (`channel = 'webhook'`), queued in the same transaction as the event.

pub mod api;
pub mod health;
pub mod pages;
pub mod payload;
pub mod signing;

use serde::Serialize;
use sqlx::Row;

use crate::ids::{IdGenerator, now_ms, rfc3339};
use crate::outbox::NewDelivery;
use crate::store::{Db, StoreError, Value};
use crate::watch::event::PushEvent;
use crate::watch::repo::is_glob;

/// `owner` and `name` of a project: letters, digits, `-`, `_`, `.`, 1 to 100 characters.
pub fn valid_slug(what: &str, value: &str) -> Result<String, String> {
    let value = value.trim();
    let ok = !value.is_empty()
        && value.len() <= 100
        && value != "."
        && value != ".."
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!("{what}: 1 to 100 letters, digits, '-', '_' or '.'"))
    }
}

/// A payload URL: http(s), at most 2000 bytes, and — unless private targets are allowed — not a
/// loopback, private or otherwise reserved address (checked again after DNS at send time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadUrl(String);

impl PayloadUrl {
    pub const MAX_BYTES: usize = 2000;

    pub async fn parse(raw: &str, allow_private: bool) -> Result<PayloadUrl, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("payload_url: must not be empty".into());
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(format!(
                "payload_url: at most {} bytes (got {})",
                Self::MAX_BYTES,
                raw.len()
            ));
        }
        let url = url::Url::parse(raw).map_err(|e| format!("payload_url: not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "payload_url: must be http or https, not {}",
                url.scheme()
            ));
        }
        let host = url
            .host_str()
            .ok_or("payload_url: has no host")?
            .to_string();
        if !url.username().is_empty() || url.password().is_some() {
            return Err("payload_url: must not carry credentials".into());
        }
        if !allow_private {
            if let Some(parsed_host) = url.host()
                && let Err(refused) = crate::netguard::refuse_literal(&parsed_host)
            {
                return Err(format!("payload_url: {refused}"));
            }
            // A name that does not resolve yet is accepted: every send resolves it again and
            // refuses private answers then. A name that resolves inside the network is not.
            let port = url.port_or_known_default().unwrap_or(443);
            if let Err(refused @ crate::netguard::Refused::NotPublic(_)) =
                crate::netguard::resolve_public(&host, port).await
            {
                return Err(format!("payload_url: {refused}"));
            }
        }
        Ok(PayloadUrl(url.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A webhook secret: at most 250 bytes; none given means a generated `whsec_` secret.
pub fn webhook_secret(raw: Option<&str>) -> Result<(String, bool), String> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok((signing::generate_secret(), true)),
        Some(secret) if secret.len() > 250 => {
            Err(format!("secret: at most 250 bytes (got {})", secret.len()))
        }
        Some(secret) if secret.chars().any(char::is_control) => {
            Err("secret: must not contain control characters".into())
        }
        Some(secret) => Ok((secret.to_string(), false)),
    }
}

/// A repository's branches whose pushes go to the project's webhooks.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Project {
    #[serde(with = "crate::ids::as_string")]
    #[schema(value_type = String, example = "7340032153862881280")]
    pub id: i64,
    /// The owning account's name.
    pub owner: String,
    pub name: String,
    /// The repository's remote URL.
    pub repository: String,
    /// A branch name or a glob.
    pub branches: String,
    #[serde(skip)]
    pub repository_id: i64,
    #[serde(skip)]
    pub web_url: Option<String>,
    /// The account that manages it: the account named `owner` when the project was made by
    /// it or for it, or that the operator handed it to (`api::projects_claim`). `None`: the
    /// operator's alone, whoever registers the owner's name later.
    #[serde(skip)]
    pub owner_account: Option<i64>,
}

impl Project {
    /// Whether `actor` may see and manage this project: the operator always, an account only
    /// when the project is its own (not merely named after it).
    pub fn managed_by(&self, actor: &crate::accounts::auth::Actor) -> bool {
        match actor {
            crate::accounts::auth::Actor::Operator => true,
            crate::accounts::auth::Actor::Account(account) => {
                self.owner_account == Some(account.id) && self.owner == account.name
            }
        }
    }
}

const PROJECT_QUERY: &str = "SELECT p.id, p.owner, p.name, r.remote_url, p.branches, p.repository_id, r.web_url, \
    p.owner_account_id FROM projects p JOIN repositories r ON r.id = p.repository_id";

fn project_from_row(row: &sqlx::any::AnyRow) -> Project {
    Project {
        id: row.get(0),
        owner: row.get(1),
        name: row.get(2),
        repository: row.get(3),
        branches: row.get(4),
        repository_id: row.get(5),
        web_url: row.get(6),
        owner_account: row.get(7),
    }
}

pub async fn find_project(db: &Db, owner: &str, name: &str) -> Result<Option<Project>, StoreError> {
    let sql = format!("{PROJECT_QUERY} WHERE p.owner = $1 AND p.name = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(owner)
        .bind(name)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(project_from_row))
}

/// The projects an account manages ([`Project::owner_account`]).
pub async fn projects_of_account(db: &Db, account_id: i64) -> Result<Vec<Project>, StoreError> {
    let sql = format!("{PROJECT_QUERY} WHERE p.owner_account_id = $1 ORDER BY p.name");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(account_id)
        .fetch_all(db.reader())
        .await?;
    Ok(rows.iter().map(project_from_row).collect())
}

pub async fn list_projects(db: &Db) -> Result<Vec<Project>, StoreError> {
    let sql = format!("{PROJECT_QUERY} ORDER BY p.id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(db.reader())
        .await?;
    Ok(rows.iter().map(project_from_row).collect())
}

/// A webhook as shown to its owner; the secret is never part of it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Webhook {
    #[serde(with = "crate::ids::as_string")]
    #[schema(value_type = String, example = "7340032153862881280")]
    pub id: i64,
    pub payload_url: String,
    /// `false` once disabled (by its owner, a 410, or failing for days).
    pub active: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    pub rate_per_second: Option<i64>,
    pub max_concurrency: i64,
    pub created_at: String,
    #[serde(skip)]
    pub project_id: i64,
    /// When its current failure streak began (Unix ms; none: its last delivery went well).
    #[serde(skip)]
    pub failing_since: Option<i64>,
}

const WEBHOOK_COLUMNS: &str = "id, payload_url, active, disabled_reason, rate_per_second, max_concurrency, created_at, project_id, failing_since";

fn webhook_from_row(row: &sqlx::any::AnyRow) -> Webhook {
    Webhook {
        id: row.get(0),
        payload_url: row.get(1),
        active: row.get::<i64, _>(2) != 0,
        disabled_reason: row.get(3),
        rate_per_second: row.get(4),
        max_concurrency: row.get(5),
        created_at: rfc3339(row.get(6)),
        project_id: row.get(7),
        failing_since: row.get(8),
    }
}

pub async fn list_webhooks(db: &Db, project_id: i64) -> Result<Vec<Webhook>, StoreError> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE project_id = $1 ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .fetch_all(db.reader())
        .await?;
    Ok(rows.iter().map(webhook_from_row).collect())
}

pub async fn find_webhook(
    db: &Db,
    project_id: i64,
    id: i64,
) -> Result<Option<Webhook>, StoreError> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE project_id = $1 AND id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .bind(id)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(webhook_from_row))
}

/// Everything the sender needs to know about a hook.
#[derive(Debug, Clone)]
pub struct HookTarget {
    pub id: i64,
    pub payload_url: String,
    pub secret: String,
    pub active: bool,
    pub rate_per_second: Option<i64>,
    pub max_concurrency: i64,
}

pub async fn hook_target(db: &Db, id: i64) -> Result<Option<HookTarget>, StoreError> {
    Ok(hook_targets(db, &[id]).await?.pop())
}

/// The settings of these hooks (those that still exist), read in statements of up to 64 ids.
pub async fn hook_targets(db: &Db, ids: &[i64]) -> Result<Vec<HookTarget>, StoreError> {
    let mut targets = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(64) {
        let sql = format!(
            "SELECT id, payload_url, secret, active, rate_per_second, max_concurrency FROM webhooks \
             WHERE id IN ({})",
            crate::store::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query_as::<_, (i64, String, String, i64, Option<i64>, i64)>(
            sqlx::AssertSqlSafe(sql),
        );
        for id in chunk {
            query = query.bind(*id);
        }
        targets.extend(query.fetch_all(db.reader()).await?.into_iter().map(
            |(id, payload_url, secret, active, rate_per_second, max_concurrency)| HookTarget {
                id,
                payload_url,
                secret,
                active: active != 0,
                rate_per_second,
                max_concurrency,
            },
        ));
    }
    Ok(targets)
}

/// Sends in flight to one hook at once unless the hook says otherwise.
pub const DEFAULT_MAX_CONCURRENCY: i64 = 8;

/// Creates a hook and queues its `ping` delivery in one transaction.
pub async fn create_webhook(
    db: &Db,
    ids: &IdGenerator,
    project: &Project,
    url: &PayloadUrl,
    secret: &str,
    rate_per_second: Option<i64>,
    max_concurrency: Option<i64>,
) -> Result<Webhook, StoreError> {
    let id = ids.next();
    let mut tx = db.writer().begin().await?;
    sqlx::query(
        "INSERT INTO webhooks (id, project_id, payload_url, secret, rate_per_second, max_concurrency, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(project.id)
    .bind(url.as_str())
    .bind(secret)
    .bind(rate_per_second)
    .bind(max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY))
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    let ping = payload::ping(project, id, url.as_str());
    crate::outbox::enqueue(
        &mut tx,
        ids,
        &[NewDelivery {
            channel: "webhook".into(),
            destination: id.to_string(),
            payload: ping.to_string(),
            event_id: None,
            contact_id: None,
            webhook_id: Some(id),
            event_type: Some("ping".into()),
        }],
    )
    .await?;
    tx.commit().await?;
    find_webhook(db, project.id, id)
        .await?
        .ok_or(StoreError::RowNotFound)
}

/// Queues a `ping` to an existing hook ("send a test ping"), as the one sent when it was
/// created. Returns the delivery's id.
pub async fn send_ping(
    db: &Db,
    ids: &IdGenerator,
    project: &Project,
    hook: &Webhook,
) -> Result<i64, StoreError> {
    let ping = payload::ping(project, hook.id, &hook.payload_url);
    let mut conn = db.writer().acquire().await?;
    let created = crate::outbox::enqueue(
        &mut conn,
        ids,
        &[NewDelivery {
            channel: "webhook".into(),
            destination: hook.id.to_string(),
            payload: ping.to_string(),
            event_id: None,
            contact_id: None,
            webhook_id: Some(hook.id),
            event_type: Some("ping".into()),
        }],
    )
    .await?;
    created.first().copied().ok_or(StoreError::RowNotFound)
}

/// Deletes a hook; its deliveries that were still waiting are cancelled, the log is kept.
///
/// The deliveries are cancelled before the hook's row is deleted: an attempt being recorded
/// locks its delivery and then its hook (a failure streak), so taking them in the other order
/// here deadlocked with a send in flight on PostgreSQL.
pub async fn delete_webhook(db: &Db, project_id: i64, id: i64) -> Result<bool, StoreError> {
    let mut tx = db.writer().begin().await?;
    let ours: Option<i64> =
        sqlx::query_scalar("SELECT id FROM webhooks WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    if ours.is_none() {
        return Ok(false);
    }
    crate::outbox::cancel_for_webhook(&mut tx, id).await?;
    let deleted = sqlx::query("DELETE FROM webhooks WHERE project_id = $1 AND id = $2")
        .bind(project_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(deleted.rows_affected() > 0)
}

/// An active hook of a project, as push fan-out reads it.
#[derive(Debug, Clone)]
pub struct ProjectHook {
    pub hook_id: i64,
    pub project: Project,
}

/// The reads that find the active hooks of every project of these repositories, ordered by
/// project and hook (for `push::ingest`, which sends them with its other reads before a
/// batch's writes; one query for a batch of pushes). Their rows go to [`hook_targets_from`].
pub fn hook_target_reads(repositories: &[(i64, &str)]) -> Vec<(String, Vec<Value>)> {
    repositories
        .chunks(64)
        .map(|chunk| {
            let list = crate::store::placeholders(1, chunk.len());
            let sql = format!(
                "SELECT w.id, p.id, p.owner, p.name, p.branches, r.web_url, p.repository_id FROM webhooks w \
                 JOIN projects p ON p.id = w.project_id JOIN repositories r ON r.id = p.repository_id \
                 WHERE p.repository_id IN ({list}) AND w.active = 1 ORDER BY p.id, w.id"
            );
            (sql, chunk.iter().map(|(id, _)| Value::from(*id)).collect())
        })
        .collect()
}

/// The hooks found by [`hook_target_reads`].
pub fn hook_targets_from(
    rows: impl IntoIterator<Item = crate::store::Row>,
    repositories: &[(i64, &str)],
) -> Vec<ProjectHook> {
    rows.into_iter()
        .map(|row| {
            let repository_id: i64 = row.get(6);
            let remote = repositories
                .iter()
                .find(|(id, _)| *id == repository_id)
                .map_or("", |(_, remote)| remote);
            ProjectHook {
                hook_id: row.get(0),
                project: Project {
                    id: row.get(1),
                    owner: row.get(2),
                    name: row.get(3),
                    branches: row.get(4),
                    web_url: row.get(5),
                    repository: remote.to_string(),
                    repository_id,
                    // Who manages it does not matter to a payload.
                    owner_account: None,
                },
            }
        })
        .collect()
}

/// One delivery per hook (of `targets`) of this event's repository whose project's branch
/// pattern matches the pushed branch; the payload is rendered once per project.
pub fn plan_webhook_deliveries(
    targets: &[ProjectHook],
    repository_id: i64,
    event: &PushEvent,
    event_id: i64,
) -> Vec<NewDelivery> {
    let mut deliveries = Vec::new();
    let mut body_for_project: Option<(i64, String)> = None;
    for ProjectHook { hook_id, project } in targets
        .iter()
        .filter(|t| t.project.repository_id == repository_id)
    {
        let matches = project.branches == event.branch()
            || (is_glob(&project.branches)
                && crate::watch::subscription_glob(&project.branches)
                    .is_some_and(|m| m.is_match(event.branch())));
        if !matches {
            continue;
        }
        let body = match &body_for_project {
            Some((id, body)) if *id == project.id => body.clone(),
            _ => {
                let body = payload::push(project, event);
                body_for_project = Some((project.id, body.clone()));
                body
            }
        };
        deliveries.push(NewDelivery {
            channel: "webhook".into(),
            destination: hook_id.to_string(),
            payload: body,
            event_id: Some(event_id),
            contact_id: None,
            webhook_id: Some(*hook_id),
            event_type: Some("push".into()),
        });
    }
    deliveries
}

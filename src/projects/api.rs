//! The projects and webhooks JSON API under `/api/v1/projects`, with the delivery log:
//! list deliveries with their attempts, redeliver one, recover every failure since a time.
//! Until accounts exist, the operator token manages every project.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;

use super::{
    PayloadUrl, Project, Webhook, create_webhook, delete_webhook, find_project, find_webhook,
    list_projects, list_webhooks, valid_slug, webhook_secret,
};
use crate::accounts::auth::Actor;
use crate::contacts::probe_heads;
use crate::http::error::{ApiError, ApiJson};
use crate::ids::{now_ms, rfc3339};
use crate::outbox::Redelivery;
use crate::state::AppState;
use crate::watch::repo::{RepoKind, RepoUrl, is_glob, valid_branch_pattern};
use crate::watch::{ensure_watch, set_baseline_head, upsert_repository};

pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/projects", get(projects_list).post(projects_create))
        .route(
            "/api/v1/projects/{owner}/{project}",
            get(projects_get).delete(projects_delete),
        )
        .route(
            "/api/v1/projects/{owner}/{project}/webhooks",
            get(hooks_list).post(hooks_create),
        )
        .route(
            "/api/v1/projects/{owner}/{project}/webhooks/{id}",
            get(hooks_get).patch(hooks_update).delete(hooks_delete),
        )
        .route(
            "/api/v1/projects/{owner}/{project}/webhooks/{id}/deliveries",
            get(deliveries_list),
        )
        .route(
            "/api/v1/projects/{owner}/{project}/webhooks/{id}/deliveries/{delivery_id}/redeliver",
            post(redeliver),
        )
        .route(
            "/api/v1/projects/{owner}/{project}/webhooks/{id}/recover",
            post(recover),
        )
        .with_state(state)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectIn {
    /// Defaults to the calling account's name.
    owner: Option<String>,
    name: String,
    repository: String,
    #[serde(default)]
    branches: Option<String>,
}

async fn projects_list(
    actor: Actor,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let projects: Vec<Project> = list_projects(&state.db)
        .await?
        .into_iter()
        .filter(|p| actor.may_manage(&p.owner))
        .collect();
    Ok(Json(json!({"projects": projects})))
}

/// Creates a project: the repository must exist; the branch pattern defaults to its default
/// branch; the repository is watched from now on.
pub async fn create_project(
    state: &AppState,
    owner: &str,
    name: &str,
    repository: &str,
    branches: Option<&str>,
) -> Result<Project, ApiError> {
    let owner = valid_slug("owner", owner).map_err(ApiError::Validation)?;
    let name = valid_slug("name", name).map_err(ApiError::Validation)?;
    let url = RepoUrl::parse(repository, state.settings.allow_private_targets)
        .map_err(|e| ApiError::Validation(format!("repository: {e}")))?;
    if find_project(&state.db, &owner, &name).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "project {owner}/{name} already exists"
        )));
    }
    let branches = match branches.map(str::trim).filter(|b| !b.is_empty()) {
        Some(pattern) => pattern.to_string(),
        None => {
            let found = match &url.kind {
                RepoKind::GitHub { owner, name } => {
                    state.github.default_branch(owner, name).await.ok()
                }
                RepoKind::Git => state.git.default_branch(&url.remote).await.ok().flatten(),
            };
            found.ok_or_else(|| {
                ApiError::Validation(
                    "branches: the repository's default branch is unknown; name one".into(),
                )
            })?
        }
    };
    valid_branch_pattern(&branches).map_err(|e| ApiError::Validation(format!("branches: {e}")))?;
    if is_glob(&branches) && crate::watch::subscription_glob(&branches).is_none() {
        return Err(ApiError::Validation(format!(
            "branches: {branches:?} is not a valid glob"
        )));
    }
    let heads = probe_heads(state, &url, &branches).await?;
    let repository = upsert_repository(&state.db, &state.ids, &url).await?;
    for (branch, sha) in &heads {
        set_baseline_head(&state.db, repository.id, branch, sha).await?;
    }
    ensure_watch(
        &state.db,
        &state.ids,
        repository.id,
        &branches,
        state.settings.poll_interval.as_millis() as i64,
    )
    .await?;
    sqlx::query(
        "INSERT INTO projects (id, owner, name, repository_id, branches, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(state.ids.next())
    .bind(&owner)
    .bind(&name)
    .bind(repository.id)
    .bind(&branches)
    .bind(now_ms())
    .execute(state.db.writer())
    .await
    .map_err(|e| {
        if crate::store::is_unique_violation(&e) {
            ApiError::Conflict(format!("project {owner}/{name} already exists"))
        } else {
            e.into()
        }
    })?;
    find_project(&state.db, &owner, &name)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("project vanished after insert")))
}

async fn projects_create(
    actor: Actor,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<ProjectIn>,
) -> Result<(StatusCode, Json<Project>), ApiError> {
    let owner = match (&actor, input.owner) {
        (_, Some(owner)) => owner,
        (Actor::Account(account), None) => account.name.clone(),
        (Actor::Operator, None) => return Err(ApiError::Validation("owner: required".into())),
    };
    if !actor.may_manage(owner.trim()) {
        return Err(ApiError::Forbidden(
            "an account may only create projects it owns".into(),
        ));
    }
    let input = ProjectIn {
        owner: Some(owner),
        ..input
    };
    let project = create_project(
        &state,
        input.owner.as_deref().unwrap_or_default(),
        &input.name,
        &input.repository,
        input.branches.as_deref(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(project)))
}

/// The project, or 404 for anyone, whether it does not exist or is not theirs.
pub async fn load_project(
    state: &AppState,
    actor: &Actor,
    owner: &str,
    name: &str,
) -> Result<Project, ApiError> {
    find_project(&state.db, owner, name)
        .await?
        .filter(|p| actor.may_manage(&p.owner))
        .ok_or_else(|| ApiError::NotFound(format!("no project {owner}/{name}")))
}

async fn projects_get(
    actor: Actor,
    State(state): State<AppState>,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Json<Project>, ApiError> {
    Ok(Json(load_project(&state, &actor, &owner, &name).await?))
}

async fn projects_delete(
    actor: Actor,
    State(state): State<AppState>,
    Path((owner, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let project = load_project(&state, &actor, &owner, &name).await?;
    for hook in list_webhooks(&state.db, project.id).await? {
        delete_webhook(&state.db, project.id, hook.id).await?;
    }
    sqlx::query("DELETE FROM projects WHERE id = $1")
        .bind(project.id)
        .execute(state.db.writer())
        .await?;
    // Stop polling what nobody needs any more.
    let mut conn = state.db.writer().acquire().await?;
    crate::watch::drop_unneeded_watch(&mut conn, project.repository_id, &project.branches).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn hooks_list(
    actor: Actor,
    State(state): State<AppState>,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = load_project(&state, &actor, &owner, &name).await?;
    Ok(Json(
        json!({"webhooks": list_webhooks(&state.db, project.id).await?}),
    ))
}

/// What creating a hook accepts, from JSON or a form; both spellings of the URL field.
#[derive(Deserialize, Default)]
pub struct HookIn {
    #[serde(alias = "payloadUrl")]
    pub payload_url: Option<String>,
    pub secret: Option<String>,
    pub rate_per_second: Option<i64>,
    pub max_concurrency: Option<i64>,
}

#[derive(Serialize)]
pub struct CreatedHook {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// Only when herald generated it: shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn check_limits(rate: Option<i64>, concurrency: Option<i64>) -> Result<(), ApiError> {
    if rate.is_some_and(|r| !(1..=100_000).contains(&r)) {
        return Err(ApiError::Validation(
            "rate_per_second: from 1 to 100000".into(),
        ));
    }
    if concurrency.is_some_and(|c| !(1..=1000).contains(&c)) {
        return Err(ApiError::Validation(
            "max_concurrency: from 1 to 1000".into(),
        ));
    }
    Ok(())
}

/// Validates and creates a hook (and queues its ping); shared by the API and the page.
pub async fn add_hook(
    state: &AppState,
    project: &Project,
    input: HookIn,
) -> Result<CreatedHook, ApiError> {
    let raw_url = input
        .payload_url
        .ok_or_else(|| ApiError::Validation("payload_url: required".into()))?;
    let url = PayloadUrl::parse(&raw_url, state.settings.allow_private_targets)
        .await
        .map_err(ApiError::Validation)?;
    let (secret, generated) =
        webhook_secret(input.secret.as_deref()).map_err(ApiError::Validation)?;
    check_limits(input.rate_per_second, input.max_concurrency)?;
    let webhook = create_webhook(
        &state.db,
        &state.ids,
        project,
        &url,
        &secret,
        input.rate_per_second,
        input.max_concurrency,
    )
    .await?;
    state.outbox_wake.notify_one();
    Ok(CreatedHook {
        webhook,
        secret: generated.then_some(secret),
    })
}

async fn update_limits(
    state: &AppState,
    id: i64,
    rate: Option<i64>,
    concurrency: Option<i64>,
    active: Option<bool>,
) -> Result<(), ApiError> {
    if let Some(rate) = rate {
        sqlx::query("UPDATE webhooks SET rate_per_second = $1 WHERE id = $2")
            .bind(rate)
            .bind(id)
            .execute(state.db.writer())
            .await?;
    }
    if let Some(concurrency) = concurrency {
        sqlx::query("UPDATE webhooks SET max_concurrency = $1 WHERE id = $2")
            .bind(concurrency)
            .bind(id)
            .execute(state.db.writer())
            .await?;
    }
    if let Some(active) = active {
        super::health::set_active(&state.db, id, active).await?;
    }
    Ok(())
}

async fn hooks_create(
    actor: Actor,
    State(state): State<AppState>,
    Path((owner, name)): Path<(String, String)>,
    ApiJson(input): ApiJson<HookIn>,
) -> Result<(StatusCode, Json<CreatedHook>), ApiError> {
    let project = load_project(&state, &actor, &owner, &name).await?;
    Ok((
        StatusCode::CREATED,
        Json(add_hook(&state, &project, input).await?),
    ))
}

fn parse_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("no {what} {raw:?}")))
}

pub async fn load_hook(
    state: &AppState,
    project: &Project,
    raw_id: &str,
) -> Result<Webhook, ApiError> {
    let id = parse_id(raw_id, "webhook")?;
    find_webhook(&state.db, project.id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no webhook {raw_id:?}")))
}

async fn hooks_get(
    actor: Actor,
    State(state): State<AppState>,
    Path((owner, name, id)): Path<(String, String, String)>,
) -> Result<Json<Webhook>, ApiError> {
    let project = load_project(&state, &actor, &owner, &name).await?;
    Ok(Json(load_hook(&state, &project, &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HookPatch {
    rate_per_second: Option<i64>,
    max_concurrency: Option<i64>,
    active: Option<bool>,
}

async fn hooks_update(
    actor: Actor,
    State(state): State<AppState>,
    Path((owner, name, id)): Path<(String, String, String)>,
    ApiJson(patch): ApiJson<HookPatch>,
) -> Result<Json<Webhook>, ApiError> {
    let project = load_project(&state, &actor, &owner, &name).await?;
    let hook = load_hook(&state, &project, &id).await?;
    check_limits(patch.rate_per_second, patch.max_concurrency)?;
    update_limits(
        &state,
        hook.id,
        patch.rate_per_second,
        patch.max_concurrency,
        patch.active,
    )
    .await?;
    Ok(Json(load_hook(&state, &project, &id).await?))
}

async fn hooks_delete(
    actor: Actor,
    State(state): State<AppState>,
    Path((owner, name, id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let project = load_project(&state, &actor, &owner, &name).await?;
    let hook = load_hook(&state, &project, &id).await?;
    delete_webhook(&state.db, project.id, hook.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize)]
pub struct AttemptOut {
    pub attempted_at: String,
    pub status_code: Option<i64>,
    pub duration_ms: i64,
    pub response_body: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DeliveryOut {
    #[serde(with = "crate::ids::as_string")]
    pub id: i64,
    pub event: Option<String>,
    pub status: String,
    pub attempt_count: i64,
    pub created_at: String,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub attempts: Vec<AttemptOut>,
}

#[derive(Deserialize)]
pub struct DeliveryQuery {
    pub limit: Option<i64>,
    /// Only deliveries with a smaller id (paging backwards).
    pub before: Option<String>,
}

/// A hook's deliveries, newest first, each with its attempts.
pub async fn hook_deliveries(
    state: &AppState,
    hook_id: i64,
    query: &DeliveryQuery,
) -> Result<Vec<DeliveryOut>, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let before = match &query.before {
        Some(raw) => raw
            .parse::<i64>()
            .map_err(|_| ApiError::Validation("before: not a delivery id".into()))?,
        None => i64::MAX,
    };
    // Two parts in one statement, so one snapshot (see migrations/*/0010_hook_log_index.sql):
    // deliveries tried at least once or out of the queue, from the hook's index; and those
    // still waiting for a first try, from the queue's own index — few, unless the hook has a
    // backlog it has not started on.
    let rows = sqlx::query(
        "SELECT id, event_type, status, attempts, created_at, next_attempt_at, last_error FROM \
         (SELECT id, event_type, status, attempts, created_at, next_attempt_at, last_error \
          FROM deliveries WHERE webhook_id = $1 AND (status <> 'pending' OR attempts > 0) \
          AND id < $2 ORDER BY id DESC LIMIT $3) AS tried \
         UNION ALL SELECT id, event_type, status, attempts, created_at, next_attempt_at, last_error FROM \
         (SELECT id, event_type, status, attempts, created_at, next_attempt_at, last_error \
          FROM deliveries WHERE status = 'pending' AND attempts = 0 AND webhook_id = $1 \
          AND id < $2 ORDER BY id DESC LIMIT $3) AS waiting \
         ORDER BY id DESC LIMIT $3",
    )
    .bind(hook_id)
    .bind(before)
    .bind(limit)
    .fetch_all(state.db.reader())
    .await?;
    let mut deliveries = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.get(0);
        let status: String = row.get(2);
        let attempts = sqlx::query(
            "SELECT attempted_at, status_code, duration_ms, response_body, error FROM delivery_attempts \
             WHERE delivery_id = $1 ORDER BY attempted_at, id",
        )
        .bind(id)
        .fetch_all(state.db.reader())
        .await?
        .iter()
        .map(|a| AttemptOut {
            attempted_at: rfc3339(a.get(0)),
            status_code: a.get(1),
            duration_ms: a.get(2),
            response_body: a.get(3),
            error: a.get(4),
        })
        .collect();
        deliveries.push(DeliveryOut {
            id,
            event: row.get(1),
            next_attempt_at: (status == "pending").then(|| rfc3339(row.get(5))),
            status,
            attempt_count: row.get(3),
            created_at: rfc3339(row.get(4)),
            last_error: row.get(6),
            attempts,
        });
    }
    Ok(deliveries)
}

async fn deliveries_list(
    actor: Actor,
    State(state): State<AppState>,
    Path((owner, name, id)): Path<(String, String, String)>,
    Query(query): Query<DeliveryQuery>,
) -> Result<Json<Value>, ApiError> {
    let project = load_project(&state, &actor, &owner, &name).await?;
    let hook = load_hook(&state, &project, &id).await?;
    Ok(Json(
        json!({"deliveries": hook_deliveries(&state, hook.id, &query).await?}),
    ))
}

async fn redeliver(
    actor: Actor,
    State(state): State<AppState>,
    Path((owner, name, id, delivery_id)): Path<(String, String, String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let project = load_project(&state, &actor, &owner, &name).await?;
    let hook = load_hook(&state, &project, &id).await?;
    let delivery_id = parse_id(&delivery_id, "delivery")?;
    // Sent again with the same id, so a receiver can tell it is the same message.
    match crate::outbox::redeliver(&state.db, hook.id, delivery_id).await? {
        Redelivery::Queued => {}
        Redelivery::AlreadyPending => {
            return Err(ApiError::Conflict(
                "that delivery is already waiting to be sent".into(),
            ));
        }
        Redelivery::NotFound => {
            return Err(ApiError::NotFound(format!(
                "no delivery {delivery_id} for this webhook"
            )));
        }
    }
    state.outbox_wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": delivery_id.to_string(), "status": "pending"})),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoverIn {
    since: String,
}

async fn recover(
    actor: Actor,
    State(state): State<AppState>,
    Path((owner, name, id)): Path<(String, String, String)>,
    ApiJson(input): ApiJson<RecoverIn>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let project = load_project(&state, &actor, &owner, &name).await?;
    let hook = load_hook(&state, &project, &id).await?;
    let since = chrono::DateTime::parse_from_rfc3339(input.since.trim())
        .map_err(|e| ApiError::Validation(format!("since: not an RFC 3339 time ({e})")))?
        .timestamp_millis();
    let recovered = crate::outbox::recover(&state.db, hook.id, since).await?;
    state.outbox_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({"recovered": recovered}))))
}

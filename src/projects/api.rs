//! The projects and webhooks JSON API under `/api/v1/projects`, with the delivery log:
//! list deliveries with their attempts, redeliver one, recover every failure since a time.
//! Until accounts exist, the operator token manages every project.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::{
    PayloadUrl, Project, Webhook, create_webhook, delete_webhook, find_project, find_webhook,
    list_projects, list_webhooks, valid_slug, webhook_secret,
};
use crate::accounts::auth::Actor;
use crate::contacts::probe_heads;
use crate::http::error::{ApiError, ApiJson, ErrorBody};
use crate::http::openapi::{JsonBodyErrors, TokenErrors};
use crate::http::routes::Routes;
use crate::ids::{now_ms, rfc3339};
use crate::outbox::Redelivery;
use crate::state::AppState;
use crate::watch::repo::{RepoKind, RepoUrl, is_glob, valid_branch_pattern};
use crate::watch::{ensure_watch, set_baseline_head, upsert_repository};

pub fn router(state: AppState) -> Routes {
    Routes::new()
        .api(routes!(projects_list))
        .api(routes!(projects_create))
        .api(routes!(projects_get))
        .api(routes!(projects_delete))
        .api(routes!(projects_claim))
        .api(routes!(hooks_list))
        .api(routes!(hooks_create))
        .api(routes!(hooks_get))
        .api(routes!(hooks_update))
        .api(routes!(hooks_delete))
        .api(routes!(deliveries_list))
        .api(routes!(redeliver))
        .api(routes!(recover))
        .with_state(state)
}

#[derive(Serialize, ToSchema)]
struct ProjectList {
    projects: Vec<Project>,
}

#[derive(Serialize, ToSchema)]
struct WebhookList {
    webhooks: Vec<Webhook>,
}

#[derive(Serialize, ToSchema)]
struct DeliveryList {
    /// Newest first.
    deliveries: Vec<DeliveryOut>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ProjectIn {
    /// Defaults to the calling account's name; the operator must give one.
    owner: Option<String>,
    name: String,
    /// A GitHub repository (`owner/name` or its URL) or any git remote URL.
    repository: String,
    /// A branch or a glob; defaults to the repository's default branch.
    #[serde(default)]
    branches: Option<String>,
}

/// The projects the caller may manage.
#[utoipa::path(
    get,
    path = "/api/v1/projects",
    tag = "projects",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    responses((status = 200, description = "The projects", body = ProjectList), TokenErrors)
)]
async fn projects_list(
    actor: Actor,
    State(state): State<AppState>,
) -> Result<Json<ProjectList>, ApiError> {
    let projects: Vec<Project> = list_projects(&state.db)
        .await?
        .into_iter()
        .filter(|p| p.managed_by(&actor))
        .collect();
    Ok(Json(ProjectList { projects }))
}

/// Creates a project: the repository must exist; the branch pattern defaults to its default
/// branch; the repository is watched from now on. `owner_account` is the account that manages
/// it ([`Project::owner_account`]); `None` leaves it to the operator.
pub async fn create_project(
    state: &AppState,
    owner_account: Option<i64>,
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
        "INSERT INTO projects (id, owner, name, repository_id, branches, created_at, owner_account_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(state.ids.next())
    .bind(&owner)
    .bind(&name)
    .bind(repository.id)
    .bind(&branches)
    .bind(now_ms())
    .bind(owner_account)
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

/// Creates a project on a repository; the repository is watched from now on.
#[utoipa::path(
    post,
    path = "/api/v1/projects",
    tag = "projects",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    request_body = ProjectIn,
    responses(
        (status = 201, description = "The project", body = Project),
        (status = 403, description = "An account may only create projects it owns", body = ErrorBody),
        (status = 409, description = "The project exists", body = ErrorBody),
        (status = 503, description = "The repository could not be reached", body = ErrorBody),
        TokenErrors,
        JsonBodyErrors,
    )
)]
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
    // An account's own project is its; the operator's project for a name is that account's
    // only if the account exists now. A name nobody has yet stays the operator's until the
    // operator hands the project over (`projects_claim`), so registering it later gives nothing.
    let owner_account = match &actor {
        Actor::Account(account) => Some(account.id),
        Actor::Operator => crate::accounts::find_by_name(&state.db, owner.trim())
            .await?
            .map(|account| account.id),
    };
    let input = ProjectIn {
        owner: Some(owner),
        ..input
    };
    let project = create_project(
        &state,
        owner_account,
        input.owner.as_deref().unwrap_or_default(),
        &input.name,
        &input.repository,
        input.branches.as_deref(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(project)))
}

/// Hands a project the operator holds to the account named as its owner, which manages it from
/// then on. Explicit on purpose: a project made for a name no account had is the operator's,
/// and registering that name later does not make it the newcomer's.
#[utoipa::path(
    post,
    path = "/api/v1/projects/{owner}/{project}/claim",
    tag = "projects",
    security(("operator_token" = [])),
    params(("owner" = String, Path, description = "The project's owner name, which must now be an account's"), ("project" = String, Path, description = "The project's name")),
    responses(
        (status = 200, description = "The project, now managed by the account named `owner`", body = Project),
        (status = 404, description = "No such project, or no account of that name", body = ErrorBody),
        (status = 409, description = "The project already belongs to that account", body = ErrorBody),
        TokenErrors,
    )
)]
async fn projects_claim(
    _: crate::http::auth::Admin,
    State(state): State<AppState>,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Json<Project>, ApiError> {
    let project = find_project(&state.db, &owner, &name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no project {owner}/{name}")))?;
    let account = crate::accounts::find_by_name(&state.db, &owner)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no account named {owner:?}")))?;
    if project.owner_account == Some(account.id) {
        return Err(ApiError::Conflict(format!(
            "project {owner}/{name} already belongs to {owner}"
        )));
    }
    sqlx::query("UPDATE projects SET owner_account_id = $1 WHERE id = $2")
        .bind(account.id)
        .bind(project.id)
        .execute(state.db.writer())
        .await?;
    tracing::info!(project = %format!("{owner}/{name}"), account = account.id, "project handed to its owner's account");
    Ok(Json(Project {
        owner_account: Some(account.id),
        ..project
    }))
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
        .filter(|p| p.managed_by(actor))
        .ok_or_else(|| ApiError::NotFound(format!("no project {owner}/{name}")))
}

/// One project.
#[utoipa::path(
    get,
    path = "/api/v1/projects/{owner}/{project}",
    tag = "projects",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("owner" = String, Path, description = "The project's owner (an account name)"), ("project" = String, Path, description = "The project's name")),
    responses((status = 200, description = "The project", body = Project), (status = 404, description = "No such project (or not yours)", body = ErrorBody), TokenErrors)
)]
async fn projects_get(
    actor: Actor,
    State(state): State<AppState>,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Json<Project>, ApiError> {
    Ok(Json(load_project(&state, &actor, &owner, &name).await?))
}

/// Deletes a project and its webhooks.
#[utoipa::path(
    delete,
    path = "/api/v1/projects/{owner}/{project}",
    tag = "projects",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("owner" = String, Path, description = "The project's owner (an account name)"), ("project" = String, Path, description = "The project's name")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such project (or not yours)", body = ErrorBody), TokenErrors)
)]
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

/// A project's webhooks.
#[utoipa::path(
    get,
    path = "/api/v1/projects/{owner}/{project}/webhooks",
    tag = "projects",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("owner" = String, Path, description = "The project's owner (an account name)"), ("project" = String, Path, description = "The project's name")),
    responses((status = 200, description = "The webhooks", body = WebhookList), (status = 404, description = "No such project (or not yours)", body = ErrorBody), TokenErrors)
)]
async fn hooks_list(
    actor: Actor,
    State(state): State<AppState>,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Json<WebhookList>, ApiError> {
    let project = load_project(&state, &actor, &owner, &name).await?;
    Ok(Json(WebhookList {
        webhooks: list_webhooks(&state.db, project.id).await?,
    }))
}

/// What creating a hook accepts, from JSON or a form; both spellings of the URL field.
#[derive(Deserialize, Default, ToSchema)]
pub struct HookIn {
    /// Required: where deliveries are POSTed (`payloadUrl` is accepted too).
    #[serde(alias = "payloadUrl")]
    pub payload_url: Option<String>,
    /// The signing secret; generated (and shown once) when left out.
    pub secret: Option<String>,
    /// 1 to 100000 deliveries per second at most.
    pub rate_per_second: Option<i64>,
    /// 1 to 1000 deliveries in flight at most.
    pub max_concurrency: Option<i64>,
}

#[derive(Serialize, ToSchema)]
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

/// Adds a webhook to a project and queues its `ping`.
#[utoipa::path(
    post,
    path = "/api/v1/projects/{owner}/{project}/webhooks",
    tag = "projects",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("owner" = String, Path, description = "The project's owner (an account name)"), ("project" = String, Path, description = "The project's name")),
    request_body = HookIn,
    responses(
        (status = 201, description = "The webhook, with the secret if herald generated it", body = CreatedHook),
        (status = 404, description = "No such project (or not yours)", body = ErrorBody),
        TokenErrors,
        JsonBodyErrors,
    )
)]
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

/// One webhook.
#[utoipa::path(
    get,
    path = "/api/v1/projects/{owner}/{project}/webhooks/{id}",
    tag = "projects",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("owner" = String, Path, description = "The project's owner (an account name)"), ("project" = String, Path, description = "The project's name"), ("id" = String, Path, description = "The webhook's id")),
    responses((status = 200, description = "The webhook", body = Webhook), (status = 404, description = "No such project or webhook (or not yours)", body = ErrorBody), TokenErrors)
)]
async fn hooks_get(
    actor: Actor,
    State(state): State<AppState>,
    Path((owner, name, id)): Path<(String, String, String)>,
) -> Result<Json<Webhook>, ApiError> {
    let project = load_project(&state, &actor, &owner, &name).await?;
    Ok(Json(load_hook(&state, &project, &id).await?))
}

/// What a PATCH changes; fields left out stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct HookPatch {
    /// 1 to 100000.
    rate_per_second: Option<i64>,
    /// 1 to 1000.
    max_concurrency: Option<i64>,
    /// `true` turns a disabled hook back on (and clears its failure streak).
    active: Option<bool>,
}

/// Changes a webhook's limits, or turns it on or off.
#[utoipa::path(
    patch,
    path = "/api/v1/projects/{owner}/{project}/webhooks/{id}",
    tag = "projects",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("owner" = String, Path, description = "The project's owner (an account name)"), ("project" = String, Path, description = "The project's name"), ("id" = String, Path, description = "The webhook's id")),
    request_body = HookPatch,
    responses(
        (status = 200, description = "The webhook as changed", body = Webhook),
        (status = 404, description = "No such project or webhook (or not yours)", body = ErrorBody),
        TokenErrors,
        JsonBodyErrors,
    )
)]
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

/// Deletes a webhook.
#[utoipa::path(
    delete,
    path = "/api/v1/projects/{owner}/{project}/webhooks/{id}",
    tag = "projects",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("owner" = String, Path, description = "The project's owner (an account name)"), ("project" = String, Path, description = "The project's name"), ("id" = String, Path, description = "The webhook's id")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such project or webhook (or not yours)", body = ErrorBody), TokenErrors)
)]
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

/// One try at sending a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptOut {
    /// RFC 3339.
    pub attempted_at: String,
    /// The receiver's HTTP status; none when no answer came.
    pub status_code: Option<i64>,
    pub duration_ms: i64,
    pub response_body: Option<String>,
    pub error: Option<String>,
}

/// One event sent (or to be sent) to a webhook, with its attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryOut {
    /// Also the `X-Herald-Delivery` header of every send.
    #[serde(with = "crate::ids::as_string")]
    #[schema(value_type = String, example = "7340032153862881280")]
    pub id: i64,
    /// `push` or `ping`.
    pub event: Option<String>,
    /// `pending`, `delivered`, `failed` or `cancelled`.
    pub status: String,
    pub attempt_count: i64,
    pub created_at: String,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub attempts: Vec<AttemptOut>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// 1 to 500 [50].
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
    // backlog it has not started on. `id + 0` there, as in `outbox::log::page`: it keeps
    // PostgreSQL from walking the primary key backwards past every finished delivery.
    let rows = sqlx::query(
        "SELECT id, event_type, status, attempts, created_at, next_attempt_at, last_error FROM \
         (SELECT id, event_type, status, attempts, created_at, next_attempt_at, last_error \
          FROM deliveries WHERE webhook_id = $1 AND (status <> 'pending' OR attempts > 0) \
          AND id < $2 ORDER BY id DESC LIMIT $3) AS tried \
         UNION ALL SELECT id, event_type, status, attempts, created_at, next_attempt_at, last_error FROM \
         (SELECT id, event_type, status, attempts, created_at, next_attempt_at, last_error \
          FROM deliveries WHERE status = 'pending' AND attempts = 0 AND webhook_id = $1 \
          AND id < $2 ORDER BY id + 0 DESC LIMIT $3) AS waiting \
         ORDER BY id DESC LIMIT $3",
    )
    .bind(hook_id)
    .bind(before)
    .bind(limit)
    .fetch_all(state.db.reader())
    .await?;
    // All the page's attempts in one query per 64 deliveries, not one per delivery.
    let ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    let mut attempts_of: std::collections::HashMap<i64, Vec<AttemptOut>> =
        std::collections::HashMap::with_capacity(ids.len());
    for attempt in crate::outbox::log::attempts(&state.db, &ids).await? {
        attempts_of
            .entry(attempt.delivery_id)
            .or_default()
            .push(AttemptOut {
                attempted_at: rfc3339(attempt.attempted_at),
                status_code: attempt.status_code,
                duration_ms: attempt.duration_ms,
                response_body: attempt.response_body,
                error: attempt.error,
            });
    }
    let mut deliveries = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.get(0);
        let status: String = row.get(2);
        deliveries.push(DeliveryOut {
            id,
            event: row.get(1),
            next_attempt_at: (status == "pending").then(|| rfc3339(row.get(5))),
            status,
            attempt_count: row.get(3),
            created_at: rfc3339(row.get(4)),
            last_error: row.get(6),
            attempts: attempts_of.remove(&id).unwrap_or_default(),
        });
    }
    Ok(deliveries)
}

/// A webhook's delivery log, newest first, each delivery with its attempts.
///
/// Page backwards with `before` = the last id of the previous page.
#[utoipa::path(
    get,
    path = "/api/v1/projects/{owner}/{project}/webhooks/{id}/deliveries",
    tag = "projects",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("owner" = String, Path, description = "The project's owner (an account name)"), ("project" = String, Path, description = "The project's name"), ("id" = String, Path, description = "The webhook's id"), DeliveryQuery),
    responses(
        (status = 200, description = "The deliveries", body = DeliveryList),
        (status = 404, description = "No such project or webhook (or not yours)", body = ErrorBody),
        (status = 422, description = "`before` is not a delivery id", body = ErrorBody),
        TokenErrors,
    )
)]
async fn deliveries_list(
    actor: Actor,
    State(state): State<AppState>,
    Path((owner, name, id)): Path<(String, String, String)>,
    Query(query): Query<DeliveryQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    let project = load_project(&state, &actor, &owner, &name).await?;
    let hook = load_hook(&state, &project, &id).await?;
    Ok(Json(DeliveryList {
        deliveries: hook_deliveries(&state, hook.id, &query).await?,
    }))
}

/// A delivery queued again.
#[derive(Serialize, ToSchema)]
struct Requeued {
    #[schema(example = "7340032153862881280")]
    id: String,
    /// `pending`
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
struct Recovered {
    /// How many failed deliveries were queued again.
    recovered: u64,
}

/// Sends a delivery again, with the same id.
#[utoipa::path(
    post,
    path = "/api/v1/projects/{owner}/{project}/webhooks/{id}/deliveries/{delivery_id}/redeliver",
    tag = "projects",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("owner" = String, Path, description = "The project's owner (an account name)"), ("project" = String, Path, description = "The project's name"), ("id" = String, Path, description = "The webhook's id"), ("delivery_id" = String, Path, description = "The delivery's id")),
    responses(
        (status = 202, description = "Queued again", body = Requeued),
        (status = 404, description = "No such project, webhook or delivery (or not yours)", body = ErrorBody),
        (status = 409, description = "The delivery is already waiting to be sent", body = ErrorBody),
        TokenErrors,
    )
)]
async fn redeliver(
    actor: Actor,
    State(state): State<AppState>,
    Path((owner, name, id, delivery_id)): Path<(String, String, String, String)>,
) -> Result<(StatusCode, Json<Requeued>), ApiError> {
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
        Json(Requeued {
            id: delivery_id.to_string(),
            status: "pending",
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RecoverIn {
    /// RFC 3339: deliveries that failed since then are sent again.
    #[schema(example = "2026-12-01T00:00:00Z")]
    since: String,
}

/// Sends again every delivery of the webhook that failed since a time.
#[utoipa::path(
    post,
    path = "/api/v1/projects/{owner}/{project}/webhooks/{id}/recover",
    tag = "projects",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("owner" = String, Path, description = "The project's owner (an account name)"), ("project" = String, Path, description = "The project's name"), ("id" = String, Path, description = "The webhook's id")),
    request_body = RecoverIn,
    responses(
        (status = 202, description = "Queued again", body = Recovered),
        (status = 404, description = "No such project or webhook (or not yours)", body = ErrorBody),
        TokenErrors,
        JsonBodyErrors,
    )
)]
async fn recover(
    actor: Actor,
    State(state): State<AppState>,
    Path((owner, name, id)): Path<(String, String, String)>,
    ApiJson(input): ApiJson<RecoverIn>,
) -> Result<(StatusCode, Json<Recovered>), ApiError> {
    let project = load_project(&state, &actor, &owner, &name).await?;
    let hook = load_hook(&state, &project, &id).await?;
    let since = chrono::DateTime::parse_from_rfc3339(input.since.trim())
        .map_err(|e| ApiError::Validation(format!("since: not an RFC 3339 time ({e})")))?
        .timestamp_millis();
    let recovered = crate::outbox::recover(&state.db, hook.id, since).await?;
    state.outbox_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(Recovered { recovered })))
}

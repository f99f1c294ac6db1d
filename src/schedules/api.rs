//! `/api/v1/schedules…` (SPEC §E): the preview of a cron expression's next instants, and
//! scheduled announcements with their runs. The operator sees and edits every schedule; an
//! account only its own and those addressed to the teams it administers (404 for the rest).

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::cron::CronSpec;
use super::{
    Audience, Run, Schedule, ScheduleFields, SchedulesState, delete_schedule, find_schedule,
    insert_schedule, list_runs, list_schedules, update_schedule,
};
use crate::accounts::auth::Actor;
use crate::http::error::{ApiError, ApiJson, ErrorBody};
use crate::http::openapi::{JsonBodyErrors, TokenErrors};
use crate::http::routes::Routes;
use crate::ids::rfc3339;
use crate::teams::DEFAULT_TIME_ZONE;
use crate::teams::api::{parse_id, team_for};

/// How many instants a schedule's answer and a preview list by default.
pub(crate) const PREVIEW_COUNT: usize = 5;
const MAX_PREVIEW_COUNT: usize = 100;
const MAX_MESSAGE_CHARS: usize = 10_000;
const MAX_CONTACTS: usize = 1_000;
pub(crate) const DEFAULT_CATCH_UP_LIMIT: std::time::Duration = std::time::Duration::from_secs(3600);
const MAX_CATCH_UP_LIMIT: std::time::Duration = std::time::Duration::from_secs(31 * 24 * 3600);

pub fn router(state: SchedulesState) -> Routes {
    Routes::new()
        .api(routes!(preview))
        .api(routes!(schedules_list))
        .api(routes!(schedules_create))
        .api(routes!(schedules_get))
        .api(routes!(schedules_update))
        .api(routes!(schedules_delete))
        .api(routes!(runs_list))
        .with_state(state)
}

#[derive(Deserialize)]
struct PreviewIn {
    cron: Option<String>,
    time_zone: Option<String>,
    from: Option<String>,
    count: Option<String>,
}

/// Who a schedule tells, as the API shows it: one of three shapes.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum AudienceOut {
    /// A team's members.
    Team { team_id: String },
    /// These contacts.
    Contacts { contact_ids: Vec<String> },
    /// A repository's subscribers, of one branch or of all (`branch` left out).
    Repository {
        repository: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        branch: Option<String>,
    },
}

impl From<&Audience> for AudienceOut {
    fn from(audience: &Audience) -> Self {
        match audience {
            Audience::Team { team_id } => AudienceOut::Team {
                team_id: team_id.to_string(),
            },
            Audience::Contacts { contact_ids } => AudienceOut::Contacts {
                contact_ids: contact_ids.iter().map(i64::to_string).collect(),
            },
            Audience::Repository { key, branch, .. } => AudienceOut::Repository {
                repository: key.clone(),
                branch: branch.clone(),
            },
        }
    }
}

/// A scheduled announcement.
#[derive(Serialize, ToSchema)]
struct ScheduleOut {
    id: String,
    cron: String,
    /// An IANA time zone.
    time_zone: String,
    message: String,
    audience: AudienceOut,
    /// Only contacts on these channels are told; `null` = every channel.
    channels: Option<Vec<String>>,
    /// How late a missed run may still be sent (humantime, e.g. `1h`).
    catch_up_limit: String,
    enabled: bool,
    /// Passes quiet hours.
    urgent: bool,
    /// RFC 3339 in the schedule's zone; `null` while disabled.
    next_due_at: Option<String>,
    /// `null` for the operator's.
    owner_account_id: Option<String>,
    created_at: String,
    updated_at: String,
    /// The next instants (RFC 3339 in the schedule's zone); left out of lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
struct SchedulesOut {
    schedules: Vec<ScheduleOut>,
}

#[derive(Serialize, ToSchema)]
struct PreviewOut {
    /// RFC 3339 instants in the expression's zone.
    next: Vec<String>,
}

/// Someone a run told: at once, or held for its digest (it was in its quiet time).
#[derive(Serialize, ToSchema)]
pub(crate) struct RecipientOut {
    contact_id: String,
    channel: String,
    address: String,
    /// `true` when the announcement was held for the contact's digest instead of sent at once.
    held: bool,
    /// RFC 3339: when that digest is due; absent when not held.
    #[serde(skip_serializing_if = "Option::is_none")]
    held_until: Option<String>,
}

/// One due time of a schedule: sent, or skipped (missed past its catch-up limit).
#[derive(Serialize, ToSchema)]
pub(crate) struct RunOut {
    id: String,
    /// RFC 3339.
    due_at: String,
    /// RFC 3339, or `skipped`.
    fired_at: String,
    /// `sent` or `skipped`.
    status: String,
    recipients: Vec<RecipientOut>,
}

impl From<&Run> for RunOut {
    fn from(run: &Run) -> Self {
        RunOut {
            id: run.id.to_string(),
            due_at: rfc3339(run.due_at),
            fired_at: run.fired_at.map_or("skipped".to_string(), rfc3339),
            status: if run.fired_at.is_some() {
                "sent".to_string()
            } else {
                "skipped".to_string()
            },
            recipients: run
                .recipients
                .iter()
                .map(|r| RecipientOut {
                    contact_id: r.recipient.contact_id.to_string(),
                    channel: r.recipient.channel.clone(),
                    address: r.recipient.address.clone(),
                    held: r.held_until.is_some(),
                    held_until: r.held_until.map(rfc3339),
                })
                .collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct RunsOut {
    runs: Vec<RunOut>,
}

/// `GET /api/v1/schedules/preview`: the next instants of an expression, computed and not stored.
/// The next instants of a cron expression, computed and not stored.
#[utoipa::path(
    get,
    path = "/api/v1/schedules/preview",
    tag = "schedules",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("cron" = String, Query, description = "The cron expression"), ("time_zone" = Option<String>, Query, description = "An IANA time zone"), ("from" = Option<String>, Query, description = "RFC 3339 instant to start after (default: now)"), ("count" = Option<String>, Query, description = "How many instants (default 5, at most 100)")),
    responses(
        (status = 200, body = PreviewOut, description = "The next instants"),
        (status = 422, description = "A value is not acceptable", body = ErrorBody),
        TokenErrors,
    )
)]
async fn preview(
    _: Actor,
    State(state): State<SchedulesState>,
    Query(input): Query<PreviewIn>,
) -> Result<Json<PreviewOut>, ApiError> {
    let cron = input
        .cron
        .ok_or_else(|| ApiError::Validation("cron: required".into()))?;
    let spec = CronSpec::parse(
        &cron,
        input.time_zone.as_deref().unwrap_or(DEFAULT_TIME_ZONE),
    )
    .map_err(ApiError::Validation)?;
    let from = match input.from.as_deref() {
        Some(raw) => chrono::DateTime::parse_from_rfc3339(raw.trim())
            .map_err(|_| ApiError::Validation(format!("from: {raw:?} is not an RFC 3339 instant")))?
            .timestamp_millis(),
        None => state.clock.now_ms(),
    };
    let count = match input.count.as_deref() {
        Some(raw) => raw
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PREVIEW_COUNT).contains(n))
            .ok_or_else(|| {
                ApiError::Validation(format!(
                    "count: {raw:?} is not a number from 1 to {MAX_PREVIEW_COUNT}"
                ))
            })?,
        None => PREVIEW_COUNT,
    };
    let next = super::next_instants(&spec, from, count);
    Ok(Json(PreviewOut { next }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AudienceIn {
    team_id: Option<String>,
    contact_ids: Option<Vec<String>>,
    repository: Option<String>,
    branch: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ScheduleIn {
    cron: String,
    time_zone: Option<String>,
    message: String,
    audience: Option<AudienceIn>,
    channels: Option<Vec<String>>,
    catch_up_limit: Option<String>,
    enabled: Option<bool>,
    urgent: Option<bool>,
}

/// `"channels": null` clears the filter; a missing key leaves it as it is.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SchedulePatch {
    cron: Option<String>,
    time_zone: Option<String>,
    message: Option<String>,
    audience: Option<AudienceIn>,
    /// `null` clears the channel filter; left out, it stays as it is.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    channels: Option<Option<Vec<String>>>,
    catch_up_limit: Option<String>,
    enabled: Option<bool>,
    urgent: Option<bool>,
}

pub(crate) fn check_message(raw: &str) -> Result<String, ApiError> {
    let message = raw.trim();
    if message.is_empty() || message.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::Validation(format!(
            "message: 1 to {MAX_MESSAGE_CHARS} characters"
        )));
    }
    Ok(message.to_string())
}

pub(crate) fn check_channels(raw: Option<Vec<String>>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let mut channels = BTreeSet::new();
    for channel in raw {
        let channel = channel.trim().to_lowercase();
        if !crate::contacts::CHANNELS.contains(&channel.as_str()) {
            return Err(ApiError::Validation(format!(
                "channels: unknown channel {channel:?} (expected some of: {})",
                crate::contacts::CHANNELS.join(", ")
            )));
        }
        channels.insert(channel);
    }
    if channels.is_empty() {
        return Err(ApiError::Validation(
            "channels: name at least one channel, or leave it out for every channel".into(),
        ));
    }
    Ok(Some(channels.into_iter().collect()))
}

pub(crate) fn check_catch_up_limit(raw: &str) -> Result<i64, ApiError> {
    let limit = humantime::parse_duration(raw.trim())
        .ok()
        .filter(|d| *d <= MAX_CATCH_UP_LIMIT)
        .ok_or_else(|| {
            ApiError::Validation(format!(
                "catch_up_limit: {raw:?} is not a duration such as 30m or 1h (at most 31 days)"
            ))
        })?;
    Ok(limit.as_millis() as i64)
}

/// Checks an audience and that `actor` may address it: a team it administers, contacts linked
/// to its account, or (the operator only) a watched repository's subscribers.
async fn check_audience(
    state: &SchedulesState,
    actor: &Actor,
    input: Option<AudienceIn>,
) -> Result<Audience, ApiError> {
    let empty = || {
        ApiError::Validation(
            "audience: empty; give {\"team_id\"}, {\"contact_ids\": [...]} or {\"repository\", \"branch\"?}"
                .into(),
        )
    };
    let input = input.ok_or_else(empty)?;
    let given = usize::from(input.team_id.is_some())
        + usize::from(input.contact_ids.is_some())
        + usize::from(input.repository.is_some());
    if given > 1 {
        return Err(ApiError::Validation(
            "audience: give exactly one of team_id, contact_ids, repository".into(),
        ));
    }
    if input.branch.is_some() && input.repository.is_none() {
        return Err(ApiError::Validation(
            "audience: branch goes with repository".into(),
        ));
    }
    if let Some(team_id) = input.team_id {
        let team = team_for(state, actor, &team_id, true).await?;
        return Ok(Audience::Team { team_id: team.id });
    }
    if let Some(raw_ids) = input.contact_ids {
        if raw_ids.is_empty() {
            return Err(empty());
        }
        if raw_ids.len() > MAX_CONTACTS {
            return Err(ApiError::Validation(format!(
                "audience: at most {MAX_CONTACTS} contact_ids"
            )));
        }
        let mut ids = BTreeSet::new();
        for raw in &raw_ids {
            ids.insert(raw.trim().parse::<i64>().map_err(|_| {
                ApiError::Validation(format!("audience: {raw:?} is not a contact id"))
            })?);
        }
        let ids: Vec<i64> = ids.into_iter().collect();
        let sql = format!(
            "SELECT id, account_id FROM contacts WHERE id IN ({})",
            crate::store::placeholders(1, ids.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in &ids {
            query = query.bind(*id);
        }
        let found: Vec<(i64, Option<i64>)> = query
            .fetch_all(state.db.reader())
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        if let Some(missing) = ids.iter().find(|id| !found.iter().any(|(f, _)| f == *id)) {
            return Err(ApiError::Validation(format!(
                "audience: no contact with id {missing}"
            )));
        }
        if let Actor::Account(account) = actor
            && found.iter().any(|(_, owner)| *owner != Some(account.id))
        {
            return Err(ApiError::Forbidden(
                "an account may address only its own linked contacts (or a team it administers)"
                    .into(),
            ));
        }
        return Ok(Audience::Contacts { contact_ids: ids });
    }
    if let Some(repository) = input.repository {
        if !matches!(actor, Actor::Operator) {
            return Err(ApiError::Forbidden(
                "only the operator may announce to a repository's subscribers".into(),
            ));
        }
        return super::repository_audience(
            &state.db,
            &repository,
            input.branch,
            state.settings.allow_private_targets,
        )
        .await?
        .map_err(ApiError::Validation);
    }
    Err(empty())
}

/// The schedule, if `actor` may see and edit it; 404 otherwise.
async fn schedule_for(
    state: &SchedulesState,
    actor: &Actor,
    raw_id: &str,
) -> Result<Schedule, ApiError> {
    let not_found = || ApiError::NotFound(format!("no schedule with id {raw_id:?}"));
    let id = parse_id(raw_id, "schedule")?;
    let schedule = find_schedule(&state.db, id).await?.ok_or_else(not_found)?;
    match actor {
        Actor::Operator => Ok(schedule),
        Actor::Account(account) => {
            if super::account_may_manage(&state.db, &schedule, account.id).await? {
                Ok(schedule)
            } else {
                Err(not_found())
            }
        }
    }
}

fn schedule_json(schedule: &Schedule, next: Option<Vec<String>>) -> ScheduleOut {
    let spec = CronSpec::parse(&schedule.cron, &schedule.time_zone).ok();
    let in_zone = |ms: i64| match &spec {
        Some(spec) => spec.rfc3339(ms),
        None => rfc3339(ms),
    };
    ScheduleOut {
        id: schedule.id.to_string(),
        cron: schedule.cron.clone(),
        time_zone: schedule.time_zone.clone(),
        message: schedule.message.clone(),
        audience: AudienceOut::from(&schedule.audience),
        channels: schedule.channels.clone(),
        catch_up_limit: humantime::format_duration(std::time::Duration::from_millis(
            schedule.catch_up_limit_ms.max(0) as u64,
        ))
        .to_string(),
        enabled: schedule.enabled,
        urgent: schedule.urgent,
        next_due_at: schedule.next_due_at.map(in_zone),
        owner_account_id: schedule.owner_account_id.map(|id| id.to_string()),
        created_at: rfc3339(schedule.created_at),
        updated_at: rfc3339(schedule.updated_at),
        next,
    }
}

/// The next instants of an enabled schedule from now (none while disabled).
fn upcoming(state: &SchedulesState, schedule: &Schedule) -> Vec<String> {
    if !schedule.enabled {
        return Vec::new();
    }
    match CronSpec::parse(&schedule.cron, &schedule.time_zone) {
        Ok(spec) => super::next_instants(&spec, state.clock.now_ms(), PREVIEW_COUNT),
        Err(_) => Vec::new(),
    }
}

/// When an enabled schedule is next due, computed from the clock.
fn first_due(state: &SchedulesState, spec: &CronSpec, enabled: bool) -> Option<i64> {
    super::first_due_at(spec, enabled, state.clock.now_ms())
}

/// Creates a scheduled announcement.
#[utoipa::path(
    post,
    path = "/api/v1/schedules",
    tag = "schedules",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    request_body = ScheduleIn,
    responses(
        (status = 201, body = ScheduleOut, description = "The schedule with its next instants"),
        (status = 404, description = "A team or contact of the audience is not found", body = ErrorBody),
        (status = 403, description = "Not an admin of the audience team", body = ErrorBody),
        (status = 422, description = "A value is not acceptable", body = ErrorBody),
        TokenErrors,
        JsonBodyErrors,
    )
)]
async fn schedules_create(
    actor: Actor,
    State(state): State<SchedulesState>,
    ApiJson(input): ApiJson<ScheduleIn>,
) -> Result<(StatusCode, Json<ScheduleOut>), ApiError> {
    let spec = CronSpec::parse(
        &input.cron,
        input.time_zone.as_deref().unwrap_or(DEFAULT_TIME_ZONE),
    )
    .map_err(ApiError::Validation)?;
    let message = check_message(&input.message)?;
    let channels = check_channels(input.channels)?;
    let catch_up_limit_ms = match input.catch_up_limit.as_deref() {
        Some(raw) => check_catch_up_limit(raw)?,
        None => DEFAULT_CATCH_UP_LIMIT.as_millis() as i64,
    };
    let audience = check_audience(&state, &actor, input.audience).await?;
    let fields = ScheduleFields {
        cron: spec.expression().to_string(),
        time_zone: spec.zone().name().to_string(),
        message,
        audience,
        channels,
        catch_up_limit_ms,
        enabled: input.enabled.unwrap_or(true),
        urgent: input.urgent.unwrap_or(false),
    };
    let owner = match &actor {
        Actor::Operator => None,
        Actor::Account(account) => Some(account.id),
    };
    let now = state.clock.now_ms();
    let schedule = insert_schedule(
        &state.db,
        state.ids.next(),
        owner,
        &fields,
        first_due(&state, &spec, fields.enabled),
        now,
    )
    .await?;
    state.wake.notify_one();
    let next = upcoming(&state, &schedule);
    Ok((
        StatusCode::CREATED,
        Json(schedule_json(&schedule, Some(next))),
    ))
}

/// The schedules the caller sees (all, for the operator).
#[utoipa::path(
    get,
    path = "/api/v1/schedules",
    tag = "schedules",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    responses(
        (status = 200, body = SchedulesOut, description = "The schedules"),
        TokenErrors,
    )
)]
async fn schedules_list(
    actor: Actor,
    State(state): State<SchedulesState>,
) -> Result<Json<SchedulesOut>, ApiError> {
    let account = match &actor {
        Actor::Operator => None,
        Actor::Account(account) => Some(account.id),
    };
    let schedules = list_schedules(&state.db, account)
        .await?
        .iter()
        .map(|s| schedule_json(s, None))
        .collect();
    Ok(Json(SchedulesOut { schedules }))
}

/// One schedule with its next instants.
#[utoipa::path(
    get,
    path = "/api/v1/schedules/{id}",
    tag = "schedules",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("id" = String, Path, description = "The schedule's id")),
    responses(
        (status = 200, body = ScheduleOut, description = "The schedule with its next instants"),
        (status = 404, description = "No such schedule, or not one the caller may see", body = ErrorBody),
        TokenErrors,
    )
)]
async fn schedules_get(
    actor: Actor,
    State(state): State<SchedulesState>,
    Path(id): Path<String>,
) -> Result<Json<ScheduleOut>, ApiError> {
    let schedule = schedule_for(&state, &actor, &id).await?;
    let next = upcoming(&state, &schedule);
    Ok(Json(schedule_json(&schedule, Some(next))))
}

/// Changes a schedule; fields left out stay as they are.
#[utoipa::path(
    patch,
    path = "/api/v1/schedules/{id}",
    tag = "schedules",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("id" = String, Path, description = "The schedule's id")),
    request_body = SchedulePatch,
    responses(
        (status = 200, body = ScheduleOut, description = "The schedule with its next instants"),
        (status = 404, description = "No such schedule, or not one the caller may see", body = ErrorBody),
        (status = 403, description = "Not an admin of the audience team", body = ErrorBody),
        (status = 422, description = "A value is not acceptable", body = ErrorBody),
        TokenErrors,
        JsonBodyErrors,
    )
)]
async fn schedules_update(
    actor: Actor,
    State(state): State<SchedulesState>,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<SchedulePatch>,
) -> Result<Json<ScheduleOut>, ApiError> {
    let schedule = schedule_for(&state, &actor, &id).await?;
    let timing_changed = patch.cron.is_some()
        || patch.time_zone.is_some()
        || patch.enabled.is_some_and(|e| e != schedule.enabled);
    let spec = CronSpec::parse(
        patch.cron.as_deref().unwrap_or(&schedule.cron),
        patch.time_zone.as_deref().unwrap_or(&schedule.time_zone),
    )
    .map_err(ApiError::Validation)?;
    let message = match patch.message.as_deref() {
        Some(raw) => check_message(raw)?,
        None => schedule.message.clone(),
    };
    let channels = match patch.channels {
        Some(channels) => check_channels(channels)?,
        None => schedule.channels.clone(),
    };
    let catch_up_limit_ms = match patch.catch_up_limit.as_deref() {
        Some(raw) => check_catch_up_limit(raw)?,
        None => schedule.catch_up_limit_ms,
    };
    let audience = match patch.audience {
        Some(audience) => check_audience(&state, &actor, Some(audience)).await?,
        None => schedule.audience.clone(),
    };
    let fields = ScheduleFields {
        cron: spec.expression().to_string(),
        time_zone: spec.zone().name().to_string(),
        message,
        audience,
        channels,
        catch_up_limit_ms,
        enabled: patch.enabled.unwrap_or(schedule.enabled),
        urgent: patch.urgent.unwrap_or(schedule.urgent),
    };
    let next_due_at = if timing_changed {
        first_due(&state, &spec, fields.enabled)
    } else {
        schedule.next_due_at
    };
    let updated = update_schedule(
        &state.db,
        schedule.id,
        &fields,
        next_due_at,
        state.clock.now_ms(),
    )
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no schedule with id {id:?}")))?;
    state.wake.notify_one();
    let next = upcoming(&state, &updated);
    Ok(Json(schedule_json(&updated, Some(next))))
}

/// Deletes a schedule.
#[utoipa::path(
    delete,
    path = "/api/v1/schedules/{id}",
    tag = "schedules",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("id" = String, Path, description = "The schedule's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such schedule, or not one the caller may see", body = ErrorBody),
        TokenErrors,
    )
)]
async fn schedules_delete(
    actor: Actor,
    State(state): State<SchedulesState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let schedule = schedule_for(&state, &actor, &id).await?;
    delete_schedule(&state.db, schedule.id).await?;
    state.wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct RunsIn {
    limit: Option<String>,
}

/// A schedule's runs, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/schedules/{id}/runs",
    tag = "schedules",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("id" = String, Path, description = "The schedule's id"), ("limit" = Option<String>, Query, description = "How many runs")),
    responses(
        (status = 200, body = RunsOut, description = "The runs, newest first"),
        (status = 404, description = "No such schedule, or not one the caller may see", body = ErrorBody),
        (status = 422, description = "A value is not acceptable", body = ErrorBody),
        TokenErrors,
    )
)]
async fn runs_list(
    actor: Actor,
    State(state): State<SchedulesState>,
    Path(id): Path<String>,
    Query(input): Query<RunsIn>,
) -> Result<Json<RunsOut>, ApiError> {
    let schedule = schedule_for(&state, &actor, &id).await?;
    let limit = match input.limit.as_deref() {
        Some(raw) => raw
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::Validation("limit: a number from 1 to 1000".into()))?,
        None => 100,
    };
    let runs = list_runs(&state.db, schedule.id, limit)
        .await?
        .iter()
        .map(RunOut::from)
        .collect();
    Ok(Json(RunsOut { runs }))
}

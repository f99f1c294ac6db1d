//! `/api/v1/teams…`: teams and their members, for the operator or a signed-in account. An
//! account that creates a team is its admin; only a team's admins (or the operator) manage its
//! members; a team is visible only to its members (404 to others), and a member who is not an
//! admin is refused (403) what only admins may do. Members' days (`…/days`) are managed by the
//! admins too.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::{
    AddMemberError, DEFAULT_MORNING_AT, DEFAULT_TIME_ZONE, NewTeam, Role, Team, add_member,
    create_team, delete_team, find_team, list_members, list_teams, parse_morning_at,
    parse_time_zone, remove_member, role_of, valid_team_name,
};
use crate::accounts::auth::Actor;
use crate::http::error::{ApiError, ApiJson, ErrorBody};
use crate::http::openapi::{JsonBodyErrors, TokenErrors};
use crate::http::routes::Routes;
use crate::state::AppState;

/// The teams' routes' state: the shared infrastructure and the scheduler's wake-up (a new team
/// has a first morning, which the sleeping scheduler must learn about).
#[derive(Clone)]
pub struct TeamsState {
    pub app: AppState,
    pub scheduler_wake: Arc<Notify>,
}

crate::feature_state!(TeamsState);

pub fn router(state: TeamsState) -> Routes {
    Routes::new()
        .api(routes!(teams_list))
        .api(routes!(teams_create))
        .api(routes!(teams_get))
        .api(routes!(teams_delete))
        .api(routes!(members_list))
        .api(routes!(members_add))
        .api(routes!(members_remove))
        .api(routes!(days_list))
        .api(routes!(days_add))
        .api(routes!(days_remove))
        .with_state(state)
}

/// A path or body id; anything that is not one is simply not found.
pub fn parse_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.trim()
        .parse()
        .map_err(|_| ApiError::NotFound(format!("no {what} with id {raw:?}")))
}

/// The team, if `actor` may see it (`need_admin`: may manage it). Strangers learn nothing (404);
/// members who are not admins are told they may not (403).
pub async fn team_for(
    state: &AppState,
    actor: &Actor,
    raw_id: &str,
    need_admin: bool,
) -> Result<Team, ApiError> {
    let not_found = || ApiError::NotFound(format!("no team with id {raw_id:?}"));
    let id = parse_id(raw_id, "team")?;
    let team = find_team(&state.db, id).await?.ok_or_else(not_found)?;
    match actor {
        Actor::Operator => Ok(team),
        Actor::Account(account) => match role_of(&state.db, id, account.id).await? {
            Role::Stranger => Err(not_found()),
            Role::Member if need_admin => Err(ApiError::Forbidden(
                "only the team's admins may do that".into(),
            )),
            Role::Member | Role::Admin => Ok(team),
        },
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TeamIn {
    name: String,
    time_zone: Option<String>,
    morning_at: Option<String>,
}

/// Creates a team; an account that creates it is its admin.
#[utoipa::path(
    post,
    path = "/api/v1/teams",
    tag = "teams",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    request_body = TeamIn,
    responses(
        (status = 201, body = TeamWithMembers, description = "The team with its members"),
        (status = 422, description = "A value is not acceptable", body = ErrorBody),
        TokenErrors,
        JsonBodyErrors,
    )
)]
async fn teams_create(
    actor: Actor,
    State(teams): State<TeamsState>,
    ApiJson(input): ApiJson<TeamIn>,
) -> Result<(StatusCode, Json<TeamWithMembers>), ApiError> {
    let state = AppState::from_ref(&teams);
    let name = valid_team_name(&input.name).map_err(ApiError::Validation)?;
    let zone = parse_time_zone(input.time_zone.as_deref().unwrap_or(DEFAULT_TIME_ZONE))
        .map_err(ApiError::Validation)?;
    let time_zone = zone.name().to_string();
    let morning_at = parse_morning_at(input.morning_at.as_deref().unwrap_or(DEFAULT_MORNING_AT))
        .map_err(ApiError::Validation)?;
    let admin = match &actor {
        Actor::Operator => None,
        Actor::Account(account) => Some(account.id),
    };
    let team = create_team(
        &state.db,
        &state.ids,
        &NewTeam {
            next_morning_at: super::morning::next_morning(zone, &morning_at, state.clock.now_ms()),
            name,
            time_zone,
            morning_at,
        },
        admin,
    )
    .await?;
    teams.scheduler_wake.notify_one();
    let members = list_members(&state.db, team.id).await?;
    Ok((
        StatusCode::CREATED,
        Json(TeamWithMembers::new(team, members)),
    ))
}

/// A team as the API shows it (ids as strings).
#[derive(Serialize, ToSchema)]
struct TeamOut {
    id: String,
    name: String,
    /// An IANA time zone.
    time_zone: String,
    /// `HH:MM` in the team's zone.
    morning_at: String,
    /// RFC 3339.
    created_at: String,
}

impl From<Team> for TeamOut {
    fn from(team: Team) -> Self {
        TeamOut {
            id: team.id.to_string(),
            name: team.name,
            time_zone: team.time_zone,
            morning_at: team.morning_at,
            created_at: team.created_at,
        }
    }
}

/// A team with its members.
#[derive(Serialize, ToSchema)]
struct TeamWithMembers {
    id: String,
    name: String,
    time_zone: String,
    morning_at: String,
    created_at: String,
    members: Vec<MemberOut>,
}

impl TeamWithMembers {
    fn new(team: Team, members: Vec<super::Member>) -> TeamWithMembers {
        let team = TeamOut::from(team);
        TeamWithMembers {
            id: team.id,
            name: team.name,
            time_zone: team.time_zone,
            morning_at: team.morning_at,
            created_at: team.created_at,
            members: members.into_iter().map(MemberOut::from).collect(),
        }
    }
}

/// A member: an account, a contact or both.
#[derive(Serialize, ToSchema)]
struct MemberOut {
    id: String,
    account_id: Option<String>,
    contact_id: Option<String>,
    /// May manage the team.
    admin: bool,
    created_at: String,
}

impl From<super::Member> for MemberOut {
    fn from(member: super::Member) -> Self {
        MemberOut {
            id: member.id.to_string(),
            account_id: member.account_id.map(|id| id.to_string()),
            contact_id: member.contact_id.map(|id| id.to_string()),
            admin: member.admin,
            created_at: member.created_at,
        }
    }
}

/// A member's day or span of days.
#[derive(Serialize, ToSchema)]
struct DayOut {
    id: String,
    member_id: String,
    /// `YYYY-MM-DD`, the first day.
    from: String,
    /// `YYYY-MM-DD`, the last day (the same as `from` for one day).
    to: String,
    kind: String,
    note: String,
    created_at: String,
}

impl From<super::morning::MemberDay> for DayOut {
    fn from(day: super::morning::MemberDay) -> Self {
        DayOut {
            id: day.id.to_string(),
            member_id: day.member_id.to_string(),
            from: day.from,
            to: day.to,
            kind: day.kind,
            note: day.note,
            created_at: day.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct TeamsOut {
    teams: Vec<TeamOut>,
}

#[derive(Serialize, ToSchema)]
struct MembersOut {
    members: Vec<MemberOut>,
}

#[derive(Serialize, ToSchema)]
struct DaysOut {
    days: Vec<DayOut>,
}

/// The teams the caller sees (all, for the operator).
#[utoipa::path(
    get,
    path = "/api/v1/teams",
    tag = "teams",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    responses(
        (status = 200, body = TeamsOut, description = "The teams"),
        TokenErrors,
    )
)]
async fn teams_list(
    actor: Actor,
    State(state): State<AppState>,
) -> Result<Json<TeamsOut>, ApiError> {
    let account = match &actor {
        Actor::Operator => None,
        Actor::Account(account) => Some(account.id),
    };
    let teams = list_teams(&state.db, account).await?;
    Ok(Json(TeamsOut {
        teams: teams.into_iter().map(TeamOut::from).collect(),
    }))
}

/// One team with its members.
#[utoipa::path(
    get,
    path = "/api/v1/teams/{id}",
    tag = "teams",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("id" = String, Path, description = "The team's id")),
    responses(
        (status = 200, body = TeamWithMembers, description = "The team with its members"),
        (status = 404, description = "No such team, or not one of the caller's", body = ErrorBody),
        TokenErrors,
    )
)]
async fn teams_get(
    actor: Actor,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TeamWithMembers>, ApiError> {
    let team = team_for(&state, &actor, &id, false).await?;
    let members = list_members(&state.db, team.id).await?;
    Ok(Json(TeamWithMembers::new(team, members)))
}

/// Deletes a team.
#[utoipa::path(
    delete,
    path = "/api/v1/teams/{id}",
    tag = "teams",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("id" = String, Path, description = "The team's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "A member who is not an admin of the team", body = ErrorBody),
        (status = 404, description = "No such team, or not one of the caller's", body = ErrorBody),
        TokenErrors,
    )
)]
async fn teams_delete(
    actor: Actor,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let team = team_for(&state, &actor, &id, true).await?;
    delete_team(&state.db, team.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A team's members.
#[utoipa::path(
    get,
    path = "/api/v1/teams/{id}/members",
    tag = "teams",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("id" = String, Path, description = "The team's id")),
    responses(
        (status = 200, body = MembersOut, description = "The members"),
        (status = 404, description = "No such team, or not one of the caller's", body = ErrorBody),
        TokenErrors,
    )
)]
async fn members_list(
    actor: Actor,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<MembersOut>, ApiError> {
    let team = team_for(&state, &actor, &id, false).await?;
    let members = list_members(&state.db, team.id).await?;
    Ok(Json(MembersOut {
        members: members.into_iter().map(MemberOut::from).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MemberIn {
    account_id: Option<String>,
    contact_id: Option<String>,
    #[serde(default)]
    admin: bool,
}

fn body_id(raw: Option<&str>, field: &str) -> Result<Option<i64>, ApiError> {
    raw.map(|raw| {
        raw.trim()
            .parse::<i64>()
            .map_err(|_| ApiError::Validation(format!("{field}: {raw:?} is not an id")))
    })
    .transpose()
}

/// Adds a member: an account, a contact or both.
#[utoipa::path(
    post,
    path = "/api/v1/teams/{id}/members",
    tag = "teams",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("id" = String, Path, description = "The team's id")),
    request_body = MemberIn,
    responses(
        (status = 201, body = MemberOut, description = "The member"),
        (status = 403, description = "A member who is not an admin of the team", body = ErrorBody),
        (status = 404, description = "No such team, or not one of the caller's", body = ErrorBody),
        (status = 409, description = "Already a member", body = ErrorBody),
        (status = 422, description = "A value is not acceptable", body = ErrorBody),
        TokenErrors,
        JsonBodyErrors,
    )
)]
async fn members_add(
    actor: Actor,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<MemberIn>,
) -> Result<(StatusCode, Json<MemberOut>), ApiError> {
    let team = team_for(&state, &actor, &id, true).await?;
    let account_id = body_id(input.account_id.as_deref(), "account_id")?;
    let contact_id = body_id(input.contact_id.as_deref(), "contact_id")?;
    if account_id.is_none() && contact_id.is_none() {
        return Err(ApiError::Validation(
            "a member is an account_id, a contact_id or both".into(),
        ));
    }
    let member = add_member(
        &state.db,
        &state.ids,
        team.id,
        account_id,
        contact_id,
        input.admin,
    )
    .await
    .map_err(|e| match e {
        AddMemberError::Store(e) => ApiError::from(e),
        AddMemberError::AlreadyMember => ApiError::Conflict(e.to_string()),
        other => ApiError::Validation(other.to_string()),
    })?;
    Ok((StatusCode::CREATED, Json(MemberOut::from(member))))
}

/// Removes a member.
#[utoipa::path(
    delete,
    path = "/api/v1/teams/{id}/members/{member_id}",
    tag = "teams",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("id" = String, Path, description = "The team's id"), ("member_id" = String, Path, description = "The member's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "A member who is not an admin of the team", body = ErrorBody),
        (status = 404, description = "No such team, or not one of the caller's", body = ErrorBody),
        TokenErrors,
    )
)]
async fn members_remove(
    actor: Actor,
    State(state): State<AppState>,
    Path((id, member_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let team = team_for(&state, &actor, &id, true).await?;
    let member = parse_id(&member_id, "member")?;
    if !remove_member(&state.db, team.id, member).await? {
        return Err(ApiError::NotFound(format!(
            "no member {member_id:?} in this team"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DayIn {
    member_id: String,
    from: String,
    to: Option<String>,
    kind: String,
    note: Option<String>,
}

/// Adds a member's day or span of days.
#[utoipa::path(
    post,
    path = "/api/v1/teams/{id}/days",
    tag = "teams",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("id" = String, Path, description = "The team's id")),
    request_body = DayIn,
    responses(
        (status = 201, body = DayOut, description = "The day entry"),
        (status = 403, description = "A member who is not an admin of the team", body = ErrorBody),
        (status = 404, description = "No such team, or not one of the caller's", body = ErrorBody),
        (status = 422, description = "A value is not acceptable", body = ErrorBody),
        TokenErrors,
        JsonBodyErrors,
    )
)]
async fn days_add(
    actor: Actor,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<DayIn>,
) -> Result<(StatusCode, Json<DayOut>), ApiError> {
    use super::morning::{NewDay, add_day, check_span, parse_day, valid_kind, valid_note};
    let team = team_for(&state, &actor, &id, true).await?;
    let member_id = body_id(Some(&input.member_id), "member_id")?.unwrap_or_default();
    let from = parse_day(&input.from, "from").map_err(ApiError::Validation)?;
    let to = match input.to.as_deref() {
        Some(raw) => parse_day(raw, "to").map_err(ApiError::Validation)?,
        None => from,
    };
    check_span(from, to).map_err(ApiError::Validation)?;
    let kind = valid_kind(&input.kind).map_err(ApiError::Validation)?;
    let note =
        valid_note(input.note.as_deref().unwrap_or_default()).map_err(ApiError::Validation)?;
    let day = add_day(
        &state.db,
        &state.ids,
        team.id,
        &NewDay {
            member_id,
            from,
            to,
            kind,
            note,
        },
    )
    .await?
    .ok_or_else(|| {
        ApiError::Validation(format!(
            "member_id: no member {:?} in this team",
            input.member_id
        ))
    })?;
    Ok((StatusCode::CREATED, Json(DayOut::from(day))))
}

/// The members' days (leave, remote work, …) of a team.
#[utoipa::path(
    get,
    path = "/api/v1/teams/{id}/days",
    tag = "teams",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("id" = String, Path, description = "The team's id")),
    responses(
        (status = 200, body = DaysOut, description = "The days, by first day"),
        (status = 404, description = "No such team, or not one of the caller's", body = ErrorBody),
        TokenErrors,
    )
)]
async fn days_list(
    actor: Actor,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DaysOut>, ApiError> {
    let team = team_for(&state, &actor, &id, false).await?;
    let days = super::morning::list_days(&state.db, team.id).await?;
    Ok(Json(DaysOut {
        days: days.into_iter().map(DayOut::from).collect(),
    }))
}

/// Removes a day entry.
#[utoipa::path(
    delete,
    path = "/api/v1/teams/{id}/days/{day_id}",
    tag = "teams",
    security(("operator_token" = []), ("login_token" = []), ("operator_cookie" = [])),
    params(("id" = String, Path, description = "The team's id"), ("day_id" = String, Path, description = "The day entry's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "A member who is not an admin of the team", body = ErrorBody),
        (status = 404, description = "No such team, or not one of the caller's", body = ErrorBody),
        TokenErrors,
    )
)]
async fn days_remove(
    actor: Actor,
    State(state): State<AppState>,
    Path((id, day_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let team = team_for(&state, &actor, &id, true).await?;
    let day = parse_id(&day_id, "day")?;
    if !super::morning::delete_day(&state.db, team.id, day).await? {
        return Err(ApiError::NotFound(format!(
            "no day {day_id:?} in this team"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

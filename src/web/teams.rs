//! `/teams`: my teams (those I am a member of) with their members and their upcoming member
//! days (days off, half days, anniversaries, birthdays: what the morning message tells);
//! creating a team (I become its first admin); adding and removing members and days, for the
//! team's admins.
//! Everything goes through `teams`' functions with its API's permission rules: a team I am not
//! in is not found, and a member who is not an admin may not manage it.

use crate::http::routes::{Outside, Routes};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::csrf::{NoFields, SignedInForm};
use super::i18n::Messages;
use super::session::{SignedIn, Visitor};
use super::{
    Field, Layout, MessagePage, PageResult, WebState, changed, found, internal_error,
    not_found_page, or_internal_error, render_or_internal_error,
};
use crate::accounts::Account;
use crate::store::StoreError;
use crate::teams::{
    AddMemberError, DEFAULT_MORNING_AT, DEFAULT_TIME_ZONE, NewTeam, Role, Team, add_member,
    create_team, find_team, list_teams, members_with_names, parse_morning_at, parse_time_zone,
    remove_member, role_of, valid_team_name,
};

pub fn routes() -> Routes<WebState> {
    Routes::new()
        .outside(Outside::Page, Method::GET, "/teams", page)
        .outside(Outside::Page, Method::POST, "/teams", create)
        .outside(Outside::Page, Method::POST, "/teams/{id}/members", add)
        .outside(
            Outside::Page,
            Method::POST,
            "/teams/{id}/members/{member}/remove",
            remove,
        )
        .outside(Outside::Page, Method::POST, "/teams/{id}/days", add_day)
        .outside(
            Outside::Page,
            Method::POST,
            "/teams/{id}/days/{day}/remove",
            remove_day,
        )
}

/// The kinds of day the form offers (the API takes other words too).
const DAY_KINDS: [&str; 4] = ["off", "half", "anniversary", "birthday"];

fn kind_name(t: &Messages, kind: &str) -> String {
    match kind {
        "off" => t.days_kind_off.to_string(),
        "half" => t.days_kind_half.to_string(),
        "anniversary" => t.days_kind_anniversary.to_string(),
        "birthday" => t.days_kind_birthday.to_string(),
        other => other.to_string(),
    }
}

struct DayRow {
    id: i64,
    who: String,
    kind: String,
    from: String,
    to: String,
    note: String,
}

/// An option of the day form's selects.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

/// The day form, as offered or as typed.
#[derive(Default)]
struct DayForm {
    member: String,
    member_error: Option<&'static str>,
    kind: String,
    from: Field,
    to: Field,
    note: Field,
}

struct MemberRow {
    id: i64,
    name: String,
    admin: bool,
}

struct TeamBlock {
    id: i64,
    name: String,
    time_zone: String,
    morning_at: String,
    i_admin: bool,
    members: Vec<MemberRow>,
    new_member: Field,
    days: Vec<DayRow>,
    day_members: Vec<Choice>,
    day_kinds: Vec<Choice>,
    day_form: DayForm,
}

struct CreateForm {
    name: Field,
    time_zone: Field,
    morning_at: Field,
}

#[derive(Template)]
#[template(path = "web/teams.html")]
struct TeamsPage {
    layout: Layout,
    notice: Option<&'static str>,
    teams: Vec<TeamBlock>,
    create: CreateForm,
}

#[derive(Default)]
struct Typed {
    notice: Option<&'static str>,
    create: Option<CreateForm>,
    new_member: Option<(i64, Field)>,
    day_form: Option<(i64, DayForm)>,
}

async fn build(
    state: &WebState,
    visitor: &Visitor,
    account: &Account,
    typed: Typed,
) -> Result<TeamsPage, StoreError> {
    let db = &state.db;
    let t = visitor.lang.messages();
    let mut typed = typed;
    let mut teams = Vec::new();
    for team in list_teams(db, Some(account.id)).await? {
        let i_admin = role_of(db, team.id, account.id).await? == Role::Admin;
        let members: Vec<MemberRow> = members_with_names(db, team.id)
            .await?
            .into_iter()
            .map(|(member, name)| MemberRow {
                id: member.id,
                name,
                admin: member.admin,
            })
            .collect();
        let new_member = match &typed.new_member {
            Some((id, field)) if *id == team.id => field.clone(),
            _ => Field::default(),
        };
        // Upcoming in the team's own calendar.
        let today = parse_time_zone(&team.time_zone)
            .ok()
            .and_then(|zone| {
                chrono::DateTime::from_timestamp_millis(state.clock.now_ms())
                    .map(|now| now.with_timezone(&zone).date_naive().to_string())
            })
            .unwrap_or_default();
        let days = crate::teams::morning::upcoming_days(db, team.id, &today)
            .await?
            .into_iter()
            .map(|day| DayRow {
                id: day.id,
                who: members
                    .iter()
                    .find(|m| m.id == day.member_id)
                    .map(|m| m.name.clone())
                    .unwrap_or_default(),
                kind: kind_name(t, &day.kind),
                from: day.from,
                to: day.to,
                note: day.note,
            })
            .collect();
        let day_form = match typed.day_form.take() {
            Some((id, form)) if id == team.id => form,
            other => {
                typed.day_form = other;
                DayForm {
                    kind: "off".into(),
                    ..DayForm::default()
                }
            }
        };
        let day_members = members
            .iter()
            .map(|m| Choice {
                value: m.id.to_string(),
                label: m.name.clone(),
                selected: day_form.member == m.id.to_string(),
            })
            .collect();
        let day_kinds = DAY_KINDS
            .iter()
            .map(|kind| Choice {
                value: kind.to_string(),
                label: kind_name(t, kind),
                selected: day_form.kind == *kind,
            })
            .collect();
        teams.push(TeamBlock {
            id: team.id,
            name: team.name,
            time_zone: team.time_zone,
            morning_at: team.morning_at,
            i_admin,
            members,
            new_member,
            days,
            day_members,
            day_kinds,
            day_form,
        });
    }
    Ok(TeamsPage {
        layout: Layout::new(visitor, visitor.lang.messages().teams_title),
        notice: typed.notice,
        teams,
        create: typed.create.unwrap_or(CreateForm {
            name: Field::default(),
            time_zone: Field::typed(DEFAULT_TIME_ZONE),
            morning_at: Field::typed(DEFAULT_MORNING_AT),
        }),
    })
}

async fn show(
    state: &WebState,
    visitor: &Visitor,
    account: &Account,
    typed: Typed,
    status: StatusCode,
) -> Response {
    let built = build(state, visitor, account, typed).await;
    render_or_internal_error(visitor, status, built)
}

async fn page(State(state): State<WebState>, signed_in: SignedIn) -> Response {
    show(
        &state,
        &signed_in.visitor,
        &signed_in.account,
        Typed::default(),
        StatusCode::OK,
    )
    .await
}

/// The page again after a change, with a notice of what was done.
async fn show_notice(
    state: &WebState,
    visitor: &Visitor,
    account: &Account,
    notice: &'static str,
) -> Response {
    let typed = Typed {
        notice: Some(notice),
        ..Typed::default()
    };
    show(state, visitor, account, typed, StatusCode::OK).await
}

#[derive(Deserialize)]
struct CreateIn {
    #[serde(default)]
    name: String,
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    morning_at: String,
}

async fn create(
    State(state): State<WebState>,
    SignedInForm {
        visitor,
        account,
        form,
    }: SignedInForm<CreateIn>,
) -> Response {
    let t = visitor.lang.messages();
    let mut typed = CreateForm {
        name: Field::typed(&form.name),
        time_zone: Field::typed(&form.time_zone),
        morning_at: Field::typed(&form.morning_at),
    };
    let name = valid_team_name(&form.name);
    if name.is_err() {
        typed.name.error = Some(t.teams_err_name);
    }
    let zone = parse_time_zone(&form.time_zone);
    if zone.is_err() {
        typed.time_zone.error = Some(t.subs_err_time_zone);
    }
    let morning_at = parse_morning_at(&form.morning_at);
    if morning_at.is_err() {
        typed.morning_at.error = Some(t.teams_err_morning);
    }
    let (Ok(name), Ok(zone), Ok(morning_at)) = (name, zone, morning_at) else {
        let typed = Typed {
            create: Some(typed),
            ..Typed::default()
        };
        return show(
            &state,
            &visitor,
            &account,
            typed,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let team = NewTeam {
        next_morning_at: crate::teams::morning::next_morning(
            zone,
            &morning_at,
            state.clock.now_ms(),
        ),
        name,
        time_zone: zone.name().to_string(),
        morning_at,
    };
    match create_team(&state.db, &state.ids, &team, Some(account.id)).await {
        Ok(_) => {
            // The sleeping scheduler learns of the new team's first morning.
            state.schedules_wake.notify_one();
            show_notice(&state, &visitor, &account, t.teams_created).await
        }
        Err(error) => internal_error(&visitor, &error),
    }
}

fn not_found(visitor: &Visitor) -> Response {
    let t = visitor.lang.messages();
    let text = t.teams_not_found;
    not_found_page(visitor, text, text, "/teams", t.teams_title)
}

/// The team with this path id when `account` may manage it; otherwise the refusal page (a
/// team I am not in is not found; a member who is not an admin is refused).
async fn managed_team(
    state: &WebState,
    visitor: &Visitor,
    account: &Account,
    raw: &str,
) -> Result<Team, Response> {
    let t = visitor.lang.messages();
    let Ok(id) = raw.parse::<i64>() else {
        return Err(not_found(visitor));
    };
    let team = found(visitor, find_team(&state.db, id).await, not_found)?;
    match role_of(&state.db, id, account.id).await {
        Ok(Role::Admin) => Ok(team),
        Ok(Role::Member) => {
            Err(
                MessagePage::new(visitor, t.teams_admins_only, t.teams_admins_only, "bad")
                    .link("/teams", t.teams_title)
                    .with_status(StatusCode::FORBIDDEN),
            )
        }
        Ok(Role::Stranger) => Err(not_found(visitor)),
        Err(error) => Err(internal_error(visitor, &error)),
    }
}

#[derive(Deserialize)]
struct AddIn {
    #[serde(default)]
    account: String,
    admin: Option<String>,
}

async fn add(
    State(state): State<WebState>,
    Path(id): Path<String>,
    SignedInForm {
        visitor,
        account,
        form,
    }: SignedInForm<AddIn>,
) -> PageResult {
    let team = managed_team(&state, &visitor, &account, &id).await?;
    let t = visitor.lang.messages();
    let mut field = Field::typed(&form.account);
    let member = or_internal_error(
        &visitor,
        crate::accounts::find_by_name(&state.db, form.account.trim()).await,
    )?;
    let outcome = match member {
        None => Err(t.teams_err_no_account),
        Some(member) => match add_member(
            &state.db,
            &state.ids,
            team.id,
            Some(member.id),
            None,
            form.admin.is_some(),
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(AddMemberError::AlreadyMember) => Err(t.teams_err_already),
            Err(AddMemberError::NoAccount(_) | AddMemberError::NoContact(_)) => {
                Err(t.teams_err_no_account)
            }
            Err(AddMemberError::Store(error)) => return Err(internal_error(&visitor, &error)),
        },
    };
    let (typed, status) = match outcome {
        Ok(()) => (
            Typed {
                notice: Some(t.teams_member_added),
                ..Typed::default()
            },
            StatusCode::OK,
        ),
        Err(message) => {
            field.error = Some(message);
            (
                Typed {
                    new_member: Some((team.id, field)),
                    ..Typed::default()
                },
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
    };
    Ok(show(&state, &visitor, &account, typed, status).await)
}

async fn remove(
    State(state): State<WebState>,
    Path((id, member)): Path<(String, String)>,
    SignedInForm {
        visitor, account, ..
    }: SignedInForm<NoFields>,
) -> PageResult {
    let team = managed_team(&state, &visitor, &account, &id).await?;
    let removed = match member.parse::<i64>() {
        Ok(member) => remove_member(&state.db, team.id, member).await,
        Err(_) => Ok(false),
    };
    changed(&visitor, removed, not_found)?;
    let t = visitor.lang.messages();
    Ok(show_notice(&state, &visitor, &account, t.teams_member_removed).await)
}

#[derive(Deserialize)]
struct DayIn {
    #[serde(default)]
    member: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    note: String,
}

/// Adds a member's day (or days), checked as the API checks them (`teams::morning`).
async fn add_day(
    State(state): State<WebState>,
    Path(id): Path<String>,
    SignedInForm {
        visitor,
        account,
        form,
    }: SignedInForm<DayIn>,
) -> PageResult {
    use crate::teams::morning::{NewDay, check_span, parse_day, valid_kind, valid_note};
    let team = managed_team(&state, &visitor, &account, &id).await?;
    let t = visitor.lang.messages();
    let mut typed = DayForm {
        member: form.member.clone(),
        member_error: None,
        kind: form.kind.clone(),
        from: Field::typed(&form.from),
        to: Field::typed(&form.to),
        note: Field::typed(&form.note),
    };
    let member_id = form.member.trim().parse::<i64>().ok();
    if member_id.is_none() {
        typed.member_error = Some(t.days_err_member);
    }
    let from = parse_day(&form.from, "from").ok();
    if from.is_none() {
        typed.from.error = Some(t.days_err_date);
    }
    let to = if form.to.trim().is_empty() {
        from
    } else {
        let to = parse_day(&form.to, "to").ok();
        if to.is_none() {
            typed.to.error = Some(t.days_err_date);
        }
        to
    };
    if let (Some(from), Some(to)) = (from, to)
        && check_span(from, to).is_err()
    {
        typed.to.error = Some(t.days_err_range);
    }
    // The select offers the usual kinds; a tampered value is refused like the API refuses it.
    let kind = valid_kind(&form.kind).ok();
    let note = valid_note(&form.note).ok();
    if note.is_none() {
        typed.note.error = Some(t.days_err_note);
    }
    let refused = |typed: DayForm| Typed {
        day_form: Some((team.id, typed)),
        ..Typed::default()
    };
    let (Some(member_id), Some(from), Some(to), Some(kind), Some(note), None) =
        (member_id, from, to, kind, note, typed.to.error)
    else {
        return Ok(show(
            &state,
            &visitor,
            &account,
            refused(typed),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await);
    };
    let day = NewDay {
        member_id,
        from,
        to,
        kind,
        note,
    };
    let added = crate::teams::morning::add_day(&state.db, &state.ids, team.id, &day).await;
    if or_internal_error(&visitor, added)?.is_none() {
        typed.member_error = Some(t.days_err_member);
        return Ok(show(
            &state,
            &visitor,
            &account,
            refused(typed),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await);
    }
    Ok(show_notice(&state, &visitor, &account, t.days_added).await)
}

async fn remove_day(
    State(state): State<WebState>,
    Path((id, day)): Path<(String, String)>,
    SignedInForm {
        visitor, account, ..
    }: SignedInForm<NoFields>,
) -> PageResult {
    let team = managed_team(&state, &visitor, &account, &id).await?;
    let removed = match day.parse::<i64>() {
        Ok(day) => crate::teams::morning::delete_day(&state.db, team.id, day).await,
        Err(_) => Ok(false),
    };
    changed(&visitor, removed, not_found)?;
    let t = visitor.lang.messages();
    Ok(show_notice(&state, &visitor, &account, t.days_removed).await)
}

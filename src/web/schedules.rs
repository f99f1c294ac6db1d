//! `/schedules`: the scheduled announcements I may manage — those I made and those addressed to
//! the teams I administer (`schedules::list_schedules`, the API's rule) — each with its next
//! fire times, its run history (due time, sent or skipped, to whom), enabling, disabling,
//! deleting and editing (`/schedules/{id}/edit`); and the form that makes one (cron, zone,
//! message, audience, channels, urgent, catch-up limit), which the edit page shares. The form's
//! **Preview** button shows the next five fire times, computed by `schedules::next_instants`
//! like the preview endpoint, without saving anything.
//!
//! Everything is checked and stored through `schedules`' and `teams`' functions: a schedule I
//! may not manage is not found; a team I do not administer and messengers not linked to my
//! account cannot be an audience. The operator (the `/login` cookie, [`Manager::Operator`])
//! manages every schedule, may address any team, and alone a watched repository's subscribers,
//! as the API allows.

use std::collections::BTreeSet;

use crate::http::routes::{Outside, Routes};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::csrf::{CsrfForm, NoFields};
use super::i18n::Messages;
use super::session::Visitor;
use super::{
    Field, Layout, PageResult, WebState, changed, found, internal_error, not_found_page,
    or_internal_error, render, render_or_internal_error,
};
use crate::accounts::Account;
use crate::schedules::api::{
    DEFAULT_CATCH_UP_LIMIT, PREVIEW_COUNT, check_catch_up_limit, check_channels, check_message,
};
use crate::schedules::cron::CronSpec;
use crate::schedules::{
    Audience, Schedule, ScheduleFields, account_may_manage, delete_schedule, find_schedule,
    first_due_at, insert_schedule, list_runs, list_schedules, next_instants, update_schedule,
};
use crate::store::StoreError;
use crate::teams::{DEFAULT_TIME_ZONE, Role};

/// The audience choice that keeps an edited schedule's audience as it is, when the form cannot
/// offer it (a repository's subscribers to an account, a team it no longer administers, an
/// account's messengers to the operator).
const KEPT_AUDIENCE: &str = "kept";

/// How many runs each schedule lists.
const RUNS_SHOWN: i64 = 10;
/// Zones offered by the zone field's list (any IANA zone may be typed).
const ZONES: &[&str] = &[
    "Asia/Seoul",
    "UTC",
    "Asia/Tokyo",
    "Asia/Shanghai",
    "Asia/Singapore",
    "Asia/Kolkata",
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Australia/Sydney",
];

pub fn routes() -> Routes<WebState> {
    Routes::new()
        .outside(Outside::Page, Method::GET, "/schedules", page)
        .outside(Outside::Page, Method::POST, "/schedules", create)
        .outside(
            Outside::Page,
            Method::POST,
            "/schedules/{id}/enable",
            enable,
        )
        .outside(
            Outside::Page,
            Method::POST,
            "/schedules/{id}/disable",
            disable,
        )
        .outside(
            Outside::Page,
            Method::POST,
            "/schedules/{id}/delete",
            delete,
        )
        .outside(
            Outside::Page,
            Method::GET,
            "/schedules/{id}/edit",
            edit_page,
        )
        .outside(Outside::Page, Method::POST, "/schedules/{id}/edit", edit)
}

/// A fire time: the RFC 3339 instant (as the preview endpoint gives it) and how it is shown.
struct Instant {
    rfc3339: String,
    text: String,
}

/// A fire time shown in its zone's wall-clock time, with the weekday in the page's language:
/// `2026-06-01 09:00 Mon (+09:00)`.
fn instant(t: &Messages, rfc3339: String) -> Instant {
    use chrono::Datelike;
    let text = match chrono::DateTime::parse_from_rfc3339(&rfc3339) {
        Ok(at) => {
            let weekday = t
                .sched_weekdays
                .split(' ')
                .nth(at.weekday().num_days_from_monday() as usize)
                .unwrap_or_default();
            format!(
                "{} {weekday} ({})",
                at.format("%Y-%m-%d %H:%M"),
                at.format("%:z")
            )
        }
        Err(_) => rfc3339.clone(),
    };
    Instant { rfc3339, text }
}

struct RunRow {
    due: Instant,
    sent: bool,
    recipients: String,
    count: usize,
}

struct ScheduleRow {
    id: i64,
    cron: String,
    time_zone: String,
    message: String,
    audience: String,
    channels: String,
    catch_up: String,
    enabled: bool,
    urgent: bool,
    next: Vec<Instant>,
    runs: Vec<RunRow>,
    just_made: bool,
}

/// An option of a select or a checkbox of the form.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

/// The create form, as offered or as typed.
struct CreateForm {
    cron: Field,
    time_zone: Field,
    message: Field,
    catch_up_limit: Field,
    audience: Vec<Choice>,
    audience_error: Option<&'static str>,
    /// The operator's repository audience: its URL and branch (`None` for an account).
    repository: Option<(Field, Field)>,
    contacts: Vec<Choice>,
    channels: Vec<Choice>,
    channels_error: Option<&'static str>,
    urgent: bool,
    enabled: bool,
    /// The next fire times, after **Preview**.
    preview: Option<Vec<Instant>>,
}

#[derive(Template)]
#[template(path = "web/schedules.html")]
struct SchedulesPage {
    layout: Layout,
    notice: Option<&'static str>,
    schedules: Vec<ScheduleRow>,
    form: CreateForm,
    zones: &'static [&'static str],
}

/// What the form said, before it is checked.
#[derive(Default)]
struct Typed {
    cron: String,
    time_zone: String,
    message: String,
    catch_up_limit: String,
    audience: String,
    contacts: BTreeSet<String>,
    /// The repository URL and branch of a repository audience (the operator's).
    repository: String,
    branch: String,
    channels: BTreeSet<String>,
    urgent: bool,
    enabled: bool,
}

impl Typed {
    fn blank() -> Typed {
        Typed {
            time_zone: DEFAULT_TIME_ZONE.to_string(),
            catch_up_limit: humantime::format_duration(DEFAULT_CATCH_UP_LIMIT).to_string(),
            enabled: true,
            ..Typed::default()
        }
    }

    /// A schedule's settings as its edit form shows them first.
    fn from_schedule(schedule: &Schedule) -> Typed {
        let (audience, contacts) = match &schedule.audience {
            Audience::Team { team_id } => (format!("team:{team_id}"), BTreeSet::new()),
            Audience::Contacts { contact_ids } => (
                "contacts".to_string(),
                contact_ids.iter().map(i64::to_string).collect(),
            ),
            Audience::Repository { .. } => (KEPT_AUDIENCE.to_string(), BTreeSet::new()),
        };
        Typed {
            cron: schedule.cron.clone(),
            time_zone: schedule.time_zone.clone(),
            message: schedule.message.clone(),
            catch_up_limit: humantime::format_duration(std::time::Duration::from_millis(
                schedule.catch_up_limit_ms.max(0) as u64,
            ))
            .to_string(),
            audience,
            contacts,
            repository: String::new(),
            branch: String::new(),
            channels: schedule.channels.iter().flatten().cloned().collect(),
            urgent: schedule.urgent,
            enabled: schedule.enabled,
        }
    }

    fn from_pairs(pairs: &[(String, String)]) -> Typed {
        let mut typed = Typed::default();
        for (key, value) in pairs {
            match key.as_str() {
                "cron" => typed.cron = value.clone(),
                "time_zone" => typed.time_zone = value.clone(),
                "message" => typed.message = value.clone(),
                "catch_up_limit" => typed.catch_up_limit = value.clone(),
                "audience" => typed.audience = value.clone(),
                "repository" => typed.repository = value.clone(),
                "branch" => typed.branch = value.clone(),
                "contact" => {
                    typed.contacts.insert(value.clone());
                }
                "channel" => {
                    typed.channels.insert(value.clone());
                }
                "urgent" => typed.urgent = true,
                "enabled" => typed.enabled = true,
                _ => {}
            }
        }
        typed
    }
}

/// The form's errors and preview, beside what was typed.
#[derive(Default)]
struct Checked {
    cron: Option<&'static str>,
    time_zone: Option<&'static str>,
    message: Option<&'static str>,
    catch_up_limit: Option<&'static str>,
    audience: Option<&'static str>,
    repository: Option<&'static str>,
    channels: Option<&'static str>,
    preview: Option<Vec<Instant>>,
}

/// A page shown again after a form: its notice, the form as typed, the schedule just made.
#[derive(Default)]
struct Shown {
    notice: Option<&'static str>,
    form: Option<(Typed, Checked)>,
    just_made: Option<i64>,
}

fn contact_label(contact: &crate::contacts::Contact) -> String {
    if contact.nick_name.is_empty() {
        format!("{} {}", contact.channel, contact.address)
    } else {
        format!(
            "{} {} ({})",
            contact.channel, contact.nick_name, contact.address
        )
    }
}

/// Who manages schedules on these pages: an account — the schedules it made and those to the
/// teams it administers — or the operator (the `/login` cookie), who manages every schedule and
/// may address any team or a watched repository's subscribers, as the API lets it.
enum Manager {
    Account(Account),
    Operator,
}

impl Manager {
    /// The operator's cookie wins over an account session, as in the API (`http::auth`).
    fn of(visitor: &Visitor) -> Option<Manager> {
        if visitor.operator {
            return Some(Manager::Operator);
        }
        visitor.account.clone().map(Manager::Account)
    }

    fn account_id(&self) -> Option<i64> {
        match self {
            Manager::Account(account) => Some(account.id),
            Manager::Operator => None,
        }
    }
}

/// The teams the manager may address: those an account administers; every team for the
/// operator.
async fn administered_teams(
    state: &WebState,
    manager: &Manager,
) -> Result<Vec<crate::teams::Team>, StoreError> {
    let Manager::Account(account) = manager else {
        return crate::teams::list_teams(&state.db, None).await;
    };
    let mut teams = Vec::new();
    for id in crate::teams::administered_by(&state.db, account.id).await? {
        if let Some(team) = crate::teams::find_team(&state.db, id).await? {
            teams.push(team);
        }
    }
    Ok(teams)
}

/// The messengers an account may address: its own. The operator has none.
async fn my_contacts(
    state: &WebState,
    manager: &Manager,
) -> Result<Vec<crate::contacts::Contact>, StoreError> {
    match manager {
        Manager::Account(account) => {
            crate::contacts::contacts_of_account(&state.db, account.id).await
        }
        Manager::Operator => Ok(Vec::new()),
    }
}

async fn build(
    state: &WebState,
    visitor: &Visitor,
    manager: &Manager,
    shown: Shown,
) -> Result<SchedulesPage, StoreError> {
    let t = visitor.lang.messages();
    let db = &state.db;
    let now = state.clock.now_ms();
    let contacts = my_contacts(state, manager).await?;
    let teams = administered_teams(state, manager).await?;
    let mut rows = Vec::new();
    for schedule in list_schedules(db, manager.account_id()).await? {
        rows.push(schedule_row(state, visitor, &schedule, &contacts, now, &shown).await?);
    }
    let (typed, checked) = shown
        .form
        .unwrap_or_else(|| (Typed::blank(), Checked::default()));
    let operator = matches!(manager, Manager::Operator);
    let form = form_of(
        state,
        t,
        &contacts,
        &teams,
        operator,
        (typed, checked),
        None,
    )
    .await?;
    Ok(SchedulesPage {
        layout: Layout::new(visitor, t.sched_title),
        notice: shown.notice,
        schedules: rows,
        form,
        zones: ZONES,
    })
}

/// The schedule form as offered or as typed, with its errors. `kept` is the audience of the
/// schedule being edited, offered to keep when it is not one of the choices.
async fn form_of(
    state: &WebState,
    t: &'static Messages,
    contacts: &[crate::contacts::Contact],
    teams: &[crate::teams::Team],
    operator: bool,
    (typed, checked): (Typed, Checked),
    kept: Option<&Audience>,
) -> Result<CreateForm, StoreError> {
    let mut audience: Vec<Choice> = teams
        .iter()
        .map(|team| {
            let value = format!("team:{}", team.id);
            Choice {
                selected: typed.audience == value,
                value,
                label: format!("{} {}", t.sched_audience_team, team.name),
            }
        })
        .collect();
    if operator {
        audience.push(Choice {
            value: "repository".into(),
            label: t.sched_audience_repository.into(),
            selected: typed.audience == "repository",
        });
    } else {
        audience.push(Choice {
            value: "contacts".into(),
            label: t.sched_audience_contacts.into(),
            selected: typed.audience == "contacts",
        });
    }
    let kept_label = match kept {
        Some(Audience::Team { team_id }) if !teams.iter().any(|team| team.id == *team_id) => {
            let name = crate::teams::find_team(&state.db, *team_id)
                .await?
                .map(|team| team.name)
                .unwrap_or_else(|| team_id.to_string());
            Some(format!("{} {name}", t.sched_audience_team))
        }
        // Messengers that are not the manager's own (the operator edits an account's).
        Some(Audience::Contacts { contact_ids })
            if !contact_ids
                .iter()
                .all(|id| contacts.iter().any(|c| c.id == *id)) =>
        {
            let ids: Vec<String> = contact_ids.iter().map(i64::to_string).collect();
            Some(format!("{} {}", t.sched_contacts, ids.join(", ")))
        }
        Some(Audience::Repository { key, branch, .. }) => Some(match branch {
            Some(branch) => format!("{key} · {branch}"),
            None => key.clone(),
        }),
        _ => None,
    };
    if let Some(label) = kept_label {
        audience.insert(
            0,
            Choice {
                value: KEPT_AUDIENCE.into(),
                label,
                selected: typed.audience == KEPT_AUDIENCE
                    || matches!(kept, Some(Audience::Team { team_id }) if typed.audience == format!("team:{team_id}")),
            },
        );
    }
    Ok(CreateForm {
        cron: Field {
            value: typed.cron.clone(),
            error: checked.cron,
        },
        time_zone: Field {
            value: typed.time_zone.clone(),
            error: checked.time_zone,
        },
        message: Field {
            value: typed.message.clone(),
            error: checked.message,
        },
        catch_up_limit: Field {
            value: typed.catch_up_limit.clone(),
            error: checked.catch_up_limit,
        },
        audience,
        audience_error: checked.audience,
        repository: operator.then(|| {
            (
                Field {
                    value: typed.repository.clone(),
                    error: checked.repository,
                },
                Field::typed(&typed.branch),
            )
        }),
        contacts: contacts
            .iter()
            .map(|c| Choice {
                value: c.id.to_string(),
                label: contact_label(c),
                selected: typed.contacts.contains(&c.id.to_string()),
            })
            .collect(),
        channels: crate::contacts::CHANNELS
            .iter()
            .map(|c| Choice {
                value: c.to_string(),
                label: c.to_string(),
                selected: typed.channels.contains(*c),
            })
            .collect(),
        channels_error: checked.channels,
        urgent: typed.urgent,
        enabled: typed.enabled,
        preview: checked.preview,
    })
}

async fn schedule_row(
    state: &WebState,
    visitor: &Visitor,
    schedule: &Schedule,
    my_contacts: &[crate::contacts::Contact],
    now: i64,
    shown: &Shown,
) -> Result<ScheduleRow, StoreError> {
    let t = visitor.lang.messages();
    let audience = match &schedule.audience {
        Audience::Team { team_id } => {
            let name = crate::teams::find_team(&state.db, *team_id)
                .await?
                .map(|team| team.name)
                .unwrap_or_else(|| team_id.to_string());
            format!("{} {name}", t.sched_audience_team)
        }
        Audience::Contacts { contact_ids } => contact_ids
            .iter()
            .map(|id| {
                my_contacts
                    .iter()
                    .find(|c| c.id == *id)
                    .map(contact_label)
                    .unwrap_or_else(|| id.to_string())
            })
            .collect::<Vec<_>>()
            .join(", "),
        Audience::Repository { key, branch, .. } => match branch {
            Some(branch) => format!("{key} · {branch}"),
            None => key.clone(),
        },
    };
    let spec = CronSpec::parse(&schedule.cron, &schedule.time_zone).ok();
    let next = match (&spec, schedule.enabled) {
        (Some(spec), true) => next_instants(spec, now, PREVIEW_COUNT)
            .into_iter()
            .map(|at| instant(t, at))
            .collect(),
        _ => Vec::new(),
    };
    let in_zone = |ms: i64| match &spec {
        Some(spec) => spec.rfc3339(ms),
        None => crate::ids::rfc3339(ms),
    };
    let runs = list_runs(&state.db, schedule.id, RUNS_SHOWN)
        .await?
        .into_iter()
        .map(|run| RunRow {
            due: instant(t, in_zone(run.due_at)),
            sent: run.fired_at.is_some(),
            count: run.recipients.len(),
            recipients: run
                .recipients
                .iter()
                .map(|r| match r.held_until {
                    Some(until) => format!(
                        "{} {} ({} {})",
                        r.recipient.channel,
                        r.recipient.address,
                        t.sched_run_held,
                        instant(t, in_zone(until)).text
                    ),
                    None => format!("{} {}", r.recipient.channel, r.recipient.address),
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    Ok(ScheduleRow {
        id: schedule.id,
        cron: schedule.cron.clone(),
        time_zone: schedule.time_zone.clone(),
        message: schedule.message.clone(),
        audience,
        channels: match &schedule.channels {
            Some(channels) => channels.join(", "),
            None => t.sched_every_channel.to_string(),
        },
        catch_up: humantime::format_duration(std::time::Duration::from_millis(
            schedule.catch_up_limit_ms.max(0) as u64,
        ))
        .to_string(),
        enabled: schedule.enabled,
        urgent: schedule.urgent,
        next,
        runs,
        just_made: shown.just_made == Some(schedule.id),
    })
}

async fn show(
    state: &WebState,
    visitor: &Visitor,
    manager: &Manager,
    shown: Shown,
    status: StatusCode,
) -> Response {
    let built = build(state, visitor, manager, shown).await;
    render_or_internal_error(visitor, status, built)
}

async fn page(State(state): State<WebState>, visitor: Visitor) -> Response {
    let Some(manager) = Manager::of(&visitor) else {
        return Redirect::to("/signin").into_response();
    };
    show(&state, &visitor, &manager, Shown::default(), StatusCode::OK).await
}

/// The audience the form names, when the manager may address it: a team it administers (any
/// team, for the operator), messengers linked to the account (at least one), or — the
/// operator only — a watched repository's subscribers. Otherwise what is wrong, and whether it
/// is the repository field's error rather than the audience's.
async fn check_audience(
    state: &WebState,
    manager: &Manager,
    typed: &Typed,
) -> Result<Result<Audience, AudienceError>, StoreError> {
    let wrong = || Err(AudienceError::Audience);
    if let Some(raw) = typed.audience.strip_prefix("team:") {
        let Ok(team_id) = raw.trim().parse::<i64>() else {
            return Ok(wrong());
        };
        let allowed = match manager {
            Manager::Account(account) => {
                crate::teams::role_of(&state.db, team_id, account.id).await? == Role::Admin
            }
            Manager::Operator => crate::teams::find_team(&state.db, team_id).await?.is_some(),
        };
        return Ok(if allowed {
            Ok(Audience::Team { team_id })
        } else {
            wrong()
        });
    }
    if typed.audience == "repository" {
        if !matches!(manager, Manager::Operator) {
            return Ok(wrong());
        }
        let branch = Some(typed.branch.clone());
        let found = crate::schedules::repository_audience(
            &state.db,
            typed.repository.trim(),
            branch,
            state.app.settings.allow_private_targets,
        )
        .await?;
        return Ok(found.map_err(|_| AudienceError::Repository));
    }
    if typed.audience != "contacts" {
        return Ok(wrong());
    }
    let mine = my_contacts(state, manager).await?;
    let mut ids = Vec::new();
    for raw in &typed.contacts {
        match mine.iter().find(|c| c.id.to_string() == *raw) {
            Some(contact) => ids.push(contact.id),
            None => return Ok(wrong()),
        }
    }
    ids.sort_unstable();
    Ok(if ids.is_empty() {
        wrong()
    } else {
        Ok(Audience::Contacts { contact_ids: ids })
    })
}

/// Which field an audience that cannot be addressed is shown next to.
enum AudienceError {
    Audience,
    Repository,
}

/// The next fire times of what the form says, for **Preview**: the form with them (200), or
/// with the cron or zone's error (422).
fn preview_of(t: &'static Messages, typed: &Typed, now: i64) -> (Checked, StatusCode) {
    let mut checked = Checked::default();
    let zone = crate::teams::parse_time_zone(&typed.time_zone);
    if zone.is_err() {
        checked.time_zone = Some(t.subs_err_time_zone);
    }
    let zone_name = zone.as_ref().map(|z| z.name()).unwrap_or(DEFAULT_TIME_ZONE);
    let spec = CronSpec::parse(&typed.cron, zone_name);
    if spec.is_err() {
        checked.cron = Some(t.sched_err_cron);
    }
    match (&spec, &zone) {
        (Ok(spec), Ok(_)) => {
            checked.preview = Some(
                next_instants(spec, now, PREVIEW_COUNT)
                    .into_iter()
                    .map(|at| instant(t, at))
                    .collect(),
            );
            (checked, StatusCode::OK)
        }
        _ => (checked, StatusCode::UNPROCESSABLE_ENTITY),
    }
}

/// The form's settings, checked like the API checks them: the cron spec and the fields to
/// store, or each field's error. `kept` is the audience of the schedule being edited, which
/// the form may keep even when it could not choose it now.
async fn check_form(
    state: &WebState,
    t: &'static Messages,
    manager: &Manager,
    typed: &Typed,
    kept: Option<&Audience>,
) -> Result<Result<(CronSpec, ScheduleFields), Checked>, StoreError> {
    let mut checked = Checked::default();
    let zone = crate::teams::parse_time_zone(&typed.time_zone);
    if zone.is_err() {
        checked.time_zone = Some(t.subs_err_time_zone);
    }
    let zone_name = zone.as_ref().map(|z| z.name()).unwrap_or(DEFAULT_TIME_ZONE);
    let spec = CronSpec::parse(&typed.cron, zone_name);
    if spec.is_err() {
        checked.cron = Some(t.sched_err_cron);
    }
    let message = check_message(&typed.message).ok();
    if message.is_none() {
        checked.message = Some(t.sched_err_message);
    }
    let catch_up_limit_ms = check_catch_up_limit(&typed.catch_up_limit).ok();
    if catch_up_limit_ms.is_none() {
        checked.catch_up_limit = Some(t.sched_err_catch_up);
    }
    let channels = if typed.channels.is_empty() {
        Ok(None)
    } else {
        check_channels(Some(typed.channels.iter().cloned().collect()))
    };
    if channels.is_err() {
        checked.channels = Some(t.sched_err_channels);
    }
    let keeps = match kept {
        Some(Audience::Team { team_id }) => {
            typed.audience == KEPT_AUDIENCE || typed.audience == format!("team:{team_id}")
        }
        Some(Audience::Repository { .. } | Audience::Contacts { .. }) => {
            typed.audience == KEPT_AUDIENCE
        }
        None => false,
    };
    let audience = match kept {
        Some(kept) if keeps => Some(kept.clone()),
        _ => match check_audience(state, manager, typed).await? {
            Ok(audience) => Some(audience),
            Err(AudienceError::Audience) => {
                checked.audience = Some(t.sched_err_audience);
                None
            }
            Err(AudienceError::Repository) => {
                checked.repository = Some(t.sched_err_repository);
                None
            }
        },
    };
    let (Ok(spec), Ok(_), Some(message), Some(catch_up_limit_ms), Ok(channels), Some(audience)) =
        (spec, zone, message, catch_up_limit_ms, channels, audience)
    else {
        return Ok(Err(checked));
    };
    let fields = ScheduleFields {
        cron: spec.expression().to_string(),
        time_zone: spec.zone().name().to_string(),
        message,
        audience,
        channels,
        catch_up_limit_ms,
        enabled: typed.enabled,
        urgent: typed.urgent,
    };
    Ok(Ok((spec, fields)))
}

/// `POST /schedules`: **Preview** (`action=preview`) shows the next fire times of what was
/// typed; otherwise the schedule is checked and made.
async fn create(
    State(state): State<WebState>,
    CsrfForm { visitor, form }: CsrfForm<Vec<(String, String)>>,
) -> Response {
    let Some(manager) = Manager::of(&visitor) else {
        return Redirect::to("/signin").into_response();
    };
    let t = visitor.lang.messages();
    let preview_only = form.iter().any(|(k, v)| k == "action" && v == "preview");
    let typed = Typed::from_pairs(&form);
    let now = state.clock.now_ms();
    if preview_only {
        let (checked, status) = preview_of(t, &typed, now);
        let shown = Shown {
            form: Some((typed, checked)),
            ..Shown::default()
        };
        return show(&state, &visitor, &manager, shown, status).await;
    }
    let (spec, fields) = match check_form(&state, t, &manager, &typed, None).await {
        Ok(Ok(valid)) => valid,
        Ok(Err(checked)) => {
            let shown = Shown {
                form: Some((typed, checked)),
                ..Shown::default()
            };
            return show(
                &state,
                &visitor,
                &manager,
                shown,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
        Err(error) => return internal_error(&visitor, &error),
    };
    let made = insert_schedule(
        &state.db,
        state.ids.next(),
        manager.account_id(),
        &fields,
        first_due_at(&spec, fields.enabled, now),
        now,
    )
    .await;
    match made {
        Ok(schedule) => {
            state.schedules_wake.notify_one();
            let shown = Shown {
                notice: Some(t.sched_created),
                just_made: Some(schedule.id),
                ..Shown::default()
            };
            show(&state, &visitor, &manager, shown, StatusCode::OK).await
        }
        Err(error) => internal_error(&visitor, &error),
    }
}

#[derive(Template)]
#[template(path = "web/schedule_edit.html")]
struct EditPage {
    layout: Layout,
    id: i64,
    form: CreateForm,
    zones: &'static [&'static str],
}

/// The edit page of `schedule`, with the form as typed and checked.
async fn show_edit(
    state: &WebState,
    visitor: &Visitor,
    manager: &Manager,
    schedule: &Schedule,
    (typed, checked): (Typed, Checked),
    status: StatusCode,
) -> Response {
    let t = visitor.lang.messages();
    let built = async {
        let contacts = my_contacts(state, manager).await?;
        let teams = administered_teams(state, manager).await?;
        form_of(
            state,
            t,
            &contacts,
            &teams,
            matches!(manager, Manager::Operator),
            (typed, checked),
            Some(&schedule.audience),
        )
        .await
    };
    match built.await {
        Ok(form) => {
            let page = EditPage {
                layout: Layout::new(visitor, t.sched_edit_title),
                id: schedule.id,
                form,
                zones: ZONES,
            };
            (status, render(&page)).into_response()
        }
        Err(error) => internal_error(visitor, &error),
    }
}

/// `GET /schedules/{id}/edit`: the schedule's settings in the form that made it.
async fn edit_page(
    State(state): State<WebState>,
    Path(id): Path<String>,
    visitor: Visitor,
) -> Response {
    let Some(manager) = Manager::of(&visitor) else {
        return Redirect::to("/signin").into_response();
    };
    let schedule = match managed_schedule(&state, &visitor, &manager, &id).await {
        Ok(schedule) => schedule,
        Err(refused) => return refused,
    };
    let typed = Typed::from_schedule(&schedule);
    show_edit(
        &state,
        &visitor,
        &manager,
        &schedule,
        (typed, Checked::default()),
        StatusCode::OK,
    )
    .await
}

/// `POST /schedules/{id}/edit`: **Preview** shows the next fire times of what was typed;
/// otherwise the settings are checked like `PATCH /api/v1/schedules/{id}` checks them and
/// stored. A changed cron, zone or enabling counts the next due time from now; otherwise it
/// stays. Errors are shown next to their fields, with what was typed (422).
async fn edit(
    State(state): State<WebState>,
    Path(id): Path<String>,
    CsrfForm { visitor, form }: CsrfForm<Vec<(String, String)>>,
) -> Response {
    let Some(manager) = Manager::of(&visitor) else {
        return Redirect::to("/signin").into_response();
    };
    let schedule = match managed_schedule(&state, &visitor, &manager, &id).await {
        Ok(schedule) => schedule,
        Err(refused) => return refused,
    };
    let t = visitor.lang.messages();
    let typed = Typed::from_pairs(&form);
    let now = state.clock.now_ms();
    if form.iter().any(|(k, v)| k == "action" && v == "preview") {
        let (checked, status) = preview_of(t, &typed, now);
        return show_edit(
            &state,
            &visitor,
            &manager,
            &schedule,
            (typed, checked),
            status,
        )
        .await;
    }
    let checked = check_form(&state, t, &manager, &typed, Some(&schedule.audience)).await;
    let (spec, fields) = match checked {
        Ok(Ok(valid)) => valid,
        Ok(Err(checked)) => {
            return show_edit(
                &state,
                &visitor,
                &manager,
                &schedule,
                (typed, checked),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
        Err(error) => return internal_error(&visitor, &error),
    };
    let timing_changed = fields.cron != schedule.cron
        || fields.time_zone != schedule.time_zone
        || fields.enabled != schedule.enabled;
    let next_due_at = if timing_changed {
        first_due_at(&spec, fields.enabled, now)
    } else {
        schedule.next_due_at
    };
    match update_schedule(&state.db, schedule.id, &fields, next_due_at, now).await {
        Ok(Some(_)) => {
            state.schedules_wake.notify_one();
            let shown = Shown {
                notice: Some(t.sched_saved),
                just_made: Some(schedule.id),
                ..Shown::default()
            };
            show(&state, &visitor, &manager, shown, StatusCode::OK).await
        }
        // Deleted meanwhile.
        Ok(None) => match managed_schedule(&state, &visitor, &manager, &id).await {
            Ok(_) => internal_error(
                &visitor,
                &"a schedule vanished while it was saved".to_string(),
            ),
            Err(refused) => refused,
        },
        Err(error) => internal_error(&visitor, &error),
    }
}

/// The schedule with this path id when `account` may manage it; otherwise the 404 page.
async fn managed_schedule(
    state: &WebState,
    visitor: &Visitor,
    manager: &Manager,
    raw: &str,
) -> Result<Schedule, Response> {
    let Ok(id) = raw.parse::<i64>() else {
        return Err(not_found(visitor));
    };
    let schedule = found(visitor, find_schedule(&state.db, id).await, not_found)?;
    if let Manager::Account(account) = manager {
        let may_manage = account_may_manage(&state.db, &schedule, account.id).await;
        changed(visitor, may_manage, not_found)?;
    }
    Ok(schedule)
}

fn not_found(visitor: &Visitor) -> Response {
    let t = visitor.lang.messages();
    let text = t.sched_not_found;
    not_found_page(visitor, text, text, "/schedules", t.sched_title)
}

/// Turns a schedule on or off; turning it on counts its first due time from now.
async fn set_enabled(state: WebState, visitor: Visitor, id: String, enabled: bool) -> PageResult {
    let Some(manager) = Manager::of(&visitor) else {
        return Ok(Redirect::to("/signin").into_response());
    };
    let schedule = managed_schedule(&state, &visitor, &manager, &id).await?;
    let t = visitor.lang.messages();
    let now = state.clock.now_ms();
    let next_due_at = if enabled == schedule.enabled {
        schedule.next_due_at
    } else {
        let spec = CronSpec::parse(&schedule.cron, &schedule.time_zone);
        first_due_at(&or_internal_error(&visitor, spec)?, enabled, now)
    };
    let fields = ScheduleFields {
        cron: schedule.cron,
        time_zone: schedule.time_zone,
        message: schedule.message,
        audience: schedule.audience,
        channels: schedule.channels,
        catch_up_limit_ms: schedule.catch_up_limit_ms,
        enabled,
        urgent: schedule.urgent,
    };
    let updated = update_schedule(&state.db, schedule.id, &fields, next_due_at, now).await;
    or_internal_error(&visitor, updated)?;
    state.schedules_wake.notify_one();
    let notice = if enabled {
        t.sched_enabled_notice
    } else {
        t.sched_disabled_notice
    };
    Ok(show_notice(&state, &visitor, &manager, notice).await)
}

/// The page again after a change, with a notice of what was done.
async fn show_notice(
    state: &WebState,
    visitor: &Visitor,
    manager: &Manager,
    notice: &'static str,
) -> Response {
    let shown = Shown {
        notice: Some(notice),
        ..Shown::default()
    };
    show(state, visitor, manager, shown, StatusCode::OK).await
}

async fn enable(
    State(state): State<WebState>,
    Path(id): Path<String>,
    CsrfForm { visitor, .. }: CsrfForm<NoFields>,
) -> PageResult {
    set_enabled(state, visitor, id, true).await
}

async fn disable(
    State(state): State<WebState>,
    Path(id): Path<String>,
    CsrfForm { visitor, .. }: CsrfForm<NoFields>,
) -> PageResult {
    set_enabled(state, visitor, id, false).await
}

async fn delete(
    State(state): State<WebState>,
    Path(id): Path<String>,
    CsrfForm { visitor, .. }: CsrfForm<NoFields>,
) -> PageResult {
    let Some(manager) = Manager::of(&visitor) else {
        return Ok(Redirect::to("/signin").into_response());
    };
    let schedule = managed_schedule(&state, &visitor, &manager, &id).await?;
    or_internal_error(&visitor, delete_schedule(&state.db, schedule.id).await)?;
    state.schedules_wake.notify_one();
    let t = visitor.lang.messages();
    Ok(show_notice(&state, &visitor, &manager, t.sched_deleted).await)
}

//! `/subscriptions`: the subscriptions of the messenger contacts linked to my account. Adding
//! one offers the repository's branches (the lookup the bot's `구독` uses,
//! `contacts::probe_heads`); each subscription's filters, digest mode and mute; each contact's
//! quiet time and zone (validated by `digest`); the recent notifications of each subscription
//! with their delivery state (`outbox`, `push`). Everything is read and written through
//! `contacts`' functions; a subscription or contact that is not linked to my account is not
//! found.

use crate::http::routes::{Outside, Routes};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::csrf::{NoFields, SignedInForm};
use super::home::display_time;
use super::i18n::Messages;
use super::session::{SignedIn, Visitor};
use super::{
    Field, Layout, PageResult, WebState, changed, found, internal_error, not_found_page,
    or_internal_error, render, render_or_internal_error,
};
use crate::accounts::Account;
use crate::contacts::{
    Contact, ContactRef, Filters, QuietTimeChange, SubscribeError, Subscription, SubscriptionChange,
};
use crate::digest::{DigestMode, QuietHours, parse_time_zone};
use crate::store::StoreError;

/// How many notifications are listed under each subscription.
const NOTIFICATIONS_PER_SUBSCRIPTION: usize = 5;
/// How many of a contact's latest deliveries are looked through for them.
const DELIVERIES_PER_CONTACT: i64 = 50;

pub fn routes() -> Routes<WebState> {
    Routes::new()
        .outside(Outside::Page, Method::GET, "/subscriptions", page)
        .outside(Outside::Page, Method::POST, "/subscriptions", create)
        .outside(Outside::Page, Method::GET, "/subscriptions/new", new_form)
        .outside(
            Outside::Page,
            Method::POST,
            "/subscriptions/{id}/settings",
            settings,
        )
        .outside(
            Outside::Page,
            Method::POST,
            "/subscriptions/{id}/mute",
            mute,
        )
        .outside(
            Outside::Page,
            Method::POST,
            "/subscriptions/{id}/unmute",
            unmute,
        )
        .outside(
            Outside::Page,
            Method::POST,
            "/subscriptions/{id}/delete",
            delete,
        )
        .outside(
            Outside::Page,
            Method::POST,
            "/subscriptions/contacts/{id}/quiet",
            quiet,
        )
}

struct NotificationRow {
    when: String,
    branch: String,
    sha: String,
    status: String,
}

/// A subscription's settings form, as stored or as typed.
struct SettingsForm {
    paths: Field,
    exclude_authors: Field,
    digest: Field,
    urgent: bool,
}

struct SubscriptionRow {
    id: i64,
    repository: String,
    branch: String,
    muted: bool,
    form: SettingsForm,
    notifications: Vec<NotificationRow>,
}

/// A contact's quiet-time form, as stored or as typed.
struct QuietForm {
    time_zone: Field,
    quiet_hours: Field,
    quiet_weekends: bool,
}

struct ContactBlock {
    id: i64,
    channel: String,
    address: String,
    nick_name: String,
    quiet: QuietForm,
    subscriptions: Vec<SubscriptionRow>,
}

#[derive(Template)]
#[template(path = "web/subscriptions.html")]
struct SubscriptionsPage {
    layout: Layout,
    notice: Option<&'static str>,
    contacts: Vec<ContactBlock>,
}

/// The contact choices of the add form.
struct ContactChoice {
    id: i64,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "web/subscription_new.html")]
struct NewSubscriptionPage {
    layout: Layout,
    contacts: Vec<ContactChoice>,
    contact_error: Option<&'static str>,
    repository: Field,
    /// Whether the branches were looked up (the second step of the form).
    looked_up: bool,
    branches: Vec<String>,
    branch: Field,
    paths: Field,
    exclude_authors: Field,
}

/// What a re-shown page carries over from a refused form.
#[derive(Default)]
struct Typed {
    notice: Option<&'static str>,
    subscription: Option<(i64, SettingsForm)>,
    quiet: Option<(i64, QuietForm)>,
}

fn lines(list: &[String]) -> String {
    list.join("\n")
}

/// A list typed one entry per line (commas separate too); blank entries dropped.
fn parse_list(raw: &str) -> Vec<String> {
    raw.split(['\n', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn contact_label(contact: &Contact) -> String {
    if contact.nick_name.is_empty() {
        format!("{} {}", contact.channel, contact.address)
    } else {
        format!(
            "{} {} ({})",
            contact.channel, contact.nick_name, contact.address
        )
    }
}

fn stored_settings(subscription: &Subscription) -> SettingsForm {
    SettingsForm {
        paths: Field::typed(&lines(&subscription.paths)),
        exclude_authors: Field::typed(&lines(&subscription.exclude_authors)),
        digest: Field::typed(&subscription.digest),
        urgent: subscription.urgent,
    }
}

fn stored_quiet(contact: &Contact) -> QuietForm {
    QuietForm {
        time_zone: Field::typed(&contact.time_zone),
        quiet_hours: Field::typed(contact.quiet_hours.as_deref().unwrap_or_default()),
        quiet_weekends: contact.quiet_weekends,
    }
}

async fn build(
    state: &WebState,
    visitor: &Visitor,
    account: &Account,
    mut typed: Typed,
) -> Result<SubscriptionsPage, StoreError> {
    let db = &state.db;
    let mut blocks = Vec::new();
    for contact in crate::contacts::contacts_of_account(db, account.id).await? {
        let deliveries =
            crate::outbox::recent_to_contact(db, contact.id, DELIVERIES_PER_CONTACT).await?;
        let event_ids: Vec<i64> = deliveries.iter().filter_map(|d| d.event_id).collect();
        let pushes = crate::push::push_summaries(db, &event_ids).await?;
        let mut subscriptions = Vec::new();
        for subscription in crate::contacts::list_subscriptions(db, Some(contact.id)).await? {
            let matcher = crate::watch::subscription_glob(&subscription.branch);
            let notifications = deliveries
                .iter()
                .filter_map(|delivery| {
                    let push = pushes.iter().find(|p| Some(p.id) == delivery.event_id)?;
                    let branch_matches = push.branch == subscription.branch
                        || matcher.as_ref().is_some_and(|m| m.is_match(&push.branch));
                    (push.repository == subscription.repository && branch_matches).then(|| {
                        NotificationRow {
                            when: display_time(delivery.created_at),
                            branch: push.branch.clone(),
                            sha: push.after_sha.chars().take(7).collect(),
                            status: delivery.status.clone(),
                        }
                    })
                })
                .take(NOTIFICATIONS_PER_SUBSCRIPTION)
                .collect();
            let form = match typed.subscription.take() {
                Some((id, form)) if id == subscription.id => form,
                other => {
                    typed.subscription = other;
                    stored_settings(&subscription)
                }
            };
            subscriptions.push(SubscriptionRow {
                id: subscription.id,
                repository: subscription.repository,
                branch: subscription.branch,
                muted: subscription.muted,
                form,
                notifications,
            });
        }
        let quiet = match typed.quiet.take() {
            Some((id, form)) if id == contact.id => form,
            other => {
                typed.quiet = other;
                stored_quiet(&contact)
            }
        };
        blocks.push(ContactBlock {
            id: contact.id,
            channel: contact.channel,
            address: contact.address,
            nick_name: contact.nick_name,
            quiet,
            subscriptions,
        });
    }
    Ok(SubscriptionsPage {
        layout: Layout::new(visitor, visitor.lang.messages().subs_title),
        notice: typed.notice,
        contacts: blocks,
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

/// The filters' fields' errors: paths, then excluded authors.
fn filter_errors(t: &Messages, filters: &Filters) -> (Option<&'static str>, Option<&'static str>) {
    let paths = Filters {
        paths: filters.paths.clone(),
        exclude_authors: Vec::new(),
    };
    let exclude_authors = Filters {
        paths: Vec::new(),
        exclude_authors: filters.exclude_authors.clone(),
    };
    (
        paths.validate().err().map(|_| t.subs_err_globs),
        exclude_authors.validate().err().map(|_| t.subs_err_globs),
    )
}

fn not_found(visitor: &Visitor) -> Response {
    let t = visitor.lang.messages();
    let text = t.subs_not_found;
    not_found_page(visitor, text, text, "/subscriptions", t.subs_title)
}

/// The subscription with this path id, when it belongs to a contact linked to `account`.
async fn my_subscription(
    state: &WebState,
    account: &Account,
    raw: &str,
) -> Result<Option<Subscription>, StoreError> {
    let Ok(id) = raw.parse::<i64>() else {
        return Ok(None);
    };
    let Some(subscription) = crate::contacts::find_subscription(&state.db, id).await? else {
        return Ok(None);
    };
    let mine = crate::contacts::contacts_of_account(&state.db, account.id)
        .await?
        .iter()
        .any(|c| c.id == subscription.contact_id);
    Ok(mine.then_some(subscription))
}

/// The contact with this id, when it is linked to `account`.
async fn my_contact(
    state: &WebState,
    account: &Account,
    raw: &str,
) -> Result<Option<Contact>, StoreError> {
    let Ok(id) = raw.parse::<i64>() else {
        return Ok(None);
    };
    Ok(crate::contacts::contacts_of_account(&state.db, account.id)
        .await?
        .into_iter()
        .find(|c| c.id == id))
}

#[derive(Deserialize)]
struct SettingsIn {
    #[serde(default)]
    paths: String,
    #[serde(default)]
    exclude_authors: String,
    #[serde(default)]
    digest: String,
    urgent: Option<String>,
}

async fn settings(
    State(state): State<WebState>,
    Path(id): Path<String>,
    SignedInForm {
        visitor,
        account,
        form,
    }: SignedInForm<SettingsIn>,
) -> PageResult {
    let subscription = found(
        &visitor,
        my_subscription(&state, &account, &id).await,
        not_found,
    )?;
    let t = visitor.lang.messages();
    let mut typed = SettingsForm {
        paths: Field::typed(&form.paths),
        exclude_authors: Field::typed(&form.exclude_authors),
        digest: Field::typed(&form.digest),
        urgent: form.urgent.is_some(),
    };
    let filters = Filters {
        paths: parse_list(&form.paths),
        exclude_authors: parse_list(&form.exclude_authors),
    };
    (typed.paths.error, typed.exclude_authors.error) = filter_errors(t, &filters);
    let digest = DigestMode::parse(form.digest.trim());
    if digest.is_err() {
        typed.digest.error = Some(t.subs_err_digest);
    }
    let (Ok(digest), None, None) = (digest, typed.paths.error, typed.exclude_authors.error) else {
        let typed = Typed {
            subscription: Some((subscription.id, typed)),
            ..Typed::default()
        };
        return Ok(show(
            &state,
            &visitor,
            &account,
            typed,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await);
    };
    let change = SubscriptionChange {
        muted: None,
        filters: Some(filters),
        digest: Some(digest),
        urgent: Some(typed.urgent),
    };
    let updated = crate::contacts::update_subscription(&state.db, subscription.id, change).await;
    changed(&visitor, updated, not_found)?;
    Ok(show_notice(&state, &visitor, &account, t.subs_saved).await)
}

async fn set_muted(
    state: WebState,
    id: String,
    signed_in: SignedInForm<NoFields>,
    muted: bool,
) -> PageResult {
    let SignedInForm {
        visitor, account, ..
    } = signed_in;
    let subscription = found(
        &visitor,
        my_subscription(&state, &account, &id).await,
        not_found,
    )?;
    let change = SubscriptionChange {
        muted: Some(muted),
        ..SubscriptionChange::default()
    };
    let updated = crate::contacts::update_subscription(&state.db, subscription.id, change).await;
    changed(&visitor, updated, not_found)?;
    let t = visitor.lang.messages();
    let notice = if muted { t.subs_muted } else { t.subs_unmuted };
    Ok(show_notice(&state, &visitor, &account, notice).await)
}

async fn mute(
    State(state): State<WebState>,
    Path(id): Path<String>,
    signed_in: SignedInForm<NoFields>,
) -> PageResult {
    set_muted(state, id, signed_in, true).await
}

async fn unmute(
    State(state): State<WebState>,
    Path(id): Path<String>,
    signed_in: SignedInForm<NoFields>,
) -> PageResult {
    set_muted(state, id, signed_in, false).await
}

async fn delete(
    State(state): State<WebState>,
    Path(id): Path<String>,
    SignedInForm {
        visitor, account, ..
    }: SignedInForm<NoFields>,
) -> PageResult {
    let subscription = found(
        &visitor,
        my_subscription(&state, &account, &id).await,
        not_found,
    )?;
    let removed = crate::contacts::unsubscribe(&state.db, subscription.id).await;
    changed(&visitor, removed, not_found)?;
    let t = visitor.lang.messages();
    Ok(show_notice(&state, &visitor, &account, t.subs_unsubscribed).await)
}

#[derive(Deserialize)]
struct QuietIn {
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    quiet_hours: String,
    quiet_weekends: Option<String>,
}

async fn quiet(
    State(state): State<WebState>,
    Path(id): Path<String>,
    SignedInForm {
        visitor,
        account,
        form,
    }: SignedInForm<QuietIn>,
) -> PageResult {
    let contact = found(&visitor, my_contact(&state, &account, &id).await, not_found)?;
    let t = visitor.lang.messages();
    let mut typed = QuietForm {
        time_zone: Field::typed(&form.time_zone),
        quiet_hours: Field::typed(&form.quiet_hours),
        quiet_weekends: form.quiet_weekends.is_some(),
    };
    let zone = parse_time_zone(form.time_zone.trim());
    if zone.is_err() {
        typed.time_zone.error = Some(t.subs_err_time_zone);
    }
    let hours = match form.quiet_hours.trim() {
        "" => Ok(None),
        raw => QuietHours::parse(raw).map(Some),
    };
    if hours.is_err() {
        typed.quiet_hours.error = Some(t.subs_err_quiet_hours);
    }
    let (Ok(zone), Ok(hours)) = (zone, hours) else {
        let typed = Typed {
            quiet: Some((contact.id, typed)),
            ..Typed::default()
        };
        return Ok(show(
            &state,
            &visitor,
            &account,
            typed,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await);
    };
    let change = QuietTimeChange {
        time_zone: Some(zone),
        quiet_hours: Some(hours),
        quiet_weekends: Some(typed.quiet_weekends),
    };
    let updated = crate::contacts::set_quiet_time(&state.db, contact.id, change).await;
    changed(&visitor, updated, not_found)?;
    Ok(show_notice(&state, &visitor, &account, t.subs_saved).await)
}

/// The add form: `?repository=` looks up the branches to offer (a GET, so it works without
/// script); `contact` keeps the chosen contact.
#[derive(Deserialize)]
struct NewQuery {
    #[serde(default)]
    repository: String,
    contact: Option<String>,
}

fn contact_choices(contacts: &[Contact], chosen: Option<i64>) -> Vec<ContactChoice> {
    contacts
        .iter()
        .enumerate()
        .map(|(i, c)| ContactChoice {
            id: c.id,
            label: contact_label(c),
            selected: chosen.map_or(i == 0, |id| id == c.id),
        })
        .collect()
}

/// A refusal of `subscribe` as the message next to its field: (repository, branch).
fn subscribe_error_message(
    t: &'static Messages,
    error: &SubscribeError,
) -> (Option<&'static str>, Option<&'static str>) {
    match error {
        SubscribeError::Repository(_) => (Some(t.subs_err_repository), None),
        SubscribeError::RepositoryNotFound(_) => (Some(t.subs_err_repository_not_found), None),
        SubscribeError::BranchNotFound { .. } => (None, Some(t.subs_err_branch_not_found)),
        SubscribeError::Unreachable(_) => (Some(t.subs_err_unreachable), None),
        SubscribeError::Invalid(_) => (Some(t.subs_err_repository), None),
        SubscribeError::Store(_) => (None, None),
    }
}

/// Most likely branches first (`main`, `master`, `develop`), then by name.
fn rank_branches(mut branches: Vec<String>) -> Vec<String> {
    let rank = |b: &str| match b {
        "main" => 0,
        "master" => 1,
        "develop" => 2,
        _ => 3,
    };
    branches.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    branches
}

async fn new_form(
    State(state): State<WebState>,
    signed_in: SignedIn,
    Query(query): Query<NewQuery>,
) -> PageResult {
    let SignedIn { visitor, account } = signed_in;
    let t = visitor.lang.messages();
    let contacts = or_internal_error(
        &visitor,
        crate::contacts::contacts_of_account(&state.db, account.id).await,
    )?;
    let chosen = query.contact.as_deref().and_then(|c| c.parse::<i64>().ok());
    let mut page = NewSubscriptionPage {
        layout: Layout::new(&visitor, t.subs_add_title),
        contacts: contact_choices(&contacts, chosen),
        contact_error: None,
        repository: Field::typed(&query.repository),
        looked_up: false,
        branches: Vec::new(),
        branch: Field::default(),
        paths: Field::default(),
        exclude_authors: Field::default(),
    };
    let repository = query.repository.trim();
    if repository.is_empty() {
        return Ok(render(&page));
    }
    let url = match crate::watch::repo::RepoUrl::parse(
        repository,
        state.settings.allow_private_targets,
    ) {
        Ok(url) => url,
        Err(_) => {
            page.repository.error = Some(t.subs_err_repository);
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response());
        }
    };
    match crate::contacts::probe_heads(&state.app, &url, "**").await {
        Ok(heads) => {
            page.looked_up = true;
            page.branches = rank_branches(heads.into_iter().map(|(b, _)| b).collect());
            page.branch = Field::typed(page.branches.first().map_or("", String::as_str));
            Ok(render(&page))
        }
        Err(SubscribeError::Store(error)) => Err(internal_error(&visitor, &error)),
        Err(error) => {
            page.repository.error = subscribe_error_message(t, &error).0;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
        }
    }
}

#[derive(Deserialize)]
struct CreateIn {
    #[serde(default)]
    contact: String,
    #[serde(default)]
    repository: String,
    #[serde(default)]
    branch: String,
    #[serde(default)]
    paths: String,
    #[serde(default)]
    exclude_authors: String,
}

async fn create(
    State(state): State<WebState>,
    SignedInForm {
        visitor,
        account,
        form,
    }: SignedInForm<CreateIn>,
) -> PageResult {
    let t = visitor.lang.messages();
    let contacts = or_internal_error(
        &visitor,
        crate::contacts::contacts_of_account(&state.db, account.id).await,
    )?;
    let chosen = form.contact.parse::<i64>().ok();
    let contact = contacts.iter().find(|c| Some(c.id) == chosen);
    let mut page = NewSubscriptionPage {
        layout: Layout::new(&visitor, t.subs_add_title),
        contacts: contact_choices(&contacts, chosen),
        contact_error: None,
        repository: Field::typed(&form.repository),
        looked_up: true,
        branches: Vec::new(),
        branch: Field::typed(&form.branch),
        paths: Field::typed(&form.paths),
        exclude_authors: Field::typed(&form.exclude_authors),
    };
    if contact.is_none() {
        page.contact_error = Some(t.subs_err_contact);
    }
    let branch = form.branch.trim();
    if branch.is_empty()
        || crate::watch::repo::valid_branch_pattern(branch).is_err()
        || (crate::watch::repo::is_glob(branch)
            && crate::watch::subscription_glob(branch).is_none())
    {
        page.branch.error = Some(t.subs_err_branch);
    }
    let filters = Filters {
        paths: parse_list(&form.paths),
        exclude_authors: parse_list(&form.exclude_authors),
    };
    (page.paths.error, page.exclude_authors.error) = filter_errors(t, &filters);
    let (Some(contact), None, None, None) = (
        contact,
        page.branch.error,
        page.paths.error,
        page.exclude_authors.error,
    ) else {
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response());
    };
    match crate::contacts::subscribe(
        &state.app,
        ContactRef::Existing(contact),
        form.repository.trim(),
        branch,
        filters,
    )
    .await
    {
        Ok(_) => Ok(show_notice(&state, &visitor, &account, t.subs_subscribed).await),
        Err(SubscribeError::Store(error)) => Err(internal_error(&visitor, &error)),
        Err(error) => {
            let (repository, branch) = subscribe_error_message(t, &error);
            page.repository.error = repository;
            page.branch.error = branch;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
        }
    }
}

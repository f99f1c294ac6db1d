//! My projects and their webhooks: `/projects` (list, create), `/{owner}/{project}/webhooks`
//! (the hooks with their health; add one and see its generated secret once; disable, enable,
//! delete, send a test ping) and `/{owner}/{project}/webhooks/{id}` (the delivery log: filters,
//! search by id, keyset pages, each delivery's attempts; redeliver one, recover the failed).
//!
//! The two `GET` paths are the reference routes of `projects::pages`: a browser signed in to an
//! account gets these pages, anyone else (the operator's cookie or token, `Accept:
//! application/json`) gets the reference answers, unchanged. Forms post under `/projects/…`
//! with their CSRF token. The rules are `projects`' (`create_project`, `add_hook`,
//! `load_project`: a project that is not the visitor's is a 404 like one that does not exist);
//! the log is read through `outbox::log`.

use crate::http::routes::{Outside, Routes};
use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::Method;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::csrf::SignedInForm;
use super::home::display_time;
use super::i18n::Messages;
use super::session::{SignedIn, Visitor};
use super::{
    Layout, PageResult, WebState, found, internal_error, not_found_page, or_internal_error, render,
    render_or_internal_error,
};
use crate::accounts::Account;
use crate::accounts::auth::{Actor, MaybeActor};
use crate::http::error::ApiError;
use crate::outbox::Redelivery;
use crate::outbox::log::{LogFilter, LoggedAttempt, Outcome, StatusClass};
use crate::projects::api::{HookIn, add_hook, create_project, load_project};
use crate::projects::pages::FormToken;
use crate::projects::{Project, Webhook, find_webhook, list_webhooks, projects_of_account};

/// Deliveries per page of the log.
const PAGE_SIZE: i64 = 25;

pub fn routes() -> Routes<WebState> {
    Routes::new()
        .outside(Outside::Page, Method::GET, "/projects", projects_page)
        .outside(
            Outside::Page,
            Method::POST,
            "/projects",
            create_project_submit,
        )
        .outside(
            Outside::Page,
            Method::GET,
            "/{owner}/{project}/webhooks",
            hooks_or_reference,
        )
        .outside(
            Outside::Page,
            Method::POST,
            "/{owner}/{project}/webhooks",
            reference_create,
        )
        .outside(
            Outside::Page,
            Method::GET,
            "/{owner}/{project}/webhooks/{id}",
            log_or_reference,
        )
        .outside(
            Outside::Page,
            Method::POST,
            "/{owner}/{project}/webhooks/{id}",
            reference_remove,
        )
        .outside(
            Outside::Page,
            Method::DELETE,
            "/{owner}/{project}/webhooks/{id}",
            reference_remove,
        )
        .outside(
            Outside::Page,
            Method::POST,
            "/projects/{owner}/{project}/hooks",
            create_hook_submit,
        )
        .outside(
            Outside::Page,
            Method::POST,
            "/projects/{owner}/{project}/hooks/{id}/{action}",
            hook_action,
        )
}

/// A form field as shown again: what was typed and, when refused, why (`projects`' own words
/// for what only it can tell, like a repository it could not reach).
#[derive(Default, Clone)]
pub struct TypedField {
    pub value: String,
    pub error: Option<String>,
}

impl TypedField {
    fn typed(value: &str) -> TypedField {
        TypedField {
            value: value.to_string(),
            error: None,
        }
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn not_found(visitor: &Visitor) -> Response {
    let t = visitor.lang.messages();
    let (title, text) = (t.not_found_title, t.project_not_found);
    not_found_page(visitor, title, text, "/projects", t.projects_page_title)
}

/// The visitor's project; one that does not exist or is someone else's is not found.
async fn my_project(
    state: &WebState,
    visitor: &Visitor,
    account: &Account,
    owner: &str,
    name: &str,
) -> Result<Project, Response> {
    match load_project(state, &Actor::Account(account.clone()), owner, name).await {
        Ok(project) => Ok(project),
        Err(ApiError::NotFound(_)) => Err(not_found(visitor)),
        Err(error) => Err(internal_error(visitor, &error)),
    }
}

/// The project's hook by its id in the path, or `None`.
async fn my_hook(
    state: &WebState,
    project: &Project,
    raw_id: &str,
) -> Result<Option<Webhook>, crate::store::StoreError> {
    let Ok(id) = raw_id.parse::<i64>() else {
        return Ok(None);
    };
    find_webhook(&state.db, project.id, id).await
}

fn hooks_href(project: &Project) -> String {
    format!("/{}/{}/webhooks", project.owner, project.name)
}

// --- my projects ----------------------------------------------------------------------------

struct ProjectItem {
    href: String,
    name: String,
    repository: String,
    branches: String,
    hooks: usize,
}

#[derive(Template)]
#[template(path = "web/projects.html")]
struct ProjectsPage {
    layout: Layout,
    projects: Vec<ProjectItem>,
    error: Option<&'static str>,
    name: TypedField,
    repository: TypedField,
    branches: TypedField,
}

async fn projects_page_for(
    state: &WebState,
    visitor: &Visitor,
    account: &Account,
) -> Result<ProjectsPage, crate::store::StoreError> {
    let mut projects = Vec::new();
    for project in projects_of_account(&state.db, account.id).await? {
        let hooks = list_webhooks(&state.db, project.id).await?.len();
        projects.push(ProjectItem {
            href: hooks_href(&project),
            name: project.name,
            repository: project.repository,
            branches: project.branches,
            hooks,
        });
    }
    Ok(ProjectsPage {
        layout: Layout::new(visitor, visitor.lang.messages().projects_page_title),
        projects,
        error: None,
        name: TypedField::default(),
        repository: TypedField::default(),
        branches: TypedField::default(),
    })
}

async fn projects_page(State(state): State<WebState>, signed_in: SignedIn) -> Response {
    let built = projects_page_for(&state, &signed_in.visitor, &signed_in.account).await;
    render_or_internal_error(&signed_in.visitor, StatusCode::OK, built)
}

#[derive(Deserialize)]
struct ProjectForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    repository: String,
    #[serde(default)]
    branches: String,
}

/// Puts a refusal of `projects` next to the field it names (`name: …`), in the page's words
/// where herald has them.
fn project_refusal(page: &mut ProjectsPage, t: &Messages, error: ApiError) -> Result<(), ApiError> {
    match error {
        ApiError::Conflict(_) => page.name.error = Some(t.error_project_taken.into()),
        ApiError::Validation(message) => {
            let (field, detail) = message.split_once(": ").unwrap_or(("", &message));
            match field {
                "name" | "owner" => page.name.error = Some(t.error_project_name_rule.into()),
                "repository" => page.repository.error = Some(detail.to_string()),
                "branches" => page.branches.error = Some(detail.to_string()),
                _ => page.repository.error = Some(message.clone()),
            }
        }
        // The repository could not be read (it does not exist, or is not reachable).
        ApiError::BadRequest(message)
        | ApiError::NotFound(message)
        | ApiError::Unavailable(message) => page.repository.error = Some(message),
        other => return Err(other),
    }
    page.error = Some(t.form_has_errors);
    Ok(())
}

async fn create_project_submit(
    State(state): State<WebState>,
    SignedInForm {
        visitor,
        account,
        form,
    }: SignedInForm<ProjectForm>,
) -> Response {
    let t = visitor.lang.messages();
    let mut page = match projects_page_for(&state, &visitor, &account).await {
        Ok(page) => page,
        Err(error) => return internal_error(&visitor, &error),
    };
    page.name = TypedField::typed(&form.name);
    page.repository = TypedField::typed(&form.repository);
    page.branches = TypedField::typed(&form.branches);
    if form.name.trim().is_empty() {
        page.name.error = Some(t.error_required.into());
    }
    if form.repository.trim().is_empty() {
        page.repository.error = Some(t.error_required.into());
    }
    if page.name.error.is_some() || page.repository.error.is_some() {
        page.error = Some(t.form_has_errors);
        return (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response();
    }
    let branches = Some(form.branches.as_str()).filter(|b| !b.trim().is_empty());
    match create_project(
        &state,
        Some(account.id),
        &account.name,
        &form.name,
        &form.repository,
        branches,
    )
    .await
    {
        Ok(project) => Redirect::to(&hooks_href(&project)).into_response(),
        Err(error) => match project_refusal(&mut page, t, error) {
            Ok(()) => (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response(),
            Err(error) => internal_error(&visitor, &error),
        },
    }
}

// --- a project's hooks ----------------------------------------------------------------------

struct HookItem {
    id: i64,
    payload_url: String,
    active: bool,
    disabled_reason: String,
    failing_since: String,
    created_at: String,
}

#[derive(Template)]
#[template(path = "web/project.html")]
struct ProjectPage {
    layout: Layout,
    notice: Option<&'static str>,
    /// `/projects/{owner}/{name}`: where this page's forms post.
    actions: String,
    /// `/{owner}/{name}/webhooks`: this page, and its hooks' logs below it.
    base: String,
    repository: String,
    branches: String,
    hooks: Vec<HookItem>,
    /// A generated secret of the hook just added: shown this once.
    created_secret: Option<String>,
    error: Option<&'static str>,
    payload_url: TypedField,
    secret: TypedField,
}

async fn project_page_for(
    state: &WebState,
    visitor: &Visitor,
    project: &Project,
) -> Result<ProjectPage, crate::store::StoreError> {
    let t = visitor.lang.messages();
    let hooks = list_webhooks(&state.db, project.id)
        .await?
        .into_iter()
        .map(|hook| HookItem {
            id: hook.id,
            payload_url: hook.payload_url,
            active: hook.active,
            disabled_reason: hook.disabled_reason.unwrap_or_default(),
            failing_since: hook.failing_since.map(display_time).unwrap_or_default(),
            created_at: chrono::DateTime::parse_from_rfc3339(&hook.created_at)
                .map(|t| display_time(t.timestamp_millis()))
                .unwrap_or(hook.created_at),
        })
        .collect();
    Ok(ProjectPage {
        layout: Layout::new(
            visitor,
            &format!(
                "{} {}/{}",
                t.project_hooks_title, project.owner, project.name
            ),
        ),
        notice: None,
        actions: format!("/projects/{}/{}", project.owner, project.name),
        base: hooks_href(project),
        repository: project.repository.clone(),
        branches: project.branches.clone(),
        hooks,
        created_secret: None,
        error: None,
        payload_url: TypedField::default(),
        secret: TypedField::default(),
    })
}

/// What a finished action left to say, from the `done` of the address it redirected to.
fn done_notice(t: &'static Messages, raw_query: Option<&str>) -> Option<&'static str> {
    let done = url::form_urlencoded::parse(raw_query.unwrap_or_default().as_bytes())
        .find(|(key, _)| key == "done")
        .map(|(_, value)| value.into_owned())?;
    Some(match done.as_str() {
        "ping" => t.hook_pinged,
        "disable" => t.hook_disabled_done,
        "enable" => t.hook_enabled_done,
        "delete" => t.hook_deleted_done,
        "redeliver" => t.log_redelivered,
        "pending" => t.log_already_pending,
        "recover" => t.log_recovered,
        _ => return None,
    })
}

/// Whether a form posted to a reference route may go on: the reference's own rules decide
/// who may act (strangers get its 404), and a browser acting as the operator by its cookie
/// alone must carry the token of the page it was given, as every page form does. A request
/// with an `Authorization` header, a JSON body or the `DELETE` method is not a form another
/// site can make a browser send.
fn reference_form_allowed(
    visitor: &Visitor,
    actor: &MaybeActor,
    headers: &HeaderMap,
    method: &Method,
    body: &[u8],
) -> bool {
    let by_cookie = actor.0.is_some() && !headers.contains_key(header::AUTHORIZATION);
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !by_cookie || json_body || *method != Method::POST {
        return true;
    }
    super::csrf::carries_token(visitor, body)
}

/// `POST /{owner}/{project}/webhooks`: the reference's form (or JSON) adding a hook.
async fn reference_create(
    State(state): State<WebState>,
    visitor: Visitor,
    actor: MaybeActor,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !reference_form_allowed(&visitor, &actor, &headers, &Method::POST, &body) {
        tracing::info!(path = %visitor.here, "a reference form without its CSRF token was refused");
        return super::csrf::refused(&visitor);
    }
    crate::projects::pages::create(
        actor,
        State(state.app.clone()),
        Path((owner, name)),
        headers,
        body,
        FormToken(visitor.csrf_token()),
    )
    .await
    .into_response()
}

/// `POST` or `DELETE /{owner}/{project}/webhooks/{id}`: the reference's delete.
async fn reference_remove(
    State(state): State<WebState>,
    visitor: Visitor,
    actor: MaybeActor,
    Path(path): Path<(String, String, String)>,
    headers: HeaderMap,
    method: Method,
    body: axum::body::Bytes,
) -> Response {
    if !reference_form_allowed(&visitor, &actor, &headers, &method, &body) {
        tracing::info!(path = %visitor.here, "a reference form without its CSRF token was refused");
        return super::csrf::refused(&visitor);
    }
    crate::projects::pages::remove(actor, State(state.app.clone()), Path(path), headers, method)
        .await
        .into_response()
}

async fn hooks_or_reference(
    State(state): State<WebState>,
    visitor: Visitor,
    actor: MaybeActor,
    Path((owner, name)): Path<(String, String)>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
) -> PageResult {
    let Some(account) = visitor.account.clone().filter(|_| !wants_json(&headers)) else {
        return Ok(crate::projects::pages::list(
            actor,
            State(state.app.clone()),
            Path((owner, name)),
            headers,
            FormToken(visitor.csrf_token()),
        )
        .await
        .into_response());
    };
    let project = my_project(&state, &visitor, &account, &owner, &name).await?;
    let mut page = or_internal_error(&visitor, project_page_for(&state, &visitor, &project).await)?;
    page.notice = done_notice(visitor.lang.messages(), raw_query.as_deref());
    Ok(render(&page))
}

#[derive(Deserialize)]
struct HookForm {
    #[serde(default)]
    payload_url: String,
    #[serde(default)]
    secret: String,
}

async fn create_hook_submit(
    State(state): State<WebState>,
    Path((owner, name)): Path<(String, String)>,
    SignedInForm {
        visitor,
        account,
        form,
    }: SignedInForm<HookForm>,
) -> PageResult {
    let t = visitor.lang.messages();
    let project = my_project(&state, &visitor, &account, &owner, &name).await?;
    let input = HookIn {
        payload_url: Some(form.payload_url.clone()),
        secret: Some(form.secret.clone()),
        rate_per_second: None,
        max_concurrency: None,
    };
    let refused = if form.payload_url.trim().is_empty() {
        Some(("payload_url", t.error_required.to_string()))
    } else {
        match add_hook(&state, &project, input).await {
            Ok(created) => {
                let page = project_page_for(&state, &visitor, &project).await;
                let mut page = or_internal_error(&visitor, page)?;
                page.notice = Some(t.hook_created);
                page.created_secret = created.secret;
                return Ok(render(&page));
            }
            Err(ApiError::Validation(message)) => {
                let (field, detail) = message.split_once(": ").unwrap_or(("", &message));
                let field = if field == "secret" {
                    "secret"
                } else {
                    "payload_url"
                };
                Some((field, detail.to_string()))
            }
            Err(error) => return Err(internal_error(&visitor, &error)),
        }
    };
    let mut page = or_internal_error(&visitor, project_page_for(&state, &visitor, &project).await)?;
    page.payload_url = TypedField::typed(&form.payload_url);
    page.secret = TypedField::typed(&form.secret);
    if let Some((field, message)) = refused {
        let target = if field == "secret" {
            &mut page.secret
        } else {
            &mut page.payload_url
        };
        target.error = Some(message);
    }
    page.error = Some(t.form_has_errors);
    Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
}

#[derive(Deserialize)]
struct ActionForm {
    /// Redeliver: the delivery.
    #[serde(default)]
    delivery: String,
    /// Recover: the time failures are recovered from.
    #[serde(default)]
    since: String,
}

/// The hook's buttons: `disable`, `enable`, `delete`, `ping`, `redeliver`, `recover`. Each
/// redirects back to the page it came from, which says what was done.
async fn hook_action(
    State(state): State<WebState>,
    Path((owner, name, id, action)): Path<(String, String, String, String)>,
    SignedInForm {
        visitor,
        account,
        form,
    }: SignedInForm<ActionForm>,
) -> PageResult {
    let project = my_project(&state, &visitor, &account, &owner, &name).await?;
    let hook = found(&visitor, my_hook(&state, &project, &id).await, not_found)?;
    let list = hooks_href(&project);
    let log = format!("{list}/{}", hook.id);
    let result: Result<String, ApiError> = async {
        Ok(match action.as_str() {
            "disable" | "enable" => {
                crate::projects::health::set_active(&state.db, hook.id, action == "enable").await?;
                if action == "disable" {
                    let mut conn = state.db.writer().acquire().await?;
                    crate::outbox::cancel_for_webhook(&mut conn, hook.id).await?;
                } else {
                    state.outbox_wake.notify_one();
                }
                format!("{list}?done={action}")
            }
            "delete" => {
                crate::projects::delete_webhook(&state.db, project.id, hook.id).await?;
                format!("{list}?done=delete")
            }
            "ping" => {
                crate::projects::send_ping(&state.db, &state.ids, &project, &hook).await?;
                state.outbox_wake.notify_one();
                format!("{list}?done=ping")
            }
            "redeliver" => {
                let Ok(delivery) = form.delivery.trim().parse::<i64>() else {
                    return Err(ApiError::NotFound("no such delivery".into()));
                };
                match crate::outbox::redeliver(&state.db, hook.id, delivery).await? {
                    Redelivery::Queued => {
                        state.outbox_wake.notify_one();
                        format!("{log}?q={delivery}&done=redeliver")
                    }
                    Redelivery::AlreadyPending => format!("{log}?q={delivery}&done=pending"),
                    Redelivery::NotFound => {
                        return Err(ApiError::NotFound("no such delivery".into()));
                    }
                }
            }
            "recover" => {
                let Some(since) = parse_time(&form.since) else {
                    return Err(ApiError::Validation(form.since.clone()));
                };
                let count = crate::outbox::recover(&state.db, hook.id, since).await?;
                state.outbox_wake.notify_one();
                format!("{log}?done=recover&count={count}")
            }
            _ => return Err(ApiError::NotFound("no such action".into())),
        })
    }
    .await;
    match result {
        Ok(to) => Ok(Redirect::to(&to).into_response()),
        Err(ApiError::NotFound(_)) => Err(not_found(&visitor)),
        // Only a recover's time is refused this way: the log again, the time kept and marked.
        Err(ApiError::Validation(typed)) => {
            let query = LogQuery::default();
            let page = log_page_for(&state, &visitor, &project, &hook, &query).await;
            let mut page = or_internal_error(&visitor, page)?;
            page.since = TypedField {
                value: typed,
                error: Some(visitor.lang.messages().error_time.into()),
            };
            page.error = Some(visitor.lang.messages().form_has_errors);
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
        }
        Err(error) => Err(internal_error(&visitor, &error)),
    }
}

// --- the delivery log -----------------------------------------------------------------------

/// A time as the page's inputs send it (`datetime-local`: `2026-12-07T09:30`, read as UTC) or
/// in RFC 3339; Unix ms.
fn parse_time(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Some(time.timestamp_millis());
    }
    [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|format| chrono::NaiveDateTime::parse_from_str(raw, format).ok())
    .or_else(|| {
        chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
    .map(|t| t.and_utc().timestamp_millis())
}

/// A time as a `datetime-local` input shows it (UTC).
fn input_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M").to_string())
        .unwrap_or_default()
}

/// The log's query string; every part optional, kept as typed.
#[derive(Deserialize, Default, Clone)]
struct LogQuery {
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    class: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    /// A delivery id to find.
    #[serde(default)]
    q: String,
    #[serde(default)]
    before: String,
    #[serde(default)]
    count: String,
}

struct Choice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

struct AttemptItem {
    when: String,
    status: String,
    ok: bool,
    duration_ms: i64,
    body: String,
    error: String,
}

struct DeliveryItem {
    id: i64,
    event: String,
    status: String,
    status_label: &'static str,
    created: String,
    next_try: String,
    attempts: Vec<AttemptItem>,
    /// Finished (delivered, failed, cancelled): it can be sent again.
    redeliverable: bool,
}

#[derive(Template)]
#[template(path = "web/webhook_log.html")]
struct LogPage {
    layout: Layout,
    notice: Option<String>,
    error: Option<&'static str>,
    /// `/projects/{owner}/{name}/hooks/{id}`: where the forms post.
    actions: String,
    /// This page's path.
    here: String,
    back: String,
    payload_url: String,
    active: bool,
    outcomes: Vec<Choice>,
    classes: Vec<Choice>,
    from: TypedField,
    to: TypedField,
    search: TypedField,
    deliveries: Vec<DeliveryItem>,
    /// The address of the next (older) page.
    older: Option<String>,
    /// This is not the first page (or a search): a link to the newest.
    paged: bool,
    since: TypedField,
}

fn outcome_label(t: &'static Messages, status: &str) -> &'static str {
    match Outcome::parse(status) {
        Some(Outcome::Pending) => t.outcome_pending,
        Some(Outcome::Delivered) => t.outcome_delivered,
        Some(Outcome::Failed) => t.outcome_failed,
        Some(Outcome::Cancelled) => t.outcome_cancelled,
        None => t.outcome_pending,
    }
}

fn class_label(t: &'static Messages, class: StatusClass) -> &'static str {
    match class {
        StatusClass::NoAnswer => t.log_no_answer,
        other => other.as_str(),
    }
}

fn attempt_item(t: &'static Messages, attempt: &LoggedAttempt) -> AttemptItem {
    AttemptItem {
        when: chrono::DateTime::from_timestamp_millis(attempt.attempted_at)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default(),
        status: attempt
            .status_code
            .map_or_else(|| t.log_no_answer.to_string(), |c| format!("HTTP {c}")),
        ok: attempt.status_code.is_some_and(|c| (200..300).contains(&c)),
        duration_ms: attempt.duration_ms,
        body: attempt.response_body.clone().unwrap_or_default(),
        error: attempt.error.clone().unwrap_or_default(),
    }
}

/// The log page for a query; a filter that cannot be read is marked on its field and shows
/// no deliveries.
async fn log_page_for(
    state: &WebState,
    visitor: &Visitor,
    project: &Project,
    hook: &Webhook,
    query: &LogQuery,
) -> Result<LogPage, crate::store::StoreError> {
    let t = visitor.lang.messages();
    let here = format!("{}/{}", hooks_href(project), hook.id);
    let mut page = LogPage {
        layout: Layout::new(visitor, &format!("{} · {}", t.log_title, hook.payload_url)),
        notice: None,
        error: None,
        actions: format!(
            "/projects/{}/{}/hooks/{}",
            project.owner, project.name, hook.id
        ),
        here: here.clone(),
        back: hooks_href(project),
        payload_url: hook.payload_url.clone(),
        active: hook.active,
        outcomes: Outcome::ALL
            .into_iter()
            .map(|o| Choice {
                value: o.as_str(),
                label: outcome_label(t, o.as_str()),
                selected: query.outcome == o.as_str(),
            })
            .collect(),
        classes: StatusClass::ALL
            .into_iter()
            .map(|c| Choice {
                value: c.as_str(),
                label: class_label(t, c),
                selected: query.class == c.as_str(),
            })
            .collect(),
        from: TypedField::typed(&query.from),
        to: TypedField::typed(&query.to),
        search: TypedField::typed(&query.q),
        deliveries: Vec::new(),
        older: None,
        paged: !query.before.is_empty() || !query.q.is_empty(),
        since: TypedField::typed(&input_time(crate::ids::now_ms() - 24 * 3600 * 1000)),
    };
    let mut filter = LogFilter {
        outcome: Outcome::parse(&query.outcome),
        class: StatusClass::parse(&query.class),
        ..LogFilter::default()
    };
    let mut bad = false;
    for (raw, field, target) in [
        (&query.from, &mut page.from, &mut filter.from_ms),
        (&query.to, &mut page.to, &mut filter.to_ms),
    ] {
        if raw.trim().is_empty() {
            continue;
        }
        match parse_time(raw) {
            Some(ms) => *target = Some(ms),
            None => {
                field.error = Some(t.error_time.into());
                bad = true;
            }
        }
    }
    let search = if query.q.trim().is_empty() {
        None
    } else {
        match query.q.trim().parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => {
                page.search.error = Some(t.error_delivery_id.into());
                bad = true;
                None
            }
        }
    };
    filter.before = query.before.trim().parse::<i64>().ok();
    if bad {
        page.error = Some(t.form_has_errors);
        return Ok(page);
    }
    let deliveries = match search {
        Some(id) => crate::outbox::log::find(&state.db, hook.id, id)
            .await?
            .into_iter()
            .collect(),
        None => {
            let found = crate::outbox::log::page(&state.db, hook.id, &filter, PAGE_SIZE).await?;
            page.older = found.older.map(|cursor| {
                let mut next = url::form_urlencoded::Serializer::new(String::new());
                for (key, value) in [
                    ("outcome", &query.outcome),
                    ("class", &query.class),
                    ("from", &query.from),
                    ("to", &query.to),
                ] {
                    if !value.is_empty() {
                        next.append_pair(key, value);
                    }
                }
                next.append_pair("before", &cursor.to_string());
                format!("{here}?{}", next.finish())
            });
            found.deliveries
        }
    };
    let ids: Vec<i64> = deliveries.iter().map(|d| d.id).collect();
    let attempts = crate::outbox::log::attempts(&state.db, &ids).await?;
    page.deliveries = deliveries
        .into_iter()
        .map(|d| DeliveryItem {
            id: d.id,
            event: d.event_type.unwrap_or_default(),
            status_label: outcome_label(t, &d.status),
            redeliverable: d.status != "pending",
            next_try: if d.status == "pending" {
                display_time(d.next_attempt_at)
            } else {
                String::new()
            },
            status: d.status,
            created: display_time(d.created_at),
            attempts: attempts
                .iter()
                .filter(|a| a.delivery_id == d.id)
                .map(|a| attempt_item(t, a))
                .collect(),
        })
        .collect();
    Ok(page)
}

async fn log_or_reference(
    State(state): State<WebState>,
    visitor: Visitor,
    actor: MaybeActor,
    Path((owner, name, id)): Path<(String, String, String)>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
) -> PageResult {
    let raw = raw_query.unwrap_or_default();
    let Some(account) = visitor.account.clone().filter(|_| !wants_json(&headers)) else {
        let query = match serde_urlencoded::from_str(&raw) {
            Ok(query) => query,
            Err(error) => {
                return Ok(
                    ApiError::BadRequest(format!("not a delivery query: {error}")).into_response(),
                );
            }
        };
        return Ok(crate::projects::pages::log(
            actor,
            State(state.app.clone()),
            Path((owner, name, id)),
            axum::extract::Query(query),
            headers,
        )
        .await
        .into_response());
    };
    let project = my_project(&state, &visitor, &account, &owner, &name).await?;
    let hook = found(&visitor, my_hook(&state, &project, &id).await, not_found)?;
    let query: LogQuery = serde_urlencoded::from_str(&raw).unwrap_or_default();
    let page = log_page_for(&state, &visitor, &project, &hook, &query).await;
    let mut page = or_internal_error(&visitor, page)?;
    let t = visitor.lang.messages();
    page.notice = done_notice(t, Some(&raw)).map(|notice| {
        if notice == t.log_recovered {
            format!("{notice} {}", query.count.trim())
        } else {
            notice.to_string()
        }
    });
    let status = if page.error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, render(&page)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_as_the_inputs_send_them_in_utc() {
        assert_eq!(parse_time("2026-12-07T09:30"), Some(1_796_635_800_000));
        assert_eq!(parse_time("2026-12-07T09:30:00Z"), Some(1_796_635_800_000));
        assert_eq!(parse_time("2026-12-07 09:30"), Some(1_796_635_800_000));
        assert_eq!(parse_time("2026-12-07"), Some(1_796_601_600_000));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(input_time(1_796_635_800_000), "2026-12-07T09:30");
    }
}

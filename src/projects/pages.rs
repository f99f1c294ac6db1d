//! The reference routes, kept exactly: `GET /{owner}/{project}/webhooks` (an HTML page with the
//! list, an add form and a delete button per hook; JSON with `Accept: application/json`),
//! `POST /{owner}/{project}/webhooks` (form or JSON) and `POST`/`DELETE
//! /{owner}/{project}/webhooks/{id}` to delete. Plus a page per hook with its delivery log, and a
//! login page that lets a browser hold the operator token in a cookie.
//!
//! Anyone who is not the owner (today: the operator) gets 404 and learns nothing.
//!
//! The web router serves these paths (`web::projects`): a browser signed in to an account gets
//! its pages at the two `GET` paths; everyone else is handed to [`list`], [`log`], [`create`]
//! and [`remove`] here, after `web` checked the CSRF token of a form that a browser posts as
//! the operator by its cookie. Their forms carry that token ([`FormToken`]) and their style is
//! the embedded [`REFERENCE_STYLESHEET`], as the pages' Content-Security-Policy wants.

use axum::Form;
use axum::Json;
use axum::body::Bytes;

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::api::{DeliveryQuery, HookIn, add_hook, hook_deliveries, load_hook, load_project};
use super::{delete_webhook, list_webhooks};
use crate::accounts::auth::{Actor, MaybeActor};
use crate::http::auth::{ADMIN_COOKIE, check_typed_token};
use crate::http::error::ApiError;
use crate::http::routes::{Outside, Routes};
use crate::notify::render::escape_html;
use crate::state::AppState;

/// Pages for people: outside the OpenAPI document. (The hook list also answers JSON for the
/// reference's clients; the documented JSON API for projects is `/api/v1/projects`.)
pub fn router(state: AppState) -> Routes {
    Routes::new()
        .outside(Outside::Page, Method::GET, "/login", login_page)
        .outside(Outside::Page, Method::POST, "/login", login)
        // The hook paths themselves are `web::projects`': it answers a signed-in owner with the
        // pages for people, checks the CSRF token of a browser that is the operator by its
        // cookie, and hands the rest to [`list`], [`log`], [`create`] and [`remove`].
        .with_state(state)
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn is_json_body(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn hidden(owner: &str, project: &str) -> ApiError {
    ApiError::NotFound(format!("no project {owner}/{project}"))
}

/// The reference pages' style sheet, embedded and served by `web::assets` (the pages' CSP
/// allows no inline style).
pub const REFERENCE_STYLESHEET: &str = "/assets/reference.css";

/// The CSRF token the forms of a reference page carry (`web` computes it for the browser;
/// a program that names itself with an `Authorization` header needs none).
pub struct FormToken(pub String);

fn token_field(token: &FormToken) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape_html(&token.0)
    )
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · herald</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"stylesheet\" href=\"{REFERENCE_STYLESHEET}\">\
         </head><body><h1>{title}</h1>{body}</body></html>",
        title = escape_html(title)
    ))
}

async fn list_page(
    state: &AppState,
    actor: &Actor,
    owner: &str,
    project: &str,
    error: Option<&str>,
    token: &FormToken,
) -> Result<Response, ApiError> {
    let found = load_project(state, actor, owner, project).await?;
    let token = token_field(token);
    let hooks = list_webhooks(&state.db, found.id).await?;
    let base = format!("/{}/{}/webhooks", escape_html(owner), escape_html(project));
    let mut rows = String::new();
    for hook in &hooks {
        let status = if hook.active {
            "active".to_string()
        } else {
            format!(
                "disabled: {}",
                escape_html(hook.disabled_reason.as_deref().unwrap_or(""))
            )
        };
        rows.push_str(&format!(
            "<tr><td><a href=\"{base}/{id}\">{url}</a></td><td>{status}</td><td>{created}</td>\
             <td><form method=\"post\" action=\"{base}/{id}\">{token}<button>Delete</button></form></td></tr>",
            id = hook.id,
            url = escape_html(&hook.payload_url),
            created = escape_html(&hook.created_at),
        ));
    }
    if hooks.is_empty() {
        rows.push_str("<tr><td colspan=\"4\">No webhooks yet.</td></tr>");
    }
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>", escape_html(e)))
        .unwrap_or_default();
    let body = format!(
        "<p>Repository <code>{repo}</code>, branches <code>{branches}</code>.</p>{error}\
         <table><tr><th>Payload URL</th><th>Status</th><th>Created</th><th></th></tr>{rows}</table>\
         <h2>Add a webhook</h2><form method=\"post\" action=\"{base}\">{token}\
         <p><label>Payload URL<br><input name=\"payloadUrl\" type=\"url\" size=\"60\" maxlength=\"2000\" required></label></p>\
         <p><label>Secret (empty: one is generated)<br><input name=\"secret\" size=\"40\" maxlength=\"250\"></label></p>\
         <p><button>Add webhook</button></p></form>",
        repo = escape_html(&found.repository),
        branches = escape_html(&found.branches),
    );
    let status = if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((
        status,
        page(&format!("Webhooks of {owner}/{project}"), &body),
    )
        .into_response())
}

pub async fn list(
    MaybeActor(actor): MaybeActor,
    State(state): State<AppState>,
    Path((owner, project)): Path<(String, String)>,
    headers: HeaderMap,
    token: FormToken,
) -> Result<Response, ApiError> {
    let Some(actor) = actor.filter(|a| a.may_manage(&owner)) else {
        return Err(hidden(&owner, &project));
    };
    if wants_json(&headers) {
        let found = load_project(&state, &actor, &owner, &project).await?;
        let hooks = list_webhooks(&state.db, found.id).await?;
        return Ok(Json(json!({"webhooks": hooks})).into_response());
    }
    list_page(&state, &actor, &owner, &project, None, &token).await
}

pub async fn create(
    MaybeActor(actor): MaybeActor,
    State(state): State<AppState>,
    Path((owner, project)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
    token: FormToken,
) -> Result<Response, ApiError> {
    let Some(actor) = actor.filter(|a| a.may_manage(&owner)) else {
        return Err(hidden(&owner, &project));
    };
    let found = load_project(&state, &actor, &owner, &project).await?;
    let json_body = is_json_body(&headers);
    let input: HookIn = if json_body {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("not a webhook: {e}")))?
    } else {
        serde_urlencoded::from_bytes(&body)
            .map_err(|e| ApiError::BadRequest(format!("not a webhook form: {e}")))?
    };
    match add_hook(&state, &found, input).await {
        Ok(created) if json_body || wants_json(&headers) => {
            Ok((StatusCode::CREATED, Json(created)).into_response())
        }
        Ok(created) => {
            if let Some(secret) = created.secret {
                let body = format!(
                    "<p>Webhook added. Its secret, shown this once:</p><pre>{}</pre><p><a href=\"/{}/{}/webhooks\">Back to the list</a></p>",
                    escape_html(&secret),
                    escape_html(&owner),
                    escape_html(&project)
                );
                return Ok((StatusCode::CREATED, page("Webhook added", &body)).into_response());
            }
            Ok(Redirect::to(&format!("/{owner}/{project}/webhooks")).into_response())
        }
        Err(ApiError::Validation(message)) if !json_body && !wants_json(&headers) => {
            list_page(&state, &actor, &owner, &project, Some(&message), &token).await
        }
        Err(error) => Err(error),
    }
}

pub async fn remove(
    MaybeActor(actor): MaybeActor,
    State(state): State<AppState>,
    Path((owner, project, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    method: axum::http::Method,
) -> Result<Response, ApiError> {
    let Some(actor) = actor.filter(|a| a.may_manage(&owner)) else {
        return Err(hidden(&owner, &project));
    };
    let found = load_project(&state, &actor, &owner, &project).await?;
    let hook = load_hook(&state, &found, &id).await?;
    delete_webhook(&state.db, found.id, hook.id).await?;
    if method == axum::http::Method::DELETE || wants_json(&headers) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Redirect::to(&format!("/{owner}/{project}/webhooks")).into_response())
}

pub async fn log(
    MaybeActor(actor): MaybeActor,
    State(state): State<AppState>,
    Path((owner, project, id)): Path<(String, String, String)>,
    Query(query): Query<DeliveryQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(actor) = actor.filter(|a| a.may_manage(&owner)) else {
        return Err(hidden(&owner, &project));
    };
    let found = load_project(&state, &actor, &owner, &project).await?;
    let hook = load_hook(&state, &found, &id).await?;
    let deliveries = hook_deliveries(&state, hook.id, &query).await?;
    if wants_json(&headers) {
        return Ok(Json(json!({"webhook": hook, "deliveries": deliveries})).into_response());
    }
    let mut rows = String::new();
    for delivery in &deliveries {
        let mut attempts = String::new();
        for attempt in &delivery.attempts {
            attempts.push_str(&format!(
                "<li>{} — {} in {} ms{}{}</li>",
                escape_html(&attempt.attempted_at),
                attempt
                    .status_code
                    .map_or("no answer".to_string(), |c| format!("HTTP {c}")),
                attempt.duration_ms,
                attempt
                    .error
                    .as_deref()
                    .map(|e| format!(" — <span class=\"error\">{}</span>", escape_html(e)))
                    .unwrap_or_default(),
                attempt
                    .response_body
                    .as_deref()
                    .filter(|b| !b.is_empty())
                    .map(|b| format!("<pre>{}</pre>", escape_html(b)))
                    .unwrap_or_default(),
            ));
        }
        rows.push_str(&format!(
            "<tr><td><code>{id}</code></td><td>{event}</td><td>{status}</td><td>{created}</td><td><ul>{attempts}</ul></td></tr>",
            id = delivery.id,
            event = escape_html(delivery.event.as_deref().unwrap_or("")),
            status = escape_html(&delivery.status),
            created = escape_html(&delivery.created_at),
        ));
    }
    if deliveries.is_empty() {
        rows.push_str("<tr><td colspan=\"5\">No deliveries yet.</td></tr>");
    }
    let body = format!(
        "<p>To <code>{url}</code> — {active}. <a href=\"/{owner}/{project}/webhooks\">All webhooks</a></p>\
         <p>Redeliver with <code>POST /api/v1/projects/{owner}/{project}/webhooks/{id}/deliveries/&lt;id&gt;/redeliver</code>.</p>\
         <table><tr><th>Delivery</th><th>Event</th><th>Status</th><th>Created</th><th>Attempts</th></tr>{rows}</table>",
        url = escape_html(&hook.payload_url),
        active = if hook.active { "active" } else { "disabled" },
        owner = escape_html(&owner),
        project = escape_html(&project),
        id = hook.id,
    );
    Ok(page(&format!("Deliveries of webhook {}", hook.id), &body).into_response())
}

async fn login_page() -> Html<String> {
    page(
        "Sign in",
        "<form method=\"post\" action=\"/login\"><p><label>Operator token (HERALD_ADMIN_TOKEN)<br>\
         <input name=\"token\" type=\"password\" size=\"40\" required></label></p>\
         <p><input type=\"hidden\" name=\"next\" value=\"/\"><button>Sign in</button></p></form>",
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(state): State<AppState>,
    crate::http::auth::Client(client): crate::http::auth::Client,
    Form(form): Form<LoginForm>,
) -> Response {
    let valid = match check_typed_token(&state, client, form.token.trim()) {
        Ok(valid) => valid,
        Err(wait) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(
                    header::RETRY_AFTER,
                    crate::limits::retry_after_secs(wait).to_string(),
                )],
                page(
                    "Sign in",
                    "<p class=\"error\">Too many wrong tokens from this address; try again later.</p>",
                ),
            )
                .into_response();
        }
    };
    if !valid {
        return (
            StatusCode::UNAUTHORIZED,
            page(
                "Sign in",
                "<p class=\"error\">Wrong token.</p><p><a href=\"/login\">Try again</a></p>",
            ),
        )
            .into_response();
    }
    let secure = if state.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{ADMIN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{secure}",
        form.token.trim()
    );
    (
        StatusCode::OK,
        [(header::SET_COOKIE, cookie)],
        page(
            "Signed in",
            "<p>Signed in as the operator. Open the <a href=\"/operator\">operator view</a>, or a \
             project's <code>/{owner}/{project}/webhooks</code> page.</p>",
        ),
    )
        .into_response()
}

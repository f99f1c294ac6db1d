//! herald's pages for people, starting at `/`: server-rendered with askama (templates in
//! `templates/web/`), one embedded style sheet (`assets.rs`), no script. Every form works
//! without JavaScript.
//!
//! What every page shares is here and in the modules beside it:
//! - `session.rs` — who is visiting ([`session::Visitor`]): the session cookie (a login token of
//!   `accounts`, so signing out anywhere revokes it), the language, the browser's CSRF key.
//! - `csrf.rs` — [`csrf::CsrfForm`], the only way a page handler reads a posted form: a form
//!   without the token bound to this browser's cookies is refused with a 403 page;
//!   [`csrf::SignedInForm`] is one from a signed-in visitor (anyone else goes to `/signin`).
//! - [`PageResult`], [`found`], [`changed`], [`or_internal_error`] — the one shape of a handler
//!   about "my" things: look them up, stop at the not-found or internal-error page with `?`.
//! - `i18n/` — English and Korean text, one file per language.
//! - `headers.rs` — the security headers of every page (Content-Security-Policy without
//!   inline scripts or styles, no framing, no sniffing).
//! - [`Layout`] — what the base template needs: the language's text, the title, the visitor's
//!   name and the CSRF token for the sign-out form.
//!
//! Pages: `home.rs` (the landing page and, signed in, the dashboard), `account.rs` (sign-up,
//! verification, sign-in and -out, forgotten and changed passwords, sessions), `messengers.rs`
//! (linked contacts, link codes, unlinking), `projects.rs` (my projects, their webhooks and
//! each hook's delivery log).
//! `chat.rs` is the chat page, the one page with a script (`assets/chat.js`, made live over
//! `/ws`); without the script it works like the others.
//! `subscriptions.rs` (my contacts' subscriptions, filters, digest, quiet time), `kb.rs` (the
//! knowledge-base search), `teams.rs` (my teams, their members and members' days),
//! `schedules.rs` (my scheduled announcements, their preview and runs), `operator.rs` (the
//! operator's view and knowledge-base editing, for the operator's cookie from `/login`).
//!
//! **Boundary**: pages read and change other features' data only through those features'
//! functions; `web` owns no table.

pub mod assets;
pub mod csrf;
mod headers;
pub mod i18n;
pub mod session;

mod account;
mod home;
mod messengers;
mod projects;
// The chat page (issue 22).
mod chat;
// subscriptions, teams and schedules, knowledge base
mod kb;
mod schedules;
mod subscriptions;
mod teams;
// The operator's view and knowledge-base editing.
mod operator;

use axum::http::Method;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::accounts::http::AccountsState;
use crate::http::routes::{Outside, Routes};
use crate::state::AppState;
use crate::store::StorageFailure;
use i18n::{Lang, Messages};
use session::Visitor;

/// The pages' state: the shared infrastructure and the accounts feature (whose limits the
/// sign-in and sign-up forms share with the API).
#[derive(Clone)]
pub struct WebState {
    pub app: AppState,
    pub accounts: AccountsState,
    /// The chat (`chat.rs`): its bus, so a message sent from a page reaches every socket.
    pub chat: crate::chat::ChatState,
    /// The knowledge base the search page reads (`kb`).
    pub kb: std::sync::Arc<crate::kb::KnowledgeBase>,
    /// The scheduler's wake-up (`schedules`): a team made on a page has a first morning.
    pub schedules_wake: std::sync::Arc<tokio::sync::Notify>,
    /// What start-up decided that the operator's view shows (`operator`).
    pub operator: std::sync::Arc<OperatorFacts>,
}

pub use operator::OperatorFacts;

crate::feature_state!(WebState);

/// The pages, outside the OpenAPI document, with what every page shares as layers.
pub fn router(state: WebState) -> Routes {
    Routes::new()
        .outside(Outside::Page, Method::GET, "/", home::index)
        .outside(
            Outside::Page,
            Method::GET,
            "/lang/{code}",
            session::switch_language,
        )
        .outside(
            Outside::Asset,
            Method::GET,
            "/assets/{*path}",
            assets::serve,
        )
        .outside(Outside::Asset, Method::GET, "/favicon.ico", assets::favicon)
        .merge(account::routes())
        .merge(messengers::routes())
        .merge(projects::routes())
        .merge(chat::routes())
        // subscriptions, teams and schedules, knowledge base
        .merge(subscriptions::routes())
        .merge(kb::routes())
        .merge(teams::routes())
        .merge(operator::routes())
        .merge(schedules::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            session::browser_key,
        ))
        .layer(axum::middleware::from_fn(headers::security_headers))
        .layer(axum::extract::DefaultBodyLimit::max(csrf::MAX_FORM_BYTES))
        .with_state(state)
}

/// A language choice in the header's switch.
pub struct LangChoice {
    pub code: &'static str,
    pub name: &'static str,
    pub current: bool,
}

/// What the base template (`templates/web/base.html`) shows around every page.
pub struct Layout {
    pub t: &'static Messages,
    pub lang: &'static str,
    pub title: String,
    /// The signed-in account's name.
    pub user: Option<String>,
    /// The visitor holds the operator's cookie: the header leads to `/operator`.
    pub operator: bool,
    /// The token every form of this page carries (the header's sign-out form too).
    pub csrf: String,
    /// This page's path, URL-encoded, for the language switch to come back to.
    pub here: String,
    pub langs: Vec<LangChoice>,
    pub stylesheet: &'static str,
    pub icon: &'static str,
}

impl Layout {
    pub fn new(visitor: &Visitor, title: &str) -> Layout {
        Layout {
            t: visitor.lang.messages(),
            lang: visitor.lang.code(),
            title: title.to_string(),
            user: visitor.account.as_ref().map(|a| a.name.clone()),
            operator: visitor.operator,
            csrf: visitor.csrf_token(),
            here: url::form_urlencoded::byte_serialize(visitor.here.as_bytes()).collect(),
            langs: Lang::ALL
                .into_iter()
                .map(|lang| LangChoice {
                    code: lang.code(),
                    name: lang.own_name(),
                    current: lang == visitor.lang,
                })
                .collect(),
            stylesheet: assets::stylesheet_url(),
            icon: assets::icon_url(),
        }
    }
}

/// A form field as the page shows it again: what was typed, and what is wrong with it.
#[derive(Default, Clone)]
pub struct Field {
    pub value: String,
    pub error: Option<&'static str>,
}

impl Field {
    pub fn typed(value: &str) -> Field {
        Field {
            value: value.to_string(),
            error: None,
        }
    }
}

/// A page with a title, a message and a link onward: results, refusals, errors.
#[derive(askama::Template)]
#[template(path = "web/message.html")]
pub struct MessagePage {
    pub layout: Layout,
    pub text: String,
    pub tone: &'static str,
    /// A link onward (empty: none).
    pub link_href: String,
    pub link_label: String,
}

impl MessagePage {
    pub fn new(visitor: &Visitor, title: &str, text: &str, tone: &'static str) -> MessagePage {
        MessagePage {
            layout: Layout::new(visitor, title),
            text: text.to_string(),
            tone,
            link_href: String::new(),
            link_label: String::new(),
        }
    }

    pub fn link(mut self, href: &str, label: &str) -> MessagePage {
        self.link_href = href.to_string();
        self.link_label = label.to_string();
        self
    }

    pub fn with_status(self, status: StatusCode) -> Response {
        (status, render(&self)).into_response()
    }
}

/// Renders a template into a page response; a template that fails to render (it cannot, short
/// of a bug) is logged and answered with a plain 500.
pub fn render<T: askama::Template>(template: &T) -> Response {
    match template.render() {
        Ok(html) => axum::response::Html(html).into_response(),
        Err(error) => {
            tracing::error!(%error, "a page template failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// What a page handler answers: its page, or the error page it stopped at with `?`.
///
/// The error side is a whole `Response`, large for a `Result`: these results go straight back
/// to axum once per request, so the helpers below allow `clippy::result_large_err` rather than
/// box what is moved only once.
pub type PageResult = Result<Response, Response>;

/// A step's result for a page handler: its value, or the failure page of [`internal_error`].
#[allow(clippy::result_large_err)]
pub fn or_internal_error<T, E: PageFailure>(
    visitor: &Visitor,
    result: Result<T, E>,
) -> Result<T, Response> {
    result.map_err(|error| internal_error(visitor, &error))
}

/// "My" thing looked up for a page handler: found, or the page's own not-found answer (a thing
/// that is not mine is not found either), or the internal-error page.
#[allow(clippy::result_large_err)]
pub fn found<T, E: PageFailure>(
    visitor: &Visitor,
    result: Result<Option<T>, E>,
    not_found: fn(&Visitor) -> Response,
) -> Result<T, Response> {
    or_internal_error(visitor, result)?.ok_or_else(|| not_found(visitor))
}

/// A change to "my" thing made by a page handler: done, or (the thing was gone) the page's own
/// not-found answer, or the internal-error page.
#[allow(clippy::result_large_err)]
pub fn changed<E: PageFailure>(
    visitor: &Visitor,
    result: Result<bool, E>,
    not_found: fn(&Visitor) -> Response,
) -> Result<(), Response> {
    found(visitor, result.map(|done| done.then_some(())), not_found)
}

/// A page that was built, rendered with `status`; one whose building failed is the
/// internal-error page.
pub fn render_or_internal_error<T: askama::Template, E: PageFailure>(
    visitor: &Visitor,
    status: StatusCode,
    built: Result<T, E>,
) -> Response {
    match built {
        Ok(page) => (status, render(&page)).into_response(),
        Err(error) => internal_error(visitor, &error),
    }
}

/// The 404 page for a thing that is not there or not the visitor's, with a link back to where
/// such things are listed.
pub fn not_found_page(
    visitor: &Visitor,
    title: &str,
    text: &str,
    back_href: &str,
    back_label: &str,
) -> Response {
    MessagePage::new(visitor, title, text, "bad")
        .link(back_href, back_label)
        .with_status(StatusCode::NOT_FOUND)
}

/// The page for a request that failed: logged with its cause, shown without it. A failure of
/// storage (a full or failing disk, `store::storage_failure`), through whatever wrapped it, is
/// answered with [`storage_unavailable`] (503) rather than the generic 500 page.
pub fn internal_error<E: PageFailure + ?Sized>(visitor: &Visitor, error: &E) -> Response {
    if let Some(failure) = error.storage_failure() {
        tracing::error!(%error, "a page failed: storage unavailable");
        return storage_unavailable(visitor, failure);
    }
    tracing::error!(%error, "a page failed");
    let t = visitor.lang.messages();
    MessagePage::new(visitor, t.error_internal, t.error_internal, "bad")
        .link("/", t.back_home)
        .with_status(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The page for a request whose writes could not be stored: 503 with `Retry-After`, saying that
/// nothing was saved and to try again later, and marked so that `/readyz` hears of it (as the
/// API's `storage_unavailable` is).
pub fn storage_unavailable(visitor: &Visitor, failure: StorageFailure) -> Response {
    let t = visitor.lang.messages();
    let text = match failure {
        StorageFailure::Full => t.error_storage_full,
        StorageFailure::Io => t.error_storage_io,
    };
    let mut response = MessagePage::new(visitor, t.error_storage_title, text, "bad")
        .link("/", t.back_home)
        .with_status(StatusCode::SERVICE_UNAVAILABLE);
    crate::http::error::mark_storage_failed(&mut response, failure);
    response
}

/// What a page handler can fail with: anything that prints (for the log) and can tell whether
/// it was a failure of storage.
pub trait PageFailure: std::fmt::Display {
    fn storage_failure(&self) -> Option<StorageFailure>;
}

impl PageFailure for crate::store::StoreError {
    fn storage_failure(&self) -> Option<StorageFailure> {
        crate::store::storage_failure(self)
    }
}

impl PageFailure for anyhow::Error {
    fn storage_failure(&self) -> Option<StorageFailure> {
        crate::store::storage_failure_in(self)
    }
}

impl PageFailure for crate::http::error::ApiError {
    fn storage_failure(&self) -> Option<StorageFailure> {
        match self {
            crate::http::error::ApiError::StorageUnavailable(failure) => Some(*failure),
            crate::http::error::ApiError::Internal(error) => {
                crate::store::storage_failure_in(error)
            }
            _ => None,
        }
    }
}

impl PageFailure for crate::accounts::http::AuthError {
    fn storage_failure(&self) -> Option<StorageFailure> {
        self.storage
    }
}

impl PageFailure for crate::kb::KbError {
    fn storage_failure(&self) -> Option<StorageFailure> {
        crate::store::storage_failure(self)
    }
}

impl PageFailure for String {
    fn storage_failure(&self) -> Option<StorageFailure> {
        None
    }
}

//! The account pages: sign up → verification mail → confirm → sign in → sign out; a forgotten
//! password reset through a mailed link; the account page (change the password, sign out
//! everywhere). The decisions and limits are `accounts`' (`accounts::http::sign_up`, `log_in`,
//! `verify_signup`, `accounts::password`); these handlers show forms and their outcome.

use askama::Template;
use axum::extract::{Path, Query};

use crate::http::auth::Client;
use crate::http::routes::{Outside, Routes};
use axum::http::Method;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::csrf::{CsrfForm, NoFields, SignedInForm};
use super::i18n::Messages;
use super::session::{SignedIn, Visitor, clear_session_cookie, session_cookie};
use super::{Field, Layout, MessagePage, WebState, internal_error, render};
use crate::accounts::http::{AuthError, SignUpIn, VerifyLink, log_in, sign_up, verify_signup};
use crate::accounts::{password, valid_email, valid_name, valid_password};
use crate::store::StorageFailure;

pub fn routes() -> Routes<WebState> {
    Routes::new()
        .outside(Outside::Page, Method::GET, "/signup", sign_up_page)
        .outside(Outside::Page, Method::POST, "/signup", sign_up_submit)
        .outside(Outside::Page, Method::GET, "/verify/{key}", verify_page)
        .outside(Outside::Page, Method::POST, "/verify/{key}", verify_submit)
        .outside(Outside::Page, Method::GET, "/signin", sign_in_page)
        .outside(Outside::Page, Method::POST, "/signin", sign_in_submit)
        .outside(Outside::Page, Method::POST, "/signout", sign_out)
        .outside(Outside::Page, Method::GET, "/forgot", forgot_page)
        .outside(Outside::Page, Method::POST, "/forgot", forgot_submit)
        .outside(Outside::Page, Method::GET, "/reset/{key}", reset_page)
        .outside(Outside::Page, Method::POST, "/reset/{key}", reset_submit)
        .outside(Outside::Page, Method::GET, "/account", account_page)
        .outside(
            Outside::Page,
            Method::POST,
            "/account/password",
            change_password,
        )
        .outside(
            Outside::Page,
            Method::POST,
            "/account/sessions",
            sign_out_everywhere,
        )
}

/// Where a refusal from `accounts` is shown, and in which words.
struct Shown {
    field: Option<&'static str>,
    message: &'static str,
}

fn shown(visitor: &Visitor, error: &AuthError) -> Shown {
    let t = visitor.lang.messages();
    let on = |field: &'static str, message: &'static str| Shown {
        field: Some(field),
        message,
    };
    let general = |message: &'static str| Shown {
        field: None,
        message,
    };
    match (error.status.as_u16(), error.field) {
        (429, _) => general(t.error_too_many),
        (409, Some("name")) => on("name", t.error_name_taken),
        (401, Some("current_password")) => on("current_password", t.error_wrong_current_password),
        (401, _) => general(t.error_wrong_login),
        (400, Some(field)) => on(field, t.error_required),
        (422, Some("name")) => on("name", t.error_name_rule),
        (422, Some("email")) => on("email", t.error_email_rule),
        (422, Some("password")) => on("password", t.error_password_rule),
        (503, _) => match error.storage {
            Some(StorageFailure::Full) => general(t.error_storage_full),
            Some(StorageFailure::Io) => general(t.error_storage_io),
            None => general(t.error_busy),
        },
        _ => {
            tracing::error!(status = %error.status, reason = %error.reason, "an account form failed");
            general(t.error_internal)
        }
    }
}

/// A form shown again with its refusal ([`shown`]), with the refusal's status and its
/// `Retry-After`; a refusal for lack of storage is marked so that `/readyz` hears of it, as the
/// API's is.
fn form_refused<T: Template>(error: &AuthError, page: &T) -> Response {
    let mut response = (error.status, render(page)).into_response();
    if let Some(wait) = error.retry_after {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            crate::limits::retry_after_secs(wait).into(),
        );
    }
    if let Some(failure) = error.storage {
        crate::http::error::mark_storage_failed(&mut response, failure);
    }
    response
}

/// A field's error from the shared validators, in the page's words.
fn check(
    value: &str,
    validate: impl Fn(&str) -> Result<(), String>,
    t: &Messages,
    rule: &'static str,
) -> Option<&'static str> {
    if value.trim().is_empty() {
        return Some(t.error_required);
    }
    validate(value).err().map(|_| rule)
}

// --- sign up --------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "web/signup.html")]
struct SignUpPage {
    layout: Layout,
    error: Option<&'static str>,
    name: Field,
    email: Field,
    password: Field,
}

impl SignUpPage {
    fn new(visitor: &Visitor) -> SignUpPage {
        SignUpPage {
            layout: Layout::new(visitor, visitor.lang.messages().sign_up_title),
            error: None,
            name: Field::default(),
            email: Field::default(),
            password: Field::default(),
        }
    }

    fn field(&mut self, name: &str) -> Option<&mut Field> {
        match name {
            "name" => Some(&mut self.name),
            "email" => Some(&mut self.email),
            "password" => Some(&mut self.password),
            _ => None,
        }
    }
}

async fn sign_up_page(visitor: Visitor) -> Response {
    if visitor.account.is_some() {
        return Redirect::to("/").into_response();
    }
    render(&SignUpPage::new(&visitor))
}

#[derive(Deserialize)]
struct SignUpForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

async fn sign_up_submit(
    state: axum::extract::State<WebState>,
    Client(client): Client,
    CsrfForm { visitor, form }: CsrfForm<SignUpForm>,
) -> Response {
    let t = visitor.lang.messages();
    let mut page = SignUpPage::new(&visitor);
    page.name = Field::typed(&form.name);
    page.email = Field::typed(&form.email);
    page.name.error = check(
        &form.name,
        |v| valid_name(v).map(drop),
        t,
        t.error_name_rule,
    );
    page.email.error = check(
        &form.email,
        |v| valid_email(v).map(drop),
        t,
        t.error_email_rule,
    );
    page.password.error = check(&form.password, valid_password, t, t.error_password_rule);
    if page.name.error.is_some() || page.email.error.is_some() || page.password.error.is_some() {
        page.error = Some(t.form_has_errors);
        return (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response();
    }
    let input = SignUpIn {
        name: Some(form.name),
        email: Some(form.email),
        password: Some(form.password),
    };
    match sign_up(&state.accounts, client, input, VerifyLink::Page).await {
        Ok(()) => MessagePage::new(
            &visitor,
            t.sign_up_mailed_title,
            t.sign_up_mailed_text,
            "ok",
        )
        .with_status(StatusCode::OK),
        Err(error) => {
            let shown = shown(&visitor, &error);
            match shown.field.and_then(|f| page.field(f)) {
                Some(field) => {
                    field.error = Some(shown.message);
                    page.error = Some(t.form_has_errors);
                }
                None => page.error = Some(shown.message),
            }
            form_refused(&error, &page)
        }
    }
}

// --- verify ---------------------------------------------------------------------------------

/// A page with one button that posts to `action`: links in mails only show it, so that a mail
/// scanner opening the link uses nothing up.
#[derive(Template)]
#[template(path = "web/confirm.html")]
struct ConfirmPage {
    layout: Layout,
    action: String,
    text: &'static str,
    submit: &'static str,
}

/// Keys are what `accounts::random_secret` makes; anything else cannot be one.
fn plausible_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 200
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn link_refused(visitor: &Visitor, error: Option<&AuthError>) -> Response {
    let t = visitor.lang.messages();
    let (status, text) = match error {
        Some(error) if error.status == StatusCode::GONE => (StatusCode::GONE, t.link_expired),
        Some(error) if error.status.is_server_error() => {
            return internal_error(visitor, error);
        }
        _ => (StatusCode::NOT_FOUND, t.link_invalid),
    };
    MessagePage::new(visitor, text, text, "bad")
        .link("/", t.back_home)
        .with_status(status)
}

async fn verify_page(visitor: Visitor, Path(key): Path<String>) -> Response {
    if !plausible_key(&key) {
        return link_refused(&visitor, None);
    }
    let t = visitor.lang.messages();
    render(&ConfirmPage {
        layout: Layout::new(&visitor, t.verify_title),
        action: format!("/verify/{key}"),
        text: t.verify_text,
        submit: t.verify_submit,
    })
}

async fn verify_submit(
    state: axum::extract::State<WebState>,
    Path(key): Path<String>,
    CsrfForm { visitor, .. }: CsrfForm<NoFields>,
) -> Response {
    let t = visitor.lang.messages();
    match verify_signup(&state.accounts, &key).await {
        Ok(_) => MessagePage::new(&visitor, t.verify_title, t.verify_done, "ok")
            .link("/signin", t.nav_sign_in)
            .with_status(StatusCode::OK),
        Err(error) => link_refused(&visitor, Some(&error)),
    }
}

// --- sign in and out ------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "web/signin.html")]
struct SignInPage {
    layout: Layout,
    notice: Option<&'static str>,
    error: Option<&'static str>,
    email: Field,
    password: Field,
}

impl SignInPage {
    fn new(visitor: &Visitor) -> SignInPage {
        SignInPage {
            layout: Layout::new(visitor, visitor.lang.messages().sign_in_title),
            notice: None,
            error: None,
            email: Field::default(),
            password: Field::default(),
        }
    }
}

#[derive(Deserialize)]
struct SignInQuery {
    out: Option<String>,
}

async fn sign_in_page(visitor: Visitor, Query(query): Query<SignInQuery>) -> Response {
    if visitor.account.is_some() {
        return Redirect::to("/").into_response();
    }
    let mut page = SignInPage::new(&visitor);
    if query.out.is_some() {
        page.notice = Some(visitor.lang.messages().signed_out);
    }
    render(&page)
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

async fn sign_in_submit(
    state: axum::extract::State<WebState>,
    Client(client): Client,
    CsrfForm { visitor, form }: CsrfForm<SignInForm>,
) -> Response {
    let t = visitor.lang.messages();
    let mut page = SignInPage::new(&visitor);
    page.email = Field::typed(&form.email);
    if form.email.trim().is_empty() {
        page.email.error = Some(t.error_required);
    }
    if form.password.is_empty() {
        page.password.error = Some(t.error_required);
    }
    if page.email.error.is_some() || page.password.error.is_some() {
        page.error = Some(t.form_has_errors);
        return (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response();
    }
    match log_in(&state.accounts, client, &form.email, form.password).await {
        Ok((_, token)) => {
            // Signing in again replaces this browser's session: the one it held ends.
            if let Some(previous) = &visitor.session
                && let Err(error) = crate::accounts::revoke_token(&state.db, previous).await
            {
                tracing::warn!(%error, "could not revoke the session a new sign-in replaces");
            }
            let mut response = Redirect::to("/").into_response();
            response
                .headers_mut()
                .append(header::SET_COOKIE, session_cookie(&state.app, &token));
            response
        }
        Err(error) => {
            page.error = Some(shown(&visitor, &error).message);
            form_refused(&error, &page)
        }
    }
}

async fn sign_out(
    state: axum::extract::State<WebState>,
    CsrfForm { visitor, .. }: CsrfForm<NoFields>,
) -> Response {
    if let Some(token) = &visitor.session
        && let Err(error) = crate::accounts::revoke_token(&state.db, token).await
    {
        return internal_error(&visitor, &error);
    }
    let mut response = Redirect::to("/signin?out=1").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, clear_session_cookie(&state.app));
    response
}

// --- forgotten password ---------------------------------------------------------------------

#[derive(Template)]
#[template(path = "web/forgot.html")]
struct ForgotPage {
    layout: Layout,
    error: Option<&'static str>,
    email: Field,
}

async fn forgot_page(visitor: Visitor) -> Response {
    render(&ForgotPage {
        layout: Layout::new(&visitor, visitor.lang.messages().forgot_title),
        error: None,
        email: Field::default(),
    })
}

#[derive(Deserialize)]
struct ForgotForm {
    #[serde(default)]
    email: String,
}

async fn forgot_submit(
    state: axum::extract::State<WebState>,
    Client(client): Client,
    CsrfForm { visitor, form }: CsrfForm<ForgotForm>,
) -> Response {
    let t = visitor.lang.messages();
    let mut page = ForgotPage {
        layout: Layout::new(&visitor, t.forgot_title),
        error: None,
        email: Field::typed(&form.email),
    };
    page.email.error = check(
        &form.email,
        |v| valid_email(v).map(drop),
        t,
        t.error_email_rule,
    );
    if page.email.error.is_some() {
        page.error = Some(t.form_has_errors);
        return (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response();
    }
    match password::request_reset(&state.accounts, client, &form.email).await {
        Ok(()) => MessagePage::new(&visitor, t.forgot_title, t.forgot_mailed, "ok")
            .with_status(StatusCode::OK),
        Err(error) => {
            let shown = shown(&visitor, &error);
            if shown.field == Some("email") {
                page.email.error = Some(shown.message);
                page.error = Some(t.form_has_errors);
            } else {
                page.error = Some(shown.message);
            }
            form_refused(&error, &page)
        }
    }
}

#[derive(Template)]
#[template(path = "web/reset.html")]
struct ResetPage {
    layout: Layout,
    action: String,
    error: Option<&'static str>,
    password: Field,
}

async fn reset_page(
    state: axum::extract::State<WebState>,
    visitor: Visitor,
    Path(key): Path<String>,
) -> Response {
    if !plausible_key(&key) {
        return link_refused(&visitor, None);
    }
    match password::reset_key_is_live(&state.db, &key).await {
        Ok(true) => render(&ResetPage {
            layout: Layout::new(&visitor, visitor.lang.messages().reset_title),
            action: format!("/reset/{key}"),
            error: None,
            password: Field::default(),
        }),
        Ok(false) => link_refused(&visitor, None),
        Err(error) => internal_error(&visitor, &error),
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    password: String,
}

async fn reset_submit(
    state: axum::extract::State<WebState>,
    Path(key): Path<String>,
    CsrfForm { visitor, form }: CsrfForm<PasswordForm>,
) -> Response {
    let t = visitor.lang.messages();
    match password::reset_password(&state.accounts, &key, form.password).await {
        Ok(()) => {
            let mut response = MessagePage::new(&visitor, t.reset_title, t.reset_done, "ok")
                .link("/signin", t.nav_sign_in)
                .with_status(StatusCode::OK);
            // Every session of the account ended, this browser's too if it was signed in.
            response
                .headers_mut()
                .append(header::SET_COOKIE, clear_session_cookie(&state.app));
            response
        }
        Err(error) if error.field == Some("password") => {
            let page = ResetPage {
                layout: Layout::new(&visitor, t.reset_title),
                action: format!("/reset/{key}"),
                error: Some(t.form_has_errors),
                password: Field {
                    value: String::new(),
                    error: Some(shown(&visitor, &error).message),
                },
            };
            form_refused(&error, &page)
        }
        Err(error) => link_refused(&visitor, Some(&error)),
    }
}

// --- the account page -----------------------------------------------------------------------

#[derive(Template)]
#[template(path = "web/account.html")]
struct AccountPage {
    layout: Layout,
    notice: Option<&'static str>,
    error: Option<&'static str>,
    name: String,
    email: String,
    current_password: Field,
    password: Field,
}

impl AccountPage {
    fn new(signed_in: &SignedIn) -> AccountPage {
        let visitor = &signed_in.visitor;
        AccountPage {
            layout: Layout::new(visitor, visitor.lang.messages().account_title),
            notice: None,
            error: None,
            name: signed_in.account.name.clone(),
            email: signed_in.account.email.clone(),
            current_password: Field::default(),
            password: Field::default(),
        }
    }
}

async fn account_page(signed_in: SignedIn) -> Response {
    render(&AccountPage::new(&signed_in))
}

#[derive(Deserialize)]
struct ChangePasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    password: String,
}

async fn change_password(
    state: axum::extract::State<WebState>,
    Client(client): Client,
    SignedInForm {
        visitor,
        account,
        form,
    }: SignedInForm<ChangePasswordForm>,
) -> Response {
    let signed_in = SignedIn { visitor, account };
    let t = signed_in.visitor.lang.messages();
    let mut page = AccountPage::new(&signed_in);
    if form.current_password.is_empty() {
        page.current_password.error = Some(t.error_required);
    }
    page.password.error = check(&form.password, valid_password, t, t.error_password_rule);
    if page.current_password.error.is_some() || page.password.error.is_some() {
        page.error = Some(t.form_has_errors);
        return (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response();
    }
    let changed = password::change_password(
        &state.accounts,
        client,
        &signed_in.account,
        form.current_password,
        form.password,
    )
    .await;
    match changed {
        Ok(()) => {
            page.notice = Some(t.password_changed);
            render(&page)
        }
        Err(error) => {
            let shown = shown(&signed_in.visitor, &error);
            match shown.field {
                Some("current_password") => page.current_password.error = Some(shown.message),
                Some("password") => page.password.error = Some(shown.message),
                _ => {}
            }
            page.error = Some(if shown.field.is_some() {
                t.form_has_errors
            } else {
                shown.message
            });
            form_refused(&error, &page)
        }
    }
}

async fn sign_out_everywhere(
    state: axum::extract::State<WebState>,
    SignedInForm {
        visitor, account, ..
    }: SignedInForm<NoFields>,
) -> Response {
    if let Err(error) = password::revoke_all_sessions(&state.db, account.id).await {
        return internal_error(&visitor, &error);
    }
    let mut response = Redirect::to("/signin?out=1").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, clear_session_cookie(&state.app));
    response
}

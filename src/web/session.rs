//! Who is visiting a page, from three cookies, all `HttpOnly` and `SameSite=Lax`, and `Secure`
//! when the public URL is https:
//!
//! - `herald_session` — a login token of `accounts` (`accounts::issue_token`): the same token
//!   the API takes as a bearer token, so signing out (here or through the API) revokes it, and
//!   "sign out everywhere" revokes them all.
//! - `herald_csrf` — a random key per browser, set on the first page it gets
//!   ([`browser_key`]); forms carry a token derived from it (`csrf.rs`).
//! - `herald_lang` — the language chosen with the switch; without it, `Accept-Language`.

use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::WebState;
use super::i18n::Lang;
use crate::accounts::{Account, account_for_token};
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "herald_session";
pub const CSRF_COOKIE: &str = "herald_csrf";
pub const LANG_COOKIE: &str = "herald_lang";

/// How long the language cookie is kept: a year.
const LANG_COOKIE_SECONDS: i64 = 365 * 24 * 3600;

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value with herald's attributes; `max_age` in seconds, `None` for a cookie that
/// lives as long as the browser session, `Some(0)` to delete it.
pub fn set_cookie(app: &AppState, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let secure = if app.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let max_age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax{max_age}{secure}");
    // Names are constants and values are URL-safe base64 or language codes.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The session cookie for a fresh login token, kept as long as the token lives.
pub fn session_cookie(app: &AppState, token: &str) -> HeaderValue {
    set_cookie(
        app,
        SESSION_COOKIE,
        token,
        Some(crate::accounts::TOKEN_TTL_MS / 1000),
    )
}

pub fn clear_session_cookie(app: &AppState) -> HeaderValue {
    set_cookie(app, SESSION_COOKIE, "", Some(0))
}

/// The `Set-Cookie` value that makes the browser forget the operator's cookie from `/login`
/// (`http::auth::ADMIN_COOKIE`, set with `SameSite=Strict`).
pub fn clear_operator_cookie(app: &AppState) -> HeaderValue {
    let secure = if app.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
        crate::http::auth::ADMIN_COOKIE
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// This browser's CSRF key, put into the request by [`browser_key`].
#[derive(Clone)]
struct BrowserKey(String);

/// A key is what `accounts::random_secret` makes: 43 URL-safe characters.
fn is_browser_key(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Gives every browser a CSRF key: the one its cookie holds, or a new one, set in the answer;
/// and drops an operator cookie that [`Visitor`] found wrong.
pub async fn browser_key(
    State(state): State<WebState>,
    mut request: Request,
    next: Next,
) -> Response {
    let existing = cookie(request.headers(), CSRF_COOKIE)
        .filter(|v| is_browser_key(v))
        .map(str::to_string);
    let fresh = existing.is_none();
    let key = existing.unwrap_or_else(crate::accounts::random_secret);
    request.extensions_mut().insert(BrowserKey(key.clone()));
    // A wrong operator cookie counts as one guess per request, and the answer drops it, so
    // that a stale one (the token was changed) counts once rather than on every page.
    let wrong_token = crate::http::auth::WrongTokenSeen::default();
    request.extensions_mut().insert(wrong_token.clone());
    let mut response = next.run(request).await;
    if wrong_token.seen() {
        response
            .headers_mut()
            .append(header::SET_COOKIE, clear_operator_cookie(&state.app));
    }
    if fresh {
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(&state.app, CSRF_COOKIE, &key, None),
        );
    }
    response
}

/// The visitor of a page: language, account (when signed in) and what its forms need.
pub struct Visitor {
    pub lang: Lang,
    pub account: Option<Account>,
    /// The login token of the session cookie, when it is live.
    pub session: Option<String>,
    /// The page's path and query, for the language switch to return to.
    pub here: String,
    /// Whether the visitor holds the operator's cookie from `/login` (with or without an
    /// account session): the header then leads to `/operator` and offers the operator's sign-out.
    pub operator: bool,
    /// Set when the visitor's address has guessed at the operator token too often: how long it
    /// must wait. The operator's pages answer 429 then; other pages just show no operator.
    pub operator_wait: Option<std::time::Duration>,
    browser_key: String,
}

impl Visitor {
    /// The token this visitor's forms must carry: bound to the browser's key and its session.
    pub fn csrf_token(&self) -> String {
        super::csrf::token(&self.browser_key, self.session.as_deref())
    }
}

fn lang_of(headers: &HeaderMap) -> Lang {
    cookie(headers, LANG_COOKIE)
        .and_then(Lang::from_code)
        .or_else(|| {
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(Lang::from_accept_language)
        })
        .unwrap_or(Lang::En)
}

impl FromRequestParts<WebState> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<Self, Self::Rejection> {
        let lang = lang_of(&parts.headers);
        let browser_key = parts
            .extensions
            .get::<BrowserKey>()
            .map(|k| k.0.clone())
            .unwrap_or_default();
        let here = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let mut visitor = Visitor {
            lang,
            account: None,
            session: None,
            here,
            operator: false,
            operator_wait: None,
            browser_key,
        };
        match operator_of(parts, state).await {
            Ok(operator) => visitor.operator = operator,
            Err(wait) => visitor.operator_wait = Some(wait),
        }
        let token = cookie(&parts.headers, SESSION_COOKIE)
            .filter(|t| !t.is_empty() && t.len() <= 200)
            .map(str::to_string);
        if let Some(token) = token {
            match account_for_token(&state.db, &token).await {
                Ok(Some(account)) => {
                    visitor.account = Some(account);
                    visitor.session = Some(token);
                }
                // An expired or revoked session is a visitor who is signed out.
                Ok(None) => {}
                Err(error) => return Err(super::internal_error(&visitor, &error)),
            }
        }
        Ok(visitor)
    }
}

/// Whether the request carries the operator's cookie (`http::auth::ADMIN_COOKIE`), checked like
/// every operator token: a wrong one counts as a guess against the address, and an address past
/// its limit gets how long to wait, so that pages cannot be used to guess the token unlimited.
/// A request without the cookie is not the operator, and costs nothing.
async fn operator_of(parts: &Parts, state: &WebState) -> Result<bool, std::time::Duration> {
    use crate::http::auth::{ADMIN_COOKIE, Credentials, TokenPlaces, credentials};
    if cookie(&parts.headers, ADMIN_COOKIE).is_none_or(str::is_empty) {
        return Ok(false);
    }
    // Pages never take a login token from a header, so none is looked up.
    let found = credentials(parts, &state.app, TokenPlaces::HeaderOrCookie, |_| async {
        Ok(None::<()>)
    })
    .await;
    match found {
        Ok(Credentials::Operator) => Ok(true),
        Ok(_) => Ok(false),
        Err(crate::http::error::ApiError::TooManyRequests(_, wait)) => Err(wait),
        Err(error) => {
            tracing::error!(error = ?error, "could not tell whether a page's visitor is the operator");
            Ok(false)
        }
    }
}

/// A visitor who must be signed in; anyone else is sent to the sign-in page.
pub struct SignedIn {
    pub visitor: Visitor,
    pub account: Account,
}

impl FromRequestParts<WebState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<Self, Self::Rejection> {
        SignedIn::of(Visitor::from_request_parts(parts, state).await?)
    }
}

impl SignedIn {
    /// The visitor as signed in, or the redirect to the sign-in page.
    #[allow(clippy::result_large_err)] // see `web::PageResult`
    pub fn of(visitor: Visitor) -> Result<SignedIn, Response> {
        match visitor.account.clone() {
            Some(account) => Ok(SignedIn { visitor, account }),
            None => Err(Redirect::to("/signin").into_response()),
        }
    }
}

#[derive(Deserialize)]
pub struct SwitchQuery {
    next: Option<String>,
}

/// A path on this site to go back to: `/…` but not `//…` (another host) or anything odd.
pub fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path
        }
        _ => "/",
    }
}

/// `GET /lang/{code}?next=/path`: remembers the language in a cookie and goes back. A link, not
/// a form, so that it works without a token; it changes nothing but how pages are shown.
pub async fn switch_language(
    State(state): State<WebState>,
    Path(code): Path<String>,
    Query(query): Query<SwitchQuery>,
) -> Response {
    let next = local_path(query.next.as_deref()).to_string();
    let Some(lang) = Lang::from_code(&code) else {
        return Redirect::to(&next).into_response();
    };
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            &state.app,
            LANG_COOKIE,
            lang.code(),
            Some(LANG_COOKIE_SECONDS),
        ),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path(Some("/signin?x=1")), "/signin?x=1");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn browser_keys_are_what_random_secret_makes() {
        assert!(is_browser_key(&crate::accounts::random_secret()));
        assert!(!is_browser_key("short"));
        assert!(!is_browser_key(&"a;".repeat(22)[..43]));
    }
}

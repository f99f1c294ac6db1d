//! The operator's identity (`HERALD_ADMIN_TOKEN`, in the Authorization header or the pages'
//! cookie) and the header readers every identity shares. Accounts and the `Actor` that is
//! either of the two live in `accounts::auth`.
//!
//! Wrong tokens are counted per client address (`AppInner::operator_token_failures`): past the
//! limit, that address gets 429 without its token being compared, so guessing stops while the
//! operator elsewhere is not affected. A live login token is an account's, not a guess, and is
//! never counted.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;

use super::error::ApiError;
use crate::crypto::constant_time_eq;
use crate::limits::ClientKey;
use crate::state::AppState;
use crate::store::StoreError;

/// Proof that the request carries the operator token.
pub struct Admin;

pub fn bearer_token(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// The name of the cookie the login page sets, holding the operator token, so that a browser can
/// use the pages. `HttpOnly` and `SameSite=Strict`: other sites can neither read it nor make the
/// browser send it with their forms.
pub const ADMIN_COOKIE: &str = "herald_admin";

pub fn cookie<'p>(parts: &'p Parts, name: &str) -> Option<&'p str> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The client address a request came from. herald always serves with axum's `ConnectInfo`;
/// a router called without it counts every request under one address, which limits rather than
/// opens.
pub fn client_of(parts: &Parts) -> ClientKey {
    let address = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(peer)| {
            peer.ip()
        });
    ClientKey::from(address)
}

/// What a request's token turned out to be.
pub enum Credentials<T> {
    /// No token given.
    Missing,
    Operator,
    /// A live login token, with what the lookup found for it.
    Login(T),
    /// Neither: counted as a guess at the operator token.
    Wrong,
}

/// Where the operator token may be given: the pages also read the login page's cookie; the API
/// only the Authorization header.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TokenPlaces {
    Header,
    HeaderOrCookie,
}

fn too_many_guesses(wait: Duration) -> ApiError {
    ApiError::TooManyRequests(
        "too many wrong tokens from this address; try again later".into(),
        wait,
    )
}

/// Tells the operator from an account from a stranger, counting a wrong token against the client
/// address. `login` looks a bearer token up as a login token (it is `accounts`' to say). An
/// address past its limit is refused with 429 unless it shows a live login token, which says
/// nothing about the operator token.
pub async fn credentials<T, F, Fut>(
    parts: &Parts,
    state: &AppState,
    places: TokenPlaces,
    login: F,
) -> Result<Credentials<T>, ApiError>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<Option<T>, StoreError>>,
{
    let bearer = bearer_token(parts).filter(|t| !t.is_empty());
    let cookie = match places {
        TokenPlaces::Header => None,
        TokenPlaces::HeaderOrCookie => cookie(parts, ADMIN_COOKIE).filter(|t| !t.is_empty()),
    };
    if bearer.is_none() && cookie.is_none() {
        return Ok(Credentials::Missing);
    }
    let client = client_of(parts);
    let failures = &state.operator_token_failures;
    let counted = failures.acquire(&client, Instant::now());
    if counted.is_ok()
        && [bearer, cookie]
            .into_iter()
            .flatten()
            .any(|t| is_operator_token(state, t))
    {
        failures.release(&client);
        return Ok(Credentials::Operator);
    }
    if let Some(token) = bearer
        && let Some(found) = login(token.to_string()).await?
    {
        if counted.is_ok() {
            failures.release(&client);
        }
        return Ok(Credentials::Login(found));
    }
    match counted {
        Ok(()) => Ok(Credentials::Wrong),
        Err(wait) => Err(too_many_guesses(wait)),
    }
}

/// Checks a token typed into the login page, counted like [`credentials`]: `Ok(true)` for the
/// operator token, `Err` with how long to wait when the address has guessed too often.
pub fn check_typed_token(
    state: &AppState,
    client: ClientKey,
    given: &str,
) -> Result<bool, Duration> {
    let failures = &state.operator_token_failures;
    failures.acquire(&client, Instant::now())?;
    let right = is_operator_token(state, given);
    if right {
        failures.release(&client);
    }
    Ok(right)
}

fn is_operator_token(state: &AppState, given: &str) -> bool {
    state
        .settings
        .admin_token
        .as_ref()
        .is_some_and(|expected| constant_time_eq(given, expected.expose()))
}

impl<S> FromRequestParts<S> for Admin
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        if state.settings.admin_token.is_none() {
            return Err(ApiError::Unauthorized(
                "this API needs the operator token, and none is set: set HERALD_ADMIN_TOKEN".into(),
            ));
        }
        let db = state.db.clone();
        let is_live = state.login_token_is_live;
        let found = credentials(parts, &state, TokenPlaces::Header, |token| async move {
            Ok(is_live(&db, &token).await?.then_some(()))
        })
        .await?;
        match found {
            Credentials::Operator => Ok(Admin),
            Credentials::Login(()) | Credentials::Wrong => {
                Err(ApiError::Unauthorized("wrong token".into()))
            }
            Credentials::Missing => Err(ApiError::Unauthorized(
                "missing Authorization: Bearer <HERALD_ADMIN_TOKEN>".into(),
            )),
        }
    }
}

//! Who is calling. For now there is one identity: the operator, holding `HERALD_ADMIN_TOKEN`.
//! Accounts (area C) will add user tokens beside it.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::crypto::constant_time_eq;
use crate::state::AppState;

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

/// Whether the request carries the operator token, in the Authorization header or the cookie.
pub fn is_admin(parts: &Parts, state: &AppState) -> bool {
    let Some(expected) = &state.settings.admin_token else {
        return false;
    };
    [bearer_token(parts), cookie(parts, ADMIN_COOKIE)]
        .into_iter()
        .flatten()
        .any(|given| constant_time_eq(given, expected.expose()))
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(expected) = &state.settings.admin_token else {
            return Err(ApiError::Unauthorized(
                "this API needs the operator token, and none is set: set HERALD_ADMIN_TOKEN".into(),
            ));
        };
        match bearer_token(parts) {
            Some(given) if constant_time_eq(given, expected.expose()) => Ok(Admin),
            Some(_) => Err(ApiError::Unauthorized("wrong token".into())),
            None => Err(ApiError::Unauthorized(
                "missing Authorization: Bearer <HERALD_ADMIN_TOKEN>".into(),
            )),
        }
    }
}

/// Who is acting on a project: the operator, or the account that owns it.
#[derive(Debug, Clone)]
pub enum Actor {
    Operator,
    Account(crate::accounts::Account),
}

impl Actor {
    /// Projects belong to the account whose name is their owner; the operator may manage all.
    pub fn may_manage(&self, owner: &str) -> bool {
        match self {
            Actor::Operator => true,
            Actor::Account(account) => account.name == owner,
        }
    }
}

async fn actor_of(parts: &Parts, state: &AppState) -> Result<Option<Actor>, ApiError> {
    if is_admin(parts, state) {
        return Ok(Some(Actor::Operator));
    }
    let Some(token) = bearer_token(parts) else {
        return Ok(None);
    };
    Ok(crate::accounts::account_for_token(&state.db, token)
        .await?
        .map(Actor::Account))
}

/// An operator or a logged-in account; anyone else is refused with 401.
impl FromRequestParts<AppState> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        actor_of(parts, state).await?.ok_or_else(|| {
            ApiError::Unauthorized(
                "missing or invalid Authorization: Bearer <login token or HERALD_ADMIN_TOKEN>"
                    .into(),
            )
        })
    }
}

/// For pages and reference routes where strangers must learn nothing: the actor, if any.
pub struct MaybeActor(pub Option<Actor>);

impl FromRequestParts<AppState> for MaybeActor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(MaybeActor(actor_of(parts, state).await.ok().flatten()))
    }
}

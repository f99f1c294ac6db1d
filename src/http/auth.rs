//! The operator's identity (`HERALD_ADMIN_TOKEN`, in the Authorization header or the pages'
//! cookie) and the header readers every identity shares. Accounts and the `Actor` that is
//! either of the two live in `accounts::auth`.

use axum::extract::{FromRef, FromRequestParts};
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

impl<S> FromRequestParts<S> for Admin
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
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

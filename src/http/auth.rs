//! Who is calling. For now there is one identity: the operator, holding `HERALD_ADMIN_TOKEN`.
//! Accounts (area C) will add user tokens beside it.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;

use super::error::ApiError;
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
            Some(given) if bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())) => {
                Ok(Admin)
            }
            Some(_) => Err(ApiError::Unauthorized("wrong token".into())),
            None => Err(ApiError::Unauthorized(
                "missing Authorization: Bearer <HERALD_ADMIN_TOKEN>".into(),
            )),
        }
    }
}

//! Who is acting: the operator (`http::auth`) or a signed-in account (a login token). Projects,
//! the knowledge base and link codes take an [`Actor`]; pages and reference routes where a
//! stranger must learn nothing take a [`MaybeActor`].

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;

use super::{Account, account_for_token};
use crate::http::auth::{Credentials, TokenPlaces, credentials};
use crate::http::error::ApiError;
use crate::state::AppState;

/// Who is acting on a project: the operator, or the account that owns it.
#[derive(Debug, Clone)]
pub enum Actor {
    Operator,
    Account(Account),
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
    let db = state.db.clone();
    let found = credentials(
        parts,
        state,
        TokenPlaces::HeaderOrCookie,
        |token| async move { account_for_token(&db, &token).await },
    )
    .await?;
    Ok(match found {
        Credentials::Operator => Some(Actor::Operator),
        Credentials::Login(account) => Some(Actor::Account(account)),
        Credentials::Missing | Credentials::Wrong => None,
    })
}

/// An operator or a logged-in account; anyone else is refused with 401.
impl<S> FromRequestParts<S> for Actor
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        actor_of(parts, &AppState::from_ref(state))
            .await?
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "missing or invalid Authorization: Bearer <login token or HERALD_ADMIN_TOKEN>"
                        .into(),
                )
            })
    }
}

/// For pages and reference routes where strangers must learn nothing: the actor, if any. Only
/// an address that guessed at the operator token too often is refused (429).
pub struct MaybeActor(pub Option<Actor>);

impl<S> FromRequestParts<S> for MaybeActor
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match actor_of(parts, &AppState::from_ref(state)).await {
            Ok(actor) => Ok(MaybeActor(actor)),
            Err(limited @ ApiError::TooManyRequests(..)) => Err(limited),
            Err(error) => {
                tracing::error!(error = ?error, "could not tell who is acting; answering as to a stranger");
                Ok(MaybeActor(None))
            }
        }
    }
}

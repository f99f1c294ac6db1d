//! Sign-up, e-mail verification, login, logout and "who am I", with the reference system's
//! shapes (SPEC §C): `{"type":"info"|"auth"|"user","payload":…}` on success and
//! `{"type":"error","payload":{"code":<int>,"reason":…}}` with a fitting status on failure.
//! Bodies may be JSON or a form.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRef, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{
    Account, SIGNUP_KEY_TTL_MS, account_for_token, find_by_email, hash_password, issue_token,
    name_or_email_taken, random_secret, revoke_token, secret_hash, valid_email, valid_name,
    valid_password, verify_password,
};
use crate::ids::now_ms;
use crate::outbox::{self, NewDelivery};
use crate::state::AppState;

/// Sign-up and login bodies are small.
const MAX_BODY: usize = 16 * 1024;

/// What the account routes keep beside the shared infrastructure: the login attempt limits.
#[derive(Clone)]
pub struct AccountsState {
    pub app: AppState,
    login_limits: Arc<LoginLimits>,
}

crate::feature_state!(AccountsState);

impl AccountsState {
    pub fn new(app: AppState) -> AccountsState {
        let per_address = app.settings.login_attempts_per_minute;
        AccountsState {
            app,
            login_limits: Arc::new(LoginLimits::new(per_address)),
        }
    }
}

pub fn router(state: AccountsState) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/auth/register", post(register))
        .route("/api/v1/auth/email_verify/{key}", get(email_verify))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/me", get(me))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The reference error: `{"type":"error","payload":{"code","reason"}}`.
#[derive(Debug)]
pub struct AuthError {
    pub status: StatusCode,
    pub reason: String,
}

impl AuthError {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> AuthError {
        AuthError {
            status,
            reason: reason.into(),
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let body = json!({"type": "error", "payload": {"code": self.status.as_u16(), "reason": self.reason}});
        (self.status, Json(body)).into_response()
    }
}

impl From<sqlx::Error> for AuthError {
    fn from(error: sqlx::Error) -> Self {
        if crate::store::is_unique_violation(&error) {
            return AuthError::new(StatusCode::CONFLICT, "that name or e-mail is already taken");
        }
        tracing::error!(%error, "auth request failed in the database");
        AuthError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

fn info(message: &str) -> Json<Value> {
    Json(json!({"type": "info", "payload": {"message": message}}))
}

/// Reads a JSON or form body into `T`.
fn parse_body<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, AuthError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let parsed = if content_type.starts_with("application/x-www-form-urlencoded") {
        serde_urlencoded::from_bytes(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| AuthError::new(StatusCode::BAD_REQUEST, format!("bad request body: {e}")))
}

/// Per-address and per-account login limits (per node).
pub struct LoginLimits {
    per_address: DefaultKeyedRateLimiter<String>,
    per_account: DefaultKeyedRateLimiter<String>,
}

impl LoginLimits {
    /// `per_address` attempts per minute from one client address; ten per account.
    pub fn new(per_address: u32) -> LoginLimits {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        LoginLimits {
            per_address: RateLimiter::keyed(per_minute(per_address)),
            per_account: RateLimiter::keyed(per_minute(10)),
        }
    }
}

impl LoginLimits {
    fn check(&self, address: &str, email: &str) -> Result<(), AuthError> {
        let too_many = |what: &str| {
            AuthError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many login attempts for this {what}; try again in a minute"),
            )
        };
        if self.per_address.check_key(&address.to_string()).is_err() {
            return Err(too_many("address"));
        }
        if self.per_account.check_key(&email.to_string()).is_err() {
            return Err(too_many("account"));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct RegisterIn {
    name: Option<String>,
    email: Option<String>,
    password: Option<String>,
}

fn required(value: Option<String>, field: &str) -> Result<String, AuthError> {
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| AuthError::new(StatusCode::BAD_REQUEST, format!("{field} is required")))
}

async fn register(
    State(state): State<AccountsState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, AuthError> {
    let input: RegisterIn = parse_body(&headers, &body)?;
    let invalid = |reason: String| AuthError::new(StatusCode::UNPROCESSABLE_ENTITY, reason);
    let name = valid_name(&required(input.name, "name")?).map_err(invalid)?;
    let email = valid_email(&required(input.email, "email")?).map_err(invalid)?;
    let password = required(input.password, "password")?;
    valid_password(&password).map_err(invalid)?;
    if let Some(field) = name_or_email_taken(&state.db, &name, &email).await? {
        return Err(AuthError::new(
            StatusCode::CONFLICT,
            format!("that {field} is already taken"),
        ));
    }
    let password_hash = hash_password(password).await.map_err(|e| {
        AuthError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not hash: {e}"),
        )
    })?;
    let key = random_secret();
    let link = format!(
        "{}/api/v1/auth/email_verify/{key}",
        state.public_url.as_str().trim_end_matches('/')
    );
    let mail = json!({
        "subject": "Confirm your herald account",
        "text": format!(
            "Hello {name},\n\nopen this link to create your herald account:\n\n{link}\n\n\
             It works once, within 24 hours. If you did not sign up, ignore this mail.\n\n— herald\n"
        ),
    });
    // The request and its mail commit together: no account request without its mail.
    let now = now_ms();
    let mut tx = state.db.writer().begin().await?;
    sqlx::query(
        "INSERT INTO signup_requests (key_hash, name, email, password_hash, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(secret_hash(&key))
    .bind(&name)
    .bind(&email)
    .bind(&password_hash)
    .bind(now + SIGNUP_KEY_TTL_MS)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    outbox::enqueue(
        &mut tx,
        &state.ids,
        &[NewDelivery {
            channel: "email".into(),
            destination: email.clone(),
            payload: mail.to_string(),
            event_id: None,
            contact_id: None,
            webhook_id: None,
            event_type: Some("signup".into()),
        }],
    )
    .await?;
    tx.commit().await?;
    state.outbox_wake.notify_one();
    Ok(info("successfully created an account creation request."))
}

async fn email_verify(
    State(state): State<AccountsState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, AuthError> {
    let invalid = || {
        AuthError::new(
            StatusCode::NOT_FOUND,
            "this link is not valid or was already used",
        )
    };
    if key.len() > 200 {
        return Err(invalid());
    }
    let mut tx = state.db.writer().begin().await?;
    let request: Option<(String, String, String, i64)> = sqlx::query_as(
        "SELECT name, email, password_hash, expires_at FROM signup_requests WHERE key_hash = $1",
    )
    .bind(secret_hash(&key))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((name, email, password_hash, expires_at)) = request else {
        return Err(invalid());
    };
    // Single use, whatever happens next.
    sqlx::query("DELETE FROM signup_requests WHERE key_hash = $1")
        .bind(secret_hash(&key))
        .execute(&mut *tx)
        .await?;
    if expires_at < now_ms() {
        tx.commit().await?;
        return Err(AuthError::new(
            StatusCode::GONE,
            "this link has expired; sign up again",
        ));
    }
    let inserted = sqlx::query(
        "INSERT INTO accounts (id, name, email, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(state.ids.next())
    .bind(&name)
    .bind(&email)
    .bind(&password_hash)
    .bind(now_ms())
    .execute(&mut *tx)
    .await;
    if let Err(error) = inserted {
        return Err(error.into());
    }
    tx.commit().await?;
    Ok(info("account successfully created."))
}

#[derive(Deserialize)]
struct LoginIn {
    email: Option<String>,
    password: Option<String>,
}

async fn login(
    State(state): State<AccountsState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, AuthError> {
    let input: LoginIn = parse_body(&headers, &body)?;
    let email = required(input.email, "email")?.trim().to_lowercase();
    let password = required(input.password, "password")?;
    state.login_limits.check(&peer.ip().to_string(), &email)?;
    let wrong = || AuthError::new(StatusCode::UNAUTHORIZED, "wrong e-mail or password");
    let Some((account, stored)) = find_by_email(&state.db, &email).await? else {
        // Spend the same time as a real check, so timing does not tell which e-mails exist.
        let _ = verify_password(password, DUMMY_HASH.to_string()).await;
        return Err(wrong());
    };
    if !verify_password(password, stored).await {
        return Err(wrong());
    }
    let token = issue_token(&state.db, account.id).await?;
    Ok(Json(json!({"type": "auth", "payload": {"token": token}})))
}

/// An argon2id hash of a random password, checked against when the e-mail is unknown.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Jx9FzDqk1BMHr6xX0nWkfQZ0QyE0vN4mJ3CwWm3n3cQ";

/// The account behind `Authorization: Bearer <token>`.
pub struct CurrentAccount {
    pub account: Account,
    pub token: String,
}

impl<S> FromRequestParts<S> for CurrentAccount
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let Some(token) = crate::http::auth::bearer_token(parts) else {
            return Err(AuthError::new(
                StatusCode::UNAUTHORIZED,
                "missing Authorization: Bearer <token>",
            ));
        };
        match account_for_token(&state.db, token).await? {
            Some(account) => Ok(CurrentAccount {
                account,
                token: token.to_string(),
            }),
            None => Err(AuthError::new(
                StatusCode::UNAUTHORIZED,
                "this token is not valid (expired or logged out)",
            )),
        }
    }
}

async fn logout(
    State(state): State<AccountsState>,
    current: CurrentAccount,
) -> Result<Json<Value>, AuthError> {
    revoke_token(&state.db, &current.token).await?;
    Ok(info("logged out."))
}

async fn me(current: CurrentAccount) -> Json<Value> {
    Json(json!({"type": "user", "payload": current.account}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_is_a_real_argon2id_hash() {
        assert!(argon2::PasswordHash::new(DUMMY_HASH).is_ok());
    }
}

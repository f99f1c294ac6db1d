//! Sign-up, e-mail verification, login, logout and "who am I", with the reference system's
//! shapes (SPEC §C): `{"type":"info"|"auth"|"user","payload":…}` on success and
//! `{"type":"error","payload":{"code":<int>,"reason":…}}` with a fitting status on failure.
//! Bodies may be JSON or a form.

use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRef, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{
    Account, SIGNUP_KEY_TTL_MS, account_for_token, find_by_email, hash_password, issue_token,
    name_or_email_taken, random_secret, revoke_token, secret_hash, valid_email, valid_name,
    valid_password, verify_password,
};
use crate::ids::now_ms;
use crate::limits::{ClientKey, WindowLimit};
use crate::outbox::{self, NewDelivery};
use crate::state::AppState;

/// Sign-up and login bodies are small.
const MAX_BODY: usize = 16 * 1024;

/// What the account routes keep beside the shared infrastructure: the limits on failed logins,
/// on sign-ups and on verification mails.
#[derive(Clone)]
pub struct AccountsState {
    pub app: AppState,
    login_limits: Arc<LoginLimits>,
    signup_limits: Arc<SignupLimits>,
}

crate::feature_state!(AccountsState);

impl AccountsState {
    pub fn new(app: AppState) -> AccountsState {
        let settings = &app.settings;
        let login_limits = Arc::new(LoginLimits::new(settings.login_attempts_per_minute));
        let signup_limits = Arc::new(SignupLimits::new(
            settings.signups_per_minute,
            settings.signup_mail_interval,
        ));
        AccountsState {
            app,
            login_limits,
            signup_limits,
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
    /// For 429: how long until the client may try again (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl AuthError {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> AuthError {
        AuthError {
            status,
            reason: reason.into(),
            retry_after: None,
        }
    }

    fn too_many(reason: impl Into<String>, wait: Duration) -> AuthError {
        AuthError {
            retry_after: Some(wait),
            ..AuthError::new(StatusCode::TOO_MANY_REQUESTS, reason)
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let body = json!({"type": "error", "payload": {"code": self.status.as_u16(), "reason": self.reason}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                crate::limits::retry_after_secs(wait).into(),
            );
        }
        response
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

const MINUTE: Duration = Duration::from_secs(60);

/// Failed logins allowed per minute for one account from one client address.
const FAILURES_PER_ACCOUNT_AND_ADDRESS: u32 = 10;

/// Failed logins, counted per client address and per (account, client address) on this node.
/// Only failures count: each attempt is counted up front, so that a burst of parallel guesses
/// cannot pass the limit before any of them is known to fail, and given back when the password
/// was right. A stranger's failures therefore never reach the owner's own address, and the
/// owner's logins count against no one.
pub struct LoginLimits {
    per_address: WindowLimit<ClientKey>,
    per_account_and_address: WindowLimit<(ClientKey, u64)>,
    /// Accounts are keyed by a keyed hash of the e-mail given, so a key's size does not depend
    /// on what a client sends.
    emails: std::collections::hash_map::RandomState,
}

impl LoginLimits {
    /// `per_address` failures per minute from one client address.
    pub fn new(per_address: u32) -> LoginLimits {
        LoginLimits {
            per_address: WindowLimit::new(per_address, MINUTE),
            per_account_and_address: WindowLimit::new(FAILURES_PER_ACCOUNT_AND_ADDRESS, MINUTE),
            emails: Default::default(),
        }
    }

    /// Counts an attempt as a failure until [`LoginLimits::succeeded`] says otherwise.
    fn attempt(&self, client: ClientKey, email: &str) -> Result<(), AuthError> {
        let now = Instant::now();
        let account = (client, self.emails.hash_one(email));
        let too_many = |what: &str, wait: Duration| {
            AuthError::too_many(
                format!("too many failed logins {what}; try again later"),
                wait,
            )
        };
        self.per_address
            .acquire(&client, now)
            .map_err(|wait| too_many("from this address", wait))?;
        if let Err(wait) = self.per_account_and_address.acquire(&account, now) {
            self.per_address.release(&client);
            return Err(too_many("for this account from this address", wait));
        }
        Ok(())
    }

    fn succeeded(&self, client: ClientKey, email: &str) {
        self.per_address.release(&client);
        self.per_account_and_address
            .release(&(client, self.emails.hash_one(email)));
    }
}

/// Sign-ups per client address, and verification mails per recipient, on this node. A repeated
/// sign-up for an address that was mailed within the interval is answered as any other and sends
/// nothing, so nobody can fill a stranger's mailbox, and the answer tells nothing new.
pub struct SignupLimits {
    per_address: WindowLimit<ClientKey>,
    mail_per_recipient: WindowLimit<u64>,
    emails: std::collections::hash_map::RandomState,
}

impl SignupLimits {
    pub fn new(per_address_per_minute: u32, mail_interval: Duration) -> SignupLimits {
        SignupLimits {
            per_address: WindowLimit::new(per_address_per_minute, MINUTE),
            mail_per_recipient: WindowLimit::new(1, mail_interval),
            emails: Default::default(),
        }
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

const SIGNUP_REQUESTED: &str = "successfully created an account creation request.";

async fn register(
    State(state): State<AccountsState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, AuthError> {
    let input: RegisterIn = parse_body(&headers, &body)?;
    let invalid = |reason: String| AuthError::new(StatusCode::UNPROCESSABLE_ENTITY, reason);
    let name = valid_name(&required(input.name, "name")?).map_err(invalid)?;
    let email = valid_email(&required(input.email, "email")?).map_err(invalid)?;
    let password = required(input.password, "password")?;
    valid_password(&password).map_err(invalid)?;
    let limits = &state.signup_limits;
    let now = Instant::now();
    // Counted before the look-up below, so that it also slows anyone asking which names and
    // e-mails are taken.
    limits
        .per_address
        .acquire(&ClientKey::from(peer.ip()), now)
        .map_err(|wait| {
            AuthError::too_many("too many sign-ups from this address; try again later", wait)
        })?;
    if let Some(field) = name_or_email_taken(&state.db, &name, &email).await? {
        return Err(AuthError::new(
            StatusCode::CONFLICT,
            format!("that {field} is already taken"),
        ));
    }
    let recipient = limits.emails.hash_one(&email);
    if limits.mail_per_recipient.acquire(&recipient, now).is_err() {
        // The mail sent within the interval still holds a working link.
        return Ok(info(SIGNUP_REQUESTED));
    }
    let mailed = request_signup(&state, &name, &email, password).await;
    if mailed.is_err() {
        // Nothing went out: a sign-up tried again must not wait for the interval.
        limits.mail_per_recipient.release(&recipient);
    }
    mailed
}

/// Stores the sign-up request and queues its verification mail.
async fn request_signup(
    state: &AccountsState,
    name: &str,
    email: &str,
    password: String,
) -> Result<Json<Value>, AuthError> {
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
    .bind(name)
    .bind(email)
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
            destination: email.to_string(),
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
    Ok(info(SIGNUP_REQUESTED))
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
    let client = ClientKey::from(peer.ip());
    state.login_limits.attempt(client, &email)?;
    let wrong = || AuthError::new(StatusCode::UNAUTHORIZED, "wrong e-mail or password");
    let Some((account, stored)) = find_by_email(&state.db, &email).await? else {
        // Spend the same time as a real check, so timing does not tell which e-mails exist.
        let _ = verify_password(password, DUMMY_HASH.to_string()).await;
        return Err(wrong());
    };
    if !verify_password(password, stored).await {
        return Err(wrong());
    }
    state.login_limits.succeeded(client, &email);
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

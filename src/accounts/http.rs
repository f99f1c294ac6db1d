//! Sign-up, e-mail verification, login, logout and "who am I", with the reference system's
//! shapes (SPEC §C): `{"type":"info"|"auth"|"user","payload":…}` on success and
//! `{"type":"error","payload":{"code":<int>,"reason":…}}` with a fitting status on failure.
//! Bodies may be JSON or a form.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRef, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::{
    Account, PasswordHashing, SIGNUP_KEY_TTL_MS, account_for_token, find_by_email, issue_token,
    name_or_email_taken, random_secret, revoke_token, secret_hash, valid_email, valid_name,
    valid_password,
};
use crate::http::auth::Client;
use crate::http::routes::Routes;
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
    pub(super) login_limits: Arc<LoginLimits>,
    signup_limits: Arc<SignupLimits>,
    /// Password hashing and checking, bounded (sign-up and login alike).
    pub hashing: Arc<PasswordHashing>,
    /// Password-reset requests per client address and reset mails per recipient: the same
    /// shape, and the same settings, as sign-ups.
    pub(super) reset_limits: Arc<SignupLimits>,
}

crate::feature_state!(AccountsState);

impl AccountsState {
    pub fn new(app: AppState) -> AccountsState {
        let settings = &app.settings;
        let login_limits = Arc::new(LoginLimits::new(
            settings.login_attempts_per_minute,
            app.clock.clone(),
        ));
        let signup_limits = Arc::new(SignupLimits::new(
            settings.signups_per_minute,
            settings.signup_mail_interval,
        ));
        let reset_limits = Arc::new(SignupLimits::new(
            settings.signups_per_minute,
            settings.signup_mail_interval,
        ));
        let hashing = Arc::new(match settings.password_hashes {
            Some(size) => PasswordHashing::new(size, crate::accounts::HASHING_WAIT),
            None => PasswordHashing::per_core(),
        });
        AccountsState {
            app,
            login_limits,
            signup_limits,
            hashing,
            reset_limits,
        }
    }

    /// Queues `mail` (`{"subject", "text"}`) to `to` in `tx`, commits, and wakes the sender: a
    /// mail commits with what it tells of (a sign-up request, a reset key), or not at all.
    pub(super) async fn mail_and_commit(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Any>,
        to: &str,
        mail: &serde_json::Value,
        kind: &str,
    ) -> Result<(), AuthError> {
        outbox::enqueue(
            &mut tx,
            &self.ids,
            &[NewDelivery {
                channel: "email".into(),
                destination: to.to_string(),
                payload: mail.to_string(),
                event_id: None,
                contact_id: None,
                webhook_id: None,
                event_type: Some(kind.into()),
            }],
        )
        .await?;
        tx.commit().await?;
        self.outbox_wake.notify_one();
        Ok(())
    }
}

pub fn router(state: AccountsState) -> Routes {
    Routes::new()
        .api(routes!(register))
        .api(routes!(email_verify))
        .api(routes!(login))
        .api(routes!(logout))
        .api(routes!(me))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// `{"type": "info", "payload": {"message": …}}`
#[derive(Serialize, ToSchema)]
pub struct InfoReply {
    /// `info`
    r#type: &'static str,
    payload: InfoPayload,
}

#[derive(Serialize, ToSchema)]
pub struct InfoPayload {
    message: String,
}

/// `{"type": "auth", "payload": {"token": …}}`
#[derive(Serialize, ToSchema)]
pub struct AuthReply {
    /// `auth`
    r#type: &'static str,
    payload: TokenPayload,
}

#[derive(Serialize, ToSchema)]
pub struct TokenPayload {
    /// The login token: `Authorization: Bearer <token>` (and the chat's `auth` frame).
    token: String,
}

/// `{"type": "user", "payload": <the account>}`
#[derive(Serialize, ToSchema)]
pub struct UserReply {
    /// `user`
    r#type: &'static str,
    payload: Account,
}

/// The reference's error: `{"type": "error", "payload": {"code": <HTTP status>, "reason": …}}`.
#[derive(Serialize, ToSchema)]
pub struct AuthErrorReply {
    /// `error`
    r#type: &'static str,
    payload: AuthErrorPayload,
}

#[derive(Serialize, ToSchema)]
pub struct AuthErrorPayload {
    /// The HTTP status again.
    code: u16,
    reason: String,
}

/// The reference error: `{"type":"error","payload":{"code","reason"}}`.
#[derive(Debug)]
pub struct AuthError {
    pub status: StatusCode,
    pub reason: String,
    /// For 429: how long until the client may try again (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// The input field the refusal is about, for forms that show it next to that field.
    pub field: Option<&'static str>,
    /// Refused because the database could not store it (503).
    pub storage: Option<crate::store::StorageFailure>,
}

impl AuthError {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> AuthError {
        AuthError {
            status,
            reason: reason.into(),
            retry_after: None,
            field: None,
            storage: None,
        }
    }

    /// The same refusal, about `field`.
    pub fn on(self, field: &'static str) -> AuthError {
        AuthError {
            field: Some(field),
            ..self
        }
    }

    pub(super) fn too_many(reason: impl Into<String>, wait: Duration) -> AuthError {
        AuthError {
            retry_after: Some(wait),
            ..AuthError::new(StatusCode::TOO_MANY_REQUESTS, reason)
        }
    }

    /// Every password-hashing slot stayed taken for [`crate::accounts::HASHING_WAIT`].
    pub(super) fn busy() -> AuthError {
        AuthError {
            retry_after: Some(Duration::from_secs(1)),
            ..AuthError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many sign-ups and logins at once; try again in a moment",
            )
        }
    }
}

/// For logs: the status and the reason.
impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let body = AuthErrorReply {
            r#type: "error",
            payload: AuthErrorPayload {
                code: self.status.as_u16(),
                reason: self.reason,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                crate::limits::retry_after_secs(wait).into(),
            );
        }
        if let Some(failure) = self.storage {
            crate::http::error::mark_storage_failed(&mut response, failure);
        }
        response
    }
}

impl From<sqlx::Error> for AuthError {
    fn from(error: sqlx::Error) -> Self {
        if crate::store::is_unique_violation(&error) {
            return AuthError::new(StatusCode::CONFLICT, "that name or e-mail is already taken");
        }
        if let Some(failure) = crate::store::storage_failure(&error) {
            tracing::error!(%error, "auth request failed: storage unavailable");
            return AuthError {
                storage: Some(failure),
                ..AuthError::new(StatusCode::SERVICE_UNAVAILABLE, failure.message())
            };
        }
        tracing::error!(%error, "auth request failed in the database");
        AuthError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

fn info(message: &str) -> Json<InfoReply> {
    Json(InfoReply {
        r#type: "info",
        payload: InfoPayload {
            message: message.to_string(),
        },
    })
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

/// The longest wait a failed-login limit imposes, however long the guessing goes on.
const LONGEST_LOGIN_WAIT: Duration = Duration::from_secs(15 * 60);

/// How long after its last wait a client's failed logins are forgotten.
const LOGIN_FAILURES_FORGOTTEN_AFTER: Duration = Duration::from_secs(60 * 60);

/// Failed logins, counted per client address and per (account, client address) on this node.
/// Only failures count: each attempt is counted up front, so that a burst of parallel guesses
/// cannot pass the limit before any of them is known to fail, and given back when the password
/// was right. A stranger's failures therefore never reach the owner's own address, and the
/// owner's logins count against no one.
///
/// Past its limit a key waits, and the waits grow: one attempt after each, and each twice as
/// long as the last, up to [`LONGEST_LOGIN_WAIT`], until the key has been quiet for
/// [`LOGIN_FAILURES_FORGOTTEN_AFTER`] (`limits::WindowLimit::growing`). The right password for
/// the account ends its (account, address) count at once.
///
/// Time is the app's [`Clock`](crate::clock::Clock), so that tests can show the waits growing.
pub struct LoginLimits {
    per_address: WindowLimit<ClientKey>,
    per_account_and_address: WindowLimit<(ClientKey, u64)>,
    /// Accounts are keyed by a keyed hash of the e-mail given, so a key's size does not depend
    /// on what a client sends.
    emails: std::collections::hash_map::RandomState,
    clock: Arc<dyn crate::clock::Clock>,
    /// The clock's reading at `origin`, to turn the clock's readings into instants.
    origin_ms: i64,
    origin: Instant,
}

/// A failed-login limit of `limit` a minute, past which the waits grow.
fn growing<K: std::hash::Hash + Eq + Clone>(limit: u32) -> WindowLimit<K> {
    WindowLimit::growing(
        limit,
        MINUTE,
        LONGEST_LOGIN_WAIT,
        LOGIN_FAILURES_FORGOTTEN_AFTER,
    )
}

impl LoginLimits {
    /// `per_address` failures per minute from one client address.
    pub fn new(per_address: u32, clock: Arc<dyn crate::clock::Clock>) -> LoginLimits {
        LoginLimits {
            per_address: growing(per_address),
            per_account_and_address: growing(FAILURES_PER_ACCOUNT_AND_ADDRESS),
            emails: Default::default(),
            origin_ms: clock.now_ms(),
            origin: Instant::now(),
            clock,
        }
    }

    fn now(&self) -> Instant {
        let since = self.clock.now_ms().saturating_sub(self.origin_ms).max(0);
        self.origin + Duration::from_millis(since as u64)
    }

    /// Counts an attempt as a failure until [`LoginLimits::succeeded`] or
    /// [`LoginLimits::not_checked`] says otherwise.
    pub(super) fn attempt(&self, client: ClientKey, email: &str) -> Result<(), AuthError> {
        let now = self.now();
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
            self.per_address.release(&client, now);
            return Err(too_many("for this account from this address", wait));
        }
        Ok(())
    }

    /// The password was right: the attempt was no failure, and the account's count from this
    /// address starts afresh.
    pub(super) fn succeeded(&self, client: ClientKey, email: &str) {
        self.per_address.release(&client, self.now());
        self.per_account_and_address
            .forget(&(client, self.emails.hash_one(email)));
    }

    /// The password was never checked (the hashing slots were busy): the attempt is taken back.
    pub(super) fn not_checked(&self, client: ClientKey, email: &str) {
        let now = self.now();
        self.per_address.release(&client, now);
        self.per_account_and_address
            .release(&(client, self.emails.hash_one(email)), now);
    }
}

/// Sign-ups per client address, and verification mails per recipient, on this node. A repeated
/// sign-up for an address that was mailed within the interval is answered as any other and sends
/// nothing, so nobody can fill a stranger's mailbox, and the answer tells nothing new.
pub struct SignupLimits {
    pub(super) per_address: WindowLimit<ClientKey>,
    pub(super) mail_per_recipient: WindowLimit<u64>,
    pub(super) emails: std::collections::hash_map::RandomState,
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

fn required(value: Option<String>, field: &'static str) -> Result<String, AuthError> {
    value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
        AuthError::new(StatusCode::BAD_REQUEST, format!("{field} is required")).on(field)
    })
}

const SIGNUP_REQUESTED: &str = "successfully created an account creation request.";

/// Asks for an account: a verification link is mailed to the address.
///
/// The same answer whether or not a mail was sent just before (one per recipient per
/// `HERALD_SIGNUP_MAIL_INTERVAL`).
#[utoipa::path(
    post,
    path = "/api/v1/auth/register",
    tag = "accounts",
    request_body(content(
        (SignUpIn = "application/json"),
        (SignUpIn = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "The request is stored and its mail queued", body = InfoReply),
        (status = 400, description = "A field is missing or the body is malformed", body = AuthErrorReply),
        (status = 409, description = "The name is taken (a taken e-mail is answered 200, and its owner is told by mail)", body = AuthErrorReply),
        (status = 413, description = "The body is too large", body = AuthErrorReply),
        (status = 422, description = "A field is not acceptable", body = AuthErrorReply),
        (status = 429, description = "Too many sign-ups from this address (`Retry-After`)", body = AuthErrorReply),
        (status = 500, description = "herald failed", body = AuthErrorReply),
    )
)]
async fn register(
    State(state): State<AccountsState>,
    Client(client): Client,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<InfoReply>, AuthError> {
    let input: SignUpIn = parse_body(&headers, &body)?;
    sign_up(&state, client, input, VerifyLink::Api).await?;
    Ok(info(SIGNUP_REQUESTED))
}

/// Where the verification mail sends the person who signed up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyLink {
    /// `GET /api/v1/auth/email_verify/{key}`: the reference API, answered in JSON.
    Api,
    /// `/verify/{key}`: the web page that confirms the account (`web`).
    Page,
}

impl VerifyLink {
    fn path(self) -> &'static str {
        match self {
            VerifyLink::Api => "/api/v1/auth/email_verify/",
            VerifyLink::Page => "/verify/",
        }
    }
}

/// What a sign-up form or body carries; every field is checked by [`sign_up`].
#[derive(Deserialize, Default, ToSchema)]
pub struct SignUpIn {
    /// 2 to 32 letters, digits, `_`, `-` or `.`.
    pub name: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
}

/// Signs `input` up: checks the fields, the sign-up limit of the client's address and whether
/// the name or e-mail is taken, then stores the request and queues its verification mail (at
/// most one per recipient per `HERALD_SIGNUP_MAIL_INTERVAL`). A refusal names its field when it
/// is about one. `Ok` also when the mail was held back by the interval: the answer must tell
/// nothing new.
pub async fn sign_up(
    state: &AccountsState,
    client: ClientKey,
    input: SignUpIn,
    link: VerifyLink,
) -> Result<(), AuthError> {
    let invalid = |field: &'static str| {
        move |reason: String| AuthError::new(StatusCode::UNPROCESSABLE_ENTITY, reason).on(field)
    };
    let name = valid_name(&required(input.name, "name")?).map_err(invalid("name"))?;
    let email = valid_email(&required(input.email, "email")?).map_err(invalid("email"))?;
    let password = required(input.password, "password")?;
    valid_password(&password).map_err(invalid("password"))?;
    let limits = &state.signup_limits;
    let now = Instant::now();
    // Counted before the look-up below, so that it also slows anyone asking which names and
    // e-mails are taken.
    limits.per_address.acquire(&client, now).map_err(|wait| {
        AuthError::too_many("too many sign-ups from this address; try again later", wait)
    })?;
    // A name is public (friends find each other by it), so a taken one is said; whether an
    // e-mail address has an account is not: that sign-up is answered as any other, and the
    // address's owner is told by mail instead.
    let taken = name_or_email_taken(&state.db, &name, &email).await?;
    if taken == Some("name") {
        return Err(AuthError::new(StatusCode::CONFLICT, "that name is already taken").on("name"));
    }
    let recipient = limits.emails.hash_one(&email);
    if limits.mail_per_recipient.acquire(&recipient, now).is_err() {
        // The mail sent within the interval still holds a working link (or says where to sign
        // in); this answer is the same whether the address has an account or not.
        return Ok(());
    }
    let mailed = if taken.is_some() {
        // The time a new sign-up spends hashing is spent here too: timing tells nothing.
        discard_hash(state, password).await?;
        mail_already_registered(state, &email).await
    } else {
        request_signup(state, &name, &email, password, link).await
    };
    if mailed.is_err() {
        // Nothing went out: a sign-up tried again must not wait for the interval.
        limits.mail_per_recipient.release(&recipient, now);
    }
    mailed
}

/// Hashes a password that is not kept, so that an answer that stores nothing takes as long as
/// one that does.
async fn discard_hash(state: &AccountsState, password: String) -> Result<(), AuthError> {
    match state.hashing.hash(password).await {
        Ok(_) => Ok(()),
        Err(_) => Err(AuthError::busy()),
    }
}

/// Tells the owner of an address that already has an account that someone signed up with it:
/// the answer to that sign-up said nothing, so the mail is where the truth goes.
async fn mail_already_registered(state: &AccountsState, email: &str) -> Result<(), AuthError> {
    let Some((account, _)) = find_by_email(&state.db, email).await? else {
        return Ok(());
    };
    let base = state.public_url.as_str().trim_end_matches('/');
    let mail = json!({
        "subject": "Your herald account",
        "text": format!(
            "Hello {name},\n\nsomeone asked to create a herald account with this address, which \
             already has one (named {name}). Nothing was changed.\n\nTo sign in: {base}/signin\n\
             Forgot your password? {base}/forgot\n\nIf it was not you, ignore this mail.\n\n— herald\n",
            name = account.name
        ),
    });
    let tx = state.db.writer().begin().await?;
    state
        .mail_and_commit(tx, &account.email, &mail, "signup")
        .await
}

/// Stores the sign-up request and queues its verification mail.
async fn request_signup(
    state: &AccountsState,
    name: &str,
    email: &str,
    password: String,
    link: VerifyLink,
) -> Result<(), AuthError> {
    let password_hash = state
        .hashing
        .hash(password)
        .await
        .map_err(|_| AuthError::busy())?
        .map_err(|error| {
            tracing::error!(%error, "could not hash a password");
            AuthError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not hash the password",
            )
        })?;
    let key = random_secret();
    let link = format!(
        "{}{}{key}",
        state.public_url.as_str().trim_end_matches('/'),
        link.path()
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
    state.mail_and_commit(tx, email, &mail, "signup").await
}

/// Creates the account a sign-up asked for: the link in the verification mail.
#[utoipa::path(
    get,
    path = "/api/v1/auth/email_verify/{key}",
    tag = "accounts",
    params(("key" = String, Path, description = "The key from the mailed link")),
    responses(
        (status = 200, description = "The account exists now", body = InfoReply),
        (status = 404, description = "Unknown or already used", body = AuthErrorReply),
        (status = 409, description = "The name or e-mail was taken meanwhile", body = AuthErrorReply),
        (status = 410, description = "Expired; sign up again", body = AuthErrorReply),
        (status = 500, description = "herald failed", body = AuthErrorReply),
    )
)]
async fn email_verify(
    State(state): State<AccountsState>,
    Path(key): Path<String>,
) -> Result<Json<InfoReply>, AuthError> {
    verify_signup(&state, &key).await?;
    Ok(info("account successfully created."))
}

/// Creates the account a verification key was mailed for. The key works once: 404 when it is
/// unknown or used, 410 when it has expired.
pub async fn verify_signup(state: &AccountsState, key: &str) -> Result<Account, AuthError> {
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
    .bind(secret_hash(key))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((name, email, password_hash, expires_at)) = request else {
        return Err(invalid());
    };
    // Single use, whatever happens next.
    sqlx::query("DELETE FROM signup_requests WHERE key_hash = $1")
        .bind(secret_hash(key))
        .execute(&mut *tx)
        .await?;
    if expires_at < now_ms() {
        tx.commit().await?;
        return Err(AuthError::new(
            StatusCode::GONE,
            "this link has expired; sign up again",
        ));
    }
    let id = state.ids.next();
    let inserted = sqlx::query(
        "INSERT INTO accounts (id, name, email, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
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
    Ok(Account {
        id,
        name,
        email,
        profile: None,
    })
}

/// A login, as JSON or as a form.
#[derive(Deserialize, ToSchema)]
struct LoginIn {
    email: Option<String>,
    password: Option<String>,
}

/// Logs in: a login token for `Authorization: Bearer`.
///
/// Failed logins are limited per client address and per account from one address.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "accounts",
    request_body(content(
        (LoginIn = "application/json"),
        (LoginIn = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Logged in", body = AuthReply),
        (status = 400, description = "A field is missing or the body is malformed", body = AuthErrorReply),
        (status = 401, description = "Wrong e-mail or password", body = AuthErrorReply),
        (status = 413, description = "The body is too large", body = AuthErrorReply),
        (status = 429, description = "Too many failed logins (`Retry-After`)", body = AuthErrorReply),
        (status = 500, description = "herald failed", body = AuthErrorReply),
    )
)]
async fn login(
    State(state): State<AccountsState>,
    Client(client): Client,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<AuthReply>, AuthError> {
    let input: LoginIn = parse_body(&headers, &body)?;
    let email = required(input.email, "email")?;
    let password = required(input.password, "password")?;
    let (_, token) = log_in(&state, client, &email, password).await?;
    Ok(Json(AuthReply {
        r#type: "auth",
        payload: TokenPayload { token },
    }))
}

/// Checks an e-mail and password under the failed-login limits and issues a login token (the
/// API's bearer token, the pages' session). 401 for a wrong pair, whichever part was wrong.
pub async fn log_in(
    state: &AccountsState,
    client: ClientKey,
    email: &str,
    password: String,
) -> Result<(Account, String), AuthError> {
    let email = email.trim().to_lowercase();
    state.login_limits.attempt(client, &email)?;
    let wrong = || AuthError::new(StatusCode::UNAUTHORIZED, "wrong e-mail or password");
    let busy = || {
        // Not a failed login: the password was never checked.
        state.login_limits.not_checked(client, &email);
        AuthError::busy()
    };
    let Some((account, stored)) = find_by_email(&state.db, &email).await? else {
        // Spend the same time as a real check, so timing does not tell which e-mails exist.
        state
            .hashing
            .verify(password, DUMMY_HASH.to_string())
            .await
            .map_err(|_| busy())?;
        return Err(wrong());
    };
    if !state
        .hashing
        .verify(password, stored)
        .await
        .map_err(|_| busy())?
    {
        return Err(wrong());
    }
    state.login_limits.succeeded(client, &email);
    let token = issue_token(&state.db, account.id).await?;
    Ok((account, token))
}

/// An argon2id hash of a random password, checked against when the e-mail is unknown.
pub(super) const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Jx9FzDqk1BMHr6xX0nWkfQZ0QyE0vN4mJ3CwWm3n3cQ";

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

/// Logs out: the token stops working.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "accounts",
    security(("login_token" = [])),
    responses(
        (status = 200, description = "Logged out", body = InfoReply),
        (status = 401, description = "The token is missing or not valid", body = AuthErrorReply),
        (status = 500, description = "herald failed", body = AuthErrorReply),
    )
)]
async fn logout(
    State(state): State<AccountsState>,
    current: CurrentAccount,
) -> Result<Json<InfoReply>, AuthError> {
    revoke_token(&state.db, &current.token).await?;
    Ok(info("logged out."))
}

/// The account the token belongs to.
#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    tag = "accounts",
    security(("login_token" = [])),
    responses(
        (status = 200, description = "The account", body = UserReply),
        (status = 401, description = "The token is missing or not valid", body = AuthErrorReply),
        (status = 500, description = "herald failed", body = AuthErrorReply),
    )
)]
async fn me(current: CurrentAccount) -> Json<UserReply> {
    Json(UserReply {
        r#type: "user",
        payload: current.account,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_is_a_real_argon2id_hash() {
        assert!(argon2::PasswordHash::new(DUMMY_HASH).is_ok());
    }
}

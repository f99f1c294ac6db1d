//! Area C's accounts: sign-up confirmed by e-mail, argon2id passwords, revocable login tokens.
//! The HTTP side (reference shapes) is in `http.rs`; `Account` is herald's identity for projects,
//! chat and contacts.

pub mod auth;
pub mod http;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ids::now_ms;
use crate::store::{Db, StoreError};

/// How long a sign-up link stays valid.
pub const SIGNUP_KEY_TTL_MS: i64 = 24 * 3600 * 1000;
/// How long a login token stays valid.
pub const TOKEN_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

/// The user object of the chat protocol: `{"id": "<snowflake>", "name", "profile": url|null}`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Account {
    #[serde(with = "crate::ids::as_string")]
    pub id: i64,
    pub name: String,
    #[serde(skip)]
    pub email: String,
    pub profile: Option<String>,
}

/// An account name: 2 to 32 letters (any script), digits, `_`, `-` or `.`.
pub fn valid_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    let count = name.chars().count();
    if !(2..=32).contains(&count) {
        return Err("name: 2 to 32 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err("name: letters, digits, '_', '-' or '.' only".into());
    }
    Ok(name.to_string())
}

pub fn valid_email(raw: &str) -> Result<String, String> {
    let email = raw.trim();
    if email.len() > 254 {
        return Err("email: too long".into());
    }
    email
        .parse::<lettre::Address>()
        .map(|_| email.to_lowercase())
        .map_err(|_| format!("email: {email:?} is not an e-mail address"))
}

pub fn valid_password(raw: &str) -> Result<(), String> {
    let count = raw.chars().count();
    if count < 8 {
        return Err("password: at least 8 characters".into());
    }
    if raw.len() > 1024 {
        return Err("password: at most 1024 bytes".into());
    }
    Ok(())
}

/// argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's recommendation), on a
/// blocking thread so that hashing never stalls the async workers.
pub async fn hash_password(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash: PasswordHash| hash.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

pub async fn verify_password(password: String, stored: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .map(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A random secret for links and tokens (256 bits, URL-safe).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Secrets are stored as their SHA-256, so a database leak hands out no working key or token.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub async fn name_or_email_taken(
    db: &Db,
    name: &str,
    email: &str,
) -> Result<Option<&'static str>, StoreError> {
    let taken: Option<(String, String)> =
        sqlx::query_as("SELECT name, email FROM accounts WHERE name = $1 OR email = $2 LIMIT 1")
            .bind(name)
            .bind(email)
            .fetch_optional(db.reader())
            .await?;
    Ok(taken.map(|(taken_name, _)| if taken_name == name { "name" } else { "email" }))
}

fn account_from(row: (i64, String, String, Option<String>)) -> Account {
    Account {
        id: row.0,
        name: row.1,
        email: row.2,
        profile: row.3,
    }
}

pub async fn find_by_email(db: &Db, email: &str) -> Result<Option<(Account, String)>, StoreError> {
    let row: Option<(i64, String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT id, name, email, profile, password_hash FROM accounts WHERE email = $1",
    )
    .bind(email)
    .fetch_optional(db.reader())
    .await?;
    Ok(
        row.map(|(id, name, email, profile, hash)| {
            (account_from((id, name, email, profile)), hash)
        }),
    )
}

/// The name of the bot account that signs herald's own messages.
pub const BOT_NAME: &str = "herald";

/// Makes sure the bot account exists (on any node, any number of times) and returns its id.
pub async fn ensure_bot_account(db: &Db, ids: &crate::ids::IdGenerator) -> Result<i64, StoreError> {
    // The password hash is not a valid PHC string: nobody can ever log in as the bot.
    sqlx::query(
        "INSERT INTO accounts (id, name, email, password_hash, created_at) VALUES ($1, $2, $3, '!', $4) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(ids.next())
    .bind(BOT_NAME)
    .bind("herald-bot@localhost")
    .bind(now_ms())
    .execute(db.writer())
    .await?;
    sqlx::query_scalar("SELECT id FROM accounts WHERE name = $1")
        .bind(BOT_NAME)
        .fetch_one(db.writer())
        .await
}

pub async fn find_by_name(db: &Db, name: &str) -> Result<Option<Account>, StoreError> {
    let row = sqlx::query_as("SELECT id, name, email, profile FROM accounts WHERE name = $1")
        .bind(name)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.map(account_from))
}

/// The account a login token belongs to, if the token is live.
pub async fn account_for_token(db: &Db, token: &str) -> Result<Option<Account>, StoreError> {
    let row = sqlx::query_as(
        "SELECT a.id, a.name, a.email, a.profile FROM auth_tokens t JOIN accounts a ON a.id = t.account_id \
         WHERE t.token_hash = $1 AND t.revoked = 0 AND t.expires_at > $2",
    )
    .bind(secret_hash(token))
    .bind(now_ms())
    .fetch_optional(db.reader())
    .await?;
    Ok(row.map(account_from))
}

/// Whether `token` is a live login token (`state::AppInner::login_token_is_live`).
pub fn is_live_token<'a>(
    db: &'a Db,
    token: &'a str,
) -> futures_util::future::BoxFuture<'a, Result<bool, StoreError>> {
    Box::pin(async move { Ok(account_for_token(db, token).await?.is_some()) })
}

pub async fn issue_token(db: &Db, account_id: i64) -> Result<String, StoreError> {
    let token = random_secret();
    let now = now_ms();
    sqlx::query("INSERT INTO auth_tokens (token_hash, account_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(secret_hash(&token))
        .bind(account_id)
        .bind(now)
        .bind(now + TOKEN_TTL_MS)
        .execute(db.writer())
        .await?;
    Ok(token)
}

pub async fn revoke_token(db: &Db, token: &str) -> Result<bool, StoreError> {
    let revoked =
        sqlx::query("UPDATE auth_tokens SET revoked = 1 WHERE token_hash = $1 AND revoked = 0")
            .bind(secret_hash(token))
            .execute(db.writer())
            .await?;
    Ok(revoked.rows_affected() > 0)
}

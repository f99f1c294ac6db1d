//! Passwords after sign-up: a forgotten password reset through a mailed link, a password changed
//! by its owner, and every session of an account ended at once. The pages (`web`) call these; the
//! table `password_resets` is this module's.
//!
//! A reset key is random, stored as its SHA-256, works once and expires after
//! [`RESET_KEY_TTL_MS`]; a reset ends every session of the account, since whoever reset it may be
//! taking it back from someone who knew the old password.

use std::hash::BuildHasher;
use std::time::Instant;

use axum::http::StatusCode;
use serde_json::json;

use super::http::{AccountsState, AuthError, DUMMY_HASH};
use super::{
    Account, HashingBusy, find_by_email, random_secret, secret_hash, valid_email, valid_password,
};
use crate::ids::now_ms;
use crate::limits::ClientKey;
use crate::store::{Db, StoreError};

/// How long a password-reset link stays valid.
pub const RESET_KEY_TTL_MS: i64 = 60 * 60 * 1000;

fn invalid_password(reason: String) -> AuthError {
    AuthError::new(StatusCode::UNPROCESSABLE_ENTITY, reason).on("password")
}

/// Mails a reset link (`{public URL}/reset/{key}`) to the account with this e-mail, if there is
/// one. The answer is the same either way, so the form tells nobody which e-mails have accounts;
/// requests are limited per client address and the mails to one recipient to one per
/// `HERALD_SIGNUP_MAIL_INTERVAL` (the link mailed before still works).
pub async fn request_reset(
    state: &AccountsState,
    client: ClientKey,
    email: &str,
) -> Result<(), AuthError> {
    let email = valid_email(email)
        .map_err(|reason| AuthError::new(StatusCode::UNPROCESSABLE_ENTITY, reason).on("email"))?;
    let limits = &state.reset_limits;
    let now = Instant::now();
    limits.per_address.acquire(&client, now).map_err(|wait| {
        AuthError::too_many(
            "too many password resets from this address; try again later",
            wait,
        )
    })?;
    let Some((account, _)) = find_by_email(&state.db, &email).await? else {
        return Ok(());
    };
    let recipient = limits.emails.hash_one(&email);
    if limits.mail_per_recipient.acquire(&recipient, now).is_err() {
        return Ok(());
    }
    let mailed = mail_reset_link(state, &account).await;
    if mailed.is_err() {
        limits.mail_per_recipient.release(&recipient, now);
    }
    mailed
}

async fn mail_reset_link(state: &AccountsState, account: &Account) -> Result<(), AuthError> {
    let key = random_secret();
    let link = format!(
        "{}/reset/{key}",
        state.public_url.as_str().trim_end_matches('/')
    );
    let mail = json!({
        "subject": "Reset your herald password",
        "text": format!(
            "Hello {name},\n\nopen this link to choose a new password for your herald account:\n\n{link}\n\n\
             It works once, within an hour. If you did not ask for it, ignore this mail: your \
             password stays as it is.\n\n— herald\n",
            name = account.name
        ),
    });
    let now = now_ms();
    // The key and its mail commit together, as a sign-up's do.
    let mut tx = state.db.writer().begin().await?;
    sqlx::query(
        "INSERT INTO password_resets (key_hash, account_id, expires_at, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(secret_hash(&key))
    .bind(account.id)
    .bind(now + RESET_KEY_TTL_MS)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    state
        .mail_and_commit(tx, &account.email, &mail, "password_reset")
        .await
}

/// Whether a reset key is live (unused and not expired), so that a page can ask for the new
/// password only when it would be taken.
pub async fn reset_key_is_live(db: &Db, key: &str) -> Result<bool, StoreError> {
    if key.len() > 200 {
        return Ok(false);
    }
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT account_id FROM password_resets WHERE key_hash = $1 AND expires_at > $2",
    )
    .bind(secret_hash(key))
    .bind(now_ms())
    .fetch_optional(db.reader())
    .await?;
    Ok(found.is_some())
}

/// Sets a new password with a mailed key: the key is used up, every other key of the account
/// too, and every session of the account ends. A password that breaks the rules is refused
/// before the key is touched, so the person can try again with the same link.
pub async fn reset_password(
    state: &AccountsState,
    key: &str,
    new_password: String,
) -> Result<(), AuthError> {
    valid_password(&new_password).map_err(invalid_password)?;
    let gone = || {
        AuthError::new(
            StatusCode::NOT_FOUND,
            "this link is not valid, was already used, or has expired",
        )
    };
    if key.len() > 200 {
        return Err(gone());
    }
    // A key that was never issued is refused before the costly hash, so that guessing keys
    // costs herald nothing; the transaction below checks the key again.
    let issued: Option<i64> =
        sqlx::query_scalar("SELECT account_id FROM password_resets WHERE key_hash = $1")
            .bind(secret_hash(key))
            .fetch_optional(state.db.reader())
            .await?;
    if issued.is_none() {
        return Err(gone());
    }
    let password_hash = hash_new_password(state, new_password).await?;
    let mut tx = state.db.writer().begin().await?;
    let found: Option<(i64, i64)> =
        sqlx::query_as("SELECT account_id, expires_at FROM password_resets WHERE key_hash = $1")
            .bind(secret_hash(key))
            .fetch_optional(&mut *tx)
            .await?;
    let Some((account_id, expires_at)) = found else {
        return Err(gone());
    };
    // Single use, whatever happens next; the account's other keys go with it.
    sqlx::query("DELETE FROM password_resets WHERE account_id = $1")
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
    if expires_at <= now_ms() {
        tx.commit().await?;
        return Err(gone());
    }
    sqlx::query("UPDATE accounts SET password_hash = $1 WHERE id = $2")
        .bind(&password_hash)
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE auth_tokens SET revoked = 1 WHERE account_id = $1 AND revoked = 0")
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Changes the password of a signed-in account, which must give its current one (counted like a
/// login under the failed-login limits). Its sessions stay.
pub async fn change_password(
    state: &AccountsState,
    client: ClientKey,
    account: &Account,
    current: String,
    new_password: String,
) -> Result<(), AuthError> {
    valid_password(&new_password).map_err(invalid_password)?;
    state.login_limits.attempt(client, &account.email)?;
    let stored: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM accounts WHERE id = $1")
            .bind(account.id)
            .fetch_optional(state.db.reader())
            .await?;
    let right = match state
        .hashing
        .verify(current, stored.unwrap_or_else(|| DUMMY_HASH.to_string()))
        .await
    {
        Ok(right) => right,
        Err(HashingBusy) => {
            // Not a failed login: the password was never checked.
            state.login_limits.not_checked(client, &account.email);
            return Err(AuthError::busy());
        }
    };
    if !right {
        return Err(
            AuthError::new(StatusCode::UNAUTHORIZED, "the current password is wrong")
                .on("current_password"),
        );
    }
    state.login_limits.succeeded(client, &account.email);
    let password_hash = hash_new_password(state, new_password).await?;
    sqlx::query("UPDATE accounts SET password_hash = $1 WHERE id = $2")
        .bind(&password_hash)
        .bind(account.id)
        .execute(state.db.writer())
        .await?;
    Ok(())
}

/// An argon2id hash of a new password, through the bounded hashing slots that sign-ups and
/// logins share (`PasswordHashing`), so that reset links and password changes cannot be used
/// to run argon2id without bound either.
async fn hash_new_password(state: &AccountsState, password: String) -> Result<String, AuthError> {
    state
        .hashing
        .hash(password)
        .await
        .map_err(|HashingBusy| AuthError::busy())?
        .map_err(|error| {
            tracing::error!(%error, "could not hash a password");
            AuthError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not hash the password",
            )
        })
}

/// Ends every session (login token) of the account; returns how many were live.
pub async fn revoke_all_sessions(db: &Db, account_id: i64) -> Result<u64, StoreError> {
    let revoked =
        sqlx::query("UPDATE auth_tokens SET revoked = 1 WHERE account_id = $1 AND revoked = 0")
            .bind(account_id)
            .execute(db.writer())
            .await?;
    Ok(revoked.rows_affected())
}

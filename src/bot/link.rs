//! Linking a messenger contact to a herald account: a signed-in account asks for a one-time code
//! (`POST /api/v1/auth/link_code`), then sends `연결 <code>` / `link <code>` to the bot from
//! KakaoTalk, Telegram, Webex or chat. Codes are random, stored hashed, single-use, and expire
//! after ten minutes. `GET /api/v1/auth/contacts` lists the contacts linked to the account.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::RngExt;
use serde_json::{Value, json};

use crate::accounts::auth::Actor;
use crate::accounts::secret_hash;
use crate::http::error::ApiError;
use crate::ids::now_ms;
use crate::state::AppState;
use crate::store::{Db, StoreError};

pub const CODE_VALID_MS: i64 = 10 * 60 * 1000;
/// No 0/O or 1/I/L: codes are read off a screen and typed on a phone.
const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
const CODE_LEN: usize = 8;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/auth/link_code", post(new_code))
        .route("/api/v1/auth/contacts", get(linked_contacts))
        .with_state(state)
}

fn account_of(actor: Actor) -> Result<crate::accounts::Account, ApiError> {
    match actor {
        Actor::Account(account) => Ok(account),
        Actor::Operator => Err(ApiError::Forbidden(
            "link codes belong to an account; log in as one".into(),
        )),
    }
}

fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

async fn new_code(
    State(state): State<AppState>,
    actor: Actor,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let account = account_of(actor)?;
    let code: String = {
        let mut rng = rand::rng();
        (0..CODE_LEN)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    };
    let now = now_ms();
    // Old unused codes of this account stop working: one code at a time.
    sqlx::query("DELETE FROM link_codes WHERE account_id = $1 OR expires_at < $2")
        .bind(account.id)
        .bind(now)
        .execute(state.db.writer())
        .await?;
    sqlx::query(
        "INSERT INTO link_codes (code_hash, account_id, expires_at, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(secret_hash(&code))
    .bind(account.id)
    .bind(now + CODE_VALID_MS)
    .bind(now)
    .execute(state.db.writer())
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "code": code,
            "expires_at": crate::ids::rfc3339(now + CODE_VALID_MS),
            "how": format!("send \u{201c}연결 {code}\u{201d} (or \u{201c}link {code}\u{201d}) to the herald bot"),
        })),
    ))
}

async fn linked_contacts(
    State(state): State<AppState>,
    actor: Actor,
) -> Result<Json<Value>, ApiError> {
    let account = account_of(actor)?;
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM contacts WHERE account_id = $1 ORDER BY id")
            .bind(account.id)
            .fetch_all(state.db.reader())
            .await?;
    let mut contacts = Vec::new();
    for id in ids {
        if let Some(contact) = crate::contacts::find_contact(&state.db, id).await? {
            let subscriptions = crate::contacts::list_subscriptions(&state.db, Some(id)).await?;
            let mut value = serde_json::to_value(&contact).map_err(anyhow::Error::from)?;
            value["subscriptions"] =
                serde_json::to_value(subscriptions).map_err(anyhow::Error::from)?;
            contacts.push(value);
        }
    }
    Ok(Json(json!({"contacts": contacts})))
}

/// Uses up `code` for `contact_id`; returns the linked account's name, or `None` when the code is
/// unknown or expired.
pub async fn redeem(db: &Db, contact_id: i64, code: &str) -> Result<Option<String>, StoreError> {
    let code = normalise(code);
    if code.len() != CODE_LEN {
        return Ok(None);
    }
    let mut tx = db.writer().begin().await?;
    let account: Option<i64> = sqlx::query_scalar(
        "DELETE FROM link_codes WHERE code_hash = $1 AND expires_at > $2 RETURNING account_id",
    )
    .bind(secret_hash(&code))
    .bind(now_ms())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(account) = account else {
        return Ok(None);
    };
    crate::contacts::link_to_account(&mut tx, contact_id, account).await?;
    let name: String = sqlx::query_scalar("SELECT name FROM accounts WHERE id = $1")
        .bind(account)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(name))
}

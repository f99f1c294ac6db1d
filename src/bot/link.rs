//! Linking a messenger contact to a herald account: a signed-in account asks for a one-time code
//! (`POST /api/v1/auth/link_code`), then sends `연결 <code>` / `link <code>` to the bot from
//! KakaoTalk, Telegram, Webex or chat. Codes are random, stored hashed, single-use, and expire
//! after ten minutes. `GET /api/v1/auth/contacts` lists the contacts linked to the account.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rand::RngExt;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use crate::accounts::auth::Actor;
use crate::accounts::secret_hash;
use crate::contacts::{Contact, Subscription};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::openapi::TokenErrors;
use crate::http::routes::Routes;
use crate::ids::now_ms;
use crate::state::AppState;
use crate::store::{Db, StoreError};

pub const CODE_VALID_MS: i64 = 10 * 60 * 1000;
/// No 0/O or 1/I/L: codes are read off a screen and typed on a phone.
const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
const CODE_LEN: usize = 8;

pub fn router(state: AppState) -> Routes {
    Routes::new()
        .api(routes!(new_code))
        .api(routes!(linked_contacts))
        .with_state(state)
}

#[derive(Serialize, ToSchema)]
struct LinkCode {
    /// Eight characters without look-alikes (no 0/O, 1/I/L).
    code: String,
    /// RFC 3339; ten minutes from now.
    expires_at: String,
    /// What to send to the bot, for people.
    how: String,
}

/// A contact linked to the account, with its subscriptions.
#[derive(Serialize, ToSchema)]
struct LinkedContact {
    #[serde(flatten)]
    contact: Contact,
    subscriptions: Vec<Subscription>,
}

#[derive(Serialize, ToSchema)]
struct LinkedContacts {
    contacts: Vec<LinkedContact>,
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

/// A one-time code that links a messenger contact to the account.
///
/// Send `연결 <code>` or `link <code>` to the herald bot within ten minutes; an older unused
/// code of the account stops working.
#[utoipa::path(
    post,
    path = "/api/v1/auth/link_code",
    tag = "link",
    security(("login_token" = [])),
    responses(
        (status = 201, description = "The code", body = LinkCode),
        (status = 403, description = "The operator token has no account to link to", body = ErrorBody),
        TokenErrors,
    )
)]
async fn new_code(
    State(state): State<AppState>,
    actor: Actor,
) -> Result<(StatusCode, Json<LinkCode>), ApiError> {
    let account = account_of(actor)?;
    let issued = issue_code(&state.db, account.id).await?;
    let code = issued.code;
    Ok((
        StatusCode::CREATED,
        Json(LinkCode {
            expires_at: crate::ids::rfc3339(issued.expires_at),
            how: format!(
                "send \u{201c}연결 {code}\u{201d} (or \u{201c}link {code}\u{201d}) to the herald bot"
            ),
            code,
        }),
    ))
}

/// A one-time link code and when it stops working (Unix ms).
pub struct IssuedCode {
    pub code: String,
    pub expires_at: i64,
}

/// Makes a new link code for the account; its older unused codes stop working (one code at a
/// time).
pub async fn issue_code(db: &Db, account_id: i64) -> Result<IssuedCode, StoreError> {
    let code: String = {
        let mut rng = rand::rng();
        (0..CODE_LEN)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    };
    let now = now_ms();
    sqlx::query("DELETE FROM link_codes WHERE account_id = $1 OR expires_at < $2")
        .bind(account_id)
        .bind(now)
        .execute(db.writer())
        .await?;
    sqlx::query(
        "INSERT INTO link_codes (code_hash, account_id, expires_at, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(secret_hash(&code))
    .bind(account_id)
    .bind(now + CODE_VALID_MS)
    .bind(now)
    .execute(db.writer())
    .await?;
    Ok(IssuedCode {
        code,
        expires_at: now + CODE_VALID_MS,
    })
}

/// The contacts linked to the account, with their subscriptions.
#[utoipa::path(
    get,
    path = "/api/v1/auth/contacts",
    tag = "link",
    security(("login_token" = [])),
    responses(
        (status = 200, description = "The linked contacts", body = LinkedContacts),
        (status = 403, description = "The operator token has no account", body = ErrorBody),
        TokenErrors,
    )
)]
async fn linked_contacts(
    State(state): State<AppState>,
    actor: Actor,
) -> Result<Json<LinkedContacts>, ApiError> {
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
            contacts.push(LinkedContact {
                contact,
                subscriptions,
            });
        }
    }
    Ok(Json(LinkedContacts { contacts }))
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

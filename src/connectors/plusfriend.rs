//! The legacy KakaoTalk plus-friend auto-reply API, exactly as the reference bot served it:
//!
//! - `GET /plusfriend/keyboard` → `{"type":"text"}` (the user types freely)
//! - `POST /plusfriend/message` `{user_key, type, content}` →
//!   `{"message":{"text","photo"?,"message_button"?},"keyboard"?}`
//! - `POST /plusfriend/friend` `{user_key}` — added as a friend
//! - `DELETE /plusfriend/friend/{user_key}` — blocked: notifications to that contact stop
//! - `DELETE /plusfriend/chat_room/{user_key}` — left the chat room: notifications stop too
//!
//! Contacts from this API are stored as channel `kakao`, address `plusfriend:<user_key>`, so the
//! Event API can address them as `plusfriendUserKey`s.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::bot::Bot;
use crate::bot::{Incoming, Reply};
use crate::channels::kakao::PLUSFRIEND_PREFIX;
use crate::connectors::bounded;
use crate::http::error::{ApiError, ApiJson};
use crate::text::ellipsize_chars;

const TEXT_MAX_CHARS: usize = 1000;
const BODY_LIMIT: usize = 64 * 1024;

pub fn router(state: Bot) -> Router {
    Router::new()
        .route("/plusfriend/keyboard", get(keyboard))
        .route("/plusfriend/message", post(message))
        .route("/plusfriend/friend", post(added))
        .route("/plusfriend/friend/{user_key}", delete(blocked))
        .route("/plusfriend/chat_room/{user_key}", delete(left))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

fn user_key(value: Option<&Value>) -> Result<String, ApiError> {
    let key = value
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::BadRequest("user_key is required".into()))?;
    check_key(key)?;
    Ok(key.to_string())
}

/// User keys are short URL-safe strings (`bFS8biwaiz-d`).
fn check_key(key: &str) -> Result<(), ApiError> {
    if key.len() > 100
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::BadRequest(format!("{key:?} is not a user_key")));
    }
    Ok(())
}

async fn keyboard() -> Json<Value> {
    Json(json!({"type": "text"}))
}

/// The engine's reply in the auto-reply format. Buttons become the keyboard (a button sends its
/// own label, so the label is the command); the first link becomes the message button.
pub fn auto_reply(reply: &Reply) -> Value {
    let mut message = json!({"text": ellipsize_chars(&reply.text, TEXT_MAX_CHARS)});
    if let Some(image) = &reply.image {
        message["photo"] = json!({"url": image.url, "width": 640, "height": 480});
    }
    if let Some(link) = reply.links.first() {
        message["message_button"] =
            json!({"label": ellipsize_chars(&link.label, 14), "url": link.url});
    }
    let mut body = json!({"message": message});
    if !reply.buttons.is_empty() {
        let buttons: Vec<&str> = reply.buttons.iter().map(|b| b.send.as_str()).collect();
        body["keyboard"] = json!({"type": "buttons", "buttons": buttons});
    }
    body
}

async fn message(
    State(state): State<Bot>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let key = user_key(body.get("user_key"))?;
    let kind = body.get("type").and_then(Value::as_str).unwrap_or("text");
    let content = match body.get("content") {
        Some(Value::String(text)) => bounded(text).to_string(),
        None | Some(Value::Null) => String::new(),
        Some(_) => return Err(ApiError::BadRequest("content must be a string".into())),
    };
    let text = match kind {
        "text" => content,
        "photo" | "video" | "audio" => {
            return Ok(Json(auto_reply(&Reply::text(
                "사진이나 파일은 아직 이해하지 못해요. 글로 보내 주세요. (\u{201c}도움말\u{201d})",
            ))));
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "unknown message type {other:?}"
            )));
        }
    };
    let address = format!("{PLUSFRIEND_PREFIX}{key}");
    let answer = crate::bot::converse(
        &state,
        Incoming {
            channel: "kakao",
            address: &address,
            nick_name: "",
            text: &text,
        },
    )
    .await?;
    Ok(Json(auto_reply(&answer.reply)))
}

async fn added(
    State(state): State<Bot>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let key = user_key(body.get("user_key"))?;
    let address = format!("{PLUSFRIEND_PREFIX}{key}");
    crate::contacts::upsert_contact(&state.db, &state.ids, "kakao", &address, "").await?;
    Ok(Json(json!({})))
}

async fn stop(state: &Bot, key: &str) -> Result<Json<Value>, ApiError> {
    check_key(key)?;
    let address = format!("{PLUSFRIEND_PREFIX}{key}");
    crate::contacts::block_contact(&state.db, "kakao", &address).await?;
    Ok(Json(json!({})))
}

async fn blocked(
    State(state): State<Bot>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    stop(&state, &key).await
}

async fn left(State(state): State<Bot>, Path(key): Path<String>) -> Result<Json<Value>, ApiError> {
    stop(&state, &key).await
}

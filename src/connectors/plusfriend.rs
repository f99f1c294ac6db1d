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
//!
//! With `HERALD_KAKAO_SKILL_SECRET` set, the same routes are served under
//! `/kakao/plusfriend/<secret>/` (the base URL given to Kakao) and the bare ones refuse; with
//! `HERALD_KAKAO_ALLOWED_IPS` set, only those networks are served (see `kakao_gate`).

use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::bot::Bot;
use crate::bot::{Incoming, Reply};
use crate::channels::kakao::PLUSFRIEND_PREFIX;
use crate::connectors::bounded;
use crate::connectors::kakao_gate::{Door, check_secret, check_source};
use crate::http::error::{ApiError, ApiJson};
use crate::http::routes::{Outside, Routes};
use crate::text::ellipsize_chars;

const TEXT_MAX_CHARS: usize = 1000;
const BODY_LIMIT: usize = 64 * 1024;

/// The Kakao plus-friend auto-reply API, in Kakao's format: outside the OpenAPI document.
pub fn router(state: Bot) -> Routes {
    let behind_secret = Routes::new()
        .outside_any(
            Outside::PlatformWebhook,
            &[Method::GET, Method::POST, Method::DELETE],
            "/kakao/plusfriend/{secret}/{*rest}",
            through_secret,
        )
        .with_state(SecretDoor {
            bot: state.clone(),
            api: bare_routes(state.clone()).into_outside_router(),
        });
    bare_routes(state.clone())
        .layer(axum::middleware::from_fn_with_state(state, bare_door))
        .merge(behind_secret)
}

/// The plus-friend routes themselves, served bare (behind [`bare_door`]) and behind the secret.
fn bare_routes(state: Bot) -> Routes {
    let kakao = Outside::PlatformWebhook;
    Routes::new()
        .outside(kakao, Method::GET, "/plusfriend/keyboard", keyboard)
        .outside(kakao, Method::POST, "/plusfriend/message", message)
        .outside(kakao, Method::POST, "/plusfriend/friend", added)
        .outside(
            kakao,
            Method::DELETE,
            "/plusfriend/friend/{user_key}",
            blocked,
        )
        .outside(
            kakao,
            Method::DELETE,
            "/plusfriend/chat_room/{user_key}",
            left,
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

#[derive(Clone)]
struct SecretDoor {
    bot: Bot,
    api: axum::Router,
}

/// The bare `/plusfriend/*` routes: open only when no secret is set, and only to the allowed
/// networks.
async fn bare_door(State(state): State<Bot>, request: Request, next: Next) -> Response {
    let settings = &state.settings.kakao;
    let client = crate::http::auth::client_address(request.extensions());
    if let Err(refused) = check_secret(settings, Door::Bare, "plus-friend")
        .and_then(|()| check_source(settings, client))
    {
        return refused.into_response();
    }
    next.run(request).await
}

/// `/kakao/plusfriend/<secret>/<route>`: checked, then served by the plus-friend routes as
/// `/plusfriend/<route>`.
async fn through_secret(
    State(door): State<SecretDoor>,
    Path((secret, rest)): Path<(String, String)>,
    mut request: Request,
) -> Response {
    let settings = &door.bot.settings.kakao;
    let client = crate::http::auth::client_address(request.extensions());
    if let Err(refused) = check_secret(settings, Door::WithSecret(&secret), "plus-friend")
        .and_then(|()| check_source(settings, client))
    {
        return refused.into_response();
    }
    // `rest` is decoded; the route is rebuilt from the raw path so that a user key keeps its
    // exact spelling.
    let raw_path = request.uri().path();
    let prefix_len = "/kakao/plusfriend/".len() + secret.len();
    let inner = match raw_path.get(prefix_len..) {
        Some(tail) if tail.starts_with('/') && !rest.is_empty() => format!("/plusfriend{tail}"),
        _ => return ApiError::NotFound("no such route".into()).into_response(),
    };
    let inner = match request.uri().query() {
        Some(query) => format!("{inner}?{query}"),
        None => inner,
    };
    match inner.parse::<axum::http::Uri>() {
        Ok(uri) => *request.uri_mut() = uri,
        Err(_) => return ApiError::NotFound("no such route".into()).into_response(),
    }
    // The routes below match the request afresh: this route's path parameters must not come
    // along (they would be taken for theirs); who the client is does.
    let mut extensions = axum::http::Extensions::new();
    if let Some(peer) = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        extensions.insert(*peer);
    }
    if let Some(client) = request
        .extensions()
        .get::<crate::http::auth::ClientAddress>()
    {
        extensions.insert(*client);
    }
    *request.extensions_mut() = extensions;
    match door.api.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
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

//! Webex, inbound. At start herald registers its webhook (find-or-create by target URL, with a
//! secret; a disabled one is re-activated) for `messages`/`created`. Webex then posts each new
//! message's id to `POST /webex/webhook`, signed with `X-Spark-Signature` (HMAC-SHA1 hex of the
//! raw body). herald checks the signature, ignores its own messages, reads the text with
//! `GET /messages/{id}` (in group rooms it starts with the bot's name, which is removed), asks
//! the engine, and queues the answer as markdown for the same room. A message is answered once.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::bot::Bot;
use crate::bot::deliver::{already_answered, queue_replies, reply_delivery};
use crate::bot::{Incoming, Reply};
use crate::connectors::bounded;
use crate::http::error::ApiError;
use crate::http::routes::{Outside, Routes};

pub const SIGNATURE_HEADER: &str = "x-spark-signature";
const BODY_LIMIT: usize = 256 * 1024;
const WEBHOOK_NAME: &str = "herald";

/// Who the bot is on Webex, read once from `GET /people/me`.
#[derive(Debug, Clone)]
pub struct WebexMe {
    pub id: String,
    pub emails: Vec<String>,
    pub display_name: String,
}

/// The Webex connector's state: the engine, and the bot's own identity once read from the API.
#[derive(Clone)]
pub struct WebexState {
    pub bot: Bot,
    me: Arc<tokio::sync::OnceCell<WebexMe>>,
}

impl WebexState {
    pub fn new(bot: Bot) -> WebexState {
        WebexState {
            bot,
            me: Arc::default(),
        }
    }
}

impl std::ops::Deref for WebexState {
    type Target = Bot;

    fn deref(&self) -> &Bot {
        &self.bot
    }
}

impl axum::extract::FromRef<WebexState> for crate::state::AppState {
    fn from_ref(state: &WebexState) -> crate::state::AppState {
        state.bot.app.clone()
    }
}

/// Webex's webhook, in Webex's format: outside the OpenAPI document.
pub fn router(state: WebexState) -> Routes {
    Routes::new()
        .outside(
            Outside::PlatformWebhook,
            Method::POST,
            "/webex/webhook",
            webhook,
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// The webhook secret: the configured one, or one derived from the bot token.
pub fn webhook_secret(state: &WebexState) -> Option<String> {
    let webex = &state.settings.webex;
    let token = webex.bot_token.as_ref()?;
    Some(match &webex.webhook_secret {
        Some(secret) => secret.expose().to_string(),
        None => super::derived_secret("webex-webhook", token.expose()),
    })
}

pub fn signature(secret: &str, body: &[u8]) -> String {
    crate::crypto::hmac_sha1_hex(secret.as_bytes(), body)
}

fn api(state: &WebexState, path: &str) -> String {
    format!(
        "{}/{path}",
        state.settings.webex.api.as_str().trim_end_matches('/')
    )
}

async fn get_json(state: &WebexState, path: &str) -> Result<Value, String> {
    let token = state
        .settings
        .webex
        .bot_token
        .as_ref()
        .ok_or("no bot token")?;
    let response = state
        .http
        .get(api(state, path))
        .bearer_auth(token.expose())
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_err(|e| crate::outbox::channel::error_chain(&e))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = body["message"].as_str().unwrap_or("no message");
        return Err(format!("HTTP {}: {message}", status.as_u16()));
    }
    Ok(body)
}

/// The bot's identity, fetched on first need and kept.
async fn me(state: &WebexState) -> Result<WebexMe, String> {
    state
        .me
        .get_or_try_init(|| async {
            let me = get_json(state, "people/me").await?;
            Ok::<_, String>(WebexMe {
                id: me["id"].as_str().unwrap_or_default().to_string(),
                emails: me["emails"]
                    .as_array()
                    .map(|list| {
                        list.iter()
                            .filter_map(|e| e.as_str().map(str::to_lowercase))
                            .collect()
                    })
                    .unwrap_or_default(),
                display_name: me["displayName"].as_str().unwrap_or_default().to_string(),
            })
        })
        .await
        .cloned()
}

/// The engine's reply as Webex markdown: links as markdown links, buttons as commands to type.
pub fn markdown(reply: &Reply, lang: crate::bot::Lang) -> String {
    let mut out = reply.text.clone();
    for link in &reply.links {
        out.push_str(&format!("\n- [{}]({})", link.label, link.url));
    }
    if !reply.buttons.is_empty() {
        out.push_str(lang.pick("\n\n이렇게 답할 수 있어요:", "\n\nYou can answer:"));
        for button in &reply.buttons {
            out.push_str(&format!("\n- `{}`", button.send));
        }
    }
    out
}

async fn webhook(
    State(state): State<WebexState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Some(secret) = webhook_secret(&state) else {
        return Err(ApiError::NotFound(
            "Webex is not configured (HERALD_WEBEX_BOT_TOKEN)".into(),
        ));
    };
    let Some(given) = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(ApiError::Unauthorized("missing X-Spark-Signature".into()));
    };
    let expected = signature(&secret, &body);
    if !crate::crypto::constant_time_eq(given.trim().to_ascii_lowercase(), &expected) {
        return Err(ApiError::Forbidden("wrong X-Spark-Signature".into()));
    }
    let event: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not a Webex webhook event: {e}")))?;
    if event["resource"] != "messages" || event["event"] != "created" {
        return Ok(Json(json!({"ignored": "not a new message"})));
    }
    let data = &event["data"];
    let (Some(message_id), Some(room_id)) = (data["id"].as_str(), data["roomId"].as_str()) else {
        return Err(ApiError::BadRequest(
            "data.id and data.roomId are required".into(),
        ));
    };
    let person_email = data["personEmail"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    let person_id = data["personId"].as_str().unwrap_or_default();
    let unavailable = |error: String| {
        tracing::warn!(%error, "Webex message could not be handled");
        ApiError::Unavailable("Webex could not be reached; try again".into())
    };
    let me = me(&state).await.map_err(unavailable)?;
    if person_id == me.id || me.emails.contains(&person_email) {
        return Ok(Json(json!({"ignored": "the bot's own message"})));
    }
    if already_answered(&state, "webex", message_id).await? {
        return Ok(Json(json!({"ignored": "already answered"})));
    }
    let message = get_json(&state, &format!("messages/{message_id}"))
        .await
        .map_err(unavailable)?;
    let mut text = bounded(message["text"].as_str().unwrap_or_default()).trim();
    let group = message["roomType"] == "group" || data["roomType"] == "group";
    if group
        && !me.display_name.is_empty()
        && let Some(rest) = text.strip_prefix(me.display_name.as_str())
    {
        text = rest.trim_start();
    }
    // A person is reached in their 1:1 space by e-mail; a group space by its room id.
    let address = if group || person_email.is_empty() {
        room_id.to_string()
    } else {
        person_email.clone()
    };
    let answer = crate::bot::converse(
        &state,
        Incoming {
            channel: "webex",
            address: &address,
            nick_name: &person_email,
            text,
        },
    )
    .await?;
    queue_replies(
        &state,
        Some(("webex", message_id)),
        vec![reply_delivery(
            "webex",
            room_id,
            answer.contact.id,
            json!({"markdown": markdown(&answer.reply, answer.lang)}),
        )],
    )
    .await?;
    Ok(Json(json!({})))
}

/// Registers (or repairs) herald's webhook at start, retrying with back-off until it works.
pub async fn run(state: WebexState, shutdown: CancellationToken) {
    let Some(secret) = webhook_secret(&state) else {
        return;
    };
    if !super::is_public_url(&state.public_url) {
        tracing::warn!(
            url = %state.public_url,
            "HERALD_PUBLIC_URL is not a public address: Webex will not be able to reach the webhook"
        );
    }
    let target = format!(
        "{}/webex/webhook",
        state.public_url.as_str().trim_end_matches('/')
    );
    let mut pause = Duration::from_secs(1);
    loop {
        match register(&state, &target, &secret).await {
            Ok(what) => {
                tracing::info!(%target, "Webex webhook {what}");
                return;
            }
            Err(error) => tracing::warn!(%error, "Webex webhook registration failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => return,
        }
        pause = (pause * 2).min(Duration::from_secs(300));
    }
}

async fn register(state: &WebexState, target: &str, secret: &str) -> Result<&'static str, String> {
    let token = state
        .settings
        .webex
        .bot_token
        .as_ref()
        .ok_or("no bot token")?;
    me(state).await?;
    let list = get_json(state, "webhooks?max=100").await?;
    let existing = list["items"].as_array().and_then(|items| {
        items.iter().find(|w| {
            w["targetUrl"] == target && w["resource"] == "messages" && w["event"] == "created"
        })
    });
    let (request, what) = match existing {
        Some(hook) => {
            let id = hook["id"].as_str().unwrap_or_default();
            (
                state
                    .http
                    .put(api(state, &format!("webhooks/{id}")))
                    .json(&json!({"name": WEBHOOK_NAME, "targetUrl": target, "secret": secret, "status": "active"})),
                "updated",
            )
        }
        None => (
            state.http.post(api(state, "webhooks")).json(&json!({
                "name": WEBHOOK_NAME,
                "targetUrl": target,
                "resource": "messages",
                "event": "created",
                "secret": secret,
            })),
            "created",
        ),
    };
    let response = request
        .bearer_auth(token.expose())
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_err(|e| crate::outbox::channel::error_chain(&e))?;
    if response.status().is_success() {
        Ok(what)
    } else {
        Err(format!("HTTP {}", response.status().as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha1_hex_of_the_raw_body() {
        // RFC 2202 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }
}

//! Telegram, inbound. Updates arrive either at `POST /telegram/webhook` (checked against the
//! `X-Telegram-Bot-Api-Secret-Token` header) when `HERALD_PUBLIC_URL` is a public address —
//! herald calls `setWebhook` with that URL and secret at start — or, behind NAT or on a laptop,
//! by `getUpdates` long polling (after `deleteWebhook`, since Telegram refuses to poll while a
//! webhook is set). Both paths share [`handle_update`].
//!
//! Text messages and inline-keyboard presses (`callback_query`, acknowledged with
//! `answerCallbackQuery`) go to the bot engine; its answer is queued as a `sendMessage` with an
//! inline keyboard (`callback_data` ≤ 64 bytes: longer commands are sent as `#n`). An update is
//! answered once: its `update_id` is recorded with the queued answer.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::bot::Bot;
use crate::bot::deliver::{already_answered, queue_replies, reply_delivery};
use crate::bot::{Incoming, Reply, short_payload};
use crate::channels::telegram::method_url;
use crate::connectors::bounded;
use crate::http::error::ApiError;
use crate::http::routes::{Outside, Routes};
use crate::notify::render::escape_html;
use crate::store::StoreError;
use crate::text::ellipsize_chars;

pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";
const TEXT_MAX_CHARS: usize = 4000;
const BODY_LIMIT: usize = 1024 * 1024;
/// Seconds a `getUpdates` call waits for an update.
const POLL_TIMEOUT_SECS: u64 = 25;
const ALLOWED_UPDATES: [&str; 2] = ["message", "callback_query"];

/// Telegram's webhook, in the Bot API's format: outside the OpenAPI document.
pub fn router(state: Bot) -> Routes {
    Routes::new()
        .outside(
            Outside::PlatformWebhook,
            Method::POST,
            "/telegram/webhook",
            webhook,
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// The secret Telegram must present: the configured one, or one derived from the bot token.
pub fn webhook_secret(state: &Bot) -> Option<String> {
    let telegram = &state.settings.telegram;
    let token = telegram.bot_token.as_ref()?;
    Some(match &telegram.webhook_secret {
        Some(secret) => secret.expose().to_string(),
        None => super::derived_secret("telegram-webhook", token.expose()),
    })
}

async fn webhook(
    State(state): State<Bot>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Some(expected) = webhook_secret(&state) else {
        return Err(ApiError::NotFound(
            "Telegram is not configured (HERALD_TELEGRAM_BOT_TOKEN)".into(),
        ));
    };
    let Some(given) = headers.get(SECRET_HEADER) else {
        return Err(ApiError::Unauthorized(
            "missing X-Telegram-Bot-Api-Secret-Token".into(),
        ));
    };
    if !crate::crypto::constant_time_eq(given.as_bytes(), &expected) {
        return Err(ApiError::Forbidden(
            "wrong X-Telegram-Bot-Api-Secret-Token".into(),
        ));
    }
    let update: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not a Telegram Update: {e}")))?;
    if update.get("update_id").and_then(Value::as_i64).is_none() {
        return Err(ApiError::BadRequest("update_id is required".into()));
    }
    handle_update(&state, &update).await.map_err(|error| {
        tracing::error!(%error, "Telegram update could not be handled");
        // Telegram redelivers on a non-2xx answer.
        ApiError::Unavailable("try again".into())
    })?;
    Ok(Json(json!({})))
}

/// The engine's reply as a `sendMessage` payload (HTML), with an inline keyboard of its buttons
/// and links.
pub fn send_message_payload(reply: &Reply) -> Value {
    let text = escape_html(&ellipsize_chars(&reply.text, TEXT_MAX_CHARS));
    let mut rows: Vec<Vec<Value>> = Vec::new();
    for (i, button) in reply.buttons.iter().enumerate() {
        let key = json!({"text": ellipsize_chars(&button.label, 40), "callback_data": short_payload(i, button)});
        match rows.last_mut() {
            Some(row) if row.len() < 2 && button.label.chars().count() <= 16 => row.push(key),
            _ => rows.push(vec![key]),
        }
    }
    for link in &reply.links {
        rows.push(vec![
            json!({"text": ellipsize_chars(&link.label, 40), "url": link.url}),
        ]);
    }
    let mut payload =
        json!({"text": if text.is_empty() { "…".to_string() } else { text }, "parse_mode": "HTML"});
    if !rows.is_empty() {
        payload["reply_markup"] = json!({"inline_keyboard": rows});
    }
    payload
}

fn display_name(user: &Value) -> String {
    let first = user["first_name"].as_str().unwrap_or_default();
    let last = user["last_name"].as_str().unwrap_or_default();
    let name = format!("{first} {last}").trim().to_string();
    if name.is_empty() {
        user["username"].as_str().unwrap_or_default().to_string()
    } else {
        name
    }
}

/// Handles one update, from the webhook or from polling. Errors are storage errors only (the
/// update should be tried again); anything wrong with the update itself is ignored or answered.
pub async fn handle_update(state: &Bot, update: &Value) -> Result<(), StoreError> {
    let Some(update_id) = update.get("update_id").and_then(Value::as_i64) else {
        return Ok(());
    };
    let update_key = update_id.to_string();
    if already_answered(state, "telegram", &update_key).await? {
        return Ok(());
    }
    let (chat_id, from, text) = if let Some(message) = update.get("message") {
        let Some(chat_id) = message.pointer("/chat/id").and_then(Value::as_i64) else {
            return Ok(());
        };
        if message.pointer("/from/is_bot").and_then(Value::as_bool) == Some(true) {
            return Ok(());
        }
        let text = match message.get("text").and_then(Value::as_str) {
            Some(text) => bounded(text).to_string(),
            // A sticker, photo, voice note…: the engine's help answers it.
            None => String::new(),
        };
        (
            chat_id,
            message.get("from").cloned().unwrap_or(Value::Null),
            text,
        )
    } else if let Some(query) = update.get("callback_query") {
        answer_callback_query(state, query);
        let chat_id = query
            .pointer("/message/chat/id")
            .or_else(|| query.pointer("/from/id"))
            .and_then(Value::as_i64);
        let Some(chat_id) = chat_id else {
            return Ok(());
        };
        let data = query
            .get("data")
            .and_then(Value::as_str)
            .unwrap_or_default();
        (
            chat_id,
            query.get("from").cloned().unwrap_or(Value::Null),
            bounded(data).to_string(),
        )
    } else {
        // Edits, joins, polls…: nothing to answer.
        return Ok(());
    };
    let address = chat_id.to_string();
    let answer = crate::bot::converse(
        state,
        Incoming {
            channel: "telegram",
            address: &address,
            nick_name: &display_name(&from),
            text: &text,
        },
    )
    .await?;
    queue_replies(
        state,
        Some(("telegram", &update_key)),
        vec![reply_delivery(
            "telegram",
            &address,
            answer.contact.id,
            send_message_payload(&answer.reply),
        )],
    )
    .await?;
    Ok(())
}

/// Stops the client's spinner on the pressed button; best effort, not queued (it is only
/// useful within seconds).
fn answer_callback_query(state: &Bot, query: &Value) {
    let (Some(token), Some(id)) = (
        state.settings.telegram.bot_token.clone(),
        query.get("id").and_then(Value::as_str).map(str::to_string),
    ) else {
        return;
    };
    let url = method_url(&state.settings.telegram.api, &token, "answerCallbackQuery");
    let http = state.http.clone();
    tokio::spawn(async move {
        let sent = http
            .post(url)
            .json(&json!({"callback_query_id": id}))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        if let Err(error) = sent {
            tracing::debug!(%error, "answerCallbackQuery failed");
        }
    });
}

/// What Telegram answered to a Bot API call.
async fn call(state: &Bot, method: &str, body: Value, timeout: Duration) -> Result<Value, String> {
    let Some(token) = &state.settings.telegram.bot_token else {
        return Err("no bot token".into());
    };
    let response = state
        .http
        .post(method_url(&state.settings.telegram.api, token, method))
        .json(&body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| crate::outbox::channel::error_chain(&e))?;
    let status = response.status().as_u16();
    let answer: Value = response.json().await.map_err(|e| e.to_string())?;
    if answer["ok"] == true {
        Ok(answer["result"].clone())
    } else {
        let description = answer["description"].as_str().unwrap_or("no description");
        Err(format!("HTTP {status}: {description}"))
    }
}

/// Connects the bot at start: `setWebhook` when herald is reachable from the internet, else
/// long polling. Runs until `shutdown`.
pub async fn run(state: Bot, shutdown: CancellationToken) {
    let Some(secret) = webhook_secret(&state) else {
        return;
    };
    if super::is_public_url(&state.public_url) {
        let url = format!(
            "{}/telegram/webhook",
            state.public_url.as_str().trim_end_matches('/')
        );
        let mut pause = Duration::from_secs(1);
        loop {
            let body =
                json!({"url": url, "secret_token": secret, "allowed_updates": ALLOWED_UPDATES});
            match call(&state, "setWebhook", body, Duration::from_secs(30)).await {
                Ok(_) => {
                    tracing::info!(%url, "Telegram webhook set");
                    return;
                }
                Err(error) => tracing::warn!(%error, "Telegram setWebhook failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => return,
            }
            pause = (pause * 2).min(Duration::from_secs(300));
        }
    }
    tracing::info!(
        "HERALD_PUBLIC_URL is not a public address: reading Telegram updates by long polling"
    );
    poll(state, shutdown).await;
}

async fn poll(state: Bot, shutdown: CancellationToken) {
    let mut offset: i64 = 0;
    let mut pause = Duration::from_secs(1);
    let mut webhook_deleted = false;
    loop {
        if !webhook_deleted {
            match call(&state, "deleteWebhook", json!({}), Duration::from_secs(30)).await {
                Ok(_) => webhook_deleted = true,
                Err(error) => tracing::warn!(%error, "Telegram deleteWebhook failed"),
            }
        }
        let body = json!({"offset": offset, "timeout": POLL_TIMEOUT_SECS, "allowed_updates": ALLOWED_UPDATES});
        let polled = tokio::select! {
            polled = call(&state, "getUpdates", body, Duration::from_secs(POLL_TIMEOUT_SECS + 10)) => polled,
            _ = shutdown.cancelled() => return,
        };
        let failure = match polled {
            Ok(Value::Array(updates)) => {
                let mut failed = None;
                for update in &updates {
                    if let Err(error) = handle_update(&state, update).await {
                        failed = Some(error.to_string());
                        break;
                    }
                    if let Some(id) = update.get("update_id").and_then(Value::as_i64) {
                        offset = offset.max(id + 1);
                    }
                }
                failed
            }
            Ok(other) => Some(format!("unexpected getUpdates result {other}")),
            Err(error) => {
                if error.contains("Conflict") && error.contains("webhook") {
                    webhook_deleted = false;
                }
                Some(error)
            }
        };
        match failure {
            None => pause = Duration::from_secs(1),
            Some(error) => {
                tracing::warn!(%error, "Telegram polling failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.cancelled() => return,
                }
                pause = (pause * 2).min(Duration::from_secs(60));
            }
        }
    }
}

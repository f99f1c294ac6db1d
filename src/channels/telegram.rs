//! Telegram Bot API `sendMessage`, paced the way Telegram asks: about one message per second to
//! one chat and about thirty per second overall (both settings). 429 answers carry
//! `parameters.retry_after`, which the queue obeys.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{Secret, TelegramSettings};
use crate::outbox::channel::{HttpAnswer, OutgoingMessage, send};
use crate::outbox::{Attempt, Channel, Verdict};

pub struct TelegramChannel {
    http: reqwest::Client,
    send_url: String,
    overall: DefaultDirectRateLimiter,
    per_chat: DefaultKeyedRateLimiter<String>,
    per_chat_interval: Duration,
}

/// The part of a Bot API answer herald reads.
#[derive(Debug, Deserialize)]
struct BotApiAnswer {
    ok: bool,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<ResponseParameters>,
}

#[derive(Debug, Deserialize)]
struct ResponseParameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

/// The URL of one Bot API method.
pub fn method_url(api: &url::Url, token: &Secret, method: &str) -> String {
    format!(
        "{}/bot{}/{method}",
        api.as_str().trim_end_matches('/'),
        token.expose()
    )
}

fn quota(per_second: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
}

impl TelegramChannel {
    /// `None` when no bot token is configured: Telegram is then disabled.
    pub fn new(http: reqwest::Client, settings: &TelegramSettings) -> Option<Arc<TelegramChannel>> {
        let token = settings.bot_token.as_ref()?;
        Some(Arc::new(TelegramChannel {
            http,
            send_url: method_url(&settings.api, token, "sendMessage"),
            overall: RateLimiter::direct(quota(settings.rate_per_second)),
            // No burst per chat: Telegram counts messages to one chat per second.
            per_chat: RateLimiter::keyed(
                Quota::with_period(Duration::from_secs(1) / settings.chat_rate_per_second.max(1))
                    .unwrap_or_else(|| quota(1))
                    .allow_burst(NonZeroU32::MIN),
            ),
            per_chat_interval: Duration::from_millis(
                1000 / u64::from(settings.chat_rate_per_second.max(1)),
            ),
        }))
    }

    async fn send_message(&self, chat: &str, payload: &Value) -> Attempt {
        let Some(text) = payload.get("text").and_then(Value::as_str) else {
            return Attempt::failed(Verdict::Permanent, None, None, "payload has no text");
        };
        // Numeric chat ids go as numbers; `@channel` names as strings.
        let chat_id = match chat.parse::<i64>() {
            Ok(id) => json!(id),
            Err(_) => json!(chat),
        };
        let mut body = json!({
            "chat_id": chat_id,
            "text": text,
            "link_preview_options": {"is_disabled": true},
        });
        for key in ["parse_mode", "reply_markup"] {
            if let Some(value) = payload.get(key) {
                body[key] = value.clone();
            }
        }
        let HttpAnswer {
            status,
            retry_after,
            text,
        } = match send(self.http.post(&self.send_url).json(&body)).await {
            Ok(answer) => answer,
            Err(attempt) => return attempt,
        };
        let answer: Option<BotApiAnswer> = serde_json::from_str(&text).ok();
        let description = answer
            .as_ref()
            .and_then(|a| a.description.clone())
            .unwrap_or_else(|| format!("HTTP {status}"));
        match (status, answer) {
            (200, Some(answer)) if answer.ok => Attempt::delivered(Some(status), Some(text)),
            (429, answer) => {
                let after = answer
                    .and_then(|a| a.parameters)
                    .and_then(|p| p.retry_after)
                    .map(Duration::from_secs)
                    .or(retry_after)
                    .unwrap_or(Duration::from_secs(1));
                Attempt::failed(
                    Verdict::Throttled { after },
                    Some(status),
                    Some(text),
                    description,
                )
            }
            // "Forbidden: bot was blocked by the user", "chat not found": nobody to send to.
            (403, _) => Attempt::failed(Verdict::Gone, Some(status), Some(text), description),
            (400, _) if description.contains("chat not found") => {
                Attempt::failed(Verdict::Gone, Some(status), Some(text), description)
            }
            (400, _) => Attempt::failed(Verdict::Permanent, Some(status), Some(text), description),
            _ => Attempt::failed(
                Verdict::Retry { after: retry_after },
                Some(status),
                Some(text),
                description,
            ),
        }
    }
}

impl Channel for TelegramChannel {
    fn name(&self) -> &'static str {
        "telegram"
    }

    fn pace<'a>(&'a self, destination: &'a str) -> BoxFuture<'a, Option<Duration>> {
        Box::pin(async move {
            if self.per_chat.check_key(&destination.to_string()).is_err() {
                return Some(self.per_chat_interval);
            }
            if self.per_chat.len() > 100_000 {
                self.per_chat.retain_recent();
            }
            self.overall.until_ready().await;
            None
        })
    }

    fn send<'a>(&'a self, message: OutgoingMessage<'a>) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            match serde_json::from_str::<Value>(message.payload) {
                Ok(payload) => self.send_message(message.destination, &payload).await,
                Err(e) => Attempt::failed(
                    Verdict::Permanent,
                    None,
                    None,
                    format!("stored payload is not JSON: {e}"),
                ),
            }
        })
    }
}

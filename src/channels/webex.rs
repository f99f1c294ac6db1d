//! Webex, outbound: `POST {HERALD_WEBEX_API}/messages` as the bot. A destination with an `@` is a
//! person's e-mail (`toPersonEmail`), anything else a room id (`roomId`). Payloads carry
//! `markdown` (herald's notifications and bot answers) or `text`, at most 7439 bytes each.
//! 429 answers carry `Retry-After`, which the queue obeys.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use crate::config::{Secret, WebexSettings};
use crate::outbox::channel::{HttpAnswer, OutgoingMessage, send};
use crate::outbox::{Attempt, Channel, Verdict};
use crate::text::ellipsize_bytes;

/// Webex refuses `text` or `markdown` longer than this many bytes.
pub const WEBEX_MAX_BYTES: usize = 7439;

pub struct WebexChannel {
    http: reqwest::Client,
    messages_url: String,
    token: Secret,
}

/// The JSON body of `POST /messages` for a destination and a stored payload.
pub fn message_body(destination: &str, payload: &Value) -> Option<Value> {
    let mut body = if destination.contains('@') {
        json!({"toPersonEmail": destination})
    } else {
        json!({"roomId": destination})
    };
    let mut any = false;
    for key in ["markdown", "text"] {
        if let Some(value) = payload.get(key).and_then(Value::as_str) {
            body[key] = json!(ellipsize_bytes(value, WEBEX_MAX_BYTES));
            any = true;
        }
    }
    any.then_some(body)
}

impl WebexChannel {
    pub fn new(http: reqwest::Client, settings: &WebexSettings) -> Option<Arc<WebexChannel>> {
        let token = settings.bot_token.clone()?;
        Some(Arc::new(WebexChannel {
            http,
            messages_url: format!("{}/messages", settings.api.as_str().trim_end_matches('/')),
            token,
        }))
    }

    async fn deliver(&self, message: OutgoingMessage<'_>) -> Attempt {
        let payload: Value = serde_json::from_str(message.payload).unwrap_or(Value::Null);
        let Some(body) = message_body(message.destination, &payload) else {
            return Attempt::failed(
                Verdict::Permanent,
                None,
                None,
                "payload has no markdown or text",
            );
        };
        let HttpAnswer {
            status,
            retry_after,
            text,
        } = match send(
            self.http
                .post(&self.messages_url)
                .bearer_auth(self.token.expose())
                .json(&body),
        )
        .await
        {
            Ok(answer) => answer,
            Err(attempt) => return attempt,
        };
        let description = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("HTTP {status}"));
        match status {
            200..=299 => Attempt::delivered(Some(status), Some(text)),
            429 => Attempt::failed(
                Verdict::Throttled {
                    after: retry_after.unwrap_or(Duration::from_secs(1)),
                },
                Some(status),
                Some(text),
                description,
            ),
            // The room is gone or the bot was removed from it.
            404 | 410 => Attempt::failed(Verdict::Gone, Some(status), Some(text), description),
            400 | 413 => Attempt::failed(Verdict::Permanent, Some(status), Some(text), description),
            _ => Attempt::failed(
                Verdict::Retry { after: retry_after },
                Some(status),
                Some(text),
                description,
            ),
        }
    }
}

impl Channel for WebexChannel {
    fn name(&self) -> &'static str {
        "webex"
    }

    fn send<'a>(&'a self, message: OutgoingMessage<'a>) -> BoxFuture<'a, Attempt> {
        Box::pin(self.deliver(message))
    }
}

//! A fake Telegram Bot API: `POST /bot<token>/sendMessage` answering exactly as Telegram does —
//! `{"ok":true,"result":{message}}`, or `{"ok":false,"error_code":…,"description":…}` with
//! `parameters.retry_after` on 429 — with scripted failures; and the bot side of updates:
//! `getUpdates` long polling over updates a test queues with [`FakeTelegram::push_update`]
//! (refused with 409 while a webhook is set, as Telegram does), `setWebhook`, `deleteWebhook`
//! and `answerCallbackQuery`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// What the fake does with the next request.
#[derive(Debug, Clone)]
pub enum Behaviour {
    Ok,
    TooManyRequests {
        retry_after: u64,
    },
    ServerError,
    Forbidden,
    /// Never answers within `for` (herald's timeout should fire first).
    Hang {
        r#for: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct Received {
    pub chat_id: Value,
    pub text: String,
    pub parse_mode: Option<String>,
    pub reply_markup: Option<Value>,
    pub at: std::time::Instant,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Behaviour>,
    delivered: Vec<Received>,
    requests: usize,
    updates: Vec<Value>,
    next_update_id: i64,
    arrived: Arc<tokio::sync::Notify>,
    webhook: Option<(String, String)>,
    answered_callbacks: Vec<String>,
}

#[derive(Clone)]
pub struct FakeTelegram {
    pub token: String,
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
    always: Arc<Mutex<Option<Behaviour>>>,
}

impl FakeTelegram {
    pub async fn start() -> FakeTelegram {
        let token = "123456:TEST-token".to_string();
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let always: Arc<Mutex<Option<Behaviour>>> = Arc::default();
        let router = axum::Router::new()
            .route("/{bot}/{method}", post(handle))
            .with_state((token.clone(), inner.clone(), always.clone()));
        let address = super::serve(router).await;
        FakeTelegram {
            token,
            base_url: format!("http://{address}"),
            inner,
            always,
        }
    }

    /// Queues behaviours for the next requests, in order; afterwards it answers normally.
    pub fn script(&self, behaviours: impl IntoIterator<Item = Behaviour>) {
        self.inner.lock().expect("lock").script.extend(behaviours);
    }

    /// Answers every request this way until cleared with `None`.
    pub fn set_always(&self, behaviour: Option<Behaviour>) {
        *self.always.lock().expect("lock") = behaviour;
    }

    /// Messages Telegram accepted (answered `ok: true`).
    pub fn delivered(&self) -> Vec<Received> {
        self.inner.lock().expect("lock").delivered.clone()
    }

    pub fn delivered_count(&self) -> usize {
        self.inner.lock().expect("lock").delivered.len()
    }

    pub fn requests(&self) -> usize {
        self.inner.lock().expect("lock").requests
    }

    /// Queues an update for `getUpdates`, giving it the next `update_id`; returns the update.
    pub fn push_update(&self, mut update: Value) -> Value {
        let mut inner = self.inner.lock().expect("lock");
        inner.next_update_id += 1;
        update["update_id"] = json!(1000 + inner.next_update_id);
        inner.updates.push(update.clone());
        inner.arrived.notify_waiters();
        update
    }

    /// A text message from a private chat, as Telegram sends it.
    pub fn text_update(chat_id: i64, text: &str) -> Value {
        json!({
            "message": {
                "message_id": 1,
                "from": {"id": chat_id, "is_bot": false, "first_name": "Ann", "username": "ann", "language_code": "ko"},
                "chat": {"id": chat_id, "first_name": "Ann", "type": "private"},
                "date": chrono::Utc::now().timestamp(),
                "text": text,
            }
        })
    }

    /// A press on an inline keyboard button.
    pub fn callback_update(chat_id: i64, query_id: &str, data: &str) -> Value {
        json!({
            "callback_query": {
                "id": query_id,
                "from": {"id": chat_id, "is_bot": false, "first_name": "Ann"},
                "message": {"message_id": 2, "chat": {"id": chat_id, "type": "private"}, "date": chrono::Utc::now().timestamp(), "text": "…"},
                "chat_instance": "-1",
                "data": data,
            }
        })
    }

    /// The webhook herald set: (url, secret_token).
    pub fn webhook(&self) -> Option<(String, String)> {
        self.inner.lock().expect("lock").webhook.clone()
    }

    pub fn answered_callbacks(&self) -> Vec<String> {
        self.inner.lock().expect("lock").answered_callbacks.clone()
    }
}

async fn bot_side(inner: &Arc<Mutex<Inner>>, method: &str, body: &Value) -> Option<Response> {
    let ok = |result: Value| Json(json!({"ok": true, "result": result})).into_response();
    match method {
        "setWebhook" => {
            let url = body["url"].as_str().unwrap_or_default().to_string();
            let secret = body["secret_token"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let valid = secret.len() <= 256
                && secret
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Some(error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request: secret token contains unallowed characters",
                    None,
                ));
            }
            let mut inner = inner.lock().expect("lock");
            inner.webhook = (!url.is_empty()).then_some((url, secret));
            Some(ok(json!(true)))
        }
        "deleteWebhook" => {
            inner.lock().expect("lock").webhook = None;
            Some(ok(json!(true)))
        }
        "answerCallbackQuery" => {
            let id = body["callback_query_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            inner.lock().expect("lock").answered_callbacks.push(id);
            Some(ok(json!(true)))
        }
        "getUpdates" => {
            let offset = body["offset"].as_i64().unwrap_or(0);
            let timeout = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0).min(50));
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let arrived = {
                    let mut inner = inner.lock().expect("lock");
                    if inner.webhook.is_some() {
                        return Some(error(
                            StatusCode::CONFLICT,
                            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
                            None,
                        ));
                    }
                    // Asking from `offset` confirms every earlier update.
                    inner
                        .updates
                        .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
                    if !inner.updates.is_empty() || tokio::time::Instant::now() >= deadline {
                        return Some(ok(Value::Array(inner.updates.clone())));
                    }
                    inner.arrived.clone()
                };
                // Re-checked every 50 ms too: a notification between unlock and wait is missed.
                let slice = (tokio::time::Instant::now() + Duration::from_millis(50)).min(deadline);
                let _ = tokio::time::timeout_at(slice, arrived.notified()).await;
            }
        }
        _ => None,
    }
}

type FakeState = (String, Arc<Mutex<Inner>>, Arc<Mutex<Option<Behaviour>>>);

fn error(status: StatusCode, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({"ok": false, "error_code": status.as_u16(), "description": description});
    if let Some(parameters) = parameters {
        body["parameters"] = parameters;
    }
    (status, Json(body)).into_response()
}

async fn handle(
    State((token, inner, always)): State<FakeState>,
    Path((bot, method)): Path<(String, String)>,
    body: Option<Json<Value>>,
) -> Response {
    if bot.strip_prefix("bot") != Some(token.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized", None);
    }
    if method != "sendMessage" {
        let body = body.map(|Json(b)| b).unwrap_or(Value::Null);
        return match bot_side(&inner, &method, &body).await {
            Some(response) => response,
            None => error(StatusCode::NOT_FOUND, "Not Found: method not found", None),
        };
    }
    let behaviour = {
        let mut inner = inner.lock().expect("lock");
        inner.requests += 1;
        let scripted = inner.script.pop_front();
        scripted
            .or_else(|| always.lock().expect("lock").clone())
            .unwrap_or(Behaviour::Ok)
    };
    let Some(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request: message text is empty",
            None,
        );
    };
    match behaviour {
        Behaviour::TooManyRequests { retry_after } => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too Many Requests: retry after {retry_after}"),
                Some(json!({"retry_after": retry_after})),
            );
        }
        Behaviour::ServerError => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
                None,
            );
        }
        Behaviour::Forbidden => {
            return error(
                StatusCode::FORBIDDEN,
                "Forbidden: bot was blocked by the user",
                None,
            );
        }
        Behaviour::Hang { r#for } => {
            tokio::time::sleep(r#for).await;
            return error(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout", None);
        }
        Behaviour::Ok => {}
    }
    let text = body.get("text").and_then(Value::as_str).unwrap_or_default();
    if text.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request: message text is empty",
            None,
        );
    }
    if text.chars().count() > 4096 {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request: message is too long",
            None,
        );
    }
    let chat_id = body.get("chat_id").cloned().unwrap_or(Value::Null);
    let received = Received {
        chat_id: chat_id.clone(),
        text: text.to_string(),
        parse_mode: body
            .get("parse_mode")
            .and_then(Value::as_str)
            .map(str::to_string),
        reply_markup: body.get("reply_markup").cloned(),
        at: std::time::Instant::now(),
    };
    let message_id = {
        let mut inner = inner.lock().expect("lock");
        inner.delivered.push(received);
        inner.delivered.len()
    };
    Json(json!({
        "ok": true,
        "result": {
            "message_id": message_id,
            "from": {"id": 123456, "is_bot": true, "first_name": "herald", "username": "herald_bot"},
            "chat": {"id": chat_id, "type": "private"},
            "date": chrono::Utc::now().timestamp(),
            "text": text,
        }
    }))
    .into_response()
}

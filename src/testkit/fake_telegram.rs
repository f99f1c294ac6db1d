//! A fake Telegram Bot API: `POST /bot<token>/sendMessage` answering exactly as Telegram does —
//! `{"ok":true,"result":{message}}`, or `{"ok":false,"error_code":…,"description":…}` with
//! `parameters.retry_after` on 429 — with scripted failures.

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
    pub at: std::time::Instant,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Behaviour>,
    delivered: Vec<Received>,
    requests: usize,
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
        return error(StatusCode::NOT_FOUND, "Not Found: method not found", None);
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

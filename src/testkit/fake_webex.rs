//! A fake Webex REST API (`/v1`): `people/me`, `webhooks` (list, create, update), `messages`
//! (read one, create), Bearer auth, Webex's error body (`{"message","errors":[{"description"}],
//! "trackingId"}`), the 7439-byte limit, and scripted 429 answers with `Retry-After`. A test
//! makes a person write with [`FakeWebex::person_writes`] and gets the webhook event to post,
//! signed like Webex signs it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{Value, json};

pub const TOKEN: &str = "test-webex-bot-token";
pub const BOT_ID: &str = "Y2lzY29zcGFyazovL3VzL1BFT1BMRS9ib3Q";
pub const BOT_EMAIL: &str = "herald@webex.bot";
pub const BOT_NAME: &str = "herald";

#[derive(Debug, Clone)]
pub struct Posted {
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    webhooks: Vec<Value>,
    messages: HashMap<String, Value>,
    posted: Vec<Posted>,
    throttle: VecDeque<u64>,
    reads: usize,
    next: u64,
}

#[derive(Clone)]
pub struct FakeWebex {
    /// Ends with `/v1`, like `https://webexapis.com/v1`.
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
}

type Shared = Arc<Mutex<Inner>>;

impl FakeWebex {
    pub async fn start() -> FakeWebex {
        let inner: Shared = Arc::default();
        let router = Router::new()
            .route("/v1/people/me", get(people_me))
            .route("/v1/webhooks", get(list_webhooks).post(create_webhook))
            .route("/v1/webhooks/{id}", put(update_webhook))
            .route("/v1/messages", axum::routing::post(create_message))
            .route("/v1/messages/{id}", get(read_message))
            .with_state(inner.clone());
        let address = super::serve(router).await;
        FakeWebex {
            base_url: format!("http://{address}/v1"),
            inner,
        }
    }

    /// A webhook that already exists on Webex (registered by an earlier run, say).
    pub fn add_webhook(&self, hook: Value) {
        self.inner.lock().expect("lock").webhooks.push(hook);
    }

    pub fn webhooks(&self) -> Vec<Value> {
        self.inner.lock().expect("lock").webhooks.clone()
    }

    /// Messages the bot created (accepted ones only).
    pub fn posted(&self) -> Vec<Posted> {
        self.inner.lock().expect("lock").posted.clone()
    }

    /// How many times a message was read.
    pub fn reads(&self) -> usize {
        self.inner.lock().expect("lock").reads
    }

    /// The next `POST /messages` answers 429 with `Retry-After: seconds`.
    pub fn throttle_next(&self, seconds: u64) {
        self.inner.lock().expect("lock").throttle.push_back(seconds);
    }

    /// Someone writes in a room; returns the webhook event Webex would post (unsigned body).
    /// In a group room the text starts with the bot's name, as Webex writes mentions.
    pub fn person_writes(&self, room_id: &str, room_type: &str, email: &str, text: &str) -> Value {
        let mut inner = self.inner.lock().expect("lock");
        inner.next += 1;
        let id = format!("msg-{}", inner.next);
        let person_id = format!("person-{email}");
        let text = if room_type == "group" {
            format!("{BOT_NAME} {text}")
        } else {
            text.to_string()
        };
        inner.messages.insert(
            id.clone(),
            json!({"id": id, "roomId": room_id, "roomType": room_type, "text": text,
                   "personId": person_id, "personEmail": email, "created": "2026-11-22T00:00:00.000Z"}),
        );
        let hook = inner.webhooks.first().cloned().unwrap_or(Value::Null);
        json!({
            "id": hook["id"], "name": hook["name"], "targetUrl": hook["targetUrl"],
            "resource": "messages", "event": "created", "orgId": "org", "createdBy": BOT_ID,
            "appId": "app", "ownedBy": "creator", "status": "active", "created": "2026-11-22T00:00:00.000Z",
            "actorId": person_id,
            "data": {"id": id, "roomId": room_id, "roomType": room_type, "personId": person_id,
                     "personEmail": email, "created": "2026-11-22T00:00:00.000Z"}
        })
    }

    /// The event for a message the bot itself wrote.
    pub fn bot_wrote(&self, room_id: &str) -> Value {
        json!({"resource": "messages", "event": "created",
               "data": {"id": "own-message", "roomId": room_id, "personId": BOT_ID, "personEmail": BOT_EMAIL}})
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"message": message, "errors": [{"description": message}], "trackingId": "ROUTER_TEST"})),
    )
        .into_response()
}

fn authorised(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

macro_rules! check_auth {
    ($headers:expr) => {
        if !authorised(&$headers) {
            return error(
                StatusCode::UNAUTHORIZED,
                "The request requires a valid access token set in the Authorization request header.",
            );
        }
    };
}

async fn people_me(headers: HeaderMap) -> Response {
    check_auth!(headers);
    Json(json!({"id": BOT_ID, "emails": [BOT_EMAIL], "displayName": BOT_NAME, "type": "bot"}))
        .into_response()
}

async fn list_webhooks(State(inner): State<Shared>, headers: HeaderMap) -> Response {
    check_auth!(headers);
    let items = inner.lock().expect("lock").webhooks.clone();
    Json(json!({"items": items})).into_response()
}

async fn create_webhook(
    State(inner): State<Shared>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    check_auth!(headers);
    let Some(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "Invalid JSON");
    };
    for field in ["name", "targetUrl", "resource", "event"] {
        if !body[field].is_string() {
            return error(StatusCode::BAD_REQUEST, &format!("{field} is required"));
        }
    }
    let mut inner = inner.lock().expect("lock");
    inner.next += 1;
    let mut hook = body.clone();
    hook["id"] = json!(format!("webhook-{}", inner.next));
    hook["status"] = json!("active");
    inner.webhooks.push(hook.clone());
    Json(hook).into_response()
}

async fn update_webhook(
    State(inner): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    check_auth!(headers);
    let Some(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "Invalid JSON");
    };
    let mut inner = inner.lock().expect("lock");
    let Some(hook) = inner.webhooks.iter_mut().find(|h| h["id"] == id) else {
        return error(
            StatusCode::NOT_FOUND,
            "The requested resource could not be found.",
        );
    };
    for field in ["name", "targetUrl", "secret", "status"] {
        if let Some(value) = body.get(field) {
            hook[field] = value.clone();
        }
    }
    Json(hook.clone()).into_response()
}

async fn read_message(
    State(inner): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    check_auth!(headers);
    let mut inner = inner.lock().expect("lock");
    inner.reads += 1;
    match inner.messages.get(&id) {
        Some(message) => Json(message.clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "The requested resource could not be found.",
        ),
    }
}

async fn create_message(
    State(inner): State<Shared>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    check_auth!(headers);
    let Some(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "Invalid JSON");
    };
    let mut inner = inner.lock().expect("lock");
    if let Some(seconds) = inner.throttle.pop_front() {
        let mut response = error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(seconds));
        return response;
    }
    let targets = ["roomId", "toPersonId", "toPersonEmail"]
        .iter()
        .filter(|k| body[**k].is_string())
        .count();
    if targets != 1 {
        return error(
            StatusCode::BAD_REQUEST,
            "Exactly one of roomId, toPersonId or toPersonEmail is required",
        );
    }
    let text_len = ["text", "markdown"]
        .iter()
        .filter_map(|k| body[*k].as_str())
        .map(str::len)
        .max();
    match text_len {
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "text, markdown or files is required",
            );
        }
        Some(len) if len > 7439 => {
            return error(
                StatusCode::BAD_REQUEST,
                "Message length exceeds the maximum of 7439 bytes",
            );
        }
        Some(_) => {}
    }
    inner.next += 1;
    inner.posted.push(Posted { body: body.clone() });
    let mut created = body;
    created["id"] = json!(format!("posted-{}", inner.next));
    Json(created).into_response()
}

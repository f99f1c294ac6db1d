//! A fake Kakao bot API: the Event API (`POST /v2/bots/{botId}/talk` with `KakaoAK` auth, at
//! most 100 distinct users, answering `{"taskId","status":"SUCCESS","timestamp"}`), its task
//! results (`GET /v1/tasks/{taskId}`: `ALL SUCCESS`, or `N FAIL` with
//! `userKeyResolvingFailCount` for users it does not know, each named in `fail.list` as
//! `{"id","type","errorMsg":{"code","msg"}}` — the entry's shape is herald's reading of the
//! platform, which `channels::kakao` also accepts without the names), and one-time skill callback URLs
//! (`POST /callback/{token}`: usable once, answering `{"taskId","status","message","timestamp"}`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

pub const REST_KEY: &str = "test-kakao-rest-key";
pub const BOT_ID: &str = "5f0000000000000000000001";

/// One Event API message as Kakao received it.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub text: String,
    /// (type, id) of each user.
    pub users: Vec<(String, String)>,
}

#[derive(Default)]
struct Inner {
    events: Vec<Event>,
    tasks: HashMap<String, Value>,
    unknown_users: HashSet<String>,
    callbacks_issued: HashSet<String>,
    callbacks: Vec<(String, Value)>,
    next: u64,
}

#[derive(Clone)]
pub struct FakeKakao {
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
}

type Shared = Arc<Mutex<Inner>>;

impl FakeKakao {
    pub async fn start() -> FakeKakao {
        let inner: Shared = Arc::default();
        let router = Router::new()
            .route("/v2/bots/{bot}/talk", post(talk))
            .route("/v1/tasks/{task}", get(task))
            .route("/callback/{token}", post(callback))
            .with_state(inner.clone());
        let address = super::serve(router).await;
        FakeKakao {
            base_url: format!("http://{address}"),
            inner,
        }
    }

    /// Settings that point herald's Kakao push at this fake.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HERALD_KAKAO_API", self.base_url.clone()),
            ("HERALD_KAKAO_BOT_ID", BOT_ID.to_string()),
            ("HERALD_KAKAO_REST_KEY", REST_KEY.to_string()),
        ]
    }

    pub fn events(&self) -> Vec<Event> {
        self.inner.lock().expect("lock").events.clone()
    }

    /// Kakao no longer knows this user (left or blocked the channel).
    pub fn forget_user(&self, id: &str) {
        self.inner
            .lock()
            .expect("lock")
            .unknown_users
            .insert(id.to_string());
    }

    /// A fresh one-time callback URL, as Kakao puts in `userRequest.callbackUrl`.
    pub fn callback_url(&self) -> String {
        let mut inner = self.inner.lock().expect("lock");
        inner.next += 1;
        let token = format!("cb{}", inner.next);
        inner.callbacks_issued.insert(token.clone());
        format!("{}/callback/{token}", self.base_url)
    }

    /// Bodies posted to callback URLs, with their token.
    pub fn callbacks(&self) -> Vec<(String, Value)> {
        self.inner.lock().expect("lock").callbacks.clone()
    }
}

fn failure(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"status": "FAIL", "message": message}))).into_response()
}

async fn talk(
    State(inner): State<Shared>,
    Path(bot): Path<String>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if auth != format!("KakaoAK {REST_KEY}") {
        return failure(StatusCode::UNAUTHORIZED, "Invalid REST API key.");
    }
    if bot != BOT_ID {
        return failure(
            StatusCode::BAD_REQUEST,
            "Invalid bot ID. Check your Bot ID.",
        );
    }
    let Some(Json(body)) = body else {
        return failure(StatusCode::BAD_REQUEST, "Invalid JSON.");
    };
    let name = body.pointer("/event/name").and_then(Value::as_str);
    let users = body.get("user").and_then(Value::as_array);
    let (Some(name), Some(users)) = (name, users) else {
        return failure(StatusCode::BAD_REQUEST, "event.name and user are required.");
    };
    let users: Vec<(String, String)> = users
        .iter()
        .map(|u| {
            (
                u["type"].as_str().unwrap_or_default().to_string(),
                u["id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let distinct: HashSet<&String> = users.iter().map(|(_, id)| id).collect();
    if users.is_empty() || users.len() > 100 || distinct.len() != users.len() {
        return failure(
            StatusCode::BAD_REQUEST,
            "user must hold 1 to 100 distinct users.",
        );
    }
    if users.iter().any(|(kind, _)| {
        !matches!(
            kind.as_str(),
            "botUserKey" | "plusfriendUserKey" | "appUserId"
        )
    }) {
        return failure(StatusCode::BAD_REQUEST, "Invalid user type.");
    }
    let text = body
        .pointer("/event/data/text")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut inner = inner.lock().expect("lock");
    inner.next += 1;
    let task_id = format!("task-{}", inner.next);
    let unknown = users
        .iter()
        .filter(|(_, id)| inner.unknown_users.contains(id))
        .count();
    let result = if unknown == 0 {
        json!({"taskId": task_id, "status": "ALL SUCCESS", "allRequestCount": users.len(), "successCount": users.len(), "fail": {"count": 0, "list": []}})
    } else {
        let list: Vec<Value> = users
            .iter()
            .filter(|(_, id)| inner.unknown_users.contains(id))
            .map(|(kind, id)| json!({"id": id, "type": kind,
                "errorMsg": {"code": "USER_KEY_RESOLVING_FAIL", "msg": "user key resolving failed"}}))
            .collect();
        json!({"taskId": task_id, "status": format!("{unknown} FAIL"), "allRequestCount": users.len(),
               "successCount": users.len() - unknown, "userKeyResolvingFailCount": unknown, "fail": {"count": unknown, "list": list}})
    };
    inner.tasks.insert(task_id.clone(), result);
    if unknown < users.len() {
        let reached = users
            .into_iter()
            .filter(|(_, id)| !inner.unknown_users.contains(id))
            .collect();
        inner.events.push(Event {
            name: name.to_string(),
            text,
            users: reached,
        });
    }
    Json(json!({"taskId": task_id, "status": "SUCCESS", "timestamp": chrono::Utc::now().timestamp_millis()}))
        .into_response()
}

async fn task(State(inner): State<Shared>, Path(task): Path<String>) -> Response {
    match inner.lock().expect("lock").tasks.get(&task) {
        Some(result) => Json(result.clone()).into_response(),
        None => failure(StatusCode::NOT_FOUND, "Unknown task."),
    }
}

async fn callback(
    State(inner): State<Shared>,
    Path(token): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let mut inner = inner.lock().expect("lock");
    inner.next += 1;
    let answer = |status: &str, message: &str, task: u64| {
        Json(
            json!({"taskId": format!("cbtask-{task}"), "status": status, "message": message,
                    "timestamp": chrono::Utc::now().timestamp_millis()}),
        )
        .into_response()
    };
    let next = inner.next;
    if !inner.callbacks_issued.remove(&token) {
        return answer(
            "FAIL",
            "Invalid callback token. Check your callback token.",
            next,
        );
    }
    let Some(Json(body)) = body else {
        return answer("FAIL", "Invalid json response from bot-skill.", next);
    };
    if body["version"] != "2.0" {
        return answer("FAIL", "Invalid skill-json format.", next);
    }
    inner.callbacks.push((token, body));
    answer("SUCCESS", "", next)
}

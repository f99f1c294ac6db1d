//! KakaoTalk, outbound: notifications through the Kakao i Open Builder **Event API**, and the
//! final answers of slow skill requests posted to Kakao's one-time **callback URL**.
//!
//! Event API: `POST {HERALD_KAKAO_API}/v2/bots/{botId}/talk` with `Authorization: KakaoAK <REST
//! key>` and `{"event":{"name","data":{"text"}},"user":[{"type","id"}]}` (at most 100 users per
//! call; herald sends one user per delivery so that each recipient has its own retries and log).
//! `SUCCESS` only means Kakao accepted the task; the task result (`GET /v1/tasks/{taskId}`) is
//! then read to learn whether the user was reached: an unresolvable user key means the contact
//! is gone. Contacts from the legacy plus-friend API are addressed `plusfriend:<user_key>` and
//! sent as `plusfriendUserKey`; all others are `botUserKey`s.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use crate::config::{KakaoSettings, Secret};
use crate::ids::now_ms;
use crate::outbox::channel::{HttpAnswer, OutgoingMessage, send};
use crate::outbox::{Attempt, Channel, Verdict};

/// Address prefix of contacts that came through the legacy plus-friend auto-reply API.
pub const PLUSFRIEND_PREFIX: &str = "plusfriend:";
/// How often, and how far apart, a task result is read before the send counts as accepted.
const TASK_CHECKS: u32 = 3;
const TASK_CHECK_PAUSE: Duration = Duration::from_millis(300);

pub struct KakaoChannel {
    http: reqwest::Client,
    talk_url: String,
    tasks_url: String,
    rest_key: Secret,
    event_name: String,
}

/// The Event API's `user` entry for a contact address.
pub fn event_user(address: &str) -> Value {
    match address.strip_prefix(PLUSFRIEND_PREFIX) {
        Some(key) => json!({"type": "plusfriendUserKey", "id": key}),
        None => json!({"type": "botUserKey", "id": address}),
    }
}

impl KakaoChannel {
    /// `None` unless both the bot id and the REST key are set.
    pub fn new(http: reqwest::Client, settings: &KakaoSettings) -> Option<Arc<KakaoChannel>> {
        let bot_id = settings.bot_id.as_ref().filter(|b| !b.is_empty())?;
        let rest_key = settings.rest_key.clone()?;
        let base = settings.api.as_str().trim_end_matches('/');
        Some(Arc::new(KakaoChannel {
            http,
            talk_url: format!("{base}/v2/bots/{bot_id}/talk"),
            tasks_url: format!("{base}/v1/tasks"),
            rest_key,
            event_name: settings.event_name.clone(),
        }))
    }

    fn auth(&self) -> String {
        format!("KakaoAK {}", self.rest_key.expose())
    }

    async fn deliver(&self, message: OutgoingMessage<'_>) -> Attempt {
        let Some(text) = serde_json::from_str::<Value>(message.payload)
            .ok()
            .and_then(|p| p.get("text").and_then(Value::as_str).map(str::to_string))
        else {
            return Attempt::failed(Verdict::Permanent, None, None, "payload has no text");
        };
        let body = json!({
            "event": {"name": self.event_name, "data": {"text": text}},
            "user": [event_user(message.destination)],
        });
        let HttpAnswer {
            status,
            retry_after,
            text,
        } = match send(
            self.http
                .post(&self.talk_url)
                .header(reqwest::header::AUTHORIZATION, self.auth())
                .json(&body),
        )
        .await
        {
            Ok(answer) => answer,
            Err(attempt) => return attempt,
        };
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match status {
            200 if answer["status"] == "SUCCESS" => {}
            200 => {
                let why = answer["message"]
                    .as_str()
                    .unwrap_or("the task was not accepted");
                return Attempt::failed(
                    Verdict::Retry { after: None },
                    Some(status),
                    Some(text.clone()),
                    why,
                );
            }
            429 => {
                return Attempt::failed(
                    Verdict::Throttled {
                        after: retry_after.unwrap_or(Duration::from_secs(1)),
                    },
                    Some(status),
                    Some(text),
                    "Kakao is rate limiting",
                );
            }
            400..=499 if status != 408 => {
                return Attempt::failed(
                    Verdict::Permanent,
                    Some(status),
                    Some(text),
                    format!("HTTP {status}"),
                );
            }
            _ => {
                return Attempt::failed(
                    Verdict::Retry { after: retry_after },
                    Some(status),
                    Some(text),
                    format!("HTTP {status}"),
                );
            }
        }
        let Some(task_id) = answer["taskId"].as_str() else {
            return Attempt::delivered(Some(status), Some(text));
        };
        self.task_result(task_id, status, text).await
    }

    /// Reads the task result a few times; the send stands as accepted if Kakao has not
    /// finished by then.
    async fn task_result(&self, task_id: &str, status: u16, accepted: String) -> Attempt {
        for check in 0..TASK_CHECKS {
            if check > 0 {
                tokio::time::sleep(TASK_CHECK_PAUSE).await;
            }
            let Ok(response) = self
                .http
                .get(format!("{}/{task_id}", self.tasks_url))
                .header(reqwest::header::AUTHORIZATION, self.auth())
                .send()
                .await
            else {
                continue;
            };
            if !response.status().is_success() {
                continue;
            }
            let body = response.text().await.unwrap_or_default();
            let Ok(result) = serde_json::from_str::<Value>(&body) else {
                continue;
            };
            let task_status = result["status"].as_str().unwrap_or_default();
            if task_status == "ALL SUCCESS" {
                return Attempt::delivered(Some(status), Some(body));
            }
            if task_status.ends_with("FAIL") {
                if result["userKeyResolvingFailCount"].as_i64().unwrap_or(0) > 0 {
                    return Attempt::failed(
                        Verdict::Gone,
                        Some(status),
                        Some(body),
                        "Kakao does not know this user (blocked the channel or left)",
                    );
                }
                let why = result["fail"]["list"][0]["errorMsg"]["msg"]
                    .as_str()
                    .unwrap_or("Kakao could not deliver the event")
                    .to_string();
                return Attempt::failed(
                    Verdict::Retry { after: None },
                    Some(status),
                    Some(body),
                    why,
                );
            }
        }
        Attempt::delivered(Some(status), Some(accepted))
    }
}

impl Channel for KakaoChannel {
    fn name(&self) -> &'static str {
        "kakao"
    }

    fn send<'a>(&'a self, message: OutgoingMessage<'a>) -> BoxFuture<'a, Attempt> {
        Box::pin(self.deliver(message))
    }
}

/// The final answer to a skill request that was answered with `useCallback`: the destination is
/// Kakao's one-time callback URL, the payload `{"expires_at": <ms>, "body": <SkillResponse>}`.
/// The URL works once and for one minute, so an expired delivery is dropped, not retried.
pub struct KakaoCallbackChannel {
    http: reqwest::Client,
}

impl KakaoCallbackChannel {
    /// `http` must refuse private addresses unless they are allowed: the URL comes from the
    /// request body.
    pub fn new(http: reqwest::Client) -> Arc<KakaoCallbackChannel> {
        Arc::new(KakaoCallbackChannel { http })
    }

    async fn deliver(&self, message: OutgoingMessage<'_>) -> Attempt {
        let Ok(payload) = serde_json::from_str::<Value>(message.payload) else {
            return Attempt::failed(Verdict::Permanent, None, None, "payload is not JSON");
        };
        if payload["expires_at"].as_i64().unwrap_or(0) < now_ms() {
            return Attempt::failed(
                Verdict::Permanent,
                None,
                None,
                "the callback URL has expired",
            );
        }
        let HttpAnswer { status, text, .. } =
            match send(self.http.post(message.destination).json(&payload["body"])).await {
                Ok(answer) => answer,
                Err(attempt) => return attempt,
            };
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match (status, answer["status"].as_str()) {
            (200..=299, Some("SUCCESS")) | (200..=299, None) => {
                Attempt::delivered(Some(status), Some(text))
            }
            (_, Some("FAIL")) | (400..=499, _) => {
                let why = answer["message"]
                    .as_str()
                    .unwrap_or("Kakao refused the callback")
                    .to_string();
                Attempt::failed(Verdict::Permanent, Some(status), Some(text), why)
            }
            _ => Attempt::failed(
                Verdict::Retry {
                    after: Some(Duration::from_secs(1)),
                },
                Some(status),
                Some(text),
                format!("HTTP {status}"),
            ),
        }
    }
}

impl Channel for KakaoCallbackChannel {
    fn name(&self) -> &'static str {
        "kakao-callback"
    }

    fn send<'a>(&'a self, message: OutgoingMessage<'a>) -> BoxFuture<'a, Attempt> {
        Box::pin(self.deliver(message))
    }
}

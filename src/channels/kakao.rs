//! KakaoTalk, outbound: notifications through the Kakao i Open Builder **Event API**, and the
//! final answers of slow skill requests posted to Kakao's one-time **callback URL**.
//!
//! Event API: `POST {HERALD_KAKAO_API}/v2/bots/{botId}/talk` with `Authorization: KakaoAK <REST
//! key>` and
//! `{"event":{"name","data":{"text"}},"user":[{"type","id"}]}`, at most 100 users per call.
//! Each recipient is its own delivery (its own retries and log); deliveries of the same text that
//! reach the channel together — a push's fan-out to many Kakao contacts — share one call of up
//! to [`USERS_PER_CALL`] users (`channels::coalesce`), and each gets its own attempt back.
//! `SUCCESS` only means Kakao accepted the task; the task result (`GET /v1/tasks/{taskId}`) is
//! then read to learn whether each user was reached: a user listed in `fail.list` was not (an
//! unresolvable user key means the contact is gone, anything else is retried for that user
//! alone); when Kakao reports failures without naming the users, the others cannot be told
//! apart and are not sent twice: their attempts count as delivered, with the report as the
//! error. Contacts from the legacy plus-friend API are addressed `plusfriend:<user_key>` and
//! sent as `plusfriendUserKey`; all others are `botUserKey`s.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use crate::channels::coalesce::Coalescer;
use crate::config::{KakaoSettings, Secret};
use crate::ids::now_ms;
use crate::outbox::channel::{HttpAnswer, OutgoingMessage, send};
use crate::outbox::{Attempt, Channel, Verdict};

/// Address prefix of contacts that came through the legacy plus-friend auto-reply API.
pub const PLUSFRIEND_PREFIX: &str = "plusfriend:";
/// How often, and how far apart, a task result is read before the send counts as accepted.
const TASK_CHECKS: u32 = 3;
const TASK_CHECK_PAUSE: Duration = Duration::from_millis(300);
/// The Event API's limit of users per call.
pub const USERS_PER_CALL: usize = 100;
/// How long the first delivery of a text waits for others of the same text to join its call.
const GATHER_WINDOW: Duration = Duration::from_millis(15);

pub struct KakaoChannel {
    http: reqwest::Client,
    talk_url: String,
    tasks_url: String,
    rest_key: Secret,
    event_name: String,
    groups: Coalescer<Attempt>,
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
            groups: Coalescer::new(GATHER_WINDOW, USERS_PER_CALL),
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
        self.groups
            .send(
                &text,
                message.destination,
                |users| self.send_group(&text, users),
                || {
                    Attempt::failed(
                        Verdict::Retry { after: None },
                        None,
                        None,
                        "the Event API call for this delivery's group was abandoned",
                    )
                },
            )
            .await
    }

    /// One Event API call for `users` (contact addresses); one attempt per user, in order.
    async fn send_group(&self, text: &str, users: Vec<String>) -> Vec<Attempt> {
        let all = |attempt: Attempt| vec![attempt; users.len()];
        let body = json!({
            "event": {"name": self.event_name, "data": {"text": text}},
            "user": users.iter().map(|u| event_user(u)).collect::<Vec<_>>(),
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
            Err(attempt) => return all(attempt),
        };
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match status {
            200 if answer["status"] == "SUCCESS" => {}
            200 => {
                let why = answer["message"]
                    .as_str()
                    .unwrap_or("the task was not accepted");
                return all(Attempt::failed(
                    Verdict::Retry { after: None },
                    Some(status),
                    Some(text.clone()),
                    why,
                ));
            }
            429 => {
                return all(Attempt::failed(
                    Verdict::Throttled {
                        after: retry_after.unwrap_or(Duration::from_secs(1)),
                    },
                    Some(status),
                    Some(text),
                    "Kakao is rate limiting",
                ));
            }
            400..=499 if status != 408 => {
                return all(Attempt::failed(
                    Verdict::Permanent,
                    Some(status),
                    Some(text),
                    format!("HTTP {status}"),
                ));
            }
            _ => {
                return all(Attempt::failed(
                    Verdict::Retry { after: retry_after },
                    Some(status),
                    Some(text),
                    format!("HTTP {status}"),
                ));
            }
        }
        let Some(task_id) = answer["taskId"].as_str() else {
            return all(Attempt::delivered(Some(status), Some(text)));
        };
        self.task_result(task_id, status, text, &users).await
    }

    /// Reads the task result a few times; the send stands as accepted if Kakao has not
    /// finished by then. One attempt per user of the call, in order.
    async fn task_result(
        &self,
        task_id: &str,
        status: u16,
        accepted: String,
        users: &[String],
    ) -> Vec<Attempt> {
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
                return vec![Attempt::delivered(Some(status), Some(body)); users.len()];
            }
            if task_status.ends_with("FAIL") {
                return per_user(&result, &body, status, users);
            }
        }
        vec![Attempt::delivered(Some(status), Some(accepted)); users.len()]
    }
}

/// Each user's attempt from a task result that reports failures.
fn per_user(result: &Value, body: &str, status: u16, users: &[String]) -> Vec<Attempt> {
    let unresolved = result["userKeyResolvingFailCount"].as_i64().unwrap_or(0);
    let failed_count = result["fail"]["count"].as_i64().unwrap_or(0);
    let listed: Vec<&Value> = result["fail"]["list"]
        .as_array()
        .map(|list| list.iter().collect())
        .unwrap_or_default();
    let failure = |entry: Option<&Value>| {
        let why = entry
            .and_then(|e| e["errorMsg"]["msg"].as_str())
            .unwrap_or("Kakao could not deliver the event")
            .to_string();
        // Kakao does not know the user: blocked the channel or left.
        let gone = entry.map_or(unresolved > 0, |e| {
            e["errorMsg"]["code"] == "USER_KEY_RESOLVING_FAIL"
        });
        if gone {
            Attempt::failed(
                Verdict::Gone,
                Some(status),
                Some(body.to_string()),
                "Kakao does not know this user (blocked the channel or left)",
            )
        } else {
            Attempt::failed(
                Verdict::Retry { after: None },
                Some(status),
                Some(body.to_string()),
                why,
            )
        }
    };
    if users.len() == 1 {
        // Alone in its call: every failure the task reports is this user's.
        let mut attempt = failure(listed.first().copied());
        if unresolved > 0 {
            attempt.verdict = Verdict::Gone;
            attempt.error =
                Some("Kakao does not know this user (blocked the channel or left)".into());
        }
        return vec![attempt];
    }
    let named = listed.iter().filter(|e| failed_user(e).is_some()).count() as i64;
    users
        .iter()
        .map(|user| {
            let entry = listed
                .iter()
                .copied()
                .find(|e| failed_user(e) == Some(event_user_id(user)));
            match entry {
                Some(entry) => failure(Some(entry)),
                None if named >= failed_count.max(unresolved) => {
                    Attempt::delivered(Some(status), Some(body.to_string()))
                }
                // Some failures are not named: this user may or may not have been reached,
                // and a retry could reach it twice. Counted as delivered, with the report.
                None => Attempt {
                    error: Some(format!(
                        "Kakao reported {} of {} users not reached without naming them",
                        failed_count.max(unresolved),
                        users.len()
                    )),
                    ..Attempt::delivered(Some(status), Some(body.to_string()))
                },
            }
        })
        .collect()
}

/// The user id a `fail.list` entry names, if any.
fn failed_user(entry: &Value) -> Option<&str> {
    entry["id"]
        .as_str()
        .or_else(|| entry["user"]["id"].as_str())
        .or_else(|| entry["userKey"].as_str())
}

/// The id a contact address is sent as (without the plus-friend prefix).
fn event_user_id(address: &str) -> &str {
    address.strip_prefix(PLUSFRIEND_PREFIX).unwrap_or(address)
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
    allow_private: bool,
}

impl KakaoCallbackChannel {
    /// `http` must refuse private addresses unless they are allowed (`allow_private`): the URL
    /// comes from the request body.
    pub fn new(http: reqwest::Client, allow_private: bool) -> Arc<KakaoCallbackChannel> {
        Arc::new(KakaoCallbackChannel {
            http,
            allow_private,
        })
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
        // A callback URL that is, or resolves to, a private address stays one: failed, not
        // retried. (The client's resolver checks again when it connects.)
        if !self.allow_private {
            let checked = match url::Url::parse(message.destination) {
                Ok(url) => crate::netguard::addresses_for(&url, false)
                    .await
                    .map(|_| ()),
                Err(_) => {
                    return Attempt::failed(
                        Verdict::Permanent,
                        None,
                        None,
                        "the callback URL is not a URL",
                    );
                }
            };
            match checked {
                Ok(()) => {}
                Err(refused) if refused.is_final() => {
                    return Attempt::failed(
                        Verdict::Permanent,
                        None,
                        None,
                        format!("refused: {refused}"),
                    );
                }
                Err(refused) => {
                    return Attempt::failed(
                        Verdict::Retry {
                            after: Some(Duration::from_secs(1)),
                        },
                        None,
                        None,
                        refused.to_string(),
                    );
                }
            }
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

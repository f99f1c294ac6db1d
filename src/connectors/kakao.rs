//! Kakao i Open Builder skill v2: `POST /kakao/skill`, or when `HERALD_KAKAO_SKILL_SECRET` is set
//! `POST /kakao/skill/<secret>` or `POST /kakao/skill` with the secret in the
//! `X-Herald-Kakao-Secret` header (see `kakao_gate`).
//!
//! Request: the SkillPayload (`userRequest.utterance`, `userRequest.user.id` — the botUserKey —
//! and, when the block has callbacks enabled, `userRequest.callbackUrl`; unknown fields are
//! ignored). Reply: `{"version":"2.0","template":{"outputs":[1..3],"quickReplies":[≤10]}}` with
//! `simpleText` (≤ 1000 characters), a `textCard` of web links, and quick replies that send the
//! button's command back.
//!
//! Kakao waits 5 s at most. The engine gets [`INLINE_BUDGET`]; a command that takes longer (one
//! that reads a remote repository, say) is answered at once with `useCallback` when Kakao gave a
//! callback URL, and its result is posted there through the delivery queue (once, within the
//! URL's minute). Without a callback URL the skill waits up to [`NO_CALLBACK_BUDGET`], then
//! says the answer will follow, and sends it through the Event API when that is configured.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::Method;
use serde_json::{Value, json};

use crate::bot::Bot;
use crate::bot::deliver::{queue_replies, reply_delivery};
use crate::bot::{Answer, Incoming, Lang, Reply};
use crate::connectors::bounded;
use crate::connectors::kakao_gate::{Door, check_secret};
use crate::http::error::ApiError;
use crate::http::routes::{Outside, Routes};
use crate::ids::now_ms;
use crate::outbox::NewDelivery;
use crate::text::ellipsize_chars;

/// How long a skill request waits for the engine before switching to the callback.
pub const INLINE_BUDGET: Duration = Duration::from_millis(1500);
/// How long it waits when there is no callback URL (Kakao gives up at 5 s).
pub const NO_CALLBACK_BUDGET: Duration = Duration::from_millis(4000);
/// Kakao's callback URLs work for one minute.
const CALLBACK_VALID_MS: i64 = 60_000;
const TEXT_MAX_CHARS: usize = 1000;
const OUTPUTS_MAX: usize = 3;
const QUICK_REPLIES_MAX: usize = 10;
const BUTTON_LABEL_CHARS: usize = 14;
const CARD_BUTTONS_MAX: usize = 3;
const BODY_LIMIT: usize = 256 * 1024;

/// Kakao i Open Builder's skill server, in Kakao's format: outside the OpenAPI document.
pub fn router(state: Bot) -> Routes {
    Routes::new()
        .outside(
            Outside::PlatformWebhook,
            Method::POST,
            "/kakao/skill",
            skill_without_secret,
        )
        .outside(
            Outside::PlatformWebhook,
            Method::POST,
            "/kakao/skill/{secret}",
            skill_with_secret,
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Splits text into pieces of at most `max` characters, at line breaks where possible.
fn split_text(text: &str, max: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut current_chars = 0;
    for line in text.split_inclusive('\n') {
        let line_chars = line.chars().count();
        if current_chars + line_chars > max && !current.is_empty() {
            pieces.push(std::mem::take(&mut current).trim_end().to_string());
            current_chars = 0;
        }
        if line_chars > max {
            let chars: Vec<char> = line.chars().collect();
            for chunk in chars.chunks(max) {
                pieces.push(chunk.iter().collect::<String>().trim_end().to_string());
            }
            continue;
        }
        current.push_str(line);
        current_chars += line_chars;
    }
    if !current.trim().is_empty() {
        pieces.push(current.trim_end().to_string());
    }
    pieces
}

/// The engine's reply as a SkillResponse.
pub fn skill_response(reply: &Reply) -> Value {
    let mut outputs = Vec::new();
    if let Some(image) = &reply.image {
        outputs.push(json!({"simpleImage": {"imageUrl": image.url, "altText": ellipsize_chars(&image.alt, 50)}}));
    }
    let card = (!reply.links.is_empty()).then(|| {
        let buttons: Vec<Value> = reply
            .links
            .iter()
            .take(CARD_BUTTONS_MAX)
            .map(|l| json!({"label": ellipsize_chars(&l.label, BUTTON_LABEL_CHARS), "action": "webLink", "webLinkUrl": l.url}))
            .collect();
        let titles: Vec<String> = reply.links.iter().take(CARD_BUTTONS_MAX).map(|l| format!("• {}", l.label)).collect();
        json!({"textCard": {"description": ellipsize_chars(&titles.join("\n"), 400), "buttons": buttons, "buttonLayout": "vertical"}})
    });
    let room_for_text = OUTPUTS_MAX - outputs.len() - usize::from(card.is_some());
    let mut pieces = split_text(&reply.text, TEXT_MAX_CHARS);
    if pieces.len() > room_for_text {
        pieces.truncate(room_for_text);
        if let Some(last) = pieces.last_mut() {
            *last = ellipsize_chars(&format!("{last}…"), TEXT_MAX_CHARS);
        }
    }
    if pieces.is_empty() && card.is_none() && outputs.is_empty() {
        pieces.push("…".into());
    }
    outputs.extend(
        pieces
            .into_iter()
            .map(|text| json!({"simpleText": {"text": text}})),
    );
    outputs.extend(card);
    let quick_replies: Vec<Value> = reply
        .buttons
        .iter()
        .take(QUICK_REPLIES_MAX)
        .map(|b| json!({"label": ellipsize_chars(&b.label, BUTTON_LABEL_CHARS), "action": "message", "messageText": b.send}))
        .collect();
    let mut template = json!({"outputs": outputs});
    if !quick_replies.is_empty() {
        template["quickReplies"] = Value::Array(quick_replies);
    }
    json!({"version": "2.0", "template": template})
}

fn text_response(text: &str) -> Json<Value> {
    Json(skill_response(&Reply::text(text)))
}

fn apology(lang: Lang) -> Json<Value> {
    text_response(lang.pick(
        "죄송해요, 지금은 처리할 수 없어요. 잠시 후 다시 시도해 주세요.",
        "Sorry, I can't do that right now. Please try again in a moment.",
    ))
}

/// The callback URL, if it is one herald may call: http(s), and not a private literal address
/// unless private targets are allowed (it comes from the request body). A name is checked on
/// what it resolves to when the callback is sent (`netguard`).
fn usable_callback(state: &Bot, raw: Option<&str>) -> Option<url::Url> {
    let url = url::Url::parse(raw?).ok()?;
    let scheme_ok = matches!(url.scheme(), "https" | "http");
    let target_ok = state.settings.allow_private_targets
        || url
            .host()
            .is_some_and(|host| crate::netguard::refuse_literal(&host).is_ok());
    (scheme_ok && target_ok).then_some(url)
}

async fn skill_without_secret(
    State(state): State<Bot>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    // Open Builder's skill settings can send a header of the bot maker's choosing ("헤더값
    // 입력"): the secret may come there instead of in the URL.
    let door = match headers.get(SKILL_SECRET_HEADER) {
        Some(value) => Door::Header(value.to_str().unwrap_or_default()),
        None => Door::Bare,
    };
    check_secret(&state.settings.kakao, door, "skill")?;
    skill(state, body).await
}

/// The header a skill request may carry `HERALD_KAKAO_SKILL_SECRET` in, at `/kakao/skill`.
pub const SKILL_SECRET_HEADER: &str = "x-herald-kakao-secret";

async fn skill_with_secret(
    State(state): State<Bot>,
    Path(secret): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_secret(&state.settings.kakao, Door::WithSecret(&secret), "skill")?;
    skill(state, body).await
}

async fn skill(state: Bot, body: Bytes) -> Result<Json<Value>, ApiError> {
    let request: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not a SkillPayload JSON: {e}")))?;
    let user_request = request
        .get("userRequest")
        .filter(|v| v.is_object())
        .ok_or_else(|| ApiError::BadRequest("userRequest is required".into()))?;
    let user_id = user_request
        .pointer("/user/id")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::BadRequest("userRequest.user.id is required".into()))?;
    if user_id.len() > 200 || user_id.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "userRequest.user.id is not a Kakao user key".into(),
        ));
    }
    let utterance = match user_request.get("utterance") {
        Some(Value::String(text)) => bounded(text).to_string(),
        None | Some(Value::Null) => String::new(),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "userRequest.utterance must be a string".into(),
            ));
        }
    };
    let lang = if user_request["lang"]
        .as_str()
        .is_some_and(|l| l.starts_with("en"))
    {
        Lang::En
    } else {
        Lang::Ko
    };
    let callback = usable_callback(&state, user_request["callbackUrl"].as_str());
    let received = now_ms();

    let user = user_id.to_string();
    let worker_state = state.clone();
    let mut work = tokio::spawn(async move {
        crate::bot::converse(
            &worker_state,
            Incoming {
                channel: "kakao",
                address: &user,
                nick_name: "",
                text: &utterance,
            },
        )
        .await
    });
    let budget = if callback.is_some() {
        INLINE_BUDGET
    } else {
        NO_CALLBACK_BUDGET
    };
    match tokio::time::timeout(budget, &mut work).await {
        Ok(Ok(Ok(answer))) => Ok(Json(skill_response(&answer.reply))),
        Ok(Ok(Err(error))) => {
            tracing::error!(%error, "Kakao skill: the bot could not answer");
            Ok(apology(lang))
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "Kakao skill: the bot task failed");
            Ok(apology(lang))
        }
        Err(_) => {
            let user = user_id.to_string();
            let later_state = state.clone();
            let callback_url = callback.clone();
            tokio::spawn(async move {
                let answer = match work.await {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(error)) => {
                        tracing::error!(%error, "Kakao skill: the slow answer failed");
                        return;
                    }
                    Err(error) => {
                        tracing::error!(%error, "Kakao skill: the slow answer task failed");
                        return;
                    }
                };
                if let Err(error) =
                    deliver_later(&later_state, callback_url, &user, received, answer).await
                {
                    tracing::error!(%error, "Kakao skill: could not queue the slow answer");
                }
            });
            Ok(Json(match callback {
                Some(_) => json!({
                    "version": "2.0",
                    "useCallback": true,
                    "data": {"text": lang.pick("잠시만 기다려 주세요. 확인하고 있어요…", "One moment, I'm looking into it…")},
                }),
                None => skill_response(&Reply::text(lang.pick(
                    "시간이 조금 걸리고 있어요. 끝나면 알려 드릴게요.",
                    "This is taking a moment. I'll tell you when it's done.",
                ))),
            }))
        }
    }
}

/// Queues a slow answer: to Kakao's callback URL when there is one, else as an Event API
/// message (when Kakao push is configured).
async fn deliver_later(
    state: &Bot,
    callback: Option<url::Url>,
    user: &str,
    received: i64,
    answer: Answer,
) -> Result<(), crate::store::StoreError> {
    let delivery = match callback {
        Some(url) => NewDelivery {
            channel: "kakao-callback".into(),
            destination: url.to_string(),
            payload: json!({
                "expires_at": received + CALLBACK_VALID_MS,
                "body": skill_response(&answer.reply),
            })
            .to_string(),
            event_id: None,
            contact_id: None,
            webhook_id: None,
            event_type: Some("bot_reply".into()),
        },
        None => reply_delivery(
            "kakao",
            user,
            answer.contact.id,
            json!({"text": ellipsize_chars(&answer.reply.as_plain_text(answer.lang), TEXT_MAX_CHARS)}),
        ),
    };
    queue_replies(state, None, vec![delivery]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_fills_at_most_three_outputs_of_1000_characters() {
        let text = "가".repeat(5000);
        let response = skill_response(&Reply::text(text));
        let outputs = response["template"]["outputs"].as_array().expect("outputs");
        assert_eq!(outputs.len(), 3);
        for output in outputs {
            let text = output["simpleText"]["text"].as_str().expect("text");
            assert!(text.chars().count() <= 1000);
        }
    }

    #[test]
    fn buttons_become_at_most_ten_quick_replies_with_short_labels() {
        let reply = (0..15).fold(Reply::text("hi"), |r, i| {
            r.button(
                format!("a very long branch label {i}"),
                format!("구독 o/r b{i}"),
            )
        });
        let response = skill_response(&reply);
        let quick = response["template"]["quickReplies"]
            .as_array()
            .expect("quick replies");
        assert_eq!(quick.len(), 10);
        assert!(
            quick
                .iter()
                .all(|q| q["label"].as_str().expect("label").chars().count() <= 14)
        );
        assert_eq!(quick[0]["action"], "message");
        assert_eq!(quick[0]["messageText"], "구독 o/r b0");
    }

    #[test]
    fn links_become_a_text_card() {
        let reply = Reply::text("found").link("휴가 신청 방법", "https://wiki.example.com/leave");
        let response = skill_response(&reply);
        let outputs = response["template"]["outputs"].as_array().expect("outputs");
        assert_eq!(outputs.len(), 2);
        assert_eq!(outputs[1]["textCard"]["buttons"][0]["action"], "webLink");
    }
}

//! Area D: the same bot conversation through KakaoTalk (skill v2 and the legacy plus-friend
//! API), Telegram (long polling and webhook) and Webex, against fake platforms that speak their
//! wire formats; signatures and secrets; slow commands on Kakao; bad input.

use herald::connectors::webex::signature;
use herald::testkit::fake_github::FakeGithub;
use herald::testkit::fake_kakao::FakeKakao;
use herald::testkit::fake_telegram::FakeTelegram;
use herald::testkit::fake_webex::{self, FakeWebex};
use herald::testkit::git_repo::GitRepo;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{TestApp, TestEnv, WAIT, wait_until};

both_backends!(
    kakao_skill_conversation_and_event_api_notifications,
    telegram_conversation_by_long_polling_with_inline_keyboards,
    telegram_webhook_checks_the_secret_and_answers_each_update_once,
    webex_conversation_with_signed_webhooks,
    kakao_slow_command_answers_with_use_callback,
    a_push_to_many_kakao_users_shares_event_api_calls,
    plusfriend_legacy_routes_and_blocking,
    bad_input_gets_a_polite_reply_or_a_400,
    a_contact_is_linked_to_an_account_with_a_one_time_code,
);

fn owned<'a>(settings: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    settings.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A repository with `main` (default) and `dev`.
fn repo_with_two_branches() -> GitRepo {
    let repo = GitRepo::new();
    repo.checkout_new_branch("dev");
    repo.commit("dev.txt", "d", "Dev work");
    repo.checkout("main");
    repo
}

fn skill_payload(user: &str, text: &str, callback: Option<&str>) -> Value {
    let mut payload = json!({
        "intent": {"id": "block-1", "name": "폴백 블록"},
        "userRequest": {
            "timezone": "Asia/Seoul",
            "params": {"ignoreMe": "true"},
            "block": {"id": "block-1", "name": "폴백 블록"},
            "utterance": text,
            "lang": "ko",
            "user": {"id": user, "type": "botUserKey", "properties": {"botUserKey": user, "plusfriendUserKey": "pf-key", "isFriend": true}}
        },
        "bot": {"id": "bot-1", "name": "herald"},
        "action": {"id": "skill-1", "name": "herald", "params": {}, "detailParams": {}, "clientExtra": {}},
        "contexts": [],
    });
    if let Some(url) = callback {
        payload["userRequest"]["callbackUrl"] = json!(url);
    }
    payload
}

pub async fn skill(app: &TestApp, user: &str, text: &str) -> Value {
    let response = app
        .client
        .post(app.url("/kakao/skill"))
        .json(&skill_payload(user, text, None))
        .send()
        .await
        .expect("skill request");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["version"], "2.0", "{body}");
    let outputs = body["template"]["outputs"].as_array().expect("outputs");
    assert!((1..=3).contains(&outputs.len()), "{body}");
    body
}

/// Every simpleText of a SkillResponse, joined.
pub fn texts(response: &Value) -> String {
    response["template"]["outputs"]
        .as_array()
        .map(|outputs| {
            outputs
                .iter()
                .filter_map(|o| o["simpleText"]["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn quick_replies(response: &Value) -> Vec<(String, String)> {
    response["template"]["quickReplies"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|q| {
                    (
                        q["label"].as_str().unwrap_or_default().to_string(),
                        q["messageText"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn kakao_skill_conversation_and_event_api_notifications(env: TestEnv) {
    let kakao = FakeKakao::start().await;
    let repo = repo_with_two_branches();
    let app = env.spawn(&owned(&kakao.settings())).await;
    let url = repo.url();

    let help = skill(&app, "user-1", "도움말").await;
    assert!(texts(&help).contains("구독 <저장소>"), "{help}");
    assert!(!quick_replies(&help).is_empty());

    // `구독` alone asks for the repository, then offers its branches, default first.
    let ask = skill(&app, "user-1", "구독").await;
    assert!(texts(&ask).contains("어떤 저장소"), "{ask}");
    let branches = skill(&app, "user-1", &url).await;
    let offered = quick_replies(&branches);
    assert_eq!(
        offered[0],
        ("main".into(), format!("구독 {url} main")),
        "{branches}"
    );
    assert_eq!(offered[1], ("dev".into(), format!("구독 {url} dev")));
    // Answering with the branch name finishes the conversation.
    let done = skill(&app, "user-1", "main").await;
    assert!(texts(&done).contains("구독했어요"), "{done}");

    let list = skill(&app, "user-1", "목록").await;
    assert!(texts(&list).contains("— main"), "{list}");
    let commits = skill(&app, "user-1", "커밋").await;
    assert!(texts(&commits).contains("Initial commit"), "{commits}");

    // Muting shows at once in the next answer (the conversation cache forgets the contact).
    let muted = skill(&app, "user-1", "알림끄기").await;
    assert!(texts(&muted).contains("알림을 껐어요"), "{muted}");
    let list = skill(&app, "user-1", "목록").await;
    assert!(texts(&list).contains("모든 알림이 꺼져"), "{list}");
    skill(&app, "user-1", "알림켜기").await;

    // A push reaches this Kakao user through the Event API.
    let sha = repo.commit("n.txt", "n", "Notify the Kakao user");
    app.wait_for_head("main", &sha).await;
    wait_until("an Event API message", WAIT, || async {
        kakao
            .events()
            .iter()
            .any(|e| e.text.contains("Notify the Kakao user"))
    })
    .await;
    let event = kakao.events().into_iter().last().expect("event");
    assert_eq!(event.name, "herald_notification");
    assert_eq!(
        event.users,
        vec![("botUserKey".to_string(), "user-1".to_string())]
    );

    // Kakao's task result says it no longer knows the user: the contact is marked blocked.
    kakao.forget_user("user-1");
    let sha = repo.commit("m.txt", "m", "Nobody hears this");
    app.wait_for_head("main", &sha).await;
    let db = app.state.db.clone();
    wait_until("the contact to be marked blocked", WAIT, || {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT blocked FROM contacts WHERE channel = 'kakao' AND address = 'user-1'",
            )
            .fetch_one(db.reader())
            .await
            .unwrap_or(0)
                == 1
        }
    })
    .await;
    assert!(
        !kakao
            .events()
            .iter()
            .any(|e| e.text.contains("Nobody hears this"))
    );

    let gone = skill(&app, "user-1", &format!("구독취소 {url} main")).await;
    assert!(texts(&gone).contains("구독을 취소했어요"), "{gone}");
    // English in, English out.
    let empty = skill(&app, "user-1", "list").await;
    assert!(texts(&empty).contains("no subscriptions"), "{empty}");

    app.stop().await;
    env.cleanup().await;
}

async fn wait_for_telegram(
    telegram: &FakeTelegram,
    chat: i64,
    count: usize,
) -> herald::testkit::fake_telegram::Received {
    wait_until(
        &format!("{count} Telegram message(s) to {chat}"),
        WAIT,
        || async {
            telegram
                .delivered()
                .iter()
                .filter(|m| m.chat_id == json!(chat))
                .count()
                >= count
        },
    )
    .await;
    telegram
        .delivered()
        .into_iter()
        .filter(|m| m.chat_id == json!(chat))
        .nth(count - 1)
        .expect("message")
}

/// A branch whose subscribe command does not fit Telegram's 64-byte `callback_data`.
const LONG_BRANCH: &str = "feature/a-branch-name-long-enough-to-overflow-callback-data";

fn inline_keys(message: &herald::testkit::fake_telegram::Received) -> Vec<Value> {
    message.reply_markup.clone().expect("an inline keyboard")["inline_keyboard"]
        .as_array()
        .expect("rows")
        .iter()
        .flat_map(|row| row.as_array().cloned().unwrap_or_default())
        .collect()
}

async fn telegram_conversation_by_long_polling_with_inline_keyboards(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let repo = repo_with_two_branches();
    repo.checkout_new_branch(LONG_BRANCH);
    repo.commit("long.txt", "l", "Long branch work");
    repo.checkout("main");
    let app = env
        .spawn(&[
            ("HERALD_TELEGRAM_API", telegram.base_url.as_str()),
            ("HERALD_TELEGRAM_BOT_TOKEN", telegram.token.as_str()),
        ])
        .await;
    telegram.push_update(FakeTelegram::text_update(77, "/start"));
    let hello = wait_for_telegram(&telegram, 77, 1).await;
    assert!(hello.text.contains("herald"), "{hello:?}");

    telegram.push_update(FakeTelegram::text_update(
        77,
        &format!("/subscribe {}", repo.url()),
    ));
    let question = wait_for_telegram(&telegram, 77, 2).await;
    assert!(question.text.contains("Which branch"), "{question:?}");
    let dev = inline_keys(&question)
        .into_iter()
        .find(|key| key["text"] == "dev")
        .expect("a dev button");
    let data = dev["callback_data"].as_str().expect("callback_data");
    assert!(data.len() <= 64, "{data}");

    telegram.push_update(FakeTelegram::callback_update(77, "cbq-1", data));
    let done = wait_for_telegram(&telegram, 77, 3).await;
    assert!(done.text.contains("Subscribed to"), "{done:?}");
    assert!(done.text.contains("(dev)"), "{done:?}");
    wait_until("answerCallbackQuery", WAIT, || async {
        telegram.answered_callbacks() == vec!["cbq-1".to_string()]
    })
    .await;

    telegram.push_update(FakeTelegram::text_update(77, "목록"));
    let list = wait_for_telegram(&telegram, 77, 4).await;
    assert!(
        list.text.contains("구독 중인 저장소") && list.text.contains("dev"),
        "{list:?}"
    );
    assert!(telegram.webhook().is_none(), "polling mode sets no webhook");

    // A command longer than `callback_data`'s 64 bytes is sent as `#n`, which the bot resolves
    // against the buttons it offered last.
    telegram.push_update(FakeTelegram::text_update(
        77,
        &format!("/subscribe {}", repo.url()),
    ));
    let question = wait_for_telegram(&telegram, 77, 5).await;
    let long = inline_keys(&question)
        .into_iter()
        .find(|key| {
            key["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("feature/"))
        })
        .unwrap_or_else(|| panic!("a button for the long branch: {question:?}"));
    let data = long["callback_data"].as_str().expect("callback_data");
    assert!(data.starts_with('#') && data.len() <= 64, "{data}");
    telegram.push_update(FakeTelegram::callback_update(77, "cbq-2", data));
    let done = wait_for_telegram(&telegram, 77, 6).await;
    assert!(done.text.contains(&format!("({LONG_BRANCH})")), "{done:?}");

    app.stop().await;
    env.cleanup().await;
}

async fn telegram_webhook_checks_the_secret_and_answers_each_update_once(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let app = env
        .spawn(&[
            ("HERALD_TELEGRAM_API", telegram.base_url.as_str()),
            ("HERALD_TELEGRAM_BOT_TOKEN", telegram.token.as_str()),
            ("HERALD_TELEGRAM_WEBHOOK_SECRET", "s3cret_token-1"),
            ("HERALD_PUBLIC_URL", "https://herald.example.com"),
        ])
        .await;
    wait_until("setWebhook", WAIT, || async {
        telegram.webhook().is_some()
    })
    .await;
    assert_eq!(
        telegram.webhook(),
        Some((
            "https://herald.example.com/telegram/webhook".to_string(),
            "s3cret_token-1".to_string()
        ))
    );

    let post = |secret: Option<&'static str>, body: String| {
        let mut request = app
            .client
            .post(app.url("/telegram/webhook"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(secret) = secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let mut update = FakeTelegram::text_update(88, "도움말");
    update["update_id"] = json!(5);
    let (status, body) = post(None, update.to_string()).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].is_string());
    assert_eq!(post(Some("wrong"), update.to_string()).await.0, 403);
    assert_eq!(
        post(Some("s3cret_token-1"), "{not json".into()).await.0,
        400
    );
    assert_eq!(
        post(Some("s3cret_token-1"), json!({"message": {}}).to_string())
            .await
            .0,
        400
    );
    // Nothing was processed for the refused requests.
    assert_eq!(app.count("SELECT COUNT(*) FROM contacts").await, 0);

    // The same update twice (Telegram redelivers): one answer.
    assert_eq!(
        post(Some("s3cret_token-1"), update.to_string()).await.0,
        200
    );
    assert_eq!(
        post(Some("s3cret_token-1"), update.to_string()).await.0,
        200
    );
    let first = wait_for_telegram(&telegram, 88, 1).await;
    assert!(first.text.contains("herald"));
    app.wait_for_outbox_drained().await;
    assert_eq!(telegram.delivered().len(), 1);

    // A huge message and emoji get polite answers, never a 500.
    let mut huge = FakeTelegram::text_update(88, &"연차".repeat(30_000));
    huge["update_id"] = json!(6);
    assert_eq!(post(Some("s3cret_token-1"), huge.to_string()).await.0, 200);
    let long = wait_for_telegram(&telegram, 88, 2).await;
    assert!(long.text.contains("너무 길어요"), "{long:?}");
    let mut emoji = FakeTelegram::text_update(88, "🎉🎉 hello 안녕");
    emoji["update_id"] = json!(7);
    assert_eq!(post(Some("s3cret_token-1"), emoji.to_string()).await.0, 200);
    wait_for_telegram(&telegram, 88, 3).await;

    app.stop().await;
    env.cleanup().await;
}

async fn post_webex(app: &TestApp, body: &str, signature: Option<&str>) -> u16 {
    let mut request = app
        .client
        .post(app.url("/webex/webhook"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(signature) = signature {
        request = request.header("X-Spark-Signature", signature);
    }
    request.send().await.expect("request").status().as_u16()
}

async fn webex_conversation_with_signed_webhooks(env: TestEnv) {
    let webex = FakeWebex::start().await;
    let repo = GitRepo::new();
    let secret = "webex-hook-secret";
    let app = env
        .spawn(&[
            ("HERALD_WEBEX_API", webex.base_url.as_str()),
            ("HERALD_WEBEX_BOT_TOKEN", fake_webex::TOKEN),
            ("HERALD_WEBEX_WEBHOOK_SECRET", secret),
        ])
        .await;
    wait_until("the Webex webhook registration", WAIT, || async {
        webex.webhooks().len() == 1
    })
    .await;
    let hook = &webex.webhooks()[0];
    assert_eq!(hook["targetUrl"], json!(app.url("/webex/webhook")));
    assert_eq!(
        (hook["resource"].as_str(), hook["event"].as_str()),
        (Some("messages"), Some("created"))
    );
    assert_eq!(hook["secret"], secret);

    let event = webex.person_writes(
        "room-1",
        "direct",
        "ann@example.com",
        &format!("구독 {} main", repo.url()),
    );
    let body = event.to_string();
    assert_eq!(post_webex(&app, &body, None).await, 401);
    assert_eq!(post_webex(&app, &body, Some("deadbeef")).await, 403);
    assert_eq!(webex.reads(), 0, "nothing is read for a refused event");
    assert_eq!(
        post_webex(&app, &body, Some(&signature(secret, body.as_bytes()))).await,
        200
    );
    wait_until("the answer in the room", WAIT, || async {
        webex.posted().len() == 1
    })
    .await;
    let answer = &webex.posted()[0].body;
    assert_eq!(answer["roomId"], "room-1");
    assert!(
        answer["markdown"]
            .as_str()
            .is_some_and(|m| m.contains("구독했어요")),
        "{answer}"
    );

    // The bot's own message is ignored; malformed JSON (signed) is a 400.
    let own = webex.bot_wrote("room-1").to_string();
    assert_eq!(
        post_webex(&app, &own, Some(&signature(secret, own.as_bytes()))).await,
        200
    );
    assert_eq!(webex.reads(), 1);
    assert_eq!(
        post_webex(&app, "{oops", Some(&signature(secret, b"{oops"))).await,
        400
    );

    // In a group room the mention of the bot is removed; English gets English. A 429 with
    // Retry-After is waited out and the answer still arrives.
    webex.throttle_next(1);
    let group = webex
        .person_writes("room-2", "group", "bob@example.com", "help")
        .to_string();
    assert_eq!(
        post_webex(&app, &group, Some(&signature(secret, group.as_bytes()))).await,
        200
    );
    wait_until("the group answer after the 429", WAIT, || async {
        webex.posted().len() == 2
    })
    .await;
    let answer = &webex.posted()[1].body;
    assert_eq!(answer["roomId"], "room-2");
    assert!(
        answer["markdown"]
            .as_str()
            .is_some_and(|m| m.contains("You can say")),
        "{answer}"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM delivery_attempts WHERE status_code = 429")
            .await,
        1
    );

    // A push reaches the 1:1 subscriber by e-mail address.
    let sha = repo.commit("w.txt", "w", "Tell Webex");
    app.wait_for_head("main", &sha).await;
    wait_until("the Webex notification", WAIT, || async {
        webex.posted().len() == 3
    })
    .await;
    let note = &webex.posted()[2].body;
    assert_eq!(note["toPersonEmail"], "ann@example.com");
    assert!(
        note["markdown"]
            .as_str()
            .is_some_and(|m| m.contains("Tell Webex")),
        "{note}"
    );

    app.stop().await;
    env.cleanup().await;
}

async fn kakao_slow_command_answers_with_use_callback(env: TestEnv) {
    let kakao = FakeKakao::start().await;
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    github.add_repo("octo/hello", &repo);
    let app = env
        .spawn(&[
            ("HERALD_GITHUB_API", github.base_url.as_str()),
            ("HERALD_DELIVERY_TIMEOUT", "10s"),
        ])
        .await;
    // GitHub answers slower than the skill's inline budget.
    github.set_delay(std::time::Duration::from_millis(2500));

    let callback = kakao.callback_url();
    let response = app
        .client
        .post(app.url("/kakao/skill"))
        .json(&skill_payload(
            "slow-user",
            "구독 octo/hello main",
            Some(&callback),
        ))
        .send()
        .await
        .expect("skill request");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["version"], "2.0");
    assert_eq!(body["useCallback"], true, "{body}");
    assert!(body["data"]["text"].is_string());

    wait_until("the answer at the callback URL", WAIT, || async {
        kakao.callbacks().len() == 1
    })
    .await;
    let (_, answer) = &kakao.callbacks()[0];
    assert!(texts(answer).contains("구독했어요"), "{answer}");
    app.wait_for_outbox_drained().await;
    assert_eq!(kakao.callbacks().len(), 1, "the one-time URL is used once");

    app.stop().await;
    env.cleanup().await;
}

async fn plusfriend_legacy_routes_and_blocking(env: TestEnv) {
    let kakao = FakeKakao::start().await;
    let repo = GitRepo::new();
    let app = env.spawn(&owned(&kakao.settings())).await;
    let key = "bFS8biwaiz-d";
    let post = |path: &'static str, body: Value| {
        let request = app.client.post(app.url(path)).json(&body);
        async move {
            let response = request.send().await.expect("request");
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };

    let keyboard: Value = app
        .client
        .get(app.url("/plusfriend/keyboard"))
        .send()
        .await
        .expect("keyboard")
        .json()
        .await
        .expect("JSON");
    assert_eq!(keyboard, json!({"type": "text"}));
    assert_eq!(
        post("/plusfriend/friend", json!({"user_key": key})).await,
        (200, json!({}))
    );

    let (status, answer) = post(
        "/plusfriend/message",
        json!({"user_key": key, "type": "text", "content": format!("구독 {} main", repo.url())}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        answer["message"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("구독했어요")),
        "{answer}"
    );
    assert_eq!(answer["keyboard"]["type"], "buttons");

    let (status, photo) = post(
        "/plusfriend/message",
        json!({"user_key": key, "type": "photo", "content": "https://example.com/p.jpg"}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(photo["message"]["text"].is_string());
    let (status, missing) = post(
        "/plusfriend/message",
        json!({"type": "text", "content": "hi"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        missing["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("user_key"))
    );

    let sha = repo.commit("a.txt", "a", "First for plus friend");
    app.wait_for_head("main", &sha).await;
    wait_until("the plus-friend notification", WAIT, || async {
        kakao
            .events()
            .iter()
            .any(|e| e.text.contains("First for plus friend"))
    })
    .await;
    assert_eq!(
        kakao.events()[0].users,
        vec![("plusfriendUserKey".to_string(), key.to_string())]
    );

    // Blocked: nothing more is sent.
    let response = app
        .client
        .delete(app.url(&format!("/plusfriend/friend/{key}")))
        .send()
        .await
        .expect("block");
    assert_eq!(response.status().as_u16(), 200);
    let sha = repo.commit("b.txt", "b", "After the block");
    app.wait_for_head("main", &sha).await;
    app.wait_for_outbox_drained().await;
    assert_eq!(kakao.events().len(), 1, "{:?}", kakao.events());
    let left = app
        .client
        .delete(app.url("/plusfriend/chat_room/unknown-user"))
        .send()
        .await
        .expect("leave");
    assert_eq!(left.status().as_u16(), 200);

    app.stop().await;
    env.cleanup().await;
}

async fn bad_input_gets_a_polite_reply_or_a_400(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let raw = |body: String| {
        let request = app
            .client
            .post(app.url("/kakao/skill"))
            .header("content-type", "application/json")
            .body(body);
        async move {
            let response = request.send().await.expect("request");
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    for (body, what) in [
        ("{not json".to_string(), "malformed JSON"),
        (json!({"bot": {}}).to_string(), "no userRequest"),
        (
            json!({"userRequest": {"utterance": "hi"}}).to_string(),
            "no user id",
        ),
        (
            json!({"userRequest": {"utterance": 5, "user": {"id": "u"}}}).to_string(),
            "utterance of the wrong type",
        ),
        (
            json!({"userRequest": {"utterance": "hi", "user": {"id": "u\nx"}}}).to_string(),
            "a control character in the id",
        ),
    ] {
        let (status, answer) = raw(body).await;
        assert_eq!(status, 400, "{what}: {answer}");
        assert!(answer["error"]["message"].is_string(), "{what}: {answer}");
    }
    let (status, _) = raw("x".repeat(400 * 1024)).await;
    assert_eq!(status, 413);

    let long = skill(&app, "u-1", &"연".repeat(50_000)).await;
    assert!(texts(&long).contains("너무 길어요"), "{long}");
    let unknown = skill(&app, "u-1", "🎉🎉 안녕 hello").await;
    assert!(texts(&unknown).contains("도움말"), "{unknown}");
    let empty = skill(&app, "u-1", "").await;
    assert!(!texts(&empty).is_empty());
    let bad_repo = skill(&app, "u-1", "구독 not a repo at all").await;
    assert!(texts(&bad_repo).contains("구독하지 못했어요"), "{bad_repo}");
    // The Telegram and Webex routes say they are not configured.
    assert_eq!(raw(String::new()).await.0, 400);
    let telegram = app
        .client
        .post(app.url("/telegram/webhook"))
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(telegram.status().as_u16(), 404);

    app.stop().await;
    env.cleanup().await;
}

async fn a_contact_is_linked_to_an_account_with_a_one_time_code(env: TestEnv) {
    let smtp = herald::testkit::fake_smtp::FakeSmtp::start().await;
    let app = env.spawn(&[("HERALD_SMTP_URL", smtp.url.as_str())]).await;
    let token = crate::accounts::sign_up(
        &app,
        &smtp,
        "carol",
        "carol@example.com",
        "carol's password",
    )
    .await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/link_code"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("link code");
    assert_eq!(response.status().as_u16(), 201);
    let code: Value = response.json().await.expect("JSON");
    let code = code["code"].as_str().expect("code").to_string();

    let wrong = skill(&app, "kakao-carol", "연결 WRONG123").await;
    assert!(texts(&wrong).contains("만료"), "{wrong}");
    let linked = skill(
        &app,
        "kakao-carol",
        &format!("연결 {}", code.to_lowercase()),
    )
    .await;
    assert!(texts(&linked).contains("carol"), "{linked}");
    let again = skill(&app, "someone-else", &format!("link {code}")).await;
    assert!(texts(&again).contains("expired"), "single use: {again}");

    let contacts: Value = app
        .client
        .get(app.url("/api/v1/auth/contacts"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("contacts")
        .json()
        .await
        .expect("JSON");
    let list = contacts["contacts"].as_array().expect("contacts");
    assert_eq!(list.len(), 1, "{contacts}");
    assert_eq!(list[0]["address"], "kakao-carol");
    let anonymous = app
        .client
        .post(app.url("/api/v1/auth/link_code"))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status().as_u16(), 401);

    app.stop().await;
    env.cleanup().await;
}

both_backends!(
    the_same_conversation_through_every_connector,
    a_disabled_webex_webhook_is_reactivated_with_the_current_secret,
    kakao_slow_command_without_callback_is_answered_by_push,
);

async fn kakao_slow_command_without_callback_is_answered_by_push(env: TestEnv) {
    let kakao = FakeKakao::start().await;
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    github.add_repo("octo/slow", &repo);
    let kakao_settings = kakao.settings();
    let mut settings = owned(&kakao_settings);
    settings.extend([
        ("HERALD_GITHUB_API", github.base_url.as_str()),
        ("HERALD_DELIVERY_TIMEOUT", "10s"),
    ]);
    let app = env.spawn(&settings).await;
    // Slower than the 4 s the skill waits when Kakao gave no callback URL.
    github.set_delay(std::time::Duration::from_millis(4500));
    let answer = skill(&app, "push-user", "구독 octo/slow main").await;
    assert!(texts(&answer).contains("끝나면 알려 드릴게요"), "{answer}");
    wait_until("the answer as an Event API message", WAIT, || async {
        kakao.events().iter().any(|e| e.text.contains("구독했어요"))
    })
    .await;
    let event = kakao.events().into_iter().last().expect("event");
    assert_eq!(
        event.users,
        vec![("botUserKey".to_string(), "push-user".to_string())]
    );
    app.stop().await;
    env.cleanup().await;
}

async fn a_disabled_webex_webhook_is_reactivated_with_the_current_secret(env: TestEnv) {
    let webex = FakeWebex::start().await;
    let target = "https://herald.example.com/webex/webhook";
    webex.add_webhook(json!({
        "id": "webhook-old", "name": "herald", "targetUrl": target, "resource": "messages",
        "event": "created", "secret": "an old secret", "status": "disabled",
    }));
    let app = env
        .spawn(&[
            ("HERALD_WEBEX_API", webex.base_url.as_str()),
            ("HERALD_WEBEX_BOT_TOKEN", fake_webex::TOKEN),
            ("HERALD_WEBEX_WEBHOOK_SECRET", "the current secret"),
            ("HERALD_PUBLIC_URL", "https://herald.example.com"),
        ])
        .await;
    wait_until("the webhook to be re-activated", WAIT, || async {
        webex.webhooks()[0]["status"] == "active"
    })
    .await;
    let hooks = webex.webhooks();
    assert_eq!(hooks.len(), 1, "found, not created again: {hooks:?}");
    assert_eq!(hooks[0]["secret"], "the current secret");
    assert_eq!(hooks[0]["targetUrl"], target);
    app.stop().await;
    env.cleanup().await;
}

/// One messenger as a test user sees it: say something, read the answer and its buttons (the
/// text each button would send back).
#[derive(Clone, Copy, Debug)]
enum Via {
    KakaoSkill,
    PlusFriend,
    Telegram,
    Webex,
}

struct Platforms {
    telegram: FakeTelegram,
    webex: FakeWebex,
}

const WEBEX_SECRET: &str = "conversation-secret";

impl Via {
    async fn say(self, app: &TestApp, platforms: &Platforms, text: &str) -> (String, Vec<String>) {
        match self {
            Via::KakaoSkill => {
                let response = skill(app, "conversation-user", text).await;
                let buttons = quick_replies(&response)
                    .into_iter()
                    .map(|(_, send)| send)
                    .collect();
                (texts(&response), buttons)
            }
            Via::PlusFriend => {
                let response: Value = app
                    .client
                    .post(app.url("/plusfriend/message"))
                    .json(&json!({"user_key": "conversation-key", "type": "text", "content": text}))
                    .send()
                    .await
                    .expect("request")
                    .json()
                    .await
                    .expect("JSON");
                let buttons = response["keyboard"]["buttons"]
                    .as_array()
                    .map(|b| {
                        b.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    response["message"]["text"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    buttons,
                )
            }
            Via::Telegram => {
                let telegram = &platforms.telegram;
                let before = telegram.delivered().len();
                // A button's text is pressed as a callback; anything else is typed.
                let is_button = text.starts_with('#') || text.starts_with("구독 /");
                if is_button {
                    telegram.push_update(FakeTelegram::callback_update(55, "cbq", text));
                } else {
                    telegram.push_update(FakeTelegram::text_update(55, text));
                }
                let message = wait_for_telegram(telegram, 55, before + 1).await;
                let buttons = message
                    .reply_markup
                    .as_ref()
                    .and_then(|m| m["inline_keyboard"].as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .flat_map(|row| row.as_array().cloned().unwrap_or_default())
                    .filter_map(|key| key["callback_data"].as_str().map(str::to_string))
                    .collect();
                (message.text, buttons)
            }
            Via::Webex => {
                let webex = &platforms.webex;
                let before = webex.posted().len();
                let body = webex
                    .person_writes("conversation-room", "direct", "eve@example.com", text)
                    .to_string();
                let status =
                    post_webex(app, &body, Some(&signature(WEBEX_SECRET, body.as_bytes()))).await;
                assert_eq!(status, 200);
                wait_until("a Webex answer", WAIT, || async {
                    webex.posted().len() > before
                })
                .await;
                let markdown = webex.posted()[before].body["markdown"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                // Webex has no buttons: the commands are listed as `code`.
                let buttons = markdown
                    .lines()
                    .filter_map(|l| l.strip_prefix("- `").and_then(|l| l.strip_suffix('`')))
                    .map(str::to_string)
                    .collect();
                (markdown, buttons)
            }
        }
    }
}

async fn the_same_conversation_through_every_connector(env: TestEnv) {
    let platforms = Platforms {
        telegram: FakeTelegram::start().await,
        webex: FakeWebex::start().await,
    };
    let repo = repo_with_two_branches();
    let url = repo.url();
    let app = env
        .spawn(&[
            ("HERALD_TELEGRAM_API", platforms.telegram.base_url.as_str()),
            (
                "HERALD_TELEGRAM_BOT_TOKEN",
                platforms.telegram.token.as_str(),
            ),
            ("HERALD_WEBEX_API", platforms.webex.base_url.as_str()),
            ("HERALD_WEBEX_BOT_TOKEN", fake_webex::TOKEN),
            ("HERALD_WEBEX_WEBHOOK_SECRET", WEBEX_SECRET),
        ])
        .await;
    wait_until("the Webex webhook", WAIT, || async {
        !platforms.webex.webhooks().is_empty()
    })
    .await;

    for via in [Via::KakaoSkill, Via::PlusFriend, Via::Telegram, Via::Webex] {
        let (text, _) = via.say(&app, &platforms, "구독").await;
        assert!(text.contains("어떤 저장소"), "{via:?}: {text}");
        let (text, buttons) = via.say(&app, &platforms, &url).await;
        assert!(text.contains("브랜치"), "{via:?}: {text}");
        // The second button is `dev` (the default branch comes first).
        let dev = buttons
            .get(1)
            .cloned()
            .unwrap_or_else(|| panic!("{via:?}: no dev button in {buttons:?}"));
        let (text, _) = via.say(&app, &platforms, &dev).await;
        assert!(
            text.contains("구독했어요") && text.contains("(dev)"),
            "{via:?}: {text}"
        );
        let (text, _) = via.say(&app, &platforms, "목록").await;
        assert!(text.contains("— dev"), "{via:?}: {text}");
        let (text, _) = via.say(&app, &platforms, "커밋").await;
        assert!(text.contains("Dev work"), "{via:?}: {text}");
        let (text, _) = via.say(&app, &platforms, "검색 연차 신청").await;
        assert!(text.contains("휴가 신청 방법"), "{via:?}: {text}");
        let (text, _) = via
            .say(&app, &platforms, &format!("구독취소 {url} dev"))
            .await;
        assert!(text.contains("구독을 취소했어요"), "{via:?}: {text}");
    }

    app.stop().await;
    env.cleanup().await;
}

/// 250 Kakao subscribers of one branch, one of them unknown to Kakao: the push reaches the
/// others in Event API calls of at most 100 users (not 250 calls), each recipient's delivery
/// and attempt is logged on its own, and the unknown one's contact is marked blocked.
async fn a_push_to_many_kakao_users_shares_event_api_calls(env: TestEnv) {
    let kakao = FakeKakao::start().await;
    let repo = repo_with_two_branches();
    let kakao_settings = kakao.settings();
    let mut settings = owned(&kakao_settings);
    // Enough sends in flight for full calls of 100.
    settings.push(("HERALD_DELIVERY_CONCURRENCY", "256"));
    let app = env.spawn(&settings).await;
    let url = repo.url();
    for n in 0..250 {
        app.subscribe_reference("kakao", &format!("fan-{n:03}"), &url, "main")
            .await;
    }
    kakao.forget_user("fan-007");
    let sha = repo.commit("fan.txt", "fan", "Tell all the fans");
    app.wait_for_head("main", &sha).await;
    app.wait_for_outbox_drained().await;

    let events: Vec<_> = kakao
        .events()
        .into_iter()
        .filter(|e| e.text.contains("Tell all the fans"))
        .collect();
    let mut reached: Vec<String> = events
        .iter()
        .flat_map(|e| e.users.iter().map(|(_, id)| id.clone()))
        .collect();
    reached.sort();
    let expected: Vec<String> = (0..250)
        .filter(|n| *n != 7)
        .map(|n| format!("fan-{n:03}"))
        .collect();
    assert_eq!(reached, expected, "each known fan reached exactly once");
    assert!(
        events.len() < 250 / 10,
        "{} Event API calls for 250 users: the calls are not shared",
        events.len()
    );
    assert!(events.iter().all(|e| e.users.len() <= 100));

    let delivered = app
        .count(
            "SELECT COUNT(*) FROM deliveries WHERE channel = 'kakao' AND status = 'delivered' \
             AND destination LIKE 'fan-%'",
        )
        .await;
    assert_eq!(delivered, 249);
    let attempts = app
        .count(
            "SELECT COUNT(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id \
             WHERE d.channel = 'kakao' AND d.destination LIKE 'fan-%'",
        )
        .await;
    assert_eq!(attempts, 250, "one attempt logged per recipient");
    let blocked = app
        .count(
            "SELECT COUNT(*) FROM contacts WHERE channel = 'kakao' AND blocked = 1 \
             AND address LIKE 'fan-%'",
        )
        .await;
    assert_eq!(blocked, 1, "only the unknown fan is marked blocked");
    let gone = app
        .count(
            "SELECT COUNT(*) FROM deliveries WHERE channel = 'kakao' AND destination = 'fan-007' \
             AND status = 'failed'",
        )
        .await;
    assert_eq!(gone, 1);

    app.stop().await;
    env.cleanup().await;
}

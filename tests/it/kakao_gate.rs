//! Issue 25, speaking for any Kakao user: with `HERALD_KAKAO_SKILL_SECRET` set, the skill and the
//! plus-friend API answer only at the URLs that carry it, and the plus-friend API only to the
//! addresses of `HERALD_KAKAO_ALLOWED_IPS`. Clients at different addresses bind different
//! loopback addresses (127.0.0.x), which herald sees as their peers.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{TestApp, TestEnv};

both_backends!(
    the_skill_answers_only_at_its_secret_url,
    the_skill_takes_the_secret_in_its_header_too,
    the_plus_friend_api_answers_only_behind_the_secret,
    the_plus_friend_api_answers_only_the_allowed_addresses,
);

const SECRET: &str = "kakao-skill-0123456789abcdef";

fn skill_payload(user: &str, text: &str) -> Value {
    json!({
        "intent": {"id": "block-1", "name": "폴백 블록"},
        "userRequest": {
            "utterance": text,
            "lang": "ko",
            "user": {"id": user, "type": "botUserKey", "properties": {}}
        },
        "bot": {"id": "bot-1", "name": "herald"},
        "action": {"id": "skill-1", "name": "herald", "params": {}, "detailParams": {}, "clientExtra": {}},
    })
}

fn client_at(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .build()
        .expect("client")
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn kakao_contacts(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM contacts WHERE channel = 'kakao'")
        .await
}

async fn the_skill_answers_only_at_its_secret_url(env: TestEnv) {
    let app = env.spawn(&[("HERALD_KAKAO_SKILL_SECRET", SECRET)]).await;

    // The attack: a request naming any user at the bare URL, or with a wrong secret.
    let (status, body) = send(
        app.client
            .post(app.url("/kakao/skill"))
            .json(&skill_payload("victim", "목록")),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("HERALD_KAKAO_SKILL_SECRET")),
        "{body}"
    );
    let wrong = format!("/kakao/skill/{}", SECRET.replace('0', "1"));
    let (status, body) = send(
        app.client
            .post(app.url(&wrong))
            .json(&skill_payload("victim", "목록")),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        kakao_contacts(&app).await,
        0,
        "nothing was done for the victim"
    );

    // Kakao, with the secret.
    let (status, body) = send(
        app.client
            .post(app.url(&format!("/kakao/skill/{SECRET}")))
            .json(&skill_payload("victim", "도움말")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], "2.0", "{body}");
    assert_eq!(kakao_contacts(&app).await, 1);
    app.stop().await;

    // Without a secret the bare URL works and there is no secret URL.
    let open = env.spawn(&[]).await;
    let (status, _) = send(
        open.client
            .post(open.url("/kakao/skill"))
            .json(&skill_payload("someone", "도움말")),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(
        open.client
            .post(open.url(&format!("/kakao/skill/{SECRET}")))
            .json(&skill_payload("someone", "도움말")),
    )
    .await;
    assert_eq!(status, 404);
    open.stop().await;
    env.cleanup().await;
}

/// Open Builder's skill settings can send a header ("헤더값 입력"): the secret may come in
/// `X-Herald-Kakao-Secret` at the bare skill URL instead of in the path.
async fn the_skill_takes_the_secret_in_its_header_too(env: TestEnv) {
    let app = env.spawn(&[("HERALD_KAKAO_SKILL_SECRET", SECRET)]).await;
    let wrong = SECRET.replace('0', "1");
    for (given, expected) in [("", 403), (wrong.as_str(), 403)] {
        let (status, body) = send(
            app.client
                .post(app.url("/kakao/skill"))
                .header("X-Herald-Kakao-Secret", given)
                .json(&skill_payload("victim", "목록")),
        )
        .await;
        assert_eq!(status, expected, "{given:?}: {body}");
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
    }
    assert_eq!(
        kakao_contacts(&app).await,
        0,
        "nothing was done for the victim"
    );
    let (status, body) = send(
        app.client
            .post(app.url("/kakao/skill"))
            .header("X-Herald-Kakao-Secret", SECRET)
            .json(&skill_payload("victim", "도움말")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], "2.0", "{body}");
    assert_eq!(kakao_contacts(&app).await, 1);
    app.stop().await;
    env.cleanup().await;
}

async fn the_plus_friend_api_answers_only_behind_the_secret(env: TestEnv) {
    let app = env.spawn(&[("HERALD_KAKAO_SKILL_SECRET", SECRET)]).await;
    let key = "bFS8biwaiz-d";
    let base = format!("/kakao/plusfriend/{SECRET}");

    let (status, _) = send(
        app.client
            .post(app.url(&format!("{base}/friend")))
            .json(&json!({"user_key": key})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(kakao_contacts(&app).await, 1);

    // The attack: silencing the user through the bare route, or a wrong secret.
    let (status, body) = send(
        app.client
            .delete(app.url(&format!("/plusfriend/friend/{key}"))),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let wrong = format!(
        "/kakao/plusfriend/{}/friend/{key}",
        SECRET.replace('a', "b")
    );
    let (status, _) = send(app.client.delete(app.url(&wrong))).await;
    assert_eq!(status, 403);
    let (status, _) = send(
        app.client
            .post(app.url("/plusfriend/message"))
            .json(&json!({"user_key": key, "type": "text", "content": "목록"})),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM contacts WHERE channel = 'kakao' AND blocked = 1")
            .await,
        0
    );

    // Kakao, through the base URL with the secret.
    let (status, keyboard) = send(app.client.get(app.url(&format!("{base}/keyboard")))).await;
    assert_eq!((status, keyboard), (200, json!({"type": "text"})));
    let (status, answer) = send(
        app.client
            .post(app.url(&format!("{base}/message")))
            .json(&json!({"user_key": key, "type": "text", "content": "도움말"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["message"]["text"].is_string(), "{answer}");
    let (status, _) = send(app.client.delete(app.url(&format!("{base}/friend/{key}")))).await;
    assert_eq!(status, 200);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM contacts WHERE channel = 'kakao' AND blocked = 1")
            .await,
        1
    );
    let (status, _) = send(app.client.get(app.url(&format!("{base}/nothing-here")))).await;
    assert_eq!(status, 404);
    app.stop().await;
    env.cleanup().await;
}

async fn the_plus_friend_api_answers_only_the_allowed_addresses(env: TestEnv) {
    let app = env
        .spawn(&[("HERALD_KAKAO_ALLOWED_IPS", "127.0.0.2, 10.0.0.0/8")])
        .await;
    let stranger = client_at(1);
    let kakao = client_at(2);

    let (status, body) = send(stranger.delete(app.url("/plusfriend/friend/someone"))).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("HERALD_KAKAO_ALLOWED_IPS")),
        "{body}"
    );
    let (status, _) = send(
        stranger
            .post(app.url("/plusfriend/friend"))
            .json(&json!({"user_key": "someone"})),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(kakao_contacts(&app).await, 0);

    let (status, _) = send(
        kakao
            .post(app.url("/plusfriend/friend"))
            .json(&json!({"user_key": "someone"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(kakao_contacts(&app).await, 1);
    // The list is the plus-friend API's: skills come from addresses Kakao does not publish.
    let (status, _) = send(
        stranger
            .post(app.url("/kakao/skill"))
            .json(&skill_payload("skill-user", "도움말")),
    )
    .await;
    assert_eq!(status, 200);
    app.stop().await;
    env.cleanup().await;
}

//! Area C accounts: sign up, verify by mail over real SMTP, log in, who am I, log out.

use herald::testkit::accounts::verification_link;
use herald::testkit::fake_smtp::FakeSmtp;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{TestApp, TestEnv};

both_backends!(
    sign_up_verify_by_mail_log_in_and_out,
    sign_up_and_login_refuse_bad_input
);

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(app: &TestApp, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn assert_error(status: u16, body: &Value, expected: u16) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["type"], json!("error"), "{body}");
    assert_eq!(body["payload"]["code"], json!(expected), "{body}");
    assert!(
        body["payload"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{body}"
    );
}

/// Signs up, verifies through the mail and logs in (`testkit::accounts`); returns the token.
pub async fn sign_up(
    app: &TestApp,
    smtp: &FakeSmtp,
    name: &str,
    email: &str,
    password: &str,
) -> String {
    herald::testkit::accounts::sign_up(&app.client, &app.address, smtp, name, email, password).await
}

async fn sign_up_verify_by_mail_log_in_and_out(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let app = env.spawn(&[("HERALD_SMTP_URL", smtp.url.as_str())]).await;

    let (status, answer) = post(
        &app,
        "/api/v1/auth/register",
        json!({"name": "alice", "email": "alice@example.com", "password": "correct horse"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"type": "info", "payload": {"message": "successfully created an account creation request."}})
    );
    let link = verification_link(&smtp, "alice@example.com").await;
    assert!(link.starts_with(&app.address), "{link}");
    let verified: Value = app
        .client
        .get(&link)
        .send()
        .await
        .expect("verify")
        .json()
        .await
        .expect("json");
    assert_eq!(
        verified,
        json!({"type": "info", "payload": {"message": "account successfully created."}})
    );
    // Single use.
    let response = app.client.get(&link).send().await.expect("verify again");
    let status = response.status().as_u16();
    assert_error(status, &response.json().await.expect("json"), 404);

    // Login with a form body, as the reference's test page did.
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .form(&[
            ("email", "Alice@Example.com"),
            ("password", "correct horse"),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["type"], json!("auth"));
    let token = answer["payload"]["token"]
        .as_str()
        .expect("token")
        .to_string();

    let (status, me) = get(&app, "/api/v1/auth/me", Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["type"], json!("user"));
    assert_eq!(me["payload"]["name"], json!("alice"));
    assert_eq!(me["payload"]["profile"], Value::Null);
    assert!(
        me["payload"]["id"]
            .as_str()
            .is_some_and(|id| id.parse::<i64>().is_ok()),
        "ids are strings: {me}"
    );
    assert!(me["payload"].get("email").is_none());

    let response = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("logout");
    assert_eq!(response.status().as_u16(), 200);
    let (status, answer) = get(&app, "/api/v1/auth/me", Some(&token)).await;
    assert_error(status, &answer, 401);

    app.stop().await;
    env.cleanup().await;
}

async fn sign_up_and_login_refuse_bad_input(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let app = env.spawn(&[("HERALD_SMTP_URL", smtp.url.as_str())]).await;
    sign_up(&app, &smtp, "bob", "bob@example.com", "long enough").await;

    let response = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    assert_error(status, &response.json().await.expect("json"), 400);
    for (body, expected) in [
        (
            json!({"email": "x@example.com", "password": "long enough"}),
            400,
        ),
        (json!({"name": "x1", "email": "x@example.com"}), 400),
        (
            json!({"name": "x1", "email": "x@example.com", "password": "short"}),
            422,
        ),
        (
            json!({"name": "x1", "email": "not-an-email", "password": "long enough"}),
            422,
        ),
        (
            json!({"name": "a b", "email": "x@example.com", "password": "long enough"}),
            422,
        ),
        (
            json!({"name": "bob", "email": "other@example.com", "password": "long enough"}),
            409,
        ),
        (
            json!({"name": 5, "email": "x@example.com", "password": "long enough"}),
            400,
        ),
    ] {
        let (status, answer) = post(&app, "/api/v1/auth/register", body.clone()).await;
        assert_error(status, &answer, expected);
    }
    // A link that does not exist, and one that expired.
    let (status, answer) = get(&app, "/api/v1/auth/email_verify/not-a-key", None).await;
    assert_error(status, &answer, 404);
    let (status, _) = post(
        &app,
        "/api/v1/auth/register",
        json!({"name": "late", "email": "late@example.com", "password": "long enough"}),
    )
    .await;
    assert_eq!(status, 200);
    let link = verification_link(&smtp, "late@example.com").await;
    sqlx::query("UPDATE signup_requests SET expires_at = 0")
        .execute(app.state.db.writer())
        .await
        .expect("expire");
    let response = app.client.get(&link).send().await.expect("verify");
    let status = response.status().as_u16();
    assert_error(status, &response.json().await.expect("json"), 410);

    // Wrong password, unknown e-mail, no token, a made-up token.
    let (status, answer) = post(
        &app,
        "/api/v1/auth/login",
        json!({"email": "bob@example.com", "password": "wrong password"}),
    )
    .await;
    assert_error(status, &answer, 401);
    let (status, answer) = post(
        &app,
        "/api/v1/auth/login",
        json!({"email": "nobody@example.com", "password": "whatever1"}),
    )
    .await;
    assert_error(status, &answer, 401);
    let (status, answer) = get(&app, "/api/v1/auth/me", None).await;
    assert_error(status, &answer, 401);
    let (status, answer) = get(&app, "/api/v1/auth/me", Some("made-up")).await;
    assert_error(status, &answer, 401);

    // Guessing is limited per account.
    let mut limited = false;
    for _ in 0..12 {
        let (status, _) = post(
            &app,
            "/api/v1/auth/login",
            json!({"email": "bob@example.com", "password": "guess guess"}),
        )
        .await;
        if status == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "login attempts are rate-limited");
    // bob, and the herald bot account.
    assert_eq!(app.count("SELECT COUNT(*) FROM accounts").await, 2);

    app.stop().await;
    env.cleanup().await;
}

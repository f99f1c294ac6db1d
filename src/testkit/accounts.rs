//! An account as a person makes one: sign up through the API, follow the link in the
//! verification mail (received by [`FakeSmtp`]), log in.

use std::time::Duration;

use serde_json::{Value, json};

use super::fake_smtp::FakeSmtp;
use super::wait_until;

/// How long a verification mail may take to arrive.
const MAIL_WAIT: Duration = Duration::from_secs(20);

/// Signs `name` up on the herald at `base_url`, verifies the address through the mail, logs in,
/// and returns the session token. Every step must succeed.
pub async fn sign_up(
    client: &reqwest::Client,
    base_url: &str,
    smtp: &FakeSmtp,
    name: &str,
    email: &str,
    password: &str,
) -> String {
    let (status, answer) = post(
        client,
        &format!("{base_url}/api/v1/auth/register"),
        json!({"name": name, "email": email, "password": password}),
    )
    .await;
    assert_eq!(status, 200, "register {name}: {answer}");
    let link = verification_link(smtp, email).await;
    let response = client.get(&link).send().await.expect("verify");
    assert_eq!(response.status().as_u16(), 200, "verify {name}");
    let (status, answer) = post(
        client,
        &format!("{base_url}/api/v1/auth/login"),
        json!({"email": email, "password": password}),
    )
    .await;
    assert_eq!(status, 200, "log in {name}: {answer}");
    answer["payload"]["token"]
        .as_str()
        .expect("token")
        .to_string()
}

/// The verification link from the newest mail to `to`, once one has arrived.
pub async fn verification_link(smtp: &FakeSmtp, to: &str) -> String {
    wait_until("the verification mail", MAIL_WAIT, || async {
        smtp.last_mail_to(to).is_some()
    })
    .await;
    let mail = smtp.last_mail_to(to).expect("mail");
    let text = mail.body_text();
    let start = text.find("http://").expect("a link in the mail");
    text[start..]
        .split_whitespace()
        .next()
        .expect("link")
        .to_string()
}

async fn post(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let response = client.post(url).json(&body).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

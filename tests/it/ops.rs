//! Health, readiness, metrics, and the JSON API's error shape.

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::TestEnv;

both_backends!(health_ready_and_metrics, json_api_errors_have_one_shape);

async fn health_ready_and_metrics(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let response = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(response.status().as_u16(), 200);
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("herald_http_requests_total"), "{metrics}");

    let response = app
        .client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .expect("404");
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], json!("not_found"));
    app.stop().await;
    env.cleanup().await;
}

async fn json_api_errors_have_one_shape(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let assert_error = |status: u16, body: &Value, expected_status: u16, code: &str| {
        assert_eq!(status, expected_status, "{body}");
        assert_eq!(body["error"]["code"], json!(code), "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    };

    // No token, wrong token.
    let response = app
        .client
        .get(app.url("/api/v1/contacts"))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    assert_error(
        status,
        &response.json().await.expect("json"),
        401,
        "unauthorized",
    );
    let response = app
        .client
        .get(app.url("/api/v1/contacts"))
        .bearer_auth("nope")
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    assert_error(
        status,
        &response.json().await.expect("json"),
        401,
        "unauthorized",
    );

    // Malformed JSON, wrong types, unknown fields, unknown channels, bad addresses.
    let response = app
        .client
        .post(app.url("/api/v1/contacts"))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    assert_error(
        status,
        &response.json().await.expect("json"),
        400,
        "bad_request",
    );
    for body in [
        json!({"channel": 5, "address": "1"}),
        json!({"channel": "telegram"}),
        json!({"channel": "telegram", "address": "1", "surprise": true}),
        json!({"channel": "pigeon", "address": "1"}),
        json!({"channel": "telegram", "address": "not a chat"}),
        json!({"channel": "email", "address": "nobody"}),
    ] {
        let (status, answer) = app
            .admin(Method::POST, "/api/v1/contacts", Some(body.clone()))
            .await;
        assert_error(status, &answer, 422, "validation_failed");
    }
    // Oversize bodies (on their own connection, which the server closes).
    let response = reqwest::Client::new()
        .post(app.url("/api/v1/contacts"))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(format!(
            "{{\"channel\":\"telegram\",\"address\":\"{}\"}}",
            "1".repeat(2 * 1024 * 1024)
        ))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    assert_error(
        status,
        &response.json().await.expect("json"),
        413,
        "payload_too_large",
    );

    // Unknown ids.
    for path in [
        "/api/v1/contacts/123",
        "/api/v1/contacts/abc",
        "/api/v1/subscriptions/9",
    ] {
        let (status, answer) = app.admin(Method::GET, path, None).await;
        assert_error(status, &answer, 404, "not_found");
        let (status, answer) = app.admin(Method::DELETE, path, None).await;
        assert_error(status, &answer, 404, "not_found");
    }
    // A subscription for a contact that does not exist, or a repository that does not.
    let (status, answer) = app
        .admin(
            Method::POST,
            "/api/v1/subscriptions",
            Some(json!({"contact_id": "1", "repository": "/nope", "branch": "main"})),
        )
        .await;
    assert_error(status, &answer, 422, "validation_failed");
    let (_, contact) = app
        .admin(
            Method::POST,
            "/api/v1/contacts",
            Some(json!({"channel": "telegram", "address": "1"})),
        )
        .await;
    let (status, answer) = app
        .admin(
            Method::POST,
            "/api/v1/subscriptions",
            Some(json!({"contact_id": contact["id"], "repository": "/definitely/not/a/repo", "branch": "main"})),
        )
        .await;
    assert_error(status, &answer, 422, "validation_failed");
    let (_, subscriptions) = app.admin(Method::GET, "/api/v1/subscriptions", None).await;
    assert_eq!(subscriptions["subscriptions"], json!([]));

    // Deleting works and is then a 404.
    let id = contact["id"].as_str().expect("id");
    let (status, _) = app
        .admin(Method::DELETE, &format!("/api/v1/contacts/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = app
        .admin(Method::GET, &format!("/api/v1/contacts/{id}"), None)
        .await;
    assert_eq!(status, 404);

    app.stop().await;
    env.cleanup().await;
}

/// A client still sending an oversize body when herald refuses it reads the 413, not a reset:
/// herald reads the rest of a refused body before answering. The client here pauses mid-body
/// (as a slow uploader does), which is when a server that closes with the body unread makes
/// the kernel reset the connection under the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_body_still_sending_gets_the_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(env) = TestEnv::new(crate::helpers::Backend::Sqlite).await else {
        return;
    };
    let app = env.spawn(&[]).await;
    let address = app.address.trim_start_matches("http://").to_string();
    let body = format!(
        "{{\"channel\":\"telegram\",\"address\":\"{}\"}}",
        "1".repeat(6 * 1024 * 1024)
    );
    let head = format!(
        "POST /api/v1/contacts HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        crate::helpers::ADMIN_TOKEN,
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let (mut reader, mut writer) = stream.split();
    // More than the 1 MiB limit before the pause, and more than the sockets buffer after it.
    let split = 3 * 1024 * 1024 / 2;
    let send = async {
        writer.write_all(head.as_bytes()).await?;
        writer.write_all(&body.as_bytes()[..split]).await?;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        writer.write_all(&body.as_bytes()[split..]).await
    };
    let read = async {
        let mut answer = Vec::new();
        reader.read_to_end(&mut answer).await.map(|_| answer)
    };
    // Like many clients, it reads the answer once the whole request is sent.
    let (sent, answer) = tokio::time::timeout(crate::helpers::WAIT, async {
        let sent = send.await;
        (sent, read.await)
    })
    .await
    .expect("herald answers");
    sent.expect("the whole body is taken");
    let answer = String::from_utf8_lossy(&answer.expect("the answer, not a reset")).to_string();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"payload_too_large\""), "{answer}");
    app.stop().await;
    env.cleanup().await;
}

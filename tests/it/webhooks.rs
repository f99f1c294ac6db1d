//! Area B: projects' outgoing webhooks — signed, retried, logged, never lost.

use std::time::Duration;

use base64::Engine;
use herald::testkit::fake_github::FakeGithub;
use herald::testkit::git_repo::GitRepo;
use herald::testkit::receiver::{Receiver, Reply};
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{ADMIN_TOKEN, TestApp, TestEnv, WAIT, send_signed_push, wait_until};

both_backends!(
    push_reaches_the_receiver_signed_and_logged,
    failing_receivers_get_retries_at_the_right_times,
    creation_refuses_bad_urls_and_secrets_and_stores_nothing,
    strangers_can_neither_see_nor_delete_hooks,
    finished_deliveries_are_pruned_after_the_retention_period,
    the_delivery_log_is_pruned_in_the_background,
    https_receivers_must_present_a_trusted_certificate,
    a_receiver_that_stalls_in_its_body_is_judged_by_its_status,
);

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// Verifies a Standard Webhooks signature exactly as the spec's libraries do.
fn verify_standard_webhooks(
    secret: &str,
    id: &str,
    timestamp: &str,
    body: &str,
    header: &str,
) -> bool {
    use hmac::{Hmac, KeyInit, Mac};
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("base64 key");
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).expect("key");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    header
        .split(' ')
        .any(|sig| sig.strip_prefix("v1,") == Some(expected.as_str()))
}

fn verify_github(secret: &str, body: &str, header: &str) -> bool {
    header == herald::projects::signing::github_signature(secret, body.as_bytes())
}

#[test]
fn standard_webhooks_test_vector_verifies() {
    assert!(verify_standard_webhooks(
        SECRET,
        "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        "1649367553",
        r#"{"email":"test@example.com","username":"test_user"}"#,
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
    ));
    assert!(verify_github(
        "It's a Secret to Everybody",
        "Hello, World!",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    ));
}

/// Sends a signed GitHub push for `octo/app` moving `main` from `before` to a made-up commit,
/// checks that it was accepted, and returns the new head.
async fn push_signed(
    client: &reqwest::Client,
    base: &str,
    secret: &str,
    before: &str,
    i: usize,
    tag: &str,
) -> String {
    let delivery = format!("{tag}-{i}");
    send_signed_push(client, base, secret, "octo/app", before, i, &delivery).await
}

/// A loopback address nothing listens on: connections to it are refused.
fn closed_address() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
}

async fn create_project(app: &TestApp, repository: &str) -> Value {
    let (status, project) = app
        .admin(
            Method::POST,
            "/api/v1/projects",
            Some(json!({"owner": "octo", "name": "app", "repository": repository})),
        )
        .await;
    assert_eq!(status, 201, "{project}");
    project
}

/// The inbound secret of the tests built on [`push_app`].
const INBOUND: &str = "inbound";

/// herald with a project `octo/app` on a fake GitHub repository, taking signed push webhooks
/// (`push_signed` with [`INBOUND`]) and not polling; `extra` settings on top.
async fn push_app(env: &TestEnv, extra: &[(&str, &str)]) -> (FakeGithub, GitRepo, TestApp) {
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    github.add_repo("octo/app", &repo);
    let api = github.base_url.clone();
    let mut settings = vec![
        ("HERALD_GITHUB_API", api.as_str()),
        ("HERALD_GIT_WEBHOOK_SECRET", INBOUND),
        ("HERALD_POLL_INTERVAL", "1h"),
    ];
    settings.extend_from_slice(extra);
    let app = env.spawn(&settings).await;
    create_project(&app, "octo/app").await;
    (github, repo, app)
}

async fn create_hook(app: &TestApp, body: Value) -> (u16, Value) {
    app.admin(
        Method::POST,
        "/api/v1/projects/octo/app/webhooks",
        Some(body),
    )
    .await
}

async fn deliveries(app: &TestApp, hook_id: &str) -> Vec<Value> {
    deliveries_page(app, hook_id, "").await
}

/// A page of a hook's delivery log (`query`: `limit`, `before`).
async fn deliveries_page(app: &TestApp, hook_id: &str, query: &str) -> Vec<Value> {
    let (status, body) = app
        .admin(
            Method::GET,
            &format!("/api/v1/projects/octo/app/webhooks/{hook_id}/deliveries?{query}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["deliveries"].as_array().cloned().unwrap_or_default()
}

async fn push_reaches_the_receiver_signed_and_logged(env: TestEnv) {
    let receiver = Receiver::start().await;
    let repo = GitRepo::new();
    let app = env.spawn(&[]).await;
    let project = create_project(&app, &repo.url()).await;
    assert_eq!(
        project["branches"],
        json!("main"),
        "defaults to the default branch"
    );

    let (status, hook) =
        create_hook(&app, json!({"payload_url": receiver.url, "secret": SECRET})).await;
    assert_eq!(status, 201, "{hook}");
    assert!(
        hook.get("secret").is_none(),
        "a given secret is never echoed"
    );
    let hook_id = hook["id"].as_str().expect("id").to_string();

    // The ping, signed both ways.
    wait_until("the ping", WAIT, || async { receiver.count() >= 1 }).await;
    let ping = &receiver.received()[0];
    assert_eq!(ping.header("x-github-event"), "ping");
    assert!(verify_standard_webhooks(
        SECRET,
        ping.header("webhook-id"),
        ping.header("webhook-timestamp"),
        &ping.body,
        ping.header("webhook-signature")
    ));
    assert!(verify_github(
        SECRET,
        &ping.body,
        ping.header("x-hub-signature-256")
    ));

    // A push to the real repository.
    let before = repo.head("main");
    let shas = repo.push_commits(&[("a.txt", "1", "First"), ("b.txt", "2", "Second")]);
    wait_until("the push delivery", WAIT, || async {
        receiver.count() >= 2
    })
    .await;
    let push = &receiver.received()[1];
    assert_eq!(push.header("x-github-event"), "push");
    assert_eq!(push.header("content-type"), "application/json");
    assert!(
        push.header("user-agent").starts_with("herald-Hookshot/"),
        "{:?}",
        push.headers
    );
    assert_eq!(push.header("webhook-id"), push.header("x-github-delivery"));
    assert_eq!(push.header("x-github-hook-id"), hook_id);
    assert!(verify_standard_webhooks(
        SECRET,
        push.header("webhook-id"),
        push.header("webhook-timestamp"),
        &push.body,
        push.header("webhook-signature")
    ));
    assert!(verify_github(
        SECRET,
        &push.body,
        push.header("x-hub-signature-256")
    ));
    let payload: Value = serde_json::from_str(&push.body).expect("JSON payload");
    assert_eq!(payload["ref"], json!("refs/heads/main"), "ref is a string");
    assert_eq!(payload["before"], json!(before));
    assert_eq!(payload["after"], json!(shas[1]));
    assert_eq!(payload["forced"], json!(false));
    let commits = payload["commits"].as_array().expect("commits");
    assert_eq!(commits.len(), 2);
    assert_eq!(commits[0]["id"], json!(shas[0]));
    assert_eq!(commits[1]["message"], json!("Second"));
    for commit in commits {
        let timestamp = commit["timestamp"].as_str().expect("timestamp");
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
            "RFC 3339: {timestamp}"
        );
        assert_eq!(commit["author"]["name"], json!("Test Author"));
    }
    assert_eq!(commits[0]["added"], json!(["a.txt"]));
    assert_eq!(payload["head_commit"]["id"], json!(shas[1]));
    assert_eq!(payload["repository"]["full_name"], json!("octo/app"));

    // The log shows both deliveries with their attempt.
    app.wait_for_outbox_drained().await;
    let log = deliveries(&app, &hook_id).await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["event"], json!("push"));
    assert_eq!(log[0]["status"], json!("delivered"));
    assert_eq!(log[0]["attempts"][0]["status_code"], json!(204));
    assert_eq!(log[1]["event"], json!("ping"));

    // Redelivery sends the same message id again.
    let delivery_id = log[0]["id"].as_str().expect("id");
    let (status, _) = app
        .admin(
            Method::POST,
            &format!(
                "/api/v1/projects/octo/app/webhooks/{hook_id}/deliveries/{delivery_id}/redeliver"
            ),
            None,
        )
        .await;
    assert_eq!(status, 202);
    wait_until("the redelivery", WAIT, || async { receiver.count() >= 3 }).await;
    let again = &receiver.received()[2];
    assert_eq!(again.header("webhook-id"), push.header("webhook-id"));
    assert_eq!(again.body, push.body);

    // The page lists the hook with a delete button; deleting through the form works.
    let page = app
        .client
        .get(app.url("/octo/app/webhooks"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains(&receiver.url) && page.contains("<form") && page.contains("Delete"),
        "{page}"
    );
    let log_page = app
        .client
        .get(app.url(&format!("/octo/app/webhooks/{hook_id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("log page")
        .text()
        .await
        .expect("html");
    assert!(log_page.contains("HTTP 204"), "{log_page}");
    // In a browser holding the operator's cookie, the delete form needs its page's CSRF token.
    let mut browser = crate::web_pages::PageClient::new(&app);
    let login = browser.post_raw("/login", &[("token", ADMIN_TOKEN)]).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let delete = format!("/octo/app/webhooks/{hook_id}");
    let forged = browser.post_raw(&delete, &[]).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    browser.get("/octo/app/webhooks").await;
    let response = browser.post(&delete, &[]).await;
    assert_eq!(response.status, 303, "{}", response.body);
    let (_, hooks) = app
        .admin(Method::GET, "/api/v1/projects/octo/app/webhooks", None)
        .await;
    assert_eq!(hooks["webhooks"], json!([]));

    app.stop().await;
    env.cleanup().await;
}

async fn failing_receivers_get_retries_at_the_right_times(env: TestEnv) {
    let receiver = Receiver::start().await;
    let gone = Receiver::start().await;
    let repo = GitRepo::new();
    let app = env
        .spawn(&[
            ("HERALD_DELIVERY_TIMEOUT", "1s"),
            ("HERALD_RETRY_SCHEDULE", "200ms,200ms,200ms,200ms,200ms"),
        ])
        .await;
    create_project(&app, &repo.url()).await;
    // Ping OK, then the push meets 500, 429 + Retry-After 1, a hang past the timeout, then 200.
    receiver.script([
        Reply::Status(200),
        Reply::Status(500),
        Reply::StatusRetryAfter(429, 1),
        Reply::Hang(Duration::from_secs(3)),
        Reply::Status(200),
    ]);
    let (_, hook) = create_hook(&app, json!({"payload_url": receiver.url})).await;
    let hook_id = hook["id"].as_str().expect("id").to_string();
    assert!(
        hook["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_")),
        "generated secret shown once"
    );
    gone.set_always(Some(Reply::Status(410)));
    let (_, gone_hook) = create_hook(&app, json!({"payload_url": gone.url})).await;
    let gone_id = gone_hook["id"].as_str().expect("id").to_string();
    // A receiver that is not even listening.
    let closed = closed_address();
    let (_, refused_hook) = create_hook(
        &app,
        json!({"payload_url": format!("http://{closed}/hook")}),
    )
    .await;
    let refused_id = refused_hook["id"].as_str().expect("id").to_string();

    wait_until("pings", WAIT, || async { receiver.count() >= 1 }).await;
    repo.commit("a", "1", "Retried");
    app.wait_for_head("main", &repo.head("main")).await;
    wait_until("delivered after retries", WAIT, || async {
        deliveries(&app, &hook_id)
            .await
            .first()
            .is_some_and(|d| d["status"] == json!("delivered"))
    })
    .await;
    let push = deliveries(&app, &hook_id).await[0].clone();
    let attempts = push["attempts"].as_array().expect("attempts").clone();
    let codes: Vec<Value> = attempts.iter().map(|a| a["status_code"].clone()).collect();
    assert_eq!(
        codes,
        vec![json!(500), json!(429), Value::Null, json!(200)],
        "{push}"
    );
    assert!(
        attempts[2]["error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out")),
        "{push}"
    );
    assert_eq!(attempts[1]["response_body"], json!("slow down"));
    let at = |i: usize| {
        chrono::DateTime::parse_from_rfc3339(attempts[i]["attempted_at"].as_str().expect("time"))
            .expect("rfc3339")
    };
    assert!(
        (at(2) - at(1)).num_milliseconds() >= 1000,
        "Retry-After obeyed: {push}"
    );
    // Same message id on every attempt.
    let ids: Vec<String> = receiver.received()[1..]
        .iter()
        .map(|r| r.header("webhook-id").to_string())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    // The push's deliveries (two or three: the 410 hook may be disabled by its ping first)
    // share one stored payload; each retry, claimed back from the table, carries it whole and
    // signed.
    let secret = hook["secret"].as_str().expect("secret");
    let sent = &receiver.received()[1..];
    for request in sent {
        assert_eq!(request.body, sent[0].body);
        assert!(verify_standard_webhooks(
            secret,
            request.header("webhook-id"),
            request.header("webhook-timestamp"),
            &request.body,
            request.header("webhook-signature"),
        ));
    }
    let push: Value = serde_json::from_str(&sent[0].body).expect("json");
    assert_eq!(push["ref"], json!("refs/heads/main"));
    let (stored, pushes, shared): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM delivery_payloads), \
         (SELECT COUNT(*) FROM deliveries WHERE event_type = 'push'), \
         (SELECT COUNT(*) FROM deliveries WHERE event_type = 'push' AND payload = '' AND payload_id IS NOT NULL)",
    )
    .fetch_one(app.state.db.reader())
    .await
    .expect("payload rows");
    assert!(
        stored == 1 && pushes >= 2 && shared == pushes,
        "one body for the push's deliveries: {stored} stored, {shared} of {pushes} share it"
    );

    // 410 disables that hook.
    wait_until("the 410 hook disabled", WAIT, || async {
        let (_, hook) = app
            .admin(
                Method::GET,
                &format!("/api/v1/projects/octo/app/webhooks/{gone_id}"),
                None,
            )
            .await;
        hook["active"] == json!(false)
    })
    .await;
    let (_, disabled) = app
        .admin(
            Method::GET,
            &format!("/api/v1/projects/octo/app/webhooks/{gone_id}"),
            None,
        )
        .await;
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .is_some_and(|r| r.contains("410"))
    );

    // Connection refused: retried through the schedule, then failed; all logged.
    wait_until("the refused delivery to fail", WAIT, || async {
        deliveries(&app, &refused_id)
            .await
            .iter()
            .filter(|d| d["status"] == json!("failed"))
            .count()
            == 2
    })
    .await;
    let refused = deliveries(&app, &refused_id).await;
    let attempts = refused[0]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 6, "first try + 5 retries: {}", refused[0]);
    assert!(
        attempts
            .iter()
            .all(|a| a["error"].as_str().is_some_and(|e| e.contains("connect")))
    );

    // Recover everything that failed since a time: queued again.
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let (status, recovered) = app
        .admin(
            Method::POST,
            &format!("/api/v1/projects/octo/app/webhooks/{refused_id}/recover"),
            Some(json!({"since": since})),
        )
        .await;
    assert_eq!((status, recovered["recovered"].clone()), (202, json!(2)));
    let (status, error) = app
        .admin(
            Method::POST,
            &format!("/api/v1/projects/octo/app/webhooks/{refused_id}/recover"),
            Some(json!({"since": "yesterday"})),
        )
        .await;
    assert_eq!(status, 422, "{error}");

    app.stop().await;
    env.cleanup().await;
}

async fn creation_refuses_bad_urls_and_secrets_and_stores_nothing(env: TestEnv) {
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    github.add_repo("octo/app", &repo);
    let app = env
        .spawn(&[
            ("HERALD_GITHUB_API", github.base_url.as_str()),
            ("HERALD_ALLOW_PRIVATE_TARGETS", "false"),
        ])
        .await;
    create_project(&app, "octo/app").await;
    let long_url = format!("https://example.com/{}", "a".repeat(2000));
    let cases = [
        (json!({"payload_url": long_url}), "2000"),
        (
            json!({"payload_url": "https://example.com/hook", "secret": "s".repeat(251)}),
            "250",
        ),
        (json!({"payload_url": "ftp://example.com/hook"}), "http"),
        (json!({"payload_url": "not a url"}), "URL"),
        (
            json!({"payload_url": "http://127.0.0.1:9/hook"}),
            "HERALD_ALLOW_PRIVATE_TARGETS",
        ),
        (
            json!({"payload_url": "http://10.0.0.8/hook"}),
            "HERALD_ALLOW_PRIVATE_TARGETS",
        ),
        (
            json!({"payload_url": "http://localhost/hook"}),
            "HERALD_ALLOW_PRIVATE_TARGETS",
        ),
        (
            json!({"payload_url": "http://[::1]/hook"}),
            "HERALD_ALLOW_PRIVATE_TARGETS",
        ),
        (json!({"secret": "only a secret"}), "payload_url"),
    ];
    for (body, expected) in cases {
        let (status, answer) = create_hook(&app, body.clone()).await;
        assert_eq!(status, 422, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{body}: {message}");
    }
    // The form says the same on the page.
    let response = app
        .client
        .post(app.url("/octo/app/webhooks"))
        .bearer_auth(ADMIN_TOKEN)
        .form(&[("payloadUrl", "ftp://example.com/x"), ("secret", "")])
        .send()
        .await
        .expect("form");
    assert_eq!(response.status().as_u16(), 422);
    assert!(
        response
            .text()
            .await
            .expect("html")
            .contains("must be http or https")
    );
    // Bad JSON and bad project creations.
    let response = app
        .client
        .post(app.url("/api/v1/projects/octo/app/webhooks"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 400);
    for (body, expected_status, expected_code) in [
        (
            json!({"owner": "octo", "name": "app", "repository": "octo/app"}),
            409,
            "conflict",
        ),
        (
            json!({"owner": "bad owner", "name": "x", "repository": "octo/app"}),
            422,
            "validation_failed",
        ),
        (
            json!({"owner": "octo", "name": "x", "repository": "octo/missing"}),
            422,
            "validation_failed",
        ),
        (
            json!({"owner": "octo", "name": "y", "repository": "/local/path"}),
            422,
            "validation_failed",
        ),
    ] {
        let (status, answer) = app
            .admin(Method::POST, "/api/v1/projects", Some(body.clone()))
            .await;
        assert_eq!(status, expected_status, "{body}: {answer}");
        assert_eq!(
            answer["error"]["code"],
            json!(expected_code),
            "{body}: {answer}"
        );
    }
    let (_, hooks) = app
        .admin(Method::GET, "/api/v1/projects/octo/app/webhooks", None)
        .await;
    assert_eq!(hooks["webhooks"], json!([]));
    let (_, projects) = app.admin(Method::GET, "/api/v1/projects", None).await;
    assert_eq!(projects["projects"].as_array().map(Vec::len), Some(1));
    assert_eq!(app.count("SELECT COUNT(*) FROM deliveries").await, 0);

    app.stop().await;
    env.cleanup().await;
}

async fn strangers_can_neither_see_nor_delete_hooks(env: TestEnv) {
    let receiver = Receiver::start().await;
    let repo = GitRepo::new();
    let app = env.spawn(&[]).await;
    create_project(&app, &repo.url()).await;
    let (_, hook) = create_hook(&app, json!({"payload_url": receiver.url})).await;
    let hook_id = hook["id"].as_str().expect("id").to_string();
    let anonymous = reqwest::Client::new();
    for (method, path) in [
        (Method::GET, "/octo/app/webhooks".to_string()),
        (Method::GET, format!("/octo/app/webhooks/{hook_id}")),
        (Method::POST, format!("/octo/app/webhooks/{hook_id}")),
        (Method::DELETE, format!("/octo/app/webhooks/{hook_id}")),
        (Method::POST, "/octo/app/webhooks".to_string()),
    ] {
        let response = anonymous
            .request(method.clone(), app.url(&path))
            .header("accept", "application/json")
            .header("cookie", "herald_admin=guess")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 404, "{method} {path}");
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            !body.to_string().contains(&receiver.url),
            "nothing leaked: {body}"
        );
    }
    // Unknown projects look the same as someone else's.
    let response = anonymous
        .get(app.url("/nobody/nothing/webhooks"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 404);
    let (_, hooks) = app
        .admin(Method::GET, "/api/v1/projects/octo/app/webhooks", None)
        .await;
    assert_eq!(hooks["webhooks"].as_array().map(Vec::len), Some(1));
    // JSON on the reference route for the owner.
    let response = app
        .client
        .get(app.url("/octo/app/webhooks"))
        .bearer_auth(ADMIN_TOKEN)
        .header("accept", "application/json")
        .send()
        .await
        .expect("request");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["webhooks"][0]["payload_url"], json!(receiver.url));
    assert!(
        !body.to_string().contains("whsec_"),
        "secrets are never listed"
    );

    app.stop().await;
    env.cleanup().await;
}

both_backends!(private_targets_are_refused_after_dns_at_creation_and_send_time);

/// The machine's own name, when it resolves to a loopback or private address (as /etc/hosts
/// usually makes it): a public-looking name that points inside.
async fn inward_hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()?
        .trim()
        .to_string();
    let inward = tokio::net::lookup_host((name.as_str(), 80))
        .await
        .ok()?
        .any(|a| herald::watch::repo::is_private_ip(a.ip()));
    inward
        .then_some(name)
        .filter(|n| !herald::watch::repo::is_private_host(n))
}

async fn private_targets_are_refused_after_dns_at_creation_and_send_time(env: TestEnv) {
    let Some(host) = inward_hostname().await else {
        eprintln!("SKIPPED: this machine's hostname does not resolve to a private address");
        return;
    };
    let receiver = Receiver::start().await;
    let port = receiver
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .expect("port")
        .to_string();
    let inward_url = format!("http://{host}:{port}/hook");
    let repo = GitRepo::new();

    // Created while private targets are allowed (an intranet), the hook works...
    let app = env.spawn(&[]).await;
    create_project(&app, &repo.url()).await;
    let (status, hook) = create_hook(&app, json!({"payload_url": inward_url})).await;
    assert_eq!(status, 201, "{hook}");
    let hook_id = hook["id"].as_str().expect("id").to_string();
    wait_until("the ping", WAIT, || async { receiver.count() == 1 }).await;
    app.stop().await;

    // ...but once they are not, the name is refused at creation, and at send time after DNS.
    let github = FakeGithub::start().await;
    let app = env
        .spawn(&[
            ("HERALD_ALLOW_PRIVATE_TARGETS", "false"),
            ("HERALD_GITHUB_API", github.base_url.as_str()),
        ])
        .await;
    let (status, answer) = create_hook(&app, json!({"payload_url": inward_url})).await;
    assert_eq!(status, 422, "{answer}");
    // Refused by name, without saying what the name resolves to (issue 25).
    assert_eq!(
        answer["error"]["message"],
        json!(format!(
            "payload_url: {host} is a loopback, private or reserved address; set HERALD_ALLOW_PRIVATE_TARGETS=true to allow it"
        )),
        "{answer}"
    );
    let (status, _) = app
        .admin(
            Method::POST,
            &format!(
                "/api/v1/projects/octo/app/webhooks/{hook_id}/deliveries/{}/redeliver",
                deliveries(&app, &hook_id).await[0]["id"]
                    .as_str()
                    .expect("id")
            ),
            None,
        )
        .await;
    assert_eq!(status, 202);
    wait_until("the refusal", WAIT, || async {
        deliveries(&app, &hook_id).await[0]["status"] == json!("failed")
    })
    .await;
    let log = deliveries(&app, &hook_id).await;
    let last = log[0]["attempts"]
        .as_array()
        .and_then(|a| a.last().cloned())
        .expect("attempt");
    assert!(
        last["error"]
            .as_str()
            .is_some_and(|e| e.contains("HERALD_ALLOW_PRIVATE_TARGETS")),
        "{last}"
    );
    assert_eq!(receiver.count(), 1, "nothing reached the private address");
    app.stop().await;
    env.cleanup().await;
}

both_backends!(kill_9_with_deliveries_queued_and_in_flight_loses_nothing);

async fn kill_9_with_deliveries_queued_and_in_flight_loses_nothing(env: TestEnv) {
    use herald::testkit::fake_telegram::FakeTelegram;
    const PUSHES: usize = 2000;
    let telegram = FakeTelegram::start().await;
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    github.add_repo("octo/app", &repo);
    let receiver = Receiver::start().await;
    receiver.forget_bodies();
    // A slow receiver (one at a time, 50 ms each) so that most events are still queued at the crash.
    receiver.set_always(Some(Reply::Delay(Duration::from_millis(50))));
    let secret = "inbound-secret";
    let extra = [
        ("HERALD_GITHUB_API", github.base_url.as_str()),
        ("HERALD_GIT_WEBHOOK_SECRET", secret),
        ("HERALD_ADMIN_TOKEN", ADMIN_TOKEN),
        ("HERALD_POLL_INTERVAL", "1h"),
    ];
    let (mut first, address) = crate::delivery::start_binary_with(&env, &telegram, &extra).await;
    let client = reqwest::Client::new();
    let admin = |path: &str, body: Value| {
        client
            .post(format!("{address}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let response = admin(
        "/api/v1/projects",
        json!({"owner": "octo", "name": "app", "repository": "octo/app"}),
    )
    .await
    .expect("project");
    assert_eq!(response.status().as_u16(), 201);
    let response = admin(
        "/api/v1/projects/octo/app/webhooks",
        json!({"payload_url": receiver.url, "max_concurrency": 1}),
    )
    .await
    .expect("hook");
    assert_eq!(response.status().as_u16(), 201);

    // Push events accepted (durably) as fast as they come; kill -9 while most are queued.
    let mut before = repo.head("main");
    for i in 0..PUSHES {
        before = push_signed(&client, &address, secret, &before, i, "kill").await;
    }
    wait_until("deliveries to be flowing", WAIT, || async {
        receiver.count() >= 10
    })
    .await;
    first.start_kill().expect("kill -9");
    let _ = first.wait().await;
    let delivered_before_crash = receiver.count();
    assert!(
        delivered_before_crash + 1000 <= PUSHES,
        "the crash came while a thousand or more were queued"
    );

    receiver.set_always(None);
    let (mut second, address) = crate::delivery::start_binary_with(&env, &telegram, &extra).await;
    let hooks: Value = client
        .get(format!("{address}/api/v1/projects/octo/app/webhooks"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("hooks")
        .json()
        .await
        .expect("json");
    let hook_id = hooks["webhooks"][0]["id"].as_str().expect("id").to_string();
    let response = client
        .patch(format!(
            "{address}/api/v1/projects/octo/app/webhooks/{hook_id}"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"max_concurrency": 16}))
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status().as_u16(), 200);
    wait_until(
        "every event at the receiver",
        Duration::from_secs(120),
        || async {
            let ids: std::collections::HashSet<String> = receiver
                .received()
                .iter()
                .map(|r| r.header("webhook-id").to_string())
                .collect();
            ids.len() == PUSHES + 1
        },
    )
    .await;
    let received = receiver.received();
    let distinct: std::collections::HashSet<&str> =
        received.iter().map(|r| r.header("webhook-id")).collect();
    let duplicates = received.len() - distinct.len();
    eprintln!(
        "{PUSHES} pushes + ping: {} received before the crash, {} duplicates (same id) after restart",
        delivered_before_crash, duplicates
    );
    assert!(
        duplicates <= 64,
        "only what was in flight may repeat: {duplicates}"
    );
    second.start_kill().expect("kill");
    let _ = second.wait().await;
    env.cleanup().await;
}

both_backends!(per_hook_rate_and_concurrency_limits_are_enforced);

async fn per_hook_rate_and_concurrency_limits_are_enforced(env: TestEnv) {
    let (_github, repo, app) = push_app(&env, &[]).await;
    let limited = Receiver::start().await;
    let serial = Receiver::start().await;
    serial.set_always(Some(Reply::Delay(Duration::from_millis(200))));
    let (status, _) = create_hook(
        &app,
        json!({"payload_url": limited.url, "rate_per_second": 2}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = create_hook(
        &app,
        json!({"payload_url": serial.url, "max_concurrency": 1}),
    )
    .await;
    assert_eq!(status, 201);
    wait_until("pings", WAIT, || async {
        limited.count() == 1 && serial.count() == 1
    })
    .await;

    let mut before = repo.head("main");
    for i in 0..6 {
        before = push_signed(&app.client, &app.address, INBOUND, &before, i, "limit").await;
    }
    wait_until("all pushes at both receivers", WAIT, || async {
        limited.count() == 7 && serial.count() == 7
    })
    .await;

    // 2 per second (a burst of 2, then one every 500 ms): six pushes take at least ~2 s.
    let arrivals: Vec<_> = limited.received().iter().skip(1).map(|r| r.at).collect();
    let spread = arrivals[5].duration_since(arrivals[0]);
    assert!(
        spread >= Duration::from_millis(1400),
        "rate limit enforced: 6 deliveries in {spread:?}"
    );
    // One at a time: each 200 ms answer finishes before the next request starts.
    let serial_arrivals: Vec<_> = serial.received().iter().skip(1).map(|r| r.at).collect();
    for pair in serial_arrivals.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(
            gap >= Duration::from_millis(190),
            "concurrency 1 enforced: gap {gap:?}"
        );
    }
    app.stop().await;
    env.cleanup().await;
}

both_backends!(who_hears_of_a_push_follows_every_change_to_hooks);

/// The push path keeps each repository's hooks and subscribers in memory (push::ingest); any
/// change — through the API, or straight in the database by an operator — is seen by the next
/// push.
async fn who_hears_of_a_push_follows_every_change_to_hooks(env: TestEnv) {
    let (_github, repo, app) = push_app(&env, &[]).await;
    let first = Receiver::start().await;
    let second = Receiver::start().await;
    let (status, _) = create_hook(&app, json!({"payload_url": first.url})).await;
    assert_eq!(status, 201);
    wait_until("the first ping", WAIT, || async { first.count() == 1 }).await;
    let mut head = repo.head("main");
    head = push_signed(&app.client, &app.address, INBOUND, &head, 0, "routing").await;
    wait_until("push 0 at the first hook", WAIT, || async {
        first.count() == 2
    })
    .await;

    // A hook added through the API hears the next push.
    let (status, second_hook) = create_hook(&app, json!({"payload_url": second.url})).await;
    assert_eq!(status, 201);
    let second_id = second_hook["id"].as_str().expect("id").to_string();
    wait_until("the second ping", WAIT, || async { second.count() == 1 }).await;
    head = push_signed(&app.client, &app.address, INBOUND, &head, 1, "routing").await;
    wait_until("push 1 at both hooks", WAIT, || async {
        first.count() == 3 && second.count() == 2
    })
    .await;

    // An operator turns the first hook off in the database itself.
    sqlx::query("UPDATE webhooks SET active = 0 WHERE payload_url = $1")
        .bind(&first.url)
        .execute(app.state.db.writer())
        .await
        .expect("update");
    head = push_signed(&app.client, &app.address, INBOUND, &head, 2, "routing").await;
    wait_until("push 2 at the second hook", WAIT, || async {
        second.count() == 3
    })
    .await;

    // The second hook turned off through the API: nobody hears push 3.
    let (status, patched) = app
        .admin(
            Method::PATCH,
            &format!("/api/v1/projects/octo/app/webhooks/{second_id}"),
            Some(json!({"active": false})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    push_signed(&app.client, &app.address, INBOUND, &head, 3, "routing").await;
    app.wait_for_outbox_drained().await;
    assert_eq!(
        (first.count(), second.count()),
        (3, 3),
        "only active hooks hear a push"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE event_type = 'push'")
            .await,
        4
    );
    app.stop().await;
    env.cleanup().await;
}

both_backends!(a_limit_changed_in_the_database_reaches_the_sends);

/// Sends take a hook's limits from memory; a change made in the database by anyone (another
/// node, an operator's SQL) governs the sends within seconds (the background refresh reads the
/// settings every second; a send reads them itself when they are older than three), even while
/// the hook's deliveries are queued behind its old limit.
async fn a_limit_changed_in_the_database_reaches_the_sends(env: TestEnv) {
    const PUSHES: usize = 12;
    const HOLD: Duration = Duration::from_millis(400);
    let (_github, repo, app) = push_app(&env, &[]).await;
    let receiver = Receiver::start().await;
    let (status, _) = create_hook(
        &app,
        json!({"payload_url": receiver.url, "max_concurrency": 1}),
    )
    .await;
    assert_eq!(status, 201);
    wait_until("the ping", WAIT, || async { receiver.count() == 1 }).await;

    // One at a time, each held 400 ms: twelve pushes would take ~5 s.
    receiver.set_always(Some(Reply::Delay(HOLD)));
    let mut head = repo.head("main");
    for i in 0..PUSHES {
        head = push_signed(&app.client, &app.address, INBOUND, &head, i, "limits").await;
    }
    wait_until("two pushes delivered one after the other", WAIT, || async {
        receiver.count() >= 3
    })
    .await;
    let changed_after = receiver.count() - 1;
    sqlx::query("UPDATE webhooks SET max_concurrency = $1 WHERE payload_url = $2")
        .bind(PUSHES as i64)
        .bind(&receiver.url)
        .execute(app.state.db.writer())
        .await
        .expect("update");
    let changed_at = std::time::Instant::now();
    wait_until("every push delivered", WAIT, || async {
        receiver.count() > PUSHES
    })
    .await;

    // Requests in the order they arrived (the log is in the order they were answered).
    let mut arrivals: Vec<_> = receiver.received().iter().skip(1).map(|r| r.at).collect();
    arrivals.sort();
    let gaps: Vec<Duration> = arrivals
        .windows(2)
        .map(|pair| pair[1].duration_since(pair[0]))
        .collect();
    // Under the old limit a request starts only after the previous one was answered.
    for gap in &gaps[..changed_after - 1] {
        assert!(
            *gap >= HOLD - Duration::from_millis(10),
            "concurrency 1: {gaps:?}"
        );
    }
    // Under the new one, requests overlap, within seconds of the change.
    let overlapping = (changed_after..arrivals.len())
        .find(|&i| gaps[i - 1] < HOLD / 2)
        .unwrap_or_else(|| panic!("the raised limit was never used: {gaps:?}"));
    let after = arrivals[overlapping].saturating_duration_since(changed_at);
    assert!(
        after < Duration::from_secs(5),
        "the raised limit took {after:?} to reach the sends"
    );
    app.stop().await;
    env.cleanup().await;
}

both_backends!(a_hook_whose_permits_stay_taken_is_tried_less_and_less_often);

/// A receiver that holds every request leaves its hook (one permit) with none free; the
/// hook's queued deliveries are then put back for longer the longer that lasts, rather than
/// claimed, tried and put back every 50 ms (a write each time, for its whole backlog).
async fn a_hook_whose_permits_stay_taken_is_tried_less_and_less_often(env: TestEnv) {
    // A delivery timeout longer than the receiver holds the ping: the permit stays taken 5 s.
    let (_github, repo, app) = push_app(&env, &[("HERALD_DELIVERY_TIMEOUT", "10s")]).await;
    let holding = Receiver::start().await;
    holding.set_always(Some(Reply::Delay(Duration::from_secs(5))));
    let (status, hook) = create_hook(
        &app,
        json!({"payload_url": holding.url, "max_concurrency": 1}),
    )
    .await;
    assert_eq!(status, 201);
    let hook_id = hook["id"].as_str().unwrap_or_default().to_string();
    // The ping takes the one permit (held 5 s); the push waits for it.
    push_signed(
        &app.client,
        &app.address,
        INBOUND,
        &repo.head("main"),
        0,
        "held",
    )
    .await;
    // A put-back delivery that was never attempted waits `next_attempt_at - updated_at`: 50 ms
    // at first, a quarter of the time without a free permit later (100 ms after 0.4 s).
    wait_until(
        "a queued delivery waits longer than at first",
        WAIT,
        || async {
            app.count(
                "SELECT COUNT(*) FROM deliveries WHERE status = 'pending' AND attempts = 0 \
             AND next_attempt_at - updated_at >= 100",
            )
            .await
                == 1
        },
    )
    .await;
    // The log lists deliveries not yet tried (the held ping, the waiting push) newest first,
    // page by page, though the hook's log index only holds them once tried.
    let log = deliveries(&app, &hook_id).await;
    let summary: Vec<(&str, &str, i64)> = log
        .iter()
        .map(|d| {
            (
                d["event"].as_str().unwrap_or_default(),
                d["status"].as_str().unwrap_or_default(),
                d["attempt_count"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("push", "pending", 0), ("ping", "pending", 0)],
        "{log:?}"
    );
    let first = deliveries_page(&app, &hook_id, "limit=1").await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["id"], log[0]["id"]);
    let before = first[0]["id"].as_str().unwrap_or_default();
    let rest = deliveries_page(&app, &hook_id, &format!("limit=1&before={before}")).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["id"], log[1]["id"]);
    app.stop().await;
    env.cleanup().await;
}

both_backends!(projects_belong_to_accounts_and_owners_hear_of_disabled_hooks);

async fn projects_belong_to_accounts_and_owners_hear_of_disabled_hooks(env: TestEnv) {
    use herald::testkit::fake_smtp::FakeSmtp;
    let smtp = FakeSmtp::start().await;
    let gone = Receiver::start().await;
    gone.set_always(Some(Reply::Status(410)));
    let repo = GitRepo::new();
    let app = env.spawn(&[("HERALD_SMTP_URL", smtp.url.as_str())]).await;
    let alice = crate::accounts::sign_up(
        &app,
        &smtp,
        "alice",
        "alice@example.com",
        "alice's password",
    )
    .await;
    let bob =
        crate::accounts::sign_up(&app, &smtp, "bob", "bob@example.com", "bob's password!").await;
    let as_user = |token: &str, method: Method, path: &str, body: Option<Value>| {
        let mut request = app.client.request(method, app.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
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

    // Alice's own project, owner taken from her account.
    let (status, project) = as_user(
        &alice,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "app", "repository": repo.url()})),
    )
    .await;
    assert_eq!(status, 201, "{project}");
    assert_eq!(project["owner"], json!("alice"));
    let (status, _) = as_user(
        &bob,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"owner": "alice", "name": "x", "repository": repo.url()})),
    )
    .await;
    assert_eq!(status, 403, "an account creates only its own projects");

    // Bob sees nothing of it.
    let (_, list) = as_user(&bob, Method::GET, "/api/v1/projects", None).await;
    assert_eq!(list["projects"], json!([]));
    let (status, _) = as_user(
        &bob,
        Method::GET,
        "/api/v1/projects/alice/app/webhooks",
        None,
    )
    .await;
    assert_eq!(status, 404);
    let response = app
        .client
        .get(app.url("/alice/app/webhooks"))
        .bearer_auth(&bob)
        .header("accept", "application/json")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 404);

    // Alice's hook answers 410: it is disabled and Alice is told by mail.
    let (status, hook) = as_user(
        &alice,
        Method::POST,
        "/api/v1/projects/alice/app/webhooks",
        Some(json!({"payload_url": gone.url})),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    let (status, hooks) = as_user(
        &bob,
        Method::POST,
        "/alice/app/webhooks",
        Some(json!({"payload_url": gone.url})),
    )
    .await;
    assert_eq!(status, 404, "{hooks}");
    wait_until("the owner's mail", WAIT, || async {
        smtp.mails().iter().any(|m| {
            m.to == ["alice@example.com".to_string()] && m.data.contains("webhook disabled")
        })
    })
    .await;
    let mail = smtp
        .mails()
        .into_iter()
        .find(|m| m.data.contains("webhook disabled"))
        .expect("mail");
    assert!(mail.body_text().contains("410"), "{}", mail.body_text());
    let (_, hooks) = as_user(
        &alice,
        Method::GET,
        "/api/v1/projects/alice/app/webhooks",
        None,
    )
    .await;
    assert_eq!(hooks["webhooks"][0]["active"], json!(false));

    app.stop().await;
    env.cleanup().await;
}

both_backends!(a_hook_failing_for_five_days_is_disabled_and_its_owner_told);

async fn a_hook_failing_for_five_days_is_disabled_and_its_owner_told(env: TestEnv) {
    use herald::testkit::fake_smtp::FakeSmtp;
    let smtp = FakeSmtp::start().await;
    let failing = Receiver::start().await;
    failing.set_always(Some(Reply::Status(500)));
    let repo = GitRepo::new();
    let app = env
        .spawn(&[
            ("HERALD_SMTP_URL", smtp.url.as_str()),
            (
                "HERALD_RETRY_SCHEDULE",
                "300ms,300ms,300ms,300ms,300ms,300ms",
            ),
        ])
        .await;
    let alice = crate::accounts::sign_up(
        &app,
        &smtp,
        "alice",
        "alice@example.com",
        "alice's password",
    )
    .await;
    let post = |path: &str, body: Value| {
        app.client
            .post(app.url(path))
            .bearer_auth(&alice)
            .json(&body)
            .send()
    };
    let response = post(
        "/api/v1/projects",
        json!({"name": "app", "repository": repo.url()}),
    )
    .await
    .expect("project");
    assert_eq!(response.status().as_u16(), 201);
    let hook: Value = post(
        "/api/v1/projects/alice/app/webhooks",
        json!({"payload_url": failing.url}),
    )
    .await
    .expect("hook")
    .json()
    .await
    .expect("json");
    let hook_id: i64 = hook["id"].as_str().expect("id").parse().expect("id");

    // The first failure starts the streak; pretend it started six days ago.
    wait_until("a failed attempt", WAIT, || async { failing.count() >= 1 }).await;
    wait_until("the streak recorded", WAIT, || async {
        app.count("SELECT COUNT(*) FROM webhooks WHERE failing_since IS NOT NULL")
            .await
            == 1
    })
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM webhooks WHERE active = 1")
            .await,
        1,
        "one bad day is not enough"
    );
    let six_days_ago = herald::ids::now_ms() - 6 * 24 * 3600 * 1000;
    sqlx::query("UPDATE webhooks SET failing_since = $1 WHERE id = $2")
        .bind(six_days_ago)
        .bind(hook_id)
        .execute(app.state.db.writer())
        .await
        .expect("age the streak");

    // The next failure disables the hook, cancels what waits, and mails the owner.
    wait_until("the hook disabled", WAIT, || async {
        app.count("SELECT COUNT(*) FROM webhooks WHERE active = 0")
            .await
            == 1
    })
    .await;
    let reason: String = sqlx::query_scalar("SELECT disabled_reason FROM webhooks WHERE id = $1")
        .bind(hook_id)
        .fetch_one(app.state.db.reader())
        .await
        .expect("reason");
    assert!(reason.contains("five days"), "{reason}");
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM deliveries WHERE webhook_id IS NOT NULL AND status = 'pending'"
        )
        .await,
        0
    );
    wait_until("the owner's mail", WAIT, || async {
        smtp.mails().iter().any(|m| {
            m.to == ["alice@example.com".to_string()] && m.body_text().contains("five days")
        })
    })
    .await;

    app.stop().await;
    env.cleanup().await;
}

async fn finished_deliveries_are_pruned_after_the_retention_period(env: TestEnv) {
    use herald::outbox::retention::{Pruned, prune};
    let receiver = Receiver::start().await;
    let closed = closed_address();
    let repo = GitRepo::new();
    // The passes are run by the test (`prune`), so that what each one sees is decided here;
    // the background task has its own test.
    let app = env
        .spawn(&[
            ("HERALD_DELIVERY_RETENTION", "forever"),
            ("HERALD_RETRY_SCHEDULE", "1h"),
        ])
        .await;
    let db = app.state.db.clone();
    create_project(&app, &repo.url()).await;
    let (_, hook) = create_hook(&app, json!({"payload_url": receiver.url})).await;
    let hook_id = hook["id"].as_str().expect("id").to_string();
    // A receiver that is not listening: its deliveries wait an hour for their retry.
    let (_, waiting) = create_hook(
        &app,
        json!({"payload_url": format!("http://{closed}/hook")}),
    )
    .await;
    let waiting_id = waiting["id"].as_str().expect("id").to_string();
    wait_until("the ping", WAIT, || async { receiver.count() >= 1 }).await;
    repo.commit("a.txt", "1", "Kept for a while");
    wait_until("the push delivered", WAIT, || async {
        receiver.count() >= 2
    })
    .await;
    wait_until("both logs complete", WAIT, || async {
        let done = deliveries(&app, &hook_id).await;
        let failed_once = deliveries(&app, &waiting_id).await;
        done.len() == 2
            && done.iter().all(|d| d["status"] == "delivered")
            && failed_once.len() == 2
            && failed_once
                .iter()
                .all(|d| d["attempts"].as_array().is_some_and(|a| a.len() == 1))
    })
    .await;
    let finished_at = std::time::Instant::now();
    let log = deliveries(&app, &hook_id).await;
    let (push_id, ping_id) = (
        log[0]["id"].as_str().expect("id").to_string(),
        log[1]["id"].as_str().expect("id").to_string(),
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM delivery_payloads").await,
        1,
        "the push's body, stored once for both hooks"
    );
    assert_eq!(
        prune(&db, Duration::from_secs(3600)).await.expect("prune"),
        Pruned::default(),
        "nothing has been finished for an hour"
    );

    // Time passes: three seconds after the deliveries finished, the ping is sent again.
    tokio::time::sleep_until((finished_at + Duration::from_secs(3)).into()).await;
    let (status, _) = app
        .admin(
            Method::POST,
            &format!("/api/v1/projects/octo/app/webhooks/{hook_id}/deliveries/{ping_id}/redeliver"),
            None,
        )
        .await;
    assert_eq!(status, 202);
    wait_until("the redelivered ping", WAIT, || async {
        receiver.count() >= 3
    })
    .await;
    wait_until("the redelivery logged", WAIT, || async {
        deliveries(&app, &hook_id).await.iter().any(|d| {
            d["id"] == json!(ping_id)
                && d["status"] == "delivered"
                && d["attempts"].as_array().is_some_and(|a| a.len() == 2)
        })
    })
    .await;
    let now = herald::ids::now_ms();
    for (id, at) in [
        ("last-month", now - 30 * 86_400_000),
        ("yesterday", now - 86_400_000),
    ] {
        sqlx::query("INSERT INTO inbound_deliveries (source, delivery_id, received_at) VALUES ('github', $1, $2)")
            .bind(id)
            .bind(at)
            .execute(db.writer())
            .await
            .expect("inbound id");
    }

    // Kept for two seconds: the push delivery (finished three seconds ago) goes with its
    // attempt; the ping, finished again just now, stays with both attempts; the deliveries
    // waiting for their retry stay, and so does the body they still point at. Inbound ids are
    // kept a week whatever the retention.
    let pruned = prune(&db, Duration::from_secs(2)).await.expect("prune");
    assert_eq!(
        pruned,
        Pruned {
            deliveries: 1,
            attempts: 1,
            payloads: 0,
            inbound: 1
        }
    );
    let log = deliveries(&app, &hook_id).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["id"], json!(ping_id));
    let attempts: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM delivery_attempts WHERE delivery_id = $1")
            .bind(push_id.parse::<i64>().expect("numeric id"))
            .fetch_one(db.reader())
            .await
            .expect("attempts");
    assert_eq!(attempts, 0, "a pruned delivery's attempts go with it");
    let waiting_log = deliveries(&app, &waiting_id).await;
    assert_eq!(waiting_log.len(), 2, "{waiting_log:?}");
    assert!(waiting_log.iter().all(|d| d["status"] == "pending"));
    assert_eq!(app.count("SELECT COUNT(*) FROM delivery_payloads").await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM inbound_deliveries WHERE delivery_id = 'yesterday'")
            .await,
        1
    );

    // Deleting the waiting hook cancels its deliveries; once that is more than two seconds old
    // they go, and the stored body with them.
    let (status, _) = app
        .admin(
            Method::DELETE,
            &format!("/api/v1/projects/octo/app/webhooks/{waiting_id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let cancelled_at = std::time::Instant::now();
    assert_eq!(
        prune(&db, Duration::from_secs(2))
            .await
            .expect("prune")
            .deliveries,
        0,
        "cancelled just now"
    );
    tokio::time::sleep_until((cancelled_at + Duration::from_secs(3)).into()).await;
    // The two cancelled deliveries (an attempt each) and, by now, the redelivered ping (two).
    let pruned = prune(&db, Duration::from_secs(2)).await.expect("prune");
    assert_eq!(
        (pruned.deliveries, pruned.attempts, pruned.payloads),
        (3, 4, 1),
        "{pruned:?}"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM delivery_payloads").await, 0);

    app.stop().await;
    env.cleanup().await;
}

async fn the_delivery_log_is_pruned_in_the_background(env: TestEnv) {
    let app = env.spawn(&[("HERALD_DELIVERY_RETENTION", "1s")]).await;
    sqlx::query("INSERT INTO inbound_deliveries (source, delivery_id, received_at) VALUES ('github', 'old', $1)")
        .bind(herald::ids::now_ms() - 8 * 86_400_000)
        .execute(app.state.db.writer())
        .await
        .expect("inbound id");
    wait_until("the eight-day-old inbound id pruned", WAIT, || async {
        app.count("SELECT COUNT(*) FROM inbound_deliveries").await == 0
    })
    .await;
    app.stop().await;
    env.cleanup().await;
}

/// A TLS receiver with a self-signed certificate for 127.0.0.1 (tests/fixtures/tls): it counts
/// the handshakes clients start and the requests that get through.
struct UntrustedTlsReceiver {
    url: String,
    handshakes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl UntrustedTlsReceiver {
    async fn start() -> UntrustedTlsReceiver {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
        let cert = CertificateDer::from_pem_file(dir.join("cert.pem")).expect("cert");
        let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).expect("key");
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("https://{}/hook", listener.local_addr().expect("addr"));
        let handshakes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (h, r) = (handshakes.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                h.fetch_add(1, Ordering::SeqCst);
                let (acceptor, r) = (acceptor.clone(), r.clone());
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let mut buf = [0u8; 4096];
                        if tls.read(&mut buf).await.is_ok_and(|n| n > 0) {
                            r.fetch_add(1, Ordering::SeqCst);
                            let _ = tls
                                .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                                .await;
                        }
                    }
                });
            }
        });
        UntrustedTlsReceiver {
            url,
            handshakes,
            requests,
        }
    }
}

/// https hooks are sent over TLS, and a certificate no trusted authority signed is refused
/// before anything is sent: the attempt says why, and the delivery is retried (a certificate
/// can be fixed), not lost.
async fn https_receivers_must_present_a_trusted_certificate(env: TestEnv) {
    use std::sync::atomic::Ordering;

    let receiver = UntrustedTlsReceiver::start().await;
    let repo = GitRepo::new();
    let app = env.spawn(&[("HERALD_RETRY_SCHEDULE", "200ms,200ms")]).await;
    create_project(&app, &repo.url()).await;
    let (status, hook) = create_hook(&app, json!({"payload_url": receiver.url})).await;
    assert_eq!(status, 201, "{hook}");
    let hook_id = hook["id"].as_str().expect("id").to_string();

    wait_until("the ping to fail", WAIT, || async {
        deliveries(&app, &hook_id)
            .await
            .first()
            .is_some_and(|d| d["status"] == json!("failed"))
    })
    .await;
    let log = deliveries(&app, &hook_id).await;
    let attempts = log[0]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 3, "first try + 2 retries: {}", log[0]);
    for attempt in attempts {
        let error = attempt["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("could not connect") && error.contains("certificate"),
            "{attempt}"
        );
    }
    assert!(receiver.handshakes.load(Ordering::SeqCst) >= 3);
    assert_eq!(
        receiver.requests.load(Ordering::SeqCst),
        0,
        "nothing was sent"
    );
    app.stop().await;
    env.cleanup().await;
}

/// A receiver that answers 200 at once but then stalls in the middle of its body, holding the
/// connection: the delivery counts as delivered (its status is the answer), the part of the body
/// that came is logged, and it is not sent again.
async fn a_receiver_that_stalls_in_its_body_is_judged_by_its_status(env: TestEnv) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let requests = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                if socket.read(&mut buf).await.is_ok_and(|n| n > 0) {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let head =
                        "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nreceived, logging slowly";
                    let _ = socket.write_all(head.as_bytes()).await;
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
            });
        }
    });
    let repo = GitRepo::new();
    let app = env.spawn(&[]).await;
    create_project(&app, &repo.url()).await;
    let (status, hook) = create_hook(&app, json!({"payload_url": url})).await;
    assert_eq!(status, 201, "{hook}");
    let hook_id = hook["id"].as_str().expect("id").to_string();

    wait_until("the ping to be delivered", WAIT, || async {
        deliveries(&app, &hook_id)
            .await
            .first()
            .is_some_and(|d| d["status"] == json!("delivered"))
    })
    .await;
    let log = deliveries(&app, &hook_id).await;
    let attempts = log[0]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{}", log[0]);
    assert_eq!(attempts[0]["status_code"], json!(200));
    assert_eq!(
        attempts[0]["response_body"],
        json!("received, logging slowly")
    );
    assert_eq!(requests.load(Ordering::SeqCst), 1, "sent once");
    app.stop().await;
    env.cleanup().await;
}

both_backends!(
    a_hook_deleted_while_its_send_is_in_flight_stays_cancelled,
    a_410_in_flight_does_not_disable_again_a_hook_turned_off_by_hand,
);

/// A receiver that tells the test when a request has arrived, then holds it until the test
/// lets it answer with its status.
struct HeldReceiver {
    url: String,
    arrived: tokio::sync::mpsc::UnboundedReceiver<()>,
    release: std::sync::Arc<tokio::sync::Notify>,
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HeldReceiver {
    async fn start(status: axum::http::StatusCode) -> HeldReceiver {
        let (arrivals, arrived) = tokio::sync::mpsc::unbounded_channel();
        let release = std::sync::Arc::new(tokio::sync::Notify::new());
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let router = axum::Router::new().fallback({
            let (release, count) = (release.clone(), count.clone());
            move || {
                let (arrivals, release, count) = (arrivals.clone(), release.clone(), count.clone());
                async move {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ = arrivals.send(());
                    release.notified().await;
                    (status, "not now")
                }
            }
        });
        let address = herald::testkit::serve(router).await;
        HeldReceiver {
            url: format!("http://{address}/hook"),
            arrived,
            release,
            count,
        }
    }

    fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A retry answer recorded after its hook was deleted must not put the cancelled delivery
/// back in the queue (nor mark it failed, which `recover` would pick up).
async fn a_hook_deleted_while_its_send_is_in_flight_stays_cancelled(env: TestEnv) {
    let mut receiver = HeldReceiver::start(axum::http::StatusCode::INTERNAL_SERVER_ERROR).await;
    let repo = GitRepo::new();
    // The receiver holds the send for as long as the test needs: no timeout ends it first.
    let app = env.spawn(&[("HERALD_DELIVERY_TIMEOUT", "60s")]).await;
    create_project(&app, &repo.url()).await;
    let (status, hook) = create_hook(&app, json!({"payload_url": receiver.url})).await;
    assert_eq!(status, 201, "{hook}");
    let hook_id = hook["id"].as_str().expect("id").to_string();
    let ping: i64 = sqlx::query_scalar("SELECT id FROM deliveries WHERE webhook_id = $1")
        .bind(hook_id.parse::<i64>().expect("id"))
        .fetch_one(app.state.db.reader())
        .await
        .expect("the ping is queued");

    tokio::time::timeout(WAIT, receiver.arrived.recv())
        .await
        .expect("the ping reaches the receiver")
        .expect("the receiver runs");
    let (status, body) = app
        .admin(
            Method::DELETE,
            &format!("/api/v1/projects/octo/app/webhooks/{hook_id}"),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let status_of = |id: i64| {
        let db = app.state.db.clone();
        async move {
            sqlx::query_as::<_, (String, i64, i64)>(
                "SELECT status, attempts, locked_until FROM deliveries WHERE id = $1",
            )
            .bind(id)
            .fetch_one(db.reader())
            .await
            .expect("the delivery")
        }
    };
    assert_eq!(status_of(ping).await.0, "cancelled");

    // The receiver answers 500 (a retry) once the delivery is already cancelled.
    receiver.release.notify_one();
    wait_until("the attempt recorded", WAIT, || async {
        status_of(ping).await.1 == 1
    })
    .await;
    assert_eq!(status_of(ping).await, ("cancelled".to_string(), 1, 0));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM delivery_attempts WHERE status_code = 500")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")
            .await,
        0,
        "nothing is left to send"
    );
    assert_eq!(receiver.count(), 1);

    app.stop().await;
    env.cleanup().await;
}

/// A hook is disabled (and its owner told) once: a 410 that was in flight when it was turned
/// off leaves it as its owner left it, without a disable reason.
async fn a_410_in_flight_does_not_disable_again_a_hook_turned_off_by_hand(env: TestEnv) {
    let mut receiver = HeldReceiver::start(axum::http::StatusCode::GONE).await;
    let repo = GitRepo::new();
    let app = env.spawn(&[("HERALD_DELIVERY_TIMEOUT", "60s")]).await;
    create_project(&app, &repo.url()).await;
    let (status, hook) = create_hook(&app, json!({"payload_url": receiver.url})).await;
    assert_eq!(status, 201, "{hook}");
    let hook_id = hook["id"].as_str().expect("id").to_string();
    tokio::time::timeout(WAIT, receiver.arrived.recv())
        .await
        .expect("the ping reaches the receiver")
        .expect("the receiver runs");
    let (status, body) = app
        .admin(
            Method::PATCH,
            &format!("/api/v1/projects/octo/app/webhooks/{hook_id}"),
            Some(json!({"active": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    receiver.release.notify_one();
    wait_until("the attempt recorded", WAIT, || async {
        app.count("SELECT COUNT(*) FROM delivery_attempts WHERE status_code = 410")
            .await
            == 1
    })
    .await;
    let (active, reason): (i64, Option<String>) =
        sqlx::query_as("SELECT active, disabled_reason FROM webhooks WHERE id = $1")
            .bind(hook_id.parse::<i64>().expect("id"))
            .fetch_one(app.state.db.reader())
            .await
            .expect("the hook");
    assert_eq!((active, reason), (0, None));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE channel = 'email'")
            .await,
        0
    );

    app.stop().await;
    env.cleanup().await;
}

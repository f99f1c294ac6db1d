//! GitHub: REST polling with ETags and rate limits, and signed push webhooks.

use std::time::Duration;

use herald::crypto::hmac_sha256_hex;
use herald::testkit::fake_github::{FakeGithub, Limit};
use herald::testkit::fake_telegram::FakeTelegram;
use herald::testkit::git_repo::GitRepo;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{TestApp, TestEnv, WAIT, wait_until};

both_backends!(
    github_polling_uses_etags_and_compare,
    github_rate_limit_reply_pauses_polling,
    signed_webhook_notifies_once_whatever_the_order,
    webhook_bad_input_is_refused_and_changes_nothing,
    concurrent_webhooks_are_committed_together_and_each_push_counted_once,
    two_nodes_told_of_one_push_at_once_announce_it_once,
);

const SECRET: &str = "It's a Secret to Everybody";

async fn github_app(
    env: &TestEnv,
    telegram: &FakeTelegram,
    github: &FakeGithub,
    extra: &[(&str, &str)],
) -> TestApp {
    let mut settings = vec![
        ("HERALD_TELEGRAM_API", telegram.base_url.as_str()),
        ("HERALD_TELEGRAM_BOT_TOKEN", telegram.token.as_str()),
        ("HERALD_GITHUB_API", github.base_url.as_str()),
        ("HERALD_GIT_WEBHOOK_SECRET", SECRET),
    ];
    settings.extend_from_slice(extra);
    env.spawn(&settings).await
}

async fn github_polling_uses_etags_and_compare(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    github.add_repo("octo/hello", &repo);
    let app = github_app(&env, &telegram, &github, &[]).await;
    app.subscribe_reference("telegram", "99", "octo/hello", "main")
        .await;

    // Unchanged branches are answered 304 to conditional requests.
    wait_until("a 304 for a conditional poll", WAIT, || async {
        github
            .requests()
            .iter()
            .any(|r| r.conditional && r.status == 304)
    })
    .await;

    let shas = repo.push_commits(&[("a", "1", "First change"), ("b", "2", "Second change")]);
    github.push("octo/hello", &repo);
    app.wait_for_head("main", &shas[1]).await;
    wait_until("a message", WAIT, || async {
        !telegram.delivered().is_empty()
    })
    .await;
    app.wait_for_outbox_drained().await;
    let messages = telegram.delivered();
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0].text.contains("First change") && messages[0].text.contains("Second change")
    );
    assert!(
        messages[0]
            .text
            .contains("https://github.com/octo/hello/commit/"),
        "{}",
        messages[0].text
    );
    assert!(
        github
            .requests()
            .iter()
            .any(|r| r.path.contains("/compare/"))
    );

    // GET /api/ for a GitHub repository is GitHub's own commit list.
    let (status, list) = app
        .get_reference(&[
            ("fav_repository", "octo/hello"),
            ("branch", "main"),
            ("type", "telegram"),
        ])
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list[0]["sha"], json!(shas[1]));
    assert_eq!(list[0]["commit"]["message"], json!("Second change"));

    app.stop().await;
    env.cleanup().await;
}

async fn github_rate_limit_reply_pauses_polling(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    github.add_repo("octo/hello", &repo);
    let app = github_app(&env, &telegram, &github, &[]).await;
    app.subscribe_reference("telegram", "99", "octo/hello", "main")
        .await;

    github.script([Limit::Secondary { retry_after: 2 }]);
    let sha = repo.commit("a", "1", "During a rate limit");
    github.push("octo/hello", &repo);
    app.wait_for_head("main", &sha).await;
    wait_until("a message", WAIT, || async {
        !telegram.delivered().is_empty()
    })
    .await;

    let requests = github.requests();
    let limited = requests
        .iter()
        .position(|r| r.status == 403)
        .expect("the 403 was served");
    let next = &requests[limited + 1];
    let waited = next.at.duration_since(requests[limited].at);
    assert!(
        waited >= Duration::from_millis(1900),
        "retry-after 2 s obeyed, waited {waited:?}"
    );

    // A primary limit (remaining 0) pauses until the reset time too.
    github.script([Limit::Primary { reset_in: 2 }]);
    let before = github.requests().len();
    wait_until("the limited request", WAIT, || async {
        github.requests().len() > before
    })
    .await;
    let requests = github.requests();
    let limited = requests.iter().rposition(|r| r.status == 403).expect("403");
    wait_until("polling to resume", WAIT, || async {
        github.requests().len() > limited + 1
    })
    .await;
    let requests = github.requests();
    let waited = requests[limited + 1]
        .at
        .duration_since(requests[limited].at);
    assert!(
        waited >= Duration::from_millis(900),
        "x-ratelimit-reset obeyed, waited {waited:?}"
    );
    assert_eq!(telegram.delivered().len(), 1);

    app.stop().await;
    env.cleanup().await;
}

/// A GitHub push payload for commits of a real repository.
fn push_payload(repo: &GitRepo, before: &str, after: &str, titles: &[(&str, &str)]) -> Value {
    let commits: Vec<Value> = titles
        .iter()
        .map(|(sha, title)| {
            json!({
                "id": sha, "tree_id": sha, "distinct": true, "message": title,
                "timestamp": "2026-11-22T10:00:00+09:00",
                "url": format!("https://github.com/octo/hello/commit/{sha}"),
                "author": {"name": "Test Author", "email": "author@example.com", "username": "tester"},
                "committer": {"name": "Test Author", "email": "author@example.com", "username": "tester"},
                "added": ["a"], "removed": [], "modified": []
            })
        })
        .collect();
    let _ = repo;
    json!({
        "ref": "refs/heads/main", "before": before, "after": after,
        "created": false, "deleted": false, "forced": false, "base_ref": null,
        "compare": format!("https://github.com/octo/hello/compare/{}...{}", &before[..12], &after[..12]),
        "commits": commits, "head_commit": commits.last(),
        "repository": {"id": 1, "name": "hello", "full_name": "octo/hello",
            "html_url": "https://github.com/octo/hello", "clone_url": "https://github.com/octo/hello.git"},
        "pusher": {"name": "tester", "email": "author@example.com"},
        "sender": {"login": "tester", "id": 1}
    })
}

async fn send_hook(
    app: &TestApp,
    delivery: &str,
    body: &str,
    signature: Option<String>,
) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url("/hooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .body(body.to_string());
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn sign(body: &str) -> String {
    format!(
        "sha256={}",
        hmac_sha256_hex(SECRET.as_bytes(), body.as_bytes())
    )
}

async fn signed_webhook_notifies_once_whatever_the_order(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    github.add_repo("octo/hello", &repo);
    // Poll slowly enough that the webhook arrives first.
    let app = github_app(&env, &telegram, &github, &[("HERALD_POLL_INTERVAL", "1s")]).await;
    app.subscribe_reference("telegram", "99", "octo/hello", "main")
        .await;
    let events = || app.count("SELECT COUNT(*) FROM push_events");

    // A wrong signature is refused and nothing happens.
    let before = repo.head("main");
    let first = repo.commit("a", "1", "Webhook first");
    let body = push_payload(&repo, &before, &first, &[(&first, "Webhook first")]).to_string();
    let (status, answer) = send_hook(&app, "d-1", &body, Some("sha256=00ff".into())).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"]["code"], json!("unauthorized"));
    let (status, _) = send_hook(&app, "d-1", &body, None).await;
    assert_eq!(status, 401);
    assert_eq!(events().await, 0);

    // The real delivery notifies; the same delivery id again does not.
    let (status, answer) = send_hook(&app, "d-1", &body, Some(sign(&body))).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], json!("accepted"));
    let (status, answer) = send_hook(&app, "d-1", &body, Some(sign(&body))).await;
    assert_eq!(
        (status, answer["status"].clone()),
        (200, json!("duplicate"))
    );
    wait_until("the webhook's message", WAIT, || async {
        !telegram.delivered().is_empty()
    })
    .await;

    // Then the poller sees the same push on GitHub: no second message.
    let polls_before = github.requests().len();
    github.push("octo/hello", &repo);
    wait_until("a poll after the push", WAIT, || async {
        github
            .requests()
            .iter()
            .skip(polls_before)
            .any(|r| r.path.contains("/git/ref/") && r.status == 200)
    })
    .await;
    app.wait_for_outbox_drained().await;
    assert_eq!(telegram.delivered().len(), 1);

    // The other order: the poller first, the webhook (a new delivery id) later.
    let second = repo.commit("b", "2", "Poll first");
    github.push("octo/hello", &repo);
    app.wait_for_head("main", &second).await;
    wait_until("the poll's message", WAIT, || async {
        telegram.delivered().len() == 2
    })
    .await;
    let body = push_payload(&repo, &first, &second, &[(&second, "Poll first")]).to_string();
    let (status, answer) = send_hook(&app, "d-2", &body, Some(sign(&body))).await;
    assert_eq!(
        (status, answer["status"].clone()),
        (200, json!("duplicate")),
        "{answer}"
    );
    app.wait_for_outbox_drained().await;
    let messages = telegram.delivered();
    assert_eq!(messages.len(), 2);
    assert!(messages[0].text.contains("Webhook first"));
    assert!(messages[1].text.contains("Poll first"));

    app.stop().await;
    env.cleanup().await;
}

/// Pushes that arrive together are committed together (group commit): whatever the batches,
/// each push is accepted once, a redelivery (same id, or the same commits under a new id) is a
/// duplicate even inside the same batch, and every push is announced exactly once.
async fn concurrent_webhooks_are_committed_together_and_each_push_counted_once(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    github.add_repo("octo/hello", &repo);
    let app = github_app(&env, &telegram, &github, &[("HERALD_POLL_INTERVAL", "1h")]).await;
    app.subscribe_reference("telegram", "99", "octo/hello", "main")
        .await;

    let mut bodies = Vec::new();
    let mut before = repo.head("main");
    for n in 0..10 {
        let title = format!("Concurrent push {n}");
        let after = repo.commit(&format!("f{n}"), "x", &title);
        bodies.push(push_payload(&repo, &before, &after, &[(&after, &title)]).to_string());
        before = after;
    }
    // Every push twice under its own delivery id, and push 5 once more under a new id.
    let mut requests: Vec<(String, String)> = Vec::new();
    for (n, body) in bodies.iter().enumerate() {
        requests.push((format!("d-{n}"), body.clone()));
        requests.push((format!("d-{n}"), body.clone()));
    }
    requests.push(("again-5".into(), bodies[5].clone()));
    let answers = futures_util::future::join_all(
        requests
            .iter()
            .map(|(id, body)| send_hook(&app, id, body, Some(sign(body)))),
    )
    .await;
    let accepted = answers
        .iter()
        .filter(|(status, answer)| *status == 202 && answer["status"] == json!("accepted"))
        .count();
    let duplicates = answers
        .iter()
        .filter(|(status, answer)| *status == 200 && answer["status"] == json!("duplicate"))
        .count();
    assert_eq!((accepted, duplicates), (10, 11), "{answers:?}");
    assert_eq!(app.count("SELECT COUNT(*) FROM push_events").await, 10);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM inbound_deliveries").await,
        11,
        "every distinct delivery id is remembered"
    );

    wait_until("ten messages", WAIT, || async {
        telegram.delivered().len() >= 10
    })
    .await;
    app.wait_for_outbox_drained().await;
    let messages = telegram.delivered();
    assert_eq!(messages.len(), 10);
    for n in 0..10 {
        let title = format!("Concurrent push {n}");
        assert_eq!(
            messages.iter().filter(|m| m.text.contains(&title)).count(),
            1,
            "{title} announced once"
        );
    }

    app.stop().await;
    env.cleanup().await;
}

/// Two nodes on one database each get every push at the same moment, under their own delivery
/// ids (two webhooks configured, say): both may read "not announced yet" before either commits,
/// and the one that commits second must find the commits recorded and answer "duplicate".
async fn two_nodes_told_of_one_push_at_once_announce_it_once(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    github.add_repo("octo/hello", &repo);
    let quiet = [("HERALD_POLL_INTERVAL", "1h")];
    let first = github_app(&env, &telegram, &github, &quiet).await;
    let second = github_app(&env, &telegram, &github, &quiet).await;
    first
        .subscribe_reference("telegram", "99", "octo/hello", "main")
        .await;

    let mut before = repo.head("main");
    let mut titles = Vec::new();
    for n in 0..10 {
        let title = format!("Twice-told push {n}");
        let after = repo.commit(&format!("t{n}"), "x", &title);
        let body = push_payload(&repo, &before, &after, &[(&after, &title)]).to_string();
        let (first_id, second_id) = (format!("first-{n}"), format!("second-{n}"));
        let (a, b) = tokio::join!(
            send_hook(&first, &first_id, &body, Some(sign(&body))),
            send_hook(&second, &second_id, &body, Some(sign(&body))),
        );
        let statuses = [&a, &b].map(|(status, answer)| (*status, answer["status"].clone()));
        assert!(
            statuses.contains(&(202, json!("accepted")))
                && statuses.contains(&(200, json!("duplicate"))),
            "push {n}: {a:?} {b:?}"
        );
        titles.push(title);
        before = after;
    }
    assert_eq!(first.count("SELECT COUNT(*) FROM push_events").await, 10);
    wait_until("ten messages", WAIT, || async {
        telegram.delivered().len() >= 10
    })
    .await;
    first.wait_for_outbox_drained().await;
    let messages = telegram.delivered();
    for title in &titles {
        assert_eq!(
            messages.iter().filter(|m| m.text.contains(title)).count(),
            1,
            "{title} announced once"
        );
    }
    second.stop().await;
    first.stop().await;
    env.cleanup().await;
}

async fn webhook_bad_input_is_refused_and_changes_nothing(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    github.add_repo("octo/hello", &repo);
    let app = github_app(&env, &telegram, &github, &[]).await;
    app.subscribe_reference("telegram", "99", "octo/hello", "main")
        .await;

    for body in [
        "not json",
        "{}",
        "[]",
        r#"{"ref": 5}"#,
        r#"{"ref":"refs/heads/main","before":"x","after":"y","repository":{}}"#,
    ] {
        let (status, answer) = send_hook(&app, "bad", body, Some(sign(body))).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], json!("bad_request"), "{body}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }

    // Pings and other events are answered without doing anything.
    let response = app
        .client
        .post(app.url("/hooks/github"))
        .header("x-github-event", "ping")
        .header("x-hub-signature-256", sign("{}"))
        .body("{}")
        .send()
        .await
        .expect("ping");
    assert_eq!(response.status().as_u16(), 200);

    // Oversize bodies are refused before they are read whole.
    // On its own connection: the server closes a connection whose body it refused unread.
    let huge = "x".repeat(27 * 1024 * 1024);
    let response = reqwest::Client::new()
        .post(app.url("/hooks/github"))
        .header("x-github-event", "push")
        .header("x-hub-signature-256", "sha256=00")
        .body(huge)
        .send()
        .await;
    if let Ok(response) = response {
        assert_eq!(response.status().as_u16(), 413);
    }

    // A push for a repository nobody watches is acknowledged and ignored.
    let other = push_payload(&repo, &"a".repeat(40), &"b".repeat(40), &[])
        .to_string()
        .replace("octo/hello", "someone/else");
    let (status, answer) = send_hook(&app, "other", &other, Some(sign(&other))).await;
    assert_eq!((status, answer["status"].clone()), (202, json!("ignored")));

    assert_eq!(app.count("SELECT COUNT(*) FROM push_events").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM deliveries").await, 0);

    // Without a configured secret, inbound webhooks are off, and say how to turn them on.
    let closed = env.spawn(&[]).await;
    let response = closed
        .client
        .post(closed.url("/hooks/github"))
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 503);
    let answer: Value = response.json().await.expect("json");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("HERALD_GIT_WEBHOOK_SECRET"))
    );
    closed.stop().await;

    app.stop().await;
    env.cleanup().await;
}

both_backends!(
    gitea_and_gitlab_webhooks_are_verified_and_notify,
    telegram_pace_per_chat_is_kept
);

async fn gitea_and_gitlab_webhooks_are_verified_and_notify(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    let app = github_app(&env, &telegram, &github, &[("HERALD_POLL_INTERVAL", "1h")]).await;
    app.subscribe_reference("telegram", "7", &repo.url(), "main")
        .await;

    // Gitea: X-Gitea-Signature is the bare hex HMAC of the body.
    let first_before = repo.head("main");
    let first = repo.commit("a", "1", "From Gitea");
    let gitea = json!({
        "ref": "refs/heads/main", "before": first_before, "after": first,
        "commits": [{"id": first, "message": "From Gitea\n", "timestamp": "2026-11-22T10:00:00+09:00",
            "url": "https://gitea.example.org/team/app/commit/x",
            "author": {"name": "Gitea User", "email": "g@example.org", "username": "gitea-user"},
            "committer": {"name": "Gitea User", "email": "g@example.org", "username": "gitea-user"},
            "added": [], "removed": [], "modified": ["a"]}],
        "repository": {"full_name": "team/app", "html_url": "https://gitea.example.org/team/app", "clone_url": repo.url()},
        "pusher": {"login": "gitea-user", "email": "g@example.org"}
    })
    .to_string();
    let post = |path: &'static str, headers: Vec<(&'static str, String)>, body: String| {
        let mut request = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let signature = hmac_sha256_hex(SECRET.as_bytes(), gitea.as_bytes());
    let response = post(
        "/hooks/gitea",
        vec![
            ("x-gitea-event", "push".into()),
            ("x-gitea-delivery", "g-1".into()),
            ("x-gitea-signature", "00".repeat(32)),
        ],
        gitea.clone(),
    )
    .await
    .expect("request");
    assert_eq!(response.status().as_u16(), 401);
    let response = post(
        "/hooks/gitea",
        vec![
            ("x-gitea-event", "push".into()),
            ("x-gitea-delivery", "g-1".into()),
            ("x-gitea-signature", signature),
        ],
        gitea,
    )
    .await
    .expect("request");
    assert_eq!(response.status().as_u16(), 202);
    wait_until("the Gitea push's message", WAIT, || async {
        telegram.delivered().len() == 1
    })
    .await;
    assert!(telegram.delivered()[0].text.contains("From Gitea"));

    // GitLab: X-Gitlab-Token is the secret itself.
    let second = repo.commit("b", "2", "From GitLab");
    let gitlab = json!({
        "object_kind": "push", "ref": "refs/heads/main", "before": first, "after": second,
        "user_name": "Lab User", "user_username": "lab", "user_email": "l@example.org",
        "project": {"path_with_namespace": "team/app", "web_url": "https://gitlab.example.org/team/app", "git_http_url": repo.url()},
        "commits": [{"id": second, "message": "From GitLab", "timestamp": "2026-11-22T10:00:00+09:00",
            "url": "https://gitlab.example.org/team/app/-/commit/x",
            "author": {"name": "Lab User", "email": "l@example.org"}, "added": ["b"], "modified": [], "removed": []}],
        "total_commits_count": 1
    })
    .to_string();
    let response = post(
        "/hooks/gitlab",
        vec![
            ("x-gitlab-event", "Push Hook".into()),
            ("x-gitlab-event-uuid", "l-1".into()),
            ("x-gitlab-token", "wrong".into()),
        ],
        gitlab.clone(),
    )
    .await
    .expect("request");
    assert_eq!(response.status().as_u16(), 401);
    for _ in 0..2 {
        let response = post(
            "/hooks/gitlab",
            vec![
                ("x-gitlab-event", "Push Hook".into()),
                ("x-gitlab-event-uuid", "l-1".into()),
                ("x-gitlab-token", SECRET.into()),
            ],
            gitlab.clone(),
        )
        .await
        .expect("request");
        assert!(response.status().is_success());
    }
    wait_until("the GitLab push's message", WAIT, || async {
        telegram.delivered().len() == 2
    })
    .await;
    app.wait_for_outbox_drained().await;
    assert_eq!(telegram.delivered().len(), 2);
    assert!(telegram.delivered()[1].text.contains("From GitLab"));

    app.stop().await;
    env.cleanup().await;
}

async fn telegram_pace_per_chat_is_kept(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    github.add_repo("octo/hello", &repo);
    let app = github_app(
        &env,
        &telegram,
        &github,
        &[
            ("HERALD_TELEGRAM_CHAT_RATE", "2"),
            ("HERALD_POLL_INTERVAL", "1h"),
        ],
    )
    .await;
    app.subscribe_reference("telegram", "99", "octo/hello", "main")
        .await;
    let mut before = repo.head("main");
    for i in 0..3 {
        let after = repo.commit("a", &i.to_string(), &format!("Paced {i}"));
        let body =
            push_payload(&repo, &before, &after, &[(&after, &format!("Paced {i}"))]).to_string();
        let (status, _) = send_hook(&app, &format!("p-{i}"), &body, Some(sign(&body))).await;
        assert_eq!(status, 202);
        before = after;
    }
    wait_until("three messages", WAIT, || async {
        telegram.delivered().len() == 3
    })
    .await;
    let messages = telegram.delivered();
    for pair in messages.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(450),
            "two messages/s per chat at most, gap {gap:?}"
        );
    }
    app.stop().await;
    env.cleanup().await;
}

both_backends!(a_poll_that_lags_a_webhook_is_not_a_force_push);

async fn a_poll_that_lags_a_webhook_is_not_a_force_push(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    github.add_repo("octo/hello", &repo);
    let app = github_app(&env, &telegram, &github, &[("HERALD_POLL_INTERVAL", "1h")]).await;
    app.subscribe_reference("telegram", "99", "octo/hello", "main")
        .await;

    // The webhook announces a push GitHub's API does not show yet.
    let before = repo.head("main");
    let after = repo.commit("a", "1", "Announced by webhook");
    let body =
        push_payload(&repo, &before, &after, &[(&after, "Announced by webhook")]).to_string();
    let (status, _) = send_hook(&app, "lag-1", &body, Some(sign(&body))).await;
    assert_eq!(status, 202);
    wait_until("the webhook's message", WAIT, || async {
        telegram.delivered().len() == 1
    })
    .await;

    // Now the poller reads the branch and still sees the old head.
    let requests_before = github.requests().len();
    sqlx::query("UPDATE watches SET next_check_at = 0, etag = NULL")
        .execute(app.state.db.writer())
        .await
        .expect("make the watch due");
    wait_until("a poll of the stale head", WAIT, || async {
        github
            .requests()
            .iter()
            .skip(requests_before)
            .any(|r| r.path.contains("/compare/"))
    })
    .await;
    app.wait_for_outbox_drained().await;
    assert_eq!(
        telegram.delivered().len(),
        1,
        "no force-push back to the old head"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM push_events WHERE forced = 1")
            .await,
        0
    );
    app.wait_for_head("main", &after).await;

    app.stop().await;
    env.cleanup().await;
}

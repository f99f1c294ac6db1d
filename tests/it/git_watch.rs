//! Watching any git remote by git-protocol polling, and what subscribers receive.

use herald::testkit::fake_smtp::FakeSmtp;
use herald::testkit::fake_telegram::FakeTelegram;
use herald::testkit::git_repo::GitRepo;
use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{TestApp, TestEnv, WAIT, wait_until};

both_backends!(
    push_to_a_git_repository_reaches_telegram_once_with_both_commits,
    force_push_is_reported_as_such,
    path_and_author_filters_and_mute,
    branch_globs_match_only_their_branches,
    email_contact_gets_a_real_smtp_mail,
);

pub async fn telegram_app(
    env: &TestEnv,
    telegram: &FakeTelegram,
    extra: &[(&str, &str)],
) -> TestApp {
    let mut settings = vec![
        ("HERALD_TELEGRAM_API", telegram.base_url.as_str()),
        ("HERALD_TELEGRAM_BOT_TOKEN", telegram.token.as_str()),
    ];
    settings.extend_from_slice(extra);
    env.spawn(&settings).await
}

async fn wait_for_messages(telegram: &FakeTelegram, count: usize) {
    wait_until(&format!("{count} Telegram message(s)"), WAIT, || async {
        telegram.delivered().len() >= count
    })
    .await;
}

async fn push_to_a_git_repository_reaches_telegram_once_with_both_commits(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let repo = GitRepo::new();
    let app = telegram_app(&env, &telegram, &[]).await;
    app.subscribe_reference("telegram", "4242", &repo.url(), "main")
        .await;

    let shas = repo.push_commits(&[
        ("a.txt", "1", "Add feature A"),
        ("b.txt", "2", "Fix bug <B> & more"),
    ]);
    app.wait_for_head("main", &shas[1]).await;
    wait_for_messages(&telegram, 1).await;
    app.wait_for_outbox_drained().await;

    let messages = telegram.delivered();
    assert_eq!(messages.len(), 1, "one push, one message: {messages:?}");
    let message = &messages[0];
    assert_eq!(message.chat_id, json!(4242));
    assert_eq!(message.parse_mode.as_deref(), Some("HTML"));
    assert!(
        message.text.contains("2 new commits on main"),
        "{}",
        message.text
    );
    assert!(message.text.contains("Add feature A"), "{}", message.text);
    assert!(
        message.text.contains("Fix bug &lt;B&gt; &amp; more"),
        "escaped: {}",
        message.text
    );
    assert!(message.text.contains(&shas[0][..7]) && message.text.contains(&shas[1][..7]));

    // GET /api/ lists the branch's commits in GitHub's commit-list shape, newest first.
    let (status, commits) = app
        .get_reference(&[
            ("id", "4242"),
            ("fav_repository", &repo.url()),
            ("nick_name", "tester"),
            ("type", "telegram"),
            ("branch", "main"),
        ])
        .await;
    assert_eq!(status, 200, "{commits}");
    let list = commits.as_array().expect("an array");
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["sha"], json!(shas[1]));
    assert_eq!(list[1]["sha"], json!(shas[0]));
    assert_eq!(list[0]["commit"]["message"], json!("Fix bug <B> & more"));
    assert_eq!(list[0]["commit"]["author"]["name"], json!("Test Author"));
    assert_eq!(
        list[0]["commit"]["author"]["email"],
        json!("author@example.com")
    );
    assert!(
        list[0]["commit"]["committer"]["date"]
            .as_str()
            .is_some_and(|d| d.contains('T'))
    );
    assert_eq!(list[0]["parents"][0]["sha"], json!(shas[0]));

    app.stop().await;
    env.cleanup().await;
}

async fn force_push_is_reported_as_such(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let repo = GitRepo::new();
    let app = telegram_app(&env, &telegram, &[]).await;
    app.subscribe_reference("telegram", "1", &repo.url(), "main")
        .await;

    let first = repo.commit("a.txt", "1", "Work in progress");
    app.wait_for_head("main", &first).await;
    wait_for_messages(&telegram, 1).await;

    let rewritten = repo.force_push_replacing_last("a.txt", "2", "Clean version");
    app.wait_for_head("main", &rewritten).await;
    wait_for_messages(&telegram, 2).await;
    app.wait_for_outbox_drained().await;
    let messages = telegram.delivered();
    assert_eq!(messages.len(), 2);
    assert!(!messages[0].text.contains("force-pushed"));
    assert!(
        messages[1].text.contains("force-pushed"),
        "{}",
        messages[1].text
    );
    assert!(messages[1].text.contains("Clean version"));
    assert!(!messages[1].text.contains("Work in progress"));
    let forced = app
        .count("SELECT COUNT(*) FROM push_events WHERE forced = 1")
        .await;
    assert_eq!(forced, 1);

    app.stop().await;
    env.cleanup().await;
}

async fn path_and_author_filters_and_mute(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let repo = GitRepo::new();
    let app = telegram_app(&env, &telegram, &[]).await;

    let (status, contact) = app
        .admin(
            Method::POST,
            "/api/v1/contacts",
            Some(json!({"channel": "telegram", "address": "777", "nick_name": "docs team"})),
        )
        .await;
    assert_eq!(status, 201, "{contact}");
    let contact_id = contact["id"].as_str().expect("id as string").to_string();
    let (status, subscription) = app
        .admin(
            Method::POST,
            "/api/v1/subscriptions",
            Some(json!({
                "contact_id": contact_id, "repository": repo.url(), "branch": "main",
                "paths": ["docs/**"], "exclude_authors": ["*bot*"]
            })),
        )
        .await;
    assert_eq!(status, 201, "{subscription}");

    // Outside the watched paths: nothing.
    let sha = repo.commit("src/lib.rs", "fn main() {}", "Change code");
    app.wait_for_head("main", &sha).await;
    // Inside the paths but by an excluded author: nothing.
    let sha = repo.commit_as(
        "docs/a.md",
        "a",
        "Regenerate docs",
        "deploy-bot",
        "bot@example.com",
    );
    app.wait_for_head("main", &sha).await;
    app.wait_for_outbox_drained().await;
    assert_eq!(
        telegram.delivered().len(),
        0,
        "filtered pushes must not notify"
    );

    // Inside the paths, by a person: told.
    let sha = repo.commit("docs/b.md", "b", "Explain setup");
    app.wait_for_head("main", &sha).await;
    wait_for_messages(&telegram, 1).await;
    assert!(telegram.delivered()[0].text.contains("Explain setup"));

    // Muted contact: nothing; unmuted: told again.
    let (status, muted) = app
        .admin(
            Method::POST,
            &format!("/api/v1/contacts/{contact_id}/mute"),
            None,
        )
        .await;
    assert_eq!((status, muted["muted"].clone()), (200, json!(true)));
    let sha = repo.commit("docs/c.md", "c", "While muted");
    app.wait_for_head("main", &sha).await;
    app.wait_for_outbox_drained().await;
    assert_eq!(telegram.delivered().len(), 1);
    app.admin(
        Method::POST,
        &format!("/api/v1/contacts/{contact_id}/unmute"),
        None,
    )
    .await;

    // A muted subscription (rather than contact) is silent too.
    let subscription_id = subscription["id"].as_str().expect("id").to_string();
    let (status, patched) = app
        .admin(
            Method::PATCH,
            &format!("/api/v1/subscriptions/{subscription_id}"),
            Some(json!({"muted": true})),
        )
        .await;
    assert_eq!((status, patched["muted"].clone()), (200, json!(true)));
    let sha = repo.commit("docs/d.md", "d", "Subscription muted");
    app.wait_for_head("main", &sha).await;
    app.wait_for_outbox_drained().await;
    assert_eq!(telegram.delivered().len(), 1);
    app.admin(
        Method::PATCH,
        &format!("/api/v1/subscriptions/{subscription_id}"),
        Some(json!({"muted": false})),
    )
    .await;

    let sha = repo.commit("docs/e.md", "e", "After unmute");
    app.wait_for_head("main", &sha).await;
    wait_for_messages(&telegram, 2).await;
    let messages = telegram.delivered();
    assert!(messages[1].text.contains("After unmute"));
    assert!(
        !messages[1].text.contains("While muted"),
        "muted pushes are not replayed"
    );

    app.stop().await;
    env.cleanup().await;
}

async fn branch_globs_match_only_their_branches(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let repo = GitRepo::new();
    repo.checkout_new_branch("release/1.0");
    repo.checkout("main");
    let app = telegram_app(&env, &telegram, &[]).await;
    let (_, contact) = app
        .admin(
            Method::POST,
            "/api/v1/contacts",
            Some(json!({"channel": "telegram", "address": "55"})),
        )
        .await;
    let (status, answer) = app
        .admin(
            Method::POST,
            "/api/v1/subscriptions",
            Some(json!({"contact_id": contact["id"], "repository": repo.url(), "branch": "release/*"})),
        )
        .await;
    assert_eq!(status, 201, "{answer}");

    let on_main = repo.commit("x", "1", "Only on main");
    repo.checkout("release/1.0");
    let on_release = repo.commit("y", "1", "Release fix");
    app.wait_for_head("release/1.0", &on_release).await;
    wait_for_messages(&telegram, 1).await;
    app.wait_for_outbox_drained().await;
    let messages = telegram.delivered();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].text.contains("Release fix"));
    assert!(messages[0].text.contains("release/1.0"));
    assert!(!messages.iter().any(|m| m.text.contains("Only on main")));
    let _ = on_main;

    app.stop().await;
    env.cleanup().await;
}

async fn email_contact_gets_a_real_smtp_mail(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let repo = GitRepo::new();
    let app = env
        .spawn(&[
            ("HERALD_SMTP_URL", smtp.url.as_str()),
            ("HERALD_MAIL_FROM", "herald <herald@example.org>"),
        ])
        .await;
    app.subscribe_reference("email", "dev@example.com", &repo.url(), "main")
        .await;
    let sha = repo.commit("a.txt", "1", "Ship the mailer");
    app.wait_for_head("main", &sha).await;
    wait_until("a mail", WAIT, || async { !smtp.mails().is_empty() }).await;
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.to, vec!["dev@example.com".to_string()]);
    assert_eq!(mail.from, "herald@example.org");
    assert!(mail.data.contains("Subject: ["), "{}", mail.data);
    assert!(mail.data.contains("1 new commit on main"), "{}", mail.data);
    assert!(mail.data.contains("Ship the mailer"), "{}", mail.data);
    assert!(
        mail.data.contains("Content-Type: text/plain"),
        "{}",
        mail.data
    );

    app.stop().await;
    env.cleanup().await;
}

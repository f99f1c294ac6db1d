//! Digest subscriptions and quiet hours: held pushes arrive as one message when their digest
//! is due, in the contact's zone, on a clock the test moves by hand.

use std::sync::Arc;

use herald::clock::ManualClock;
use herald::testkit::fake_telegram::FakeTelegram;
use herald::testkit::git_repo::GitRepo;
use herald::watch::repo::RepoUrl;
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{TestApp, TestEnv, WAIT, wait_until};

both_backends!(
    three_pushes_in_an_hour_make_one_hourly_digest_and_an_empty_hour_makes_none,
    a_daily_digest_goes_at_its_time_in_the_contacts_zone,
    quiet_hours_hold_a_push_until_morning_and_an_urgent_one_passes,
    bad_delivery_modes_and_quiet_hours_are_refused_and_nothing_is_stored,
    two_processes_on_one_database_send_each_held_push_once,
);

async fn app_with_clock(
    env: &TestEnv,
    telegram: &FakeTelegram,
    clock: Arc<ManualClock>,
) -> TestApp {
    env.spawn_with_clock(
        &[
            ("HERALD_TELEGRAM_API", telegram.base_url.as_str()),
            ("HERALD_TELEGRAM_BOT_TOKEN", telegram.token.as_str()),
        ],
        clock,
    )
    .await
}

fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .expect("test instant")
        .timestamp_millis()
}

/// How herald names a local repository in messages.
fn display_name(repo: &GitRepo) -> String {
    RepoUrl::parse(&repo.url(), true)
        .expect("a local repository URL")
        .display_name()
}

/// Subscribes Telegram chat `chat` to `main` of `repo`; returns (contact id, subscription id).
async fn subscribe(app: &TestApp, chat: &str, repo: &GitRepo) -> (String, String) {
    app.subscribe_reference("telegram", chat, &repo.url(), "main")
        .await;
    let (status, contacts) = app.admin(Method::GET, "/api/v1/contacts", None).await;
    assert_eq!(status, 200, "{contacts}");
    let contact = contacts["contacts"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|c| c["channel"] == "telegram" && c["address"] == chat)
        .expect("the contact")["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let (status, list) = app
        .admin(
            Method::GET,
            &format!("/api/v1/subscriptions?contact_id={contact}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    // Listed oldest first: the last one is the one just made.
    let subscription = list["subscriptions"]
        .as_array()
        .and_then(|list| list.last())
        .expect("the new subscription")["id"]
        .as_str()
        .expect("an id")
        .to_string();
    (contact, subscription)
}

async fn patch(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, answer) = app.admin(Method::PATCH, path, Some(body)).await;
    assert_eq!(status, 200, "PATCH {path}: {answer}");
    answer
}

/// Pushes one commit and waits until herald has taken it in (noticed, and queued or held).
async fn push(app: &TestApp, repo: &GitRepo, file: &str, title: &str) -> String {
    let sha = repo.commit(file, title, title);
    app.wait_for_head("main", &sha).await;
    sha
}

async fn held_items(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM digest_items").await
}

async fn wait_for_held(app: &TestApp, count: i64) {
    wait_until(&format!("{count} held item(s)"), WAIT, || async {
        held_items(app).await == count
    })
    .await;
}

async fn wait_for_messages(telegram: &FakeTelegram, count: usize) {
    wait_until(&format!("{count} Telegram message(s)"), WAIT, || async {
        telegram.delivered().len() >= count
    })
    .await;
}

async fn three_pushes_in_an_hour_make_one_hourly_digest_and_an_empty_hour_makes_none(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let repo = GitRepo::new();
    let clock = ManualClock::at("2026-12-07T10:05:00+09:00");
    let app = app_with_clock(&env, &telegram, clock.clone()).await;
    let (_, subscription) = subscribe(&app, "4242", &repo).await;
    let changed = patch(
        &app,
        &format!("/api/v1/subscriptions/{subscription}"),
        json!({"digest": "hourly"}),
    )
    .await;
    assert_eq!(changed["digest"], "hourly");
    assert_eq!(changed["urgent"], false);

    let first = push(&app, &repo, "a.txt", "Add feature A").await;
    wait_for_held(&app, 1).await;
    clock.set_rfc3339("2026-12-07T10:20:00+09:00");
    let second = push(&app, &repo, "b.txt", "Fix bug <B> & more").await;
    wait_for_held(&app, 2).await;
    clock.set_rfc3339("2026-12-07T10:59:59+09:00");
    let third = push(&app, &repo, "c.txt", "Write docs").await;
    wait_for_held(&app, 3).await;
    assert_eq!(telegram.delivered().len(), 0, "held pushes are not sent");
    let due: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT due_at FROM digest_items")
        .fetch_all(app.state.db.reader())
        .await
        .expect("due times");
    assert_eq!(due, vec![ms("2026-12-07T11:00:00+09:00")]);

    clock.set_rfc3339("2026-12-07T11:00:00+09:00");
    wait_for_messages(&telegram, 1).await;
    app.wait_for_outbox_drained().await;
    let messages = telegram.delivered();
    assert_eq!(messages.len(), 1, "one digest: {messages:?}");
    assert_eq!(messages[0].chat_id, json!(4242));
    assert_eq!(messages[0].parse_mode.as_deref(), Some("HTML"));
    let name = display_name(&repo);
    assert_eq!(
        messages[0].text,
        format!(
            "<b>herald digest</b>: 3 pushes, 3 commits\n\
             <b>{name}</b> · main: 3 commits\n\
             <code>{}</code> Write docs — <i>Test Author</i>\n\
             <code>{}</code> Fix bug &lt;B&gt; &amp; more — <i>Test Author</i>\n\
             <code>{}</code> Add feature A — <i>Test Author</i>",
            &third[..7],
            &second[..7],
            &first[..7]
        )
    );
    assert_eq!(held_items(&app).await, 0);

    // 11:00 to 12:00 without a push: the 12:00 digest is nothing. The push at 12:30 is the
    // only one the 13:00 digest lists, and it is the second message in all.
    clock.set_rfc3339("2026-12-07T12:00:00+09:00");
    clock.set_rfc3339("2026-12-07T12:30:00+09:00");
    let fourth = push(&app, &repo, "d.txt", "Later work").await;
    wait_for_held(&app, 1).await;
    clock.set_rfc3339("2026-12-07T13:00:00+09:00");
    wait_for_messages(&telegram, 2).await;
    app.wait_for_outbox_drained().await;
    let messages = telegram.delivered();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(
        messages[1].text,
        format!(
            "<b>herald digest</b>: 1 push, 1 commit\n\
             <b>{name}</b> · main: 1 commit\n\
             <code>{}</code> Later work — <i>Test Author</i>",
            &fourth[..7]
        )
    );
    app.stop().await;
    env.cleanup().await;
}

async fn a_daily_digest_goes_at_its_time_in_the_contacts_zone(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let repo = GitRepo::new();
    let clock = ManualClock::at("2026-12-07T07:00:00-05:00");
    let app = app_with_clock(&env, &telegram, clock.clone()).await;
    let (contact, subscription) = subscribe(&app, "77", &repo).await;
    let contact_now = patch(
        &app,
        &format!("/api/v1/contacts/{contact}"),
        json!({"time_zone": "America/New_York"}),
    )
    .await;
    assert_eq!(contact_now["time_zone"], "America/New_York");
    patch(
        &app,
        &format!("/api/v1/subscriptions/{subscription}"),
        json!({"digest": "daily@08:30"}),
    )
    .await;

    let sha = push(&app, &repo, "a.txt", "Morning change").await;
    wait_for_held(&app, 1).await;
    let due: i64 = sqlx::query_scalar("SELECT due_at FROM digest_items")
        .fetch_one(app.state.db.reader())
        .await
        .expect("a due time");
    assert_eq!(due, ms("2026-12-07T08:30:00-05:00"), "08:30 in New York");

    clock.set_rfc3339("2026-12-07T08:30:00-05:00");
    wait_for_messages(&telegram, 1).await;
    app.wait_for_outbox_drained().await;
    let messages = telegram.delivered();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].chat_id, json!(77));
    assert_eq!(
        messages[0].text,
        format!(
            "<b>herald digest</b>: 1 push, 1 commit\n\
             <b>{}</b> · main: 1 commit\n\
             <code>{}</code> Morning change — <i>Test Author</i>",
            display_name(&repo),
            &sha[..7]
        )
    );

    // A push right after the digest waits for tomorrow's.
    push(&app, &repo, "b.txt", "After the digest").await;
    wait_for_held(&app, 1).await;
    let due: i64 = sqlx::query_scalar("SELECT due_at FROM digest_items")
        .fetch_one(app.state.db.reader())
        .await
        .expect("a due time");
    assert_eq!(due, ms("2026-12-08T08:30:00-05:00"));
    app.stop().await;
    env.cleanup().await;
}

async fn quiet_hours_hold_a_push_until_morning_and_an_urgent_one_passes(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let quiet_repo = GitRepo::new();
    let urgent_repo = GitRepo::new();
    // 23:00 in Seoul, the default zone.
    let clock = ManualClock::at("2026-12-07T23:00:00+09:00");
    let app = app_with_clock(&env, &telegram, clock.clone()).await;
    let (contact, _) = subscribe(&app, "99", &quiet_repo).await;
    let (_, urgent) = subscribe(&app, "99", &urgent_repo).await;
    let contact_now = patch(
        &app,
        &format!("/api/v1/contacts/{contact}"),
        json!({"quiet_hours": "22:00-08:00"}),
    )
    .await;
    assert_eq!(contact_now["quiet_hours"], "22:00-08:00");
    assert_eq!(contact_now["time_zone"], "Asia/Seoul");
    assert_eq!(contact_now["quiet_weekends"], false);
    let urgent_now = patch(
        &app,
        &format!("/api/v1/subscriptions/{urgent}"),
        json!({"urgent": true}),
    )
    .await;
    assert_eq!(urgent_now["urgent"], true);
    assert_eq!(urgent_now["digest"], "instant");

    let quiet_sha = push(&app, &quiet_repo, "a.txt", "Late night change").await;
    wait_for_held(&app, 1).await;
    let due: i64 = sqlx::query_scalar("SELECT due_at FROM digest_items")
        .fetch_one(app.state.db.reader())
        .await
        .expect("a due time");
    assert_eq!(due, ms("2026-12-08T08:00:00+09:00"));

    push(&app, &urgent_repo, "b.txt", "Hotfix").await;
    wait_for_messages(&telegram, 1).await;
    app.wait_for_outbox_drained().await;
    let messages = telegram.delivered();
    assert_eq!(messages.len(), 1, "only the urgent push: {messages:?}");
    assert!(
        messages[0].text.contains("1 new commit on main") && messages[0].text.contains("Hotfix"),
        "{}",
        messages[0].text
    );
    assert_eq!(held_items(&app).await, 1);

    clock.set_rfc3339("2026-12-08T08:00:00+09:00");
    wait_for_messages(&telegram, 2).await;
    app.wait_for_outbox_drained().await;
    let messages = telegram.delivered();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(
        messages[1].text,
        format!(
            "<b>herald digest</b>: 1 push, 1 commit\n\
             <b>{}</b> · main: 1 commit\n\
             <code>{}</code> Late night change — <i>Test Author</i>",
            display_name(&quiet_repo),
            &quiet_sha[..7]
        )
    );
    assert_eq!(held_items(&app).await, 0);

    // `null` removes the quiet hours: a push at night is sent at once.
    clock.set_rfc3339("2026-12-08T23:30:00+09:00");
    let cleared = patch(
        &app,
        &format!("/api/v1/contacts/{contact}"),
        json!({"quiet_hours": null}),
    )
    .await;
    assert_eq!(cleared["quiet_hours"], Value::Null);
    push(&app, &quiet_repo, "c.txt", "No longer quiet").await;
    wait_for_messages(&telegram, 3).await;
    assert_eq!(held_items(&app).await, 0);
    app.stop().await;
    env.cleanup().await;
}

async fn bad_delivery_modes_and_quiet_hours_are_refused_and_nothing_is_stored(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let repo = GitRepo::new();
    let clock = ManualClock::at("2026-12-07T12:00:00+09:00");
    let app = app_with_clock(&env, &telegram, clock).await;
    let (contact, subscription) = subscribe(&app, "5", &repo).await;
    let subscription_path = format!("/api/v1/subscriptions/{subscription}");
    let contact_path = format!("/api/v1/contacts/{contact}");

    for (body, message) in [
        (
            json!({"digest": "weekly"}),
            "digest: \"weekly\" is not a digest mode: \"instant\", \"hourly\" or \"daily@HH:MM\"",
        ),
        (
            json!({"digest": "daily@24:00", "muted": true}),
            "digest: \"24:00\" is not a time of day as HH:MM (00:00 to 23:59)",
        ),
        (
            json!({"digest": "daily@8:30", "urgent": true}),
            "digest: \"8:30\" is not a time of day as HH:MM (00:00 to 23:59)",
        ),
    ] {
        let (status, answer) = app
            .admin(Method::PATCH, &subscription_path, Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(
            answer,
            json!({"error": {"code": "bad_request", "message": message}}),
            "{body}"
        );
    }
    let (_, unchanged) = app.admin(Method::GET, &subscription_path, None).await;
    assert_eq!(unchanged["digest"], "instant");
    assert_eq!(unchanged["urgent"], false);
    assert_eq!(unchanged["muted"], false);

    for (body, message) in [
        (
            json!({"time_zone": "Mars/Olympus"}),
            "time_zone: \"Mars/Olympus\" is not an IANA time zone (e.g. \"Asia/Seoul\")",
        ),
        (
            json!({"quiet_hours": "22:00-08:00", "time_zone": "Seoul"}),
            "time_zone: \"Seoul\" is not an IANA time zone (e.g. \"Asia/Seoul\")",
        ),
        (
            json!({"quiet_hours": "22:00", "quiet_weekends": true}),
            "quiet_hours: \"22:00\" is not a window as HH:MM-HH:MM",
        ),
        (
            json!({"quiet_hours": "22:00-22:00"}),
            "quiet_hours: \"22:00-22:00\" is an empty window: start and end are equal",
        ),
        (
            json!({"quiet_hours": "22:00-08:61"}),
            "quiet_hours: \"08:61\" is not a time of day as HH:MM (00:00 to 23:59)",
        ),
    ] {
        let (status, answer) = app
            .admin(Method::PATCH, &contact_path, Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(
            answer,
            json!({"error": {"code": "bad_request", "message": message}}),
            "{body}"
        );
    }
    let (_, unchanged) = app.admin(Method::GET, &contact_path, None).await;
    assert_eq!(unchanged["time_zone"], "Asia/Seoul");
    assert_eq!(unchanged["quiet_hours"], Value::Null);
    assert_eq!(unchanged["quiet_weekends"], false);

    // Only the operator may change them, and only what exists.
    let response = app
        .client
        .patch(app.url(&contact_path))
        .json(&json!({"quiet_hours": "22:00-08:00"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 401);
    let (status, answer) = app
        .admin(
            Method::PATCH,
            "/api/v1/subscriptions/123",
            Some(json!({"digest": "hourly"})),
        )
        .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], "not_found");
    let (_, unchanged) = app.admin(Method::GET, &contact_path, None).await;
    assert_eq!(unchanged["quiet_hours"], Value::Null);
    app.stop().await;
    env.cleanup().await;
}

async fn two_processes_on_one_database_send_each_held_push_once(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let repo = GitRepo::new();
    let clock = ManualClock::at("2026-12-07T10:05:00+09:00");
    let first = app_with_clock(&env, &telegram, clock.clone()).await;
    let second = app_with_clock(&env, &telegram, clock.clone()).await;
    let (_, subscription) = subscribe(&first, "31", &repo).await;
    patch(
        &first,
        &format!("/api/v1/subscriptions/{subscription}"),
        json!({"digest": "hourly"}),
    )
    .await;
    push(&first, &repo, "a.txt", "One").await;
    wait_for_held(&first, 1).await;
    push(&first, &repo, "b.txt", "Two").await;
    wait_for_held(&first, 2).await;

    // Both processes' workers claim at the due time, at the same moment, until nothing is
    // left: the two items are claimed once in all, in one digest.
    let due = ms("2026-12-07T11:00:00+09:00");
    let workers = [
        herald::digest::DigestState::new(first.state.clone()),
        herald::digest::DigestState::new(second.state.clone()),
    ];
    let mut claimed = 0;
    loop {
        let (a, b) = tokio::join!(
            herald::digest::worker::send_due(&workers[0], due),
            herald::digest::worker::send_due(&workers[1], due)
        );
        let round = a.expect("first claim") + b.expect("second claim");
        if round == 0 {
            break;
        }
        claimed += round;
    }
    assert_eq!(claimed, 2);
    assert_eq!(held_items(&first).await, 0);
    assert_eq!(
        first
            .count("SELECT COUNT(*) FROM deliveries WHERE contact_id IS NOT NULL")
            .await,
        1
    );
    wait_for_messages(&telegram, 1).await;
    first.wait_for_outbox_drained().await;
    let messages = telegram.delivered();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0]
            .text
            .starts_with("<b>herald digest</b>: 2 pushes, 2 commits"),
        "{}",
        messages[0].text
    );
    second.stop().await;
    first.stop().await;
    env.cleanup().await;
}

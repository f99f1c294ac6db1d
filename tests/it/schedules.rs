//! Area E: teams and scheduled announcements through the real app. Calendar time is a
//! `ManualClock` the tests set; announcements arrive on the fake Telegram.

use std::sync::Arc;
use std::time::Duration;

use herald::clock::ManualClock;
use herald::testkit::fake_smtp::FakeSmtp;
use herald::testkit::fake_telegram::FakeTelegram;
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, TestEnv, WAIT, wait_until};

both_backends!(
    spring_forward_announcements_fire_once_at_the_previewed_instants,
    fall_back_announcements_fire_once_at_the_previewed_instants,
    a_restart_across_two_due_times_sends_one_catch_up_and_a_late_one_is_skipped,
    bad_input_and_strangers_get_clear_errors_and_nothing_is_stored,
    teams_are_managed_by_their_admins,
    member_days_make_the_morning_message_on_telegram_and_by_mail,
    the_team_command_lists_teams_and_lets_admins_add_and_remove,
    quiet_hours_hold_an_announcement_for_the_morning_digest_and_an_urgent_one_passes,
    a_member_in_quiet_hours_gets_the_team_morning_in_its_digest,
);

both_backends!(two_herald_processes_on_one_database_fire_each_due_time_once);

fn instant(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .expect("instant")
        .timestamp_millis()
}

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

/// A Telegram contact made by the operator; returns its id.
async fn telegram_contact(app: &TestApp, chat: &str) -> String {
    let (status, contact) = app
        .admin(
            Method::POST,
            "/api/v1/contacts",
            Some(json!({"channel": "telegram", "address": chat, "nick_name": chat})),
        )
        .await;
    assert_eq!(status, 201, "{contact}");
    contact["id"].as_str().expect("contact id").to_string()
}

async fn create_schedule(app: &TestApp, body: Value) -> Value {
    let (status, schedule) = app
        .admin(Method::POST, "/api/v1/schedules", Some(body))
        .await;
    assert_eq!(status, 201, "{schedule}");
    schedule
}

async fn preview(app: &TestApp, cron: &str, zone: &str, from: &str, count: usize) -> Vec<String> {
    let response = app
        .client
        .get(app.url("/api/v1/schedules/preview"))
        .bearer_auth(ADMIN_TOKEN)
        .query(&[
            ("cron", cron),
            ("time_zone", zone),
            ("from", from),
            ("count", &count.to_string()),
        ])
        .send()
        .await
        .expect("preview");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("json");
    body["next"]
        .as_array()
        .expect("next")
        .iter()
        .map(|t| t.as_str().expect("instant").to_string())
        .collect()
}

/// A schedule's runs, oldest first, as (due_at, fired_at or "skipped", recipients).
async fn runs(app: &TestApp, id: &str) -> Vec<(String, String, usize)> {
    let (status, body) = app
        .admin(Method::GET, &format!("/api/v1/schedules/{id}/runs"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let mut runs: Vec<(String, String, usize)> = body["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|run| {
            (
                run["due_at"].as_str().expect("due_at").to_string(),
                run["fired_at"].as_str().expect("fired_at").to_string(),
                run["recipients"].as_array().expect("recipients").len(),
            )
        })
        .collect();
    runs.reverse();
    runs
}

async fn wait_for_runs(app: &TestApp, count: i64) {
    let db = app.state.db.clone();
    wait_until(&format!("{count} schedule run(s)"), WAIT, || {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM schedule_runs")
                .fetch_one(db.reader())
                .await
                .unwrap_or(0)
                >= count
        }
    })
    .await;
}

async fn wait_for_messages(telegram: &FakeTelegram, count: usize) {
    wait_until(&format!("{count} Telegram message(s)"), WAIT, || async {
        telegram.delivered().len() >= count
    })
    .await;
}

/// UTC milliseconds as the runs API writes them.
fn utc(rfc3339: &str) -> String {
    herald::ids::rfc3339(instant(rfc3339))
}

async fn spring_forward_announcements_fire_once_at_the_previewed_instants(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let clock = ManualClock::at("2026-03-07T12:00:00-05:00");
    let app = app_with_clock(&env, &telegram, clock.clone()).await;
    let new_york_chat = telegram_contact(&app, "101").await;
    let seoul_chat = telegram_contact(&app, "102").await;

    let expected_new_york = [
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ];
    let expected_seoul = [
        "2026-03-08T09:00:00+09:00",
        "2026-03-09T09:00:00+09:00",
        "2026-03-10T09:00:00+09:00",
    ];
    let from = "2026-03-07T12:00:00-05:00";
    assert_eq!(
        preview(&app, "30 2 * * *", "America/New_York", from, 3).await,
        expected_new_york
    );
    assert_eq!(
        preview(&app, "0 9 * * *", "Asia/Seoul", from, 3).await,
        expected_seoul
    );

    let new_york = create_schedule(
        &app,
        json!({"cron": "30 2 * * *", "time_zone": "America/New_York", "message": "New York standup",
               "audience": {"contact_ids": [new_york_chat]}}),
    )
    .await;
    assert_eq!(new_york["next"][0], json!(expected_new_york[0]));
    assert_eq!(new_york["next"][1], json!(expected_new_york[1]));
    let seoul = create_schedule(
        &app,
        json!({"cron": "0 9 * * *", "message": "Seoul standup",
               "audience": {"contact_ids": [seoul_chat]}}),
    )
    .await;
    assert_eq!(seoul["time_zone"], json!("Asia/Seoul"));
    assert_eq!(seoul["next"][0], json!(expected_seoul[0]));

    // Every due instant, in order: the clock is set exactly to it and the run appears.
    let mut due: Vec<&str> = expected_new_york[..2]
        .iter()
        .chain(&expected_seoul[..2])
        .copied()
        .collect();
    due.sort_by_key(|t| instant(t));
    for (n, at) in due.iter().enumerate() {
        clock.set_rfc3339(at);
        wait_for_runs(&app, n as i64 + 1).await;
    }
    wait_for_messages(&telegram, 4).await;

    let new_york_id = new_york["id"].as_str().expect("id");
    let seoul_id = seoul["id"].as_str().expect("id");
    let fired = |at: &str| (utc(at), utc(at), 1);
    assert_eq!(
        runs(&app, new_york_id).await,
        [fired(expected_new_york[0]), fired(expected_new_york[1])]
    );
    assert_eq!(
        runs(&app, seoul_id).await,
        [fired(expected_seoul[0]), fired(expected_seoul[1])]
    );
    app.wait_for_outbox_drained().await;
    let messages = telegram.delivered();
    assert_eq!(messages.len(), 4);
    let to = |chat: &str| {
        messages
            .iter()
            .filter(|m| m.chat_id == json!(chat.parse::<i64>().expect("chat")))
            .map(|m| m.text.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(to("101"), ["New York standup", "New York standup"]);
    assert_eq!(to("102"), ["Seoul standup", "Seoul standup"]);
    app.stop().await;
    env.cleanup().await;
}

async fn fall_back_announcements_fire_once_at_the_previewed_instants(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let from = "2026-10-31T12:00:00-04:00";
    let clock = ManualClock::at(from);
    let app = app_with_clock(&env, &telegram, clock.clone()).await;
    let new_york_chat = telegram_contact(&app, "201").await;
    let seoul_chat = telegram_contact(&app, "202").await;
    let sentinel_chat = telegram_contact(&app, "203").await;

    let expected_new_york = ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"];
    let expected_seoul = ["2026-11-01T09:00:00+09:00", "2026-11-02T09:00:00+09:00"];
    assert_eq!(
        preview(&app, "30 1 * * *", "America/New_York", from, 2).await,
        expected_new_york
    );
    assert_eq!(
        preview(&app, "0 9 * * *", "Asia/Seoul", from, 2).await,
        expected_seoul
    );
    let new_york = create_schedule(
        &app,
        json!({"cron": "30 1 * * *", "time_zone": "America/New_York", "message": "New York 01:30",
               "audience": {"contact_ids": [new_york_chat]}}),
    )
    .await;
    let seoul = create_schedule(
        &app,
        json!({"cron": "0 9 * * *", "time_zone": "Asia/Seoul", "message": "Seoul 09:00",
               "audience": {"contact_ids": [seoul_chat]}}),
    )
    .await;
    // Due at the second 01:30 of the New York night (06:30 UTC): once its run exists, that
    // instant has been looked at, and the New York job must not have fired again.
    let sentinel = create_schedule(
        &app,
        json!({"cron": "30 6 1 11 *", "time_zone": "UTC", "message": "sentinel",
               "audience": {"contact_ids": [sentinel_chat]}}),
    )
    .await;

    clock.set_rfc3339(expected_seoul[0]);
    wait_for_runs(&app, 1).await;
    clock.set_rfc3339(expected_new_york[0]);
    wait_for_runs(&app, 2).await;
    clock.set_rfc3339("2026-11-01T01:30:00-05:00");
    wait_for_runs(&app, 3).await;
    let sentinel_id = sentinel["id"].as_str().expect("id");
    assert_eq!(runs(&app, sentinel_id).await.len(), 1);
    let new_york_id = new_york["id"].as_str().expect("id");
    assert_eq!(
        runs(&app, new_york_id).await,
        [(utc(expected_new_york[0]), utc(expected_new_york[0]), 1)]
    );
    let (_, state) = app
        .admin(
            Method::GET,
            &format!("/api/v1/schedules/{new_york_id}"),
            None,
        )
        .await;
    assert_eq!(state["next_due_at"], json!(expected_new_york[1]));

    clock.set_rfc3339(expected_seoul[1]);
    wait_for_runs(&app, 4).await;
    clock.set_rfc3339(expected_new_york[1]);
    wait_for_runs(&app, 5).await;
    wait_for_messages(&telegram, 5).await;
    let fired = |at: &str| (utc(at), utc(at), 1);
    assert_eq!(
        runs(&app, new_york_id).await,
        [fired(expected_new_york[0]), fired(expected_new_york[1])]
    );
    assert_eq!(
        runs(&app, seoul["id"].as_str().expect("id")).await,
        [fired(expected_seoul[0]), fired(expected_seoul[1])]
    );
    app.wait_for_outbox_drained().await;
    let mut texts: Vec<String> = telegram
        .delivered()
        .iter()
        .map(|m| m.text.clone())
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        [
            "New York 01:30",
            "New York 01:30",
            "Seoul 09:00",
            "Seoul 09:00",
            "sentinel"
        ]
    );
    app.stop().await;
    env.cleanup().await;
}

async fn a_restart_across_two_due_times_sends_one_catch_up_and_a_late_one_is_skipped(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let clock = ManualClock::at("2026-05-01T08:00:00+09:00");
    let app = app_with_clock(&env, &telegram, clock.clone()).await;
    let chat = telegram_contact(&app, "301").await;
    let schedule = create_schedule(
        &app,
        json!({"cron": "0 * * * *", "message": "hourly", "audience": {"contact_ids": [chat]}}),
    )
    .await;
    let id = schedule["id"].as_str().expect("id").to_string();
    assert_eq!(schedule["catch_up_limit"], json!("1h"));
    assert_eq!(schedule["next_due_at"], json!("2026-05-01T09:00:00+09:00"));
    app.stop().await;

    // Down across 09:00 and 10:00; back at 10:30: one catch-up run, for 10:00.
    clock.set_rfc3339("2026-05-01T10:30:00+09:00");
    let app = app_with_clock(&env, &telegram, clock.clone()).await;
    wait_for_runs(&app, 1).await;
    wait_for_messages(&telegram, 1).await;
    app.wait_for_outbox_drained().await;
    assert_eq!(
        runs(&app, &id).await,
        [(
            utc("2026-05-01T10:00:00+09:00"),
            utc("2026-05-01T10:30:00+09:00"),
            1
        )]
    );
    let (status, patched) = app
        .admin(
            Method::PATCH,
            &format!("/api/v1/schedules/{id}"),
            Some(json!({"catch_up_limit": "20m"})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["catch_up_limit"], json!("20m"));
    assert_eq!(patched["next_due_at"], json!("2026-05-01T11:00:00+09:00"));
    app.stop().await;

    // Down across 11:00, 12:00 and 13:00; back at 13:30, 30 minutes after the latest: skipped.
    clock.set_rfc3339("2026-05-01T13:30:00+09:00");
    let app = app_with_clock(&env, &telegram, clock.clone()).await;
    wait_for_runs(&app, 2).await;
    assert_eq!(
        runs(&app, &id).await,
        [
            (
                utc("2026-05-01T10:00:00+09:00"),
                utc("2026-05-01T10:30:00+09:00"),
                1
            ),
            (utc("2026-05-01T13:00:00+09:00"), "skipped".into(), 0),
        ]
    );
    let (_, state) = app
        .admin(Method::GET, &format!("/api/v1/schedules/{id}"), None)
        .await;
    assert_eq!(state["next_due_at"], json!("2026-05-01T14:00:00+09:00"));
    app.wait_for_outbox_drained().await;
    assert_eq!(telegram.delivered().len(), 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE event_type = 'announcement'")
            .await,
        1
    );
    app.stop().await;
    env.cleanup().await;
}

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn assert_api_error(status: u16, body: &Value, expected: u16, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], json!(code), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

async fn account_id(app: &TestApp, token: &str) -> String {
    let (status, me) = call(app, token, Method::GET, "/api/v1/auth/me", None).await;
    assert_eq!(status, 200, "{me}");
    me["payload"]["id"].as_str().expect("id").to_string()
}

async fn bad_input_and_strangers_get_clear_errors_and_nothing_is_stored(env: TestEnv) {
    let smtp = FakeSmtp::start().await;
    let clock = ManualClock::at("2026-05-01T08:00:00+09:00");
    let app = env
        .spawn_with_clock(&[("HERALD_SMTP_URL", smtp.url.as_str())], clock)
        .await;
    let chat = telegram_contact(&app, "401").await;
    let audience = json!({"contact_ids": [chat]});
    for (body, field) in [
        (
            json!({"cron": "61 * * * *", "message": "m", "audience": audience}),
            "cron",
        ),
        (
            json!({"cron": "* * *", "message": "m", "audience": audience}),
            "cron",
        ),
        (
            json!({"cron": "0 9 * * *", "time_zone": "Mars/Olympus", "message": "m", "audience": audience}),
            "time_zone",
        ),
        (
            json!({"cron": "0 9 * * *", "message": "m", "audience": {}}),
            "audience",
        ),
        (
            json!({"cron": "0 9 * * *", "message": "m", "audience": {"contact_ids": []}}),
            "audience",
        ),
        (json!({"cron": "0 9 * * *", "message": "m"}), "audience"),
        (
            json!({"cron": "0 9 * * *", "message": "m", "audience": {"contact_ids": ["12345"]}}),
            "audience",
        ),
        (
            json!({"cron": "0 9 * * *", "message": " ", "audience": audience}),
            "message",
        ),
        (
            json!({"cron": "0 9 * * *", "message": "m", "audience": audience, "catch_up_limit": "soon"}),
            "catch_up_limit",
        ),
        (
            json!({"cron": "0 9 * * *", "message": "m", "audience": audience, "channels": ["pigeon"]}),
            "channels",
        ),
    ] {
        let (status, answer) = app
            .admin(Method::POST, "/api/v1/schedules", Some(body.clone()))
            .await;
        assert_api_error(status, &answer, 422, "validation_failed");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(field)),
            "{body} → {answer}"
        );
    }
    let response = app
        .client
        .get(app.url("/api/v1/schedules/preview"))
        .bearer_auth(ADMIN_TOKEN)
        .query(&[("cron", "0 9 * *"), ("time_zone", "Asia/Seoul")])
        .send()
        .await
        .expect("preview");
    assert_eq!(response.status().as_u16(), 422);
    assert_eq!(app.count("SELECT COUNT(*) FROM schedules").await, 0);

    let alice = herald::testkit::accounts::sign_up(
        &app.client,
        &app.address,
        &smtp,
        "alice",
        "alice@example.com",
        "alice's password",
    )
    .await;
    let bob = herald::testkit::accounts::sign_up(
        &app.client,
        &app.address,
        &smtp,
        "bob",
        "bob@example.com",
        "bob's password",
    )
    .await;
    let bob_id = account_id(&app, &bob).await;
    let (status, team) = call(
        &app,
        &alice,
        Method::POST,
        "/api/v1/teams",
        Some(json!({"name": "ops"})),
    )
    .await;
    assert_eq!(status, 201, "{team}");
    let team_id = team["id"].as_str().expect("team id").to_string();

    // Bob is not a member yet: the team does not exist for him.
    let (status, answer) = call(
        &app,
        &bob,
        Method::GET,
        &format!("/api/v1/teams/{team_id}"),
        None,
    )
    .await;
    assert_api_error(status, &answer, 404, "not_found");
    let team_schedule =
        json!({"cron": "0 9 * * *", "message": "m", "audience": {"team_id": team_id}});
    let (status, answer) = call(
        &app,
        &bob,
        Method::POST,
        "/api/v1/schedules",
        Some(team_schedule.clone()),
    )
    .await;
    assert_api_error(status, &answer, 404, "not_found");

    // A member who is not an admin may look, not manage.
    let (status, member) = call(
        &app,
        &alice,
        Method::POST,
        &format!("/api/v1/teams/{team_id}/members"),
        Some(json!({"account_id": bob_id})),
    )
    .await;
    assert_eq!(status, 201, "{member}");
    let (status, _) = call(
        &app,
        &bob,
        Method::GET,
        &format!("/api/v1/teams/{team_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, answer) = call(
        &app,
        &bob,
        Method::POST,
        &format!("/api/v1/teams/{team_id}/members"),
        Some(json!({"contact_id": chat})),
    )
    .await;
    assert_api_error(status, &answer, 403, "forbidden");
    let (status, answer) = call(
        &app,
        &bob,
        Method::DELETE,
        &format!("/api/v1/teams/{team_id}"),
        None,
    )
    .await;
    assert_api_error(status, &answer, 403, "forbidden");
    let (status, answer) = call(
        &app,
        &bob,
        Method::POST,
        "/api/v1/schedules",
        Some(team_schedule.clone()),
    )
    .await;
    assert_api_error(status, &answer, 403, "forbidden");
    // Contacts that are not linked to the account are not its to address.
    let (status, answer) = call(
        &app,
        &bob,
        Method::POST,
        "/api/v1/schedules",
        Some(json!({"cron": "0 9 * * *", "message": "m", "audience": {"contact_ids": [chat]}})),
    )
    .await;
    assert_api_error(status, &answer, 403, "forbidden");
    assert_eq!(app.count("SELECT COUNT(*) FROM schedules").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM team_members").await, 2);

    // Alice's schedule is hers: Bob can neither see, change nor delete it.
    let (status, schedule) = call(
        &app,
        &alice,
        Method::POST,
        "/api/v1/schedules",
        Some(team_schedule),
    )
    .await;
    assert_eq!(status, 201, "{schedule}");
    let path = format!("/api/v1/schedules/{}", schedule["id"].as_str().expect("id"));
    for (method, body) in [
        (Method::GET, None),
        (Method::PATCH, Some(json!({"message": "hijacked"}))),
        (Method::DELETE, None),
    ] {
        let (status, answer) = call(&app, &bob, method, &path, body).await;
        assert_api_error(status, &answer, 404, "not_found");
    }
    let (status, answer) = call(&app, &bob, Method::GET, &format!("{path}/runs"), None).await;
    assert_api_error(status, &answer, 404, "not_found");
    let (_, list) = call(&app, &bob, Method::GET, "/api/v1/schedules", None).await;
    assert_eq!(list["schedules"], json!([]));
    let (status, mine) = call(&app, &alice, Method::GET, &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(mine["message"], json!("m"));
    assert_eq!(mine["audience"], json!({"team_id": team_id}));
    let (status, answer) = app
        .admin(Method::GET, "/api/v1/schedules/preview", None)
        .await;
    assert_api_error(status, &answer, 422, "validation_failed");
    app.stop().await;
    env.cleanup().await;
}

async fn teams_are_managed_by_their_admins(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let clock = ManualClock::at("2026-06-01T08:59:00+09:00");
    let app = app_with_clock(&env, &telegram, clock.clone()).await;
    let first = telegram_contact(&app, "501").await;
    let second = telegram_contact(&app, "502").await;
    let (status, team) = app
        .admin(
            Method::POST,
            "/api/v1/teams",
            Some(json!({"name": "platform", "time_zone": "Europe/Berlin", "morning_at": "08:30"})),
        )
        .await;
    assert_eq!(status, 201, "{team}");
    assert_eq!(team["time_zone"], json!("Europe/Berlin"));
    assert_eq!(team["morning_at"], json!("08:30"));
    assert_eq!(team["members"], json!([]));
    let team_id = team["id"].as_str().expect("id").to_string();
    let (status, defaults) = app
        .admin(
            Method::POST,
            "/api/v1/teams",
            Some(json!({"name": "defaults"})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(defaults["time_zone"], json!("Asia/Seoul"));
    assert_eq!(defaults["morning_at"], json!("09:00"));
    let (status, answer) = app
        .admin(
            Method::POST,
            "/api/v1/teams",
            Some(json!({"name": "x", "morning_at": "9am"})),
        )
        .await;
    assert_api_error(status, &answer, 422, "validation_failed");

    let members = format!("/api/v1/teams/{team_id}/members");
    let mut member_ids = Vec::new();
    for contact in [&first, &second] {
        let (status, member) = app
            .admin(Method::POST, &members, Some(json!({"contact_id": contact})))
            .await;
        assert_eq!(status, 201, "{member}");
        assert_eq!(member["contact_id"], json!(contact));
        assert_eq!(member["admin"], json!(false));
        member_ids.push(member["id"].as_str().expect("id").to_string());
    }
    let (status, answer) = app
        .admin(Method::POST, &members, Some(json!({"contact_id": first})))
        .await;
    assert_api_error(status, &answer, 409, "conflict");
    let (status, answer) = app
        .admin(Method::POST, &members, Some(json!({"contact_id": "999"})))
        .await;
    assert_api_error(status, &answer, 422, "validation_failed");

    // An announcement to the team reaches its members; one removed hears nothing more.
    let schedule = create_schedule(
        &app,
        json!({"cron": "0 9 * * *", "message": "team news", "audience": {"team_id": team_id}}),
    )
    .await;
    clock.set_rfc3339("2026-06-01T09:00:00+09:00");
    wait_for_messages(&telegram, 2).await;
    let (status, _) = app
        .admin(
            Method::DELETE,
            &format!("{members}/{}", member_ids[1]),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, listed) = app.admin(Method::GET, &members, None).await;
    assert_eq!(listed["members"].as_array().expect("members").len(), 1);
    clock.set_rfc3339("2026-06-02T09:00:00+09:00");
    wait_for_runs(&app, 2).await;
    wait_for_messages(&telegram, 3).await;
    app.wait_for_outbox_drained().await;
    let chats: Vec<Value> = telegram
        .delivered()
        .iter()
        .map(|m| m.chat_id.clone())
        .collect();
    assert_eq!(chats.len(), 3);
    assert_eq!(chats[2], json!(501));
    let id = schedule["id"].as_str().expect("id");
    let recipients: Vec<usize> = runs(&app, id).await.iter().map(|r| r.2).collect();
    assert_eq!(recipients, [2, 1]);

    // Deleting the team takes its schedules with it.
    let (status, _) = app
        .admin(Method::DELETE, &format!("/api/v1/teams/{team_id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = app
        .admin(Method::GET, &format!("/api/v1/schedules/{id}"), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(app.count("SELECT COUNT(*) FROM team_members").await, 0);
    app.stop().await;
    env.cleanup().await;
}

/// Two real herald processes on one PostgreSQL database, a 6-field cron every 2 s on the real
/// clock: every due time is fired by one of them, once.
async fn two_herald_processes_on_one_database_fire_each_due_time_once(env: TestEnv) {
    if env.backend != Backend::Postgres {
        // Two processes on one SQLite file is not a supported deployment.
        env.cleanup().await;
        return;
    }
    let telegram = FakeTelegram::start().await;
    let second_dir = tempfile::tempdir().expect("temp dir");
    let second_dir_text = second_dir.path().display().to_string();
    let (mut first, first_url) =
        crate::delivery::start_binary_with(&env, &telegram, &[("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)])
            .await;
    let (mut second, second_url) = crate::delivery::start_binary_with(
        &env,
        &telegram,
        &[
            ("HERALD_ADMIN_TOKEN", ADMIN_TOKEN),
            ("HERALD_DATA_DIR", second_dir_text.as_str()),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let contact: Value = client
        .post(format!("{first_url}/api/v1/contacts"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"channel": "telegram", "address": "601"}))
        .send()
        .await
        .expect("contact")
        .json()
        .await
        .expect("json");
    let response = client
        .post(format!("{second_url}/api/v1/schedules"))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({"cron": "*/2 * * * * *", "time_zone": "UTC", "message": "tick",
                      "audience": {"contact_ids": [contact["id"]]}}),
        )
        .send()
        .await
        .expect("schedule");
    assert_eq!(response.status().as_u16(), 201);
    let schedule: Value = response.json().await.expect("json");
    let id = schedule["id"].as_str().expect("id").to_string();

    let db = sqlx::AnyPool::connect(&env.database_url)
        .await
        .expect("database");
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&db)
                .await
                .expect("count")
        }
    };
    // Long enough that both nodes have looked at the schedule several times.
    wait_until("eight runs", Duration::from_secs(60), || async {
        count("SELECT COUNT(*) FROM schedule_runs").await >= 8
    })
    .await;
    let response = client
        .patch(format!("{first_url}/api/v1/schedules/{id}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .expect("disable");
    assert_eq!(response.status().as_u16(), 200);
    let runs = count("SELECT COUNT(*) FROM schedule_runs").await;
    let due_times = count("SELECT COUNT(DISTINCT due_at) FROM schedule_runs").await;
    assert_eq!(due_times, runs);
    assert_eq!(
        count("SELECT COUNT(*) FROM deliveries WHERE event_type = 'announcement'").await,
        runs,
        "one delivery per run"
    );
    wait_until("every tick to arrive", WAIT, || async {
        telegram.delivered().len() as i64 >= runs
    })
    .await;
    assert_eq!(telegram.delivered().len() as i64, runs);
    db.close().await;
    let _ = first.kill().await;
    let _ = second.kill().await;
    env.cleanup().await;
}

async fn mornings(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM team_mornings").await
}

async fn wait_for_mornings(app: &TestApp, count: i64) {
    let db = app.state.db.clone();
    wait_until(&format!("{count} team morning(s)"), WAIT, || {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM team_mornings")
                .fetch_one(db.reader())
                .await
                .unwrap_or(0)
                >= count
        }
    })
    .await;
}

async fn member_days_make_the_morning_message_on_telegram_and_by_mail(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let smtp = FakeSmtp::start().await;
    // Monday 2026-06-01, an hour before the team's morning.
    let clock = ManualClock::at("2026-06-01T08:00:00+09:00");
    let app = env
        .spawn_with_clock(
            &[
                ("HERALD_TELEGRAM_API", telegram.base_url.as_str()),
                ("HERALD_TELEGRAM_BOT_TOKEN", telegram.token.as_str()),
                ("HERALD_SMTP_URL", smtp.url.as_str()),
            ],
            clock.clone(),
        )
        .await;
    let (status, minji) = app
        .admin(
            Method::POST,
            "/api/v1/contacts",
            Some(json!({"channel": "telegram", "address": "701", "nick_name": "Minji"})),
        )
        .await;
    assert_eq!(status, 201, "{minji}");
    let (status, desk) = app
        .admin(
            Method::POST,
            "/api/v1/contacts",
            Some(json!({"channel": "email", "address": "desk@example.com", "nick_name": "Desk"})),
        )
        .await;
    assert_eq!(status, 201, "{desk}");
    let (status, team) = app
        .admin(Method::POST, "/api/v1/teams", Some(json!({"name": "ops"})))
        .await;
    assert_eq!(status, 201, "{team}");
    let team_id = team["id"].as_str().expect("id").to_string();
    let mut members = Vec::new();
    for contact in [&minji, &desk] {
        let (status, member) = app
            .admin(
                Method::POST,
                &format!("/api/v1/teams/{team_id}/members"),
                Some(json!({"contact_id": contact["id"]})),
            )
            .await;
        assert_eq!(status, 201, "{member}");
        members.push(member["id"].as_str().expect("id").to_string());
    }
    let days = format!("/api/v1/teams/{team_id}/days");
    for (body, field) in [
        (
            json!({"member_id": members[0], "from": "2026-6-1", "kind": "off"}),
            "from",
        ),
        (
            json!({"member_id": members[0], "from": "2026-06-02", "to": "2026-06-01", "kind": "off"}),
            "to",
        ),
        (
            json!({"member_id": "1", "from": "2026-06-01", "kind": "off"}),
            "member_id",
        ),
        (
            json!({"member_id": members[0], "from": "2026-06-01", "kind": "day off"}),
            "kind",
        ),
    ] {
        let (status, answer) = app.admin(Method::POST, &days, Some(body.clone())).await;
        assert_api_error(status, &answer, 422, "validation_failed");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(field)),
            "{body} → {answer}"
        );
    }
    let (status, off) = app
        .admin(
            Method::POST,
            &days,
            Some(json!({"member_id": members[0], "from": "2026-06-01", "kind": "off", "note": "family trip"})),
        )
        .await;
    assert_eq!(status, 201, "{off}");
    assert_eq!(off["to"], json!("2026-06-01"));
    let (status, _) = app
        .admin(
            Method::POST,
            &days,
            Some(json!({"member_id": members[1], "from": "2026-06-03", "kind": "birthday"})),
        )
        .await;
    assert_eq!(status, 201);
    let (_, listed) = app.admin(Method::GET, &days, None).await;
    assert_eq!(listed["days"].as_array().expect("days").len(), 2);

    // Monday: Minji is off; both members are told, on Telegram and by mail.
    clock.set_rfc3339("2026-06-01T09:00:00+09:00");
    wait_for_messages(&telegram, 1).await;
    wait_until("the morning mail", WAIT, || async {
        smtp.last_mail_to("desk@example.com").is_some()
    })
    .await;
    let message = &telegram.delivered()[0].text;
    assert_eq!(
        message,
        "ops — 2026-06-01\n• Minji: day off (휴가) — family trip"
    );
    let mail = smtp.last_mail_to("desk@example.com").expect("mail");
    assert!(
        mail.body_text()
            .contains("• Minji: day off (휴가) — family trip"),
        "{}",
        mail.body_text()
    );

    // Tuesday: nobody is away or celebrating, so nothing is sent.
    clock.set_rfc3339("2026-06-02T09:00:00+09:00");
    wait_for_mornings(&app, 2).await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE event_type = 'team_morning'")
            .await,
        2
    );

    // Wednesday: Desk's birthday.
    clock.set_rfc3339("2026-06-03T09:00:00+09:00");
    wait_for_messages(&telegram, 2).await;
    assert_eq!(
        telegram.delivered()[1].text,
        "ops — 2026-06-03\n• Desk: birthday (생일)"
    );
    assert_eq!(mornings(&app).await, 3);
    app.wait_for_outbox_drained().await;
    assert_eq!(telegram.delivered().len(), 2);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE event_type = 'team_morning'")
            .await,
        4
    );
    app.stop().await;
    env.cleanup().await;
}

async fn the_team_command_lists_teams_and_lets_admins_add_and_remove(env: TestEnv) {
    use crate::bot::{skill, texts};
    let smtp = FakeSmtp::start().await;
    let app = env.spawn(&[("HERALD_SMTP_URL", smtp.url.as_str())]).await;
    let alone = skill(&app, "kakao-lead", "팀").await;
    assert!(texts(&alone).contains("속한 팀이 없어요"), "{alone}");
    let _ = skill(&app, "kakao-other", "team").await;
    let (_, contacts) = app.admin(Method::GET, "/api/v1/contacts", None).await;
    let contact_of = |address: &str| {
        contacts["contacts"]
            .as_array()
            .expect("contacts")
            .iter()
            .find(|c| c["address"] == json!(address))
            .map(|c| c["id"].clone())
            .expect("the bot made the contact")
    };
    let (status, team) = app
        .admin(Method::POST, "/api/v1/teams", Some(json!({"name": "ops"})))
        .await;
    assert_eq!(status, 201);
    let members = format!("/api/v1/teams/{}/members", team["id"].as_str().expect("id"));
    let (status, _) = app
        .admin(
            Method::POST,
            &members,
            Some(json!({"contact_id": contact_of("kakao-lead"), "admin": true})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = app
        .admin(
            Method::POST,
            &members,
            Some(json!({"contact_id": contact_of("kakao-other")})),
        )
        .await;
    assert_eq!(status, 201);
    herald::testkit::accounts::sign_up(
        &app.client,
        &app.address,
        &smtp,
        "dana",
        "dana@example.com",
        "dana's password",
    )
    .await;

    let listed = skill(&app, "kakao-lead", "팀").await;
    assert_eq!(texts(&listed), "👥 내 팀:\n• ops (2 명) — 관리자");
    let added = skill(&app, "kakao-lead", "팀 추가 ops dana").await;
    assert_eq!(texts(&added), "✅ dana 님을 ops 팀에 추가했어요.");
    let shown = skill(&app, "kakao-lead", "team ops").await;
    assert_eq!(
        texts(&shown),
        "👥 ops\n• kakao-lead (admin)\n• kakao-other\n• dana"
    );
    let refused = skill(&app, "kakao-other", "team remove ops dana").await;
    assert_eq!(
        texts(&refused),
        "Only the team's admins can add or remove members."
    );
    let removed = skill(&app, "kakao-lead", "team remove ops dana").await;
    assert_eq!(texts(&removed), "✅ Removed dana from ops.");
    let stranger = skill(&app, "kakao-stranger", "팀 ops").await;
    assert!(
        texts(&stranger).contains("그런 팀에 속해 있지 않아요"),
        "{stranger}"
    );
    let (_, listed) = app.admin(Method::GET, &members, None).await;
    assert_eq!(listed["members"].as_array().expect("members").len(), 2);
    app.stop().await;
    env.cleanup().await;
}

/// A contact made by the operator with quiet hours 22:00–08:00 (in its zone, Asia/Seoul).
async fn quiet_contact(app: &TestApp, channel: &str, address: &str) -> String {
    let (status, contact) = app
        .admin(
            Method::POST,
            "/api/v1/contacts",
            Some(json!({"channel": channel, "address": address, "nick_name": address})),
        )
        .await;
    assert_eq!(status, 201, "{contact}");
    let id = contact["id"].as_str().expect("contact id").to_string();
    let (status, patched) = app
        .admin(
            Method::PATCH,
            &format!("/api/v1/contacts/{id}"),
            Some(json!({"quiet_hours": "22:00-08:00"})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    id
}

async fn wait_for_mails(smtp: &FakeSmtp, count: usize) {
    wait_until(&format!("{count} mail(s)"), WAIT, || async {
        smtp.mails().len() >= count
    })
    .await;
}

async fn quiet_hours_hold_an_announcement_for_the_morning_digest_and_an_urgent_one_passes(
    env: TestEnv,
) {
    let telegram = FakeTelegram::start().await;
    let smtp = FakeSmtp::start().await;
    // Monday evening in Seoul, before the quiet hours.
    let clock = ManualClock::at("2026-12-07T21:00:00+09:00");
    let app = env
        .spawn_with_clock(
            &[
                ("HERALD_TELEGRAM_API", telegram.base_url.as_str()),
                ("HERALD_TELEGRAM_BOT_TOKEN", telegram.token.as_str()),
                ("HERALD_SMTP_URL", smtp.url.as_str()),
            ],
            clock.clone(),
        )
        .await;
    let chat = quiet_contact(&app, "telegram", "501").await;
    let mail = quiet_contact(&app, "email", "night@example.com").await;
    let nightly = "Nightly <script>alert(1)</script> & note";
    let nightly_schedule = create_schedule(
        &app,
        json!({"cron": "0 23 * * *", "message": nightly, "audience": {"contact_ids": [chat, mail]}}),
    )
    .await;
    let urgent = create_schedule(
        &app,
        json!({"cron": "30 23 * * *", "message": "Outage <b>drill</b>", "urgent": true,
               "audience": {"contact_ids": [chat, mail]}}),
    )
    .await;
    assert_eq!(urgent["urgent"], json!(true));

    // 23:00: the run is recorded, nothing is sent, both are held for 08:00.
    clock.set_rfc3339("2026-12-07T23:00:00+09:00");
    wait_for_runs(&app, 1).await;
    let held: Vec<(i64, String)> =
        sqlx::query_as("SELECT due_at, kind FROM digest_items ORDER BY contact_id")
            .fetch_all(app.state.db.reader())
            .await
            .expect("held items");
    let morning = instant("2026-12-08T08:00:00+09:00");
    assert_eq!(
        held,
        [
            (morning, "announcement".to_string()),
            (morning, "announcement".to_string())
        ]
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries").await,
        0,
        "nothing is queued inside quiet hours"
    );
    // The run's history says both were held, and for when.
    let nightly_id = nightly_schedule["id"].as_str().expect("id");
    assert_eq!(
        run_recipients(&app, nightly_id).await,
        [
            (chat.clone(), Some(utc("2026-12-08T08:00:00+09:00"))),
            (mail.clone(), Some(utc("2026-12-08T08:00:00+09:00")))
        ]
    );

    // 23:30: the urgent one passes the quiet hours at once, as itself.
    clock.set_rfc3339("2026-12-07T23:30:00+09:00");
    wait_for_messages(&telegram, 1).await;
    wait_for_mails(&smtp, 1).await;
    assert_eq!(telegram.delivered()[0].text, "Outage <b>drill</b>");
    let urgent_mail = smtp.mails()[0].clone();
    let parts: Vec<String> = urgent_mail
        .parts()
        .iter()
        .map(|p| p.content_type.clone())
        .collect();
    assert_eq!(parts, ["text/plain", "text/html"], "{}", urgent_mail.data);
    assert_eq!(
        urgent_mail.body_text().replace("\r\n", "\n"),
        "Outage <b>drill</b>\n\n— herald\n"
    );
    let html = urgent_mail.html().expect("an HTML part");
    assert!(html.contains("Outage &"), "escaped: {html}");
    assert!(!html.contains("<b>drill"), "escaped: {html}");
    let urgent_id = urgent["id"].as_str().expect("id");
    assert_eq!(
        run_recipients(&app, urgent_id).await,
        [(chat.clone(), None), (mail.clone(), None)],
        "an urgent run holds nobody"
    );

    // 08:00: each contact gets one digest with the held announcement.
    clock.set_rfc3339("2026-12-08T08:00:00+09:00");
    wait_for_messages(&telegram, 2).await;
    wait_for_mails(&smtp, 2).await;
    app.wait_for_outbox_drained().await;
    assert_eq!(
        telegram.delivered()[1].text,
        "<b>herald digest</b>: 1 announcement\n📢 Nightly &lt;script&gt;alert(1)&lt;/script&gt; &amp; note"
    );
    let digest_mail = smtp.mails()[1].clone();
    assert_eq!(digest_mail.to, ["night@example.com"]);
    assert!(
        digest_mail
            .data
            .contains("Subject: herald digest: 1 announcement"),
        "{}",
        digest_mail.data
    );
    assert_eq!(
        digest_mail.body_text().replace("\r\n", "\n"),
        format!("herald digest: 1 announcement\n📢 {nightly}\n\n— herald\n")
    );
    let html = digest_mail.html().expect("an HTML part");
    assert!(!html.contains("<script>"), "escaped: {html}");
    assert!(html.contains("alert(1)"), "{html}");
    assert_eq!(app.count("SELECT COUNT(*) FROM digest_items").await, 0);

    // Once: later in the morning nothing more arrives.
    clock.set_rfc3339("2026-12-08T09:00:00+09:00");
    app.wait_for_outbox_drained().await;
    assert_eq!(telegram.delivered().len(), 2);
    assert_eq!(smtp.mails().len(), 2);
    app.stop().await;
    env.cleanup().await;
}

/// The recipients of a schedule's latest run, sorted by contact: (contact id, the digest's due
/// time when held). Checks that `held` agrees with `held_until`.
async fn run_recipients(app: &TestApp, id: &str) -> Vec<(String, Option<String>)> {
    let (status, body) = app
        .admin(Method::GET, &format!("/api/v1/schedules/{id}/runs"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let mut told: Vec<(String, Option<String>)> = body["runs"][0]["recipients"]
        .as_array()
        .expect("recipients")
        .iter()
        .map(|r| {
            let until = r["held_until"].as_str().map(str::to_string);
            assert_eq!(r["held"], json!(until.is_some()), "{r}");
            (
                r["contact_id"].as_str().expect("contact_id").to_string(),
                until,
            )
        })
        .collect();
    told.sort();
    told
}

async fn a_member_in_quiet_hours_gets_the_team_morning_in_its_digest(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    // Monday 2026-06-01 in Seoul, before the team's early morning (07:30), inside the quiet
    // hours (22:00–08:00) of one member.
    let clock = ManualClock::at("2026-06-01T07:00:00+09:00");
    let app = app_with_clock(&env, &telegram, clock.clone()).await;
    let sleeper = quiet_contact(&app, "telegram", "601").await;
    let early = telegram_contact(&app, "602").await;
    let (status, team) = app
        .admin(
            Method::POST,
            "/api/v1/teams",
            Some(json!({"name": "ops", "morning_at": "07:30"})),
        )
        .await;
    assert_eq!(status, 201, "{team}");
    let team_id = team["id"].as_str().expect("id").to_string();
    let mut members = Vec::new();
    for contact in [&sleeper, &early] {
        let (status, member) = app
            .admin(
                Method::POST,
                &format!("/api/v1/teams/{team_id}/members"),
                Some(json!({"contact_id": contact})),
            )
            .await;
        assert_eq!(status, 201, "{member}");
        members.push(member["id"].as_str().expect("id").to_string());
    }
    let (status, day) = app
        .admin(
            Method::POST,
            &format!("/api/v1/teams/{team_id}/days"),
            Some(json!({"member_id": members[1], "from": "2026-06-01", "kind": "half"})),
        )
        .await;
    assert_eq!(status, 201, "{day}");
    let morning = "ops — 2026-06-01\n• 602: half day (반차)";

    // 07:30: the member outside quiet hours is told at once; the other's copy is held for 08:00.
    clock.set_rfc3339("2026-06-01T07:30:00+09:00");
    wait_for_messages(&telegram, 1).await;
    wait_for_mornings(&app, 1).await;
    let delivered = telegram.delivered();
    assert_eq!(
        (&delivered[0].chat_id, delivered[0].text.as_str()),
        (&json!(602), morning)
    );
    let held: Vec<(i64, String)> = sqlx::query_as("SELECT due_at, kind FROM digest_items")
        .fetch_all(app.state.db.reader())
        .await
        .expect("held items");
    assert_eq!(
        held,
        [(
            instant("2026-06-01T08:00:00+09:00"),
            "announcement".to_string()
        )]
    );
    app.wait_for_outbox_drained().await;
    assert_eq!(
        telegram.delivered().len(),
        1,
        "nothing more inside quiet hours"
    );

    // 08:00: the quiet hours end and the sleeper's digest lists the morning message, once.
    clock.set_rfc3339("2026-06-01T08:00:00+09:00");
    wait_for_messages(&telegram, 2).await;
    app.wait_for_outbox_drained().await;
    let delivered = telegram.delivered();
    assert_eq!(delivered.len(), 2);
    assert_eq!(delivered[1].chat_id, json!(601));
    assert_eq!(
        delivered[1].text,
        format!("<b>herald digest</b>: 1 announcement\n📢 {morning}")
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM digest_items").await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE event_type = 'team_morning'")
            .await,
        1
    );
    app.stop().await;
    env.cleanup().await;
}

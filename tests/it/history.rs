//! History pruning (`herald::history`): accepted pushes, seen commits, schedules' runs, teams'
//! mornings and expired login tokens go once older than their retention (the defaults here),
//! recent ones stay. Rows are written with chosen ages; a `ManualClock` starts the pass.

use std::time::Duration;

use herald::clock::ManualClock;
use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{TestApp, TestEnv, WAIT, wait_until};

both_backends!(old_history_is_pruned_and_recent_history_stays);

const DAY: i64 = 86_400_000;

async fn execute(app: &TestApp, sql: &'static str, binds: &[Bind<'_>]) {
    let mut query = sqlx::query(sql);
    for bind in binds {
        query = match bind {
            Bind::Int(v) => query.bind(*v),
            Bind::Text(v) => query.bind(v.to_string()),
        };
    }
    query
        .execute(app.state.db.writer())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

enum Bind<'a> {
    Int(i64),
    Text(&'a str),
}
use Bind::{Int, Text};

async fn old_history_is_pruned_and_recent_history_stays(env: TestEnv) {
    let now = herald::ids::now_ms();
    let clock = ManualClock::new(now);
    let app = env.spawn_with_clock(&[], clock.clone()).await;

    // Owners of the rows, through the API: a team, and a yearly schedule that is not due.
    let (status, team) = app
        .admin(Method::POST, "/api/v1/teams", Some(json!({"name": "ops"})))
        .await;
    assert_eq!(status, 201, "{team}");
    let team_id: i64 = team["id"].as_str().expect("id").parse().expect("number");
    let (status, contact) = app
        .admin(
            Method::POST,
            "/api/v1/contacts",
            Some(json!({"channel": "telegram", "address": "9", "nick_name": "nine"})),
        )
        .await;
    assert_eq!(status, 201, "{contact}");
    let (status, schedule) = app
        .admin(
            Method::POST,
            "/api/v1/schedules",
            Some(json!({"cron": "0 0 1 1 *", "message": "new year",
                        "audience": {"contact_ids": [contact["id"]]}})),
        )
        .await;
    assert_eq!(status, 201, "{schedule}");
    let schedule_id: i64 = schedule["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("number");
    let account_id: i64 = sqlx::query_scalar("SELECT MIN(id) FROM accounts")
        .fetch_one(app.state.db.reader())
        .await
        .expect("the bot's account");

    // Old (past the defaults: 30 days for pushes, 90 for schedules) and recent rows of each.
    for (id, age) in [(1, 100 * DAY), (2, DAY)] {
        execute(
            &app,
            "INSERT INTO schedule_runs (id, schedule_id, due_at, fired_at, recipients) \
             VALUES ($1, $2, $3, $3, '[]')",
            &[Int(id), Int(schedule_id), Int(now - age)],
        )
        .await;
    }
    for (day, age) in [("2000-01-01", 100 * DAY), ("2000-01-02", DAY)] {
        execute(
            &app,
            "INSERT INTO team_mornings (team_id, day, due_at, fired_at, recipients) \
             VALUES ($1, $2, $3, $3, '[]')",
            &[Int(team_id), Text(day), Int(now - age)],
        )
        .await;
    }
    let old_push = herald::ids::first_id_at(now - 40 * DAY);
    let recent_push = herald::ids::first_id_at(now - DAY);
    for id in [old_push, recent_push] {
        execute(
            &app,
            "INSERT INTO push_events (id, repository_id, ref, before_sha, after_sha, forced, \
             source, payload, created_at) VALUES ($1, 1, 'refs/heads/main', 'a', 'b', 0, \
             'github_webhook', '{}', $2)",
            &[Int(id), Int(herald::ids::timestamp_ms(id))],
        )
        .await;
    }
    for (sha, age) in [("old-sha", 40 * DAY), ("recent-sha", DAY)] {
        execute(
            &app,
            "INSERT INTO seen_commits (repository_id, ref, sha, seen_at) \
             VALUES (1, 'refs/heads/main', $1, $2)",
            &[Text(sha), Int(now - age)],
        )
        .await;
    }
    for (hash, expires) in [
        ("expired-token", now - 3_600_000),
        ("live-token", now + DAY),
    ] {
        execute(
            &app,
            "INSERT INTO auth_tokens (token_hash, account_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
            &[
                Text(hash),
                Int(account_id),
                Int(now - 2 * DAY),
                Int(expires),
            ],
        )
        .await;
    }

    // Nothing goes before the first pass, a minute after start on herald's clock.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM schedule_runs WHERE id = 1")
            .await,
        1
    );
    clock.advance(Duration::from_secs(61));
    wait_until("the old history to be pruned", WAIT, || async {
        app.count(
            "SELECT (SELECT COUNT(*) FROM schedule_runs WHERE id = 1) \
             + (SELECT COUNT(*) FROM team_mornings WHERE day = '2000-01-01') \
             + (SELECT COUNT(*) FROM seen_commits WHERE sha = 'old-sha') \
             + (SELECT COUNT(*) FROM auth_tokens WHERE token_hash = 'expired-token')",
        )
        .await
            == 0
    })
    .await;
    let push_ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM push_events ORDER BY id")
        .fetch_all(app.state.db.reader())
        .await
        .expect("pushes");
    assert_eq!(
        push_ids,
        [recent_push],
        "the old push goes, the recent one stays"
    );
    let run_ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM schedule_runs ORDER BY id")
        .fetch_all(app.state.db.reader())
        .await
        .expect("runs");
    assert_eq!(run_ids, [2]);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM team_mornings WHERE day = '2000-01-02'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM seen_commits WHERE sha = 'recent-sha'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM auth_tokens WHERE token_hash = 'live-token'")
            .await,
        1
    );
    app.stop().await;
    env.cleanup().await;
}

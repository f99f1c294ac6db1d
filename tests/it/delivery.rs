//! The delivery queue: failures are retried at the right times, every attempt is logged, and a
//! notification arrives once even across a restart or a `kill -9` of herald.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use herald::outbox::channel::OutgoingMessage;
use herald::outbox::worker::Dispatcher;
use herald::outbox::{Attempt, Channel, Settled, Verdict};
use herald::testkit::fake_telegram::{Behaviour, FakeTelegram};
use herald::testkit::git_repo::GitRepo;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::both_backends;
use crate::git_watch::telegram_app;
use crate::helpers::{TestEnv, WAIT, wait_until};

both_backends!(
    telegram_429_500_and_silence_are_retried_until_delivered_once,
    blocked_bot_stops_notifications_to_that_contact,
    a_pending_notification_survives_a_restart_and_arrives_once,
    a_notification_in_flight_survives_kill_9_and_arrives_once,
    a_contact_that_blocks_the_bot_while_its_send_is_in_flight_gets_nothing_more,
);

async fn telegram_429_500_and_silence_are_retried_until_delivered_once(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let repo = GitRepo::new();
    let app = telegram_app(&env, &telegram, &[("HERALD_DELIVERY_TIMEOUT", "1s")]).await;
    app.subscribe_reference("telegram", "5", &repo.url(), "main")
        .await;
    telegram.script([
        Behaviour::TooManyRequests { retry_after: 1 },
        Behaviour::ServerError,
        Behaviour::Hang {
            r#for: Duration::from_secs(5),
        },
    ]);
    let sha = repo.commit("a", "1", "Eventually delivered");
    app.wait_for_head("main", &sha).await;
    wait_until("the message", WAIT, || async {
        !telegram.delivered().is_empty()
    })
    .await;
    app.wait_for_outbox_drained().await;
    assert_eq!(telegram.delivered().len(), 1);
    assert_eq!(telegram.requests(), 4);

    let attempts: Vec<(i64, Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT attempted_at, status_code, error FROM delivery_attempts ORDER BY attempted_at, id",
    )
    .fetch_all(app.state.db.reader())
    .await
    .expect("attempts");
    assert_eq!(attempts.len(), 4, "{attempts:?}");
    assert_eq!(attempts[0].1, Some(429));
    assert!(
        attempts[0]
            .2
            .as_deref()
            .is_some_and(|e| e.contains("Too Many Requests"))
    );
    assert_eq!(attempts[1].1, Some(500));
    assert_eq!(attempts[2].1, None);
    assert!(
        attempts[2]
            .2
            .as_deref()
            .is_some_and(|e| e.contains("timed out")),
        "{attempts:?}"
    );
    assert_eq!(attempts[3].1, Some(200));
    // retry_after = 1 s was honoured between the first and second attempt.
    assert!(attempts[1].0 - attempts[0].0 >= 1000, "{attempts:?}");
    let status: String = sqlx::query_scalar("SELECT status FROM deliveries")
        .fetch_one(app.state.db.reader())
        .await
        .expect("status");
    assert_eq!(status, "delivered");

    app.stop().await;
    env.cleanup().await;
}

async fn blocked_bot_stops_notifications_to_that_contact(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let repo = GitRepo::new();
    let app = telegram_app(&env, &telegram, &[]).await;
    app.subscribe_reference("telegram", "5", &repo.url(), "main")
        .await;
    telegram.script([Behaviour::Forbidden]);
    let sha = repo.commit("a", "1", "Blocked");
    app.wait_for_head("main", &sha).await;
    app.wait_for_outbox_drained().await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE status = 'failed'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM contacts WHERE blocked = 1")
            .await,
        1
    );
    let sha = repo.commit("b", "2", "Not sent at all");
    app.wait_for_head("main", &sha).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM deliveries").await, 1);
    assert_eq!(telegram.requests(), 1);
    app.stop().await;
    env.cleanup().await;
}

async fn a_pending_notification_survives_a_restart_and_arrives_once(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let repo = GitRepo::new();
    telegram.set_always(Some(Behaviour::ServerError));
    let app = telegram_app(&env, &telegram, &[("HERALD_RETRY_SCHEDULE", "200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms")]).await;
    app.subscribe_reference("telegram", "5", &repo.url(), "main")
        .await;
    let sha = repo.commit("a", "1", "Across a restart");
    app.wait_for_head("main", &sha).await;
    wait_until("a failed attempt", WAIT, || async {
        telegram.requests() >= 1
    })
    .await;
    app.stop().await;

    telegram.set_always(None);
    let app = telegram_app(&env, &telegram, &[]).await;
    wait_until("the message after restart", WAIT, || async {
        !telegram.delivered().is_empty()
    })
    .await;
    app.wait_for_outbox_drained().await;
    assert_eq!(telegram.delivered().len(), 1);
    assert!(telegram.delivered()[0].text.contains("Across a restart"));
    app.stop().await;
    env.cleanup().await;
}

/// Runs the real binary with the test's settings and returns it with its base URL.
pub async fn start_binary(
    env: &TestEnv,
    telegram: &FakeTelegram,
) -> (tokio::process::Child, String) {
    start_binary_with(env, telegram, &[]).await
}

pub async fn start_binary_with(
    env: &TestEnv,
    telegram: &FakeTelegram,
    extra: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    let settings = env.settings(&[]);
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .env("HERALD_DATA_DIR", env.data_dir.path())
        .env("HERALD_DATABASE_URL", &settings.database_url)
        .env("HERALD_POLL_INTERVAL", "200ms")
        .env("HERALD_DELIVERY_TIMEOUT", "1s")
        .env("HERALD_ALLOW_PRIVATE_TARGETS", "true")
        .env("HERALD_TELEGRAM_API", &telegram.base_url)
        .env("HERALD_TELEGRAM_BOT_TOKEN", &telegram.token)
        .env("HERALD_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .current_dir(env.data_dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (key, value) in extra {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start herald");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let address = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(log) = serde_json::from_str::<serde_json::Value>(&line)
                && let Some(listen) = log.get("listen").and_then(|v| v.as_str())
            {
                return format!("http://{listen}");
            }
        }
        panic!("herald exited before it said where it listens");
    })
    .await
    .expect("herald starts");
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, address)
}

async fn a_notification_in_flight_survives_kill_9_and_arrives_once(env: TestEnv) {
    let telegram = FakeTelegram::start().await;
    let repo = GitRepo::new();
    telegram.set_always(Some(Behaviour::Hang {
        r#for: Duration::from_secs(30),
    }));
    let (mut first, address) = start_binary(&env, &telegram).await;
    let client = reqwest::Client::new();
    let body = serde_json::json!({"id": "5", "fav_repository": repo.url(), "nick_name": "n", "type": "telegram", "branch": "main"});
    let response = client
        .post(format!("{address}/api/"))
        .json(&body)
        .send()
        .await
        .expect("subscribe");
    assert_eq!(response.status().as_u16(), 200);
    repo.commit("a", "1", "Through a crash");
    wait_until("the send to be in flight", WAIT, || async {
        telegram.requests() >= 1
    })
    .await;
    first.start_kill().expect("kill -9");
    let _ = first.wait().await;

    telegram.set_always(None);
    let (mut second, _) = start_binary(&env, &telegram).await;
    wait_until("the message after the crash", WAIT, || async {
        !telegram.delivered().is_empty()
    })
    .await;
    // Let the restarted node settle everything, then count.
    let app_db = herald::store::Db::connect(&env.settings(&[]).database_url)
        .await
        .expect("db");
    wait_until("no pending delivery", WAIT, || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")
            .fetch_one(app_db.reader())
            .await
            .unwrap_or(1)
            == 0
    })
    .await;
    assert_eq!(telegram.delivered().len(), 1);
    app_db.close().await;
    second.start_kill().expect("kill");
    let _ = second.wait().await;
    env.cleanup().await;
}

/// A Kakao channel for a dispatcher the test drives: it tells the test which delivery it is
/// sending, then holds the send until the test lets it fail with a 500.
struct HeldChannel {
    started: tokio::sync::mpsc::UnboundedSender<i64>,
    release: std::sync::Arc<tokio::sync::Notify>,
}

impl Channel for HeldChannel {
    fn name(&self) -> &'static str {
        "kakao"
    }

    fn send<'a>(&'a self, message: OutgoingMessage<'a>) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let _ = self.started.send(message.id);
            self.release.notified().await;
            Attempt::failed(
                Verdict::Retry { after: None },
                Some(500),
                None,
                "the platform is down",
            )
        })
    }
}

/// Driven one step at a time: the contact blocks the bot (its pending deliveries are
/// cancelled) while a send to it is in flight; the failed attempt is logged but leaves the
/// delivery cancelled, and the next step sends nothing.
async fn a_contact_that_blocks_the_bot_while_its_send_is_in_flight_gets_nothing_more(env: TestEnv) {
    let repo = GitRepo::new();
    // Without Kakao settings the app's own worker leaves Kakao deliveries alone: only the
    // test's dispatcher sends them.
    let app = env.spawn(&[]).await;
    app.subscribe_reference("kakao", "plusfriend:held", &repo.url(), "main")
        .await;
    let sha = repo.commit("a", "1", "Held in flight");
    app.wait_for_head("main", &sha).await;

    let (started, mut sending) = tokio::sync::mpsc::unbounded_channel();
    let release = Arc::new(tokio::sync::Notify::new());
    let channel: Arc<dyn Channel> = Arc::new(HeldChannel {
        started,
        release: release.clone(),
    });
    let dispatcher = Arc::new(Dispatcher {
        db: app.state.db.clone(),
        ids: app.state.ids.clone(),
        channels: HashMap::from([("kakao", channel)]),
        wake: Arc::new(tokio::sync::Notify::new()),
        retry_schedule: vec![Duration::from_millis(1)],
        timeout: Duration::from_secs(60),
        concurrency: 4,
        busy: Default::default(),
        node: app.state.node.clone(),
        shutdown_grace: Duration::from_secs(5),
        parking: None,
        observers: vec![
            Arc::new(herald::projects::health::WebhookHealth),
            Arc::new(herald::contacts::GoneContacts),
        ],
    });
    let step = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move { dispatcher.step().await }
    });
    let delivery = tokio::time::timeout(WAIT, sending.recv())
        .await
        .expect("the step sends the notification")
        .expect("the channel is alive");

    let response = app
        .client
        .delete(app.url("/plusfriend/friend/held"))
        .send()
        .await
        .expect("block");
    assert_eq!(response.status().as_u16(), 200);
    release.notify_one();
    let step = tokio::time::timeout(WAIT, step)
        .await
        .expect("the step ends")
        .expect("no panic")
        .expect("the step records its attempt");
    assert_eq!(step.put_back, Vec::<i64>::new());
    assert_eq!(step.sent.len(), 1, "{step:?}");
    assert_eq!(step.sent[0].delivery_id, delivery);
    assert_eq!(step.sent[0].attempt.status_code, Some(500));
    assert!(
        matches!(step.sent[0].settled, Settled::RetryAt(_)),
        "{step:?}"
    );

    let (status, attempts): (String, i64) =
        sqlx::query_as("SELECT status, attempts FROM deliveries WHERE id = $1")
            .bind(delivery)
            .fetch_one(app.state.db.reader())
            .await
            .expect("the delivery");
    assert_eq!((status.as_str(), attempts), ("cancelled", 1));
    assert_eq!(app.count("SELECT COUNT(*) FROM delivery_attempts").await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM contacts WHERE blocked = 1")
            .await,
        1
    );
    // Its retry would have been due at once: a cancelled delivery is not sent again.
    let again = dispatcher.step().await.expect("a second step");
    assert_eq!(again.sent.len(), 0, "{again:?}");
    assert_eq!(again.put_back, Vec::<i64>::new());

    app.stop().await;
    env.cleanup().await;
}

//! Decisions made once across nodes (issue 23), with three real herald processes on one
//! PostgreSQL and one Redis: a scheduled announcement fires once per due time, and a watched
//! branch is asked for once per poll interval, whichever node gets there first; a push the poll
//! finds is announced once.
//!
//! Redis is expected as for `cluster_bus` (skipped without it, failing under `CI=true`).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use herald::testkit::fake_github::FakeGithub;
use herald::testkit::fake_telegram::FakeTelegram;
use herald::testkit::git_repo::GitRepo;
use reqwest::Method;
use serde_json::{Value, json};

use crate::cluster_bus::{redis_address, redis_url};
use crate::helpers::{Backend, TestEnv, WAIT, rand_u64, wait_until};
use crate::takeover::{admin, open_db, start_node};

const NODES: usize = 3;

/// PostgreSQL, Redis (with a key prefix of this test's own) and a fake Telegram; `None` when a
/// service is missing (the test is skipped).
struct Cluster {
    env: TestEnv,
    prefix: String,
    redis: String,
    telegram: FakeTelegram,
}

impl Cluster {
    async fn new() -> Option<Cluster> {
        redis_address()?;
        let env = TestEnv::new(Backend::Postgres).await?;
        Some(Cluster {
            env,
            prefix: format!("herald-test-{:016x}", rand_u64()),
            redis: redis_url(),
            telegram: FakeTelegram::start().await,
        })
    }

    /// Starts the three nodes with `extra` settings; returns them with their base URLs.
    async fn nodes(&self, extra: &[(&str, &str)]) -> Vec<(tokio::process::Child, String)> {
        let mut settings = vec![
            ("HERALD_REDIS_URL", self.redis.as_str()),
            ("HERALD_REDIS_PREFIX", self.prefix.as_str()),
            ("HERALD_TELEGRAM_API", self.telegram.base_url.as_str()),
            ("HERALD_TELEGRAM_BOT_TOKEN", self.telegram.token.as_str()),
            // What is shown here is one fire and one poll per interval among live nodes, not
            // takeover (tests/it/takeover.rs): a long lease keeps a node starved of CPU by a
            // loaded CI machine from being taken for dead, which would be a second poll.
            ("HERALD_NODE_LEASE", "15s"),
        ];
        settings.extend_from_slice(extra);
        let mut nodes = Vec::new();
        for _ in 0..NODES {
            nodes.push(start_node(&self.env, &settings).await);
        }
        nodes
    }

    async fn stop(self, nodes: Vec<(tokio::process::Child, String)>) {
        for (mut child, _) in nodes {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        self.env.cleanup().await;
    }
}

/// Waits until no delivery is left unsent.
async fn wait_for_outbox_drained(db: &herald::store::Db) {
    wait_until("every delivery sent", WAIT, || async {
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status <> 'delivered'")
                .fetch_one(db.reader())
                .await
                .expect("count");
        left == 0
    })
    .await;
}

/// The node ids of the processes serving `bases`, in that order.
async fn node_ids(db: &herald::store::Db, bases: &[String]) -> Vec<i64> {
    let mut ids = Vec::new();
    for base in bases {
        let id: i64 = sqlx::query_scalar("SELECT node_id FROM nodes WHERE address LIKE $1")
            .bind(format!("{base}%"))
            .fetch_one(db.reader())
            .await
            .expect("the node's row");
        ids.push(id);
    }
    ids
}

/// How often the schedules of the first test are due.
const EVERY: i64 = 2_000;
/// Schedules of the first test, all due at the same instants.
const SCHEDULES: usize = 3;
/// Runs each schedule makes before the test stops it.
const RUNS: usize = 6;

/// Three schedules due every two seconds, at the same instants, made through different nodes,
/// with all three nodes' schedulers waking for each due time: every due time of every schedule
/// has exactly one run in its history (none missing, none twice), and each run's announcement
/// reached Telegram exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_fire_each_due_time_of_a_schedule_once() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let nodes = cluster.nodes(&[]).await;
    let bases: Vec<String> = nodes.iter().map(|(_, base)| base.clone()).collect();
    let db = open_db(&cluster.env).await;

    // Schedule i is made through node i and tells chat 700 + i.
    let mut schedules = Vec::new();
    for (i, base) in bases.iter().enumerate().take(SCHEDULES) {
        let chat = 700 + i as i64;
        let (status, contact) = admin(
            base,
            Method::POST,
            "/api/v1/contacts",
            json!({"channel": "telegram", "address": chat.to_string()}),
        )
        .await;
        assert_eq!(status, 201, "{contact}");
        let message = format!("tick {i}");
        let (status, schedule) = admin(
            base,
            Method::POST,
            "/api/v1/schedules",
            json!({"cron": "*/2 * * * * *", "time_zone": "UTC", "message": message,
                   "audience": {"contact_ids": [contact["id"]]}}),
        )
        .await;
        assert_eq!(status, 201, "{schedule}");
        let id = schedule["id"].as_str().expect("id").to_string();
        schedules.push((id, chat, message));
    }

    wait_until(
        &format!("{RUNS} runs of every schedule"),
        Duration::from_secs(40),
        || async {
            let fewest: Option<i64> = sqlx::query_scalar(
                "SELECT MIN(n) FROM (SELECT COUNT(*) AS n FROM schedule_runs GROUP BY schedule_id) AS runs",
            )
            .fetch_one(db.reader())
            .await
            .expect("count");
            let with_runs: i64 =
                sqlx::query_scalar("SELECT COUNT(DISTINCT schedule_id) FROM schedule_runs")
                    .fetch_one(db.reader())
                    .await
                    .expect("count");
            with_runs == SCHEDULES as i64 && fewest.unwrap_or(0) >= RUNS as i64
        },
    )
    .await;
    // Disabling waits for a run being fired at that moment (its row is locked until the run's
    // commit), so nothing fires after these answers.
    for (id, _, _) in &schedules {
        let (status, body) = admin(
            &bases[2],
            Method::PATCH,
            &format!("/api/v1/schedules/{id}"),
            json!({"enabled": false}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    wait_for_outbox_drained(&db).await;

    let mut total_runs = 0;
    for (id, chat, message) in &schedules {
        let (status, body) = admin(
            &bases[1],
            Method::GET,
            &format!("/api/v1/schedules/{id}/runs?limit=1000"),
            Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let runs = body["runs"].as_array().expect("runs");
        let mut due: Vec<i64> = runs
            .iter()
            .map(|run| {
                chrono::DateTime::parse_from_rfc3339(run["due_at"].as_str().expect("due_at"))
                    .expect("an RFC 3339 due time")
                    .timestamp_millis()
            })
            .collect();
        due.sort_unstable();
        let steps: Vec<i64> = due.windows(2).map(|pair| pair[1] - pair[0]).collect();
        assert_eq!(
            steps,
            vec![EVERY; due.len() - 1],
            "schedule {id}: one run per due time, none missing"
        );
        for run in runs {
            assert_eq!(run["status"], json!("sent"), "{run}");
            assert_eq!(run["recipients"].as_array().map(Vec::len), Some(1), "{run}");
        }
        let told: Vec<String> = cluster
            .telegram
            .delivered()
            .iter()
            .filter(|m| m.chat_id == json!(chat))
            .map(|m| m.text.clone())
            .collect();
        assert_eq!(
            told,
            vec![message.clone(); runs.len()],
            "chat {chat}: one message per run"
        );
        total_runs += runs.len();
    }
    assert_eq!(cluster.telegram.delivered().len(), total_runs);
    let announcements: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE event_type = 'announcement'")
            .fetch_one(db.reader())
            .await
            .expect("count");
    assert_eq!(announcements, total_runs as i64, "one delivery per run");

    // Which nodes took part: a delivery's lease names the node that fired its run (which keeps
    // what its worker can send at once) or, failing that, the node that sent it.
    let ids = node_ids(&db, &bases).await;
    let per_node: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT locked_by, COUNT(*) FROM deliveries WHERE event_type = 'announcement' \
         GROUP BY locked_by ORDER BY locked_by",
    )
    .fetch_all(db.reader())
    .await
    .expect("per node");
    eprintln!(
        "CLUSTER CRON: {total_runs} runs of {SCHEDULES} schedules on {NODES} nodes {ids:?}; \
         announcements per node {per_node:?}"
    );
    assert!(
        per_node.iter().all(|(node, _)| ids.contains(node)),
        "every announcement was handled by a live node: {per_node:?}"
    );
    // Not one node doing all the work while the others slept: the due times were contested.
    assert!(per_node.len() >= 2, "one node did it all: {per_node:?}");

    db.close().await;
    cluster.stop(nodes).await;
}

/// The poll interval of the second test.
const INTERVAL: Duration = Duration::from_secs(2);
/// Checks the second test watches for (the push is made after the third).
const CHECKS: usize = 7;

/// A watched GitHub branch with a 2 s poll interval, three nodes polling: the fake GitHub is
/// asked for the branch once per interval — the n-th check comes n intervals after the first,
/// never two in one interval (three nodes polling each on its own would ask three times) — and
/// a push found by one node's poll is announced once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_poll_a_watched_branch_once_per_interval() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    github.add_repo("octo/app", &repo);
    let interval = format!("{}s", INTERVAL.as_secs());
    let nodes = cluster
        .nodes(&[
            ("HERALD_GITHUB_API", github.base_url.as_str()),
            ("HERALD_POLL_INTERVAL", interval.as_str()),
        ])
        .await;
    let bases: Vec<String> = nodes.iter().map(|(_, base)| base.clone()).collect();
    let db = open_db(&cluster.env).await;

    // The reference API checks that the branch exists (one request), then starts the watch.
    let response = reqwest::Client::new()
        .post(format!("{}/api/", bases[0]))
        .json(
            &json!({"id": "801", "fav_repository": "octo/app", "nick_name": "n",
                      "type": "telegram", "branch": "main"}),
        )
        .send()
        .await
        .expect("subscribe");
    assert_eq!(response.status().as_u16(), 200);
    let subscribed = Instant::now();
    let checks = || -> Vec<Instant> {
        github
            .requests()
            .iter()
            .filter(|r| r.path == "/repos/octo/app/git/ref/heads/main" && r.at > subscribed)
            .map(|r| r.at)
            .collect()
    };

    // Which nodes made the checks: the claim names its node.
    let claimants = Mutex::new(HashSet::new());
    let checks_made = |n: usize| {
        let (claimants, checks, db) = (&claimants, &checks, &db);
        async move {
            let claimed_by: i64 = sqlx::query_scalar("SELECT claimed_by FROM watches")
                .fetch_one(db.reader())
                .await
                .expect("the watch");
            // 0 until the first claim.
            if claimed_by != 0 {
                claimants
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(claimed_by);
            }
            checks().len() >= n
        }
    };
    wait_until("three checks", Duration::from_secs(15), || checks_made(3)).await;

    let pushed = repo.commit("a.txt", "1", "Through three nodes");
    github.push("octo/app", &repo);
    wait_until("the push announced", Duration::from_secs(15), || async {
        !cluster.telegram.delivered().is_empty()
    })
    .await;
    wait_until(&format!("{CHECKS} checks"), Duration::from_secs(30), || {
        checks_made(CHECKS)
    })
    .await;
    wait_for_outbox_drained(&db).await;

    let made = checks();
    let first = made[0];
    let intervals: Vec<u128> = made
        .iter()
        .map(|at| {
            let since = at.duration_since(first).as_millis();
            (since + INTERVAL.as_millis() / 2) / INTERVAL.as_millis()
        })
        .collect();
    let ids = node_ids(&db, &bases).await;
    let claimants = claimants.into_inner().unwrap_or_else(|p| p.into_inner());
    eprintln!(
        "CLUSTER POLL: {} checks at {:?} after the first, interval {INTERVAL:?}; claimed by {claimants:?} of nodes {ids:?}",
        made.len(),
        made.iter()
            .map(|at| at.duration_since(first))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        intervals,
        (0..made.len() as u128).collect::<Vec<_>>(),
        "one check per interval, none skipped, none twice"
    );
    assert!(
        claimants.iter().all(|node| ids.contains(node)),
        "checks claimed by live nodes: {claimants:?}"
    );
    assert!(
        claimants.len() >= 2,
        "polled by one node only: {claimants:?}"
    );

    let told = cluster.telegram.delivered();
    assert_eq!(told.len(), 1, "the push announced once");
    assert_eq!(told[0].chat_id, json!(801));
    assert!(
        told[0].text.contains("Through three nodes"),
        "{}",
        told[0].text
    );
    let events: Vec<String> = sqlx::query_scalar("SELECT after_sha FROM push_events")
        .fetch_all(db.reader())
        .await
        .expect("push events");
    assert_eq!(events, vec![pushed]);

    db.close().await;
    cluster.stop(nodes).await;
}

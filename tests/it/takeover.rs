//! Node liveness and takeover (issue 23), with real herald processes: the claims of a node
//! killed with -9 are taken over within 5 s of its lease lapsing — by a restarted herald as
//! well as by another node — and a node stopped gracefully puts its unsent work back and tells
//! its chat sockets to reconnect elsewhere.
//!
//! The timings printed with `TAKEOVER` are the figures in BENCHMARKS.md.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use herald::testkit::receiver::{Receiver, Reply};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::both_backends;
use crate::helpers::{ADMIN_TOKEN, Backend, TestEnv, WAIT, send_signed_push, wait_until};

both_backends!(
    a_send_in_flight_at_kill_9_is_resumed_within_5s_of_the_restart,
    a_graceful_stop_puts_sends_in_flight_back_and_closes_sockets_with_1012,
);

/// What the issue promises: work of a dead node is taken over within this.
const TAKEOVER: Duration = Duration::from_secs(5);

/// Starts the real binary on the test's storage; returns it with its base URL.
pub(crate) async fn start_node(
    env: &TestEnv,
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
        .env("HERALD_POLL_INTERVAL", "1h")
        .env("HERALD_ALLOW_PRIVATE_TARGETS", "true")
        .env("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)
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
            if let Ok(log) = serde_json::from_str::<Value>(&line)
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

pub(crate) async fn admin(base: &str, method: Method, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A project on a local repository and one hook to `receiver`; returns the hook's id. Creating
/// the hook queues its ping: the delivery these tests watch.
async fn project_with_hook(base: &str, repository: &str, receiver: &Receiver) -> i64 {
    let (status, project) = admin(
        base,
        Method::POST,
        "/api/v1/projects",
        json!({"owner": "octo", "name": "app", "repository": repository}),
    )
    .await;
    assert_eq!(status, 201, "{project}");
    let (status, hook) = admin(
        base,
        Method::POST,
        "/api/v1/projects/octo/app/webhooks",
        json!({"payload_url": receiver.url, "max_concurrency": 1000}),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    hook["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("hook id")
}

pub(crate) async fn open_db(env: &TestEnv) -> herald::store::Db {
    herald::store::Db::connect(&env.settings(&[]).database_url)
        .await
        .expect("db")
}

async fn count(db: &herald::store::Db, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(db.reader())
        .await
        .expect("count")
}

/// The node row of the process serving `base`: its id and when its lease lapses (Unix ms).
async fn node_of(db: &herald::store::Db, base: &str) -> (i64, i64) {
    sqlx::query_as("SELECT node_id, expires_at FROM nodes WHERE address LIKE $1")
        .bind(format!("{base}%"))
        .fetch_one(db.reader())
        .await
        .expect("the node's row")
}

/// Deliveries answered 204, by delivery id, with the first time each arrived.
fn delivered_at(receiver: &Receiver) -> HashMap<i64, Instant> {
    delivered_since(receiver, None)
}

/// Deliveries answered 204 that arrived after `since` (all with `None`), by delivery id, with
/// the first time each arrived.
fn delivered_since(receiver: &Receiver, since: Option<Instant>) -> HashMap<i64, Instant> {
    let mut first = HashMap::new();
    for received in receiver.received() {
        if received.status != 204 || since.is_some_and(|since| received.at < since) {
            continue;
        }
        if let Ok(id) = received.header("webhook-id").parse::<i64>() {
            first
                .entry(id)
                .and_modify(|at: &mut Instant| *at = (*at).min(received.at))
                .or_insert(received.at);
        }
    }
    first
}

fn kill_9(child: &mut tokio::process::Child) {
    child.start_kill().expect("kill -9");
}

/// (a) A hook's ping is in flight to a receiver that does not answer when herald is killed
/// with -9. The restarted herald is a new node; the old one's lease lapses within
/// `HERALD_NODE_LEASE` (3 s), and the new one frees its claim and sends it: delivered within
/// 5 s of the restart, not when the row's own lease (31 s with the default delivery timeout)
/// runs out.
async fn a_send_in_flight_at_kill_9_is_resumed_within_5s_of_the_restart(env: TestEnv) {
    let receiver = Receiver::start().await;
    receiver.set_always(Some(Reply::Hang(Duration::from_secs(120))));
    let repo = herald::testkit::git_repo::GitRepo::new();
    let (mut first, base) = start_node(&env, &[]).await;
    let db = open_db(&env).await;
    project_with_hook(&base, &repo.url(), &receiver).await;
    wait_until("the ping to be in flight", WAIT, || async {
        receiver.arrived() >= 1
    })
    .await;
    let (dead_node, _) = node_of(&db, &base).await;
    let (ping, locked_by, locked_until): (i64, i64, i64) = sqlx::query_as(
        "SELECT id, locked_by, locked_until FROM deliveries WHERE event_type = 'ping'",
    )
    .fetch_one(db.reader())
    .await
    .expect("the ping");
    assert_eq!(locked_by, dead_node, "the claim names its node");
    assert!(
        locked_until > herald::ids::now_ms() + 20_000,
        "the row's own lease is long (lease_for the default 15 s timeout)"
    );
    kill_9(&mut first);
    let _ = first.wait().await;

    receiver.set_always(None);
    let restarted = Instant::now();
    let (mut second, _) = start_node(&env, &[]).await;
    wait_until("the ping after the restart", WAIT, || async {
        delivered_at(&receiver).contains_key(&ping)
    })
    .await;
    let took = delivered_at(&receiver)[&ping] - restarted;
    eprintln!(
        "TAKEOVER {:?}: restart after kill -9 → in-flight delivery sent again after {took:?}",
        env.backend
    );
    assert!(
        took <= TAKEOVER,
        "delivered {took:?} after the restart, more than {TAKEOVER:?}"
    );
    wait_until("the ping recorded as delivered", WAIT, || async {
        count(
            &db,
            "SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'",
        )
        .await
            == 1
    })
    .await;
    // The killed attempt was never recorded; the dead node's row is gone with its claim.
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM delivery_attempts").await,
        1
    );
    let dead_left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM nodes WHERE node_id = $1")
        .bind(dead_node)
        .fetch_one(db.reader())
        .await
        .expect("nodes");
    assert_eq!(dead_left, 0, "the lapsed node was taken over and forgotten");

    kill_9(&mut second);
    let _ = second.wait().await;
    db.close().await;
    env.cleanup().await;
}

/// (c) SIGTERM while a hook's ping hangs at the receiver and a chat socket is open: the socket
/// is closed with 1012 (reconnect elsewhere), the send is abandoned after
/// `HERALD_SHUTDOWN_GRACE` and put back unsent (no attempt counted, no lease left), the node's
/// row is gone (its goodbye) and the process exits cleanly. The next node sends it at once.
async fn a_graceful_stop_puts_sends_in_flight_back_and_closes_sockets_with_1012(env: TestEnv) {
    let receiver = Receiver::start().await;
    receiver.set_always(Some(Reply::Hang(Duration::from_secs(120))));
    let repo = herald::testkit::git_repo::GitRepo::new();
    let (mut node, base) = start_node(&env, &[("HERALD_SHUTDOWN_GRACE", "1s")]).await;
    let db = open_db(&env).await;
    project_with_hook(&base, &repo.url(), &receiver).await;
    wait_until("the ping to be in flight", WAIT, || async {
        receiver.arrived() >= 1
    })
    .await;
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("{}/ws", base.replace("http://", "ws://")))
            .await
            .expect("a chat socket");
    socket
        .send(tokio_tungstenite::tungstenite::Message::text(
            json!({"type": "heartbeat", "payload": {"count": 1}}).to_string(),
        ))
        .await
        .expect("heartbeat");

    let pid = node.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let close = tokio::time::timeout(WAIT, async {
        while let Some(message) = socket.next().await {
            if let Ok(tokio_tungstenite::tungstenite::Message::Close(frame)) = message {
                return frame;
            }
        }
        None
    })
    .await
    .expect("the socket is closed in time")
    .expect("with a close frame");
    assert_eq!(u16::from(close.code), 1012, "{close:?}");
    assert_eq!(
        close.reason.as_str(),
        "service restart: reconnect and resume"
    );
    let exit = tokio::time::timeout(WAIT, node.wait())
        .await
        .expect("herald stops in time")
        .expect("exit status");
    assert!(exit.success(), "{exit:?}");

    let (status, attempts, locked_until): (String, i64, i64) =
        sqlx::query_as("SELECT status, attempts, locked_until FROM deliveries")
            .fetch_one(db.reader())
            .await
            .expect("the ping");
    assert_eq!((status.as_str(), attempts), ("pending", 0));
    assert!(
        locked_until <= herald::ids::now_ms(),
        "released: claimable at once ({locked_until})"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM delivery_attempts").await,
        0
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM nodes").await, 0, "goodbye");

    // Nothing to wait for: the next node claims it as soon as it starts.
    receiver.set_always(None);
    let started = Instant::now();
    let (mut next, _) = start_node(&env, &[]).await;
    wait_until("the ping from the next node", WAIT, || async {
        !delivered_at(&receiver).is_empty()
    })
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
    kill_9(&mut next);
    let _ = next.wait().await;
    db.close().await;
    env.cleanup().await;
}

/// The inbound webhook secret of the three-node test.
const INBOUND: &str = "inbound";

/// A signed GitHub push moving `octo/app`'s `main` on; answered 202 once queued.
async fn push(client: &reqwest::Client, base: &str, i: usize) {
    let before = format!("{i:040x}");
    let delivery = format!("burst-{i}");
    send_signed_push(client, base, INBOUND, "octo/app", &before, i, &delivery).await;
}

/// (b) Three real herald processes on one PostgreSQL and one Redis; node A takes a burst of
/// 200 pushes (one hook delivery each, leased to A as they are queued) and is killed with -9
/// mid-burst. Nodes B and C complete every delivery A held within 5 s of A's lease lapsing;
/// the receiver, counting by delivery id, gets every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_one_killed_mid_burst_lose_nothing() {
    if crate::cluster_bus::redis_address().is_none() {
        return;
    }
    let Some(env) = TestEnv::new(Backend::Postgres).await else {
        return;
    };
    const PUSHES: usize = 200;
    let github = herald::testkit::fake_github::FakeGithub::start().await;
    let repo = herald::testkit::git_repo::GitRepo::new();
    github.add_repo("octo/app", &repo);
    let receiver = Receiver::start().await;
    receiver.forget_bodies();
    let redis = crate::cluster_bus::redis_url();
    let prefix = format!("herald-test-{:016x}", crate::helpers::rand_u64());
    let shared = [
        ("HERALD_GITHUB_API", github.base_url.as_str()),
        ("HERALD_GIT_WEBHOOK_SECRET", INBOUND),
        ("HERALD_REDIS_URL", redis.as_str()),
        ("HERALD_REDIS_PREFIX", prefix.as_str()),
    ];
    // B and C survive.
    let (mut b, b_base) = start_node(&env, &shared).await;
    let (mut c, _c_base) = start_node(&env, &shared).await;
    let db = open_db(&env).await;
    let (status, project) = admin(
        &b_base,
        Method::POST,
        "/api/v1/projects",
        json!({"owner": "octo", "name": "app", "repository": "octo/app"}),
    )
    .await;
    assert_eq!(status, 201, "{project}");
    let (status, hook) = admin(
        &b_base,
        Method::POST,
        "/api/v1/projects/octo/app/webhooks",
        json!({"payload_url": receiver.url, "max_concurrency": 1000}),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    wait_until("the ping", WAIT, || async { receiver.count() >= 1 }).await;
    // A: killed mid-burst. Each send takes a second meanwhile, so A holds many claims when it
    // dies.
    receiver.set_always(Some(Reply::Delay(Duration::from_secs(1))));
    let (mut a, a_base) = start_node(&env, &shared).await;
    let client = reqwest::Client::new();
    for i in 0..PUSHES {
        push(&client, &a_base, i).await;
    }
    wait_until("A to be sending", WAIT, || async {
        receiver.arrived() > 32
    })
    .await;
    let (a_node, a_expires) = node_of(&db, &a_base).await;
    let killed = Instant::now();
    let killed_ms = herald::ids::now_ms();
    kill_9(&mut a);
    let _ = a.wait().await;
    receiver.set_always(None);
    let held: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM deliveries WHERE status = 'pending' AND locked_by = $1 AND locked_until > $2",
    )
    .bind(a_node)
    .bind(herald::ids::now_ms())
    .fetch_all(db.reader())
    .await
    .expect("A's claims");
    assert!(
        held.len() >= 32,
        "A held the sends it had in flight and those waiting: {}",
        held.len()
    );

    wait_until(
        "every delivery delivered",
        Duration::from_secs(60),
        || async {
            count(
                &db,
                "SELECT COUNT(*) FROM deliveries WHERE status <> 'delivered'",
            )
            .await
                == 0
        },
    )
    .await;
    let all: Vec<i64> = sqlx::query_scalar("SELECT id FROM deliveries")
        .fetch_all(db.reader())
        .await
        .expect("deliveries");
    assert_eq!(all.len(), PUSHES + 1, "the ping and one per push");
    let arrived = delivered_at(&receiver);
    let missing: Vec<&i64> = all.iter().filter(|id| !arrived.contains_key(id)).collect();
    assert!(missing.is_empty(), "never answered 204: {missing:?}");
    let unknown: HashSet<&i64> = arrived.keys().filter(|id| !all.contains(id)).collect();
    assert!(unknown.is_empty(), "{unknown:?}");

    // A's lease lapsed at the latest one renewal after the `expires_at` read before the kill.
    let lapse = killed + Duration::from_millis((a_expires + 1_000 - killed_ms).max(0) as u64);
    // A send of A's may have reached the receiver before the kill: the survivors' send is the
    // one after.
    let resent = delivered_since(&receiver, Some(killed));
    let last = held.iter().map(|id| resent[id]).max().expect("A held some");
    let after_kill = last - killed;
    // Who completed A's: the last claim names its node.
    let sent_by: HashMap<i64, i64> = sqlx::query_as("SELECT id, locked_by FROM deliveries")
        .fetch_all(db.reader())
        .await
        .expect("who sent what")
        .into_iter()
        .collect();
    let mut by_node: HashMap<i64, usize> = HashMap::new();
    for id in &held {
        *by_node.entry(sent_by[id]).or_default() += 1;
    }
    eprintln!(
        "TAKEOVER postgres, three nodes: {} deliveries held by the killed node all completed {after_kill:?} after kill -9 (its lease lapsed {:?} after the kill at the latest); completed per node {by_node:?}",
        held.len(),
        lapse - killed
    );
    assert!(
        last <= lapse + TAKEOVER,
        "the last of A's claims completed {after_kill:?} after the kill"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM nodes").await,
        2,
        "A was taken over and forgotten; B and C are live"
    );
    for child in [&mut b, &mut c] {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    db.close().await;
    env.cleanup().await;
}

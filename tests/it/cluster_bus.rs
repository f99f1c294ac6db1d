//! Several herald nodes on one PostgreSQL database and one Redis (`HERALD_REDIS_URL`): chat
//! frames, presence and typing reach sockets on every node, in one order; `/readyz` tells the
//! truth about the Redis link. Redis is expected at 127.0.0.1:6379 (`HERALD_TEST_REDIS_URL`
//! overrides); without it these tests say SKIPPED, except under `CI=true`, where they fail.
//! Each test has its own key prefix, so that tests running side by side never hear each other.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::testkit::fake_smtp::FakeSmtp;
use herald::testkit::redis_server::RedisServer;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use crate::accounts::sign_up;
use crate::chat::{Ws, account_id, id_of, make_friends};
use crate::helpers::{Backend, TestApp, TestEnv, WAIT, rand_u64, wait_until};

pub(crate) fn redis_url() -> String {
    std::env::var("HERALD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The Redis address to test with, if one answers; under `CI=true` its absence fails the test.
pub(crate) fn redis_address() -> Option<std::net::SocketAddr> {
    let url = url::Url::parse(&redis_url()).expect("HERALD_TEST_REDIS_URL is a URL");
    let host = url.host_str().unwrap_or("127.0.0.1").to_string();
    let address =
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), url.port().unwrap_or(6379)))
            .ok()
            .and_then(|mut addresses| addresses.next());
    let answers = address.is_some_and(|address| {
        std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok()
    });
    if answers {
        return address;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but Redis is not reachable at {}: the cluster tests must not be skipped",
            redis_url()
        );
    }
    eprintln!(
        "SKIPPED: nothing answers at {} (start Redis or set HERALD_TEST_REDIS_URL)",
        redis_url()
    );
    None
}

/// A PostgreSQL database and a Redis key prefix of this test's own, and a fake SMTP server for
/// sign-ups; `None` when a service is missing (and the test is skipped).
struct Cluster {
    env: TestEnv,
    prefix: String,
    smtp: FakeSmtp,
}

impl Cluster {
    async fn new() -> Option<Cluster> {
        redis_address()?;
        let env = TestEnv::new(Backend::Postgres).await?;
        Some(Cluster {
            env,
            prefix: format!("herald-test-{:016x}", rand_u64()),
            smtp: FakeSmtp::start().await,
        })
    }

    /// A node on the shared database, reaching Redis at `redis` (a URL).
    async fn node(&self, redis: &str) -> TestApp {
        let app = self
            .env
            .spawn(&[
                ("HERALD_REDIS_URL", redis),
                ("HERALD_REDIS_PREFIX", self.prefix.as_str()),
                ("HERALD_SMTP_URL", self.smtp.url.as_str()),
            ])
            .await;
        wait_for_readiness(&app, 200).await;
        app
    }

    async fn finish(self, nodes: Vec<TestApp>) {
        for node in nodes {
            node.stop().await;
        }
        self.env.cleanup().await;
    }
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let response = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn wait_for_readiness(app: &TestApp, status: u16) {
    wait_until(&format!("/readyz to answer {status}"), WAIT, || async {
        readyz(app).await.0 == status
    })
    .await;
}

/// The next frame of `ws` that is not a presence update or a heartbeat.
async fn next_chat_or_typing(ws: &mut Ws) -> Value {
    loop {
        let frame = ws.recv_not_presence().await;
        if frame["type"] != json!("heartbeat") {
            return frame;
        }
    }
}

/// A DM whose text says who sent it and its place in that sender's order.
fn numbered(chat_id: i64, sender: &str, index: usize) -> Value {
    json!({"type": "chat", "payload": {"type": "send", "chat_id": chat_id.to_string(), "content": format!("{sender}:{index}")}})
}

/// Sends `count` numbered DMs from `ws` within the frame rate limit, then reads their echoes.
async fn send_numbered(ws: &mut Ws, chat_id: i64, sender: &str, count: usize) {
    send_range(ws, chat_id, sender, 0..count).await;
}

/// Sends the DMs numbered `range` from `ws` within the frame rate limit, then reads their
/// echoes.
async fn send_range(ws: &mut Ws, chat_id: i64, sender: &str, range: std::ops::Range<usize>) {
    let count = range.len();
    let mut pace = tokio::time::interval(Duration::from_millis(55));
    for index in range {
        pace.tick().await;
        ws.send(numbered(chat_id, sender, index)).await;
    }
    let mut echoed = 0;
    while echoed < count {
        let frame = next_chat_or_typing(ws).await;
        assert_eq!(frame["type"], json!("chat"), "{frame}");
        if frame["payload"]["content"]
            .as_str()
            .is_some_and(|c| c.starts_with(&format!("{sender}:")))
        {
            echoed += 1;
        }
    }
}

/// The next `count` chat frames of `ws`: (message id, content).
async fn chats(ws: &mut Ws, count: usize) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let frame = next_chat_or_typing(ws).await;
        assert_eq!(frame["type"], json!("chat"), "{frame}");
        seen.push((
            frame["payload"]["id"].as_str().expect("id").to_string(),
            frame["payload"]["content"]
                .as_str()
                .expect("content")
                .to_string(),
        ));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dms_presence_and_typing_reach_every_node_in_one_order() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let redis = redis_url();
    let (one, two, three) = (
        cluster.node(&redis).await,
        cluster.node(&redis).await,
        cluster.node(&redis).await,
    );
    let worker_ids = [&one, &two, &three].map(|n| n.state.ids.worker_id());
    assert!(
        worker_ids[0] != worker_ids[1]
            && worker_ids[1] != worker_ids[2]
            && worker_ids[0] != worker_ids[2],
        "each node leased its own worker id: {worker_ids:?}"
    );
    let smtp = &cluster.smtp;
    let alice = sign_up(&one, smtp, "alice", "alice@example.com", "alice's password").await;
    let bob = sign_up(&two, smtp, "bob", "bob@example.com", "bob's password").await;
    let carol = sign_up(
        &three,
        smtp,
        "carol",
        "carol@example.com",
        "carol's password",
    )
    .await;
    let (alice_id, bob_id, carol_id) = (
        account_id(&one, "alice").await,
        account_id(&one, "bob").await,
        account_id(&one, "carol").await,
    );
    make_friends(&one, alice_id, bob_id).await;
    make_friends(&one, carol_id, bob_id).await;

    // Alice on node 1 hears Bob come online on node 2; his second socket, on node 3, is not
    // news. Every node counts the same two sockets.
    let (mut a, alice_auth) = Ws::start(&one, &alice).await;
    assert_eq!(id_of(&alice_auth["self_user"]), alice_id);
    let (mut b2, _) = Ws::start(&two, &bob).await;
    let online = a.recv().await;
    assert_eq!(
        (
            online["type"].clone(),
            online["payload"]["user"]["name"].clone(),
            online["payload"]["status"].clone()
        ),
        (json!("presence"), json!("bob"), json!("online")),
        "{online}"
    );
    let (mut b3, _) = Ws::start(&three, &bob).await;
    for node in [&one, &two, &three] {
        assert_eq!(node.chat.bus.live(bob_id, 0).await, 2);
    }

    // Alice (node 1) and Carol (node 3) write to Bob at the same time: both of Bob's sockets
    // get all 50 DMs, each sender's in its order, and both in the very same interleaving.
    let (mut c, _) = Ws::start(&three, &carol).await;
    let alice_writes = {
        let chat_id = herald::chat::dm_chat_id(alice_id, bob_id);
        async move {
            send_numbered(&mut a, chat_id, "alice", 25).await;
            a
        }
    };
    let carol_writes = {
        let chat_id = herald::chat::dm_chat_id(carol_id, bob_id);
        async move {
            send_numbered(&mut c, chat_id, "carol", 25).await;
            c
        }
    };
    let (mut a, _c) = tokio::join!(alice_writes, carol_writes);
    let (seen_on_two, seen_on_three) = tokio::join!(chats(&mut b2, 50), chats(&mut b3, 50));
    assert_eq!(seen_on_two, seen_on_three, "one order on every node");
    for sender in ["alice", "carol"] {
        let order: Vec<String> = seen_on_two
            .iter()
            .map(|(_, content)| content.clone())
            .filter(|content| content.starts_with(&format!("{sender}:")))
            .collect();
        let expected: Vec<String> = (0..25).map(|i| format!("{sender}:{i}")).collect();
        assert_eq!(order, expected);
    }

    // Typing from node 1 reaches both of Bob's sockets.
    let chat_id = herald::chat::dm_chat_id(alice_id, bob_id);
    a.send(json!({"type": "typing", "payload": {"chat_id": chat_id.to_string()}}))
        .await;
    for ws in [&mut b2, &mut b3] {
        let typing = next_chat_or_typing(ws).await;
        assert_eq!(
            typing,
            json!({"seq": typing["seq"], "type": "typing", "payload": {"chat_id": chat_id.to_string(), "user_id": alice_id.to_string()}})
        );
    }

    // Bob's node 2 socket goes: still online (node 3). Then node 3's: Alice hears he is offline
    // — as her very next frame, so no early "offline" came before.
    drop(b2);
    wait_until("bob to have one socket, on every node", WAIT, || async {
        one.chat.bus.live(bob_id, 0).await == 1 && three.chat.bus.live(bob_id, 0).await == 1
    })
    .await;
    drop(b3);
    let offline = a.recv().await;
    assert_eq!(
        (
            offline["type"].clone(),
            offline["payload"]["user"]["name"].clone(),
            offline["payload"]["status"].clone()
        ),
        (json!("presence"), json!("bob"), json!("offline")),
        "{offline}"
    );
    assert_eq!(two.chat.bus.live(bob_id, 0).await, 0);

    let metrics = one
        .client
        .get(one.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("herald_bus_lag_seconds_count"),
        "{metrics}"
    );
    assert!(metrics.contains("herald_bus_link_up"), "{metrics}");
    cluster.finish(vec![one, two, three]).await;
}

/// A TCP proxy to Redis that the test can cut (every connection closed, nothing accepted) and
/// open again on the same port.
struct Proxy {
    address: std::net::SocketAddr,
    target: std::net::SocketAddr,
    running: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr) -> Arc<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy = Arc::new(Proxy {
            address: listener.local_addr().expect("address"),
            target,
            running: Mutex::new(None),
        });
        proxy.serve(listener);
        proxy
    }

    fn url(&self) -> String {
        format!("redis://{}", self.address)
    }

    fn serve(&self, listener: TcpListener) {
        let target = self.target;
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) ends every connection.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        *self.running.lock().expect("lock") = Some(task);
    }

    /// Closes every connection and stops accepting.
    fn cut(&self) {
        if let Some(task) = self.running.lock().expect("lock").take() {
            task.abort();
        }
    }

    async fn reopen(&self) {
        let listener = TcpListener::bind(self.address)
            .await
            .expect("the same port again");
        self.serve(listener);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_redis_is_unready_its_users_go_offline_and_it_recovers() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let proxy = Proxy::start(redis_address().expect("Redis answers")).await;
    let cut_off = cluster.node(&proxy.url()).await;
    let steady = cluster.node(&redis_url()).await;
    let smtp = &cluster.smtp;
    let alice = sign_up(
        &steady,
        smtp,
        "alice",
        "alice@example.com",
        "alice's password",
    )
    .await;
    let bob = sign_up(&steady, smtp, "bob", "bob@example.com", "bob's password").await;
    let (alice_id, bob_id) = (
        account_id(&steady, "alice").await,
        account_id(&steady, "bob").await,
    );
    make_friends(&steady, alice_id, bob_id).await;
    let (mut a, _) = Ws::start(&steady, &alice).await;
    let (mut b, bob_auth) = Ws::start(&cut_off, &bob).await;
    assert_eq!(a.recv().await["payload"]["status"], json!("online"));

    proxy.cut();
    // The cut-off node says it is not ready, and why; the other one is fine.
    wait_for_readiness(&cut_off, 503).await;
    let (_, body) = readyz(&cut_off).await;
    let reason = body["reason"].as_str().expect("a reason");
    assert!(reason.starts_with("chat bus (Redis): "), "{reason}");
    assert_eq!(readyz(&steady).await.0, 200);
    // Bob's session may miss frames now: his socket is closed so that he loads the history,
    // and the session cannot be resumed.
    assert_eq!(b.closed(WAIT).await, Some(4001));
    let session = bob_auth["session"].as_str().expect("a session").to_string();
    // Bob's node stopped renewing its presence: the other node tells Alice he is offline.
    let offline = tokio::time::timeout(WAIT, async {
        loop {
            let frame = a.recv_within(WAIT).await;
            if frame["type"] == json!("presence") {
                return frame;
            }
        }
    })
    .await
    .expect("offline in time");
    assert_eq!(offline["payload"]["status"], json!("offline"), "{offline}");
    assert_eq!(steady.chat.bus.live(bob_id, 0).await, 0);
    // Alice writes to Bob while his node is cut off: the message is in his session's log in
    // Redis, which the node that publishes it writes.
    let chat_id = herald::chat::dm_chat_id(alice_id, bob_id);
    send_range(&mut a, chat_id, "alice", 0..1).await;

    proxy.reopen().await;
    wait_for_readiness(&cut_off, 200).await;
    // Bob's socket was closed because his node could not hear the bus; his session's log did
    // not miss anything, so he resumes it (on his own node again) with exactly that message.
    // (Alice's going offline may be among them: her own session ends as the node reports the
    // frames it could not publish to her.)
    let (_, frames) = Ws::resume(&cut_off, &session, &bob, 1).await;
    assert_eq!(replayed_chats(&frames, 1), alice_says(0..1));
    // Bob's node could not tell Alice he went offline while it was cut off; back on the bus, it
    // says so, and the node Alice is on ends her session (she loads the history).
    assert_eq!(a.closed(WAIT).await, Some(4001));
    // Frames flow again, both ways. Bob's resumed socket above closed as it was dropped, and
    // the "offline" his node announces for it (after reading his friends) may still reach
    // Alice's new socket: true, and late. Then Bob is online.
    let (mut a, _) = Ws::start(&steady, &alice).await;
    let (mut b, _) = Ws::start(&cut_off, &bob).await;
    loop {
        let frame = a.recv().await;
        assert_eq!(frame["type"], json!("presence"), "{frame}");
        assert_eq!(
            frame["payload"]["user"]["id"],
            json!(bob_id.to_string()),
            "{frame}"
        );
        if frame["payload"]["status"] == json!("online") {
            break;
        }
        assert_eq!(frame["payload"]["status"], json!("offline"), "{frame}");
    }
    a.send(json!({"type": "chat", "payload": {"type": "send", "chat_id": chat_id.to_string(), "content": "welcome back"}}))
        .await;
    let dm = next_chat_or_typing(&mut b).await;
    assert_eq!(dm["payload"]["content"], json!("welcome back"), "{dm}");
    cluster.finish(vec![cut_off, steady]).await;
}

/// A Redis server of this test's own (the shared one must not restart under other tests);
/// `None` (the test is skipped) without a `redis-server` program, except under `CI=true`.
async fn own_redis() -> Option<RedisServer> {
    let redis = RedisServer::start().await;
    if redis.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but there is no redis-server program to restart");
        }
        eprintln!("SKIPPED: no redis-server program to start and restart");
    }
    redis
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_restart_the_bus_recovers_within_5_s_and_readyz_told_the_truth() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let Some(mut redis) = own_redis().await else {
        return;
    };
    let (one, two) = (
        cluster.node(&redis.url()).await,
        cluster.node(&redis.url()).await,
    );
    let smtp = &cluster.smtp;
    let alice = sign_up(&one, smtp, "alice", "alice@example.com", "alice's password").await;
    let bob = sign_up(&one, smtp, "bob", "bob@example.com", "bob's password").await;
    let (alice_id, bob_id) = (
        account_id(&one, "alice").await,
        account_id(&one, "bob").await,
    );
    make_friends(&one, alice_id, bob_id).await;
    let (mut a, _) = Ws::start(&one, &alice).await;
    let (mut b, bob_auth) = Ws::start(&two, &bob).await;
    let bob_session = bob_auth["session"].as_str().expect("a session").to_string();
    assert_eq!(a.recv().await["payload"]["status"], json!("online"));

    redis.kill().await;
    for node in [&one, &two] {
        wait_for_readiness(node, 503).await;
    }
    // Both sessions may miss frames now: they end, and the clients will load the history.
    assert_eq!(a.closed(WAIT).await, Some(4001));
    assert_eq!(b.closed(WAIT).await, Some(4001));

    redis.start_again().await;
    let restarted = std::time::Instant::now();
    for node in [&one, &two] {
        wait_for_readiness(node, 200).await;
    }
    let recovery = restarted.elapsed();
    assert!(
        recovery <= Duration::from_secs(5),
        "recovered in {recovery:?}"
    );
    // This Redis keeps nothing on disk: the sessions' logs went with it, so a session from
    // before cannot be resumed — the client is told (410) and loads the history, which the
    // database has. Never a silent gap.
    let (_, frames) = Ws::resume(&two, &bob_session, &bob, 1).await;
    let last = frames.last().expect("an answer");
    assert_eq!(
        (
            frames.len(),
            last["type"].clone(),
            last["payload"]["code"].clone()
        ),
        (1, json!("error"), json!(410)),
        "{frames:?}"
    );

    // The new Redis knows nothing; the nodes' counts and frames are right again.
    let (mut a, _) = Ws::start(&one, &alice).await;
    let (mut b, _) = Ws::start(&two, &bob).await;
    assert_eq!(a.recv().await["payload"]["status"], json!("online"));
    assert_eq!(one.chat.bus.live(bob_id, 0).await, 1);
    assert_eq!(two.chat.bus.live(alice_id, 0).await, 1);
    let chat_id = herald::chat::dm_chat_id(alice_id, bob_id);
    b.send(json!({"type": "chat", "payload": {"type": "send", "chat_id": chat_id.to_string(), "content": "still here"}}))
        .await;
    let dm = next_chat_or_typing(&mut a).await;
    assert_eq!(dm["payload"]["content"], json!("still here"), "{dm}");
    cluster.finish(vec![one, two]).await;
}

/// The next `count` chat frames of `ws` with their numbers, and the number of every frame
/// seen on the way (presence updates included), to show that none was skipped.
async fn numbered_chats(ws: &mut Ws, count: usize) -> (Vec<String>, Vec<u64>) {
    let mut contents = Vec::new();
    let mut seqs = Vec::new();
    while contents.len() < count {
        let frame = ws.recv().await;
        seqs.push(frame["seq"].as_u64().expect("a numbered frame"));
        if frame["type"] == json!("chat") {
            contents.push(
                frame["payload"]["content"]
                    .as_str()
                    .expect("content")
                    .to_string(),
            );
        }
    }
    (contents, seqs)
}

fn alice_says(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("alice:{i}")).collect()
}

/// What a `resume` replayed: the chat messages' contents, and whether every frame (presence
/// updates included) came with the next number after `last_seq`, ending with `resumed`.
fn replayed_chats(frames: &[Value], last_seq: u64) -> Vec<String> {
    let last = frames.last().expect("an answer");
    assert_eq!(last["type"], json!("resumed"), "{frames:?}");
    assert_eq!(
        last["payload"]["replayed"],
        json!(frames.len() - 1),
        "{frames:?}"
    );
    let seqs: Vec<u64> = frames.iter().filter_map(|f| f["seq"].as_u64()).collect();
    let expected: Vec<u64> = (last_seq + 1..=last_seq + frames.len() as u64).collect();
    assert_eq!(seqs, expected, "numbered on from {last_seq}: {frames:?}");
    frames
        .iter()
        .filter(|f| f["type"] == json!("chat"))
        .map(|f| {
            f["payload"]["content"]
                .as_str()
                .expect("content")
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_resumes_on_another_node_with_exactly_the_frames_it_missed() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let redis = redis_url();
    let (one, two) = (cluster.node(&redis).await, cluster.node(&redis).await);
    let smtp = &cluster.smtp;
    let alice = sign_up(&two, smtp, "alice", "alice@example.com", "alice's password").await;
    let bob = sign_up(&two, smtp, "bob", "bob@example.com", "bob's password").await;
    let (alice_id, bob_id) = (
        account_id(&two, "alice").await,
        account_id(&two, "bob").await,
    );
    make_friends(&two, alice_id, bob_id).await;
    let chat_id = herald::chat::dm_chat_id(alice_id, bob_id);
    let (mut a, _) = Ws::start(&two, &alice).await;
    let (mut b, bob_auth) = Ws::start(&one, &bob).await;
    let session = bob_auth["session"].as_str().expect("a session").to_string();

    // Bob, on node 1, reads three messages, then his connection drops.
    send_range(&mut a, chat_id, "alice", 0..3).await;
    let (seen, seqs) = numbered_chats(&mut b, 3).await;
    assert_eq!(seen, alice_says(0..3));
    let last_seq = *seqs.last().expect("numbers");
    drop(b);
    // Five more while he is away.
    send_range(&mut a, chat_id, "alice", 3..8).await;

    // He comes back through node 2: exactly the five, in order, numbered on from his last.
    let (mut b, frames) = Ws::resume(&two, &session, &bob, last_seq).await;
    assert_eq!(replayed_chats(&frames, last_seq), alice_says(3..8));
    let resumed_seq = frames.last().and_then(|f| f["seq"].as_u64()).expect("seq");
    // And the session goes on there.
    send_range(&mut a, chat_id, "alice", 8..9).await;
    let next = next_chat_or_typing(&mut b).await;
    assert_eq!(
        (next["seq"].as_u64(), next["payload"]["content"].clone()),
        (Some(resumed_seq + 1), json!("alice:8")),
        "{next}"
    );
    // Resumed again, now on node 1, after the last frame: nothing to replay, and the socket
    // that held the session on node 2 is closed (its client has gone on elsewhere).
    let (_b_again, again) = Ws::resume(&one, &session, &bob, resumed_seq + 1).await;
    assert_eq!(
        again,
        [
            json!({"seq": resumed_seq + 2, "type": "resumed", "payload": {"session": session, "replayed": 0}})
        ]
    );
    assert_eq!(b.closed(WAIT).await, Some(4001));
    cluster.finish(vec![one, two]).await;
}

/// A herald process (the real binary) as a node of `cluster`, with a data directory of its
/// own; returns it with its base URL once it is ready.
async fn node_process(
    cluster: &Cluster,
    redis: &str,
    data_dir: &std::path::Path,
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let settings = cluster.env.settings(&[]);
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .env("HERALD_DATA_DIR", data_dir)
        .env("HERALD_DATABASE_URL", &settings.database_url)
        .env("HERALD_REDIS_URL", redis)
        .env("HERALD_REDIS_PREFIX", &cluster.prefix)
        .env("HERALD_SMTP_URL", &cluster.smtp.url)
        .env("HERALD_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .current_dir(data_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("start herald");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
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
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let client = reqwest::Client::new();
    wait_until("the node process to be ready", WAIT, || async {
        client
            .get(format!("{address}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 200)
    })
    .await;
    (child, address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_on_a_node_killed_with_sigkill_resumes_on_another_with_nothing_missed() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let redis = redis_url();
    let two = cluster.node(&redis).await;
    let one_dir = tempfile::tempdir().expect("a data directory");
    let (mut one, one_address) = node_process(&cluster, &redis, one_dir.path()).await;
    let smtp = &cluster.smtp;
    let alice = sign_up(&two, smtp, "alice", "alice@example.com", "alice's password").await;
    let bob = sign_up(&two, smtp, "bob", "bob@example.com", "bob's password").await;
    let (alice_id, bob_id) = (
        account_id(&two, "alice").await,
        account_id(&two, "bob").await,
    );
    make_friends(&two, alice_id, bob_id).await;
    let chat_id = herald::chat::dm_chat_id(alice_id, bob_id);
    let (mut a, _) = Ws::start(&two, &alice).await;
    let (mut b, bob_auth) = Ws::start_address(&one_address, &bob).await;
    let session = bob_auth["session"].as_str().expect("a session").to_string();
    send_range(&mut a, chat_id, "alice", 0..3).await;
    let (seen, seqs) = numbered_chats(&mut b, 3).await;
    assert_eq!(seen, alice_says(0..3));
    let last_seq = *seqs.last().expect("numbers");

    // Node 1 dies without a word (SIGKILL); Alice writes on, to a session whose node is gone.
    one.start_kill().expect("kill -9");
    let _ = one.wait().await;
    drop(b);
    send_range(&mut a, chat_id, "alice", 3..8).await;

    let (_b, frames) = Ws::resume(&two, &session, &bob, last_seq).await;
    assert_eq!(replayed_chats(&frames, last_seq), alice_says(3..8));
    cluster.finish(vec![two]).await;
}

/// Runs `herald check-config` with `settings` (and nothing else from the environment).
async fn check_config(settings: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("a directory");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .arg("check-config")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HERALD_DATA_DIR", dir.path())
        .current_dir(dir.path());
    for (name, value) in settings {
        command.env(name, value);
    }
    let output = command.output().await.expect("run check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn check_config_says_what_a_cluster_node_needs() {
    // A single node is fine, and told how to become a cluster.
    let (ok, text) = check_config(&[]).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("cluster: note: single node: HERALD_REDIS_URL is unset"),
        "{text}"
    );
    assert!(text.contains("configuration is valid"), "{text}");

    // Redis on SQLite without a public URL: two problems, named, and a failure.
    let (ok, text) = check_config(&[("HERALD_REDIS_URL", "redis://127.0.0.1:6379")]).await;
    assert!(!ok, "{text}");
    assert!(
        text.contains("cluster: ok: HERALD_REDIS_URL is set"),
        "{text}"
    );
    assert!(
        text.contains("cluster: PROBLEM: HERALD_DATABASE_URL is not PostgreSQL"),
        "{text}"
    );
    assert!(
        text.contains("cluster: PROBLEM: HERALD_PUBLIC_URL is unset"),
        "{text}"
    );
    assert!(text.contains("2 problem(s)"), "{text}");
    assert!(!text.contains("configuration is valid"), "{text}");

    // A node set up for a cluster passes, with what it cannot check said as notes.
    let (ok, text) = check_config(&[
        ("HERALD_REDIS_URL", "redis://127.0.0.1:6379"),
        (
            "HERALD_DATABASE_URL",
            "postgres://herald@db.internal/herald",
        ),
        ("HERALD_PUBLIC_URL", "https://chat.example.com"),
        ("HERALD_TRUSTED_PROXIES", "10.0.0.5/32"),
    ])
    .await;
    assert!(ok, "{text}");
    assert!(!text.contains("PROBLEM"), "{text}");
    for line in [
        "cluster: ok: HERALD_DATABASE_URL is PostgreSQL",
        "cluster: ok: HERALD_PUBLIC_URL is https://chat.example.com/",
        "cluster: ok: HERALD_TRUSTED_PROXIES is 10.0.0.5/32",
        "cluster: note: HERALD_NODE_ID is unset",
        "configuration is valid",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
}

//! Area C, chat: idle authenticated sockets (memory and CPU at rest) and DM latency between
//! pairs of friends at a fixed rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use herald::testkit::accounts::sign_up;
use herald::testkit::fake_smtp::FakeSmtp;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::raw_client::{RawWs, read_frames};
use super::report::describe;
use super::setup::{Common, Herald};

#[derive(clap::Args)]
pub struct ChatSockets {
    #[arg(long, default_value_t = 10_000)]
    sockets: usize,
    #[arg(long, default_value_t = 30)]
    seconds: u64,
}

#[derive(clap::Args)]
pub struct ChatLatency {
    #[arg(long, default_value_t = 1000)]
    pairs: usize,
    #[arg(long, default_value_t = 2000)]
    rate: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Signs `name` up through the API and the (fake) mail, and logs in; returns the token.
pub(crate) async fn bench_account(herald: &Herald, smtp: &FakeSmtp, name: &str) -> String {
    let email = format!("{name}@example.com");
    sign_up(
        &herald.client,
        &herald.url,
        smtp,
        name,
        &email,
        "bench password",
    )
    .await
}

/// Opens a socket, sends heartbeat and auth, and returns it with the auth payload.
pub(crate) async fn chat_socket(url: &str, token: &str) -> (Ws, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    ws.send(Message::text(r#"{"type":"heartbeat","payload":0}"#))
        .await
        .expect("send");
    ws.send(Message::text(
        json!({"type": "auth", "payload": {"auth": token}}).to_string(),
    ))
    .await
    .expect("send");
    let mut auth = Value::Null;
    while auth.is_null() {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                if frame["type"] == json!("auth") {
                    auth = frame["payload"].clone();
                } else if frame["type"] == json!("error") {
                    panic!("herald refused the socket before auth: {frame}");
                }
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => panic!("the socket failed before auth: {error}"),
            None => panic!("herald closed the socket before auth"),
        }
    }
    (ws, auth)
}

/// Idle sockets per account in `chat-sockets` (below herald's default cap of 32).
const SOCKETS_PER_ACCOUNT: usize = 16;

pub async fn chat_sockets(common: &Common, run: &ChatSockets) {
    let ChatSockets { sockets, seconds } = *run;
    let smtp = FakeSmtp::start().await;
    let herald = Herald::start(
        common,
        &[
            ("HERALD_SMTP_URL", smtp.url.clone()),
            // Every account is signed up and logged in from this one address.
            ("HERALD_LOGIN_ATTEMPTS_PER_MINUTE", "1000000".into()),
        ],
    )
    .await;
    // Sockets are spread over accounts, SOCKETS_PER_ACCOUNT each, as people would hold them:
    // herald caps the live sockets of one account (HERALD_WS_SOCKETS_PER_ACCOUNT).
    let mut tokens = Vec::new();
    for n in 0..sockets.div_ceil(SOCKETS_PER_ACCOUNT) {
        tokens.push(bench_account(&herald, &smtp, &format!("bench{n}")).await);
    }
    let url = format!("{}/ws", herald.url.replace("http://", "ws://"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, rss0) = herald.usage();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let opened = Arc::new(AtomicUsize::new(0));
    for batch in 0..sockets.div_ceil(100) {
        let mut handshakes = tokio::task::JoinSet::new();
        for i in 0..100.min(sockets - batch * 100) {
            let token = tokens[(batch * 100 + i) / SOCKETS_PER_ACCOUNT].clone();
            let url = url.clone();
            handshakes.spawn(async move { chat_socket(&url, &token).await.0 });
        }
        while let Some(Ok(mut ws)) = handshakes.join_next().await {
            opened.fetch_add(1, Ordering::Relaxed);
            // Each client heartbeats every 30 s, as the reference clients do, and reads what comes.
            tasks.spawn(async move {
                let mut ticker = tokio::time::interval(Duration::from_secs(30));
                ticker.tick().await;
                loop {
                    tokio::select! {
                        _ = ticker.tick() => {
                            if ws.send(Message::text(r#"{"type":"heartbeat","payload":1}"#)).await.is_err() { break; }
                        }
                        frame = ws.next() => if frame.is_none() { break },
                    }
                }
            });
        }
    }
    let connect_time = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (cpu0, rss1) = herald.usage();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu1, rss2) = herald.usage();
    let n = opened.load(Ordering::Relaxed);
    println!(
        "backend: {:?}; {n} authenticated sockets opened in {:.1} s",
        common.backend,
        connect_time.as_secs_f64()
    );
    println!(
        "herald RSS: {} MiB before, {} MiB with the sockets: {:.1} KiB per idle socket",
        rss0 / 1024,
        rss1 / 1024,
        (rss1.saturating_sub(rss0)) as f64 / n.max(1) as f64
    );
    println!(
        "at rest with a heartbeat per socket every 30 s ({:.0}/s): herald CPU {:.1}% of one core; RSS after {} s: {} MiB",
        n as f64 / 30.0,
        100.0 * (cpu1 - cpu0) / t0.elapsed().as_secs_f64(),
        seconds,
        rss2 / 1024
    );
    tasks.abort_all();
}

/// Two accounts signed up, connected and made friends; returns their tokens and the DM's id.
async fn make_friends(
    herald: &Herald,
    smtp: &FakeSmtp,
    url: &str,
    p: usize,
) -> (String, String, String) {
    let (left, right) = (format!("s{p}"), format!("r{p}"));
    let (left_token, right_token) = tokio::join!(
        bench_account(herald, smtp, &left),
        bench_account(herald, smtp, &right)
    );
    let chat_id = befriend(url, (&left, &left_token), (&right, &right_token)).await;
    (left_token, right_token, chat_id)
}

/// Makes two signed-up accounts (name, token) friends over their sockets; returns their DM's
/// chat id.
pub(crate) async fn befriend(
    url: &str,
    (left, left_token): (&str, &str),
    (right, right_token): (&str, &str),
) -> String {
    let (mut a, a_auth) = chat_socket(url, left_token).await;
    let (mut b, b_auth) = chat_socket(url, right_token).await;
    a.send(Message::text(
        json!({"type": "mutual_users", "payload": {"type": "request", "name": right}}).to_string(),
    ))
    .await
    .expect("send");
    // The request must be stored before it can be accepted.
    while let Some(Ok(Message::Text(text))) = a.next().await {
        if text.as_str().contains("\"ok\"") {
            break;
        }
    }
    b.send(Message::text(
        json!({"type": "mutual_users", "payload": {"type": "response", "name": left}}).to_string(),
    ))
    .await
    .expect("send");
    let id = |auth: &Value| {
        auth["self_user"]["id"]
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .expect("id")
    };
    let chat_id = herald::chat::dm_chat_id(id(&a_auth), id(&b_auth)).to_string();
    // The friendship is done when the "response" reaches the requester.
    while let Some(Ok(Message::Text(text))) = a.next().await {
        if text.as_str().contains("\"response\"") {
            break;
        }
    }
    chat_id
}

pub async fn chat_latency(common: &Common, run: &ChatLatency) {
    let ChatLatency {
        pairs,
        rate,
        seconds,
    } = *run;
    let smtp = FakeSmtp::start().await;
    let herald = Arc::new(
        Herald::start(
            common,
            &[
                ("HERALD_SMTP_URL", smtp.url.clone()),
                // Every bench client logs in from 127.0.0.1.
                ("HERALD_LOGIN_ATTEMPTS_PER_MINUTE", "1000000".into()),
            ],
        )
        .await,
    );
    let setup = Instant::now();
    let made = friend_pairs(herald.clone(), Arc::new(smtp), pairs).await;
    // The sockets used to make friends are closed; the measurement uses lean raw clients
    // (`RawWs`), so the load generator costs as little CPU as it can on the shared cores.
    println!(
        "backend: {:?}; {pairs} pairs of friends set up in {:.1} s",
        common.backend,
        setup.elapsed().as_secs_f64()
    );
    let address = herald.address();
    let pairs: Vec<DmPair> = made
        .into_iter()
        .map(|(sender, recipient, chat_id)| DmPair {
            sender,
            sender_node: address,
            recipient,
            recipient_node: address,
            chat_id,
        })
        .collect();
    let run = send_dms_at_rate(pairs, rate, seconds, || herald.usage().0).await;
    let (cpu0, cpu1) = run.probed;
    println!(
        "{} messages sent at {:.0}/s, {} received; herald CPU {:.0}% of one core",
        run.sent,
        run.sent as f64 / run.elapsed,
        run.samples.len(),
        100.0 * (cpu1 - cpu0) / run.elapsed
    );
    describe("DM sender → recipient", run.samples);
}

/// `pairs` pairs of friends signed up and made friends on `herald`, 16 pairs at a time (each
/// sign-up costs two argon2 hashes): (sender's token, recipient's token, their DM's id).
pub(crate) async fn friend_pairs(
    herald: Arc<Herald>,
    smtp: Arc<FakeSmtp>,
    pairs: usize,
) -> Vec<(String, String, String)> {
    let url = format!("{}/ws", herald.url.replace("http://", "ws://"));
    let mut setups = tokio::task::JoinSet::new();
    let mut next = 0;
    let mut made = Vec::new();
    while made.len() < pairs {
        while setups.len() < 16 && next < pairs {
            let (herald, smtp, url) = (herald.clone(), smtp.clone(), url.clone());
            let p = next;
            next += 1;
            setups.spawn(async move { make_friends(&herald, &smtp, &url, p).await });
        }
        if let Some(Ok(pair)) = setups.join_next().await {
            made.push(pair);
        }
    }
    made
}

/// One pair of friends for a DM load: the sender's token and the node its socket is opened on,
/// the same for the recipient, and their DM's id.
pub(crate) struct DmPair {
    pub sender: String,
    pub sender_node: std::net::SocketAddr,
    pub recipient: String,
    pub recipient_node: std::net::SocketAddr,
    pub chat_id: String,
}

/// What a DM load run saw: messages sent, the seconds it sent them in, each received
/// message's sender → recipient latency, and what the caller's probe read as the sending began
/// and as it ended (CPU counters, say).
pub(crate) struct DmRun<T> {
    pub sent: usize,
    pub elapsed: f64,
    pub samples: Vec<Duration>,
    pub probed: (T, T),
}

/// Opens a raw socket for each side of every pair and sends DMs at `rate` in all, spread evenly
/// over the pairs, for `seconds`; waits up to 30 s for the stragglers. `probe` is read when the
/// first message is due and when the last one has been written.
pub(crate) async fn send_dms_at_rate<T>(
    pairs: Vec<DmPair>,
    rate: usize,
    seconds: u64,
    probe: impl Fn() -> T,
) -> DmRun<T> {
    let epoch = Instant::now();
    let samples: Arc<std::sync::Mutex<Vec<Duration>>> = Arc::default();
    let mut readers = tokio::task::JoinSet::new();
    let mut writers = Vec::new();
    for pair in &pairs {
        let (sender_read, sender_write) = RawWs::open(pair.sender_node, &pair.sender)
            .await
            .into_split();
        let (recipient_read, keep) = RawWs::open(pair.recipient_node, &pair.recipient)
            .await
            .into_split();
        // The sender's own copies come back; they are read and dropped.
        readers.spawn(read_frames(sender_read, None, epoch));
        readers.spawn(read_frames(recipient_read, Some(samples.clone()), epoch));
        writers.push((sender_write, keep, pair.chat_id.clone()));
    }
    // One task writes every frame: pair i sends at i / rate + k · pairs / rate seconds.
    let period = Duration::from_secs_f64(writers.len() as f64 / rate as f64);
    let start = Instant::now() + Duration::from_millis(200);
    let stop = start + Duration::from_secs(seconds);
    let mut due: Vec<Instant> = (0..writers.len())
        .map(|i| start + Duration::from_secs_f64(i as f64 / rate as f64))
        .collect();
    let mut sent = 0usize;
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    tokio::time::sleep_until(start.into()).await;
    let first = probe();
    let t0 = Instant::now();
    while Instant::now() < stop {
        ticker.tick().await;
        let now = Instant::now();
        for (i, (writer, _, chat_id)) in writers.iter_mut().enumerate() {
            if due[i] > now || due[i] >= stop {
                continue;
            }
            due[i] += period;
            let frame = format!(
                r#"{{"type":"chat","payload":{{"type":"send","chat_id":"{chat_id}","content":"t={}"}}}}"#,
                epoch.elapsed().as_nanos()
            );
            if RawWs::write_text(writer, &frame).await.is_ok() {
                sent += 1;
            }
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let last = probe();
    // Messages still missing after 30 s are left out (the count shows it), not waited for.
    let wait = Instant::now();
    while samples.lock().expect("lock").len() < sent && wait.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    readers.abort_all();
    let samples = samples.lock().expect("lock").clone();
    DmRun {
        sent,
        elapsed,
        samples,
        probed: (first, last),
    }
}

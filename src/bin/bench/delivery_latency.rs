//! Area B, enqueue → delivered latency at a fixed rate: pushes paced by a ticker, each
//! delivery's arrival matched to when its push was sent; also the floor relay, the isolation
//! run with an endpoint that never answers, and the pruning of an old backlog under load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::testkit::fake_github::FakeGithub;
use herald::testkit::git_repo::GitRepo;
use sqlx::{AssertSqlSafe, Connection};

use super::push::{push_body, push_request, send_push};
use super::raw_client::read_response;
use super::relay::start_relay;
use super::report::describe;
use super::setup::{Common, Herald};
use super::webhooks::{LeanReceiver, webhook_setup};

#[derive(clap::Args)]
pub struct DeliveryLatency {
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// Deliveries per second (pushes per second × endpoints).
    #[arg(long, default_value_t = 1000)]
    rate: usize,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Add one endpoint that never answers (held until herald's 15 s timeout).
    #[arg(long)]
    with_hanging: bool,
    /// Send the pushes with reqwest (the figures before the sixth session) instead of
    /// pre-built requests written to keep-alive sockets.
    #[arg(long)]
    reqwest: bool,
    /// Old finished deliveries (an attempt each) written to the database before the load,
    /// for herald's first retention pass (30 s after start) to prune while the load runs;
    /// deliveries of pushes sent while it pruned are then reported apart. Use with
    /// `--seconds 60` or more.
    #[arg(long, default_value_t = 0)]
    backlog: usize,
    /// Write every delivery's timing to this file (push sha, sent at in ns since the Unix
    /// epoch, latency in ns), for looking into the slow ones.
    #[arg(long)]
    samples: Option<PathBuf>,
    /// Measure the floor instead of herald: the same pushes to a relay in its own process
    /// that does herald's HTTP work and nothing else (checks the push's signature, parses
    /// it, answers 202 and at once sends it, signed both ways, to every endpoint with
    /// herald's hook client): what this machine takes without a database or a queue.
    #[arg(long, conflicts_with_all = ["with_hanging", "reqwest", "backlog"])]
    floor: bool,
}

/// Where the latency scenario's pushes go.
enum PushTarget {
    Herald {
        herald: Arc<Herald>,
        _github: FakeGithub,
        _repo: GitRepo,
    },
    /// The relay of `--floor`, in its own process.
    Relay {
        _child: tokio::process::Child,
        address: std::net::SocketAddr,
    },
}

impl PushTarget {
    fn address(&self) -> std::net::SocketAddr {
        match self {
            PushTarget::Herald { herald, .. } => herald.address(),
            PushTarget::Relay { address, .. } => *address,
        }
    }
}

pub async fn delivery_latency(common: &Common, run: &DeliveryLatency) {
    let DeliveryLatency {
        endpoints,
        rate,
        seconds,
        with_hanging: hanging,
        reqwest: with_reqwest,
        backlog,
        ref samples,
        floor,
    } = *run;
    let samples_file = samples.as_deref();
    let (target, receiver, base) = if floor {
        let (receiver, url) = LeanReceiver::start().await;
        let (child, address) = start_relay(&url, endpoints).await;
        let relay = PushTarget::Relay {
            _child: child,
            address,
        };
        // Any head will do: the relay reads nothing but the push itself.
        (relay, receiver, "0".repeat(40))
    } else {
        let (herald, receiver, github, repo) = webhook_setup(common, endpoints, hanging).await;
        let base = repo.head("main");
        let herald = Arc::new(herald);
        let target = PushTarget::Herald {
            herald,
            _github: github,
            _repo: repo,
        };
        (target, receiver, base)
    };
    let pruning = match (&target, backlog) {
        (PushTarget::Herald { herald, .. }, 1..) => {
            Some(seed_old_deliveries(&herald.database_url, backlog).await)
        }
        _ => None,
    };
    receiver
        .record
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let pushes_per_second = (rate / endpoints).max(1);
    let interval = Duration::from_secs_f64(1.0 / pushes_per_second as f64);
    let total = pushes_per_second * seconds as usize;
    // When each push was sent: by the raw sender just before its request is written to the
    // socket, by reqwest before the request is handed to it.
    let sent = Arc::new(Mutex::new(HashMap::<String, Instant>::with_capacity(total)));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let acknowledged = if let (true, PushTarget::Herald { herald, .. }) = (with_reqwest, &target) {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..total {
            ticker.tick().await;
            let after = format!("{:040x}", i + 1);
            let body = push_body(&base, &after, "latency");
            let at = Instant::now();
            sent.lock().expect("lock").insert(after, at);
            let herald = herald.clone();
            tasks.spawn(async move {
                let response = send_push(&herald, &format!("l-{i}"), body).await;
                assert_eq!(response.status().as_u16(), 202);
                at.elapsed()
            });
        }
        let mut acknowledged = Vec::with_capacity(total);
        while let Some(answer) = tasks.join_next().await {
            if let Ok(took) = answer {
                acknowledged.push(took);
            }
        }
        acknowledged
    } else {
        raw_pushes(target.address(), &base, total, &mut ticker, &sent).await
    };
    // Whatever has not arrived a minute after the last push is left out of the figures (the
    // count `n=` shows it), so a slow tail is reported rather than a panic.
    let expected = total * endpoints;
    let started = Instant::now();
    while receiver.arrivals.lock().expect("lock").len() < expected
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent_at = sent.lock().expect("lock").clone();
    let mut first: HashMap<&str, Duration> = HashMap::new();
    let arrivals = receiver.arrivals.lock().expect("lock").clone();
    let mut samples = Vec::with_capacity(arrivals.len());
    for (sha, at) in &arrivals {
        if let Some(sent) = sent_at.get(sha) {
            let took = at.duration_since(*sent);
            samples.push(took);
            let earliest = first.entry(sha.as_str()).or_insert(took);
            *earliest = (*earliest).min(took);
        }
    }
    println!(
        "{}; {endpoints} healthy endpoints{}; {rate} deliveries/s ({pushes_per_second} pushes/s) for {seconds} s",
        if floor {
            "the floor: a relay without database or queue".to_string()
        } else {
            format!("backend: {:?}", common.backend)
        },
        if hanging {
            " + 1 endpoint that never answers"
        } else {
            ""
        }
    );
    describe("push sent → accepted (202)", acknowledged);
    describe(
        "push sent → its first delivery",
        first.into_values().collect(),
    );
    if let Some(pruning) = pruning {
        let window = *pruning.lock().expect("lock");
        if let (Some(from), Some(to)) = window {
            let mut during = Vec::new();
            let mut outside = Vec::new();
            for (sha, at) in &arrivals {
                if let Some(sent) = sent_at.get(sha) {
                    let took = at.duration_since(*sent);
                    if *sent >= from && *sent <= to {
                        during.push(took);
                    } else {
                        outside.push(took);
                    }
                }
            }
            println!(
                "pruning {backlog} old deliveries took {:.1} s",
                to.duration_since(from).as_secs_f64()
            );
            describe("delivery received, sent while pruning", during);
            describe("delivery received, sent otherwise", outside);
        } else {
            let state = if window.0.is_some() {
                "started but not finished"
            } else {
                "not started"
            };
            println!("pruning the backlog had {state} when the load ended: run longer");
        }
    }
    if let Some(path) = samples_file {
        write_samples(path, &arrivals, &sent_at);
    }
    describe("push sent → delivery received", samples);
}

/// Sends `total` pushes at the ticker's pace over keep-alive sockets, each request built and
/// signed beforehand and written by whichever connection is idle (so the generator's own work
/// stays out of the measurement); notes in `sent` when each was written. Returns the
/// push → answer latencies.
async fn raw_pushes(
    address: std::net::SocketAddr,
    base: &str,
    total: usize,
    ticker: &mut tokio::time::Interval,
    sent: &Arc<Mutex<HashMap<String, Instant>>>,
) -> Vec<Duration> {
    use tokio::io::AsyncWriteExt;
    const CONNECTIONS: usize = 8;
    let (queue, requests) = tokio::sync::mpsc::unbounded_channel::<(String, Vec<u8>)>();
    let requests = Arc::new(tokio::sync::Mutex::new(requests));
    let mut connections = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (requests, sent) = (requests.clone(), sent.clone());
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect to herald");
        let _ = stream.set_nodelay(true);
        connections.spawn(async move {
            let mut buffer = Vec::with_capacity(4096);
            let mut answered = Vec::new();
            loop {
                let next = requests.lock().await.recv().await;
                let Some((after, request)) = next else {
                    break;
                };
                let at = Instant::now();
                sent.lock().expect("lock").insert(after, at);
                stream.write_all(&request).await.expect("write a push");
                let status = read_response(&mut stream, &mut buffer)
                    .await
                    .expect("herald answers");
                assert_eq!(status, 202);
                answered.push(at.elapsed());
            }
            answered
        });
    }
    for i in 0..total {
        let after = format!("{:040x}", i + 1);
        let request = push_request(
            address,
            &format!("l-{i}"),
            &push_body(base, &after, "latency"),
        );
        ticker.tick().await;
        let _ = queue.send((after, request));
    }
    drop(queue);
    let mut acknowledged = Vec::with_capacity(total);
    while let Some(answered) = connections.join_next().await {
        acknowledged.extend(answered.unwrap_or_default());
    }
    acknowledged
}

/// One line per delivery: the push's head sha, when the push was sent (ns since the Unix epoch,
/// to line up with herald's own logs), and how long until the delivery arrived (ns).
fn write_samples(path: &Path, arrivals: &[(String, Instant)], sent_at: &HashMap<String, Instant>) {
    let (anchor, anchor_epoch) = (Instant::now(), std::time::SystemTime::now());
    let epoch_ns = |at: Instant| {
        anchor_epoch
            .checked_sub(anchor.duration_since(at))
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos())
    };
    let mut out = String::with_capacity(arrivals.len() * 72);
    for (sha, at) in arrivals {
        if let Some(sent) = sent_at.get(sha) {
            let took = at.duration_since(*sent).as_nanos();
            out.push_str(&format!("{sha} {} {took}\n", epoch_ns(*sent)));
        }
    }
    match std::fs::write(path, out) {
        Ok(()) => println!("samples written to {}", path.display()),
        Err(error) => eprintln!("could not write {}: {error}", path.display()),
    }
}

/// When pruning the backlog began and when it was done, as the watcher saw it.
type PruningWindow = Arc<Mutex<(Option<Instant>, Option<Instant>)>>;

/// Writes `rows` deliveries finished 40 days ago (each with one attempt and a ~600-byte
/// payload) straight into herald's database, and watches them go: returns when the first went
/// and when the last did, as they happen.
async fn seed_old_deliveries(database_url: &str, rows: usize) -> PruningWindow {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database_url)
        .await
        .expect("herald's database");
    let old = herald::ids::now_ms() - 40 * 86_400_000;
    let first = herald::ids::first_id_at(old);
    let payload = "x".repeat(600);
    const CHUNK: usize = 200;
    let started = Instant::now();
    sqlx::query("BEGIN")
        .execute(&mut conn)
        .await
        .expect("begin");
    for start in (0..rows).step_by(CHUNK) {
        let chunk = start..(start + CHUNK).min(rows);
        let values = (0..chunk.len())
            .map(|i| format!("(${}, 'webhook', 'http://127.0.0.1:9/old', $1, 'delivered', 1, 0, $2, 0, $2, $2)", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let mut insert = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO deliveries (id, channel, destination, payload, status, attempts, failures, \
             next_attempt_at, locked_until, created_at, updated_at) VALUES {values}"
        )))
        .bind(payload.as_str())
        .bind(old);
        for i in chunk.clone() {
            insert = insert.bind(first + i as i64);
        }
        insert.execute(&mut conn).await.expect("old deliveries");
        let values = (0..chunk.len())
            .map(|i| format!("(${}, ${}, $1, 204, 3, '')", 2 * i + 2, 2 * i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let mut insert = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO delivery_attempts (id, delivery_id, attempted_at, status_code, duration_ms, \
             response_body) VALUES {values}"
        )))
        .bind(old);
        for i in chunk {
            insert = insert.bind(first + i as i64).bind(first + i as i64);
        }
        insert.execute(&mut conn).await.expect("old attempts");
    }
    sqlx::query("COMMIT")
        .execute(&mut conn)
        .await
        .expect("commit");
    eprintln!(
        "wrote {rows} old deliveries in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let window: PruningWindow = Arc::new(Mutex::new((None, None)));
    let watched = window.clone();
    let last = first + rows as i64;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Pruning walks up the ids: the lowest id left tells how far it is, in one probe.
            let lowest: Option<i64> = sqlx::query_scalar("SELECT MIN(id) FROM deliveries")
                .fetch_one(&mut conn)
                .await
                .expect("lowest id");
            let lowest = lowest.unwrap_or(i64::MAX);
            let mut window = watched.lock().expect("lock");
            if lowest > first && window.0.is_none() {
                window.0 = Some(Instant::now());
            }
            if lowest >= last {
                window.1 = Some(Instant::now());
                return;
            }
        }
    });
    window
}

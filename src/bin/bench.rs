//! herald's benchmarks. Each scenario starts the release `herald` binary as its own process (so
//! its CPU and memory can be read from /proc), with local fakes of GitHub and Telegram served by
//! this process, and prints the figures that go into BENCHMARKS.md.
//!
//!     cargo build --release && target/release/herald-bench <scenario> [--backend postgres]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use herald::crypto::hmac_sha256_hex;
use herald::testkit::fake_github::FakeGithub;
use herald::testkit::fake_telegram::FakeTelegram;
use herald::testkit::git_repo::{GitRepo, git};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection};

#[path = "bench/chat_memory.rs"]
mod chat_memory;

const SECRET: &str = "bench-secret";
const ADMIN: &str = "bench-admin";

#[derive(Parser)]
#[command(about = "herald benchmarks (run against a release build)")]
struct Args {
    #[arg(long, value_enum, default_value = "sqlite", global = true)]
    backend: Backend,
    /// PostgreSQL server for --backend postgres; a fresh database is made on it.
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/test",
        global = true
    )]
    postgres: String,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Subcommand)]
enum Scenario {
    /// Signed push webhook → fake Telegram received sendMessage, one push at a time.
    WebhookLatency {
        #[arg(long, default_value_t = 1000)]
        pushes: usize,
    },
    /// Unchanged GitHub branches polled with conditional requests.
    GithubPolling {
        #[arg(long, default_value_t = 10_000)]
        branches: usize,
        #[arg(long, default_value = "10s")]
        interval: String,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Unchanged local git remotes polled with ls-remote.
    GitPolling {
        #[arg(long, default_value_t = 1000)]
        remotes: usize,
        #[arg(long, default_value = "10s")]
        interval: String,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Sustained signed webhook deliveries/s: pushes in a closed loop, fanned out to N endpoints.
    WebhookThroughput {
        #[arg(long, default_value_t = 10)]
        endpoints: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Push webhooks in flight at once from the load generator.
        #[arg(long, default_value_t = 8)]
        senders: usize,
    },
    /// Enqueue → delivered latency at a fixed delivery rate, fanned out to N endpoints.
    DeliveryLatency {
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
        samples: Option<std::path::PathBuf>,
        /// Measure the floor instead of herald: the same pushes to a relay in its own process
        /// that does herald's HTTP work and nothing else (checks the push's signature, parses
        /// it, answers 202 and at once sends it, signed both ways, to every endpoint with
        /// herald's hook client): what this machine takes without a database or a queue.
        #[arg(long, conflicts_with_all = ["with_hanging", "reqwest", "backlog"])]
        floor: bool,
    },
    /// Large DMs to one user with many sockets: herald's RSS growth (bounded by the chat's settings).
    ChatMemory(chat_memory::Options),
    /// Idle authenticated chat sockets: memory per socket, CPU at rest with heartbeats.
    ChatSockets {
        #[arg(long, default_value_t = 10_000)]
        sockets: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// DM sender → recipient latency at a fixed rate across pairs of friends.
    ChatLatency {
        #[arg(long, default_value_t = 1000)]
        pairs: usize,
        #[arg(long, default_value_t = 2000)]
        rate: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// argon2id password checks per second (what a login costs), with herald's parameters.
    Login {
        #[arg(long, default_value_t = 200)]
        checks: usize,
    },
    /// `POST /kakao/skill` with a command reply under closed-loop load from this process (raw
    /// HTTP/1.1 keep-alive connections), next to a bare axum handler that only parses the
    /// SkillPayload and echoes it, measured the same way.
    KakaoSkill {
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Distinct Kakao users the requests come from.
        #[arg(long, default_value_t = 1000)]
        users: usize,
        #[arg(long, default_value = "도움말")]
        text: String,
    },
    /// (internal) The relay `delivery-latency --floor` measures.
    #[command(hide = true)]
    RelayServer {
        #[arg(long)]
        port: u16,
        /// The receiver's base URL; the relay sends to `{receiver}/hook/0` … `/hook/{endpoints-1}`.
        #[arg(long)]
        receiver: String,
        #[arg(long)]
        endpoints: usize,
    },
    /// (internal) The bare axum echo handler the kakao-skill scenario compares against.
    #[command(hide = true)]
    EchoServer {
        #[arg(long)]
        port: u16,
    },
    /// Knowledge search: import N generated Korean/English documents through the API, then
    /// search them one query at a time.
    KbSearch {
        #[arg(long, default_value_t = 10_000)]
        documents: usize,
        #[arg(long, default_value_t = 3000)]
        queries: usize,
        /// Documents per POST /api/v1/kb/documents.
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
    /// One push to a branch with many subscribers.
    Fanout {
        #[arg(long, default_value_t = 10_000)]
        subscribers: usize,
        /// Telegram messages per second overall (HERALD_TELEGRAM_RATE).
        #[arg(long, default_value_t = 1000)]
        rate: u32,
    },
}

struct Herald {
    child: tokio::process::Child,
    url: String,
    database_url: String,
    _data: tempfile::TempDir,
    client: reqwest::Client,
}

impl Herald {
    async fn start(args: &Args, env: &[(&str, String)]) -> Herald {
        let data = tempfile::tempdir().expect("temp dir");
        let database_url = match args.backend {
            Backend::Sqlite => format!("sqlite://{}", data.path().join("herald.db").display()),
            Backend::Postgres => {
                sqlx::any::install_default_drivers();
                let name = format!("herald_bench_{}", std::process::id());
                let mut conn = sqlx::AnyConnection::connect(&args.postgres)
                    .await
                    .expect("PostgreSQL");
                let _ = sqlx::query(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await;
                sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create database");
                let mut url = url::Url::parse(&args.postgres).expect("url");
                url.set_path(&format!("/{name}"));
                url.to_string()
            }
        };
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            listener.local_addr().expect("addr").port()
        };
        let binary: PathBuf = std::env::current_exe()
            .expect("own path")
            .parent()
            .expect("dir")
            .join("herald");
        let mut command = tokio::process::Command::new(&binary);
        command
            .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
            .env("HERALD_DATA_DIR", data.path())
            .env("HERALD_DATABASE_URL", &database_url)
            .env("HERALD_ALLOW_PRIVATE_TARGETS", "true")
            .env("HERALD_ADMIN_TOKEN", ADMIN)
            .env("HERALD_GIT_WEBHOOK_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .current_dir(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .expect("client");
        let started = Instant::now();
        loop {
            if client
                .get(format!("{url}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "herald did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Herald {
            child,
            database_url,
            url,
            _data: data,
            client,
        }
    }

    /// herald's listening address, for the raw-socket load generators.
    fn address(&self) -> std::net::SocketAddr {
        self.url
            .trim_start_matches("http://")
            .parse()
            .expect("herald listens on an IP address")
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// (user+system CPU seconds of herald and its waited-for children, RSS in KiB).
    fn usage(&self) -> (f64, u64) {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let after_name = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // Fields 14-17 of stat (utime, stime, cutime, cstime) are at 11..15 after the name.
        let ticks: u64 = fields
            .get(11..15)
            .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0);
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        (ticks as f64 / 100.0, rss)
    }

    async fn admin(&self, path: &str, body: Value) -> Value {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn metric(&self, name_and_labels: &str) -> f64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name_and_labels))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn describe(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:32} n={:5}  p50={:7.3} ms  p90={:7.3} ms  p99={:7.3} ms  max={:7.3} ms",
        samples.len(),
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.90)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap_or(&Duration::ZERO)),
    );
}

fn random_sha() -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    (0..40)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

fn push_body(before: &str, after: &str, title: &str) -> String {
    json!({
        "ref": "refs/heads/main", "before": before, "after": after,
        "created": false, "deleted": false, "forced": false,
        "compare": format!("https://github.com/octo/bench/compare/{}...{}", &before[..12], &after[..12]),
        "commits": [{
            "id": after, "message": title, "timestamp": "2026-11-22T10:00:00+09:00",
            "url": format!("https://github.com/octo/bench/commit/{after}"),
            "author": {"name": "Bench", "email": "bench@example.com", "username": "bench"},
            "committer": {"name": "Bench", "email": "bench@example.com", "username": "bench"},
            "added": ["src/lib.rs"], "removed": [], "modified": []
        }],
        "repository": {"full_name": "octo/bench", "html_url": "https://github.com/octo/bench",
                       "clone_url": "https://github.com/octo/bench.git"},
        "pusher": {"name": "bench", "email": "bench@example.com"}
    })
    .to_string()
}

async fn send_push(herald: &Herald, delivery: &str, body: String) -> reqwest::Response {
    herald
        .client
        .post(format!("{}/hooks/github", herald.url))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .header(
            "x-hub-signature-256",
            format!(
                "sha256={}",
                hmac_sha256_hex(SECRET.as_bytes(), body.as_bytes())
            ),
        )
        .body(body)
        .send()
        .await
        .expect("webhook")
}

fn print_machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("machine: {cores} cores, {cpu}");
}

async fn webhook_latency(args: &Args, pushes: usize) {
    let telegram = FakeTelegram::start().await;
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    github.add_repo("octo/bench", &repo);
    let herald = Herald::start(
        args,
        &[
            ("HERALD_GITHUB_API", github.base_url.clone()),
            ("HERALD_TELEGRAM_API", telegram.base_url.clone()),
            ("HERALD_TELEGRAM_BOT_TOKEN", telegram.token.clone()),
            ("HERALD_TELEGRAM_RATE", "100000".into()),
            ("HERALD_TELEGRAM_CHAT_RATE", "100000".into()),
            ("HERALD_POLL_INTERVAL", "1h".into()),
        ],
    )
    .await;
    let contact = herald
        .admin(
            "/api/v1/contacts",
            json!({"channel": "telegram", "address": "1"}),
        )
        .await;
    herald
        .admin(
            "/api/v1/subscriptions",
            json!({"contact_id": contact["id"], "repository": "octo/bench", "branch": "main"}),
        )
        .await;

    let mut before = repo.head("main");
    let mut acked = Vec::with_capacity(pushes);
    let mut delivered = Vec::with_capacity(pushes);
    let warmup = 20;
    for i in 0..pushes + warmup {
        let after = random_sha();
        let body = push_body(&before, &after, &format!("bench commit {i}"));
        let started = Instant::now();
        let response = send_push(&herald, &format!("bench-{i}"), body).await;
        assert_eq!(response.status().as_u16(), 202, "push {i} not accepted");
        let ack = started.elapsed();
        loop {
            if telegram.delivered_count() > i {
                if i >= warmup {
                    acked.push(ack);
                    delivered.push(telegram.delivered()[i].at.duration_since(started));
                }
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "push {i} never reached Telegram"
            );
            tokio::time::sleep(Duration::from_micros(50)).await;
        }
        before = after;
    }
    println!(
        "backend: {:?}; {pushes} pushes, one at a time, after {warmup} warm-up pushes",
        args.backend
    );
    describe("webhook answered (durable)", acked);
    describe("webhook → sendMessage received", delivered);
}

async fn github_polling(args: &Args, branches: usize, interval: &str, seconds: u64) {
    let github = FakeGithub::start().await;
    github.stop_recording();
    let repos = branches.div_ceil(100);
    for r in 0..repos {
        for b in 0..100.min(branches - r * 100) {
            github.set_head(&format!("octo/r{r}"), &format!("b{b}"), &random_sha());
        }
    }
    let herald = Herald::start(
        args,
        &[
            ("HERALD_GITHUB_API", github.base_url.clone()),
            ("HERALD_POLL_INTERVAL", interval.to_string()),
        ],
    )
    .await;
    let contact = herald
        .admin(
            "/api/v1/contacts",
            json!({"channel": "email", "address": "bench@example.com"}),
        )
        .await;
    let setup = Instant::now();
    let herald = Arc::new(herald);
    let mut tasks = tokio::task::JoinSet::new();
    let pairs: Vec<(usize, usize)> = (0..branches).map(|i| (i / 100, i % 100)).collect();
    for chunk in pairs.chunks(branches.div_ceil(32)) {
        let herald = herald.clone();
        let chunk = chunk.to_vec();
        let contact_id = contact["id"].clone();
        tasks.spawn(async move {
            for (r, b) in chunk {
                herald
                    .admin(
                        "/api/v1/subscriptions",
                        json!({"contact_id": contact_id, "repository": format!("octo/r{r}"), "branch": format!("b{b}")}),
                    )
                    .await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    println!(
        "backend: {:?}; subscribed {branches} GitHub branches in {:.1} s",
        args.backend,
        setup.elapsed().as_secs_f64()
    );

    // Let one whole interval pass so every watch has its ETag, then measure.
    let interval_d = humantime::parse_duration(interval).expect("interval");
    tokio::time::sleep(interval_d + Duration::from_secs(1)).await;
    let (cpu0, _) = herald.usage();
    let counts0 = github.counts();
    let t0 = Instant::now();
    let mut per_second = Vec::new();
    let mut last = counts0.requests;
    for _ in 0..seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = github.counts().requests;
        per_second.push(now - last);
        last = now;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (cpu1, rss) = herald.usage();
    let counts1 = github.counts();
    let requests = counts1.requests - counts0.requests;
    let not_modified = counts1.not_modified - counts0.not_modified;
    let expected = branches as f64 / interval_d.as_secs_f64();
    println!(
        "conditional requests: {:.0}/s (expected {expected:.0}/s), 304: {:.2}%, rate-limit cost (non-304): {}",
        requests as f64 / elapsed,
        100.0 * not_modified as f64 / requests.max(1) as f64,
        requests - not_modified
    );
    println!(
        "per-second request counts: min {} max {} (evenness)",
        per_second.iter().min().unwrap_or(&0),
        per_second.iter().max().unwrap_or(&0)
    );
    println!(
        "herald CPU: {:.1}% of one core; RSS {} MiB",
        100.0 * (cpu1 - cpu0) / elapsed,
        rss / 1024
    );
}

async fn git_polling(args: &Args, remotes: usize, interval: &str, seconds: u64) {
    let source = GitRepo::new();
    let dir = tempfile::tempdir().expect("temp");
    let setup = Instant::now();
    let mut paths = Vec::with_capacity(remotes);
    for i in 0..remotes {
        let path = dir.path().join(format!("remote-{i}.git"));
        git(
            &source.path,
            &[
                "clone",
                "--quiet",
                "--bare",
                "--local",
                &source.url(),
                &path.display().to_string(),
            ],
        );
        paths.push(path.display().to_string());
    }
    println!(
        "made {remotes} bare remotes in {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    let herald =
        Arc::new(Herald::start(args, &[("HERALD_POLL_INTERVAL", interval.to_string())]).await);
    let contact = herald
        .admin(
            "/api/v1/contacts",
            json!({"channel": "email", "address": "bench@example.com"}),
        )
        .await;
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in paths.chunks(remotes.div_ceil(8)) {
        let herald = herald.clone();
        let chunk = chunk.to_vec();
        let contact_id = contact["id"].clone();
        tasks.spawn(async move {
            for path in chunk {
                herald
                    .admin(
                        "/api/v1/subscriptions",
                        json!({"contact_id": contact_id, "repository": path, "branch": "main"}),
                    )
                    .await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let interval_d = humantime::parse_duration(interval).expect("interval");
    tokio::time::sleep(interval_d + Duration::from_secs(1)).await;
    let (cpu0, _) = herald.usage();
    let checks0 = herald.metric("herald_poll_checks_total").await;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let checks1 = herald.metric("herald_poll_checks_total").await;
    let errors = herald
        .metric("herald_poll_checks_total{outcome=\"error\"}")
        .await;
    let (cpu1, rss) = herald.usage();
    println!(
        "backend: {:?}; ls-remote checks: {:.0}/s (expected {:.0}/s), errors so far: {}",
        args.backend,
        (checks1 - checks0) / elapsed,
        remotes as f64 / interval_d.as_secs_f64(),
        errors as u64
    );
    println!(
        "herald CPU incl. git children: {:.1}% of one core; RSS {} MiB",
        100.0 * (cpu1 - cpu0) / elapsed,
        rss / 1024
    );
}

async fn fanout(args: &Args, subscribers: usize, rate: u32) {
    let telegram = FakeTelegram::start().await;
    let github = FakeGithub::start().await;
    github.stop_recording();
    let repo = GitRepo::new();
    github.add_repo("octo/bench", &repo);
    let herald = Arc::new(
        Herald::start(
            args,
            &[
                ("HERALD_GITHUB_API", github.base_url.clone()),
                ("HERALD_TELEGRAM_API", telegram.base_url.clone()),
                ("HERALD_TELEGRAM_BOT_TOKEN", telegram.token.clone()),
                ("HERALD_TELEGRAM_RATE", rate.to_string()),
                ("HERALD_DELIVERY_CONCURRENCY", "128".into()),
                ("HERALD_POLL_INTERVAL", "1h".into()),
            ],
        )
        .await,
    );
    let setup = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let ids: Vec<usize> = (1..=subscribers).collect();
    for chunk in ids.chunks(subscribers.div_ceil(32)) {
        let herald = herald.clone();
        let chunk = chunk.to_vec();
        tasks.spawn(async move {
            for id in chunk {
                let body = json!({"id": id.to_string(), "fav_repository": "octo/bench", "nick_name": "n", "type": "telegram", "branch": "main"});
                let response = herald.client.post(format!("{}/api/", herald.url)).json(&body).send().await.expect("subscribe");
                assert!(response.status().is_success());
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    println!(
        "backend: {:?}; {subscribers} subscribers registered in {:.1} s",
        args.backend,
        setup.elapsed().as_secs_f64()
    );

    let before = repo.head("main");
    let after = random_sha();
    let started = Instant::now();
    let response = send_push(
        &herald,
        "fanout",
        push_body(&before, &after, "one push for everyone"),
    )
    .await;
    let queued = started.elapsed();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(answer["notifications"], json!(subscribers), "{answer}");
    loop {
        if telegram.delivered_count() >= subscribers {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "not all sent");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sent = started.elapsed();
    let mut per_chat: BTreeMap<String, usize> = BTreeMap::new();
    for message in telegram.delivered() {
        *per_chat.entry(message.chat_id.to_string()).or_default() += 1;
    }
    println!(
        "push → all {subscribers} notifications queued (webhook answered): {:.0} ms",
        queued.as_secs_f64() * 1000.0
    );
    println!(
        "push → all sent at HERALD_TELEGRAM_RATE={rate}: {:.2} s ({:.0} msg/s); duplicates: {}",
        sent.as_secs_f64(),
        subscribers as f64 / sent.as_secs_f64(),
        per_chat.values().filter(|&&n| n > 1).count()
    );
}

/// A lean compiled receiver: counts deliveries and, when asked, notes when each push's `after`
/// arrived; `/hang` never answers in time.
#[derive(Clone, Default)]
struct LeanReceiver {
    count: Arc<std::sync::atomic::AtomicU64>,
    arrivals: Arc<std::sync::Mutex<Vec<(String, Instant)>>>,
    record: Arc<std::sync::atomic::AtomicBool>,
}

impl LeanReceiver {
    async fn start() -> (LeanReceiver, String) {
        use axum::extract::State;
        let receiver = LeanReceiver::default();
        async fn hook(
            State(r): State<LeanReceiver>,
            body: axum::body::Bytes,
        ) -> axum::http::StatusCode {
            let at = Instant::now();
            r.count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if r.record.load(std::sync::atomic::Ordering::Relaxed) {
                let text = String::from_utf8_lossy(&body);
                if let Some(start) = text.find("\"after\":\"") {
                    let sha: String = text[start + 9..].chars().take(40).collect();
                    r.arrivals.lock().expect("lock").push((sha, at));
                }
            }
            axum::http::StatusCode::NO_CONTENT
        }
        async fn hang() -> axum::http::StatusCode {
            tokio::time::sleep(Duration::from_secs(60)).await;
            axum::http::StatusCode::NO_CONTENT
        }
        let router = axum::Router::new()
            .route("/hook/{n}", axum::routing::post(hook))
            .route("/hang", axum::routing::post(hang))
            .with_state(receiver.clone());
        let address = herald::testkit::serve(router).await;
        (receiver, format!("http://{address}"))
    }

    fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A project on the fake GitHub repository `octo/bench` with `endpoints` hooks to the receiver.
async fn webhook_setup(
    args: &Args,
    endpoints: usize,
    hanging: bool,
) -> (Herald, LeanReceiver, FakeGithub, GitRepo) {
    let github = FakeGithub::start().await;
    github.stop_recording();
    let repo = GitRepo::new();
    github.add_repo("octo/bench", &repo);
    let (receiver, base) = LeanReceiver::start().await;
    let herald = Herald::start(
        args,
        &[
            ("HERALD_GITHUB_API", github.base_url.clone()),
            ("HERALD_POLL_INTERVAL", "1h".into()),
            ("HERALD_DELIVERY_CONCURRENCY", "256".into()),
        ],
    )
    .await;
    herald
        .admin(
            "/api/v1/projects",
            json!({"owner": "octo", "name": "bench", "repository": "octo/bench"}),
        )
        .await;
    for n in 0..endpoints {
        herald
            .admin(
                "/api/v1/projects/octo/bench/webhooks",
                json!({"payload_url": format!("{base}/hook/{n}"), "max_concurrency": 32}),
            )
            .await;
    }
    if hanging {
        herald
            .admin(
                "/api/v1/projects/octo/bench/webhooks",
                json!({"payload_url": format!("{base}/hang")}),
            )
            .await;
    }
    // Wait for the pings.
    let started = Instant::now();
    while receiver.count() < endpoints as u64 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (herald, receiver, github, repo)
}

async fn webhook_throughput(args: &Args, endpoints: usize, seconds: u64, senders: usize) {
    let (herald, receiver, _github, repo) = webhook_setup(args, endpoints, false).await;
    let herald = Arc::new(herald);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pushes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let base = repo.head("main");
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..senders {
        let herald = herald.clone();
        let stop = stop.clone();
        let pushes = pushes.clone();
        let base = base.clone();
        tasks.spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let after = format!("{:08x}{:032x}", sender, i);
                let body = push_body(&base, &after, "throughput");
                let response = send_push(&herald, &format!("t-{sender}-{i}"), body).await;
                assert_eq!(response.status().as_u16(), 202);
                pushes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                i += 1;
            }
        });
    }
    // Warm up, then measure the delivered rate over the window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (cpu0, _) = herald.usage();
    let delivered0 = receiver.count();
    let pushes0 = pushes.load(std::sync::atomic::Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let delivered = receiver.count() - delivered0;
    let enqueued = (pushes.load(std::sync::atomic::Ordering::Relaxed) - pushes0) * endpoints as u64;
    let (cpu1, rss) = herald.usage();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    // Drain: everything accepted must arrive.
    let total_expected =
        pushes.load(std::sync::atomic::Ordering::Relaxed) * endpoints as u64 + endpoints as u64;
    let drain = Instant::now();
    while receiver.count() < total_expected && drain.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "backend: {:?}; {endpoints} endpoints, {senders} concurrent push senders, {seconds} s window",
        args.backend
    );
    println!(
        "signed deliveries: {:.0}/s delivered, {:.0}/s enqueued; herald CPU {:.0}% of one core, RSS {} MiB",
        delivered as f64 / elapsed,
        enqueued as f64 / elapsed,
        100.0 * (cpu1 - cpu0) / elapsed,
        rss / 1024
    );
    println!(
        "after the load stopped, all {} accepted deliveries arrived in {:.1} s: {}",
        total_expected,
        drain.elapsed().as_secs_f64(),
        receiver.count() >= total_expected
    );
}

/// The `delivery-latency` scenario's settings.
struct LatencyRun<'a> {
    endpoints: usize,
    rate: usize,
    seconds: u64,
    hanging: bool,
    with_reqwest: bool,
    backlog: usize,
    samples_file: Option<&'a std::path::Path>,
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

/// Runs this bench binary's hidden `scenario` (a server) in a process of its own on a free
/// loopback port, with `args`, and waits until it takes connections.
async fn start_server_process(
    scenario: &str,
    args: &[&str],
) -> (tokio::process::Child, std::net::SocketAddr) {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        listener.local_addr().expect("addr").port()
    };
    let child = tokio::process::Command::new(std::env::current_exe().expect("own path"))
        .args([scenario, "--port", &port.to_string()])
        .args(args)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {scenario}: {e}"));
    let address: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let started = Instant::now();
    while tokio::net::TcpStream::connect(address).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{scenario} did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (child, address)
}

/// Starts the relay (`relay-server`) for `endpoints` endpoints of `receiver`.
async fn start_relay(receiver: &str, endpoints: usize) -> PushTarget {
    let endpoints = endpoints.to_string();
    let (child, address) = start_server_process(
        "relay-server",
        &["--receiver", receiver, "--endpoints", &endpoints],
    )
    .await;
    PushTarget::Relay {
        _child: child,
        address,
    }
}

/// herald's HTTP path without its database or queue: checks a push's GitHub signature, parses
/// it, answers 202 and sends it to every endpoint at once, signed both ways, through herald's
/// hook client (`delivery-latency --floor`).
async fn relay_server(port: u16, receiver: &str, endpoints: usize) {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use herald::channels::webhook::signed_headers;
    use herald::projects::signing::github_signature;
    #[derive(Clone)]
    struct Relay {
        client: Arc<herald::channels::hook_client::HookClient>,
        targets: Arc<Vec<Uri>>,
        next_id: Arc<std::sync::atomic::AtomicI64>,
    }
    async fn push(
        State(relay): State<Relay>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let signed = headers
            .get("x-hub-signature-256")
            .and_then(|v| v.to_str().ok());
        if signed != Some(github_signature(SECRET, &body).as_str()) {
            return StatusCode::UNAUTHORIZED;
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(event) if event["after"].is_string() => {}
            _ => return StatusCode::BAD_REQUEST,
        }
        for target in relay.targets.iter() {
            let (client, target, body) = (relay.client.clone(), target.clone(), body.clone());
            let id = relay
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                let headers = signed_headers(SECRET, id, 0, "push", &body);
                let _ = client.post(&target, headers, body, 4096).await;
            });
        }
        StatusCode::ACCEPTED
    }
    let relay = Relay {
        client: Arc::new(
            herald::channels::hook_client::HookClient::new(Duration::from_secs(15), true)
                .expect("hook client"),
        ),
        targets: Arc::new(
            (0..endpoints)
                .map(|n| {
                    format!("{receiver}/hook/{n}")
                        .parse()
                        .expect("receiver URL")
                })
                .collect(),
        ),
        next_id: Arc::default(),
    };
    let router = axum::Router::new()
        .route("/hooks/github", axum::routing::post(push))
        .with_state(relay);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    axum::serve(listener, router).await.expect("serve");
}

async fn webhook_delivery_latency(args: &Args, run: LatencyRun<'_>) {
    let LatencyRun {
        endpoints,
        rate,
        seconds,
        hanging,
        with_reqwest,
        backlog,
        samples_file,
        floor,
    } = run;
    let (target, receiver, base) = if floor {
        let (receiver, url) = LeanReceiver::start().await;
        // Any head will do: the relay reads nothing but the push itself.
        (start_relay(&url, endpoints).await, receiver, "0".repeat(40))
    } else {
        let (herald, receiver, github, repo) = webhook_setup(args, endpoints, hanging).await;
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
    let sent = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        Instant,
    >::with_capacity(total)));
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
    let expected = total * endpoints;
    let started = Instant::now();
    while receiver.arrivals.lock().expect("lock").len() < expected
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent_at = sent.lock().expect("lock").clone();
    let mut first: std::collections::HashMap<&str, Duration> = std::collections::HashMap::new();
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
            format!("backend: {:?}", args.backend)
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

/// One line per delivery: the push's head sha, when the push was sent (ns since the Unix epoch,
/// to line up with herald's own logs), and how long until the delivery arrived (ns).
fn write_samples(
    path: &std::path::Path,
    arrivals: &[(String, Instant)],
    sent_at: &std::collections::HashMap<String, Instant>,
) {
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

/// Writes `rows` deliveries finished 40 days ago (each with one attempt and a ~600-byte
/// payload) straight into herald's database, and watches them go: returns when the first went
/// and when the last did, as they happen.
async fn seed_old_deliveries(
    database_url: &str,
    rows: usize,
) -> Arc<std::sync::Mutex<(Option<Instant>, Option<Instant>)>> {
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
    let window = Arc::new(std::sync::Mutex::new((None, None)));
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

/// A signed push webhook as raw HTTP/1.1 bytes.
fn push_request(address: std::net::SocketAddr, delivery: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /hooks/github HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         X-GitHub-Event: push\r\nX-GitHub-Delivery: {delivery}\r\n\
         X-Hub-Signature-256: sha256={}\r\nContent-Length: {}\r\n\r\n{body}",
        hmac_sha256_hex(SECRET.as_bytes(), body.as_bytes()),
        body.len()
    )
    .into_bytes()
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
    sent: &Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>>,
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

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Signs up `name` through the API and the (fake) mail, and logs in; returns (token, account id).
async fn bench_account(
    herald: &Herald,
    smtp: &herald::testkit::fake_smtp::FakeSmtp,
    name: &str,
) -> String {
    let email = format!("{name}@example.com");
    let response = herald
        .client
        .post(format!("{}/api/v1/auth/register", herald.url))
        .json(&json!({"name": name, "email": email, "password": "bench password"}))
        .send()
        .await
        .expect("register");
    assert!(response.status().is_success(), "register {name}");
    let link = loop {
        if let Some(mail) = smtp.last_mail_to(&email) {
            let text = mail.body_text();
            let start = text.find("http://").expect("link");
            break text[start..]
                .split_whitespace()
                .next()
                .expect("link")
                .to_string();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    herald.client.get(&link).send().await.expect("verify");
    let answer: Value = herald
        .client
        .post(format!("{}/api/v1/auth/login", herald.url))
        .json(&json!({"email": email, "password": "bench password"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    answer["payload"]["token"]
        .as_str()
        .expect("token")
        .to_string()
}

/// Opens a socket, sends heartbeat and auth, and returns it with the auth payload.
async fn chat_socket(url: &str, token: &str) -> (Ws, Value) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
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
        if let Some(Ok(Message::Text(text))) = ws.next().await {
            let frame: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
            if frame["type"] == json!("auth") {
                auth = frame["payload"].clone();
            }
        }
    }
    (ws, auth)
}

async fn chat_sockets(args: &Args, sockets: usize, seconds: u64) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let smtp = herald::testkit::fake_smtp::FakeSmtp::start().await;
    let herald = Herald::start(args, &[("HERALD_SMTP_URL", smtp.url.clone())]).await;
    let token = bench_account(&herald, &smtp, "bench").await;
    let url = format!("{}/ws", herald.url.replace("http://", "ws://"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, rss0) = herald.usage();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for batch in 0..sockets.div_ceil(100) {
        let mut handshakes = tokio::task::JoinSet::new();
        for _ in 0..100.min(sockets - batch * 100) {
            let (url, token) = (url.clone(), token.clone());
            handshakes.spawn(async move { chat_socket(&url, &token).await.0 });
        }
        while let Some(Ok(mut ws)) = handshakes.join_next().await {
            opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
    let n = opened.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "backend: {:?}; {n} authenticated sockets opened in {:.1} s",
        args.backend,
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

async fn chat_latency(args: &Args, pairs: usize, rate: usize, seconds: u64) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let smtp = herald::testkit::fake_smtp::FakeSmtp::start().await;
    let herald = Arc::new(
        Herald::start(
            args,
            &[
                ("HERALD_SMTP_URL", smtp.url.clone()),
                // Every bench client logs in from 127.0.0.1.
                ("HERALD_LOGIN_ATTEMPTS_PER_MINUTE", "1000000".into()),
            ],
        )
        .await,
    );
    let url = format!("{}/ws", herald.url.replace("http://", "ws://"));
    let setup = Instant::now();
    let epoch = Instant::now();
    let samples: Arc<std::sync::Mutex<Vec<Duration>>> = Arc::default();
    let mut readers = tokio::task::JoinSet::new();
    // Pairs are set up 16 at a time (each sign-up costs two argon2 hashes).
    let smtp = Arc::new(smtp);
    let mut setups = tokio::task::JoinSet::new();
    let mut next = 0;
    let mut made = Vec::new();
    while made.len() < pairs {
        while setups.len() < 16 && next < pairs {
            let (herald, smtp, url) = (herald.clone(), smtp.clone(), url.clone());
            let p = next;
            next += 1;
            setups.spawn(async move {
                let (left, right) = (format!("s{p}"), format!("r{p}"));
                let (left_token, right_token) = tokio::join!(
                    bench_account(&herald, &smtp, &left),
                    bench_account(&herald, &smtp, &right)
                );
                let (mut a, a_auth) = chat_socket(&url, &left_token).await;
                let (mut b, b_auth) = chat_socket(&url, &right_token).await;
                a.send(Message::text(
                    json!({"type": "mutual_users", "payload": {"type": "request", "name": right}})
                        .to_string(),
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
                    json!({"type": "mutual_users", "payload": {"type": "response", "name": left}})
                        .to_string(),
                ))
                .await
                .expect("send");
                let id = |auth: &Value| {
                    auth["self_user"]["id"]
                        .as_str()
                        .and_then(|s| s.parse::<i64>().ok())
                        .expect("id")
                };
                let chat_id = (id(&a_auth) ^ id(&b_auth)).to_string();
                // The friendship is done when the "response" reaches the requester.
                while let Some(Ok(Message::Text(text))) = a.next().await {
                    if text.as_str().contains("\"response\"") {
                        break;
                    }
                }
                drop((a, b));
                (left_token, right_token, chat_id)
            });
        }
        if let Some(Ok(pair)) = setups.join_next().await {
            made.push(pair);
        }
    }
    // The sockets used to make friends are closed; the measurement uses lean raw clients
    // (`RawWs`), so the load generator costs as little CPU as it can on the shared cores.
    let made: Vec<(String, String, String)> = made;
    println!(
        "backend: {:?}; {pairs} pairs of friends set up in {:.1} s",
        args.backend,
        setup.elapsed().as_secs_f64()
    );
    let address = herald.address();
    let mut writers = Vec::new();
    for (left, right, chat_id) in made {
        let (sender_read, sender_write) = RawWs::open(address, &left).await.into_split();
        let (recipient_read, _keep) = RawWs::open(address, &right).await.into_split();
        // The sender's own copies come back; they are read and dropped.
        readers.spawn(read_frames(sender_read, None, epoch));
        readers.spawn(read_frames(recipient_read, Some(samples.clone()), epoch));
        writers.push((sender_write, _keep, chat_id));
    }
    // One task writes every frame: pair i sends at i / rate + k · pairs / rate seconds.
    let period = Duration::from_secs_f64(pairs as f64 / rate as f64);
    let start = Instant::now() + Duration::from_millis(200);
    let stop = start + Duration::from_secs(seconds);
    let mut due: Vec<Instant> = (0..writers.len())
        .map(|i| start + Duration::from_secs_f64(i as f64 / rate as f64))
        .collect();
    let mut sent = 0usize;
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    tokio::time::sleep_until(start.into()).await;
    let (cpu0, _) = herald.usage();
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
    let (cpu1, _) = herald.usage();
    let wait = Instant::now();
    while samples.lock().expect("lock").len() < sent && wait.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    readers.abort_all();
    let samples = samples.lock().expect("lock").clone();
    println!(
        "{} messages sent at {:.0}/s, {} received; herald CPU {:.0}% of one core",
        sent,
        sent as f64 / elapsed,
        samples.len(),
        100.0 * (cpu1 - cpu0) / elapsed
    );
    describe("DM sender → recipient", samples);
}

/// A minimal WebSocket client over a raw TCP stream: the upgrade, masked text frames out
/// (with a zero mask, which the protocol allows), unmasked frames in. It does only what the
/// latency benchmark needs, so that the generator's CPU goes to moving bytes.
struct RawWs(tokio::net::TcpStream);

impl RawWs {
    /// Connects, upgrades, and sends heartbeat and auth; returns once `auth` is answered.
    async fn open(address: std::net::SocketAddr, token: &str) -> RawWs {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("upgrade");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.expect("upgrade answer");
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "upgrade refused");
        let mut ws = RawWs(stream);
        RawWs::write_text(&mut ws.0, r#"{"type":"heartbeat","payload":0}"#)
            .await
            .expect("heartbeat");
        let auth = format!(r#"{{"type":"auth","payload":{{"auth":"{token}"}}}}"#);
        RawWs::write_text(&mut ws.0, &auth).await.expect("auth");
        loop {
            let frame = read_frame(&mut ws.0).await.expect("auth answer");
            const AUTH: &[u8] = br#""type":"auth""#;
            if frame.windows(AUTH.len()).any(|w| w == AUTH) {
                return ws;
            }
        }
    }

    fn into_split(
        self,
    ) -> (
        tokio::net::tcp::OwnedReadHalf,
        tokio::net::tcp::OwnedWriteHalf,
    ) {
        self.0.into_split()
    }

    async fn write_text<W: tokio::io::AsyncWrite + Unpin>(
        writer: &mut W,
        text: &str,
    ) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut frame = Vec::with_capacity(text.len() + 8);
        frame.push(0x81);
        match text.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(text.as_bytes());
        writer.write_all(&frame).await
    }
}

/// Reads one server frame's payload (servers do not mask).
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 2];
    reader.read_exact(&mut head).await?;
    let length = match head[1] & 0x7f {
        126 => reader.read_u16().await? as usize,
        127 => reader.read_u64().await? as usize,
        n => n as usize,
    };
    let mut payload = vec![0u8; length];
    reader.read_exact(&mut payload).await?;
    Ok(payload)
}

/// Reads frames until the socket closes; with `samples`, records the latency of every frame
/// whose content is `t=<nanoseconds since epoch>`.
async fn read_frames(
    reader: tokio::net::tcp::OwnedReadHalf,
    samples: Option<Arc<std::sync::Mutex<Vec<Duration>>>>,
    epoch: Instant,
) {
    let mut reader = tokio::io::BufReader::with_capacity(4096, reader);
    const MARK: &[u8] = br#""content":"t="#;
    while let Ok(frame) = read_frame(&mut reader).await {
        let Some(samples) = &samples else { continue };
        let Some(at) = frame.windows(MARK.len()).position(|w| w == MARK) else {
            continue;
        };
        let digits = frame[at + MARK.len()..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
        let latency = epoch.elapsed().saturating_sub(Duration::from_nanos(digits));
        samples.lock().expect("lock").push(latency);
    }
}

/// argon2id checks per second on this machine, with the parameters herald uses.
fn skill_request(host: &str, user: &str, text: &str) -> Vec<u8> {
    let body = json!({
        "intent": {"id": "block", "name": "fallback"},
        "userRequest": {"timezone": "Asia/Seoul", "params": {}, "block": {"id": "block", "name": "fallback"},
                        "utterance": text, "lang": "ko",
                        "user": {"id": user, "type": "botUserKey", "properties": {"botUserKey": user}}},
        "bot": {"id": "bench-bot", "name": "herald"},
        "action": {"id": "skill", "name": "herald", "params": {}, "detailParams": {}, "clientExtra": {}}
    })
    .to_string();
    format!(
        "POST /kakao/skill HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns its status code.
async fn read_response(
    stream: &mut tokio::net::TcpStream,
    buffer: &mut Vec<u8>,
) -> std::io::Result<u16> {
    use tokio::io::AsyncReadExt;
    let broken = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad response");
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..end]).map_err(|_| broken())?;
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(broken)?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())
                        .flatten()
                })
                .ok_or_else(broken)?;
            let total = end + 4 + length;
            while buffer.len() < total {
                let mut chunk = [0u8; 16 * 1024];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(broken());
                }
                buffer.extend_from_slice(&chunk[..n]);
            }
            buffer.drain(..total);
            return Ok(status);
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(broken());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Closed-loop load: each connection sends its next request as soon as the last answer is in.
/// Returns (answers with status 200, other answers or errors, latencies).
async fn http_load(
    address: std::net::SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    connections: usize,
    duration: Duration,
) -> (u64, u64, Vec<Duration>) {
    use tokio::io::AsyncWriteExt;
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut latencies) = (0u64, 0u64, Vec::new());
            let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
                return (0, 1, latencies);
            };
            let _ = stream.set_nodelay(true);
            let mut buffer = Vec::with_capacity(16 * 1024);
            let mut i = c;
            while Instant::now() < deadline {
                let request = &requests[i % requests.len()];
                i += connections;
                let started = Instant::now();
                if stream.write_all(request).await.is_err() {
                    failed += 1;
                    break;
                }
                match read_response(&mut stream, &mut buffer).await {
                    Ok(200) => {
                        ok += 1;
                        latencies.push(started.elapsed());
                    }
                    Ok(_) => failed += 1,
                    Err(_) => {
                        failed += 1;
                        break;
                    }
                }
            }
            (ok, failed, latencies)
        }));
    }
    let (mut ok, mut failed, mut latencies) = (0, 0, Vec::new());
    for task in tasks {
        if let Ok((o, f, l)) = task.await {
            ok += o;
            failed += f;
            latencies.extend(l);
        }
    }
    (ok, failed, latencies)
}

async fn echo_server(port: u16) {
    async fn echo(axum::Json(payload): axum::Json<Value>) -> axum::Json<Value> {
        let text = payload["userRequest"]["utterance"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        axum::Json(
            json!({"version": "2.0", "template": {"outputs": [{"simpleText": {"text": text}}]}}),
        )
    }
    let router = axum::Router::new().route("/kakao/skill", axum::routing::post(echo));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    axum::serve(listener, router).await.expect("serve");
}

async fn kakao_skill(args: &Args, connections: usize, seconds: u64, users: usize, text: &str) {
    let report = |name: &str, ok: u64, failed: u64, latencies: Vec<Duration>, cpu: Option<f64>| {
        println!(
            "{name}: {:.0} req/s ({ok} answered 200, {failed} other) over {seconds} s with {connections} connections{}",
            ok as f64 / seconds as f64,
            cpu.map(|c| format!(", server CPU {:.0} %", c * 100.0 / seconds as f64))
                .unwrap_or_default()
        );
        describe(name, latencies);
    };
    // The bare handler first, in its own process like herald.
    let (mut echo, echo_address) = start_server_process("echo-server", &[]).await;
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..users)
            .map(|u| skill_request(&echo_address.to_string(), &format!("bench-user-{u}"), text))
            .collect(),
    );
    http_load(
        echo_address,
        requests.clone(),
        connections,
        Duration::from_secs(2),
    )
    .await;
    let (ok, failed, latencies) = http_load(
        echo_address,
        requests,
        connections,
        Duration::from_secs(seconds),
    )
    .await;
    report("bare axum echo", ok, failed, latencies, None);
    let _ = echo.kill().await;

    let herald = Herald::start(args, &[]).await;
    let address = herald.address();
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..users)
            .map(|u| skill_request(&address.to_string(), &format!("bench-user-{u}"), text))
            .collect(),
    );
    // Warm-up: every user talks once (creating its contact), then a short closed loop.
    http_load(
        address,
        requests.clone(),
        connections.min(users),
        Duration::from_secs(3),
    )
    .await;
    let (cpu_before, _) = herald.usage();
    let (ok, failed, latencies) =
        http_load(address, requests, connections, Duration::from_secs(seconds)).await;
    let (cpu_after, rss) = herald.usage();
    report(
        &format!("herald /kakao/skill {text:?}"),
        ok,
        failed,
        latencies,
        Some(cpu_after - cpu_before),
    );
    println!("herald RSS {} MiB", rss / 1024);
}

async fn login_cost(checks: usize) {
    let hash = herald::accounts::hash_password("bench password".into())
        .await
        .expect("hash");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per_task = checks.div_ceil(2);
    for _ in 0..2 {
        let hash = hash.clone();
        tasks.spawn(async move {
            for _ in 0..per_task {
                assert!(
                    herald::accounts::verify_password("bench password".into(), hash.clone()).await
                );
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "argon2id (m=19456 KiB, t=2, p=1): {:.0} password checks/s on 2 cores ({:.1} ms each on one core)",
        (per_task * 2) as f64 / elapsed,
        elapsed * 1000.0 * 2.0 / (per_task * 2) as f64
    );
}

const KOREAN_WORDS: &[&str] = &[
    "휴가",
    "신청",
    "방법",
    "비밀번호",
    "초기화",
    "회의실",
    "예약",
    "출장",
    "경비",
    "정산",
    "보안",
    "교육",
    "서버",
    "배포",
    "장애",
    "대응",
    "네트워크",
    "프린터",
    "계정",
    "권한",
    "메일",
    "설정",
    "데이터베이스",
    "백업",
    "복구",
    "모니터링",
    "알림",
    "일정",
    "팀장",
    "승인",
    "급여",
    "명세서",
    "복지",
    "포인트",
    "건강검진",
    "주차",
    "등록",
    "출입",
    "카드",
    "노트북",
    "교체",
    "소프트웨어",
    "설치",
    "라이선스",
    "문서",
    "양식",
    "계약서",
    "검토",
    "법무",
    "구매",
    "요청",
    "견적",
    "세금",
    "계산서",
    "인사",
    "평가",
    "목표",
    "면접",
    "채용",
    "온보딩",
    "퇴사",
    "절차",
    "재택근무",
    "원격",
    "접속",
    "화상회의",
    "장비",
    "대여",
    "사무용품",
    "택배",
    "우편",
    "식당",
    "메뉴",
    "셔틀버스",
    "시간표",
    "동호회",
    "지원금",
    "교육비",
    "자격증",
    "도서",
    "구입",
    "코드",
    "리뷰",
    "저장소",
    "브랜치",
    "빌드",
    "테스트",
    "릴리스",
    "버전",
    "관리",
    "이슈",
    "티켓",
    "고객",
    "문의",
    "응대",
    "매뉴얼",
    "가이드",
    "정책",
    "규정",
    "변경",
    "공지",
    "연차",
    "와이파이",
    "무선랜",
];
const ENGLISH_WORDS: &[&str] = &[
    "vacation",
    "request",
    "password",
    "reset",
    "meeting",
    "room",
    "booking",
    "travel",
    "expense",
    "report",
    "security",
    "training",
    "server",
    "deploy",
    "incident",
    "response",
    "network",
    "printer",
    "account",
    "access",
    "email",
    "settings",
    "database",
    "backup",
    "restore",
    "monitoring",
    "alert",
    "schedule",
    "manager",
    "approval",
    "payroll",
    "benefits",
    "health",
    "parking",
    "badge",
    "laptop",
    "software",
    "license",
    "document",
    "template",
    "contract",
    "review",
    "legal",
    "purchase",
    "quote",
    "invoice",
    "performance",
    "goal",
    "interview",
    "hiring",
    "onboarding",
    "offboarding",
    "remote",
    "vpn",
    "video",
    "equipment",
    "supplies",
    "delivery",
    "cafeteria",
    "shuttle",
    "club",
    "budget",
    "certification",
    "book",
    "code",
    "repository",
    "branch",
    "build",
    "test",
    "release",
    "version",
    "issue",
    "ticket",
    "customer",
    "support",
    "manual",
    "guide",
    "policy",
    "rule",
    "change",
    "notice",
    "wifi",
    "leave",
];
const PARTICLES: &[&str] = &[
    "", "", "", "을", "를", "이", "가", "은", "는", "에", "의", "로", "에서", "으로",
];

/// A small deterministic generator (xorshift64*), so every run indexes the same documents.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[self.below(words.len())]
    }

    /// `n` words: Korean (with a particle now and then), English, or mixed.
    fn words(&mut self, n: usize, korean_share: usize) -> String {
        (0..n)
            .map(|_| {
                if self.below(100) < korean_share {
                    format!("{}{}", self.pick(KOREAN_WORDS), self.pick(PARTICLES))
                } else {
                    self.pick(ENGLISH_WORDS).to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

async fn kb_search(args: &Args, documents: usize, queries: usize, batch: usize) {
    let herald = Herald::start(args, &[("HERALD_POLL_INTERVAL", "1h".into())]).await;
    let mut rng = Lcg(0x9E37_79B9_7F4A_7C15);
    let generated: Vec<Value> = (0..documents)
        .map(|n| {
            // A third Korean, a third English, a third mixed.
            let korean_share = [90, 10, 50][n % 3];
            let title_words = 3 + rng.below(4);
            let body_words = 30 + rng.below(50);
            json!({
                "id": format!("bench-{n}"),
                "title": rng.words(title_words, korean_share),
                "body": rng.words(body_words, korean_share),
                "tags": [rng.pick(KOREAN_WORDS), rng.pick(ENGLISH_WORDS)],
                "url": format!("https://wiki.example.com/bench/{n}"),
            })
        })
        .collect();
    let bytes: usize = generated.iter().map(|d| d.to_string().len()).sum();
    let started = Instant::now();
    for chunk in generated.chunks(batch) {
        herald
            .admin("/api/v1/kb/documents", Value::Array(chunk.to_vec()))
            .await;
    }
    let import = started.elapsed();
    let (cpu, rss) = herald.usage();
    println!(
        "backend: {:?}; imported {documents} documents ({:.1} MiB of JSON) in batches of {batch} through the API: {:.2} s ({:.0} documents/s); herald RSS {} MiB, CPU so far {cpu:.1} s",
        args.backend,
        bytes as f64 / (1024.0 * 1024.0),
        import.as_secs_f64(),
        documents as f64 / import.as_secs_f64(),
        rss / 1024
    );

    let query_texts: Vec<String> = (0..queries + 200)
        .map(|n| {
            let korean_share = [100, 0, 50][n % 3];
            let words = 1 + rng.below(3);
            rng.words(words, korean_share)
        })
        .collect();
    let mut samples = Vec::with_capacity(queries);
    let mut hits_total = 0usize;
    let mut empty = 0usize;
    let (cpu0, _) = herald.usage();
    let measured = Instant::now();
    for (n, query) in query_texts.iter().enumerate() {
        let started = Instant::now();
        let response = herald
            .client
            .get(format!("{}/api/v1/kb/search", herald.url))
            .query(&[("q", query.as_str()), ("limit", "10")])
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("search");
        assert!(
            response.status().is_success(),
            "{query}: {}",
            response.status()
        );
        let answer: Value = response.json().await.expect("json");
        let elapsed = started.elapsed();
        if n >= 200 {
            samples.push(elapsed);
            let hits = answer["hits"].as_array().map(Vec::len).unwrap_or(0);
            hits_total += hits;
            if hits == 0 {
                empty += 1;
            }
        }
    }
    let (cpu1, rss) = herald.usage();
    println!(
        "{queries} queries one at a time (1–3 words; Korean with particles, English, mixed; after 200 warm-up): {:.0} queries/s, {:.1} hits per query on average, {empty} with none; herald CPU {:.0} % of one core, RSS {} MiB",
        queries as f64 / measured.elapsed().as_secs_f64(),
        hits_total as f64 / queries as f64,
        100.0 * (cpu1 - cpu0) / measured.elapsed().as_secs_f64(),
        rss / 1024
    );
    describe("search answered (HTTP, limit 10)", samples);
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    print_machine();
    match &args.scenario {
        Scenario::WebhookLatency { pushes } => webhook_latency(&args, *pushes).await,
        Scenario::GithubPolling {
            branches,
            interval,
            seconds,
        } => github_polling(&args, *branches, interval, *seconds).await,
        Scenario::GitPolling {
            remotes,
            interval,
            seconds,
        } => git_polling(&args, *remotes, interval, *seconds).await,
        Scenario::Fanout { subscribers, rate } => fanout(&args, *subscribers, *rate).await,
        Scenario::ChatMemory(options) => chat_memory::run(&args, options).await,
        Scenario::ChatSockets { sockets, seconds } => chat_sockets(&args, *sockets, *seconds).await,
        Scenario::ChatLatency {
            pairs,
            rate,
            seconds,
        } => chat_latency(&args, *pairs, *rate, *seconds).await,
        Scenario::Login { checks } => login_cost(*checks).await,
        Scenario::KakaoSkill {
            connections,
            seconds,
            users,
            text,
        } => kakao_skill(&args, *connections, *seconds, *users, text).await,
        Scenario::EchoServer { port } => echo_server(*port).await,
        Scenario::RelayServer {
            port,
            receiver,
            endpoints,
        } => relay_server(*port, receiver, *endpoints).await,
        Scenario::KbSearch {
            documents,
            queries,
            batch,
        } => kb_search(&args, *documents, *queries, *batch).await,
        Scenario::WebhookThroughput {
            endpoints,
            seconds,
            senders,
        } => webhook_throughput(&args, *endpoints, *seconds, *senders).await,
        Scenario::DeliveryLatency {
            endpoints,
            rate,
            seconds,
            with_hanging,
            reqwest,
            backlog,
            samples,
            floor,
        } => {
            webhook_delivery_latency(
                &args,
                LatencyRun {
                    endpoints: *endpoints,
                    rate: *rate,
                    seconds: *seconds,
                    hanging: *with_hanging,
                    with_reqwest: *reqwest,
                    backlog: *backlog,
                    samples_file: samples.as_deref(),
                    floor: *floor,
                },
            )
            .await
        }
    }
}

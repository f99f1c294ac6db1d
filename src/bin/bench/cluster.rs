//! Area 0, scale-out: N herald nodes on one PostgreSQL database and one Redis — signed webhook
//! deliveries/s with pushes spread over the nodes, and DMs whose sender and recipient sit on
//! different nodes, at fixed rates. Each part's CPU per operation (the nodes, PostgreSQL, Redis,
//! this load generator) is read from /proc, so that what saturates the machine first is
//! measured rather than guessed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald::testkit::fake_github::FakeGithub;
use herald::testkit::fake_smtp::FakeSmtp;
use herald::testkit::git_repo::GitRepo;
use herald::testkit::redis_server::RedisServer;
use herald::testkit::wait_until;
use serde_json::json;

use super::chat::{DmPair, friend_pairs, send_dms_at_rate};
use super::push::{push_body, send_push};
use super::report::describe;
use super::setup::{Backend, Common, Herald, process_cpu_seconds};
use super::webhooks::LeanReceiver;

#[derive(clap::Args)]
pub struct Cluster {
    /// herald nodes, all on one PostgreSQL database and one Redis.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// Seconds each measured window lasts.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Webhook endpoints of the project every push fans out to (0: no delivery load).
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// Push webhooks in flight at once, spread over the nodes.
    #[arg(long, default_value_t = 8)]
    senders: usize,
    /// Pairs of friends for the DM load (0: no DM load); pair p's sender is on node p mod N,
    /// its recipient on the next node.
    #[arg(long, default_value_t = 500)]
    pairs: usize,
    /// DM rates (messages/s in all) to measure one after another.
    #[arg(long, value_delimiter = ',', default_value = "2000")]
    rates: Vec<usize>,
    /// Instead of the loads above: a Redis server of the bench's own is killed and started
    /// again while pushes flow; how long until every node is ready again, whether every node
    /// lived, and whether every accepted delivery arrived.
    #[arg(long)]
    redis_restart: bool,
}

/// CPU seconds so far of every part on the machine: the herald nodes, PostgreSQL's processes,
/// redis-server, and this process.
struct Parts {
    nodes: f64,
    postgres: f64,
    redis: f64,
    bench: f64,
}

impl Parts {
    fn now(nodes: &[Arc<Herald>]) -> Parts {
        Parts {
            nodes: nodes.iter().map(|n| n.usage().0).sum(),
            postgres: process_cpu_seconds("postgres"),
            redis: process_cpu_seconds("redis-server"),
            bench: process_cpu_seconds("herald-bench"),
        }
    }

    /// One line: each part's share of a core over `seconds`, and its CPU per `per` `what`.
    fn print_since(&self, before: &Parts, seconds: f64, operations: f64, what: &str) {
        let part = |name: &str, after: f64, before: f64| {
            let cpu = after - before;
            format!(
                "{name} {:.0}% ({:.0} µs/{what})",
                100.0 * cpu / seconds,
                1e6 * cpu / operations.max(1.0)
            )
        };
        println!(
            "CPU, share of one core and per {what}: {}, {}, {}, {}",
            part("herald nodes", self.nodes, before.nodes),
            part("PostgreSQL", self.postgres, before.postgres),
            part("Redis", self.redis, before.redis),
            part("load generator", self.bench, before.bench),
        );
    }
}

pub async fn cluster(common: &Common, run: &Cluster) {
    assert!(
        common.backend == Backend::Postgres,
        "a cluster needs PostgreSQL: run with --backend postgres"
    );
    assert!(run.nodes >= 1, "--nodes must be at least 1");
    let github = FakeGithub::start().await;
    github.stop_recording();
    let repo = GitRepo::new();
    github.add_repo("octo/bench", &repo);
    let smtp = Arc::new(FakeSmtp::start().await);
    let mut env = vec![
        ("HERALD_REDIS_URL", run.redis.clone()),
        (
            "HERALD_REDIS_PREFIX",
            format!("herald-bench-{}", std::process::id()),
        ),
        ("HERALD_GITHUB_API", github.base_url.clone()),
        ("HERALD_POLL_INTERVAL", "1h".into()),
        ("HERALD_DELIVERY_CONCURRENCY", "256".into()),
        ("HERALD_SMTP_URL", smtp.url.clone()),
        // Every bench client signs up and logs in from 127.0.0.1.
        ("HERALD_LOGIN_ATTEMPTS_PER_MINUTE", "1000000".into()),
    ];
    // The restart scenario kills its Redis, so it runs one of its own rather than the machine's.
    let mut own_redis = None;
    if run.redis_restart {
        let redis = RedisServer::start()
            .await
            .expect("a redis-server of the bench's own (apt-get install redis-server)");
        env[0].1 = redis.url();
        own_redis = Some(redis);
    }
    let first = Arc::new(Herald::start_node(common, None, &env).await);
    let mut nodes = vec![first.clone()];
    for _ in 1..run.nodes {
        nodes.push(Arc::new(
            Herald::start_node(common, Some(&first.database_url), &env).await,
        ));
    }
    println!(
        "{} herald nodes on one PostgreSQL database and Redis {}",
        run.nodes, env[0].1
    );
    if let Some(redis) = own_redis {
        redis_restart(&nodes, redis, run.endpoints.max(1), &repo.head("main")).await;
        return;
    }
    if run.endpoints > 0 {
        deliveries(&nodes, run, &repo).await;
    }
    if run.pairs > 0 {
        dms(&nodes, run, smtp).await;
    }
}

/// The project `octo/bench` with `endpoints` hooks to a fresh receiver, made through the first
/// node, once every hook's ping has arrived.
async fn hooks(nodes: &[Arc<Herald>], endpoints: usize) -> LeanReceiver {
    let (receiver, base) = LeanReceiver::start().await;
    let first = &nodes[0];
    first
        .admin(
            "/api/v1/projects",
            json!({"owner": "octo", "name": "bench", "repository": "octo/bench"}),
        )
        .await;
    for n in 0..endpoints {
        first
            .admin(
                "/api/v1/projects/octo/bench/webhooks",
                json!({"payload_url": format!("{base}/hook/{n}"), "max_concurrency": 32}),
            )
            .await;
    }
    wait_until("every hook's ping", Duration::from_secs(30), || async {
        receiver.count() >= endpoints as u64
    })
    .await;
    receiver
}

/// Push senders in a closed loop, spread over the nodes, until `stop`; `pushes` counts the
/// accepted ones (202). A push that is not accepted is counted in `refused`, not retried.
struct PushLoad {
    stop: Arc<AtomicBool>,
    pushes: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    tasks: tokio::task::JoinSet<()>,
}

impl PushLoad {
    fn start(nodes: &[Arc<Herald>], senders: usize, head: &str) -> PushLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let pushes = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for sender in 0..senders {
            let node = nodes[sender % nodes.len()].clone();
            let (stop, pushes, refused) = (stop.clone(), pushes.clone(), refused.clone());
            let head = head.to_string();
            tasks.spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let after = format!("{:08x}{:032x}", sender, i);
                    let body = push_body(&head, &after, "cluster");
                    let response = send_push(&node, &format!("c-{sender}-{i}"), body).await;
                    if response.status().as_u16() == 202 {
                        pushes.fetch_add(1, Ordering::Relaxed);
                    } else {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            });
        }
        PushLoad {
            stop,
            pushes,
            refused,
            tasks,
        }
    }

    /// Stops the senders; the pushes accepted in all.
    async fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        while self.tasks.join_next().await.is_some() {}
        self.pushes.load(Ordering::Relaxed)
    }
}

/// Waits up to 120 s for `expected` deliveries; prints how many arrived.
async fn drain(receiver: &LeanReceiver, expected: u64) {
    let drain = Instant::now();
    while receiver.count() < expected && drain.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "after the load stopped, {} of {} accepted deliveries arrived (waited {:.1} s)",
        receiver.count(),
        expected,
        drain.elapsed().as_secs_f64()
    );
}

async fn deliveries(nodes: &[Arc<Herald>], run: &Cluster, repo: &GitRepo) {
    let receiver = hooks(nodes, run.endpoints).await;
    let load = PushLoad::start(nodes, run.senders, &repo.head("main"));
    // Warm up, then measure the delivered rate over the window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = Parts::now(nodes);
    let delivered0 = receiver.count();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(run.seconds)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let delivered = receiver.count() - delivered0;
    let after = Parts::now(nodes);
    let pushes = load.stop().await;
    println!(
        "signed deliveries, {} endpoints, {} push senders over {} nodes: {:.0}/s delivered",
        run.endpoints,
        run.senders,
        nodes.len(),
        delivered as f64 / elapsed
    );
    after.print_since(&before, elapsed, delivered as f64, "delivery");
    drain(&receiver, (pushes + 1) * run.endpoints as u64).await;
}

/// Whether every node answers `/readyz` with `status`.
async fn all_ready(nodes: &[Arc<Herald>], status: u16) -> bool {
    for node in nodes {
        let answer = node
            .client
            .get(format!("{}/readyz", node.url))
            .timeout(Duration::from_secs(1))
            .send()
            .await;
        if answer.map(|a| a.status().as_u16()).ok() != Some(status) {
            return false;
        }
    }
    true
}

async fn redis_restart(
    nodes: &[Arc<Herald>],
    mut redis: RedisServer,
    endpoints: usize,
    head: &str,
) {
    let receiver = hooks(nodes, endpoints).await;
    let load = PushLoad::start(nodes, 8, head);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = receiver.count();
    redis.kill().await;
    let killed = Instant::now();
    wait_until(
        "every node to say it is not ready",
        Duration::from_secs(30),
        || all_ready(nodes, 503),
    )
    .await;
    let noticed = killed.elapsed();
    // Down for as long as a restart takes a service manager, then the same port again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.start_again().await;
    let restarted = Instant::now();
    wait_until(
        "every node to be ready again",
        Duration::from_secs(60),
        || all_ready(nodes, 200),
    )
    .await;
    let recovered = restarted.elapsed();
    let during = receiver.count() - before;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refused = load.refused.load(Ordering::Relaxed);
    let pushes = load.stop().await;
    let alive = nodes.iter().filter(|n| n.is_running()).count();
    println!(
        "Redis killed under load: every node unready {:.2} s after the kill; Redis back after 2 s; \
         every node ready again {:.2} s after Redis listened; {during} deliveries arrived meanwhile; \
         {refused} pushes refused; {alive} of {} nodes alive",
        noticed.as_secs_f64(),
        recovered.as_secs_f64(),
        nodes.len()
    );
    drain(&receiver, (pushes + 1) * endpoints as u64).await;
}

async fn dms(nodes: &[Arc<Herald>], run: &Cluster, smtp: Arc<FakeSmtp>) {
    let setup = Instant::now();
    let made = friend_pairs(nodes[0].clone(), smtp, run.pairs).await;
    println!(
        "{} pairs of friends set up in {:.1} s",
        run.pairs,
        setup.elapsed().as_secs_f64()
    );
    for &rate in &run.rates {
        let pairs: Vec<DmPair> = made
            .iter()
            .enumerate()
            .map(|(p, (sender, recipient, chat_id))| DmPair {
                sender: sender.clone(),
                sender_node: nodes[p % nodes.len()].address(),
                recipient: recipient.clone(),
                recipient_node: nodes[(p + 1) % nodes.len()].address(),
                chat_id: chat_id.clone(),
            })
            .collect();
        let dm = send_dms_at_rate(pairs, rate, run.seconds, || Parts::now(nodes)).await;
        let (before, after) = &dm.probed;
        println!(
            "DMs at {rate}/s asked, sender and recipient on different nodes: {} sent at {:.0}/s, {} received",
            dm.sent,
            dm.sent as f64 / dm.elapsed,
            dm.samples.len()
        );
        after.print_since(before, dm.elapsed, dm.sent as f64, "DM");
        describe(&format!("DM across nodes at {rate}/s"), dm.samples);
    }
}

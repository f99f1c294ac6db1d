//! Area B, outgoing webhooks: the project with N hooks that the webhook scenarios push to, the
//! receiver that counts what arrives, and sustained throughput.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald::testkit::fake_github::FakeGithub;
use herald::testkit::git_repo::GitRepo;
use herald::testkit::wait_until;
use serde_json::json;

use super::push::{push_body, send_push};
use super::setup::{Common, Herald};

#[derive(clap::Args)]
pub struct WebhookThroughput {
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Push webhooks in flight at once from the load generator.
    #[arg(long, default_value_t = 8)]
    senders: usize,
}

/// A lean compiled receiver: counts deliveries and, when asked, notes when each push's `after`
/// arrived; `/hang` never answers in time.
///
/// Not `testkit::receiver::Receiver`, which the tests use: that one locks a mutex twice and
/// copies every header and body of every request, and here the receiver shares the two cores
/// with herald at tens of thousands of deliveries a second, so its own cost would be measured
/// as herald's. This one touches an atomic counter and, while recording, the push's head sha.
#[derive(Clone, Default)]
pub struct LeanReceiver {
    count: Arc<AtomicU64>,
    pub arrivals: Arc<std::sync::Mutex<Vec<(String, Instant)>>>,
    pub record: Arc<AtomicBool>,
}

impl LeanReceiver {
    /// Serves the receiver on a fresh loopback port; returns it and its base URL.
    pub async fn start() -> (LeanReceiver, String) {
        use axum::extract::State;
        let receiver = LeanReceiver::default();
        async fn hook(
            State(r): State<LeanReceiver>,
            body: axum::body::Bytes,
        ) -> axum::http::StatusCode {
            let at = Instant::now();
            r.count.fetch_add(1, Ordering::Relaxed);
            if r.record.load(Ordering::Relaxed) {
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

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// A project on the fake GitHub repository `octo/bench` with `endpoints` hooks to the receiver
/// (and, with `hanging`, one more that never answers), once every hook's ping has arrived.
pub async fn webhook_setup(
    common: &Common,
    endpoints: usize,
    hanging: bool,
) -> (Herald, LeanReceiver, FakeGithub, GitRepo) {
    let github = FakeGithub::start().await;
    github.stop_recording();
    let repo = GitRepo::new();
    github.add_repo("octo/bench", &repo);
    let (receiver, base) = LeanReceiver::start().await;
    let herald = Herald::start(
        common,
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
    wait_until(
        "every healthy hook's ping",
        Duration::from_secs(30),
        || async { receiver.count() >= endpoints as u64 },
    )
    .await;
    (herald, receiver, github, repo)
}

pub async fn webhook_throughput(common: &Common, run: &WebhookThroughput) {
    let WebhookThroughput {
        endpoints,
        seconds,
        senders,
    } = *run;
    let (herald, receiver, _github, repo) = webhook_setup(common, endpoints, false).await;
    let herald = Arc::new(herald);
    let stop = Arc::new(AtomicBool::new(false));
    let pushes = Arc::new(AtomicU64::new(0));
    let base = repo.head("main");
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..senders {
        let herald = herald.clone();
        let stop = stop.clone();
        let pushes = pushes.clone();
        let base = base.clone();
        tasks.spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let after = format!("{:08x}{:032x}", sender, i);
                let body = push_body(&base, &after, "throughput");
                let response = send_push(&herald, &format!("t-{sender}-{i}"), body).await;
                assert_eq!(response.status().as_u16(), 202);
                pushes.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        });
    }
    // Warm up, then measure the delivered rate over the window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (cpu0, _) = herald.usage();
    let delivered0 = receiver.count();
    let pushes0 = pushes.load(Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let delivered = receiver.count() - delivered0;
    let enqueued = (pushes.load(Ordering::Relaxed) - pushes0) * endpoints as u64;
    let (cpu1, rss) = herald.usage();
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    // Drain: everything accepted must arrive; whether it did is one of the figures, so a
    // shortfall is printed rather than a panic.
    let total_expected = pushes.load(Ordering::Relaxed) * endpoints as u64 + endpoints as u64;
    let drain = Instant::now();
    while receiver.count() < total_expected && drain.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "backend: {:?}; {endpoints} endpoints, {senders} concurrent push senders, {seconds} s window",
        common.backend
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

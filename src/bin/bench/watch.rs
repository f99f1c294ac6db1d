//! Area A, repository watch and notifications: a push webhook to a Telegram message, polling
//! capacity for GitHub branches and for local git remotes, and one push fanned out to many
//! subscribers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::testkit::fake_github::FakeGithub;
use herald::testkit::fake_telegram::FakeTelegram;
use herald::testkit::git_repo::{GitRepo, git};
use serde_json::{Value, json};

use super::push::{push_body, random_sha, send_push};
use super::report::describe;
use super::setup::{Common, Herald};

#[derive(clap::Args)]
pub struct WebhookLatency {
    #[arg(long, default_value_t = 1000)]
    pushes: usize,
}

#[derive(clap::Args)]
pub struct GithubPolling {
    #[arg(long, default_value_t = 10_000)]
    branches: usize,
    #[arg(long, default_value = "10s")]
    interval: String,
    #[arg(long, default_value_t = 30)]
    seconds: u64,
}

#[derive(clap::Args)]
pub struct GitPolling {
    #[arg(long, default_value_t = 1000)]
    remotes: usize,
    #[arg(long, default_value = "10s")]
    interval: String,
    #[arg(long, default_value_t = 30)]
    seconds: u64,
}

#[derive(clap::Args)]
pub struct Fanout {
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// Telegram messages per second overall (HERALD_TELEGRAM_RATE).
    #[arg(long, default_value_t = 1000)]
    rate: u32,
}

pub async fn webhook_latency(common: &Common, run: &WebhookLatency) {
    let pushes = run.pushes;
    let telegram = FakeTelegram::start().await;
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    github.add_repo("octo/bench", &repo);
    let herald = Herald::start(
        common,
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
        // Checked every 50 µs rather than with `wait_until`: the next push goes out as soon as
        // this one has arrived, so that herald sees one push at a time and not an idle gap.
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
        common.backend
    );
    describe("webhook answered (durable)", acked);
    describe("webhook → sendMessage received", delivered);
}

pub async fn github_polling(common: &Common, run: &GithubPolling) {
    let GithubPolling {
        branches,
        ref interval,
        seconds,
    } = *run;
    let github = FakeGithub::start().await;
    github.stop_recording();
    let repos = branches.div_ceil(100);
    for r in 0..repos {
        for b in 0..100.min(branches - r * 100) {
            github.set_head(&format!("octo/r{r}"), &format!("b{b}"), &random_sha());
        }
    }
    let herald = Herald::start(
        common,
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
        common.backend,
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

pub async fn git_polling(common: &Common, run: &GitPolling) {
    let GitPolling {
        remotes,
        ref interval,
        seconds,
    } = *run;
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
        Arc::new(Herald::start(common, &[("HERALD_POLL_INTERVAL", interval.to_string())]).await);
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
        common.backend,
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

pub async fn fanout(common: &Common, run: &Fanout) {
    let Fanout { subscribers, rate } = *run;
    let telegram = FakeTelegram::start().await;
    let github = FakeGithub::start().await;
    github.stop_recording();
    let repo = GitRepo::new();
    github.add_repo("octo/bench", &repo);
    let herald = Arc::new(
        Herald::start(
            common,
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
        common.backend,
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
    // Checked every 5 ms rather than with `wait_until`: the moment the last message is seen is
    // the figure.
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

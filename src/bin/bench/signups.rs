//! Issue 25, sign-up as a resource bomb: many sign-ups at once (each an argon2id hash and a
//! verification mail, here into the spool under herald's data dir) while healthy pairs of
//! friends exchange DMs. What counts is herald's peak memory during the burst and the pairs'
//! DM latency during it, beside the same pairs' latency without it (the floor) in the same run.
//!
//! The sign-ups all come from this one address, so the bench lifts the per-address sign-up limit
//! (`HERALD_SIGNUPS_PER_MINUTE`, set very high by [`Herald::start`] for every scenario), and each
//! uses its own e-mail, so the per-recipient mail limit holds none back: every sign-up is hashed
//! and mailed. What bounds the burst is only herald's password-hashing slots
//! (`HERALD_PASSWORD_HASHES`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::testkit::fake_smtp::Mail;
use herald::testkit::wait_until;
use serde_json::{Value, json};

use super::chat::befriend;
use super::raw_client::{RawWs, read_frame};
use super::report::describe;
use super::setup::{Common, Herald};

#[derive(clap::Args)]
pub struct Signups {
    /// Sign-ups sent at once.
    #[arg(long, default_value_t = 100)]
    signups: usize,
    /// Pairs of friends exchanging DMs, both ways, throughout.
    #[arg(long, default_value_t = 4)]
    pairs: usize,
    /// DMs per second each side of a pair sends (a socket may send 20 frames a second).
    #[arg(long, default_value_t = 15)]
    rate: u32,
    /// How long the floor (DMs without the burst) is measured first.
    #[arg(long, default_value_t = 5)]
    floor_seconds: u64,
}

/// One DM received: when it was sent (since the run's epoch) and how long it took.
#[derive(Clone, Copy)]
struct Sample {
    sent: Duration,
    latency: Duration,
}

pub async fn signups(common: &Common, run: &Signups) {
    let Signups {
        signups,
        pairs,
        rate,
        floor_seconds,
    } = *run;
    // No HERALD_SMTP_URL: every mail goes to the spool in the data dir.
    let herald = Herald::start(
        common,
        &[
            // Every bench client logs in from 127.0.0.1.
            ("HERALD_LOGIN_ATTEMPTS_PER_MINUTE", "1000000".into()),
        ],
    )
    .await;
    let url = format!("{}/ws", herald.url.replace("http://", "ws://"));
    let mut sockets = Vec::new();
    for p in 0..pairs {
        let (left, right) = (format!("left{p}"), format!("right{p}"));
        let left_token = spool_account(&herald, &left).await;
        let right_token = spool_account(&herald, &right).await;
        let chat_id = befriend(&url, (&left, &left_token), (&right, &right_token)).await;
        sockets.push((left, left_token, chat_id.clone()));
        sockets.push((right, right_token, chat_id));
    }
    let spooled_before = spooled(&herald);
    println!(
        "backend: {:?}; {pairs} pairs of friends, each side sending {rate} DMs/s; password-hashing slots: {}",
        common.backend,
        std::env::var("HERALD_PASSWORD_HASHES").unwrap_or_else(|_| "auto (one per core)".into())
    );

    // Every side writes on its own schedule and reads the other side's DMs, stamped with their
    // send time.
    let epoch = Instant::now();
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let address = herald.address();
    let mut tasks = tokio::task::JoinSet::new();
    for (name, token, chat_id) in sockets {
        let (reader, mut writer) = RawWs::open(address, &token).await.into_split();
        let samples = samples.clone();
        let own = format!("{name}:");
        tasks.spawn(async move {
            let mut reader = tokio::io::BufReader::with_capacity(4096, reader);
            while let Ok(frame) = read_frame(&mut reader).await {
                let Ok(frame) = serde_json::from_slice::<Value>(&frame) else {
                    continue;
                };
                let Some(content) = frame["payload"]["content"].as_str() else {
                    continue;
                };
                if frame["type"] != json!("chat") || content.starts_with(&own) {
                    continue;
                }
                let Some(nanos) = content
                    .split_once(':')
                    .and_then(|(_, n)| n.parse::<u64>().ok())
                else {
                    continue;
                };
                let sent = Duration::from_nanos(nanos);
                let latency = epoch.elapsed().saturating_sub(sent);
                samples.lock().expect("lock").push(Sample { sent, latency });
            }
        });
        tasks.spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate);
            let mut beat = tokio::time::interval(Duration::from_secs(20));
            loop {
                tokio::select! {
                    _ = beat.tick() => {
                        let heartbeat = r#"{"type":"heartbeat","payload":1}"#;
                        if RawWs::write_text(&mut writer, heartbeat).await.is_err() { break; }
                    }
                    _ = ticker.tick() => {
                        let frame = format!(
                            r#"{{"type":"chat","payload":{{"type":"send","chat_id":"{chat_id}","content":"{name}:{}"}}}}"#,
                            epoch.elapsed().as_nanos()
                        );
                        if RawWs::write_text(&mut writer, &frame).await.is_err() { break; }
                    }
                }
            }
        });
    }

    // The floor: the DMs alone.
    let floor_from = epoch.elapsed() + Duration::from_millis(500);
    tokio::time::sleep(Duration::from_secs(floor_seconds) + Duration::from_millis(500)).await;
    let floor_to = epoch.elapsed();
    let (_, rss_before) = herald.usage();
    let peak_before = herald.peak_rss();

    // The burst: every sign-up at once, each on its own connection as separate clients would
    // (one client, made beforehand, so that the load generator's own set-up is not in the
    // measured seconds).
    let clients = reqwest::Client::builder()
        .pool_max_idle_per_host(signups)
        .build()
        .expect("client");
    let burst_from = epoch.elapsed();
    let peak_sampled = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let read = herald.usage_reader();
        let peak = peak_sampled.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(read(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut burst = tokio::task::JoinSet::new();
    for n in 0..signups {
        let register = format!("{}/api/v1/auth/register", herald.url);
        let client = clients.clone();
        burst.spawn(async move {
            let started = Instant::now();
            let response = client
                .post(register)
                .json(&json!({
                    "name": format!("burst{n}"),
                    "email": format!("burst{n}@example.org"),
                    "password": "a burst sign-up's password",
                }))
                .send()
                .await;
            let status = response.map(|r| r.status().as_u16()).unwrap_or(0);
            (status, started.elapsed())
        });
    }
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut answered = Vec::new();
    while let Some(Ok((status, took))) = burst.join_next().await {
        *statuses.entry(status).or_default() += 1;
        answered.push(took);
    }
    let answered_at = epoch.elapsed();
    let accepted = statuses.get(&200).copied().unwrap_or(0);
    // The burst lasts until its mails are in the spool too (the outbox sends them after the
    // answers).
    wait_until(
        "the burst's verification mails in the spool",
        Duration::from_secs(60),
        || {
            let count = spooled(&herald);
            async move { count >= spooled_before + accepted }
        },
    )
    .await;
    let burst_to = epoch.elapsed();
    // A moment after, for the DMs sent during the burst to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sampler.abort();
    let (_, rss_after) = herald.usage();
    let peak_after = herald.peak_rss();
    tasks.abort_all();

    let samples = samples.lock().expect("lock").clone();
    let between = |from: Duration, to: Duration| -> Vec<Duration> {
        samples
            .iter()
            .filter(|s| s.sent >= from && s.sent < to)
            .map(|s| s.latency)
            .collect()
    };
    println!(
        "burst: {signups} sign-ups at once: {statuses:?} (status: count); all answered in {:.2} s, \
         their {accepted} mails spooled {:.2} s after the first was sent",
        (answered_at - burst_from).as_secs_f64(),
        (burst_to - burst_from).as_secs_f64()
    );
    describe("sign-up answered", answered);
    println!(
        "herald RSS: {} MiB before the burst (peak so far {} MiB), {} MiB after; \
         peak during the burst {} MiB (VmHWM; sampled every 5 ms: {} MiB)",
        rss_before / 1024,
        peak_before / 1024,
        rss_after / 1024,
        peak_after / 1024,
        peak_sampled.load(std::sync::atomic::Ordering::Relaxed) / 1024
    );
    describe("DM, floor (no burst)", between(floor_from, floor_to));
    describe("DM, during the burst", between(burst_from, burst_to));
}

/// Signs `name` up through the API, follows the link of its verification mail in the spool,
/// and logs in; returns the token.
async fn spool_account(herald: &Herald, name: &str) -> String {
    let email = format!("{name}@example.com");
    let password = "bench password";
    let response = herald
        .client
        .post(format!("{}/api/v1/auth/register", herald.url))
        .json(&json!({"name": name, "email": email, "password": password}))
        .send()
        .await
        .expect("register");
    assert_eq!(response.status().as_u16(), 200, "register {name}");
    let suffix = format!("-{email}.eml");
    let find = || {
        std::fs::read_dir(herald.data_dir().join("mail"))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(&suffix))
            })
    };
    wait_until(
        &format!("{name}'s verification mail"),
        Duration::from_secs(20),
        || {
            let found = find().is_some();
            async move { found }
        },
    )
    .await;
    let mail = Mail {
        from: String::new(),
        to: vec![email.clone()],
        data: std::fs::read_to_string(find().expect("the mail")).expect("read the mail"),
    };
    let text = mail.body_text();
    let start = text.find("http://").expect("a link in the mail");
    let link = text[start..].split_whitespace().next().expect("link");
    let verified = herald.client.get(link).send().await.expect("verify");
    assert_eq!(verified.status().as_u16(), 200, "verify {name}");
    let login: Value = herald
        .client
        .post(format!("{}/api/v1/auth/login", herald.url))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("log in")
        .json()
        .await
        .expect("login JSON");
    login["payload"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("log in {name}: {login}"))
        .to_string()
}

/// How many mails are in herald's spool.
fn spooled(herald: &Herald) -> usize {
    std::fs::read_dir(herald.data_dir().join("mail"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
                .count()
        })
        .unwrap_or(0)
}

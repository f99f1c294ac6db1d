//! Area E, the scheduler: many scheduled announcements, a share of them due at the same minute
//! boundary. Measures, on herald's real clock, the lag from each due time to its run being
//! fired (the deliveries queued, in the same commit), and herald's CPU between boundaries — a
//! scheduler that looks at every job every second shows up there.
//!
//! The floor is the same process idle before any schedule exists: its CPU over the same
//! window, so that heartbeats and housekeeping are not blamed on the scheduler.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::report::describe;
use super::setup::{ADMIN, Common, Herald};

#[derive(clap::Args)]
pub struct Schedules {
    /// Scheduled announcements in all.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// How many of them are due every minute (the rest once a year).
    #[arg(long, default_value_t = 10_000)]
    due: usize,
    /// Seconds of CPU sampling between two boundaries (and of the idle floor), starting 35 s
    /// after the boundary, once its deliveries have been sent.
    #[arg(long, default_value_t = 20)]
    quiet: u64,
    /// Concurrent API requests while creating the schedules.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

fn ms_since_epoch(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// herald's CPU seconds over `window`, as a share of one core.
async fn cpu_share(herald: &Herald, window: Duration) -> f64 {
    let (before, _) = herald.usage();
    tokio::time::sleep(window).await;
    let (after, _) = herald.usage();
    (after - before) / window.as_secs_f64()
}

/// Sleeps until `offset` past the next minute boundary of the wall clock.
async fn until_next_minute(offset: Duration) -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    let boundary = (now / 60_000 + 1) * 60_000;
    tokio::time::sleep(Duration::from_millis((boundary - now) as u64) + offset).await;
    boundary
}

pub async fn schedules(common: &Common, run: &Schedules) {
    super::setup::print_machine();
    let herald = Herald::start(common, &[]).await;
    let floor = cpu_share(&herald, Duration::from_secs(run.quiet)).await;

    let contact = herald
        .admin(
            "/api/v1/contacts",
            json!({"channel": "email", "address": "team@example.org", "nick_name": "team"}),
        )
        .await;
    let contact_id = contact["id"].as_str().expect("contact id").to_string();
    let started = std::time::Instant::now();
    let created = futures_util::stream::iter(0..run.jobs)
        .map(|n| {
            let herald = &herald;
            let contact_id = contact_id.clone();
            async move {
                let cron = if n < run.due {
                    "* * * * *".to_string()
                } else {
                    // Spread the yearly ones over the year so none is due during the run.
                    format!("{} {} {} {} *", n % 60, n % 24, n % 28 + 1, n % 12 + 1)
                };
                let body = json!({
                    "cron": cron,
                    "time_zone": "Asia/Seoul",
                    "message": format!("announcement {n}"),
                    "audience": {"contact_ids": [contact_id]},
                    "channels": ["email"],
                });
                let answer: Value = herald.admin("/api/v1/schedules", body).await;
                (n < run.due).then(|| answer["id"].as_str().map(str::to_string))
            }
        })
        .buffer_unordered(run.concurrency)
        .collect::<Vec<_>>()
        .await;
    let due_ids: Vec<String> = created.into_iter().flatten().flatten().collect();
    println!(
        "created {} schedules ({} due every minute) in {:.1} s",
        run.jobs,
        due_ids.len(),
        started.elapsed().as_secs_f64()
    );

    // One boundary to settle, then the measured one.
    until_next_minute(Duration::from_secs(5)).await;
    let boundary = until_next_minute(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let between = cpu_share(&herald, Duration::from_secs(run.quiet.min(20))).await;

    let lags = futures_util::stream::iter(due_ids.iter())
        .map(|id| {
            let herald = &herald;
            async move {
                let runs: Value = herald
                    .client
                    .get(format!("{}/api/v1/schedules/{id}/runs", herald.url))
                    .bearer_auth(ADMIN)
                    .send()
                    .await
                    .expect("runs")
                    .json()
                    .await
                    .unwrap_or(Value::Null);
                let list = runs["runs"].as_array().cloned().unwrap_or_default();
                list.iter().find_map(|r| {
                    let due = ms_since_epoch(r["due_at"].as_str()?)?;
                    let fired = ms_since_epoch(r["fired_at"].as_str()?)?;
                    (due == boundary).then(|| Duration::from_millis((fired - due).max(0) as u64))
                })
            }
        })
        .buffer_unordered(run.concurrency)
        .collect::<Vec<_>>()
        .await;
    let missing = lags.iter().filter(|l| l.is_none()).count();
    describe("due → fired (queued)", lags.into_iter().flatten().collect());
    println!("runs of the measured boundary not found: {missing}");
    println!(
        "CPU between boundaries: {:.2} % of a core (idle floor before any schedule: {:.2} %)",
        between * 100.0,
        floor * 100.0
    );
}

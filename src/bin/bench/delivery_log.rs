//! Issue 22's delivery-log page: a hook with a long log (1,000,000 attempts by default, filled
//! with direct SQL inserts while herald runs), then the page of a signed-in owner fetched one
//! request at a time — the first page, a filtered page deep in the log (failed, 5xx, keyset
//! cursor at 90 % depth) and a time range deep in the log — beside `/healthz` through the same
//! client as the floor. The target is p95 ≤ 100 ms of server time (latency minus the floor).

use std::time::{Duration, Instant};

use herald::ids::first_id_at;
use herald::store::Db;
use herald::testkit::fake_smtp::FakeSmtp;
use herald::testkit::git_repo::GitRepo;
use serde_json::json;
use sqlx::AssertSqlSafe;

use super::chat::bench_account;
use super::report::describe;
use super::setup::{ADMIN, Common, Herald};

#[derive(clap::Args)]
pub struct DeliveryLog {
    /// Attempts in the log (four per delivery).
    #[arg(long, default_value_t = 1_000_000)]
    attempts: usize,
    /// Requests per measured page.
    #[arg(long, default_value_t = 300)]
    requests: usize,
}

/// Attempts per delivery: three failures, then the outcome.
const ATTEMPTS_PER_DELIVERY: usize = 4;
/// One delivery in this many failed for good (its last attempt a 5xx too).
const FAILED_EVERY: usize = 20;
/// Rows per INSERT statement of the fill.
const ROWS_PER_INSERT: usize = 500;
/// The log spans this long, newest now.
const SPAN_MS: i64 = 30 * 24 * 3600 * 1000;

fn p95(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted
        .get(((sorted.len() as f64 - 1.0) * 0.95).round() as usize)
        .copied()
        .unwrap_or_default()
}

/// Fills the hook's log: deliveries spread evenly over [`SPAN_MS`], oldest first; returns the
/// deliveries' creation times (Unix ms), oldest first.
async fn fill(db: &Db, hook: i64, attempts: usize) -> Vec<i64> {
    let deliveries = attempts.div_ceil(ATTEMPTS_PER_DELIVERY);
    let now = herald::ids::now_ms();
    let start = now - SPAN_MS;
    let step = (SPAN_MS / deliveries.max(1) as i64).max(ATTEMPTS_PER_DELIVERY as i64 * 2);
    let times: Vec<i64> = (0..deliveries).map(|i| start + i as i64 * step).collect();
    let began = Instant::now();
    for (chunk_no, chunk) in times.chunks(ROWS_PER_INSERT).enumerate() {
        let mut delivery_rows = Vec::with_capacity(chunk.len());
        let mut attempt_rows = Vec::with_capacity(chunk.len() * ATTEMPTS_PER_DELIVERY);
        for (i, created) in chunk.iter().enumerate() {
            let n = chunk_no * ROWS_PER_INSERT + i;
            let failed = n.is_multiple_of(FAILED_EVERY);
            let id = first_id_at(*created);
            let (status, failures, last_error) = if failed {
                ("failed", 4, "'HTTP 503'")
            } else {
                ("delivered", 3, "NULL")
            };
            delivery_rows.push(format!(
                "({id}, 'webhook', '{hook}', '', '{status}', {ATTEMPTS_PER_DELIVERY}, {failures}, \
                 {created}, 0, {last_error}, {created}, {created}, {hook}, 'push')"
            ));
            for k in 0..ATTEMPTS_PER_DELIVERY {
                let at = created + k as i64;
                let attempt_id = first_id_at(at) + k as i64 + 1;
                let last = k + 1 == ATTEMPTS_PER_DELIVERY;
                let (code, error) = match (k, last && !failed) {
                    (_, true) => ("200", "NULL"),
                    (0, _) => ("NULL", "'connection refused'"),
                    _ => ("503", "'HTTP 503'"),
                };
                attempt_rows.push(format!(
                    "({attempt_id}, {id}, {at}, {code}, 12, '{{\"ok\":false}}', {error})"
                ));
            }
        }
        let mut tx = db.writer().begin().await.expect("fill transaction");
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO deliveries (id, channel, destination, payload, status, attempts, failures, \
             next_attempt_at, locked_until, last_error, created_at, updated_at, webhook_id, event_type) \
             VALUES {}",
            delivery_rows.join(", ")
        )))
        .execute(&mut *tx)
        .await
        .expect("fill deliveries");
        for rows in attempt_rows.chunks(ROWS_PER_INSERT) {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO delivery_attempts (id, delivery_id, attempted_at, status_code, \
                 duration_ms, response_body, error) VALUES {}",
                rows.join(", ")
            )))
            .execute(&mut *tx)
            .await
            .expect("fill attempts");
        }
        tx.commit().await.expect("fill commit");
    }
    println!(
        "filled {} deliveries, {} attempts in {:.1} s",
        deliveries,
        deliveries * ATTEMPTS_PER_DELIVERY,
        began.elapsed().as_secs_f64()
    );
    times
}

async fn measure(herald: &Herald, cookie: &str, path: &str, requests: usize) -> Vec<Duration> {
    let url = format!("{}{path}", herald.url);
    let mut samples = Vec::with_capacity(requests);
    for _ in 0..requests {
        let began = Instant::now();
        let response = herald
            .client
            .get(&url)
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await
            .expect("request");
        let status = response.status();
        let body = response.text().await.expect("body");
        samples.push(began.elapsed());
        assert!(status.is_success(), "{path}: {status}");
        assert!(
            path == "/healthz" || body.contains("class=\"card delivery\""),
            "{path} shows no deliveries"
        );
    }
    samples
}

pub async fn delivery_log(common: &Common, run: &DeliveryLog) {
    let smtp = FakeSmtp::start().await;
    let herald = Herald::start(common, &[("HERALD_SMTP_URL", smtp.url.clone())]).await;
    let token = bench_account(&herald, &smtp, "logbench").await;
    let repo = GitRepo::new();
    herald
        .admin(
            "/api/v1/projects",
            json!({"owner": "logbench", "name": "app", "repository": repo.url(), "branches": "main"}),
        )
        .await;
    let hook = herald
        .admin(
            "/api/v1/projects/logbench/app/webhooks",
            json!({"payload_url": "http://127.0.0.1:9/bench", "secret": "bench"}),
        )
        .await;
    let hook_id: i64 = hook["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("hook id");
    // Off, so that only the filled log is in it (its ping is cancelled).
    let response = herald
        .client
        .patch(format!(
            "{}/api/v1/projects/logbench/app/webhooks/{hook_id}",
            herald.url
        ))
        .bearer_auth(ADMIN)
        .json(&json!({"active": false}))
        .send()
        .await
        .expect("disable");
    assert!(response.status().is_success());

    let db = Db::connect(&herald.database_url).await.expect("database");
    let times = fill(&db, hook_id, run.attempts).await;
    if db.backend == herald::store::Backend::Postgres {
        // What autovacuum does soon after a bulk load anyway: without statistics the planner
        // takes the tables for empty.
        sqlx::query("ANALYZE deliveries")
            .execute(db.writer())
            .await
            .expect("analyze");
        sqlx::query("ANALYZE delivery_attempts")
            .execute(db.writer())
            .await
            .expect("analyze");
    }
    db.close().await;

    let cookie = format!("herald_session={token}");
    let log = format!("/logbench/app/webhooks/{hook_id}");
    // 90 % of the way down the log (newest first), and a day's window there.
    let deep = times[times.len() / 10];
    let deep_cursor = first_id_at(deep);
    let from = chrono::DateTime::from_timestamp_millis(deep - 24 * 3600 * 1000)
        .expect("time")
        .format("%Y-%m-%dT%H:%M");
    let to = chrono::DateTime::from_timestamp_millis(deep)
        .expect("time")
        .format("%Y-%m-%dT%H:%M");
    let pages = [
        ("healthz (floor)", "/healthz".to_string()),
        ("first page", log.clone()),
        (
            "failed 5xx, 90% deep",
            format!("{log}?outcome=failed&class=5xx&before={deep_cursor}"),
        ),
        ("a day, 90% deep", format!("{log}?from={from}&to={to}")),
    ];
    // Warm the caches once.
    for (_, path) in &pages {
        measure(&herald, &cookie, path, 5).await;
    }
    let mut floor = Duration::ZERO;
    for (name, path) in &pages {
        let samples = measure(&herald, &cookie, path, run.requests).await;
        let p = p95(&samples);
        if path == "/healthz" {
            floor = p;
        }
        describe(name, samples);
        println!(
            "{name:32} p95={:7.3} ms  server (p95 − floor p95) ≈ {:7.3} ms",
            p.as_secs_f64() * 1000.0,
            p.saturating_sub(floor).as_secs_f64() * 1000.0
        );
    }
}

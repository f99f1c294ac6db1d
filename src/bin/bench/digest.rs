//! Area E, digests: many contacts with a daily digest due at the same minute, each with held
//! pushes. Measures, on SQLite, the time from the due time until every digest is rendered and
//! queued (the last held item claimed: items go in the transaction that queues their digest).
//!
//! The held items and contacts are written with direct SQL while herald runs (as the push path
//! would have written them over a day), due a minute ahead, so that herald's digest worker finds
//! them on its periodic look and sleeps until they are due. The floor, measured in the same run
//! by this process: the same number of rows of the same payload size inserted into a fresh
//! SQLite table, in transactions of the size herald's worker uses — what writing the queued
//! digests costs at least, without reading, rendering or deleting anything.

use std::time::{Duration, Instant};

use herald::digest::{HeldCommit, HeldPush};
use herald::ids::first_id_at;
use herald::store::Db;
use herald::testkit::fake_telegram::FakeTelegram;
use sqlx::AssertSqlSafe;

use super::setup::{Common, Herald};

#[derive(clap::Args)]
pub struct DigestScenario {
    /// Contacts, each with a digest due at the same minute.
    #[arg(long, default_value_t = 100_000)]
    contacts: usize,
    /// Held pushes per contact.
    #[arg(long, default_value_t = 3)]
    items: usize,
    /// Outgoing deliveries in flight while digests are queued (HERALD_DELIVERY_CONCURRENCY):
    /// sending competes with queuing for the two cores.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

/// Rows per INSERT statement of the fill.
const ROWS_PER_INSERT: usize = 500;
/// How far ahead of the end of the fill the digests are due: past the worker's periodic look
/// (30 s), so that it sleeps until the due time rather than finding items already due.
const DUE_AHEAD: Duration = Duration::from_secs(45);

fn held_push(n: usize) -> String {
    let push = HeldPush {
        total: 2,
        commits: (0..2)
            .map(|k| HeldCommit {
                sha: format!("{:040x}", n * 2 + k),
                title: format!("Change number {n}.{k} of the day"),
                author: "Bench Author".into(),
            })
            .collect(),
        forced: false,
        created: false,
        deleted: false,
    };
    serde_json::to_string(&push).expect("json")
}

/// Writes the contacts and their held items; returns the first contact id.
async fn fill(db: &Db, run: &DigestScenario, due_at: i64) -> i64 {
    let now = herald::ids::now_ms();
    let first_contact = first_id_at(now - 86_400_000);
    let began = Instant::now();
    let mut tx = db.writer().begin().await.expect("begin");
    for chunk in (0..run.contacts)
        .collect::<Vec<_>>()
        .chunks(ROWS_PER_INSERT)
    {
        let rows: Vec<String> = chunk
            .iter()
            .map(|n| {
                format!(
                    "({}, 'telegram', '{}', 'bench {n}', {now}, 'Asia/Seoul')",
                    first_contact + *n as i64,
                    1_000_000 + n
                )
            })
            .collect();
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO contacts (id, channel, address, nick_name, created_at, time_zone) VALUES {}",
            rows.join(", ")
        )))
        .execute(&mut *tx)
        .await
        .expect("contacts");
    }
    let total = run.contacts * run.items;
    let first_item = first_id_at(now - 3_600_000);
    for chunk in (0..total).collect::<Vec<_>>().chunks(ROWS_PER_INSERT) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|i| {
                let contact = first_contact + (i % run.contacts) as i64;
                format!(
                    "({}, {contact}, {due_at}, {}, 'github.com/bench/repo{}', 'main', '{}', {now})",
                    first_item + *i as i64,
                    first_item + *i as i64,
                    i % 7,
                    held_push(*i)
                )
            })
            .collect();
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO digest_items (id, contact_id, due_at, event_id, repository, branch, \
             summary, created_at) VALUES {}",
            rows.join(", ")
        )))
        .execute(&mut *tx)
        .await
        .expect("digest items");
    }
    tx.commit().await.expect("commit");
    println!(
        "filled {} contacts and {total} held items in {:.1} s",
        run.contacts,
        began.elapsed().as_secs_f64()
    );
    first_contact
}

/// The floor: `rows` inserts of `payload_bytes` each into a fresh SQLite file (WAL, the same
/// pragmas as herald's), in transactions of `per_transaction` rows, 64 rows per statement.
async fn floor(rows: usize, payload_bytes: usize, per_transaction: usize) -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("floor.db").display());
    let db = Db::connect(&url).await.expect("floor database");
    sqlx::query("CREATE TABLE floor (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
        .execute(db.writer())
        .await
        .expect("table");
    let payload = "x".repeat(payload_bytes);
    let began = Instant::now();
    let mut id = 0_i64;
    while (id as usize) < rows {
        let mut tx = db.writer().begin().await.expect("begin");
        let end = (id as usize + per_transaction).min(rows) as i64;
        while id < end {
            let n = (end - id).min(64);
            let placeholders: Vec<String> = (0..n)
                .map(|k| format!("(${}, ${})", 2 * k + 1, 2 * k + 2))
                .collect();
            let sql = format!(
                "INSERT INTO floor (id, payload) VALUES {}",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for k in 0..n {
                query = query.bind(id + k).bind(payload.as_str());
            }
            query.execute(&mut *tx).await.expect("insert");
            id += n;
        }
        tx.commit().await.expect("commit");
    }
    let took = began.elapsed();
    db.close().await;
    took
}

pub async fn digest(common: &Common, run: &DigestScenario) {
    let telegram = FakeTelegram::start().await;
    let herald = Herald::start(
        common,
        &[
            ("HERALD_TELEGRAM_API", telegram.base_url.clone()),
            ("HERALD_TELEGRAM_BOT_TOKEN", telegram.token.clone()),
            ("HERALD_TELEGRAM_RATE", "100000".into()),
            ("HERALD_TELEGRAM_CHAT_RATE", "100000".into()),
            ("HERALD_DELIVERY_CONCURRENCY", run.concurrency.to_string()),
        ],
    )
    .await;
    let db = Db::connect(&herald.database_url).await.expect("database");
    // Due on a whole second a little after the fill ends.
    let fill_estimate = Duration::from_millis(run.contacts as u64 / 10);
    let due_at =
        (herald::ids::now_ms() + (DUE_AHEAD + fill_estimate).as_millis() as i64) / 1000 * 1000;
    fill(&db, run, due_at).await;
    let left = due_at - herald::ids::now_ms();
    assert!(
        left > 31_000,
        "the fill took too long: the digests are due in {left} ms, before herald's worker looks again"
    );
    tokio::time::sleep(Duration::from_millis(left as u64)).await;
    let (cpu_before, _) = herald.usage();
    let due = Instant::now();
    loop {
        let next: Option<i64> = sqlx::query_scalar("SELECT MIN(due_at) FROM digest_items")
            .fetch_one(db.reader())
            .await
            .expect("held items");
        if next.is_none() {
            break;
        }
        assert!(
            due.elapsed() < Duration::from_secs(600),
            "digests still held after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queued_in = due.elapsed();
    let (cpu_after, rss) = herald.usage();
    let queued: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE contact_id IS NOT NULL")
            .fetch_one(db.reader())
            .await
            .expect("deliveries");
    let payload_bytes: Option<i64> =
        sqlx::query_scalar("SELECT CAST(AVG(LENGTH(payload)) AS BIGINT) FROM deliveries")
            .fetch_one(db.reader())
            .await
            .unwrap_or(None);
    let payload_bytes = payload_bytes.unwrap_or(300).max(1) as usize;
    db.close().await;
    println!(
        "{} digests ({} held items) due at one instant: all queued {:.2} s after the due time \
         ({} deliveries queued; herald CPU {:.1} s, RSS {} MiB)",
        run.contacts,
        run.contacts * run.items,
        queued_in.as_secs_f64(),
        queued,
        cpu_after - cpu_before,
        rss / 1024
    );
    // One digest per contact, ~333 contacts per claim of 1,000 items.
    let per_transaction = (1000 / run.items.max(1)).max(1);
    let floor = floor(run.contacts, payload_bytes, per_transaction).await;
    println!(
        "floor: {} inserts of {payload_bytes} B into a fresh SQLite table, {per_transaction} per \
         transaction, in this process: {:.2} s",
        run.contacts,
        floor.as_secs_f64()
    );
}

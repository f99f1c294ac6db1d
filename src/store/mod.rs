//! Storage: one code path for SQLite and PostgreSQL through sqlx's `Any` driver.
//!
//! **Invariant**: nothing outside `store/` opens a connection or runs migrations; feature modules
//! write their SQL with `$1` placeholders and only BIGINT/INTEGER and TEXT columns, which both
//! backends decode alike (see the notes at the top of the migrations).
//!
//! On SQLite every write goes through a single-connection pool, so writers queue in herald instead
//! of failing with `SQLITE_BUSY` when two deferred transactions both try to upgrade; readers use a
//! pool of their own (WAL lets them run beside the writer). On PostgreSQL both are the same pool.
//!
//! How SQLite writes are kept fast (the figures are in BENCHMARKS.md):
//! - A writer turn ([`WriterTurn`]) holds that single connection; on SQLite in a file the push
//!   path's reads and its write script run inside one turn on a second, direct connection to
//!   the same file (`direct.rs`, rusqlite over the same SQLite library), on the calling thread,
//!   so nothing commits between a read and the write it decides and no thread hand-over is paid.
//!   It writes only while its caller holds the pool's connection, so every write still queues
//!   in one line.
//! - That connection opens its files through a thin VFS over SQLite's own (`walbatch.rs`) that
//!   writes a commit's log frames with one system call instead of two per page, before SQLite
//!   publishes the commit to other connections. It is off unless `HERALD_SQLITE_BATCHED_LOG=true`:
//!   on a full disk it acknowledged commits that were then lost (docs/full-disk-findings.md);
//!   start-up says whether it is in use and `/metrics` counts its fallbacks.
//! - Every second the log is checkpointed from a reader (the copying, and its fsyncs, without
//!   holding up writers), pass after pass — each shorter than the one before — until one finds
//!   nothing new to copy: then the whole log was copied and the next write starts it over. Only
//!   a log that reached 32 MiB that way (writes that never pause for a few milliseconds) gets a
//!   last pass on the writer, where no commit can slip in: that pass holds every write for two
//!   fsyncs, and when it ran every second it was most of the delivery latency's tail.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::ids::now_ms;

mod direct;
mod nodelay;
mod script;
pub mod storage;
pub mod walbatch;

pub use script::{
    FromValue, Row, Script, Value, WriterTurn, read_many, read_many_in_turn, values_rows,
    values_rows_from,
};
pub use storage::{StorageFailure, StorageHealth, storage_failure, storage_failure_in};
pub use walbatch::{BatchedLog, Fallback};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Which backend a connection (or transaction) talks to.
    pub fn of(conn: &sqlx::AnyConnection) -> Backend {
        if conn.backend_name().eq_ignore_ascii_case("sqlite") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }
}

#[derive(Debug, Clone)]
pub struct Db {
    read: AnyPool,
    write: AnyPool,
    pub backend: Backend,
    /// SQLite in a file: the connection scripts commit on without sqlx's thread.
    direct: Option<std::sync::Arc<direct::Direct>>,
    /// The last write that could not be stored (a full or failing disk), for `/readyz`.
    storage: std::sync::Arc<StorageHealth>,
}

pub type StoreError = sqlx::Error;

/// How to open storage, beyond its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// On SQLite in a file, write each commit's log frames with one system call (`walbatch`);
    /// `HERALD_SQLITE_BATCHED_LOG`.
    pub sqlite_batched_log: bool,
}

impl From<&crate::config::Settings> for StoreOptions {
    fn from(settings: &crate::config::Settings) -> StoreOptions {
        StoreOptions {
            sqlite_batched_log: settings.sqlite_batched_log,
        }
    }
}

impl Default for StoreOptions {
    /// The options of herald's default settings (`config::SETTINGS` holds the defaults).
    fn default() -> Self {
        match crate::config::Settings::from_map(Default::default()) {
            Ok(settings) => StoreOptions::from(&settings),
            // The defaults always parse (a unit test of `config` says so).
            Err(_) => StoreOptions {
                sqlite_batched_log: true,
            },
        }
    }
}

/// `/readyz`'s probe write waits at most this long for the writer.
const PROBE_WITHIN: Duration = Duration::from_secs(5);

/// A PostgreSQL connection idle longer than this is pinged before it is handed out.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

impl Db {
    /// Connects with the default options, creating the SQLite file (and its directory) when
    /// needed.
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// Connects, creating the SQLite file (and its directory) when needed.
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            Self::connect_sqlite(url, options).await
        } else {
            let options = AnyConnectOptions::from_str(url)?
                .log_statements(tracing::log::LevelFilter::Trace)
                .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
            let servers = std::sync::Arc::new(nodelay::server_addresses(url).await);
            let pool = AnyPoolOptions::new()
                .max_connections(20)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                // sqlx pings every connection it hands out by default: a round trip to the
                // server before each transaction or statement. Only a connection that sat idle
                // (it may have been cut while unused, by a server restart say) is worth it.
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for > PING_IF_IDLE_FOR {
                            sqlx::Connection::ping(conn).await?;
                        }
                        Ok(true)
                    })
                })
                .after_connect(move |_conn, _meta| {
                    let servers = servers.clone();
                    Box::pin(async move {
                        nodelay::set_on_sockets_to(&servers);
                        Ok(())
                    })
                })
                .connect_with(options)
                .await?;
            Ok(Db {
                read: pool.clone(),
                write: pool,
                backend: Backend::Postgres,
                direct: None,
                storage: Default::default(),
            })
        }
    }

    async fn connect_sqlite(url: &str, connect: StoreOptions) -> Result<Db, StoreError> {
        let path_part = url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:");
        let path_part = path_part.split('?').next().unwrap_or_default();
        if !path_part.is_empty()
            && !path_part.starts_with("file:")
            && path_part != ":memory:"
            && let Some(parent) = std::path::Path::new(path_part).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(sqlx::Error::Io)?;
        }
        let url = if url.contains('?') {
            url.to_string()
        } else {
            format!("{url}?mode=rwc")
        };
        let options = AnyConnectOptions::from_str(&url)?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let pool = |max: u32, writer: bool| {
            AnyPoolOptions::new()
                .max_connections(max)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                // A file in this process cannot hang up: the ping sqlx sends by default on every
                // acquire would only add a round trip to the connection's thread.
                .test_before_acquire(false)
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        // WAL and busy_timeout are per connection when going through `Any`.
                        // synchronous=NORMAL in WAL mode survives a process crash (kill -9);
                        // only an OS crash or power loss can lose the last transactions.
                        // temp_store=MEMORY: temporary b-trees (sorts, DISTINCT) otherwise
                        // create and unlink a file in /var/tmp, several times a second under
                        // load, on the writer's thread.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                             PRAGMA temp_store = MEMORY;",
                        )
                        .await?;
                        if writer {
                            // Checkpoints run in the background (`Db::checkpoint`): their fsyncs
                            // from a reader connection, never inside a writer's commit.
                            conn.execute("PRAGMA wal_autocheckpoint = 0;").await?;
                        }
                        Ok(())
                    })
                })
                // A connection handed back still inside a transaction is closed, not kept:
                // after SQLite rolls a transaction back by itself (a COMMIT that failed with
                // SQLITE_FULL or SQLITE_IOERR), sqlx still counts it open, its ROLLBACK fails,
                // and from then on sqlx's own `begin`/rollback on that connection are
                // savepoints that can leave a real transaction open, holding the write lock:
                // every other write then found "database is locked" until a restart (issue
                // 25). Closing rolls back whatever is open; the pool opens a fresh connection.
                .after_release(|conn, _meta| {
                    Box::pin(async move {
                        let stale = sqlx::Connection::is_in_transaction(conn);
                        if stale {
                            tracing::warn!(
                                "a SQLite connection came back inside a transaction (after a failed commit); closing it"
                            );
                        }
                        Ok(!stale)
                    })
                })
                .connect_with(options.clone())
        };
        let write = pool(1, true).await?;
        let read = pool(8, false).await?;
        // Opened once the pools have made the file and set it to WAL; only for a plain path,
        // read-write (sqlx alone handles options such as `mode=memory`, `mode=ro` or
        // `immutable`, and percent-encoded names).
        let plain =
            matches!(url.split_once('?'), None | Some((_, "mode=rwc"))) && !path_part.contains('%');
        let direct = if !plain
            || path_part.is_empty()
            || path_part.starts_with("file:")
            || path_part == ":memory:"
        {
            None
        } else {
            let direct =
                direct::Direct::open(std::path::Path::new(path_part), connect.sqlite_batched_log)
                    .map_err(direct::DirectError::from)?;
            Some(std::sync::Arc::new(direct))
        };
        Ok(Db {
            read,
            write,
            backend: Backend::Sqlite,
            direct,
            storage: Default::default(),
        })
    }

    /// How SQLite's log is written by the direct writer connection, if there is one.
    pub fn batched_log(&self) -> BatchedLog {
        self.direct
            .as_ref()
            .map_or(BatchedLog::NoDirectWriter, |direct| direct.batched_log())
    }

    /// Says once, at start-up, how SQLite's log is written: a log line, and the
    /// `herald_sqlite_batched_log` gauge (1 when batched, else 0) with each cause of
    /// `herald_sqlite_batched_log_fallbacks_total` at zero so far, so that both exist before
    /// anything happens. On PostgreSQL there is no SQLite log, and neither metric is set.
    pub fn announce_write_path(&self) {
        if self.backend != Backend::Sqlite {
            return;
        }
        let batched_log = self.batched_log();
        metrics::gauge!("herald_sqlite_batched_log").set(if batched_log.in_use() {
            1.0
        } else {
            0.0
        });
        for fallback in Fallback::ALL {
            metrics::counter!("herald_sqlite_batched_log_fallbacks_total", "cause" => fallback.cause())
                .increment(0);
        }
        match batched_log {
            BatchedLog::InUse => tracing::info!(
                vfs = walbatch::VFS_NAME.to_str().unwrap_or_default(),
                "SQLite batched log in use: each commit's log frames are written with one system call"
            ),
            BatchedLog::TurnedOff => tracing::info!(
                "SQLite batched log not in use: turned off by HERALD_SQLITE_BATCHED_LOG"
            ),
            BatchedLog::FellBack(fallback) => tracing::warn!(
                cause = fallback.cause(),
                "SQLite batched log not in use: it could not be set up (logged above)"
            ),
            BatchedLog::NoDirectWriter => tracing::info!(
                "SQLite batched log not in use: the database is in memory or has options in its URL, so sqlx alone writes it"
            ),
        }
    }

    /// The pool for plain reads.
    pub fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// The pool for writes and transactions that write.
    pub fn writer(&self) -> &AnyPool {
        &self.write
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        self.migrator().run(&self.write).await
    }

    /// Connects and applies the migrations: what `herald migrate` does, and every start.
    pub async fn open(url: &str, options: StoreOptions) -> anyhow::Result<Db> {
        use anyhow::Context;
        let db = Db::connect_with(url, options)
            .await
            .context("could not open the database named by HERALD_DATABASE_URL")?;
        db.migrate()
            .await
            .context("could not apply database migrations")?;
        Ok(db)
    }

    /// For `/readyz`: the database answers, every migration herald knows is applied, and it
    /// stores what it is given: no write failed for lack of storage within
    /// [`storage::FAILURE_HOLD`], and a one-row probe write goes through now.
    pub async fn ready(&self) -> Result<(), String> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.read)
                .await
                .map_err(|e| format!("database unreachable or not migrated: {e}"))?;
        let known = self.migrator().iter().count() as i64;
        if applied < known {
            return Err(format!("{applied} of {known} migrations applied"));
        }
        self.probe_write().await?;
        if let Some((ago, failure)) = self.storage.recent(storage::FAILURE_HOLD) {
            return Err(format!(
                "storage: a write failed {} ms ago: {}",
                ago.as_millis(),
                failure.message()
            ));
        }
        Ok(())
    }

    /// Rewrites the one row of `storage_probe`: a write as small as they come, which fails
    /// when the database can store nothing at all (larger writes may fail before it does,
    /// which the recorded failures tell).
    async fn probe_write(&self) -> Result<(), String> {
        let write = sqlx::query("UPDATE storage_probe SET written_at = $1 WHERE id = 1")
            .bind(now_ms())
            .execute(&self.write);
        match tokio::time::timeout(PROBE_WITHIN, write).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => match self.storage.note(&error) {
                Some(failure) => Err(format!("storage: {}", failure.message())),
                None => Err(format!("storage: a probe write failed: {error}")),
            },
            Err(_) => Err(format!(
                "storage: a probe write took over {} s",
                PROBE_WITHIN.as_secs()
            )),
        }
    }

    /// The last write that could not be stored; every path that sees a storage failure
    /// reports it here.
    pub fn storage(&self) -> &StorageHealth {
        &self.storage
    }

    /// Moves the SQLite write-ahead log into the database file and lets it start over; the app
    /// calls it every second. A no-op on PostgreSQL.
    ///
    /// SQLite starts a log over at the first write that finds all of it copied. The copying
    /// runs on a reader connection, paying its fsyncs without holding up writers; but commits
    /// go on meanwhile, so a pass that took a while (a second's log: ~16 MB, ~50 ms at 1,000
    /// deliveries/s) never leaves the whole log copied. So the readers pass again at once, each
    /// pass shorter than the one before (it copies what came in during the last), until one
    /// finds nothing new: at that moment every frame was copied, and the next write starts the
    /// log over. Under writes that never pause that long, the log grows; from
    /// [`WRITER_PASS_AT_FRAMES`] on, a last pass runs on the writer itself, where no commit
    /// can slip in. That pass holds every push for its two fsyncs (6–10 ms when it ran every
    /// second, the largest part of the delivery latency's 99th percentile), so it is kept for
    /// logs the readers could not start over, and it comes after the readers' shortest pass so
    /// that it copies only what arrived during that one. Pruning a backlog dirties pages faster
    /// than the readers copy them: the writer then waits until what is left is little (256
    /// frames, or a sixteenth of a long log) — a writer pass over more held every push for tens
    /// of milliseconds — except that a log over [`LOG_LIMIT_FRAMES`] gets the writer's pass
    /// whatever it costs, so the log stays bounded.
    pub async fn checkpoint(&self) -> Result<Checkpoint, StoreError> {
        self.checkpoint_within(LOG_LIMIT_FRAMES).await
    }

    /// [`Db::checkpoint`] with the log's bound given in frames (tests force the writer's pass
    /// with 0).
    pub async fn checkpoint_within(&self, log_limit_frames: i64) -> Result<Checkpoint, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(Checkpoint::NoLog);
        }
        let mut log = 0;
        let mut left = 0;
        let mut copied_before = None;
        for _ in 0..READER_CHECKPOINT_PASSES {
            let (busy, frames, copied): (i64, i64, i64) =
                sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&self.read)
                    .await?;
            // Another checkpoint is running (SQLite answers -1 frames): it does the work.
            if busy != 0 || frames < 0 {
                return Ok(Checkpoint::NotYet);
            }
            (log, left) = (frames, frames - copied);
            // An empty log has just started over.
            if frames == 0 {
                return Ok(Checkpoint::NoLog);
            }
            // Nothing committed since the last pass, which had copied everything: the next
            // write starts the log over.
            if left == 0 && copied_before == Some(copied) {
                return Ok(Checkpoint::CopiedByReaders);
            }
            copied_before = Some(copied);
        }
        if !writer_pass_needed(log, left, log_limit_frames) {
            return Ok(Checkpoint::NotYet);
        }
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&self.write)
            .await?;
        Ok(Checkpoint::CopiedByWriter)
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
        if let Some(direct) = self.direct.clone() {
            // Last to close, it copies the log into the database file: off the runtime threads.
            let _ = tokio::task::spawn_blocking(move || direct.close()).await;
        }
    }

    /// `FOR UPDATE SKIP LOCKED` where the backend has it; SQLite's single writer needs none.
    pub fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

/// How a [`Db::checkpoint`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// Nothing to copy: an empty log (it has just started over), or not SQLite.
    NoLog,
    /// The readers' passes copied every frame with no commit in between: the next write starts
    /// the log over.
    CopiedByReaders,
    /// The writer's pass copied the rest: the next write starts the log over.
    CopiedByWriter,
    /// Commits kept coming and the log is still short, or another checkpoint was running:
    /// left for the next checkpoint.
    NotYet,
}

/// Log frames (pages) the writer's own checkpoint pass may copy at least: ~1 MiB, a millisecond
/// or two (more once the log is over 16 MiB, see [`writer_pass_needed`]).
const WRITER_PASS_FRAMES: i64 = 256;
/// Reader passes per checkpoint, at most, to copy the whole log (each is shorter than the one
/// before while the writes keep up their pace: ~50 ms, 5 ms, 3 ms… at 1,000 deliveries/s).
const READER_CHECKPOINT_PASSES: usize = 8;
/// A log shorter than this (32 MiB of 4 KiB pages) is left to the readers' passes to start over.
const WRITER_PASS_AT_FRAMES: i64 = 8_192;
/// A log this long (64 MiB of 4 KiB pages) is copied whole by the writer, however long it takes.
const LOG_LIMIT_FRAMES: i64 = 16_384;

/// Whether the writer's checkpoint pass runs after the readers' passes left `left` of `log`
/// frames without ever finding all of it copied. Not for a log under [`WRITER_PASS_AT_FRAMES`]:
/// the readers' next passes will likely start it over, and the writer's pass would hold every
/// write for its fsyncs. Even with nothing left it does run (then it copies nothing and syncs
/// nothing): a commit may have begun during the readers' last pass, and only a pass under the
/// writer's lock makes sure the next write finds the whole log copied and starts it over.
/// The allowance grows with the log (a sixteenth of it), so that under writes the readers never
/// quite catch up with, the writer copies a moderate rest early rather than the whole log at
/// [`LOG_LIMIT_FRAMES`] in one long hold.
fn writer_pass_needed(log: i64, left: i64, log_limit_frames: i64) -> bool {
    log > 0
        && log >= WRITER_PASS_AT_FRAMES.min(log_limit_frames)
        && (left <= WRITER_PASS_FRAMES.max(log / 16) || log >= log_limit_frames)
}

const LEASE_MS: i64 = 120_000;

/// Takes a free snowflake worker id (0..1023) in the database, so that nodes sharing a database
/// never mint the same id. The lease is renewed by `renew_node_id` while the node lives and
/// expires two minutes after it dies.
pub async fn lease_node_id(db: &Db, holder: &str) -> Result<u16, StoreError> {
    let start = (now_ms() as u64 % 1024) as i64;
    for offset in 0..1024 {
        let worker_id = (start + offset) % 1024;
        let now = now_ms();
        let result = sqlx::query(
            "INSERT INTO node_leases (worker_id, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (worker_id) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at WHERE node_leases.expires_at < $4",
        )
        .bind(worker_id)
        .bind(holder)
        .bind(now + LEASE_MS)
        .bind(now)
        .execute(db.writer())
        .await?;
        if result.rows_affected() == 1 {
            return Ok(worker_id as u16);
        }
    }
    Err(sqlx::Error::Protocol(
        "all 1024 worker ids are leased; set HERALD_NODE_ID".into(),
    ))
}

/// Renews this node's worker id; `false` when the lease was lost (it lapsed and another node
/// holds the id now), after which this node must mint no more ids with it.
pub async fn renew_node_id(db: &Db, worker_id: u16, holder: &str) -> Result<bool, StoreError> {
    let now = now_ms();
    let renewed = sqlx::query(
        "UPDATE node_leases SET expires_at = $1 WHERE worker_id = $2 AND holder = $3 \
         AND expires_at >= $4",
    )
    .bind(now + LEASE_MS)
    .bind(i64::from(worker_id))
    .bind(holder)
    .bind(now)
    .execute(db.writer())
    .await?;
    Ok(renewed.rows_affected() == 1)
}

pub async fn release_node_id(db: &Db, worker_id: u16, holder: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM node_leases WHERE worker_id = $1 AND holder = $2")
        .bind(i64::from(worker_id))
        .bind(holder)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// `$first, $first+1, …`: `count` placeholders for an `IN (…)` list.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows per multi-row statement: SQLite binds `$n` names in time quadratic in their number,
/// so a long batch goes out as several statements of at most this many rows.
pub const ROWS_PER_STATEMENT: usize = 64;

/// Whether an error is a unique-constraint violation, on either backend.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db.is_unique_violation(),
        _ => false,
    }
}

/// Text bytes per multi-row statement. sqlx writes a message in 16 KiB pieces without
/// `TCP_NODELAY`, so the last piece of a larger statement waits for PostgreSQL's delayed ACK,
/// ~40 ms (seen with strace: 16406 + 16406 + 532 bytes, answer 42 ms later). Statements that
/// carry bulky rows stay under one piece.
pub const STATEMENT_TEXT_BYTES: usize = 12 * 1024;

/// `items` cut into runs of at most `max_rows` and about `max_bytes` (by `size`); an item larger
/// than `max_bytes` is a run of its own.
pub fn statement_chunks<T>(
    items: &[T],
    max_rows: usize,
    max_bytes: usize,
    size: impl Fn(&T) -> usize,
) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (at, item) in items.iter().enumerate() {
        let item_size = size(item);
        if at > start && (at - start == max_rows || bytes + item_size > max_bytes) {
            chunks.push(&items[start..at]);
            (start, bytes) = (at, 0);
        }
        bytes += item_size;
    }
    if start < items.len() {
        chunks.push(&items[start..]);
    }
    chunks
}

#[cfg(test)]
mod chunk_tests {
    use super::statement_chunks;

    #[test]
    fn chunks_respect_rows_and_bytes() {
        let sizes = [5, 5, 5, 20, 1, 1, 1, 1];
        let chunks = statement_chunks(&sizes, 3, 12, |s| *s);
        let lens: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(lens, vec![2, 1, 1, 3, 1]);
        assert!(statement_chunks::<usize>(&[], 3, 12, |s| *s).is_empty());
    }
}

#[cfg(test)]
mod checkpoint_tests {
    use super::*;

    #[test]
    fn the_writer_copies_only_a_short_rest_of_the_log_unless_the_log_is_too_long() {
        assert!(!writer_pass_needed(0, 0, LOG_LIMIT_FRAMES));
        // A short log is left to the readers, however little of it is left to copy.
        assert!(!writer_pass_needed(5_000, 0, LOG_LIMIT_FRAMES));
        assert!(writer_pass_needed(
            WRITER_PASS_AT_FRAMES,
            0,
            LOG_LIMIT_FRAMES
        ));
        assert!(writer_pass_needed(
            WRITER_PASS_AT_FRAMES,
            WRITER_PASS_FRAMES,
            LOG_LIMIT_FRAMES
        ));
        assert!(!writer_pass_needed(
            WRITER_PASS_AT_FRAMES,
            WRITER_PASS_FRAMES.max(WRITER_PASS_AT_FRAMES / 16) + 1,
            LOG_LIMIT_FRAMES
        ));
        assert!(writer_pass_needed(
            LOG_LIMIT_FRAMES,
            9_000,
            LOG_LIMIT_FRAMES
        ));
        assert!(writer_pass_needed(300, 299, 0));
        // A longer log allows a longer rest: a sixteenth of it.
        assert!(writer_pass_needed(8_192, 512, LOG_LIMIT_FRAMES));
        assert!(!writer_pass_needed(8_192, 513, LOG_LIMIT_FRAMES));
    }
}

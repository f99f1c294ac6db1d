//! SQLite without the connection thread, for the push path's reads and writes.
//!
//! sqlx runs every SQLite connection on a thread of its own and talks to it by messages: a
//! call wakes that thread, and each statement's result wakes the caller again. On a two-core
//! virtual machine each wake-up crosses cores and costs 25–100 µs under load, so a push's
//! one-call write script still spent most of its ~0.4 ms waiting for threads, not in SQLite.
//! [`Direct`] keeps a second connection to the same file (rusqlite, over the same SQLite library
//! sqlx links) and runs a script's statements on the calling thread, start to commit, in one
//! go: a fraction of a millisecond of SQLite's own work with no hand-over at all.
//!
//! SQLite allows one writer at a time, and a second writer waiting for the lock sleeps in
//! `busy_timeout` steps of milliseconds. So this connection writes only while its caller holds
//! the writer pool's one connection ([`Db::writer`](super::Db::writer)): all writes still queue
//! in one line, and the two connections do not meet on SQLite's lock (the exception: sqlx closing
//! a connection abandoned mid-transaction may still hold it briefly; that is waited out like
//! another process's lock, below).
//!
//! Another process may hold the lock (`herald kb import` writing the same file): the calls
//! here then fail at once with `SQLITE_BUSY` ([`is_busy`]) instead of sleeping in SQLite's busy
//! handler on a runtime thread, and their callers wait asynchronously and try again.
//!
//! Only for databases in a file (a `:memory:` database is private to its connection).

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::OpenFlags;
use rusqlite::types::{Null, ToSqlOutput, ValueRef};

use super::script::{Row, Value};
use super::walbatch::{self, BatchedLog, Fallback};

/// Statements of distinct shapes kept prepared (a push's script has about ten; attempt records
/// and their variants by batch size a few dozen).
const PREPARED: usize = 128;

pub struct Direct {
    /// `None` once closed ([`Direct::close`]).
    writer: Mutex<Option<rusqlite::Connection>>,
    /// How the connection writes the log, as found once it was open.
    batched_log: BatchedLog,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Direct")
    }
}

impl Direct {
    /// Opens the writer connection to an existing database file, with the settings of the
    /// writer pool's (WAL, `synchronous = NORMAL`, foreign keys, no automatic checkpoint); its
    /// log writes gathered into one system call per commit (`walbatch`) when `batched_log` asks
    /// for it and the VFS is available.
    pub fn open(path: &Path, batched_log: bool) -> Result<Direct, rusqlite::Error> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let plain = || rusqlite::Connection::open_with_flags(path, flags);
        let (writer, fallback) = if !batched_log {
            (plain()?, None)
        } else {
            match walbatch::register() {
                Err(fallback) => {
                    walbatch::record_fallback(fallback, &path.display());
                    (plain()?, Some(fallback))
                }
                Ok(()) => match rusqlite::Connection::open_with_flags_and_vfs(
                    path,
                    flags,
                    walbatch::VFS_NAME,
                ) {
                    Ok(writer) => (writer, None),
                    Err(error) => {
                        walbatch::record_fallback(Fallback::OpenFailed, &error);
                        (plain()?, Some(Fallback::OpenFailed))
                    }
                },
            }
        };
        let batched_log = match (batched_log, fallback) {
            (false, _) => BatchedLog::TurnedOff,
            (true, Some(fallback)) => BatchedLog::FellBack(fallback),
            (true, None) => BatchedLog::InUse,
        };
        debug_assert_eq!(batched_log.in_use(), walbatch::in_use(&writer));
        writer.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA busy_timeout = 0; PRAGMA foreign_keys = ON; \
             PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 0;",
        )?;
        writer.set_prepared_statement_cache_capacity(PREPARED);
        Ok(Direct {
            writer: Mutex::new(Some(writer)),
            batched_log,
        })
    }

    pub fn batched_log(&self) -> BatchedLog {
        self.batched_log
    }

    /// Closes the connection (with the pools, at shutdown); calls after it fail. The last
    /// connection to a database to close copies the log into it and removes the log.
    pub fn close(&self) {
        if let Some(conn) = lock(&self.writer).take()
            && let Err((_, error)) = conn.close()
        {
            tracing::warn!(%error, "could not close the SQLite writer connection");
        }
    }

    /// Runs `statements` (each with `?n` placeholders and its values) as one transaction:
    /// either all of them are committed when this returns, or none is. The caller must hold
    /// the writer pool's connection (see the module documentation).
    pub fn write<'a>(
        &self,
        statements: impl Iterator<Item = (&'a str, &'a [Value])>,
    ) -> Result<(), rusqlite::Error> {
        let guard = lock(&self.writer);
        let conn = open(&guard)?;
        settle(conn)?;
        run_cached(conn, "BEGIN IMMEDIATE")?;
        let result = (|| {
            for (sql, values) in statements {
                let mut statement = prepare_bound(conn, sql, values)?;
                // Stepped to the end: a statement may return rows (`RETURNING`), unread here.
                let mut rows = statement.raw_query();
                while rows.next()?.is_some() {}
            }
            run_cached(conn, "COMMIT")
        })();
        walbatch::flush_after_commit(conn);
        if result.is_err() {
            // A failed COMMIT may have rolled back by itself; otherwise undo what ran. If even
            // that fails, the next call tries again before anything else (`settle`).
            let _ = settle(conn);
        }
        result
    }

    /// Runs each read (`?n` placeholders and its values) on the writer connection and returns
    /// its rows, in order; the caller must hold the writer pool's connection. Not on a reader
    /// connection: one drops its whole page cache whenever another connection has committed
    /// since its last read (before nearly every read under load), so a read there goes back to
    /// the files, while the writer's cache holds what it wrote itself.
    pub fn read_on_writer<'a>(
        &self,
        reads: impl Iterator<Item = (&'a str, &'a [Value])>,
    ) -> Result<Vec<Vec<Row>>, rusqlite::Error> {
        let guard = lock(&self.writer);
        let conn = open(&guard)?;
        settle(conn)?;
        read_on(conn, reads)
    }
}

/// A connection, whether or not a panic left its lock poisoned (`write` undoes a transaction
/// a panic left open).
fn lock(
    conn: &Mutex<Option<rusqlite::Connection>>,
) -> MutexGuard<'_, Option<rusqlite::Connection>> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The connection, unless it was closed.
fn open(conn: &Option<rusqlite::Connection>) -> Result<&rusqlite::Connection, rusqlite::Error> {
    conn.as_ref().ok_or_else(|| {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISUSE),
            Some("the database was closed".into()),
        )
    })
}

/// Undoes a transaction left open on the connection (by a failed rollback, or a panic midway
/// through a call), so that nothing reads or builds on its uncommitted rows.
fn settle(conn: &rusqlite::Connection) -> Result<(), rusqlite::Error> {
    if !conn.is_autocommit() {
        conn.execute_batch("ROLLBACK")?;
    }
    Ok(())
}

/// A statement without parameters or rows (`BEGIN IMMEDIATE`, `COMMIT`), kept prepared rather
/// than parsed again on every transaction.
fn run_cached(conn: &rusqlite::Connection, sql: &str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(sql)?.raw_execute().map(|_| ())
}

/// `sql` prepared (or taken from the connection's cache) with `values` bound to `?1…`; a
/// statement whose parameters are not exactly `?1…?k` for its `k` values is refused (binding
/// is by position, so a `$n` left unconverted would take another value silently).
fn prepare_bound<'c>(
    conn: &'c rusqlite::Connection,
    sql: &str,
    values: &[Value],
) -> Result<rusqlite::CachedStatement<'c>, rusqlite::Error> {
    let mut statement = conn.prepare_cached(sql)?;
    let count = statement.parameter_count();
    // Named parameters (`$x`, `:x`, `@x`) need one of those characters in the text; without
    // any, every parameter is a `?` or `?n` and the names need no look (a push's statements
    // carry over a hundred, each name a call into SQLite).
    let numbered = !sql.contains(['$', ':', '@'])
        || (1..=count).all(|i| {
            statement
                .parameter_name(i)
                .is_none_or(|name| name.starts_with('?'))
        });
    if count != values.len() || !numbered {
        return Err(rusqlite::Error::InvalidParameterCount(values.len(), count));
    }
    for (i, value) in values.iter().enumerate() {
        statement.raw_bind_parameter(i + 1, Bound(value))?;
    }
    Ok(statement)
}

fn read_on<'a>(
    conn: &rusqlite::Connection,
    reads: impl Iterator<Item = (&'a str, &'a [Value])>,
) -> Result<Vec<Vec<Row>>, rusqlite::Error> {
    let mut sets = Vec::new();
    for (sql, values) in reads {
        let mut statement = prepare_bound(conn, sql, values)?;
        let columns = statement.column_count();
        let mut rows = statement.raw_query();
        let mut set = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns);
            for index in 0..columns {
                values.push(match row.get_ref(index)? {
                    ValueRef::Null => Value::Int(None),
                    ValueRef::Integer(v) => Value::Int(Some(v)),
                    ValueRef::Text(text) => {
                        Value::Text(Some(String::from_utf8_lossy(text).into_owned()))
                    }
                    other @ (ValueRef::Real(_) | ValueRef::Blob(_)) => {
                        return Err(rusqlite::Error::InvalidColumnType(
                            index,
                            format!("column {index}: herald reads no REAL or BLOB columns"),
                            other.data_type(),
                        ));
                    }
                });
            }
            set.push(Row(values));
        }
        sets.push(set);
    }
    Ok(sets)
}

/// Whether `error` is SQLite's "the database is locked" (by another process: within this one
/// every writer queues for the writer pool's connection first).
pub fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Runs `call` until it does not find the database locked, waiting asynchronously in between
/// (from 1 ms up to 50 ms) for at most `BUSY_WAIT`, as `busy_timeout` would have on a thread
/// of its own. Every call here either ran whole or not at all when it reports busy.
pub async fn retry_while_busy_async<T, F>(mut call: impl FnMut() -> F) -> Result<T, rusqlite::Error>
where
    F: std::future::Future<Output = Result<T, rusqlite::Error>>,
{
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match call().await {
            Err(error) if is_busy(&error) && started.elapsed() < BUSY_WAIT => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
            outcome => return outcome,
        }
    }
}

/// How long a call waits for another process's lock before it fails (the pools' `busy_timeout`).
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A script value as SQLite binds it.
struct Bound<'a>(&'a Value);

impl rusqlite::ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Value::Int(Some(v)) => ToSqlOutput::from(*v),
            Value::Text(Some(v)) => ToSqlOutput::from(v.as_str()),
            Value::Int(None) | Value::Text(None) => ToSqlOutput::from(Null),
        })
    }
}

/// A failure of the direct connection, as a database error of sqlx's kind so that callers
/// handle both paths alike.
#[derive(Debug)]
pub struct DirectError {
    message: String,
    /// SQLite's extended result code, when SQLite itself failed.
    extended: Option<i32>,
    code: Option<String>,
}

impl From<rusqlite::Error> for DirectError {
    fn from(error: rusqlite::Error) -> Self {
        let extended = match &error {
            rusqlite::Error::SqliteFailure(e, _) => Some(e.extended_code),
            _ => None,
        };
        DirectError {
            message: error.to_string(),
            extended,
            code: extended.map(|c| c.to_string()),
        }
    }
}

impl std::fmt::Display for DirectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(direct) {}", self.message)
    }
}

impl std::error::Error for DirectError {}

impl sqlx::error::DatabaseError for DirectError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.code.as_deref().map(std::borrow::Cow::Borrowed)
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use rusqlite::ffi;
        use sqlx::error::ErrorKind;
        match self.extended {
            Some(ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => {
                ErrorKind::UniqueViolation
            }
            Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => ErrorKind::ForeignKeyViolation,
            Some(ffi::SQLITE_CONSTRAINT_NOTNULL) => ErrorKind::NotNullViolation,
            Some(ffi::SQLITE_CONSTRAINT_CHECK) => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_bind_only_numbered_parameters_and_exactly_their_values() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        let two = [Value::from(1_i64), Value::from("x")];
        assert!(prepare_bound(&conn, "SELECT ?2, ?1", &two).is_ok());
        // A `$n` left unconverted would bind by first appearance, not by number.
        assert!(prepare_bound(&conn, "SELECT $2, $1", &two).is_err());
        assert!(prepare_bound(&conn, "SELECT ?1", &two).is_err());
        assert!(prepare_bound(&conn, "SELECT ?1, ?2, ?3", &two).is_err());
    }
}

//! When the database cannot store what it is given: a full disk (SQLite's `SQLITE_FULL`,
//! PostgreSQL's `disk_full`, 53100, or `ENOSPC` from the operating system) or a failing one
//! (`SQLITE_IOERR`, PostgreSQL's `io_error`, 58030, `EIO`).
//!
//! [`storage_failure`] is the one place such an error is recognised, whichever path it came
//! through (sqlx on either backend, the direct SQLite writer, an `anyhow` chain around either);
//! the HTTP edge answers it with 503 `storage_unavailable` instead of a bare 500, and the chat
//! socket with an error frame of code 503. [`StorageHealth`] remembers the last such failure so
//! that `/readyz` reports it: [`super::Db::ready`] is not ready while writes failed within
//! [`FAILURE_HOLD`] or while its own small probe write fails, and ready again as soon as
//! neither holds, with no restart.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a write could not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFailure {
    /// No space left where the database writes.
    Full,
    /// The disk failed to read or write.
    Io,
}

impl StorageFailure {
    /// For people: what went wrong and that trying again later is the remedy.
    pub fn message(self) -> &'static str {
        match self {
            StorageFailure::Full => {
                "herald's storage is full: nothing was stored; try again once space is freed"
            }
            StorageFailure::Io => {
                "herald's storage failed to write: nothing was stored; try again later"
            }
        }
    }
}

/// PostgreSQL's SQLSTATE for a full disk.
const PG_DISK_FULL: &str = "53100";
/// PostgreSQL's SQLSTATE for an I/O error.
const PG_IO_ERROR: &str = "58030";
/// SQLite's primary result codes (the low byte of an extended code).
const SQLITE_IOERR: i32 = 10;
const SQLITE_FULL: i32 = 13;
const ENOSPC: i32 = 28;
const EIO: i32 = 5;

/// Whether `error`, or any error in its chain of causes, says the database could not store for
/// lack of room or because the disk failed.
pub fn storage_failure(error: &(dyn std::error::Error + 'static)) -> Option<StorageFailure> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(found) = classify(error) {
            return Some(found);
        }
        cause = error.source();
    }
    None
}

/// [`storage_failure`] of an `anyhow` error's chain.
pub fn storage_failure_in(error: &anyhow::Error) -> Option<StorageFailure> {
    error.chain().find_map(classify)
}

fn classify(error: &(dyn std::error::Error + 'static)) -> Option<StorageFailure> {
    if let Some(error) = error.downcast_ref::<sqlx::Error>() {
        return match error {
            sqlx::Error::Database(database) => database.code().as_deref().and_then(from_code),
            sqlx::Error::Io(io) => from_io(io),
            _ => None,
        };
    }
    if let Some(error) = error.downcast_ref::<super::direct::DirectError>() {
        return sqlx::error::DatabaseError::code(error)
            .as_deref()
            .and_then(from_code);
    }
    if let Some(rusqlite::Error::SqliteFailure(error, _)) = error.downcast_ref::<rusqlite::Error>()
    {
        return from_sqlite_code(error.extended_code);
    }
    if let Some(error) = error.downcast_ref::<std::io::Error>() {
        return from_io(error);
    }
    None
}

/// A database error code: PostgreSQL's SQLSTATE, or SQLite's extended result code in decimal.
fn from_code(code: &str) -> Option<StorageFailure> {
    match code {
        PG_DISK_FULL => Some(StorageFailure::Full),
        PG_IO_ERROR => Some(StorageFailure::Io),
        // SQLSTATEs are five characters; SQLite's codes are shorter numbers.
        _ if code.len() < 5 => code.parse().ok().and_then(from_sqlite_code),
        _ => None,
    }
}

fn from_sqlite_code(extended: i32) -> Option<StorageFailure> {
    match extended & 0xff {
        SQLITE_FULL => Some(StorageFailure::Full),
        SQLITE_IOERR => Some(StorageFailure::Io),
        _ => None,
    }
}

fn from_io(error: &std::io::Error) -> Option<StorageFailure> {
    if error.kind() == std::io::ErrorKind::StorageFull || error.raw_os_error() == Some(ENOSPC) {
        Some(StorageFailure::Full)
    } else if error.raw_os_error() == Some(EIO) {
        Some(StorageFailure::Io)
    } else {
        None
    }
}

/// A write that failed for lack of storage keeps `/readyz` unready this long, even when the
/// readiness probe's own small write gets through: a larger write may still not fit.
pub const FAILURE_HOLD: Duration = Duration::from_secs(3);

/// The last write of this node that could not be stored, for `/readyz`.
#[derive(Debug, Default)]
pub struct StorageHealth {
    last_failure: Mutex<Option<(Instant, StorageFailure)>>,
}

impl StorageHealth {
    /// A write failed with `failure` just now.
    pub fn failed(&self, failure: StorageFailure) {
        *self.lock() = Some((Instant::now(), failure));
        metrics::counter!("herald_storage_failures_total", "cause" => match failure {
            StorageFailure::Full => "full",
            StorageFailure::Io => "io",
        })
        .increment(1);
    }

    /// Records `error` if it is a storage failure; says which.
    pub fn note(&self, error: &(dyn std::error::Error + 'static)) -> Option<StorageFailure> {
        let failure = storage_failure(error)?;
        self.failed(failure);
        Some(failure)
    }

    /// The failure seen within `hold`, with how long ago.
    pub fn recent(&self, hold: Duration) -> Option<(Duration, StorageFailure)> {
        let last = *self.lock();
        last.map(|(at, failure)| (at.elapsed(), failure))
            .filter(|(ago, _)| *ago < hold)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, StorageFailure)>> {
        self.last_failure.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_failing_disks_are_recognised_on_every_path_and_nothing_else_is() {
        assert_eq!(from_code("13"), Some(StorageFailure::Full));
        // SQLITE_IOERR_WRITE (778) and SQLITE_IOERR_FSYNC (1034) are I/O errors.
        assert_eq!(from_code("778"), Some(StorageFailure::Io));
        assert_eq!(from_code("1034"), Some(StorageFailure::Io));
        assert_eq!(from_code("53100"), Some(StorageFailure::Full));
        assert_eq!(from_code("58030"), Some(StorageFailure::Io));
        // SQLITE_BUSY, SQLITE_CONSTRAINT_UNIQUE (2067), PostgreSQL's unique_violation.
        assert_eq!(from_code("5"), None);
        assert_eq!(from_code("2067"), None);
        assert_eq!(from_code("23505"), None);
        let enospc = std::io::Error::from_raw_os_error(ENOSPC);
        assert_eq!(storage_failure(&enospc), Some(StorageFailure::Full));
        let wrapped = anyhow::Error::new(sqlx::Error::Io(std::io::Error::from_raw_os_error(EIO)))
            .context("database");
        assert_eq!(storage_failure_in(&wrapped), Some(StorageFailure::Io));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(storage_failure(&refused), None);
    }

    #[test]
    fn a_failure_is_reported_for_the_hold_only() {
        let health = StorageHealth::default();
        assert_eq!(health.recent(FAILURE_HOLD), None);
        health.failed(StorageFailure::Full);
        assert_eq!(
            health.recent(FAILURE_HOLD).map(|(_, f)| f),
            Some(StorageFailure::Full)
        );
        assert_eq!(health.recent(Duration::ZERO), None);
    }
}

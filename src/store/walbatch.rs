//! A SQLite VFS over the system's own ("unix") that writes each transaction's log frames with
//! one system call instead of two per page.
//!
//! SQLite appends a commit to the write-ahead log one page at a time, each as two writes: the
//! 24-byte frame header, then the page. A push's commit changes ~17 pages, so ~34 `pwrite`
//! calls, each a trip into the kernel that also updates the file's modification time (a
//! journal handle on ext4): a profile of herald at 1,000 deliveries/s found 132 of the 164
//! samples inside SQLite's commits in `pwrite` (34 such calls took 67 µs in a loop on an idle
//! machine, one `pwritev` of the same bytes 22 µs). With this layer a push's write and commit
//! took p50 208–223 µs against 243–252 µs without (six alternated runs; BENCHMARKS.md).
//!
//! How: writes to a log file (`SQLITE_OPEN_WAL`) that continue the previous one are kept in a
//! buffer; the buffer goes to the file, as one write, once the transaction's last frame is in
//! it — the frame whose header carries the database size ("commit frame") — and before
//! anything else touches the file (a read, a sync, its size, a truncation, a lock, a file
//! control, closing it) or when the next write does not continue it. SQLite publishes a commit
//! to other connections by writing the wal-index header twice with a shared-memory barrier
//! between the copies (readers take a header only when both agree), after all of the
//! commit's frames are written; the barrier, called on the database file, writes whatever the
//! log's buffer still holds (headers SQLite rewrote in place after the commit frame). So
//! readers and checkpoints, on other connections and handles, see exactly what they would
//! without this layer. Nothing waits for the disk any more or less than before
//! (`synchronous = NORMAL`: the log is synced at checkpoints, which go through `xSync`).
//!
//! Only the direct writer connection (`store/direct.rs`) opens its files through this VFS;
//! every other file operation, and every other connection, is SQLite's own.
//!
//! It is used only with `HERALD_SQLITE_BATCHED_LOG=true` (off by default: on a full disk it
//! acknowledged commits that were then lost — docs/full-disk-findings.md); otherwise the writer
//! connection opens its files through SQLite's own VFS, and everything else is unchanged. Whether it is in use
//! is said at start-up (a log line, and the `herald_sqlite_batched_log` gauge, 1 or 0); every
//! place where it cannot do its work ([`Fallback`]) is logged with its cause and counted in
//! `herald_sqlite_batched_log_fallbacks_total{cause}`.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr::{addr_of_mut, null_mut};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::ffi;

/// The name connections pass to use this VFS.
pub const VFS_NAME: &CStr = c"herald-walbatch";

/// Bytes gathered at most before they are written anyway (a transaction of many pages).
const MAX_BUFFER: usize = 4 << 20;

/// The most one write of the unix VFS takes (it masks a write's length with 0x1ffff).
const MAX_WRITE: usize = 0x1f000;

/// Size of a WAL frame header.
const FRAME_HEADER: usize = 24;

/// Commits whose frames were still in the buffer when the commit returned (see
/// [`flush_after_commit`]): never expected; counted so tests can say so.
static LATE_FLUSHES: AtomicU64 = AtomicU64::new(0);

pub fn late_flushes() -> u64 {
    LATE_FLUSHES.load(Ordering::Relaxed)
}

/// How the direct writer connection writes SQLite's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchedLog {
    /// Through this VFS: one write per commit.
    InUse,
    /// Turned off by `HERALD_SQLITE_BATCHED_LOG=false`.
    TurnedOff,
    /// Asked for, but the connection opened its files the usual way, for this reason.
    FellBack(Fallback),
    /// There is no direct writer connection: PostgreSQL, or SQLite in memory or with options in
    /// its URL (sqlx alone writes then).
    NoDirectWriter,
}

impl BatchedLog {
    pub fn in_use(self) -> bool {
        self == BatchedLog::InUse
    }
}

/// A place where this VFS gives up its work: the frames then go to the file as SQLite writes
/// them (or, for [`Fallback::LateFlush`], right after the commit), which is correct but slower.
/// A transaction that outgrows the buffer is not one: its frames still go in writes of the
/// buffer's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// SQLite has no "unix" VFS to build on (another platform): nothing is registered.
    NoUnixVfs,
    /// SQLite refused to register the VFS.
    RegisterFailed,
    /// Opening the database through the VFS failed; it was opened through SQLite's own.
    OpenFailed,
    /// A log was opened without its database file open through this VFS, so there is no
    /// shared-memory barrier to write its frames by: they are written as they come.
    LogNotLinked,
    /// A commit's frames were still in the buffer when the commit returned (its commit frame
    /// was not recognised): they were written then.
    LateFlush,
}

impl Fallback {
    /// Every fallback, for metrics that list each cause from the start.
    pub const ALL: [Fallback; 5] = [
        Fallback::NoUnixVfs,
        Fallback::RegisterFailed,
        Fallback::OpenFailed,
        Fallback::LogNotLinked,
        Fallback::LateFlush,
    ];

    /// The `cause` label of `herald_sqlite_batched_log_fallbacks_total`.
    pub fn cause(self) -> &'static str {
        match self {
            Fallback::NoUnixVfs => "no_unix_vfs",
            Fallback::RegisterFailed => "register_failed",
            Fallback::OpenFailed => "open_failed",
            Fallback::LogNotLinked => "log_not_linked",
            Fallback::LateFlush => "late_flush",
        }
    }

    fn explanation(self) -> &'static str {
        match self {
            Fallback::NoUnixVfs => {
                "SQLite has no \"unix\" VFS to build on; the log is written the usual way"
            }
            Fallback::RegisterFailed => {
                "SQLite refused to register the batching VFS; the log is written the usual way"
            }
            Fallback::OpenFailed => {
                "could not open the database through the batching VFS; opened it the usual way"
            }
            Fallback::LogNotLinked => {
                "a SQLite log was opened without its database file; its frames are written unbatched"
            }
            Fallback::LateFlush => {
                "a commit's log frames were still buffered after the commit returned; written then"
            }
        }
    }
}

/// Logs a fallback with its cause (and `detail`: the error or the file concerned) and counts
/// it in `herald_sqlite_batched_log_fallbacks_total`.
pub fn record_fallback(fallback: Fallback, detail: &dyn std::fmt::Display) {
    metrics::counter!("herald_sqlite_batched_log_fallbacks_total", "cause" => fallback.cause())
        .increment(1);
    tracing::warn!(
        cause = fallback.cause(),
        detail = %detail,
        "SQLite batched log: {}",
        fallback.explanation()
    );
}

/// Whether `conn` opened its files through this VFS.
pub fn in_use(conn: &rusqlite::Connection) -> bool {
    let mut vfs: *mut ffi::sqlite3_vfs = null_mut();
    // SAFETY: SQLITE_FCNTL_VFS_POINTER stores the main database's VFS pointer in `vfs`; the
    // handle is the live connection we hold, and VFS structures outlive their connections.
    unsafe {
        let rc = ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_VFS_POINTER,
            addr_of_mut!(vfs).cast::<c_void>(),
        );
        rc == ffi::SQLITE_OK
            && !vfs.is_null()
            && !(*vfs).zName.is_null()
            && CStr::from_ptr((*vfs).zName) == VFS_NAME
    }
}

thread_local! {
    /// Buffers written by this thread (each one write of the real file), for tests.
    static FLUSHES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Registers the VFS (once per process) and says whether it is available; where it is not
/// (the system's VFS is not "unix"), connections open files the usual way.
pub fn register() -> Result<(), Fallback> {
    static REGISTERED: OnceLock<Result<(), Fallback>> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find and sqlite3_vfs_register are thread-safe; the VFS
        // structure is leaked, so it outlives every connection that uses it.
        unsafe {
            let real = ffi::sqlite3_vfs_find(c"unix".as_ptr());
            if real.is_null() || (*real).xOpen.is_none() {
                return Err(Fallback::NoUnixVfs);
            }
            let mut vfs = *real;
            vfs.szOsFile = (std::mem::offset_of!(ShimFile, real) + (*real).szOsFile as usize)
                .try_into()
                .unwrap_or(c_int::MAX);
            vfs.pNext = null_mut();
            vfs.zName = VFS_NAME.as_ptr();
            vfs.pAppData = real.cast::<c_void>();
            vfs.xOpen = Some(shim_open);
            // The other methods are unix's own: they do not look at their VFS argument.
            let vfs = Box::leak(Box::new(vfs));
            if ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK {
                Ok(())
            } else {
                Err(Fallback::RegisterFailed)
            }
        }
    })
}

/// Our file: SQLite's file header (pointing at [`METHODS`]), the log buffer (null for other
/// files), then the real file of the unix VFS, which must come last (its size is unix's).
#[repr(C)]
struct ShimFile {
    base: ffi::sqlite3_file,
    pending: *mut Pending,
    /// A database file's log, or a log's database file, while both are open.
    link: *mut ShimFile,
    real: ffi::sqlite3_file,
}

/// Open database files of this VFS by the address of their name (SQLite derives a log's name
/// from its database's, and `sqlite3_filename_database` gives that address back), so that a
/// log can be linked to its database file when it is opened.
static DATABASES: std::sync::Mutex<Vec<(usize, usize)>> = std::sync::Mutex::new(Vec::new());

fn databases() -> std::sync::MutexGuard<'static, Vec<(usize, usize)>> {
    DATABASES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Pending {
    buffer: Vec<u8>,
    /// Where `buffer` goes in the file.
    offset: i64,
    /// Size of a page frame's data, learned from the write after a frame header.
    page_size: Option<usize>,
    /// Set by a commit frame's header: the buffer is written once it reaches this offset.
    commit_end: Option<i64>,
    /// The last write was a frame header (the next one is its page).
    after_header: bool,
}

unsafe fn real_of(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY (callers): `file` is a ShimFile that SQLite allocated with our szOsFile.
    unsafe { addr_of_mut!((*file.cast::<ShimFile>()).real) }
}

unsafe fn real_methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY (callers): the real file was opened successfully (we only install our methods
    // then), so its methods pointer is set and static.
    unsafe { &*(*real_of(file)).pMethods }
}

/// Writes what the buffer holds, if anything, as one write of the real file.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY (callers): as for `real_of`; `pending` is ours (null or from Box::into_raw).
    unsafe {
        let pending = (*file.cast::<ShimFile>()).pending;
        if pending.is_null() || (*pending).buffer.is_empty() {
            return ffi::SQLITE_OK;
        }
        let pending = &mut *pending;
        pending.commit_end = None;
        let Some(write) = real_methods(file).xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let mut rc = ffi::SQLITE_OK;
        let mut offset = pending.offset;
        for chunk in pending.buffer.chunks(MAX_WRITE) {
            rc = write(
                real_of(file),
                chunk.as_ptr().cast::<c_void>(),
                chunk.len() as c_int,
                offset,
            );
            if rc != ffi::SQLITE_OK {
                break;
            }
            offset += chunk.len() as i64;
        }
        pending.buffer.clear();
        FLUSHES.with(|n| n.set(n.get() + 1));
        rc
    }
}

/// After a commit has returned, on the connection that made it: if its frames were somehow
/// still buffered (the commit frame not recognised), writes them now and counts it.
pub fn flush_after_commit(conn: &rusqlite::Connection) {
    let mut wal: *mut ffi::sqlite3_file = null_mut();
    // SAFETY: SQLITE_FCNTL_JOURNAL_POINTER stores the log's sqlite3_file pointer (or null)
    // in `wal`; the handle is the live connection this thread holds.
    unsafe {
        let rc = ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_JOURNAL_POINTER,
            addr_of_mut!(wal).cast::<c_void>(),
        );
        if rc != ffi::SQLITE_OK || wal.is_null() || (*wal).pMethods != &raw const METHODS {
            return;
        }
        let pending = (*wal.cast::<ShimFile>()).pending;
        if !pending.is_null() && !(*pending).buffer.is_empty() {
            // Counted every time, logged the first time only: this runs on the writer's commit
            // path, and a cause that repeats would repeat on every commit.
            if LATE_FLUSHES.fetch_add(1, Ordering::Relaxed) == 0 {
                record_fallback(
                    Fallback::LateFlush,
                    &format_args!(
                        "{} bytes (later ones are only counted)",
                        (*pending).buffer.len()
                    ),
                );
            } else {
                metrics::counter!(
                    "herald_sqlite_batched_log_fallbacks_total",
                    "cause" => Fallback::LateFlush.cause()
                )
                .increment(1);
            }
            flush(wal);
        }
    }
}

unsafe extern "C" fn shim_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite gives us szOsFile bytes at `file`; the real VFS is in pAppData.
    unsafe {
        let shim = file.cast::<ShimFile>();
        (*shim).base.pMethods = std::ptr::null();
        (*shim).pending = null_mut();
        (*shim).link = null_mut();
        let real_vfs = (*vfs).pAppData.cast::<ffi::sqlite3_vfs>();
        let Some(open) = (*real_vfs).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        let real = real_of(file);
        (*real).pMethods = std::ptr::null();
        let rc = open(real_vfs, name, real, flags, out_flags);
        if (*real).pMethods.is_null() {
            // Nothing to close: SQLite will not call xClose on a file without methods.
            return rc;
        }
        if flags & ffi::SQLITE_OPEN_MAIN_DB != 0 && !name.is_null() {
            databases().push((name as usize, shim as usize));
        }
        let database = if flags & ffi::SQLITE_OPEN_WAL != 0 && !name.is_null() {
            let database_name = ffi::sqlite3_filename_database(name) as usize;
            databases()
                .iter()
                .find(|(name, _)| *name == database_name)
                .map(|(_, file)| *file as *mut ShimFile)
        } else {
            None
        };
        // A log is buffered only when linked to its database file, whose shared-memory
        // barrier (below) is the last moment its frames must be in the file.
        if flags & ffi::SQLITE_OPEN_WAL != 0 && database.is_none() {
            let file = if name.is_null() {
                std::borrow::Cow::Borrowed("(unnamed)")
            } else {
                CStr::from_ptr(name).to_string_lossy()
            };
            record_fallback(Fallback::LogNotLinked, &file);
        }
        if let Some(database) = database {
            (*database).link = shim;
            (*shim).link = database;
            (*shim).pending = Box::into_raw(Box::new(Pending {
                buffer: Vec::with_capacity(128 << 10),
                offset: 0,
                page_size: None,
                commit_end: None,
                after_header: false,
            }));
        }
        (*shim).base.pMethods = &raw const METHODS;
        rc
    }
}

unsafe extern "C" fn shim_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite passes our file and `amount` readable bytes at `data`.
    unsafe {
        let pending = (*file.cast::<ShimFile>()).pending;
        let Ok(len) = usize::try_from(amount) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        if pending.is_null() {
            return match real_methods(file).xWrite {
                Some(write) => write(real_of(file), data, amount, offset),
                None => ffi::SQLITE_IOERR_WRITE,
            };
        }
        let continues = {
            let p = &*pending;
            p.buffer.is_empty() || p.offset + p.buffer.len() as i64 == offset
        };
        if !continues {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        let p = &mut *pending;
        if p.buffer.is_empty() {
            p.offset = offset;
        }
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len);
        p.buffer.extend_from_slice(bytes);
        let end = offset + amount as i64;
        if len == FRAME_HEADER {
            // A frame header; bytes 4..8 are the database size after commit, 0 unless this
            // frame ends a transaction.
            let commit = bytes[4..8] != [0, 0, 0, 0];
            p.commit_end = commit.then(|| end + p.page_size.map_or(1, |s| s as i64));
            p.after_header = true;
        } else {
            if p.after_header && len >= 512 {
                p.page_size = Some(len);
            }
            p.after_header = false;
        }
        // The commit frame's page is in (or, page size unknown yet, whatever followed its
        // header): the transaction's frames go to the file now.
        if p.commit_end.is_some_and(|commit_end| end >= commit_end) || p.buffer.len() >= MAX_BUFFER
        {
            return flush(file);
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn shim_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: our file; `pending` came from Box::into_raw and is freed once, here.
    unsafe {
        let flushed = flush(file);
        let shim = file.cast::<ShimFile>();
        if !(*shim).pending.is_null() {
            drop(Box::from_raw((*shim).pending));
            (*shim).pending = null_mut();
        }
        if !(*shim).link.is_null() {
            (*(*shim).link).link = null_mut();
            (*shim).link = null_mut();
        }
        databases().retain(|(_, f)| *f != shim as usize);
        let closed = match real_methods(file).xClose {
            Some(close) => close(real_of(file)),
            None => ffi::SQLITE_OK,
        };
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

/// Methods that flush the buffer first, then call the real file's.
macro_rules! flushing {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*), $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: our file, opened with real methods.
            unsafe {
                let rc = flush(file);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                match real_methods(file).$method {
                    Some(method) => method(real_of(file) $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

/// Methods that only pass through (no log buffer concerns: the shared-memory calls are made
/// on the database file, which has no buffer).
macro_rules! passing {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*), $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            // SAFETY: our file, opened with real methods.
            unsafe {
                match real_methods(file).$method {
                    Some(method) => method(real_of(file) $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

flushing!(shim_read, xRead, (data: *mut c_void, amount: c_int, offset: i64), ffi::SQLITE_IOERR_READ);
flushing!(shim_truncate, xTruncate, (size: i64), ffi::SQLITE_IOERR_TRUNCATE);
flushing!(shim_sync, xSync, (flags: c_int), ffi::SQLITE_IOERR_FSYNC);
flushing!(shim_file_size, xFileSize, (size: *mut i64), ffi::SQLITE_IOERR_FSTAT);
flushing!(shim_lock, xLock, (level: c_int), ffi::SQLITE_IOERR_LOCK);
flushing!(shim_unlock, xUnlock, (level: c_int), ffi::SQLITE_IOERR_UNLOCK);
flushing!(shim_check_reserved, xCheckReservedLock, (out: *mut c_int), ffi::SQLITE_IOERR_CHECKRESERVEDLOCK);
flushing!(shim_file_control, xFileControl, (op: c_int, arg: *mut c_void), ffi::SQLITE_NOTFOUND);
passing!(shim_sector_size, xSectorSize, (), c_int, 4096);
passing!(shim_device, xDeviceCharacteristics, (), c_int, 0);
passing!(shim_shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void), c_int, ffi::SQLITE_IOERR_SHMMAP);
passing!(shim_shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int), c_int, ffi::SQLITE_IOERR_SHMLOCK);
passing!(shim_shm_unmap, xShmUnmap, (delete: c_int), c_int, ffi::SQLITE_OK);
flushing!(shim_fetch, xFetch, (offset: i64, amount: c_int, out: *mut *mut c_void), ffi::SQLITE_IOERR_READ);
passing!(shim_unfetch, xUnfetch, (offset: i64, page: *mut c_void), c_int, ffi::SQLITE_OK);

/// Called on the database file while SQLite publishes a commit (between the two copies of the
/// wal-index header it writes; readers accept a header only when both copies agree), on the
/// thread making the commit: the log's frames must be in the file before the second copy.
/// Normally they are already (the commit frame flushes the buffer); what may remain are
/// headers SQLite rewrote in place after it. A failure to write them here cannot be reported
/// to SQLite, and letting it publish frames missing from the file would show other
/// connections pages that are not there: the process stops instead, which leaves the log as a
/// crash would — the commit undone on recovery, never acknowledged.
unsafe extern "C" fn shim_shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: our file, opened with real methods; `link` is its open log (same connection).
    unsafe {
        let wal = (*file.cast::<ShimFile>()).link;
        if !wal.is_null() && flush(wal.cast::<ffi::sqlite3_file>()) != ffi::SQLITE_OK {
            eprintln!(
                "herald: could not write the SQLite log before publishing a commit; stopping"
            );
            std::process::abort();
        }
        if let Some(barrier) = real_methods(file).xShmBarrier {
            barrier(real_of(file));
        }
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(shim_close),
    xRead: Some(shim_read),
    xWrite: Some(shim_write),
    xTruncate: Some(shim_truncate),
    xSync: Some(shim_sync),
    xFileSize: Some(shim_file_size),
    xLock: Some(shim_lock),
    xUnlock: Some(shim_unlock),
    xCheckReservedLock: Some(shim_check_reserved),
    xFileControl: Some(shim_file_control),
    xSectorSize: Some(shim_sector_size),
    xDeviceCharacteristics: Some(shim_device),
    xShmMap: Some(shim_shm_map),
    xShmLock: Some(shim_shm_lock),
    xShmBarrier: Some(shim_shm_barrier),
    xShmUnmap: Some(shim_shm_unmap),
    xFetch: Some(shim_fetch),
    xUnfetch: Some(shim_unfetch),
};

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, OpenFlags};

    fn flushes() -> u64 {
        FLUSHES.with(std::cell::Cell::get)
    }

    #[test]
    fn each_commit_is_one_write_and_whole_for_other_connections() {
        assert_eq!(register(), Ok(()));
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        let plain = Connection::open(&path).expect("open");
        plain
            .execute_batch(
                "PRAGMA journal_mode = WAL; \
                 CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL); \
                 CREATE INDEX t_by_body ON t (body);",
            )
            .expect("schema");
        let writer =
            Connection::open_with_flags_and_vfs(&path, OpenFlags::SQLITE_OPEN_READ_WRITE, VFS_NAME)
                .expect("open through the VFS");
        writer
            .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;")
            .expect("pragmas");
        assert!(
            in_use(&writer),
            "the writer opened its files through the VFS"
        );
        assert!(!in_use(&plain), "the other connection through SQLite's own");
        let mut rows = 0_i64;
        let before = flushes();
        for i in 0..200_i64 {
            writer.execute_batch("BEGIN IMMEDIATE").expect("begin");
            for j in 0..(i % 7 + 1) {
                writer
                    .execute(
                        "INSERT INTO t (body) VALUES (?1)",
                        [format!("{:0>600}", i * 10 + j)],
                    )
                    .expect("insert");
                rows += 1;
            }
            writer.execute_batch("COMMIT").expect("commit");
            flush_after_commit(&writer);
            // Another connection sees the commit at once, all of it.
            let seen: i64 = plain
                .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
                .expect("count");
            assert_eq!(seen, rows, "after commit {i}");
            if i % 50 == 49 {
                // The log starts over after a full checkpoint: its header is written again.
                plain
                    .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                    .expect("checkpoint");
            }
        }
        // One write per commit, and one more each time the log starts over (three times in
        // the loop): SQLite syncs a new log's header before the first frames follow it.
        assert_eq!(flushes() - before, 200 + 3, "one write per commit");

        // A transaction bigger than the page cache writes frames before its commit.
        writer
            .execute_batch("PRAGMA cache_size = 10; BEGIN IMMEDIATE")
            .expect("begin");
        for j in 0..3_000 {
            writer
                .execute("INSERT INTO t (body) VALUES (?1)", [format!("{j:x>1000}")])
                .expect("insert");
            rows += 1;
        }
        writer.execute_batch("COMMIT").expect("commit");
        flush_after_commit(&writer);
        // And one that is rolled back leaves nothing behind.
        writer.execute_batch("BEGIN IMMEDIATE").expect("begin");
        for j in 0..2_000 {
            writer
                .execute("INSERT INTO t (body) VALUES (?1)", [format!("{j:y>1000}")])
                .expect("insert");
        }
        writer.execute_batch("ROLLBACK").expect("rollback");
        writer
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t (body) VALUES ('last'); COMMIT;")
            .expect("last");
        flush_after_commit(&writer);
        rows += 1;
        assert_eq!(
            late_flushes(),
            0,
            "every commit was written before it returned"
        );
        let seen: i64 = plain
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(seen, rows);

        // Closed without a checkpoint: the log alone holds the rows, and is whole.
        drop(writer);
        drop(plain);
        let reopened = Connection::open(&path).expect("reopen");
        let check: String = reopened
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity");
        assert_eq!(check, "ok");
        let seen: i64 = reopened
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(seen, rows);
    }
}

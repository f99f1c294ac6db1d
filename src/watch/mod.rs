//! Repositories and what herald knows of them: their addresses (`repo`), the branch patterns it
//! watches and when each is checked next (`watches`), the last seen head of each branch, the
//! push event model (`event`), and the clients that read remotes (`github` for the REST API,
//! `gitremote` for the git protocol). Noticing pushes and fanning them out is `push`'s.
//!
//! **Boundary**: this module owns `repositories`, `watches` and `branch_heads`; others change
//! them only through its functions.
//!
//! **Invariant**: the last seen head of a branch is a commit SHA (`branch_heads`), never a date.

pub mod event;
pub mod github;
pub mod gitremote;
pub mod repo;

use rand::RngExt;
use sqlx::Row;

use crate::ids::{IdGenerator, now_ms};
use crate::store::{Db, ROWS_PER_STATEMENT, Script, StoreError, values_rows};
use repo::RepoUrl;

/// A glob over branch names or paths where `*` stays within one `/` segment and `**` crosses them.
pub fn subscription_glob(pattern: &str) -> Option<globset::GlobMatcher> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .ok()
        .map(|g| g.compile_matcher())
}

/// A repository row.
#[derive(Debug, Clone)]
pub struct Repository {
    pub id: i64,
    pub url: RepoUrl,
}

fn repository_from_row(id: i64, remote_url: &str) -> Result<Repository, StoreError> {
    // Stored addresses were validated when they were added; local ones only exist when they
    // were allowed then, so they are re-read as allowed.
    let url = RepoUrl::parse(remote_url, true)
        .map_err(|e| StoreError::Protocol(format!("stored repository {id}: {e}")))?;
    Ok(Repository { id, url })
}

pub async fn upsert_repository(
    db: &Db,
    ids: &IdGenerator,
    url: &RepoUrl,
) -> Result<Repository, StoreError> {
    sqlx::query(
        "INSERT INTO repositories (id, key, kind, remote_url, web_url, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING",
    )
    .bind(ids.next())
    .bind(url.key.clone())
    .bind(url.kind.as_str())
    .bind(url.remote.clone())
    .bind(url.web.clone())
    .bind(now_ms())
    .execute(db.writer())
    .await?;
    find_repository_by_key(db, &url.key)
        .await?
        .ok_or_else(|| StoreError::RowNotFound)
}

pub async fn find_repository_by_key(db: &Db, key: &str) -> Result<Option<Repository>, StoreError> {
    let row = sqlx::query("SELECT id, remote_url FROM repositories WHERE key = $1")
        .bind(key)
        .fetch_optional(db.reader())
        .await?;
    row.map(|row| repository_from_row(row.get(0), &row.get::<String, _>(1)))
        .transpose()
}

/// Repositories by key, as inbound webhooks look them up. Only found rows are kept: a
/// repository row never changes and is never deleted, so a kept entry cannot go stale, and a
/// key not found is asked again next time (it may have been added since).
#[derive(Default)]
pub struct RepositoryCache {
    known: std::sync::RwLock<std::collections::HashMap<String, Repository>>,
}

/// Entries kept at most; past it the cache starts over (each entry is a lookup saved, no more).
const REPOSITORY_CACHE_ENTRIES: usize = 10_000;

impl RepositoryCache {
    pub async fn find(&self, db: &Db, key: &str) -> Result<Option<Repository>, StoreError> {
        if let Some(found) = self
            .known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return Ok(Some(found.clone()));
        }
        let found = find_repository_by_key(db, key).await?;
        if let Some(repository) = &found {
            let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
            if known.len() >= REPOSITORY_CACHE_ENTRIES {
                known.clear();
            }
            known.insert(key.to_string(), repository.clone());
        }
        Ok(found)
    }
}

pub async fn find_repository(db: &Db, id: i64) -> Result<Option<Repository>, StoreError> {
    let row = sqlx::query("SELECT id, remote_url FROM repositories WHERE id = $1")
        .bind(id)
        .fetch_optional(db.reader())
        .await?;
    row.map(|row| repository_from_row(row.get(0), &row.get::<String, _>(1)))
        .transpose()
}

/// A watch claimed for a check.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueWatch {
    pub id: i64,
    pub repository_id: i64,
    pub pattern: String,
    pub etag: Option<String>,
    pub last_error: Option<String>,
}

/// Claims up to `limit` watches whose check is due for node `node_id` and moves each one's next
/// check a poll `interval` on; with several nodes, each watch is claimed by one. The claim
/// records the node, so that a check lost with its node is made again at once
/// ([`recheck_claims_of`]).
pub async fn claim_due_watches(
    db: &Db,
    interval: std::time::Duration,
    limit: usize,
    node_id: i64,
) -> Result<Vec<DueWatch>, StoreError> {
    let interval = interval.as_millis() as i64;
    let now = now_ms();
    // Asked of a reader first: the claim is a write, and on SQLite every write (a push's
    // commit among them) queues behind it. Twenty claims a second that found nothing due held
    // up about one push in 70 by 0.1–1.2 ms (measured at 1,000 webhook deliveries/s).
    let due: Option<i64> =
        sqlx::query_scalar("SELECT id FROM watches WHERE next_check_at <= $1 LIMIT 1")
            .bind(now)
            .fetch_optional(db.reader())
            .await?;
    if due.is_none() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "UPDATE watches SET last_checked_at = $2, claimed_by = $4, \
           next_check_at = CASE WHEN next_check_at + $1 > $2 \
           THEN next_check_at + $1 ELSE $2 + $1 END \
         WHERE id IN (SELECT id FROM watches WHERE next_check_at <= $2 \
           ORDER BY next_check_at LIMIT $3{}) \
         RETURNING id, repository_id, pattern, etag, last_error",
        db.skip_locked()
    );
    sqlx::query_as::<_, DueWatch>(sqlx::AssertSqlSafe(sql))
        .bind(interval)
        .bind(now)
        .bind(limit as i64)
        .bind(node_id)
        .fetch_all(db.writer())
        .await
}

/// The longest a check may take (a git command's timeout; GitHub calls are bounded by the
/// shorter HTTP timeout): a lapsed node's checks claimed this long before its last renewal may
/// still have been in flight.
pub const LONGEST_CHECK: std::time::Duration = gitremote::COMMAND_TIMEOUT;

/// Makes the checks that node `node_id` claimed at or after `since` (Unix ms) due again at
/// `now`, inside the caller's transaction: the node's lease lapsed, and a check it had in
/// flight may never have been made. A check it did finish is made once more, which the push
/// path's de-duplication makes harmless. Returns how many.
pub async fn recheck_claims_of(
    conn: &mut sqlx::AnyConnection,
    node_id: i64,
    since: i64,
    now: i64,
) -> Result<u64, StoreError> {
    let due = sqlx::query(
        "UPDATE watches SET next_check_at = $1 \
         WHERE claimed_by = $2 AND last_checked_at >= $3 AND next_check_at > $1",
    )
    .bind(now)
    .bind(node_id)
    .bind(since)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(due)
}

/// Records a check's outcome on its watch: the validator for the next conditional request and
/// the last error (none after a success).
pub async fn record_check(
    db: &Db,
    watch_id: i64,
    etag: Option<String>,
    error: Option<String>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE watches SET etag = $1, last_error = $2 WHERE id = $3")
        .bind(etag)
        .bind(error)
        .bind(watch_id)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// Starts watching a branch pattern if nobody watched it yet. The first check is placed at a
/// random point of the interval, so that many watches spread out instead of bursting.
pub async fn ensure_watch(
    db: &Db,
    ids: &IdGenerator,
    repository_id: i64,
    pattern: &str,
    poll_interval_ms: i64,
) -> Result<(), StoreError> {
    let offset = rand::rng().random_range(0..poll_interval_ms.max(1));
    sqlx::query(
        "INSERT INTO watches (id, repository_id, pattern, next_check_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (repository_id, pattern) DO NOTHING",
    )
    .bind(ids.next())
    .bind(repository_id)
    .bind(pattern)
    .bind(now_ms() + offset)
    .execute(db.writer())
    .await?;
    Ok(())
}

/// Records a branch head as the starting point, unless one is known already.
pub async fn set_baseline_head(
    db: &Db,
    repository_id: i64,
    branch: &str,
    sha: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO branch_heads (repository_id, branch, sha, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (repository_id, branch) DO NOTHING",
    )
    .bind(repository_id)
    .bind(branch)
    .bind(sha)
    .bind(now_ms())
    .execute(db.writer())
    .await?;
    Ok(())
}

/// Adds to `script` (a push's group commit) the branches' new heads and the removal of the
/// heads of deleted branches.
pub fn write_heads_into(
    script: &mut Script,
    moved: &[(i64, &str, &str)],
    removed: &[(i64, &str)],
    now_ms: i64,
) {
    for chunk in moved.chunks(ROWS_PER_STATEMENT) {
        script.push(format!(
            "INSERT INTO branch_heads (repository_id, branch, sha, updated_at) VALUES {} \
             ON CONFLICT (repository_id, branch) DO UPDATE SET sha = excluded.sha, updated_at = excluded.updated_at",
            values_rows(chunk.len(), 4)
        ));
        for (repository, branch, sha) in chunk {
            script
                .bind(*repository)
                .bind(*branch)
                .bind(*sha)
                .bind(now_ms);
        }
    }
    for (repository, branch) in removed {
        script
            .push("DELETE FROM branch_heads WHERE repository_id = $1 AND branch = $2")
            .bind(*repository)
            .bind(*branch);
    }
}

pub async fn branch_head(
    db: &Db,
    repository_id: i64,
    branch: &str,
) -> Result<Option<String>, StoreError> {
    sqlx::query_scalar("SELECT sha FROM branch_heads WHERE repository_id = $1 AND branch = $2")
        .bind(repository_id)
        .bind(branch)
        .fetch_optional(db.reader())
        .await
}

/// Stops watching a branch pattern that no subscription and no project needs any more.
pub async fn drop_unneeded_watch(
    conn: &mut sqlx::AnyConnection,
    repository_id: i64,
    pattern: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM watches WHERE repository_id = $1 AND pattern = $2 AND NOT EXISTS \
         (SELECT 1 FROM subscriptions WHERE repository_id = $1 AND branch = $2) AND NOT EXISTS \
         (SELECT 1 FROM projects WHERE repository_id = $1 AND branches = $2)",
    )
    .bind(repository_id)
    .bind(pattern)
    .execute(conn)
    .await?;
    Ok(())
}

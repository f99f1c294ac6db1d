//! Area C's accounts: sign-up confirmed by e-mail, argon2id passwords, revocable login tokens.
//! The HTTP side (reference shapes) is in `http.rs`; `Account` is herald's identity for projects,
//! chat and contacts.

pub mod auth;
pub mod http;
pub mod password;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ids::now_ms;
use crate::store::{Db, StoreError};

/// How long a sign-up link stays valid.
pub const SIGNUP_KEY_TTL_MS: i64 = 24 * 3600 * 1000;
/// How long a login token stays valid.
pub const TOKEN_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

/// The user object of the chat protocol: `{"id": "<snowflake>", "name", "profile": url|null}`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Account {
    #[serde(with = "crate::ids::as_string")]
    #[schema(value_type = String, example = "7340032153862881280")]
    pub id: i64,
    pub name: String,
    #[serde(skip)]
    pub email: String,
    pub profile: Option<String>,
}

/// An account name: 2 to 32 letters (any script), digits, `_`, `-` or `.`.
pub fn valid_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    let count = name.chars().count();
    if !(2..=32).contains(&count) {
        return Err("name: 2 to 32 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err("name: letters, digits, '_', '-' or '.' only".into());
    }
    Ok(name.to_string())
}

pub fn valid_email(raw: &str) -> Result<String, String> {
    let email = raw.trim();
    if email.len() > 254 {
        return Err("email: too long".into());
    }
    email
        .parse::<lettre::Address>()
        .map(|_| email.to_lowercase())
        .map_err(|_| format!("email: {email:?} is not an e-mail address"))
}

pub fn valid_password(raw: &str) -> Result<(), String> {
    let count = raw.chars().count();
    if count < 8 {
        return Err("password: at least 8 characters".into());
    }
    if raw.len() > 1024 {
        return Err("password: at most 1024 bytes".into());
    }
    Ok(())
}

/// argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's recommendation), on a
/// blocking thread so that hashing never stalls the async workers. Unbounded: every request
/// path (sign-up, login, password change and reset) goes through [`PasswordHashing`]; this is
/// for tools (the benchmark).
pub async fn hash_password(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || hash_password_now(&password))
        .await
        .map_err(|e| e.to_string())?
}

/// Whether `password` matches the stored hash; unbounded like [`hash_password`].
pub async fn verify_password(password: String, stored: String) -> bool {
    tokio::task::spawn_blocking(move || verify_password_now(&password, &stored))
        .await
        .unwrap_or(false)
}

/// How long a request waits for a free hashing slot before it is answered 503.
pub const HASHING_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Password hashing (sign-up) and checking (login) with bounded concurrency: each argon2id run
/// holds 19 MiB and a core for its whole length, so a burst of sign-ups or logins would
/// otherwise take the process's memory and every other user's latency with it. At most `size`
/// run at once (`HERALD_PASSWORD_HASHES`, one per core by default); the rest wait their turn, in
/// order, for at most `wait`, and are then refused ([`HashingBusy`]: 503 with `Retry-After`).
///
/// A slot is held by the hashing job itself, so a client that disconnects mid-hash does not
/// free its slot before the hash is done.
///
/// The hashes run on threads of their own, one per slot, at a lower scheduling priority (nice
/// [`HASHING_NICE`], on Linux): a burst of sign-ups then takes the cores only when nothing else
/// wants them, so that the chat and the API keep their latency while it lasts, and the hashing
/// finishes as fast as spare CPU allows.
pub struct PasswordHashing {
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    size: usize,
    wait: std::time::Duration,
    in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    peak: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    runs: std::sync::atomic::AtomicU64,
    jobs: std::sync::mpsc::Sender<HashingJob>,
}

type HashingJob = Box<dyn FnOnce() + Send>;

/// The nice value of the hashing threads: below everything else herald runs.
pub const HASHING_NICE: i32 = 10;

/// The hashing threads' loop: each takes the next job, at a lowered priority.
fn hashing_thread(jobs: std::sync::Arc<std::sync::Mutex<std::sync::mpsc::Receiver<HashingJob>>>) {
    lower_this_threads_priority();
    loop {
        let job = match jobs.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            // The PasswordHashing is gone.
            return;
        };
        // A job that panics loses its answer (its caller is told) but not this thread.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            tracing::error!("a password hashing job panicked");
        }
    }
}

#[cfg(target_os = "linux")]
fn lower_this_threads_priority() {
    // On Linux the nice value is per thread: PRIO_PROCESS with 0 names the calling thread.
    // SAFETY: setpriority only reads its integer arguments.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, HASHING_NICE) } != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "could not lower the password hashing thread's priority"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority() {}

/// No hashing slot came free in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingBusy;

impl PasswordHashing {
    pub fn new(size: usize, wait: std::time::Duration) -> PasswordHashing {
        let size = size.max(1);
        let (jobs, receiver) = std::sync::mpsc::channel::<HashingJob>();
        let receiver = std::sync::Arc::new(std::sync::Mutex::new(receiver));
        for n in 0..size {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("herald-hash-{n}"))
                .spawn(move || hashing_thread(receiver));
            if let Err(error) = spawned {
                tracing::error!(%error, "could not start a password hashing thread");
            }
        }
        PasswordHashing {
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(size)),
            size,
            wait,
            in_flight: Default::default(),
            peak: Default::default(),
            runs: Default::default(),
            jobs,
        }
    }

    /// One slot per core.
    pub fn per_core() -> PasswordHashing {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        PasswordHashing::new(cores, HASHING_WAIT)
    }

    /// How many hashes may run at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The most hashes that ran at once since start.
    pub fn peak(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many hashes and checks were given a slot since start.
    pub fn runs(&self) -> u64 {
        self.runs.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<Option<T>, HashingBusy> {
        use std::sync::atomic::Ordering;
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| HashingBusy)?
            .map_err(|_| HashingBusy)?;
        self.runs.fetch_add(1, Ordering::SeqCst);
        let (in_flight, peak) = (self.in_flight.clone(), self.peak.clone());
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: HashingJob = Box::new(move || {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            metrics::gauge!("herald_password_hashes_in_flight").increment(1.0);
            let result = work();
            in_flight.fetch_sub(1, Ordering::SeqCst);
            metrics::gauge!("herald_password_hashes_in_flight").decrement(1.0);
            drop(permit);
            // The caller may have gone (its client disconnected); the hash is simply dropped.
            let _ = answer.send(result);
        });
        if self.jobs.send(job).is_err() {
            tracing::error!("the password hashing threads are gone");
            return Ok(None);
        }
        match answered.await {
            Ok(result) => Ok(Some(result)),
            Err(_) => {
                tracing::error!("a password hashing job ended without an answer");
                Ok(None)
            }
        }
    }

    /// An argon2id hash of `password` (see [`hash_password`]).
    pub async fn hash(&self, password: String) -> Result<Result<String, String>, HashingBusy> {
        Ok(self
            .run(move || hash_password_now(&password))
            .await?
            .unwrap_or_else(|| Err("the hashing task failed".into())))
    }

    /// Whether `password` matches `stored` (see [`verify_password`]).
    pub async fn verify(&self, password: String, stored: String) -> Result<bool, HashingBusy> {
        Ok(self
            .run(move || verify_password_now(&password, &stored))
            .await?
            .unwrap_or(false))
    }
}

fn hash_password_now(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash: PasswordHash| hash.to_string())
        .map_err(|e| e.to_string())
}

fn verify_password_now(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A random secret for links and tokens (256 bits, URL-safe).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Secrets are stored as their SHA-256, so a database leak hands out no working key or token.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub async fn name_or_email_taken(
    db: &Db,
    name: &str,
    email: &str,
) -> Result<Option<&'static str>, StoreError> {
    let taken: Option<(String, String)> =
        sqlx::query_as("SELECT name, email FROM accounts WHERE name = $1 OR email = $2 LIMIT 1")
            .bind(name)
            .bind(email)
            .fetch_optional(db.reader())
            .await?;
    Ok(taken.map(|(taken_name, _)| if taken_name == name { "name" } else { "email" }))
}

fn account_from(row: (i64, String, String, Option<String>)) -> Account {
    Account {
        id: row.0,
        name: row.1,
        email: row.2,
        profile: row.3,
    }
}

pub async fn find_by_email(db: &Db, email: &str) -> Result<Option<(Account, String)>, StoreError> {
    let row: Option<(i64, String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT id, name, email, profile, password_hash FROM accounts WHERE email = $1",
    )
    .bind(email)
    .fetch_optional(db.reader())
    .await?;
    Ok(
        row.map(|(id, name, email, profile, hash)| {
            (account_from((id, name, email, profile)), hash)
        }),
    )
}

/// The name of the bot account that signs herald's own messages.
pub const BOT_NAME: &str = "herald";

/// Makes sure the bot account exists (on any node, any number of times) and returns its id.
pub async fn ensure_bot_account(db: &Db, ids: &crate::ids::IdGenerator) -> Result<i64, StoreError> {
    // The password hash is not a valid PHC string: nobody can ever log in as the bot.
    sqlx::query(
        "INSERT INTO accounts (id, name, email, password_hash, created_at) VALUES ($1, $2, $3, '!', $4) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(ids.next())
    .bind(BOT_NAME)
    .bind("herald-bot@localhost")
    .bind(now_ms())
    .execute(db.writer())
    .await?;
    sqlx::query_scalar("SELECT id FROM accounts WHERE name = $1")
        .bind(BOT_NAME)
        .fetch_one(db.writer())
        .await
}

pub async fn find_by_name(db: &Db, name: &str) -> Result<Option<Account>, StoreError> {
    let row = sqlx::query_as("SELECT id, name, email, profile FROM accounts WHERE name = $1")
        .bind(name)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.map(account_from))
}

/// The account a login token belongs to, if the token is live.
pub async fn account_for_token(db: &Db, token: &str) -> Result<Option<Account>, StoreError> {
    let row = sqlx::query_as(
        "SELECT a.id, a.name, a.email, a.profile FROM auth_tokens t JOIN accounts a ON a.id = t.account_id \
         WHERE t.token_hash = $1 AND t.revoked = 0 AND t.expires_at > $2",
    )
    .bind(secret_hash(token))
    .bind(now_ms())
    .fetch_optional(db.reader())
    .await?;
    Ok(row.map(account_from))
}

/// Whether `token` is a live login token (`state::AppInner::login_token_is_live`).
pub fn is_live_token<'a>(
    db: &'a Db,
    token: &'a str,
) -> futures_util::future::BoxFuture<'a, Result<bool, StoreError>> {
    Box::pin(async move { Ok(account_for_token(db, token).await?.is_some()) })
}

pub async fn issue_token(db: &Db, account_id: i64) -> Result<String, StoreError> {
    issue_token_for(db, account_id, TOKEN_TTL_MS).await
}

/// A login token that lives `ttl_ms` (the chat page's short-lived socket tickets).
pub async fn issue_token_for(db: &Db, account_id: i64, ttl_ms: i64) -> Result<String, StoreError> {
    let token = random_secret();
    let now = now_ms();
    sqlx::query("INSERT INTO auth_tokens (token_hash, account_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(secret_hash(&token))
        .bind(account_id)
        .bind(now)
        .bind(now + ttl_ms)
        .execute(db.writer())
        .await?;
    Ok(token)
}

pub async fn revoke_token(db: &Db, token: &str) -> Result<bool, StoreError> {
    let revoked =
        sqlx::query("UPDATE auth_tokens SET revoked = 1 WHERE token_hash = $1 AND revoked = 0")
            .bind(secret_hash(token))
            .execute(db.writer())
            .await?;
    Ok(revoked.rows_affected() > 0)
}

/// Deletes up to `{BATCH}` login tokens (and the chat page's socket tickets) that expired
/// before `$1` (Unix ms); history pruning (`retention`) runs it in paced batches. An expired
/// token is refused whether its row is there or not.
pub const PRUNE_EXPIRED_TOKENS_SQL: &str = "DELETE FROM auth_tokens WHERE token_hash IN \
     (SELECT token_hash FROM auth_tokens WHERE expires_at < $1 ORDER BY expires_at LIMIT {BATCH})";

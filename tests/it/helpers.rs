//! Starting the real herald for a test: a fresh database (a SQLite file, or a new PostgreSQL
//! database), port 0, fake platforms, and one helper per endpoint.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use herald::config::Settings;
use herald::startup::Application;
use herald::state::AppState;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use herald::testkit::wait_until;

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one test body on SQLite and on PostgreSQL: `both_backends!(name, …)` makes
/// `name::sqlite` and `name::postgres` from `async fn name(env: TestEnv)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    if let Some(env) = $crate::helpers::TestEnv::new($crate::helpers::Backend::Sqlite).await {
                        super::$name(env).await;
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(env) = $crate::helpers::TestEnv::new($crate::helpers::Backend::Postgres).await {
                        super::$name(env).await;
                    }
                }
            }
        )*
    };
}

fn postgres_base_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| herald::testkit::postgres::DEFAULT_SERVER.into())
}

/// Whether PostgreSQL answers; under `CI=true` its absence fails the test instead of skipping.
fn postgres_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let url = url::Url::parse(&postgres_base_url()).expect("HERALD_TEST_POSTGRES_URL is a URL");
        let host = url.host_str().unwrap_or("127.0.0.1").to_string();
        let port = url.port().unwrap_or(5432);

        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
            .ok()
            .and_then(|mut addrs| addrs.next())
            .is_some_and(|addr| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
            })
    })
}

/// A test's own storage: a data dir, and a SQLite file or a PostgreSQL database made for it.
pub struct TestEnv {
    #[allow(dead_code)]
    pub backend: Backend,
    pub data_dir: Arc<tempfile::TempDir>,
    pub database_url: String,
    postgres_name: Option<String>,
}

impl TestEnv {
    pub async fn new(backend: Backend) -> Option<TestEnv> {
        sqlx::any::install_default_drivers();
        let data_dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        match backend {
            Backend::Sqlite => Some(TestEnv {
                backend,
                database_url: format!("sqlite://{}", data_dir.path().join("herald.db").display()),
                data_dir,
                postgres_name: None,
            }),
            Backend::Postgres => {
                if !postgres_available() {
                    if std::env::var("CI").is_ok_and(|v| v == "true") {
                        panic!(
                            "CI=true but PostgreSQL is not reachable at {}: the PostgreSQL runs must not be skipped",
                            postgres_base_url()
                        );
                    }
                    eprintln!(
                        "SKIPPED on PostgreSQL: nothing answers at {} (start PostgreSQL or set HERALD_TEST_POSTGRES_URL)",
                        postgres_base_url()
                    );
                    return None;
                }
                let name = format!("herald_t_{:016x}", rand_u64());
                let database_url =
                    herald::testkit::postgres::create_database(&postgres_base_url(), &name).await;
                Some(TestEnv {
                    backend,
                    database_url,
                    data_dir,
                    postgres_name: Some(name),
                })
            }
        }
    }

    /// Settings for a test app on this storage: port 0, fast polling and retries, local
    /// repositories allowed, the operator token set; `extra` overrides.
    pub fn settings(&self, extra: &[(&str, &str)]) -> Settings {
        let mut raw: BTreeMap<String, String> = [
            ("HERALD_LISTEN", "127.0.0.1:0".to_string()),
            (
                "HERALD_DATA_DIR",
                self.data_dir.path().display().to_string(),
            ),
            ("HERALD_DATABASE_URL", self.database_url.clone()),
            ("HERALD_POLL_INTERVAL", "200ms".into()),
            (
                "HERALD_RETRY_SCHEDULE",
                "100ms,200ms,300ms,400ms,500ms".into(),
            ),
            ("HERALD_DELIVERY_TIMEOUT", "2s".into()),
            ("HERALD_ALLOW_PRIVATE_TARGETS", "true".into()),
            ("HERALD_ADMIN_TOKEN", ADMIN_TOKEN.into()),
            ("HERALD_TELEGRAM_RATE", "1000".into()),
            ("HERALD_TELEGRAM_CHAT_RATE", "100".into()),
            // Tests sign many accounts up from one address; `tests/it/limits.rs` sets the limit.
            ("HERALD_SIGNUPS_PER_MINUTE", "1000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // CI runs the suite a second time with the batching SQLite VFS off (`.ci/run`); the
        // apps' settings are built from this map, not the environment, so it is passed on here.
        if let Ok(value) = std::env::var("HERALD_SQLITE_BATCHED_LOG") {
            raw.insert("HERALD_SQLITE_BATCHED_LOG".into(), value);
        }
        for (k, v) in extra {
            raw.insert(k.to_string(), v.to_string());
        }
        Settings::from_map(raw).expect("test settings are valid")
    }

    pub async fn spawn(&self, extra: &[(&str, &str)]) -> TestApp {
        spawn_with(self.settings(extra)).await
    }

    /// An app whose calendar time (schedules, digests, quiet hours) is `clock`'s.
    #[allow(dead_code)]
    pub async fn spawn_with_clock(
        &self,
        extra: &[(&str, &str)],
        clock: Arc<herald::clock::ManualClock>,
    ) -> TestApp {
        let app = Application::build_with_clock(self.settings(extra), clock)
            .await
            .expect("herald builds");
        run_app(app)
    }

    /// Drops the PostgreSQL database; best effort (a failed test leaves it for inspection).
    pub async fn cleanup(self) {
        if let Some(name) = &self.postgres_name {
            herald::testkit::postgres::drop_database(&postgres_base_url(), name).await;
        }
    }
}

pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    /// This node's knowledge base.
    pub kb: std::sync::Arc<herald::kb::KnowledgeBase>,
    /// The chat's bus, sessions and the herald bot's account.
    pub chat: herald::chat::ChatState,
    /// Password hashing for sign-ups and logins, with its bound.
    #[allow(dead_code)]
    pub hashing: Arc<herald::accounts::PasswordHashing>,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub async fn spawn_with(settings: Settings) -> TestApp {
    run_app(Application::build(settings).await.expect("herald builds"))
}

pub fn run_app(app: Application) -> TestApp {
    let address = format!("http://{}", app.address());
    let state = app.state().clone();
    let kb = app.knowledge_base().clone();
    let chat = app.chat().clone();
    let hashing = app.password_hashing();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        address,
        client: reqwest::Client::new(),
        state,
        kb,
        chat,
        hashing,
        shutdown,
        handle,
    }
}

impl TestApp {
    /// Graceful stop: in-flight deliveries finish, the server closes.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.handle).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_reference(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .client
            .post(self.url("/api/"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn subscribe_reference(
        &self,
        channel: &str,
        id: &str,
        repository: &str,
        branch: &str,
    ) {
        let body = serde_json::json!({
            "id": id, "fav_repository": repository, "nick_name": "tester", "type": channel, "branch": branch
        });
        let (status, answer) = self.post_reference(body.to_string()).await;
        assert_eq!(status, 200, "POST /api/ failed: {answer}");
        assert_eq!(answer["code"], 200);
    }

    pub async fn get_reference(&self, params: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .client
            .get(self.url("/api/"))
            .query(params)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// One number from the database (tests look at rows to know that work is done).
    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(self.state.db.reader())
            .await
            .expect("count query")
    }

    /// Waits until the watcher has seen `sha` as the head of `branch` (in any repository).
    pub async fn wait_for_head(&self, branch: &str, sha: &str) {
        let db = self.state.db.clone();
        wait_until(&format!("head of {branch} to be {sha}"), WAIT, || {
            let db = db.clone();
            let branch = branch.to_string();
            let sha = sha.to_string();
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM branch_heads WHERE branch = $1 AND sha = $2",
                )
                .bind(branch)
                .bind(sha)
                .fetch_one(db.reader())
                .await
                .unwrap_or(0)
                    > 0
            }
        })
        .await;
    }

    /// Waits until nothing is left to send right now (no pending delivery).
    pub async fn wait_for_outbox_drained(&self) {
        let db = self.state.db.clone();
        wait_until("every delivery to be settled", WAIT, || {
            let db = db.clone();
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'",
                )
                .fetch_one(db.reader())
                .await
                .unwrap_or(1)
                    == 0
            }
        })
        .await;
    }
}

/// Sends GitHub's push webhook for commit number `i` on `repository`'s `main` (from `before`),
/// signed with `secret`, as delivery `delivery`, to herald at `base`; it must be accepted (202).
/// Returns the commit the push moved `main` to.
pub async fn send_signed_push(
    client: &reqwest::Client,
    base: &str,
    secret: &str,
    repository: &str,
    before: &str,
    i: usize,
    delivery: &str,
) -> String {
    let after = format!("{:040x}", i + 1);
    let body = serde_json::json!({
        "ref": "refs/heads/main", "before": before, "after": after,
        "commits": [{"id": after, "message": format!("push {i}"), "timestamp": "2026-11-22T10:00:00Z",
            "author": {"name": "a", "email": "a@example.com"}, "committer": {"name": "a", "email": "a@example.com"}}],
        "repository": {"full_name": repository, "html_url": format!("https://github.com/{repository}")}
    })
    .to_string();
    let response = client
        .post(format!("{base}/hooks/github"))
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .header(
            "x-hub-signature-256",
            herald::projects::signing::github_signature(secret, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .expect("push");
    assert_eq!(response.status().as_u16(), 202, "push {delivery}");
    after
}

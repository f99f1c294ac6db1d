//! A full disk, for real (issue 25): the database on a small tmpfs the test mounts (SQLite: the
//! data directory; PostgreSQL: a tablespace holding the test's database), filled to the last
//! byte while sign-ups, pushes and DMs (over the socket, and from the chat page's form) arrive
//! through the real app, then freed. What must hold: every acknowledged write is stored (counted
//! again after the app stopped, on fresh connections); a write that cannot be stored is refused
//! with 503 (the API's `storage_unavailable`; a page that says nothing was saved), never 500, and
//! is not stored; `/readyz` is unready while writes fail and ready again after; every path
//! recovers by itself within seconds, without a restart.
//!
//! The test runs as root to mount; where mounting is not permitted it says SKIPPED, and fails
//! under `CI=true`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use herald::crypto::hmac_sha256_hex;
use herald::testkit::fake_github::FakeGithub;
use herald::testkit::fake_smtp::FakeSmtp;
use herald::testkit::fake_telegram::FakeTelegram;
use herald::testkit::git_repo::GitRepo;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{Backend, TestApp, TestEnv, WAIT, rand_u64};
use crate::web_pages::PageClient;

const SECRET: &str = "full-disk webhook secret";
/// How soon after space is back every kind of write must be stored again.
const RECOVER_WITHIN: Duration = Duration::from_secs(10);
/// How long the test keeps writing to the full disk, at most, waiting for refusals.
const FULL_FOR_AT_MOST: Duration = Duration::from_secs(60);
/// ... and at least, once writes are refused: a few rounds of failures, not a single blip.
const FULL_FOR_AT_LEAST: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_nothing_acknowledged_and_heals_by_itself_sqlite() {
    let Some(disk) = Tmpfs::mount(24, None) else {
        return;
    };
    let Some(mut env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    env.database_url = format!("sqlite://{}", disk.path.join("herald.db").display());
    let data_dir = disk.path.display().to_string();
    full_disk_run(&env, &disk, &[("HERALD_DATA_DIR", data_dir.as_str())]).await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_nothing_acknowledged_and_heals_by_itself_postgres() {
    let Some(env) = TestEnv::new(Backend::Postgres).await else {
        return;
    };
    // PostgreSQL writes as its own user: the tablespace's directory must be its.
    let Some(disk) = Tmpfs::mount(24, Some("postgres")) else {
        env.cleanup().await;
        return;
    };
    let tablespace = format!("herald_full_{:08x}", rand_u64() as u32);
    let name = env
        .database_url
        .rsplit('/')
        .next()
        .expect("a database name")
        .to_string();
    // Declared after the disk, so dropped before it, on every way out of this test (a failed
    // assertion too): PostgreSQL must forget the database and the tablespace before the file
    // system under them goes, or its checkpoints fail on their missing files from then on.
    let _forget = ForgetTablespace {
        admin_url: env.database_url.clone(),
        database: name.clone(),
        tablespace: tablespace.clone(),
    };
    let admin = postgres_admin(&env.database_url).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLESPACE {tablespace} LOCATION '{}'",
        disk.path.display()
    )))
    .execute(&admin)
    .await
    .expect("create the tablespace on the tmpfs");
    // The test's database moves to the tablespace while it is still empty.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} SET TABLESPACE {tablespace}"
    )))
    .execute(&admin)
    .await
    .expect("move the test database to the tablespace");
    admin.close().await;
    full_disk_run(&env, &disk, &[]).await;
    env.cleanup().await;
}

/// Drops a test database and its tablespace when dropped, from a thread of its own (a `Drop`
/// cannot wait on the test's runtime).
struct ForgetTablespace {
    admin_url: String,
    database: String,
    tablespace: String,
}

impl Drop for ForgetTablespace {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let statements = [
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database),
            format!("DROP TABLESPACE IF EXISTS {}", self.tablespace),
        ];
        let forgot = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the tablespace with");
            runtime.block_on(async {
                let admin = postgres_admin(&admin_url).await;
                for statement in statements {
                    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
                        .execute(&admin)
                        .await
                    {
                        eprintln!("could not {statement}: {e}");
                    }
                }
                admin.close().await;
            });
        })
        .join();
        if forgot.is_err() {
            eprintln!("could not drop the test's tablespace {}", self.tablespace);
        }
    }
}

async fn postgres_admin(database_url: &str) -> sqlx::AnyPool {
    let mut url = url::Url::parse(database_url).expect("the test database's URL");
    url.set_path("/postgres");
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url.as_str())
        .await
        .expect("connect to PostgreSQL's own database")
}

/// What the app said to the writes: what it acknowledged and what it refused.
#[derive(Default)]
struct Ledger {
    pushes: Kind,
    signups: Kind,
    dms: Kind,
    /// DMs sent from the chat page's form.
    page_dms: Kind,
}

#[derive(Default)]
struct Kind {
    /// Keys (pushes' `after` SHAs, sign-up e-mails, DM texts) of acknowledged writes.
    acknowledged: BTreeSet<String>,
    /// Keys of writes refused with 503 `storage_unavailable`.
    refused: BTreeSet<String>,
    /// When the last acknowledgement came.
    last_acknowledged: Option<Instant>,
}

impl Kind {
    fn record(&mut self, key: String, stored: bool) -> bool {
        if stored {
            self.acknowledged.insert(key);
            self.last_acknowledged = Some(Instant::now());
        } else {
            self.refused.insert(key);
        }
        stored
    }
}

impl Ledger {
    fn refused(&self) -> usize {
        self.pushes.refused.len()
            + self.signups.refused.len()
            + self.dms.refused.len()
            + self.page_dms.refused.len()
    }
}

/// The writer: an app with a watched repository and two friends, one of them on a socket, the
/// other signed in on the pages (in Korean).
struct Load {
    app: TestApp,
    ws: Ws,
    page: PageClient,
    chat_id: i64,
    before: String,
    round: usize,
    ledger: Ledger,
}

impl Load {
    /// One sign-up, one push, one DM over the socket and one from the chat page; says whether
    /// all four were acknowledged.
    async fn round(&mut self) -> bool {
        self.round += 1;
        let round = self.round;
        let signup = self.sign_up(round).await;
        let push = self.push(round).await;
        let dm = self.dm(round).await;
        let page_dm = self.page_dm(round).await;
        signup && push && dm && page_dm
    }

    /// A DM posted with the chat page's form: 303 back to the conversation when stored; when it
    /// cannot be, a 503 page that says nothing was saved (not the generic 500 page).
    async fn page_dm(&mut self, round: usize) -> bool {
        let content = format!("full-disk page DM {round}");
        let sent = self
            .page
            .post(
                &format!("/chat/{}/send", self.chat_id),
                &[("content", content.as_str())],
            )
            .await;
        match sent.status {
            303 => {
                assert_eq!(
                    sent.location(),
                    Some(format!("/chat/{}#compose", self.chat_id).as_str())
                );
                self.ledger.page_dms.record(content, true)
            }
            503 => {
                let t = &herald::web::i18n::KO;
                assert!(
                    sent.body.contains(t.error_storage_title)
                        && sent.body.contains(t.error_storage_full),
                    "a page refused for lack of storage says so, in the visitor's language: {}",
                    sent.body
                );
                assert!(
                    !sent.body.contains(t.error_internal),
                    "not the generic error page: {}",
                    sent.body
                );
                assert_eq!(
                    sent.headers
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()),
                    Some("5"),
                    "a 503 page for storage has Retry-After"
                );
                self.ledger.page_dms.record(content, false)
            }
            status => panic!("page DM {round}: {status} {}", sent.body),
        }
    }

    async fn sign_up(&mut self, round: usize) -> bool {
        let email = format!("user{round}@example.org");
        let response = self
            .app
            .client
            .post(self.app.url("/api/v1/auth/register"))
            .json(&json!({"name": format!("user{round}"), "email": email, "password": "a long enough password"}))
            .send()
            .await
            .expect("register");
        let status = response.status().as_u16();
        let retry_after = response.headers().contains_key("retry-after");
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        let stored = match status {
            200 => true,
            503 => {
                assert_eq!(answer["payload"]["code"], json!(503), "{answer}");
                assert!(
                    answer["payload"]["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("storage")),
                    "a sign-up refused for lack of storage says so: {answer}"
                );
                assert!(retry_after, "a 503 for storage has Retry-After");
                false
            }
            _ => panic!("sign-up {round}: {status} {answer}"),
        };
        self.ledger.signups.record(email, stored)
    }

    async fn push(&mut self, round: usize) -> bool {
        let after = format!("{:016x}{:016x}{:08x}", rand_u64(), rand_u64(), round as u32);
        let body = json!({
            "ref": "refs/heads/main", "before": self.before, "after": after,
            "created": false, "deleted": false, "forced": false, "base_ref": null,
            "compare": "https://github.com/octo/hello/compare/a...b",
            "commits": [{
                "id": after, "tree_id": after, "distinct": true, "message": format!("round {round}"),
                "timestamp": "2026-12-07T10:00:00+09:00",
                "url": format!("https://github.com/octo/hello/commit/{after}"),
                "author": {"name": "Test Author", "email": "author@example.com", "username": "tester"},
                "committer": {"name": "Test Author", "email": "author@example.com", "username": "tester"},
                "added": ["a"], "removed": [], "modified": []
            }],
            "repository": {"id": 1, "name": "hello", "full_name": "octo/hello",
                "html_url": "https://github.com/octo/hello", "clone_url": "https://github.com/octo/hello.git"},
            "pusher": {"name": "tester", "email": "author@example.com"},
            "sender": {"login": "tester", "id": 1}
        })
        .to_string();
        let signature = format!(
            "sha256={}",
            hmac_sha256_hex(SECRET.as_bytes(), body.as_bytes())
        );
        let response = self
            .app
            .client
            .post(self.app.url("/hooks/github"))
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .header("x-github-delivery", format!("full-disk-{round}"))
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
            .await
            .expect("push");
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            202 => {
                assert_eq!(answer["status"], json!("accepted"), "{answer}");
                assert!(answer["event_id"].is_string(), "{answer}");
                self.before = after.clone();
                self.ledger.pushes.record(after, true)
            }
            503 => {
                assert_eq!(
                    answer["error"]["code"],
                    json!("storage_unavailable"),
                    "{answer}"
                );
                self.ledger.pushes.record(after, false)
            }
            _ => panic!("push {round}: {status} {answer}"),
        }
    }

    async fn dm(&mut self, round: usize) -> bool {
        let content = format!("full-disk DM {round}");
        // The socket must beat within HERALD_WS_HEARTBEAT_TIMEOUT; the run takes longer. One
        // frame at a time, each answered before the next, so that a "slow down" (429: the
        // socket's frame rate limit, reached when refusals come fast) names the frame just sent,
        // which is then sent again after the pause a client is asked for.
        let heartbeat = json!({"type": "heartbeat", "payload": {"count": round}});
        loop {
            self.ws.send(heartbeat.clone()).await;
            match self.answer("heartbeat").await {
                Answer::Expected(_) => break,
                Answer::SlowDown => slow_down().await,
                Answer::Error(frame) => panic!("heartbeat {round}: {frame}"),
            }
        }
        let send = json!({"type": "chat", "payload": {"type": "send", "chat_id": self.chat_id.to_string(), "content": content}});
        loop {
            self.ws.send(send.clone()).await;
            match self.answer("chat").await {
                Answer::Expected(frame) => {
                    assert_eq!(frame["payload"]["content"], json!(content), "{frame}");
                    return self.ledger.dms.record(content, true);
                }
                Answer::SlowDown => slow_down().await,
                Answer::Error(frame) => {
                    assert_eq!(frame["payload"]["code"], json!(503), "DM {round}: {frame}");
                    return self.ledger.dms.record(content, false);
                }
            }
        }
    }

    /// The next frame of type `kind`, or an error frame; other frames (presence…) are skipped.
    async fn answer(&mut self, kind: &str) -> Answer {
        loop {
            let frame = self.ws.recv().await;
            match frame["type"].as_str() {
                Some(t) if t == kind => return Answer::Expected(frame),
                Some("error") if frame["payload"]["code"] == json!(429) => return Answer::SlowDown,
                Some("error") => return Answer::Error(frame),
                _ => {}
            }
        }
    }

    async fn readyz(&self) -> (u16, Value) {
        let response = self
            .app
            .client
            .get(self.app.url("/readyz"))
            .send()
            .await
            .expect("readyz");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

async fn full_disk_run(env: &TestEnv, disk: &Tmpfs, extra: &[(&str, &str)]) {
    // herald's log, when looking into a failure: `HERALD_TEST_LOG=1` (with `--nocapture`).
    if std::env::var_os("HERALD_TEST_LOG").is_some() {
        herald::telemetry::init(herald::config::LogFormat::Text);
    }
    let smtp = FakeSmtp::start().await;
    let telegram = FakeTelegram::start().await;
    let github = FakeGithub::start().await;
    let repo = GitRepo::new();
    github.add_repo("octo/hello", &repo);
    let mut settings = vec![
        ("HERALD_SMTP_URL", smtp.url.as_str()),
        ("HERALD_TELEGRAM_API", telegram.base_url.as_str()),
        ("HERALD_TELEGRAM_BOT_TOKEN", telegram.token.as_str()),
        ("HERALD_GITHUB_API", github.base_url.as_str()),
        ("HERALD_GIT_WEBHOOK_SECRET", SECRET),
        // The pushes come by webhook only.
        ("HERALD_POLL_INTERVAL", "1h"),
    ];
    settings.extend_from_slice(extra);
    let app = env.spawn(&settings).await;
    app.subscribe_reference("telegram", "99", "octo/hello", "main")
        .await;
    let alice =
        crate::accounts::sign_up(&app, &smtp, "alice", "alice@example.com", "alice's pw").await;
    crate::accounts::sign_up(&app, &smtp, "bob", "bob@example.com", "bob's password").await;
    let (alice_id, bob_id) = (
        crate::chat::account_id(&app, "alice").await,
        crate::chat::account_id(&app, "bob").await,
    );
    crate::chat::make_friends(&app, alice_id, bob_id).await;
    let ws = Ws::start(&app, &alice).await;
    let chat_id = herald::chat::dm_chat_id(alice_id, bob_id);
    let mut page = PageClient::new(&app);
    page.accept_language = Some("ko".into());
    page.get("/signin").await;
    let signed_in = page
        .post(
            "/signin",
            &[("email", "bob@example.com"), ("password", "bob's password")],
        )
        .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let conversation = page.get(&format!("/chat/{chat_id}")).await;
    assert_eq!(conversation.status, 200, "{}", conversation.body);
    let mut load = Load {
        before: repo.head("main"),
        chat_id,
        app,
        ws,
        page,
        round: 0,
        ledger: Ledger::default(),
    };

    // Before: everything is stored.
    for _ in 0..3 {
        assert!(load.round().await, "writes before the disk is full");
    }
    assert_eq!(load.readyz().await.0, 200);

    // Full: writes go on until some are refused, for a few seconds; `/readyz` must say so.
    let filled = disk.fill();
    eprintln!("filled the tmpfs with {filled} bytes");
    let started = Instant::now();
    let mut first_refusal = None;
    let mut unready_seen = None;
    while started.elapsed() < FULL_FOR_AT_MOST
        && first_refusal.is_none_or(|at: Instant| at.elapsed() < FULL_FOR_AT_LEAST)
    {
        if !load.round().await && first_refusal.is_none() {
            first_refusal = Some(Instant::now());
        }
        if first_refusal.is_some() {
            let (status, answer) = load.readyz().await;
            if status == 503 {
                assert!(
                    answer["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("storage")),
                    "/readyz names the storage: {answer}"
                );
                unready_seen.get_or_insert(answer);
            }
        }
    }
    assert!(
        first_refusal.is_some(),
        "no write was refused in {FULL_FOR_AT_MOST:?} of a full disk ({} rounds)",
        load.round
    );
    let unready = unready_seen.expect("/readyz was not ready while writes were refused");
    eprintln!(
        "while full: {} refusals in {} rounds; /readyz said {unready}",
        load.ledger.refused(),
        load.round
    );

    // Space is back: `/readyz` is ready again and every kind of write is stored again, within
    // seconds and with no restart.
    disk.free();
    let freed = Instant::now();
    let ready_again = {
        let mut waited = None;
        while freed.elapsed() < WAIT {
            if load.readyz().await.0 == 200 {
                waited = Some(freed.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        waited.expect("/readyz ready again after space came back")
    };
    let mut all_stored_at = None;
    while freed.elapsed() < RECOVER_WITHIN + Duration::from_secs(5) {
        if load.round().await {
            all_stored_at = Some(freed.elapsed());
            break;
        }
    }
    let all_stored_at = all_stored_at.expect("writes stored again after space came back");
    eprintln!("after freeing: ready in {ready_again:?}, every kind stored in {all_stored_at:?}");
    assert!(
        all_stored_at <= RECOVER_WITHIN,
        "writes took {all_stored_at:?} to recover"
    );
    for _ in 0..3 {
        assert!(load.round().await, "writes after recovering");
    }
    assert_eq!(load.readyz().await.0, 200);

    // Every acknowledged write is stored, no refused one is; again after the app stopped, on
    // fresh connections (what a restarted herald would find).
    let url = env.database_url.clone();
    let ledger = std::mem::take(&mut load.ledger);
    check_stored(&load.app.state.db, &ledger, "while herald runs").await;
    load.app.stop().await;
    let db = herald::store::Db::connect(&url).await.expect("reopen");
    check_stored(&db, &ledger, "after herald stopped").await;
    db.close().await;
    eprintln!(
        "acknowledged and stored: {} sign-ups, {} pushes, {} DMs, {} page DMs; refused: {} sign-ups, {} pushes, {} DMs, {} page DMs",
        ledger.signups.acknowledged.len(),
        ledger.pushes.acknowledged.len(),
        ledger.dms.acknowledged.len(),
        ledger.page_dms.acknowledged.len(),
        ledger.signups.refused.len(),
        ledger.pushes.refused.len(),
        ledger.dms.refused.len(),
        ledger.page_dms.refused.len(),
    );
    assert!(
        !ledger.page_dms.refused.is_empty(),
        "no page form post was refused while the disk was full"
    );
}

async fn check_stored(db: &herald::store::Db, ledger: &Ledger, when: &str) {
    let read = |sql: &'static str| async move {
        sqlx::query_scalar::<_, String>(sql)
            .fetch_all(db.reader())
            .await
            .expect("read what was stored")
            .into_iter()
            .collect::<BTreeSet<String>>()
    };
    let kinds = [
        (
            "sign-ups",
            &ledger.signups,
            read("SELECT email FROM signup_requests").await,
        ),
        (
            "pushes",
            &ledger.pushes,
            read("SELECT after_sha FROM push_events").await,
        ),
        (
            "DMs",
            &ledger.dms,
            read("SELECT content FROM chat_messages").await,
        ),
        (
            "page DMs",
            &ledger.page_dms,
            read("SELECT content FROM chat_messages").await,
        ),
    ];
    for (what, kind, stored) in kinds {
        let lost: Vec<&String> = kind.acknowledged.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "{when}: {} of {} acknowledged {what} are not stored: {lost:?}",
            lost.len(),
            kind.acknowledged.len()
        );
        let ghosts: Vec<&String> = kind.refused.intersection(&stored).collect();
        assert!(
            ghosts.is_empty(),
            "{when}: {what} refused with 503 were stored after all: {ghosts:?}"
        );
    }
    assert!(
        ledger.signups.last_acknowledged.is_some()
            && ledger.pushes.last_acknowledged.is_some()
            && ledger.dms.last_acknowledged.is_some()
            && ledger.page_dms.last_acknowledged.is_some()
    );
}

/// A tmpfs of a few MiB mounted for one test, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts it (owned by `owner` when given); `None` (SKIPPED) where mounting is not
    /// permitted, except under `CI=true`, where that fails the test.
    fn mount(size_mib: u32, owner: Option<&str>) -> Option<Tmpfs> {
        let path = std::env::temp_dir().join(format!("herald-full-disk-{:016x}", rand_u64()));
        std::fs::create_dir_all(&path).expect("a mount point");
        let options = format!("size={size_mib}m,mode=0755");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options.as_str()])
            .arg("tmpfs")
            .arg(&path)
            .output();
        match mounted {
            Ok(output) if output.status.success() => {}
            other => {
                let _ = std::fs::remove_dir(&path);
                let why = match other {
                    Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_string(),
                    Err(error) => error.to_string(),
                };
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("CI=true but a tmpfs cannot be mounted for the full-disk test: {why}");
                }
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs for the full-disk test (run as root): {why}"
                );
                return None;
            }
        }
        let disk = Tmpfs { path };
        if let Some(owner) = owner {
            let status = std::process::Command::new("chown")
                .arg(format!("{owner}:{owner}"))
                .arg(&disk.path)
                .status()
                .expect("chown");
            assert!(status.success(), "chown {owner} the tmpfs");
        }
        Some(disk)
    }

    /// Writes a file until the file system is full to the last byte; returns its size.
    fn fill(&self) -> u64 {
        let mut file = std::fs::File::create(self.filler()).expect("the filler file");
        let mut written = 0u64;
        for chunk in [1 << 20, 4096, 1] {
            let buffer = vec![0u8; chunk];
            loop {
                match file.write(&buffer) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(error) if error.raw_os_error() == Some(28) => break,
                    Err(error) => panic!("filling the tmpfs: {error}"),
                }
            }
        }
        written
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).expect("remove the filler");
    }

    fn filler(&self) -> PathBuf {
        self.path.join("filler")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmount = |args: &[&str], path: &Path| {
            std::process::Command::new("umount")
                .args(args)
                .arg(path)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !unmount(&[], &self.path) {
            // Something still holds a file there (a server being stopped): detach it now, it
            // goes when the last file closes.
            unmount(&["-l"], &self.path);
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A chat socket, authenticated.
struct Ws(Stream);

impl Ws {
    async fn start(app: &TestApp, token: &str) -> Ws {
        let url = format!("{}/ws", app.address.replace("http://", "ws://"));
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket");
        let mut ws = Ws(stream);
        // The protocol's first frame is a heartbeat, echoed.
        ws.send(json!({"type": "heartbeat", "payload": {"count": 0}}))
            .await;
        assert_eq!(ws.recv().await["type"], json!("heartbeat"));
        ws.send(json!({"type": "auth", "payload": {"auth": token}}))
            .await;
        let auth = ws.recv().await;
        assert_eq!(auth["type"], json!("auth"), "{auth}");
        ws
    }

    async fn send(&mut self, frame: Value) {
        self.0
            .send(Message::text(frame.to_string()))
            .await
            .expect("send");
    }

    async fn recv(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(15), self.0.next())
                .await
                .expect("a frame in time")
                .expect("the socket is open")
                .expect("a message");
            if let Message::Text(text) = message {
                return serde_json::from_str(text.as_str()).expect("JSON frame");
            }
            assert!(!matches!(message, Message::Close(_)), "closed: {message:?}");
        }
    }
}

/// What a socket answered to one frame.
enum Answer {
    Expected(Value),
    /// 429: the socket's frame rate limit.
    SlowDown,
    Error(Value),
}

/// The pause a client makes when the socket says "slow down": long enough for the frame rate
/// limit (`chat::socket::FRAMES_PER_SECOND`) to allow a frame again.
async fn slow_down() {
    tokio::time::sleep(Duration::from_millis(250)).await;
}

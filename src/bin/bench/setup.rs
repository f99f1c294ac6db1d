//! What every scenario starts from: the options shared by all of them, the release `herald`
//! binary started as a process of its own, and the bench's own helper servers.
//!
//! The bench does not start herald the way the integration tests do (`spawn_app()` in-process,
//! or `start_binary` reading the listen address from info-level JSON logs): it runs the release
//! binary that sits next to it, with warn-level logs so that logging is not part of what is
//! measured, and reads that process's CPU and memory from `/proc`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use clap::ValueEnum;
use herald::testkit::{postgres, wait_until};
use serde_json::Value;

/// The secret herald checks GitHub push webhooks against.
pub const SECRET: &str = "bench-secret";
/// herald's operator token in every scenario.
pub const ADMIN: &str = "bench-admin";

/// Options every scenario takes.
#[derive(clap::Args)]
pub struct Common {
    #[arg(long, value_enum, default_value = "sqlite", global = true)]
    pub backend: Backend,
    /// PostgreSQL server for --backend postgres; a fresh database is made on it.
    #[arg(long, default_value = postgres::DEFAULT_SERVER, global = true)]
    pub postgres: String,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The release `herald` binary, running as its own process on a fresh database.
pub struct Herald {
    child: tokio::process::Child,
    pub url: String,
    pub database_url: String,
    _data: tempfile::TempDir,
    pub client: reqwest::Client,
}

impl Herald {
    /// Starts herald with `env` on top of the bench's settings and waits until it is ready.
    pub async fn start(common: &Common, env: &[(&str, String)]) -> Herald {
        Herald::start_node(common, None, env).await
    }

    /// Starts herald like `start`, on `database_url` when given (another node's database: a
    /// cluster), else on a fresh database.
    pub async fn start_node(
        common: &Common,
        database_url: Option<&str>,
        env: &[(&str, String)],
    ) -> Herald {
        let data = tempfile::tempdir().expect("temp dir");
        let database_url = match (database_url, common.backend) {
            (Some(url), _) => url.to_string(),
            (None, Backend::Sqlite) => {
                format!("sqlite://{}", data.path().join("herald.db").display())
            }
            (None, Backend::Postgres) => {
                // One name per bench process, so a database left by a run that crashed is
                // dropped by the next run of the same process id rather than piling up.
                let name = format!("herald_bench_{}", std::process::id());
                postgres::drop_database(&common.postgres, &name).await;
                postgres::create_database(&common.postgres, &name).await
            }
        };
        let port = free_port();
        let binary: PathBuf = std::env::current_exe()
            .expect("own path")
            .parent()
            .expect("dir")
            .join("herald");
        let mut command = tokio::process::Command::new(&binary);
        command
            .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
            .env("HERALD_DATA_DIR", data.path())
            .env("HERALD_DATABASE_URL", &database_url)
            .env("HERALD_ALLOW_PRIVATE_TARGETS", "true")
            .env("HERALD_ADMIN_TOKEN", ADMIN)
            // The benchmarks sign their many accounts up from one address.
            .env("HERALD_SIGNUPS_PER_MINUTE", "1000000")
            // … and open their thousands of sockets from it too.
            .env("HERALD_MAX_CONNECTIONS_PER_ADDRESS", "1000000")
            .env("HERALD_GIT_WEBHOOK_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .current_dir(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .expect("client");
        let ready = format!("{url}/readyz");
        wait_until(
            "herald to answer /readyz",
            Duration::from_secs(60),
            || async {
                client
                    .get(&ready)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            },
        )
        .await;
        Herald {
            child,
            database_url,
            url,
            _data: data,
            client,
        }
    }

    /// herald's listening address, for the raw-socket load generators.
    pub fn address(&self) -> std::net::SocketAddr {
        self.url
            .trim_start_matches("http://")
            .parse()
            .expect("herald listens on an IP address")
    }

    /// Whether the process still runs (not gone, not a zombie).
    pub fn is_running(&self) -> bool {
        let Some(pid) = self.child.id() else {
            return false;
        };
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next().map(|s| s != "Z"))
            })
            .unwrap_or(false)
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// (user+system CPU seconds of herald and its waited-for children, RSS in KiB).
    pub fn usage(&self) -> (f64, u64) {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let after_name = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // Fields 14-17 of stat (utime, stime, cutime, cstime) are at 11..15 after the name.
        let ticks: u64 = fields
            .get(11..15)
            .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0);
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        (ticks as f64 / 100.0, rss)
    }

    /// herald's data dir (its mail spool is `mail/` under it).
    pub fn data_dir(&self) -> &std::path::Path {
        self._data.path()
    }

    /// herald's peak resident memory since it started (`VmHWM`), in KiB.
    pub fn peak_rss(&self) -> u64 {
        status_kib(self.pid(), "VmHWM:")
    }

    /// A reader of herald's resident memory (`VmRSS`, KiB) that a sampling task can own.
    pub fn usage_reader(&self) -> impl Fn() -> u64 + Send + 'static {
        let pid = self.pid();
        move || status_kib(pid, "VmRSS:")
    }

    /// An operator `POST` that must succeed; returns the answer's JSON.
    pub async fn admin(&self, path: &str, body: Value) -> Value {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    /// The sum of every `/metrics` sample whose line starts with `name_and_labels`.
    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name_and_labels))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    }
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in KiB; 0 when unreadable.
fn status_kib(pid: u32, line: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(line))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Runs this bench binary's hidden `scenario` (a server) in a process of its own on a free
/// loopback port, with `args`, and waits until it takes connections.
pub async fn start_server_process(
    scenario: &str,
    args: &[&str],
) -> (tokio::process::Child, std::net::SocketAddr) {
    let port = free_port();
    let child = tokio::process::Command::new(std::env::current_exe().expect("own path"))
        .args([scenario, "--port", &port.to_string()])
        .args(args)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {scenario}: {e}"));
    let address: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_until(
        &format!("{scenario} to take connections"),
        Duration::from_secs(10),
        || async { tokio::net::TcpStream::connect(address).await.is_ok() },
    )
    .await;
    (child, address)
}

/// A loopback port free right now, for a process that must be told its port up front.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    listener.local_addr().expect("addr").port()
}

/// User+system CPU seconds so far of every process on the machine whose name is `name`
/// (`postgres`, `redis-server`): the parts of a run that are not herald.
pub fn process_cpu_seconds(name: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let mut ticks = 0u64;
    for entry in entries.flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if head.split_once('(').map(|(_, comm)| comm) != Some(name) {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat, at 11 and 12 after the name.
        ticks += fields
            .get(11..13)
            .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0);
    }
    ticks as f64 / 100.0
}

/// The first line of every scenario's output: what it ran on.
pub fn print_machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("machine: {cores} cores, {cpu}");
}

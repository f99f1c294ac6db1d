//! Issue 25, idle connections: herald started the way a service manager starts it (open-file
//! limit 1024) stays reachable while a client holds 1,100 connections that never send a
//! request; idle connections are closed after `HERALD_HEADER_READ_TIMEOUT`; a body declared
//! larger than any route takes is refused at once.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::both_backends;
use crate::helpers::{TestEnv, WAIT, wait_until};

both_backends!(
    a_connection_that_sends_no_request_is_closed,
    a_body_declared_too_large_is_refused_before_it_is_read,
);

/// The real binary, under `prlimit`, with its log lines collected.
struct Herald {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Herald {
    fn start(data_dir: &std::path::Path, nofile: &str, extra: &[(&str, &str)]) -> Herald {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={nofile}"))
            .arg(env!("CARGO_BIN_EXE_herald"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("HERALD_LISTEN", "127.0.0.1:0")
            .env("HERALD_DATA_DIR", data_dir)
            .env("HERALD_LOG_FORMAT", "json")
            .current_dir(data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in extra {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start herald under prlimit");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().expect("lines").push(line);
                }
            });
        }
        Herald { child, lines }
    }

    /// The first log line with this message, as JSON.
    fn logged(&self, message: &str) -> Option<Value> {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["message"].as_str() == Some(message))
    }

    fn log_text(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    async fn address(&self) -> SocketAddr {
        wait_until("herald to listen", WAIT, || async {
            self.running_line().is_some()
        })
        .await;
        let line = self.running_line().expect("the start line");
        line["listen"]
            .as_str()
            .expect("listen")
            .parse()
            .expect("an address")
    }

    fn running_line(&self) -> Option<Value> {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| {
                line["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("herald is running"))
            })
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The soft and hard open-file limits of a process.
fn open_file_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("the open-files line");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

async fn healthz_from(address: SocketAddr, last: u8) -> u16 {
    let client = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    match client.get(format!("http://{address}/healthz")).send().await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

/// Opens `count` connections that send nothing; counts those the server closes.
async fn idle_connections(address: SocketAddr, count: usize) -> Arc<AtomicUsize> {
    let closed = Arc::new(AtomicUsize::new(0));
    for _ in 0..count {
        let mut socket = tokio::net::TcpStream::connect(address)
            .await
            .expect("a TCP connection (the kernel accepts it)");
        let closed = closed.clone();
        tokio::spawn(async move {
            let mut buffer = [0u8; 64];
            // Ends at EOF or a reset: either way the server let go of it.
            loop {
                match socket.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            closed.fetch_add(1, Ordering::SeqCst);
        });
    }
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_make_herald_unreachable_at_1024_open_files() {
    // The test itself holds 1,100 sockets.
    let _ = herald::http::serve::raise_open_file_limit();
    let data_dir = tempfile::tempdir().expect("temp dir");
    let herald = Herald::start(
        data_dir.path(),
        "1024:1024",
        &[("HERALD_HEADER_READ_TIMEOUT", "4s")],
    );
    let address = herald.address().await;
    assert_eq!(open_file_limits(herald.child.id()), (1024, 1024));

    // The attacker: 1,100 connections from one address that never send a request. Over the
    // per-address cap (256) they are closed at once; the rest when the header timeout passes.
    let closed = idle_connections(address, 1100).await;
    wait_until(
        "the connections over the cap to be closed",
        WAIT,
        || async { closed.load(Ordering::SeqCst) >= 1100 - 256 },
    )
    .await;
    assert_eq!(
        closed.load(Ordering::SeqCst),
        1100 - 256,
        "the 256 under the cap stay open until the header timeout"
    );

    // Everyone else still gets in.
    for _ in 0..13 {
        assert_eq!(healthz_from(address, 2).await, 200);
    }
    wait_until("the idle connections to be closed", WAIT, || async {
        closed.load(Ordering::SeqCst) == 1100
    })
    .await;
    assert_eq!(
        healthz_from(address, 1).await,
        200,
        "the attacker's address is let in again"
    );
    let log = herald.log_text();
    assert!(!log.contains("Too many open files"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_raises_its_open_file_limit_to_the_hard_limit() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let herald = Herald::start(data_dir.path(), "1024:4096", &[]);
    herald.address().await;
    assert_eq!(open_file_limits(herald.child.id()), (4096, 4096));
    let line = herald
        .logged("raised the open-file limit to the hard limit")
        .expect("the limits are logged");
    assert_eq!(line["soft_before"], 1024, "{line}");
    assert_eq!(line["soft"], 4096, "{line}");
    assert_eq!(line["hard"], 4096, "{line}");
    wait_until("the connection cap to be logged", WAIT, || async {
        herald.logged("taking connections").is_some()
    })
    .await;
    let taking = herald
        .logged("taking connections")
        .expect("the cap is logged");
    assert_eq!(taking["max_connections"], 3072, "{taking}");
}

async fn a_connection_that_sends_no_request_is_closed(env: TestEnv) {
    let app = env.spawn(&[("HERALD_HEADER_READ_TIMEOUT", "1s")]).await;
    let address: SocketAddr = app
        .address
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    // Silent, and a request head that never ends.
    let silent = idle_connections(address, 1).await;
    let mut partial = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: herald\r\n")
        .await
        .expect("write");
    wait_until("the silent connection to be closed", WAIT, || async {
        silent.load(Ordering::SeqCst) == 1
    })
    .await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, partial.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the unfinished request is closed");
    // A keep-alive connection idle after its answer is closed too.
    let mut kept = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, kept.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the idle keep-alive connection is closed");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    app.stop().await;
    env.cleanup().await;
}

async fn a_body_declared_too_large_is_refused_before_it_is_read(env: TestEnv) {
    let app = env.spawn(&[]).await;
    let address: SocketAddr = app
        .address
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let mut socket = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    socket
        .write_all(
            b"POST /api/v1/auth/register HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: 10737418240\r\n\r\n{\"name\":",
        )
        .await
        .expect("write");
    // Not a byte more is sent; the answer must not wait for the body (the request timeout
    // is 60 s, and the wait here is a third of that).
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, socket.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "answered and closed without the body");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    assert_eq!(app.count("SELECT COUNT(*) FROM signup_requests").await, 0);
    app.stop().await;
    env.cleanup().await;
}

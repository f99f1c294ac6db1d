//! A `redis-server` of a test's or a benchmark's own, on a free loopback port, keeping nothing
//! on disk: for what kills and restarts Redis, which the machine's shared server must not do
//! under everyone else.

use std::time::Duration;

use super::wait_until;

pub struct RedisServer {
    port: u16,
    server: tokio::process::Child,
}

impl RedisServer {
    /// Starts one and waits until it listens; `None` without a `redis-server` program.
    pub async fn start() -> Option<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let redis = RedisServer {
            port,
            server: RedisServer::run(port)?,
        };
        redis.wait_until_up().await;
        Some(redis)
    }

    fn run(port: u16) -> Option<tokio::process::Child> {
        tokio::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .ok()
    }

    async fn wait_until_up(&self) {
        let port = self.port;
        wait_until(
            "redis-server to listen",
            Duration::from_secs(20),
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
        )
        .await;
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server: what it held is gone.
    pub async fn kill(&mut self) {
        self.server.kill().await.expect("kill redis-server");
    }

    /// Starts a new server on the same port and waits until it listens.
    pub async fn start_again(&mut self) {
        self.server = RedisServer::run(self.port).expect("redis-server starts again");
        self.wait_until_up().await;
    }
}

//! Local stand-ins for the outside platforms herald talks to, speaking their real wire formats,
//! plus helpers that make real git repositories with the `git` program, fresh PostgreSQL
//! databases, and accounts signed up the way a person does it. Used by the integration tests
//! and the benchmark binary; nothing in herald itself depends on them.

pub mod accounts;
pub mod fake_github;
pub mod fake_kakao;
pub mod fake_smtp;
pub mod fake_telegram;
pub mod fake_webex;
pub mod git_repo;
pub mod postgres;
pub mod receiver;
pub mod redis_server;

use std::time::Duration;

/// Waits until `condition` holds, checking every 20 ms, or panics after `timeout` with `what`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serves an axum router on a fresh loopback port in the background.
pub async fn serve(router: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    address
}

//! `TCP_NODELAY` for sqlx's PostgreSQL connections.
//!
//! sqlx 0.9 connects with a plain `TcpStream` and never sets `TCP_NODELAY`, and it writes a
//! statement of more than 16 KiB in 16 KiB pieces. With Nagle's algorithm on, the last small
//! piece waits until the server acknowledges the first, and PostgreSQL's delayed ACK holds that
//! acknowledgement for up to 40 ms: every large statement (a push fanned out to ten webhooks, a
//! knowledge-base import) stalled for 40 ms, and throughput followed that stall (seen with
//! strace; BENCHMARKS.md, area B). sqlx exposes neither the socket nor a socket option, so after
//! each connection is made we find its socket among the process's open descriptors (by the
//! server's address) and set the option on it. Setting it on a socket that is not sqlx's but
//! talks to the same server would be harmless; a descriptor that closed in between only makes
//! the system calls fail, and they are ignored.

use std::net::SocketAddr;

/// Sets `TCP_NODELAY` on every open TCP socket of this process connected to one of `servers`.
/// Returns how many sockets it changed.
#[cfg(target_os = "linux")]
pub fn set_on_sockets_to(servers: &[SocketAddr]) -> usize {
    use std::os::fd::{BorrowedFd, RawFd};
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut changed = 0;
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<RawFd>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor was listed as open a moment ago and is only borrowed for the
        // duration of three socket system calls, never closed or kept. If it was closed (or
        // reused) meanwhile, the calls fail or see another socket's peer; both are handled.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let to_server = socket
            .peer_addr()
            .ok()
            .and_then(|peer| peer.as_socket())
            .is_some_and(|peer| servers.contains(&peer));
        if to_server
            && socket.tcp_nodelay().is_ok_and(|on| !on)
            && socket.set_tcp_nodelay(true).is_ok()
        {
            changed += 1;
        }
    }
    changed
}

/// Elsewhere the option is left as sqlx sets it.
#[cfg(not(target_os = "linux"))]
pub fn set_on_sockets_to(_servers: &[SocketAddr]) -> usize {
    0
}

/// The TCP addresses a PostgreSQL URL connects to (none for a Unix socket, which has no Nagle).
pub async fn server_addresses(url: &str) -> Vec<SocketAddr> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Vec::new();
    };
    let socket_dir = parsed
        .query_pairs()
        .any(|(key, value)| key == "host" && value.starts_with('/'));
    let Some(host) = parsed.host_str().filter(|h| !h.is_empty() && !socket_dir) else {
        return Vec::new();
    };
    let host = host.trim_matches(|c| c == '[' || c == ']').to_string();
    let port = parsed.port().unwrap_or(5432);
    match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(addresses) => addresses.collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sets_the_option_on_sockets_to_the_server_only() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let to_server = tokio::net::TcpStream::connect(server).await.unwrap();
        let elsewhere = tokio::net::TcpStream::connect(other.local_addr().unwrap())
            .await
            .unwrap();
        assert!(!to_server.nodelay().unwrap());
        assert_eq!(set_on_sockets_to(&[server]), 1);
        assert!(to_server.nodelay().unwrap());
        assert!(!elsewhere.nodelay().unwrap());
        assert_eq!(set_on_sockets_to(&[server]), 0, "already set");
    }

    #[tokio::test]
    async fn finds_the_servers_of_a_url() {
        let found = server_addresses("postgres://u@127.0.0.1:6543/db").await;
        assert_eq!(found, vec!["127.0.0.1:6543".parse().unwrap()]);
        assert!(
            server_addresses("postgres://u@localhost/db?host=/run/postgresql")
                .await
                .is_empty()
        );
    }
}

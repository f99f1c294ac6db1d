//! Taking connections: the accept loop in front of the router, which keeps idle and abandoned
//! connections from using up the process's file descriptors.
//!
//! - At start the soft open-file limit is raised to the hard limit ([`raise_open_file_limit`]),
//!   as Go's runtime does for every Go server: a service manager or a shell often starts
//!   processes at 1024 while allowing far more.
//! - Open connections are capped in total and per client address (IPv4 address or IPv6 /64).
//!   A connection over either cap is closed as soon as it is accepted, so the listen queue keeps
//!   moving, `accept` never fails for want of descriptors, and other clients still get in.
//! - A connection must send a complete request head within `HERALD_HEADER_READ_TIMEOUT` of
//!   connecting, and again within it after each answer (an idle keep-alive connection), or it is
//!   closed (hyper's header read timeout).
//!
//! A connection's place is held by its socket (`Counted`), so an upgraded WebSocket keeps
//! counting for as long as it is open.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::limits::ClientKey;

/// Descriptors left for everything but inbound connections (database, outgoing deliveries,
/// git, the search index, logs) when the connection cap is derived from the open-file limit:
/// a quarter of the limit, and at least this many.
const RESERVED_DESCRIPTORS: u64 = 128;
/// How long in-flight requests may take to finish once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The soft open-file limit before and after raising it, and the hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    pub before: u64,
    pub after: u64,
    pub hard: u64,
}

/// Raises the soft open-file limit (`RLIMIT_NOFILE`) to the hard limit.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // `rlim_t` is not `u64` on every Unix.
pub fn raise_open_file_limit() -> io::Result<OpenFileLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = limit.rlim_cur as u64;
    let hard = limit.rlim_max as u64;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(OpenFileLimit {
        before,
        after: current_open_file_limit().unwrap_or(before),
        hard,
    })
}

#[cfg(not(unix))]
pub fn raise_open_file_limit() -> io::Result<OpenFileLimit> {
    Err(io::Error::other("open-file limits are a Unix matter"))
}

/// The soft open-file limit in effect.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // `rlim_t` is not `u64` on every Unix.
pub fn current_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0)
        .then_some(limit.rlim_cur as u64)
}

#[cfg(not(unix))]
pub fn current_open_file_limit() -> Option<u64> {
    None
}

/// The total connection cap when none is set: the open-file limit minus a reserve.
pub fn derived_connection_cap(open_file_limit: Option<u64>) -> usize {
    let limit = open_file_limit.unwrap_or(1024).min(1 << 20);
    let reserve = (limit / 4).max(RESERVED_DESCRIPTORS);
    limit.saturating_sub(reserve).max(16) as usize
}

/// How connections are taken.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_per_address: usize,
    /// `HERALD_TRUSTED_PROXIES`: whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
}

/// Open connections, in total and per client address.
struct Connections {
    limits: ConnectionLimits,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_address: HashMap<ClientKey, usize>,
}

impl Connections {
    fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<Admitted> {
        let key = ClientKey::from(peer.ip());
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.limits.max_connections {
            return None;
        }
        let mine = open.per_address.entry(key).or_insert(0);
        if *mine >= self.limits.max_per_address {
            return None;
        }
        *mine += 1;
        open.total += 1;
        metrics::gauge!("herald_http_connections").set(open.total as f64);
        Some(Admitted {
            connections: self.clone(),
            key,
        })
    }
}

/// A connection's place; given back when the socket is dropped.
struct Admitted {
    connections: Arc<Connections>,
    key: ClientKey,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(mine) = open.per_address.get_mut(&self.key) {
            *mine -= 1;
            if *mine == 0 {
                open.per_address.remove(&self.key);
            }
        }
        metrics::gauge!("herald_http_connections").set(open.total as f64);
    }
}

/// A socket that holds its connection's place for as long as it lives (upgrades included).
struct Counted {
    socket: TcpStream,
    _admitted: Admitted,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets open requests finish
/// (for up to [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let trusted_proxies = limits.trusted_proxies.clone();
    let header_read_timeout = limits.header_read_timeout;
    let connections = Arc::new(Connections {
        limits,
        open: Mutex::default(),
    });
    let open_connections = tokio_util::task::TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let mut last_accept_error_log = None::<tokio::time::Instant>;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors (or another passing failure): log it at most once a
                // second and wait a little for connections to close, instead of spinning.
                let now = tokio::time::Instant::now();
                if last_accept_error_log.is_none_or(|at| now - at >= Duration::from_secs(1)) {
                    tracing::warn!(%error, "could not accept a connection");
                    last_accept_error_log = Some(now);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(admitted) = connections.admit(peer) else {
            metrics::counter!("herald_http_connections_refused_total").increment(1);
            drop(socket);
            continue;
        };
        // Small frames (chat, webhook answers) must not wait for Nagle's algorithm.
        if let Err(error) = socket.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let io = TokioIo::new(Counted {
            socket,
            _admitted: admitted,
        });
        let app = app.clone();
        let trusted_proxies = trusted_proxies.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let client =
                super::auth::forwarded_client(peer.ip(), request.headers(), &trusted_proxies);
            request.extensions_mut().insert(ConnectInfo(peer));
            request
                .extensions_mut()
                .insert(super::auth::ClientAddress(client));
            let app = app.clone();
            async move {
                let response = app.oneshot(request.map(axum::body::Body::new)).await;
                Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
            }
        });
        let connection = http.serve_connection(io, service).with_upgrades();
        let stop = shutdown.clone();
        open_connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            // On shutdown, the request in progress is finished and the connection closed.
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    open_connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, open_connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: some connections were still open after the grace period");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_derived_cap_leaves_room_for_everything_else() {
        assert_eq!(derived_connection_cap(Some(1024)), 768);
        assert_eq!(derived_connection_cap(Some(256)), 128);
        assert_eq!(derived_connection_cap(Some(65536)), 49152);
        assert_eq!(derived_connection_cap(Some(100)), 16);
    }
}

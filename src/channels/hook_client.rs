//! The HTTP client that carries project webhooks: hyper's pooled HTTP/1.1 client over rustls
//! (the pool and connector reqwest itself is built on), with the guarded resolver, and without
//! reqwest's layers — redirects, proxies, cookies, decoding — which a hook send never uses and
//! which cost about 35 µs of CPU per delivery, a third of a fanned-out push's sending time
//! (BENCHMARKS.md, "Where a push's time goes").

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::outbox::channel::error_chain;

pub use crate::netguard::PRIVATE_REFUSAL;
/// Sent with every request to a URL a user gave (hooks, Kakao callbacks).
pub const USER_AGENT: &str = concat!("herald-Hookshot/", env!("CARGO_PKG_VERSION"));
/// Idle connections kept per receiver: enough for a hook at its highest concurrency.
const IDLE_PER_HOST: usize = 64;
/// How long the rest of an answer's body is waited for once its status has arrived (at most a
/// quarter of the timeout, so that the dispatcher's own timeout does not fire first).
const BODY_WAIT: Duration = Duration::from_secs(2);

/// The addresses `host` resolves to; unless `allow_private`, only when every one is public
/// (`netguard::resolve_public`), and the refusal does not say what the name resolved to.
pub async fn resolve_guarded(host: &str, allow_private: bool) -> Result<Vec<SocketAddr>, String> {
    if allow_private {
        return tokio::net::lookup_host((host, 0))
            .await
            .map(Iterator::collect)
            .map_err(|e| format!("could not resolve {host}: {e}"));
    }
    crate::netguard::resolve_public(host, 0)
        .await
        .map_err(|refused| refused.to_string())
}

/// The connector's resolver: the system's, through `resolve_guarded`. (Addresses written as
/// IP literals never reach a resolver; the caller checks those before sending.)
#[derive(Clone)]
pub struct GuardedResolver {
    allow_private: bool,
}

type Resolving =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, ResolveError>> + Send>>;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ResolveError(String);

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            resolve_guarded(name.as_str(), allow_private)
                .await
                .map(Vec::into_iter)
                .map_err(ResolveError)
        })
    }
}

/// A receiver's answer: its status, `Retry-After`, and at most `keep` bytes of its body.
pub struct HookAnswer {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

/// Why a send got no answer.
#[derive(Debug)]
pub enum SendError {
    /// No answer (status and headers) within the timeout.
    TimedOut,
    /// No connection: refused, unreachable, TLS handshake failed, or the name was refused.
    Connect(String),
    /// The connection broke or the answer was not HTTP.
    Failed(String),
}

impl SendError {
    pub fn message(&self) -> String {
        match self {
            SendError::TimedOut => "timed out".to_string(),
            SendError::Connect(text) => format!("could not connect: {text}"),
            SendError::Failed(text) => format!("request failed: {text}"),
        }
    }

    /// Whether the guarded resolver refused the name (which no retry will change).
    pub fn is_private_refusal(&self) -> bool {
        matches!(self, SendError::Connect(text) if text.contains(PRIVATE_REFUSAL))
    }
}

pub struct HookClient {
    client: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
    timeout: Duration,
}

impl HookClient {
    pub fn new(timeout: Duration, allow_private: bool) -> std::io::Result<HookClient> {
        let mut http = HttpConnector::new_with_resolver(GuardedResolver { allow_private });
        http.enforce_http(false);
        http.set_nodelay(true);
        // Pooled connections idle up to 90 s: notice a peer (or a NAT) that dropped one.
        http.set_keepalive(Some(Duration::from_secs(15)));
        http.set_connect_timeout(Some(Duration::from_secs(10).min(timeout)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(rustls::crypto::aws_lc_rs::default_provider())?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(IDLE_PER_HOST)
            .build(https);
        Ok(HookClient { client, timeout })
    }

    /// POSTs `body` with `headers` to `url` (redirects are not followed) within the timeout,
    /// and reads at most `keep` bytes of the answer; the rest is not read, and its connection
    /// is closed.
    pub async fn post(
        &self,
        url: &hyper::Uri,
        headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
        body: Bytes,
        keep: usize,
    ) -> Result<HookAnswer, SendError> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(url.clone())
            .header(hyper::header::USER_AGENT, USER_AGENT)
            .header(hyper::header::ACCEPT, "*/*");
        if let Some(map) = request.headers_mut() {
            map.extend(headers);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| SendError::Failed(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let response = match tokio::time::timeout_at(deadline, self.client.request(request)).await {
            Err(_) => return Err(SendError::TimedOut),
            Ok(Err(error)) => {
                let text = error_chain(&error);
                return Err(if error.is_connect() {
                    SendError::Connect(text)
                } else {
                    SendError::Failed(text)
                });
            }
            Ok(Ok(response)) => response,
        };
        // The answer is given: the body is only for the log, so a receiver that stalls in it
        // is waited for briefly (and never past the deadline), and its status still counts.
        let status = response.status();
        let retry_after = crate::outbox::channel::retry_after(response.headers());
        let body_deadline =
            deadline.min(tokio::time::Instant::now() + BODY_WAIT.min(self.timeout / 4));
        let mut incoming = response.into_body();
        let mut kept = Vec::new();
        while kept.len() < keep && !incoming.is_end_stream() {
            match tokio::time::timeout_at(body_deadline, incoming.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        kept.extend_from_slice(&data);
                    }
                }
                // Cut short, broken or too slow: what arrived is logged.
                Ok(Some(Err(_)) | None) | Err(_) => break,
            }
        }
        kept.truncate(keep);
        Ok(HookAnswer {
            status,
            retry_after,
            body: kept,
        })
    }
}

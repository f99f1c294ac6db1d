//! The HTTP edge's shared parts: the error shape (`error`), the operator's identity (`auth`),
//! the operations routes (`ops`), and the middleware every route gets (request ids, tracing,
//! body limit and the draining of refused bodies, timeout, panic catching, metrics) with the
//! JSON 404. Routes are added only through `routes::Routes`, which puts each in the OpenAPI
//! document (`openapi`) or records why it is not; `startup` merges the feature modules'
//! routes and hands the router to [`serve_layers`].
//!
//! **Boundary**: wire types live beside their handlers in the feature modules; this module owns
//! only what every route shares, and imports no feature module.

pub mod auth;
pub mod error;
pub mod openapi;
pub mod ops;
pub mod routes;
pub mod serve;

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use error::ApiError;

/// Bodies above this are refused with 413 unless a route sets its own limit.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// No route takes a body larger than this (GitHub's push webhooks, `push::hooks`, are the
/// largest); a request that declares more is refused at once, before any of its body is read.
/// Routes with larger limits of their own assert that they fit under it.
pub const LARGEST_BODY_LIMIT: usize = 26 * 1024 * 1024;
/// How much of a refused body is read and thrown away, at most, before the 413 is sent.
const DRAIN_REFUSED_BYTES: usize = 8 * 1024 * 1024;
const DRAIN_REFUSED_FOR: Duration = Duration::from_secs(2);
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Adds the JSON 404 and the middleware every route shares to the merged routes of the app;
/// refusals for lack of storage are reported to `db`'s `StorageHealth`.
pub fn serve_layers(routes: Router, db: crate::store::Db) -> Router {
    routes
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(axum::middleware::from_fn_with_state(
            db,
            record_storage_failures,
        ))
        .layer(axum::middleware::from_fn(record_metrics))
        .layer(axum::middleware::from_fn(drain_refused_bodies))
        .layer(DefaultBodyLimit::max(DEFAULT_BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(60)))
        .layer(CatchPanicLayer::new())
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let id = request
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            tracing::info_span!("request", method = %request.method(), uri = %request.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// A body refused as too large (413) is read to its end, up to [`DRAIN_REFUSED_BYTES`] and
/// [`DRAIN_REFUSED_FOR`], before the answer goes out. Otherwise the server closes the connection
/// with the rest of the body unread, the kernel answers the client's remaining bytes with a
/// reset, and a client still sending can get that reset instead of the 413 (hyper itself drains
/// only what has already arrived). The handler reads the body through [`SharedBody`], so what
/// it left unread is still here afterwards.
async fn drain_refused_bodies(request: Request, next: Next) -> Response {
    use axum::response::IntoResponse;
    use futures_util::StreamExt;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > LARGEST_BODY_LIMIT as u64) {
        // Nothing of it is read: the connection is closed after the answer.
        let mut response = ApiError::PayloadTooLarge(format!(
            "the body is larger than any route takes ({LARGEST_BODY_LIMIT} bytes)"
        ))
        .into_response();
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return response;
    }
    let (parts, body) = request.into_parts();
    let body = std::sync::Arc::new(std::sync::Mutex::new(Some(body)));
    let request = Request::from_parts(parts, axum::body::Body::new(SharedBody(body.clone())));
    let response = next.run(request).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        let rest = body.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(rest) = rest {
            let mut rest = rest.into_data_stream();
            let _ = tokio::time::timeout(DRAIN_REFUSED_FOR, async {
                let mut drained = 0;
                while let Some(Ok(chunk)) = rest.next().await {
                    drained += chunk.len();
                    if drained > DRAIN_REFUSED_BYTES {
                        break;
                    }
                }
            })
            .await;
        }
    }
    response
}

/// A request body that stays with [`drain_refused_bodies`] when the handler drops it.
struct SharedBody(std::sync::Arc<std::sync::Mutex<Option<axum::body::Body>>>);

impl SharedBody {
    fn with<R>(&self, f: impl FnOnce(Option<&mut axum::body::Body>) -> R) -> R {
        let mut body = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(body.as_mut())
    }
}

impl http_body::Body for SharedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.with(|body| match body {
            Some(body) => std::pin::Pin::new(body).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        })
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.with(|body| body.map(|b| b.size_hint()).unwrap_or_default())
    }

    fn is_end_stream(&self) -> bool {
        self.with(|body| body.is_none_or(|b| b.is_end_stream()))
    }
}

/// A request refused because the database could not store it (a response marked
/// [`error::StorageFailed`]) keeps `/readyz` unready for a while (`store::storage`).
async fn record_storage_failures(
    axum::extract::State(db): axum::extract::State<crate::store::Db>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(error::StorageFailed(failure)) = response.extensions().get::<error::StorageFailed>()
    {
        db.storage().failed(*failure);
    }
    response
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("herald_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("herald_http_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

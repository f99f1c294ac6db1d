//! The HTTP edge: merges every feature module's `router()`, adds the shared middleware (request
//! ids, tracing, body limit, timeout, panic catching, metrics) and the JSON 404.
//!
//! **Boundary**: wire types live beside their handlers in the feature modules; this module owns
//! only what every route shares.

pub mod auth;
pub mod error;
pub mod ops;

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

use crate::state::AppState;
use error::ApiError;

/// Bodies above this are refused with 413 unless a route sets its own limit.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(ops::router())
        .merge(crate::watch::hooks::router())
        .merge(crate::contacts::reference::router())
        .merge(crate::contacts::api::router())
        .merge(crate::accounts::http::router())
        .merge(crate::bot::link::router())
        .merge(crate::connectors::kakao::router())
        .merge(crate::connectors::plusfriend::router())
        .merge(crate::connectors::telegram::router())
        .merge(crate::connectors::webex::router())
        .merge(crate::chat::socket::router())
        .merge(crate::projects::api::router())
        .merge(crate::projects::pages::router())
        .merge(crate::kb::http::router())
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(axum::middleware::from_fn(record_metrics))
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
        .with_state(state)
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

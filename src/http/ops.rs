//! Operations endpoints: `/healthz` (the process is up), `/readyz` (the database answers and is
//! migrated, and every link of `health::Readiness` is up), `/metrics` (Prometheus text).

use std::sync::OnceLock;

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::routes::{Outside, Routes};
use crate::state::AppState;

pub fn router(state: AppState) -> Routes {
    Routes::new()
        .api(routes!(healthz))
        .api(routes!(readyz))
        .outside(Outside::Metrics, Method::GET, "/metrics", metrics_text)
        .with_state(state)
}

#[derive(Serialize, ToSchema)]
struct Health {
    /// `ok`
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
struct Readiness {
    /// `ready` or `not ready`
    status: &'static str,
    /// Why not, when not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The process-wide Prometheus recorder; installed once, shared by every app in the process
/// (tests start many).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then ours just renders empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    responses((status = 200, description = "Always, while the process serves", body = Health))
)]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The database answers, its migrations are applied, and the node's other links (the Redis bus,
/// when configured) are up.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "meta",
    responses(
        (status = 200, description = "Ready to serve", body = Readiness),
        (status = 503, description = "Not ready, with the reason", body = Readiness),
    )
)]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let ready = state.db.ready().await.and_then(|()| {
        let problems = state.readiness.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    });
    match ready {
        Ok(()) => (
            StatusCode::OK,
            Json(Readiness {
                status: "ready",
                reason: None,
            }),
        ),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                status: "not ready",
                reason: Some(reason),
            }),
        ),
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    if let Ok(depth) = crate::outbox::depth(&state.db).await {
        for (status, count) in depth {
            metrics::gauge!("herald_deliveries", "status" => status).set(count as f64);
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}

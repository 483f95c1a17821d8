//! The admin HTTP endpoint: Prometheus `/metrics`, liveness `/healthz` (the tick loop is
//! advancing) and readiness `/readyz` (accepting players).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::metrics::Metrics;
use crate::server::Status;

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    status: Arc<Status>,
    last_seen: Arc<std::sync::Mutex<(u64, tokio::time::Instant)>>,
}

/// The admin router.
pub fn router(metrics: Arc<Metrics>, status: Arc<Status>) -> Router {
    let state = AdminState {
        metrics,
        status,
        last_seen: Arc::new(std::sync::Mutex::new((0, tokio::time::Instant::now()))),
    };
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics_text(
    State(s): State<AdminState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn healthz(State(s): State<AdminState>) -> (StatusCode, &'static str) {
    // Healthy while the tick counter moves (or the loop has not started yet).
    let ticks = s.status.ticks.load(Ordering::Acquire);
    let Ok(mut seen) = s.last_seen.lock() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "poisoned\n");
    };
    let now = tokio::time::Instant::now();
    if ticks != seen.0 {
        *seen = (ticks, now);
    }
    if ticks == 0 || now - seen.1 < Duration::from_secs(5) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "tick loop stalled\n")
    }
}

async fn readyz(State(s): State<AdminState>) -> (StatusCode, &'static str) {
    if s.status.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Serves the admin router on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    status: Arc<Status>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, status))
        .with_graceful_shutdown(shutdown)
        .await
}

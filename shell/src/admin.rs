//! The admin HTTP endpoint: Prometheus `/metrics`, liveness `/healthz` (every zone's tick loop
//! is advancing) and readiness `/readyz` (every zone accepting players).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::metrics::MetricsText;
use crate::server::Status;

type Seen = Vec<(u64, tokio::time::Instant)>;

#[derive(Clone)]
struct AdminState {
    metrics: Arc<dyn MetricsText>,
    statuses: Arc<Vec<Arc<Status>>>,
    last_seen: Arc<std::sync::Mutex<Seen>>,
}

/// The admin router over the metrics and the status of every zone the process serves.
pub fn router(metrics: Arc<dyn MetricsText>, statuses: Vec<Arc<Status>>) -> Router {
    let now = tokio::time::Instant::now();
    let state = AdminState {
        metrics,
        last_seen: Arc::new(std::sync::Mutex::new(vec![(0, now); statuses.len()])),
        statuses: Arc::new(statuses),
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
        s.metrics.text(),
    )
}

async fn healthz(State(s): State<AdminState>) -> (StatusCode, &'static str) {
    // Healthy while every zone's tick counter moves (or its loop has not started yet).
    let Ok(mut seen) = s.last_seen.lock() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "poisoned\n");
    };
    let now = tokio::time::Instant::now();
    for (status, seen) in s.statuses.iter().zip(seen.iter_mut()) {
        let ticks = status.ticks.load(Ordering::Acquire);
        if ticks != seen.0 {
            *seen = (ticks, now);
        }
        if ticks != 0 && now - seen.1 >= Duration::from_secs(5) {
            return (StatusCode::SERVICE_UNAVAILABLE, "tick loop stalled\n");
        }
    }
    (StatusCode::OK, "ok\n")
}

async fn readyz(State(s): State<AdminState>) -> (StatusCode, &'static str) {
    if s.statuses.iter().all(|st| st.ready.load(Ordering::Acquire)) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Most admin connections served at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 64;
/// A connection must have sent its request headers within this long.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection is served in all (the answers are immediate).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the admin router on `listener` until `shutdown` resolves: one request per
/// connection, headers within [`HEADER_TIMEOUT`], at most [`MAX_CONNECTIONS`] at once, so a
/// client that opens connections and never finishes a request holds nothing for long.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<dyn MetricsText>,
    statuses: Vec<Arc<Status>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(metrics, statuses);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            debug!("admin connection limit reached; closing a new connection");
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            let _slot = slot;
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
        });
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
    Ok(())
}

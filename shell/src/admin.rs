//! The admin HTTP endpoint: Prometheus `/metrics`, liveness `/healthz` (every zone this
//! process holds is ticking; the body lists each zone, held or waiting for its lease),
//! readiness `/readyz` (every zone accepting players; the body says which is not), and the
//! live world page ([`page`]: `/`, `/world/...`).

pub mod neighbours;
pub mod page;

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

use zone_core::ZoneId;

use crate::metrics::MetricsText;
use crate::server::Status;

type Seen = Vec<(u64, tokio::time::Instant)>;

#[derive(Clone)]
struct AdminState {
    metrics: Arc<dyn MetricsText>,
    statuses: Arc<Vec<(ZoneId, Arc<Status>)>>,
    last_seen: Arc<std::sync::Mutex<Seen>>,
}

/// The admin router over the metrics and the status of every zone the process serves, with
/// the world page when given one.
pub fn router(
    metrics: Arc<dyn MetricsText>,
    statuses: Vec<(ZoneId, Arc<Status>)>,
    page: Option<Arc<page::Page>>,
) -> Router {
    let now = tokio::time::Instant::now();
    let state = AdminState {
        metrics,
        last_seen: Arc::new(std::sync::Mutex::new(vec![(0, now); statuses.len()])),
        statuses: Arc::new(statuses),
    };
    let router = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state);
    match page {
        Some(page) => router.merge(page::routes(page)),
        None => router,
    }
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

async fn healthz(State(s): State<AdminState>) -> (StatusCode, String) {
    // Healthy while every held zone's tick counter moves (or its loop has not started yet).
    // A zone waiting to claim its lease again is not simulated here, which is not a fault of
    // this process: it is listed, not failed.
    let Ok(mut seen) = s.last_seen.lock() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "poisoned\n".into());
    };
    let now = tokio::time::Instant::now();
    let (mut code, mut body, mut lines) = (StatusCode::OK, "ok\n", String::new());
    for ((zone, status), seen) in s.statuses.iter().zip(seen.iter_mut()) {
        let ticks = status.ticks.load(Ordering::Acquire);
        if ticks != seen.0 {
            *seen = (ticks, now);
        }
        let line = if !status.held.load(Ordering::Acquire) {
            "not held (waiting to claim its lease)"
        } else if ticks != 0 && now - seen.1 >= Duration::from_secs(5) {
            (code, body) = (StatusCode::SERVICE_UNAVAILABLE, "tick loop stalled\n");
            "held, tick loop stalled"
        } else {
            "held, ticking"
        };
        lines.push_str(&format!("zone {zone}: {line}\n"));
    }
    (code, format!("{body}{lines}"))
}

async fn readyz(State(s): State<AdminState>) -> (StatusCode, String) {
    let not_ready: Vec<String> = s
        .statuses
        .iter()
        .filter(|(_, st)| !st.ready.load(Ordering::Acquire))
        .map(|(zone, st)| {
            let why = if !st.held.load(Ordering::Acquire) {
                "not held by this process"
            } else if st.hot_store_down.load(Ordering::Acquire) {
                "not ready for new players (hot store unreachable: logins that need the ownership ledger are refused; the zone plays on)"
            } else if st.ticks.load(Ordering::Acquire) == 0 {
                "starting"
            } else {
                "not ready for new players (the spool's disk is full or refuses writes)"
            };
            format!("zone {zone}: {why}\n")
        })
        .collect();
    if not_ready.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{}", not_ready.concat()),
        )
    }
}

/// Most admin connections served at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 64;
/// A connection must have sent its request headers within this long.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection is served in all (the answers are immediate; a map stream ends
/// itself before this, [`page::STREAM_LIFETIME`]).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` (see [`router`]) on `listener` until `shutdown` resolves: one request per
/// connection, headers within [`HEADER_TIMEOUT`], at most [`MAX_CONNECTIONS`] at once, so a
/// client that opens connections and never finishes a request holds nothing for long.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
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

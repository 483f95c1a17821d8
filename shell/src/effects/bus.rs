//! The zone bus's workers: the publisher of what the host sends other zones, and the
//! subscriber of this zone's channel, which passes every well-formed message to the loop and
//! counts and drops anything else.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tracing::{debug, warn};
use zone_core::ZoneId;

use super::StoreEvent;
use crate::metrics::{Metrics, Reason};
use crate::persist::HotStore;
use crate::persist::redis_keys;
use crate::world::seal::Opener;

/// Queues one bus message for the publisher (counted and dropped when the queue is full:
/// handoffs resend, ghosts repeat).
pub(super) fn publish(
    tx: &mpsc::Sender<(ZoneId, Vec<u8>)>,
    metrics: &Metrics,
    to: ZoneId,
    bytes: Vec<u8>,
) {
    if tx.try_send((to, bytes)).is_err() {
        metrics
            .bus_errors
            .get_or_create(&Reason {
                reason: "publish_queue_full".into(),
            })
            .inc();
    }
}

/// Publishes the queued messages until the queue closes.
pub(super) async fn publisher(
    hot: Arc<dyn HotStore>,
    mut rx: mpsc::Receiver<(ZoneId, Vec<u8>)>,
    metrics: Arc<Metrics>,
) {
    let mut failing = false;
    while let Some((to, bytes)) = rx.recv().await {
        match hot.publish(&redis_keys::zone_bus(to), &bytes).await {
            Ok(()) => failing = false,
            Err(e) => {
                metrics
                    .bus_errors
                    .get_or_create(&Reason {
                        reason: "publish_failed".into(),
                    })
                    .inc();
                if !failing {
                    warn!(error = %e, to = to.0, "zone bus publish failed (handoffs retry, ghosts repeat)");
                    failing = true;
                }
            }
        }
    }
}

/// Follows the zone's bus channel, through store outages (resubscribing), and passes every
/// well-formed message on; anything else is counted and dropped. Ends when the loop stops
/// taking events.
pub(super) async fn subscriber(
    hot: Arc<dyn HotStore>,
    zone: ZoneId,
    opener: Opener,
    events: mpsc::Sender<StoreEvent>,
    metrics: Arc<Metrics>,
) {
    let loop_side = events.clone();
    tokio::select! {
        () = loop_side.closed() => {}
        () = follow(hot, zone, opener, events, metrics) => {}
    }
}

async fn follow(
    hot: Arc<dyn HotStore>,
    zone: ZoneId,
    mut opener: Opener,
    events: mpsc::Sender<StoreEvent>,
    metrics: Arc<Metrics>,
) {
    let channel = redis_keys::zone_bus(zone);
    let drop = |why: &'static str| {
        metrics
            .bus_errors
            .get_or_create(&Reason { reason: why.into() })
            .inc();
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut rx = match hot.subscribe(&channel).await {
            Ok(rx) => {
                backoff = Duration::from_millis(50);
                rx
            }
            Err(e) => {
                debug!(error = %e, %zone, "zone bus subscription failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        loop {
            match rx.recv().await {
                Ok(m) if m.channel == channel => match opener.open(&m.payload) {
                    Ok((_, message)) => {
                        if events.send(StoreEvent::Bus(message)).await.is_err() {
                            return; // the loop is gone
                        }
                    }
                    Err(e) => drop(e.name()),
                },
                Ok(_) => {} // another channel of a shared subscription
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    for _ in 0..n.min(1_000) {
                        drop("lagged");
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

//! Conditional claims in the ownership ledger ([`ClaimRequest`]) and their worker: taking a
//! player a neighbour hands over, or taking back one whose handoff went unanswered. At most
//! [`CLAIMS_IN_FLIGHT`] run at once; the rest wait in the bounded queue.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use zone_core::{PlayerId, ZoneId};

use super::{LinkConfig, StoreEvent};
use crate::persist::{HotStore, Owner, StoreError};

/// Claims running at once at most.
pub const CLAIMS_IN_FLIGHT: usize = 64;

/// A conditional claim the host needs decided.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClaimRequest {
    /// Who.
    pub player: PlayerId,
    /// The owner record the claim is conditional on.
    pub expect: Option<Owner>,
    /// The epoch of the state being taken over.
    pub floor: u64,
    /// What it is for.
    pub purpose: ClaimPurpose,
}

/// Why the host claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimPurpose {
    /// To take a player a neighbour hands over.
    Accept {
        /// The handoff.
        handoff: u64,
        /// The neighbour.
        from: ZoneId,
    },
    /// To take back a player whose handoff went unanswered or was refused.
    Recall {
        /// The handoff.
        handoff: u64,
    },
}

/// Runs the claims of `rx` until the queue closes; then waits for the claims running.
pub(super) async fn claimer(
    hot: Arc<dyn HotStore>,
    config: LinkConfig,
    mut rx: mpsc::Receiver<ClaimRequest>,
    done: mpsc::Sender<StoreEvent>,
) {
    let in_flight = Arc::new(Semaphore::new(CLAIMS_IN_FLIGHT));
    let mut running = JoinSet::new();
    while let Some(request) = rx.recv().await {
        while running.try_join_next().is_some() {}
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let (hot, config, done) = (hot.clone(), config.clone(), done.clone());
        running.spawn(async move {
            let _permit = permit;
            let result = tokio::time::timeout(
                config.timeout,
                hot.claim_player(
                    request.player,
                    config.zone.0,
                    request.expect,
                    request.floor,
                    config.hot_ttl,
                ),
            )
            .await
            .unwrap_or(Err(StoreError::Timeout(config.timeout.as_millis() as u64)));
            let _ = done.send(StoreEvent::Claimed(request, result)).await;
        });
    }
    while running.join_next().await.is_some() {}
}

//! Conditional claims in the ownership ledger ([`ClaimRequest`]) and their worker: taking a
//! player a neighbour hands over, or taking back one whose handoff went unanswered. At most
//! [`CLAIMS_IN_FLIGHT`] run at once; the rest wait in the bounded queue.

use std::sync::Arc;

use tokio::sync::mpsc;
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
    rx: mpsc::Receiver<ClaimRequest>,
    done: mpsc::Sender<StoreEvent>,
) {
    super::run_bounded(rx, CLAIMS_IN_FLIGHT, |request: ClaimRequest| {
        let (hot, config, done) = (hot.clone(), config.clone(), done.clone());
        async move {
            let result = tokio::time::timeout(
                config.timeout,
                hot.claim_player(
                    request.player,
                    config.zone,
                    request.expect,
                    request.floor,
                    config.hot_ttl,
                ),
            )
            .await
            .unwrap_or(Err(StoreError::Timeout(config.timeout.as_millis() as u64)));
            let _ = done.send(StoreEvent::Claimed(request, result)).await;
        }
    })
    .await;
}

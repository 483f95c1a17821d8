//! The zone lease: claimed before a zone is simulated ([`claim_lease`]) and kept while it is
//! ([`keep_lease`]), with a fencing token that grows with every holder and is registered in
//! the cold store, which rejects saves under superseded fences.
//!
//! Safety (never two simulating holders): a holder counts its lease valid until `ttl` after
//! it *sent* its last successful renewal, minus a sixth of `ttl`; the store expires the key
//! `ttl` after it *received* that renewal, later still. So while the key lives out its time,
//! nobody else can claim it, and when it expires the holder has stopped. A key that vanishes
//! early (a Redis wipe, a failover to a replica without it) is the one case the store cannot
//! cover: a claimer that saw another holder, or that the cold store's fence shows was not the
//! zone's last holder, therefore holds the new lease for one whole lifetime, renewing it,
//! before it simulates; a cut-off holder cannot renew past that and stops first.
//!
//! What it buys (defaults: `ttl` 90 s, renewals every 5 s): a zone plays through a hot-store
//! outage of at least 70 s; a standby takes over a crashed holder within `ttl` (plus one
//! lifetime when it was not the last holder); a server restarted on its own data_dir
//! ([`crate::identity`]) takes its lease back at once, as the same owner.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::deadline::SaturatingAfter;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::Stores;
use crate::metrics::Metrics;
use crate::persist::redis_keys;
use crate::persist::{HotStore, Lease, StoreError};
use zone_core::ZoneId;

/// Why a zone lease could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The cold store could not say the zone's fence before the deadline.
    #[error("cannot read the fence of zone {zone} from the cold store")]
    Fence {
        /// The zone.
        zone: ZoneId,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// Another server still held the lease at the deadline.
    #[error(
        "zone {zone} is held by another server (lease {key}); not starting a second simulation"
    )]
    Held {
        /// The zone.
        zone: ZoneId,
        /// The lease's hot-store key.
        key: String,
    },
    /// The hot store failed at the deadline.
    #[error("cannot claim the lease of zone {zone}")]
    Claim {
        /// The zone.
        zone: ZoneId,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The deadline passed between attempts.
    #[error("could not claim the lease of zone {zone} within {deadline:?}")]
    Timeout {
        /// The zone.
        zone: ZoneId,
        /// The deadline.
        deadline: Duration,
    },
}

/// Claims the zone's lease, retrying until `deadline` (a previous owner's lease may still be
/// running out after a crash). The fence floor is durable: the largest of the cold store's
/// registered fence and `local_fence` (the spool's), so fences grow across a hot-store wipe.
/// When another holder was seen during the claim and the hot store is shared, the claimer
/// waits one lease lifetime (renewing) before simulating: a holder cut off by a wipe notices
/// at its next renewal and stops first. Then the fence is registered in the cold store, which
/// from then on rejects saves of the zone under older fences.
pub async fn claim_lease(
    stores: &Stores,
    zone: ZoneId,
    owner: &str,
    ttl: Duration,
    deadline: Duration,
    local_fence: u64,
) -> Result<Lease, LeaseError> {
    let (hot, cold) = (&stores.hot, &stores.cold);
    let until = Instant::now().saturating_after(deadline);
    let mut floor = local_fence;
    let mut saw_holder = false;
    loop {
        let known = match cold.zone_fence(zone).await {
            Ok(f) => Some(f),
            Err(e) if Instant::now() < until => {
                warn!(%zone, error = %e, "cannot read the zone's fence from the cold store; retrying");
                None
            }
            Err(e) => return Err(LeaseError::Fence { zone, source: e }),
        };
        if let Some(known) = known {
            // The cold store names a later holder than this server's own last one: someone
            // else held the zone, and if its lease key is gone (a wipe, a failover) it may
            // still be simulating, cut off. Wait it out like a holder seen in the key.
            saw_holder |= known > local_fence;
            floor = floor.max(known);
            match hot.acquire_lease(zone, owner, ttl, floor).await {
                Ok(Some(lease)) => {
                    if saw_holder
                        && hot.name() != "embedded"
                        && !wait_out_previous(hot, &lease, ttl).await
                    {
                        saw_holder = true;
                        continue;
                    }
                    match cold
                        .register_fence(zone, lease.fence, crate::tokens::unix_ms())
                        .await
                    {
                        Ok(max) if max <= lease.fence => return Ok(lease),
                        Ok(max) => {
                            warn!(
                                %zone,
                                fence = lease.fence,
                                registered = max,
                                "a larger fence is registered for the zone; claiming again above it"
                            );
                            floor = max;
                            let _ = hot.release_lease(&lease).await;
                        }
                        Err(e) => {
                            warn!(%zone, error = %e, "cannot register the zone's fence in the cold store; retrying");
                            let _ = hot.release_lease(&lease).await;
                        }
                    }
                }
                Ok(None) if Instant::now() < until => {
                    saw_holder = true;
                    info!(%zone, key = %redis_keys::lease(zone), "zone lease held by another server; waiting for it to expire");
                }
                Err(e) if Instant::now() < until => {
                    warn!(%zone, error = %e, "cannot reach the hot store to claim the zone lease; retrying");
                }
                Ok(None) => {
                    return Err(LeaseError::Held {
                        zone,
                        key: redis_keys::lease(zone),
                    });
                }
                Err(e) => return Err(LeaseError::Claim { zone, source: e }),
            }
        }
        if Instant::now() >= until {
            return Err(LeaseError::Timeout { zone, deadline });
        }
        tokio::time::sleep(ttl / 4).await;
    }
}

/// Holds a just-acquired lease for one lifetime, renewing it, before the new holder starts:
/// whoever held the zone before has stopped by then. False when the lease was lost meanwhile.
async fn wait_out_previous(hot: &Arc<dyn HotStore>, lease: &Lease, ttl: Duration) -> bool {
    info!(zone = %lease.zone, fence = lease.fence, wait = ?ttl, "zone lease taken over: waiting one lease lifetime so the previous holder has stopped");
    for _ in 0..3 {
        tokio::time::sleep(ttl / 3).await;
        if !matches!(hot.renew_lease(lease, ttl).await, Ok(true)) {
            return false;
        }
    }
    true
}

/// How often a held lease is renewed: every third of its lifetime, at most every
/// [`MAX_RENEW_PERIOD`]. A hot-store outage is ridden out for `ttl - ttl/6` minus one period
/// at worst: 70 s of the default 90 s lease.
pub fn renew_period(ttl: Duration) -> Duration {
    (ttl / 3).min(MAX_RENEW_PERIOD)
}

/// The longest wait between two renewals of a lease.
pub const MAX_RENEW_PERIOD: Duration = Duration::from_secs(5);

/// Renews `lease` every [`renew_period`] (and republishes the zone's `address` with it).
/// The holder counts the lease valid only until `ttl` after it *sent* its last successful
/// renewal, and gives it up a sixth of `ttl` before that: the store expires it later still,
/// and nobody else can claim it before, so two holders never overlap. When it is lost (taken,
/// or not renewed in time) it counts the loss and cancels `lost`: the server must stop
/// simulating the zone. When the lease key vanished without anyone else taking it (a Redis
/// restart without persistence), it is claimed again with a larger fencing token.
/// Returns when `stop` is cancelled (releasing the lease).
pub async fn keep_lease(
    stores: Stores,
    mut lease: Lease,
    fence: watch::Sender<u64>,
    ttl: Duration,
    address: Option<String>,
    metrics: Arc<Metrics>,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    let hot = stores.hot.clone();
    let margin = ttl / 6;
    let mut valid_until = Instant::now() + ttl;
    let give_up = |lease: &Lease, why: &str| {
        metrics.leases_lost.inc();
        error!(
            zone = %lease.zone,
            fence = lease.fence,
            why,
            "zone lease lost; stopping the simulation"
        );
        lost.cancel();
    };
    if let Some(a) = &address
        && let Err(e) = hot.set_zone_address(lease.zone, a, ttl).await
    {
        warn!(zone = %lease.zone, error = %e, "could not publish the zone's address");
    }
    loop {
        let deadline = valid_until - margin;
        tokio::select! {
            _ = tokio::time::sleep(renew_period(ttl)) => {}
            _ = tokio::time::sleep_until(deadline) => {
                give_up(&lease, "not renewed before expiry");
                return;
            }
            _ = stop.cancelled() => {
                if let Err(e) = hot.release_lease(&lease).await {
                    warn!(error = %e, "could not release the zone lease (it will expire)");
                }
                return;
            }
        }
        let sent = Instant::now();
        match tokio::time::timeout_at(deadline, hot.renew_lease(&lease, ttl)).await {
            Err(_) => {
                give_up(&lease, "renewal did not answer before expiry");
                return;
            }
            Ok(Ok(true)) => {
                valid_until = sent + ttl;
                if let Some(a) = &address {
                    let _ = hot.set_zone_address(lease.zone, a, ttl).await;
                }
            }
            Ok(Ok(false)) => {
                let floor = match stores.cold.zone_fence(lease.zone).await {
                    Ok(f) => f.max(lease.fence),
                    Err(_) => u64::MAX, // cannot know the floor: do not re-claim blind
                };
                let again = if floor == u64::MAX {
                    None
                } else {
                    hot.acquire_lease(lease.zone, &lease.owner, ttl, floor)
                        .await
                        .ok()
                        .flatten()
                };
                let registered = match &again {
                    Some(a) => stores
                        .cold
                        .register_fence(a.zone, a.fence, crate::tokens::unix_ms())
                        .await
                        .is_ok_and(|max| max <= a.fence),
                    None => false,
                };
                if let (Some(again), true) = (again, registered) {
                    warn!(
                        zone = %lease.zone,
                        old = lease.fence,
                        new = again.fence,
                        "zone lease vanished from the hot store (wiped?); claimed it again"
                    );
                    lease = again;
                    let _ = fence.send(lease.fence);
                    valid_until = sent + ttl;
                    continue;
                }
                give_up(
                    &lease,
                    "taken by another owner (or vanished and not re-claimable)",
                );
                return;
            }
            Ok(Err(e)) => {
                // Unknown: we may still hold it; the deadline decides.
                warn!(zone = %lease.zone, error = %e, "zone lease renewal failed; retrying");
            }
        }
    }
}

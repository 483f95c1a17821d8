//! The zone lease: claimed before a zone is simulated ([`claim_lease`]) and kept while it is
//! ([`keep_lease`]), with a fencing token that grows with every holder and is registered in
//! the cold store, which rejects saves under superseded fences.
//!
//! Safety (never two simulating holders):
//! - A holder counts its lease valid until `ttl` after it *sent* its last successful renewal,
//!   minus a sixth of `ttl`; the store expires the key `ttl` after it *received* that renewal,
//!   later still. So while the key lives out its time nobody else can claim it, and when it
//!   expires the holder has stopped (the lease ends by the holder's own local deadline).
//! - A claimer watching the key that sees less than `ttl / 12` left knows the holder is past
//!   its deadline and can no longer renew ([`STOPPED_BELOW`]): it takes the zone as soon as the
//!   key is gone. A holder that stops gracefully *releases* its lease: the key stays, without
//!   an owner, for the rest of its lifetime, and a claimer takes it at once. A process whose lease was lost claims it again only under a new owner name,
//!   so a stopped lease is never revived as "its own".
//! - A key that vanishes early (a Redis wipe, a failover to a replica without it) is the case
//!   the store cannot cover. As NFSv4 and Chubby do after a restart, the previous holder gets
//!   a grace period (two renewals) to claim it back first: its keeper finds its key gone at
//!   its next renewal and re-claims it with a larger fence. A claimer that gets it anyway, or
//!   that the cold store's fence shows was not the zone's last holder without having seen that
//!   holder stop, holds the new lease for one whole lifetime, renewing it, before it
//!   simulates; a cut-off holder cannot renew past that and stops first.
//! - A server restarted on its own data_dir ([`crate::identity`]) is the same owner and takes
//!   its lease back at once (its old process is gone: the data_dir lock says so).
//!
//! What it buys (defaults: `ttl` 90 s, renewals every 5 s): a zone plays through a hot-store
//! outage of at least 70 s (`ttl - ttl/6 - 5 s`). A standby that watched the holder's key
//! takes over a crashed or cut-off holder when its key expires, within `ttl` (90 s) of the
//! last renewal; a standby started after that, or after a wipe, waits one more lifetime
//! (180 s in all). Lowering `ttl` shortens take-over and the outage ridden out alike.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::deadline::SaturatingAfter;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::Stores;
use crate::metrics::Metrics;
use crate::persist::redis_keys;
use crate::persist::{HotStore, Lease, LeaseHolder, StoreError};
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
///
/// When the hot store is shared and the zone may have had another holder (one was seen in the
/// key, or the cold store's fence is newer than `local_fence`), the claimer must be sure that
/// holder has stopped before it simulates. It watches the key ([`Watch`]): a holder seen with
/// less than [`STOPPED_BELOW`] of its lifetime left has passed its own deadline, so the claimer
/// takes the zone as soon as the key is gone. Otherwise (the key vanished early: a wipe, a
/// failover) the previous holder gets a grace period of two renewals to claim it back first,
/// and a claimer that still gets it holds it one whole lifetime, renewing, before it
/// simulates: a holder cut off by the wipe notices at its next renewal and stops first. Then
/// the fence is registered in the cold store, which from then on rejects saves of the zone
/// under older fences.
pub async fn claim_lease(
    stores: &Stores,
    zone: ZoneId,
    owner: &str,
    ttl: Duration,
    deadline: Duration,
    local_fence: u64,
) -> Result<Lease, LeaseError> {
    let (hot, cold) = (&stores.hot, &stores.cold);
    let shared = hot.name() != "embedded";
    let until = Instant::now().saturating_after(deadline);
    let mut floor = local_fence;
    let mut saw_holder = false;
    let mut watch = Watch::default();
    let mut announced = None;
    loop {
        let known = match cold.zone_fence(zone).await {
            Ok(f) => Some(f),
            Err(e) if Instant::now() < until => {
                warn!(%zone, error = %e, "cannot read the zone's fence from the cold store; retrying");
                None
            }
            Err(e) => return Err(LeaseError::Fence { zone, source: e }),
        };
        let mut pause = ttl / 4;
        if let Some(known) = known {
            // The cold store names a later holder than this server's own last one: someone
            // else held the zone, and if its lease key is gone (a wipe, a failover) it may
            // still be simulating, cut off. Wait it out like a holder seen in the key.
            saw_holder |= known > local_fence;
            floor = floor.max(known);
            let look = if shared {
                watch.look(hot, zone, owner, ttl).await
            } else {
                Look::Free
            };
            match look {
                Look::Held(wait) => {
                    saw_holder = true;
                    pause = wait;
                    // Once per holder (a watch looks up to a few times a second near expiry).
                    let fence = watch.held.map(|(f, _)| f);
                    if announced != fence {
                        announced = fence;
                        info!(%zone, key = %redis_keys::lease(zone), fence, "zone lease held by another server; waiting for it to expire");
                    } else {
                        debug!(%zone, fence, "zone lease still held by another server");
                    }
                }
                Look::Grace(wait) => {
                    pause = wait;
                    info!(%zone, "zone lease vanished before its holder's time ran out (wiped?): giving the previous holder its grace period to claim it back");
                }
                Look::Free => match hot.acquire_lease(zone, owner, ttl, floor).await {
                    Ok(Some(lease)) => {
                        let stopped = watch.stopped.is_some_and(|f| f >= known);
                        if saw_holder
                            && shared
                            && !stopped
                            && !wait_out_previous(hot, &lease, ttl).await
                        {
                            saw_holder = true;
                        } else {
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
                },
            }
        }
        let now = Instant::now();
        if now >= until {
            return Err(match watch.held {
                Some(_) => LeaseError::Held {
                    zone,
                    key: redis_keys::lease(zone),
                },
                None => LeaseError::Timeout { zone, deadline },
            });
        }
        tokio::time::sleep(pause.min(until - now)).await;
    }
}

/// A holder seen with less than this share of its lifetime left (`ttl / 12`) has passed its
/// own deadline (a sixth of `ttl` before the store's expiry), with room for latency and clock
/// drift: it has stopped simulating and can no longer renew.
pub const STOPPED_BELOW: u32 = 12;

/// What a claimer has seen of the zone's other holder in the hot store.
#[derive(Debug, Default)]
struct Watch {
    /// The last holder seen (not this owner): its fence and when its key expires unless
    /// renewed, by this claimer's clock (counted from before the question was sent).
    held: Option<(u64, Instant)>,
    /// The fence of a holder seen with less than `ttl / STOPPED_BELOW` left: stopped.
    stopped: Option<u64>,
    /// When the key was first seen gone before the last holder's time ran out.
    vanished_at: Option<Instant>,
}

/// What to do after a look at the lease key.
#[derive(Debug)]
enum Look {
    /// Another owner holds it: look again after this long.
    Held(Duration),
    /// The key vanished before its holder's time ran out: the previous holder may claim it
    /// back first; look again after this long.
    Grace(Duration),
    /// Nobody else holds it (or the store cannot say: the claim will tell).
    Free,
}

impl Watch {
    /// Asks the store who holds the lease and takes in the answer ([`Watch::see`]).
    async fn look(
        &mut self,
        hot: &Arc<dyn HotStore>,
        zone: ZoneId,
        owner: &str,
        ttl: Duration,
    ) -> Look {
        let asked = Instant::now();
        match hot.lease_holder(zone).await {
            Ok(seen) => self.see(asked, seen, owner, ttl),
            Err(_) => Look::Free,
        }
    }

    /// Takes in what the store said at `asked` (sans-IO: the rules of the watch).
    fn see(
        &mut self,
        asked: Instant,
        seen: Option<LeaseHolder>,
        owner: &str,
        ttl: Duration,
    ) -> Look {
        match seen {
            Some(h) if h.released => {
                // Given up by a holder that has stopped: free to take, nothing to wait out.
                self.stopped = Some(h.lease.fence);
                self.held = Some((h.lease.fence, asked.saturating_after(h.remaining)));
                self.vanished_at = None;
                Look::Free
            }
            Some(h) if h.lease.owner != owner => {
                let expires = asked.saturating_after(h.remaining);
                if h.remaining < ttl / STOPPED_BELOW {
                    self.stopped = Some(h.lease.fence);
                } else if self.stopped != Some(h.lease.fence) {
                    self.stopped = None;
                }
                self.held = Some((h.lease.fence, expires));
                self.vanished_at = None;
                // Look again when it should have expired, and in time to see it stop.
                let soon = h.remaining.saturating_sub(ttl / STOPPED_BELOW) + ttl / 100;
                Look::Held(soon.min(h.remaining + ttl / 100).min(ttl / 4))
            }
            None => match self.held {
                Some((fence, expires)) if asked < expires && self.stopped != Some(fence) => {
                    let since = *self.vanished_at.get_or_insert(asked);
                    let grace_ends = since.saturating_after(renew_period(ttl) * 2);
                    if asked < grace_ends {
                        Look::Grace((grace_ends - asked).min(renew_period(ttl) / 2))
                    } else {
                        Look::Free
                    }
                }
                _ => Look::Free,
            },
            // Our own: the claim takes it over.
            Some(_) => Look::Free,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(90);

    fn held(owner: &str, fence: u64, remaining: Duration) -> Option<LeaseHolder> {
        Some(LeaseHolder {
            lease: Lease {
                zone: ZoneId(1),
                owner: owner.into(),
                fence,
            },
            remaining,
            released: owner.is_empty(),
        })
    }

    #[test]
    fn a_holder_seen_past_its_deadline_is_taken_over_without_waiting_out() {
        let (mut w, t0) = (Watch::default(), Instant::now());
        let s = Duration::from_secs;
        assert!(matches!(
            w.see(t0, held("a", 7, s(80)), "b", TTL),
            Look::Held(_)
        ));
        assert_eq!(w.stopped, None, "a live holder");
        // 5 s left: below ttl/12 (7.5 s), past the holder's own deadline (ttl/6 before).
        assert!(matches!(
            w.see(t0 + s(75), held("a", 7, s(5)), "b", TTL),
            Look::Held(_)
        ));
        assert_eq!(w.stopped, Some(7));
        // Gone (expired, or wiped: the holder has stopped either way): take it now.
        assert!(matches!(w.see(t0 + s(76), None, "b", TTL), Look::Free));
        assert_eq!(w.stopped, Some(7));
    }

    #[test]
    fn a_key_lost_early_gives_its_holder_a_grace_period_first() {
        let (mut w, t0) = (Watch::default(), Instant::now());
        let s = Duration::from_secs;
        assert!(matches!(
            w.see(t0, held("a", 7, s(88)), "b", TTL),
            Look::Held(_)
        ));
        // Wiped with 88 s still to run: the holder may be alive and claims it back first.
        assert!(matches!(w.see(t0 + s(1), None, "b", TTL), Look::Grace(_)));
        assert!(matches!(w.see(t0 + s(6), None, "b", TTL), Look::Grace(_)));
        // It did: a new fence, live. Lost again later: a new grace period from then.
        assert!(matches!(
            w.see(t0 + s(7), held("a", 9, s(90)), "b", TTL),
            Look::Held(_)
        ));
        assert!(matches!(w.see(t0 + s(20), None, "b", TTL), Look::Grace(_)));
        // Nobody claimed it within two renewals (10 s): free, but not seen stopped, so the
        // claim still waits one lifetime out.
        assert!(matches!(w.see(t0 + s(31), None, "b", TTL), Look::Free));
        assert_eq!(w.stopped, None);
    }

    #[test]
    fn a_released_lease_is_free_at_once_and_our_own_is_ours() {
        let (mut w, t0) = (Watch::default(), Instant::now());
        assert!(matches!(w.see(t0, held("", 7, TTL), "b", TTL), Look::Free));
        assert_eq!(w.stopped, Some(7), "released: its holder has stopped");
        let mut w = Watch::default();
        assert!(matches!(w.see(t0, held("b", 7, TTL), "b", TTL), Look::Free));
        // A holder seen renewed after it was seen stopped keeps its fence stopped (a late
        // renewal reaching the store after the holder gave up); a new fence is live again.
        let s = Duration::from_secs;
        let mut w = Watch::default();
        let _ = w.see(t0, held("a", 7, s(3)), "b", TTL);
        let _ = w.see(t0 + s(1), held("a", 7, s(90)), "b", TTL);
        assert_eq!(w.stopped, Some(7));
        let _ = w.see(t0 + s(2), held("a", 8, s(90)), "b", TTL);
        assert_eq!(w.stopped, None);
    }

    #[test]
    fn renewals_come_every_third_of_the_lease_at_most_every_five_seconds() {
        assert_eq!(
            renew_period(Duration::from_secs(90)),
            Duration::from_secs(5)
        );
        assert_eq!(renew_period(Duration::from_secs(6)), Duration::from_secs(2));
    }
}

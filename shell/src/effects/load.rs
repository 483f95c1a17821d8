//! Loading a joining player ([`LoadRequest`]) and its worker: the newest of the spool's
//! unflushed copy and the stores' (the pure rule is [`crate::persist::load_policy`]), then a
//! claim in the ownership ledger for this zone. At most [`LOADS_IN_FLIGHT`] loads run at once;
//! the rest wait in the bounded queue.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::debug;
use zone_core::PlayerId;

use super::{LinkConfig, StoreEvent, Stores};
use crate::metrics::{Metrics, Reason};
use crate::persist::load_policy::{self, Choice, LoadSource};
use crate::persist::redis_keys;
use crate::persist::spool::Spool;
use crate::persist::{Claim, StoreError, StoredPlayer};
use crate::world::bus::BusMessage;
use crate::world::seal::Sealer;

/// Loads running at once at most.
pub const LOADS_IN_FLIGHT: usize = 256;
/// Joins allowed per player per minute (reconnect storms, token replays by a bot farm).
const JOINS_PER_MINUTE: u32 = 30;

/// A player to load before they can join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadRequest {
    /// Who.
    pub player: PlayerId,
}

/// Why a join could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadFailure {
    /// The player joined too often lately.
    RateLimited,
    /// Too many loads waiting.
    QueueFull,
    /// A store could not answer (a guess could roll the player back).
    Stores(String),
    /// The ownership ledger did not confirm the claim.
    Ledger,
}

impl LoadFailure {
    /// The `zone_player_loads_total` reason of this refusal: `refused_<name>` (a hot-store
    /// outage shows as `refused_stores` and `refused_ledger`).
    pub fn refused(&self) -> &'static str {
        match self {
            LoadFailure::RateLimited => "refused_rate_limited",
            LoadFailure::QueueFull => "refused_queue_full",
            LoadFailure::Stores(_) => "refused_stores",
            LoadFailure::Ledger => "refused_ledger",
        }
    }

    /// Short stable name (logs, metrics).
    pub fn name(&self) -> &'static str {
        match self {
            LoadFailure::RateLimited => "rate_limited",
            LoadFailure::QueueFull => "queue_full",
            LoadFailure::Stores(_) => "stores",
            LoadFailure::Ledger => "ledger",
        }
    }
}

impl std::fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadFailure::RateLimited => f.write_str("join rate limit"),
            LoadFailure::QueueFull => f.write_str("load queue full"),
            LoadFailure::Stores(why) => write!(f, "stores unavailable: {why}"),
            LoadFailure::Ledger => f.write_str("ownership ledger unavailable"),
        }
    }
}

/// Where a joining player's state came from, or why it could not be loaded. The state comes
/// claimed: its version carries this zone's new ownership epoch.
#[derive(Clone, Debug, PartialEq)]
pub enum LoadOutcome {
    /// Found locally or in a store (the newest of the hot and cold copies).
    Found {
        /// The stored state and profile.
        stored: StoredPlayer,
        /// Which copy.
        source: LoadSource,
    },
    /// No store knows the player: a new character, under this ownership epoch.
    New {
        /// The epoch the zone claimed.
        epoch: u64,
    },
    /// The join is refused.
    Failed(LoadFailure),
}

/// Loads a player: reads the spool's newest unacknowledged save of them (first: a save
/// acknowledged after this read is in the cold store read after it), the hot and the cold
/// copy, and lets [`load_policy::choose`] pick (refusing the join when a store cannot answer).
/// Then claims them for `config.zone` in the ownership ledger, with the chosen state's epoch
/// as the floor: the state comes back under the new epoch. A join the ledger cannot confirm is
/// refused (two unconfirmed logins could tie on a version).
pub async fn load_player(
    stores: &Stores,
    spool: &Spool,
    config: &LinkConfig,
    sealer: &Sealer,
    request: LoadRequest,
    metrics: &Metrics,
) -> LoadOutcome {
    let player = request.player;
    let local = spool.newest_save(player);
    if local.is_none()
        && let Ok(false) = stores
            .hot
            .rate_limit(
                &format!("join:{}", player.0),
                JOINS_PER_MINUTE,
                Duration::from_secs(60),
            )
            .await
    {
        return LoadOutcome::Failed(LoadFailure::RateLimited);
    }
    let timeout = config.timeout;
    let timed_out = || StoreError::Timeout(timeout.as_millis() as u64);
    let (hot, cold) = tokio::join!(
        tokio::time::timeout(timeout, stores.hot.player_state(player)),
        tokio::time::timeout(timeout, stores.cold.load_player(player)),
    );
    let choice = load_policy::choose(
        local,
        hot.unwrap_or_else(|_| Err(timed_out())),
        cold.unwrap_or_else(|_| Err(timed_out())),
    );
    let found = match choice {
        Choice::Refuse(why) => return LoadOutcome::Failed(LoadFailure::Stores(why)),
        Choice::New => None,
        Choice::Found { stored, source } => Some((stored, source)),
    };
    let floor = found.as_ref().map_or(0, |(s, _)| s.state.epoch());
    let claim = tokio::time::timeout(timeout, async {
        let before = stores.hot.player_owner(player).await.ok().flatten();
        let claim = stores
            .hot
            .claim_player(player, config.zone, None, floor, config.hot_ttl)
            .await;
        (before, claim)
    })
    .await;
    let epoch = match claim {
        Ok((before, Ok(Claim::Won(owner)))) => {
            count(metrics, "won");
            if let Some(old) = before.filter(|o| o.zone != config.zone) {
                // A login here while another zone held the player: that zone drops its copy
                // (and finds out by its ledger keep-alive if this message is lost).
                let evict = BusMessage::Evict {
                    from: config.zone,
                    to: old.zone,
                    player,
                    epoch: owner.epoch,
                };
                if let Ok(bytes) = sealer.seal(&evict) {
                    let _ = stores
                        .hot
                        .publish(&redis_keys::zone_bus(old.zone), &bytes)
                        .await;
                }
            }
            owner.epoch
        }
        other => {
            count(metrics, "failed");
            debug!(player = player.0, result = ?other, "ownership ledger did not confirm the claim; join refused");
            return LoadOutcome::Failed(LoadFailure::Ledger);
        }
    };
    match found {
        Some((stored, source)) => LoadOutcome::Found {
            stored: StoredPlayer {
                state: stored.state.claimed(epoch),
                profile: stored.profile,
            },
            source,
        },
        None => LoadOutcome::New { epoch },
    }
}

fn count(metrics: &Metrics, result: &'static str) {
    metrics
        .player_claims
        .get_or_create(&Reason {
            reason: result.into(),
        })
        .inc();
}

/// Runs the loads of `rx`, at most [`LOADS_IN_FLIGHT`] at once, until the queue closes; then
/// waits for the loads running.
pub(super) async fn loader(
    stores: Stores,
    spool: Spool,
    config: LinkConfig,
    sealer: Arc<Sealer>,
    rx: mpsc::Receiver<LoadRequest>,
    done: mpsc::Sender<StoreEvent>,
    metrics: Arc<Metrics>,
) {
    super::run_bounded(rx, LOADS_IN_FLIGHT, |request: LoadRequest| {
        let (stores, spool, config, sealer, done, metrics) = (
            stores.clone(),
            spool.clone(),
            config.clone(),
            sealer.clone(),
            done.clone(),
            metrics.clone(),
        );
        async move {
            let outcome = load_player(&stores, &spool, &config, &sealer, request, &metrics).await;
            debug!(player = request.player.0, ?outcome, "player load finished");
            let _ = done.send(StoreEvent::Loaded(request.player, outcome)).await;
        }
    })
    .await;
}

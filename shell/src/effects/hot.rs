//! Hot-store writes ([`HotOp`]) and their worker: sessions, presence, positions, the players'
//! last states and their ownership-ledger records. A cache: a write that fails is counted and
//! rewritten by the next periodic refresh.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{info, warn};
use zone_core::{PlayerId, PlayerState};

use super::{LinkConfig, StoreEvent};
use crate::metrics::{Metrics, Reason};
use crate::persist::redis_keys;
use crate::persist::{HotStore, Position, Session};

/// A hot-store update the host asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum HotOp {
    /// A player joined this zone.
    Joined {
        /// Who.
        player: PlayerId,
    },
    /// A player left; keep their last state hot.
    Left {
        /// Who.
        player: PlayerId,
        /// Their state at leaving.
        state: PlayerState,
    },
    /// Periodic refresh of presence, positions, sessions and ownership records.
    Refresh {
        /// Everyone in the zone with their position.
        positions: Vec<Position>,
        /// Everyone in the zone with the ownership epoch they are held under.
        held: Vec<(PlayerId, u64)>,
    },
}

/// Writes the hot-store updates in order until the queue closes.
pub(super) async fn writer(
    hot: Arc<dyn HotStore>,
    config: LinkConfig,
    mut rx: mpsc::Receiver<HotOp>,
    events: mpsc::Sender<StoreEvent>,
    metrics: Arc<Metrics>,
) {
    let count = |op: &'static str| {
        metrics
            .hot_errors
            .get_or_create(&Reason { reason: op.into() })
            .inc();
    };
    let mut failing = false;
    // Other zones and services follow who enters and leaves on the zone's channel.
    let channel = redis_keys::zone_channel(config.zone);
    while let Some(op) = rx.recv().await {
        let (name, result) = match &op {
            HotOp::Joined { player } => {
                let session = Session {
                    player: *player,
                    zone: config.zone,
                    server: config.server.clone(),
                };
                let mut r = hot.put_session(&session, config.hot_ttl).await;
                if r.is_ok() {
                    r = hot
                        .publish(&channel, format!("join {}", player.0).as_bytes())
                        .await;
                }
                ("session", r)
            }
            HotOp::Left { player, state } => {
                let mut r = hot.put_player_state(*player, state, config.hot_ttl).await;
                if r.is_ok() {
                    r = hot.drop_session(*player).await;
                }
                if r.is_ok() {
                    r = hot
                        .publish(&channel, format!("leave {}", player.0).as_bytes())
                        .await;
                }
                ("player_state", r)
            }
            HotOp::Refresh { positions, held } => {
                let players: Vec<PlayerId> = positions.iter().map(|p| p.player).collect();
                // Presence and positions are rewritten whole each period, so a wiped Redis
                // is repopulated within one period; sessions are refreshed with them.
                let mut r = hot
                    .set_presence(config.zone, &players, config.hot_ttl)
                    .await;
                if r.is_ok() {
                    r = hot
                        .flush_positions(config.zone, positions, config.hot_ttl)
                        .await;
                }
                if r.is_ok() {
                    let sessions: Vec<Session> = players
                        .iter()
                        .map(|player| Session {
                            player: *player,
                            zone: config.zone,
                            server: config.server.clone(),
                        })
                        .collect();
                    r = hot.put_sessions(&sessions, config.hot_ttl).await;
                }
                // The ownership records live as long as the zone holds the players.
                if r.is_ok() {
                    r = match hot.keep_players(config.zone, held, config.hot_ttl).await {
                        Ok(superseded) if superseded.is_empty() => Ok(()),
                        Ok(superseded) => {
                            let _ = events.send(StoreEvent::Superseded(superseded)).await;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    };
                }
                ("refresh", r)
            }
        };
        metrics.hot_store_up.set(i64::from(result.is_ok()));
        match result {
            Ok(()) => {
                if failing {
                    info!(store = hot.name(), "hot store writes recovered");
                    failing = false;
                }
            }
            Err(e) => {
                count(name);
                if !failing {
                    warn!(store = hot.name(), op = name, error = %e, "hot store write failed (cache only; will be rewritten)");
                    failing = true;
                }
            }
        }
    }
}

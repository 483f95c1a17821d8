//! End-of-tick bookkeeping: staggered player checkpoints for persistence, players standing
//! outside the zone (border crossings), and population counts.

use bevy_ecs::prelude::*;

use crate::components::{
    Clock, Facing, Health, MapRes, NetId, Player, Position, Registry, RulesRes,
};
use crate::systems::player_state;
use crate::{BorderCrossing, PlayerSave, SaveReason, TickOutput};

pub(crate) fn bookkeeping(
    clock: Res<Clock>,
    rules: Res<RulesRes>,
    map: Res<MapRes>,
    registry: Res<Registry>,
    mut out: ResMut<TickOutput>,
    mut players: Query<(&NetId, &mut Player, &Position, &Facing, &Health)>,
) {
    let tick = clock.tick;
    let interval = u64::from(rules.0.checkpoint_interval_ticks.max(1));
    let first_new = out.player_saves.len();
    for (net, mut p, pos, facing, hp) in &mut players {
        if !map.0.contains(pos.0) {
            out.crossings.push(BorderCrossing {
                player: p.id,
                entity: net.0,
                x: pos.0.x,
                y: pos.0.y,
            });
        }
        if (tick + u64::from(net.0.0)).is_multiple_of(interval) {
            p.version = p.version.next();
            let state = player_state(&p, pos, facing, hp);
            out.player_saves.push(PlayerSave {
                player: p.id,
                state,
                reason: SaveReason::Checkpoint,
            });
        }
    }
    out.player_saves[first_new..].sort_unstable_by_key(|s| s.player);
    out.crossings.sort_unstable_by_key(|c| c.player);
    out.metrics.players = registry.players.len() as u32;
    out.metrics.npcs = registry.npcs;
}

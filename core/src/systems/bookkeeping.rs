//! End-of-tick bookkeeping: staggered player checkpoints for persistence and population counts.

use bevy_ecs::prelude::*;

use crate::components::{Clock, Facing, Health, NetId, Player, Position, Registry, RulesRes};
use crate::systems::player_state;
use crate::{PlayerSave, SaveReason, TickOutput};

pub(super) fn bookkeeping(
    clock: Res<Clock>,
    rules: Res<RulesRes>,
    registry: Res<Registry>,
    mut out: ResMut<TickOutput>,
    mut players: Query<(&NetId, &mut Player, &Position, &Facing, &Health)>,
) {
    let tick = clock.tick;
    let interval = u64::from(rules.0.checkpoint_interval_ticks.max(1));
    let first_new = out.player_saves.len();
    for (net, mut p, pos, facing, hp) in &mut players {
        if (tick + u64::from(net.0.0)).is_multiple_of(interval) {
            p.version += 1;
            let state = player_state(&p, pos, facing, hp);
            out.player_saves.push(PlayerSave {
                player: p.id,
                state,
                reason: SaveReason::Checkpoint,
            });
        }
    }
    out.player_saves[first_new..].sort_unstable_by_key(|s| s.player);
    out.metrics.players = registry.players.len() as u32;
    out.metrics.npcs = registry.npcs;
}

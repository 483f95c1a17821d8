//! NPC behaviour: idle and wander near home, notice players within the aggro radius, chase and
//! attack, give up beyond the leash radius and walk home healed.
//!
//! Decisions (aggro scans, wander goals) are taken every `think_interval_ticks`, staggered by
//! entity id; steering toward the current goal happens every tick. Randomness comes from
//! [`crate::rng::stream`] keyed by entity and tick, never from shared generator state.

use bevy_ecs::prelude::*;
use glam::Vec2;

use crate::components::{
    AiState, Clock, Cooldowns, Health, Intent, Life, MapRes, NetId, Npc, PendingAbility, Player,
    Position, Registry, RulesRes, ZoneInfo,
};
use crate::grid::SpatialGrid;
use crate::rng::{self, Purpose};
use crate::{AbilityId, AbilityUse, TickOutput};

/// Living players bucketed by cell, rebuilt every tick for aggro scans.
#[derive(Resource, Debug)]
pub(crate) struct PlayerGrid(pub SpatialGrid);

type Brain<'a> = (
    &'a NetId,
    &'a Position,
    &'a Life,
    &'a mut Health,
    &'a mut Npc,
    &'a mut Intent,
    &'a mut PendingAbility,
    &'a Cooldowns,
);

#[allow(clippy::too_many_arguments)]
pub(crate) fn npc_ai(
    clock: Res<Clock>,
    info: Res<ZoneInfo>,
    rules: Res<RulesRes>,
    map: Res<MapRes>,
    registry: Res<Registry>,
    mut grid: ResMut<PlayerGrid>,
    mut out: ResMut<TickOutput>,
    players: Query<(&NetId, &Position, &Life), With<Player>>,
    mut npcs: Query<Brain<'_>, (With<Npc>, Without<Player>)>,
) {
    let tick = clock.tick;
    let rules = &rules.0;
    let n = &rules.npc;
    let ability = AbilityId(n.ability);
    let reach = rules.ability(ability).map_or(1.0, |a| a.range * 0.9);
    grid.0.rebuild(
        players
            .iter()
            .filter(|(_, _, l)| l.is_alive())
            .map(|(id, p, _)| (id.0, p.0)),
    );
    let mut thinks = 0;
    let mut candidates = 0;

    for (net, pos, life, mut hp, mut npc, mut intent, mut pending, cooldowns) in &mut npcs {
        if !life.is_alive() {
            if let AiState::Chase { .. } | AiState::Wander { .. } | AiState::Return = npc.state {
                npc.state = AiState::Idle { until: tick };
            }
            continue;
        }
        let here = pos.0;
        let think = (tick + u64::from(net.0.0)).is_multiple_of(u64::from(n.think_interval_ticks));

        // Decide.
        if think && matches!(npc.state, AiState::Idle { .. } | AiState::Wander { .. }) {
            thinks += 1;
            let (nearest, examined) = grid.0.nearest_within(here, n.aggro_radius);
            candidates += examined;
            if let Some((target, _)) = nearest {
                npc.state = AiState::Chase { target };
            } else if let AiState::Idle { until } = npc.state
                && until <= tick
            {
                let mut draw = rng::stream(info.seed, u64::from(net.0.0), tick, Purpose::NpcWander);
                let goal = draw.in_disc(npc.home, n.wander_radius);
                let goal = if map.0.walkable(goal) { goal } else { npc.home };
                let give_up = tick + u64::from(n.think_interval_ticks) * 20;
                npc.state = AiState::Wander {
                    goal,
                    until: give_up,
                };
            }
        }

        // Steer.
        let (goal, speed) = match npc.state {
            AiState::Idle { .. } => (None, 0.0),
            AiState::Wander { goal, until } => {
                if here.distance_squared(goal) < 0.25 || until <= tick {
                    npc.state = AiState::Idle {
                        until: tick + idle_ticks(info.seed, net, tick, n),
                    };
                    (None, 0.0)
                } else {
                    (Some(goal), n.walk_speed)
                }
            }
            AiState::Return => {
                if here.distance_squared(npc.home) < 1.0 {
                    npc.state = AiState::Idle {
                        until: tick + idle_ticks(info.seed, net, tick, n),
                    };
                    (None, 0.0)
                } else {
                    (Some(npc.home), n.walk_speed)
                }
            }
            AiState::Chase { target } => {
                let target_pos = registry
                    .entities
                    .get(&target)
                    .and_then(|e| players.get(*e).ok())
                    .filter(|(_, _, l)| l.is_alive())
                    .map(|(_, p, _)| p.0);
                match target_pos {
                    Some(t) if here.distance(npc.home) <= n.leash_radius => {
                        if here.distance_squared(t) <= reach * reach {
                            if cooldowns.ready(ability, tick) && pending.0.is_none() {
                                pending.0 = Some(AbilityUse {
                                    ability,
                                    target,
                                    view_tick: 0,
                                });
                            }
                            (None, 0.0)
                        } else {
                            (Some(t), n.chase_speed)
                        }
                    }
                    _ => {
                        // Lost the target or leashed: walk home and heal.
                        npc.state = AiState::Return;
                        hp.current = hp.max;
                        (Some(npc.home), n.walk_speed)
                    }
                }
            }
        };
        let desired = match goal {
            Some(g) => Intent {
                dir: (g - here).normalize_or_zero(),
                speed,
            },
            None => Intent {
                dir: Vec2::ZERO,
                speed: 0.0,
            },
        };
        if *intent != desired {
            *intent = desired;
        }
    }
    out.metrics.npc_thinks = thinks;
    out.metrics.grid_candidates += candidates;
}

fn idle_ticks(seed: u64, net: &NetId, tick: u64, n: &crate::NpcRules) -> u64 {
    let mut draw = rng::stream(seed, u64::from(net.0.0), tick ^ 0x1D1E, Purpose::NpcWander);
    let spread = n
        .idle_max_ticks
        .saturating_sub(n.idle_min_ticks)
        .saturating_add(1);
    u64::from(n.idle_min_ticks) + u64::from(draw.below(spread))
}

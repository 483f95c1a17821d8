//! Deaths, respawns and health regeneration.
//!
//! A death credits the last attacker (kills, xp), schedules the respawn and emits a save for a
//! player; a respawn restores full health at the entity's spawn point. Event lists are sorted
//! by entity id so they never depend on query order.

use bevy_ecs::prelude::*;
use glam::Vec2;

use crate::components::{
    Clock, Combatant, Facing, Health, Life, MapRes, NetId, Npc, Player, Position, Registry,
    RulesRes, Velocity, ZoneInfo,
};
use crate::systems::player_state;
use crate::{DeathEvent, EventId, PlayerSave, RespawnEvent, SaveReason, TickOutput};

type Mortal<'a> = (
    &'a NetId,
    &'a mut Health,
    &'a mut Life,
    &'a mut Combatant,
    &'a mut Position,
    &'a mut Velocity,
    &'a Facing,
    Option<&'a mut Player>,
    Option<&'a Npc>,
);

pub(crate) fn life(
    clock: Res<Clock>,
    info: Res<ZoneInfo>,
    rules: Res<RulesRes>,
    map: Res<MapRes>,
    registry: Res<Registry>,
    mut out: ResMut<TickOutput>,
    mut mortals: Query<Mortal<'_>>,
) {
    let tick = clock.tick;
    let rules = &rules.0;
    let spawns = map.0.player_spawns();
    let out = &mut *out;
    let regen_per_tick = rules.regen_per_second * rules.dt();
    let mut alive = 0;
    for (net, mut hp, mut life, mut combat, mut pos, mut vel, facing, player, npc) in &mut mortals {
        match *life {
            Life::Alive if hp.current == 0 => {
                let delay = if player.is_some() {
                    rules.player_respawn_ticks
                } else {
                    rules.npc.respawn_ticks
                };
                *life = Life::Dead {
                    respawn_at: tick + u64::from(delay.max(1)),
                };
                vel.0 = Vec2::ZERO;
                out.metrics.deaths += 1;
                out.deaths.push(DeathEvent {
                    id: EventId::new(info.zone, tick, 0), // numbered after sorting below
                    victim: net.0,
                    victim_player: player.as_ref().map(|p| p.id),
                    killer: combat.last_hit_by,
                });
                if let Some(mut p) = player {
                    p.stats.deaths += 1;
                    p.version = p.version.next();
                    let state = player_state(&p, &pos, facing, &hp);
                    out.player_saves.push(PlayerSave {
                        player: p.id,
                        state,
                        reason: SaveReason::Death,
                    });
                }
            }
            Life::Dead { respawn_at } if respawn_at <= tick => {
                let home = match (&player, npc) {
                    (_, Some(npc)) => npc.home,
                    (Some(p), None) => spawns
                        .get(p.spawn_index as usize % spawns.len().max(1))
                        .copied()
                        .unwrap_or(pos.0),
                    (None, None) => pos.0,
                };
                *life = Life::Alive;
                hp.current = hp.max;
                *combat = Combatant {
                    last_combat_tick: combat.last_combat_tick,
                    ..Combatant::default()
                };
                pos.0 = home;
                alive += 1;
                out.metrics.respawns += 1;
                out.respawns.push(RespawnEvent {
                    entity: net.0,
                    player: player.as_ref().map(|p| p.id),
                    x: home.x,
                    y: home.y,
                });
                if let Some(mut p) = player {
                    p.version = p.version.next();
                    let state = player_state(&p, &pos, facing, &hp);
                    out.player_saves.push(PlayerSave {
                        player: p.id,
                        state,
                        reason: SaveReason::Respawn,
                    });
                }
            }
            Life::Alive => {
                alive += 1;
                let rested = tick.saturating_sub(combat.last_combat_tick)
                    >= u64::from(rules.regen_delay_ticks);
                if hp.current < hp.max && rested && regen_per_tick > 0.0 {
                    combat.regen_carry += regen_per_tick;
                    let whole = combat.regen_carry.floor();
                    if whole >= 1.0 {
                        combat.regen_carry -= whole;
                        hp.current = hp.current.saturating_add(whole as u16).min(hp.max);
                    }
                }
            }
            Life::Dead { .. } => {}
        }
    }
    out.metrics.alive = alive;

    // Canonical order, then ids, then kill credit (commutative, so order-free anyway).
    out.deaths.sort_unstable_by_key(|d| d.victim);
    out.respawns.sort_unstable_by_key(|r| r.entity);
    out.player_saves.sort_unstable_by_key(|s| s.player);
    for i in 0..out.deaths.len() {
        let seq = out.next_event_seq();
        let death = &mut out.deaths[i];
        death.id = EventId::new(info.zone, tick, seq);
        let Some(killer) = death
            .killer
            .and_then(|k| registry.entities.get(&k).copied())
        else {
            continue;
        };
        let victim_is_player = death.victim_player.is_some();
        if let Ok((.., Some(mut p), _)) = mortals.get_mut(killer) {
            p.stats.kills += 1;
            p.stats.xp += u64::from(if victim_is_player {
                rules.xp_per_player_kill
            } else {
                rules.xp_per_npc_kill
            });
        }
    }
}

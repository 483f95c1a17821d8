//! Resolves ability uses: cooldown, target validity, range and line of sight, then damage,
//! stats and one [`CombatEvent`] per hit.
//!
//! Uses are resolved one at a time in attacker-id order, so the outcome never depends on query
//! order: a target killed by an earlier use in the same tick cannot be hit again, and an attacker
//! killed earlier in the tick does not act.

use bevy_ecs::prelude::*;
use glam::Vec2;

use crate::components::{
    Clock, Combatant, Cooldowns, Health, Life, MapRes, NetId, PendingAbility, Player, Position,
    Registry, RulesRes, Trails, ZoneInfo,
};
use crate::{AbilityUse, CombatEvent, EntityId, EventId, TickOutput};

/// Reused buffers of the combat system.
#[derive(Resource, Debug, Default)]
pub(crate) struct CombatScratch {
    uses: Vec<(EntityId, Entity, AbilityUse)>,
}

impl CombatScratch {
    /// Room for `n` ability uses in one tick.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.uses.reserve(n.saturating_sub(self.uses.len()));
    }
}

type Fighter<'a> = (
    &'a NetId,
    &'a Position,
    &'a Life,
    &'a mut Health,
    &'a mut Combatant,
    &'a mut Cooldowns,
    &'a mut PendingAbility,
    Option<&'a mut Player>,
);

pub(crate) fn combat(
    clock: Res<Clock>,
    info: Res<ZoneInfo>,
    rules: Res<RulesRes>,
    map: Res<MapRes>,
    registry: Res<Registry>,
    trails: Res<Trails>,
    mut scratch: ResMut<CombatScratch>,
    mut out: ResMut<TickOutput>,
    mut fighters: Query<Fighter<'_>>,
) {
    let tick = clock.tick;
    let rules = &rules.0;
    let scratch = &mut *scratch;
    scratch.uses.clear();
    for (net, _, life, _, _, _, mut pending, _) in &mut fighters {
        if let Some(u) = pending.0.take()
            && life.is_alive()
        {
            scratch.uses.push((net.0, Entity::PLACEHOLDER, u));
        }
    }
    scratch.uses.sort_unstable_by_key(|(id, _, _)| *id);
    for (id, entity, _) in &mut scratch.uses {
        *entity = registry
            .entities
            .get(id)
            .copied()
            .unwrap_or(Entity::PLACEHOLDER);
    }

    let out = &mut *out;
    for &(attacker_id, attacker, use_) in &scratch.uses {
        out.metrics.attacks_attempted += 1;
        let Some(ability) = rules.ability(use_.ability) else {
            out.metrics.attacks_denied += 1;
            continue;
        };
        // Attacker: alive (not killed earlier this tick), off cooldown.
        let Ok((_, a_pos, _, a_hp, _, a_cd, _, a_player)) = fighters.get(attacker) else {
            out.metrics.attacks_denied += 1;
            continue;
        };
        let (a_pos, a_player) = (a_pos.0, a_player.map(|p| p.id));
        if a_hp.current == 0 || !a_cd.ready(use_.ability, tick) || use_.target == attacker_id {
            out.metrics.attacks_denied += 1;
            continue;
        }
        // Target: exists, alive, allowed, in range, in sight.
        let Some(&target) = registry.entities.get(&use_.target) else {
            out.metrics.attacks_denied += 1;
            continue;
        };
        let Ok((_, t_pos, t_life, t_hp, _, _, _, t_player)) = fighters.get(target) else {
            out.metrics.attacks_denied += 1;
            continue;
        };
        // Lag compensation: where the target was in the attacker's view, within the bound.
        let rewind = rewind_ticks(tick, use_.view_tick, rules.lag_compensation_ticks);
        let t_pos = if rewind == 0 {
            t_pos.0
        } else {
            out.metrics.lag_rewinds += 1;
            trails.at(tick - rewind, use_.target).unwrap_or(t_pos.0)
        };
        let t_player = t_player.map(|p| p.id);
        let allowed = match (a_player, t_player) {
            (Some(_), Some(_)) => rules.pvp,
            (None, None) => false,
            _ => true,
        };
        if !t_life.is_alive()
            || t_hp.current == 0
            || !allowed
            || !in_reach(a_pos, t_pos, ability.range)
        {
            out.metrics.attacks_denied += 1;
            continue;
        }
        if !map
            .0
            .line_of_sight(a_pos, t_pos, &mut out.metrics.los_steps)
        {
            out.metrics.attacks_denied += 1;
            continue;
        }

        // Hit.
        let Ok((_, _, _, mut t_hp, mut t_combat, _, _, t_player_mut)) = fighters.get_mut(target)
        else {
            continue;
        };
        let damage = ability.damage.min(t_hp.current);
        t_hp.current -= damage;
        let killed = t_hp.current == 0;
        t_combat.last_hit_by = Some(attacker_id);
        t_combat.last_combat_tick = tick;
        if let Some(mut p) = t_player_mut {
            p.stats.damage_taken += u64::from(damage);
        }
        if let Ok((_, _, _, _, mut a_combat, mut a_cd, _, a_player_mut)) =
            fighters.get_mut(attacker)
        {
            a_cd.start(use_.ability, tick + u64::from(ability.cooldown_ticks));
            a_combat.last_combat_tick = tick;
            if let Some(mut p) = a_player_mut {
                p.stats.damage_dealt += u64::from(damage);
            }
        }
        out.metrics.attacks_hit += 1;
        let seq = out.next_event_seq();
        out.combat_events.push(CombatEvent {
            id: EventId::new(info.zone, tick, seq),
            tick,
            attacker: attacker_id,
            attacker_player: a_player,
            target: use_.target,
            target_player: t_player,
            ability: use_.ability,
            damage,
            killed,
            x: t_pos.x,
            y: t_pos.y,
        });
    }
}

/// How many ticks back from `tick` a use aimed in the view of `view_tick` is checked: none
/// for no view (0) or one not in the past, at most `bound` (an older claim gains nothing).
pub(crate) fn rewind_ticks(tick: u64, view_tick: u64, bound: u32) -> u64 {
    if view_tick == 0 || view_tick >= tick {
        0
    } else {
        (tick - view_tick).min(u64::from(
            bound.min(crate::rules::MAX_LAG_COMPENSATION_TICKS),
        ))
    }
}

/// Records where every entity stands at the end of the tick, for lag compensation.
pub(crate) fn record_trails(
    clock: Res<Clock>,
    mut trails: ResMut<Trails>,
    bodies: Query<(&NetId, &Position)>,
) {
    let trails = &mut *trails;
    for (net, pos) in &bodies {
        trails.record(clock.tick, net.0, pos.0);
    }
}

/// Whether `b` is within `range` of `a` (a small tolerance absorbs float rounding).
pub(crate) fn in_reach(a: Vec2, b: Vec2, range: f32) -> bool {
    a.distance_squared(b) <= (range + 1e-3) * (range + 1e-3)
}

//! Puts each player's input for this tick into effect (queued inputs whose tick has come) and
//! turns it into a movement intent and facing.
//!
//! Inputs were validated when they arrived ([`crate::Zone::handle_input`]); this system only
//! maps them to server-capped speeds ([`crate::motion::intent_of`], the rule a predicting
//! client runs too). The dead neither move nor act.

use bevy_ecs::prelude::*;

use crate::components::{Clock, Facing, Intent, Life, PendingAbility, Player, RulesRes};
use crate::motion;

pub(crate) fn apply_inputs(
    clock: Res<Clock>,
    rules: Res<RulesRes>,
    mut players: Query<(
        &mut Player,
        &Life,
        &mut Intent,
        &mut Facing,
        &mut PendingAbility,
    )>,
) {
    let rules = &rules.0;
    let tick = clock.tick;
    for (mut player, life, mut intent, mut facing, mut pending) in &mut players {
        while player.queued.front().is_some_and(|q| q.tick <= tick) {
            let Some(next) = player.queued.pop_front() else {
                break;
            };
            player.input = Some(next);
            if next.ability.is_some() {
                pending.0 = next.ability;
            }
        }
        let Some(input) = player.input.filter(|_| life.is_alive()) else {
            if *intent != Intent::default() {
                *intent = Intent::default();
            }
            if pending.0.is_some() && !life.is_alive() {
                pending.0 = None;
            }
            continue;
        };
        let (dir, speed) = motion::intent_of(rules, &input);
        intent.dir = dir;
        intent.speed = speed;
        facing.0 = input.facing;
    }
}

//! Turns each player's newest accepted input into a movement intent and facing.
//!
//! Inputs were validated when they arrived ([`crate::Zone::handle_input`]); this system only
//! maps them to server-capped speeds. The dead neither move nor act.

use bevy_ecs::prelude::*;

use crate::components::{Facing, Intent, Life, PendingAbility, Player, RulesRes};

pub(super) fn apply_inputs(
    rules: Res<RulesRes>,
    mut players: Query<(
        &Player,
        &Life,
        &mut Intent,
        &mut Facing,
        &mut PendingAbility,
    )>,
) {
    let rules = &rules.0;
    for (player, life, mut intent, mut facing, mut pending) in &mut players {
        let Some(input) = player.input.filter(|_| life.is_alive()) else {
            if *intent != Intent::default() {
                *intent = Intent::default();
            }
            if pending.0.is_some() && !life.is_alive() {
                pending.0 = None;
            }
            continue;
        };
        intent.dir = input.direction().clamp_length_max(1.0);
        intent.speed = if input.run {
            rules.run_speed
        } else {
            rules.walk_speed
        };
        facing.0 = input.facing;
    }
}

//! Moves living entities toward their intent: bounded acceleration, a hard speed cap from the
//! rules, and axis-separated sliding collision against blocked tiles. Players may step over an
//! open edge of the map (to be handed to the next zone); NPCs never leave their zone.

use bevy_ecs::prelude::*;
use bevy_ecs::query::Has;
use glam::Vec2;

use crate::TickOutput;
use crate::components::{Intent, Life, MapRes, Npc, Position, RulesRes, Velocity};
use crate::motion::{self, Body};

pub(crate) fn movement(
    rules: Res<RulesRes>,
    map: Res<MapRes>,
    mut out: ResMut<TickOutput>,
    mut movers: Query<(&Life, &Intent, &mut Velocity, &mut Position, Has<Npc>)>,
) {
    let rules = &rules.0;
    let map = &map.0;
    let mut moved = 0;
    for (life, intent, mut vel, mut pos, npc) in &mut movers {
        if !life.is_alive() {
            if vel.0 != Vec2::ZERO {
                vel.0 = Vec2::ZERO;
            }
            continue;
        }
        let before = Body {
            pos: pos.0,
            vel: vel.0,
        };
        let after = motion::step(rules, map, npc, intent.dir, intent.speed, before);
        if after.vel != before.vel {
            vel.0 = after.vel;
        }
        if after.pos != before.pos {
            pos.0 = after.pos;
            moved += 1;
        }
    }
    out.metrics.moved = moved;
}

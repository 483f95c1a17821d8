//! Moves living entities toward their intent: bounded acceleration, a hard speed cap from the
//! rules, and axis-separated sliding collision against blocked tiles. Players may step over an
//! open edge of the map (to be handed to the next zone); NPCs never leave their zone.

use bevy_ecs::prelude::*;
use bevy_ecs::query::Has;
use glam::Vec2;

use crate::TickOutput;
use crate::components::{Intent, Life, MapRes, Npc, Position, RulesRes, Velocity};

pub(super) fn movement(
    rules: Res<RulesRes>,
    map: Res<MapRes>,
    mut out: ResMut<TickOutput>,
    mut movers: Query<(&Life, &Intent, &mut Velocity, &mut Position, Has<Npc>)>,
) {
    let rules = &rules.0;
    let map = &map.0;
    let dt = rules.dt();
    let max_dv = rules.acceleration * dt;
    let cap = rules.run_speed.max(rules.npc.chase_speed);
    let radius = rules.body_radius;
    let mut moved = 0;
    for (life, intent, mut vel, mut pos, npc) in &mut movers {
        let fits = |p: Vec2| {
            if npc {
                map.body_fits_within(p, radius)
            } else {
                map.body_fits(p, radius)
            }
        };
        if !life.is_alive() {
            if vel.0 != Vec2::ZERO {
                vel.0 = Vec2::ZERO;
            }
            continue;
        }
        let desired = intent.dir.clamp_length_max(1.0) * intent.speed.clamp(0.0, cap);
        let mut v = (vel.0 + (desired - vel.0).clamp_length_max(max_dv)).clamp_length_max(cap);
        if v == Vec2::ZERO && vel.0 == Vec2::ZERO {
            continue;
        }
        let step = v * dt;
        let mut p = pos.0;
        let along_x = Vec2::new(p.x + step.x, p.y);
        if fits(along_x) {
            p = along_x;
        } else {
            v.x = 0.0;
        }
        let along_y = Vec2::new(p.x, p.y + step.y);
        if fits(along_y) {
            p = along_y;
        } else {
            v.y = 0.0;
        }
        vel.0 = v;
        if p != pos.0 {
            pos.0 = p;
            moved += 1;
        }
    }
    out.metrics.moved = moved;
}

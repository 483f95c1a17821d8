//! The movement rule every body follows, as pure functions: the server's movement system and a
//! client's prediction ([`crate::client::prediction`]) both call them, so a client predicting
//! its own avatar computes, bit for bit, what the server will.

use glam::Vec2;

use crate::{PlayerInput, Rules, TileMap};

/// A body's exact motion state: position and velocity, units and units per second.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Body {
    /// Position, units.
    pub pos: Vec2,
    /// Velocity, units per second.
    pub vel: Vec2,
}

/// What an input asks of a living player's body: a direction (length at most 1) and a speed.
pub fn intent_of(rules: &Rules, input: &PlayerInput) -> (Vec2, f32) {
    let speed = if input.run {
        rules.run_speed
    } else {
        rules.walk_speed
    };
    (input.direction().clamp_length_max(1.0), speed)
}

/// One tick of motion toward `dir` at `speed`: bounded acceleration, the speed cap from the
/// rules, and axis-separated sliding against blocked tiles (players may step over an open edge
/// of the map, NPCs never leave it).
pub fn step(rules: &Rules, map: &TileMap, npc: bool, dir: Vec2, speed: f32, body: Body) -> Body {
    let dt = rules.dt();
    let max_dv = rules.acceleration * dt;
    let cap = rules.run_speed.max(rules.npc.chase_speed);
    let radius = rules.body_radius;
    let fits = |p: Vec2| {
        if npc {
            map.body_fits_within(p, radius)
        } else {
            map.body_fits(p, radius)
        }
    };
    let desired = dir.clamp_length_max(1.0) * speed.clamp(0.0, cap);
    let mut v = (body.vel + (desired - body.vel).clamp_length_max(max_dv)).clamp_length_max(cap);
    if v == Vec2::ZERO && body.vel == Vec2::ZERO {
        return body;
    }
    let step = v * dt;
    let mut p = body.pos;
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
    Body { pos: p, vel: v }
}

//! Quantized entity state: what goes on the wire and what a client reconstructs bit for bit.
//!
//! Positions and velocities in 1/64 units, facing in 1/256 turns, health exact. The server
//! quantizes once per tick; deltas compare quantized values, so "unchanged" is exact.

use bincode::{Decode, Encode};

use crate::{EntityId, EntityKind, EntityView};

/// Position and velocity units per world unit.
pub const POS_SCALE: f32 = 64.0;

/// Kind of a replicated entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum NetKind {
    /// Non-player character.
    Npc = 0,
    /// Player avatar.
    Player = 1,
}

/// One entity as the wire carries it (the bincode derive is for servers passing entities to
/// each other, e.g. ghosts; clients get the packet layout of `PROTOCOL.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct NetEntity {
    /// Replicated id.
    pub id: EntityId,
    /// Player or NPC.
    pub kind: NetKind,
    /// Position x in 1/64 units.
    pub x: i32,
    /// Position y in 1/64 units.
    pub y: i32,
    /// Velocity x in 1/64 units per second.
    pub vx: i16,
    /// Velocity y in 1/64 units per second.
    pub vy: i16,
    /// Facing in 1/256 turns (0 = -pi).
    pub facing: u8,
    /// Current health.
    pub health: u16,
    /// Maximum health.
    pub max_health: u16,
    /// Alive or dead.
    pub alive: bool,
}

/// Quantizes a coordinate (saturating; non-finite becomes 0).
pub fn quantize_pos(v: f32) -> i32 {
    if v.is_finite() {
        (v * POS_SCALE).round() as i32
    } else {
        0
    }
}

/// Quantizes a velocity component (saturating).
pub fn quantize_vel(v: f32) -> i16 {
    if v.is_finite() {
        (v * POS_SCALE)
            .round()
            .clamp(i16::MIN as f32, i16::MAX as f32) as i16
    } else {
        0
    }
}

/// Quantizes an angle in radians to 1/256 turns.
pub fn quantize_angle(a: f32) -> u8 {
    if !a.is_finite() {
        return 0;
    }
    let turns = (a + std::f32::consts::PI) / std::f32::consts::TAU;
    ((turns * 256.0).round() as i64).rem_euclid(256) as u8
}

/// The angle (radians) of a quantized facing.
pub fn dequantize_angle(q: u8) -> f32 {
    f32::from(q) / 256.0 * std::f32::consts::TAU - std::f32::consts::PI
}

impl NetEntity {
    /// Quantizes one entity's state.
    pub fn from_view(v: &EntityView) -> Self {
        Self {
            id: v.id,
            kind: match v.kind {
                EntityKind::Player(_) => NetKind::Player,
                EntityKind::Npc => NetKind::Npc,
            },
            x: quantize_pos(v.position.x),
            y: quantize_pos(v.position.y),
            vx: quantize_vel(v.velocity.x),
            vy: quantize_vel(v.velocity.y),
            facing: quantize_angle(v.facing),
            health: v.health,
            max_health: v.max_health,
            alive: v.alive,
        }
    }

    /// Position in world units.
    pub fn position(&self) -> glam::Vec2 {
        glam::Vec2::new(self.x as f32 / POS_SCALE, self.y as f32 / POS_SCALE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn angles_round_trip_within_half_a_step() {
        for i in -100..=100 {
            let a = i as f32 * 0.0314;
            let back = dequantize_angle(quantize_angle(a));
            let diff = (back - a).rem_euclid(std::f32::consts::TAU);
            let diff = diff.min(std::f32::consts::TAU - diff);
            assert!(
                diff <= std::f32::consts::TAU / 512.0 + 1e-5,
                "{a} -> {back}"
            );
        }
        assert_eq!(quantize_angle(f32::NAN), 0);
    }

    #[test]
    fn positions_quantize_to_a_64th() {
        assert_eq!(quantize_pos(1.5), 96);
        assert_eq!(quantize_pos(-0.5), -32);
        assert_eq!(quantize_pos(f32::INFINITY), 0);
        assert_eq!(quantize_vel(1e9), i16::MAX);
    }
}

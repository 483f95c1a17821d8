//! Quantized entity state: the simulation's state in wire units ([`EntitySample`]), and the
//! replicated record a client holds and rebuilds bit for bit ([`NetEntity`]).
//!
//! Positions in 1/64 units, velocities in 1/16 units per second, facing in 1/256 turns, health
//! exact. A record moves along a straight *track*: it holds where the entity was at its anchor
//! tick and its velocity, and its position at any later tick is [`NetEntity::at`], the same
//! integer formula on server and client. The server keeps a record while the simulation stays
//! within [`TRACK_TOLERANCE`] of its track (see `replication::track`), so an entity walking at
//! a steady pace costs no bytes at all.

use bincode::{Decode, Encode};

use crate::{EntityId, EntityKind, EntityView};

/// Position units per world unit.
pub const POS_SCALE: f32 = 64.0;
/// Velocity units per world unit per second.
pub const VEL_SCALE: f32 = 16.0;
/// Position units per velocity unit, per second (`POS_SCALE / VEL_SCALE`).
pub const POS_PER_VEL: i64 = 4;
/// How far (position units, each axis) the simulation may stray from a record's track before
/// the server anchors a new one (3/64 of a unit).
pub const TRACK_TOLERANCE: i32 = 3;
/// Ticks an extrapolation reaches at most, either way (a bound for hostile anchors; tracks
/// are re-anchored long before).
const MAX_EXTRAPOLATION_TICKS: i64 = 1 << 40;

/// Kind of a replicated entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum NetKind {
    /// Non-player character.
    Npc = 0,
    /// Player avatar.
    Player = 1,
    /// A game plugin's object (a capture point, a chest): no health, no AI.
    Prop = 2,
}

/// Bytes of game-plugin state one entity replicates at most (all its
/// [`crate::game::Replicated`] components together).
pub const EXT_BYTES: usize = 12;

/// The game plugins' replicated state of one entity: which registered components it has (bit
/// `i`: the `i`-th registered) and their encodings at their fixed offsets. Bytes of absent
/// components are zero, so equal states are equal values. On the wire: `present`, then the
/// bytes up to the last non-zero one (`len: u8`, then `len` bytes); zero-length when empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ext {
    /// Which registered components the entity has.
    pub present: u8,
    /// Their encodings.
    pub bytes: [u8; EXT_BYTES],
}

impl Ext {
    /// Whether the entity has no replicated plugin state.
    pub fn is_empty(&self) -> bool {
        self.present == 0
    }

    /// Bytes that travel: up to the last non-zero one.
    pub fn used(&self) -> &[u8] {
        let len = self
            .bytes
            .iter()
            .rposition(|b| *b != 0)
            .map_or(0, |i| i + 1);
        &self.bytes[..len]
    }

    /// Writes `present`, the used length and the used bytes.
    pub fn write(&self, out: &mut impl super::wire::ByteSink) {
        let used = self.used();
        out.put_bytes(&[self.present, used.len() as u8]);
        out.put_bytes(used);
    }

    /// Reads what [`Ext::write`] wrote.
    pub fn read(r: &mut super::wire::WireReader<'_>) -> Result<Self, super::DecodeError> {
        let present = r.u8()?;
        let len = usize::from(r.u8()?);
        if len > EXT_BYTES {
            return Err(super::DecodeError::TooMany {
                what: "replicated plugin bytes",
                got: len,
                max: EXT_BYTES,
            });
        }
        let mut ext = Ext {
            present,
            bytes: [0; EXT_BYTES],
        };
        for b in &mut ext.bytes[..len] {
            *b = r.u8()?;
        }
        Ok(ext)
    }
}

// Ghosts cross the zone bus as bincode: one byte when empty (the common case).
impl Encode for Ext {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.present.encode(encoder)?;
        if self.present != 0 {
            self.bytes.encode(encoder)?;
        }
        Ok(())
    }
}

bincode::impl_borrow_decode!(Ext);

impl<C> Decode<C> for Ext {
    fn decode<D: bincode::de::Decoder<Context = C>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let present = u8::decode(decoder)?;
        let bytes = if present != 0 {
            <[u8; EXT_BYTES]>::decode(decoder)?
        } else {
            [0; EXT_BYTES]
        };
        Ok(Self { present, bytes })
    }
}

/// One entity's simulation state at one tick, quantized: what the replicator tracks (and what
/// zones pass each other for ghosts, with the bincode derive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct EntitySample {
    /// Replicated id.
    pub id: EntityId,
    /// Player or NPC.
    pub kind: NetKind,
    /// Position x in 1/64 units.
    pub x: i32,
    /// Position y in 1/64 units.
    pub y: i32,
    /// Velocity x in 1/16 units per second.
    pub vx: i16,
    /// Velocity y in 1/16 units per second.
    pub vy: i16,
    /// Facing in 1/256 turns (0 = -pi).
    pub facing: u8,
    /// Current health.
    pub health: u16,
    /// Maximum health.
    pub max_health: u16,
    /// Alive or dead.
    pub alive: bool,
    /// Game plugins' replicated state.
    pub ext: Ext,
}

/// One replicated entity as the client holds it: a track (position at the anchor tick,
/// velocity) plus facing and health. Its position at a tick is [`NetEntity::at`]. A record
/// that stands still has anchor 0 (its anchor does not matter): the one form of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NetEntity {
    /// Replicated id.
    pub id: EntityId,
    /// Player or NPC.
    pub kind: NetKind,
    /// Position x at the anchor tick, 1/64 units.
    pub x: i32,
    /// Position y at the anchor tick, 1/64 units.
    pub y: i32,
    /// The tick the track starts from.
    pub anchor: u64,
    /// Velocity x, 1/16 units per second.
    pub vx: i16,
    /// Velocity y, 1/16 units per second.
    pub vy: i16,
    /// Facing in 1/256 turns (0 = -pi).
    pub facing: u8,
    /// Current health.
    pub health: u16,
    /// Maximum health.
    pub max_health: u16,
    /// Alive or dead.
    pub alive: bool,
    /// Game plugins' replicated state.
    pub ext: Ext,
}

/// Quantizes a coordinate (saturating; non-finite becomes 0).
pub fn quantize_pos(v: f32) -> i32 {
    if v.is_finite() {
        (v * POS_SCALE).round() as i32
    } else {
        0
    }
}

/// Quantizes a velocity component to 1/16 units per second (saturating).
pub fn quantize_vel(v: f32) -> i16 {
    if v.is_finite() {
        (v * VEL_SCALE)
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

/// Position units travelled in `ticks` ticks at velocity `v` (1/16 units per second) at
/// `tick_hz`: `round(v * 4 * ticks / tick_hz)`, halves rounded up, in exact integers.
pub fn travel(v: i16, ticks: i64, tick_hz: u32) -> i64 {
    let hz = i64::from(tick_hz.max(1));
    let ticks = ticks.clamp(-MAX_EXTRAPOLATION_TICKS, MAX_EXTRAPOLATION_TICKS);
    let num = i64::from(v) * POS_PER_VEL * ticks;
    (2 * num + hz).div_euclid(2 * hz)
}

fn offset(x: i32, v: i16, ticks: i64, tick_hz: u32) -> i32 {
    (i64::from(x) + travel(v, ticks, tick_hz)).clamp(i64::from(i32::MIN), i64::from(i32::MAX))
        as i32
}

impl EntitySample {
    /// Quantizes one entity's state.
    pub fn from_view(v: &EntityView) -> Self {
        Self {
            id: v.id,
            kind: match v.kind {
                EntityKind::Player(_) => NetKind::Player,
                EntityKind::Npc => NetKind::Npc,
                EntityKind::Prop => NetKind::Prop,
            },
            x: quantize_pos(v.position.x),
            y: quantize_pos(v.position.y),
            vx: quantize_vel(v.velocity.x),
            vy: quantize_vel(v.velocity.y),
            facing: quantize_angle(v.facing),
            health: v.health,
            max_health: v.max_health,
            alive: v.alive,
            ext: v.ext,
        }
    }

    /// Position in world units.
    pub fn position(&self) -> glam::Vec2 {
        glam::Vec2::new(self.x as f32 / POS_SCALE, self.y as f32 / POS_SCALE)
    }

    /// A record anchored here at `tick` (at 0 if it stands still).
    pub fn anchored(&self, tick: u64) -> NetEntity {
        let moving = self.vx != 0 || self.vy != 0;
        NetEntity {
            id: self.id,
            kind: self.kind,
            x: self.x,
            y: self.y,
            anchor: if moving { tick } else { 0 },
            vx: self.vx,
            vy: self.vy,
            facing: self.facing,
            health: self.health,
            max_health: self.max_health,
            alive: self.alive,
            ext: self.ext,
        }
    }
}

impl NetEntity {
    /// Whether its track moves (a non-zero velocity).
    pub fn moving(&self) -> bool {
        self.vx != 0 || self.vy != 0
    }

    /// Position at `tick` (1/64 units): the anchor position plus [`travel`] since the anchor.
    pub fn at(&self, tick: u64, tick_hz: u32) -> (i32, i32) {
        if self.vx == 0 && self.vy == 0 {
            return (self.x, self.y); // Standing: no travel (the common case for NPCs).
        }
        let ticks = (tick as i128 - self.anchor as i128).clamp(
            -(MAX_EXTRAPOLATION_TICKS as i128),
            MAX_EXTRAPOLATION_TICKS as i128,
        ) as i64;
        (
            offset(self.x, self.vx, ticks, tick_hz),
            offset(self.y, self.vy, ticks, tick_hz),
        )
    }

    /// Position at `tick` in world units.
    pub fn position_at(&self, tick: u64, tick_hz: u32) -> glam::Vec2 {
        let (x, y) = self.at(tick, tick_hz);
        glam::Vec2::new(x as f32 / POS_SCALE, y as f32 / POS_SCALE)
    }

    /// The entity's state at `tick` as a sample (position extrapolated along the track).
    pub fn sample_at(&self, tick: u64, tick_hz: u32) -> EntitySample {
        let (x, y) = self.at(tick, tick_hz);
        EntitySample {
            id: self.id,
            kind: self.kind,
            x,
            y,
            vx: self.vx,
            vy: self.vy,
            facing: self.facing,
            health: self.health,
            max_health: self.max_health,
            alive: self.alive,
            ext: self.ext,
        }
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
    fn positions_quantize_to_a_64th_and_velocities_to_a_16th() {
        assert_eq!(quantize_pos(1.5), 96);
        assert_eq!(quantize_pos(-0.5), -32);
        assert_eq!(quantize_pos(f32::INFINITY), 0);
        assert_eq!(quantize_vel(1.5), 24);
        assert_eq!(quantize_vel(1e9), i16::MAX);
    }

    #[test]
    fn travel_rounds_halves_up_in_integers() {
        // 1 unit/s (16) for one tick at 60 Hz: 64/60 = 1.07 -> 1.
        assert_eq!(travel(16, 1, 60), 1);
        // 7.5 units/s for 8 ticks at 60 Hz: 480 * 8 / 60 = 64 exactly.
        assert_eq!(travel(120, 8, 60), 64);
        // -0.5 position units round up to 0; +0.5 to 1.
        assert_eq!(travel(-15, 1, 120), 0);
        assert_eq!(travel(15, 1, 120), 1);
        assert_eq!(travel(100, -3, 60), -20);
        // Hostile inputs stay finite.
        assert_eq!(travel(i16::MAX, i64::MAX, 0), travel(i16::MAX, 1 << 40, 1));
    }

    #[test]
    fn a_track_extrapolates_from_its_anchor() {
        let e = EntitySample {
            id: EntityId(3),
            kind: NetKind::Npc,
            x: 640,
            y: -64,
            vx: 32,
            vy: -16,
            facing: 0,
            health: 10,
            max_health: 10,
            alive: true,
            ext: Ext::default(),
        }
        .anchored(100);
        assert_eq!(e.at(100, 60), (640, -64));
        // 2 units/s east, 1 unit/s south for one second.
        assert_eq!(e.at(160, 60), (640 + 128, -64 - 64));
        // Before the anchor it runs backwards; far away it saturates rather than overflows.
        assert_eq!(e.at(40, 60), (640 - 128, -64 + 64));
        assert_eq!(e.at(u64::MAX, 1).0, i32::MAX);
    }
}

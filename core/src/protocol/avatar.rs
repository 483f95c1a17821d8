//! The avatar section of a server packet: the client's own avatar exactly as the server holds
//! it (f32 position and velocity, not quantized) and the sequence number of the input in effect
//! at the packet's tick, so a client can reconcile its prediction bit for bit
//! ([`crate::client::prediction`]). Each field is sent only when it differs from the
//! baseline's.

use glam::Vec2;

use super::DecodeError;
use super::wire::{ByteSink, WireReader, put_varint};

/// Avatar-mask bit: the input sequence follows (varint).
pub const AVATAR_SEQ: u8 = 1;
/// Avatar-mask bit: the position follows (two f32, little-endian bits).
pub const AVATAR_POS: u8 = 2;
/// Avatar-mask bit: the velocity follows (two f32, little-endian bits).
pub const AVATAR_VEL: u8 = 4;
/// Avatar-mask bit: the life byte follows (1 alive, 0 dead).
pub const AVATAR_LIFE: u8 = 8;
/// Avatar-mask bit: the count of the player's late inputs follows (varint).
pub const AVATAR_LATE: u8 = 16;
/// Every avatar-mask bit.
pub const AVATAR_ALL: u8 = 31;
/// Largest encoded avatar section: mask, 5-byte varint, four f32, life, 5-byte varint.
pub const AVATAR_MAX_LEN: usize = 1 + 5 + 16 + 1 + 5;

/// The client's avatar at the end of a tick, exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AvatarState {
    /// Sequence number of the input in effect at that tick (0: none yet).
    pub seq: u32,
    /// Position, units.
    pub pos: Vec2,
    /// Velocity, units per second.
    pub vel: Vec2,
    /// Alive.
    pub alive: bool,
    /// Inputs of this player that took effect later than the tick they were stamped for, so
    /// far (a prediction that differs after this count changed is explained by it).
    pub late: u32,
}

fn bits(v: Vec2) -> u64 {
    (u64::from(v.x.to_bits()) << 32) | u64::from(v.y.to_bits())
}

/// The fields of an avatar that changed against the baseline's.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AvatarUpdate {
    /// New input sequence.
    pub seq: Option<u32>,
    /// New position.
    pub pos: Option<Vec2>,
    /// New velocity.
    pub vel: Option<Vec2>,
    /// New life.
    pub alive: Option<bool>,
    /// New count of late inputs.
    pub late: Option<u32>,
}

// Equality is total here: the decoder refuses NaN, and the server never simulates one.
impl Eq for AvatarUpdate {}

impl AvatarUpdate {
    /// The update turning `base` (none: every field) into `now`; `None` when nothing changed.
    pub fn between(base: Option<&AvatarState>, now: &AvatarState) -> Option<Self> {
        let differs = |f: fn(&AvatarState) -> u64| base.is_none_or(|b| f(b) != f(now));
        let u = Self {
            seq: differs(|a| a.seq.into()).then_some(now.seq),
            pos: differs(|a| bits(a.pos)).then_some(now.pos),
            vel: differs(|a| bits(a.vel)).then_some(now.vel),
            alive: differs(|a| a.alive.into()).then_some(now.alive),
            late: differs(|a| a.late.into()).then_some(now.late),
        };
        (u != Self::default()).then_some(u)
    }

    /// `base` with this update applied (fields missing from both are zero).
    pub fn apply(&self, base: Option<&AvatarState>) -> AvatarState {
        let b = base.copied().unwrap_or_default();
        AvatarState {
            seq: self.seq.unwrap_or(b.seq),
            pos: self.pos.unwrap_or(b.pos),
            vel: self.vel.unwrap_or(b.vel),
            alive: self.alive.unwrap_or(b.alive),
            late: self.late.unwrap_or(b.late),
        }
    }

    /// Appends the encoded section.
    pub fn write(&self, out: &mut impl ByteSink) {
        let bit = |present: bool, b: u8| if present { b } else { 0 };
        let mask = bit(self.seq.is_some(), AVATAR_SEQ)
            | bit(self.pos.is_some(), AVATAR_POS)
            | bit(self.vel.is_some(), AVATAR_VEL)
            | bit(self.alive.is_some(), AVATAR_LIFE)
            | bit(self.late.is_some(), AVATAR_LATE);
        out.put_bytes(&[mask]);
        if let Some(seq) = self.seq {
            put_varint(out, seq.into());
        }
        for v in [self.pos, self.vel].into_iter().flatten() {
            out.put_bytes(&v.x.to_bits().to_le_bytes());
            out.put_bytes(&v.y.to_bits().to_le_bytes());
        }
        if let Some(alive) = self.alive {
            out.put_bytes(&[u8::from(alive)]);
        }
        if let Some(late) = self.late {
            put_varint(out, late.into());
        }
    }

    /// Reads a section; non-finite numbers and unknown bits are refused.
    pub fn read(r: &mut WireReader<'_>) -> Result<Self, DecodeError> {
        let mask = r.u8()?;
        if mask == 0 || mask & !AVATAR_ALL != 0 {
            return Err(DecodeError::BadTag {
                what: "avatar mask",
                got: mask.into(),
            });
        }
        let vec = |r: &mut WireReader<'_>| -> Result<Vec2, DecodeError> {
            let mut f = || -> Result<f32, DecodeError> {
                let b = [r.u8()?, r.u8()?, r.u8()?, r.u8()?];
                let v = f32::from_bits(u32::from_le_bytes(b));
                if v.is_finite() {
                    Ok(v)
                } else {
                    Err(DecodeError::OutOfRange("avatar number"))
                }
            };
            Ok(Vec2::new(f()?, f()?))
        };
        let seq = if mask & AVATAR_SEQ != 0 {
            Some(r.u32v()?)
        } else {
            None
        };
        let pos = if mask & AVATAR_POS != 0 {
            Some(vec(r)?)
        } else {
            None
        };
        let vel = if mask & AVATAR_VEL != 0 {
            Some(vec(r)?)
        } else {
            None
        };
        let alive = if mask & AVATAR_LIFE != 0 {
            Some(r.bool()?)
        } else {
            None
        };
        let late = if mask & AVATAR_LATE != 0 {
            Some(r.u32v()?)
        } else {
            None
        };
        Ok(Self {
            seq,
            pos,
            vel,
            alive,
            late,
        })
    }
}

//! The plugin's components and rules, with their codecs: [`Flag`] replicated, [`CaptureScore`]
//! persistent, all of them hashed.

use bevy_ecs::prelude::*;
use glam::Vec2;
use zone_core::EntityId;
use zone_core::game::{CodecError, Persistent, Replicated, SaveBuf, StateHash, StateHasher};

/// Tuning of capture points.
#[derive(Resource, Clone, Copy, Debug, PartialEq)]
pub struct CaptureRules {
    /// How near a point's centre a player stands on it, units.
    pub radius: f32,
    /// Ticks an uncontested claimant holds a point to capture it.
    pub capture_ticks: u32,
}

impl Default for CaptureRules {
    fn default() -> Self {
        Self {
            radius: 4.0,
            capture_ticks: 180,
        }
    }
}

/// A capture point (on a prop entity; never changes).
#[derive(Component, Clone, Copy, Debug, PartialEq)]
pub struct CapturePoint {
    /// Its number in the zone, from 0 (what [`crate::PlantFlag`] names).
    pub index: u8,
    /// Where it is.
    pub center: Vec2,
}

/// Who owns a point, who is capturing it and how far along: replicated to clients.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flag {
    /// The avatar of the player who captured it last.
    pub owner: Option<EntityId>,
    /// The avatar of the player capturing it now.
    pub claimant: Option<EntityId>,
    /// Ticks the claimant has held it.
    pub held: u32,
    /// `held` as a share of the capture time, 0..=100 (what clients see).
    pub percent: u8,
}

/// A player's captures: saved with the player.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureScore {
    /// Points captured.
    pub captures: u32,
    /// Flags planted.
    pub planted: u32,
}

impl StateHash for CaptureRules {
    fn hash_state(&self, h: &mut StateHasher<'_>) {
        h.put(&self.radius);
        h.put(&self.capture_ticks);
    }
}

impl StateHash for CapturePoint {
    fn hash_state(&self, h: &mut StateHasher<'_>) {
        h.put(&self.index);
        h.put(&self.center);
    }
}

impl StateHash for Flag {
    fn hash_state(&self, h: &mut StateHasher<'_>) {
        h.put(&self.owner);
        h.put(&self.claimant);
        h.put(&self.held);
        h.put(&self.percent);
    }
}

impl StateHash for CaptureScore {
    fn hash_state(&self, h: &mut StateHasher<'_>) {
        h.put(&self.captures);
        h.put(&self.planted);
    }
}

fn id_or_zero(id: Option<EntityId>) -> [u8; 4] {
    id.map_or(0, |e| e.0).to_le_bytes()
}

fn zero_is_none(b: [u8; 4]) -> Option<EntityId> {
    Some(u32::from_le_bytes(b))
        .filter(|v| *v != 0)
        .map(EntityId)
}

/// On the wire: owner id (u32 LE, 0: none), claimant id (u32 LE, 0: none), percent (u8): 9
/// bytes. Entity ids start at 1, so 0 is free for "none".
impl Replicated for Flag {
    const NAME: &'static str = "example.capture.flag";
    const SIZE: usize = 9;

    fn encode(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&id_or_zero(self.owner));
        out[4..8].copy_from_slice(&id_or_zero(self.claimant));
        out[8] = self.percent;
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let [o0, o1, o2, o3, c0, c1, c2, c3, percent] = bytes else {
            return Err(CodecError("a flag is 9 bytes"));
        };
        if *percent > 100 {
            return Err(CodecError("flag percent above 100"));
        }
        Ok(Flag {
            owner: zero_is_none([*o0, *o1, *o2, *o3]),
            claimant: zero_is_none([*c0, *c1, *c2, *c3]),
            // Clients see the share, not the ticks.
            held: 0,
            percent: *percent,
        })
    }
}

/// Saved: version 1 held captures only (u32 LE); version 2 adds planted (u32 LE).
impl Persistent for CaptureScore {
    const NAME: &'static str = "example.capture.score";
    const VERSION: u8 = 2;
    const MAX_BYTES: usize = 8;

    fn save(&self, out: &mut SaveBuf<'_>) {
        out.put(&self.captures.to_le_bytes());
        out.put(&self.planted.to_le_bytes());
    }

    fn load(version: u8, bytes: &[u8]) -> Result<Self, CodecError> {
        match (version, bytes) {
            (1, [a, b, c, d]) => Ok(CaptureScore {
                captures: u32::from_le_bytes([*a, *b, *c, *d]),
                planted: 0,
            }),
            (2, [a, b, c, d, e, f, g, h]) => Ok(CaptureScore {
                captures: u32::from_le_bytes([*a, *b, *c, *d]),
                planted: u32::from_le_bytes([*e, *f, *g, *h]),
            }),
            (1 | 2, _) => Err(CodecError("capture score of the wrong length")),
            _ => Err(CodecError("capture score of an unknown version")),
        }
    }
}

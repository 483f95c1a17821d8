//! The persistent part of a player: what a zone is given on join and hands back on leave,
//! and what is checkpointed to the stores.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// Lifetime counters of one player.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode,
)]
pub struct PlayerStats {
    /// Entities this player killed.
    pub kills: u32,
    /// Times this player died.
    pub deaths: u32,
    /// Total damage dealt.
    pub damage_dealt: u64,
    /// Total damage taken.
    pub damage_taken: u64,
    /// Experience points.
    pub xp: u64,
}

/// A player's saved state. Written as an absolute value with a version, so the newest write
/// wins however often a write is retried.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct PlayerState {
    /// World x, units.
    pub x: f32,
    /// World y, units.
    pub y: f32,
    /// Facing angle, radians.
    pub facing: f32,
    /// Current health (0 = dead, respawns on join).
    pub health: u16,
    /// Lifetime counters.
    pub stats: PlayerStats,
    /// Increases by one with every save the zone emits for this player.
    pub version: u64,
}

impl PlayerState {
    /// A brand-new character at a position, with the given health and nothing done yet.
    pub fn new_character(x: f32, y: f32, health: u16) -> Self {
        Self {
            x,
            y,
            facing: 0.0,
            health,
            stats: PlayerStats::default(),
            version: 0,
        }
    }
}

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
    /// Increases by one with every save the zone emits for this player. The upper 32 bits
    /// are the ownership epoch ([`PlayerState::epoch`]): a zone that takes the player over
    /// raises it, so its saves order after every save of an earlier holder.
    pub version: u64,
}

/// Bits of [`PlayerState::version`] below the ownership epoch.
pub const EPOCH_SHIFT: u32 = 32;

impl PlayerState {
    /// The ownership epoch this state was saved under (0 before any claim).
    ///
    /// ```
    /// let s = zone_core::PlayerState::new_character(1.0, 2.0, 100).claimed(3);
    /// assert_eq!((s.epoch(), s.version), (3, 3 << 32));
    /// ```
    pub fn epoch(&self) -> u64 {
        self.version >> EPOCH_SHIFT
    }

    /// The state as taken over under ownership epoch `epoch`: its version jumps to the first of
    /// that epoch (never down: an epoch at or below the current one only adds one, and an
    /// epoch too large for the upper bits saturates rather than wrapping).
    ///
    /// ```
    /// let s = zone_core::PlayerState::new_character(0.0, 0.0, 100).claimed(5);
    /// assert_eq!(s.claimed(1 << 32).version, u64::MAX);
    /// assert!(s.claimed((1 << 32) + 1).version > s.version);
    /// ```
    pub fn claimed(mut self, epoch: u64) -> Self {
        let first = if epoch >> (u64::BITS - EPOCH_SHIFT) == 0 {
            epoch << EPOCH_SHIFT
        } else {
            u64::MAX
        };
        self.version = first.max(self.version.saturating_add(1));
        self
    }

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

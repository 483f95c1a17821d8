//! Player input as the core accepts it, and the typed reasons an input is refused.
//!
//! Inputs come from the network and are untrusted: [`PlayerInput::check`] refuses non-finite or
//! out-of-range values before anything reaches the simulation. Movement speed is enforced by the
//! movement system whatever the input says.

use bincode::{Decode, Encode};
use glam::Vec2;
use serde::{Deserialize, Serialize};

use crate::{AbilityId, EntityId};

/// A request to use an ability on a target.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct AbilityUse {
    /// Which ability.
    pub ability: AbilityId,
    /// On whom.
    pub target: EntityId,
    /// The tick of the view the player aimed in (what its screen showed): the server checks
    /// range and sight against where the target was then, rewound at most
    /// [`crate::Rules::lag_compensation_ticks`]. 0, or a tick not in the past: no rewind.
    pub view_tick: u64,
}

/// One input of one player, for one client tick.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct PlayerInput {
    /// Client-side sequence number; inputs at or below the last applied one are ignored.
    pub seq: u32,
    /// The server tick the client meant this input for.
    pub tick: u64,
    /// Desired direction, length at most 1 (0 = stand still).
    pub move_x: f32,
    /// Desired direction, length at most 1.
    pub move_y: f32,
    /// Run instead of walk.
    pub run: bool,
    /// Facing angle in radians, within [-pi, pi].
    pub facing: f32,
    /// Ability to use this tick, if any.
    pub ability: Option<AbilityUse>,
}

impl PlayerInput {
    /// An input that only moves.
    pub fn movement(seq: u32, tick: u64, dir: Vec2, run: bool) -> Self {
        Self {
            seq,
            tick,
            move_x: dir.x,
            move_y: dir.y,
            run,
            facing: 0.0,
            ability: None,
        }
    }

    /// The movement direction as a vector.
    pub fn direction(&self) -> Vec2 {
        Vec2::new(self.move_x, self.move_y)
    }
}

/// Why an input was refused. Every refusal is counted in [`crate::TickMetrics::inputs_rejected`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum InputError {
    /// The player is not in this zone.
    #[error("input for a player who is not in the zone")]
    UnknownPlayer,
    /// A direction or facing value is NaN or infinite.
    #[error("input has a non-finite number")]
    NonFinite,
    /// Direction longer than 1 or facing outside [-pi, pi].
    #[error("input value out of range (direction length must be <= 1, facing within [-pi, pi])")]
    OutOfRange,
    /// Ability id not defined by the rules.
    #[error("input names an unknown ability")]
    UnknownAbility,
    /// Stamped too far ahead of the server's tick.
    #[error("input stamped too far in the future")]
    FromFuture,
    /// Stamped too far behind the server's tick.
    #[error("input stamped too far in the past")]
    TooOld,
    /// Sequence number at or below one already applied (a redundant copy).
    #[error("input already applied (sequence not newer)")]
    Stale,
}

impl InputError {
    /// Number of kinds, for per-kind counters.
    pub const COUNT: usize = 7;

    /// Dense index of the kind, for per-kind counters.
    pub const fn index(self) -> usize {
        match self {
            Self::UnknownPlayer => 0,
            Self::NonFinite => 1,
            Self::OutOfRange => 2,
            Self::UnknownAbility => 3,
            Self::FromFuture => 4,
            Self::TooOld => 5,
            Self::Stale => 6,
        }
    }

    /// Every kind, in index order.
    pub const ALL: [InputError; Self::COUNT] = [
        Self::UnknownPlayer,
        Self::NonFinite,
        Self::OutOfRange,
        Self::UnknownAbility,
        Self::FromFuture,
        Self::TooOld,
        Self::Stale,
    ];

    /// Short stable name, for metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            Self::UnknownPlayer => "unknown_player",
            Self::NonFinite => "non_finite",
            Self::OutOfRange => "out_of_range",
            Self::UnknownAbility => "unknown_ability",
            Self::FromFuture => "from_future",
            Self::TooOld => "too_old",
            Self::Stale => "stale",
        }
    }
}

impl PlayerInput {
    /// Checks the values that do not depend on zone state.
    pub fn check_values(&self) -> Result<(), InputError> {
        if !self.move_x.is_finite() || !self.move_y.is_finite() || !self.facing.is_finite() {
            return Err(InputError::NonFinite);
        }
        if self.direction().length_squared() > 1.0 + 1e-4
            || self.facing.abs() > std::f32::consts::PI + 1e-4
        {
            return Err(InputError::OutOfRange);
        }
        Ok(())
    }
}

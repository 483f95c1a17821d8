//! [`PlantFlag`]: the plugin's client action, and why it is refused.

use zone_core::game::components::{Life, Position};
use zone_core::game::{Action, Actor, CodecError, Reason};

use zone_core::EntityId;

use crate::{CaptureRules, Flag};

/// "Plant my flag on this point": start capturing it. On the wire: the point's replicated
/// entity id, u32 little-endian (what a client sees in its snapshots).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlantFlag {
    /// The point's replicated id.
    pub point: EntityId,
}

/// Why a [`PlantFlag`] is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantRefused {
    /// No point has that id.
    NoSuchPoint,
    /// The player is dead.
    Dead,
    /// The player does not stand on the point.
    OutOfRange,
    /// The player owns the point already.
    AlreadyOwner,
    /// Somebody else is capturing it.
    Claimed,
}

impl Reason for PlantRefused {
    fn name(self) -> &'static str {
        match self {
            Self::NoSuchPoint => "no_such_point",
            Self::Dead => "dead",
            Self::OutOfRange => "out_of_range",
            Self::AlreadyOwner => "already_owner",
            Self::Claimed => "claimed",
        }
    }
}

impl Action for PlantFlag {
    const NAME: &'static str = "example.capture.plant_flag";
    type Reject = PlantRefused;

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        match bytes {
            [a, b, c, d] => Ok(Self {
                point: EntityId(u32::from_le_bytes([*a, *b, *c, *d])),
            }),
            _ => Err(CodecError("plant_flag is 4 bytes")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.point.0.to_le_bytes());
    }

    fn validate(&self, by: Actor<'_>) -> Result<(), PlantRefused> {
        let world = by.world;
        let me = world
            .get_entity(by.entity)
            .map_err(|_| PlantRefused::Dead)?;
        if !me.get::<Life>().is_some_and(|l| l.is_alive()) {
            return Err(PlantRefused::Dead);
        }
        let at = me
            .get::<Position>()
            .map(|p| p.0)
            .ok_or(PlantRefused::Dead)?;
        let radius = world
            .get_resource::<CaptureRules>()
            .map_or(0.0, |r| r.radius);
        let (point, flag) =
            crate::systems::find_point(world, self.point).ok_or(PlantRefused::NoSuchPoint)?;
        if point.center.distance(at) > radius {
            return Err(PlantRefused::OutOfRange);
        }
        check_flag(&flag, by.id)
    }
}

/// Whether `who` may claim a point with this flag.
pub(crate) fn check_flag(flag: &Flag, who: EntityId) -> Result<(), PlantRefused> {
    if flag.owner == Some(who) {
        return Err(PlantRefused::AlreadyOwner);
    }
    if flag.claimant.is_some_and(|c| c != who) {
        return Err(PlantRefused::Claimed);
    }
    Ok(())
}

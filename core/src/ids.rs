//! Identifiers that cross the core's boundary: players, replicated entities, zones and events.
//!
//! These are plain copyable numbers with a canonical order. Bevy's own `Entity` never leaves the
//! core: it is an allocation detail, while an [`EntityId`] is stable, replicated and hashed.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// A player account, as known to the login backend and the databases.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Encode, Decode,
)]
pub struct PlayerId(pub u64);

/// A replicated entity (player avatar or NPC) inside one zone. Allocated in increasing order,
/// never reused while the zone lives, so it also serves as the canonical iteration order.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Encode, Decode,
)]
pub struct EntityId(pub u32);

/// A zone (one region of the world).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Encode, Decode,
)]
pub struct ZoneId(pub u32);

/// The bare number, as in logs, store keys and metric labels.
impl std::fmt::Display for ZoneId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// An ability, as numbered in [`crate::Rules::abilities`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Encode, Decode,
)]
pub struct AbilityId(pub u8);

/// A globally unique, deterministic event id: zone, tick and a per-tick sequence number.
///
/// The same simulation always produces the same ids, so a store that keys events by id can
/// replay a write any number of times and keep one copy.
///
/// ```
/// use zone_core::{EventId, ZoneId};
/// let id = EventId::new(ZoneId(3), 1_000, 7);
/// assert_eq!(id.zone(), ZoneId(3));
/// assert_eq!(id.tick(), 1_000);
/// assert_eq!(id.seq(), 7);
/// ```
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Encode, Decode,
)]
pub struct EventId(pub u128);

impl EventId {
    /// Builds the id of the `seq`-th event of `tick` in `zone`.
    pub const fn new(zone: ZoneId, tick: u64, seq: u32) -> Self {
        Self(((zone.0 as u128) << 96) | ((tick as u128) << 32) | seq as u128)
    }

    /// The zone that emitted the event.
    pub const fn zone(self) -> ZoneId {
        ZoneId((self.0 >> 96) as u32)
    }

    /// The tick the event happened in.
    pub const fn tick(self) -> u64 {
        (self.0 >> 32) as u64
    }

    /// The event's position among the events of its tick.
    pub const fn seq(self) -> u32 {
        self.0 as u32
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.zone().0, self.tick(), self.seq())
    }
}

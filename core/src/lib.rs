//! # zone-core
//!
//! The pure heart of the zone server: a deterministic, allocation-light [bevy_ecs] simulation of
//! one region of an MMO world. No I/O, no clock, no OS randomness, no threads: inputs are method
//! calls with plain data, time is a tick counter, outputs are plain data returned by
//! [`Zone::tick`].
//!
//! ```
//! use zone_core::{Zone, ZoneConfig, ZoneId};
//! let mut a = Zone::new(ZoneConfig::arena(ZoneId(1), 96, 96, 50), 7).unwrap();
//! let mut b = Zone::new(ZoneConfig::arena(ZoneId(1), 96, 96, 50), 7).unwrap();
//! for _ in 0..30 {
//!     a.tick();
//!     b.tick();
//! }
//! assert_eq!(a.state_hash(), b.state_hash());
//! ```

pub mod client;
mod components;
mod config;
/// Fuzz targets and their seed corpus: not API (the `fuzzing` feature; `fuzz/` and the
/// corpus test enable it).
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod game;
mod grid;
mod ids;
mod input;
mod map;
pub mod motion;
pub mod netcode;
mod output;
mod player;
pub mod protocol;
pub mod replication;
pub mod rng;
mod rules;
pub mod scenario;
mod systems;
pub mod world;
mod zone;

pub use config::{ConfigError, MAX_NPCS, ZoneConfig};
pub use grid::SpatialGrid;
pub use ids::{AbilityId, EntityId, EventId, PlayerId, ZoneId};
pub use input::{AbilityUse, InputError, PlayerInput};
pub use map::{BORDER_STRIP, MapError, NpcSpawnRegion, OpenEdges, TileMap};
pub use output::{
    BorderCrossing, CombatEvent, DeathEvent, PlayerSave, RespawnEvent, SaveReason, TickMetrics,
    TickOutput,
};
pub use player::{
    EPOCH_SHIFT, PlayerState, PlayerStats, SAVED_PLUGIN_BYTES, SaveFull, SavedPlugins, Version,
};
pub use rules::{AbilityKind, AbilityRule, NpcRules, Rules, RulesError};
pub use zone::{EntityKind, EntityView, JoinError, Zone};

/// Re-exported so callers use the same vector type as the core.
pub use glam::Vec2;

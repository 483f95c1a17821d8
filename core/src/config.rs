//! What a zone is built from: its id, rules, map and NPC spawn regions.

use glam::Vec2;

use crate::{NpcSpawnRegion, OpenEdges, Rules, RulesError, TileMap, ZoneId};

/// Everything needed to build a [`crate::Zone`] besides its seed.
#[derive(Clone, Debug)]
pub struct ZoneConfig {
    /// Zone id (part of every event id).
    pub zone: ZoneId,
    /// Gameplay numbers.
    pub rules: Rules,
    /// Tile map with player spawn points.
    pub map: TileMap,
    /// NPC spawn regions, in order (NPC ids follow this order).
    pub npc_spawns: Vec<NpcSpawnRegion>,
}

/// A zone configuration that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// Bad rules.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// A spawn region that is not finite, not inside the map, or has a negative radius.
    #[error(
        "npc_spawns[{index}]: centre must lie inside the map and radius must be finite and >= 0"
    )]
    SpawnRegion {
        /// Index of the region.
        index: usize,
    },
    /// Too many NPCs for one zone.
    #[error("npc_spawns: {total} NPCs in all, at most {max} per zone")]
    TooManyNpcs {
        /// Requested.
        total: u64,
        /// Allowed.
        max: u64,
    },
    /// The game's plugins do not fit together.
    #[error(transparent)]
    Game(#[from] crate::game::GameError),
    /// The plugins' systems cannot be ordered (e.g. a cycle of `before`/`after`).
    #[error("the game's systems cannot be scheduled: {0}")]
    Schedule(String),
}

/// Most NPCs one zone holds.
pub const MAX_NPCS: u64 = 200_000;

impl ZoneConfig {
    /// A square-ish arena of `width` x `height` tiles with `npcs` NPCs spread over camps on a
    /// regular lattice: the standard scenario of tests, benches and the demo server.
    pub fn arena(zone: ZoneId, width: u32, height: u32, npcs: u32) -> Self {
        Self::arena_in(zone, TileMap::arena(width, height), npcs)
    }

    /// The same arena layout on a placed map (see [`TileMap::arena_in`]): one zone of a world
    /// grid, NPC camps relative to the map's origin.
    pub fn placed_arena(
        zone: ZoneId,
        origin: (i64, i64),
        width: u32,
        height: u32,
        open: OpenEdges,
        npcs: u32,
    ) -> Self {
        Self::arena_in(zone, TileMap::arena_in(origin, width, height, open), npcs)
    }

    fn arena_in(zone: ZoneId, map: TileMap, npcs: u32) -> Self {
        let spacing = 24.0;
        let cols = ((map.width() as f32 - 8.0) / spacing).max(1.0) as u32;
        let rows = ((map.height() as f32 - 8.0) / spacing).max(1.0) as u32;
        let camps = (cols * rows).max(1);
        let mut npc_spawns = Vec::with_capacity(camps as usize);
        for i in 0..camps {
            let count = npcs / camps + u32::from(i < npcs % camps);
            if count == 0 {
                continue;
            }
            let (cx, cy) = (i % cols, i / cols);
            let center = map.origin()
                + Vec2::new(
                    4.0 + spacing * (cx as f32 + 0.5),
                    4.0 + spacing * (cy as f32 + 0.5),
                );
            npc_spawns.push(NpcSpawnRegion {
                center: map.nearest_walkable(center),
                radius: 6.0,
                count,
            });
        }
        Self {
            zone,
            rules: Rules::default(),
            map,
            npc_spawns,
        }
    }

    /// Checks rules and spawn regions.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.rules.validate()?;
        let mut total = 0u64;
        for (index, r) in self.npc_spawns.iter().enumerate() {
            let inside = r.center.is_finite() && self.map.contains(r.center);
            if !inside || !r.radius.is_finite() || r.radius < 0.0 {
                return Err(ConfigError::SpawnRegion { index });
            }
            total += u64::from(r.count);
        }
        if total > MAX_NPCS {
            return Err(ConfigError::TooManyNpcs {
                total,
                max: MAX_NPCS,
            });
        }
        Ok(())
    }
}

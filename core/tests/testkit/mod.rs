//! Shared set-up for zone-core's integration tests.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use zone_core::scenario::Script;
use zone_core::{PlayerId, PlayerInput, PlayerState, Vec2, Zone, ZoneConfig, ZoneId};

/// A small open map: walls round the edge, one wall segment, one spawn.
pub const ROOM: &str = "\
##############################
#P...........................#
#............................#
#............................#
#.............#..............#
#.............#..............#
#.............#..............#
#............................#
#............................#
##############################
";

/// A zone on [`ROOM`] with no NPCs.
pub fn room_zone() -> Zone {
    let config = ZoneConfig {
        zone: ZoneId(9),
        rules: Default::default(),
        map: zone_core::TileMap::parse(ROOM).unwrap(),
        npc_spawns: vec![],
    };
    Zone::new(config, 1).unwrap()
}

/// Joins `player` at `(x, y)` with full health.
pub fn join_at(zone: &mut Zone, player: u64, x: f32, y: f32) -> zone_core::EntityId {
    let mut s: PlayerState = zone.new_character(PlayerId(player));
    (s.x, s.y) = (x, y);
    zone.join(PlayerId(player), s).unwrap()
}

/// An input stamped for the zone's next tick.
pub fn input(zone: &Zone, seq: u32, dir: Vec2, run: bool) -> PlayerInput {
    PlayerInput::movement(seq, zone.current_tick(), dir, run)
}

/// The standard busy zone: arena with NPCs and scripted players already joined.
pub fn busy_zone(seed: u64, players: u32, npcs: u32, size: u32) -> (Zone, Script) {
    let mut zone = Zone::new(ZoneConfig::arena(ZoneId(1), size, size, npcs), seed).unwrap();
    let script = Script::new(seed ^ 0xABCD, 1, players);
    script.join_all(&mut zone);
    (zone, script)
}

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

/// A one-way lossy link measured in ticks: drops, duplicates, delays and so reorders datagrams,
/// all from a seeded stream.
#[derive(Debug)]
pub struct LossyLink {
    seed: u64,
    counter: u64,
    /// Probability a datagram is lost.
    pub loss: f32,
    /// Probability a datagram is delivered twice.
    pub duplicate: f32,
    /// Fixed latency, ticks.
    pub latency: u64,
    /// Extra random latency, 0..=jitter ticks (reorders datagrams).
    pub jitter: u64,
    queue: Vec<(u64, u64, Vec<u8>)>,
}

impl LossyLink {
    /// A link with the given loss, duplication and latency.
    pub fn new(seed: u64, loss: f32, duplicate: f32, latency: u64, jitter: u64) -> Self {
        Self {
            seed,
            counter: 0,
            loss,
            duplicate,
            latency,
            jitter,
            queue: Vec::new(),
        }
    }

    /// Makes the link perfect from now on (fixed latency, no loss).
    pub fn heal(&mut self) {
        (self.loss, self.duplicate, self.jitter) = (0.0, 0.0, 0);
    }

    /// Sends one datagram at tick `now`.
    pub fn send(&mut self, now: u64, bytes: &[u8]) {
        self.counter += 1;
        let mut d = zone_core::rng::stream(
            self.seed,
            self.counter,
            now,
            zone_core::rng::Purpose::Script,
        );
        if d.unit() < self.loss {
            return;
        }
        let copies = if d.unit() < self.duplicate { 2 } else { 1 };
        for _ in 0..copies {
            let delay = self.latency
                + if self.jitter > 0 {
                    u64::from(d.below(self.jitter as u32 + 1))
                } else {
                    0
                };
            self.counter += 1;
            self.queue.push((now + delay, self.counter, bytes.to_vec()));
        }
    }

    /// Datagrams due at or before `now`, in arrival order.
    pub fn receive(&mut self, now: u64) -> Vec<Vec<u8>> {
        self.queue.sort_by_key(|(at, n, _)| (*at, *n));
        let due = self
            .queue
            .iter()
            .take_while(|(at, _, _)| *at <= now)
            .count();
        self.queue.drain(..due).map(|(_, _, b)| b).collect()
    }

    /// Everything still in flight.
    pub fn drain(&mut self) -> Vec<Vec<u8>> {
        self.receive(u64::MAX)
    }
}

//! The replicated state of every entity, once per tick, shared by every client's packet: the
//! record each entity is replicated as (its track, facing, health), the tick that record last
//! changed (its version), its position now, and the bytes every packet copies: the record's
//! spawn body and the update body from its previous version.
//!
//! A record keeps its track while the simulation stays within [`TRACK_TOLERANCE`] of it;
//! otherwise it is anchored anew where the entity is, with its velocity then. So most entities'
//! records do not change from one tick to the next, and clients need no bytes for them.
//!
//! Older versions stay findable for a while, for clients whose baseline holds one: the
//! previous version, the last version that lasted a snapshot ring or longer (`stable`: the
//! state an entity rested in before a burst of changes), and every version of the last
//! [`LOG_TICKS`] ticks (the change log). It never allocates once warm: every buffer is reused.

use crate::EntityId;
use crate::protocol::wire::SmallBytes;
use crate::protocol::{
    EntitySample, NetEntity, TRACK_TOLERANCE, write_spawn_body, write_update_body,
};

/// Ticks of changes kept in the log (past the snapshot ring, so a baseline's versions are
/// found).
pub(super) const LOG_TICKS: usize = 64;

/// A version that lasted this long is kept as `stable` once replaced: a baseline (at most
/// the snapshot ring old) may hold it after the log forgot its tick. A shorter-lived version
/// ended within the ring only if it began within the log.
const STABLE_TICKS: u64 = crate::replication::SNAPSHOT_RING as u64;

/// Marks "no version" (never equal to a tick).
pub(super) const NO_VERSION: u64 = u64::MAX;

/// Earlier versions each entity keeps, newest first, each with the update from it to the
/// current record prepared: a client whose baseline holds one of them gets those bytes copied.
/// One more slot keeps the stable version.
pub(super) const HISTORY: usize = 6;

/// Slots of earlier versions: the history and the stable version.
const KEPT: usize = HISTORY + 1;

/// The update from an earlier version to the current record: its mask and body.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Prepared {
    pub mask: u8,
    pub body: SmallBytes,
}

/// One entity's replicated state this tick. The fields every packet build reads come first
/// (`repr(C)` keeps the order).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(super) struct Tracked {
    /// The tick the record last changed.
    pub version: u64,
    /// The versions kept (history newest first, then the stable one; [`NO_VERSION`]: empty).
    pub from: [u64; KEPT],
    /// Position now (1/64 units), on the track.
    pub x: i32,
    pub y: i32,
    /// The record clients hold.
    pub record: NetEntity,
    /// The prepared updates from the versions in `from`.
    pub deltas: [Prepared; KEPT],
    /// The record's spawn body.
    pub spawn: SmallBytes,
    /// The records of the versions in `from`.
    pub older: [NetEntity; KEPT],
}

impl Tracked {
    fn new(s: &EntitySample, tick: u64) -> Self {
        let record = s.anchored(tick);
        let mut spawn = SmallBytes::default();
        write_spawn_body(&record, &mut spawn);
        Self {
            version: tick,
            from: [NO_VERSION; KEPT],
            x: s.x,
            y: s.y,
            record,
            deltas: [Prepared::default(); KEPT],
            spawn,
            older: [record; KEPT],
        }
    }

    /// Follows the entity to this tick's sample; returns whether the record changed.
    fn follow(&mut self, s: &EntitySample, tick: u64, tick_hz: u32) -> bool {
        let old = self.record;
        let (ex, ey) = old.at(tick, tick_hz);
        // Only the position decides: a velocity that drifts a little keeps its track until
        // the position strays past the tolerance (then the new track takes today's velocity).
        let on_track = (ex - s.x).abs() <= TRACK_TOLERANCE && (ey - s.y).abs() <= TRACK_TOLERANCE;
        let mut now = if on_track { old } else { s.anchored(tick) };
        (now.facing, now.health, now.max_health, now.alive, now.ext) =
            (s.facing, s.health, s.max_health, s.alive, s.ext);
        (self.x, self.y) = if on_track { (ex, ey) } else { (s.x, s.y) };
        if now == old {
            return false;
        }
        if tick.saturating_sub(self.version) >= STABLE_TICKS {
            self.from[HISTORY] = self.version;
            self.older[HISTORY] = old;
        }
        self.from.copy_within(0..HISTORY - 1, 1);
        self.older.copy_within(0..HISTORY - 1, 1);
        (self.from[0], self.older[0]) = (self.version, old);
        self.record = now;
        self.version = tick;
        for ((from, older), delta) in self.from.iter().zip(&self.older).zip(&mut self.deltas) {
            if *from != NO_VERSION {
                delta.body.clear();
                delta.mask = write_update_body(older, &now, tick_hz, &mut delta.body);
            }
        }
        self.spawn.clear();
        write_spawn_body(&now, &mut self.spawn);
        true
    }

    /// The record of `version`, if still known here.
    pub fn version(&self, version: u64) -> Option<&NetEntity> {
        if version == self.version {
            return Some(&self.record);
        }
        let i = self.from.iter().position(|&f| f == version)?;
        self.older.get(i)
    }
}

/// The records that changed at one tick, sorted by id.
#[derive(Debug, Default)]
struct LogSlot {
    tick: u64,
    records: Vec<NetEntity>,
}

/// Every entity's replicated state, rebuilt each tick from the samples.
#[derive(Debug)]
pub(super) struct Tracker {
    tick_hz: u32,
    entities: Vec<Tracked>,
    /// Each entity's version and id, by slot (the hot loops of every packet build read only
    /// these).
    versions: Vec<u64>,
    ids: Vec<EntityId>,
    /// Each entity's position now (world units), by slot.
    positions: Vec<glam::Vec2>,
    next: Vec<Tracked>,
    log: Vec<LogSlot>,
    changed: usize,
}

impl Tracker {
    pub fn new(tick_hz: u32) -> Self {
        Self {
            tick_hz: tick_hz.max(1),
            entities: Vec::new(),
            versions: Vec::new(),
            ids: Vec::new(),
            positions: Vec::new(),
            next: Vec::new(),
            log: (0..LOG_TICKS).map(|_| LogSlot::default()).collect(),
            changed: 0,
        }
    }

    /// Sets the tick rate tracks are extrapolated at.
    pub fn set_tick_hz(&mut self, tick_hz: u32) {
        self.tick_hz = tick_hz.max(1);
    }

    /// Every entity this tick, sorted by id.
    pub fn entities(&self) -> &[Tracked] {
        &self.entities
    }

    /// Each entity's version, by slot.
    pub fn versions(&self) -> &[u64] {
        &self.versions
    }

    /// Each entity's id, by slot.
    pub fn ids(&self) -> &[EntityId] {
        &self.ids
    }

    /// Each entity's position now (world units), by slot.
    pub fn positions(&self) -> &[glam::Vec2] {
        &self.positions
    }

    fn refresh_positions(&mut self) {
        let scale = crate::protocol::POS_SCALE;
        self.positions.clear();
        self.positions.extend(
            self.entities
                .iter()
                .map(|t| glam::Vec2::new(t.x as f32 / scale, t.y as f32 / scale)),
        );
    }

    /// Records that changed at the last update.
    pub fn changed(&self) -> usize {
        self.changed
    }

    /// Takes this tick's samples (sorted by id, unique): entities not sampled are gone, new
    /// ones start a record here.
    pub fn update(&mut self, tick: u64, samples: &[EntitySample]) {
        let slot = &mut self.log[(tick % LOG_TICKS as u64) as usize];
        slot.tick = tick;
        slot.records.clear();
        self.changed = 0;
        let same_ids = self.entities.len() == samples.len()
            && self
                .entities
                .iter()
                .zip(samples)
                .all(|(t, s)| t.record.id == s.id);
        if same_ids {
            // The common case: nobody came or went; follow everyone in place.
            for ((t, s), v) in self
                .entities
                .iter_mut()
                .zip(samples)
                .zip(&mut self.versions)
            {
                if t.follow(s, tick, self.tick_hz) {
                    slot.records.push(t.record);
                    self.changed += 1;
                    *v = tick;
                }
            }
            self.refresh_positions();
            return;
        }
        self.next.clear();
        let mut old = self.entities.iter().peekable();
        for s in samples {
            while old.next_if(|t| t.record.id < s.id).is_some() {}
            let t = match old.next_if(|t| t.record.id == s.id) {
                Some(t) => {
                    let mut t = *t;
                    if !t.follow(s, tick, self.tick_hz) {
                        self.next.push(t);
                        continue;
                    }
                    t
                }
                None => Tracked::new(s, tick),
            };
            slot.records.push(t.record);
            self.changed += 1;
            self.next.push(t);
        }
        std::mem::swap(&mut self.entities, &mut self.next);
        self.versions.clear();
        self.versions
            .extend(self.entities.iter().map(|t| t.version));
        self.ids.clear();
        self.ids.extend(self.entities.iter().map(|t| t.record.id));
        self.refresh_positions();
    }

    /// The record `id` had at `version`, if it is still known.
    pub fn record(
        &self,
        tracked: Option<&Tracked>,
        id: EntityId,
        version: u64,
    ) -> Option<NetEntity> {
        if let Some(r) = tracked.and_then(|t| t.version(version)) {
            return Some(*r);
        }
        let slot = self.log.get((version % LOG_TICKS as u64) as usize)?;
        if slot.tick != version {
            return None;
        }
        let i = slot.records.binary_search_by_key(&id, |r| r.id).ok()?;
        slot.records.get(i).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::NetKind;

    fn sample(id: u32, x: i32, vx: i16) -> EntitySample {
        EntitySample {
            id: EntityId(id),
            kind: NetKind::Npc,
            x,
            y: 0,
            vx,
            vy: 0,
            facing: 0,
            health: 10,
            max_health: 10,
            alive: true,
            ext: Default::default(),
        }
    }

    #[test]
    fn a_steady_walker_keeps_its_record_and_a_turn_anchors_a_new_one() {
        let mut t = Tracker::new(60);
        // 3 units/s = 48 in 1/16: 64 * 3 / 60 = 3.2 position units per tick.
        let at = |tick: u64| (tick as f32 * 3.2).round() as i32;
        for tick in 1..=40 {
            t.update(tick, &[sample(1, at(tick), 48)]);
            let e = &t.entities()[0];
            assert_eq!(
                e.version, 1,
                "tick {tick}: a steady walk needs no new record"
            );
            assert!((e.x - at(tick)).abs() <= TRACK_TOLERANCE);
        }
        // It stops at 128: its track goes on, 131 at tick 41 (within 3), 134 at 42 (off it):
        // anchored anew, standing (anchor 0).
        t.update(41, &[sample(1, at(40), 0)]);
        assert_eq!(t.entities()[0].version, 1);
        t.update(42, &[sample(1, at(40), 0)]);
        let e = &t.entities()[0];
        assert_eq!(e.version, 42);
        assert_eq!((e.record.x, e.record.anchor, e.record.vx), (at(40), 0, 0));
        assert_eq!(e.from[0], 1, "the previous version");
        assert_eq!(
            e.from[HISTORY], 1,
            "kept as stable: the walk lasted 41 ticks"
        );
        assert_ne!(e.deltas[0].mask, 0);
        // The old record is still found, by version.
        assert_eq!(t.record(Some(e), EntityId(1), 1).map(|r| r.anchor), Some(1));
        assert_eq!(
            t.record(Some(e), EntityId(1), 42).map(|r| r.anchor),
            Some(0)
        );
    }

    #[test]
    fn drifting_past_the_tolerance_reanchors() {
        let mut t = Tracker::new(60);
        t.update(1, &[sample(1, 0, 16)]);
        // The simulation says it stands still at 0 though its velocity says 1 unit/s.
        let mut reanchored = None;
        for tick in 2..20 {
            t.update(tick, &[sample(1, 0, 16)]);
            if t.entities()[0].version == tick {
                reanchored = Some(tick);
                break;
            }
        }
        // 64/60 per tick: off by more than 3 after 4 ticks.
        assert_eq!(reanchored, Some(5));
    }

    #[test]
    fn entities_come_and_go_and_the_log_finds_recent_versions() {
        let mut t = Tracker::new(60);
        t.update(1, &[sample(1, 0, 0), sample(3, 0, 0)]);
        t.update(2, &[sample(2, 0, 0), sample(3, 50, 0)]);
        let ids: Vec<u32> = t.entities().iter().map(|e| e.record.id.0).collect();
        assert_eq!(ids, [2, 3]);
        assert_eq!(t.changed(), 2);
        t.update(3, &[sample(2, 0, 0), sample(3, 100, 0)]);
        t.update(4, &[sample(2, 0, 0), sample(3, 150, 0)]);
        let e3 = t.entities().iter().find(|e| e.record.id.0 == 3);
        assert_eq!(t.record(e3, EntityId(3), 2).map(|r| r.x), Some(50));
        assert_eq!(t.record(e3, EntityId(3), 99), None);
        // Past the history, the log still has a version of the last ticks.
        for tick in 5..=(5 + HISTORY as u64) {
            t.update(tick, &[sample(2, 0, 0), sample(3, 50 * tick as i32, 0)]);
        }
        let e3 = t.entities().iter().find(|e| e.record.id.0 == 3);
        assert!(
            e3.is_some_and(|e| e.version(2).is_none()),
            "out of the history"
        );
        assert_eq!(t.record(e3, EntityId(3), 2).map(|r| r.x), Some(50));
    }
}

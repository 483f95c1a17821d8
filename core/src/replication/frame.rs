//! [`Frame`]: what every client's packet build reads, shared and read-only, once the tick's
//! common work is done ([`super::Replicator::prepare`]); and [`Worker`]: one thread's reusable
//! buffers and the packets it built. Workers on different threads build packets for disjoint
//! sets of clients over the same frame; each packet depends only on the frame and its own
//! client, so the bytes are the same whichever worker builds them.

use glam::Vec2;

use crate::protocol::{NetEntity, POS_SCALE};
use crate::{EntityId, PlayerId, SpatialGrid};

use super::ReplicationConfig;
use super::select::{BuildStats, Scratch};
use super::track::{Tracked, Tracker};

/// The tick's shared state for building packets (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub(super) tick: u64,
    pub(super) tick_hz: u32,
    pub(super) config: &'a ReplicationConfig,
    pub(super) tracker: &'a Tracker,
    /// Frame slot of each of the zone's own entity ids (`u32::MAX`: absent).
    pub(super) index: &'a [u32],
    pub(super) grid: &'a SpatialGrid,
}

impl Frame<'_> {
    /// The tick the packets describe.
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// Whether `link`'s client gets a snapshot at this tick.
    pub fn is_due(&self, link: &super::ClientLink) -> bool {
        link.due(self.tick, self.config.snapshot_interval)
    }

    pub(super) fn slot_of(&self, id: EntityId) -> Option<usize> {
        let entities = self.tracker.entities();
        match self.index.get(id.0 as usize) {
            Some(&i) if i != u32::MAX => Some(i as usize),
            Some(_) => None,
            // Ghosts (ids past the zone's own) are found by search: the list is sorted by id.
            None => entities.binary_search_by_key(&id, |t| t.record.id).ok(),
        }
    }

    pub(super) fn entity(&self, slot: usize) -> &Tracked {
        &self.tracker.entities()[slot]
    }

    pub(super) fn position(&self, t: &Tracked) -> Vec2 {
        Vec2::new(t.x as f32 / POS_SCALE, t.y as f32 / POS_SCALE)
    }

    pub(super) fn record(&self, t: &Tracked, version: u64) -> Option<NetEntity> {
        self.tracker.record(Some(t), t.record.id, version)
    }
}

/// Counts of one worker's builds, added to the replicator's metrics.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Totals {
    pub packets: u64,
    pub bytes: u64,
    pub visible: u64,
    pub records: u64,
    pub deferred: u64,
    pub full: u64,
    pub shared: u64,
    pub encoded: u64,
    pub replaced: u64,
}

impl Totals {
    fn add(&mut self, s: &BuildStats, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
        self.visible += s.visible as u64;
        self.records += s.records as u64;
        self.deferred += s.deferred as u64;
        self.full += u64::from(s.full);
        self.shared += s.shared as u64;
        self.encoded += s.encoded as u64;
        self.replaced += s.replaced as u64;
    }
}

/// One thread's packet builds: reusable buffers and the packets of the last build, back to
/// back in one buffer.
#[derive(Debug, Default)]
pub struct Worker {
    pub(super) scratch: Scratch,
    pub(super) out: Vec<u8>,
    spans: Vec<(PlayerId, u32, u32)>,
    pub(super) totals: Totals,
}

impl Worker {
    /// A worker with empty buffers (they grow to their working size in the first ticks).
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn clear(&mut self) {
        self.out.clear();
        self.spans.clear();
        self.totals = Totals::default();
    }

    pub(super) fn reserve(&mut self, packets: usize, bytes: usize) {
        self.spans.reserve(packets.saturating_sub(self.spans.len()));
        self.out.reserve(bytes.saturating_sub(self.out.len()));
    }

    pub(super) fn finish(&mut self, player: PlayerId, start: usize, stats: &BuildStats) {
        let end = self.out.len();
        self.spans.push((player, start as u32, end as u32));
        self.totals.add(stats, end - start);
    }

    /// The packets of the last build, one per client that was due, in client order.
    pub fn packets(&self) -> impl Iterator<Item = (PlayerId, &[u8])> {
        self.spans
            .iter()
            .map(|&(p, a, b)| (p, self.out.get(a as usize..b as usize).unwrap_or(&[])))
    }

    /// Number of packets of the last build.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the last build made no packet.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

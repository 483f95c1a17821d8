//! The live view of a zone, for the world page of the admin endpoint ([`crate::admin`]): the
//! tick loop copies every entity (position, health) and the border ghosts into one shared
//! [`MapSample`] a few times per second, and only while someone looks, with the full state
//! (a player's stats and ownership epoch) of the one entity a viewer asked about. The copy is made after the tick's datagrams are handed to the kernel, never
//! inside the tick, into buffers that keep their capacity (no allocation once they have held
//! the largest zone seen), and only if the admin side is not reading the sample at that
//! moment (`try_lock`: the loop never waits on a viewer). Nothing is queued for viewers: each
//! reads the newest sample when its connection can take more, and the samples in between are
//! dropped.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use zone_core::{EntityKind, PlayerId, PlayerStats};

use crate::host::ZoneHost;

/// Samples per second while someone looks.
pub const SAMPLES_PER_SECOND: u32 = 5;
/// Tick durations kept for the page's p50/p99 (about 4 s at 60 Hz).
pub const TICK_RING: usize = 256;

/// One entity as the page draws it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Dot {
    /// Replicated id.
    pub id: u32,
    /// The player it is the avatar of (`None`: an NPC). Not serialized as a number: player
    /// ids use all 64 bits, more than a JSON reader's doubles hold exactly.
    #[serde(skip)]
    pub player: Option<u64>,
    /// World position.
    pub x: f32,
    /// World position.
    pub y: f32,
    /// Current health.
    pub health: u16,
    /// Maximum health.
    pub max_health: u16,
    /// Alive or dead.
    pub alive: bool,
    /// A capture point ([`zone_capture::Flag`]): its owner's entity id (0: none) and the
    /// current capture's percent; `None` for anything else.
    pub flag: Option<[u32; 2]>,
}

/// The state of the entity a viewer asked about, beyond its [`Dot`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Detail {
    /// The entity.
    #[serde(flatten)]
    pub dot: Dot,
    /// A player's lifetime counters.
    pub stats: Option<PlayerStats>,
    /// A player's ownership epoch (raised by every handoff and login).
    pub epoch: Option<u64>,
}

/// The newest copy of a zone the loop made.
#[derive(Clone, Debug)]
pub struct MapSample {
    /// The zone's tick when copied (0: no sample yet).
    pub tick: u64,
    /// Every entity, in id order.
    pub dots: Vec<Dot>,
    /// Neighbours' entities shown at this zone's borders: world positions.
    pub ghosts: Vec<[f32; 2]>,
    /// The entity asked about ([`ZoneView::ask_detail`]), if it is in the zone.
    pub detail: Option<Detail>,
    /// The latest tick durations, microseconds (`tick_len` of them are valid).
    pub tick_us: [u32; TICK_RING],
    /// How many of `tick_us` hold a duration.
    pub tick_len: usize,
}

impl Default for MapSample {
    fn default() -> Self {
        Self {
            tick: 0,
            dots: Vec::new(),
            ghosts: Vec::new(),
            detail: None,
            tick_us: [0; TICK_RING],
            tick_len: 0,
        }
    }
}

impl MapSample {
    /// The `q` quantile (0..=1) of the tick durations held, milliseconds (`None`: none held).
    pub fn tick_quantile_ms(&self, q: f64) -> Option<f64> {
        let mut held: Vec<u32> = self.tick_us.get(..self.tick_len)?.to_vec();
        if held.is_empty() {
            return None;
        }
        held.sort_unstable();
        let i = ((held.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        held.get(i).map(|us| f64::from(*us) / 1000.0)
    }

    /// The entity `id`, if it was in the zone at the last sample.
    pub fn dot(&self, id: u32) -> Option<&Dot> {
        self.dots
            .binary_search_by_key(&id, |d| d.id)
            .ok()
            .and_then(|i| self.dots.get(i))
    }

    /// Copies `host`'s zone into this sample, with the full state of entity `detail` (the
    /// loop's side; allocates only while the zone holds more entities than any sample before).
    pub fn copy_from(&mut self, host: &ZoneHost, detail: Option<u32>) {
        let zone = host.zone();
        self.tick = zone.current_tick();
        self.dots.clear();
        let wire = zone.wire();
        self.dots.extend(zone.entities().map(|e| {
            Dot {
                id: e.id.0,
                player: match e.kind {
                    EntityKind::Player(p) => Some(p.0),
                    EntityKind::Npc | EntityKind::Prop => None,
                },
                x: e.position.x,
                y: e.position.y,
                health: e.health,
                max_health: e.max_health,
                alive: e.alive,
                flag: (e.kind == EntityKind::Prop)
                    .then(|| wire.component::<zone_capture::Flag>(&e.ext)?.ok())
                    .flatten()
                    .map(|f| [f.owner.map_or(0, |o| o.0), u32::from(f.percent)]),
            }
        }));
        self.detail = detail.and_then(|id| {
            let dot = *self.dot(id)?;
            let state = dot.player.and_then(|p| zone.player_state(PlayerId(p)));
            Some(Detail {
                dot,
                stats: state.map(|s| s.stats),
                epoch: state.map(|s| s.version.epoch()),
            })
        });
        self.ghosts.clear();
        self.ghosts.extend(
            host.ghosts()
                .iter()
                .map(|g| [g.x as f32 / 64.0, g.y as f32 / 64.0]),
        );
    }
}

/// A zone's view, shared by its loop and the admin endpoint.
#[derive(Debug)]
pub struct ZoneView {
    /// Map streams open now.
    viewers: AtomicUsize,
    /// Sampling is wanted (without a stream open) until the zone reaches this tick: a status
    /// or entity request asked lately.
    wanted_until: AtomicU64,
    /// The last tick the loop reported (what `wanted_until` is measured against).
    tick: AtomicU64,
    /// Raised with every new sample.
    version: AtomicU64,
    /// The entity whose full state the next samples carry (above `u32::MAX`: none).
    detail: AtomicU64,
    latest: Mutex<MapSample>,
}

impl Default for ZoneView {
    fn default() -> Self {
        Self {
            viewers: AtomicUsize::new(0),
            wanted_until: AtomicU64::new(0),
            tick: AtomicU64::new(0),
            version: AtomicU64::new(0),
            detail: AtomicU64::new(u64::MAX),
            latest: Mutex::new(MapSample::default()),
        }
    }
}

impl ZoneView {
    /// A viewer attaches (the loop samples while any is attached); pair with
    /// [`ZoneView::detach`].
    pub fn attach(&self) {
        self.viewers.fetch_add(1, Ordering::AcqRel);
    }

    /// A viewer leaves.
    pub fn detach(&self) {
        let _ = self
            .viewers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Viewers attached now.
    pub fn viewers(&self) -> usize {
        self.viewers.load(Ordering::Acquire)
    }

    /// Asks for samples for the next `ticks` ticks (a one-off look: a status or entity
    /// request).
    pub fn want_for(&self, ticks: u64) {
        let until = self.tick.load(Ordering::Acquire).saturating_add(ticks);
        self.wanted_until.fetch_max(until, Ordering::AcqRel);
    }

    /// Asks the next samples to carry the full state of entity `id` (the last viewer to ask
    /// is answered; each asks again while it shows the entity).
    pub fn ask_detail(&self, id: u32) {
        self.detail.store(u64::from(id), Ordering::Release);
    }

    fn detail_wanted(&self) -> Option<u32> {
        u32::try_from(self.detail.load(Ordering::Acquire)).ok()
    }

    /// How many samples the loop made so far.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The newest sample (the admin side; the loop skips a sample while this is held).
    pub fn latest(&self) -> MutexGuard<'_, MapSample> {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wanted(&self, tick: u64) -> bool {
        self.viewers() > 0 || tick < self.wanted_until.load(Ordering::Acquire)
    }
}

/// The loop's side: records every tick's duration, and copies the zone into the view every
/// `every` ticks while it is wanted.
#[derive(Debug)]
pub struct Sampler {
    every: u64,
    ticks: u64,
    ring: [u32; TICK_RING],
    len: usize,
    at: usize,
}

impl Sampler {
    /// A sampler for a loop of `tick_hz`.
    pub fn new(tick_hz: u32) -> Self {
        Self {
            every: u64::from((tick_hz / SAMPLES_PER_SECOND).max(1)),
            ticks: 0,
            ring: [0; TICK_RING],
            len: 0,
            at: 0,
        }
    }

    /// Records one tick's duration.
    pub fn record(&mut self, took: Duration) {
        if let Some(slot) = self.ring.get_mut(self.at) {
            *slot = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        }
        self.at = (self.at + 1) % TICK_RING;
        self.len = (self.len + 1).min(TICK_RING);
        self.ticks += 1;
    }

    /// After the tick's datagrams are sent: copies `host` into `view` if a sample is due and
    /// wanted and the admin side is not reading the last one. Whether it copied.
    pub fn after_tick(&mut self, host: &ZoneHost, view: &ZoneView) -> bool {
        let tick = host.zone().current_tick();
        view.tick.store(tick, Ordering::Release);
        if self.ticks < self.every || !view.wanted(tick) {
            return false;
        }
        let Ok(mut sample) = view.latest.try_lock() else {
            return false; // a viewer is reading: this sample is dropped, the next one comes
        };
        self.ticks = 0;
        sample.copy_from(host, view.detail_wanted());
        sample.tick_us = self.ring;
        sample.tick_len = self.len;
        drop(sample);
        view.version.fetch_add(1, Ordering::AcqRel);
        true
    }
}

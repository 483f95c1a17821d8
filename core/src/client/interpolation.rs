//! [`Interpolator`]: everything but the own avatar drawn smoothly, a little in the past.
//!
//! The session keeps its last 32 views (each applied snapshot's entity list); the interpolator
//! reads them in place and draws the world at a render tick that trails the newest tick it can expect to
//! hold ([`TimeSync::received_tick`]) by an adaptive delay ([`Interpolator::delay_ticks`]: the snapshot spacing plus twice the jitter
//! plus one tick), so there is almost always a view on each side to interpolate between. The
//! render clock never runs backwards: it follows its target by running between 0.9x and 1.1x
//! the server's clock rate ([`TimeSync::rate`]), and jumps only forward, after a stall.
//!
//! What is drawn at render tick `r`, with `A` the newest view at or before `r` and `B` the next:
//! - an entity in both: its position at `A`'s tick interpolated toward its position at `B`'s,
//!   unless it moved farther than it can run in that time (a respawn, a teleport): then it
//!   stays at `A`'s position until `B`'s tick and appears at the new one, never sliding;
//! - an entity only in `A` (it despawned or left the view): held where `A` had it until `B`'s
//!   tick, then gone; one only in `B` (it spawned): shown from `B`'s tick on, never before;
//! - past the newest view, entities follow their tracks for at most
//!   [`MAX_EXTRAPOLATION_SECONDS`], then stand.
//!
//! A redirect to another zone starts afresh ([`Interpolator::reset`]): the old zone's views are
//! not interpolated into the new one's.

use glam::Vec2;

use crate::EntityId;
use crate::client::timesync::TimeSync;
use crate::protocol::{NetEntity, NetKind};

/// Longest the world is extrapolated past the newest view.
pub const MAX_EXTRAPOLATION_SECONDS: f64 = 0.1;
/// Longest interpolation delay, ticks.
pub const MAX_DELAY_TICKS: f64 = 30.0;

/// One entity as drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rendered {
    /// Which.
    pub id: EntityId,
    /// Player or NPC.
    pub kind: NetKind,
    /// Where, units.
    pub pos: Vec2,
    /// Facing in 1/256 turns.
    pub facing: u8,
    /// Health.
    pub health: u16,
    /// Maximum health.
    pub max_health: u16,
    /// Alive.
    pub alive: bool,
    /// Game plugins' replicated state, as of the snapshot drawn from (discrete, not
    /// interpolated); read it typed with [`crate::game::WireLayout::component`].
    pub ext: crate::protocol::Ext,
}

/// Running totals, for metrics and the report.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct InterpolationStats {
    /// Frames drawn.
    pub frames: u64,
    /// Of those, frames past the newest view (extrapolated).
    pub extrapolated: u64,
    /// Sum of the delays chosen (ticks), over the frames.
    pub delay_sum: f64,
}

/// Snapshot interpolation for one client (see the module docs). It keeps no views of its
/// own: it reads the ones the session remembers ([`crate::client::ClientSession::views`]).
#[derive(Debug)]
pub struct Interpolator {
    hz: u32,
    max_speed: f32,
    render: Option<f64>,
    last_now: f64,
    delay: f64,
    stats: InterpolationStats,
}

impl Interpolator {
    /// An interpolator for a server at `tick_hz` whose bodies move at most `max_speed` units
    /// per second (the rules' `run_speed` and NPC `chase_speed`, whichever is larger).
    pub fn new(tick_hz: u16, max_speed: f32) -> Self {
        Self {
            hz: u32::from(tick_hz.max(1)),
            max_speed,
            render: None,
            last_now: 0.0,
            delay: 2.0,
            stats: InterpolationStats::default(),
        }
    }

    /// The totals so far.
    pub fn stats(&self) -> InterpolationStats {
        self.stats
    }

    /// The delay last chosen, ticks.
    pub fn delay(&self) -> f64 {
        self.delay
    }

    /// Forgets the render clock (after a redirect, with the new zone's session).
    pub fn reset(&mut self) {
        self.render = None;
    }

    /// The delay to draw with: the snapshot spacing, twice the jitter and one tick, in ticks.
    pub fn delay_ticks(sync: &TimeSync) -> f64 {
        (sync.snapshot_gap_ticks() + 2.0 * sync.jitter_ticks() + 1.0).clamp(1.0, MAX_DELAY_TICKS)
    }

    /// Advances the render clock to `now` (seconds, the application's monotonic clock) and
    /// returns the render tick (none before the first snapshot).
    pub fn advance(&mut self, now: f64, sync: &TimeSync) -> Option<f64> {
        self.delay = Self::delay_ticks(sync);
        let target = sync.received_tick(now)? - self.delay;
        let render = match self.render {
            None => target,
            Some(r) => {
                // The server's clock rate, not the nominal one: a server that skips ticks
                // is drawn at its own pace.
                let elapsed = (now - self.last_now).max(0.0) * sync.rate();
                let ahead = r + elapsed;
                if target - ahead > MAX_DELAY_TICKS {
                    target
                } else {
                    let rate = (1.0 + (target - ahead) * 0.05).clamp(0.9, 1.1);
                    r + elapsed * rate
                }
            }
        };
        self.render = Some(render);
        self.last_now = now;
        Some(render)
    }

    /// The world at render tick `render` into `out` (cleared first), in id order, from
    /// `views`: the applied views as `(tick, entities sorted by id)`, in any order (the
    /// session's [`crate::client::ClientSession::views`]).
    pub fn view_at<'a>(
        &mut self,
        render: f64,
        views: impl Iterator<Item = (u64, &'a [NetEntity])>,
        out: &mut Vec<Rendered>,
    ) {
        out.clear();
        // A: the newest view at or before `render`; B: the oldest after it.
        let mut a: Option<HeldView<'a>> = None;
        let mut b: Option<HeldView<'a>> = None;
        for (t, v) in views {
            if t as f64 <= render {
                if a.is_none_or(|(at, _)| t > at) {
                    a = Some((t, v));
                }
            } else if b.is_none_or(|(bt, _)| t < bt) {
                b = Some((t, v));
            }
        }
        let hz = self.hz;
        let (a, bv) = match (a, b) {
            (None, None) => return,
            (None, Some((t, v))) => {
                // Before the oldest view: draw it as it is.
                self.count();
                out.extend(v.iter().map(|e| drawn(e, e.position_at(t, hz))));
                return;
            }
            (Some((t, v)), None) => {
                // Past the newest view: follow the tracks, for a bounded time.
                self.count();
                if render > t as f64 {
                    self.stats.extrapolated += 1;
                }
                let limit = t as f64 + MAX_EXTRAPOLATION_SECONDS * f64::from(hz);
                let at = render.min(limit);
                out.extend(v.iter().map(|e| drawn(e, track_at(e, at, hz))));
                return;
            }
            (Some(a), Some(b)) => (a, b),
        };
        self.count();
        let span = (bv.0 - a.0) as f64;
        let alpha = ((render - a.0 as f64) / span).clamp(0.0, 1.0) as f32;
        let reach = self.max_speed * span as f32 / hz as f32 * 1.5 + 0.5;
        let mut j = 0usize;
        for ea in a.1 {
            while bv.1.get(j).is_some_and(|e| e.id < ea.id) {
                j += 1; // Spawned by `B`: not drawn before its tick.
            }
            let pa = ea.position_at(a.0, hz);
            let pos = match bv.1.get(j).filter(|e| e.id == ea.id) {
                Some(eb) => {
                    let pb = eb.position_at(bv.0, hz);
                    if pa.distance(pb) > reach {
                        pa
                    } else {
                        pa.lerp(pb, alpha)
                    }
                }
                None => pa,
            };
            out.push(drawn(ea, pos));
        }
    }

    fn count(&mut self) {
        self.stats.frames += 1;
        self.stats.delay_sum += self.delay;
    }
}

/// One remembered view: its tick and its entities, sorted by id.
type HeldView<'a> = (u64, &'a [NetEntity]);

/// Where `e`'s track puts it at fractional tick `t`.
fn track_at(e: &NetEntity, t: f64, hz: u32) -> Vec2 {
    let base = t.floor();
    let frac = (t - base) as f32;
    let tick = base.max(0.0) as u64;
    e.position_at(tick, hz)
        .lerp(e.position_at(tick + 1, hz), frac)
}

fn drawn(e: &NetEntity, pos: Vec2) -> Rendered {
    Rendered {
        id: e.id,
        kind: e.kind,
        pos,
        facing: e.facing,
        health: e.health,
        max_health: e.max_health,
        alive: e.alive,
        ext: e.ext,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(id: u32, x: f32, y: f32) -> NetEntity {
        NetEntity {
            id: EntityId(id),
            kind: NetKind::Npc,
            x: crate::protocol::quantize_pos(x),
            y: crate::protocol::quantize_pos(y),
            anchor: 0,
            vx: 0,
            vy: 0,
            facing: 0,
            health: 10,
            max_health: 10,
            alive: true,
            ext: Default::default(),
        }
    }

    fn at(out: &[Rendered], id: u32) -> Option<Vec2> {
        out.iter().find(|r| r.id == EntityId(id)).map(|r| r.pos)
    }

    fn views(v: &[(u64, Vec<NetEntity>)]) -> impl Iterator<Item = (u64, &[NetEntity])> {
        v.iter().map(|(t, e)| (*t, e.as_slice()))
    }

    #[test]
    fn spawns_despawns_and_teleports_neither_slide_nor_pop_back() {
        let mut i = Interpolator::new(60, 7.0);
        let mut out = Vec::new();
        // 1 walks a fifth of a unit east; 2 respawns far away; 3 leaves the view; 4 enters it.
        let held = vec![
            (
                10,
                vec![
                    standing(1, 5.0, 5.0),
                    standing(2, 10.0, 10.0),
                    standing(3, 20.0, 5.0),
                ],
            ),
            (
                12,
                vec![
                    standing(1, 5.2, 5.0),
                    standing(2, 60.0, 10.0),
                    standing(4, 30.0, 5.0),
                ],
            ),
        ];
        i.view_at(11.0, views(&held), &mut out);
        let walker = at(&out, 1).unwrap();
        assert!(
            (walker.x - 5.1).abs() < 0.02 && walker.y == 5.0,
            "interpolated: {walker}"
        );
        assert_eq!(at(&out, 2), Some(Vec2::new(10.0, 10.0)), "no slide");
        assert_eq!(
            at(&out, 3),
            Some(Vec2::new(20.0, 5.0)),
            "held until it leaves"
        );
        assert_eq!(at(&out, 4), None, "not before its spawn");
        i.view_at(12.0, views(&held), &mut out);
        assert!((at(&out, 1).unwrap().x - 5.2).abs() < 0.02);
        assert_eq!(at(&out, 2), Some(Vec2::new(60.0, 10.0)), "appears at once");
        assert_eq!(at(&out, 3), None, "gone");
        assert_eq!(at(&out, 4), Some(Vec2::new(30.0, 5.0)));
        // A redirect starts a new session, with no views.
        i.reset();
        i.view_at(12.0, views(&[]), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn extrapolation_is_bounded() {
        let mut i = Interpolator::new(60, 7.0);
        let mut e = standing(1, 5.0, 5.0);
        (e.anchor, e.vx) = (10, 4 * 16);
        let held = vec![(10, vec![e])];
        let mut out = Vec::new();
        i.view_at(13.0, views(&held), &mut out);
        // Tracks are exact to a position unit (1/64).
        assert!((at(&out, 1).unwrap().x - (5.0 + 4.0 * 3.0 / 60.0)).abs() < 0.02);
        i.view_at(100.0, views(&held), &mut out);
        let limit = 5.0 + 4.0 * MAX_EXTRAPOLATION_SECONDS as f32;
        assert!(
            (at(&out, 1).unwrap().x - limit).abs() < 0.02,
            "stands after the bound"
        );
        assert_eq!(i.stats().extrapolated, 2);
    }

    #[test]
    fn the_render_clock_never_runs_backwards() {
        let mut sync = TimeSync::new(60);
        let mut i = Interpolator::new(60, 7.0);
        let mut last = f64::MIN;
        let mut now = 0.0f64;
        for tick in 1..600u64 {
            // Snapshots come late by a wobbling amount, sometimes in bursts.
            let late = ((tick * 7919) % 13) as f64 / 60.0;
            sync.on_snapshot(tick, tick as f64 / 60.0 + late);
            now = now.max(tick as f64 / 60.0 + late);
            let r = i.advance(now, &sync).unwrap();
            assert!(r >= last, "render tick {r} after {last}");
            last = r;
        }
    }
}

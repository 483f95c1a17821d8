//! Responsive clients over hostile links: the own avatar predicted exactly (20% loss,
//! duplication, reordering, jitter), the rest of the world interpolated without ever moving
//! backwards and close to the true path, and lag compensation honouring what the attacker saw
//! within the bound and nothing older.

#![allow(clippy::unwrap_used)]

mod testkit;

use zone_core::client::ClientSession;
use zone_core::client::interpolation::{Interpolator, Rendered};
use zone_core::client::prediction::{Predictor, Smoothing};
use zone_core::client::timesync::TimeSync;
use zone_core::replication::{ReplicationConfig, Replicator};
use zone_core::rng::{self, Purpose};
use zone_core::{
    AbilityId, AbilityUse, EntityId, PlayerId, PlayerInput, Vec2, Zone, ZoneConfig, ZoneId,
};

use testkit::{LossyLink, join_at, room_zone};

/// Seconds of the client's clock at server tick `tick` (the clocks differ by an offset the
/// client must find).
fn client_now(tick: u64, hz: f64) -> f64 {
    1_000.0 + tick as f64 / hz
}

/// One networked client: session, clock, predictor and interpolator, with its two links.
struct Client {
    session: ClientSession,
    sync: Option<TimeSync>,
    predictor: Predictor,
    interpolator: Option<Interpolator>,
    up: LossyLink,
    down: LossyLink,
    exact: u64,
    inexact: u64,
}

impl Client {
    fn new(zone: &Zone, player: u64, seed: u64, loss: f32) -> Self {
        Self {
            session: ClientSession::new(PlayerId(player)),
            sync: None,
            predictor: Predictor::new(zone.rules().clone(), zone.map().clone(), Smoothing::Snap),
            interpolator: None,
            up: LossyLink::new(seed, loss, loss / 2.0, 3, 4),
            down: LossyLink::new(seed ^ 1, loss, loss / 2.0, 3, 4),
            exact: 0,
            inexact: 0,
        }
    }

    /// Takes the packets due at `tick`; reconciles on each newer snapshot.
    fn receive(&mut self, tick: u64, now: f64) {
        for bytes in self.down.receive(tick) {
            let before = self.session.newest_tick();
            if self.session.handle_packet(&bytes).is_err() {
                continue;
            }
            let hz = self.session.tick_hz();
            if hz == 0 {
                continue;
            }
            let sync = self.sync.get_or_insert_with(|| TimeSync::new(hz));
            while let Some(e) = self.session.poll_event() {
                if let zone_core::client::ClientEvent::Pong(n) = e {
                    sync.on_pong(n, now);
                }
            }
            let newest = self.session.newest_tick();
            if newest > before {
                sync.on_snapshot(newest, now);
                self.interpolator
                    .get_or_insert_with(|| Interpolator::new(hz, 7.0));
                if let Some(avatar) = self.session.avatar() {
                    let r = self.predictor.reconcile(newest, &avatar);
                    if r.error.is_some() {
                        if r.exact {
                            self.exact += 1;
                        } else {
                            self.inexact += 1;
                        }
                    }
                }
            }
        }
    }

    /// Predicts up to the tick the clock says inputs are due for, then sends one packet.
    fn send(&mut self, tick: u64, now: f64, dir_at: impl Fn(u64) -> (Vec2, bool)) {
        if let Some(sync) = &mut self.sync {
            if let Some(n) = sync.ping_due(now) {
                self.session.ping(n);
            }
            if let Some(due) = sync.input_tick(now)
                && self.predictor.is_started()
            {
                // From the last tick predicted, or after a stall from the earliest tick an
                // input can still make (the ticks between keep the input in effect).
                let first = sync.earliest_input_tick(now).unwrap_or(due);
                let mut made = 0;
                while self.predictor.tick() < due && made < 8 {
                    let t = (self.predictor.tick() + 1).max(first.min(due));
                    let (dir, run) = dir_at(t);
                    let mut input = PlayerInput::movement(0, t, dir, run);
                    input.seq = self.session.push_input(input);
                    self.predictor.predict(&input);
                    made += 1;
                }
            }
        }
        let mut buf = Vec::new();
        self.session.write_packet(&mut buf);
        self.up.send(tick, &buf);
    }
}

/// A walk that turns every 40 ticks, runs now and then, and so slides along the room's walls.
fn wander(seed: u64) -> impl Fn(u64) -> (Vec2, bool) {
    move |t| {
        let mut d = rng::stream(seed, 1, t / 40, Purpose::Script);
        let a = d.range(0.0, std::f32::consts::TAU);
        (Vec2::new(a.cos(), a.sin()), d.below(2) == 0)
    }
}

#[test]
fn prediction_is_exact_through_loss_duplication_reordering_and_jitter() {
    for seed in [77, 78, 79, 80] {
        exact_prediction_over_a_hostile_link(seed);
    }
}

fn exact_prediction_over_a_hostile_link(seed: u64) {
    let mut zone = room_zone();
    let me = join_at(&mut zone, 1, 8.0, 5.0);
    let mut rep = Replicator::new(ReplicationConfig::default(), zone.map().size());
    assert!(rep.connect(&zone, PlayerId(1)));
    let mut client = Client::new(&zone, 1, seed, 0.2);
    let hz = f64::from(zone.rules().tick_hz);
    let (mut late, mut travelled, mut last) = (0u64, 0.0f32, Vec2::new(8.0, 5.0));
    for _ in 0..1_500 {
        let tick = zone.current_tick();
        let now = client_now(tick, hz);
        client.send(tick, now, wander(seed));
        for bytes in client.up.receive(tick) {
            let _ = rep.handle_packet(&mut zone, PlayerId(1), &bytes);
        }
        let l = u64::from(zone.tick().metrics.inputs_late);
        if l > 0 && std::env::var("DEBUG_LATE").is_ok() {
            eprintln!("late {l} at tick {}", zone.current_tick());
        }
        late += l;
        rep.update(&zone);
        let tick = zone.current_tick();
        for (_, bytes) in rep.packets() {
            client.down.send(tick, bytes);
        }
        client.receive(tick, client_now(tick, hz));
        let pos = zone.entity(me).unwrap().position;
        travelled += pos.distance(last);
        last = pos;
    }
    let stats = client.predictor.stats();
    eprintln!(
        "seed {seed}: compared {} reconciliations: {} exact, {} not; replayed {}; \
         late inputs {late}; travelled {travelled:.1} units",
        stats.compared, client.exact, client.inexact, stats.replayed
    );
    assert!(travelled > 100.0, "the avatar walked: {travelled}");
    assert!(stats.compared > 500, "reconciled often: {}", stats.compared);
    // Every prediction matched, so nothing needed replaying.
    assert_eq!(stats.replayed, 0, "replays without a correction");
    assert_eq!(late, 0, "every input arrived before its tick");
    assert_eq!(client.inexact, 0, "every prediction was exact");
    assert_eq!(stats.error_max, 0.0);
}

#[test]
fn a_late_input_is_corrected_and_prediction_is_exact_again() {
    let mut zone = room_zone();
    join_at(&mut zone, 1, 8.0, 5.0);
    let mut p = Predictor::new(zone.rules().clone(), zone.map().clone(), Smoothing::Snap);
    let first = zone.avatar_state(PlayerId(1)).unwrap();
    p.reconcile(zone.current_tick(), &first);
    // The client predicts ten ticks of running east, stamped 1..=10; the server gets the
    // first input two ticks late.
    let mut inputs = Vec::new();
    for t in 1..=10 {
        let mut i = PlayerInput::movement(t as u32, t, Vec2::X, true);
        i.seq = t as u32;
        p.predict(&i);
        inputs.push(i);
    }
    // Ticks 1 and 2 pass without it; then all ten arrive at once.
    zone.tick();
    zone.tick();
    for i in &inputs {
        zone.handle_input(PlayerId(1), *i).unwrap();
    }
    for _ in 0..4 {
        zone.tick();
    }
    let r = p.reconcile(6, &zone.avatar_state(PlayerId(1)).unwrap());
    assert!(
        !r.exact && r.error.unwrap() > 0.0,
        "the late input shows: {r:?}"
    );
    assert_eq!(r.replayed, 4);
    // From the corrected state on, the server and the prediction agree again.
    for _ in 0..4 {
        zone.tick();
    }
    let r = p.reconcile(10, &zone.avatar_state(PlayerId(1)).unwrap());
    assert!(r.exact, "{r:?}");
}

#[test]
fn smoothing_spreads_a_small_correction_and_snaps_a_teleport() {
    let zone = room_zone();
    let rules = zone.rules().clone();
    let map = zone.map().clone();
    for (smoothing, expect_offset) in [
        (Smoothing::Snap, false),
        (
            Smoothing::Smooth {
                half_life_ticks: 4.0,
            },
            true,
        ),
    ] {
        let mut p = Predictor::new(rules.clone(), map.clone(), smoothing);
        let mut s = zone_core::protocol::AvatarState {
            seq: 0,
            pos: Vec2::new(8.0, 5.0),
            vel: Vec2::ZERO,
            alive: true,
            late: 0,
        };
        p.reconcile(10, &s);
        for t in 11..=14 {
            p.predict(&PlayerInput::movement(t as u32, t, Vec2::ZERO, false));
        }
        // The server had the avatar half a unit north at tick 12 (a knock, say).
        s.pos.y -= 0.5;
        let r = p.reconcile(12, &s);
        assert!(!r.exact && (r.error.unwrap() - 0.5).abs() < 1e-6);
        assert_eq!(
            p.body().pos,
            s.pos,
            "the prediction takes the server's state"
        );
        let drawn = p.render_position();
        assert_eq!(drawn != p.body().pos, expect_offset, "{smoothing:?}");
        for t in 15..=60 {
            p.predict(&PlayerInput::movement(t as u32, t, Vec2::ZERO, false));
        }
        assert!(p.render_position().distance(p.body().pos) < 1e-3);
        // A respawn far away is never smoothed.
        s.pos = Vec2::new(25.0, 5.0);
        p.reconcile(40, &s);
        assert_eq!(p.render_position(), p.body().pos);
    }
}

#[test]
fn interpolation_never_moves_backwards_and_follows_the_true_path() {
    let mut zone = Zone::new(ZoneConfig::arena(ZoneId(1), 120, 40, 0), 3).unwrap();
    let walker = join_at(&mut zone, 1, 30.0, 20.0);
    join_at(&mut zone, 2, 60.0, 22.0);
    let mut rep = Replicator::new(ReplicationConfig::default(), zone.map().size());
    assert!(rep.connect(&zone, PlayerId(2)));
    let mut observer = Client::new(&zone, 2, 91, 0.2);
    let hz = f64::from(zone.rules().tick_hz);
    let mut truth: Vec<Vec2> = vec![zone.entity(walker).unwrap().position];
    let (mut prev_x, mut frames, mut errors) = (f32::MIN, 0u64, Vec::new());
    let mut out: Vec<Rendered> = Vec::new();
    let mut frame_time = client_now(0, hz);
    for seq in 1..=900u32 {
        let tick = zone.current_tick();
        zone.handle_input(
            PlayerId(1),
            PlayerInput::movement(seq, tick + 1, Vec2::X, false),
        )
        .unwrap();
        observer.send(tick, client_now(tick, hz), |_| (Vec2::ZERO, false));
        for bytes in observer.up.receive(tick) {
            let _ = rep.handle_packet(&mut zone, PlayerId(2), &bytes);
        }
        zone.tick();
        rep.update(&zone);
        let tick = zone.current_tick();
        truth.push(zone.entity(walker).unwrap().position);
        for (_, bytes) in rep.packets() {
            observer.down.send(tick, bytes);
        }
        observer.receive(tick, client_now(tick, hz));
        // Frames at 144 Hz until the next tick.
        while frame_time < client_now(tick + 1, hz) {
            let (Some(sync), Some(interp)) = (&observer.sync, &mut observer.interpolator) else {
                frame_time += 1.0 / 144.0;
                continue;
            };
            let render = interp.advance(frame_time, sync).unwrap();
            interp.view_at(render, observer.session.views(), &mut out);
            frame_time += 1.0 / 144.0;
            let Some(w) = out.iter().find(|r| r.id == walker) else {
                continue;
            };
            frames += 1;
            assert!(
                w.pos.x >= prev_x - 1e-4,
                "moved backwards at render tick {render:.2}: {} after {prev_x}",
                w.pos.x
            );
            prev_x = w.pos.x;
            let (i, f) = (render.floor() as usize, (render - render.floor()) as f32);
            if let (Some(a), Some(b)) = (truth.get(i), truth.get(i + 1)) {
                errors.push(w.pos.distance(a.lerp(*b, f)));
            }
        }
    }
    errors.sort_by(f32::total_cmp);
    let p99 = errors[errors.len() * 99 / 100];
    let max = *errors.last().unwrap();
    let stats = observer.interpolator.as_ref().unwrap().stats();
    eprintln!(
        "{frames} frames; error against the true path p99 {p99:.3} max {max:.3} units; \
         delay {:.2} ticks on average; {} frames extrapolated",
        stats.delay_sum / stats.frames as f64,
        stats.extrapolated
    );
    assert!(frames > 1_500, "the walker was drawn: {frames}");
    assert!(prev_x > 60.0, "and walked east: {prev_x}");
    assert!(p99 < 0.1, "p99 error {p99}");
    assert!(max < 0.5, "max error {max}");
}

/// A zone where player 2 runs east from player 1, who stands; returns the zone and both ids.
fn chase() -> (Zone, EntityId, EntityId) {
    let mut config = ZoneConfig::arena(ZoneId(1), 80, 30, 0);
    config.rules.pvp = true;
    let mut zone = Zone::new(config, 9).unwrap();
    let attacker = join_at(&mut zone, 1, 20.0, 20.5);
    let target = join_at(&mut zone, 2, 20.5, 20.5);
    (zone, attacker, target)
}

/// Runs the target east for `ticks`, returning its distance from the attacker at the end of
/// each tick (index = tick).
fn run_away(zone: &mut Zone, attacker: EntityId, target: EntityId, ticks: u64) -> Vec<f32> {
    let mut dist = vec![0.5f32];
    for seq in 1..=ticks {
        let t = zone.current_tick() + 1;
        zone.handle_input(
            PlayerId(2),
            PlayerInput::movement(seq as u32, t, Vec2::X, true),
        )
        .unwrap();
        zone.tick();
        let (a, b) = (
            zone.entity(attacker).unwrap().position,
            zone.entity(target).unwrap().position,
        );
        dist.push(a.distance(b));
    }
    dist
}

fn strike(zone: &mut Zone, view_tick: u64) -> bool {
    let t = zone.current_tick() + 1;
    let mut i = PlayerInput::movement(1, t, Vec2::ZERO, false);
    i.ability = Some(AbilityUse {
        ability: AbilityId(0),
        target: EntityId(2),
        view_tick,
    });
    zone.handle_input(PlayerId(1), i).unwrap();
    let out = zone.tick();
    out.metrics.attacks_hit == 1
}

#[test]
fn lag_compensation_honours_the_view_within_the_bound_and_nothing_older() {
    let range = zone_core::Rules::default().abilities[0].range;
    let bound = u64::from(zone_core::Rules::default().lag_compensation_ticks);
    // Find when the target leaves melee range.
    let (mut zone, a, t) = chase();
    assert_eq!(zone.player_entity(PlayerId(2)), Some(t));
    let dist = run_away(&mut zone, a, t, 60);
    let left = dist.iter().position(|d| *d > range + 0.05).unwrap() as u64;
    let inside = left - 2; // in range at the end of this tick
    assert!(dist[inside as usize] <= range);

    // A strike resolved `bound` ticks after `inside`, aimed at the view of `inside`: a hit,
    // though the target is out of range by then; without the view, a miss.
    let now = inside + bound;
    for (view, hits) in [(inside, true), (0, false)] {
        let (mut zone, a, t) = chase();
        run_away(&mut zone, a, t, now - 1);
        assert!(dist[now as usize] > range, "out of range now");
        assert_eq!(strike(&mut zone, view), hits, "view {view}");
        assert_eq!(zone.last_output().metrics.lag_rewinds, u32::from(view != 0));
    }

    // A view older than the bound is clamped to it: claiming the start of the chase, when the
    // target stood beside the attacker, gains nothing once the bound's tick is out of range.
    let late = left + bound + 2;
    let (mut zone, a, t) = chase();
    run_away(&mut zone, a, t, late - 1);
    assert!(dist[(late - bound) as usize] > range);
    assert!(!strike(&mut zone, 1), "an old claim is clamped");
}

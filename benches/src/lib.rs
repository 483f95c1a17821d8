//! Scenarios shared by the criterion benches (`benches/`) and the figures report: each builds a
//! real zone with scripted players and measures what users feel (tick time, bytes per client,
//! encode cost), never a synthetic stand-in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bincode::Encode;
use zone_core::client::ClientSession;
use zone_core::protocol::NetEntity;
use zone_core::replication::{ReplicationConfig, Replicator};
use zone_core::scenario::Script;
use zone_core::{EntityKind, Zone, ZoneConfig, ZoneId};

pub use zone_shell::rig as host_rig;

/// Arena side length that keeps entity density constant across scenarios (~24 tiles each).
pub fn arena_side(entities: u32) -> u32 {
    ((entities as f32 * 24.0).sqrt() as u32).max(128)
}

/// Which gameplay the scenario runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// The standard scenario: calm NPCs that idle long and aggro close, so that about
    /// 30% of entities move in a tick.
    Standard,
    /// Default rules: NPC camps aggro every passing player; most entities move and fight.
    Combat,
}

/// A zone of `players` scripted players and `npcs` NPCs, warmed up for `warm` ticks.
pub fn busy_zone(players: u32, npcs: u32, warm: u32) -> (Zone, Script) {
    scenario_zone(Scenario::Combat, players, npcs, warm)
}

/// The zone configuration of a scenario: an arena sized for `players + npcs` at constant
/// density, with `npcs` NPCs.
pub fn scenario_config(kind: Scenario, players: u32, npcs: u32) -> ZoneConfig {
    let side = arena_side(players + npcs);
    let mut config = ZoneConfig::arena(ZoneId(1), side, side, npcs);
    if kind == Scenario::Standard {
        config.rules.npc.aggro_radius = 4.0;
        config.rules.npc.idle_min_ticks = 900;
        config.rules.npc.idle_max_ticks = 3_600;
    }
    config
}

/// A zone of the given scenario, warmed up for `warm` ticks.
pub fn scenario_zone(kind: Scenario, players: u32, npcs: u32, warm: u32) -> (Zone, Script) {
    let config = scenario_config(kind, players, npcs);
    let mut zone = Zone::new(config, 42).expect("valid config");
    let mut script = Script::new(7, 1, players);
    script.join_all(&mut zone);
    for _ in 0..warm {
        script.drive(&mut zone);
        zone.tick();
    }
    (zone, script)
}

/// The unquantized state of one entity as a naive server would send it, whole, every tick.
#[derive(Encode)]
struct NaiveEntity {
    id: u32,
    player: bool,
    x: f32,
    y: f32,
    vx: f32,
    vy: f32,
    facing: f32,
    health: u16,
    max_health: u16,
    alive: bool,
}

/// Figures of one replication run.
#[derive(Clone, Debug, Default)]
pub struct ReplicationFigures {
    /// Clients replicated to.
    pub clients: usize,
    /// Ticks measured.
    pub ticks: u64,
    /// Tick rate the bytes per second assume.
    pub tick_hz: u32,
    /// Mean entities in a client's view.
    pub visible_per_client: f64,
    /// Fraction of all entities that moved per tick.
    pub moving_fraction: f64,
    /// Our payload bytes per client per second.
    pub bytes_per_client_per_s: f64,
    /// Naive full snapshots (bincode of unquantized state of the same visible set), per client per second.
    pub naive_bytes_per_client_per_s: f64,
    /// Replicator time per visible entity per client (ns).
    pub ns_per_visible_entity: f64,
    /// Baseline measured in the same run: naive full-snapshot bincode encode time per visible
    /// entity per client (ns).
    pub naive_ns_per_visible_entity: f64,
    /// Replicator time per tick for all clients (median, ms).
    pub update_ms_p50: f64,
    /// Replicator time per tick for all clients (99th percentile, ms).
    pub update_ms_p99: f64,
    /// Largest packet, bytes.
    pub max_packet: usize,
    /// Changes deferred by the packet budget per client per tick.
    pub deferred_per_client_tick: f64,
    /// Mean records per packet: removals, updates, of which with velocity, with status, spawns,
    /// reliable messages.
    pub mix: [f64; 6],
}

impl ReplicationFigures {
    /// Bandwidth saved against naive full snapshots, percent.
    pub fn reduction_pct(&self) -> f64 {
        100.0 * (1.0 - self.bytes_per_client_per_s / self.naive_bytes_per_client_per_s.max(1.0))
    }
}

/// Runs the replication scenario: every player is a client with `rtt_ticks` of round trip,
/// acking what it receives. Measures `ticks` ticks after `warm` warm-up ticks.
pub fn replication_run(
    kind: Scenario,
    players: u32,
    npcs: u32,
    rtt_ticks: usize,
    warm: u32,
    ticks: u32,
) -> ReplicationFigures {
    replication_run_at(kind, players, npcs, rtt_ticks, (warm, ticks), 1)
}

/// [`replication_run`] with a snapshot every `interval` ticks per client.
pub fn replication_run_at(
    kind: Scenario,
    players: u32,
    npcs: u32,
    rtt_ticks: usize,
    (warm, ticks): (u32, u32),
    interval: u32,
) -> ReplicationFigures {
    let (mut zone, mut script) = scenario_zone(kind, players, npcs, 0);
    let mut rep = Replicator::new(
        ReplicationConfig {
            snapshot_interval: interval,
            ..ReplicationConfig::default()
        },
        zone.map().size(),
    );
    let mut clients: Vec<ClientSession> = script
        .players()
        .iter()
        .filter(|p| rep.connect(&zone, p.player))
        .map(|p| ClientSession::new(p.player))
        .collect();
    clients.sort_by_key(|c| c.player());
    let half = rtt_ticks / 2;
    let mut up: VecDeque<Vec<Vec<u8>>> = VecDeque::new();
    let mut down: VecDeque<Vec<(zone_core::PlayerId, Vec<u8>)>> = VecDeque::new();
    let mut figures = ReplicationFigures {
        clients: clients.len(),
        tick_hz: zone.rules().tick_hz,
        ..Default::default()
    };
    let (mut bytes, mut naive, mut visible, mut moved, mut deferred) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut times = Vec::new();
    let mut naive_time = Duration::ZERO;
    let mut naive_buf = Vec::new();
    let mut naive_list = Vec::new();
    let cfg = bincode::config::standard();
    for t in 0..warm + ticks {
        // Client -> server (delayed by half the round trip).
        up.push_back(
            clients
                .iter_mut()
                .map(|c| {
                    let mut b = Vec::new();
                    c.write_packet(&mut b);
                    b
                })
                .collect(),
        );
        if up.len() > half
            && let Some(batch) = up.pop_front()
        {
            for (c, b) in clients.iter().zip(&batch) {
                let _ = rep.handle_packet(&mut zone, c.player(), b);
            }
        }
        script.drive(&mut zone);
        let m = zone.tick().metrics;
        let d0 = rep.metrics().deferred;
        let started = Instant::now();
        rep.update(&zone);
        let took = started.elapsed();
        let measuring = t >= warm;
        if measuring {
            times.push(took);
            moved += u64::from(m.moved);
            deferred += rep.metrics().deferred - d0;
            for (player, packet) in rep.packets() {
                bytes += packet.len() as u64;
                if let Ok(p) = zone_core::protocol::ServerPacket::decode(packet) {
                    let vel = p.updates.iter().filter(|u| u.vel.is_some()).count();
                    let status = p.updates.iter().filter(|u| u.status.is_some()).count();
                    for (slot, n) in figures.mix.iter_mut().zip([
                        p.removed.len(),
                        p.updates.len(),
                        vel,
                        status,
                        p.spawns.len(),
                        p.reliable.len(),
                    ]) {
                        *slot += n as f64;
                    }
                }
                figures.max_packet = figures.max_packet.max(packet.len());
                let seen = rep.visible(player).unwrap_or(&[]);
                visible += seen.len() as u64;
                naive_list.clear();
                naive_list.extend(seen.iter().filter_map(|id| zone.entity(*id)).map(|v| {
                    NaiveEntity {
                        id: v.id.0,
                        player: matches!(v.kind, EntityKind::Player(_)),
                        x: v.position.x,
                        y: v.position.y,
                        vx: v.velocity.x,
                        vy: v.velocity.y,
                        facing: v.facing,
                        health: v.health,
                        max_health: v.max_health,
                        alive: v.alive,
                    }
                }));
                naive_buf.clear();
                let encode_started = Instant::now();
                let _ = bincode::encode_into_std_write(&naive_list, &mut naive_buf, cfg);
                naive_time += encode_started.elapsed();
                naive += naive_buf.len() as u64;
            }
        }
        down.push_back(rep.packets().map(|(p, b)| (p, b.to_vec())).collect());
        if down.len() > half
            && let Some(batch) = down.pop_front()
        {
            for (p, b) in &batch {
                if let Ok(i) = clients.binary_search_by_key(p, |c| c.player()) {
                    let _ = clients[i].handle_packet(b);
                }
            }
        }
    }
    let per_client_tick = (figures.clients as f64 * f64::from(ticks)).max(1.0);
    let hz = f64::from(figures.tick_hz);
    figures.ticks = u64::from(ticks);
    figures.visible_per_client = visible as f64 / per_client_tick;
    figures.moving_fraction = moved as f64 / (f64::from(ticks) * zone.entity_count() as f64);
    figures.bytes_per_client_per_s = bytes as f64 / per_client_tick * hz;
    figures.naive_bytes_per_client_per_s = naive as f64 / per_client_tick * hz;
    figures.deferred_per_client_tick = deferred as f64 / per_client_tick;
    figures.mix.iter_mut().for_each(|m| *m /= per_client_tick);
    let total: Duration = times.iter().sum();
    figures.ns_per_visible_entity = total.as_nanos() as f64 / visible.max(1) as f64;
    figures.naive_ns_per_visible_entity = naive_time.as_nanos() as f64 / visible.max(1) as f64;
    times.sort_unstable();
    let pick = |q: f64| {
        times
            .get(((times.len() as f64 - 1.0) * q) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    figures.update_ms_p50 = pick(0.5);
    figures.update_ms_p99 = pick(0.99);
    figures
}

/// One entity list as the client holds it; re-exported for benches.
pub type View = Vec<NetEntity>;

/// Tick times (seconds) of `ticks` ticks of a warm zone, sorted.
pub fn tick_times(kind: Scenario, players: u32, npcs: u32, warm: u32, ticks: u32) -> Vec<f64> {
    let (mut zone, mut script) = scenario_zone(kind, players, npcs, warm);
    let mut times = Vec::with_capacity(ticks as usize);
    for _ in 0..ticks {
        script.drive(&mut zone);
        let started = Instant::now();
        zone.tick();
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_unstable_by(f64::total_cmp);
    times
}

/// The `q` quantile of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0).max(0.0) * q).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// The host-tick rig over real sockets: `clients` clients of the standard scenario with 5,000
/// NPCs, 6 ticks of round trip, `threads` lane threads, a snapshot every `interval` ticks.
pub fn standard_rig(
    clients: u32,
    threads: usize,
    interval: u32,
) -> anyhow::Result<zone_shell::rig::HostRig> {
    zone_shell::rig::HostRig::new(zone_shell::rig::RigConfig {
        zone: scenario_config(Scenario::Standard, clients, 5_000),
        clients,
        rtt_ticks: 6,
        sockets: true,
        threads,
        snapshot_interval: interval,
    })
}

/// One host-tick measurement: the rig ([`zone_shell::rig`]) serving `clients` clients of the
/// standard scenario (with 5,000 NPCs), the host tick timed with its sends.
#[derive(Clone, Debug, Default)]
pub struct HostTickFigures {
    /// Clients served (all connected).
    pub clients: u32,
    /// Lane threads.
    pub threads: usize,
    /// Ticks between a client's snapshots.
    pub interval: u32,
    /// Host tick (simulation, replication, sealing, handing datagrams to the kernel), ms.
    pub p50_ms: f64,
    /// The same, 99th percentile.
    pub p99_ms: f64,
    /// Heap allocations per measured tick (with a counting allocator's `mark`, else 0).
    pub allocations_per_tick: f64,
    /// Datagrams handed to the kernel in the measured ticks.
    pub datagrams: u64,
    /// Of those, sent awaiting the socket (the kernel did not take them at once).
    pub awaited: u64,
    /// Entities in view and bytes per packet.
    pub visible_per_packet: f64,
    /// Payload bytes per packet.
    pub bytes_per_packet: f64,
}

/// Brackets a measured tick (`true` before, `false` after) and reads an allocation counter.
pub type AllocationProbe = (fn(bool), fn() -> u64);

/// Runs the host-tick rig on a thread of its own (a thread joins one lane pool for life):
/// `warm` ticks, then `ticks` measured. `mark(true)`/`mark(false)` bracket each measured
/// tick's timed part and `count` reads an allocation counter (pass no-ops to skip).
pub fn host_tick_run(
    clients: u32,
    threads: usize,
    interval: u32,
    (warm, ticks): (u32, u32),
    probe: AllocationProbe,
) -> anyhow::Result<HostTickFigures> {
    host_tick_windows(clients, threads, interval, &[(warm, ticks)], probe)?
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no window measured"))
}

/// [`host_tick_run`] over several windows of one run: for each `(skip, ticks)`, `skip` ticks
/// unmeasured, then `ticks` measured (the standard scenario's views keep growing for about
/// 1,000 ticks as players gather, so a later window sees a settled world).
pub fn host_tick_windows(
    clients: u32,
    threads: usize,
    interval: u32,
    windows: &[(u32, u32)],
    (mark, count): AllocationProbe,
) -> anyhow::Result<Vec<HostTickFigures>> {
    let windows = windows.to_vec();
    std::thread::spawn(move || -> anyhow::Result<Vec<HostTickFigures>> {
        let mut rig = standard_rig(clients, threads, interval)?;
        let mut figures = Vec::with_capacity(windows.len());
        for (skip, ticks) in windows {
            for _ in 0..skip {
                rig.step();
            }
            let (sent, waited) = (rig.sent.0, rig.waited);
            let before = *rig.host.replication_metrics();
            let allocations = count();
            let mut mark = |on| mark(on);
            let mut times: Vec<f64> = (0..ticks)
                .map(|_| rig.step_marked(&mut mark).as_secs_f64())
                .collect();
            let allocations = count() - allocations;
            times.sort_unstable_by(f64::total_cmp);
            let m = rig.host.replication_metrics();
            let packets = (m.packets - before.packets).max(1) as f64;
            figures.push(HostTickFigures {
                clients,
                threads,
                interval,
                p50_ms: quantile(&times, 0.5) * 1e3,
                p99_ms: quantile(&times, 0.99) * 1e3,
                allocations_per_tick: allocations as f64 / f64::from(ticks.max(1)),
                datagrams: rig.sent.0 - sent,
                awaited: rig.waited - waited,
                visible_per_packet: (m.visible - before.visible) as f64 / packets,
                bytes_per_packet: (m.bytes - before.bytes) as f64 / packets,
            });
        }
        Ok(figures)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the host-tick rig's thread panicked"))?
}

/// What a world-page viewer costs the tick loop ([`viewer_tick_cost`]).
#[derive(Clone, Debug, Default)]
pub struct ViewerFigures {
    /// The loop's work per tick (host tick with its sends, then the view's sampler), with
    /// nobody looking: p50, p99, ms.
    pub without_ms: (f64, f64),
    /// The same with a viewer attached, in the same run.
    pub with_ms: (f64, f64),
    /// The noise between blocks: p99 of the first and of the second half of the blocks with
    /// nobody looking, ms.
    pub without_halves_p99: (f64, f64),
    /// Samples the loop copied while the viewer looked.
    pub samples: u64,
    /// Frames the viewer wrote (as the map stream does).
    pub frames: u64,
    /// A sample's copy, microseconds: median.
    pub sample_us: f64,
    /// Entities per frame.
    pub entities: usize,
}

/// The host-tick rig with `clients` clients of the standard scenario (5,000 NPCs), as the tick
/// loop runs it with the world page's sampler ([`zone_shell::view`]): after `warm` ticks,
/// `blocks` pairs of `block` ticks alternate between nobody looking and a viewer attached
/// (a thread that copies the newest sample and writes it as a map frame every 200 ms, as the
/// admin endpoint's stream does). Each tick's time is the host tick with its sends plus the
/// sampler's work after it.
pub fn viewer_tick_cost(
    clients: u32,
    threads: usize,
    warm: u32,
    (blocks, block): (u32, u32),
) -> anyhow::Result<ViewerFigures> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use zone_shell::view::{Sampler, ZoneView};
    std::thread::spawn(move || -> anyhow::Result<ViewerFigures> {
        let mut rig = standard_rig(clients, threads, 1)?;
        for _ in 0..warm {
            rig.step();
        }
        let view = Arc::new(ZoneView::default());
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(AtomicU64::new(0));
        let viewer = {
            let (view, stop, frames) = (view.clone(), stop.clone(), frames.clone());
            std::thread::spawn(move || {
                let (mut dots, mut ghosts, mut frame) = (Vec::new(), Vec::new(), String::new());
                let mut seen = 0;
                while !stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(200));
                    if view.viewers() == 0 || view.version() == seen {
                        continue;
                    }
                    seen = view.version();
                    let tick = {
                        let s = view.latest();
                        dots.clear();
                        dots.extend_from_slice(&s.dots);
                        ghosts.clear();
                        ghosts.extend_from_slice(&s.ghosts);
                        s.tick
                    };
                    frame.clear();
                    zone_shell::admin::page::write_zone(
                        &mut frame,
                        ZoneId(1),
                        tick,
                        &dots,
                        &ghosts,
                    );
                    frames.fetch_add(1, Ordering::AcqRel);
                }
            })
        };
        let mut sampler = Sampler::new(60);
        let (mut without, mut with, mut copies) = (Vec::new(), Vec::new(), Vec::new());
        let mut samples = 0;
        let mut halves: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for b in 0..blocks {
            for looking in [false, true] {
                if looking {
                    view.attach();
                }
                for _ in 0..block {
                    let took = rig.step();
                    sampler.record(took);
                    let started = Instant::now();
                    let copied = sampler.after_tick(&rig.host, &view);
                    let sampling = started.elapsed();
                    if copied {
                        samples += 1;
                        copies.push(sampling.as_secs_f64() * 1e6);
                    }
                    let t = (took + sampling).as_secs_f64() * 1e3;
                    if looking {
                        with.push(t);
                    } else {
                        without.push(t);
                        halves[usize::from(b >= blocks / 2)].push(t);
                    }
                }
                if looking {
                    view.detach();
                }
            }
        }
        stop.store(true, Ordering::Release);
        let _ = viewer.join();
        let entities = view.latest().dots.len();
        let [mut first, mut second] = halves;
        for v in [
            &mut without,
            &mut with,
            &mut copies,
            &mut first,
            &mut second,
        ] {
            v.sort_unstable_by(f64::total_cmp);
        }
        Ok(ViewerFigures {
            without_ms: (quantile(&without, 0.5), quantile(&without, 0.99)),
            with_ms: (quantile(&with, 0.5), quantile(&with, 0.99)),
            without_halves_p99: (quantile(&first, 0.99), quantile(&second, 0.99)),
            samples,
            frames: frames.load(Ordering::Acquire),
            sample_us: quantile(&copies, 0.5),
            entities,
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the viewer rig's thread panicked"))?
}

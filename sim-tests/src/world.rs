//! One seeded run of a whole small network: the real zone-server shell (`ZoneHost`, the tick
//! loop, the spool on a simulated disk, the flusher, the effect link, the lease keeper) on
//! the "zone" host; bots built on `core::client` on their own hosts; a "redis" and a "scylla"
//! host. Faults are injected on a timeline; invariants are checked at the end and returned as
//! violations (empty = pass).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zone_core::game::Game;
use zone_core::netcode::Key;
use zone_core::protocol::NetEntity;
use zone_core::world::WorldGrid;
use zone_core::{PlayerId, Zone, ZoneConfig, ZoneId};
use zone_shell::bots::{BotConfig, play_on};
use zone_shell::effects::lease::{claim_lease, keep_lease};
use zone_shell::effects::{EffectLink, LinkConfig, Stores};
use zone_shell::host::{HostConfig, ZoneHost};
use zone_shell::metrics::Metrics;
use zone_shell::persist::flusher::{Flusher, FlusherConfig};
use zone_shell::persist::spool::{Spool, SpoolConfig, SpoolStats, WriterMode, scan};
use zone_shell::persist::{HotStore, Record};
use zone_shell::server::{LoopConfig, Status, run_loop};
use zone_shell::socket::DatagramSocket;
use zone_shell::tokens::{TokenRequest, mint};

use crate::disk::SimFs;
use crate::harness::{
    ConnectionEnd, OUTAGE_FOR, OUTAGE_FROM, check_durable_combat, no_disconnects_during,
    simulation, step,
};
use crate::stores::{ColdData, SimCold, SimHot, redis_host_with, scylla_host};

const ZONE: ZoneId = ZoneId(1);
/// Side of the zone's generated arena, tiles.
const ZONE_TILES: u32 = 64;
const PORT: u16 = 40_000;
const PROTOCOL: u64 = 0x5A4F_4E45_0000_0001;
const TICK_HZ: u32 = 60;

/// The scenarios of the issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Nothing goes wrong.
    Steady,
    /// The zone server cannot reach scylla for 30 s.
    ScyllaPartition,
    /// Scylla crashes and comes back (data kept).
    ScyllaCrash,
    /// Redis crashes and comes back empty.
    RedisCrash,
    /// Client links: 20% loss, 50-200 ms latency, duplication.
    LossyClients,
    /// The zone server crashes mid-combat and restarts from its spool.
    ZoneCrash,
    /// The spool's disk fails 3% of writes throughout and is full from 12 s to 30 s.
    DiskFaults,
    /// All of the above.
    Everything,
    /// Redis unreachable from the zone for 60 s, its data kept: the zone ticks through it on
    /// the production lease; no bot is disconnected, the lease is not lost.
    RedisOutage,
    /// The same with Redis crashed for 60 s and restarted empty.
    RedisOutageWiped,
    /// The zone's lease key alone is lost (a failover to a replica that missed it): the
    /// holder claims it back, nobody is disconnected.
    LeaseKeyLost,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 11] = [
        Scenario::Steady,
        Scenario::ScyllaPartition,
        Scenario::ScyllaCrash,
        Scenario::RedisCrash,
        Scenario::LossyClients,
        Scenario::ZoneCrash,
        Scenario::DiskFaults,
        Scenario::Everything,
        Scenario::RedisOutage,
        Scenario::RedisOutageWiped,
        Scenario::LeaseKeyLost,
    ];

    /// The name used by `SIM_SCENARIO` and the test names.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::ScyllaPartition => "scylla_partition",
            Scenario::ScyllaCrash => "scylla_crash",
            Scenario::RedisCrash => "redis_crash",
            Scenario::LossyClients => "lossy_clients",
            Scenario::ZoneCrash => "zone_crash",
            Scenario::DiskFaults => "disk_faults",
            Scenario::Everything => "everything",
            Scenario::RedisOutage => "redis_outage",
            Scenario::RedisOutageWiped => "redis_outage_wiped",
            Scenario::LeaseKeyLost => "lease_key_lost",
        }
    }

    /// Whether this scenario's faults are part of `self` (`Everything` has the first seven).
    fn has(self, other: Scenario) -> bool {
        self == other || (self == Scenario::Everything && !other.hot_store_fault())
    }

    /// The scenarios that take the hot store (or its lease key) away under a live zone: no
    /// client may be disconnected by them (and, as everywhere, no tick stall, no lease lost).
    fn hot_store_fault(self) -> bool {
        matches!(
            self,
            Scenario::RedisOutage | Scenario::RedisOutageWiped | Scenario::LeaseKeyLost
        )
    }
}

impl Scenario {
    /// Simulated seconds of play: an outage scenario outlasts its outage.
    fn seconds(self, rc: &RunConfig) -> u64 {
        if self.hot_store_fault() {
            rc.seconds.max((OUTAGE_FROM + OUTAGE_FOR).as_secs() + 15)
        } else {
            rc.seconds
        }
    }
}

/// Knobs of a run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Bots.
    pub bots: u32,
    /// Simulated seconds of play.
    pub seconds: u64,
    /// A planted bug: the cold-store adapter silently drops every tenth combat record of a
    /// batch while reporting success. The invariants must catch it.
    pub lose_writes: bool,
    /// The game the zone runs (a team's plugins under the same faults); the bots declare it
    /// and, where it has capture points, capture them.
    pub game: Game,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            bots: 20,
            seconds: 60,
            lose_writes: false,
            game: Game::default(),
        }
    }
}

/// What one run found.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Invariant violations (empty = pass).
    pub violations: Vec<String>,
    /// Combat events checked against the cold store.
    pub events_checked: usize,
    /// Player saves checked.
    pub saves_checked: usize,
    /// Of those, saves that carry game-plugin state (checked with the rest of the state).
    pub plugin_saves_checked: usize,
    /// Client views compared with the server's state.
    pub views_checked: usize,
    /// Client predictions reconciled with the server's avatar.
    pub predictions_checked: u64,
    /// Faults injected.
    pub faults: usize,
    /// Simulated seconds run.
    pub simulated_s: f64,
    /// Combat events in the cold store, ignoring wall-clock fields (for determinism checks).
    pub event_log: Vec<(u64, u128, u16, bool)>,
    /// The zone's state hash when the last incarnation shut down.
    pub final_hash: u64,
    /// Game-plugin actions the last incarnation of the zone accepted (from the bots, over
    /// the wire).
    pub plugin_actions_accepted: u64,
    /// Largest gap between two tick starts seen, microseconds.
    pub max_tick_gap_us: u64,
}

/// What the hot store said was present, beside who the zone held.
type PresenceProbe = (Option<Vec<PlayerId>>, Vec<PlayerId>);

/// State shared between the test and every host incarnation.
#[derive(Debug, Default)]
struct World {
    game: Game,
    disk: Arc<SimFs>,
    cold: Arc<Mutex<ColdData>>,
    stop: AtomicBool,
    zone_done: AtomicBool,
    runs: AtomicU64,
    max_gap_us: AtomicU64,
    final_hash: AtomicU64,
    plugin_actions_accepted: AtomicU64,
    presence_after: Mutex<Option<PresenceProbe>>,
    lose_writes: bool,
    /// The server's quantized entities of recent ticks, by (run, tick).
    truth: Mutex<BTreeMap<(u64, u64), BTreeMap<zone_core::EntityId, NetEntity>>>,
    /// Current zone run.
    current_run: AtomicU64,
    /// The last lease fence the zone server held (what `data_dir/leases` keeps for a server
    /// restarted on the same volume: it knows it was the zone's last holder).
    last_fence: AtomicU64,
    /// Bots that finished.
    bots_done: AtomicU64,
    /// Players in the zone after the latest tick.
    players_now: Mutex<Vec<PlayerId>>,
    /// Whether the zone was seen not ready (`/readyz` 503) at some point.
    not_ready_seen: AtomicBool,
    /// Combat records the spool refused.
    combat_refused: AtomicU64,
    /// Records the spool could not make durable at shutdown.
    lost_at_close: AtomicU64,
    /// Bots' last views of themselves: (player, run at the time, tick, state).
    views: Mutex<Vec<(u64, u64, u64, NetEntity)>>,
    /// Every bot connection's prediction figures: (player, figures).
    predictions: Mutex<Vec<(u64, zone_shell::bots::ClientFigures)>>,
    /// Zone leases lost (the lease keeper gave one up).
    leases_lost: AtomicU64,
    /// When and how each bot connection ended.
    ends: Mutex<Vec<ConnectionEnd>>,
    /// The simulated Redis's current store (to lose a key from it).
    redis: Arc<Mutex<Option<Arc<zone_shell::persist::embedded_hot::MemoryHotStore>>>>,
}

/// A turmoil UDP socket behind the shell's socket seam.
pub(crate) struct SimUdp(pub(crate) turmoil::net::UdpSocket);

impl DatagramSocket for SimUdp {
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = std::io::Result<(usize, SocketAddr)>> + Send {
        self.0.recv_from(buf)
    }

    fn send_to(
        &self,
        buf: &[u8],
        to: SocketAddr,
    ) -> impl Future<Output = std::io::Result<usize>> + Send {
        self.0.send_to(buf, to)
    }

    fn try_recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        self.0.try_recv_from(buf)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// A bot's socket that sends every fourth datagram twice (duplication fault).
pub(crate) struct DupUdp {
    pub(crate) inner: SimUdp,
    pub(crate) dup: bool,
    pub(crate) n: AtomicU64,
}

impl DatagramSocket for DupUdp {
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = std::io::Result<(usize, SocketAddr)>> + Send {
        self.inner.recv_from(buf)
    }

    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> std::io::Result<usize> {
        if self.dup && self.n.fetch_add(1, Ordering::Relaxed).is_multiple_of(4) {
            let _ = self.inner.send_to(buf, to).await;
        }
        self.inner.send_to(buf, to).await
    }

    fn try_recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        self.inner.try_recv_from(buf)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

pub(crate) fn key() -> Key {
    Key::from_bytes([7; 32])
}

pub(crate) fn seeded8(seed: u64, salt: u64) -> [u8; 8] {
    let mut r = zone_core::rng::stream(seed, salt, 0, zone_core::rng::Purpose::Script);
    let mut out = [0u8; 8];
    for b in &mut out {
        *b = r.below(256) as u8;
    }
    out
}

/// One incarnation of the zone server: the real shell pieces wired as `app::start_with` wires
/// them, on simulated sockets, disk and stores.
async fn zone_server(world: Arc<World>, seed: u64) -> turmoil::Result {
    let run = world.runs.fetch_add(1, Ordering::SeqCst) + 1;
    world.current_run.store(run, Ordering::SeqCst);
    let metrics = Arc::new(Metrics::new());
    let status = Arc::new(Status::default());
    let stores = Stores {
        hot: Arc::new(SimHot {
            timeout: Duration::from_millis(300),
            ..SimHot::default()
        }),
        cold: Arc::new(SimCold {
            timeout: Duration::from_millis(500),
            lose_writes: world.lose_writes,
        }),
    };
    // The production lease, under the server's lasting identity (a restarted server is the
    // same owner, as `data_dir/server-id` makes it).
    let lease_ttl = Duration::from_millis(zone_shell::config::Config::default().store.lease_ttl_ms);
    let lease = claim_lease(
        &stores,
        ZONE,
        "zone",
        lease_ttl,
        Duration::from_secs(30),
        world.last_fence.load(Ordering::SeqCst),
    )
    .await?;
    world.last_fence.store(lease.fence, Ordering::SeqCst);
    let stats = Arc::new(SpoolStats::default());
    let (spool, _recovery) = Spool::open_on(
        world.disk.clone(),
        WriterMode::Manual,
        SpoolConfig {
            dir: PathBuf::from("/spool"),
            group_commit: Duration::from_millis(5),
            max_bytes: 1 << 30,
            max_buffer_bytes: zone_shell::persist::spool::DEFAULT_MAX_BUFFER_BYTES,
        },
        stats,
    )?;
    let zone = Zone::with_game(
        ZoneConfig::arena(ZONE, ZONE_TILES, ZONE_TILES, 120),
        seed,
        &world.game,
    )?;
    let ip = turmoil::lookup("zone");
    let mut host = ZoneHost::new(
        zone,
        &HostConfig {
            protocol_id: PROTOCOL,
            public_addresses: vec![SocketAddr::new(ip, PORT)],
            max_clients: 256,
            max_packets_per_client_tick: 8,
            run,
            fence: lease.fence,
            global_sequence_random: seeded8(seed, run),
            world: None,
            snapshot_interval: 1,
        },
        key(),
        Key::from_bytes([run as u8; 32]),
    )?;
    {
        let world = world.clone();
        host.set_observer(Box::new(move |host: &ZoneHost| {
            let zone = host.zone();
            let tick = zone.current_tick();
            let players: BTreeMap<_, _> = zone
                .entities()
                .filter(|v| matches!(v.kind, zone_core::EntityKind::Player(_)))
                .filter_map(|v| host.replicated(v.id).map(|r| (v.id, *r)))
                .collect();
            if let Ok(mut now) = world.players_now.lock() {
                *now = zone
                    .entities()
                    .filter_map(|v| match v.kind {
                        zone_core::EntityKind::Player(p) => Some(p),
                        _ => None,
                    })
                    .collect();
                now.sort();
            }
            if let Ok(mut t) = world.truth.lock() {
                t.insert((run, tick), players);
                while t.len() > 900 {
                    t.pop_first();
                }
            }
        }));
    }
    let flusher = Flusher::new(
        spool.clone(),
        stores.cold.clone(),
        FlusherConfig {
            jitter_seed: Some(seed ^ run),
            dead_letter_path: std::env::temp_dir().join(format!("sim-dead-{seed}.log")),
            ..FlusherConfig::new(std::path::Path::new("/"), 256, Duration::from_millis(500))
        },
        metrics.clone(),
    );
    let flusher_stop_tx = CancellationToken::new();
    let flusher_stop = flusher_stop_tx.clone();
    let flusher_task = tokio::spawn(flusher.run(flusher_stop, Duration::from_secs(20)));
    let shutdown = CancellationToken::new();
    let shutdown_tx = shutdown.clone();
    let lost = CancellationToken::new();
    let lost_tx = lost.clone();
    let lease_stop_tx = CancellationToken::new();
    let lease_stop = lease_stop_tx.clone();
    let (fence_tx, fence_rx) = watch::channel(lease.fence);
    tokio::spawn(keep_lease(
        stores.clone(),
        lease,
        fence_tx,
        lease_ttl,
        None,
        metrics.clone(),
        lost_tx,
        lease_stop,
    ));
    {
        // Group commit (the writer thread's job in production), readiness watch and the
        // end-of-run signal.
        let (spool, world, stop) = (spool.clone(), world.clone(), shutdown_tx.clone());
        let (status, metrics) = (status.clone(), metrics.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                spool.commit_now();
                if !status.ready.load(Ordering::Acquire) && !world.stop.load(Ordering::SeqCst) {
                    world.not_ready_seen.store(true, Ordering::SeqCst);
                }
                // Kept as it happens: a crashed incarnation's metrics die with it.
                let refused = metrics
                    .spool_refused
                    .get_or_create(&zone_shell::metrics::Reason {
                        reason: "combat".into(),
                    })
                    .get();
                world.combat_refused.fetch_max(refused, Ordering::SeqCst);
                if world.stop.load(Ordering::SeqCst) {
                    stop.cancel();
                }
            }
        });
    }
    let mut link = EffectLink::start(
        spool.clone(),
        &stores,
        &LinkConfig {
            zone: ZONE,
            server: format!("zone/{run}"),
            hot_ttl: Duration::from_secs(600),
            position_flush: Duration::from_millis(500),
            timeout: Duration::from_millis(500),
            world: false,
            neighbours: Vec::new(),
            token_key: key(),
            run,
        },
        metrics.clone(),
    );
    link.follow_fence(fence_rx);
    let socket = SimUdp(turmoil::net::UdpSocket::bind(("0.0.0.0", PORT)).await?);
    let config = LoopConfig {
        tick_hz: TICK_HZ,
        max_catch_up: 3,
        max_ticks: None,
    };
    let _summary = run_loop(
        &mut host, &socket, &mut link, config, &metrics, &status, shutdown,
    )
    .await;
    world.max_gap_us.fetch_max(
        status.max_tick_gap_us.load(Ordering::Relaxed),
        Ordering::SeqCst,
    );
    spool.sync();
    flusher_stop_tx.cancel();
    let _ = flusher_task.await;
    if lost.is_cancelled() {
        world.leases_lost.fetch_add(1, Ordering::SeqCst);
    }
    lease_stop_tx.cancel();
    let lost_records = spool.close();
    world
        .lost_at_close
        .fetch_add(lost_records.records, Ordering::SeqCst);
    world
        .final_hash
        .store(host.zone().state_hash(), Ordering::SeqCst);
    let accepted = host.zone().action_counts().iter().map(|c| c.accepted).sum();
    world
        .plugin_actions_accepted
        .store(accepted, Ordering::SeqCst);
    world.zone_done.store(true, Ordering::SeqCst);
    // Stay up (a host that returns would be restarted by nothing; keep the address bound).
    std::future::pending::<()>().await;
    Ok(())
}

/// A bot that plays, and reconnects with a fresh token whenever its connection ends, until the
/// world stops.
async fn bot(world: Arc<World>, player: u64, seed: u64, dup: bool) -> turmoil::Result {
    let server = SocketAddr::new(turmoil::lookup("zone"), PORT);
    let config = BotConfig {
        server,
        servers: Vec::new(),
        roam: None,
        // The zone's map, so the bots predict walls exactly.
        layout: Some(WorldGrid::of_tiles(1, 1, ZONE_TILES, ZONE.0)?),
        stand: false,
        game: world.game.wire()?,
        protocol_id: PROTOCOL,
        first_player: player,
        count: 1,
        tick_hz: TICK_HZ,
        duration: None,
        seed,
    };
    let (stop_tx, mut stop) = watch::channel(false);
    {
        let world = world.clone();
        tokio::spawn(async move {
            while !world.stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = stop_tx.send(true);
        });
    }
    while !world.stop.load(Ordering::SeqCst) {
        let token = mint(
            &TokenRequest {
                protocol_id: PROTOCOL,
                client_id: player,
                servers: vec![server],
                expiry_s: 3_600,
                timeout_s: 5,
            },
            &key(),
        )?;
        let socket = DupUdp {
            inner: SimUdp(turmoil::net::UdpSocket::bind(("0.0.0.0", 0)).await?),
            dup,
            n: AtomicU64::new(0),
        };
        let run_before = world.current_run.load(Ordering::SeqCst);
        let report = play_on(&socket, &config, player, token, &mut stop).await?;
        if let Ok(mut e) = world.ends.lock() {
            let how = format!(
                "connected {}, lost {:?}, server closed {}",
                report.connected, report.lost, report.server_closed
            );
            e.push((player, turmoil::sim_elapsed().unwrap_or_default(), how));
        }
        if let Ok(mut p) = world.predictions.lock() {
            p.push((player, report.client.clone()));
        }
        if let Some((tick, me)) = report.last_self
            && world.current_run.load(Ordering::SeqCst) == run_before
            && let Ok(mut v) = world.views.lock()
        {
            v.push((player, run_before, tick, me));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    world.bots_done.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// Runs one seed of one scenario and checks the invariants.
pub fn run(scenario: Scenario, seed: u64, rc: &RunConfig) -> Outcome {
    let world = Arc::new(World {
        lose_writes: rc.lose_writes,
        game: rc.game.clone(),
        ..World::default()
    });
    let seconds = scenario.seconds(rc);
    let total = Duration::from_secs(seconds + 40);
    let mut sim = simulation(seed, total, Duration::from_millis(5));
    let cold = world.cold.clone();
    sim.host("scylla", move || scylla_host(cold.clone()));
    let slot = world.redis.clone();
    sim.host("redis", move || redis_host_with(slot.clone()));
    {
        let world = world.clone();
        sim.host("zone", move || zone_server(world.clone(), seed));
    }
    let lossy = scenario.has(Scenario::LossyClients);
    let bots: Vec<String> = (0..rc.bots).map(|i| format!("bot-{i}")).collect();
    for (i, name) in bots.iter().enumerate() {
        let world = world.clone();
        let player = 100 + i as u64;
        sim.client(name.as_str(), async move {
            bot(world, player, seed, lossy).await
        });
    }
    let mut out = Outcome::default();
    if lossy {
        for name in &bots {
            sim.set_link_fail_rate("zone", name.as_str(), 0.2);
            let latency = 50 + (seed.wrapping_mul(31).wrapping_add(name.len() as u64 * 17) % 150);
            sim.set_link_latency("zone", name.as_str(), Duration::from_millis(latency));
        }
        out.faults += bots.len() * 3;
    }
    // The fault timeline, in simulated seconds.
    let mut timeline: Vec<(u64, &'static str)> = Vec::new();
    if scenario.has(Scenario::ScyllaPartition) {
        timeline.push((10, "partition scylla"));
        timeline.push((40, "repair scylla"));
    }
    if scenario.has(Scenario::ScyllaCrash) {
        timeline.push((15, "crash scylla"));
        timeline.push((25, "restart scylla"));
    }
    if scenario.has(Scenario::RedisCrash) {
        timeline.push((20, "crash redis"));
        timeline.push((28, "restart redis"));
    }
    if scenario.has(Scenario::ZoneCrash) {
        timeline.push((33, "bounce zone"));
    }
    if scenario.has(Scenario::DiskFaults) {
        world.disk.set_error_rate(30, seed);
        timeline.push((12, "fill disk"));
        timeline.push((30, "free disk"));
    }
    let (from, to) = (OUTAGE_FROM.as_secs(), (OUTAGE_FROM + OUTAGE_FOR).as_secs());
    if scenario == Scenario::RedisOutage {
        timeline.push((from, "partition redis"));
        timeline.push((to, "repair redis"));
    }
    if scenario == Scenario::RedisOutageWiped {
        timeline.push((from, "crash redis"));
        timeline.push((to, "restart redis"));
    }
    if scenario == Scenario::LeaseKeyLost {
        timeline.push((from, "lose the lease key"));
    }
    timeline.sort();
    let mut next = 0;
    let mut violations = Vec::new();
    let mut durable_at_crash: Vec<u8> = Vec::new();
    while sim.elapsed() < Duration::from_secs(seconds) {
        while let Some((at, what)) = timeline.get(next).copied() {
            if sim.elapsed() < Duration::from_secs(at) {
                break;
            }
            next += 1;
            out.faults += 1;
            match what {
                "partition scylla" => sim.partition("zone", "scylla"),
                "partition redis" => sim.partition("zone", "redis"),
                "repair redis" => sim.repair("zone", "redis"),
                "lose the lease key" => {
                    if let Some(store) = world.redis.lock().ok().and_then(|s| s.clone()) {
                        store.forget_lease(ZONE);
                    }
                }
                "repair scylla" => sim.repair("zone", "scylla"),
                "crash scylla" => sim.crash("scylla"),
                "restart scylla" => sim.bounce("scylla"),
                "crash redis" => sim.crash("redis"),
                "restart redis" => sim.bounce("redis"),
                "fill disk" => world.disk.set_full(true),
                "free disk" => world.disk.set_full(false),
                "bounce zone" => {
                    durable_at_crash = world.disk.history();
                    sim.bounce("zone");
                }
                _ => {}
            }
        }
        if !step(&mut sim, &mut violations) {
            break;
        }
    }
    // Heal everything, let things settle, read presence, then stop the world.
    for name in &bots {
        sim.set_link_fail_rate("zone", name.as_str(), 0.0);
    }
    sim.repair("zone", "scylla");
    sim.repair("zone", "redis");
    let settle_until = sim.elapsed() + Duration::from_secs(5);
    while violations.is_empty() && sim.elapsed() < settle_until {
        step(&mut sim, &mut violations);
    }
    {
        let world2 = world.clone();
        sim.client("probe", async move {
            // Presence is rewritten every 500 ms: it must come to equal the zone's players.
            let hot = SimHot {
                timeout: Duration::from_secs(2),
                ..SimHot::default()
            };
            let mut last = None;
            for _ in 0..15 {
                let p = hot.presence(ZONE).await.ok();
                let now = world2
                    .players_now
                    .lock()
                    .map(|n| n.clone())
                    .unwrap_or_default();
                let equal = p.as_ref() == Some(&now) && !now.is_empty();
                last = Some((p, now));
                if equal {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if let Ok(mut slot) = world2.presence_after.lock() {
                *slot = last;
            }
            Ok(())
        });
    }
    let probe_until = sim.elapsed() + Duration::from_secs(3);
    while violations.is_empty() && sim.elapsed() < probe_until {
        step(&mut sim, &mut violations);
    }
    world.stop.store(true, Ordering::SeqCst);
    let stop_until = sim.elapsed() + Duration::from_secs(35);
    while violations.is_empty()
        && !world.zone_done.load(Ordering::SeqCst)
        && sim.elapsed() < stop_until
    {
        step(&mut sim, &mut violations);
    }
    let bots_until = sim.elapsed() + Duration::from_secs(5);
    while violations.is_empty()
        && world.bots_done.load(Ordering::SeqCst) < u64::from(rc.bots)
        && sim.elapsed() < bots_until
    {
        step(&mut sim, &mut violations);
    }
    out.simulated_s = sim.elapsed().as_secs_f64();
    if !world.zone_done.load(Ordering::SeqCst) && violations.is_empty() {
        violations.push("the zone server did not shut down within 35 s".into());
    }
    check(&world, rc, &durable_at_crash, &mut violations, &mut out);
    // Nothing the spool accepted was lost at shutdown.
    let lost = world.lost_at_close.load(Ordering::SeqCst);
    if lost > 0 {
        violations.push(format!(
            "{lost} accepted records were not durable at shutdown"
        ));
    }
    // The production lease outlives every fault here: losing it would stop the only zone.
    let leases_lost = world.leases_lost.load(Ordering::SeqCst);
    if leases_lost > 0 {
        violations.push(format!("the zone lease was lost {leases_lost} time(s)"));
    }
    if scenario.hot_store_fault() {
        let until =
            (OUTAGE_FROM + OUTAGE_FOR + Duration::from_secs(5)).min(Duration::from_secs(seconds));
        let ends = world.ends.lock().map(|e| e.clone()).unwrap_or_default();
        no_disconnects_during(&ends, OUTAGE_FROM, until, &mut violations);
    }
    if scenario.has(Scenario::DiskFaults) {
        if world.disk.failed_writes() == 0 {
            violations.push("no disk write failed: the scenario checked nothing".into());
        }
        if !world.not_ready_seen.load(Ordering::SeqCst) {
            violations.push("the zone stayed ready while its disk refused writes".into());
        }
        if world.combat_refused.load(Ordering::SeqCst) == 0 {
            violations.push("no combat record was refused while the disk was full".into());
        }
    }
    out.violations = violations;
    out
}

pub(crate) fn records_in(bytes: &[u8]) -> Vec<Record> {
    scan(bytes)
        .0
        .iter()
        .filter_map(|(_, _, payload)| Record::decode(payload).ok())
        .collect()
}

fn check(
    world: &World,
    rc: &RunConfig,
    durable_at_crash: &[u8],
    violations: &mut Vec<String>,
    out: &mut Outcome,
) {
    let durable = records_in(&world.disk.history());
    let Ok(cold) = world.cold.lock() else {
        violations.push("cold data poisoned".into());
        return;
    };
    // Every durable combat event is in the cold store, exactly once, same content.
    let combat = check_durable_combat(&durable, &cold, violations);
    out.events_checked = combat;
    if cold.conflicting_writes > 0 {
        violations.push(format!(
            "{} conflicting writes of one key",
            cold.conflicting_writes
        ));
    }
    // Everything durable before the zone crash was recovered too (subset of the above, named
    // separately so a failure says which).
    let before_crash = records_in(durable_at_crash)
        .iter()
        .filter(|r| matches!(r, Record::Combat(_)))
        .count();
    if before_crash > combat {
        violations.push("records durable before the crash are gone".into());
    }
    // Each player's stored state is the newest durable save.
    let mut newest: BTreeMap<PlayerId, zone_shell::persist::SaveRecord> = BTreeMap::new();
    for r in &durable {
        if let Record::PlayerSave(s) = r {
            let keep = newest
                .get(&s.player)
                .is_none_or(|o| o.write_order() < s.write_order());
            if keep {
                newest.insert(s.player, *s);
            }
        }
    }
    out.saves_checked = newest.len();
    out.plugin_saves_checked = newest
        .values()
        .filter(|s| !s.state.plugins.is_empty())
        .count();
    for (player, save) in &newest {
        match cold.saves.get(player) {
            Some(stored) if stored.state == save.state => {}
            other => violations.push(format!(
                "{player:?}: stored state {:?} is not the last save {:?}",
                other.map(|s| s.state.version),
                save.state.version
            )),
        }
    }
    if rc.bots > 0 && newest.len() < rc.bots as usize {
        violations.push(format!(
            "only {} of {} players have a durable save",
            newest.len(),
            rc.bots
        ));
    }
    if combat == 0 {
        violations.push("no combat happened: the scenario checked nothing".into());
    }
    // The tick loop never stalled: no gap between two ticks over two periods.
    let gap = world.max_gap_us.load(Ordering::SeqCst);
    out.max_tick_gap_us = gap;
    let limit = 2 * 1_000_000 / u64::from(TICK_HZ);
    if gap > limit {
        violations.push(format!(
            "tick loop stalled: {gap} µs between ticks (limit {limit})"
        ));
    }
    // Presence in the hot store was rebuilt (after any redis wipe): equal to the zone's players.
    match world.presence_after.lock().ok().and_then(|p| p.clone()) {
        Some((Some(present), players)) if present == players && !players.is_empty() => {}
        other => violations.push(format!(
            "presence not rebuilt: (hot store, zone) = {:?}",
            other.map(|(p, z)| (p.map(|p| p.len()), z.len()))
        )),
    }
    // Each client's last view of itself equals the server's quantized state at that tick.
    let truth = world.truth.lock().map(|t| t.clone()).unwrap_or_default();
    let views = world.views.lock().map(|v| v.clone()).unwrap_or_default();
    let mut compared = 0;
    for (player, run, tick, me) in &views {
        match truth.get(&(*run, *tick)).and_then(|t| t.get(&me.id)) {
            Some(server) if server == me => compared += 1,
            Some(server) => violations.push(format!(
                "player {player}: view at tick {tick} {me:?} differs from the server's {server:?}"
            )),
            None => {} // older than the kept window
        }
    }
    out.views_checked = compared;

    // Prediction is exact wherever nothing but the avatar's own inputs moved it: every
    // correction is explained by an input that arrived late (or never) or by a death or
    // respawn; none by the movement itself, whatever the link did.
    let predictions = world
        .predictions
        .lock()
        .map(|p| p.clone())
        .unwrap_or_default();
    let compared_predictions: u64 = predictions.iter().map(|(_, c)| c.compared).sum();
    for (player, c) in &predictions {
        if c.corrected > c.explained {
            violations.push(format!(
                "player {player}: {} of {} predictions corrected without a late input, death \
                 or respawn to explain it",
                c.corrected - c.explained,
                c.compared
            ));
        }
    }
    out.predictions_checked = compared_predictions;
    if rc.bots > 0 && compared_predictions == 0 {
        violations.push("no prediction was reconciled: the check checked nothing".into());
    }

    if rc.bots > 0 && compared == 0 {
        violations.push("no client view could be compared with the server".into());
    }
    out.event_log = cold
        .combat
        .values()
        .map(|c| (c.run, c.event.id.0, c.event.damage, c.event.killed))
        .collect();
    out.final_hash = world.final_hash.load(Ordering::SeqCst);
    out.plugin_actions_accepted = world.plugin_actions_accepted.load(Ordering::SeqCst);
}

/// Seeds to run: `SIM_SEED=S` replays one, `SIM_SEEDS=N` runs N, else `default`.
pub fn seeds(default: u64) -> Vec<u64> {
    if let Some(s) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![s];
    }
    let n = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (1..=n).collect()
}

/// The command that replays one seed of one scenario.
pub fn replay_command(scenario: Scenario, seed: u64) -> String {
    format!(
        "SIM_SEED={seed} cargo test -p sim-tests --test scenarios -- --exact {} --nocapture",
        scenario.name()
    )
}

//! One seeded run of a world of zones: a 2x2 grid (or a single zone, 1x1), one real zone-server shell per zone on its
//! own host (each with its own crash-consistent disk and spool), sometimes a standby server
//! waiting for a zone's lease, roaming bots on their own hosts that walk over borders and follow
//! redirects, and the "redis" and "scylla" hosts. Faults are injected on a timeline; the
//! invariants are checked while it runs (at every observation step) and at the end.
//!
//! Invariants:
//! - no player is held by two zones at any observation, and whoever holds a player is the
//!   zone the ownership ledger names;
//! - no zone is simulated by two servers at once (the tick intervals of a zone's successive
//!   holders never overlap);
//! - no player state is lost or rolled back: along each player's durable saves, in version
//!   order, the lifetime counters never decrease; the cold store holds the newest; every
//!   durable combat event is stored exactly once;
//! - the tick loops never stall; no host panics; handoffs actually happened (or, in the long
//!   hold, players were held past the ownership TTL and logged in a second time elsewhere).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zone_core::netcode::Key;
use zone_core::world::WorldGrid;
use zone_core::{PlayerId, Zone, ZoneId};
use zone_shell::bots::{BotConfig, BotReport, play_on};
use zone_shell::effects::lease::{claim_lease, keep_lease};
use zone_shell::effects::{EffectLink, LinkConfig, Stores};
use zone_shell::host::{HostConfig, ZoneHost};
use zone_shell::metrics::Metrics;
use zone_shell::persist::embedded_hot::MemoryHotStore;
use zone_shell::persist::flusher::{Flusher, FlusherConfig};
use zone_shell::persist::spool::{Spool, SpoolConfig, SpoolStats, WriterMode};
use zone_shell::persist::{HotStore, Record, SaveRecord};
use zone_shell::server::{LoopConfig, Status, run_loop};
use zone_shell::tokens::{TokenRequest, mint};
use zone_shell::world::WorldPlace;

use crate::disk::SimFs;
use crate::harness::{
    ConnectionEnd, OUTAGE_FOR, OUTAGE_FROM, check_durable_combat, no_disconnects_during,
    simulation, step,
};
use crate::stores::{ColdData, SimCold, SimHot, redis_host_with, scylla_host};
use crate::world::{DupUdp, SimUdp, key, records_in, seeded8};

const PORT: u16 = 40_000;
const PROTOCOL: u64 = 0x5A4F_4E45_0000_0002;
const TICK_HZ: u32 = 60;
const ZONE_TILES: u32 = 48;
const NPCS: u32 = 24;
/// The lease of the scenarios that take a lease away: short, so that they do it quickly.
const SHORT_LEASE_TTL: Duration = Duration::from_secs(2);
/// When the lease expiry scenario cuts zone 1's holder off from Redis.
const CUT_FROM: Duration = Duration::from_secs(15);

/// How long the holder stays cut off: past its lease, so that the standby takes over.
fn cut_for(ttl: Duration) -> Duration {
    Duration::from_secs(15).max(ttl + ttl / 4)
}

/// Longest gap between two ticks that is not a stall (six ticks at 60 Hz).
const MAX_TICK_GAP: Duration = Duration::from_millis(100);
/// The ownership records' TTL in the hot store: the production default.
const HOT_TTL: Duration = Duration::from_secs(600);
/// Simulated seconds of the long hold: longer than every TTL in play.
const LONG_HOLD_SECONDS: u64 = 20 * 60;
/// When the long hold's second logins happen: past the hot TTL of a player held since the start.
const TWIN_AT: Duration = Duration::from_secs(11 * 60);

/// The multi-zone scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorldScenario {
    /// Four servers, bots roaming over lossy links (10% loss, 20-60 ms): handoffs all the time.
    Handoffs,
    /// The server of zone 1 is cut off from redis for 15 s: its lease expires, it stops, and a
    /// standby server takes the zone over.
    LeaseExpiry,
    /// Twice, a server is crashed while one of its handoffs is in flight, and restarted 3 s
    /// later from its disk.
    CrashDuringHandoff,
    /// Redis is wiped (`FLUSHALL`: leases, fence counters, the ledger) under running servers
    /// while a standby waits for zone 1: whoever holds zone 1 next holds a larger fence, and
    /// the two never simulate it at once.
    RedisWipe,
    /// Redis is unreachable from every server for 60 s (its data kept), on the production
    /// lease, with bots in combat and a standby waiting for zone 1: every zone goes on
    /// ticking, no bot is disconnected, no lease is lost and the standby never takes over.
    RedisOutage,
    /// The same, with Redis crashed for 60 s and restarted empty: the holders re-claim their
    /// leases in the grace period the standby gives them.
    RedisOutageWiped,
    /// Zone 1's lease key alone is lost (a failover to a replica that missed it) while a
    /// standby waits: the holder claims it back in the grace period, the standby does not.
    LeaseKeyLost,
    /// Twenty simulated minutes of players who stand where they spawned (fighting back), so
    /// the ownership TTL runs out for every one of them, then, at 11 minutes, a
    /// second login of every player at another zone (an old token, a confused login backend):
    /// the second zone takes the player over and the first lets go.
    LongHold,
}

impl WorldScenario {
    /// Every scenario.
    pub const ALL: [WorldScenario; 8] = [
        WorldScenario::Handoffs,
        WorldScenario::LeaseExpiry,
        WorldScenario::CrashDuringHandoff,
        WorldScenario::RedisWipe,
        WorldScenario::RedisOutage,
        WorldScenario::RedisOutageWiped,
        WorldScenario::LeaseKeyLost,
        WorldScenario::LongHold,
    ];

    /// The test name.
    pub fn name(self) -> &'static str {
        match self {
            WorldScenario::Handoffs => "world_handoffs",
            WorldScenario::LeaseExpiry => "world_lease_expiry",
            WorldScenario::CrashDuringHandoff => "world_crash_during_handoff",
            WorldScenario::RedisWipe => "world_redis_wipe",
            WorldScenario::RedisOutage => "world_redis_outage",
            WorldScenario::RedisOutageWiped => "world_redis_outage_wiped",
            WorldScenario::LeaseKeyLost => "world_lease_key_lost",
            WorldScenario::LongHold => "world_long_hold",
        }
    }

    /// Simulated seconds of play: the run's own, or the long hold's twenty minutes.
    pub fn seconds(self, rc: &WorldRunConfig) -> u64 {
        let ttl = rc.lease_ttl.unwrap_or(self.lease_ttl());
        match self {
            WorldScenario::LeaseExpiry => rc.seconds.max((CUT_FROM + cut_for(ttl)).as_secs() + 15),
            WorldScenario::LongHold => rc.seconds.max(LONG_HOLD_SECONDS),
            s if s.outage() => rc.seconds.max((OUTAGE_FROM + OUTAGE_FOR).as_secs() + 15),
            _ => rc.seconds,
        }
    }

    /// Whether Redis goes away for [`OUTAGE_FOR`] (the production lease rides it out).
    fn outage(self) -> bool {
        matches!(
            self,
            WorldScenario::RedisOutage | WorldScenario::RedisOutageWiped
        )
    }

    /// The zone lease: the production default where an outage must be ridden out, short
    /// where a lease is taken away.
    fn lease_ttl(self) -> Duration {
        if self.outage() {
            Duration::from_millis(zone_shell::config::Config::default().store.lease_ttl_ms)
        } else {
            SHORT_LEASE_TTL
        }
    }

    /// Whether a standby server waits for zone 1.
    fn standby(self) -> bool {
        !matches!(
            self,
            WorldScenario::Handoffs | WorldScenario::CrashDuringHandoff | WorldScenario::LongHold
        )
    }

    /// Whether zone 1's holder stays alive and connected throughout: the standby must never
    /// take over, no lease may be lost.
    fn holders_stay(self) -> bool {
        self.outage() || self == WorldScenario::LeaseKeyLost
    }
}

/// Knobs of a run.
#[derive(Clone, Debug)]
pub struct WorldRunConfig {
    /// Bots.
    pub bots: u32,
    /// Simulated seconds of play (then 5 s to settle and the orderly stop).
    pub seconds: u64,
    /// How long a source waits for an answer before recalling the player. Very short, every
    /// handoff races its own recall: exactly one may win.
    pub handoff_timeout: Duration,
    /// A planted bug: the ledger's conditional claims become unconditional (see
    /// `SimHot::broken_claims`). The invariants must catch it.
    pub broken_claims: bool,
    /// The zone lease, instead of the scenario's (lease expiry on the production lease
    /// measures the take-over users would see).
    pub lease_ttl: Option<Duration>,
    /// The world's columns and rows: 2x2, or 1x1 for one zone (with its standby).
    pub grid: (u32, u32),
}

impl Default for WorldRunConfig {
    fn default() -> Self {
        Self {
            bots: 16,
            seconds: 45,
            handoff_timeout: Duration::from_millis(1_500),
            broken_claims: false,
            lease_ttl: None,
            grid: (2, 2),
        }
    }
}

/// What one run found.
#[derive(Clone, Debug, Default)]
pub struct WorldOutcome {
    /// Invariant violations (empty = pass).
    pub violations: Vec<String>,
    /// Redirects the bots followed.
    pub handoffs: u64,
    /// For each, the ticks from the first snapshot showing the avatar over the border to the
    /// first snapshot of the new zone (client side, simulated time).
    pub handoff_ticks: Vec<u64>,
    /// Observations at which ownership was checked.
    pub observations: u64,
    /// Player holdings checked against the ledger, summed over observations.
    pub holdings_checked: u64,
    /// Durable player saves checked for rollback.
    pub saves_checked: usize,
    /// Durable combat events checked against the cold store.
    pub events_checked: usize,
    /// Zone-holder intervals compared.
    pub intervals: usize,
    /// Faults injected.
    pub faults: usize,
    /// Simulated seconds.
    pub simulated_s: f64,
    /// Players held by one zone for longer than the ownership TTL (long hold).
    pub long_holds: usize,
    /// Second logins that connected (long hold).
    pub second_logins: usize,
    /// Lease expiry: simulated time from the holder's last tick to the standby's first.
    pub takeover: Option<Duration>,
    /// Largest gap between two ticks of any server.
    pub max_tick_gap: Duration,
}

/// Who holds which zone: one entry per server incarnation.
#[derive(Clone, Debug)]
struct Tenure {
    zone: ZoneId,
    server: String,
    first: Duration,
    last: Duration,
    fence: u64,
}

#[derive(Debug, Default)]
struct Shared {
    /// The world's columns and rows.
    grid: (u32, u32),
    broken_claims: bool,
    handoff_timeout: Duration,
    lease_ttl: Duration,
    /// Leases lost by any server incarnation.
    leases_lost: AtomicU64,
    /// When and how each bot connection ended.
    ends: Mutex<Vec<ConnectionEnd>>,
    disks: Mutex<BTreeMap<String, Arc<SimFs>>>,
    cold: Arc<Mutex<ColdData>>,
    redis: Arc<Mutex<Option<Arc<MemoryHotStore>>>>,
    stop: AtomicBool,
    incarnations: AtomicU64,
    /// Each live server's zone and the players it held after its latest tick.
    held: Mutex<BTreeMap<String, (ZoneId, Vec<PlayerId>)>>,
    /// Each live server's handoffs in flight after its latest tick.
    in_flight: Mutex<BTreeMap<String, usize>>,
    tenures: Mutex<BTreeMap<u64, Tenure>>,
    max_gap_us: AtomicU64,
    servers_done: AtomicU64,
    bots_done: AtomicU64,
    reports: Mutex<Vec<BotReport>>,
    second_logins: Mutex<Vec<BotReport>>,
}

impl Shared {
    fn zones(&self) -> u32 {
        self.grid.0 * self.grid.1
    }

    fn disk(&self, server: &str) -> Arc<SimFs> {
        self.disks
            .lock()
            .map(|mut d| d.entry(server.to_owned()).or_default().clone())
            .unwrap_or_default()
    }

    fn forget(&self, server: &str) {
        if let Ok(mut h) = self.held.lock() {
            h.remove(server);
        }
        if let Ok(mut f) = self.in_flight.lock() {
            f.remove(server);
        }
    }
}

fn grid((columns, rows): (u32, u32)) -> WorldGrid {
    match WorldGrid::of_tiles(columns, rows, ZONE_TILES, 1) {
        Ok(g) => g,
        Err(e) => panic!("the simulation's grid is valid: {e}"),
    }
}

fn hot(timeout: Duration, broken_claims: bool) -> Arc<dyn HotStore> {
    Arc::new(SimHot {
        timeout,
        broken_claims,
    })
}

/// A zone server: claims its zone's lease (waiting as long as another holds it), simulates the
/// zone until the world stops or the lease is lost, then claims again.
async fn zone_server(
    shared: Arc<Shared>,
    name: String,
    zone: ZoneId,
    seed: u64,
) -> turmoil::Result {
    let ip = turmoil::lookup(name.as_str());
    let public = SocketAddr::new(ip, PORT);
    let socket = SimUdp(turmoil::net::UdpSocket::bind(("0.0.0.0", PORT)).await?);
    while !shared.stop.load(Ordering::SeqCst) {
        let run = shared.incarnations.fetch_add(1, Ordering::SeqCst) + 1;
        let metrics = Arc::new(Metrics::new());
        let status = Arc::new(Status::default());
        let stores = Stores {
            hot: hot(Duration::from_millis(300), shared.broken_claims),
            cold: Arc::new(SimCold {
                timeout: Duration::from_millis(500),
                lose_writes: false,
            }),
        };
        let owner = format!("{name}/{run}");
        let lease = match claim_lease(
            &stores,
            zone,
            &owner,
            shared.lease_ttl,
            Duration::from_secs(3_600),
            0,
        )
        .await
        {
            Ok(l) => l,
            Err(_) => continue,
        };
        let disk = shared.disk(&name);
        let (spool, _recovery) = Spool::open_on(
            disk,
            WriterMode::Manual,
            SpoolConfig {
                dir: PathBuf::from("/spool"),
                group_commit: Duration::from_millis(5),
                max_bytes: 1 << 30,
                max_buffer_bytes: zone_shell::persist::spool::DEFAULT_MAX_BUFFER_BYTES,
            },
            Arc::new(SpoolStats::default()),
        )?;
        let grid = grid(shared.grid);
        let config = grid
            .zone_config(zone, NPCS)
            .ok_or("zone outside the grid")?;
        let zone_seed = seed ^ u64::from(zone.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut place = WorldPlace::new(grid, zone, public);
        place.handoff_timeout = shared.handoff_timeout;
        let mut host = ZoneHost::new(
            Zone::new(config, zone_seed)?,
            &HostConfig {
                protocol_id: PROTOCOL,
                public_addresses: vec![public],
                max_clients: 256,
                max_packets_per_client_tick: 8,
                run,
                fence: lease.fence,
                global_sequence_random: seeded8(seed, run),
                world: Some(place),
                snapshot_interval: 1,
            },
            key(),
            Key::from_bytes([run as u8; 32]),
        )?;
        {
            let (shared, name, fence) = (shared.clone(), name.clone(), lease.fence);
            host.set_observer(Box::new(move |host: &ZoneHost| {
                let at = turmoil_elapsed();
                let players: Vec<PlayerId> = host.zone().players().map(|(p, _)| p).collect();
                if let Ok(mut h) = shared.held.lock() {
                    h.insert(name.clone(), (zone, players));
                }
                if let Ok(mut f) = shared.in_flight.lock() {
                    f.insert(name.clone(), host.handoff_stats().in_flight);
                }
                if let Ok(mut t) = shared.tenures.lock() {
                    t.entry(run)
                        .or_insert_with(|| Tenure {
                            zone,
                            server: name.clone(),
                            first: at,
                            last: at,
                            fence,
                        })
                        .last = at;
                }
            }));
        }
        let flusher = Flusher::new(
            spool.clone(),
            stores.cold.clone(),
            FlusherConfig {
                jitter_seed: Some(seed ^ run),
                dead_letter_path: std::env::temp_dir().join(format!("sim-world-dead-{seed}.log")),
                ..FlusherConfig::new(std::path::Path::new("/"), 256, Duration::from_millis(500))
            },
            metrics.clone(),
        );
        let flusher_stop_tx = CancellationToken::new();
        let flusher_stop = flusher_stop_tx.clone();
        let flusher_task = tokio::spawn(flusher.run(flusher_stop, Duration::from_secs(10)));
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
            shared.lease_ttl,
            Some(public.to_string()),
            metrics.clone(),
            lost_tx,
            lease_stop,
        ));
        let committer = {
            // Group commit (the writer thread's job in production), the end of the world and
            // the loss of the lease both stop the loop.
            let (spool, shared, stop) = (spool.clone(), shared.clone(), shutdown_tx.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    spool.commit_now();
                    if shared.stop.load(Ordering::SeqCst) || lost.is_cancelled() {
                        stop.cancel();
                    }
                }
            })
        };
        let mut link = EffectLink::start(
            spool.clone(),
            &stores,
            &LinkConfig {
                zone,
                server: owner.clone(),
                hot_ttl: HOT_TTL,
                position_flush: Duration::from_millis(500),
                timeout: Duration::from_millis(500),
                world: true,
                neighbours: grid.neighbours(zone).to_vec(),
                token_key: key(),
                run,
            },
            metrics.clone(),
        );
        link.follow_fence(fence_rx);
        let config = LoopConfig {
            tick_hz: TICK_HZ,
            max_catch_up: 3,
            max_ticks: None,
        };
        let _summary = run_loop(
            &mut host, &socket, &mut link, config, &metrics, &status, shutdown,
        )
        .await;
        shared.forget(&name);
        shared
            .leases_lost
            .fetch_add(metrics.leases_lost.get(), Ordering::SeqCst);
        shared.max_gap_us.fetch_max(
            status.max_tick_gap_us.load(Ordering::Relaxed),
            Ordering::SeqCst,
        );
        spool.sync();
        flusher_stop_tx.cancel();
        let _ = flusher_task.await;
        lease_stop_tx.cancel();
        committer.abort();
        spool.close();
    }
    shared.servers_done.fetch_add(1, Ordering::SeqCst);
    std::future::pending::<()>().await;
    Ok(())
}

/// Simulated time since the simulation started (tokio's clock is turmoil's).
fn turmoil_elapsed() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// Where a player should connect, as a login backend would tell them: the zone the ownership
/// ledger names (else a default), at the address its lease holder published.
async fn route(player: u64, zones: u32) -> Option<SocketAddr> {
    let hot = SimHot {
        timeout: Duration::from_millis(500),
        ..SimHot::default()
    };
    let zone = match hot.player_owner(PlayerId(player)).await {
        Ok(Some(o)) => o.zone,
        Ok(None) => ZoneId(1 + (player % u64::from(zones)) as u32),
        Err(_) => return None,
    };
    hot.zone_address(zone).await.ok().flatten()?.parse().ok()
}

/// A connect token for `player` at `server`, as the login backend would mint it.
fn token(player: u64, server: SocketAddr) -> anyhow::Result<[u8; 2048]> {
    Ok(mint(
        &TokenRequest {
            protocol_id: PROTOCOL,
            client_id: player,
            servers: vec![server],
            expiry_s: 3_600,
            timeout_s: 3,
        },
        &key(),
    )?)
}

/// A bot that roams the world, following redirects; when its connection ends it logs in
/// again through [`route`].
async fn bot(
    shared: Arc<Shared>,
    player: u64,
    seed: u64,
    lossy: bool,
    roam: bool,
) -> turmoil::Result {
    let config = BotConfig {
        server: SocketAddr::from(([0, 0, 0, 0], PORT)),
        servers: Vec::new(),
        protocol_id: PROTOCOL,
        first_player: player,
        count: 1,
        tick_hz: TICK_HZ,
        duration: None,
        seed,
        roam: roam.then(|| grid(shared.grid)),
        layout: None,
        stand: !roam,
        game: Default::default(),
    };
    let (stop_tx, mut stop) = watch::channel(false);
    {
        let shared = shared.clone();
        tokio::spawn(async move {
            while !shared.stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = stop_tx.send(true);
        });
    }
    while !shared.stop.load(Ordering::SeqCst) {
        let Some(server) = route(player, shared.zones()).await else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        let token = token(player, server)?;
        let socket = DupUdp {
            inner: SimUdp(turmoil::net::UdpSocket::bind(("0.0.0.0", 0)).await?),
            dup: lossy,
            n: AtomicU64::new(0),
        };
        let report = play_on(&socket, &config, player, token, &mut stop).await?;
        if let Ok(mut e) = shared.ends.lock() {
            let how = format!(
                "connected {}, lost {:?}, server closed {}, zones {:?}, redirects {}",
                report.connected, report.lost, report.server_closed, report.path, report.redirects
            );
            e.push((player, turmoil_elapsed(), how));
        }
        if let Ok(mut r) = shared.reports.lock() {
            r.push(report);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    shared.bots_done.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// A second login of `player` at `TWIN_AT`, at a zone other than the one the ledger names, for
/// 20 s.
async fn second_login(shared: Arc<Shared>, player: u64, seed: u64) -> turmoil::Result {
    tokio::time::sleep(TWIN_AT.saturating_sub(turmoil_elapsed())).await;
    let hot = SimHot {
        timeout: Duration::from_millis(500),
        ..SimHot::default()
    };
    let mut server = None;
    for _ in 0..20 {
        // The zone holding the player: the ledger's, or (once the record has expired) the
        // one `route` sent the player to at the start, where a standing player still is.
        let holder = match hot.player_owner(PlayerId(player)).await {
            Ok(Some(owner)) => Some(owner.zone),
            Ok(None) => Some(ZoneId(1 + (player % u64::from(shared.zones())) as u32)),
            Err(_) => None,
        };
        if let Some(holder) = holder {
            let other = ZoneId(holder.0 % shared.zones() + 1);
            server = hot
                .zone_address(other)
                .await
                .ok()
                .flatten()
                .and_then(|a| a.parse().ok());
        }
        if server.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let Some(server) = server else {
        return Ok(());
    };
    let config = BotConfig {
        server: SocketAddr::from(([0, 0, 0, 0], PORT)),
        servers: Vec::new(),
        protocol_id: PROTOCOL,
        first_player: player,
        count: 1,
        tick_hz: TICK_HZ,
        duration: Some(Duration::from_secs(20)),
        seed: seed ^ 0x7717,
        roam: None,
        layout: None,
        stand: false,
        game: Default::default(),
    };
    let token = token(player, server)?;
    let socket = SimUdp(turmoil::net::UdpSocket::bind(("0.0.0.0", 0)).await?);
    let (_stop_tx, mut stop) = watch::channel(false);
    let report = play_on(&socket, &config, player, token, &mut stop).await?;
    if let Ok(mut r) = shared.second_logins.lock() {
        r.push(report);
    }
    Ok(())
}

/// Since when each player has been held by the zone holding them now.
fn track_holds(shared: &Shared, now: Duration, since: &mut BTreeMap<PlayerId, (ZoneId, Duration)>) {
    let held = shared.held.lock().map(|h| h.clone()).unwrap_or_default();
    let mut seen: BTreeMap<PlayerId, ZoneId> = BTreeMap::new();
    for (zone, players) in held.values() {
        for p in players {
            seen.insert(*p, *zone);
        }
    }
    since.retain(|p, (zone, _)| seen.get(p) == Some(zone));
    for (p, zone) in seen {
        since.entry(p).or_insert((zone, now));
    }
}

/// Runs one seed of one scenario and checks the invariants.
pub fn run(scenario: WorldScenario, seed: u64, rc: &WorldRunConfig) -> WorldOutcome {
    let shared = Arc::new(Shared {
        broken_claims: rc.broken_claims,
        handoff_timeout: rc.handoff_timeout,
        lease_ttl: rc.lease_ttl.unwrap_or(scenario.lease_ttl()),
        grid: rc.grid,
        ..Shared::default()
    });
    let seconds = scenario.seconds(rc);
    let total = Duration::from_secs(seconds + 60);
    let mut sim = simulation(seed, total, Duration::from_millis(4));
    let cold = shared.cold.clone();
    sim.host("scylla", move || scylla_host(cold.clone()));
    let slot = shared.redis.clone();
    sim.host("redis", move || redis_host_with(slot.clone()));
    let mut servers: Vec<(String, ZoneId)> = (1..=shared.zones())
        .map(|z| (format!("zs-{z}"), ZoneId(z)))
        .collect();
    if scenario.standby() {
        servers.push(("zs-1b".to_owned(), ZoneId(1)));
    }
    let mut wiped = false;
    let mut outage = false;
    for (name, zone) in &servers {
        let (shared, name2, zone) = (shared.clone(), name.clone(), *zone);
        sim.host(name.as_str(), move || {
            zone_server(shared.clone(), name2.clone(), zone, seed)
        });
    }
    let lossy = scenario == WorldScenario::Handoffs;
    let long_hold = scenario == WorldScenario::LongHold;
    let bots: Vec<String> = (0..rc.bots).map(|i| format!("bot-{i}")).collect();
    for (i, name) in bots.iter().enumerate() {
        let player = 100 + i as u64;
        let for_bot = shared.clone();
        sim.client(name.as_str(), async move {
            bot(for_bot, player, seed, lossy, !long_hold).await
        });
        if long_hold {
            let for_twin = shared.clone();
            sim.client(format!("twin-{i}").as_str(), async move {
                second_login(for_twin, player, seed).await
            });
        }
    }
    let mut held_since: BTreeMap<PlayerId, (ZoneId, Duration)> = BTreeMap::new();
    let mut twins_counted = false;
    let mut out = WorldOutcome::default();
    if lossy {
        for (s, _) in &servers {
            for b in &bots {
                sim.set_link_fail_rate(s.as_str(), b.as_str(), 0.1);
                let latency = 20 + (seed.wrapping_mul(7).wrapping_add(b.len() as u64 * 13) % 40);
                sim.set_link_latency(s.as_str(), b.as_str(), Duration::from_millis(latency));
            }
        }
        out.faults += servers.len() * bots.len();
    }
    let mut violations = Vec::new();
    let secs = Duration::from_secs;
    let mut partitioned = false;
    let mut cut_off = String::new();
    let mut crashes: Vec<(Duration, String)> = Vec::new();
    let mut crashes_done = 0;
    let mut next_observation = Duration::ZERO;
    while sim.elapsed() < secs(seconds) && violations.is_empty() {
        let now = sim.elapsed();
        match scenario {
            WorldScenario::RedisWipe => {
                if !wiped
                    && now >= secs(15)
                    && let Some(store) = shared.redis.lock().ok().and_then(|s| s.clone())
                {
                    store.wipe();
                    wiped = true;
                    out.faults += 1;
                }
            }
            WorldScenario::LeaseExpiry => {
                let cut_until = CUT_FROM + cut_for(shared.lease_ttl);
                if !partitioned && now >= CUT_FROM && now < cut_until {
                    // Whichever of the two servers won zone 1 at the start.
                    cut_off = shared
                        .held
                        .lock()
                        .ok()
                        .and_then(|h| {
                            h.iter()
                                .find(|(_, (z, _))| *z == ZoneId(1))
                                .map(|(s, _)| s.clone())
                        })
                        .unwrap_or_else(|| "zs-1".to_owned());
                    sim.partition(cut_off.as_str(), "redis");
                    partitioned = true;
                    out.faults += 1;
                }
                if partitioned && now >= cut_until {
                    sim.repair(cut_off.as_str(), "redis");
                    partitioned = false;
                }
            }
            WorldScenario::CrashDuringHandoff => {
                let due = (crashes_done == 0 && now >= secs(12))
                    || (crashes_done == 1 && now >= secs(27));
                if due {
                    let busy = shared
                        .in_flight
                        .lock()
                        .ok()
                        .and_then(|f| f.iter().find(|(_, n)| **n > 0).map(|(s, _)| s.clone()));
                    if let Some(victim) = busy {
                        sim.crash(victim.as_str());
                        shared.forget(&victim);
                        crashes.push((now + secs(3), victim));
                        crashes_done += 1;
                        out.faults += 1;
                    }
                }
                if let Some(i) = crashes.iter().position(|(at, _)| now >= *at) {
                    let (_, victim) = crashes.remove(i);
                    sim.bounce(victim.as_str());
                }
            }
            WorldScenario::LongHold => {
                if !twins_counted && now >= TWIN_AT {
                    twins_counted = true;
                    out.long_holds = held_since
                        .values()
                        .filter(|(_, since)| now.saturating_sub(*since) > HOT_TTL)
                        .count();
                }
            }
            WorldScenario::RedisOutage | WorldScenario::RedisOutageWiped => {
                let wipe = scenario == WorldScenario::RedisOutageWiped;
                if !outage && now >= OUTAGE_FROM && now < OUTAGE_FROM + OUTAGE_FOR {
                    outage = true;
                    out.faults += 1;
                    if wipe {
                        sim.crash("redis");
                    } else {
                        for (s, _) in &servers {
                            sim.partition(s.as_str(), "redis");
                        }
                    }
                }
                if outage && now >= OUTAGE_FROM + OUTAGE_FOR {
                    outage = false;
                    if wipe {
                        // A new, empty store (the slot follows it).
                        sim.bounce("redis");
                    } else {
                        for (s, _) in &servers {
                            sim.repair(s.as_str(), "redis");
                        }
                    }
                }
            }
            WorldScenario::LeaseKeyLost => {
                if !wiped
                    && now >= OUTAGE_FROM
                    && let Some(store) = shared.redis.lock().ok().and_then(|s| s.clone())
                {
                    store.forget_lease(ZoneId(1));
                    wiped = true;
                    out.faults += 1;
                }
            }
            WorldScenario::Handoffs => {}
        }
        if now >= next_observation {
            next_observation = now + Duration::from_millis(100);
            observe(&shared, &mut out, &mut violations);
            track_holds(&shared, now, &mut held_since);
        }
        if !step(&mut sim, &mut violations) {
            break;
        }
    }
    if scenario == WorldScenario::CrashDuringHandoff && crashes_done == 0 && violations.is_empty() {
        violations.push("no handoff was ever in flight to crash a server during".into());
    }
    for (_, victim) in crashes.drain(..) {
        sim.bounce(victim.as_str());
    }
    // Heal, settle, then the orderly stop: bots leave, servers save and flush.
    for (s, _) in &servers {
        for b in &bots {
            sim.set_link_fail_rate(s.as_str(), b.as_str(), 0.0);
        }
    }
    if partitioned {
        sim.repair(cut_off.as_str(), "redis");
    }
    if outage {
        for (s, _) in &servers {
            sim.repair(s.as_str(), "redis");
        }
    }
    let settle_until = sim.elapsed() + secs(5);
    while violations.is_empty() && sim.elapsed() < settle_until {
        if sim.elapsed() >= next_observation {
            next_observation = sim.elapsed() + Duration::from_millis(100);
            observe(&shared, &mut out, &mut violations);
        }
        step(&mut sim, &mut violations);
    }
    shared.stop.store(true, Ordering::SeqCst);
    let stop_until = sim.elapsed() + secs(40);
    while violations.is_empty()
        && (shared.servers_done.load(Ordering::SeqCst) < servers.len() as u64
            || shared.bots_done.load(Ordering::SeqCst) < u64::from(rc.bots))
        && sim.elapsed() < stop_until
    {
        step(&mut sim, &mut violations);
    }
    out.simulated_s = sim.elapsed().as_secs_f64();
    if violations.is_empty() && shared.servers_done.load(Ordering::SeqCst) < servers.len() as u64 {
        violations.push("the zone servers did not shut down within 40 s".into());
    }
    check(&shared, rc, !long_hold, &mut violations, &mut out);
    if long_hold {
        out.second_logins = shared
            .second_logins
            .lock()
            .map(|r| r.iter().filter(|r| r.connected).count())
            .unwrap_or(0);
        if out.long_holds == 0 {
            violations.push(format!(
                "no player was held by one zone past the {HOT_TTL:?} ownership TTL: the long hold checked nothing"
            ));
        }
        if out.second_logins == 0 {
            violations.push("no second login connected: the long hold checked nothing".into());
        }
    }
    let tenures: Vec<Tenure> = shared
        .tenures
        .lock()
        .map(|t| t.values().cloned().collect())
        .unwrap_or_default();
    // Zone 1's holders in order: the first, and whoever took over from it.
    let mut zone1: Vec<&Tenure> = tenures.iter().filter(|t| t.zone == ZoneId(1)).collect();
    zone1.sort_by_key(|t| t.first);
    let handovers: Vec<(&Tenure, &Tenure)> = zone1
        .windows(2)
        .filter(|w| w[0].server != w[1].server && w[1].first < secs(seconds))
        .map(|w| (w[0], w[1]))
        .collect();
    if scenario == WorldScenario::LeaseExpiry {
        match handovers.first() {
            None => violations
                .push("the standby never took zone 1 over: the lease did not expire".into()),
            Some((from, to)) => out.takeover = Some(to.first.saturating_sub(from.last)),
        }
    }
    out.max_tick_gap = Duration::from_micros(shared.max_gap_us.load(Ordering::SeqCst));
    if scenario.holders_stay() {
        for (from, to) in &handovers {
            violations.push(format!(
                "{} took zone 1 over from {} at {:?} although its holder was alive",
                to.server, from.server, to.first
            ));
        }
        let lost = shared.leases_lost.load(Ordering::SeqCst);
        if lost > 0 {
            violations.push(format!("{lost} zone lease(s) lost"));
        }
        // Until the orderly stop at the end of play.
        let until = (OUTAGE_FROM + OUTAGE_FOR + Duration::from_secs(5)).min(secs(seconds));
        let ends = shared.ends.lock().map(|e| e.clone()).unwrap_or_default();
        no_disconnects_during(&ends, OUTAGE_FROM, until, &mut violations);
        if out.max_tick_gap > MAX_TICK_GAP {
            violations.push(format!(
                "a tick stall: {:?} between two ticks (at most {MAX_TICK_GAP:?})",
                out.max_tick_gap
            ));
        }
    }
    out.violations = violations;
    out
}

/// The ownership invariants at one instant (between simulation steps, nothing moves).
fn observe(shared: &Shared, out: &mut WorldOutcome, violations: &mut Vec<String>) {
    out.observations += 1;
    let held = shared.held.lock().map(|h| h.clone()).unwrap_or_default();
    let ledger = shared
        .redis
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .map(|store| store.owners())
        .unwrap_or_default();
    let mut holder: BTreeMap<PlayerId, (ZoneId, String)> = BTreeMap::new();
    for (server, (zone, players)) in &held {
        for p in players {
            out.holdings_checked += 1;
            if let Some((z, s)) = holder.insert(*p, (*zone, server.clone())) {
                violations.push(format!(
                    "player {} held by zone {z} ({s}) and zone {zone} ({server}) at once",
                    p.0
                ));
            }
            if let Some(owner) = ledger.get(p)
                && owner.zone != *zone
            {
                violations.push(format!(
                    "player {} held by zone {zone} ({server}) but the ledger names zone {} (epoch {})",
                    p.0, owner.zone, owner.epoch
                ));
            }
        }
    }
}

fn check(
    shared: &Shared,
    rc: &WorldRunConfig,
    roaming: bool,
    violations: &mut Vec<String>,
    out: &mut WorldOutcome,
) {
    // No zone simulated by two servers at once.
    let tenures: Vec<Tenure> = shared
        .tenures
        .lock()
        .map(|t| t.values().cloned().collect())
        .unwrap_or_default();
    out.intervals = tenures.len();
    for zone in (1..=shared.zones()).map(ZoneId) {
        let mut of: Vec<&Tenure> = tenures.iter().filter(|t| t.zone == zone).collect();
        of.sort_by_key(|t| t.first);
        for w in of.windows(2) {
            if w[1].first <= w[0].last {
                violations.push(format!(
                    "zone {zone} simulated by {} (fence {}, until {:?}) and {} (fence {}, from {:?}) at once",
                    w[0].server, w[0].fence, w[0].last, w[1].server, w[1].fence, w[1].first
                ));
            }
            if w[1].fence <= w[0].fence {
                violations.push(format!("zone {zone}: fencing token did not grow"));
            }
        }
    }
    // Durable history of every server's disk.
    let disks: Vec<Arc<SimFs>> = shared
        .disks
        .lock()
        .map(|d| d.values().cloned().collect())
        .unwrap_or_default();
    let durable: Vec<Record> = disks
        .iter()
        .flat_map(|d| records_in(&d.history()))
        .collect();
    let Ok(cold) = shared.cold.lock() else {
        violations.push("cold data poisoned".into());
        return;
    };
    let combat = check_durable_combat(&durable, &cold, violations);
    out.events_checked = combat;
    // No state lost or rolled back: counters never decrease along a player's saves.
    let mut saves: BTreeMap<PlayerId, Vec<SaveRecord>> = BTreeMap::new();
    for r in &durable {
        if let Record::PlayerSave(s) = r {
            saves.entry(s.player).or_default().push(*s);
        }
    }
    for (player, list) in &mut saves {
        list.sort_by_key(|s| s.state.version);
        out.saves_checked += list.len();
        for w in list.windows(2) {
            let (a, b) = (w[0].state.stats, w[1].state.stats);
            let back = b.kills < a.kills
                || b.deaths < a.deaths
                || b.damage_dealt < a.damage_dealt
                || b.damage_taken < a.damage_taken
                || b.xp < a.xp;
            if back && violations.len() < 30 {
                violations.push(format!(
                    "player {}: rolled back from version {} (zone {}) to {} (zone {}): {a:?} -> {b:?}",
                    player.0, w[0].state.version, w[0].zone, w[1].state.version, w[1].zone
                ));
            }
        }
        if let Some(newest) = list.last() {
            match cold.saves.get(player) {
                Some(stored) if stored.state == newest.state => {}
                other => violations.push(format!(
                    "player {}: stored state {:?} is not the newest durable save {}",
                    player.0,
                    other.map(|s| s.state.version),
                    newest.state.version
                )),
            }
        }
    }
    if saves.len() < rc.bots as usize {
        violations.push(format!(
            "only {} of {} players have a durable save",
            saves.len(),
            rc.bots
        ));
    }
    let gap = shared.max_gap_us.load(Ordering::SeqCst);
    let limit = 2 * 1_000_000 / u64::from(TICK_HZ);
    if gap > limit {
        violations.push(format!(
            "a tick loop stalled: {gap} µs between ticks (limit {limit})"
        ));
    }
    let reports = shared.reports.lock().map(|r| r.clone()).unwrap_or_default();
    out.handoffs = reports.iter().map(|r| r.redirects).sum();
    out.handoff_ticks = reports
        .iter()
        .flat_map(|r| {
            r.handoff_ms
                .iter()
                .map(|ms| ms * u64::from(TICK_HZ) / 1_000)
        })
        .collect();
    out.handoff_ticks.sort_unstable();
    if out.handoffs == 0 && roaming && shared.zones() > 1 {
        violations.push("no player was handed over: the scenario checked nothing".into());
    }
    if combat == 0 {
        violations.push("no combat happened".into());
    }
}

/// The command that replays one seed of the world test named `test`.
pub fn replay_command(test: &str, seed: u64) -> String {
    format!("SIM_SEED={seed} cargo test -p sim-tests --test world -- --exact {test} --nocapture")
}

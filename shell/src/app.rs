//! Wiring for `zone-server run`: build the zones of the world this process simulates from a
//! [`Config`], open the stores and the spool (replaying what it holds), claim each zone's
//! lease, bind the sockets, start the admin endpoint, the flusher and optional demo bots, run
//! one tick loop per zone until a signal or a tick limit, shut down gracefully (players saved,
//! spool synced, flusher drained within the deadline). Tests call [`start`] or [`start_with`].
//!
//! One process, one spool, one flusher; per zone, its own UDP socket, tick loop, persistence
//! link (hot-store writer, loader, zone bus) and lease. A zone that loses its lease stops alone
//! (its players saved and disconnected); the others go on, and the process claims the lost
//! zone again once its lease is free, simulating it anew (`run_zone`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};
use zone_core::netcode::Key;
use zone_core::{Rules, Zone, ZoneId};

use std::time::Duration;

use crate::admin::neighbours::Neighbours;
use crate::admin::page::{Page, PageZone};
use crate::bots::{BotConfig, CrowdReport, run_crowd};
use crate::config::{Config, HostedZone};
use crate::effects::lease::{claim_lease, keep_lease, renew_period};
use crate::effects::{EffectLink, LinkConfig, Stores};
use crate::host::lanes::{Parallel, Sequential};
use crate::host::{HostConfig, ZoneHost};
use crate::keys::{private_key, random_bytes};
use crate::metrics::{Metrics, MetricsText, WorldMetrics};
use crate::persist::embedded_cold::SqliteStore;
use crate::persist::embedded_hot::MemoryHotStore;
use crate::persist::flusher::{Flusher, FlusherConfig};
use crate::persist::redis::RedisHotStore;
use crate::persist::spool::{Spool, SpoolConfig, SpoolStats};
use crate::persist::{ColdStore, HotStore};
use crate::pool::LanePool;
use crate::server::{LoopConfig, LoopSummary, Status, run_loop};
use crate::tokens::unix_ms;
use crate::world::WorldPlace;

/// One zone a running server simulates.
#[derive(Debug, Clone)]
pub struct ZoneRunning {
    /// The zone.
    pub zone: ZoneId,
    /// Where its UDP socket is bound.
    pub udp_addr: SocketAddr,
    /// Where its clients connect (written into connect tokens).
    pub public_address: SocketAddr,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
    /// Its loop status.
    pub status: Arc<Status>,
}

/// How one zone's loop ended.
#[derive(Debug)]
pub struct ZoneFinished {
    /// The zone.
    pub zone: ZoneId,
    /// What the loop reports.
    pub summary: LoopSummary,
    /// The host, for inspection.
    pub host: ZoneHost,
    /// Whether it ended without its lease: lost, and not claimed again before shutdown.
    pub lease_lost: bool,
    /// How many times its lease was lost while the server ran (each time the zone stopped
    /// and was simulated again once the lease was claimed back).
    pub leases_lost: u64,
    /// Releases the lease (cancelled once the spool has drained what it could).
    lease_release: CancellationToken,
    /// The lease keeper, joined once it released the lease (none when the lease was lost).
    lease_keeper: Option<tokio::task::JoinHandle<()>>,
}

/// How a server ended.
#[derive(Debug)]
pub struct Finished {
    /// Every zone, in the order they were started.
    pub zones: Vec<ZoneFinished>,
    /// The demo bots' report, if any ran.
    pub bots: Option<CrowdReport>,
}

impl Finished {
    /// The first zone's summary and host (the only ones in a one-zone world).
    pub fn first(&self) -> Option<(&LoopSummary, &ZoneHost)> {
        self.zones.first().map(|z| (&z.summary, &z.host))
    }
}

type ZoneTask = tokio::task::JoinHandle<anyhow::Result<ZoneFinished>>;

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// Where clients connect to the first zone (the bound UDP address).
    pub udp_addr: SocketAddr,
    /// Every zone simulated here.
    pub zones: Vec<ZoneRunning>,
    /// Where `/metrics`, `/healthz`, `/readyz` answer.
    pub admin_addr: SocketAddr,
    /// The first zone's metrics.
    pub metrics: Arc<Metrics>,
    /// The first zone's loop status.
    pub status: Arc<Status>,
    /// What `/metrics` shows (every zone's).
    pub export: Arc<dyn MetricsText>,
    /// The netcode private key (for minting tokens in tests and demo bots).
    pub private_key: Key,
    /// The protocol id.
    pub protocol_id: u64,
    /// Tick rate.
    pub tick_hz: u32,
    /// The spool's counters.
    pub spool_stats: Arc<SpoolStats>,
    /// The stores in use.
    pub stores: Stores,
    /// The one shutdown signal: every zone loop and the admin server stop on it.
    shutdown: CancellationToken,
    /// Every task the server spawned (zone loops, their workers and lease keepers, the
    /// flusher, the admin server), joined by [`Running::finish`].
    tracker: TaskTracker,
    /// How long stopping may take.
    deadline: Duration,
    task: tokio::task::JoinHandle<anyhow::Result<Vec<ZoneFinished>>>,
    bots: Option<tokio::task::JoinHandle<anyhow::Result<CrowdReport>>>,
    /// Stops the demo bots; sent only after the loops have finished, so that bots are
    /// disconnected by the server's shutdown rather than leaving on their own.
    bots_stop: watch::Sender<bool>,
    /// This server's identity, held (locked) while it runs.
    _identity: Arc<crate::identity::Identity>,
}

impl Running {
    /// Asks every loop to shut down gracefully.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A handle that shuts the server down when cancelled.
    pub fn stopper(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits for the loops (and demo bots) to finish. A zone whose lease was lost is not an
    /// error: it stopped alone and was claimed again when free (or was still waiting).
    pub async fn finish(self) -> anyhow::Result<Finished> {
        let zones = self.task.await.context("zone loops")??;
        for z in zones.iter().filter(|z| z.leases_lost > 0) {
            warn!(
                zone = %z.zone,
                leases_lost = z.leases_lost,
                held_at_end = !z.lease_lost,
                "this zone's lease was lost while the server ran (another server simulated it meanwhile)"
            );
        }
        self.shutdown.cancel();
        let _ = self.bots_stop.send(true);
        let bots = match self.bots {
            Some(b) => Some(b.await.context("bot task")??),
            None => None,
        };
        // Every task spawned is joined; what is still running at the deadline is reported.
        self.tracker.close();
        if tokio::time::timeout(self.deadline, self.tracker.wait())
            .await
            .is_err()
        {
            anyhow::bail!(
                "{} server task(s) still running {:?} after the loops stopped",
                self.tracker.len(),
                self.deadline
            );
        }
        Ok(Finished { zones, bots })
    }
}

/// Builds the first zone `config` describes.
pub fn build_zone(config: &Config) -> anyhow::Result<Zone> {
    let hosted = config.hosted_zones()?;
    let first = hosted.first().context("no zone to simulate")?;
    build_zone_of(config, first)
}

/// Builds one zone of the world `config` describes.
pub fn build_zone_of(config: &Config, hosted: &HostedZone) -> anyhow::Result<Zone> {
    let z = &config.zone;
    let grid = config.grid()?;
    let mut zone_config = grid
        .zone_config(hosted.zone, z.npcs)
        .with_context(|| format!("zone {} is not part of the world", hosted.zone))?;
    if let Some(path) = &z.rules_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading rules file {}", path.display()))?;
        zone_config.rules = Rules::from_toml_str(&text)
            .with_context(|| format!("rules file {}", path.display()))?;
    }
    let game = crate::game::game_of(&z.plugins).context("zone.plugins")?;
    Zone::with_game(zone_config, hosted.seed, &game)
        .with_context(|| format!("building zone {}", hosted.zone))
}

/// Opens the stores `config` names: Redis or the in-process hot store, ScyllaDB or the
/// SQLite file in `data_dir`.
pub async fn open_stores(config: &Config) -> anyhow::Result<Stores> {
    let st = &config.store;
    let timeout = Duration::from_millis(st.command_timeout_ms);
    let hot: Arc<dyn HotStore> =
        match &st.redis_url {
            Some(url) => Arc::new(RedisHotStore::connect(url, timeout).await.with_context(
                || format!("connecting to Redis at {}", crate::config::redact_url(url)),
            )?),
            None => Arc::new(MemoryHotStore::new()),
        };
    let cold: Arc<dyn ColdStore> =
        match &st.scylla_uri {
            Some(uri) => open_scylla(uri, &st.scylla_keyspace, timeout).await?,
            None => {
                crate::keys::create_private_dir(&config.data_dir)
                    .with_context(|| format!("creating data_dir {}", config.data_dir.display()))?;
                let path = config.data_dir.join("cold.sqlite");
                Arc::new(SqliteStore::open(&path).with_context(|| {
                    format!("opening the embedded cold store {}", path.display())
                })?)
            }
        };
    info!(hot = hot.name(), cold = cold.name(), "stores open");
    Ok(Stores { hot, cold })
}

async fn open_scylla(
    uri: &str,
    keyspace: &str,
    timeout: Duration,
) -> anyhow::Result<Arc<dyn ColdStore>> {
    let store = crate::persist::scylla::ScyllaStore::connect(uri, keyspace, timeout)
        .await
        .with_context(|| {
            format!("connecting to ScyllaDB at {uri} (keyspace {keyspace}; run `zone-server migrate` first)")
        })?;
    Ok(Arc::new(store))
}

/// `zone-server migrate`: applies `infra/scylla/schema.cql` (built into the binary) to the
/// configured cluster. Idempotent.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    config.validate()?;
    let st = &config.store;
    let Some(uri) = &st.scylla_uri else {
        anyhow::bail!(
            "migrate needs store.scylla_uri (--scylla-uri or ZONE_SCYLLA_URI); the embedded store creates its tables itself"
        );
    };
    let nodes: Vec<&str> = uri.split(',').map(str::trim).collect();
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(nodes)
        .connection_timeout(
            Duration::from_millis(st.command_timeout_ms).max(Duration::from_secs(5)),
        )
        .build()
        .await
        .with_context(|| format!("connecting to ScyllaDB at {uri}"))?;
    crate::persist::schema::migrate(&session, &st.scylla_keyspace, st.scylla_replication_factor)
        .await
        .context("applying the schema")?;
    info!(keyspace = %st.scylla_keyspace, "schema applied");
    Ok(())
}

/// Starts a server with the stores `config` names.
pub async fn start(config: Config, max_ticks: Option<u64>) -> anyhow::Result<Running> {
    config.validate()?;
    let stores = open_stores(&config).await?;
    start_with(config, max_ticks, stores).await
}

/// One zone, bound and leased, ready to run.
struct Prepared {
    hosted: HostedZone,
    zone: Option<Zone>,
    socket: crate::socket::batched::BatchedUdp,
    running: ZoneRunning,
    lease: crate::persist::Lease,
    /// The lease owner: the server's lasting identity and the zone's public address.
    owner: String,
    server_name: String,
}

/// Starts a server on the given stores, in named steps: check the configuration, open and
/// replay the spool (`open_spool`), claim every zone's lease and bind its socket
/// (`prepare_zones`), start the flusher, each zone's host, effects and loop (`start_zone`),
/// the admin endpoint, the task that stops persistence after the loops (`stop_persistence`)
/// and the demo bots (`start_demo_bots`).
pub async fn start_with(
    config: Config,
    max_ticks: Option<u64>,
    stores: Stores,
) -> anyhow::Result<Running> {
    config.validate()?;
    crate::keys::create_private_dir(&config.data_dir)
        .with_context(|| format!("creating data_dir {}", config.data_dir.display()))?;
    let (key, dev_key) = private_key(&config)?;
    if dev_key {
        warn!(path = %config.data_dir.join("dev-private.key").display(), "no net.private_key configured: using the development key file");
    }
    let admin = tokio::net::TcpListener::bind(config.admin.bind)
        .await
        .with_context(|| format!("binding admin HTTP {}", config.admin.bind))?;
    let admin_addr = admin.local_addr()?;
    let run = unix_ms();
    // Before the spool: a second process on this data_dir is refused here, by name.
    let identity = Arc::new(crate::identity::Identity::open(&config.data_dir)?);
    let (spool, recovery, spool_stats) = open_spool(&config)?;
    let (prepared, world_metrics) = prepare_zones(&config, &stores, &spool, &identity, run).await?;
    let first = prepared
        .first()
        .map(|p| p.running.clone())
        .context("no zone to simulate")?;
    let one_zone = prepared.len() == 1;
    // Process-wide metrics (spool, flusher): the zone's own in a one-zone process.
    let process_metrics = if one_zone {
        first.metrics.clone()
    } else {
        world_metrics.process().clone()
    };
    let export: Arc<dyn MetricsText> = if one_zone {
        first.metrics.clone()
    } else {
        Arc::new(world_metrics)
    };
    let tick_hz = prepared
        .first()
        .and_then(|p| p.zone.as_ref())
        .map_or(60, |z| z.rules().tick_hz);

    let page_metrics = process_metrics.clone();
    let tracker = TaskTracker::new();
    let flusher = Flusher::new(
        spool.clone(),
        stores.cold.clone(),
        FlusherConfig::new(
            &config.data_dir,
            config.store.flush_batch,
            Duration::from_millis(config.store.command_timeout_ms),
        ),
        process_metrics,
    );
    flusher.dead_letter_undecodable(&recovery.undecodable);
    let flusher_stop = CancellationToken::new();
    let drain = Duration::from_secs(config.shutdown_deadline_s) / 2;
    let flusher_task = tracker.spawn(flusher.run(flusher_stop.clone(), drain));

    let shutdown = CancellationToken::new();
    let statuses: Vec<(ZoneId, Arc<Status>)> = prepared
        .iter()
        .map(|p| (p.running.zone, p.running.status.clone()))
        .collect();
    let zones: Vec<ZoneRunning> = prepared.iter().map(|p| p.running.clone()).collect();
    let mut tasks: Vec<ZoneTask> = Vec::with_capacity(prepared.len());
    let config = Arc::new(config);
    let lane_threads = config.net.threads_per_zone(prepared.len());
    for p in prepared {
        let parts = ZoneParts {
            lane_threads,
            config: config.clone(),
            key: key.clone(),
            run,
            max_ticks,
            spool: spool.clone(),
            stores: stores.clone(),
            identity: identity.clone(),
            tracker: tracker.clone(),
        };
        tasks.push(start_zone(p, parts, &shutdown)?);
    }
    let page = world_page(
        &config,
        &zones,
        &identity,
        admin_addr,
        tick_hz,
        page_metrics,
    )?;
    if config.is_world() {
        // Links between the world pages of the servers sharing the world.
        let follow = crate::admin::neighbours::follow(
            stores.hot.clone(),
            page.clone(),
            crate::admin::neighbours::page_url(
                config.admin.public_url.as_deref(),
                admin_addr,
                first.public_address,
            ),
            Duration::from_millis(config.store.lease_ttl_ms),
            Duration::from_millis(config.store.command_timeout_ms),
        );
        let stop = shutdown.clone();
        tracker.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = follow => {}
            }
        });
    }
    tracker.spawn(crate::admin::serve(
        admin,
        crate::admin::router(export.clone(), statuses, Some(page)),
        shutdown.clone().cancelled_owned(),
    ));
    let task = tokio::spawn(stop_persistence(
        tasks,
        spool,
        flusher_stop,
        flusher_task,
        Duration::from_secs(config.shutdown_deadline_s),
    ));
    for z in &zones {
        info!(zone = %z.zone, udp = %z.udp_addr, public = %z.public_address, "zone listening");
    }
    info!(admin = %admin_addr, tick_hz, zones = zones.len(), "zone server listening");
    let (bots_stop, bots) = start_demo_bots(&config, &zones, &key, tick_hz)?;
    Ok(Running {
        udp_addr: first.udp_addr,
        zones,
        admin_addr,
        metrics: first.metrics.clone(),
        status: first.status.clone(),
        export,
        private_key: key,
        protocol_id: config.net.protocol_id,
        tick_hz,
        spool_stats,
        stores,
        shutdown,
        tracker,
        deadline: Duration::from_secs(config.shutdown_deadline_s),
        task,
        bots,
        bots_stop,
        _identity: identity,
    })
}

/// The world page over the zones simulated here (see [`crate::admin::page`]).
fn world_page(
    config: &Config,
    zones: &[ZoneRunning],
    identity: &crate::identity::Identity,
    admin_addr: SocketAddr,
    tick_hz: u32,
    process: Arc<Metrics>,
) -> anyhow::Result<Arc<Page>> {
    Ok(Arc::new(Page::new(
        format!("{} (admin {admin_addr})", identity.id()),
        tick_hz,
        config.grid()?,
        zones
            .iter()
            .map(|z| PageZone {
                zone: z.zone,
                status: z.status.clone(),
                metrics: z.metrics.clone(),
                public_address: z.public_address,
            })
            .collect(),
        process,
        Neighbours::default(),
    )))
}

/// Opens the spool in `data_dir/spool`, recovering what it holds (replayed by the flusher).
fn open_spool(
    config: &Config,
) -> anyhow::Result<(Spool, crate::persist::spool::Recovery, Arc<SpoolStats>)> {
    let st = &config.store;
    let spool_stats = Arc::new(SpoolStats::default());
    let spool_dir = config.data_dir.join("spool");
    let (spool, recovery) = Spool::open(
        SpoolConfig::new(
            spool_dir.clone(),
            Duration::from_millis(st.group_commit_ms),
            st.spool_max_bytes,
        ),
        spool_stats.clone(),
    )
    .with_context(|| format!("opening the spool in {}", spool_dir.display()))?;
    if !recovery.records.is_empty() || recovery.corrupt_frames > 0 || recovery.torn_tails > 0 {
        info!(
            records = recovery.records.len(),
            undecodable = recovery.undecodable.len(),
            corrupt_frames = recovery.corrupt_frames,
            torn_tails = recovery.torn_tails,
            "spool recovered; replaying to the cold store"
        );
    }
    Ok((spool, recovery, spool_stats))
}

/// Builds every zone this process hosts, binds its UDP socket and claims its lease (with a
/// fence floor from the spool), in configuration order.
async fn prepare_zones(
    config: &Config,
    stores: &Stores,
    spool: &Spool,
    identity: &crate::identity::Identity,
    run: u64,
) -> anyhow::Result<(Vec<Prepared>, WorldMetrics)> {
    let hosted = config.hosted_zones()?;
    let one_zone = hosted.len() == 1;
    let mut world_metrics = WorldMetrics::default();
    let lease_ttl = Duration::from_millis(config.store.lease_ttl_ms);
    let mut prepared = Vec::with_capacity(hosted.len());
    for h in &hosted {
        let zone = build_zone_of(config, h)?;
        let (socket, granted) = crate::socket::bind_udp(h.bind, config.net.recv_buffer_bytes)
            .with_context(|| format!("binding UDP {} for zone {}", h.bind, h.zone))?;
        let asked = config.net.recv_buffer_bytes;
        if asked > 0 && granted < asked {
            warn!(
                zone = %h.zone,
                asked,
                granted,
                "the kernel granted a smaller UDP receive buffer than net.recv_buffer_bytes; raise net.core.rmem_max (sysctl) or datagrams are lost under load"
            );
        }
        let udp_addr = crate::socket::DatagramSocket::local_addr(&socket)?;
        let public_address = match config.net.public_address {
            Some(p) if p.port() != 0 => h.public_address,
            _ => udp_addr,
        };
        let metrics = if one_zone {
            Arc::new(Metrics::new())
        } else {
            world_metrics.add_zone(h.zone)
        };
        let server_name = format!("{public_address}/{run}");
        // The lease names the server's lasting identity: a restarted server takes back its
        // own lease at once instead of waiting for it to expire.
        let owner = format!("{}@{public_address}", identity.id());
        let lease = claim_lease(
            stores,
            h.zone,
            &owner,
            lease_ttl,
            lease_ttl * 2,
            spool.max_fence(h.zone).max(identity.last_fence(h.zone)),
        )
        .await?;
        if let Err(e) = identity.remember_fence(h.zone, lease.fence) {
            warn!(zone = %h.zone, error = %e, "could not remember the zone's fence in data_dir");
        }
        info!(zone = %h.zone, fence = lease.fence, %owner, "zone lease claimed");
        metrics.lease_held.set(1);
        prepared.push(Prepared {
            hosted: *h,
            zone: Some(zone),
            socket,
            running: ZoneRunning {
                zone: h.zone,
                udp_addr,
                public_address,
                metrics,
                status: Arc::new(Status {
                    held: true.into(),
                    ..Status::default()
                }),
            },
            lease,
            owner,
            server_name,
        });
    }
    Ok((prepared, world_metrics))
}

/// What every life of a zone is built from: the first one, and each after the zone's lease
/// was lost and claimed again.
struct ZoneParts {
    /// Threads the zone's packet lanes run on, its tick thread included.
    lane_threads: usize,
    config: Arc<Config>,
    key: Key,
    run: u64,
    max_ticks: Option<u64>,
    spool: Spool,
    stores: Stores,
    identity: Arc<crate::identity::Identity>,
    tracker: TaskTracker,
}

/// Builds the zone's first life (so that it ticks as soon as its thread runs) and runs its
/// lives (`run_zone`) on a thread of its own: the tick thread, one of the threads of the
/// zone's packet lanes ([`LanePool`]), driving its loop on the runtime's I/O and timers.
fn start_zone(
    mut p: Prepared,
    parts: ZoneParts,
    shutdown: &CancellationToken,
) -> anyhow::Result<ZoneTask> {
    let zone = p.zone.take().context("zone built once")?;
    let first = build_life(&parts, &p, zone, p.lease.fence)?;
    let tracker = parts.tracker.clone();
    let stop = shutdown.child_token();
    let runtime = tokio::runtime::Handle::current();
    let name = format!("zone-{}", p.hosted.zone.0);
    let (threads, id) = (parts.lane_threads, p.hosted.zone);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    // Ready as soon as start returns: the host is built and its socket bound; the loop starts
    // on the thread below at once.
    p.running.status.ready.store(true, Ordering::Release);
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let lanes: Arc<dyn Parallel> = match LanePool::on_this_thread(threads, &name) {
                Ok(pool) => Arc::new(pool),
                Err(e) => {
                    warn!(zone = %id, error = %e, "packet lanes run on the tick thread alone");
                    Arc::new(Sequential)
                }
            };
            info!(zone = %id, threads = lanes.width(), "zone tick thread started");
            let _ = done_tx.send(runtime.block_on(run_zone(p, parts, first, stop, lanes)));
        })
        .with_context(|| format!("starting the tick thread of zone {id}"))?;
    Ok(tracker.spawn(async move {
        done_rx
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("zone {id}'s tick thread ended abruptly")))
    }))
}

/// Builds the zone's host and effect link for one life under `fence`.
fn build_life(
    parts: &ZoneParts,
    p: &Prepared,
    zone: Zone,
    fence: u64,
) -> anyhow::Result<(ZoneHost, EffectLink)> {
    let (config, st) = (&parts.config, &parts.config.store);
    let grid = config.grid()?;
    let neighbours = if config.is_world() {
        grid.neighbours(p.hosted.zone).to_vec()
    } else {
        Vec::new()
    };
    let world = config.is_world().then(|| {
        let mut place = WorldPlace::new(grid, p.hosted.zone, p.running.public_address);
        place.ghost_margin = config.world.ghost_margin;
        place.handoff_timeout = Duration::from_millis(config.world.handoff_timeout_ms);
        place.token_expiry_s = config.net.token_expiry_s.min(30);
        place.token_timeout_s = config.net.timeout_s;
        place
    });
    let host_config = HostConfig {
        protocol_id: config.net.protocol_id,
        public_addresses: vec![p.running.public_address],
        max_clients: config.net.max_clients,
        max_packets_per_client_tick: config.net.max_packets_per_client_tick,
        run: parts.run,
        fence,
        global_sequence_random: random_bytes()?,
        world,
        snapshot_interval: config.net.snapshot_interval(zone.rules().tick_hz)?,
    };
    let host = ZoneHost::new(
        zone,
        &host_config,
        parts.key.clone(),
        Key::from_bytes(random_bytes()?),
    )?;
    let link = EffectLink::start(
        parts.spool.clone(),
        &parts.stores,
        &LinkConfig {
            zone: p.hosted.zone,
            server: p.server_name.clone(),
            hot_ttl: Duration::from_secs(st.hot_ttl_s),
            position_flush: Duration::from_millis(st.position_flush_ms),
            timeout: Duration::from_millis(st.command_timeout_ms),
            world: config.is_world(),
            neighbours,
            token_key: parts.key.clone(),
            run: parts.run,
        },
        p.running.metrics.clone(),
    );
    Ok((host, link))
}

/// After every zone loop ended: makes the spool durable (a third of the deadline), lets the
/// flusher drain what it can (half of it), releases the leases, closes the spool (a tenth).
/// Fails when records could not be made durable or a zone failed.
async fn stop_persistence(
    tasks: Vec<ZoneTask>,
    spool: Spool,
    flusher_stop: CancellationToken,
    flusher_task: tokio::task::JoinHandle<()>,
    shutdown_deadline: Duration,
) -> anyhow::Result<Vec<ZoneFinished>> {
    let mut finished = Vec::with_capacity(tasks.len());
    let mut failure = None;
    for t in tasks {
        match t.await {
            Ok(Ok(f)) => finished.push(f),
            Ok(Err(e)) => failure = Some(e),
            Err(e) => failure = Some(anyhow::anyhow!("zone task failed: {e}")),
        }
    }
    // Everything the loops produced is in the spool's buffer: make it durable (within a
    // third of the deadline), let the flusher drain what it can (half of it), then stop.
    let sync_spool = spool.clone();
    let not_durable =
        tokio::task::spawn_blocking(move || sync_spool.sync_within(shutdown_deadline / 3))
            .await
            .unwrap_or_default();
    if !not_durable.is_empty() {
        error!(
            records = not_durable.records,
            seqs = ?not_durable.seqs,
            players = ?not_durable.players,
            "the spool's disk refuses writes: these records are not durable yet (still retrying until the deadline)"
        );
    }
    flusher_stop.cancel();
    let _ = flusher_task.await;
    for f in &mut finished {
        f.lease_release.cancel();
        if let Some(keeper) = f.lease_keeper.as_mut() {
            let _ = keeper.await;
        }
    }
    let close_spool = spool.clone();
    let lost =
        tokio::task::spawn_blocking(move || close_spool.close_within(shutdown_deadline / 10))
            .await
            .unwrap_or_default();
    if !lost.is_empty() {
        error!(
            records = lost.records,
            seqs = ?lost.seqs,
            players = ?lost.players,
            "shutdown: could not make these records durable (the spool's disk refused writes); the players' newest saves are lost"
        );
        failure.get_or_insert(anyhow::anyhow!(
            "{} spooled records ({} player saves) could not be made durable",
            lost.records,
            lost.players.len()
        ));
    }
    info!(
        unflushed_records = spool
            .stats()
            .records
            .load(std::sync::atomic::Ordering::Relaxed),
        "persistence stopped; unflushed records stay in the spool for the next start"
    );
    match failure {
        Some(e) => Err(e),
        None => Ok(finished),
    }
}

/// The demo bots of `--bots N` (none by default), spread over the zones.
#[allow(
    clippy::type_complexity,
    reason = "a stop handle and an optional join handle"
)]
fn start_demo_bots(
    config: &Config,
    zones: &[ZoneRunning],
    key: &Key,
    tick_hz: u32,
) -> anyhow::Result<(
    watch::Sender<bool>,
    Option<tokio::task::JoinHandle<anyhow::Result<CrowdReport>>>,
)> {
    let grid = config.grid()?;
    let first = zones.first().context("no zone to simulate")?;
    let (bots_stop, bots_stop_rx) = watch::channel(false);
    let game_wire = crate::game::wire_of(&config.zone.plugins).context("zone.plugins")?;
    let bots = (config.bots > 0).then(|| {
        let bot_config = BotConfig {
            server: first.public_address,
            servers: zones.iter().map(|z| z.public_address).collect(),
            protocol_id: config.net.protocol_id,
            first_player: crate::bots::FIRST_BOT_PLAYER,
            count: config.bots,
            tick_hz,
            duration: None,
            seed: config.zone.seed,
            roam: config.is_world().then_some(grid),
            layout: None,
            stand: false,
            game: game_wire.clone(),
        };
        let (key, rx) = (key.clone(), bots_stop_rx.clone());
        tokio::spawn(async move { Ok(run_crowd(bot_config, &key, rx).await?) })
    });
    Ok((bots_stop, bots))
}

/// One zone's lives: simulate it while its lease is held; when the lease is lost (another
/// server took it, or it could not be renewed in time) stop alone (players saved and
/// disconnected), wait until the lease can be claimed again and simulate the zone anew. Ends
/// on the server's shutdown (or `max_ticks`).
async fn run_zone(
    p: Prepared,
    parts: ZoneParts,
    first: (ZoneHost, EffectLink),
    stop: CancellationToken,
    lanes: Arc<dyn Parallel>,
) -> anyhow::Result<ZoneFinished> {
    let zone = p.hosted.zone;
    let ttl = Duration::from_millis(parts.config.store.lease_ttl_ms);
    let mut lease = p.lease.clone();
    let mut leases_lost = 0;
    let mut first = Some(first);
    loop {
        let fence = lease.fence;
        let (mut host, link) = match first.take() {
            Some(life) => life,
            None => build_life(&parts, &p, build_zone_of(&parts.config, &p.hosted)?, fence)?,
        };
        host.set_parallel(lanes.clone());
        p.running.status.held.store(true, Ordering::Release);
        p.running.metrics.lease_held.set(1);
        let mut life = run_life(&p, &parts, host, link, lease, ttl, &stop).await;
        p.running.status.held.store(false, Ordering::Release);
        p.running.metrics.lease_held.set(0);
        if !life.lease_lost || stop.is_cancelled() {
            life.leases_lost = leases_lost + u64::from(life.lease_lost);
            return Ok(life);
        }
        leases_lost += 1;
        if let Some(keeper) = life.lease_keeper.take() {
            let _ = keeper.await;
        }
        error!(
            %zone,
            fence,
            "zone stopped: its lease was lost (players saved and disconnected); claiming it again when it is free"
        );
        match reclaim(&parts, &p, leases_lost, fence, ttl, &stop).await {
            Some(again) => lease = again,
            None => {
                life.leases_lost = leases_lost;
                return Ok(life);
            }
        }
    }
}

/// Claims a lost lease again once it is free (or the server shuts down: `None`), above the
/// fence it was lost under. The claim is made under a new owner name (`owner#N`, the N-th
/// loss): a lease lost by its deadline is never taken back as "our own", so a standby that saw
/// it run out ([`crate::effects::lease::STOPPED_BELOW`]) may rely on its holder having stopped.
async fn reclaim(
    parts: &ZoneParts,
    p: &Prepared,
    losses: u64,
    lost_fence: u64,
    ttl: Duration,
    stop: &CancellationToken,
) -> Option<crate::persist::Lease> {
    let zone = p.hosted.zone;
    let owner = format!("{}#{losses}", p.owner);
    loop {
        let floor = lost_fence
            .max(parts.spool.max_fence(zone))
            .max(parts.identity.last_fence(zone));
        let claimed = tokio::select! {
            () = stop.cancelled() => return None,
            c = claim_lease(&parts.stores, zone, &owner, ttl, ttl * 2, floor) => c,
        };
        match claimed {
            Ok(lease) => {
                if let Err(e) = parts.identity.remember_fence(zone, lease.fence) {
                    warn!(%zone, error = %e, "could not remember the zone's fence in data_dir");
                }
                info!(%zone, fence = lease.fence, %owner, "zone lease claimed again; simulating the zone");
                return Some(lease);
            }
            Err(e) => {
                info!(%zone, error = %e, "zone lease not claimable yet; trying again");
                tokio::select! {
                    () = stop.cancelled() => return None,
                    () = tokio::time::sleep(renew_period(ttl)) => {}
                }
            }
        }
    }
}

/// One life of a zone: keep its lease, run its loop until shutdown or the lease is lost.
async fn run_life(
    p: &Prepared,
    parts: &ZoneParts,
    mut host: ZoneHost,
    mut link: EffectLink,
    lease: crate::persist::Lease,
    ttl: Duration,
    stop: &CancellationToken,
) -> ZoneFinished {
    let zone = p.hosted.zone;
    let lease_lost = CancellationToken::new();
    let lease_release = CancellationToken::new();
    let (fence_tx, fence_rx) = watch::channel(lease.fence);
    link.follow_fence(fence_rx);
    {
        // A lease re-claimed by the keeper (after a wipe) is remembered in data_dir too, so a
        // restart knows it was the zone's last holder.
        let (mut fences, identity) = (fence_tx.subscribe(), parts.identity.clone());
        parts.tracker.spawn(async move {
            while fences.changed().await.is_ok() {
                let fence = *fences.borrow_and_update();
                let identity = identity.clone();
                // A durable write (fsync): off the tick loop's threads.
                let written =
                    tokio::task::spawn_blocking(move || identity.remember_fence(zone, fence)).await;
                if let Ok(Err(e)) = written {
                    warn!(%zone, error = %e, "could not remember the zone's fence in data_dir");
                }
            }
        });
    }
    let lease_keeper = parts.tracker.spawn(keep_lease(
        parts.stores.clone(),
        lease,
        fence_tx,
        ttl,
        Some(p.running.public_address.to_string()),
        p.running.metrics.clone(),
        lease_lost.clone(),
        lease_release.clone(),
    ));
    // This life ends on the server's shutdown or on losing the lease (a zone is never
    // simulated by two servers).
    let life = stop.child_token();
    {
        let (life, lost) = (life.clone(), lease_lost.clone());
        parts.tracker.spawn(async move {
            tokio::select! {
                () = life.cancelled() => {}
                () = lost.cancelled() => life.cancel(),
            }
        });
    }
    let loop_config = LoopConfig {
        tick_hz: host.zone().rules().tick_hz,
        max_catch_up: parts.config.max_catch_up_ticks,
        max_ticks: parts.max_ticks,
    };
    let summary = run_loop(
        &mut host,
        &p.socket,
        &mut link,
        loop_config,
        &p.running.metrics,
        &p.running.status,
        life.clone(),
    )
    .await;
    life.cancel();
    // The last hot-store writes and bus messages of the final pump, within a bounded wait.
    let unfinished = link.close(Duration::from_secs(2)).await;
    if unfinished > 0 {
        warn!(
            %zone,
            unfinished, "zone workers did not finish their last work in time"
        );
    }
    ZoneFinished {
        zone,
        summary,
        host,
        lease_lost: lease_lost.is_cancelled(),
        leases_lost: 0,
        lease_release,
        lease_keeper: Some(lease_keeper),
    }
}

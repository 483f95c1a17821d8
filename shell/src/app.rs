//! Wiring for `zone-server run`: build the zone and host from a [`Config`], open the stores
//! and the spool (replaying what it holds), claim the zone lease, bind the sockets, start the
//! admin endpoint, the flusher and optional demo bots, run the loop until a signal or a tick
//! limit, shut down gracefully (players saved, spool synced, flusher drained within the
//! deadline). Tests call [`start`] or [`start_with`] directly.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use tracing::{info, warn};
use zone_core::netcode::Key;
use zone_core::{Rules, Zone, ZoneConfig, ZoneId};

use std::time::Duration;

use crate::bots::{BotConfig, CrowdReport, run_crowd};
use crate::config::Config;
use crate::host::{HostConfig, ZoneHost};
use crate::keys::{private_key, random_bytes};
use crate::metrics::Metrics;
use crate::persist::embedded_cold::SqliteStore;
use crate::persist::embedded_hot::MemoryHotStore;
use crate::persist::flusher::{FlushedSaves, Flusher, FlusherConfig};
use crate::persist::link::{LinkConfig, PersistLink, Stores, claim_lease, keep_lease};
use crate::persist::redis::RedisHotStore;
use crate::persist::spool::{Spool, SpoolConfig, SpoolStats};
use crate::persist::{ColdStore, HotStore};
use crate::server::{LoopConfig, LoopSummary, Status, run_loop};
use crate::tokens::unix_ms;

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// Where clients connect (the bound UDP address).
    pub udp_addr: SocketAddr,
    /// Where `/metrics`, `/healthz`, `/readyz` answer.
    pub admin_addr: SocketAddr,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Loop status.
    pub status: Arc<Status>,
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
    shutdown: Arc<watch::Sender<bool>>,
    lease_lost: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<(LoopSummary, ZoneHost)>>,
    bots: Option<tokio::task::JoinHandle<anyhow::Result<CrowdReport>>>,
    /// Stops the demo bots; sent only after the loop has finished, so that bots are
    /// disconnected by the server's shutdown rather than leaving on their own.
    bots_stop: watch::Sender<bool>,
}

impl Running {
    /// Asks the loop to shut down gracefully.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// A handle that shuts the server down when `true` is sent.
    pub fn stopper(&self) -> Arc<watch::Sender<bool>> {
        self.shutdown.clone()
    }

    /// Waits for the loop (and demo bots) to finish. An error if the zone lease was lost.
    pub async fn finish(self) -> anyhow::Result<(LoopSummary, ZoneHost, Option<CrowdReport>)> {
        let (summary, host) = self.task.await.context("zone loop task")??;
        if *self.lease_lost.borrow() {
            anyhow::bail!("the zone lease was lost: stopped simulating (players saved)");
        }
        let _ = self.shutdown.send(true);
        let _ = self.bots_stop.send(true);
        let bots = match self.bots {
            Some(b) => Some(b.await.context("bot task")??),
            None => None,
        };
        Ok((summary, host, bots))
    }
}

/// Builds the zone described by `config`.
pub fn build_zone(config: &Config) -> anyhow::Result<Zone> {
    let z = &config.zone;
    let mut zone_config = ZoneConfig::arena(ZoneId(z.id), z.arena_size, z.arena_size, z.npcs);
    if let Some(path) = &z.rules_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading rules file {}", path.display()))?;
        zone_config.rules = Rules::from_toml_str(&text)
            .with_context(|| format!("rules file {}", path.display()))?;
    }
    Zone::new(zone_config, z.seed).context("building the zone")
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
                std::fs::create_dir_all(&config.data_dir)
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

/// Starts a server on the given stores: opens and replays the spool, claims the zone lease,
/// binds UDP and admin sockets, spawns the loop, the flusher (and demo bots).
pub async fn start_with(
    config: Config,
    max_ticks: Option<u64>,
    stores: Stores,
) -> anyhow::Result<Running> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data_dir {}", config.data_dir.display()))?;
    let zone = build_zone(&config)?;
    let tick_hz = zone.rules().tick_hz;
    let (key, dev_key) = private_key(&config)?;
    if dev_key {
        warn!(path = %config.data_dir.join("dev-private.key").display(), "no net.private_key configured: using the development key file");
    }
    let st = &config.store;
    let socket = tokio::net::UdpSocket::bind(config.net.bind)
        .await
        .with_context(|| format!("binding UDP {}", config.net.bind))?;
    let udp_addr = socket.local_addr()?;
    let public = config.net.public_address.unwrap_or(udp_addr);
    let admin = tokio::net::TcpListener::bind(config.admin.bind)
        .await
        .with_context(|| format!("binding admin HTTP {}", config.admin.bind))?;
    let admin_addr = admin.local_addr()?;
    let metrics = Arc::new(Metrics::new());
    let status = Arc::new(Status::default());

    let run = unix_ms();
    let server_name = format!("{public}/{run}");
    let lease_ttl = Duration::from_millis(st.lease_ttl_ms);
    let lease = claim_lease(
        &stores.hot,
        config.zone.id,
        &server_name,
        lease_ttl,
        lease_ttl * 2,
    )
    .await?;
    info!(
        zone = config.zone.id,
        fence = lease.fence,
        "zone lease claimed"
    );

    let spool_stats = Arc::new(SpoolStats::default());
    let spool_dir = config.data_dir.join("spool");
    let (spool, recovery) = Spool::open(
        SpoolConfig {
            dir: spool_dir.clone(),
            group_commit: Duration::from_millis(st.group_commit_ms),
            max_bytes: st.spool_max_bytes,
        },
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

    let host_config = HostConfig {
        protocol_id: config.net.protocol_id,
        public_addresses: vec![public],
        max_clients: config.net.max_clients,
        max_packets_per_client_tick: config.net.max_packets_per_client_tick,
        run,
        fence: lease.fence,
        global_sequence_random: random_bytes()?,
    };
    let mut host = ZoneHost::new(
        zone,
        &host_config,
        key.clone(),
        Key::from_bytes(random_bytes()?),
        metrics.clone(),
    )?;
    host.recover_saves(recovery.records.iter().map(|(_, r)| r));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shutdown_tx = Arc::new(shutdown_tx);
    let (lease_lost_tx, lease_lost) = watch::channel(false);
    let lease_lost_tx = Arc::new(lease_lost_tx);
    {
        // Losing the lease shuts the loop down: a zone is never simulated by two servers.
        let (mut lost, stop) = (lease_lost.clone(), shutdown_tx.clone());
        tokio::spawn(async move {
            if lost.wait_for(|l| *l).await.is_ok() {
                let _ = stop.send(true);
            }
        });
    }
    let (lease_stop_tx, lease_stop_rx) = watch::channel(false);
    tokio::spawn(keep_lease(
        stores.hot.clone(),
        lease,
        lease_ttl,
        metrics.clone(),
        lease_lost_tx,
        lease_stop_rx,
    ));

    let flushed: FlushedSaves = Arc::default();
    let timeout = Duration::from_millis(st.command_timeout_ms);
    let flusher = Flusher::new(
        spool.clone(),
        stores.cold.clone(),
        FlusherConfig::new(&config.data_dir, st.flush_batch, timeout),
        metrics.clone(),
        flushed.clone(),
    );
    flusher.dead_letter_undecodable(&recovery.undecodable);
    let (flusher_stop_tx, flusher_stop_rx) = watch::channel(false);
    let drain = Duration::from_secs(config.shutdown_deadline_s) / 2;
    let flusher_task = tokio::spawn(flusher.run(flusher_stop_rx, drain));
    let mut link = PersistLink::start(
        spool.clone(),
        &stores,
        &LinkConfig {
            zone: config.zone.id,
            server: server_name,
            hot_ttl: Duration::from_secs(st.hot_ttl_s),
            position_flush: Duration::from_millis(st.position_flush_ms),
            timeout,
        },
        flushed,
        metrics.clone(),
    );

    let admin_shutdown = {
        let mut rx = shutdown_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    tokio::spawn(crate::admin::serve(
        admin,
        metrics.clone(),
        status.clone(),
        admin_shutdown,
    ));

    let loop_config = LoopConfig {
        tick_hz,
        max_catch_up: config.max_catch_up_ticks,
        max_ticks,
    };
    let (m, s, rx) = (metrics.clone(), status.clone(), shutdown_rx.clone());
    let loop_spool = spool.clone();
    let task = tokio::spawn(async move {
        let summary = run_loop(&mut host, &socket, &mut link, loop_config, &m, &s, rx).await;
        // Everything the loop produced is in the spool's buffer: make it durable, let the
        // flusher drain what it can within the deadline, then stop.
        let sync_spool = loop_spool.clone();
        let _ = tokio::task::spawn_blocking(move || sync_spool.sync()).await;
        let _ = flusher_stop_tx.send(true);
        let _ = flusher_task.await;
        let _ = lease_stop_tx.send(true);
        let close_spool = loop_spool.clone();
        let _ = tokio::task::spawn_blocking(move || close_spool.close()).await;
        info!(
            unflushed_records = loop_spool
                .stats()
                .records
                .load(std::sync::atomic::Ordering::Relaxed),
            "persistence stopped; unflushed records stay in the spool for the next start"
        );
        Ok((summary, host))
    });
    info!(udp = %udp_addr, public = %public, admin = %admin_addr, tick_hz, "zone server listening");

    let (bots_stop, bots_stop_rx) = watch::channel(false);
    let bots = (config.bots > 0).then(|| {
        let bot_config = BotConfig {
            server: public,
            protocol_id: config.net.protocol_id,
            first_player: 1_000_000,
            count: config.bots,
            tick_hz,
            duration: None,
            seed: config.zone.seed,
        };
        let (key, rx) = (key.clone(), bots_stop_rx.clone());
        tokio::spawn(async move { run_crowd(bot_config, &key, rx).await })
    });
    Ok(Running {
        udp_addr,
        admin_addr,
        metrics,
        status,
        private_key: key,
        protocol_id: config.net.protocol_id,
        tick_hz,
        spool_stats,
        stores,
        shutdown: shutdown_tx,
        lease_lost,
        bots_stop,
        task,
        bots,
    })
}

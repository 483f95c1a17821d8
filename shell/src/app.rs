//! Wiring for `zone-server run`: build the zone and host from a [`Config`], bind the sockets,
//! start the admin endpoint and optional demo bots, run the loop until a signal or a tick
//! limit, shut down gracefully. Tests call [`start`] directly.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use tracing::{info, warn};
use zone_core::netcode::Key;
use zone_core::{Rules, Zone, ZoneConfig, ZoneId};

use crate::bots::{BotConfig, CrowdReport, run_crowd};
use crate::config::Config;
use crate::host::{HostConfig, ZoneHost};
use crate::keys::{private_key, random_bytes};
use crate::metrics::Metrics;
use crate::server::{LoopConfig, LoopSummary, Status, run_loop};

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
    shutdown: Arc<watch::Sender<bool>>,
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

    /// Waits for the loop (and demo bots) to finish.
    pub async fn finish(self) -> anyhow::Result<(LoopSummary, ZoneHost, Option<CrowdReport>)> {
        let (summary, host) = self.task.await.context("zone loop task")??;
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

/// Starts a server: binds UDP and admin sockets, spawns the loop (and demo bots).
pub async fn start(config: Config, max_ticks: Option<u64>) -> anyhow::Result<Running> {
    config.validate()?;
    let zone = build_zone(&config)?;
    let tick_hz = zone.rules().tick_hz;
    let (key, dev_key) = private_key(&config)?;
    if dev_key {
        warn!(path = %config.data_dir.join("dev-private.key").display(), "no net.private_key configured: using the development key file");
    }
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
    let host_config = HostConfig {
        protocol_id: config.net.protocol_id,
        public_addresses: vec![public],
        max_clients: config.net.max_clients,
        max_packets_per_client_tick: config.net.max_packets_per_client_tick,
    };
    let mut host = ZoneHost::new(
        zone,
        &host_config,
        key.clone(),
        Key::from_bytes(random_bytes()?),
        metrics.clone(),
    )?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

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
    let task = tokio::spawn(async move {
        let summary = run_loop(&mut host, &socket, loop_config, &m, &s, rx).await;
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
        shutdown: Arc::new(shutdown_tx),
        bots_stop,
        task,
        bots,
    })
}

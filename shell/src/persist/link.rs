//! The tick loop's side of persistence ([`PersistLink`]) and the workers behind it: the
//! hot-store writer, the player loader and the lease keeper. The loop only ever does
//! non-blocking things here: append to the spool's buffer, `try_send` to a bounded queue,
//! drain finished loads. Hot-store writes are a cache: when their queue is full they are
//! dropped and counted (the next refresh rewrites everything).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};
use zone_core::PlayerId;

use super::cold::{ColdStore, StoreError, StoredPlayer};
use super::flusher::FlushedSaves;
use super::hot::{HotStore, Lease, Session};
use super::record::Record;
use super::redis_keys;
use super::spool::{Spool, SpoolError};
use crate::host::{HotOp, LoadOutcome, ZoneHost};
use crate::metrics::{Metrics, Reason};

/// Hot-store operations queued at most.
const HOT_QUEUE: usize = 1_024;
/// Loads in flight at most.
const LOAD_QUEUE: usize = 4_096;
/// Joins allowed per player per minute (reconnect storms, token replays by a bot farm).
const JOINS_PER_MINUTE: u32 = 30;

/// The stores a server uses.
#[derive(Clone, Debug)]
pub struct Stores {
    /// Hot store.
    pub hot: Arc<dyn HotStore>,
    /// Cold store.
    pub cold: Arc<dyn ColdStore>,
}

/// Persistence settings the workers need.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// Zone id.
    pub zone: u32,
    /// This server's name (sessions, leases).
    pub server: String,
    /// Hot data expiry.
    pub hot_ttl: Duration,
    /// Position/presence refresh period.
    pub position_flush: Duration,
    /// Timeout of store calls.
    pub timeout: Duration,
}

/// What the loop holds.
#[derive(Debug)]
pub struct PersistLink {
    spool: Spool,
    hot_tx: mpsc::Sender<HotOp>,
    load_tx: mpsc::Sender<PlayerId>,
    loads: mpsc::Receiver<(PlayerId, LoadOutcome)>,
    flushed: FlushedSaves,
    metrics: Arc<Metrics>,
    position_flush: Duration,
    next_refresh: Instant,
    /// Reused between pumps (swapped with the host's), so pumping allocates nothing.
    records: Vec<Record>,
    ops: Vec<HotOp>,
}

impl PersistLink {
    /// Starts the hot writer and the loader; returns the loop's handle.
    pub fn start(
        spool: Spool,
        stores: &Stores,
        config: &LinkConfig,
        flushed: FlushedSaves,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (hot_tx, hot_rx) = mpsc::channel(HOT_QUEUE);
        let (load_tx, load_rx) = mpsc::channel(LOAD_QUEUE);
        let (done_tx, loads) = mpsc::channel(LOAD_QUEUE);
        tokio::spawn(hot_writer(
            stores.hot.clone(),
            config.clone(),
            hot_rx,
            metrics.clone(),
        ));
        tokio::spawn(loader(stores.clone(), config.timeout, load_rx, done_tx));
        Self {
            spool,
            hot_tx,
            load_tx,
            loads,
            flushed,
            metrics,
            position_flush: config.position_flush,
            next_refresh: Instant::now(),
            records: Vec::new(),
            ops: Vec::new(),
        }
    }

    /// Waits for the next finished load (for the loop's `select!`).
    pub async fn next_load(&mut self) -> Option<(PlayerId, LoadOutcome)> {
        self.loads.recv().await
    }

    /// Moves what the host produced to the spool and the workers. Never blocks.
    pub fn pump(&mut self, host: &mut ZoneHost) {
        host.swap_records(&mut self.records);
        for record in self.records.drain(..) {
            match self.spool.append(&record) {
                Ok(_) => {}
                Err(SpoolError::Full { .. }) => {
                    self.metrics
                        .spool_refused
                        .get_or_create(&Reason {
                            reason: record.kind().to_owned(),
                        })
                        .inc();
                }
                Err(e) => {
                    error!(error = %e, kind = record.kind(), "record not spooled");
                    self.metrics
                        .spool_refused
                        .get_or_create(&Reason {
                            reason: format!("{}_error", record.kind()),
                        })
                        .inc();
                }
            }
        }
        for player in host.take_load_requests() {
            if self.load_tx.try_send(player).is_err() {
                host.complete_load(player, LoadOutcome::Failed("load queue full".into()));
            }
        }
        host.swap_hot_ops(&mut self.ops);
        let now = Instant::now();
        if now >= self.next_refresh {
            self.next_refresh = now + self.position_flush;
            self.ops.push(HotOp::Refresh {
                positions: host.positions(),
            });
        }
        for op in self.ops.drain(..) {
            if self.hot_tx.try_send(op).is_err() {
                self.metrics
                    .hot_errors
                    .get_or_create(&Reason {
                        reason: "queue_full".into(),
                    })
                    .inc();
            }
        }
        let flushed: Vec<(PlayerId, u64)> = self
            .flushed
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default();
        if !flushed.is_empty() {
            host.flushed(&flushed);
        }
    }

    /// The last pump at shutdown: also rewrites presence and positions at once (empty, as
    /// everyone was saved and disconnected), so the hot store does not list departed players.
    pub fn final_pump(&mut self, host: &mut ZoneHost) {
        self.next_refresh = Instant::now();
        self.pump(host);
    }

    /// Whether the spool's disk budget is used up (the server then reports not ready).
    pub fn spool_full(&self) -> bool {
        self.spool.is_full()
    }
}

async fn hot_writer(
    hot: Arc<dyn HotStore>,
    config: LinkConfig,
    mut rx: mpsc::Receiver<HotOp>,
    metrics: Arc<Metrics>,
) {
    let count = |op: &str| {
        metrics
            .hot_errors
            .get_or_create(&Reason { reason: op.into() })
            .inc();
    };
    let mut failing = false;
    // Other zones and services follow who enters and leaves on the zone's channel.
    let channel = redis_keys::zone_channel(config.zone);
    while let Some(op) = rx.recv().await {
        let (name, result) = match &op {
            HotOp::Joined { player } => {
                let session = Session {
                    player: *player,
                    zone: config.zone,
                    server: config.server.clone(),
                };
                let mut r = hot.put_session(&session, config.hot_ttl).await;
                if r.is_ok() {
                    r = hot
                        .publish(&channel, format!("join {}", player.0).as_bytes())
                        .await;
                }
                ("session", r)
            }
            HotOp::Left { player, state } => {
                let mut r = hot.put_player_state(*player, state, config.hot_ttl).await;
                if r.is_ok() {
                    r = hot.drop_session(*player).await;
                }
                if r.is_ok() {
                    r = hot
                        .publish(&channel, format!("leave {}", player.0).as_bytes())
                        .await;
                }
                ("player_state", r)
            }
            HotOp::Refresh { positions } => {
                let players: Vec<PlayerId> = positions.iter().map(|p| p.player).collect();
                // Presence and positions are rewritten whole each period, so a wiped Redis
                // is repopulated within one period; sessions are refreshed with them.
                let mut r = hot
                    .set_presence(config.zone, &players, config.hot_ttl)
                    .await;
                if r.is_ok() {
                    r = hot
                        .flush_positions(config.zone, positions, config.hot_ttl)
                        .await;
                }
                if r.is_ok() {
                    let sessions: Vec<Session> = players
                        .iter()
                        .map(|player| Session {
                            player: *player,
                            zone: config.zone,
                            server: config.server.clone(),
                        })
                        .collect();
                    r = hot.put_sessions(&sessions, config.hot_ttl).await;
                }
                ("refresh", r)
            }
        };
        match result {
            Ok(()) => {
                if failing {
                    info!(store = hot.name(), "hot store writes recovered");
                    failing = false;
                }
            }
            Err(e) => {
                count(name);
                if !failing {
                    warn!(store = hot.name(), op = name, error = %e, "hot store write failed (cache only; will be rewritten)");
                    failing = true;
                }
            }
        }
    }
}

/// Loads a player: the newer of the hot and the cold copy; hot alone when the cold store is
/// down; a new character only when both stores answered and neither knows the player.
pub async fn load_player(stores: &Stores, player: PlayerId, timeout: Duration) -> LoadOutcome {
    if let Ok(false) = stores
        .hot
        .rate_limit(
            &format!("join:{}", player.0),
            JOINS_PER_MINUTE,
            Duration::from_secs(60),
        )
        .await
    {
        return LoadOutcome::Failed("join rate limit".into());
    }
    let hot = tokio::time::timeout(timeout, stores.hot.player_state(player));
    let cold = tokio::time::timeout(timeout, stores.cold.load_player(player));
    let (hot, cold) = tokio::join!(hot, cold);
    let hot = hot.unwrap_or(Err(StoreError::Timeout(timeout.as_millis() as u64)));
    let cold = cold.unwrap_or(Err(StoreError::Timeout(timeout.as_millis() as u64)));
    match (hot, cold) {
        (Ok(Some(h)), Ok(Some(c))) => {
            if h.version > c.state.version {
                LoadOutcome::Found {
                    stored: StoredPlayer {
                        state: h,
                        profile: c.profile,
                    },
                    source: "hot",
                }
            } else {
                LoadOutcome::Found {
                    stored: c,
                    source: "cold",
                }
            }
        }
        (Ok(None) | Err(_), Ok(Some(c))) => LoadOutcome::Found {
            stored: c,
            source: "cold",
        },
        (Ok(Some(h)), Ok(None) | Err(_)) => LoadOutcome::Found {
            stored: StoredPlayer {
                state: h,
                profile: None,
            },
            source: "hot",
        },
        (Ok(None), Ok(None)) | (Err(_), Ok(None)) => LoadOutcome::New,
        (_, Err(e)) => LoadOutcome::Failed(format!("cold store: {e}")),
    }
}

async fn loader(
    stores: Stores,
    timeout: Duration,
    mut rx: mpsc::Receiver<PlayerId>,
    done: mpsc::Sender<(PlayerId, LoadOutcome)>,
) {
    while let Some(player) = rx.recv().await {
        let (stores, done) = (stores.clone(), done.clone());
        tokio::spawn(async move {
            let outcome = load_player(&stores, player, timeout).await;
            debug!(player = player.0, ?outcome, "player load finished");
            let _ = done.send((player, outcome)).await;
        });
    }
}

/// Claims the zone's lease, retrying until `deadline` (a previous owner's lease may still be
/// running out after a crash).
pub async fn claim_lease(
    hot: &Arc<dyn HotStore>,
    zone: u32,
    owner: &str,
    ttl: Duration,
    deadline: Duration,
) -> anyhow::Result<Lease> {
    let until = Instant::now() + deadline;
    loop {
        match hot.acquire_lease(zone, owner, ttl, 0).await {
            Ok(Some(lease)) => return Ok(lease),
            Ok(None) if Instant::now() < until => {
                info!(zone, key = %redis_keys::lease(zone), "zone lease held by another server; waiting for it to expire");
            }
            Err(e) if Instant::now() < until => {
                warn!(zone, error = %e, "cannot reach the hot store to claim the zone lease; retrying");
            }
            Ok(None) => anyhow::bail!(
                "zone {zone} is held by another server (lease {}); not starting a second simulation",
                redis_keys::lease(zone)
            ),
            Err(e) => anyhow::bail!("cannot claim the lease of zone {zone}: {e}"),
        }
        tokio::time::sleep(ttl / 4).await;
    }
}

/// Renews `lease` every third of its lifetime. When it is lost (taken, or not renewable
/// before it expires) it counts the loss and sends `true` on `lost`: the server must stop
/// simulating the zone. When the lease key vanished without anyone else taking it (a Redis
/// restart without persistence), it is claimed again with a larger fencing token.
/// Returns when `stop` turns true (releasing the lease).
pub async fn keep_lease(
    hot: Arc<dyn HotStore>,
    mut lease: Lease,
    ttl: Duration,
    metrics: Arc<Metrics>,
    lost: Arc<watch::Sender<bool>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_renewed = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ttl / 3) => {}
            _ = stop.changed() => {
                if let Err(e) = hot.release_lease(&lease).await {
                    warn!(error = %e, "could not release the zone lease (it will expire)");
                }
                return;
            }
        }
        match hot.renew_lease(&lease, ttl).await {
            Ok(true) => last_renewed = Instant::now(),
            Ok(false) => {
                if let Ok(Some(again)) = hot
                    .acquire_lease(lease.zone, &lease.owner, ttl, lease.fence)
                    .await
                {
                    warn!(
                        zone = lease.zone,
                        old = lease.fence,
                        new = again.fence,
                        "zone lease vanished from the hot store (wiped?); claimed it again"
                    );
                    lease = again;
                    last_renewed = Instant::now();
                    continue;
                }
                metrics.leases_lost.inc();
                error!(
                    zone = lease.zone,
                    fence = lease.fence,
                    "zone lease lost to another owner; stopping the simulation"
                );
                let _ = lost.send(true);
                return;
            }
            Err(e) => {
                // Unknown: we may still hold it. Once it must have expired, act as if lost.
                if last_renewed.elapsed() >= ttl {
                    metrics.leases_lost.inc();
                    error!(zone = lease.zone, error = %e, "zone lease could not be renewed before expiry; stopping the simulation");
                    let _ = lost.send(true);
                    return;
                }
                warn!(zone = lease.zone, error = %e, "zone lease renewal failed; retrying");
            }
        }
    }
}

//! The tick loop's side of persistence ([`PersistLink`]) and the workers behind it: the
//! hot-store writer, the player loader (which also claims each joining player in the ownership
//! ledger), the claimer and the zone bus (publisher and subscriber) of a zone in a world, and
//! the lease keeper. The loop only ever does non-blocking things here: append to the spool's
//! buffer, `try_send` to a bounded queue, receive finished work. Hot-store writes are a cache:
//! when their queue is full they are dropped and counted (the next refresh rewrites
//! everything); so are bus messages (the bus tolerates loss).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};
use zone_core::PlayerId;

use super::cold::{ColdStore, StoreError, StoredPlayer};
use super::hot::{Claim, HotStore, Lease, Owner, Session};
use super::load_policy::{self, Choice};
use super::record::Record;
use super::redis_keys;
use super::spool::{Spool, SpoolError};
use crate::host::{BusOp, ClaimRequest, HotOp, LoadOutcome, LoadRequest, ZoneHost};
use crate::metrics::{Metrics, Reason};
use crate::world::bus::BusMessage;

/// Hot-store operations queued at most.
const HOT_QUEUE: usize = 1_024;
/// Loads queued at most.
const LOAD_QUEUE: usize = 4_096;
/// Loads running at once at most.
const LOADS_IN_FLIGHT: usize = 256;
/// Bus messages and claims queued at most.
const BUS_QUEUE: usize = 4_096;
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
    /// Hot data expiry (sessions, presence, the ownership ledger).
    pub hot_ttl: Duration,
    /// Position/presence refresh period.
    pub position_flush: Duration,
    /// Timeout of store calls.
    pub timeout: Duration,
    /// Whether the zone is part of a world: subscribe to its bus.
    pub world: bool,
}

/// Finished work of the workers, for the loop to hand to the host.
#[derive(Debug)]
pub enum StoreEvent {
    /// A player's state was loaded (and claimed).
    Loaded(PlayerId, LoadOutcome),
    /// The ownership ledger answered a claim.
    Claimed(ClaimRequest, Result<Claim, StoreError>),
    /// A message from another zone.
    Bus(BusMessage),
    /// The ledger names newer holders of players this zone simulates.
    Superseded(Vec<(PlayerId, Owner)>),
}

impl StoreEvent {
    /// Hands the event to the host; `now` is the loop's monotonic time.
    pub fn deliver(self, host: &mut ZoneHost, now: Duration) {
        match self {
            StoreEvent::Loaded(player, outcome) => host.complete_load(player, outcome),
            StoreEvent::Claimed(request, result) => host.complete_claim(now, request, result),
            StoreEvent::Bus(message) => host.handle_bus(now, message),
            StoreEvent::Superseded(players) => {
                for (player, owner) in players {
                    host.handle_superseded(player, owner);
                }
            }
        }
    }
}

/// What the loop holds.
#[derive(Debug)]
pub struct PersistLink {
    spool: Spool,
    hot_tx: mpsc::Sender<HotOp>,
    load_tx: mpsc::Sender<LoadRequest>,
    claim_tx: mpsc::Sender<ClaimRequest>,
    publish_tx: mpsc::Sender<(u32, Vec<u8>)>,
    events: mpsc::Receiver<StoreEvent>,
    fence: Option<watch::Receiver<u64>>,
    metrics: Arc<Metrics>,
    position_flush: Duration,
    next_refresh: Instant,
    /// Reused between pumps (swapped with the host's), so pumping allocates nothing.
    records: Vec<Record>,
    ops: Vec<HotOp>,
    bus_ops: Vec<BusOp>,
    /// The highest sequence number this link appended.
    appended: u64,
    /// Transfers waiting for the spool to make every record appended before them durable
    /// (the player's save among them): `(sequence, zone, message)`, oldest first.
    held_transfers: VecDeque<(u64, u32, Vec<u8>)>,
}

impl PersistLink {
    /// Starts the hot writer, the loader, the claimer and (in a world) the bus; returns the
    /// loop's handle.
    pub fn start(
        spool: Spool,
        stores: &Stores,
        config: &LinkConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (hot_tx, hot_rx) = mpsc::channel(HOT_QUEUE);
        let (load_tx, load_rx) = mpsc::channel(LOAD_QUEUE);
        let (claim_tx, claim_rx) = mpsc::channel(BUS_QUEUE);
        let (publish_tx, publish_rx) = mpsc::channel(BUS_QUEUE);
        let (events_tx, events) = mpsc::channel(LOAD_QUEUE + BUS_QUEUE);
        tokio::spawn(hot_writer(
            stores.hot.clone(),
            config.clone(),
            hot_rx,
            events_tx.clone(),
            metrics.clone(),
        ));
        tokio::spawn(loader(
            stores.clone(),
            spool.clone(),
            config.clone(),
            load_rx,
            events_tx.clone(),
            metrics.clone(),
        ));
        tokio::spawn(claimer(
            stores.hot.clone(),
            config.clone(),
            claim_rx,
            events_tx.clone(),
        ));
        tokio::spawn(publisher(stores.hot.clone(), publish_rx, metrics.clone()));
        if config.world {
            tokio::spawn(subscriber(
                stores.hot.clone(),
                config.zone,
                events_tx,
                metrics.clone(),
            ));
        }
        Self {
            spool,
            hot_tx,
            load_tx,
            claim_tx,
            publish_tx,
            events,
            fence: None,
            metrics,
            position_flush: config.position_flush,
            next_refresh: Instant::now(),
            records: Vec::new(),
            ops: Vec::new(),
            bus_ops: Vec::new(),
            appended: 0,
            held_transfers: VecDeque::new(),
        }
    }

    /// Follows the zone's fencing token (the lease keeper sends a new one after re-claiming
    /// a vanished lease); the host's writes carry it from the next pump.
    pub fn follow_fence(&mut self, fence: watch::Receiver<u64>) {
        self.fence = Some(fence);
    }

    /// Waits for the next finished piece of work (for the loop's `select!`).
    pub async fn next_event(&mut self) -> Option<StoreEvent> {
        self.events.recv().await
    }

    /// Moves what the host produced to the spool and the workers. Never blocks.
    pub fn pump(&mut self, host: &mut ZoneHost) {
        if let Some(rx) = self.fence.as_mut()
            && rx.has_changed().unwrap_or(false)
        {
            host.set_fence(*rx.borrow_and_update());
        }
        host.swap_records(&mut self.records);
        for record in self.records.drain(..) {
            match self.spool.append(&record) {
                Ok(seq) => self.appended = self.appended.max(seq),
                Err(SpoolError::Full { .. } | SpoolError::Unwritable) => {
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
        for request in host.take_load_requests() {
            if self.load_tx.try_send(request).is_err() {
                host.complete_load(
                    request.player,
                    LoadOutcome::Failed("load queue full".into()),
                );
            }
        }
        host.swap_bus_ops(&mut self.bus_ops);
        let durable = self.spool.durable_seq();
        while let Some((_, to, bytes)) = self
            .held_transfers
            .pop_front_if(|(seq, _, _)| *seq <= durable)
        {
            publish(&self.publish_tx, &self.metrics, to, bytes);
        }
        let mut refused_claims = Vec::new();
        for op in self.bus_ops.drain(..) {
            match op {
                // A player's state leaves the zone only once its save is durable here: a
                // crash after the transfer cannot roll the source back behind the target.
                BusOp::Publish { to, message }
                    if matches!(message, BusMessage::Transfer { .. })
                        && (self.appended > durable || !self.held_transfers.is_empty()) =>
                {
                    if self.held_transfers.len() < BUS_QUEUE {
                        self.held_transfers
                            .push_back((self.appended, to, message.encode()));
                    } else {
                        // The spool is not making anything durable: the handoff times out
                        // and the source recalls the player.
                        self.metrics
                            .bus_errors
                            .get_or_create(&Reason {
                                reason: "transfer_not_durable".into(),
                            })
                            .inc();
                    }
                }
                BusOp::Publish { to, message } => {
                    publish(&self.publish_tx, &self.metrics, to, message.encode());
                }
                BusOp::Claim(request) => {
                    if self.claim_tx.try_send(request).is_err() {
                        refused_claims.push(request);
                    }
                }
            }
        }
        for request in refused_claims {
            let busy = StoreError::Unavailable("claim queue full".into());
            host.complete_claim(Duration::ZERO, request, Err(busy));
        }
        host.swap_hot_ops(&mut self.ops);
        let now = Instant::now();
        if now >= self.next_refresh {
            self.next_refresh = now + self.position_flush;
            self.ops.push(HotOp::Refresh {
                positions: host.positions(),
                held: host.held(),
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
    }

    /// The last pump at shutdown: also rewrites presence and positions at once (empty, as
    /// everyone was saved and disconnected), so the hot store does not list departed players.
    pub fn final_pump(&mut self, host: &mut ZoneHost) {
        self.next_refresh = Instant::now();
        self.pump(host);
    }

    /// Whether the spool takes combat records: its disk budget is not used up and its disk
    /// takes writes (else the server reports not ready).
    pub fn spool_ready(&self) -> bool {
        !self.spool.is_full() && self.spool.is_writable()
    }
}

async fn hot_writer(
    hot: Arc<dyn HotStore>,
    config: LinkConfig,
    mut rx: mpsc::Receiver<HotOp>,
    events: mpsc::Sender<StoreEvent>,
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
            HotOp::Refresh { positions, held } => {
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
                // The ownership records live as long as the zone holds the players.
                if r.is_ok() {
                    r = match hot.keep_players(config.zone, held, config.hot_ttl).await {
                        Ok(superseded) if superseded.is_empty() => Ok(()),
                        Ok(superseded) => {
                            let _ = events.send(StoreEvent::Superseded(superseded)).await;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    };
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

/// Loads a player: reads the spool's newest unacknowledged save of them (first: a save
/// acknowledged after this read is in the cold store read after it), the hot and the cold
/// copy, and lets [`load_policy::choose`] pick (refusing the join when a store cannot answer).
/// Then claims them for `config.zone` in the ownership ledger, with the chosen state's epoch
/// as the floor: the state comes back under the new epoch. A join the ledger cannot confirm is
/// refused (two unconfirmed logins could tie on a version).
pub async fn load_player(
    stores: &Stores,
    spool: &Spool,
    config: &LinkConfig,
    request: LoadRequest,
    metrics: &Metrics,
) -> LoadOutcome {
    let player = request.player;
    let local = spool.newest_save(player);
    if local.is_none()
        && let Ok(false) = stores
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
    let timeout = config.timeout;
    let timed_out = || StoreError::Timeout(timeout.as_millis() as u64);
    let (hot, cold) = tokio::join!(
        tokio::time::timeout(timeout, stores.hot.player_state(player)),
        tokio::time::timeout(timeout, stores.cold.load_player(player)),
    );
    let choice = load_policy::choose(
        local,
        hot.unwrap_or_else(|_| Err(timed_out())),
        cold.unwrap_or_else(|_| Err(timed_out())),
    );
    let found = match choice {
        Choice::Refuse(why) => return LoadOutcome::Failed(why),
        Choice::New => None,
        Choice::Found { stored, source } => Some((stored, source)),
    };
    let floor = found.as_ref().map_or(0, |(s, _)| s.state.epoch());
    let claim = tokio::time::timeout(timeout, async {
        let before = stores.hot.player_owner(player).await.ok().flatten();
        let claim = stores
            .hot
            .claim_player(player, config.zone, None, floor, config.hot_ttl)
            .await;
        (before, claim)
    })
    .await;
    let epoch = match claim {
        Ok((before, Ok(Claim::Won(owner)))) => {
            count(metrics, "won");
            if let Some(old) = before.filter(|o| o.zone != config.zone) {
                // A login here while another zone held the player: that zone drops its copy
                // (and finds out by its ledger keep-alive if this message is lost).
                let evict = BusMessage::Evict {
                    from: config.zone,
                    to: old.zone,
                    player,
                    epoch: owner.epoch,
                };
                let _ = stores
                    .hot
                    .publish(&redis_keys::zone_bus(old.zone), &evict.encode())
                    .await;
            }
            owner.epoch
        }
        other => {
            count(metrics, "failed");
            debug!(player = player.0, result = ?other, "ownership ledger did not confirm the claim; join refused");
            return LoadOutcome::Failed("ownership ledger unavailable".into());
        }
    };
    match found {
        Some((stored, source)) => LoadOutcome::Found {
            stored: StoredPlayer {
                state: stored.state.claimed(epoch),
                profile: stored.profile,
            },
            source,
        },
        None => LoadOutcome::New { epoch },
    }
}

fn count(metrics: &Metrics, result: &str) {
    metrics
        .player_claims
        .get_or_create(&Reason {
            reason: result.into(),
        })
        .inc();
}

async fn loader(
    stores: Stores,
    spool: Spool,
    config: LinkConfig,
    mut rx: mpsc::Receiver<LoadRequest>,
    done: mpsc::Sender<StoreEvent>,
    metrics: Arc<Metrics>,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(LOADS_IN_FLIGHT));
    while let Some(request) = rx.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let (stores, spool, config, done, metrics) = (
            stores.clone(),
            spool.clone(),
            config.clone(),
            done.clone(),
            metrics.clone(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            let outcome = load_player(&stores, &spool, &config, request, &metrics).await;
            debug!(player = request.player.0, ?outcome, "player load finished");
            let _ = done.send(StoreEvent::Loaded(request.player, outcome)).await;
        });
    }
}

async fn claimer(
    hot: Arc<dyn HotStore>,
    config: LinkConfig,
    mut rx: mpsc::Receiver<ClaimRequest>,
    done: mpsc::Sender<StoreEvent>,
) {
    while let Some(request) = rx.recv().await {
        let (hot, config, done) = (hot.clone(), config.clone(), done.clone());
        tokio::spawn(async move {
            let result = tokio::time::timeout(
                config.timeout,
                hot.claim_player(
                    request.player,
                    config.zone,
                    request.expect,
                    request.floor,
                    config.hot_ttl,
                ),
            )
            .await
            .unwrap_or(Err(StoreError::Timeout(config.timeout.as_millis() as u64)));
            let _ = done.send(StoreEvent::Claimed(request, result)).await;
        });
    }
}

/// Queues one bus message for the publisher (counted and dropped when the queue is full:
/// handoffs resend, ghosts repeat).
fn publish(tx: &mpsc::Sender<(u32, Vec<u8>)>, metrics: &Metrics, to: u32, bytes: Vec<u8>) {
    if tx.try_send((to, bytes)).is_err() {
        metrics
            .bus_errors
            .get_or_create(&Reason {
                reason: "publish_queue_full".into(),
            })
            .inc();
    }
}

async fn publisher(
    hot: Arc<dyn HotStore>,
    mut rx: mpsc::Receiver<(u32, Vec<u8>)>,
    metrics: Arc<Metrics>,
) {
    let mut failing = false;
    while let Some((to, bytes)) = rx.recv().await {
        match hot.publish(&redis_keys::zone_bus(to), &bytes).await {
            Ok(()) => failing = false,
            Err(e) => {
                metrics
                    .bus_errors
                    .get_or_create(&Reason {
                        reason: "publish_failed".into(),
                    })
                    .inc();
                if !failing {
                    warn!(error = %e, to, "zone bus publish failed (handoffs retry, ghosts repeat)");
                    failing = true;
                }
            }
        }
    }
}

/// Follows the zone's bus channel, through store outages (resubscribing), and passes every
/// well-formed message on; anything else is counted and dropped.
async fn subscriber(
    hot: Arc<dyn HotStore>,
    zone: u32,
    events: mpsc::Sender<StoreEvent>,
    metrics: Arc<Metrics>,
) {
    let channel = redis_keys::zone_bus(zone);
    let drop = |why: &str| {
        metrics
            .bus_errors
            .get_or_create(&Reason { reason: why.into() })
            .inc();
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut rx = match hot.subscribe(&channel).await {
            Ok(rx) => {
                backoff = Duration::from_millis(50);
                rx
            }
            Err(e) => {
                debug!(error = %e, zone, "zone bus subscription failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        loop {
            match rx.recv().await {
                Ok(m) if m.channel == channel => match BusMessage::decode(&m.payload) {
                    Ok(message) => {
                        if events.send(StoreEvent::Bus(message)).await.is_err() {
                            return; // the loop is gone
                        }
                    }
                    Err(e) => drop(e.name()),
                },
                Ok(_) => {} // another channel of a shared subscription
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    for _ in 0..n.min(1_000) {
                        drop("lagged");
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// Claims the zone's lease, retrying until `deadline` (a previous owner's lease may still be
/// running out after a crash). The fence floor is durable: the largest of the cold store's
/// registered fence and `local_fence` (the spool's), so fences grow across a hot-store wipe.
/// When another holder was seen during the claim and the hot store is shared, the claimer
/// waits one lease lifetime (renewing) before simulating: a holder cut off by a wipe notices
/// at its next renewal and stops first. Then the fence is registered in the cold store, which
/// from then on rejects saves of the zone under older fences.
pub async fn claim_lease(
    stores: &Stores,
    zone: u32,
    owner: &str,
    ttl: Duration,
    deadline: Duration,
    local_fence: u64,
) -> anyhow::Result<Lease> {
    let (hot, cold) = (&stores.hot, &stores.cold);
    let until = Instant::now() + deadline;
    let mut floor = local_fence;
    let mut saw_holder = false;
    loop {
        let known = match cold.zone_fence(zone).await {
            Ok(f) => Some(f),
            Err(e) if Instant::now() < until => {
                warn!(zone, error = %e, "cannot read the zone's fence from the cold store; retrying");
                None
            }
            Err(e) => {
                anyhow::bail!("cannot read the fence of zone {zone} from the cold store: {e}")
            }
        };
        if let Some(known) = known {
            floor = floor.max(known);
            match hot.acquire_lease(zone, owner, ttl, floor).await {
                Ok(Some(lease)) => {
                    if saw_holder
                        && hot.name() != "embedded"
                        && !wait_out_previous(hot, &lease, ttl).await
                    {
                        saw_holder = true;
                        continue;
                    }
                    match cold
                        .register_fence(zone, lease.fence, crate::tokens::unix_ms())
                        .await
                    {
                        Ok(max) if max <= lease.fence => return Ok(lease),
                        Ok(max) => {
                            warn!(
                                zone,
                                fence = lease.fence,
                                registered = max,
                                "a larger fence is registered for the zone; claiming again above it"
                            );
                            floor = max;
                            let _ = hot.release_lease(&lease).await;
                        }
                        Err(e) => {
                            warn!(zone, error = %e, "cannot register the zone's fence in the cold store; retrying");
                            let _ = hot.release_lease(&lease).await;
                        }
                    }
                }
                Ok(None) if Instant::now() < until => {
                    saw_holder = true;
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
        }
        if Instant::now() >= until {
            anyhow::bail!("could not claim the lease of zone {zone} within {deadline:?}");
        }
        tokio::time::sleep(ttl / 4).await;
    }
}

/// Holds a just-acquired lease for one lifetime, renewing it, before the new holder starts:
/// whoever held the zone before has stopped by then. False when the lease was lost meanwhile.
async fn wait_out_previous(hot: &Arc<dyn HotStore>, lease: &Lease, ttl: Duration) -> bool {
    info!(zone = lease.zone, fence = lease.fence, wait = ?ttl, "zone lease taken over: waiting one lease lifetime so the previous holder has stopped");
    for _ in 0..3 {
        tokio::time::sleep(ttl / 3).await;
        if !matches!(hot.renew_lease(lease, ttl).await, Ok(true)) {
            return false;
        }
    }
    true
}

/// Renews `lease` every third of its lifetime (and republishes the zone's `address` with it).
/// The holder counts the lease valid only until `ttl` after it *sent* its last successful
/// renewal, and gives it up a sixth of `ttl` before that: the store expires it later still,
/// and nobody else can claim it before, so two holders never overlap. When it is lost (taken,
/// or not renewed in time) it counts the loss and sends `true` on `lost`: the server must stop
/// simulating the zone. When the lease key vanished without anyone else taking it (a Redis
/// restart without persistence), it is claimed again with a larger fencing token.
/// Returns when `stop` turns true (releasing the lease).
pub async fn keep_lease(
    stores: Stores,
    mut lease: Lease,
    fence: watch::Sender<u64>,
    ttl: Duration,
    address: Option<String>,
    metrics: Arc<Metrics>,
    lost: Arc<watch::Sender<bool>>,
    mut stop: watch::Receiver<bool>,
) {
    let hot = stores.hot.clone();
    let margin = ttl / 6;
    let mut valid_until = Instant::now() + ttl;
    let give_up = |lease: &Lease, why: &str| {
        metrics.leases_lost.inc();
        error!(
            zone = lease.zone,
            fence = lease.fence,
            why,
            "zone lease lost; stopping the simulation"
        );
        let _ = lost.send(true);
    };
    if let Some(a) = &address
        && let Err(e) = hot.set_zone_address(lease.zone, a, ttl).await
    {
        warn!(zone = lease.zone, error = %e, "could not publish the zone's address");
    }
    loop {
        let deadline = valid_until - margin;
        tokio::select! {
            _ = tokio::time::sleep(ttl / 3) => {}
            _ = tokio::time::sleep_until(deadline) => {
                give_up(&lease, "not renewed before expiry");
                return;
            }
            _ = stop.changed() => {
                if let Err(e) = hot.release_lease(&lease).await {
                    warn!(error = %e, "could not release the zone lease (it will expire)");
                }
                return;
            }
        }
        let sent = Instant::now();
        match tokio::time::timeout_at(deadline, hot.renew_lease(&lease, ttl)).await {
            Err(_) => {
                give_up(&lease, "renewal did not answer before expiry");
                return;
            }
            Ok(Ok(true)) => {
                valid_until = sent + ttl;
                if let Some(a) = &address {
                    let _ = hot.set_zone_address(lease.zone, a, ttl).await;
                }
            }
            Ok(Ok(false)) => {
                let floor = match stores.cold.zone_fence(lease.zone).await {
                    Ok(f) => f.max(lease.fence),
                    Err(_) => u64::MAX, // cannot know the floor: do not re-claim blind
                };
                let again = if floor == u64::MAX {
                    None
                } else {
                    hot.acquire_lease(lease.zone, &lease.owner, ttl, floor)
                        .await
                        .ok()
                        .flatten()
                };
                let registered = match &again {
                    Some(a) => stores
                        .cold
                        .register_fence(a.zone, a.fence, crate::tokens::unix_ms())
                        .await
                        .is_ok_and(|max| max <= a.fence),
                    None => false,
                };
                if let (Some(again), true) = (again, registered) {
                    warn!(
                        zone = lease.zone,
                        old = lease.fence,
                        new = again.fence,
                        "zone lease vanished from the hot store (wiped?); claimed it again"
                    );
                    lease = again;
                    let _ = fence.send(lease.fence);
                    valid_until = sent + ttl;
                    continue;
                }
                give_up(
                    &lease,
                    "taken by another owner (or vanished and not re-claimable)",
                );
                return;
            }
            Ok(Err(e)) => {
                // Unknown: we may still hold it; the deadline decides.
                warn!(zone = lease.zone, error = %e, "zone lease renewal failed; retrying");
            }
        }
    }
}

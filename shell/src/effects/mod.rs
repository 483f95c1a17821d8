//! What the host asks of the outside world ([`Effect`]) and the async code that does it. The
//! loop's [`EffectLink`] polls the host's effects after every input and carries each out
//! without blocking: records go into the spool's buffer, hot-store writes, loads, claims and
//! bus messages into bounded queues of their workers ([`hot`], [`load`], [`claim`], [`bus`]),
//! redirect tokens are minted at once ([`redirect`]). Finished work comes back as
//! [`StoreEvent`]s the loop hands to the host. The zone lease is kept beside it ([`lease`]).
//!
//! Hot-store writes are a cache: when their queue is full they are dropped and counted (the
//! next refresh rewrites everything); so are bus messages (the bus tolerates loss). Records
//! are never dropped silently: a record the spool refuses is counted by kind.

pub mod addresses;
pub mod bus;
pub mod claim;
pub mod hot;
pub mod lease;
pub mod load;
pub mod redirect;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::deadline::SaturatingAfter;
use tracing::error;
use zone_core::netcode::Key;
use zone_core::{PlayerId, ZoneId};

use crate::host::ZoneHost;
use crate::metrics::{Metrics, Reason};
use crate::persist::spool::{Spool, SpoolError};
use crate::persist::{Claim, ColdStore, HotStore, Owner, Record, StoreError};
use crate::tokens::MintError;
use crate::world::bus::BusMessage;
use crate::world::seal::{BusKey, Opener, Sealer};

pub use claim::{ClaimPurpose, ClaimRequest};
pub use hot::HotOp;
pub use load::{LoadOutcome, LoadRequest};
pub use redirect::RedirectRequest;

/// Hot-store operations queued at most.
const HOT_QUEUE: usize = 1_024;
/// Loads queued at most.
const LOAD_QUEUE: usize = 4_096;
/// Bus messages and claims queued at most.
const BUS_QUEUE: usize = 4_096;

/// Runs `job` for every request of `rx`, at most `limit` at once, until the queue closes; then
/// waits for the jobs still running. The bound covers what runs, the queue's what waits.
async fn run_bounded<R, F, Fut>(mut rx: mpsc::Receiver<R>, limit: usize, mut job: F)
where
    F: FnMut(R) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let in_flight = Arc::new(tokio::sync::Semaphore::new(limit));
    let mut running = tokio::task::JoinSet::new();
    while let Some(request) = rx.recv().await {
        while running.try_join_next().is_some() {}
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let work = job(request);
        running.spawn(async move {
            let _permit = permit;
            work.await;
        });
    }
    while running.join_next().await.is_some() {}
}

/// One thing the host needs done outside it, in the order it asked.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Make a record durable (the spool). The host numbers its records 1, 2, ... in this
    /// order; [`ZoneHost::handle_flushed`] answers up to which number they are settled.
    Spool(Record),
    /// Update the hot store.
    Hot(HotOp),
    /// Publish on zone `to`'s bus channel.
    Publish {
        /// The zone it is for.
        to: ZoneId,
        /// The message.
        message: BusMessage,
    },
    /// Load (and claim) a joining player; answered by [`ZoneHost::handle_loaded`].
    Load(LoadRequest),
    /// Claim a player conditionally; answered by [`ZoneHost::handle_claimed`].
    Claim(ClaimRequest),
    /// Mint a connect token for a redirect; answered by [`ZoneHost::handle_redirect_token`].
    Redirect(RedirectRequest),
}

/// The stores a server uses.
#[derive(Clone, Debug)]
pub struct Stores {
    /// Hot store.
    pub hot: Arc<dyn HotStore>,
    /// Cold store.
    pub cold: Arc<dyn ColdStore>,
}

/// What the workers need to know.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// Zone id.
    pub zone: ZoneId,
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
    /// The zones this one hands players to: redirects go only to the addresses they
    /// published ([`addresses`]).
    pub neighbours: Vec<ZoneId>,
    /// The netcode private key redirect tokens are signed with (and the bus key derived
    /// from: [`crate::world::seal`]).
    pub token_key: Key,
    /// This run of the zone (its start time, or any number larger than every earlier run's):
    /// orders its bus messages after those of its earlier runs.
    pub run: u64,
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
            StoreEvent::Loaded(player, outcome) => host.handle_loaded(player, outcome),
            StoreEvent::Claimed(request, result) => host.handle_claimed(now, request, result),
            StoreEvent::Bus(message) => host.handle_bus(now, message),
            StoreEvent::Superseded(players) => {
                for (player, owner) in players {
                    host.handle_superseded(player, owner);
                }
            }
        }
    }
}

/// The loop's side of the effects: the spool and the workers' queues.
#[derive(Debug)]
pub struct EffectLink {
    spool: Spool,
    hot_tx: mpsc::Sender<HotOp>,
    load_tx: mpsc::Sender<LoadRequest>,
    claim_tx: mpsc::Sender<ClaimRequest>,
    publish_tx: mpsc::Sender<(ZoneId, Vec<u8>)>,
    events: mpsc::Receiver<StoreEvent>,
    fence: Option<watch::Receiver<u64>>,
    metrics: Arc<Metrics>,
    token_key: Key,
    sealer: Arc<Sealer>,
    addresses: addresses::AddressBook,
    position_flush: Duration,
    next_refresh: Instant,
    /// The host's records polled so far (the host's numbering).
    records: u64,
    /// Records appended and not yet durable: `(host number, spool sequence)`, oldest first.
    pending: VecDeque<(u64, u64)>,
    /// The settled record number last told to the host.
    settled: u64,
    /// The loop's workers (joined at shutdown by [`EffectLink::close`]).
    workers: Vec<tokio::task::JoinHandle<()>>,
    /// The address book's refresher (aborted at shutdown).
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl EffectLink {
    /// Starts the hot writer, the loader, the claimer and (in a world) the bus; returns the
    /// loop's handle.
    pub fn start(
        spool: Spool,
        stores: &Stores,
        config: &LinkConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        // Up until a write says otherwise (the lease was just claimed from the same store).
        metrics.hot_store_up.set(1);
        let (hot_tx, hot_rx) = mpsc::channel(HOT_QUEUE);
        let (load_tx, load_rx) = mpsc::channel(LOAD_QUEUE);
        let (claim_tx, claim_rx) = mpsc::channel(BUS_QUEUE);
        let (publish_tx, publish_rx) = mpsc::channel(BUS_QUEUE);
        let (events_tx, events) = mpsc::channel(LOAD_QUEUE + BUS_QUEUE);
        let bus_key = BusKey::derive(&config.token_key);
        let sealer = Arc::new(Sealer::new(bus_key.clone(), config.zone, config.run));
        let mut workers = vec![
            tokio::spawn(hot::writer(
                stores.hot.clone(),
                config.clone(),
                hot_rx,
                events_tx.clone(),
                metrics.clone(),
            )),
            tokio::spawn(load::loader(
                stores.clone(),
                spool.clone(),
                config.clone(),
                sealer.clone(),
                load_rx,
                events_tx.clone(),
                metrics.clone(),
            )),
            tokio::spawn(claim::claimer(
                stores.hot.clone(),
                config.clone(),
                claim_rx,
                events_tx.clone(),
            )),
            tokio::spawn(bus::publisher(
                stores.hot.clone(),
                publish_rx,
                metrics.clone(),
            )),
        ];
        let book = addresses::AddressBook::default();
        let refresher = (!config.neighbours.is_empty()).then(|| {
            tokio::spawn(addresses::refresher(
                stores.hot.clone(),
                config.neighbours.clone(),
                config.timeout,
                book.clone(),
            ))
        });
        if config.world {
            workers.push(tokio::spawn(bus::subscriber(
                stores.hot.clone(),
                config.zone,
                Opener::new(bus_key),
                events_tx,
                metrics.clone(),
            )));
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
            token_key: config.token_key.clone(),
            sealer,
            addresses: book,
            position_flush: config.position_flush,
            next_refresh: Instant::now(),
            records: 0,
            pending: VecDeque::new(),
            settled: 0,
            workers,
            refresher,
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

    /// Carries out everything the host asked for since the last pump. Never blocks.
    pub fn pump(&mut self, host: &mut ZoneHost) {
        if let Some(rx) = self.fence.as_mut()
            && rx.has_changed().unwrap_or(false)
        {
            host.set_fence(*rx.borrow_and_update());
        }
        // Tell the host what became durable first: transfers held for it go out in this pump.
        self.settle(host);
        while let Some(effect) = host.poll_effect() {
            match effect {
                Effect::Spool(record) => self.spool(&record),
                Effect::Hot(op) => self.hot(op),
                Effect::Publish { to, message } => match self.sealer.seal(&message) {
                    Ok(bytes) => bus::publish(&self.publish_tx, &self.metrics, to, bytes),
                    Err(e) => {
                        error!(error = %e, to = to.0, "bus message not encodable; dropped");
                        self.count_bus(e.name());
                    }
                },
                Effect::Load(request) => {
                    if self.load_tx.try_send(request).is_err() {
                        host.handle_loaded(
                            request.player,
                            LoadOutcome::Failed(load::LoadFailure::QueueFull),
                        );
                    }
                }
                Effect::Claim(request) => {
                    if self.claim_tx.try_send(request).is_err() {
                        let busy = StoreError::Unavailable("claim queue full".into());
                        host.handle_claimed(Duration::ZERO, request, Err(busy));
                    }
                }
                Effect::Redirect(request) => {
                    let published = self.addresses.get(request.to);
                    let token = redirect::mint_checked(&request, published, &self.token_key);
                    if let Err(MintError::Unpublished { .. }) = &token {
                        self.count_bus("unpublished_address");
                    }
                    host.handle_redirect_token(request.player, token);
                }
            }
        }
        self.settle(host);
        let now = Instant::now();
        if now >= self.next_refresh {
            self.next_refresh = now + self.position_flush;
            self.hot(HotOp::Refresh {
                positions: host.positions(),
                held: host.held(),
            });
        }
    }

    fn spool(&mut self, record: &Record) {
        self.records += 1;
        match self.spool.append(record) {
            Ok(seq) => self.pending.push_back((self.records, seq)),
            Err(e) => {
                let reason = match e {
                    SpoolError::Full { .. } | SpoolError::Unwritable => record.kind().to_owned(),
                    e => {
                        error!(error = %e, kind = record.kind(), "record not spooled");
                        format!("{}_error", record.kind())
                    }
                };
                self.metrics
                    .spool_refused
                    .get_or_create(&Reason {
                        reason: reason.into(),
                    })
                    .inc();
            }
        }
    }

    /// Tells the host up to which of its records everything is settled: durable, or refused
    /// by the spool (and counted).
    fn settle(&mut self, host: &mut ZoneHost) {
        let durable = self.spool.durable_seq();
        while self.pending.front().is_some_and(|(_, seq)| *seq <= durable) {
            self.pending.pop_front();
        }
        let settled = self
            .pending
            .front()
            .map_or(self.records, |(number, _)| number - 1);
        if settled > self.settled {
            self.settled = settled;
            host.handle_flushed(settled);
        }
    }

    fn hot(&mut self, op: HotOp) {
        if self.hot_tx.try_send(op).is_err() {
            self.metrics
                .hot_errors
                .get_or_create(&Reason {
                    reason: "queue_full".into(),
                })
                .inc();
        }
    }

    fn count_bus(&self, reason: &'static str) {
        self.metrics
            .bus_errors
            .get_or_create(&Reason {
                reason: reason.into(),
            })
            .inc();
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

    /// Whether the zone's hot-store writes succeed (else logins that need the ownership
    /// ledger are refused: the zone is not ready for new players, though it plays on).
    pub fn hot_store_up(&self) -> bool {
        self.metrics.hot_store_up.get() == 1
    }

    /// Stops taking work and waits, until `deadline`, for the workers to finish what they
    /// were given (the last hot-store writes, the last bus messages). Returns how many did
    /// not finish in time (they are aborted).
    pub async fn close(self, deadline: Duration) -> usize {
        let Self {
            hot_tx,
            load_tx,
            claim_tx,
            publish_tx,
            events,
            workers,
            refresher,
            ..
        } = self;
        if let Some(r) = refresher {
            r.abort();
        }
        // Closing the queues ends the workers once they have drained them; closing the
        // events ends the subscriber.
        drop((hot_tx, load_tx, claim_tx, publish_tx, events));
        let until = Instant::now().saturating_after(deadline);
        let mut unfinished = 0;
        for mut worker in workers {
            if tokio::time::timeout_at(until, &mut worker).await.is_err() {
                worker.abort();
                unfinished += 1;
            }
        }
        unfinished
    }
}

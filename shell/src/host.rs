//! [`ZoneHost`]: one zone served over netcode.io, as a sans-IO state machine in the manner of
//! quinn-proto's `Connection`. It joins the zone, the replicator, the netcode server, the
//! players' [`presence`] and (in a world) the [`handoff`] machine. It reads no clock and no OS
//! randomness: time comes with every input, and what needs the outside world leaves as an
//! [`Effect`].
//!
//! The contract, in the order the loop calls it:
//! - **inputs** (`handle_*`): [`ZoneHost::handle_datagram`], [`ZoneHost::handle_bus`],
//!   [`ZoneHost::handle_loaded`], [`ZoneHost::handle_claimed`],
//!   [`ZoneHost::handle_redirect_token`], [`ZoneHost::handle_superseded`],
//!   [`ZoneHost::handle_flushed`]; and [`ZoneHost::tick`] at the fixed rate;
//! - **outputs**, drained after every input: [`ZoneHost::poll_effect`] until `None`, carrying
//!   out each effect in order (an effect's answer may be fed back at once, while draining),
//!   then [`ZoneHost::poll_transmit`] until `None`, sending each datagram;
//! - **queries** at any time: the zone, stats, positions, held players, the invariants.
//!
//! The host holds no metrics registry: it counts in [`HostStats`], which the loop exports
//! ([`crate::metrics::HostExport`]).
//!
//! Where a player is has one answer, their [`presence::Presence`]; the zone holds exactly the
//! players who are `Playing` or `Awaiting` ([`ZoneHost::check_invariants`], asserted after
//! every input in debug builds).

mod handoff;
pub mod lanes;
pub mod presence;
mod stats;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use tracing::{debug, info, warn};
use zone_core::netcode::{
    self, DisconnectReason, DropCounters, Key, PayloadTicket, ServerEvent, Transmit,
};
use zone_core::protocol::redirect_messages;
use zone_core::replication::{PacketError, ReplicationConfig, ReplicationMetrics, Replicator};
use zone_core::{InputError, PlayerId, PlayerState, Vec2, Zone, ZoneId};

use handoff::{Action, Handoffs};
pub use handoff::{HandoffEvent, HandoffStats};
use lanes::{Lane, Parallel, Sequential};
use presence::{Connect, Gone, InvariantError, Outgoing, Phase, Presence, Presences};
use stats::bump;
pub use stats::{HostDrop, HostStats, JoinSource, Label};

use crate::effects::redirect::RedirectToken;
use crate::effects::{Effect, HotOp, LoadOutcome, LoadRequest, RedirectRequest};
use crate::persist::load_policy::LoadSource;
use crate::persist::{
    Claim, CombatRecord, Owner, Position, ProfileRecord, Record, SaveRecord, StoreError,
};
use crate::tokens::{MintError, TokenRequest};
use crate::world::WorldPlace;
use crate::world::bus::BusMessage;

pub use crate::effects::{ClaimPurpose, ClaimRequest};

/// Why a host could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The netcode server refuses the configuration.
    #[error("netcode server: {0}")]
    Netcode(#[source] netcode::ConfigError),
    /// The world place names another zone than the zone served.
    #[error("the world place is zone {place} but the zone is {zone}")]
    WrongPlace {
        /// The place's zone.
        place: ZoneId,
        /// The zone's.
        zone: ZoneId,
    },
}

/// What a host needs besides the zone.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// netcode protocol id.
    pub protocol_id: u64,
    /// Addresses clients reach this server at.
    pub public_addresses: Vec<SocketAddr>,
    /// Most clients.
    pub max_clients: usize,
    /// Most packets one client may send per tick.
    pub max_packets_per_client_tick: u32,
    /// This server run's id (start time in unix ms): with the zone id and event id it keys
    /// combat events uniquely across restarts.
    pub run: u64,
    /// Fencing token of the zone lease held (0 without a lease).
    pub fence: u64,
    /// Fresh random bytes picking where the netcode global sequence starts this run.
    pub global_sequence_random: [u8; 8],
    /// The zone's place in a world of zones (borders, neighbours, handoffs); `None` for a
    /// zone that is a world of its own.
    pub world: Option<WorldPlace>,
    /// Ticks between two snapshots of a client (1: every tick).
    pub snapshot_interval: u32,
}

/// A zone, its replication, its netcode server and where its players are.
#[derive(Debug)]
pub struct ZoneHost {
    zone: Zone,
    rep: Replicator,
    net: netcode::Server,
    presences: Presences,
    packets_this_tick: Vec<u32>,
    /// Handoffs and ghosts (in a world of zones).
    world: Option<Handoffs>,
    /// The handoff machine's answer to the current input (reused).
    actions: Vec<Action>,
    effects: VecDeque<Effect>,
    protocol_id: u64,
    zone_id: ZoneId,
    run: u64,
    fence: u64,
    unix_ms: u64,
    /// Monotonic time of the last input (the host's clock for handoff timers).
    now: Duration,
    max_packets: u32,
    accepting: bool,
    /// Records asked for so far: the host's record numbers.
    records: u64,
    /// Records up to this number are settled (durable, or refused by the spool).
    flushed: u64,
    stats: HostStats,
    /// How long accepted handoffs waited, until the loop takes them.
    handoff_waits: Vec<Duration>,
    observer: Option<ObserverSlot>,
    /// Runs the lanes of the packet phase (one after the other unless given threads).
    parallel: std::sync::Arc<dyn Parallel>,
    lanes: Vec<Lane>,
    /// Each client's reserved packet sequence for this tick, in replicator order.
    tickets: Vec<Option<PayloadTicket>>,
    /// Lanes whose datagrams the loop has taken since the last tick.
    batches_taken: usize,
}

/// Called with the host after every tick, once this tick's handoffs have taken their players
/// out and the clients' packets are built (tests and simulations record the server's truth).
pub type TickObserver = Box<dyn FnMut(&ZoneHost) + Send>;

struct ObserverSlot(TickObserver);

impl std::fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TickObserver")
    }
}

impl ZoneHost {
    /// Serves `zone`. `challenge_key` must be fresh random bytes on every start.
    pub fn new(
        zone: Zone,
        config: &HostConfig,
        private_key: Key,
        challenge_key: Key,
    ) -> Result<Self, HostError> {
        let mut net_config = netcode::ServerConfig::new(
            config.protocol_id,
            private_key,
            config.max_clients,
            config.public_addresses.clone(),
        );
        // A random start per run: challenge nonces never repeat across restarts.
        net_config.global_sequence_start =
            netcode::random_global_sequence_start(config.global_sequence_random);
        let net = netcode::Server::new(net_config, challenge_key).map_err(HostError::Netcode)?;
        let rep = Replicator::for_zone(
            ReplicationConfig {
                snapshot_interval: config.snapshot_interval,
                ..ReplicationConfig::default()
            },
            &zone,
        );
        let zone_id = zone.zone_id();
        if let Some(place) = &config.world
            && place.zone != zone_id
        {
            return Err(HostError::WrongPlace {
                place: place.zone,
                zone: zone_id,
            });
        }
        Ok(Self {
            zone,
            rep,
            net,
            presences: Presences::new(config.max_clients),
            packets_this_tick: vec![0; config.max_clients],
            world: config.world.clone().map(Handoffs::new),
            actions: Vec::new(),
            effects: VecDeque::new(),
            protocol_id: config.protocol_id,
            zone_id,
            run: config.run,
            fence: config.fence,
            unix_ms: config.run,
            now: Duration::ZERO,
            max_packets: config.max_packets_per_client_tick,
            accepting: true,
            records: 0,
            flushed: 0,
            stats: HostStats::default(),
            handoff_waits: Vec::new(),
            observer: None,
            parallel: std::sync::Arc::new(Sequential),
            lanes: vec![Lane::default()],
            tickets: Vec::new(),
            batches_taken: 1,
        })
    }

    /// The replicator's counters (the loop exports them).
    pub fn replication_metrics(&self) -> &ReplicationMetrics {
        self.rep.metrics()
    }

    /// The zone.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// The record clients were sent of entity `id` at the last tick (its track, facing and
    /// health): what a client's view equals.
    pub fn replicated(&self, id: zone_core::EntityId) -> Option<&zone_core::protocol::NetEntity> {
        self.rep.record(id)
    }

    /// Where each player is.
    pub fn presences(&self) -> &Presences {
        &self.presences
    }

    /// Counters and gauges.
    pub fn stats(&self) -> &HostStats {
        &self.stats
    }

    /// netcode's counts of the datagrams it ignored.
    pub fn netcode_drops(&self) -> &DropCounters {
        self.net.drop_counters()
    }

    /// Connection requests denied so far because every client slot was taken.
    pub fn connections_denied(&self) -> u64 {
        self.net.denied_sent()
    }

    /// Hands over how long the handoffs accepted since the last call waited, by swapping
    /// with `buf` (which must be empty).
    pub fn swap_handoff_waits(&mut self, buf: &mut Vec<Duration>) {
        debug_assert!(buf.is_empty());
        std::mem::swap(&mut self.handoff_waits, buf);
    }

    /// Connected clients with a player.
    pub fn client_count(&self) -> usize {
        self.presences.connected()
    }

    /// Counters of this host's handoffs (all zero outside a world).
    pub fn handoff_stats(&self) -> HandoffStats {
        self.world
            .as_ref()
            .map_or_else(HandoffStats::default, |w| w.stats(&self.presences))
    }

    /// The neighbours' entities shown at this zone's borders as of the last tick (empty
    /// outside a world).
    pub fn ghosts(&self) -> &[zone_core::protocol::EntitySample] {
        self.world.as_ref().map_or(&[], |w| w.ghosts())
    }

    /// The zones this one heard from lately (ghost batches), in id order.
    pub fn live_neighbours(&self) -> Vec<ZoneId> {
        self.world
            .as_ref()
            .map_or_else(Vec::new, |w| w.live_neighbours(self.now))
    }

    /// The invariants between the presences, the zone and the client slots (see
    /// [`Presences::check`]).
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        self.presences.check(&self.zone)
    }

    /// After every input: the refusals the presences counted, and (debug builds) the
    /// invariants.
    #[track_caller]
    fn debug_check(&mut self) {
        self.stats.illegal_transitions = self.presences.illegal_transitions();
        #[cfg(debug_assertions)]
        if let Err(e) = self.check_invariants() {
            panic!("zone {} host invariant broken: {e}", self.zone_id.0);
        }
    }

    /// Next thing to do outside the host, in the order asked.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Next datagram to send: handshakes, keep-alives, disconnects (drain before
    /// [`ZoneHost::poll_batches`]).
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.net.poll_transmit()
    }

    /// The snapshot datagrams the last tick sealed, one batch per lane, each batch handed out
    /// once (empty until the next tick).
    pub fn poll_batches(&mut self) -> &[Lane] {
        let from = self.batches_taken.min(self.lanes.len());
        self.batches_taken = self.lanes.len();
        &self.lanes[from..]
    }

    /// Every datagram waiting to be sent, in order: the queue ([`ZoneHost::poll_transmit`]),
    /// then the sealed batches ([`ZoneHost::poll_batches`]). For callers that send
    /// synchronously (tests, simulations, benchmarks).
    pub fn drain_datagrams(&mut self, mut send: impl FnMut(Transmit<'_>)) {
        while let Some(t) = self.net.poll_transmit() {
            send(t);
        }
        for lane in self.poll_batches() {
            lane.datagrams().iter().for_each(&mut send);
        }
    }

    /// What the packet phase runs on (the loop sends the batches on it too).
    pub fn parallel(&self) -> std::sync::Arc<dyn Parallel> {
        self.parallel.clone()
    }

    /// Runs the packet phase of every tick on `parallel`: one lane per job it runs at once
    /// (at most [`lanes::MAX_LANES`]). The bytes are the same whatever the width.
    pub fn set_parallel(&mut self, parallel: std::sync::Arc<dyn Parallel>) {
        let width = parallel.width().clamp(1, lanes::MAX_LANES);
        self.lanes.resize_with(width, Lane::default);
        self.lanes.truncate(width);
        self.batches_taken = self.lanes.len();
        self.parallel = parallel;
    }

    /// Takes one datagram. `now` is monotonic time since the host's epoch; `unix_time` the
    /// wall clock in seconds (for connect-token expiry).
    pub fn handle_datagram(
        &mut self,
        now: Duration,
        unix_time: u64,
        from: SocketAddr,
        datagram: &mut [u8],
    ) {
        if !self.accepting && datagram.first() == Some(&0) {
            bump(&mut self.stats.dropped, HostDrop::ShuttingDown);
            return;
        }
        self.now = self.now.max(now);
        if let Some(event) = self.net.process(now, unix_time, from, datagram) {
            self.on_net_event(event);
        }
        self.drain_net_events();
    }

    /// The one place netcode's events are handled (from `process` and from `poll_event`).
    fn on_net_event(&mut self, event: ServerEvent<'_>) {
        match event {
            ServerEvent::Payload { client_index, data } => {
                let Some(player) = self.presences.player_of(client_index) else {
                    return;
                };
                let Some(count) = self.packets_this_tick.get_mut(client_index) else {
                    return;
                };
                *count += 1;
                if *count > self.max_packets {
                    bump(&mut self.stats.dropped, HostDrop::ClientRateLimit);
                    return;
                }
                match self.rep.handle_packet(&mut self.zone, player, data) {
                    Err(PacketError::Decode(e)) => bump(&mut self.stats.decode_errors, e.name()),
                    Err(PacketError::GameMismatch { client }) => {
                        // It cannot read what this zone sends about its plugins: it has been
                        // told (goodbye 3, and its own check of the server's game) and goes.
                        warn!(
                            player = player.0,
                            client_hash = client,
                            server_hash = self.zone.wire().protocol_hash(),
                            "client runs another game (plugins): disconnected"
                        );
                        let _ = self.net.disconnect(client_index);
                        self.drain_net_events();
                    }
                    Ok(()) | Err(PacketError::UnknownClient) => {}
                }
            }
            ServerEvent::ClientConnected {
                client_index,
                client_id,
                address,
                ..
            } => self.on_connect(client_index, PlayerId(client_id), address),
            ServerEvent::ClientDisconnected {
                client_index,
                reason,
                ..
            } => self.on_disconnect(client_index, reason),
        }
    }

    fn drain_net_events(&mut self) {
        while let Some(event) = self.net.poll_event() {
            self.on_net_event(event);
        }
    }

    fn on_connect(&mut self, client: usize, player: PlayerId, address: SocketAddr) {
        info!(player = player.0, %address, "client connected");
        self.stats.connects += 1;
        match self.presences.connect(player, client) {
            Connect::Load => self.effects.push_back(Effect::Load(LoadRequest { player })),
            Connect::Attach => {
                // Handed over (or taken back) while the client was away: the avatar awaited it.
                self.rep.connect(&self.zone, player);
                self.effects
                    .push_back(Effect::Hot(HotOp::Joined { player }));
                debug!(player = player.0, "client attached to its avatar");
            }
            Connect::Refuse(why) => {
                info!(player = player.0, why, "client refused");
                let _ = self.net.disconnect(client);
            }
        }
    }

    fn on_disconnect(&mut self, client: usize, why: DisconnectReason) {
        let gone = self.presences.disconnect(client);
        match gone {
            Gone::Playing(player) => {
                self.rep.disconnect(player);
                if let Some(state) = self.zone.leave(player) {
                    self.save(player, state);
                }
            }
            Gone::Leaving(player) => self.rep.disconnect(player),
            Gone::Loading(_) | Gone::Nobody => {}
        }
        bump(&mut self.stats.disconnects, why);
        if let Gone::Playing(p) | Gone::Leaving(p) | Gone::Loading(p) = gone {
            info!(player = p.0, reason = why.label(), "client disconnected");
        }
    }

    /// Disconnects a client whose slot the presences already released.
    fn drop_client(&mut self, player: PlayerId, client: usize) {
        self.rep.disconnect(player);
        let _ = self.net.disconnect(client);
        self.drain_net_events();
    }

    /// A load finished: join the player if their client is still here.
    pub fn handle_loaded(&mut self, player: PlayerId, outcome: LoadOutcome) {
        let Some(client) = self.presences.loading_client(player) else {
            return; // the client left meanwhile
        };
        let (source, state) = match outcome {
            LoadOutcome::Found { stored, source } => {
                if stored.profile.is_none() && source != LoadSource::Local {
                    self.new_profile(player);
                }
                (JoinSource::Stored(source), stored.state)
            }
            LoadOutcome::New { epoch } => {
                self.new_profile(player);
                (
                    JoinSource::New,
                    self.zone.new_character(player).claimed(epoch),
                )
            }
            LoadOutcome::Failed(why) => {
                bump(&mut self.stats.loads, JoinSource::Refused(why.refused()));
                warn!(player = player.0, %why, "player state could not be loaded; disconnecting");
                let _ = self.net.disconnect(client);
                self.drain_net_events();
                self.debug_check();
                return;
            }
        };
        bump(&mut self.stats.loads, source);
        match self.zone.join(player, state) {
            Ok(entity) => {
                self.presences.joined(player);
                self.rep.connect(&self.zone, player);
                self.effects
                    .push_back(Effect::Hot(HotOp::Joined { player }));
                debug!(
                    player = player.0,
                    entity = entity.0,
                    "player joined the zone"
                );
            }
            Err(e) => {
                warn!(player = player.0, error = %e, "join refused; disconnecting");
                let _ = self.net.disconnect(client);
                self.drain_net_events();
            }
        }
        self.debug_check();
    }

    fn new_profile(&mut self, player: PlayerId) {
        self.spool(Record::Profile(ProfileRecord {
            player,
            name: format!("player-{}", player.0),
            created_unix_ms: self.unix_ms,
        }));
    }

    /// Takes one message from another zone, received at `now`.
    pub fn handle_bus(&mut self, now: Duration, message: BusMessage) {
        self.now = self.now.max(now);
        if let Some(w) = self.world.as_mut() {
            w.bus(
                now,
                &self.zone,
                &mut self.presences,
                self.accepting,
                message,
                &mut self.actions,
            );
        }
        self.apply_actions();
        self.debug_check();
    }

    /// The ownership ledger answered a claim the host asked for.
    pub fn handle_claimed(
        &mut self,
        now: Duration,
        request: ClaimRequest,
        result: Result<Claim, StoreError>,
    ) {
        self.now = self.now.max(now);
        if let Some(w) = self.world.as_mut() {
            w.claimed(now, &mut self.presences, request, result, &mut self.actions);
        }
        self.apply_actions();
        self.debug_check();
    }

    /// The redirect token asked for by an [`Effect::Redirect`] was minted (or not).
    pub fn handle_redirect_token(
        &mut self,
        player: PlayerId,
        token: Result<RedirectToken, MintError>,
    ) {
        let redirecting = matches!(
            self.presences.get(player),
            Some(Presence::Leaving {
                client: Some(_),
                out: Outgoing {
                    phase: Phase::Redirecting { .. },
                    ..
                },
            })
        );
        if !redirecting {
            return; // the client left meanwhile
        }
        match token {
            Ok(t) => {
                let parts = redirect_messages(t.to, t.address, &t.token);
                let total = parts.len();
                let queued = parts
                    .into_iter()
                    .map(|m| self.rep.send_reliable(player, m))
                    .filter(|queued| *queued)
                    .count();
                if queued < total {
                    // Not even the control reserve had room: the client acknowledges nothing
                    // and will time out; the replication counters show `control_dropped`.
                    warn!(
                        player = player.0,
                        queued, total, "redirect did not fit the client's reliable queue"
                    );
                }
                debug!(player = player.0, to = t.to.0, address = %t.address, "client redirected");
            }
            Err(e) => {
                warn!(player = player.0, error = %e, "could not mint the redirect token; disconnecting the client");
                self.let_go(player);
            }
        }
        self.debug_check();
    }

    /// The ownership ledger names `owner`, not this zone, as the holder of a player this
    /// zone simulates (found by the ledger keep-alive; the eviction message may have been
    /// lost): the other holding is the newer one, so this copy goes, unsaved. Players on their
    /// way out are left to the handoff, which settles ownership itself.
    pub fn handle_superseded(&mut self, player: PlayerId, owner: Owner) {
        let Some(state) = self.zone.player_state(player) else {
            return;
        };
        let ours = state.epoch();
        let newer = owner.epoch > ours || (owner.epoch == ours && owner.zone != self.zone_id);
        if newer {
            self.evict_older(player, ours.max(owner.epoch) + 1);
        }
        self.debug_check();
    }

    /// Every record the host asked for up to number `through` is settled: durable in the
    /// spool (or refused by it, and counted). Transfers waiting for their saves go out.
    pub fn handle_flushed(&mut self, through: u64) {
        debug_assert!(
            through <= self.records,
            "flushed past the records asked for"
        );
        self.flushed = self.flushed.max(through.min(self.records));
        if let Some(w) = self.world.as_mut() {
            w.release(
                self.now,
                &mut self.presences,
                self.flushed,
                &mut self.actions,
            );
        }
        self.apply_actions();
    }

    /// Simulates one tick, runs the handoffs, replicates and queues every client's encrypted
    /// packet.
    pub fn tick(&mut self, now: Duration, unix_ms: u64) {
        self.unix_ms = unix_ms;
        self.now = self.now.max(now);
        let out = self.zone.tick();
        let m = out.metrics;
        let (zone, run, fence) = (self.zone_id, self.run, self.fence);
        for event in &out.combat_events {
            self.effects
                .push_back(Effect::Spool(Record::Combat(CombatRecord {
                    zone,
                    run,
                    unix_ms,
                    event: *event,
                })));
            self.records += 1;
        }
        for s in &out.player_saves {
            self.effects
                .push_back(Effect::Spool(Record::PlayerSave(SaveRecord {
                    zone,
                    player: s.player,
                    state: s.state,
                    fence,
                    unix_ms,
                })));
            self.records += 1;
        }
        self.stats.ticks += 1;
        self.stats.combat_events += out.combat_events.len() as u64;
        self.stats.inputs_late += u64::from(m.inputs_late);
        self.stats.lag_rewinds += u64::from(m.lag_rewinds);
        self.stats.entities = (m.players + m.npcs) as u64;
        for kind in InputError::ALL {
            if kind != InputError::Stale {
                self.stats.inputs_rejected[kind.index()] +=
                    u64::from(m.inputs_rejected[kind.index()]);
            }
        }
        // Handoffs first, so that an observer never sees a player who is on the way out.
        if let Some(w) = self.world.as_mut() {
            w.tick(now, &self.zone, &mut self.presences, &mut self.actions);
        }
        self.apply_actions();
        match self.world.as_mut() {
            Some(w) => {
                let zone = &self.zone;
                let ghosts = w.ghosts_for_replication(now, |p| zone.player_entity(p).is_some());
                self.stats.ghosts = ghosts.len() as u64;
                self.rep.prepare(zone, ghosts);
            }
            None => self.rep.prepare(&self.zone, &[]),
        }
        self.reserve_tickets();
        let unsealed = lanes::build_and_seal(
            &mut self.rep,
            &self.tickets,
            &mut self.lanes,
            &*self.parallel,
        );
        self.batches_taken = 0;
        if unsealed > 0 {
            *self.stats.dropped.entry(HostDrop::SendQueue).or_default() += unsealed;
        }
        if let Some(ObserverSlot(mut observe)) = self.observer.take() {
            observe(self);
            self.observer = Some(ObserverSlot(observe));
        }
        self.net.update(now);
        self.drain_net_events();
        self.packets_this_tick.iter_mut().for_each(|c| *c = 0);
        self.debug_check();
    }

    /// Reserves a packet sequence for each client due a snapshot this tick (its keep-alive
    /// first if it is not confirmed yet), in replicator order.
    fn reserve_tickets(&mut self) {
        self.tickets.clear();
        let (frame, links) = self.rep.split();
        for link in links.iter() {
            let client = frame
                .is_due(link)
                .then(|| self.presences.client_of(link.player()))
                .flatten();
            let ticket = client.and_then(|c| match self.net.reserve_payload(c) {
                Ok(t) => Some(t),
                Err(e) => {
                    debug!(player = link.player().0, error = %e, "payload not reserved");
                    None
                }
            });
            self.tickets.push(ticket);
        }
    }

    fn apply_actions(&mut self) {
        let mut actions = std::mem::take(&mut self.actions);
        for action in actions.drain(..) {
            self.apply(action);
        }
        debug_assert!(self.actions.is_empty(), "an action produced actions");
        self.actions = actions;
    }

    fn apply(&mut self, action: Action) {
        let now = self.now;
        match action {
            Action::Wall(player) => {
                self.zone.place_inside(player);
            }
            Action::HandOff {
                player,
                to,
                handoff,
            } => {
                let Some(state) = self.zone.leave(player) else {
                    debug_assert!(false, "player {} handed off but not in the zone", player.0);
                    return;
                };
                // Durable before it leaves: the transfer goes out once this save is (see
                // `handle_flushed`); whatever happens next, this state is not lost.
                let save = self.save(player, state);
                let timeout = self
                    .world
                    .as_ref()
                    .map_or(Duration::ZERO, |w| w.place().handoff_timeout);
                self.presences.hand_off(
                    player,
                    Outgoing {
                        handoff,
                        to,
                        state,
                        save,
                        crossed: now,
                        last_sent: None,
                        recall_at: now + timeout,
                        ledger_unreachable: false,
                        phase: Phase::Offered { recalling: false },
                    },
                );
            }
            Action::Publish { to, message } => {
                self.effects.push_back(Effect::Publish { to, message });
            }
            Action::Claim(request) => self.effects.push_back(Effect::Claim(request)),
            Action::StartClaim {
                incoming,
                player,
                request,
            } => {
                self.presences.claim(player, incoming);
                self.effects.push_back(Effect::Claim(request));
            }
            Action::Arrive { player, state } => {
                self.presences.claim_settled(player);
                // The player is ours from here: the state is spooled under our epoch at once.
                self.record_save(player, state);
                match self.zone.join(player, state) {
                    Ok(_) => {
                        self.presences.arrived(player, now + self.arrival_timeout());
                        self.effects
                            .push_back(Effect::Hot(HotOp::Joined { player }));
                    }
                    Err(e) => {
                        // Held but not simulated: the spooled save is what the next login loads.
                        warn!(player = player.0, error = %e, "handed-over player could not join; kept saved");
                    }
                }
            }
            Action::ClaimSettled(player) => {
                self.presences.claim_settled(player);
            }
            Action::Recall { player, epoch } => self.recall(player, epoch),
            Action::Redirect {
                player,
                to,
                address,
            } => {
                let (expiry_s, timeout_s) = self.world.as_ref().map_or((60, 10), |w| {
                    (w.place().token_expiry_s, w.place().token_timeout_s)
                });
                self.effects.push_back(Effect::Redirect(RedirectRequest {
                    player,
                    to,
                    address,
                    token: TokenRequest {
                        protocol_id: self.protocol_id,
                        client_id: player.0,
                        servers: vec![address],
                        expiry_s,
                        timeout_s,
                    },
                }));
            }
            Action::LetGo(player) => self.let_go(player),
            Action::Expire(player) => {
                self.presences.expired(player);
                if let Some(state) = self.zone.leave(player) {
                    self.save(player, state);
                }
            }
            Action::Evict { player, epoch } => self.evict_older(player, epoch),
            Action::Count(event, waited) => {
                if let Some(w) = waited {
                    self.handoff_waits.push(w);
                }
                bump(&mut self.stats.handoffs, event);
            }
        }
    }

    fn arrival_timeout(&self) -> Duration {
        self.world
            .as_ref()
            .map_or(Duration::ZERO, |w| w.place().arrival_timeout)
    }

    /// A `Leaving` player was taken back under `epoch`: back inside, saved under the epoch.
    fn recall(&mut self, player: PlayerId, epoch: u64) {
        let deadline = self.now + self.arrival_timeout();
        let Some(out) = self.presences.recalled(player, deadline) else {
            return;
        };
        let mut state = out.state.claimed(epoch);
        let radius = self.zone.rules().body_radius;
        let inside = self
            .zone
            .map()
            .clamp_inside(Vec2::new(state.x, state.y), radius + 0.05);
        (state.x, state.y) = (inside.x, inside.y);
        self.record_save(player, state);
        match (self.zone.join(player, state), self.presences.get(player)) {
            (Ok(_), Some(Presence::Playing { .. })) => {
                // The avatar is new: the client starts over with a new welcome.
                self.rep.disconnect(player);
                self.rep.connect(&self.zone, player);
            }
            (Ok(_), _) => {}
            (Err(e), presence) => {
                warn!(player = player.0, error = %e, "recalled player could not rejoin; kept saved");
                match presence {
                    Some(Presence::Playing { client }) => {
                        let client = *client;
                        let _ = self.net.disconnect(client);
                        self.drain_net_events();
                    }
                    _ => self.presences.expired(player),
                }
            }
        }
    }

    /// A `Leaving` player's handoff is over: forget them, let their client go.
    fn let_go(&mut self, player: PlayerId) {
        if !matches!(self.presences.get(player), Some(Presence::Leaving { .. })) {
            return; // already gone (its client left while the action was queued)
        }
        if let Some(client) = self.presences.let_go(player) {
            self.drop_client(player, client);
        }
    }

    /// Another zone took `player` over under `epoch` (a fresh login elsewhere): any copy held
    /// here under an older epoch goes, unsaved (its writes would sort below the new holder's
    /// anyway), and its client with it.
    fn evict_older(&mut self, player: PlayerId, epoch: u64) {
        let older = |s: &PlayerState| s.epoch() < epoch;
        let copy = match self.presences.get(player) {
            Some(Presence::Playing { .. } | Presence::Awaiting { .. }) => {
                self.zone.player_state(player).is_some_and(|s| older(&s))
            }
            Some(Presence::Leaving { out, .. }) => older(&out.state),
            _ => false,
        };
        if !copy {
            return;
        }
        info!(
            player = player.0,
            epoch, "player taken over by a login elsewhere; dropping our copy"
        );
        let client = self.presences.evicted(player);
        let _ = self.zone.leave(player);
        if let Some(client) = client {
            self.drop_client(player, client);
        }
        bump(&mut self.stats.handoffs, HandoffEvent::Evicted);
    }

    /// Everyone in the zone (with a client or awaiting one) with their position.
    pub fn positions(&self) -> Vec<Position> {
        self.zone
            .players()
            .filter_map(|(p, _)| {
                self.zone.player_state(p).map(|s| Position {
                    player: p,
                    x: s.x,
                    y: s.y,
                })
            })
            .collect()
    }

    /// Everyone in the zone with the ownership epoch of their state (the ledger keep-alive).
    pub fn held(&self) -> Vec<(PlayerId, u64)> {
        self.zone
            .players()
            .filter_map(|(p, _)| self.zone.player_state(p).map(|s| (p, s.epoch())))
            .collect()
    }

    fn spool(&mut self, record: Record) -> u64 {
        self.effects.push_back(Effect::Spool(record));
        self.records += 1;
        self.records
    }

    /// Spools a save of `player` (without the hot-store leave a disconnect writes); returns
    /// its record number.
    fn record_save(&mut self, player: PlayerId, state: PlayerState) -> u64 {
        self.stats.saves += 1;
        self.spool(Record::PlayerSave(SaveRecord {
            zone: self.zone_id,
            player,
            state,
            fence: self.fence,
            unix_ms: self.unix_ms,
        }))
    }

    /// Spools a save of a player who left and writes it hot; returns its record number.
    fn save(&mut self, player: PlayerId, state: PlayerState) -> u64 {
        let n = self.record_save(player, state);
        self.effects
            .push_back(Effect::Hot(HotOp::Left { player, state }));
        n
    }

    /// Graceful shutdown: stop accepting, tell every client (redundant disconnects), save every
    /// player in the zone. Returns how many players were saved.
    pub fn shutdown(&mut self) -> usize {
        self.accepting = false;
        let connected: Vec<PlayerId> = self
            .presences
            .iter()
            .filter(|(_, p)| p.client().is_some())
            .map(|(p, _)| p)
            .collect();
        for player in connected {
            self.rep.disconnect(player);
        }
        self.net.disconnect_all();
        // Everyone the zone holds, with a client or awaiting one (handed over, recalled).
        let held = self.presences.clear();
        for player in &held {
            if let Some(state) = self.zone.leave(*player) {
                self.save(*player, state);
            }
        }
        while self.net.poll_event().is_some() {}
        self.debug_check();
        held.len()
    }

    /// Observes the zone after every tick.
    pub fn set_observer(&mut self, observer: TickObserver) {
        self.observer = Some(ObserverSlot(observer));
    }

    /// The fencing token writes carry.
    pub fn set_fence(&mut self, fence: u64) {
        self.fence = fence;
    }

    /// Whether new connections are accepted.
    pub fn accepting(&self) -> bool {
        self.accepting
    }
}

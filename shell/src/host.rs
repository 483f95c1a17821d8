//! [`ZoneHost`]: one zone served over netcode.io. It joins the zone, the replicator and the
//! netcode server into one sans-IO state machine: datagrams, ticks and the answers of the
//! stores go in; datagrams to send come out through [`ZoneHost::poll_transmit`], and what to
//! store or tell other zones through the `swap_*`/`take_*` drains. The async loop in
//! `server.rs` only moves bytes and time; everything here is testable without sockets.
//! Handoffs to and from neighbouring zones live in [`handoff`].

mod handoff;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};
use zone_core::netcode::{self, DropReason, Key, ServerEvent, Transmit};
use zone_core::replication::{PacketError, ReplicationConfig, Replicator};
use zone_core::{InputError, PlayerId, PlayerState, Zone};

pub use handoff::{BusOp, ClaimPurpose, ClaimRequest};

use crate::metrics::{Metrics, Reason};
use crate::persist::load_policy::LoadSource;
use crate::persist::{CombatRecord, Position, ProfileRecord, Record, SaveRecord, StoredPlayer};
use crate::world::WorldPlace;

/// A player to load before they can join. The loader takes the newest of the spool's
/// unflushed copy and the stores' (see [`crate::persist::load_policy`]) and claims the player
/// in the ownership ledger for this zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadRequest {
    /// Who.
    pub player: PlayerId,
}

/// Where a joining player's state came from, or why it could not be loaded. The state comes
/// claimed: its version carries this zone's new ownership epoch.
#[derive(Clone, Debug, PartialEq)]
pub enum LoadOutcome {
    /// Found locally or in a store (the newest of the hot and cold copies).
    Found {
        /// The stored state and profile.
        stored: StoredPlayer,
        /// Which copy.
        source: LoadSource,
    },
    /// No store knows the player: a new character, under this ownership epoch.
    New {
        /// The epoch the zone claimed.
        epoch: u64,
    },
    /// The stores could not answer (or the player is over their join rate): refuse the join.
    Failed(String),
}

/// A hot-store update the host asks for (the loop hands it to the hot-store worker).
#[derive(Clone, Debug, PartialEq)]
pub enum HotOp {
    /// A player joined this zone.
    Joined {
        /// Who.
        player: PlayerId,
    },
    /// A player left; keep their last state hot.
    Left {
        /// Who.
        player: PlayerId,
        /// Their state at leaving.
        state: PlayerState,
    },
    /// Periodic refresh of presence, positions, sessions and ownership records.
    Refresh {
        /// Everyone in the zone with their position.
        positions: Vec<Position>,
        /// Everyone in the zone with the ownership epoch they are held under.
        held: Vec<(PlayerId, u64)>,
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
}

/// Counters of one host's life, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Clients that connected.
    pub connects: u64,
    /// Clients that disconnected.
    pub disconnects: u64,
    /// Player states saved (on leave and on shutdown).
    pub saves: u64,
    /// Datagrams from one client beyond its per-tick allowance.
    pub rate_limited: u64,
}

/// A zone, its replication and its netcode server.
#[derive(Debug)]
pub struct ZoneHost {
    zone: Zone,
    rep: Replicator,
    net: netcode::Server,
    slots: Vec<Option<PlayerId>>,
    index_of: BTreeMap<PlayerId, usize>,
    packets_this_tick: Vec<u32>,
    /// Connected clients whose state is being loaded: player -> client index.
    loading: BTreeMap<PlayerId, usize>,
    /// Loads to start (drained by the loop).
    load_requests: Vec<LoadRequest>,
    /// Handoffs, ghosts and the messages for other zones.
    world: Option<handoff::WorldState>,
    private_key: Key,
    protocol_id: u64,
    /// Records to make durable (drained by the loop into the spool).
    records: Vec<Record>,
    /// Hot-store updates (drained by the loop).
    hot_ops: Vec<HotOp>,
    zone_id: u32,
    run: u64,
    fence: u64,
    unix_ms: u64,
    /// Monotonic time of the last tick (the host's clock for handoff timers).
    now: Duration,
    max_packets: u32,
    accepting: bool,
    metrics: Arc<Metrics>,
    drops_seen: Vec<u64>,
    stats: HostStats,
    observer: Option<ObserverSlot>,
}

/// Called with the host after every tick, once this tick's handoffs have taken their players
/// out (tests and simulations record the server's truth).
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
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let mut net_config = netcode::ServerConfig::new(
            config.protocol_id,
            private_key.clone(),
            config.max_clients,
            config.public_addresses.clone(),
        );
        // A random start per run: challenge nonces never repeat across restarts.
        net_config.global_sequence_start =
            netcode::random_global_sequence_start(config.global_sequence_random);
        let net = netcode::Server::new(net_config, challenge_key)
            .map_err(|e| anyhow::anyhow!("netcode server: {e}"))?;
        let rep = Replicator::for_zone(ReplicationConfig::default(), &zone);
        let zone_id = zone.zone_id().0;
        let world = config.world.clone().map(handoff::WorldState::new);
        Ok(Self {
            zone,
            rep,
            net,
            slots: vec![None; config.max_clients],
            index_of: BTreeMap::new(),
            packets_this_tick: vec![0; config.max_clients],
            loading: BTreeMap::new(),
            load_requests: Vec::new(),
            world,
            private_key,
            protocol_id: config.protocol_id,
            records: Vec::new(),
            hot_ops: Vec::new(),
            zone_id,
            run: config.run,
            fence: config.fence,
            unix_ms: config.run,
            now: Duration::ZERO,
            max_packets: config.max_packets_per_client_tick,
            accepting: true,
            metrics,
            drops_seen: vec![0; DropReason::COUNT],
            stats: HostStats::default(),
            observer: None,
        })
    }

    /// The zone.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// Counters.
    pub fn stats(&self) -> HostStats {
        self.stats
    }

    /// Connected clients.
    pub fn client_count(&self) -> usize {
        self.index_of.len()
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
            self.metrics.drop_reason("shutting_down");
            return;
        }
        match self.net.process(now, unix_time, from, datagram) {
            Some(ServerEvent::Payload { client_index, data }) => {
                let Some(player) = self.slots.get(client_index).copied().flatten() else {
                    return;
                };
                let count = &mut self.packets_this_tick[client_index];
                *count += 1;
                if *count > self.max_packets {
                    self.stats.rate_limited += 1;
                    self.metrics.drop_reason("client_rate_limit");
                    return;
                }
                if let Err(PacketError::Decode(e)) =
                    self.rep.handle_packet(&mut self.zone, player, data)
                {
                    self.metrics
                        .decode_errors
                        .get_or_create(&Reason {
                            reason: e.name().to_owned(),
                        })
                        .inc();
                }
            }
            Some(ServerEvent::ClientConnected {
                client_index,
                client_id,
                address,
                ..
            }) => {
                self.on_connect(client_index, client_id, address);
            }
            Some(ServerEvent::ClientDisconnected {
                client_index,
                reason,
                ..
            }) => {
                self.on_disconnect(client_index, &format!("{reason:?}"));
            }
            None => {}
        }
        self.drain_events();
    }

    fn on_connect(&mut self, client_index: usize, client_id: u64, address: SocketAddr) {
        let player = PlayerId(client_id);
        info!(player = client_id, %address, "client connected");
        self.stats.connects += 1;
        self.metrics.connects.inc();
        if let Some(slot) = self.slots.get_mut(client_index) {
            *slot = Some(player);
        }
        match self.world.as_ref().map(|w| w.arrival_of(player)) {
            // Handed over from a neighbour: the avatar is here already, awaiting its client.
            Some(handoff::Arrival::Waiting) => {
                self.attach(client_index, player);
                return;
            }
            // Being handed away: the avatar is not here; the client must follow the redirect.
            Some(handoff::Arrival::Leaving) => {
                info!(
                    player = player.0,
                    "client reconnected during its handoff; refused"
                );
                let _ = self.net.disconnect(client_index);
                return;
            }
            _ => {}
        }
        if self.zone.player_entity(player).is_some() {
            // An avatar without a client (recalled from a failed handoff): attach.
            self.attach(client_index, player);
            return;
        }
        self.loading.insert(player, client_index);
        self.load_requests.push(LoadRequest { player });
    }

    /// Attaches a connected client to its player's avatar already in the zone.
    fn attach(&mut self, client_index: usize, player: PlayerId) {
        if let Some(w) = self.world.as_mut() {
            w.arrived(player);
        }
        self.rep.connect(&self.zone, player);
        self.index_of.insert(player, client_index);
        self.metrics.clients.set(self.index_of.len() as i64);
        self.hot_ops.push(HotOp::Joined { player });
        debug!(player = player.0, "client attached to its avatar");
    }

    /// Joins a connected client's player with `state`.
    fn join(&mut self, client_index: usize, player: PlayerId, state: PlayerState) {
        match self.zone.join(player, state) {
            Ok(entity) => {
                self.rep.connect(&self.zone, player);
                self.index_of.insert(player, client_index);
                self.metrics.clients.set(self.index_of.len() as i64);
                self.hot_ops.push(HotOp::Joined { player });
                debug!(
                    player = player.0,
                    entity = entity.0,
                    "player joined the zone"
                );
            }
            Err(e) => {
                warn!(player = player.0, error = %e, "join refused; disconnecting");
                let _ = self.net.disconnect(client_index);
            }
        }
    }

    /// Loads the host asked for since the last call (the loop starts them).
    pub fn take_load_requests(&mut self) -> Vec<LoadRequest> {
        std::mem::take(&mut self.load_requests)
    }

    /// A load finished: join the player if they are still connected.
    pub fn complete_load(&mut self, player: PlayerId, outcome: LoadOutcome) {
        let Some(client_index) = self.loading.remove(&player) else {
            return;
        };
        if self.slots.get(client_index).copied().flatten() != Some(player) {
            return;
        }
        let state = match outcome {
            LoadOutcome::Found { stored, source } => {
                self.metrics
                    .player_loads
                    .get_or_create(&reason(source.name()))
                    .inc();
                if stored.profile.is_none() && source != LoadSource::Local {
                    self.records.push(Record::Profile(ProfileRecord {
                        player,
                        name: format!("player-{}", player.0),
                        created_unix_ms: self.unix_ms,
                    }));
                }
                stored.state
            }
            LoadOutcome::New { epoch } => {
                self.metrics
                    .player_loads
                    .get_or_create(&reason("new"))
                    .inc();
                self.records.push(Record::Profile(ProfileRecord {
                    player,
                    name: format!("player-{}", player.0),
                    created_unix_ms: self.unix_ms,
                }));
                self.zone.new_character(player).claimed(epoch)
            }
            LoadOutcome::Failed(why) => {
                self.metrics
                    .player_loads
                    .get_or_create(&reason("failed"))
                    .inc();
                warn!(
                    player = player.0,
                    why, "player state could not be loaded; disconnecting"
                );
                let _ = self.net.disconnect(client_index);
                return;
            }
        };
        self.join(client_index, player, state);
    }

    /// Hands over the records to make durable since the last call by swapping them with
    /// `buf` (which must be empty): the two vectors trade places, so neither side allocates
    /// once both have grown.
    pub fn swap_records(&mut self, buf: &mut Vec<Record>) {
        debug_assert!(buf.is_empty());
        std::mem::swap(&mut self.records, buf);
    }

    /// Hands over the hot-store updates since the last call, like [`Self::swap_records`].
    pub fn swap_hot_ops(&mut self, buf: &mut Vec<HotOp>) {
        debug_assert!(buf.is_empty());
        std::mem::swap(&mut self.hot_ops, buf);
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

    /// Spools a save of a player who left and writes it hot.
    fn save(&mut self, player: PlayerId, state: PlayerState) {
        self.record_save(player, state);
        self.hot_ops.push(HotOp::Left { player, state });
    }

    fn on_disconnect(&mut self, client_index: usize, reason: &str) {
        let Some(player) = self.slots.get_mut(client_index).and_then(Option::take) else {
            return;
        };
        self.loading.remove(&player);
        if self.index_of.remove(&player).is_some() {
            self.rep.disconnect(player);
            if let Some(state) = self.zone.leave(player) {
                self.save(player, state);
            }
        }
        if let Some(w) = self.world.as_mut() {
            w.client_gone(player);
        }
        self.stats.disconnects += 1;
        self.metrics
            .disconnects
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
        self.metrics.clients.set(self.index_of.len() as i64);
        info!(player = player.0, reason, "client disconnected");
    }

    fn drain_events(&mut self) {
        while let Some(event) = self.net.poll_event() {
            match event {
                ServerEvent::ClientConnected {
                    client_index,
                    client_id,
                    address,
                    ..
                } => {
                    self.on_connect(client_index, client_id, address);
                }
                ServerEvent::ClientDisconnected {
                    client_index,
                    reason,
                    ..
                } => {
                    self.on_disconnect(client_index, &format!("{reason:?}"));
                }
                ServerEvent::Payload { .. } => {}
            }
        }
    }

    /// Simulates one tick, replicates it and queues every client's encrypted packet.
    pub fn tick(&mut self, now: Duration, unix_ms: u64) {
        self.unix_ms = unix_ms;
        self.now = now;
        let out = self.zone.tick();
        let m = out.metrics;
        let (zone, run, fence) = (self.zone_id, self.run, self.fence);
        self.records.extend(out.combat_events.iter().map(|event| {
            Record::Combat(CombatRecord {
                zone,
                run,
                unix_ms,
                event: *event,
            })
        }));
        self.records.extend(out.player_saves.iter().map(|s| {
            Record::PlayerSave(SaveRecord {
                zone,
                player: s.player,
                state: s.state,
                fence,
                unix_ms,
            })
        }));
        self.metrics.ticks.inc();
        self.metrics
            .combat_events
            .inc_by(out.combat_events.len() as u64);
        self.metrics.entities.set((m.players + m.npcs) as i64);
        for kind in InputError::ALL {
            let n = m.inputs_rejected[kind.index()];
            if n > 0 && kind != InputError::Stale {
                self.metrics
                    .inputs_rejected
                    .get_or_create(&Reason {
                        reason: kind.name().to_owned(),
                    })
                    .inc_by(n.into());
            }
        }
        // Handoffs first, so that an observer never sees a player who is on the way out.
        self.world_tick(now);
        if let Some(ObserverSlot(mut observe)) = self.observer.take() {
            observe(self);
            self.observer = Some(ObserverSlot(observe));
        }
        match self.world.as_mut() {
            Some(w) => {
                let zone = &self.zone;
                let ghosts = w.ghosts_for_replication(now, |p| zone.player_entity(p).is_some());
                self.metrics.ghosts.set(ghosts.len() as i64);
                self.rep.update_with_ghosts(zone, ghosts);
            }
            None => self.rep.update(&self.zone),
        }
        for (player, payload) in self.rep.packets() {
            let Some(&index) = self.index_of.get(&player) else {
                continue;
            };
            if let Err(e) = self.net.send_payload(index, payload) {
                debug!(player = player.0, error = %e, "payload not queued");
                self.metrics.drop_reason("send_queue");
            }
        }
        self.net.update(now);
        self.drain_events();
        self.packets_this_tick.iter_mut().for_each(|c| *c = 0);
        self.sync_drop_counters();
    }

    fn sync_drop_counters(&mut self) {
        let counters = self.net.drop_counters();
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            let now = counters.get(*reason);
            let before = self.drops_seen.get(i).copied().unwrap_or(0);
            if now > before {
                self.metrics
                    .dropped
                    .get_or_create(&Reason {
                        reason: format!("netcode_{reason:?}"),
                    })
                    .inc_by(now - before);
                if let Some(seen) = self.drops_seen.get_mut(i) {
                    *seen = now;
                }
            }
        }
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.net.poll_transmit()
    }

    /// Graceful shutdown: stop accepting, tell every client (redundant disconnects), save every
    /// player. Returns how many players were saved.
    pub fn shutdown(&mut self) -> usize {
        self.accepting = false;
        let players: Vec<(PlayerId, usize)> = self.index_of.iter().map(|(p, i)| (*p, *i)).collect();
        self.net.disconnect_all();
        for (player, index) in &players {
            if let Some(slot) = self.slots.get_mut(*index) {
                *slot = None;
            }
            self.rep.disconnect(*player);
        }
        // Everyone the zone holds, with a client or awaiting one (handed over, recalled).
        let held: Vec<PlayerId> = self.zone.players().map(|(p, _)| p).collect();
        for player in &held {
            if let Some(state) = self.zone.leave(*player) {
                self.save(*player, state);
            }
        }
        self.index_of.clear();
        self.loading.clear();
        self.slots.iter_mut().for_each(|s| *s = None);
        while self.net.poll_event().is_some() {}
        self.metrics.clients.set(0);
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

fn reason(r: &str) -> Reason {
    Reason {
        reason: r.to_owned(),
    }
}

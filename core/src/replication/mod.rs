//! Server-side replication: which entities each client sees (AOI with hysteresis), and one
//! packet per client per snapshot that carries a delta against the newest snapshot that
//! client acknowledged, fitted to the packet budget by a priority accumulator, plus the
//! reliable channel.
//!
//! Sans-IO like the zone: [`Replicator::handle_packet`] takes a client's decrypted bytes,
//! [`Replicator::update`] runs after [`crate::Zone::tick`] and fills one buffer with every
//! client's payload, read back with [`Replicator::packets`]. Nothing allocates per tick once warm.
//!
//! The work of a tick comes in two parts. [`Replicator::prepare`] does what every client
//! shares, once: every entity's record and its version ([`track`]), the spatial grid, the
//! bytes packets copy. Then [`Replicator::build`] makes the packets of any set of clients
//! from the shared [`Frame`] into a [`Worker`]; the core runs it on one thread
//! ([`Replicator::update`]), a caller with threads may run it for disjoint sets of clients
//! ([`Replicator::split`]) on as many, and gets the same bytes.

mod frame;
mod link;
mod select;
mod track;

use std::collections::BTreeMap;

use glam::Vec2;

use crate::protocol::{
    AvatarState, ClientMessage, ClientPacket, DecodeError, EntitySample, MAX_CHAT, MAX_PACKET,
    NetEntity, ServerMessage,
};
use crate::{EntityId, PlayerId, SpatialGrid, Zone};
pub use frame::{Frame, Worker};
pub use link::ClientLink;
use track::Tracker;

/// Snapshots remembered per client for use as delta baselines (ticks).
pub const SNAPSHOT_RING: usize = 32;

/// Replicated ids from here up are ghosts: read-only copies of entities a neighbouring zone
/// simulates near the border. A zone's own ids stay below (they count up from 1).
pub const GHOST_ID_BASE: u32 = 1 << 31;

/// Replication tuning.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicationConfig {
    /// A client starts seeing entities within this distance.
    pub aoi_radius: f32,
    /// A client stops seeing entities beyond this distance (hysteresis: > `aoi_radius`).
    pub aoi_exit_radius: f32,
    /// Largest payload per packet, bytes (at most [`MAX_PACKET`]).
    pub packet_budget: usize,
    /// Bytes of each packet the reliable channel may use.
    pub reliable_budget: usize,
    /// Most unacknowledged reliable messages per client; beyond it, messages are dropped
    /// and counted.
    pub reliable_queue: usize,
    /// Entries of each client's reliable queue kept for control messages (welcome, redirect,
    /// goodbye: [`Replicator::send_reliable`]): chat and the combat log stop short of them,
    /// so a flood of either never crowds out a redirect.
    pub reliable_reserved: usize,
    /// Chats a client may send at once (its token bucket's size).
    pub chat_burst: u32,
    /// A client earns one chat back every this many ticks.
    pub chat_refill_ticks: u32,
    /// Ticks between two snapshots of one client (1: every tick). Clients are spread evenly
    /// over the ticks, so each tick builds about `1 / snapshot_interval` of the packets.
    pub snapshot_interval: u32,
    /// Ticks between two searches of a client's surroundings for entities entering its view
    /// (staggered over the clients); exits are checked at every snapshot.
    pub aoi_refresh_ticks: u32,
}

impl ReplicationConfig {
    /// How many unacknowledged messages chat and the combat log may fill a client's reliable
    /// queue with: all but the reserve kept for control messages.
    pub fn bulk_limit(&self) -> usize {
        self.reliable_queue.saturating_sub(self.reliable_reserved)
    }
}

/// Chats taken from one client packet at most; the rest are dropped and counted.
pub const MAX_CHATS_PER_PACKET: usize = 4;

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            aoi_radius: 32.0,
            aoi_exit_radius: 36.0,
            packet_budget: MAX_PACKET,
            reliable_budget: 400,
            reliable_queue: 256,
            reliable_reserved: 32,
            chat_burst: 5,
            chat_refill_ticks: 30,
            snapshot_interval: 1,
            aoi_refresh_ticks: 4,
        }
    }
}

/// Why a client packet was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The bytes did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// No client is connected for that player.
    #[error("no replication link for this player")]
    UnknownClient,
    /// The client declared a game (plugins) other than the zone's; it was told goodbye
    /// ([`crate::protocol::GOODBYE_GAME_MISMATCH`]) and is ignored from now on.
    #[error("the client's game differs from the zone's (protocol hash {client:#018x})")]
    GameMismatch {
        /// The client's protocol hash.
        client: u64,
    },
}

/// Counters since the replicator was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicationMetrics {
    /// Packets built.
    pub packets: u64,
    /// Payload bytes built.
    pub bytes: u64,
    /// Entities in clients' views, summed over packets.
    pub visible: u64,
    /// Updates, spawns and removals sent.
    pub entity_records: u64,
    /// Changes held back by the packet budget (sent in a later tick).
    pub deferred: u64,
    /// Snapshots sent without a baseline.
    pub full_snapshots: u64,
    /// Client packets that did not decode, by [`DecodeError::index`].
    pub decode_errors: [u64; DecodeError::COUNT],
    /// Client packets for no known client.
    pub unknown_client: u64,
    /// Acks naming a tick not sent yet (ignored).
    pub bogus_acks: u64,
    /// Inputs passed to the zone.
    pub inputs_fed: u64,
    /// Redundant input copies skipped (already fed).
    pub inputs_redundant: u64,
    /// Chat and combat-log messages dropped because a client's queue was full up to the
    /// reserve kept for control messages.
    pub reliable_dropped: u64,
    /// Control messages (welcome, redirect, goodbye) dropped because even the reserve was
    /// full: the client is not acknowledging anything.
    pub control_dropped: u64,
    /// Chats refused by the sender's rate limit (or beyond [`MAX_CHATS_PER_PACKET`]).
    pub chats_limited: u64,
    /// Chats delivered into listeners' queues.
    pub chats_relayed: u64,
    /// Clients refused because they declared a game other than the zone's.
    pub game_mismatches: u64,
    /// Records that changed (summed over ticks): what the shared work encodes.
    pub records_changed: u64,
    /// Updates whose bytes were copied from the tick's shared encoding.
    pub shared_updates: u64,
    /// Updates encoded for one client (its baseline held an older version).
    pub encoded_updates: u64,
    /// Entities replaced (removed and spawned again): the client's version was forgotten.
    pub replaced: u64,
}

/// Replication state of every connected client.
#[derive(Debug)]
pub struct Replicator {
    config: ReplicationConfig,
    tick: u64,
    tick_hz: u32,
    samples: Vec<EntitySample>,
    /// The zone's players' avatars of this tick, by player (for the avatar sections).
    avatars: Vec<(PlayerId, AvatarState)>,
    tracker: Tracker,
    /// Tracker slot of each of the zone's own entity ids (`u32::MAX` when absent).
    index: Vec<u32>,
    grid: SpatialGrid,
    /// Sorted by player.
    clients: Vec<ClientLink>,
    /// The client of each connected avatar.
    by_entity: BTreeMap<EntityId, PlayerId>,
    /// Listeners of one chat (reused).
    listeners: Vec<PlayerId>,
    decoded: ClientPacket,
    /// The single-threaded build's worker ([`Replicator::update`]).
    worker: Worker,
    connects: u32,
    metrics: ReplicationMetrics,
}

fn find(clients: &[ClientLink], player: PlayerId) -> Option<usize> {
    clients.binary_search_by_key(&player, |l| l.player).ok()
}

impl Replicator {
    /// A replicator for a zone whose map is `map_size` units across from the world origin.
    pub fn new(config: ReplicationConfig, map_size: Vec2) -> Self {
        Self::covering(config, Vec2::ZERO, map_size)
    }

    /// A replicator sized for `zone`'s map, wherever in the world it lies.
    pub fn for_zone(config: ReplicationConfig, zone: &Zone) -> Self {
        Self::covering(config, zone.map().origin(), zone.map().size())
    }

    fn covering(config: ReplicationConfig, origin: Vec2, map_size: Vec2) -> Self {
        let mut config = config;
        config.packet_budget = config.packet_budget.clamp(64, MAX_PACKET);
        config.aoi_exit_radius = config.aoi_exit_radius.max(config.aoi_radius);
        // Reliable traffic never takes more than half a packet: snapshots always progress.
        config.reliable_budget = config.reliable_budget.min(config.packet_budget / 2);
        config.snapshot_interval = config.snapshot_interval.max(1);
        config.aoi_refresh_ticks = config.aoi_refresh_ticks.max(1);
        let cell = (config.aoi_radius / 2.0).clamp(4.0, 32.0);
        Self {
            grid: SpatialGrid::covering(origin, map_size, cell),
            config,
            tick: 0,
            tick_hz: 60,
            samples: Vec::new(),
            avatars: Vec::new(),
            tracker: Tracker::new(60),
            index: Vec::new(),
            clients: Vec::new(),
            by_entity: BTreeMap::new(),
            listeners: Vec::new(),
            decoded: ClientPacket::default(),
            worker: Worker::new(),
            connects: 0,
            metrics: ReplicationMetrics::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &ReplicationConfig {
        &self.config
    }

    /// Starts replicating to `player`, whose avatar must already be in `zone`.
    /// Queues the reliable welcome. Returns `false` if the player has no avatar.
    pub fn connect(&mut self, zone: &Zone, player: PlayerId) -> bool {
        let Some(entity) = zone.player_entity(player) else {
            return false;
        };
        let phase = self.connects % self.config.snapshot_interval;
        self.connects = self.connects.wrapping_add(1);
        let mut link = ClientLink::new(player, entity, &self.config, zone.current_tick(), phase);
        if !zone.wire().is_bare() {
            let _ = link.reliable_tx.send(ServerMessage::Game {
                protocol_hash: zone.wire().protocol_hash(),
            });
        }
        let welcome = ServerMessage::Welcome {
            zone: zone.zone_id(),
            player,
            entity,
            tick_hz: zone.rules().tick_hz.min(u32::from(u16::MAX)) as u16,
        };
        let _ = link.reliable_tx.send(welcome);
        match self.clients.binary_search_by_key(&player, |l| l.player) {
            Ok(i) => {
                let old = std::mem::replace(&mut self.clients[i], link);
                self.by_entity.remove(&old.entity);
            }
            Err(i) => self.clients.insert(i, link),
        }
        self.by_entity.insert(entity, player);
        let (entities, clients) = (zone.entity_count(), self.clients.len());
        self.samples
            .reserve(entities.saturating_sub(self.samples.len()));
        self.grid.reserve(entities);
        self.worker.reserve(clients, clients * MAX_PACKET);
        true
    }

    /// Stops replicating to `player`.
    pub fn disconnect(&mut self, player: PlayerId) {
        if let Some(i) = find(&self.clients, player) {
            let link = self.clients.remove(i);
            self.by_entity.remove(&link.entity);
        }
    }

    /// Whether `player` is connected.
    pub fn is_connected(&self, player: PlayerId) -> bool {
        find(&self.clients, player).is_some()
    }

    /// Number of connected clients.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Counters.
    pub fn metrics(&self) -> &ReplicationMetrics {
        &self.metrics
    }

    /// Queues a control message (redirect, goodbye) for one client, using the reserve that
    /// chat and the combat log cannot. `false` (and counted) if the client is unknown or even
    /// the reserve is full.
    pub fn send_reliable(&mut self, player: PlayerId, message: ServerMessage) -> bool {
        let Some(i) = find(&self.clients, player) else {
            return false;
        };
        let sent = self.clients[i].reliable_tx.send(message).is_ok();
        if !sent {
            self.metrics.control_dropped += 1;
        }
        sent
    }

    /// Takes one decrypted packet from `player`: acks, inputs (each fed to the zone once, in
    /// sequence order, however many redundant copies arrive) and reliable chat.
    pub fn handle_packet(
        &mut self,
        zone: &mut Zone,
        player: PlayerId,
        bytes: &[u8],
    ) -> Result<(), PacketError> {
        if let Err(e) = self.decoded.decode_into(bytes) {
            self.metrics.decode_errors[e.index()] += 1;
            return Err(e.into());
        }
        let Some(ci) = find(&self.clients, player) else {
            self.metrics.unknown_client += 1;
            return Err(PacketError::UnknownClient);
        };
        let link = &mut self.clients[ci];
        let p = &self.decoded;
        if p.ack_tick > self.tick {
            self.metrics.bogus_acks += 1;
        } else {
            link.acked = link.acked.max(p.ack_tick);
        }
        if !link.reliable_tx.on_ack(p.reliable_ack) {
            self.metrics.bogus_acks += 1;
        }
        if p.ping.is_some() {
            link.pong = p.ping;
        }
        // A client that declares another game is refused before anything it sent is used.
        let ours = zone.wire().protocol_hash();
        let mut refused = None;
        let declared = p.reliable.iter().find_map(|m| match m {
            ClientMessage::Game { protocol_hash } if *protocol_hash != ours => Some(*protocol_hash),
            _ => None,
        });
        if let Some(hash) = declared
            && !link.game_refused
        {
            link.game_refused = true;
            self.metrics.game_mismatches += 1;
            let bye = ServerMessage::Goodbye {
                reason: crate::protocol::GOODBYE_GAME_MISMATCH,
            };
            let _ = link.reliable_tx.send(bye);
            refused = Some(hash);
        }
        for input in &p.inputs {
            if link.game_refused {
                break;
            }
            if link.last_input_seq.is_some_and(|last| input.seq <= last) {
                self.metrics.inputs_redundant += 1;
                continue;
            }
            link.last_input_seq = Some(input.seq);
            self.metrics.inputs_fed += 1;
            let _ = zone.handle_input(player, input.to_input());
        }
        let from_entity = link.entity;
        let fresh = link.reliable_rx.accept(p.reliable_first, &p.reliable).len();
        let Self {
            config,
            tick,
            tick_hz,
            tracker,
            index,
            grid,
            clients,
            by_entity,
            listeners,
            decoded,
            metrics,
            ..
        } = self;
        let first = decoded.reliable.len() - fresh;
        let mut allowed = 0;
        for m in decoded.reliable.get(first..).unwrap_or_default() {
            let text = match m {
                ClientMessage::Chat { text } => text,
                // Checked above, before the packet's inputs.
                ClientMessage::Game { .. } => continue,
                ClientMessage::Action { kind, payload } => {
                    // Typed, counted and bounded by the zone (per player and tick).
                    if clients.get(ci).is_some_and(|l| !l.game_refused) {
                        let _ = zone.handle_action(player, *kind, payload);
                    }
                    continue;
                }
            };
            if text.len() > MAX_CHAT || clients.get(ci).is_none_or(|l| l.game_refused) {
                continue;
            }
            let Some(link) = clients.get_mut(ci) else {
                break;
            };
            if allowed >= MAX_CHATS_PER_PACKET || !link.take_chat_token(*tick, config) {
                metrics.chats_limited += 1;
                continue;
            }
            allowed += 1;
            let chat = Chat {
                speaker: player,
                entity: from_entity,
                text,
            };
            let frame = Frame {
                tick: *tick,
                tick_hz: *tick_hz,
                config,
                tracker,
                index,
                grid,
            };
            chat.relay(Relay {
                frame: &frame,
                clients,
                by_entity,
                listeners,
                metrics,
            });
        }
        if let Some(client) = refused {
            return Err(PacketError::GameMismatch { client });
        }
        Ok(())
    }

    /// Builds every due client's packet for the tick `zone` just simulated.
    pub fn update(&mut self, zone: &Zone) {
        self.update_with_ghosts(zone, &[]);
    }

    /// Like [`Replicator::update`], with ghosts: entities of neighbouring zones near the border,
    /// already in world coordinates, with ids from [`GHOST_ID_BASE`] up and sorted by id
    /// (others are ignored). Clients see them like any entity; they cannot be simulated here.
    ///
    /// A client whose avatar has left the zone (a handoff in progress) keeps its view as it
    /// was: its packets carry only reliable messages (the redirect) until it goes.
    pub fn update_with_ghosts(&mut self, zone: &Zone, ghosts: &[EntitySample]) {
        self.prepare(zone, ghosts);
        let mut worker = std::mem::take(&mut self.worker);
        {
            let (frame, clients) = self.split();
            Self::build(&frame, clients, &mut worker);
        }
        self.absorb(&worker);
        self.worker = worker;
    }

    /// The shared work of a tick, once for all clients: every entity's record (zone entities
    /// and `ghosts`, as in [`Replicator::update_with_ghosts`]), the spatial grid, the combat
    /// log into the reliable queues. Then build the packets with [`Replicator::split`] and
    /// [`Replicator::build`] (or all at once with [`Replicator::update_with_ghosts`]).
    pub fn prepare(&mut self, zone: &Zone, ghosts: &[EntitySample]) {
        self.tick = zone.current_tick();
        self.tick_hz = zone.rules().tick_hz.max(1);
        self.samples.clear();
        self.avatars.clear();
        for v in zone.entities() {
            if let crate::EntityKind::Player(p) = v.kind {
                self.avatars.push((
                    p,
                    AvatarState {
                        seq: v.input.0,
                        pos: v.position,
                        vel: v.velocity,
                        alive: v.alive,
                        late: v.input.1,
                    },
                ));
            }
            if v.id.0 < GHOST_ID_BASE {
                self.samples.push(EntitySample::from_view(&v));
            }
        }
        let top = self.samples.last().map_or(0, |e| e.id.0 as usize + 1);
        let mut last = None;
        for g in ghosts {
            if g.id.0 >= GHOST_ID_BASE && last.is_none_or(|l| g.id > l) {
                self.samples.push(*g);
                last = Some(g.id);
            }
        }
        self.tracker.set_tick_hz(self.tick_hz);
        self.tracker.update(self.tick, &self.samples);
        self.metrics.records_changed += self.tracker.changed() as u64;
        self.index.clear();
        self.index.resize(top, u32::MAX);
        for (i, t) in self.tracker.entities().iter().enumerate() {
            if let Some(slot) = self.index.get_mut(t.record.id.0 as usize) {
                *slot = i as u32;
            }
        }
        // The grid holds frame slots (in id order), not ids: views come out sorted.
        self.grid.rebuild(
            self.tracker
                .positions()
                .iter()
                .enumerate()
                .map(|(i, p)| (EntityId(i as u32), *p)),
        );

        // Each client's own avatar, exactly (the avatar section of its packets): both lists
        // sorted by player, merged.
        self.avatars.sort_unstable_by_key(|(p, _)| *p);
        let mut ai = 0;
        for link in &mut self.clients {
            while self.avatars.get(ai).is_some_and(|(p, _)| *p < link.player) {
                ai += 1;
            }
            link.avatar = self
                .avatars
                .get(ai)
                .filter(|(p, _)| *p == link.player)
                .map(|(_, a)| *a);
        }

        // Combat log: every hit involving a client's avatar.
        let bulk = self.config.bulk_limit();
        for hit in &zone.last_output().combat_events {
            for p in [hit.attacker_player, hit.target_player]
                .into_iter()
                .flatten()
            {
                if let Some(i) = find(&self.clients, p) {
                    let m = ServerMessage::Hit {
                        attacker: hit.attacker,
                        target: hit.target,
                        ability: hit.ability,
                        damage: hit.damage,
                        killed: hit.killed,
                    };
                    if self.clients[i].reliable_tx.send_within(m, bulk).is_err() {
                        self.metrics.reliable_dropped += 1;
                    }
                }
            }
        }
    }

    /// The shared frame of the last [`Replicator::prepare`] and every client, to build
    /// packets for disjoint chunks of the clients on as many threads
    /// ([`Replicator::build`]); then hand each worker to [`Replicator::absorb`].
    pub fn split(&mut self) -> (Frame<'_>, &mut [ClientLink]) {
        (
            Frame {
                tick: self.tick,
                tick_hz: self.tick_hz,
                config: &self.config,
                tracker: &self.tracker,
                index: &self.index,
                grid: &self.grid,
            },
            &mut self.clients,
        )
    }

    /// Builds the packets of the clients in `links` that are due this tick into `worker`
    /// (its previous packets are dropped). Safe to run for disjoint chunks of the clients on
    /// different threads over the same frame: each packet depends only on the frame and its
    /// client.
    pub fn build(frame: &Frame<'_>, links: &mut [ClientLink], worker: &mut Worker) {
        worker.clear();
        let interval = frame.config.snapshot_interval;
        for link in links.iter_mut() {
            if !link.due(frame.tick, interval) {
                continue;
            }
            let start = worker.out.len();
            let stats = select::build_packet(link, frame, &mut worker.scratch, &mut worker.out);
            worker.finish(link.player, start, &stats);
        }
    }

    /// Counts what `worker` built into the metrics.
    pub fn absorb(&mut self, worker: &Worker) {
        let t = &worker.totals;
        let m = &mut self.metrics;
        m.packets += t.packets;
        m.bytes += t.bytes;
        m.visible += t.visible;
        m.entity_records += t.records;
        m.deferred += t.deferred;
        m.full_snapshots += t.full;
        m.shared_updates += t.shared;
        m.encoded_updates += t.encoded;
        m.replaced += t.replaced;
    }

    /// The packets built by the last [`Replicator::update`], one per due client.
    pub fn packets(&self) -> impl Iterator<Item = (PlayerId, &[u8])> {
        self.worker.packets()
    }

    /// What `player` holds after applying the packet of `tick` (its view then), sorted by id,
    /// while that snapshot is still remembered and its records are known.
    pub fn sent_view(&self, player: PlayerId, tick: u64) -> Option<Vec<NetEntity>> {
        let link = self.clients.get(find(&self.clients, player)?)?;
        let snap = link.slot(tick)?;
        let entities = self.tracker.entities();
        snap.entities
            .iter()
            .map(|h| {
                let t = entities
                    .binary_search_by_key(&h.id, |t| t.record.id)
                    .ok()
                    .and_then(|i| entities.get(i));
                self.tracker.record(t, h.id, h.version())
            })
            .collect()
    }

    /// The replicated record of every entity at the last update, sorted by id.
    pub fn world(&self) -> impl ExactSizeIterator<Item = &NetEntity> {
        self.tracker.entities().iter().map(|t| &t.record)
    }

    /// The replicated record of one entity at the last update.
    pub fn record(&self, id: EntityId) -> Option<&NetEntity> {
        let entities = self.tracker.entities();
        let i = entities.binary_search_by_key(&id, |t| t.record.id).ok()?;
        entities.get(i).map(|t| &t.record)
    }

    /// Entities `player` currently sees (its AOI), sorted by id.
    pub fn visible(&self, player: PlayerId) -> Option<&[EntityId]> {
        let link = self.clients.get(find(&self.clients, player)?)?;
        Some(link.visible.as_slice())
    }

    /// Ticks per second of the zone replicated (positions on tracks depend on it).
    pub fn tick_hz(&self) -> u32 {
        self.tick_hz
    }
}

/// One chat to relay.
struct Chat<'a> {
    speaker: PlayerId,
    entity: EntityId,
    text: &'a str,
}

/// What relaying a chat reads and writes of the replicator.
struct Relay<'a> {
    frame: &'a Frame<'a>,
    clients: &'a mut [ClientLink],
    by_entity: &'a BTreeMap<EntityId, PlayerId>,
    listeners: &'a mut Vec<PlayerId>,
    metrics: &'a mut ReplicationMetrics,
}

impl Chat<'_> {
    /// Queues the chat for everyone who can see the speaker (the speaker included), found
    /// through the spatial grid of the last update rather than by asking every client. Chat
    /// stops short of the reserve kept for control messages.
    fn relay(&self, r: Relay<'_>) {
        r.listeners.clear();
        r.listeners.push(self.speaker);
        let at = r
            .frame
            .slot_of(self.entity)
            .map(|i| r.frame.position(r.frame.entity(i)));
        if let Some(at) = at {
            // A client sees what lies within its exit radius; the margin covers rounding.
            r.frame
                .grid
                .for_each_within(at, r.frame.config.aoi_exit_radius + 1.0, |slot, _| {
                    let id = r.frame.entity(slot.0 as usize).record.id;
                    if let Some(&p) = r.by_entity.get(&id)
                        && p != self.speaker
                    {
                        r.listeners.push(p);
                    }
                });
        }
        let limit = r.frame.config.bulk_limit();
        for p in r.listeners.iter() {
            let Some(link) = find(r.clients, *p).and_then(|i| r.clients.get_mut(i)) else {
                continue;
            };
            if link.entity != self.entity && link.visible.binary_search(&self.entity).is_err() {
                continue;
            }
            let chat = ServerMessage::Chat {
                from: self.speaker,
                text: self.text.to_owned(),
            };
            if link.reliable_tx.send_within(chat, limit).is_ok() {
                r.metrics.chats_relayed += 1;
            } else {
                r.metrics.reliable_dropped += 1;
            }
        }
    }
}

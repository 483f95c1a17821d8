//! [`ZoneHost`]: one zone served over netcode.io. It joins the zone, the replicator and the
//! netcode server into one sans-IO state machine: datagrams and ticks go in, datagrams to send
//! come out through [`ZoneHost::poll_transmit`]. The async loop in `server.rs` only moves bytes
//! and time; everything here is testable without sockets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};
use zone_core::netcode::{self, DropReason, Key, ServerEvent, Transmit};
use zone_core::replication::{PacketError, ReplicationConfig, Replicator};
use zone_core::{InputError, PlayerId, PlayerState, Zone};

use crate::metrics::{Metrics, Reason};

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
    /// Last known state of players who left (kept in memory until persistence lands).
    saved: BTreeMap<PlayerId, PlayerState>,
    max_packets: u32,
    accepting: bool,
    metrics: Arc<Metrics>,
    drops_seen: Vec<u64>,
    stats: HostStats,
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
        let net_config = netcode::ServerConfig::new(
            config.protocol_id,
            private_key,
            config.max_clients,
            config.public_addresses.clone(),
        );
        let net = netcode::Server::new(net_config, challenge_key)
            .map_err(|e| anyhow::anyhow!("netcode server: {e}"))?;
        let rep = Replicator::new(ReplicationConfig::default(), zone.map().size());
        Ok(Self {
            zone,
            rep,
            net,
            slots: vec![None; config.max_clients],
            index_of: BTreeMap::new(),
            packets_this_tick: vec![0; config.max_clients],
            saved: BTreeMap::new(),
            max_packets: config.max_packets_per_client_tick,
            accepting: true,
            metrics,
            drops_seen: vec![0; DropReason::COUNT],
            stats: HostStats::default(),
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

    /// The last saved state of a player who left.
    pub fn saved_state(&self, player: PlayerId) -> Option<PlayerState> {
        self.saved.get(&player).copied()
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
        let state = self
            .saved
            .remove(&player)
            .unwrap_or_else(|| self.zone.new_character(player));
        match self.zone.join(player, state) {
            Ok(entity) => {
                self.rep.connect(&self.zone, player);
                if let Some(slot) = self.slots.get_mut(client_index) {
                    *slot = Some(player);
                }
                self.index_of.insert(player, client_index);
                self.stats.connects += 1;
                self.metrics.connects.inc();
                self.metrics.clients.set(self.index_of.len() as i64);
                info!(player = client_id, %address, entity = entity.0, "client connected");
            }
            Err(e) => {
                warn!(player = client_id, %address, error = %e, "join refused; disconnecting");
                self.saved.insert(player, state);
                let _ = self.net.disconnect(client_index);
            }
        }
    }

    fn on_disconnect(&mut self, client_index: usize, reason: &str) {
        let Some(player) = self.slots.get_mut(client_index).and_then(Option::take) else {
            return;
        };
        self.index_of.remove(&player);
        self.rep.disconnect(player);
        if let Some(state) = self.zone.leave(player) {
            self.saved.insert(player, state);
            self.stats.saves += 1;
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
    pub fn tick(&mut self, now: Duration) {
        let out = self.zone.tick();
        let m = out.metrics;
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
        self.rep.update(&self.zone);
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
            if let Some(state) = self.zone.leave(*player) {
                self.saved.insert(*player, state);
                self.stats.saves += 1;
            }
        }
        self.index_of.clear();
        while self.net.poll_event().is_some() {}
        self.metrics.clients.set(0);
        players.len()
    }

    /// Whether new connections are accepted.
    pub fn accepting(&self) -> bool {
        self.accepting
    }
}

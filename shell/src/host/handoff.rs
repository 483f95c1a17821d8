//! The host's side of a world of zones: handing players over the border to a neighbour and
//! taking them from one (the protocol is described in [`crate::world`]), redirecting clients,
//! and sending and showing ghosts.
//!
//! Sans-IO like the rest of the host: messages from other zones and the ownership ledger's
//! answers come in through [`ZoneHost::handle_bus`] and [`ZoneHost::complete_claim`]; what to
//! publish and what to claim goes out through [`ZoneHost::swap_bus_ops`]. Timers run on the
//! `now` of each tick.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::{debug, info, warn};
use zone_core::protocol::redirect_messages;
use zone_core::{BorderCrossing, PlayerId, PlayerState, Vec2, ZoneId};

use super::{HotOp, ZoneHost, reason};
use crate::persist::{Claim, Owner, Record, SaveRecord, StoreError};
use crate::tokens::{TokenRequest, mint};
use crate::world::WorldPlace;
use crate::world::bus::{BusMessage, GhostEntity, RefuseReason};
use crate::world::ghosts::{GhostTable, collect};

/// How far over the border (world units) a player must stand before the handoff starts: a
/// player who just arrived does not bounce straight back.
const HANDOFF_DEPTH: f32 = 1.0;
/// How long an accepted handoff is remembered, to answer a re-sent transfer again.
const ACCEPTED_MEMORY: Duration = Duration::from_secs(30);
/// Unanswered transfers are given up after this many handoff timeouts (the client is let go
/// and finds its zone through the ledger on reconnecting).
const GIVE_UP_TIMEOUTS: u32 = 4;

/// What the host asks of the hot store on behalf of the world.
#[derive(Clone, Debug, PartialEq)]
pub enum BusOp {
    /// Publish `message` on zone `to`'s bus channel.
    Publish {
        /// The zone it is for.
        to: u32,
        /// The message.
        message: BusMessage,
    },
    /// Claim a player in the ownership ledger; answer with [`ZoneHost::complete_claim`].
    Claim(ClaimRequest),
}

/// A conditional claim the host needs decided.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClaimRequest {
    /// Who.
    pub player: PlayerId,
    /// The owner record the claim is conditional on.
    pub expect: Option<Owner>,
    /// The epoch of the state being taken over.
    pub floor: u64,
    /// What it is for.
    pub purpose: ClaimPurpose,
}

/// Why the host claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimPurpose {
    /// To take a player a neighbour hands over.
    Accept {
        /// The handoff.
        handoff: u64,
        /// The neighbour.
        from: u32,
    },
    /// To take back a player whose handoff went unanswered or was refused.
    Recall {
        /// The handoff.
        handoff: u64,
    },
}

/// Where a connecting player stands in the handoffs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Arrival {
    /// Handed over to this zone; the avatar awaits its client.
    Waiting,
    /// Being handed away from this zone.
    Leaving,
    /// Neither.
    None,
}

#[derive(Debug)]
enum Phase {
    /// Transfer sent, no answer yet (`recalling` while a recall claim is out).
    Offered { recalling: bool },
    /// Accepted: the client was told to go; it is let go at `deadline` at the latest.
    Redirecting { deadline: Duration },
}

#[derive(Debug)]
struct Outgoing {
    handoff: u64,
    to: u32,
    state: PlayerState,
    crossed: Duration,
    last_sent: Duration,
    /// When to claim the player back if nobody answered.
    recall_at: Duration,
    phase: Phase,
}

#[derive(Debug)]
struct Incoming {
    handoff: u64,
    from: u32,
    state: PlayerState,
}

#[derive(Debug)]
struct Accepted {
    handoff: u64,
    from: u32,
    epoch: u64,
    at: Duration,
}

/// Counters of a host's handoffs, for tests and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandoffStats {
    /// Handoffs started from this zone.
    pub started: u64,
    /// Handoffs from this zone a neighbour accepted.
    pub accepted: u64,
    /// Handoffs from this zone taken back.
    pub recalled: u64,
    /// Players taken from neighbours.
    pub taken: u64,
    /// Crossings refused because the neighbour was not heard from (border closed).
    pub border_closed: u64,
    /// In progress now (outgoing, incoming claims, avatars awaiting their client).
    pub in_flight: usize,
}

/// The world half of a host.
#[derive(Debug)]
pub(super) struct WorldState {
    place: WorldPlace,
    next_handoff: u64,
    outgoing: BTreeMap<PlayerId, Outgoing>,
    incoming: BTreeMap<PlayerId, Incoming>,
    arriving: BTreeMap<PlayerId, Duration>,
    accepted: BTreeMap<PlayerId, Accepted>,
    ghosts: GhostTable,
    ghost_out: BTreeMap<u32, Vec<GhostEntity>>,
    crossings: Vec<BorderCrossing>,
    ops: Vec<BusOp>,
    ticks: u64,
    stats: HandoffStats,
}

impl WorldState {
    pub(super) fn new(place: WorldPlace) -> Self {
        Self {
            place,
            next_handoff: 1,
            outgoing: BTreeMap::new(),
            incoming: BTreeMap::new(),
            arriving: BTreeMap::new(),
            accepted: BTreeMap::new(),
            ghosts: GhostTable::default(),
            ghost_out: BTreeMap::new(),
            crossings: Vec::new(),
            ops: Vec::new(),
            ticks: 0,
            stats: HandoffStats::default(),
        }
    }

    pub(super) fn arrival_of(&self, player: PlayerId) -> Arrival {
        if self.arriving.contains_key(&player) {
            Arrival::Waiting
        } else if self.outgoing.contains_key(&player) {
            Arrival::Leaving
        } else {
            Arrival::None
        }
    }

    pub(super) fn arrived(&mut self, player: PlayerId) {
        self.arriving.remove(&player);
    }

    /// The client of `player` disconnected: a redirect under way is complete.
    pub(super) fn client_gone(&mut self, player: PlayerId) {
        if let Some(out) = self.outgoing.get(&player)
            && matches!(out.phase, Phase::Redirecting { .. })
        {
            self.outgoing.remove(&player);
        }
    }

    pub(super) fn ghosts_for_replication(
        &mut self,
        now: Duration,
        here: impl Fn(PlayerId) -> bool,
    ) -> &[zone_core::protocol::NetEntity] {
        let (grid, zone, timeout) = (
            self.place.grid,
            self.place.zone,
            self.place.neighbour_timeout,
        );
        self.ghosts.merged(&grid, zone, now, timeout, here)
    }

    fn me(&self) -> u32 {
        self.place.zone.0
    }

    fn publish(&mut self, to: u32, message: BusMessage) {
        self.ops.push(BusOp::Publish { to, message });
    }

    /// Answers zone `from`'s handoff `handoff` of `player`: taken, under `epoch`.
    fn accept(&mut self, from: u32, handoff: u64, player: PlayerId, epoch: u64) {
        let (to, address) = (self.me(), self.place.public_address);
        self.publish(
            from,
            BusMessage::Accepted {
                handoff,
                from,
                to,
                player,
                epoch,
                address,
            },
        );
    }

    /// Answers zone `from`'s handoff `handoff` of `player`: not taken, for `reason`.
    fn refuse(&mut self, from: u32, handoff: u64, player: PlayerId, reason: RefuseReason) {
        let to = self.me();
        self.publish(
            from,
            BusMessage::Refused {
                handoff,
                from,
                to,
                player,
                reason,
            },
        );
    }

    /// Asks the ledger to give `player` back to this zone, on the condition that it still
    /// names this zone under the epoch the player left with.
    fn recall(&mut self, player: PlayerId, handoff: u64, state: &PlayerState) {
        let zone = self.me();
        self.ops.push(BusOp::Claim(ClaimRequest {
            player,
            expect: Some(Owner {
                zone,
                epoch: state.epoch(),
            }),
            floor: state.epoch(),
            purpose: ClaimPurpose::Recall { handoff },
        }));
    }
}

impl ZoneHost {
    /// What to publish and claim since the last call, swapped with `buf` (which must be empty).
    pub fn swap_bus_ops(&mut self, buf: &mut Vec<BusOp>) {
        debug_assert!(buf.is_empty());
        if let Some(w) = self.world.as_mut() {
            std::mem::swap(&mut w.ops, buf);
        }
    }

    /// Counters of this host's handoffs (all zero outside a world).
    pub fn handoff_stats(&self) -> HandoffStats {
        self.world
            .as_ref()
            .map_or_else(HandoffStats::default, |w| HandoffStats {
                in_flight: w.outgoing.len() + w.incoming.len() + w.arriving.len(),
                ..w.stats
            })
    }

    /// The zones this one heard from lately (ghost batches), in id order.
    pub fn live_neighbours(&self) -> Vec<u32> {
        self.world.as_ref().map_or_else(Vec::new, |w| {
            w.ghosts
                .live_zones(self.now, w.place.neighbour_timeout)
                .collect()
        })
    }

    /// The world's per-tick work: border crossings, handoff timers, ghost batches.
    pub(super) fn world_tick(&mut self, now: Duration) {
        let Some(w) = self.world.as_mut() else {
            return;
        };
        w.ticks += 1;
        w.crossings.clear();
        w.crossings
            .extend_from_slice(&self.zone.last_output().crossings);
        let crossings = std::mem::take(&mut w.crossings);
        for c in &crossings {
            self.on_crossing(now, c);
        }
        if let Some(w) = self.world.as_mut() {
            w.crossings = crossings;
        }
        self.handoff_timers(now);
        self.send_ghosts();
    }

    fn on_crossing(&mut self, now: Duration, c: &BorderCrossing) {
        let Some(w) = self.world.as_ref() else {
            return;
        };
        let at = Vec2::new(c.x, c.y);
        let map = self.zone.map();
        let depth = map.clamp_inside(at, 0.0).distance(at);
        if depth < HANDOFF_DEPTH {
            return;
        }
        let target = w.place.grid.zone_at(at).map(|z| z.0);
        let open = target.is_some_and(|t| {
            t != w.me()
                && w.ghosts.alive(t, now, w.place.neighbour_timeout)
                && self.index_of.contains_key(&c.player)
                && !w.outgoing.contains_key(&c.player)
        });
        let Some(to) = target.filter(|_| open) else {
            // The neighbour is down (or this is the world's edge): the border is a wall.
            self.zone.place_inside(c.player);
            if let Some(w) = self.world.as_mut() {
                w.stats.border_closed += 1;
            }
            self.count_handoff("border_closed");
            return;
        };
        let Some(state) = self.zone.leave(c.player) else {
            return;
        };
        // Durable before it leaves (the link publishes the transfer only once the spool has
        // made this save durable): whatever happens next, this state is not lost.
        self.save(c.player, state);
        let Some(w) = self.world.as_mut() else {
            return;
        };
        let handoff = w.next_handoff;
        w.next_handoff += 1;
        let from = w.me();
        w.publish(
            to,
            BusMessage::Transfer {
                handoff,
                from,
                to,
                player: c.player,
                state,
                epoch: state.epoch(),
            },
        );
        w.outgoing.insert(
            c.player,
            Outgoing {
                handoff,
                to,
                state,
                crossed: now,
                last_sent: now,
                recall_at: now + w.place.handoff_timeout,
                phase: Phase::Offered { recalling: false },
            },
        );
        w.stats.started += 1;
        self.count_handoff("started");
        debug!(player = c.player.0, from, to, handoff, "handoff started");
    }

    fn handoff_timers(&mut self, now: Duration) {
        let Some(w) = self.world.as_mut() else {
            return;
        };
        let place = w.place.clone();
        let me = w.me();
        let mut give_up = Vec::new();
        let mut let_go = Vec::new();
        let mut recalls = Vec::new();
        for (player, out) in &mut w.outgoing {
            match &mut out.phase {
                Phase::Offered { recalling } => {
                    let since = now.saturating_sub(out.crossed);
                    if since >= place.handoff_timeout * GIVE_UP_TIMEOUTS {
                        give_up.push(*player);
                        continue;
                    }
                    if now.saturating_sub(out.last_sent) >= place.handoff_resend {
                        out.last_sent = now;
                        w.ops.push(BusOp::Publish {
                            to: out.to,
                            message: BusMessage::Transfer {
                                handoff: out.handoff,
                                from: me,
                                to: out.to,
                                player: *player,
                                state: out.state,
                                epoch: out.state.epoch(),
                            },
                        });
                    }
                    if !*recalling && now >= out.recall_at {
                        *recalling = true;
                        recalls.push((*player, out.handoff, out.state));
                    }
                }
                Phase::Redirecting { deadline } => {
                    if now >= *deadline {
                        let_go.push(*player);
                    }
                }
            }
        }
        for (player, handoff, state) in &recalls {
            w.recall(*player, *handoff, state);
        }
        for player in give_up.iter().chain(&let_go) {
            w.outgoing.remove(player);
        }
        let expired: Vec<PlayerId> = w
            .arriving
            .iter()
            .filter(|(_, deadline)| now >= **deadline)
            .map(|(p, _)| *p)
            .collect();
        for p in &expired {
            w.arriving.remove(p);
        }
        w.accepted
            .retain(|_, a| now.saturating_sub(a.at) < ACCEPTED_MEMORY);
        for player in give_up {
            warn!(
                player = player.0,
                "handoff unresolved; letting the client go (it finds its zone on reconnecting)"
            );
            self.disconnect_player(player);
            self.count_handoff("given_up");
        }
        for player in let_go {
            if self.index_of.contains_key(&player) {
                debug!(
                    player = player.0,
                    "redirected client did not leave; disconnecting"
                );
                self.disconnect_player(player);
            }
        }
        for player in expired {
            if self.index_of.contains_key(&player) {
                continue;
            }
            info!(
                player = player.0,
                "handed-over player's client never arrived; saving and removing the avatar"
            );
            if let Some(state) = self.zone.leave(player) {
                self.save(player, state);
            }
            self.count_handoff("arrival_expired");
        }
    }

    fn send_ghosts(&mut self) {
        let Some(w) = self.world.as_mut() else {
            return;
        };
        if !w
            .ticks
            .is_multiple_of(u64::from(w.place.ghost_every_ticks.max(1)))
        {
            return;
        }
        let mut out = std::mem::take(&mut w.ghost_out);
        collect(&self.zone, &w.place.grid, w.place.ghost_margin, &mut out);
        let (from, tick) = (w.me(), self.zone.current_tick());
        for (to, entities) in &out {
            w.publish(
                *to,
                BusMessage::Ghosts {
                    from,
                    to: *to,
                    tick,
                    entities: entities.clone(),
                },
            );
        }
        w.ghost_out = out;
    }

    /// Takes one message from another zone, received at `now`.
    pub fn handle_bus(&mut self, now: Duration, message: BusMessage) {
        let Some(w) = self.world.as_mut() else {
            return;
        };
        if message.to() != w.me() {
            return;
        }
        match message {
            BusMessage::Ghosts {
                from,
                tick,
                entities,
                ..
            } => {
                w.ghosts.insert(from, tick, entities, now);
            }
            BusMessage::Transfer {
                handoff,
                from,
                player,
                state,
                epoch,
                ..
            } => self.on_transfer(handoff, from, player, state, epoch),
            BusMessage::Accepted {
                handoff,
                to,
                player,
                address,
                ..
            } => self.on_accepted(now, handoff, to, player, address),
            BusMessage::Evict { player, epoch, .. } => self.on_evict(player, epoch),
            BusMessage::Refused {
                handoff,
                player,
                reason,
                ..
            } => {
                let Some(w) = self.world.as_mut() else {
                    return;
                };
                let mut recall = None;
                if let Some(out) = w.outgoing.get_mut(&player)
                    && out.handoff == handoff
                    && let Phase::Offered { recalling } = &mut out.phase
                    && !*recalling
                {
                    *recalling = true;
                    recall = Some(out.state);
                }
                if let Some(state) = recall {
                    w.recall(player, handoff, &state);
                    self.count_handoff(&format!("refused_{}", reason.name()));
                }
            }
        }
    }

    /// Another zone took `player` over under `epoch` (a fresh login elsewhere): any copy held
    /// here under an older epoch goes, unsaved (its writes would sort below the new holder's
    /// anyway), and its client with it.
    fn on_evict(&mut self, player: PlayerId, epoch: u64) {
        let older = |s: PlayerState| s.epoch() < epoch;
        let held = self.zone.player_state(player).is_some_and(older);
        let mut leaving = false;
        if let Some(w) = self.world.as_mut() {
            leaving = w.outgoing.get(&player).is_some_and(|o| older(o.state));
            if leaving {
                w.outgoing.remove(&player);
            }
            if held {
                w.arriving.remove(&player);
            }
        }
        if !(held || leaving) {
            return;
        }
        info!(
            player = player.0,
            epoch, "player taken over by a login elsewhere; dropping our copy"
        );
        if held {
            let _ = self.zone.leave(player);
        }
        self.disconnect_player(player);
        self.count_handoff("evicted");
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
            self.on_evict(player, ours.max(owner.epoch) + 1);
        }
    }

    fn on_transfer(
        &mut self,
        handoff: u64,
        from: u32,
        player: PlayerId,
        state: PlayerState,
        epoch: u64,
    ) {
        let accepting = self.accepting;
        let full = self.zone.player_count() as u32 >= self.zone.rules().max_players;
        // What `Zone::join` would refuse is refused before anything is claimed or spooled.
        let sane = state.health <= self.zone.rules().player_max_health
            && state.x.is_finite()
            && state.y.is_finite()
            && state.facing.is_finite();
        let here = self.zone.player_entity(player).is_some();
        let Some(w) = self.world.as_mut() else {
            return;
        };
        let me = w.me();
        if let Some(a) = w.accepted.get(&player)
            && a.from == from
            && a.handoff == handoff
        {
            // Our answer was lost: say it again.
            let epoch = a.epoch;
            w.accept(from, handoff, player, epoch);
            return;
        }
        if w.incoming.contains_key(&player) {
            return; // a claim is under way
        }
        let near = w.place.grid.bounds(ZoneId(me)).is_some_and(|r| {
            let p = Vec2::new(state.x, state.y);
            p.clamp(r.min, r.max).distance(p) <= 4.0
        });
        let refuse = if !accepting {
            Some(RefuseReason::NotAccepting)
        } else if here || w.outgoing.contains_key(&player) {
            Some(RefuseReason::Busy)
        } else if full {
            Some(RefuseReason::Full)
        } else if !near || !sane {
            Some(RefuseReason::BadState)
        } else {
            None
        };
        if let Some(reason) = refuse {
            w.refuse(from, handoff, player, reason);
            return;
        }
        w.incoming.insert(
            player,
            Incoming {
                handoff,
                from,
                state,
            },
        );
        w.ops.push(BusOp::Claim(ClaimRequest {
            player,
            expect: Some(Owner { zone: from, epoch }),
            floor: epoch,
            purpose: ClaimPurpose::Accept { handoff, from },
        }));
    }

    fn on_accepted(
        &mut self,
        now: Duration,
        handoff: u64,
        to: u32,
        player: PlayerId,
        address: std::net::SocketAddr,
    ) {
        let Some(w) = self.world.as_mut() else {
            return;
        };
        let place = w.place.clone();
        let Some(out) = w.outgoing.get_mut(&player) else {
            return;
        };
        if out.handoff != handoff || out.to != to || !matches!(out.phase, Phase::Offered { .. }) {
            return;
        }
        out.phase = Phase::Redirecting {
            deadline: now + place.redirect_timeout,
        };
        let waited = now.saturating_sub(out.crossed);
        w.stats.accepted += 1;
        self.metrics.handoff_seconds.observe(waited.as_secs_f64());
        self.count_handoff("accepted");
        if !self.index_of.contains_key(&player) {
            // The client already left; it finds the new zone when it reconnects.
            if let Some(w) = self.world.as_mut() {
                w.outgoing.remove(&player);
            }
            return;
        }
        let token = mint(
            &TokenRequest {
                protocol_id: self.protocol_id,
                client_id: player.0,
                servers: vec![address],
                expiry_s: place.token_expiry_s,
                timeout_s: place.token_timeout_s,
            },
            &self.private_key,
        );
        match token {
            Ok(token) => {
                for m in redirect_messages(ZoneId(to), address, &token) {
                    self.rep.send_reliable(player, m);
                }
                debug!(player = player.0, to, %address, "client redirected");
            }
            Err(e) => {
                warn!(player = player.0, error = %e, "could not mint the redirect token; disconnecting the client");
                self.disconnect_player(player);
            }
        }
    }

    /// The ownership ledger answered a claim the host asked for.
    pub fn complete_claim(
        &mut self,
        now: Duration,
        request: ClaimRequest,
        result: Result<Claim, StoreError>,
    ) {
        match request.purpose {
            ClaimPurpose::Accept { handoff, from } => {
                self.on_accept_claimed(now, request.player, handoff, from, result)
            }
            ClaimPurpose::Recall { handoff } => {
                self.on_recall_claimed(now, request.player, handoff, result)
            }
        }
    }

    fn on_accept_claimed(
        &mut self,
        now: Duration,
        player: PlayerId,
        handoff: u64,
        from: u32,
        result: Result<Claim, StoreError>,
    ) {
        let Some(w) = self.world.as_mut() else {
            return;
        };
        let arrival = w.place.arrival_timeout;
        let Some(inc) = w.incoming.remove(&player) else {
            return;
        };
        if inc.handoff != handoff || inc.from != from {
            return;
        }
        let owner = match result {
            Ok(Claim::Won(owner)) => owner,
            Ok(Claim::Lost(_)) => {
                w.refuse(from, handoff, player, RefuseReason::Ledger);
                return;
            }
            Err(_) => {
                w.refuse(from, handoff, player, RefuseReason::Store);
                return;
            }
        };
        let state = inc.state.claimed(owner.epoch);
        w.accepted.insert(
            player,
            Accepted {
                handoff,
                from,
                epoch: owner.epoch,
                at: now,
            },
        );
        w.accept(from, handoff, player, owner.epoch);
        w.stats.taken += 1;
        // The player is ours from here: the state is spooled under our epoch at once.
        self.record_save(player, state);
        match self.zone.join(player, state) {
            Ok(_) => {
                if let Some(w) = self.world.as_mut() {
                    w.arriving.insert(player, now + arrival);
                }
                self.hot_ops.push(HotOp::Joined { player });
                self.count_handoff("taken");
            }
            Err(e) => {
                // Held but not simulated: the spooled save is what the next login loads.
                warn!(player = player.0, error = %e, "handed-over player could not join; kept saved");
            }
        }
    }

    fn on_recall_claimed(
        &mut self,
        now: Duration,
        player: PlayerId,
        handoff: u64,
        result: Result<Claim, StoreError>,
    ) {
        let Some(w) = self.world.as_mut() else {
            return;
        };
        let arrival = w.place.arrival_timeout;
        let Some(out) = w.outgoing.get_mut(&player) else {
            return;
        };
        if out.handoff != handoff {
            return;
        }
        let to = out.to;
        match result {
            Ok(Claim::Won(owner)) => {
                let mut state = out.state.claimed(owner.epoch);
                w.outgoing.remove(&player);
                w.stats.recalled += 1;
                let radius = self.zone.rules().body_radius;
                let inside = self
                    .zone
                    .map()
                    .clamp_inside(Vec2::new(state.x, state.y), radius + 0.05);
                (state.x, state.y) = (inside.x, inside.y);
                self.record_save(player, state);
                self.count_handoff("recalled");
                match self.zone.join(player, state) {
                    Ok(_) => {
                        if self.index_of.contains_key(&player) {
                            // The avatar is new: the client starts over with a new welcome.
                            self.rep.disconnect(player);
                            self.rep.connect(&self.zone, player);
                        } else if let Some(w) = self.world.as_mut() {
                            w.arriving.insert(player, now + arrival);
                        }
                    }
                    Err(e) => {
                        warn!(player = player.0, error = %e, "recalled player could not rejoin; kept saved");
                        self.disconnect_player(player);
                    }
                }
            }
            Ok(Claim::Lost(Some(o))) if o.zone == to => {
                // The neighbour took the player: its answer is on the way (re-sent for our
                // repeated transfer). Try again later if it is not.
                if let Phase::Offered { recalling } = &mut out.phase {
                    *recalling = false;
                }
                out.recall_at = now + w.place.handoff_timeout / 2;
            }
            Ok(Claim::Lost(other)) => {
                info!(player = player.0, owner = ?other, "player taken elsewhere during the handoff");
                w.outgoing.remove(&player);
                self.disconnect_player(player);
            }
            Err(e) => {
                debug!(player = player.0, error = %e, "recall claim failed; will retry");
                if let Phase::Offered { recalling } = &mut out.phase {
                    *recalling = false;
                }
                out.recall_at = now + w.place.handoff_timeout / 2;
            }
        }
    }

    /// Spools a save of `player` (without the hot-store leave a disconnect writes).
    pub(super) fn record_save(&mut self, player: PlayerId, state: PlayerState) {
        self.records.push(Record::PlayerSave(SaveRecord {
            zone: self.zone_id,
            player,
            state,
            fence: self.fence,
            unix_ms: self.unix_ms,
        }));
        self.stats.saves += 1;
    }

    fn disconnect_player(&mut self, player: PlayerId) {
        if let Some(&index) = self.index_of.get(&player) {
            let _ = self.net.disconnect(index);
            self.drain_events();
        }
    }

    fn count_handoff(&self, result: &str) {
        self.metrics.handoffs.get_or_create(&reason(result)).inc();
    }
}

//! The handoff machine: a zone's side of a world of zones (the protocol is described in
//! [`crate::world`]). It reads the zone and the players' presences and answers with
//! [`Action`]s the host applies: keep a player inside, hand them off, publish, claim, take a
//! player in, take one back, redirect a client, let a handoff go, drop an older copy. It never
//! changes where a player is itself: the host does that, through [`Presences`]' asserted
//! transitions, when it applies the actions. The machine owns only what is its own: the
//! timers and phase of each outgoing handoff (kept in the `Leaving` presence), the memory of
//! accepted handoffs (to answer a repeated transfer again), the ghosts and the counters.
//!
//! Sans-IO: messages, ledger answers and durability come in as calls with the time; nothing is
//! read from a clock.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tracing::{debug, info, warn};
use zone_core::{BorderCrossing, PlayerId, PlayerState, Vec2, Zone, ZoneId};

use super::presence::{Incoming, Outgoing, Phase, Presence, Presences};
use crate::effects::{ClaimPurpose, ClaimRequest};
use crate::persist::{Claim, Owner, StoreError};
use crate::world::WorldPlace;
use crate::world::bus::{BusMessage, GhostEntity, RefuseReason};
use crate::world::ghosts::{GhostTable, collect};

/// How far over the border (world units) a player must stand before the handoff starts: a
/// player who just arrived does not bounce straight back.
const HANDOFF_DEPTH: f32 = 1.0;
/// How long an accepted handoff is remembered, to answer a re-sent transfer again.
const ACCEPTED_MEMORY: Duration = Duration::from_secs(30);
/// Unanswered transfers are given up after this many handoff timeouts (the client is let go
/// and finds its zone through the ledger on reconnecting), unless the ledger itself cannot be
/// reached: then the recall is retried until it answers (a hot-store outage pauses the
/// handoff; letting the client go would only send it to a login that cannot route it).
const GIVE_UP_TIMEOUTS: u32 = 4;

/// What the host must do for the handoffs.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Action {
    /// The border is closed: keep `player` inside.
    Wall(PlayerId),
    /// `player` crossed into `to`: take them out of the zone, save them, mark them `Leaving`
    /// under handoff `handoff` (the transfer goes out once the save is durable).
    HandOff {
        /// Who.
        player: PlayerId,
        /// The neighbour.
        to: ZoneId,
        /// The handoff id.
        handoff: u64,
    },
    /// Publish a message.
    Publish {
        /// The zone it is for.
        to: ZoneId,
        /// The message.
        message: BusMessage,
    },
    /// Ask the ledger (a recall of a `Leaving` player).
    Claim(ClaimRequest),
    /// A neighbour's offer may be taken: mark the player `Claiming` and claim them.
    StartClaim {
        /// The offer.
        incoming: Incoming,
        /// Who.
        player: PlayerId,
        /// The conditional claim.
        request: ClaimRequest,
    },
    /// The claim of a `Claiming` player was won: join them with `state` (under the new
    /// epoch), awaiting their client.
    Arrive {
        /// Who.
        player: PlayerId,
        /// The state, claimed.
        state: PlayerState,
    },
    /// The claim of a `Claiming` player was lost or failed (the refusal is published).
    ClaimSettled(PlayerId),
    /// A `Leaving` player was taken back under `epoch`: put them back inside.
    Recall {
        /// Who.
        player: PlayerId,
        /// The epoch the ledger gave.
        epoch: u64,
    },
    /// A neighbour took the `Leaving` player: send their client a redirect.
    Redirect {
        /// Who.
        player: PlayerId,
        /// The neighbour.
        to: ZoneId,
        /// Where its clients connect.
        address: SocketAddr,
    },
    /// The handoff of a `Leaving` player is over: forget them and let their client go.
    LetGo(PlayerId),
    /// An `Awaiting` player's client never came: save and remove the avatar.
    Expire(PlayerId),
    /// Another zone holds the player under `epoch`: drop copies held under older epochs.
    Evict {
        /// Who.
        player: PlayerId,
        /// The newer holder's epoch.
        epoch: u64,
    },
    /// Count a handoff event (metrics); `waited` for accepted handoffs.
    Count(HandoffEvent, Option<Duration>),
}

/// What happened to a handoff (a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HandoffEvent {
    /// A player crossed and was offered.
    Started,
    /// A neighbour took a player from this zone.
    Accepted,
    /// A player was taken back.
    Recalled,
    /// A player was taken from a neighbour.
    Taken,
    /// A crossing was refused: the neighbour is silent (or the world ends there).
    BorderClosed,
    /// An unanswered handoff was given up (the client finds its zone on reconnecting).
    GivenUp,
    /// A handed-over player's client never arrived.
    ArrivalExpired,
    /// A copy was dropped for a newer holding elsewhere.
    Evicted,
    /// A neighbour refused a player from this zone.
    Refused(RefuseReason),
    /// A bus message from a zone that is not a neighbour (or not in the world): dropped.
    Stranger,
}

impl HandoffEvent {
    /// Every event, each refusal reason included (the metrics create their labels up front).
    pub const ALL: [HandoffEvent; 15] = [
        HandoffEvent::Started,
        HandoffEvent::Accepted,
        HandoffEvent::Recalled,
        HandoffEvent::Taken,
        HandoffEvent::BorderClosed,
        HandoffEvent::GivenUp,
        HandoffEvent::ArrivalExpired,
        HandoffEvent::Evicted,
        HandoffEvent::Stranger,
        HandoffEvent::Refused(RefuseReason::NotAccepting),
        HandoffEvent::Refused(RefuseReason::Full),
        HandoffEvent::Refused(RefuseReason::BadState),
        HandoffEvent::Refused(RefuseReason::Ledger),
        HandoffEvent::Refused(RefuseReason::Store),
        HandoffEvent::Refused(RefuseReason::Busy),
    ];

    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            HandoffEvent::Started => "started",
            HandoffEvent::Accepted => "accepted",
            HandoffEvent::Recalled => "recalled",
            HandoffEvent::Taken => "taken",
            HandoffEvent::BorderClosed => "border_closed",
            HandoffEvent::GivenUp => "given_up",
            HandoffEvent::ArrivalExpired => "arrival_expired",
            HandoffEvent::Evicted => "evicted",
            HandoffEvent::Stranger => "stranger",
            HandoffEvent::Refused(r) => match r {
                RefuseReason::NotAccepting => "refused_not_accepting",
                RefuseReason::Full => "refused_full",
                RefuseReason::BadState => "refused_bad_state",
                RefuseReason::Ledger => "refused_ledger",
                RefuseReason::Store => "refused_store",
                RefuseReason::Busy => "refused_busy",
            },
        }
    }
}

#[derive(Debug)]
struct Accepted {
    handoff: u64,
    from: ZoneId,
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
    /// In progress now (leaving, being claimed, avatars awaiting their client).
    pub in_flight: usize,
}

/// What a zone of a world keeps for its handoffs and ghosts.
#[derive(Debug)]
pub(super) struct Handoffs {
    place: WorldPlace,
    next_handoff: u64,
    accepted: BTreeMap<PlayerId, Accepted>,
    ghosts: GhostTable,
    ghost_out: BTreeMap<ZoneId, Vec<GhostEntity>>,
    ticks: u64,
    stats: HandoffStats,
}

impl Handoffs {
    pub(super) fn new(place: WorldPlace) -> Self {
        Self {
            place,
            next_handoff: 1,
            accepted: BTreeMap::new(),
            ghosts: GhostTable::default(),
            ghost_out: BTreeMap::new(),
            ticks: 0,
            stats: HandoffStats::default(),
        }
    }

    pub(super) fn place(&self) -> &WorldPlace {
        &self.place
    }

    pub(super) fn me(&self) -> ZoneId {
        self.place.zone
    }

    pub(super) fn stats(&self, presences: &Presences) -> HandoffStats {
        let [_, _, awaiting, leaving, claiming] = presences.counts();
        HandoffStats {
            in_flight: awaiting + leaving + claiming,
            ..self.stats
        }
    }

    pub(super) fn live_neighbours(&self, now: Duration) -> Vec<ZoneId> {
        self.ghosts
            .live_zones(now, self.place.neighbour_timeout)
            .collect()
    }

    /// The ghosts merged at the last tick.
    pub(super) fn ghosts(&self) -> &[zone_core::protocol::EntitySample] {
        self.ghosts.last_merged()
    }

    pub(super) fn ghosts_for_replication(
        &mut self,
        now: Duration,
        here: impl Fn(PlayerId) -> bool,
    ) -> &[zone_core::protocol::EntitySample] {
        let (grid, zone, timeout) = (
            self.place.grid,
            self.place.zone,
            self.place.neighbour_timeout,
        );
        self.ghosts.merged(&grid, zone, now, timeout, here)
    }

    /// The per-tick work: the tick's border crossings, the handoff timers, ghost batches.
    pub(super) fn tick(
        &mut self,
        now: Duration,
        zone: &Zone,
        presences: &mut Presences,
        out: &mut Vec<Action>,
    ) {
        self.ticks += 1;
        for c in &zone.last_output().crossings {
            self.crossing(now, zone, presences, c, out);
        }
        self.timers(now, presences, out);
        self.send_ghosts(zone, out);
    }

    fn crossing(
        &mut self,
        now: Duration,
        zone: &Zone,
        presences: &Presences,
        c: &BorderCrossing,
        out: &mut Vec<Action>,
    ) {
        let at = Vec2::new(c.x, c.y);
        let depth = zone.map().clamp_inside(at, 0.0).distance(at);
        if depth < HANDOFF_DEPTH {
            return;
        }
        let me = self.me();
        let target = self.place.grid.zone_at(at);
        let open = target.filter(|t| {
            *t != me
                && self.ghosts.alive(*t, now, self.place.neighbour_timeout)
                && matches!(presences.get(c.player), Some(Presence::Playing { .. }))
        });
        let Some(to) = open else {
            // The neighbour is down (or this is the world's edge): the border is a wall.
            out.push(Action::Wall(c.player));
            self.stats.border_closed += 1;
            out.push(Action::Count(HandoffEvent::BorderClosed, None));
            return;
        };
        let handoff = self.next_handoff;
        self.next_handoff += 1;
        self.stats.started += 1;
        out.push(Action::HandOff {
            player: c.player,
            to,
            handoff,
        });
        out.push(Action::Count(HandoffEvent::Started, None));
        debug!(
            player = c.player.0,
            from = me.0,
            to = to.0,
            handoff,
            "handoff started"
        );
    }

    /// Sends the transfers whose saves are durable now (records up to `flushed` are settled).
    pub(super) fn release(
        &mut self,
        now: Duration,
        presences: &mut Presences,
        flushed: u64,
        out: &mut Vec<Action>,
    ) {
        let me = self.me();
        for (player, o) in presences.outgoing() {
            if o.last_sent.is_none()
                && o.save <= flushed
                && matches!(o.phase, Phase::Offered { .. })
            {
                o.last_sent = Some(now);
                out.push(transfer(me, player, o));
            }
        }
    }

    fn timers(&mut self, now: Duration, presences: &mut Presences, out: &mut Vec<Action>) {
        let me = self.me();
        let place = &self.place;
        for (player, o) in presences.outgoing() {
            match &mut o.phase {
                Phase::Offered { recalling } => {
                    if now.saturating_sub(o.crossed) >= place.handoff_timeout * GIVE_UP_TIMEOUTS
                        && !o.ledger_unreachable
                    {
                        warn!(
                            player = player.0,
                            "handoff unresolved; letting the client go (it finds its zone on reconnecting)"
                        );
                        out.push(Action::LetGo(player));
                        out.push(Action::Count(HandoffEvent::GivenUp, None));
                        continue;
                    }
                    if !*recalling && now >= o.recall_at {
                        *recalling = true;
                        out.push(Action::Claim(recall(me, player, o.handoff, &o.state)));
                    }
                    if o.last_sent
                        .is_some_and(|last| now.saturating_sub(last) >= place.handoff_resend)
                    {
                        o.last_sent = Some(now);
                        out.push(transfer(me, player, o));
                    }
                }
                Phase::Redirecting { deadline } => {
                    if now >= *deadline {
                        debug!(
                            player = player.0,
                            "redirected client did not leave; disconnecting"
                        );
                        out.push(Action::LetGo(player));
                    }
                }
            }
        }
        for (player, presence) in presences.iter() {
            if let Presence::Awaiting { deadline } = presence
                && now >= *deadline
            {
                info!(
                    player = player.0,
                    "awaited client never arrived; saving and removing the avatar"
                );
                out.push(Action::Expire(player));
                out.push(Action::Count(HandoffEvent::ArrivalExpired, None));
            }
        }
        self.accepted
            .retain(|_, a| now.saturating_sub(a.at) < ACCEPTED_MEMORY);
    }

    fn send_ghosts(&mut self, zone: &Zone, out: &mut Vec<Action>) {
        if !self
            .ticks
            .is_multiple_of(u64::from(self.place.ghost_every_ticks.max(1)))
        {
            return;
        }
        collect(
            zone,
            &self.place.grid,
            self.place.ghost_margin,
            &mut self.ghost_out,
        );
        let (from, tick) = (self.me(), zone.current_tick());
        for (to, entities) in &self.ghost_out {
            out.push(Action::Publish {
                to: *to,
                message: BusMessage::Ghosts {
                    from,
                    to: *to,
                    tick,
                    entities: entities.clone(),
                },
            });
        }
    }

    /// One message from another zone, received at `now`. `accepting` is false while the host
    /// shuts down.
    pub(super) fn bus(
        &mut self,
        now: Duration,
        zone: &Zone,
        presences: &mut Presences,
        accepting: bool,
        message: BusMessage,
        out: &mut Vec<Action>,
    ) {
        if message.to() != self.me() {
            return;
        }
        // Only neighbours hand over, answer and send ghosts; an eviction may come from any
        // zone of the world (a login there). Anything else is a stranger's and is dropped.
        let sender = message.from();
        let known = match &message {
            BusMessage::Evict { .. } => self.place.grid.contains_zone(sender),
            _ => self.place.grid.neighbours(self.me()).contains(&sender),
        };
        if !known {
            out.push(Action::Count(HandoffEvent::Stranger, None));
            return;
        }
        match message {
            BusMessage::Ghosts {
                from,
                tick,
                entities,
                ..
            } => self.ghosts.insert(from, tick, entities, now),
            BusMessage::Transfer {
                handoff,
                from,
                player,
                state,
                epoch,
                ..
            } => {
                let offer = Incoming {
                    handoff,
                    from,
                    state,
                };
                self.transfer(zone, presences, accepting, player, offer, epoch, out);
            }
            BusMessage::Accepted {
                handoff,
                to,
                player,
                address,
                ..
            } => self.accepted(now, presences, handoff, to, player, address, out),
            BusMessage::Evict { player, epoch, .. } => out.push(Action::Evict { player, epoch }),
            BusMessage::Refused {
                handoff,
                player,
                reason,
                ..
            } => {
                let me = self.me();
                if let Some(o) = presences.outgoing_mut(player)
                    && o.handoff == handoff
                    && let Phase::Offered { recalling } = &mut o.phase
                    && !*recalling
                {
                    *recalling = true;
                    out.push(Action::Claim(recall(me, player, handoff, &o.state)));
                    out.push(Action::Count(HandoffEvent::Refused(reason), None));
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn transfer(
        &mut self,
        zone: &Zone,
        presences: &Presences,
        accepting: bool,
        player: PlayerId,
        offer: Incoming,
        epoch: u64,
        out: &mut Vec<Action>,
    ) {
        let me = self.me();
        let from = offer.from;
        if let Some(a) = self.accepted.get(&player)
            && a.from == from
            && a.handoff == offer.handoff
        {
            // Our answer was lost: say it again.
            out.push(self.accept(from, offer.handoff, player, a.epoch));
            return;
        }
        if matches!(presences.get(player), Some(Presence::Claiming { .. })) {
            return; // a claim is under way
        }
        let rules = zone.rules();
        let full = zone.player_count() as u32 >= rules.max_players;
        let s = offer.state;
        // What `Zone::join` would refuse is refused before anything is claimed or spooled.
        // The epoch must fit a version's upper half (see `zone_core::Version`).
        let sane = s.health <= rules.player_max_health
            && epoch <= u64::from(u32::MAX)
            && s.epoch() <= epoch
            && s.x.is_finite()
            && s.y.is_finite()
            && s.facing.is_finite();
        let near = self.place.grid.bounds(me).is_some_and(|r| {
            let p = Vec2::new(s.x, s.y);
            p.clamp(r.min, r.max).distance(p) <= 4.0
        });
        let refuse = if !accepting {
            Some(RefuseReason::NotAccepting)
        } else if presences.get(player).is_some() {
            Some(RefuseReason::Busy)
        } else if full {
            Some(RefuseReason::Full)
        } else if !near || !sane {
            Some(RefuseReason::BadState)
        } else {
            None
        };
        if let Some(reason) = refuse {
            out.push(self.refuse(from, offer.handoff, player, reason));
            return;
        }
        let request = ClaimRequest {
            player,
            expect: Some(Owner { zone: from, epoch }),
            floor: epoch,
            purpose: ClaimPurpose::Accept {
                handoff: offer.handoff,
                from,
            },
        };
        out.push(Action::StartClaim {
            incoming: offer,
            player,
            request,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn accepted(
        &mut self,
        now: Duration,
        presences: &mut Presences,
        handoff: u64,
        to: ZoneId,
        player: PlayerId,
        address: SocketAddr,
        out: &mut Vec<Action>,
    ) {
        let connected = presences.client_of(player).is_some();
        let Some(o) = presences.outgoing_mut(player) else {
            return;
        };
        if o.handoff != handoff || o.to != to || !matches!(o.phase, Phase::Offered { .. }) {
            return;
        }
        o.phase = Phase::Redirecting {
            deadline: now + self.place.redirect_timeout,
        };
        let waited = now.saturating_sub(o.crossed);
        self.stats.accepted += 1;
        out.push(Action::Count(HandoffEvent::Accepted, Some(waited)));
        if connected {
            out.push(Action::Redirect {
                player,
                to,
                address,
            });
        } else {
            // The client already left; it finds the new zone when it reconnects.
            out.push(Action::LetGo(player));
        }
    }

    /// The ledger answered a claim the machine asked for.
    pub(super) fn claimed(
        &mut self,
        now: Duration,
        presences: &mut Presences,
        request: ClaimRequest,
        result: Result<Claim, StoreError>,
        out: &mut Vec<Action>,
    ) {
        let player = request.player;
        match request.purpose {
            ClaimPurpose::Accept { handoff, from } => {
                let Some(Presence::Claiming { incoming }) = presences.get(player) else {
                    return;
                };
                if incoming.handoff != handoff || incoming.from != from {
                    return;
                }
                let state = incoming.state;
                match result {
                    Ok(Claim::Won(owner)) => {
                        self.accepted.insert(
                            player,
                            Accepted {
                                handoff,
                                from,
                                epoch: owner.epoch,
                                at: now,
                            },
                        );
                        out.push(self.accept(from, handoff, player, owner.epoch));
                        self.stats.taken += 1;
                        out.push(Action::Arrive {
                            player,
                            state: state.claimed(owner.epoch),
                        });
                        out.push(Action::Count(HandoffEvent::Taken, None));
                    }
                    Ok(Claim::Lost(_)) => {
                        out.push(Action::ClaimSettled(player));
                        out.push(self.refuse(from, handoff, player, RefuseReason::Ledger));
                    }
                    Err(_) => {
                        out.push(Action::ClaimSettled(player));
                        out.push(self.refuse(from, handoff, player, RefuseReason::Store));
                    }
                }
            }
            ClaimPurpose::Recall { handoff } => {
                let retry = now + self.place.handoff_timeout / 2;
                let Some(o) = presences.outgoing_mut(player) else {
                    return;
                };
                if o.handoff != handoff {
                    return;
                }
                o.ledger_unreachable = result.is_err();
                match result {
                    Ok(Claim::Won(owner)) => {
                        self.stats.recalled += 1;
                        out.push(Action::Recall {
                            player,
                            epoch: owner.epoch,
                        });
                        out.push(Action::Count(HandoffEvent::Recalled, None));
                    }
                    Ok(Claim::Lost(Some(owner))) if owner.zone == o.to => {
                        // The neighbour took the player: its answer is on the way (re-sent
                        // for our repeated transfer). Try again later if it is not.
                        if let Phase::Offered { recalling } = &mut o.phase {
                            *recalling = false;
                        }
                        o.recall_at = retry;
                    }
                    Ok(Claim::Lost(other)) => {
                        info!(player = player.0, owner = ?other, "player taken elsewhere during the handoff");
                        out.push(Action::LetGo(player));
                    }
                    Err(e) => {
                        debug!(player = player.0, error = %e, "recall claim failed; will retry");
                        if let Phase::Offered { recalling } = &mut o.phase {
                            *recalling = false;
                        }
                        o.recall_at = retry;
                    }
                }
            }
        }
    }

    /// Answers zone `from`'s handoff `handoff` of `player`: taken, under `epoch`.
    fn accept(&self, from: ZoneId, handoff: u64, player: PlayerId, epoch: u64) -> Action {
        Action::Publish {
            to: from,
            message: BusMessage::Accepted {
                handoff,
                from,
                to: self.me(),
                player,
                epoch,
                address: self.place.public_address,
            },
        }
    }

    /// Answers zone `from`'s handoff `handoff` of `player`: not taken, for `reason`.
    fn refuse(&self, from: ZoneId, handoff: u64, player: PlayerId, reason: RefuseReason) -> Action {
        Action::Publish {
            to: from,
            message: BusMessage::Refused {
                handoff,
                from,
                to: self.me(),
                player,
                reason,
            },
        }
    }
}

/// The transfer of an outgoing handoff.
fn transfer(me: ZoneId, player: PlayerId, o: &Outgoing) -> Action {
    Action::Publish {
        to: o.to,
        message: BusMessage::Transfer {
            handoff: o.handoff,
            from: me,
            to: o.to,
            player,
            state: o.state,
            epoch: o.state.epoch(),
        },
    }
}

/// Asks the ledger to give `player` back to zone `me`, on the condition that it still names
/// `me` under the epoch the player left with.
fn recall(me: ZoneId, player: PlayerId, handoff: u64, state: &PlayerState) -> ClaimRequest {
    ClaimRequest {
        player,
        expect: Some(Owner {
            zone: me,
            epoch: state.epoch(),
        }),
        floor: state.epoch(),
        purpose: ClaimPurpose::Recall { handoff },
    }
}

//! Where each player is, as far as this zone knows: one explicit [`Presence`] per player,
//! and the index from netcode client slots to players. "Where is this player" has one answer
//! here; the zone, the replicator and the handoffs follow it.
//!
//! A player absent from the table is not this zone's concern. Transitions are methods that
//! state the presence they start from; a transition from any other presence is a bug in the
//! host: it panics in debug builds (tests, simulations, fuzzing) and is refused and counted in
//! release builds ([`Presences::illegal_transitions`]). [`Presences::check`] states the
//! invariants the host keeps between its inputs.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use zone_core::{PlayerId, PlayerState, Zone, ZoneId};

/// One player's presence in this zone.
#[derive(Clone, Debug, PartialEq)]
pub enum Presence {
    /// A client connected; their state is being loaded (and claimed in the ownership ledger).
    Loading {
        /// netcode client slot.
        client: usize,
    },
    /// In the zone, with their client.
    Playing {
        /// netcode client slot.
        client: usize,
    },
    /// In the zone, awaiting their client (handed over from a neighbour, or taken back from a
    /// failed handoff after the client left); saved and removed at `deadline`.
    Awaiting {
        /// When to give up waiting.
        deadline: Duration,
    },
    /// Handed away: out of the zone (saved), offered to a neighbour; the client, while still
    /// connected, follows a redirect once the neighbour accepts.
    Leaving {
        /// netcode client slot, while the client is connected.
        client: Option<usize>,
        /// The handoff.
        out: Outgoing,
    },
    /// A neighbour offered the player; this zone is claiming them in the ledger.
    Claiming {
        /// The offer.
        incoming: Incoming,
    },
}

impl Presence {
    /// The presence's name (logs, invariant reports).
    pub fn name(&self) -> &'static str {
        match self {
            Presence::Loading { .. } => "loading",
            Presence::Playing { .. } => "playing",
            Presence::Awaiting { .. } => "awaiting",
            Presence::Leaving { .. } => "leaving",
            Presence::Claiming { .. } => "claiming",
        }
    }

    /// Whether the player's avatar is in the zone (simulated by this server).
    pub fn in_zone(&self) -> bool {
        matches!(self, Presence::Playing { .. } | Presence::Awaiting { .. })
    }

    /// The client slot, while a client is attached.
    pub fn client(&self) -> Option<usize> {
        match self {
            Presence::Loading { client } | Presence::Playing { client } => Some(*client),
            Presence::Leaving { client, .. } => *client,
            Presence::Awaiting { .. } | Presence::Claiming { .. } => None,
        }
    }
}

/// A handoff from this zone.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    /// Handoff id (per source zone).
    pub handoff: u64,
    /// The neighbour.
    pub to: ZoneId,
    /// The state the player left with (saved before the transfer goes out).
    pub state: PlayerState,
    /// The host's record number of that save: the transfer waits until it is durable.
    pub save: u64,
    /// When the player crossed.
    pub crossed: Duration,
    /// When the transfer was last sent (`None`: not yet, the save is not durable).
    pub last_sent: Option<Duration>,
    /// When to claim the player back if nobody answered.
    pub recall_at: Duration,
    /// The last recall claim could not reach the ledger (a hot-store outage): the handoff is
    /// not given up while nobody can say who holds the player; the client waits, connected.
    pub ledger_unreachable: bool,
    /// Where the handoff stands.
    pub phase: Phase,
}

/// Where an outgoing handoff stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Transfer offered, no answer yet (`recalling` while a recall claim is out).
    Offered {
        /// A recall claim is out.
        recalling: bool,
    },
    /// Accepted: the client was told to go; it is let go at `deadline` at the latest.
    Redirecting {
        /// When the client is disconnected if it has not left.
        deadline: Duration,
    },
}

/// A handoff to this zone, being claimed.
#[derive(Clone, Debug, PartialEq)]
pub struct Incoming {
    /// The sender's handoff id.
    pub handoff: u64,
    /// The sender.
    pub from: ZoneId,
    /// The state offered.
    pub state: PlayerState,
}

/// What a client's connection means for its player.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connect {
    /// New here: load (and claim) their state; the player is `Loading`.
    Load,
    /// Their avatar awaited them here: attached, `Playing`.
    Attach,
    /// Not now (being handed away, claimed, or already connected): disconnect the client.
    Refuse(&'static str),
}

/// What a client's disconnection left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gone {
    /// The slot held no player (refused, or already let go).
    Nobody,
    /// A player whose state was still loading.
    Loading(PlayerId),
    /// A player in the zone: their avatar must leave and be saved.
    Playing(PlayerId),
    /// A player being handed away (their handoff goes on, or their redirect is complete).
    Leaving(PlayerId),
}

/// A broken invariant of the presence table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvariantError(pub String);

impl fmt::Display for InvariantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvariantError {}

/// Every player this zone knows of, and which client slot serves whom.
#[derive(Debug)]
pub struct Presences {
    players: BTreeMap<PlayerId, Presence>,
    /// An index of `players`: client slot -> the player whose presence names that slot.
    clients: Vec<Option<PlayerId>>,
    illegal: u64,
}

impl Presences {
    /// An empty table for `max_clients` client slots.
    pub fn new(max_clients: usize) -> Self {
        Self {
            players: BTreeMap::new(),
            clients: vec![None; max_clients],
            illegal: 0,
        }
    }

    /// The player's presence (`None`: not this zone's).
    pub fn get(&self, player: PlayerId) -> Option<&Presence> {
        self.players.get(&player)
    }

    /// Everyone, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (PlayerId, &Presence)> + '_ {
        self.players.iter().map(|(p, s)| (*p, s))
    }

    /// The player a client slot serves.
    pub fn player_of(&self, client: usize) -> Option<PlayerId> {
        self.clients.get(client).copied().flatten()
    }

    /// The client slot of a player in the zone with their client (`Playing`): the slot their
    /// snapshots go to.
    pub fn playing_client(&self, player: PlayerId) -> Option<usize> {
        match self.players.get(&player) {
            Some(Presence::Playing { client }) => Some(*client),
            _ => None,
        }
    }

    /// The client slot of a player, in any presence with a client.
    pub fn client_of(&self, player: PlayerId) -> Option<usize> {
        self.players.get(&player).and_then(Presence::client)
    }

    /// Players with a client attached.
    pub fn connected(&self) -> usize {
        self.clients.iter().filter(|c| c.is_some()).count()
    }

    /// How many players are in each presence: loading, playing, awaiting, leaving, claiming.
    pub fn counts(&self) -> [usize; 5] {
        let mut n = [0; 5];
        for p in self.players.values() {
            let i = match p {
                Presence::Loading { .. } => 0,
                Presence::Playing { .. } => 1,
                Presence::Awaiting { .. } => 2,
                Presence::Leaving { .. } => 3,
                Presence::Claiming { .. } => 4,
            };
            n[i] += 1;
        }
        n
    }

    /// Transitions refused because they started from the wrong presence (bugs; release
    /// builds only, debug builds panic).
    pub fn illegal_transitions(&self) -> u64 {
        self.illegal
    }

    /// The handoff of a player who is `Leaving` (timers and phase are the handoff's to move).
    pub fn outgoing_mut(&mut self, player: PlayerId) -> Option<&mut Outgoing> {
        match self.players.get_mut(&player) {
            Some(Presence::Leaving { out, .. }) => Some(out),
            _ => None,
        }
    }

    /// Every `Leaving` player's handoff.
    pub fn outgoing(&mut self) -> impl Iterator<Item = (PlayerId, &mut Outgoing)> + '_ {
        self.players.iter_mut().filter_map(|(p, s)| match s {
            Presence::Leaving { out, .. } => Some((*p, out)),
            _ => None,
        })
    }

    #[track_caller]
    fn illegal(&mut self, player: PlayerId, transition: &str) {
        let from = self.players.get(&player).map_or("absent", Presence::name);
        debug_assert!(
            false,
            "illegal presence transition {transition} of player {} from {from}",
            player.0
        );
        tracing::error!(
            player = player.0,
            from,
            transition,
            "illegal presence transition refused"
        );
        self.illegal += 1;
    }

    /// A client connected in slot `client` for `player`.
    pub fn connect(&mut self, player: PlayerId, client: usize) -> Connect {
        if self.clients.get(client) != Some(&None) {
            self.illegal(player, "connect (slot in use or out of range)");
            return Connect::Refuse("client slot in use");
        }
        let outcome = match self.players.get(&player) {
            None => {
                self.players.insert(player, Presence::Loading { client });
                Connect::Load
            }
            Some(Presence::Awaiting { .. }) => {
                self.players.insert(player, Presence::Playing { client });
                Connect::Attach
            }
            Some(Presence::Leaving { .. }) => return Connect::Refuse("being handed away"),
            Some(Presence::Claiming { .. }) => return Connect::Refuse("being handed over"),
            Some(Presence::Loading { .. } | Presence::Playing { .. }) => {
                return Connect::Refuse("already connected");
            }
        };
        self.clients[client] = Some(player);
        outcome
    }

    /// The client in slot `client` disconnected.
    pub fn disconnect(&mut self, client: usize) -> Gone {
        let Some(player) = self.clients.get_mut(client).and_then(Option::take) else {
            return Gone::Nobody;
        };
        match self.players.get_mut(&player) {
            Some(Presence::Loading { .. }) => {
                self.players.remove(&player);
                Gone::Loading(player)
            }
            Some(Presence::Playing { .. }) => {
                self.players.remove(&player);
                Gone::Playing(player)
            }
            Some(Presence::Leaving { out, client: c }) => {
                if matches!(out.phase, Phase::Redirecting { .. }) {
                    // The redirect is complete: the client went to the neighbour.
                    self.players.remove(&player);
                } else {
                    *c = None;
                }
                Gone::Leaving(player)
            }
            _ => {
                self.illegal(player, "disconnect");
                Gone::Nobody
            }
        }
    }

    /// A load finished: the slot of the still-`Loading` player (`None` when their client left
    /// meanwhile).
    pub fn loading_client(&self, player: PlayerId) -> Option<usize> {
        match self.players.get(&player) {
            Some(Presence::Loading { client }) => Some(*client),
            _ => None,
        }
    }

    /// `Loading` -> `Playing`: the loaded player joined the zone.
    pub fn joined(&mut self, player: PlayerId) {
        match self.players.get(&player) {
            Some(Presence::Loading { client }) => {
                let client = *client;
                self.players.insert(player, Presence::Playing { client });
            }
            _ => self.illegal(player, "joined"),
        }
    }

    /// `Playing` -> `Leaving`: the player stepped over the border and left the zone.
    pub fn hand_off(&mut self, player: PlayerId, out: Outgoing) {
        match self.players.get(&player) {
            Some(Presence::Playing { client }) => {
                let client = Some(*client);
                self.players
                    .insert(player, Presence::Leaving { client, out });
            }
            _ => self.illegal(player, "hand_off"),
        }
    }

    /// `Leaving` -> `Playing` (client still connected) or `Awaiting` (until `deadline`): the
    /// player was taken back. Returns the handoff.
    pub fn recalled(&mut self, player: PlayerId, deadline: Duration) -> Option<Outgoing> {
        match self.players.remove(&player) {
            Some(Presence::Leaving { client, out }) => {
                let back = match client {
                    Some(client) => Presence::Playing { client },
                    None => Presence::Awaiting { deadline },
                };
                self.players.insert(player, back);
                Some(out)
            }
            other => {
                self.restore(player, other);
                self.illegal(player, "recalled");
                None
            }
        }
    }

    /// `Leaving` -> absent: the handoff is over (given up, let go, or the player is held
    /// elsewhere). Returns the client slot to disconnect, if the client is still here.
    pub fn let_go(&mut self, player: PlayerId) -> Option<usize> {
        match self.players.remove(&player) {
            Some(Presence::Leaving { client, .. }) => {
                if let Some(c) = client {
                    self.clients[c] = None;
                }
                client
            }
            other => {
                self.restore(player, other);
                self.illegal(player, "let_go");
                None
            }
        }
    }

    /// Absent -> `Claiming`: a neighbour's offer is being claimed.
    pub fn claim(&mut self, player: PlayerId, incoming: Incoming) {
        if self.players.contains_key(&player) {
            self.illegal(player, "claim");
            return;
        }
        self.players.insert(player, Presence::Claiming { incoming });
    }

    /// `Claiming` -> absent: the ledger answered; returns the offer.
    pub fn claim_settled(&mut self, player: PlayerId) -> Option<Incoming> {
        match self.players.remove(&player) {
            Some(Presence::Claiming { incoming }) => Some(incoming),
            other => {
                self.restore(player, other);
                self.illegal(player, "claim_settled");
                None
            }
        }
    }

    /// Absent -> `Awaiting`: a player handed over joined the zone and awaits their client.
    pub fn arrived(&mut self, player: PlayerId, deadline: Duration) {
        if self.players.contains_key(&player) {
            self.illegal(player, "arrived");
            return;
        }
        self.players.insert(player, Presence::Awaiting { deadline });
    }

    /// `Awaiting` -> absent: the client never came (the avatar must leave and be saved).
    pub fn expired(&mut self, player: PlayerId) {
        match self.players.remove(&player) {
            Some(Presence::Awaiting { .. }) => {}
            other => {
                self.restore(player, other);
                self.illegal(player, "expired");
            }
        }
    }

    /// `Playing`, `Awaiting` or `Leaving` -> absent: a newer holding elsewhere superseded
    /// this copy. Returns the client slot to disconnect, if any.
    pub fn evicted(&mut self, player: PlayerId) -> Option<usize> {
        match self.players.remove(&player) {
            Some(
                p @ (Presence::Playing { .. }
                | Presence::Awaiting { .. }
                | Presence::Leaving { .. }),
            ) => {
                let client = p.client();
                if let Some(c) = client {
                    self.clients[c] = None;
                }
                client
            }
            other => {
                self.restore(player, other);
                self.illegal(player, "evicted");
                None
            }
        }
    }

    /// Everyone goes (shutdown): returns the players whose avatars were in the zone.
    pub fn clear(&mut self) -> Vec<PlayerId> {
        let held = self
            .players
            .iter()
            .filter(|(_, s)| s.in_zone())
            .map(|(p, _)| *p)
            .collect();
        self.players.clear();
        self.clients.iter_mut().for_each(|c| *c = None);
        held
    }

    fn restore(&mut self, player: PlayerId, presence: Option<Presence>) {
        if let Some(p) = presence {
            self.players.insert(player, p);
        }
    }

    /// The invariants the host keeps between its inputs:
    /// - a player's avatar is in `zone` exactly when they are `Playing` or `Awaiting`;
    /// - every client slot named by a presence points back at that player, and every slot in
    ///   use is named by its player's presence;
    /// - an outgoing handoff goes to another zone;
    /// - a player in the zone is held under a state no older than the one they left or were
    ///   offered with (checked by the caller against durable saves).
    pub fn check(&self, zone: &Zone) -> Result<(), InvariantError> {
        let me = zone.zone_id();
        for (player, _) in zone.players() {
            match self.players.get(&player) {
                Some(p) if p.in_zone() => {}
                other => {
                    return Err(InvariantError(format!(
                        "player {} is in zone {} but {}",
                        player.0,
                        me.0,
                        other.map_or("absent", Presence::name)
                    )));
                }
            }
        }
        for (player, presence) in &self.players {
            if presence.in_zone() && zone.player_entity(*player).is_none() {
                return Err(InvariantError(format!(
                    "player {} is {} but not in zone {}",
                    player.0,
                    presence.name(),
                    me.0
                )));
            }
            if let Some(c) = presence.client()
                && self.clients.get(c) != Some(&Some(*player))
            {
                return Err(InvariantError(format!(
                    "player {} names client slot {c}, which serves {:?}",
                    player.0,
                    self.clients.get(c)
                )));
            }
            if let Presence::Leaving { out, .. } = presence
                && out.to == me
            {
                return Err(InvariantError(format!(
                    "player {} handed from zone {} to itself",
                    player.0, me.0
                )));
            }
        }
        for (slot, player) in self.clients.iter().enumerate() {
            if let Some(p) = player
                && self.client_of(*p) != Some(slot)
            {
                return Err(InvariantError(format!(
                    "client slot {slot} serves player {} whose presence is {}",
                    p.0,
                    self.players.get(p).map_or("absent", Presence::name)
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing() -> Outgoing {
        Outgoing {
            handoff: 1,
            to: ZoneId(2),
            state: PlayerState::new_character(0.0, 0.0, 10),
            save: 1,
            crossed: Duration::ZERO,
            last_sent: None,
            recall_at: Duration::from_secs(1),
            ledger_unreachable: false,
            phase: Phase::Offered { recalling: false },
        }
    }

    #[test]
    fn a_player_connects_loads_plays_leaves_and_is_recalled() {
        let mut t = Presences::new(4);
        let p = PlayerId(7);
        assert_eq!(t.connect(p, 1), Connect::Load);
        assert_eq!(t.loading_client(p), Some(1));
        assert_eq!(t.connect(p, 2), Connect::Refuse("already connected"));
        t.joined(p);
        assert_eq!(t.playing_client(p), Some(1));
        t.hand_off(p, outgoing());
        assert_eq!(t.connect(p, 3), Connect::Refuse("being handed away"));
        // The client leaves before the neighbour answers: the handoff goes on without it.
        assert_eq!(t.disconnect(1), Gone::Leaving(p));
        assert_eq!(t.player_of(1), None);
        let back = t.recalled(p, Duration::from_secs(5));
        assert_eq!(back.map(|o| o.handoff), Some(1));
        assert_eq!(
            t.get(p),
            Some(&Presence::Awaiting {
                deadline: Duration::from_secs(5)
            })
        );
        assert_eq!(t.connect(p, 0), Connect::Attach);
        assert_eq!(t.counts(), [0, 1, 0, 0, 0]);
        assert_eq!(t.disconnect(0), Gone::Playing(p));
        assert!(t.get(p).is_none());
        assert_eq!(t.illegal_transitions(), 0);
    }

    #[test]
    fn a_redirected_client_leaving_completes_the_handoff() {
        let mut t = Presences::new(2);
        let p = PlayerId(3);
        t.connect(p, 0);
        t.joined(p);
        t.hand_off(p, outgoing());
        if let Some(o) = t.outgoing_mut(p) {
            o.phase = Phase::Redirecting {
                deadline: Duration::from_secs(3),
            };
        }
        assert_eq!(t.disconnect(0), Gone::Leaving(p));
        assert!(t.get(p).is_none(), "gone with its client");
    }

    #[test]
    #[should_panic(expected = "illegal presence transition hand_off of player 9 from loading")]
    fn an_illegal_transition_is_a_bug() {
        let mut t = Presences::new(2);
        t.connect(PlayerId(9), 0);
        t.hand_off(PlayerId(9), outgoing());
    }

    #[test]
    #[should_panic(expected = "illegal presence transition claim of player 4 from playing")]
    fn a_player_here_cannot_be_claimed_from_a_neighbour() {
        let mut t = Presences::new(2);
        t.connect(PlayerId(4), 0);
        t.joined(PlayerId(4));
        t.claim(
            PlayerId(4),
            Incoming {
                handoff: 1,
                from: ZoneId(1),
                state: PlayerState::new_character(0.0, 0.0, 10),
            },
        );
    }
}

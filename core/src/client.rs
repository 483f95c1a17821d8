//! [`ClientSession`]: the sans-IO client half of the game protocol.
//!
//! It applies the server's delta snapshots against the baselines it holds, rebuilding exactly
//! the server's quantized state for what it sees; it sends the newest inputs redundantly with
//! its acks; and it runs the client side of the reliable channel. Bots, simulation tests and game
//! clients use it; it never touches a socket or a clock.

pub mod interpolation;
pub mod prediction;
pub mod timesync;

use std::collections::VecDeque;

use crate::game::{Replicated, WireLayout};
use crate::protocol::{
    ApplyError, AvatarState, ClientMessage, ClientPacket, MAX_INPUTS, NetEntity, Redirect,
    RedirectAssembler, ReliableReceiver, ReliableSender, ServerMessage, ServerPacket, WireInput,
};
use crate::replication::SNAPSHOT_RING;
use crate::{EntityId, PlayerId, PlayerInput, ZoneId};

/// Packets before an unacknowledged chat line is sent again.
const CHAT_RESEND_PACKETS: u64 = 12;

/// Something the server told the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// A reliable message, delivered once and in order.
    Message(ServerMessage),
    /// The server echoed a ping.
    Pong(u64),
    /// The player was handed to another zone: connect there with the token (all parts of the
    /// redirect arrived).
    Redirect(Redirect),
    /// The server runs a game (plugins) other than this session's: their protocol hashes
    /// differ (`None`: no plugin declares anything on that side). Disconnect; nothing the
    /// server sends about plugin state can be read.
    GameMismatch {
        /// This session's hash.
        ours: Option<u64>,
        /// The server's hash.
        theirs: Option<u64>,
    },
}

#[derive(Debug, Default)]
struct Held {
    tick: u64,
    entities: Vec<NetEntity>,
    avatar: Option<AvatarState>,
}

/// The client side of one connection to a zone.
#[derive(Debug)]
pub struct ClientSession {
    player: PlayerId,
    zone: Option<ZoneId>,
    entity: Option<EntityId>,
    tick_hz: u16,
    ring: Vec<Held>,
    newest: u64,
    inputs: VecDeque<WireInput>,
    next_seq: u32,
    reliable_rx: ReliableReceiver,
    reliable_tx: ReliableSender<ClientMessage>,
    events: VecDeque<ClientEvent>,
    ping: Option<u64>,
    decoded: ServerPacket,
    scratch: Vec<NetEntity>,
    stale_snapshots: u64,
    unwelcomed_snapshots: u64,
    packets_written: u64,
    redirect: RedirectAssembler,
    redirects_refused: u64,
    wire: WireLayout,
    server_game: Option<u64>,
}

impl ClientSession {
    /// A session for `player` of the built-in game, before any packet arrived.
    pub fn new(player: PlayerId) -> Self {
        Self::with_game(player, WireLayout::default())
    }

    /// A session for `player` of a game with plugins (`game.wire()`): it declares the game's
    /// protocol hash to the server first, reads the plugins' replicated components
    /// ([`ClientSession::component`]) and sends their actions ([`ClientSession::send_action`]).
    pub fn with_game(player: PlayerId, wire: WireLayout) -> Self {
        let mut session = Self {
            player,
            zone: None,
            entity: None,
            tick_hz: 0,
            ring: (0..SNAPSHOT_RING).map(|_| Held::default()).collect(),
            newest: 0,
            inputs: VecDeque::with_capacity(MAX_INPUTS),
            next_seq: 1,
            reliable_rx: ReliableReceiver::default(),
            reliable_tx: ReliableSender::new(64),
            events: VecDeque::new(),
            ping: None,
            decoded: ServerPacket::default(),
            scratch: Vec::new(),
            stale_snapshots: 0,
            unwelcomed_snapshots: 0,
            packets_written: 0,
            redirect: RedirectAssembler::default(),
            redirects_refused: 0,
            server_game: None,
            wire,
        };
        if !session.wire.is_bare() {
            let _ = session.reliable_tx.send(ClientMessage::Game {
                protocol_hash: session.wire.protocol_hash(),
            });
        }
        session
    }

    /// The game's wire layout this session was built with.
    pub fn wire(&self) -> &WireLayout {
        &self.wire
    }

    /// Component `C` of entity `id` in the newest snapshot, if the entity has one (a
    /// malformed encoding, which a server of the same game never sends, reads as none).
    pub fn component<C: Replicated>(&self, id: EntityId) -> Option<C> {
        let e = self.entity_state(id)?;
        self.wire.component::<C>(&e.ext)?.ok()
    }

    /// Redirect parts that did not continue the redirect being assembled (refused).
    pub fn redirects_refused(&self) -> u64 {
        self.redirects_refused
    }

    /// The account this session plays.
    pub fn player(&self) -> PlayerId {
        self.player
    }

    /// The avatar, once welcomed.
    pub fn entity(&self) -> Option<EntityId> {
        self.entity
    }

    /// The zone, once welcomed.
    pub fn zone(&self) -> Option<ZoneId> {
        self.zone
    }

    /// Server ticks per second, once welcomed (0 before).
    pub fn tick_hz(&self) -> u16 {
        self.tick_hz
    }

    /// Newest snapshot tick applied (0 = none).
    pub fn newest_tick(&self) -> u64 {
        self.newest
    }

    /// Snapshots that arrived after a newer one and were skipped.
    pub fn stale_snapshots(&self) -> u64 {
        self.stale_snapshots
    }

    /// Snapshots that arrived before the welcome (ignored: positions need the tick rate).
    pub fn unwelcomed_snapshots(&self) -> u64 {
        self.unwelcomed_snapshots
    }

    /// What the client sees: the entity list of the newest snapshot, sorted by id. Each is a
    /// track: [`ClientSession::position`] gives where it is at the newest tick.
    pub fn entities(&self) -> &[NetEntity] {
        self.held(self.newest).map_or(&[], |v| v.as_slice())
    }

    /// Where `e` is at the newest snapshot's tick (1/64 units).
    pub fn position(&self, e: &NetEntity) -> (i32, i32) {
        e.at(self.newest, u32::from(self.tick_hz))
    }

    /// Where `e` is at the newest snapshot's tick, in world units.
    pub fn position_vec(&self, e: &NetEntity) -> crate::Vec2 {
        e.position_at(self.newest, u32::from(self.tick_hz))
    }

    /// One entity of the current view.
    pub fn entity_state(&self, id: EntityId) -> Option<&NetEntity> {
        let v = self.entities();
        v.binary_search_by_key(&id, |e| e.id)
            .ok()
            .and_then(|i| v.get(i))
    }

    fn held(&self, tick: u64) -> Option<&Vec<NetEntity>> {
        let slot = self.ring.get((tick % SNAPSHOT_RING as u64) as usize)?;
        (tick != 0 && slot.tick == tick).then_some(&slot.entities)
    }

    /// The own avatar exactly as the server held it at the newest snapshot's tick, with the
    /// sequence number of the input then in effect (what prediction reconciles against).
    pub fn avatar(&self) -> Option<AvatarState> {
        self.ring
            .get((self.newest % SNAPSHOT_RING as u64) as usize)
            .filter(|h| h.tick == self.newest && self.newest != 0)
            .and_then(|h| h.avatar)
    }

    /// The views the session remembers (its last 32 applied snapshots, for delta baselines):
    /// `(tick, entities sorted by id)`, in no particular order. The interpolator draws from
    /// them ([`interpolation::Interpolator::view_at`]).
    pub fn views(&self) -> impl Iterator<Item = (u64, &[NetEntity])> {
        let newest = self.newest;
        self.ring
            .iter()
            .filter(move |h| h.tick != 0 && h.tick <= newest)
            .map(|h| (h.tick, h.entities.as_slice()))
    }

    /// Next thing the server said, if any.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Queues a chat line (reliable). Fails if the text is too long or too many are unacked.
    pub fn send_chat(&mut self, text: &str) -> Result<(), &'static str> {
        if text.len() > crate::protocol::MAX_CHAT {
            return Err("chat text too long");
        }
        self.reliable_tx
            .send(ClientMessage::Chat {
                text: text.to_owned(),
            })
            .map(drop)
            .map_err(|_| "chat queue full")
    }

    /// Queues a game plugin's action (reliable). Fails if its payload is too long or too many
    /// messages are unacked.
    pub fn send_action<A: crate::game::Action>(&mut self, action: &A) -> Result<(), &'static str> {
        let mut payload = Vec::new();
        action.encode(&mut payload);
        if payload.len() > crate::game::MAX_ACTION_BYTES {
            return Err("action payload too long");
        }
        self.reliable_tx
            .send(ClientMessage::Action {
                kind: crate::game::action_kind::<A>(),
                payload,
            })
            .map(drop)
            .map_err(|_| "reliable queue full")
    }

    /// Asks for a pong in the server's next packet.
    pub fn ping(&mut self, nonce: u64) {
        self.ping = Some(nonce);
    }

    /// Records an input (numbered here) to send with the next packets. Returns its sequence.
    pub fn push_input(&mut self, mut input: PlayerInput) -> u32 {
        input.seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        if self.inputs.len() == MAX_INPUTS {
            self.inputs.pop_front();
        }
        self.inputs.push_back(WireInput::from_input(&input));
        input.seq
    }

    /// Appends the next client packet to `buf`: acks, the newest inputs, unacked chat, ping.
    pub fn write_packet(&mut self, buf: &mut Vec<u8>) {
        self.packets_written += 1;
        let (reliable_first, due) = self
            .reliable_tx
            .due(self.packets_written, CHAT_RESEND_PACKETS);
        let packet = ClientPacket {
            ack_tick: self.newest,
            reliable_ack: self.reliable_rx.ack(),
            ping: self.ping.take(),
            inputs: self.inputs.iter().copied().collect(),
            reliable_first,
            reliable: due.take(4).cloned().collect(),
        };
        self.reliable_tx
            .mark_sent(reliable_first, packet.reliable.len(), self.packets_written);
        packet.encode(buf);
    }

    /// Applies one server packet. Reliable messages and acks are taken even from a packet whose
    /// snapshot is stale; a snapshot against a baseline the client lacks is refused.
    pub fn handle_packet(&mut self, bytes: &[u8]) -> Result<(), ApplyError> {
        let mut packet = std::mem::take(&mut self.decoded);
        let result = packet
            .decode_into(bytes)
            .map_err(ApplyError::from)
            .and_then(|()| self.apply(&packet));
        self.decoded = packet;
        result
    }

    fn apply(&mut self, p: &ServerPacket) -> Result<(), ApplyError> {
        self.reliable_tx.on_ack(p.reliable_ack);
        for m in self.reliable_rx.accept(p.reliable_first, &p.reliable) {
            if let ServerMessage::Welcome {
                zone,
                player,
                entity,
                tick_hz,
            } = m
                && *player == self.player
            {
                (self.zone, self.entity, self.tick_hz) = (Some(*zone), Some(*entity), *tick_hz);
                // A server with plugins declares its game just before the welcome.
                let ours = (!self.wire.is_bare()).then(|| self.wire.protocol_hash());
                if ours != self.server_game {
                    self.events.push_back(ClientEvent::GameMismatch {
                        ours,
                        theirs: self.server_game,
                    });
                }
            }
            if let ServerMessage::Game { protocol_hash } = m {
                self.server_game = Some(*protocol_hash);
                continue;
            }
            if let ServerMessage::Redirect { .. } = m {
                match self.redirect.accept(m) {
                    Ok(Some(done)) => self.events.push_back(ClientEvent::Redirect(done)),
                    Ok(None) => {}
                    Err(_) => self.redirects_refused += 1,
                }
                continue;
            }
            self.events.push_back(ClientEvent::Message(m.clone()));
        }
        if let Some(n) = p.pong {
            self.events.push_back(ClientEvent::Pong(n));
        }
        if p.tick <= self.newest {
            self.stale_snapshots += 1;
            return Ok(());
        }
        if self.tick_hz == 0 {
            // Tracks need the tick rate the welcome brings; the server sends full snapshots
            // until one is acknowledged.
            self.unwelcomed_snapshots += 1;
            return Ok(());
        }
        let hz = u32::from(self.tick_hz);
        let (base, base_avatar): (&[NetEntity], _) = if p.baseline == 0 {
            (&[], None)
        } else {
            match self.ring.get((p.baseline % SNAPSHOT_RING as u64) as usize) {
                Some(slot) if slot.tick == p.baseline => (&slot.entities, slot.avatar),
                _ => return Err(ApplyError::BaselineMissing(p.baseline)),
            }
        };
        let avatar = match &p.avatar {
            Some(u) => Some(u.apply(base_avatar.as_ref())),
            None => base_avatar,
        };
        let out = &mut self.scratch;
        out.clear();
        let (mut ri, mut ui) = (0usize, 0usize);
        for (i, b) in base.iter().enumerate() {
            let i = i as u32;
            if p.removed.get(ri) == Some(&i) {
                ri += 1;
                if p.updates.get(ui).is_some_and(|u| u.index == i) {
                    return Err(ApplyError::BadIndex);
                }
                continue;
            }
            match p.updates.get(ui) {
                Some(u) if u.index == i => {
                    ui += 1;
                    out.push(u.apply(b, p.tick, hz).ok_or(ApplyError::Overflow)?);
                }
                _ => out.push(*b),
            }
        }
        if ri != p.removed.len() || ui != p.updates.len() {
            return Err(ApplyError::BadIndex);
        }
        // Merge the spawns into the kept entities (both sorted by id: a linear merge from the
        // back, in place; spawns out of order are sorted, and duplicates refused below).
        let kept = out.len();
        out.extend_from_slice(&p.spawns);
        if p.spawns.windows(2).all(|w| w[0].id < w[1].id) {
            let (mut i, mut j) = (kept, p.spawns.len());
            for k in (0..out.len()).rev() {
                if j == 0 {
                    break;
                }
                if i > 0 && out[i - 1].id > p.spawns[j - 1].id {
                    out[k] = out[i - 1];
                    i -= 1;
                } else {
                    out[k] = p.spawns[j - 1];
                    j -= 1;
                }
            }
        } else {
            out.sort_unstable_by_key(|e| e.id);
        }
        if out.windows(2).any(|w| w[0].id == w[1].id) {
            return Err(ApplyError::Duplicate);
        }
        let slot = &mut self.ring[(p.tick % SNAPSHOT_RING as u64) as usize];
        slot.tick = p.tick;
        slot.avatar = avatar;
        std::mem::swap(&mut slot.entities, &mut self.scratch);
        self.newest = p.tick;
        Ok(())
    }
}

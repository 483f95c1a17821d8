//! Packet layouts in both directions, with their encoders and total decoders.
//!
//! Client -> server: [`ClientPacket`] (acks, the newest inputs, reliable chat, ping).
//! Server -> client: [`ServerPacket`] (one delta snapshot, reliable messages, acks, pong).
//! Decoding checks every count against a cap before reading the items.

use bincode::{Decode, Encode};
use smallvec::SmallVec;

use super::wire::{WireReader, WireWriter};
use super::{
    DecodeError, MAX_CHAT, MAX_INPUTS, MAX_PACKET, MAX_RELIABLE_PER_PACKET, NetEntity, NetKind,
    PROTOCOL_VERSION,
};
use crate::{AbilityId, AbilityUse, EntityId, PlayerId, PlayerInput, ZoneId};

const CLIENT_INPUT_PACKET: u8 = 1;
const SERVER_SNAPSHOT_PACKET: u8 = 1;

/// One input as sent by a client: direction in 1/127 steps, facing in 1/256 turns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct WireInput {
    /// Input sequence number (increasing by one per input).
    pub seq: u32,
    /// Server tick the input is meant for.
    pub tick: u64,
    /// Direction x in [-127, 127].
    pub move_x: i8,
    /// Direction y in [-127, 127].
    pub move_y: i8,
    /// Run instead of walk.
    pub run: bool,
    /// Facing in 1/256 turns.
    pub facing: u8,
    /// Ability to use, if any.
    pub ability: Option<(AbilityId, EntityId)>,
}

impl WireInput {
    /// Quantizes a core input for the wire.
    pub fn from_input(i: &PlayerInput) -> Self {
        let q = |v: f32| {
            if v.is_finite() {
                (v.clamp(-1.0, 1.0) * 127.0).round() as i8
            } else {
                0
            }
        };
        Self {
            seq: i.seq,
            tick: i.tick,
            move_x: q(i.move_x),
            move_y: q(i.move_y),
            run: i.run,
            facing: super::quantize_angle(i.facing),
            ability: i.ability.map(|a| (a.ability, a.target)),
        }
    }

    /// The core input this wire input stands for (direction clamped to length 1).
    pub fn to_input(&self) -> PlayerInput {
        let dir = glam::Vec2::new(
            f32::from(self.move_x.max(-127)),
            f32::from(self.move_y.max(-127)),
        ) / 127.0;
        let dir = dir.clamp_length_max(1.0);
        PlayerInput {
            seq: self.seq,
            tick: self.tick,
            move_x: dir.x,
            move_y: dir.y,
            run: self.run,
            facing: super::dequantize_angle(self.facing),
            ability: self
                .ability
                .map(|(ability, target)| AbilityUse { ability, target }),
        }
    }
}

/// A reliable message from client to server.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum ClientMessage {
    /// Chat to everyone near.
    Chat {
        /// UTF-8, at most [`MAX_CHAT`] bytes.
        text: String,
    },
}

/// A reliable message from server to client.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum ServerMessage {
    /// First message of a connection: who and where the client is.
    Welcome {
        /// Zone.
        zone: ZoneId,
        /// The client's account.
        player: PlayerId,
        /// The client's avatar.
        entity: EntityId,
        /// Server ticks per second.
        tick_hz: u16,
    },
    /// Chat from a player.
    Chat {
        /// Sender.
        from: PlayerId,
        /// UTF-8, at most [`MAX_CHAT`] bytes.
        text: String,
    },
    /// A hit involving the client's avatar.
    Hit {
        /// Attacker.
        attacker: EntityId,
        /// Target.
        target: EntityId,
        /// Ability used.
        ability: AbilityId,
        /// Damage dealt.
        damage: u16,
        /// Whether it killed.
        killed: bool,
    },
    /// The server is closing this connection (shutdown, redirect follows, ...).
    Goodbye {
        /// Reason code: 0 shutdown, 1 kicked, 2 zone handoff.
        reason: u8,
    },
    /// One part of a redirect: the player now belongs to `zone`, served at `address`; the
    /// parts' `token` bytes, in order, are the connect token to get in with (see
    /// [`super::RedirectAssembler`]).
    Redirect {
        /// The zone the player was handed to.
        zone: ZoneId,
        /// Where that zone's server listens.
        address: std::net::SocketAddr,
        /// This part's index, from 0.
        part: u8,
        /// Number of parts (at most [`super::MAX_REDIRECT_PARTS`]).
        parts: u8,
        /// Token bytes of this part (at most [`super::REDIRECT_PART_BYTES`]).
        token: Vec<u8>,
    },
}

fn check_server_message(m: &ServerMessage) -> Result<(), DecodeError> {
    match m {
        ServerMessage::Chat { text, .. } => check_text(text),
        ServerMessage::Redirect {
            part, parts, token, ..
        } => {
            if token.len() > super::REDIRECT_PART_BYTES {
                Err(DecodeError::TooMany {
                    what: "redirect token bytes",
                    got: token.len(),
                    max: super::REDIRECT_PART_BYTES,
                })
            } else if *parts == 0 || *parts > super::MAX_REDIRECT_PARTS || part >= parts {
                Err(DecodeError::OutOfRange("redirect part"))
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

fn check_text(text: &str) -> Result<(), DecodeError> {
    if text.len() > MAX_CHAT {
        Err(DecodeError::TooMany {
            what: "chat bytes",
            got: text.len(),
            max: MAX_CHAT,
        })
    } else {
        Ok(())
    }
}

/// Client -> server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientPacket {
    /// Newest snapshot tick the client has applied (0 = none yet).
    pub ack_tick: u64,
    /// Next reliable sequence number the client expects from the server.
    pub reliable_ack: u16,
    /// Echoed back in the server's next packet.
    pub ping: Option<u64>,
    /// The newest inputs, oldest first (at most [`MAX_INPUTS`]).
    pub inputs: SmallVec<[WireInput; MAX_INPUTS]>,
    /// Sequence number of the first reliable message below.
    pub reliable_first: u16,
    /// Unacknowledged reliable messages, consecutive from `reliable_first`.
    pub reliable: Vec<ClientMessage>,
}

impl ClientPacket {
    /// Appends the encoded packet to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let mut w = WireWriter::new(buf);
        w.put(PROTOCOL_VERSION);
        w.put(CLIENT_INPUT_PACKET);
        w.put(self.ack_tick);
        w.put(self.reliable_ack);
        w.put(self.ping);
        w.put(self.inputs.len() as u32);
        for i in &self.inputs {
            w.put(*i);
        }
        w.put(self.reliable.len() as u32);
        if !self.reliable.is_empty() {
            w.put(self.reliable_first);
            for m in &self.reliable {
                w.put(m);
            }
        }
    }

    /// Decodes a whole packet.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        p.decode_into(bytes)?;
        Ok(p)
    }

    /// Decodes a whole packet into `self`, reusing its buffers.
    pub fn decode_into(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        if bytes.len() > MAX_PACKET {
            return Err(DecodeError::TooLarge);
        }
        let mut r = WireReader::new(bytes);
        read_header(&mut r, CLIENT_INPUT_PACKET)?;
        self.ack_tick = r.get()?;
        self.reliable_ack = r.get()?;
        self.ping = r.get()?;
        let n = r.count("inputs", MAX_INPUTS)?;
        self.inputs.clear();
        for _ in 0..n {
            let i: WireInput = r.get()?;
            if i.move_x == i8::MIN || i.move_y == i8::MIN {
                return Err(DecodeError::OutOfRange("input direction"));
            }
            self.inputs.push(i);
        }
        let n = r.count("reliable messages", MAX_RELIABLE_PER_PACKET)?;
        self.reliable.clear();
        self.reliable_first = 0;
        if n > 0 {
            self.reliable_first = r.get()?;
            for _ in 0..n {
                let m: ClientMessage = r.get()?;
                let ClientMessage::Chat { text } = &m;
                check_text(text)?;
                self.reliable.push(m);
            }
        }
        r.finish()
    }
}

/// Update-mask bit: position changed (delta from baseline follows).
pub const UPDATE_POS: u8 = 1;
/// Update-mask bit: velocity changed (delta from baseline follows).
pub const UPDATE_VEL: u8 = 2;
/// Update-mask bit: facing changed (absolute value follows).
pub const UPDATE_FACING: u8 = 4;
/// Update-mask bit: health, maximum health or life changed (absolute values follow).
pub const UPDATE_STATUS: u8 = 8;

/// A change to one entity of the baseline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntityUpdate {
    /// Index of the entity in the baseline's id-sorted list.
    pub index: u32,
    /// Position delta from the baseline, 1/64 units.
    pub pos: Option<(i32, i32)>,
    /// Velocity delta from the baseline, 1/64 units per second.
    pub vel: Option<(i32, i32)>,
    /// New facing.
    pub facing: Option<u8>,
    /// New health, maximum health, alive.
    pub status: Option<(u16, u16, bool)>,
}

impl EntityUpdate {
    /// The update that turns `base` into `now` (all fields `None` if equal).
    pub fn between(index: u32, base: &NetEntity, now: &NetEntity) -> Self {
        let pos = (base.x != now.x || base.y != now.y)
            .then(|| (now.x.wrapping_sub(base.x), now.y.wrapping_sub(base.y)));
        let vel = (base.vx != now.vx || base.vy != now.vy).then(|| {
            (
                i32::from(now.vx) - i32::from(base.vx),
                i32::from(now.vy) - i32::from(base.vy),
            )
        });
        let facing = (base.facing != now.facing).then_some(now.facing);
        let status = (base.health != now.health
            || base.max_health != now.max_health
            || base.alive != now.alive)
            .then_some((now.health, now.max_health, now.alive));
        Self {
            index,
            pos,
            vel,
            facing,
            status,
        }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.pos.is_none() && self.vel.is_none() && self.facing.is_none() && self.status.is_none()
    }

    fn mask(&self) -> u8 {
        (if self.pos.is_some() { UPDATE_POS } else { 0 })
            | (if self.vel.is_some() { UPDATE_VEL } else { 0 })
            | (if self.facing.is_some() {
                UPDATE_FACING
            } else {
                0
            })
            | (if self.status.is_some() {
                UPDATE_STATUS
            } else {
                0
            })
    }

    /// Encoded size when the previous update's index is `prev` (exact).
    pub fn encoded_len(&self, prev_index: Option<u32>) -> usize {
        use super::wire::{varint_len, zigzag_len};
        let delta = self
            .index
            .wrapping_sub(prev_index.map_or(0, |p| p.wrapping_add(1)));
        let mut n = varint_len((u64::from(delta) << 4) | u64::from(self.mask()));
        if let Some((dx, dy)) = self.pos {
            n += zigzag_len(dx.into()) + zigzag_len(dy.into());
        }
        if let Some((dx, dy)) = self.vel {
            n += zigzag_len(dx.into()) + zigzag_len(dy.into());
        }
        if self.facing.is_some() {
            n += 1;
        }
        if let Some((h, m, _)) = self.status {
            n += varint_len(h.into()) + varint_len(m.into()) + 1;
        }
        n
    }

    /// Applies the update to a baseline entity.
    pub fn apply(&self, base: &NetEntity) -> Option<NetEntity> {
        let mut e = *base;
        if let Some((dx, dy)) = self.pos {
            e.x = base.x.checked_add(dx)?;
            e.y = base.y.checked_add(dy)?;
        }
        if let Some((dx, dy)) = self.vel {
            e.vx = i16::try_from(i32::from(base.vx).checked_add(dx)?).ok()?;
            e.vy = i16::try_from(i32::from(base.vy).checked_add(dy)?).ok()?;
        }
        if let Some(f) = self.facing {
            e.facing = f;
        }
        if let Some((h, m, alive)) = self.status {
            (e.health, e.max_health, e.alive) = (h, m, alive);
        }
        Some(e)
    }
}

/// Encoded size of a spawned entity when the previous spawn's id is `prev` (exact).
pub(crate) fn spawn_len(e: &NetEntity, prev: Option<EntityId>) -> usize {
    use super::wire::{varint_len, zigzag_len};
    let delta = e.id.0.wrapping_sub(prev.map_or(0, |p| p.0.wrapping_add(1)));
    varint_len(delta.into())
        + 1
        + zigzag_len(e.x.into())
        + zigzag_len(e.y.into())
        + zigzag_len(e.vx.into())
        + zigzag_len(e.vy.into())
        + 1
        + varint_len(e.health.into())
        + varint_len(e.max_health.into())
}

/// Server -> client: one snapshot as a delta against a baseline the client acknowledged.
///
/// The client's new entity list is the baseline's list, minus `removed`, with `updates`
/// applied, plus `spawns`, sorted by id. A baseline of 0 means "no baseline" (full state).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerPacket {
    /// The tick this snapshot describes.
    pub tick: u64,
    /// The snapshot tick this one is a delta against (0 = none).
    pub baseline: u64,
    /// Next reliable sequence number the server expects from the client.
    pub reliable_ack: u16,
    /// The client's ping, echoed.
    pub pong: Option<u64>,
    /// Sequence number of the first reliable message below.
    pub reliable_first: u16,
    /// Unacknowledged reliable messages, consecutive from `reliable_first`.
    pub reliable: Vec<ServerMessage>,
    /// Baseline indices of entities that left the client's view, increasing.
    pub removed: Vec<u32>,
    /// Changes to baseline entities, by increasing index.
    pub updates: Vec<EntityUpdate>,
    /// Entities new to the client's view, by increasing id.
    pub spawns: Vec<NetEntity>,
}

/// Caps on the sections of a server packet (each item costs at least one byte).
const MAX_ITEMS: usize = MAX_PACKET;

impl ServerPacket {
    /// Clears every section, keeping the buffers.
    pub fn clear(&mut self) {
        self.reliable.clear();
        self.removed.clear();
        self.updates.clear();
        self.spawns.clear();
        self.pong = None;
        self.reliable_first = 0;
    }

    /// Appends the encoded packet to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let mut w = WireWriter::new(buf);
        w.put(PROTOCOL_VERSION);
        w.put(SERVER_SNAPSHOT_PACKET);
        w.put(self.tick);
        w.put(self.baseline);
        w.put(self.reliable_ack);
        w.put(self.pong);
        w.put(self.reliable.len() as u32);
        if !self.reliable.is_empty() {
            w.put(self.reliable_first);
            for m in &self.reliable {
                w.put(m);
            }
        }
        w.put(self.removed.len() as u32);
        let mut next = 0u32;
        for &i in &self.removed {
            w.put(i.wrapping_sub(next));
            next = i.wrapping_add(1);
        }
        w.put(self.updates.len() as u32);
        let mut next = 0u32;
        for u in &self.updates {
            w.put((u64::from(u.index.wrapping_sub(next)) << 4) | u64::from(u.mask()));
            next = u.index.wrapping_add(1);
            if let Some((dx, dy)) = u.pos {
                w.put(dx);
                w.put(dy);
            }
            if let Some((dx, dy)) = u.vel {
                w.put(dx);
                w.put(dy);
            }
            if let Some(f) = u.facing {
                w.put(f);
            }
            if let Some((h, m, alive)) = u.status {
                w.put(h);
                w.put(m);
                w.put(alive);
            }
        }
        w.put(self.spawns.len() as u32);
        let mut next = 0u32;
        for e in &self.spawns {
            w.put(e.id.0.wrapping_sub(next));
            next = e.id.0.wrapping_add(1);
            w.put((e.kind as u8) | (u8::from(e.alive) << 1));
            w.put(e.x);
            w.put(e.y);
            w.put(e.vx);
            w.put(e.vy);
            w.put(e.facing);
            w.put(e.health);
            w.put(e.max_health);
        }
    }

    /// Decodes a whole packet.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        p.decode_into(bytes)?;
        Ok(p)
    }

    /// Decodes a whole packet into `self`, reusing its buffers.
    pub fn decode_into(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        if bytes.len() > MAX_PACKET {
            return Err(DecodeError::TooLarge);
        }
        self.clear();
        let mut r = WireReader::new(bytes);
        read_header(&mut r, SERVER_SNAPSHOT_PACKET)?;
        self.tick = r.get()?;
        self.baseline = r.get()?;
        if self.baseline >= self.tick && self.baseline != 0 {
            return Err(DecodeError::OutOfRange("baseline tick"));
        }
        self.reliable_ack = r.get()?;
        self.pong = r.get()?;
        let n = r.count("reliable messages", MAX_RELIABLE_PER_PACKET)?;
        if n > 0 {
            self.reliable_first = r.get()?;
            for _ in 0..n {
                let m: ServerMessage = r.get()?;
                check_server_message(&m)?;
                self.reliable.push(m);
            }
        }
        let n = r.count("removals", MAX_ITEMS)?;
        let mut next = 0u32;
        for _ in 0..n {
            let delta: u32 = r.get()?;
            let i = next
                .checked_add(delta)
                .ok_or(DecodeError::OutOfRange("removal index"))?;
            self.removed.push(i);
            next = i
                .checked_add(1)
                .ok_or(DecodeError::OutOfRange("removal index"))?;
        }
        let n = r.count("updates", MAX_ITEMS)?;
        let mut next = 0u32;
        for _ in 0..n {
            let head: u64 = r.get()?;
            let mask = (head & 0xF) as u8;
            let delta =
                u32::try_from(head >> 4).map_err(|_| DecodeError::OutOfRange("update index"))?;
            let index = next
                .checked_add(delta)
                .ok_or(DecodeError::OutOfRange("update index"))?;
            next = index
                .checked_add(1)
                .ok_or(DecodeError::OutOfRange("update index"))?;
            let mut u = EntityUpdate {
                index,
                ..EntityUpdate::default()
            };
            if mask & UPDATE_POS != 0 {
                u.pos = Some((r.get()?, r.get()?));
            }
            if mask & UPDATE_VEL != 0 {
                u.vel = Some((r.get()?, r.get()?));
            }
            if mask & UPDATE_FACING != 0 {
                u.facing = Some(r.get()?);
            }
            if mask & UPDATE_STATUS != 0 {
                u.status = Some((r.get()?, r.get()?, r.get()?));
            }
            if u.is_empty() {
                return Err(DecodeError::OutOfRange("empty update mask"));
            }
            self.updates.push(u);
        }
        let n = r.count("spawns", MAX_ITEMS)?;
        let mut next = 0u32;
        for _ in 0..n {
            let delta: u32 = r.get()?;
            let id = next
                .checked_add(delta)
                .ok_or(DecodeError::OutOfRange("entity id"))?;
            next = id
                .checked_add(1)
                .ok_or(DecodeError::OutOfRange("entity id"))?;
            let flags: u8 = r.get()?;
            if flags > 3 {
                return Err(DecodeError::BadTag {
                    what: "entity flags",
                    got: flags.into(),
                });
            }
            self.spawns.push(NetEntity {
                id: EntityId(id),
                kind: if flags & 1 == 1 {
                    NetKind::Player
                } else {
                    NetKind::Npc
                },
                alive: flags & 2 == 2,
                x: r.get()?,
                y: r.get()?,
                vx: r.get()?,
                vy: r.get()?,
                facing: r.get()?,
                health: r.get()?,
                max_health: r.get()?,
            });
        }
        r.finish()
    }
}

fn read_header(r: &mut WireReader<'_>, kind: u8) -> Result<(), DecodeError> {
    let version: u8 = r.get()?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::BadVersion { got: version });
    }
    let got: u8 = r.get()?;
    if got != kind {
        return Err(DecodeError::BadTag {
            what: "packet kind",
            got: got.into(),
        });
    }
    Ok(())
}

//! Packet layouts in both directions, with their encoders and total decoders.
//!
//! Client -> server: [`ClientPacket`] (acks, the newest inputs, reliable chat, ping).
//! Server -> client: [`ServerPacket`] (one delta snapshot, reliable messages, acks, pong).
//! Decoding checks every count against a cap before reading the items.

use bincode::{Decode, Encode};
use smallvec::SmallVec;

use super::wire::{
    ByteSink, SmallBytes, WireReader, WireWriter, put_pair, put_varint, put_zigzag, varint_len,
};
use super::{
    AvatarUpdate, DecodeError, MAX_CHAT, MAX_INPUTS, MAX_PACKET, MAX_RELIABLE_PER_PACKET,
    NetEntity, NetKind, PROTOCOL_VERSION,
};
use crate::{AbilityId, AbilityUse, EntityId, PlayerId, PlayerInput, ZoneId};

const CLIENT_INPUT_PACKET: u8 = 1;

/// [`ServerMessage::Goodbye`] reason: the client declared a game (plugins) other than the
/// server's.
pub const GOODBYE_GAME_MISMATCH: u8 = 3;
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
    /// Ability to use, if any: which, on whom, and how many ticks before `tick` the view the
    /// player aimed in was (0: none claimed, no rewind).
    pub ability: Option<(AbilityId, EntityId, u16)>,
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
            ability: i.ability.map(|a| {
                let age = if a.view_tick == 0 {
                    0
                } else {
                    i.tick.saturating_sub(a.view_tick).min(u64::from(u16::MAX)) as u16
                };
                (a.ability, a.target, age)
            }),
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
            ability: self.ability.map(|(ability, target, age)| AbilityUse {
                ability,
                target,
                view_tick: if age == 0 {
                    0
                } else {
                    self.tick.saturating_sub(u64::from(age))
                },
            }),
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
    /// The client's game: the protocol hash of its plugins' wire layout
    /// ([`crate::game::WireLayout::protocol_hash`]). Sent first, and only by a client whose
    /// game declares actions or replicated components.
    Game {
        /// The hash.
        protocol_hash: u64,
    },
    /// A game plugin's action ([`crate::game::Action`]).
    Action {
        /// Its wire kind ([`crate::game::action_kind`]).
        kind: u16,
        /// Its payload in the action's own encoding, at most
        /// [`crate::game::MAX_ACTION_BYTES`] bytes.
        payload: Vec<u8>,
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
        /// Reason code: 0 shutdown, 1 kicked, 2 zone handoff, 3 the client's game differs
        /// from the server's ([`GOODBYE_GAME_MISMATCH`]).
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
    /// The server's game: the protocol hash of its plugins' wire layout. Sent just before
    /// [`ServerMessage::Welcome`], and only by a server whose game declares actions or
    /// replicated components.
    Game {
        /// The hash.
        protocol_hash: u64,
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

fn check_action(payload: &[u8]) -> Result<(), DecodeError> {
    let max = crate::game::MAX_ACTION_BYTES;
    if payload.len() > max {
        Err(DecodeError::TooMany {
            what: "action payload bytes",
            got: payload.len(),
            max,
        })
    } else {
        Ok(())
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
                match &m {
                    ClientMessage::Chat { text } => check_text(text)?,
                    ClientMessage::Action { payload, .. } => check_action(payload)?,
                    ClientMessage::Game { .. } => {}
                }
                self.reliable.push(m);
            }
        }
        r.finish()
    }
}

/// Update-mask bit: the track changed: the new anchor (0 when the entity stands still, else 1 +
/// its age in ticks before the packet's tick) and the anchor position relative to the old
/// track's position at the new anchor tick follow.
pub const UPDATE_TRACK: u8 = 1;
/// Update-mask bit: velocity changed (delta from baseline follows).
pub const UPDATE_VEL: u8 = 2;
/// Update-mask bit: facing changed (absolute value follows).
pub const UPDATE_FACING: u8 = 4;
/// Update-mask bit: health, maximum health or life changed (absolute values follow).
pub const UPDATE_STATUS: u8 = 8;

/// Section flags of a server packet: which optional sections follow the header.
const SECTION_PONG: u8 = 1;
const SECTION_RELIABLE: u8 = 2;
const SECTION_REMOVALS: u8 = 4;
const SECTION_UPDATES: u8 = 8;
const SECTION_SPAWNS: u8 = 16;
/// Section flag: the avatar section ([`super::AvatarUpdate`]) ends the packet.
pub const SECTION_AVATAR: u8 = 32;
const SECTIONS_ALL: u8 = 63;

/// A change to one entity of the baseline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntityUpdate {
    /// Index of the entity in the baseline's id-sorted list.
    pub index: u32,
    /// New track: its anchor (`None`: standing still, anchor 0; `Some(age)`: `age` ticks
    /// before the packet's tick), and the anchor position minus the old track's position at
    /// the new anchor tick (1/64 units).
    pub track: Option<(Option<u64>, i32, i32)>,
    /// Velocity delta from the baseline, 1/16 units per second.
    pub vel: Option<(i32, i32)>,
    /// New facing.
    pub facing: Option<u8>,
    /// New health, maximum health, alive.
    pub status: Option<(u16, u16, bool)>,
    /// New replicated plugin state (travels with `status`).
    pub ext: Option<super::Ext>,
}

/// Writes the body of the update turning `base` into `now` (every field but the header and
/// the track's age, which depend on the packet) and returns its mask (0: nothing changed).
/// The server prepares these bytes once per change and copies them into every packet.
pub fn write_update_body(
    base: &NetEntity,
    now: &NetEntity,
    tick_hz: u32,
    out: &mut impl ByteSink,
) -> u8 {
    let mut mask = 0;
    if base.anchor != now.anchor || base.x != now.x || base.y != now.y {
        mask |= UPDATE_TRACK;
        let (px, py) = base.at(now.anchor, tick_hz);
        put_pair(out, now.x.wrapping_sub(px), now.y.wrapping_sub(py));
    }
    if base.vx != now.vx || base.vy != now.vy {
        mask |= UPDATE_VEL;
        put_zigzag(out, i64::from(now.vx) - i64::from(base.vx));
        put_zigzag(out, i64::from(now.vy) - i64::from(base.vy));
    }
    if base.facing != now.facing {
        mask |= UPDATE_FACING;
        out.put_bytes(&[now.facing]);
    }
    let ext = base.ext != now.ext;
    if ext
        || base.health != now.health
        || base.max_health != now.max_health
        || base.alive != now.alive
    {
        mask |= UPDATE_STATUS;
        put_varint(out, now.health.into());
        put_varint(out, now.max_health.into());
        out.put_bytes(&[life_byte(now.alive, ext)]);
        if ext {
            now.ext.write(out);
        }
    }
    mask
}

/// Life byte of a status change: bit 0 alive, bit 1 the plugins' replicated state
/// ([`super::Ext`]) follows.
fn life_byte(alive: bool, ext: bool) -> u8 {
    u8::from(alive) | (u8::from(ext) << 1)
}

/// Spawn flag: the plugins' replicated state ([`super::Ext`]) follows the health fields.
const SPAWN_EXT: u8 = 8;
/// Spawn flag: a plugin's object ([`NetKind::Prop`]).
const SPAWN_PROP: u8 = 16;

/// Spawn flag: player avatar (else NPC).
const SPAWN_PLAYER: u8 = 1;
/// Spawn flag: alive.
const SPAWN_ALIVE: u8 = 2;
/// Spawn flag: moving (anchor age and velocity follow).
const SPAWN_MOVING: u8 = 4;

/// Writes a spawned entity's body: everything but its id delta and, for a moving entity, the
/// anchor age that goes right after the first byte (the flags).
pub fn write_spawn_body(e: &NetEntity, out: &mut impl ByteSink) {
    let moving = e.moving();
    let kind = match e.kind {
        NetKind::Npc => 0,
        NetKind::Player => SPAWN_PLAYER,
        NetKind::Prop => SPAWN_PROP,
    };
    out.put_bytes(&[kind
        | (u8::from(e.alive) << 1)
        | if moving { SPAWN_MOVING } else { 0 }
        | if e.ext.is_empty() { 0 } else { SPAWN_EXT }]);
    put_zigzag(out, e.x.into());
    put_zigzag(out, e.y.into());
    if moving {
        put_zigzag(out, e.vx.into());
        put_zigzag(out, e.vy.into());
    }
    out.put_bytes(&[e.facing]);
    put_varint(out, e.health.into());
    put_varint(out, e.max_health.into());
    if !e.ext.is_empty() {
        e.ext.write(out);
    }
}

/// The update header: the index delta and the mask in one varint.
pub fn update_header(index_delta: u32, mask: u8) -> u64 {
    (u64::from(index_delta) << 4) | u64::from(mask)
}

/// The anchor field of a track change or a spawn of `e` in a packet of `tick`: 0 for a
/// standing record, else 1 + the anchor's age.
pub fn anchor_field(e: &NetEntity, tick: u64) -> u64 {
    if e.moving() {
        1 + tick.saturating_sub(e.anchor)
    } else {
        0
    }
}

impl EntityUpdate {
    /// The update that turns `base` into `now` in a packet of `tick` (all fields `None` if
    /// equal). `now.anchor` must not be after `tick`.
    pub fn between(index: u32, base: &NetEntity, now: &NetEntity, tick: u64, tick_hz: u32) -> Self {
        let track = (base.anchor != now.anchor || base.x != now.x || base.y != now.y).then(|| {
            let (px, py) = base.at(now.anchor, tick_hz);
            (
                now.moving().then(|| tick.saturating_sub(now.anchor)),
                now.x.wrapping_sub(px),
                now.y.wrapping_sub(py),
            )
        });
        let vel = (base.vx != now.vx || base.vy != now.vy).then(|| {
            (
                i32::from(now.vx) - i32::from(base.vx),
                i32::from(now.vy) - i32::from(base.vy),
            )
        });
        let facing = (base.facing != now.facing).then_some(now.facing);
        let ext = (base.ext != now.ext).then_some(now.ext);
        let status = (ext.is_some()
            || base.health != now.health
            || base.max_health != now.max_health
            || base.alive != now.alive)
            .then_some((now.health, now.max_health, now.alive));
        Self {
            index,
            track,
            vel,
            facing,
            status,
            ext,
        }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.mask() == 0
    }

    /// The mask bits of the fields present.
    pub fn mask(&self) -> u8 {
        (if self.track.is_some() {
            UPDATE_TRACK
        } else {
            0
        }) | (if self.vel.is_some() { UPDATE_VEL } else { 0 })
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
        let mut buf = Vec::with_capacity(32);
        self.write(prev_index, &mut buf);
        buf.len()
    }

    fn write(&self, prev_index: Option<u32>, out: &mut Vec<u8>) {
        let delta = self
            .index
            .wrapping_sub(prev_index.map_or(0, |p| p.wrapping_add(1)));
        put_varint(out, update_header(delta, self.mask()));
        if let Some((age, dx, dy)) = self.track {
            put_varint(out, age.map_or(0, |a| a + 1));
            put_pair(out, dx, dy);
        }
        if let Some((dx, dy)) = self.vel {
            put_zigzag(out, dx.into());
            put_zigzag(out, dy.into());
        }
        if let Some(f) = self.facing {
            out.push(f);
        }
        if let Some((h, m, alive)) = self.status {
            put_varint(out, h.into());
            put_varint(out, m.into());
            out.push(life_byte(alive, self.ext.is_some()));
            if let Some(ext) = &self.ext {
                ext.write(out);
            }
        }
    }

    /// Applies the update to a baseline entity, in a packet of `tick`.
    pub fn apply(&self, base: &NetEntity, tick: u64, tick_hz: u32) -> Option<NetEntity> {
        let mut e = *base;
        if let Some((age, dx, dy)) = self.track {
            let anchor = match age {
                None => 0,
                Some(age) => tick.checked_sub(age)?,
            };
            let (px, py) = base.at(anchor, tick_hz);
            e.anchor = anchor;
            e.x = px.checked_add(dx)?;
            e.y = py.checked_add(dy)?;
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
        if let Some(ext) = self.ext {
            e.ext = ext;
        }
        Some(e)
    }
}

/// Encoded size of a spawned entity in a packet of `tick` when the previous spawn's id is
/// `prev` (exact).
pub fn spawn_len(e: &NetEntity, tick: u64, prev: Option<EntityId>) -> usize {
    let delta = e.id.0.wrapping_sub(prev.map_or(0, |p| p.0.wrapping_add(1)));
    let mut body = SmallBytes::default();
    write_spawn_body(e, &mut body);
    let age = if e.moving() {
        varint_len(tick.saturating_sub(e.anchor))
    } else {
        0
    };
    varint_len(delta.into()) + age + body.len()
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
    /// Entities new to the client's view, by increasing id (anchors at or before `tick`).
    pub spawns: Vec<NetEntity>,
    /// The client's own avatar, exactly, where it differs from the baseline's.
    pub avatar: Option<AvatarUpdate>,
}

/// Writes a prepared spawn body with the anchor age of a moving entity after its flags.
pub fn write_spawn(out: &mut Vec<u8>, body: &SmallBytes, age: Option<u64>) {
    let bytes = body.as_slice();
    let (flags, rest) = bytes.split_at(1.min(bytes.len()));
    out.extend_from_slice(flags);
    if let Some(age) = age {
        put_varint(out, age);
    }
    out.extend_from_slice(rest);
}

/// Caps on the sections of a server packet (each item costs at least one byte).
const MAX_ITEMS: usize = MAX_PACKET;

/// Writes a server packet's header: version, kind, tick, baseline age, reliable ack and the
/// section flags, then the pong if present. The server's fast path and
/// [`ServerPacket::encode`] share it.
pub fn write_server_header(
    out: &mut Vec<u8>,
    tick: u64,
    baseline: u64,
    reliable_ack: u16,
    pong: Option<u64>,
    sections: u8,
) {
    out.push(PROTOCOL_VERSION);
    out.push(SERVER_SNAPSHOT_PACKET);
    put_varint(out, tick);
    put_varint(out, if baseline == 0 { 0 } else { tick - baseline });
    put_varint(out, reliable_ack.into());
    let pong_flag = if pong.is_some() { SECTION_PONG } else { 0 };
    out.push((sections & !SECTION_PONG) | pong_flag);
    if let Some(p) = pong {
        put_varint(out, p);
    }
}

/// Section flags for the non-empty sections (the pong flag is set by the header writer).
pub fn server_sections(reliable: usize, removals: usize, updates: usize, spawns: usize) -> u8 {
    (if reliable > 0 { SECTION_RELIABLE } else { 0 })
        | (if removals > 0 { SECTION_REMOVALS } else { 0 })
        | (if updates > 0 { SECTION_UPDATES } else { 0 })
        | (if spawns > 0 { SECTION_SPAWNS } else { 0 })
}

impl ServerPacket {
    /// Clears every section, keeping the buffers.
    pub fn clear(&mut self) {
        self.reliable.clear();
        self.removed.clear();
        self.updates.clear();
        self.spawns.clear();
        self.pong = None;
        self.reliable_first = 0;
        self.avatar = None;
    }

    /// Appends the encoded packet to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let sections = server_sections(
            self.reliable.len(),
            self.removed.len(),
            self.updates.len(),
            self.spawns.len(),
        ) | if self.avatar.is_some() {
            SECTION_AVATAR
        } else {
            0
        };
        write_server_header(
            buf,
            self.tick,
            self.baseline,
            self.reliable_ack,
            self.pong,
            sections,
        );
        if !self.reliable.is_empty() {
            put_varint(buf, self.reliable.len() as u64);
            put_varint(buf, self.reliable_first.into());
            let mut w = WireWriter::new(buf);
            for m in &self.reliable {
                w.put(m);
            }
        }
        if !self.removed.is_empty() {
            put_varint(buf, self.removed.len() as u64);
            let mut next = 0u32;
            for &i in &self.removed {
                put_varint(buf, i.wrapping_sub(next).into());
                next = i.wrapping_add(1);
            }
        }
        if !self.updates.is_empty() {
            put_varint(buf, self.updates.len() as u64);
            let mut prev = None;
            for u in &self.updates {
                u.write(prev, buf);
                prev = Some(u.index);
            }
        }
        if !self.spawns.is_empty() {
            put_varint(buf, self.spawns.len() as u64);
            let mut next = 0u32;
            let mut body = SmallBytes::default();
            for e in &self.spawns {
                put_varint(buf, e.id.0.wrapping_sub(next).into());
                next = e.id.0.wrapping_add(1);
                body.clear();
                write_spawn_body(e, &mut body);
                write_spawn(
                    buf,
                    &body,
                    e.moving().then(|| self.tick.saturating_sub(e.anchor)),
                );
            }
        }
        if let Some(a) = &self.avatar {
            a.write(buf);
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
        self.tick = r.u64v()?;
        let age = r.u64v()?;
        self.baseline = match age {
            0 => 0,
            a if a >= self.tick => return Err(DecodeError::OutOfRange("baseline tick")),
            a => self.tick - a,
        };
        self.reliable_ack = r.u16v()?;
        let sections = r.u8()?;
        if sections & !SECTIONS_ALL != 0 {
            return Err(DecodeError::BadTag {
                what: "packet sections",
                got: sections.into(),
            });
        }
        if sections & SECTION_PONG != 0 {
            self.pong = Some(r.u64v()?);
        }
        if sections & SECTION_RELIABLE != 0 {
            let n = section_count(&mut r, "reliable messages", MAX_RELIABLE_PER_PACKET)?;
            self.reliable_first = r.u16v()?;
            for _ in 0..n {
                let m: ServerMessage = r.get()?;
                check_server_message(&m)?;
                self.reliable.push(m);
            }
        }
        if sections & SECTION_REMOVALS != 0 {
            let n = section_count(&mut r, "removals", MAX_ITEMS)?;
            let mut next = 0u32;
            for _ in 0..n {
                let i = next
                    .checked_add(r.u32v()?)
                    .ok_or(DecodeError::OutOfRange("removal index"))?;
                self.removed.push(i);
                next = i
                    .checked_add(1)
                    .ok_or(DecodeError::OutOfRange("removal index"))?;
            }
        }
        if sections & SECTION_UPDATES != 0 {
            let n = section_count(&mut r, "updates", MAX_ITEMS)?;
            let mut next = 0u32;
            for _ in 0..n {
                let u = self.read_update(&mut r, &mut next)?;
                self.updates.push(u);
            }
        }
        if sections & SECTION_SPAWNS != 0 {
            let n = section_count(&mut r, "spawns", MAX_ITEMS)?;
            let mut next = 0u32;
            for _ in 0..n {
                let id = next
                    .checked_add(r.u32v()?)
                    .ok_or(DecodeError::OutOfRange("entity id"))?;
                next = id
                    .checked_add(1)
                    .ok_or(DecodeError::OutOfRange("entity id"))?;
                let flags = r.u8()?;
                if flags > SPAWN_PLAYER | SPAWN_ALIVE | SPAWN_MOVING | SPAWN_EXT | SPAWN_PROP
                    || flags & (SPAWN_PLAYER | SPAWN_PROP) == SPAWN_PLAYER | SPAWN_PROP
                {
                    return Err(DecodeError::BadTag {
                        what: "entity flags",
                        got: flags.into(),
                    });
                }
                let moving = flags & SPAWN_MOVING != 0;
                let anchor = if moving {
                    self.tick
                        .checked_sub(r.u64v()?)
                        .ok_or(DecodeError::OutOfRange("anchor tick"))?
                } else {
                    0
                };
                let (x, y) = (r.i32z()?, r.i32z()?);
                let (vx, vy) = if moving {
                    (r.i16z()?, r.i16z()?)
                } else {
                    (0, 0)
                };
                if moving && vx == 0 && vy == 0 {
                    return Err(DecodeError::OutOfRange("moving spawn without velocity"));
                }
                let (facing, health, max_health) = (r.u8()?, r.u16v()?, r.u16v()?);
                let ext = if flags & SPAWN_EXT != 0 {
                    let ext = super::Ext::read(&mut r)?;
                    if ext.is_empty() {
                        return Err(DecodeError::OutOfRange("empty replicated plugin state"));
                    }
                    ext
                } else {
                    super::Ext::default()
                };
                self.spawns.push(NetEntity {
                    id: EntityId(id),
                    kind: if flags & SPAWN_PLAYER != 0 {
                        NetKind::Player
                    } else if flags & SPAWN_PROP != 0 {
                        NetKind::Prop
                    } else {
                        NetKind::Npc
                    },
                    alive: flags & SPAWN_ALIVE != 0,
                    anchor,
                    x,
                    y,
                    vx,
                    vy,
                    facing,
                    health,
                    max_health,
                    ext,
                });
            }
        }
        if sections & SECTION_AVATAR != 0 {
            self.avatar = Some(AvatarUpdate::read(&mut r)?);
        }
        r.finish()
    }

    fn read_update(
        &self,
        r: &mut WireReader<'_>,
        next: &mut u32,
    ) -> Result<EntityUpdate, DecodeError> {
        let head = r.u64v()?;
        let mask = (head & 0xF) as u8;
        let delta =
            u32::try_from(head >> 4).map_err(|_| DecodeError::OutOfRange("update index"))?;
        let index = next
            .checked_add(delta)
            .ok_or(DecodeError::OutOfRange("update index"))?;
        *next = index
            .checked_add(1)
            .ok_or(DecodeError::OutOfRange("update index"))?;
        if mask == 0 {
            return Err(DecodeError::OutOfRange("empty update mask"));
        }
        let mut u = EntityUpdate {
            index,
            ..EntityUpdate::default()
        };
        if mask & UPDATE_TRACK != 0 {
            let age = match r.u64v()? {
                0 => None,
                a if a - 1 > self.tick => return Err(DecodeError::OutOfRange("anchor tick")),
                a => Some(a - 1),
            };
            let (dx, dy) = r.pair()?;
            u.track = Some((age, dx, dy));
        }
        if mask & UPDATE_VEL != 0 {
            u.vel = Some((r.i32z()?, r.i32z()?));
        }
        if mask & UPDATE_FACING != 0 {
            u.facing = Some(r.u8()?);
        }
        if mask & UPDATE_STATUS != 0 {
            let (health, max_health) = (r.u16v()?, r.u16v()?);
            let life = r.u8()?;
            if life > 3 {
                return Err(DecodeError::OutOfRange("life byte"));
            }
            u.status = Some((health, max_health, life & 1 != 0));
            if life & 2 != 0 {
                u.ext = Some(super::Ext::read(r)?);
            }
        }
        Ok(u)
    }
}

/// A present section's item count: at least one, at most `max`.
fn section_count(
    r: &mut WireReader<'_>,
    what: &'static str,
    max: usize,
) -> Result<usize, DecodeError> {
    let n = r.count(what, max)?;
    if n == 0 {
        return Err(DecodeError::OutOfRange("empty section"));
    }
    Ok(n)
}

fn read_header(r: &mut WireReader<'_>, kind: u8) -> Result<(), DecodeError> {
    let version = r.u8()?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::BadVersion { got: version });
    }
    let got = r.u8()?;
    if got != kind {
        return Err(DecodeError::BadTag {
            what: "packet kind",
            got: got.into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::wire::{SMALL_BYTES, SmallBytes};
    use crate::protocol::{EXT_BYTES, Ext};

    /// The largest update and spawn bodies fit the inline buffer the tracker prepares them in.
    #[test]
    fn the_largest_record_bodies_fit_small_bytes() {
        let ext = Ext {
            present: 0xFF,
            bytes: [0xFF; EXT_BYTES],
        };
        let a = NetEntity {
            id: EntityId(u32::MAX),
            kind: NetKind::Prop,
            x: i32::MIN,
            y: i32::MAX,
            anchor: 1,
            vx: i16::MIN,
            vy: i16::MIN,
            facing: 0,
            health: 0,
            max_health: 0,
            alive: false,
            ext: Ext::default(),
        };
        let b = NetEntity {
            x: i32::MAX,
            y: i32::MIN,
            anchor: 2,
            vx: i16::MAX,
            vy: i16::MAX,
            facing: 255,
            health: u16::MAX,
            max_health: u16::MAX,
            alive: true,
            ext,
            ..a
        };
        let mut full = Vec::new();
        write_update_body(&a, &b, u32::MAX, &mut full);
        assert!(
            full.len() <= SMALL_BYTES,
            "update body {} bytes",
            full.len()
        );
        let mut small = SmallBytes::default();
        let mask = write_update_body(&a, &b, u32::MAX, &mut small);
        assert_eq!((small.as_slice(), mask), (full.as_slice(), 15));
        let mut spawn = Vec::new();
        write_spawn_body(&b, &mut spawn);
        assert!(
            spawn.len() <= SMALL_BYTES,
            "spawn body {} bytes",
            spawn.len()
        );
    }
}

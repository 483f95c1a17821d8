//! Per-client replication state: snapshot ring, acks, visible set, priorities, reliable channel.

use crate::protocol::{AvatarState, ReliableReceiver, ReliableSender, ServerMessage};
use crate::{EntityId, PlayerId};

use super::{ReplicationConfig, SNAPSHOT_RING};

/// One entity as a client holds it after a snapshot: which version of its record (the tick
/// it last changed, in 48 bits: 12 bytes an entry, read and written for every client every
/// tick).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Held {
    pub id: EntityId,
    version_low: u32,
    version_high: u16,
}

impl Held {
    pub fn new(id: EntityId, version: u64) -> Self {
        Self {
            id,
            version_low: version as u32,
            version_high: (version >> 32) as u16,
        }
    }

    /// The record's version (ticks past 2^48, 148,000 years at 60 Hz, wrap).
    pub fn version(&self) -> u64 {
        u64::from(self.version_low) | (u64::from(self.version_high) << 32)
    }

    /// Whether this holds `version` (compared in the 48 bits kept).
    pub fn holds(&self, version: u64) -> bool {
        self.version_low == version as u32 && self.version_high == (version >> 32) as u16
    }
}

/// One remembered snapshot: the entities the client holds after applying it.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    pub tick: u64,
    pub entities: Vec<Held>,
    /// The client's avatar as this snapshot left it with the client.
    pub avatar: Option<AvatarState>,
}

/// Everything the server keeps for one client. Opaque: the caller only moves links between
/// threads ([`super::Replicator::build`]).
#[derive(Debug)]
pub struct ClientLink {
    pub(super) player: PlayerId,
    pub(super) entity: EntityId,
    pub(super) ring: Vec<Snapshot>,
    /// Newest snapshot tick the client acknowledged (0 = none).
    pub(super) acked: u64,
    /// The client's avatar at this tick, exactly (set by `prepare`; none while it is not here).
    pub(super) avatar: Option<AvatarState>,
    /// Entities in view at the last update, sorted.
    pub(super) visible: Vec<EntityId>,
    /// Spawns and removals not yet in an acknowledged snapshot: since when, sorted by id.
    pub(super) pending: Vec<(EntityId, u64)>,
    pub(super) reliable_tx: ReliableSender<ServerMessage>,
    pub(super) reliable_rx: ReliableReceiver,
    pub(super) last_input_seq: Option<u32>,
    pub(super) pong: Option<u64>,
    /// Chats this client may still send now (a token bucket of `chat_burst`).
    pub(super) chat_tokens: u32,
    /// The tick up to which `chat_tokens` has been refilled.
    pub(super) chat_refilled: u64,
    /// Which ticks this client gets a snapshot on (with a snapshot rate below the tick rate):
    /// those where `(tick + phase) % divisor == 0`.
    pub(super) phase: u32,
    /// The client declared a game other than the zone's: its inputs and actions are ignored
    /// and it has been told goodbye.
    pub(super) game_refused: bool,
}

impl ClientLink {
    pub(super) fn new(
        player: PlayerId,
        entity: EntityId,
        config: &ReplicationConfig,
        tick: u64,
        phase: u32,
    ) -> Self {
        Self {
            player,
            entity,
            ring: (0..SNAPSHOT_RING).map(|_| Snapshot::default()).collect(),
            acked: 0,
            avatar: None,
            visible: Vec::new(),
            pending: Vec::with_capacity(super::select::PENDING_CAP),
            reliable_tx: ReliableSender::new(config.reliable_queue),
            reliable_rx: ReliableReceiver::default(),
            last_input_seq: None,
            pong: None,
            chat_tokens: config.chat_burst,
            chat_refilled: tick,
            phase,
            game_refused: false,
        }
    }

    /// The player this link replicates to.
    pub fn player(&self) -> PlayerId {
        self.player
    }

    /// Whether this client gets a snapshot at `tick`, with a snapshot every `divisor` ticks.
    pub fn due(&self, tick: u64, divisor: u32) -> bool {
        divisor <= 1 || (tick + u64::from(self.phase)).is_multiple_of(u64::from(divisor))
    }

    /// Takes one chat token at `tick` if there is one, after refilling one per
    /// `chat_refill_ticks` since the last refill (up to `chat_burst`).
    pub(super) fn take_chat_token(&mut self, tick: u64, config: &ReplicationConfig) -> bool {
        let every = u64::from(config.chat_refill_ticks.max(1));
        let earned = tick.saturating_sub(self.chat_refilled) / every;
        if earned > 0 {
            let tokens = u64::from(self.chat_tokens).saturating_add(earned);
            self.chat_tokens = tokens.min(u64::from(config.chat_burst)) as u32;
            self.chat_refilled = self.chat_refilled.saturating_add(earned * every);
        }
        if self.chat_tokens == 0 {
            return false;
        }
        self.chat_tokens -= 1;
        true
    }

    /// The remembered snapshot of `tick`, if still in the ring.
    pub(super) fn slot(&self, tick: u64) -> Option<&Snapshot> {
        let slot = self.ring.get((tick % SNAPSHOT_RING as u64) as usize)?;
        (tick != 0 && slot.tick == tick).then_some(slot)
    }
}

//! Per-client replication state: snapshot ring, acks, visible set, priorities, reliable channel.

use crate::protocol::{NetEntity, ReliableReceiver, ReliableSender, ServerMessage};
use crate::{EntityId, PlayerId};

use super::{ReplicationConfig, SNAPSHOT_RING};

/// One remembered snapshot: the entity list the client holds after applying it.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    pub tick: u64,
    pub entities: Vec<NetEntity>,
    /// For each entity, the tick its value was current (server-side only, not sent).
    pub captured: Vec<u64>,
}

/// Everything the server keeps for one client.
#[derive(Debug)]
pub(super) struct ClientLink {
    pub player: PlayerId,
    pub entity: EntityId,
    pub ring: Vec<Snapshot>,
    /// Newest snapshot tick the client acknowledged (0 = none).
    pub acked: u64,
    /// Entities in view at the last update, sorted.
    pub visible: Vec<EntityId>,
    /// Spawns and removals not yet in an acknowledged snapshot: since when, sorted by id.
    pub pending: Vec<(EntityId, u64)>,
    pub reliable_tx: ReliableSender<ServerMessage>,
    pub reliable_rx: ReliableReceiver,
    pub last_input_seq: Option<u32>,
    pub pong: Option<u64>,
    /// Chats this client may still send now (a token bucket of `chat_burst`).
    pub chat_tokens: u32,
    /// The tick up to which `chat_tokens` has been refilled.
    pub chat_refilled: u64,
}

impl ClientLink {
    pub fn new(player: PlayerId, entity: EntityId, config: &ReplicationConfig, tick: u64) -> Self {
        Self {
            player,
            entity,
            ring: (0..SNAPSHOT_RING).map(|_| Snapshot::default()).collect(),
            acked: 0,
            visible: Vec::new(),
            pending: Vec::new(),
            reliable_tx: ReliableSender::new(config.reliable_queue),
            reliable_rx: ReliableReceiver::default(),
            last_input_seq: None,
            pong: None,
            chat_tokens: config.chat_burst,
            chat_refilled: tick,
        }
    }

    /// Takes one chat token at `tick` if there is one, after refilling one per
    /// `chat_refill_ticks` since the last refill (up to `chat_burst`).
    pub fn take_chat_token(&mut self, tick: u64, config: &ReplicationConfig) -> bool {
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
    pub fn snapshot(&self, tick: u64) -> Option<&Vec<NetEntity>> {
        self.slot(tick).map(|s| &s.entities)
    }

    /// The remembered snapshot of `tick` with its capture ticks.
    pub fn slot(&self, tick: u64) -> Option<&Snapshot> {
        let slot = self.ring.get((tick % SNAPSHOT_RING as u64) as usize)?;
        (tick != 0 && slot.tick == tick).then_some(slot)
    }
}

//! The zone bus: what zones of one world tell each other over the hot store's pub/sub (one
//! channel per zone, [`crate::persist::redis_keys::zone_bus`]): handoffs of players and ghosts
//! of the entities near a border.
//!
//! Pub/sub loses messages when a subscriber is disconnected, so nothing here relies on
//! delivery: a transfer is re-sent until it is answered, an answer is repeated for a repeated
//! transfer, and ghost batches (which double as a heartbeat) come several times a second.
//! Bytes from the bus are untrusted: [`BusMessage::decode`] is total, bounded and typed.

use std::net::SocketAddr;

use bincode::{Decode, Encode};
use zone_core::protocol::EntitySample;
use zone_core::{PlayerId, PlayerState, ZoneId};

/// Most ghosts in one batch (a zone's border band rarely holds more; the rest wait).
pub const MAX_GHOSTS: usize = 4_096;
/// Most bytes one bus message may take.
pub const MAX_BUS_MESSAGE: usize = 256 * 1024;
/// The format of the messages this build sends: the first byte of every message. A message
/// of another version is refused with a typed error, so formats can evolve zone by zone.
/// Version 2: player states carry plugin state, ghosts the plugins' replicated state and props.
pub const BUS_VERSION: u8 = 2;

/// Why a handoff was refused by the zone asked to take the player.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Encode, Decode)]
pub enum RefuseReason {
    /// The zone is not accepting players (shutting down, spool full).
    NotAccepting,
    /// The zone is full.
    Full,
    /// The state is unusable (non-finite, or nowhere near the zone).
    BadState,
    /// The ownership ledger names someone else.
    Ledger,
    /// The ownership ledger could not be reached.
    Store,
    /// The player is already here under another handoff.
    Busy,
}

impl RefuseReason {
    /// Short stable name, for metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            RefuseReason::NotAccepting => "not_accepting",
            RefuseReason::Full => "full",
            RefuseReason::BadState => "bad_state",
            RefuseReason::Ledger => "ledger",
            RefuseReason::Store => "store",
            RefuseReason::Busy => "busy",
        }
    }
}

/// One entity as a neighbour shows it: its replicated state (id in the neighbour's id space)
/// and whose avatar it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct GhostEntity {
    /// The entity as the neighbour replicates it.
    pub entity: EntitySample,
    /// The player whose avatar it is (`None` for an NPC).
    pub player: Option<PlayerId>,
}

/// A message between zones.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub enum BusMessage {
    /// Zone `from` hands `player` to zone `to` with `state`, under the ownership record
    /// `(from, epoch)` it holds. Re-sent until answered.
    Transfer {
        /// The handoff's id (unique per source zone run).
        handoff: u64,
        /// Source zone.
        from: ZoneId,
        /// Target zone.
        to: ZoneId,
        /// Who.
        player: PlayerId,
        /// The state as it left the source (world coordinates).
        state: PlayerState,
        /// The source's ownership epoch.
        epoch: u64,
    },
    /// Zone `to` holds the player now, under epoch `epoch`: redirect the client to `address`.
    Accepted {
        /// The handoff answered.
        handoff: u64,
        /// Source zone.
        from: ZoneId,
        /// Target zone.
        to: ZoneId,
        /// Who.
        player: PlayerId,
        /// The target's ownership epoch.
        epoch: u64,
        /// Where the target's clients connect.
        address: SocketAddr,
    },
    /// Zone `to` will not take the player.
    Refused {
        /// The handoff answered.
        handoff: u64,
        /// Source zone.
        from: ZoneId,
        /// Target zone.
        to: ZoneId,
        /// Who.
        player: PlayerId,
        /// Why.
        reason: RefuseReason,
    },
    /// What zone `from` simulates near its border with zone `to`, at its tick `tick`. Sent
    /// several times a second even when empty: a neighbour that goes quiet is down.
    Ghosts {
        /// Source zone.
        from: ZoneId,
        /// Target zone.
        to: ZoneId,
        /// The source's tick.
        tick: u64,
        /// The entities, by id.
        entities: Vec<GhostEntity>,
    },
    /// Zone `from` took `player` over under epoch `epoch` (a fresh login) while the ledger
    /// named zone `to`: `to` drops any older copy it still holds.
    Evict {
        /// The zone that holds the player now.
        from: ZoneId,
        /// The former holder.
        to: ZoneId,
        /// Who.
        player: PlayerId,
        /// The new holder's epoch: copies under a lower one go.
        epoch: u64,
    },
}

/// Bytes from the bus that are not a usable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// Larger than [`MAX_BUS_MESSAGE`].
    #[error("bus message of {0} bytes is over the limit")]
    TooLarge(usize),
    /// Not a valid encoding.
    #[error("bus message does not decode: {0}")]
    Decode(String),
    /// Bytes after the message.
    #[error("bus message has {0} trailing bytes")]
    Trailing(usize),
    /// A message this build would not send (over the size limit).
    #[error("bus message does not encode: {0}")]
    Encode(String),
    /// A format this build does not speak (the first byte).
    #[error("bus message of format version {0}; this build speaks {BUS_VERSION}")]
    Version(u8),
    /// A ghost batch over [`MAX_GHOSTS`], or a state with non-finite numbers.
    #[error("bus message is out of range: {0}")]
    OutOfRange(&'static str),
    /// Not sealed with the world's bus key (forged or damaged): see [`super::seal`].
    #[error("bus message is not sealed with the bus key")]
    BadMac,
    /// Sealed by one zone but speaking for another.
    #[error("bus message speaks for a zone other than its sender")]
    WrongSender,
    /// Not newer than the last message taken from its sender (a replay or a repeat).
    #[error("bus message is a replay")]
    Replayed,
}

impl BusError {
    /// Short stable name, for metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            BusError::TooLarge(_) => "too_large",
            BusError::Decode(_) => "decode",
            BusError::Trailing(_) => "trailing",
            BusError::OutOfRange(_) => "out_of_range",
            BusError::Version(_) => "version",
            BusError::Encode(_) => "encode",
            BusError::BadMac => "bad_mac",
            BusError::WrongSender => "wrong_sender",
            BusError::Replayed => "replayed",
        }
    }
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_BUS_MESSAGE>()
}

impl BusMessage {
    /// The encoding (what is published): the version byte, then the message. Fails only for
    /// a message over [`MAX_BUS_MESSAGE`], which is never sent.
    pub fn encode(&self) -> Result<Vec<u8>, BusError> {
        let mut out = vec![BUS_VERSION];
        bincode::encode_into_std_write(self, &mut out, config())
            .map_err(|e| BusError::Encode(e.to_string()))?;
        Ok(out)
    }

    /// Decodes one message: any bytes give a message or a typed error.
    pub fn decode(bytes: &[u8]) -> Result<Self, BusError> {
        if bytes.len() > MAX_BUS_MESSAGE {
            return Err(BusError::TooLarge(bytes.len()));
        }
        let Some((&version, body)) = bytes.split_first() else {
            return Err(BusError::Decode("empty message".into()));
        };
        if version != BUS_VERSION {
            return Err(BusError::Version(version));
        }
        let (m, used): (Self, usize) = bincode::decode_from_slice(body, config())
            .map_err(|e| BusError::Decode(e.to_string()))?;
        if used != body.len() {
            return Err(BusError::Trailing(body.len() - used));
        }
        match &m {
            BusMessage::Ghosts { entities, .. } if entities.len() > MAX_GHOSTS => {
                Err(BusError::OutOfRange("ghost count"))
            }
            BusMessage::Transfer { state, .. }
                if !(state.x.is_finite() && state.y.is_finite() && state.facing.is_finite()) =>
            {
                Err(BusError::OutOfRange("transferred state"))
            }
            _ => Ok(m),
        }
    }

    /// The zone the message speaks for.
    pub fn from(&self) -> ZoneId {
        match self {
            BusMessage::Transfer { from, .. }
            | BusMessage::Ghosts { from, .. }
            | BusMessage::Evict { from, .. } => *from,
            // Answers come from the target of the handoff.
            BusMessage::Accepted { to, .. } | BusMessage::Refused { to, .. } => *to,
        }
    }

    /// The zone the message is for.
    pub fn to(&self) -> ZoneId {
        match self {
            BusMessage::Transfer { to, .. }
            | BusMessage::Ghosts { to, .. }
            | BusMessage::Evict { to, .. } => *to,
            // Answers go back to the source of the handoff.
            BusMessage::Accepted { from, .. } | BusMessage::Refused { from, .. } => *from,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<BusMessage> {
        let state = PlayerState::new_character(64.5, 3.0, 100).claimed(2);
        vec![
            BusMessage::Transfer {
                handoff: 1,
                from: ZoneId(1),
                to: ZoneId(2),
                player: PlayerId(7),
                state,
                epoch: 2,
            },
            BusMessage::Accepted {
                handoff: 1,
                from: ZoneId(1),
                to: ZoneId(2),
                player: PlayerId(7),
                epoch: 3,
                address: "127.0.0.1:40001".parse().unwrap(),
            },
            BusMessage::Refused {
                handoff: 1,
                from: ZoneId(1),
                to: ZoneId(2),
                player: PlayerId(7),
                reason: RefuseReason::Full,
            },
            BusMessage::Evict {
                from: ZoneId(3),
                to: ZoneId(1),
                player: PlayerId(7),
                epoch: 9,
            },
            BusMessage::Ghosts {
                from: ZoneId(2),
                to: ZoneId(1),
                tick: 99,
                entities: vec![GhostEntity {
                    entity: EntitySample {
                        id: zone_core::EntityId(5),
                        kind: zone_core::protocol::NetKind::Player,
                        x: 1,
                        y: -2,
                        vx: 3,
                        vy: 4,
                        facing: 5,
                        health: 6,
                        max_health: 7,
                        alive: true,
                        ext: Default::default(),
                    },
                    player: Some(PlayerId(7)),
                }],
            },
        ]
    }

    #[test]
    fn messages_round_trip_and_are_addressed() {
        for m in samples() {
            assert_eq!(BusMessage::decode(&m.encode().unwrap()).unwrap(), m);
        }
        let to: Vec<u32> = samples().iter().map(|m| m.to().0).collect();
        assert_eq!(to, [2, 1, 1, 1, 1]);
    }

    #[test]
    fn hostile_bytes_give_typed_errors() {
        let good = samples()[0].encode().unwrap();
        for cut in 0..good.len() {
            assert!(BusMessage::decode(&good[..cut]).is_err());
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(BusMessage::decode(&long), Err(BusError::Trailing(1)));
        assert!(matches!(
            BusMessage::decode(&vec![0; MAX_BUS_MESSAGE + 1]),
            Err(BusError::TooLarge(_))
        ));
        let mut nan = PlayerState::new_character(0.0, 0.0, 1);
        nan.x = f32::NAN;
        let bad = BusMessage::Transfer {
            handoff: 0,
            from: ZoneId(0),
            to: ZoneId(0),
            player: PlayerId(0),
            state: nan,
            epoch: 0,
        };
        assert_eq!(
            BusMessage::decode(&bad.encode().unwrap()),
            Err(BusError::OutOfRange("transferred state"))
        );
        // A length prefix claiming a huge ghost list allocates nothing and fails.
        let mut huge = vec![BUS_VERSION, 3u8, 1, 1, 1, 0xFC];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(BusMessage::decode(&huge).is_err());
        // Another format version is refused by name, not misread.
        let mut future = good.clone();
        future[0] = BUS_VERSION + 1;
        assert_eq!(
            BusMessage::decode(&future),
            Err(BusError::Version(BUS_VERSION + 1))
        );
        assert!(BusMessage::decode(&[]).is_err());
    }
}

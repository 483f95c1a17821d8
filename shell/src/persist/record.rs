//! What the write-behind pipeline makes durable: [`Record`]s built from a tick's output, their
//! bincode encoding (the spool's payload format), and the write-ordering rule every cold store
//! applies to player state.

use bincode::{Decode, Encode};
use zone_core::{CombatEvent, PlayerId, PlayerState, ZoneId};

/// Milliseconds in a day: combat events are partitioned by `unix_ms / DAY_MS`.
pub const DAY_MS: u64 = 86_400_000;

/// One durable fact.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub enum Record {
    /// A hit, as the core resolved it.
    Combat(CombatRecord),
    /// A player's absolute state, versioned.
    PlayerSave(SaveRecord),
    /// A player's profile, written once when the character is created.
    Profile(ProfileRecord),
}

/// A combat event with where and when it happened.
#[derive(Clone, Copy, Debug, PartialEq, Encode, Decode)]
pub struct CombatRecord {
    /// The zone that simulated it.
    pub zone: ZoneId,
    /// The zone server run that simulated it (start time in unix ms): event ids restart with
    /// the tick counter on every start, so `(run, event.id)` is the unique key.
    pub run: u64,
    /// Wall-clock time the shell saw the tick, unix ms (picks the day partition).
    pub unix_ms: u64,
    /// The event.
    pub event: CombatEvent,
}

impl CombatRecord {
    /// The day partition of the event.
    pub fn day(&self) -> u32 {
        u32::try_from(self.unix_ms / DAY_MS).unwrap_or(u32::MAX)
    }
}

/// A player's state to store, newest version wins.
#[derive(Clone, Copy, Debug, PartialEq, Encode, Decode)]
pub struct SaveRecord {
    /// The zone that saved it.
    pub zone: ZoneId,
    /// Whose.
    pub player: PlayerId,
    /// The state with its version.
    pub state: PlayerState,
    /// The fencing token of the zone lease the saver held (0 without leases).
    pub fence: u64,
    /// When, unix ms.
    pub unix_ms: u64,
}

impl SaveRecord {
    /// The order of writes to one player's row: the version, whose upper half is the
    /// ownership epoch, so a retried or replayed older save, or a former holder's late one,
    /// never overwrites a newer one (ScyllaDB `USING TIMESTAMP`, the embedded store's
    /// conditional upsert). Capped to the positive i64 range a CQL timestamp needs.
    pub fn write_order(&self) -> i64 {
        i64::try_from(self.state.version.raw()).unwrap_or(i64::MAX)
    }
}

/// Who a player is, beyond their state.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ProfileRecord {
    /// Whose.
    pub player: PlayerId,
    /// Display name.
    pub name: String,
    /// When the character was created, unix ms.
    pub created_unix_ms: u64,
}

/// Most bytes one encoded record may take (a profile name is the only variable part).
pub const MAX_RECORD_BYTES: usize = 4_096;

/// The version of the record encoding written now (the spool frames name it). Version 1 is
/// the bincode encoding of [`Record`] as it is; a change to the encoding adds a version and
/// keeps decoding the older ones.
pub const RECORD_VERSION: u8 = 1;

/// A record that cannot be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// Not a valid encoding.
    #[error("record does not decode: {0}")]
    Decode(String),
    /// Bytes left after the record.
    #[error("record has {0} trailing bytes")]
    Trailing(usize),
    /// Larger than [`MAX_RECORD_BYTES`].
    #[error("record of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// Written in a record version this server does not know (by a newer server).
    #[error("record version {0} is not known to this server (it knows 1..={RECORD_VERSION})")]
    UnknownVersion(u8),
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_RECORD_BYTES>()
}

impl Record {
    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), RecordError> {
        bincode::encode_into_std_write(self, out, bincode_config())
            .map(|_| ())
            .map_err(|e| RecordError::Decode(e.to_string()))
    }

    /// Decodes exactly one record of version `version` from `bytes`.
    pub fn decode_version(version: u8, bytes: &[u8]) -> Result<Self, RecordError> {
        match version {
            RECORD_VERSION => Self::decode(bytes),
            other => Err(RecordError::UnknownVersion(other)),
        }
    }

    /// Decodes exactly one record of the current version from `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge(bytes.len()));
        }
        let (record, used) = bincode::decode_from_slice(bytes, bincode_config())
            .map_err(|e| RecordError::Decode(e.to_string()))?;
        if used != bytes.len() {
            return Err(RecordError::Trailing(bytes.len() - used));
        }
        Ok(record)
    }

    /// A short name of the kind, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Combat(_) => "combat",
            Record::PlayerSave(_) => "player_save",
            Record::Profile(_) => "profile",
        }
    }
}

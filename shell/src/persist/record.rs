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

/// The version of the record encoding written now (the spool frames name it): the bincode
/// encoding of [`Record`] as it is. A change to the encoding adds a version and keeps decoding
/// the older ones: version 1 is the same but for player states without plugin state
/// ([`zone_core::PlayerState::plugins`]), read as empty.
pub const RECORD_VERSION: u8 = 2;

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

/// Decodes exactly one `T` from `bytes`.
fn decode_exact<T: Decode<()>>(bytes: &[u8]) -> Result<T, RecordError> {
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

/// Record version 1: player states without plugin state.
mod v1 {
    use bincode::{Decode, Encode};
    use zone_core::{PlayerId, PlayerStats, Version, ZoneId};

    #[derive(Decode, Encode)]
    pub(super) enum Record {
        Combat(super::CombatRecord),
        PlayerSave(SaveRecord),
        Profile(super::ProfileRecord),
    }

    #[derive(Decode, Encode)]
    pub(super) struct SaveRecord {
        pub(super) zone: ZoneId,
        pub(super) player: PlayerId,
        pub(super) state: PlayerState,
        pub(super) fence: u64,
        pub(super) unix_ms: u64,
    }

    #[derive(Decode, Encode)]
    pub(super) struct PlayerState {
        pub(super) x: f32,
        pub(super) y: f32,
        pub(super) facing: f32,
        pub(super) health: u16,
        pub(super) stats: PlayerStats,
        pub(super) version: Version,
    }

    impl From<Record> for super::Record {
        fn from(r: Record) -> Self {
            match r {
                Record::Combat(c) => Self::Combat(c),
                Record::Profile(p) => Self::Profile(p),
                Record::PlayerSave(s) => Self::PlayerSave(super::SaveRecord {
                    zone: s.zone,
                    player: s.player,
                    state: zone_core::PlayerState {
                        x: s.state.x,
                        y: s.state.y,
                        facing: s.state.facing,
                        health: s.state.health,
                        stats: s.state.stats,
                        version: s.state.version,
                        plugins: zone_core::SavedPlugins::default(),
                    },
                    fence: s.fence,
                    unix_ms: s.unix_ms,
                }),
            }
        }
    }

    #[cfg(test)]
    pub(super) fn encode(r: &Record) -> Vec<u8> {
        bincode::encode_to_vec(r, super::bincode_config()).unwrap_or_default()
    }
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
            1 => {
                let v1: v1::Record = decode_exact(bytes)?;
                Ok(v1.into())
            }
            other => Err(RecordError::UnknownVersion(other)),
        }
    }

    /// Decodes exactly one record of the current version from `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        decode_exact(bytes)
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

#[cfg(test)]
mod tests {
    use super::*;
    use zone_core::{PlayerStats, SavedPlugins, Version};

    #[test]
    fn version_1_saves_decode_with_empty_plugin_state_and_version_2_keeps_it() {
        let v1 = v1::Record::PlayerSave(v1::SaveRecord {
            zone: ZoneId(3),
            player: PlayerId(9),
            state: v1::PlayerState {
                x: 1.5,
                y: -2.0,
                facing: 0.25,
                health: 70,
                stats: PlayerStats {
                    kills: 4,
                    ..PlayerStats::default()
                },
                version: Version::from_raw(77),
            },
            fence: 5,
            unix_ms: 1_000,
        });
        let bytes = v1::encode(&v1);
        let Record::PlayerSave(old) = Record::decode_version(1, &bytes).unwrap() else {
            panic!("a save");
        };
        assert_eq!(
            (
                old.state.x,
                old.state.health,
                old.state.stats.kills,
                old.state.version.raw()
            ),
            (1.5, 70, 4, 77)
        );
        assert!(old.state.plugins.is_empty());
        // The current version carries plugin records.
        let mut plugins = SavedPlugins::default();
        plugins.push(0xBEEF, 2, &[1, 2, 3]).unwrap();
        let now = Record::PlayerSave(SaveRecord {
            state: PlayerState {
                plugins,
                ..old.state
            },
            ..old
        });
        let mut buf = Vec::new();
        now.encode_into(&mut buf).unwrap();
        assert_eq!(Record::decode_version(RECORD_VERSION, &buf), Ok(now));
        // Version 1 bytes are not a version 2 record and the other way round: the frame's
        // version byte decides.
        assert!(Record::decode_version(1, &buf).is_err());
    }
}

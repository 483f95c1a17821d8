//! The persistent part of a player: what a zone is given on join and hands back on leave,
//! and what is checkpointed to the stores.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// Lifetime counters of one player.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode,
)]
pub struct PlayerStats {
    /// Entities this player killed.
    pub kills: u32,
    /// Times this player died.
    pub deaths: u32,
    /// Total damage dealt.
    pub damage_dealt: u64,
    /// Total damage taken.
    pub damage_taken: u64,
    /// Experience points.
    pub xp: u64,
}

/// A player's saved state. Written as an absolute value with a version, so the newest write
/// wins however often a write is retried.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct PlayerState {
    /// World x, units.
    pub x: f32,
    /// World y, units.
    pub y: f32,
    /// Facing angle, radians.
    pub facing: f32,
    /// Current health (0 = dead, respawns on join).
    pub health: u16,
    /// Lifetime counters.
    pub stats: PlayerStats,
    /// Orders this save against every other save of the player (see [`Version`]).
    pub version: Version,
    /// Game plugins' saved state ([`crate::game::Persistent`] components), saved and loaded
    /// with the rest under the same version. Empty in records written before plugins.
    #[serde(default)]
    pub plugins: SavedPlugins,
}

/// Most bytes of plugin state one player's save holds (records included).
pub const SAVED_PLUGIN_BYTES: usize = 96;

/// Game plugins' saved state of one player: a sequence of records `tag: u16 LE` (the low 16
/// bits of the xxh3 hash of the component's name), `version: u8` (the component's schema
/// version), `len: u8`, `len` bytes. Records of plugins this server does not run are kept and
/// saved again as they came, so removing a plugin loses nothing.
///
/// Fixed-size and `Copy`: a save allocates nothing. Encoded (bincode, the stores) as its used
/// bytes with a length; a record written before plugins existed, which ends before this field,
/// decodes as empty.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SavedPlugins {
    len: u8,
    bytes: [u8; SAVED_PLUGIN_BYTES],
}

impl Default for SavedPlugins {
    fn default() -> Self {
        Self {
            len: 0,
            bytes: [0; SAVED_PLUGIN_BYTES],
        }
    }
}

impl std::fmt::Debug for SavedPlugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.records().map(|(tag, v, b)| (tag, v, b.len())))
            .finish()
    }
}

/// Why plugin state could not be added to a save.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("plugin state does not fit the save ({SAVED_PLUGIN_BYTES} bytes at most)")]
pub struct SaveFull;

impl SavedPlugins {
    /// The used bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// From stored bytes: `None` if they are longer than [`SAVED_PLUGIN_BYTES`] or not a
    /// sequence of whole records.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > SAVED_PLUGIN_BYTES {
            return None;
        }
        let mut s = Self::default();
        s.bytes[..bytes.len()].copy_from_slice(bytes);
        s.len = bytes.len() as u8;
        let mut at = 0;
        while at < bytes.len() {
            let len = usize::from(*bytes.get(at + 3)?);
            at += 4 + len;
        }
        (at == bytes.len()).then_some(s)
    }

    /// Whether no plugin state is saved.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The records: `(tag, version, bytes)`.
    pub fn records(&self) -> impl Iterator<Item = (u16, u8, &[u8])> + '_ {
        let mut rest = self.as_bytes();
        std::iter::from_fn(move || {
            let [t0, t1, version, len, tail @ ..] = rest else {
                return None;
            };
            let len = usize::from(*len).min(tail.len());
            let (body, after) = tail.split_at(len);
            rest = after;
            Some((u16::from_le_bytes([*t0, *t1]), *version, body))
        })
    }

    /// Appends one record.
    pub fn push(&mut self, tag: u16, version: u8, body: &[u8]) -> Result<(), SaveFull> {
        let at = usize::from(self.len);
        let end = at + 4 + body.len();
        if end > SAVED_PLUGIN_BYTES || body.len() > usize::from(u8::MAX) {
            return Err(SaveFull);
        }
        let t = tag.to_le_bytes();
        self.bytes[at..at + 4].copy_from_slice(&[t[0], t[1], version, body.len() as u8]);
        self.bytes[at + 4..end].copy_from_slice(body);
        self.len = end as u8;
        Ok(())
    }

    /// Empties it.
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

impl Encode for SavedPlugins {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.len.encode(encoder)?;
        for b in self.as_bytes() {
            b.encode(encoder)?;
        }
        Ok(())
    }
}

impl<C> Decode<C> for SavedPlugins {
    fn decode<D: bincode::de::Decoder<Context = C>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let len = match u8::decode(decoder) {
            Ok(len) => usize::from(len),
            // A record from before plugins ends here.
            Err(bincode::error::DecodeError::UnexpectedEnd { .. }) => return Ok(Self::default()),
            Err(e) => return Err(e),
        };
        let mut bytes = [0u8; SAVED_PLUGIN_BYTES];
        for b in bytes
            .get_mut(..len)
            .ok_or(bincode::error::DecodeError::Other(
                "plugin state longer than a save holds",
            ))?
        {
            *b = u8::decode(decoder)?;
        }
        Self::from_bytes(&bytes[..len]).ok_or(bincode::error::DecodeError::Other(
            "plugin state is not a sequence of records",
        ))
    }
}
bincode::impl_borrow_decode!(SavedPlugins);

impl Serialize for SavedPlugins {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.as_bytes())
    }
}

impl<'de> Deserialize<'de> for SavedPlugins {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = Deserialize::deserialize(d)?;
        Self::from_bytes(&bytes)
            .ok_or_else(|| serde::de::Error::custom("plugin state is not a sequence of records"))
    }
}

/// Bits of a [`Version`] below the ownership epoch.
pub const EPOCH_SHIFT: u32 = 32;

/// The order of a player's saves: the ownership epoch in the upper 32 bits and a sequence in
/// the lower 32. A zone that takes the player over raises the epoch, so its saves order after
/// every save of an earlier holder; each save within an epoch adds one to the sequence.
///
/// Contract: a version never goes down. [`Version::next`] and [`Version::claimed`] saturate
/// at [`Version::MAX`] instead of wrapping, and an epoch too large for the upper 32 bits
/// saturates instead of being truncated. Encoded (bincode, serde, the stores) as its raw
/// `u64`, so it reads every record written before it was a type.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    Encode,
    Decode,
)]
#[serde(transparent)]
pub struct Version(u64);

impl Version {
    /// A character that was never saved.
    pub const ZERO: Self = Self(0);
    /// The largest version; every saturating step ends here.
    pub const MAX: Self = Self(u64::MAX);

    /// The version of `sequence` within `epoch`, saturating at [`Version::MAX`] for an epoch
    /// that does not fit the upper 32 bits.
    ///
    /// ```
    /// use zone_core::Version;
    /// assert_eq!(Version::new(3, 4).raw(), (3 << 32) | 4);
    /// assert_eq!(Version::new(1 << 32, 0), Version::MAX);
    /// ```
    pub const fn new(epoch: u64, sequence: u32) -> Self {
        if epoch >> (u64::BITS - EPOCH_SHIFT) == 0 {
            Self((epoch << EPOCH_SHIFT) | sequence as u64)
        } else {
            Self::MAX
        }
    }

    /// A version as stored (the stores keep the raw number).
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw number the stores keep.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The ownership epoch (0 before any claim).
    pub const fn epoch(self) -> u64 {
        self.0 >> EPOCH_SHIFT
    }

    /// The save sequence within the epoch.
    pub const fn sequence(self) -> u32 {
        // Truncation intended: the lower 32 bits are the sequence.
        self.0 as u32
    }

    /// The version of the next save: one more, saturating at [`Version::MAX`]. A sequence
    /// that fills its 32 bits carries into the epoch, which keeps the order (it would take
    /// four billion saves in one ownership).
    ///
    /// ```
    /// use zone_core::Version;
    /// assert_eq!(Version::new(2, 7).next(), Version::new(2, 8));
    /// assert_eq!(Version::MAX.next(), Version::MAX);
    /// ```
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }

    /// The version a state takes when it is taken over under ownership epoch `epoch`: the
    /// first of that epoch, or one more when that would not be higher (an epoch at or below
    /// the current one, or one too large for the upper bits).
    ///
    /// ```
    /// use zone_core::Version;
    /// let v = Version::ZERO.claimed(5);
    /// assert_eq!(v, Version::new(5, 0));
    /// assert_eq!(v.claimed(5), Version::new(5, 1));
    /// assert_eq!(v.claimed(1 << 32), Version::MAX);
    /// assert!(v.claimed((1 << 32) + 1) > v);
    /// ```
    #[must_use]
    pub const fn claimed(self, epoch: u64) -> Self {
        let first = Self::new(epoch, 0);
        let next = self.next();
        if first.0 > next.0 { first } else { next }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.epoch(), self.sequence())
    }
}

impl PlayerState {
    /// The ownership epoch this state was saved under (0 before any claim).
    ///
    /// ```
    /// let s = zone_core::PlayerState::new_character(1.0, 2.0, 100).claimed(3);
    /// assert_eq!((s.epoch(), s.version.raw()), (3, 3 << 32));
    /// ```
    pub fn epoch(&self) -> u64 {
        self.version.epoch()
    }

    /// The state as taken over under ownership epoch `epoch` (see [`Version::claimed`]).
    pub fn claimed(mut self, epoch: u64) -> Self {
        self.version = self.version.claimed(epoch);
        self
    }

    /// A brand-new character at a position, with the given health and nothing done yet.
    pub fn new_character(x: f32, y: f32, health: u16) -> Self {
        Self {
            x,
            y,
            facing: 0.0,
            health,
            stats: PlayerStats::default(),
            version: Version::ZERO,
            plugins: SavedPlugins::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hot-store value written before plugin state existed (the same fields, no plugin
    /// bytes after them) decodes with empty plugin state; the current encoding round-trips;
    /// bytes that are not whole records are refused.
    #[test]
    fn saved_plugin_state_reads_old_values_and_round_trips() {
        #[derive(Encode)]
        struct Before {
            x: f32,
            y: f32,
            facing: f32,
            health: u16,
            stats: PlayerStats,
            version: Version,
        }
        let config = bincode::config::standard();
        let old = bincode::encode_to_vec(
            Before {
                x: 1.0,
                y: 2.0,
                facing: 0.5,
                health: 9,
                stats: PlayerStats::default(),
                version: Version::from_raw(12),
            },
            config,
        )
        .unwrap();
        let (state, used): (PlayerState, usize) = bincode::decode_from_slice(&old, config).unwrap();
        assert_eq!(used, old.len());
        assert_eq!((state.health, state.version.raw()), (9, 12));
        assert!(state.plugins.is_empty());

        let mut plugins = SavedPlugins::default();
        plugins.push(7, 1, &[1, 2, 3]).unwrap();
        plugins.push(8, 3, &[]).unwrap();
        let now = PlayerState { plugins, ..state };
        let bytes = bincode::encode_to_vec(now, config).unwrap();
        let (back, _): (PlayerState, usize) = bincode::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(back, now);
        let records: Vec<_> = back.plugins.records().collect();
        assert_eq!(records, [(7, 1, &[1u8, 2, 3][..]), (8, 3, &[][..])]);

        assert_eq!(
            SavedPlugins::from_bytes(&[7, 0, 1, 5, 1]),
            None,
            "a record cut short"
        );
        assert!(SavedPlugins::from_bytes(&[0; SAVED_PLUGIN_BYTES + 1]).is_none());
        let mut full = SavedPlugins::default();
        while full.push(1, 1, &[0; 10]).is_ok() {}
        assert_eq!(full.push(1, 1, &[0; 10]), Err(SaveFull));
        assert!(full.as_bytes().len() <= SAVED_PLUGIN_BYTES);
    }

    /// The bound the old `checked_shl` missed: an epoch of 2^32 or more was truncated and the
    /// version went down. Every claim and every save must order at or after the one before.
    #[test]
    fn a_version_never_goes_down() {
        let epochs = [
            0,
            1,
            2,
            7,
            u32::MAX as u64,
            1 << 32,
            (1 << 32) + 1,
            u64::MAX - 1,
            u64::MAX,
        ];
        let starts = [
            Version::ZERO,
            Version::new(3, 9),
            Version::new(u32::MAX as u64, u32::MAX),
            Version::from_raw(u64::MAX - 1),
            Version::MAX,
        ];
        for start in starts {
            assert!(start.next() >= start);
            assert!(start.next() > start || start == Version::MAX);
            for epoch in epochs {
                let claimed = start.claimed(epoch);
                assert!(
                    claimed > start || start == Version::MAX,
                    "{start} claimed {epoch}"
                );
                if epoch <= u32::MAX as u64 && Version::new(epoch, 0) > start {
                    assert_eq!((claimed.epoch(), claimed.sequence()), (epoch, 0));
                }
            }
        }
    }

    #[test]
    fn a_full_sequence_carries_into_the_epoch_and_keeps_the_order() {
        let v = Version::new(4, u32::MAX);
        assert_eq!(v.next(), Version::new(5, 0));
        assert!(v.next() > v);
    }

    #[test]
    fn a_version_encodes_as_its_raw_number() {
        let config = bincode::config::standard();
        let v = Version::new(6, 42);
        assert_eq!(
            bincode::encode_to_vec(v, config).unwrap(),
            bincode::encode_to_vec(v.raw(), config).unwrap()
        );
    }
}

//! Plugins' persistent player state: a component saved and loaded with the player
//! ([`Persistent`]), inside the same versioned [`crate::PlayerState`] the stores keep, so it
//! is idempotent, newest-wins and replayed after a crash exactly like the player's position
//! and stats.
//!
//! Schema story: each component names a schema `VERSION`; a save writes the current one, and
//! [`Persistent::load`] receives the version a record was written in, so adding a field later
//! means bumping `VERSION` and reading the older layout with a default for the new field.
//! Records of plugins a server does not run, and records its plugins cannot read (a newer
//! schema written by a newer server), are carried through its saves unchanged: nothing saved
//! is lost by a server that does not understand it.

use bevy_ecs::prelude::*;

use super::CodecError;
use crate::{SaveFull, SavedPlugins};

/// A player component saved with the player.
///
/// ```
/// use bevy_ecs::prelude::*;
/// use zone_core::game::{CodecError, Persistent, SaveBuf};
/// #[derive(Component, Clone, Copy, Debug, Default, PartialEq)]
/// struct Gold { coins: u32, gems: u16 }
/// impl Persistent for Gold {
///     const NAME: &'static str = "example.gold";
///     const VERSION: u8 = 2; // 1 had no gems
///     const MAX_BYTES: usize = 6;
///     fn save(&self, out: &mut SaveBuf<'_>) {
///         out.put(&self.coins.to_le_bytes());
///         out.put(&self.gems.to_le_bytes());
///     }
///     fn load(version: u8, b: &[u8]) -> Result<Self, CodecError> {
///         match (version, b) {
///             (1, [a, b, c, d]) => Ok(Gold { coins: u32::from_le_bytes([*a, *b, *c, *d]), gems: 0 }),
///             (2, [a, b, c, d, e, f]) => Ok(Gold {
///                 coins: u32::from_le_bytes([*a, *b, *c, *d]),
///                 gems: u16::from_le_bytes([*e, *f]),
///             }),
///             _ => Err(CodecError("unknown gold layout")),
///         }
///     }
/// }
/// ```
pub trait Persistent: Component + Sized {
    /// Unique, stable name; its hash tags the saved record.
    const NAME: &'static str;
    /// The schema version a save writes.
    const VERSION: u8;
    /// Most bytes a save writes (all of a game's persistent components together, with 4
    /// bytes of record header each, fit [`crate::SAVED_PLUGIN_BYTES`]).
    const MAX_BYTES: usize;
    /// Writes the component (at most [`Persistent::MAX_BYTES`]).
    fn save(&self, out: &mut SaveBuf<'_>);
    /// Reads a record written in schema `version` (this one or an older one). The bytes come
    /// from a database: total (any bytes give a value or an error).
    fn load(version: u8, bytes: &[u8]) -> Result<Self, CodecError>;
}

/// The tag of `C`'s saved records: the low 16 bits of the xxh3 hash of its name.
pub fn record_tag<C: Persistent>() -> u16 {
    super::action::kind_of(C::NAME)
}

/// Where a [`Persistent::save`] writes: a fixed buffer; writing past its end is noted and the
/// record is not saved (counted by the zone), never truncated.
#[derive(Debug)]
pub struct SaveBuf<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl SaveBuf<'_> {
    /// Appends bytes.
    pub fn put(&mut self, bytes: &[u8]) {
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            None => self.overflow = true,
        }
    }
}

/// The saved records of plugins this zone does not run, or whose record did not load: kept on
/// the avatar and saved again unchanged (a plugin whose record is carried plays with its join
/// default and does not overwrite the record).
#[derive(Component, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CarriedPlugins(pub SavedPlugins);

/// One persistent component kind, type-erased.
#[derive(Clone, Copy)]
pub(crate) struct PersistEntry {
    pub(crate) tag: u16,
    pub(crate) name: &'static str,
    pub(crate) max_bytes: usize,
    /// Appends the entity's component, if it has one.
    pub(crate) save: fn(&EntityRef<'_>, &mut SavedPlugins) -> Result<(), SaveFull>,
    /// Inserts the component from a record.
    pub(crate) load: fn(&mut EntityWorldMut<'_>, u8, &[u8]) -> Result<(), CodecError>,
}

impl std::fmt::Debug for PersistEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistEntry")
            .field("name", &self.name)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl PersistEntry {
    pub(crate) fn of<C: Persistent>() -> Self {
        Self {
            tag: super::action::kind_of(C::NAME),
            name: C::NAME,
            max_bytes: C::MAX_BYTES,
            save: |e, out| {
                let Some(c) = e.get::<C>() else {
                    return Ok(());
                };
                let mut scratch = [0u8; u8::MAX as usize];
                let limit = C::MAX_BYTES.min(scratch.len());
                let mut buf = SaveBuf {
                    buf: &mut scratch[..limit],
                    len: 0,
                    overflow: false,
                };
                c.save(&mut buf);
                if buf.overflow {
                    return Err(SaveFull);
                }
                let len = buf.len;
                out.push(super::action::kind_of(C::NAME), C::VERSION, &scratch[..len])
            },
            load: |e, version, bytes| {
                let c = C::load(version, bytes)?;
                e.insert(c);
                Ok(())
            },
        }
    }
}

/// Writes an avatar's plugin state into `out`: every registered component it has (they fit:
/// checked when the game was built), then the carried records while they fit. A registered
/// component whose tag is carried is not saved: the record it could not read stays as it was.
/// `Err` if something did not fit (the save keeps what fitted).
pub(crate) fn save_all(
    entries: &[PersistEntry],
    e: &EntityRef<'_>,
    out: &mut SavedPlugins,
) -> Result<(), SaveFull> {
    out.clear();
    let carried = e.get::<CarriedPlugins>().map(|c| &c.0);
    let mut result = Ok(());
    for entry in entries {
        if carried.is_some_and(|c| c.records().any(|(tag, _, _)| tag == entry.tag)) {
            continue;
        }
        if let Err(full) = (entry.save)(e, out) {
            result = Err(full);
        }
    }
    for (tag, version, body) in carried.into_iter().flat_map(SavedPlugins::records) {
        if let Err(full) = out.push(tag, version, body) {
            result = Err(full);
        }
    }
    result
}

/// Loads an avatar's plugin state from `saved`: registered records into their components,
/// others (and records that do not load) carried. Returns how many records did not load.
pub(crate) fn load_all(
    entries: &[PersistEntry],
    e: &mut EntityWorldMut<'_>,
    saved: &SavedPlugins,
) -> u64 {
    let mut carried = SavedPlugins::default();
    let mut refused = 0;
    for (tag, version, body) in saved.records() {
        let loaded = match entries.iter().find(|p| p.tag == tag) {
            Some(entry) => {
                let ok = (entry.load)(e, version, body).is_ok();
                // A record its plugin cannot read is counted and carried: the plugin plays
                // with its join default, and the record is saved again as it came.
                refused += u64::from(!ok);
                ok
            }
            None => false,
        };
        if !loaded {
            // It came from a save, so it fits one.
            let _ = carried.push(tag, version, body);
        }
    }
    if !carried.is_empty() {
        e.insert(CarriedPlugins(carried));
    }
    refused
}

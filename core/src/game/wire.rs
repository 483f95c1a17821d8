//! What a game puts on the wire, declared apart from what it simulates
//! ([`super::ZonePlugin::declare`]): its actions and its replicated components. A client and a
//! server built from the same plugins derive the same [`WireLayout`], and its
//! [`WireLayout::protocol_hash`] tells them apart when they were not.
//!
//! A replicated component has a fixed-size, quantized encoding of its own ([`Replicated`]);
//! the layout gives it a bit and an offset in every entity's [`Ext`], which travels in the
//! delta-snapshot stream with the entity's status (see `PROTOCOL.md`).

use std::any::TypeId;
use std::sync::Arc;

use bevy_ecs::prelude::*;
use xxhash_rust::xxh3::Xxh3;

use super::GameError;
use super::action::{Action, ActionEntry, CodecError};
use crate::protocol::{EXT_BYTES, Ext, PROTOCOL_VERSION};

/// Most replicated component kinds one game registers (one bit each in [`Ext::present`]).
pub const MAX_REPLICATED: usize = 8;

/// A component that travels to clients in the snapshot stream, in a fixed-size encoding of its
/// own (quantize here: every byte is paid for on every change).
///
/// ```
/// use bevy_ecs::prelude::*;
/// use zone_core::game::{CodecError, Replicated};
/// #[derive(Component, Clone, Copy, Debug, PartialEq)]
/// struct Glow(u8);
/// impl Replicated for Glow {
///     const NAME: &'static str = "example.glow";
///     const SIZE: usize = 1;
///     fn encode(&self, out: &mut [u8]) { out[0] = self.0 }
///     fn decode(bytes: &[u8]) -> Result<Self, CodecError> { Ok(Glow(bytes[0])) }
/// }
/// ```
pub trait Replicated: Component + Sized {
    /// Unique, stable name; bound into the protocol hash.
    const NAME: &'static str;
    /// Encoded size in bytes (all of a game's replicated components together fit
    /// [`EXT_BYTES`]).
    const SIZE: usize;
    /// Writes the encoding into `out` (exactly [`Replicated::SIZE`] bytes, zeroed).
    fn encode(&self, out: &mut [u8]);
    /// Reads it back from exactly [`Replicated::SIZE`] bytes sent by a server: total (any
    /// bytes give a value or an error).
    fn decode(bytes: &[u8]) -> Result<Self, CodecError>;
}

/// Collects a plugin's wire declarations.
#[derive(Debug, Default)]
pub struct Wire {
    actions: Vec<ActionEntry>,
    components: Vec<ComponentEntry>,
    error: Option<GameError>,
}

/// One replicated component kind, type-erased.
#[derive(Clone, Copy)]
pub(crate) struct ComponentEntry {
    pub(crate) name: &'static str,
    pub(crate) size: usize,
    pub(crate) offset: usize,
    pub(crate) type_id: TypeId,
    /// Encodes the entity's component into its slice; false if the entity has none.
    pub(crate) read: fn(&EntityRef<'_>, &mut [u8]) -> bool,
}

impl std::fmt::Debug for ComponentEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentEntry")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl Wire {
    /// Accepts action `A` from clients (decoded, validated, queued in [`super::Actions`]).
    pub fn action<A: Action>(&mut self) -> &mut Self {
        let entry = ActionEntry::of::<A>();
        if let Some(other) = self.actions.iter().find(|e| e.kind == entry.kind) {
            self.error
                .get_or_insert(GameError::ActionKindClash(other.name, entry.name));
            return self;
        }
        self.actions.push(entry);
        self
    }

    /// Replicates component `C` of every entity that has it.
    pub fn replicate<C: Replicated>(&mut self) -> &mut Self {
        let offset = self.components.last().map_or(0, |c| c.offset + c.size);
        if self.components.len() >= MAX_REPLICATED {
            self.error
                .get_or_insert(GameError::TooManyReplicated(C::NAME));
            return self;
        }
        if C::SIZE == 0 || offset + C::SIZE > EXT_BYTES {
            self.error.get_or_insert(GameError::ReplicatedTooLarge {
                component: C::NAME,
                end: offset + C::SIZE,
            });
            return self;
        }
        if self
            .components
            .iter()
            .any(|c| c.type_id == TypeId::of::<C>())
        {
            self.error
                .get_or_insert(GameError::DuplicateReplicated(C::NAME));
            return self;
        }
        self.components.push(ComponentEntry {
            name: C::NAME,
            size: C::SIZE,
            offset,
            type_id: TypeId::of::<C>(),
            read: |e, out| match e.get::<C>() {
                Some(c) => {
                    out.fill(0);
                    c.encode(out);
                    true
                }
                None => false,
            },
        });
        self
    }

    pub(crate) fn finish(self) -> Result<WireLayout, GameError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut h = Xxh3::new();
        h.update(b"zone-protocol");
        h.update(&[PROTOCOL_VERSION]);
        for a in &self.actions {
            h.update(&(a.name.len() as u32).to_le_bytes());
            h.update(a.name.as_bytes());
        }
        h.update(&[0xFF]);
        for c in &self.components {
            h.update(&(c.name.len() as u32).to_le_bytes());
            h.update(c.name.as_bytes());
            h.update(&(c.size as u32).to_le_bytes());
        }
        Ok(WireLayout(Arc::new(Layout {
            hash: h.digest(),
            actions: self.actions,
            components: self.components,
        })))
    }
}

#[derive(Debug)]
struct Layout {
    hash: u64,
    actions: Vec<ActionEntry>,
    components: Vec<ComponentEntry>,
}

/// A game's wire layout: its actions and replicated components, and the hash that binds them.
/// Cheap to clone. The default is the bare layout (nothing declared).
#[derive(Clone, Debug)]
pub struct WireLayout(Arc<Layout>);

impl Default for WireLayout {
    fn default() -> Self {
        match Wire::default().finish() {
            Ok(layout) => layout,
            Err(_) => unreachable!("an empty declaration always finishes"),
        }
    }
}

impl WireLayout {
    /// The hash of the protocol version and every declared action and replicated component
    /// (names, sizes, order). A client refuses a server whose hash differs, and the server
    /// refuses such a client.
    pub fn protocol_hash(&self) -> u64 {
        self.0.hash
    }

    /// Whether the game declares nothing for the wire (the built-in game): then nothing about
    /// plugins is sent at all, and the protocol is exactly the plugin-free one.
    pub fn is_bare(&self) -> bool {
        self.0.actions.is_empty() && self.0.components.is_empty()
    }

    /// The declared actions' names, in order.
    pub fn action_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.actions.iter().map(|a| a.name)
    }

    /// The replicated components' names, in order (bit `i` of [`Ext::present`] is the `i`-th).
    pub fn component_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.components.iter().map(|c| c.name)
    }

    pub(crate) fn actions(&self) -> &[ActionEntry] {
        &self.0.actions
    }

    pub(crate) fn components(&self) -> &[ComponentEntry] {
        &self.0.components
    }

    /// Component `C` of a replicated entity's state, if the entity has one and it decodes.
    pub fn component<C: Replicated>(&self, ext: &Ext) -> Option<Result<C, CodecError>> {
        let (i, c) = self
            .0
            .components
            .iter()
            .enumerate()
            .find(|(_, c)| c.type_id == TypeId::of::<C>())?;
        if ext.present & (1 << i) == 0 {
            return None;
        }
        Some(C::decode(&ext.bytes[c.offset..c.offset + c.size]))
    }

    /// Encodes an entity's replicated components (server side).
    pub(crate) fn read(&self, e: &EntityRef<'_>) -> Ext {
        let mut ext = Ext::default();
        for (i, c) in self.0.components.iter().enumerate() {
            if (c.read)(e, &mut ext.bytes[c.offset..c.offset + c.size]) {
                ext.present |= 1 << i;
            }
        }
        ext
    }
}

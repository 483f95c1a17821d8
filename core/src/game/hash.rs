//! [`StateHash`]: how a piece of game state feeds [`crate::Zone::state_hash`].
//!
//! A plugin registers each component and resource it owns
//! ([`super::GameApp::hash_component`], [`super::GameApp::hash_resource`]); the zone hashes the
//! registered components of every entity in entity-id order, then the registered resources, so
//! two zones with equal hashes hold equal state, the plugins' included. Floats are hashed by
//! their bits: `-0.0` and `0.0` differ, as they may in the next tick's arithmetic.

use glam::Vec2;
use xxhash_rust::xxh3::Xxh3;

use crate::{EntityId, PlayerId};

/// The hasher [`StateHash`] writes to: fixed-width little-endian values, nothing else.
pub struct StateHasher<'a>(pub(crate) &'a mut Xxh3);

impl std::fmt::Debug for StateHasher<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateHasher")
    }
}

impl StateHasher<'_> {
    /// Raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.0.update(b);
    }

    /// Any value with a [`StateHash`].
    pub fn put<T: StateHash + ?Sized>(&mut self, value: &T) {
        value.hash_state(self);
    }
}

/// State a zone's hash covers. Write every field that can change the simulation, in a fixed
/// order; write a tag before the fields of each enum variant.
pub trait StateHash {
    /// Feeds this value to `h`.
    fn hash_state(&self, h: &mut StateHasher<'_>);
}

macro_rules! le_bytes {
    ($($t:ty),*) => {$(
        impl StateHash for $t {
            fn hash_state(&self, h: &mut StateHasher<'_>) {
                h.bytes(&self.to_le_bytes());
            }
        }
    )*};
}
le_bytes!(u8, u16, u32, u64, i8, i16, i32, i64);

impl StateHash for bool {
    fn hash_state(&self, h: &mut StateHasher<'_>) {
        h.bytes(&[u8::from(*self)]);
    }
}

impl StateHash for f32 {
    fn hash_state(&self, h: &mut StateHasher<'_>) {
        h.bytes(&self.to_bits().to_le_bytes());
    }
}

impl StateHash for Vec2 {
    fn hash_state(&self, h: &mut StateHasher<'_>) {
        h.put(&self.x);
        h.put(&self.y);
    }
}

impl StateHash for EntityId {
    fn hash_state(&self, h: &mut StateHasher<'_>) {
        h.put(&self.0);
    }
}

impl StateHash for PlayerId {
    fn hash_state(&self, h: &mut StateHasher<'_>) {
        h.put(&self.0);
    }
}

impl<T: StateHash> StateHash for Option<T> {
    fn hash_state(&self, h: &mut StateHasher<'_>) {
        match self {
            None => h.bytes(&[0]),
            Some(v) => {
                h.bytes(&[1]);
                v.hash_state(h);
            }
        }
    }
}

impl<T: StateHash> StateHash for [T] {
    fn hash_state(&self, h: &mut StateHasher<'_>) {
        h.put(&(self.len() as u64));
        for v in self {
            v.hash_state(h);
        }
    }
}

impl<T: StateHash, const N: usize> StateHash for [T; N] {
    fn hash_state(&self, h: &mut StateHasher<'_>) {
        self.as_slice().hash_state(h);
    }
}

impl<T: StateHash> StateHash for Vec<T> {
    fn hash_state(&self, h: &mut StateHasher<'_>) {
        self.as_slice().hash_state(h);
    }
}

impl<A: StateHash, B: StateHash> StateHash for (A, B) {
    fn hash_state(&self, h: &mut StateHasher<'_>) {
        self.0.hash_state(h);
        self.1.hash_state(h);
    }
}

//! # zone-kit
//!
//! What a game team tests its plugins with, on its own code:
//!
//! - [`check_determinism`]: two zones, the same seed and inputs, equal state hashes after
//!   every tick (the hash covers what plugins register with
//!   [`zone_core::game::GameApp::hash_component`]);
//! - [`Script`]: scripted players that wander and fight, the same crowd the core's own tests,
//!   benches and bots use;
//! - [`CountingAllocator`]: install it as the test binary's global allocator and assert that a
//!   warm zone's ticks allocate nothing ([`allocations`] counts the calling thread only, so
//!   other test threads do not disturb it);
//! - the network harness with store and network faults is `sim-tests` (its `world::run` takes
//!   the game in `RunConfig::game`); the fuzz entry for a plugin's decoders is
//!   [`zone_core::game::kit::fuzz_action`] and [`zone_core::game::kit::fuzz_replicated`].
//!
//! ```
//! use zone_kit::{Game, check_determinism};
//! use zone_core::{Zone, ZoneConfig, ZoneId};
//! let make = || Zone::with_game(ZoneConfig::arena(ZoneId(1), 48, 48, 20), 5, &Game::default()).unwrap();
//! assert!(check_determinism(make, 30, |_, _| {}).is_ok());
//! ```

mod alloc;

pub use alloc::{CountingAllocator, allocations};
pub use zone_core::game::Game;
pub use zone_core::game::kit::{Determinism, Divergence, check_determinism};
pub use zone_core::scenario::Script;

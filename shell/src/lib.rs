//! # zone-shell
//!
//! The thin async shell that turns [`zone_core`] into the `zone-server` program: UDP through
//! tokio secured by the core's netcode.io implementation, a fixed-rate tick loop that never
//! waits on I/O, Prometheus metrics and health endpoints, graceful shutdown, connect-token
//! minting and headless bots.
//!
//! Layout: [`config`] (TOML + env + CLI), [`host`] (zone + replication + netcode as one sans-IO
//! state machine), [`server`] (the tick loop), [`socket`] (the socket seam), [`admin`] (HTTP),
//! [`metrics`], [`keys`] and [`tokens`] (secrets and connect tokens), [`bots`], [`world`]
//! (zones of a world: handoffs and ghosts).

pub mod admin;
pub mod app;
pub mod bots;
pub mod config;
pub mod flood;
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
pub mod keys;
pub mod metrics;
pub mod persist;
pub mod process_stats;
pub mod server;
pub mod socket;
pub mod tokens;
pub mod world;

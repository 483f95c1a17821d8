//! # zone-shell
//!
//! The thin async shell that turns [`zone_core`] into the `zone-server` program: UDP through
//! tokio secured by the core's netcode.io implementation, a fixed-rate tick loop that never
//! waits on I/O, Prometheus metrics and health endpoints, graceful shutdown, connect-token
//! minting and headless bots.
//!
//! Layout: [`config`] (TOML + env + CLI), [`host`] (zone + replication + netcode + the players'
//! presence + handoffs as one sans-IO state machine), [`effects`] (what the host asks of the
//! world, and the async workers that do it), [`server`] (the tick loop), [`persist`] (store
//! ports and adapters, records, the spool, the flusher), [`socket`] (the socket seam),
//! [`pool`] (a zone tick's packet-lane threads),
//! [`admin`] (HTTP), [`metrics`], [`keys`] and [`tokens`] (secrets and connect tokens),
//! [`bots`], [`world`] (zones of a world: the bus, ghosts), [`view`] (a zone as the admin
//! world page shows it).

pub mod admin;
pub mod app;
pub mod bots;
pub mod config;
pub mod deadline;
pub mod effects;
pub mod flood;
/// Fuzz targets and their seed corpus: not API (the `fuzzing` feature; `fuzz/` and the
/// corpus test enable it).
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod game;
pub mod host;
pub mod identity;
pub mod keys;
pub mod metrics;
pub mod persist;
pub mod pool;
pub mod process_stats;
pub mod rig;
pub mod server;
pub mod socket;
pub mod tokens;
pub mod view;
pub mod world;

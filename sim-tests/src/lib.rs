//! Whole-network turmoil simulations of the real zone-server shell with injected database and
//! network faults. [`world::run`] runs one seed of one [`world::Scenario`]: the zone server
//! (real `ZoneHost`, tick loop, spool on the crash-consistent [`disk::SimFs`], flusher,
//! effect link, lease keeper), bots on their own hosts, and [`stores`] "redis" and
//! "scylla" hosts reached over simulated TCP; it then checks the invariants and returns the
//! violations. [`multizone::run`] does the same for a 2x2 world of zone servers with
//! handoffs, a lease that expires and servers crashed mid-handoff. `tests/scenarios.rs` and
//! `tests/world.rs` run the scenarios over many seeds; any failure prints the command that
//! replays its seed.

pub mod disk;
pub mod harness;
pub mod multizone;
pub mod stores;
pub mod world;

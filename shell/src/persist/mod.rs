//! Persistence: the two store ports ([`HotStore`], [`ColdStore`]), their adapters (Redis via
//! fred, ScyllaDB via scylla, embedded defaults), the durable write-behind spool and the
//! flusher that drains it to the cold store.
//!
//! The tick never waits on any of it: the loop appends a tick's records to the spool's memory
//! buffer; a writer thread group-commits them to disk; the flusher drains durable records to
//! the cold store in batches with backoff and a circuit breaker; acknowledged segments are
//! deleted. On start, whatever the spool holds is replayed.

pub mod breaker;
pub mod cold;
pub mod embedded_cold;
pub mod embedded_hot;
pub mod flusher;
pub mod hot;
pub mod load_policy;
pub mod record;
pub mod redis;
pub mod redis_keys;
pub mod schema;
pub mod scylla;
pub mod spool;
pub mod spool_fs;

pub use cold::{ColdStore, StoreError, StoredPlayer};
pub use hot::{Claim, HotStore, Lease, LeaseHolder, Message, Owner, Position, Session};
pub use record::{CombatRecord, ProfileRecord, Record, RecordError, SaveRecord};

//! The cold-store port: durable combat history, player state and stats, player profiles.
//! Implemented by ScyllaDB ([`super::scylla`]) and the embedded SQLite file
//! ([`super::embedded_cold`]). Every write is idempotent: combat events are keyed by
//! `(zone, day, run, event id)`, player state is an absolute value ordered by
//! [`super::SaveRecord::write_order`], so the write-behind flusher may retry and replay freely.

use std::fmt::Debug;

use zone_core::{CombatEvent, PlayerId, PlayerState, ZoneId};

use super::record::{ProfileRecord, Record};

/// Why a store call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The store could not be reached or is overloaded: retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The call took longer than its timeout: retry later.
    #[error("store timed out after {0} ms")]
    Timeout(u64),
    /// The store refused one record of a batch as invalid; retrying will not help.
    /// The flusher dead-letters it and retries the rest.
    #[error("record {index} rejected: {reason}")]
    Rejected {
        /// Index of the record in the batch.
        index: usize,
        /// The store's reason.
        reason: String,
    },
    /// A row read back does not make sense (corrupt or from an incompatible writer).
    #[error("stored row is invalid: {0}")]
    BadRow(String),
}

impl StoreError {
    /// Whether a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Timeout(_))
    }
}

/// A stored player: their newest state and profile.
#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::Decode)]
pub struct StoredPlayer {
    /// Newest state.
    pub state: PlayerState,
    /// The profile, if one was written.
    pub profile: Option<ProfileRecord>,
}

/// The durable store.
#[async_trait::async_trait]
pub trait ColdStore: Send + Sync + Debug {
    /// A short name for logs ("scylla", "sqlite").
    fn name(&self) -> &'static str;

    /// Writes a batch. All-or-nothing is not required: a failed batch is retried whole, and
    /// every write is idempotent.
    async fn write(&self, batch: &[Record]) -> Result<(), StoreError>;

    /// A player's newest state and profile.
    async fn load_player(&self, player: PlayerId) -> Result<Option<StoredPlayer>, StoreError>;

    /// Registers `fence` as a holding of `zone` from `since_ms` (unix ms) on and returns the
    /// largest fence registered for the zone. From then on a save of the zone under a smaller
    /// fence stamped at or after `since_ms` is rejected ([`StoreError::Rejected`]): a holder
    /// cut off from the lease cannot overwrite its successor. Stores without fencing keep the
    /// default (nothing registered, nothing rejected).
    async fn register_fence(
        &self,
        _zone: ZoneId,
        fence: u64,
        _since_ms: u64,
    ) -> Result<u64, StoreError> {
        Ok(fence)
    }

    /// The largest fence registered for `zone` (0 when none): a new lease holder's fence
    /// floor, durable across a hot-store wipe.
    async fn zone_fence(&self, _zone: ZoneId) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// The combat events of one zone and day partition, as `(run, event)` in key order.
    async fn combat_events(
        &self,
        zone: ZoneId,
        day: u32,
    ) -> Result<Vec<(u64, CombatEvent)>, StoreError>;
}

/// Whether a zone's fence history `(fence, since_ms)` rejects a save stamped `unix_ms` under
/// `fence`: some larger fence took effect at or before it.
pub fn fenced_out(history: &[(u64, u64)], fence: u64, unix_ms: u64) -> bool {
    history
        .iter()
        .any(|&(f, since)| f > fence && since <= unix_ms)
}

//! The cold-store port: durable combat history, player state and stats, player profiles.
//! Implemented by ScyllaDB ([`super::scylla`]) and the embedded SQLite file
//! ([`super::embedded_cold`]). Every write is idempotent: combat events are keyed by
//! `(zone, day, run, event id)`, player state is an absolute value ordered by
//! [`super::SaveRecord::write_order`], so the write-behind flusher may retry and replay freely.

use std::fmt::Debug;

use zone_core::{CombatEvent, PlayerId, PlayerState};

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

    /// The combat events of one zone and day partition, as `(run, event)` in key order.
    async fn combat_events(
        &self,
        zone: u32,
        day: u32,
    ) -> Result<Vec<(u64, CombatEvent)>, StoreError>;
}

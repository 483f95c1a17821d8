//! What a host counts: [`HostStats`], keyed by typed reasons ([`Label`]) that the loop turns
//! into metric labels. Plain data, no clock and no metrics registry.

use std::collections::BTreeMap;

use zone_core::InputError;
use zone_core::netcode::DisconnectReason;

use super::HandoffEvent;
use crate::persist::load_policy::LoadSource;

/// A reason a counter is kept by, and its metric label.
pub trait Label: Copy + Ord {
    /// The metric label.
    fn label(self) -> &'static str;
}

/// Datagrams the host itself drops (netcode's own drops are counted by netcode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostDrop {
    /// Beyond a client's per-tick allowance.
    ClientRateLimit,
    /// Connection requests while stopping.
    ShuttingDown,
    /// The send queue was full.
    SendQueue,
}

impl Label for HostDrop {
    fn label(self) -> &'static str {
        match self {
            HostDrop::ClientRateLimit => "client_rate_limit",
            HostDrop::ShuttingDown => "shutting_down",
            HostDrop::SendQueue => "send_queue",
        }
    }
}

/// Where a joining player's state came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum JoinSource {
    /// A stored copy (spool, hot or cold store).
    Stored(LoadSource),
    /// No copy anywhere: a new character.
    New,
    /// The load was refused (a store or the ledger could not answer, rate limit, queue
    /// full: [`crate::effects::load::LoadFailure::refused`]); the client was disconnected.
    Refused(&'static str),
}

impl Label for JoinSource {
    fn label(self) -> &'static str {
        match self {
            JoinSource::Stored(source) => source.name(),
            JoinSource::New => "new",
            JoinSource::Refused(why) => why,
        }
    }
}

impl Label for DisconnectReason {
    fn label(self) -> &'static str {
        match self {
            DisconnectReason::ClientRequested => "ClientRequested",
            DisconnectReason::TimedOut => "TimedOut",
            DisconnectReason::ServerRequested => "ServerRequested",
        }
    }
}

impl Label for HandoffEvent {
    fn label(self) -> &'static str {
        self.name()
    }
}

/// Decode errors are counted by their error's own static name.
impl Label for &'static str {
    fn label(self) -> &'static str {
        self
    }
}

/// Counters of one host's life (never decreasing) and its gauges: what the loop exports as
/// metrics, and what logs and tests read. Keyed counters use typed reasons, so counting
/// allocates only the first time a reason is seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Clients that connected.
    pub connects: u64,
    /// Clients that disconnected, by netcode's reason.
    pub disconnects: BTreeMap<DisconnectReason, u64>,
    /// Player states saved (on leave, crossing, arrival and shutdown).
    pub saves: u64,
    /// Datagrams dropped by the host.
    pub dropped: BTreeMap<HostDrop, u64>,
    /// Client packets that did not decode, by error name.
    pub decode_errors: BTreeMap<&'static str, u64>,
    /// Joins loaded, by where the state came from.
    pub loads: BTreeMap<JoinSource, u64>,
    /// Handoff events.
    pub handoffs: BTreeMap<HandoffEvent, u64>,
    /// Ticks run.
    pub ticks: u64,
    /// Combat events produced.
    pub combat_events: u64,
    /// Inputs the zone rejected, by [`InputError::index`] (stale ones are not counted).
    pub inputs_rejected: [u64; InputError::COUNT],
    /// Inputs that arrived after the tick they were stamped for (their client's prediction
    /// of them is corrected).
    pub inputs_late: u64,
    /// Ability uses checked against a rewound target (lag compensation).
    pub lag_rewinds: u64,
    /// Presence transitions refused as bugs (release builds; debug builds panic).
    pub illegal_transitions: u64,
    /// Entities in the zone after the last tick (gauge).
    pub entities: u64,
    /// Ghosts shown after the last tick (gauge).
    pub ghosts: u64,
}

impl HostStats {
    /// Datagrams from one client beyond its per-tick allowance.
    pub fn rate_limited(&self) -> u64 {
        self.dropped
            .get(&HostDrop::ClientRateLimit)
            .copied()
            .unwrap_or(0)
    }

    /// Clients that disconnected, for any reason.
    pub fn disconnected(&self) -> u64 {
        self.disconnects.values().sum()
    }
}

/// Counts one more of `key`.
pub(super) fn bump<K: Label>(map: &mut BTreeMap<K, u64>, key: K) {
    *map.entry(key).or_insert(0) += 1;
}

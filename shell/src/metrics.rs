//! The server's Prometheus metrics: one registry, typed handles, cheap atomic updates from the
//! tick loop, text encoding for the admin `/metrics` endpoint.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// Why.
    pub reason: String,
}

/// A `direction` label (`in` or `out`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Direction {
    /// `in` or `out`.
    pub direction: &'static str,
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Tick duration (simulation + replication + encryption), seconds.
    pub tick_seconds: Histogram,
    /// Ticks that took longer than the tick period.
    pub tick_overruns: Counter,
    /// Ticks skipped because catching up would have taken too long.
    pub ticks_skipped: Counter,
    /// Ticks simulated.
    pub ticks: Counter,
    /// Connected clients.
    pub clients: Gauge,
    /// Entities in the zone.
    pub entities: Gauge,
    /// UDP datagrams.
    pub packets: Family<Direction, Counter>,
    /// UDP bytes.
    pub bytes: Family<Direction, Counter>,
    /// Game-packet decode errors, by kind.
    pub decode_errors: Family<Reason, Counter>,
    /// Datagrams dropped (netcode reasons, per-client rate limit, socket errors), by reason.
    pub dropped: Family<Reason, Counter>,
    /// Inputs refused by the zone, by reason.
    pub inputs_rejected: Family<Reason, Counter>,
    /// Combat hits.
    pub combat_events: Counter,
    /// Player connects and disconnects.
    pub connects: Counter,
    /// Player disconnects.
    pub disconnects: Family<Reason, Counter>,
    /// Records in the spool not yet acknowledged by the cold store.
    pub spool_records: Gauge,
    /// Bytes the spool holds (disk and buffer).
    pub spool_bytes: Gauge,
    /// Age of the oldest record being flushed, seconds (0 when caught up).
    pub flush_lag_seconds: Gauge<f64, AtomicU64>,
    /// Cold-store circuit breaker: 0 closed, 1 half-open, 2 open.
    pub breaker_state: Gauge,
    /// Cold-store writes retried.
    pub flush_retries: Counter,
    /// Records flushed to the cold store.
    pub flushed_records: Counter,
    /// Records the cold store rejected (written to the dead-letter file).
    pub dead_letters: Counter,
    /// Records refused because the spool's disk budget was full, by kind.
    pub spool_refused: Family<Reason, Counter>,
    /// Hot-store operations that failed, by operation.
    pub hot_errors: Family<Reason, Counter>,
    /// Player loads on join, by source (local, hot, cold, new) or failure.
    pub player_loads: Family<Reason, Counter>,
    /// Zone leases lost.
    pub leases_lost: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `zone_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("zone");
        let buckets = [
            0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.010, 0.0125, 0.0167, 0.025, 0.05, 0.1,
        ];
        let m = Self {
            tick_seconds: Histogram::new(buckets),
            tick_overruns: Counter::default(),
            ticks_skipped: Counter::default(),
            ticks: Counter::default(),
            clients: Gauge::default(),
            entities: Gauge::default(),
            packets: Family::default(),
            bytes: Family::default(),
            decode_errors: Family::default(),
            dropped: Family::default(),
            inputs_rejected: Family::default(),
            combat_events: Counter::default(),
            connects: Counter::default(),
            disconnects: Family::default(),
            spool_records: Gauge::default(),
            spool_bytes: Gauge::default(),
            flush_lag_seconds: Gauge::default(),
            breaker_state: Gauge::default(),
            flush_retries: Counter::default(),
            flushed_records: Counter::default(),
            dead_letters: Counter::default(),
            spool_refused: Family::default(),
            hot_errors: Family::default(),
            player_loads: Family::default(),
            leases_lost: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "tick_seconds",
            "Tick duration: simulation, replication and encryption",
            m.tick_seconds.clone(),
        );
        registry.register(
            "tick_overruns",
            "Ticks that took longer than the tick period",
            m.tick_overruns.clone(),
        );
        registry.register(
            "ticks_skipped",
            "Ticks skipped after an overrun too long to catch up",
            m.ticks_skipped.clone(),
        );
        registry.register("ticks", "Ticks simulated", m.ticks.clone());
        registry.register("clients", "Connected clients", m.clients.clone());
        registry.register("entities", "Entities in the zone", m.entities.clone());
        registry.register(
            "udp_packets",
            "UDP datagrams by direction",
            m.packets.clone(),
        );
        registry.register("udp_bytes", "UDP bytes by direction", m.bytes.clone());
        registry.register(
            "decode_errors",
            "Game packets that did not decode, by kind",
            m.decode_errors.clone(),
        );
        registry.register(
            "dropped_packets",
            "Datagrams dropped, by reason",
            m.dropped.clone(),
        );
        registry.register(
            "inputs_rejected",
            "Inputs refused by the zone, by reason",
            m.inputs_rejected.clone(),
        );
        registry.register("combat_events", "Combat hits", m.combat_events.clone());
        registry.register(
            "connects",
            "Clients that completed the handshake",
            m.connects.clone(),
        );
        registry.register(
            "disconnects",
            "Client disconnects, by reason",
            m.disconnects.clone(),
        );
        registry.register(
            "spool_records",
            "Records in the spool not yet in the cold store",
            m.spool_records.clone(),
        );
        registry.register(
            "spool_bytes",
            "Bytes held by the spool",
            m.spool_bytes.clone(),
        );
        registry.register(
            "flush_lag_seconds",
            "Age of the oldest record being flushed to the cold store",
            m.flush_lag_seconds.clone(),
        );
        registry.register(
            "breaker_state",
            "Cold-store circuit breaker: 0 closed, 1 half-open, 2 open",
            m.breaker_state.clone(),
        );
        registry.register(
            "flush_retries",
            "Cold-store writes retried",
            m.flush_retries.clone(),
        );
        registry.register(
            "flushed_records",
            "Records flushed to the cold store",
            m.flushed_records.clone(),
        );
        registry.register(
            "dead_letters",
            "Records rejected by the cold store and dead-lettered",
            m.dead_letters.clone(),
        );
        registry.register(
            "spool_refused",
            "Records refused because the spool disk budget was full, by kind",
            m.spool_refused.clone(),
        );
        registry.register(
            "hot_errors",
            "Hot-store operations that failed, by operation",
            m.hot_errors.clone(),
        );
        registry.register(
            "player_loads",
            "Player state loads on join, by source or failure",
            m.player_loads.clone(),
        );
        registry.register("leases_lost", "Zone leases lost", m.leases_lost.clone());
        Self { registry, ..m }
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts a dropped datagram.
    pub fn drop_reason(&self, reason: &str) {
        self.dropped
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
    }
}

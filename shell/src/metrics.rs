//! The server's Prometheus metrics: one registry, typed handles, cheap atomic updates from the
//! tick loop, text encoding for the admin `/metrics` endpoint.

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

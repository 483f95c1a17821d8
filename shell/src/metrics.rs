//! The server's Prometheus metrics: typed handles with cheap atomic updates from the tick
//! loop, and their text encoding for the admin `/metrics` endpoint.
//!
//! Each zone has its own [`Metrics`]. A process serving one zone exports them as they are; a
//! process serving several ([`WorldMetrics`]) exports every family once, with one sample set
//! per zone under a `zone` label, and the process-wide families (spool, flusher) from the
//! process's own instance, unlabelled.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use zone_core::netcode::DropReason;
use zone_core::replication::ReplicationMetrics;
use zone_core::{InputError, ZoneId};

use crate::host::{HandoffEvent, HostStats, Label, ZoneHost};

/// Whose a metric family is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// Each zone's own (labelled by zone in a world).
    Zone,
    /// The process's: the spool and its flusher, shared by the zones a process serves.
    Process,
}

/// A `reason` label. Static strings (nearly every label) are borrowed, so counting an event
/// allocates nothing; a junk flood costs no allocation per datagram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// Why.
    pub reason: std::borrow::Cow<'static, str>,
}

/// The labels of a game plugin's action count: the action's name and `accepted` or the
/// reason it was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionOutcome {
    /// The action ([`zone_core::game::Action::NAME`]; `unknown` for a kind no plugin has).
    pub action: std::borrow::Cow<'static, str>,
    /// `accepted`, or the refusal's [`zone_core::game::ActionError::reason`].
    pub outcome: std::borrow::Cow<'static, str>,
}

/// A `direction` label (`in` or `out`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Direction {
    /// `in` or `out`.
    pub direction: &'static str,
}

/// The `reason` values of `zone_bus_errors_total`: the bus's own, then each undecodable
/// message's [`crate::world::bus::BusError::name`].
pub const BUS_ERROR_REASONS: [&str; 13] = [
    "publish_queue_full",
    "publish_failed",
    "lagged",
    "unpublished_address",
    "too_large",
    "decode",
    "trailing",
    "out_of_range",
    "version",
    "encode",
    "bad_mac",
    "wrong_sender",
    "replayed",
];

/// Every metric the server exports.
#[derive(Debug, Clone)]
pub struct Metrics {
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
    /// The netcode reasons of `dropped`, one per [`DropReason`] in its order, created with the
    /// metrics (every reason shows, at 0 until it happens; counting looks nothing up).
    pub netcode_dropped: Vec<Counter>,
    /// Inputs refused by the zone, by reason.
    pub inputs_rejected: Family<Reason, Counter>,
    /// Game plugins' client actions, by action and outcome.
    pub plugin_actions: Family<ActionOutcome, Counter>,
    /// Plugin state that did not load on join (`load_refused`) or fit a save (`save_full`).
    pub plugin_state_errors: Family<Reason, Counter>,
    /// Combat hits.
    pub combat_events: Counter,
    /// Inputs that arrived after the tick they were stamped for.
    pub inputs_late: Counter,
    /// Ability uses checked against a rewound target (lag compensation).
    pub lag_rewinds: Counter,
    /// Player connects and disconnects.
    pub connects: Counter,
    /// Connection requests refused because every client slot was taken.
    pub connections_denied: Counter,
    /// Player disconnects.
    pub disconnects: Family<Reason, Counter>,
    /// Records in the spool not yet acknowledged by the cold store.
    pub spool_records: Gauge,
    /// Bytes of the spooled records not yet acknowledged (the disk budget).
    pub spool_bytes: Gauge,
    /// 1 while the spool's disk takes writes, 0 while they fail (the server is then not ready).
    pub spool_writable: Gauge,
    /// Spool writes or fsyncs that failed (each retried).
    pub spool_write_errors: Counter,
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
    /// 1 while this process holds the zone's lease and simulates it, 0 while it waits for it.
    pub lease_held: Gauge,
    /// 1 while the zone's hot-store writes succeed, 0 from the first failure to the next
    /// success (a Redis outage: logins that need the ledger are refused meanwhile).
    pub hot_store_up: Gauge,
    /// Handoff events (started, accepted, taken, recalled, refused_*, border_closed, ...).
    pub handoffs: Family<Reason, Counter>,
    /// Seconds from a border crossing to the neighbour's acceptance.
    pub handoff_seconds: Histogram,
    /// Ghosts (neighbours' entities near the border) shown to this zone's clients.
    pub ghosts: Gauge,
    /// Seconds the loop spent on received datagrams (decryption, decoding, the host's work):
    /// its rate is the share of a core the receive path takes.
    pub receive_seconds: Counter<f64, AtomicU64>,
    /// Messages from the zone bus that were dropped, by reason.
    pub bus_errors: Family<Reason, Counter>,
    /// Ownership claims of joining players, by result (`won`, or `failed` when the ledger
    /// could not confirm the claim and the join was refused).
    pub player_claims: Family<Reason, Counter>,
    /// Replication events, by kind: `chats_limited` (refused by a speaker's rate limit),
    /// `chats_relayed`, `reliable_dropped` (chat or combat log past a client's bulk share),
    /// `control_dropped` (a welcome, redirect or goodbye that did not fit even the reserve),
    /// `deferred`, `full_snapshots`, `bogus_acks`, `unknown_client`, `inputs_redundant`.
    pub replication: Family<Reason, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh handles, all zero.
    pub fn new() -> Self {
        let dropped = Family::<Reason, Counter>::default();
        let buckets = [
            0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.010, 0.0125, 0.0167, 0.025, 0.05, 0.1,
        ];
        let handoff_buckets = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0];
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
            netcode_dropped: DropReason::ALL
                .iter()
                .map(|r| {
                    dropped
                        .get_or_create(&Reason {
                            reason: format!("netcode_{r:?}").into(),
                        })
                        .clone()
                })
                .collect(),
            dropped,
            inputs_rejected: Family::default(),
            plugin_actions: Family::default(),
            plugin_state_errors: Family::default(),
            combat_events: Counter::default(),
            inputs_late: Counter::default(),
            lag_rewinds: Counter::default(),
            connects: Counter::default(),
            connections_denied: Counter::default(),
            disconnects: Family::default(),
            spool_records: Gauge::default(),
            spool_bytes: Gauge::default(),
            spool_writable: Gauge::default(),
            spool_write_errors: Counter::default(),
            flush_lag_seconds: Gauge::default(),
            breaker_state: Gauge::default(),
            flush_retries: Counter::default(),
            flushed_records: Counter::default(),
            dead_letters: Counter::default(),
            spool_refused: Family::default(),
            hot_errors: Family::default(),
            player_loads: Family::default(),
            leases_lost: Counter::default(),
            lease_held: Gauge::default(),
            hot_store_up: Gauge::default(),
            handoffs: Family::default(),
            handoff_seconds: Histogram::new(handoff_buckets),
            ghosts: Gauge::default(),
            receive_seconds: Counter::default(),
            bus_errors: Family::default(),
            player_claims: Family::default(),
            replication: Family::default(),
        };
        // The enumerated reasons of the families dashboards and alerts query show at 0 from
        // start-up: a query over them returns data (a zero rate) before the first event.
        let create = |family: &Family<Reason, Counter>, names: &[&'static str]| {
            for name in names {
                let _ = family.get_or_create(&Reason {
                    reason: (*name).into(),
                });
            }
        };
        create(&m.decode_errors, &zone_core::protocol::DecodeError::NAMES);
        create(&m.inputs_rejected, &InputError::ALL.map(InputError::name));
        create(&m.handoffs, &HandoffEvent::ALL.map(HandoffEvent::name));
        create(&m.bus_errors, &BUS_ERROR_REASONS);
        m
    }

    /// Every family: name (without the `zone_` prefix), help, scope, handle.
    fn families(&self) -> Vec<(&'static str, &'static str, Scope, &dyn EncodeMetric)> {
        use Scope::{Process, Zone};
        vec![
            (
                "tick_seconds",
                "Tick duration: simulation, replication and encryption",
                Zone,
                &self.tick_seconds,
            ),
            (
                "tick_overruns",
                "Ticks that took longer than the tick period",
                Zone,
                &self.tick_overruns,
            ),
            (
                "ticks_skipped",
                "Ticks skipped after an overrun too long to catch up",
                Zone,
                &self.ticks_skipped,
            ),
            ("ticks", "Ticks simulated", Zone, &self.ticks),
            ("clients", "Connected clients", Zone, &self.clients),
            ("entities", "Entities in the zone", Zone, &self.entities),
            (
                "udp_packets",
                "UDP datagrams by direction",
                Zone,
                &self.packets,
            ),
            ("udp_bytes", "UDP bytes by direction", Zone, &self.bytes),
            (
                "decode_errors",
                "Game packets that did not decode, by kind",
                Zone,
                &self.decode_errors,
            ),
            (
                "dropped_packets",
                "Datagrams dropped, by reason",
                Zone,
                &self.dropped,
            ),
            (
                "inputs_rejected",
                "Inputs refused by the zone, by reason",
                Zone,
                &self.inputs_rejected,
            ),
            (
                "plugin_actions",
                "Game plugins' client actions, by action and outcome (accepted or the reason refused)",
                Zone,
                &self.plugin_actions,
            ),
            (
                "plugin_state_errors",
                "Plugin state that did not load on join or did not fit a save",
                Zone,
                &self.plugin_state_errors,
            ),
            ("combat_events", "Combat hits", Zone, &self.combat_events),
            (
                "inputs_late",
                "Inputs that arrived after the tick they were stamped for",
                Zone,
                &self.inputs_late,
            ),
            (
                "lag_rewinds",
                "Ability uses checked against a rewound target (lag compensation)",
                Zone,
                &self.lag_rewinds,
            ),
            (
                "connects",
                "Clients that completed the handshake",
                Zone,
                &self.connects,
            ),
            (
                "connections_denied",
                "Connection requests denied because the server was full ([net] max_clients)",
                Zone,
                &self.connections_denied,
            ),
            (
                "disconnects",
                "Client disconnects, by reason",
                Zone,
                &self.disconnects,
            ),
            (
                "spool_records",
                "Records in the spool not yet in the cold store",
                Process,
                &self.spool_records,
            ),
            (
                "spool_bytes",
                "Bytes of spooled records not yet in the cold store (the disk budget)",
                Process,
                &self.spool_bytes,
            ),
            (
                "spool_writable",
                "1 while the spool disk takes writes, 0 while they fail",
                Process,
                &self.spool_writable,
            ),
            (
                "spool_write_errors",
                "Spool writes or fsyncs that failed (retried)",
                Process,
                &self.spool_write_errors,
            ),
            (
                "flush_lag_seconds",
                "Age of the oldest record being flushed to the cold store",
                Process,
                &self.flush_lag_seconds,
            ),
            (
                "breaker_state",
                "Cold-store circuit breaker: 0 closed, 1 half-open, 2 open",
                Process,
                &self.breaker_state,
            ),
            (
                "flush_retries",
                "Cold-store writes retried",
                Process,
                &self.flush_retries,
            ),
            (
                "flushed_records",
                "Records flushed to the cold store",
                Process,
                &self.flushed_records,
            ),
            (
                "dead_letters",
                "Records rejected by the cold store and dead-lettered",
                Process,
                &self.dead_letters,
            ),
            (
                "spool_refused",
                "Records refused by the spool (budget or buffer full, disk not writable), by kind",
                Zone,
                &self.spool_refused,
            ),
            (
                "hot_errors",
                "Hot-store operations that failed, by operation",
                Zone,
                &self.hot_errors,
            ),
            (
                "player_loads",
                "Player state loads on join, by source or failure",
                Zone,
                &self.player_loads,
            ),
            ("leases_lost", "Zone leases lost", Zone, &self.leases_lost),
            (
                "lease_held",
                "1 while this process holds the zone's lease and simulates it",
                Zone,
                &self.lease_held,
            ),
            (
                "hot_store_up",
                "1 while the zone's hot-store writes succeed (0: logins needing the ledger are refused)",
                Zone,
                &self.hot_store_up,
            ),
            (
                "handoffs",
                "Player handoff events between zones, by result",
                Zone,
                &self.handoffs,
            ),
            (
                "handoff_seconds",
                "Seconds from a border crossing to the neighbour accepting the player",
                Zone,
                &self.handoff_seconds,
            ),
            (
                "ghosts",
                "Entities of neighbouring zones shown near the border",
                Zone,
                &self.ghosts,
            ),
            (
                "receive_seconds",
                "Seconds spent on received datagrams (decrypt, decode, host)",
                Zone,
                &self.receive_seconds,
            ),
            (
                "replication_events",
                "Replication events: chats limited and relayed, reliable messages dropped, ...",
                Zone,
                &self.replication,
            ),
            (
                "bus_errors",
                "Zone bus messages dropped, by reason",
                Zone,
                &self.bus_errors,
            ),
            (
                "player_claims",
                "Ownership claims of joining players, by result",
                Zone,
                &self.player_claims,
            ),
        ]
    }

    /// The metrics in Prometheus text format (one zone's, unlabelled).
    pub fn encode(&self) -> String {
        encode_with(Export::Single(self.clone()), None)
    }

    /// Counts a dropped datagram.
    pub fn drop_reason(&self, reason: &'static str) {
        self.dropped
            .get_or_create(&Reason {
                reason: reason.into(),
            })
            .inc();
    }
}

/// Exports a [`ZoneHost`]'s counters into its zone's metrics: the loop calls
/// [`HostExport::export`] after every tick (and once more after shutdown). Counters advance by
/// what the host counted since the last export; gauges are set.
#[derive(Debug, Default)]
pub struct HostExport {
    seen: HostStats,
    netcode_seen: [u64; DropReason::COUNT],
    denied_seen: u64,
    /// Denials not logged yet, and when the last line was (one line per 10 s at most).
    denied_unlogged: u64,
    denied_logged_at: Option<std::time::Instant>,
    replication_seen: ReplicationMetrics,
    waits: Vec<std::time::Duration>,
    /// Plugin action counts exported so far: (action, outcome) -> count.
    actions_seen: std::collections::BTreeMap<(&'static str, &'static str), u64>,
    plugin_errors_seen: (u64, u64),
}

/// Adds to `family` what `now` counted beyond `seen`, labelled by each reason.
fn export_counts<K: Label>(
    family: &Family<Reason, Counter>,
    now: &std::collections::BTreeMap<K, u64>,
    seen: &mut std::collections::BTreeMap<K, u64>,
) {
    for (&key, &n) in now {
        let before = seen.entry(key).or_insert(0);
        if n > *before {
            family
                .get_or_create(&Reason {
                    reason: key.label().into(),
                })
                .inc_by(n - *before);
            *before = n;
        }
    }
}

impl HostExport {
    /// Game plugins' action counts and state errors.
    fn export_plugins(&mut self, zone: &zone_core::Zone, m: &Metrics) {
        let mut add = |action: &'static str, outcome: &'static str, n: u64| {
            let before = self.actions_seen.entry((action, outcome)).or_insert(0);
            if n > *before {
                m.plugin_actions
                    .get_or_create(&ActionOutcome {
                        action: action.into(),
                        outcome: outcome.into(),
                    })
                    .inc_by(n - *before);
                *before = n;
            }
        };
        for count in zone.action_counts() {
            add(count.action, "accepted", count.accepted);
            for (reason, n) in &count.refused {
                add(count.action, reason, *n);
            }
        }
        add("unknown", "unknown_kind", zone.unknown_actions());
        let (loads, saves) = zone.plugin_state_errors();
        for (label, n, seen) in [
            ("load_refused", loads, &mut self.plugin_errors_seen.0),
            ("save_full", saves, &mut self.plugin_errors_seen.1),
        ] {
            if n > *seen {
                m.plugin_state_errors
                    .get_or_create(&Reason {
                        reason: label.into(),
                    })
                    .inc_by(n - *seen);
                *seen = n;
            }
        }
    }

    /// Brings `m` up to date with `host`.
    pub fn export(&mut self, host: &mut ZoneHost, m: &Metrics) {
        host.swap_handoff_waits(&mut self.waits);
        for w in self.waits.drain(..) {
            m.handoff_seconds.observe(w.as_secs_f64());
        }
        let now = host.stats();
        let seen = &mut self.seen;
        m.connects.inc_by(now.connects - seen.connects);
        m.ticks.inc_by(now.ticks - seen.ticks);
        m.combat_events
            .inc_by(now.combat_events - seen.combat_events);
        m.inputs_late.inc_by(now.inputs_late - seen.inputs_late);
        m.lag_rewinds.inc_by(now.lag_rewinds - seen.lag_rewinds);
        (seen.connects, seen.ticks, seen.combat_events) =
            (now.connects, now.ticks, now.combat_events);
        (seen.inputs_late, seen.lag_rewinds) = (now.inputs_late, now.lag_rewinds);
        export_counts(&m.disconnects, &now.disconnects, &mut seen.disconnects);
        export_counts(&m.dropped, &now.dropped, &mut seen.dropped);
        export_counts(
            &m.decode_errors,
            &now.decode_errors,
            &mut seen.decode_errors,
        );
        export_counts(&m.player_loads, &now.loads, &mut seen.loads);
        export_counts(&m.handoffs, &now.handoffs, &mut seen.handoffs);
        for kind in InputError::ALL {
            let (n, before) = (
                now.inputs_rejected[kind.index()],
                &mut seen.inputs_rejected[kind.index()],
            );
            if n > *before {
                m.inputs_rejected
                    .get_or_create(&Reason {
                        reason: kind.name().into(),
                    })
                    .inc_by(n - *before);
                *before = n;
            }
        }
        self.export_plugins(host.zone(), m);
        m.entities.set(now.entities as i64);
        m.ghosts.set(now.ghosts as i64);
        m.clients.set(host.client_count() as i64);
        let denied = host.connections_denied();
        if denied > self.denied_seen {
            let n = denied - self.denied_seen;
            m.connections_denied.inc_by(n);
            self.denied_seen = denied;
            self.denied_unlogged += n;
        }
        if self.denied_unlogged > 0
            && self
                .denied_logged_at
                .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(10))
        {
            tracing::warn!(
                denied = self.denied_unlogged,
                total = denied,
                "server full: connection requests denied (raise [net] max_clients or route players elsewhere)"
            );
            self.denied_unlogged = 0;
            self.denied_logged_at = Some(std::time::Instant::now());
        }
        let drops = host.netcode_drops();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            let n = drops.get(*r);
            if n > self.netcode_seen[i] {
                if let Some(counter) = m.netcode_dropped.get(i) {
                    counter.inc_by(n - self.netcode_seen[i]);
                }
                self.netcode_seen[i] = n;
            }
        }
        let now = *host.replication_metrics();
        let seen = &mut self.replication_seen;
        for (label, now, seen) in [
            ("chats_limited", now.chats_limited, &mut seen.chats_limited),
            ("chats_relayed", now.chats_relayed, &mut seen.chats_relayed),
            (
                "reliable_dropped",
                now.reliable_dropped,
                &mut seen.reliable_dropped,
            ),
            (
                "control_dropped",
                now.control_dropped,
                &mut seen.control_dropped,
            ),
            ("deferred", now.deferred, &mut seen.deferred),
            (
                "full_snapshots",
                now.full_snapshots,
                &mut seen.full_snapshots,
            ),
            ("bogus_acks", now.bogus_acks, &mut seen.bogus_acks),
            (
                "unknown_client",
                now.unknown_client,
                &mut seen.unknown_client,
            ),
            (
                "inputs_redundant",
                now.inputs_redundant,
                &mut seen.inputs_redundant,
            ),
            (
                "game_mismatches",
                now.game_mismatches,
                &mut seen.game_mismatches,
            ),
        ] {
            if now > *seen {
                m.replication
                    .get_or_create(&Reason {
                        reason: label.into(),
                    })
                    .inc_by(now - *seen);
                *seen = now;
            }
        }
    }
}

/// The metrics of a process serving several zones.
#[derive(Debug, Default, Clone)]
pub struct WorldMetrics {
    process: Arc<Metrics>,
    zones: Vec<(ZoneId, Arc<Metrics>)>,
}

impl WorldMetrics {
    /// The process's own handles (the spool, the flusher).
    pub fn process(&self) -> &Arc<Metrics> {
        &self.process
    }

    /// Fresh handles for zone `zone`, exported under `zone="<id>"`.
    pub fn add_zone(&mut self, zone: ZoneId) -> Arc<Metrics> {
        let m = Arc::new(Metrics::new());
        self.zones.push((zone, m.clone()));
        m
    }

    /// The handles of zone `zone`.
    pub fn zone(&self, zone: ZoneId) -> Option<&Arc<Metrics>> {
        self.zones.iter().find(|(z, _)| *z == zone).map(|(_, m)| m)
    }

    /// Everything in Prometheus text format: each family once, the zones' samples labelled.
    pub fn encode(&self) -> String {
        let mut parts = vec![encode_with(
            Export::Scoped(self.process.as_ref().clone(), Scope::Process),
            None,
        )];
        for (zone, m) in &self.zones {
            parts.push(encode_with(
                Export::Scoped(m.as_ref().clone(), Scope::Zone),
                Some(*zone),
            ));
        }
        merge_families(&parts)
    }
}

/// Merges text expositions of the same families (different label values) into one, each
/// family's `# HELP`/`# TYPE`/`# UNIT` lines once, followed by every part's samples.
fn merge_families(parts: &[String]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut families: std::collections::HashMap<String, (Vec<&str>, Vec<&str>)> =
        std::collections::HashMap::new();
    for part in parts {
        let mut current: Option<String> = None;
        for line in part.lines() {
            if line == "# EOF" {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                let name = rest.split(' ').nth(1).unwrap_or_default().to_owned();
                let entry = families.entry(name.clone()).or_insert_with(|| {
                    order.push(name.clone());
                    (Vec::new(), Vec::new())
                });
                if !entry.0.contains(&line) {
                    entry.0.push(line);
                }
                current = Some(name);
            } else if let Some(name) = &current
                && let Some(entry) = families.get_mut(name)
            {
                entry.1.push(line);
            }
        }
    }
    let mut out = String::new();
    for name in &order {
        if let Some((headers, samples)) = families.get(name) {
            for l in headers.iter().chain(samples) {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// What `/metrics` shows.
pub trait MetricsText: Send + Sync + std::fmt::Debug + 'static {
    /// The Prometheus text exposition.
    fn text(&self) -> String;
}

impl MetricsText for Metrics {
    fn text(&self) -> String {
        self.encode()
    }
}

impl MetricsText for WorldMetrics {
    fn text(&self) -> String {
        self.encode()
    }
}

#[derive(Debug)]
enum Export {
    /// Every family.
    Single(Metrics),
    /// The families of one scope.
    Scoped(Metrics, Scope),
}

impl Collector for Export {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (m, only) = match self {
            Export::Single(m) => (m, None),
            Export::Scoped(m, scope) => (m, Some(*scope)),
        };
        for (name, help, scope, metric) in m.families() {
            if only.is_none_or(|o| o == scope) {
                let e = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
                metric.encode(e)?;
            }
        }
        Ok(())
    }
}

fn encode_with(export: Export, zone: Option<ZoneId>) -> String {
    let mut registry = match zone {
        Some(z) => Registry::with_prefix_and_labels(
            "zone",
            std::iter::once(("zone".into(), z.to_string().into())),
        ),
        None => Registry::with_prefix("zone"),
    };
    registry.register_collector(Box::new(export));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    /// The README's table of `reason` values lists every value the code can count for the
    /// families whose reasons are enumerated (a new reason must be documented).
    #[test]
    fn the_readme_lists_every_enumerated_reason() {
        let readme = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
        )
        .unwrap();
        let row = |family: &str| {
            readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{family}` |")))
                .unwrap_or_else(|| panic!("README has no reason row for {family}"))
                .to_owned()
        };
        let dropped = row("dropped_packets");
        for r in DropReason::ALL {
            assert!(
                dropped.contains(&format!("`netcode_{r:?}`")),
                "README: dropped_packets lacks netcode_{r:?}"
            );
        }
        let listed = |family: &str, names: &[&str]| {
            let r = row(family);
            for name in names {
                assert!(
                    r.contains(&format!("`{name}`")),
                    "README: {family} lacks {name}"
                );
            }
        };
        listed("inputs_rejected", &InputError::ALL.map(InputError::name));
        listed("decode_errors", &zone_core::protocol::DecodeError::NAMES);
        listed("handoffs", &HandoffEvent::ALL.map(HandoffEvent::name));
        listed("bus_errors", &BUS_ERROR_REASONS);
    }

    #[test]
    fn enumerated_reasons_are_exported_at_zero_before_anything_happens() {
        let text = Metrics::new().text();
        for line in [
            "zone_decode_errors_total{reason=\"bad_tag\"} 0",
            "zone_inputs_rejected_total{reason=\"too_old\"} 0",
            "zone_handoffs_total{reason=\"refused_ledger\"} 0",
            "zone_bus_errors_total{reason=\"bad_mac\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }

    use super::*;

    #[test]
    fn one_zone_exports_unlabelled_families() {
        let m = Metrics::new();
        m.ticks.inc();
        m.drop_reason("junk");
        let text = m.encode();
        assert!(text.contains("zone_ticks_total 1"), "{text}");
        assert!(
            text.contains("zone_dropped_packets_total{reason=\"junk\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn a_world_exports_each_family_once_with_a_zone_label() {
        let mut w = WorldMetrics::default();
        let (a, b) = (w.add_zone(ZoneId(1)), w.add_zone(ZoneId(2)));
        a.ticks.inc();
        b.ticks.inc_by(2);
        b.handoffs
            .get_or_create(&Reason {
                reason: "accepted".into(),
            })
            .inc();
        w.process().spool_records.set(7);
        let text = w.encode();
        assert!(text.contains("zone_ticks_total{zone=\"1\"} 1"), "{text}");
        assert!(text.contains("zone_ticks_total{zone=\"2\"} 2"), "{text}");
        assert!(
            text.contains("zone_handoffs_total{zone=\"2\",reason=\"accepted\"} 1")
                || text.contains("zone_handoffs_total{reason=\"accepted\",zone=\"2\"} 1"),
            "{text}"
        );
        assert!(text.contains("zone_spool_records 7"), "{text}");
        assert!(
            !text.contains("zone_spool_records{"),
            "process families are not per zone"
        );
        for family in ["# TYPE zone_ticks counter", "# HELP zone_clients "] {
            assert_eq!(text.matches(family).count(), 1, "{family} once");
        }
    }
}

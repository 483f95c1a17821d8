//! What every simulation shares: the turmoil world's settings, a step that turns a host's
//! panic or failure into a violation, and the check that every durable combat event reached
//! the cold store exactly once.

use std::time::Duration;

use zone_shell::persist::Record;

use crate::stores::ColdData;

/// A simulation of `duration` (plus a minute of slack), 1 ms ticks, messages taking 1 ms to
/// `max_latency`, all randomness from `seed`. `SIM_LOG=<filter>` (e.g. `SIM_LOG=info`) prints
/// the servers' logs, stamped with simulated time, to replay a seed with them.
pub fn simulation(seed: u64, duration: Duration, max_latency: Duration) -> turmoil::Sim<'static> {
    if let Ok(filter) = std::env::var("SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_timer(SimTime)
            .with_test_writer()
            .try_init();
    }
    turmoil::Builder::new()
        .simulation_duration(duration + Duration::from_secs(60))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(max_latency)
        .rng_seed(seed)
        .ephemeral_ports(1_024..=65_535)
        .build()
}

/// One step; `false` (and a violation) when a host panicked or failed.
pub fn step(sim: &mut turmoil::Sim<'_>, violations: &mut Vec<String>) -> bool {
    match sim.step() {
        Ok(_) => true,
        Err(e) => {
            violations.push(format!("simulation error (panic or host failure): {e}"));
            false
        }
    }
}

/// Every durable combat event is in the cold store, exactly once, with the same content, and
/// the store holds nothing else. Returns how many were checked.
pub fn check_durable_combat(
    durable: &[Record],
    cold: &ColdData,
    violations: &mut Vec<String>,
) -> usize {
    let mut combat = 0;
    for r in durable {
        if let Record::Combat(c) = r {
            combat += 1;
            match cold.combat.get(&(c.zone, c.day(), c.run, c.event.id)) {
                Some(stored) if stored.event == c.event => {}
                Some(_) => {
                    violations.push(format!("event {:?} stored with other content", c.event.id))
                }
                None if violations.len() < 20 => violations.push(format!(
                    "durable combat event {:?} of run {} missing from the cold store",
                    c.event.id, c.run
                )),
                None => {}
            }
        }
    }
    if cold.combat.len() != combat {
        violations.push(format!(
            "cold store holds {} combat events, the spools made {combat} durable",
            cold.combat.len()
        ));
    }
    combat
}

/// Log timestamps in simulated time.
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let t = turmoil::sim_elapsed().unwrap_or_default();
        write!(w, "{:>9.3}s", t.as_secs_f64())
    }
}

/// When the hot-store faults of both simulations start (simulated time).
pub const OUTAGE_FROM: Duration = Duration::from_secs(15);
/// How long their Redis outages last: longer than every timeout but the 90 s lease.
pub const OUTAGE_FOR: Duration = Duration::from_secs(60);

/// When and how a bot's connection ended: (player, simulated time, what the bot saw).
pub type ConnectionEnd = (u64, Duration, String);

/// The hot-store fault scenarios' invariant: no bot connection ended while the fault lasted
/// (from `from` to `until`, the orderly stop at the end of play excluded).
pub fn no_disconnects_during(
    ends: &[ConnectionEnd],
    from: Duration,
    until: Duration,
    violations: &mut Vec<String>,
) {
    for (player, at, how) in ends.iter().filter(|(_, at, _)| *at >= from && *at < until) {
        violations.push(format!(
            "bot {player} disconnected at {at:?}, during the fault ({from:?} to {until:?}): {how}"
        ));
    }
}

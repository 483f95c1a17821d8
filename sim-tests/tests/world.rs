//! The multi-zone scenarios over a bounded set of seeds (`SIM_SEEDS=N` for more, `SIM_SEED=S`
//! to replay one). Each prints its handoff latency (ticks from the border crossing to the
//! first snapshot of the new zone, client side) beside what was checked.

use std::time::{Duration, Instant};

use sim_tests::multizone::{WorldOutcome, WorldRunConfig, WorldScenario, replay_command, run};
use sim_tests::world::seeds;

/// Seeds per scenario in CI.
const CI_SEEDS: u64 = 2;

fn scenario(s: WorldScenario) {
    scenario_over(s.name(), s, seeds(CI_SEEDS), WorldRunConfig::default());
}

/// Runs `s` over `seeds`; `test` is the name of the test (printed, and in the replay command).
fn scenario_over(test: &str, s: WorldScenario, seeds: Vec<u64>, rc: WorldRunConfig) {
    let started = Instant::now();
    let mut total = WorldOutcome::default();
    for &seed in &seeds {
        let out = run(s, seed, &rc);
        assert!(
            out.violations.is_empty(),
            "scenario {} seed {seed}: {} violations:\n  {}\nreplay: {}",
            test,
            out.violations.len(),
            out.violations.join("\n  "),
            replay_command(test, seed)
        );
        total.handoffs += out.handoffs;
        total.handoff_ticks.extend(out.handoff_ticks);
        total.observations += out.observations;
        total.holdings_checked += out.holdings_checked;
        total.saves_checked += out.saves_checked;
        total.events_checked += out.events_checked;
        total.intervals += out.intervals;
        total.faults += out.faults;
        total.simulated_s += out.simulated_s;
        total.long_holds += out.long_holds;
        total.second_logins += out.second_logins;
        total.takeover = total.takeover.max(out.takeover);
        total.max_tick_gap = total.max_tick_gap.max(out.max_tick_gap);
    }
    total.handoff_ticks.sort_unstable();
    let q = |f: f64| {
        let t = &total.handoff_ticks;
        t.get(((t.len().max(1) - 1) as f64 * f).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let wall = started.elapsed().as_secs_f64();
    println!(
        "SIM {:<42} seeds {:>3}  handoffs {:>5}  latency p50/p99 {:>3}/{:>3} ticks  observations {:>6}  holdings {:>8}  saves {:>6}  events {:>6}  tenures {:>3}  faults {:>4}  long holds {:>2}  second logins {:>2}  max tick gap {:>3} ms  take-over {}  violations 0  {:.0} simulated s in {:.1} s",
        test,
        seeds.len(),
        total.handoffs,
        q(0.5),
        q(0.99),
        total.observations,
        total.holdings_checked,
        total.saves_checked,
        total.events_checked,
        total.intervals,
        total.faults,
        total.long_holds,
        total.second_logins,
        total.max_tick_gap.as_millis(),
        total
            .takeover
            .map_or("-".to_owned(), |t| format!("{:.2} s", t.as_secs_f64())),
        total.simulated_s,
        wall
    );
}

#[test]
fn world_handoffs() {
    scenario(WorldScenario::Handoffs);
}

#[test]
fn world_lease_expiry() {
    scenario(WorldScenario::LeaseExpiry);
}

#[test]
fn world_redis_outage() {
    scenario(WorldScenario::RedisOutage);
}

#[test]
fn world_redis_outage_wiped() {
    scenario(WorldScenario::RedisOutageWiped);
}

#[test]
fn world_lease_key_lost() {
    scenario(WorldScenario::LeaseKeyLost);
}

/// The same on the production lease (90 s): the holder, cut off from Redis, plays on until
/// its own deadline (75 s after its last renewal), then the standby takes over as its key
/// expires. The SIM line's take-over is the gap players of zone 1 see.
#[test]
fn world_lease_expiry_on_the_production_lease() {
    let rc = WorldRunConfig {
        lease_ttl: Some(Duration::from_millis(
            zone_shell::config::Config::default().store.lease_ttl_ms,
        )),
        ..WorldRunConfig::default()
    };
    scenario_over(
        "world_lease_expiry_on_the_production_lease",
        WorldScenario::LeaseExpiry,
        seeds(CI_SEEDS),
        rc,
    );
}

/// The hot-store scenarios on a single zone (1x1) with its standby waiting.
fn single_zone(s: WorldScenario) {
    let rc = WorldRunConfig {
        grid: (1, 1),
        ..WorldRunConfig::default()
    };
    let test = s.name().replacen("world_", "single_zone_", 1);
    scenario_over(&test, s, seeds(CI_SEEDS), rc);
}

/// The holder alone is cut off from Redis while a standby waits: the standby takes over,
/// never while the holder still simulates (on the short lease, as above).
#[test]
fn single_zone_lease_expiry() {
    single_zone(WorldScenario::LeaseExpiry);
}

#[test]
fn single_zone_redis_outage() {
    single_zone(WorldScenario::RedisOutage);
}

#[test]
fn single_zone_redis_outage_wiped() {
    single_zone(WorldScenario::RedisOutageWiped);
}

#[test]
fn single_zone_lease_key_lost() {
    single_zone(WorldScenario::LeaseKeyLost);
}

#[test]
fn world_crash_during_handoff() {
    scenario(WorldScenario::CrashDuringHandoff);
}

/// Twenty simulated minutes (past the 600 s ownership TTL) of 6 players, one seed in CI
/// (`SIM_SEEDS` for more): every player who stayed put is logged in a second time elsewhere.
#[test]
fn world_long_hold() {
    let rc = WorldRunConfig {
        bots: 6,
        ..WorldRunConfig::default()
    };
    scenario_over(
        WorldScenario::LongHold.name(),
        WorldScenario::LongHold,
        seeds(1),
        rc,
    );
}

#[test]
fn world_redis_wipe() {
    scenario(WorldScenario::RedisWipe);
}

#[test]
fn handoffs_racing_their_recalls_keep_one_owner_and_a_broken_ledger_is_caught() {
    // A 10 ms handoff timeout: the source recalls almost every player while the target is
    // accepting it. With the ledger's conditional claims, exactly one side wins each race.
    let racing = WorldRunConfig {
        seconds: 25,
        handoff_timeout: std::time::Duration::from_millis(10),
        ..WorldRunConfig::default()
    };
    let seed = seeds(1)[0];
    let out = run(WorldScenario::Handoffs, seed, &racing);
    assert!(
        out.violations.is_empty(),
        "racing recalls: {:?}\nreplay: {}",
        out.violations,
        replay_command(WorldScenario::Handoffs.name(), seed)
    );
    // The same races with claims that ignore their expectation (a planted bug) must be seen.
    let broken = WorldRunConfig {
        broken_claims: true,
        ..racing
    };
    let out = run(WorldScenario::Handoffs, seed, &broken);
    assert!(
        out.violations
            .iter()
            .any(|v| v.contains("at once") || v.contains("the ledger names")),
        "the planted bug was not caught: {:?}",
        out.violations
    );
    println!(
        "planted bug caught ({} violations): {}",
        out.violations.len(),
        out.violations.first().map_or("", String::as_str)
    );
}

//! Every scenario over a bounded set of seeds (`SIM_SEEDS=N` for more, `SIM_SEED=S` to replay
//! one), the simulation's own determinism, and a planted bug the invariants must catch.

use std::time::Instant;

use sim_tests::world::{Outcome, RunConfig, Scenario, replay_command, run, seeds};

/// Seeds per scenario in CI (each seed is 68 simulated seconds of a 20-bot world, ~6 s of
/// wall time in a debug build); `SIM_SEEDS=N` for more.
const CI_SEEDS: u64 = 2;

fn scenario(s: Scenario) {
    let started = Instant::now();
    let mut total = Outcome::default();
    let seeds = seeds(CI_SEEDS);
    for &seed in &seeds {
        let out = run(s, seed, &RunConfig::default());
        assert!(
            out.violations.is_empty(),
            "scenario {} seed {seed}: {} violations:\n  {}\nreplay: {}",
            s.name(),
            out.violations.len(),
            out.violations.join("\n  "),
            replay_command(s, seed)
        );
        total.events_checked += out.events_checked;
        total.saves_checked += out.saves_checked;
        total.views_checked += out.views_checked;
        total.predictions_checked += out.predictions_checked;
        total.faults += out.faults;
        total.simulated_s += out.simulated_s;
        total.max_tick_gap_us = total.max_tick_gap_us.max(out.max_tick_gap_us);
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "SIM {:<17} seeds {:>3}  events checked {:>7}  saves checked {:>4}  views checked {:>4}  predictions checked {:>6}  faults {:>4}  violations 0  max tick gap {:>6} µs  {:.0} simulated s in {:.1} s ({:.1}x)",
        s.name(),
        seeds.len(),
        total.events_checked,
        total.saves_checked,
        total.views_checked,
        total.predictions_checked,
        total.faults,
        total.max_tick_gap_us,
        total.simulated_s,
        wall,
        total.simulated_s / wall.max(1e-9)
    );
}

#[test]
fn steady() {
    scenario(Scenario::Steady);
}

#[test]
fn scylla_partition() {
    scenario(Scenario::ScyllaPartition);
}

#[test]
fn scylla_crash() {
    scenario(Scenario::ScyllaCrash);
}

#[test]
fn redis_crash() {
    scenario(Scenario::RedisCrash);
}

#[test]
fn lossy_clients() {
    scenario(Scenario::LossyClients);
}

#[test]
fn redis_outage() {
    scenario(Scenario::RedisOutage);
}

#[test]
fn redis_outage_wiped() {
    scenario(Scenario::RedisOutageWiped);
}

#[test]
fn lease_key_lost() {
    scenario(Scenario::LeaseKeyLost);
}

#[test]
fn zone_crash() {
    scenario(Scenario::ZoneCrash);
}

#[test]
fn disk_faults() {
    scenario(Scenario::DiskFaults);
}

#[test]
fn everything() {
    scenario(Scenario::Everything);
}

#[test]
fn the_same_seed_gives_the_same_event_log_and_state() {
    let rc = RunConfig {
        seconds: 20,
        ..RunConfig::default()
    };
    let a = run(Scenario::Steady, 7, &rc);
    let b = run(Scenario::Steady, 7, &rc);
    assert!(a.violations.is_empty(), "{:?}", a.violations);
    assert!(!a.event_log.is_empty());
    assert_eq!(a.event_log, b.event_log, "same seed, same combat log");
    assert_eq!(a.final_hash, b.final_hash, "same seed, same final state");
    let c = run(Scenario::Steady, 8, &rc);
    assert_ne!(a.event_log, c.event_log, "another seed plays differently");
}

#[test]
fn a_store_that_loses_writes_is_caught_with_a_replay_command() {
    let rc = RunConfig {
        seconds: 20,
        lose_writes: true,
        ..RunConfig::default()
    };
    let out = run(Scenario::Steady, 3, &rc);
    assert!(
        out.violations
            .iter()
            .any(|v| v.contains("missing from the cold store")),
        "the planted bug was not caught: {:?}",
        out.violations
    );
    println!(
        "planted bug caught ({} violations); replay: {}",
        out.violations.len(),
        replay_command(Scenario::Steady, 3)
    );
}

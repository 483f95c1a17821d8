//! The capture-points plugin in the whole-network turmoil harness: the real shell (tick loop,
//! spool, flusher, stores over simulated TCP), bots that walk to points and plant flags over
//! the wire, and every fault of the `everything` scenario (store partitions and crashes, lossy
//! clients, a zone crash, disk faults). The harness's invariants hold with the plugin, and its
//! state is among what they check: every player's stored state, plugin records included, is
//! the newest durable save.

#![allow(clippy::unwrap_used)]

use sim_tests::world::{Outcome, RunConfig, Scenario, replay_command, run};
use zone_capture::CapturePoints;
use zone_core::game::Game;

fn run_with_capture(scenario: Scenario, seed: u64) -> Outcome {
    let rc = RunConfig {
        game: Game::default().with(CapturePoints::demo()),
        ..RunConfig::default()
    };
    let out = run(scenario, seed, &rc);
    assert!(
        out.violations.is_empty(),
        "{} violations:\n  {}\nreplay: {}",
        out.violations.len(),
        out.violations.join("\n  "),
        replay_command(scenario, seed)
    );
    assert!(out.saves_checked > 0);
    assert_eq!(
        out.plugin_saves_checked, out.saves_checked,
        "every stored save carries the capture score"
    );
    out
}

#[test]
fn capture_points_under_store_and_network_faults() {
    let out = run_with_capture(Scenario::Everything, 5);
    assert!(out.faults > 0, "faults were injected");
}

#[test]
fn bots_plant_flags_over_the_wire() {
    // The zone's last incarnation counts the plants it accepted (in `everything` it may be
    // a short one, after the crash): steady play has one incarnation.
    let out = run_with_capture(Scenario::Steady, 5);
    assert!(
        out.plugin_actions_accepted > 0,
        "the bots planted flags over the wire"
    );
}

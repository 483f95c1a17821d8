//! The capture-points plugin in the whole-network turmoil harness: the real shell (tick loop,
//! spool, flusher, stores over simulated TCP), bots that walk to points and plant flags over
//! the wire, and every fault of the `everything` scenario (store partitions and crashes, lossy
//! clients, a zone crash, disk faults). The harness's invariants hold with the plugin, and its
//! state is among what they check: every player's stored state, plugin records included, is
//! the newest durable save.

#![allow(clippy::unwrap_used)]

use sim_tests::world::{RunConfig, Scenario, replay_command, run};
use zone_capture::CapturePoints;
use zone_core::game::Game;

#[test]
fn capture_points_under_store_and_network_faults() {
    let rc = RunConfig {
        game: Game::default().with(CapturePoints::demo()),
        ..RunConfig::default()
    };
    let seed = 5;
    let out = run(Scenario::Everything, seed, &rc);
    assert!(
        out.violations.is_empty(),
        "{} violations:\n  {}\nreplay: {}",
        out.violations.len(),
        out.violations.join("\n  "),
        replay_command(Scenario::Everything, seed)
    );
    assert!(out.saves_checked > 0);
    assert_eq!(
        out.plugin_saves_checked, out.saves_checked,
        "every stored save carries the capture score"
    );
    assert!(out.faults > 0, "faults were injected");
    assert!(
        out.plugin_actions_accepted > 0,
        "the bots planted flags over the wire"
    );
}

//! A whole small world in one process, over loopback UDP: bots roam a 2x2 grid of zones, walk
//! over borders, are handed from zone to zone and follow their redirects; each player is held
//! by one zone at a time, their state carries over, and ghosts of the neighbours are seen.

use std::time::Duration;

use zone_core::PlayerId;
use zone_shell::app::{Running, start};
use zone_shell::bots::{BotConfig, run_crowd};
use zone_shell::config::Config;

use crate::support::metric;

fn world_config(dir: &std::path::Path) -> Config {
    let mut c = crate::support::loopback_config(dir);
    (c.world.columns, c.world.rows) = (2, 2);
    c.zone.arena_size = 48;
    c.zone.npcs = 40;
    c
}

fn roaming_bots(running: &Running, config: &Config, count: u32) -> BotConfig {
    BotConfig {
        server: running.udp_addr,
        servers: running.zones.iter().map(|z| z.public_address).collect(),
        protocol_id: running.protocol_id,
        first_player: 100,
        count,
        tick_hz: running.tick_hz,
        duration: None,
        seed: 4,
        roam: Some(config.grid().unwrap()),
        layout: None,
        stand: false,
        game: zone_shell::game::demo_wire(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_roam_a_2x2_world_and_are_handed_over_borders_without_loss() {
    let _live = crate::support::live(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = world_config(dir.path());
    let running = start(config.clone(), None).await.unwrap();
    assert_eq!(running.zones.len(), 4);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let key = running.private_key.clone();
    let bots = roaming_bots(&running, &config, 12);
    let crowd = tokio::spawn(async move { run_crowd(bots, &key, stop).await });
    tokio::time::sleep(Duration::from_secs(20)).await;
    let text = running.export.text();
    let stores = running.stores.clone();
    // The server shuts down first: it saves every player where it holds them.
    running.shutdown();
    let finished = running.finish().await.unwrap();
    let _ = stop_tx.send(true);
    let crowd = crowd.await.unwrap().unwrap();

    assert_eq!(crowd.connected(), 12, "{:?}", crowd.bots);
    assert_eq!(crowd.faulted(), 0, "no bot lost its connection to a fault");
    let redirects = crowd.redirects();
    let mut ms: Vec<u64> = crowd
        .bots
        .iter()
        .flat_map(|b| b.handoff_ms.clone())
        .collect();
    ms.sort_unstable();
    println!("{redirects} redirects in 20 s; border -> first snapshot of the new zone: {ms:?} ms");
    assert!(
        redirects >= 6,
        "bots were handed over borders: {redirects} redirects"
    );
    for b in &crowd.bots {
        assert_eq!(b.refused, 0, "bot {} applied every snapshot", b.player);
    }
    let accepted = metric(&text, "zone_handoffs_total", &["accepted"]);
    let taken = metric(&text, "zone_handoffs_total", &["taken"]);
    assert!(
        accepted >= redirects as f64,
        "{accepted} accepted, {redirects} redirects"
    );
    assert_eq!(
        accepted, taken,
        "every accepted handoff was taken by the neighbour"
    );
    assert_eq!(metric(&text, "zone_handoffs_total", &["recalled"]), 0.0);
    assert!(
        metric(&text, "zone_ghosts", &[]) > 0.0,
        "ghosts shown near borders"
    );

    // Each player ended in exactly one zone (saved once, at shutdown, by the zone holding
    // them), and the stored state is from that zone, under an epoch raised by every handoff.
    let saved: usize = finished
        .zones
        .iter()
        .map(|z| z.summary.saved_at_shutdown)
        .sum();
    assert_eq!(
        saved, 12,
        "every player held by exactly one zone at shutdown"
    );
    let grid = config.grid().unwrap();
    for z in &finished.zones {
        assert_eq!(
            z.host.handoff_stats().in_flight,
            0,
            "zone {} settled",
            z.zone
        );
    }
    for b in &crowd.bots {
        let p = PlayerId(b.player);
        let last_zone = b.zone.expect("a last zone");
        let stored = stores.cold.load_player(p).await.unwrap().expect("stored");
        let at = zone_core::Vec2::new(stored.state.x, stored.state.y);
        let bounds = grid.bounds(last_zone).unwrap();
        assert!(
            at.clamp(bounds.min, bounds.max).distance(at) < 1.5,
            "player {} stored at {at}, in its last zone {last_zone:?}",
            b.player
        );
        assert!(
            stored.state.epoch() > b.redirects,
            "player {}: epoch {} after {} handoffs",
            b.player,
            stored.state.epoch(),
            b.redirects
        );
    }
}

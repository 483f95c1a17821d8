//! A warm, busy zone running the capture-points plugin, with flags planted every tick and
//! players checkpointed with their scores, allocates nothing per tick (the kit's counting
//! allocator counts this test thread only).

#![allow(clippy::unwrap_used)]

use zone_capture::{CapturePoints, PlantFlag, points};
use zone_core::game::{Action, Game, action_kind};
use zone_core::{PlayerId, Zone, ZoneConfig, ZoneId};
use zone_kit::{CountingAllocator, Script, allocations};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn warm_zone_with_capture_points_allocates_nothing_per_tick() {
    let game = Game::default().with(CapturePoints::demo());
    let mut zone = Zone::with_game(ZoneConfig::arena(ZoneId(1), 96, 96, 300), 4, &game).unwrap();
    let players = 300u64;
    let mut script = Script::new(4, 1, players as u32);
    script.join_all(&mut zone);
    let kind = action_kind::<PlantFlag>();
    let ids: Vec<_> = points(&zone).map(|(id, _, _)| id).collect();
    let mut payload = Vec::with_capacity(8);
    let mut tick = |zone: &mut Zone, script: &mut Script| {
        script.drive(zone);
        let t = zone.current_tick();
        for p in 1..=players {
            if (p + t).is_multiple_of(10) {
                payload.clear();
                PlantFlag {
                    point: ids[(p % 3) as usize],
                }
                .encode(&mut payload);
                let _ = zone.handle_action(PlayerId(p), kind, &payload);
            }
        }
        zone.tick().player_saves.len()
    };
    for _ in 0..600 {
        tick(&mut zone, &mut script);
    }
    let accepted_before = zone.action_counts()[0].accepted;
    let before = allocations();
    let mut saves = 0;
    for _ in 0..600 {
        saves += tick(&mut zone, &mut script);
    }
    let allocated = allocations() - before;
    let accepted = zone.action_counts()[0].accepted - accepted_before;
    assert!(accepted > 0, "flags planted while measured");
    assert!(saves > 0, "players checkpointed while measured");
    assert!(points(&zone).count() == 3);
    assert_eq!(allocated, 0, "heap allocations in 600 warm ticks");
}

#[test]
fn the_counter_sees_allocations() {
    let before = allocations();
    let v: Vec<u64> = Vec::with_capacity(16);
    std::hint::black_box(&v);
    assert!(allocations() > before);
}

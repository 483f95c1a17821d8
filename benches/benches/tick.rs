//! Tick cost of one zone with combat going on, at 100 and 1,000 players with 1,000, 5,000 and
//! 20,000 NPCs. Throughput is in entities, so criterion's `thrpt` reads as entities ticked per
//! second: ns per entity per tick = 1e9 / thrpt.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use zone_core::scenario::Script;
use zone_core::{Zone, ZoneConfig, ZoneId};

/// Arena side length that keeps entity density constant across scenarios (~24 tiles each).
fn arena_side(entities: u32) -> u32 {
    ((entities as f32 * 24.0).sqrt() as u32).max(128)
}

fn tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("tick");
    group.sample_size(30);
    for players in [100u32, 1_000] {
        for npcs in [1_000u32, 5_000, 20_000] {
            let side = arena_side(players + npcs);
            let mut zone = Zone::new(ZoneConfig::arena(ZoneId(1), side, side, npcs), 42)
                .expect("valid config");
            let mut script = Script::new(7, 1, players);
            script.join_all(&mut zone);
            for _ in 0..300 {
                script.drive(&mut zone);
                zone.tick();
            }
            group.throughput(Throughput::Elements(u64::from(players + npcs)));
            let id = BenchmarkId::new("combat", format!("players={players},npcs={npcs}"));
            group.bench_function(id, |b| {
                b.iter(|| {
                    script.drive(&mut zone);
                    black_box(zone.tick().metrics.attacks_hit)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, tick);
criterion_main!(benches);

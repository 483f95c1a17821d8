//! Replication figures for the standard scenario (1,000 players + 5,000 NPCs, default AOI,
//! 100 ms round trip): bytes per client per second against naive full snapshots, and encode
//! cost per visible entity per client. Prints the figures, then times `Replicator::update`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use zone_core::client::ClientSession;
use zone_core::replication::{ReplicationConfig, Replicator};

fn figures() {
    for kind in [benches::Scenario::Standard, benches::Scenario::Combat] {
        print_figures(
            kind,
            &benches::replication_run(kind, 1_000, 5_000, 6, 300, 300),
        );
    }
}

fn print_figures(kind: benches::Scenario, f: &benches::ReplicationFigures) {
    println!(
        "replication {kind:?} scenario: {} clients, {} ticks measured at {} Hz, 100 ms RTT",
        f.clients, f.ticks, f.tick_hz
    );
    println!(
        "  visible entities per client   {:>10.1}",
        f.visible_per_client
    );
    println!(
        "  entities moving per tick      {:>9.1}%",
        f.moving_fraction * 100.0
    );
    println!(
        "  bytes/client/s (delta)        {:>10.0}",
        f.bytes_per_client_per_s
    );
    println!(
        "  bytes/client/s (naive full)   {:>10.0}",
        f.naive_bytes_per_client_per_s
    );
    println!(
        "  reduction                     {:>9.2}%  (goal >= 95%)",
        f.reduction_pct()
    );
    println!(
        "  ns per visible entity/client  {:>10.1}  (goal <= 100)",
        f.ns_per_visible_entity
    );
    println!(
        "  update all clients p50 / p99  {:>6.2} / {:.2} ms  (tick budget 16.7 ms)",
        f.update_ms_p50, f.update_ms_p99
    );
    println!(
        "  largest packet                {:>10}  bytes (budget 1200)",
        f.max_packet
    );
    println!(
        "  deferred changes/client/tick  {:>10.2}",
        f.deferred_per_client_tick
    );
    let m = f.mix;
    println!(
        "  per packet: {:.1} removals, {:.1} updates ({:.1} with velocity, {:.1} with status), {:.1} spawns, {:.1} reliable",
        m[0], m[1], m[2], m[3], m[4], m[5]
    );
}

fn update(c: &mut Criterion) {
    let (mut zone, mut script) = benches::busy_zone(1_000, 5_000, 300);
    let mut rep = Replicator::new(ReplicationConfig::default(), zone.map().size());
    let mut clients: Vec<ClientSession> = script
        .players()
        .iter()
        .filter(|p| rep.connect(&zone, p.player))
        .map(|p| ClientSession::new(p.player))
        .collect();
    let mut group = c.benchmark_group("replication");
    group.sample_size(20);
    group.bench_function("update/players=1000,npcs=5000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                for c in &mut clients {
                    let mut buf = Vec::new();
                    c.write_packet(&mut buf);
                    let _ = rep.handle_packet(&mut zone, c.player(), &buf);
                }
                script.drive(&mut zone);
                zone.tick();
                let started = Instant::now();
                rep.update(&zone);
                total += started.elapsed();
                for ((_, p), c) in rep.packets().zip(&mut clients) {
                    let _ = black_box(c.handle_packet(p));
                }
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches_group, update);

fn main() {
    figures();
    benches_group();
    Criterion::default().configure_from_args().final_summary();
}

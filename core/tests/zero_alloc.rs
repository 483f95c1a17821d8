//! A warm, busy zone (1,000 players, 5,000 NPCs, combat going on) allocates nothing per tick;
//! replicating it to 1,000 clients allocates only when a view outgrows every buffer so far.
//!
//! The kit's counting global allocator (`zone_kit::CountingAllocator`, what game teams use on
//! their plugins) counts heap allocations made by this test's thread only, so other test
//! threads cannot disturb the count.

#![allow(clippy::unwrap_used)]

mod testkit;

use zone_kit::{CountingAllocator, allocations};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn warm_busy_zone_allocates_nothing_per_tick() {
    let (mut zone, mut script) = testkit::busy_zone(3, 1_000, 5_000, 384);
    for _ in 0..600 {
        script.drive(&mut zone);
        zone.tick();
    }
    let (mut hits, mut deaths, mut respawns, mut moved, mut inputs) = (0, 0, 0, 0, 0);
    let before = allocations();
    for _ in 0..300 {
        script.drive(&mut zone);
        let out = zone.tick();
        hits += out.combat_events.len();
        deaths += out.deaths.len();
        respawns += out.respawns.len();
        moved += out.metrics.moved;
        inputs += out.metrics.inputs_applied;
    }
    let allocated = allocations() - before;
    assert!(
        hits > 50 && deaths > 0 && respawns > 0,
        "combat going on: {hits} hits, {deaths} deaths, {respawns} respawns"
    );
    assert!(
        moved > 100_000 && inputs >= 250_000,
        "entities moving ({moved}) and inputs flowing ({inputs})"
    );
    assert_eq!(allocated, 0, "heap allocations in 300 warm ticks");
}

#[test]
fn the_counter_sees_allocations() {
    let before = allocations();
    let v: Vec<u64> = Vec::with_capacity(16);
    std::hint::black_box(&v);
    assert!(allocations() > before);
}

#[test]
fn warm_replication_allocates_only_when_a_view_outgrows_its_buffers() {
    use zone_core::client::ClientSession;
    use zone_core::replication::{ReplicationConfig, Replicator};

    let (mut zone, mut script) = testkit::busy_zone(5, 1_000, 5_000, 384);
    let mut rep = Replicator::new(ReplicationConfig::default(), zone.map().size());
    let mut clients: Vec<ClientSession> = script
        .players()
        .iter()
        .map(|p| {
            assert!(rep.connect(&zone, p.player));
            ClientSession::new(p.player)
        })
        .collect();
    let mut up: Vec<Vec<u8>> = vec![Vec::with_capacity(1200); clients.len()];
    let mut server_allocs = 0;
    let mut bytes = 0usize;
    for t in 0..400 {
        for (c, buf) in clients.iter_mut().zip(&mut up) {
            buf.clear();
            c.write_packet(buf);
        }
        let before = allocations();
        for (c, buf) in clients.iter().zip(&up) {
            rep.handle_packet(&mut zone, c.player(), buf).unwrap();
        }
        let a1 = allocations();
        script.drive(&mut zone);
        zone.tick();
        let a2 = allocations();
        rep.update(&zone);
        if t >= 300 && std::env::var("DEBUG_ALLOC").is_ok() {
            eprintln!(
                "t={t} packets={} tick={} update={}",
                a1 - before,
                a2 - a1,
                allocations() - a2
            );
        }
        if t >= 300 {
            server_allocs += allocations() - before;
            bytes += rep.packets().map(|(_, b)| b.len()).sum::<usize>();
        }
        for ((_, packet), c) in rep.packets().zip(&mut clients) {
            c.handle_packet(packet).unwrap();
        }
    }
    assert!(
        bytes > 100 * 1_000 * 20,
        "packets carried real snapshots ({bytes} bytes)"
    );
    // Buffers circulate between clients; a build allocates only when a view grows beyond every
    // buffer in circulation (here: players respawning into crowded spawn points).
    let per_packet = server_allocs as f64 / (100.0 * 1_000.0);
    eprintln!("replication: {server_allocs} allocations in 100,000 warm client packets");
    assert!(
        per_packet < 0.02,
        "{per_packet} allocations per client packet"
    );
}

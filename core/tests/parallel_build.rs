//! Building packets for disjoint chunks of the clients (what the server's lanes do on their
//! threads) gives exactly the bytes of one build over all of them, whatever the chunks and
//! whatever order they are built in; and a snapshot rate below the tick rate spreads the
//! clients evenly over the ticks.

#![allow(clippy::unwrap_used)]

mod testkit;

use testkit::busy_zone;
use zone_core::client::ClientSession;
use zone_core::replication::{ReplicationConfig, Replicator, Worker};
use zone_core::rng::{self, Purpose};
use zone_core::{PlayerId, PlayerInput, Vec2};

/// One tick's packets, by client.
type Packets = Vec<(PlayerId, Vec<u8>)>;

/// Two replicators over one zone, fed the same client packets: `a` builds in one go, `b` in
/// `chunks` chunks built back to front. Returns each tick's packets of both.
fn run(chunks: usize, ticks: u64) -> Vec<(Packets, Packets)> {
    let (mut zone, mut script) = busy_zone(5, 40, 600, 96);
    let config = ReplicationConfig {
        packet_budget: 600,
        ..ReplicationConfig::default()
    };
    let mut a = Replicator::new(config.clone(), zone.map().size());
    let mut b = Replicator::new(config, zone.map().size());
    let mut clients: Vec<ClientSession> = Vec::new();
    for p in script.players() {
        assert!(a.connect(&zone, p.player) && b.connect(&zone, p.player));
        clients.push(ClientSession::new(p.player));
    }
    let mut workers: Vec<Worker> = (0..chunks).map(|_| Worker::new()).collect();
    let mut out = Vec::new();
    for t in 0..ticks {
        for c in clients.iter_mut() {
            let mut d = rng::stream(9, c.player().0, t, Purpose::Script);
            let dir = Vec2::new(d.range(-1.0, 1.0), d.range(-1.0, 1.0));
            c.push_input(PlayerInput::movement(
                0,
                zone.current_tick(),
                dir,
                d.below(2) == 0,
            ));
            let mut buf = Vec::new();
            c.write_packet(&mut buf);
            a.handle_packet(&mut zone, c.player(), &buf).unwrap();
            // The second replicator only acks: the zone already has the inputs.
            let mut ack = zone_core::protocol::ClientPacket::decode(&buf).unwrap();
            ack.inputs.clear();
            let mut ack_bytes = Vec::new();
            ack.encode(&mut ack_bytes);
            b.handle_packet(&mut zone, c.player(), &ack_bytes).unwrap();
        }
        script.drive(&mut zone);
        zone.tick();
        a.update(&zone);
        b.prepare(&zone, &[]);
        {
            let (frame, links) = b.split();
            let size = links.len().div_ceil(chunks);
            let mut parts: Vec<_> = links.chunks_mut(size).zip(workers.iter_mut()).collect();
            parts.reverse();
            for (links, worker) in parts {
                Replicator::build(&frame, links, worker);
            }
        }
        for w in &workers {
            b.absorb(w);
        }
        let one: Vec<_> = a.packets().map(|(p, x)| (p, x.to_vec())).collect();
        let many: Vec<_> = workers
            .iter()
            .flat_map(|w| w.packets().map(|(p, x)| (p, x.to_vec())))
            .collect();
        for (c, (_, bytes)) in clients.iter_mut().zip(&one) {
            c.handle_packet(bytes).unwrap();
        }
        out.push((one, many));
    }
    out
}

#[test]
fn packets_built_in_chunks_in_any_order_are_byte_identical() {
    for chunks in [2, 3, 7] {
        let ticks = run(chunks, 120);
        let mut bytes = 0;
        for (t, (one, many)) in ticks.iter().enumerate() {
            assert_eq!(one.len(), 40, "tick {t}: every client gets a packet");
            assert_eq!(
                one, many,
                "tick {t}, {chunks} chunks: same packets, same bytes"
            );
            bytes += one.iter().map(|(_, b)| b.len()).sum::<usize>();
        }
        assert!(
            bytes > 40 * 120 * 10,
            "packets carry something ({bytes} bytes)"
        );
    }
}

#[test]
fn a_lower_snapshot_rate_spreads_the_clients_evenly_over_the_ticks() {
    let (mut zone, mut script) = busy_zone(6, 30, 300, 96);
    let mut rep = Replicator::new(
        ReplicationConfig {
            snapshot_interval: 3,
            ..ReplicationConfig::default()
        },
        zone.map().size(),
    );
    let mut clients: Vec<ClientSession> = Vec::new();
    for p in script.players() {
        assert!(rep.connect(&zone, p.player));
        clients.push(ClientSession::new(p.player));
    }
    let mut per_client = std::collections::BTreeMap::<PlayerId, Vec<u64>>::new();
    for _ in 0..90 {
        for c in clients.iter_mut() {
            let mut buf = Vec::new();
            c.write_packet(&mut buf);
            rep.handle_packet(&mut zone, c.player(), &buf).unwrap();
        }
        script.drive(&mut zone);
        zone.tick();
        rep.update(&zone);
        let packets: Vec<_> = rep.packets().map(|(p, b)| (p, b.to_vec())).collect();
        assert_eq!(packets.len(), 10, "a third of the clients each tick");
        for (p, bytes) in packets {
            per_client.entry(p).or_default().push(zone.current_tick());
            let c = clients.iter_mut().find(|c| c.player() == p).unwrap();
            c.handle_packet(&bytes).unwrap();
        }
    }
    for (p, ticks) in &per_client {
        assert_eq!(ticks.len(), 30, "{p:?}: one snapshot every third tick");
        assert!(
            ticks.windows(2).all(|w| w[1] - w[0] == 3),
            "{p:?}: {ticks:?}"
        );
    }
    // The clients hold exactly what the server sent them, deltas against snapshots three
    // ticks apart included.
    for c in &clients {
        let sent = rep.sent_view(c.player(), c.newest_tick()).unwrap();
        assert_eq!(c.entities(), sent.as_slice());
        assert!(!sent.is_empty());
    }
}

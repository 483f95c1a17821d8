//! Hostile input: expired, wrong-protocol, wrong-address, foreign-key and tampered tokens,
//! reused tokens, truncated / oversized / garbage datagrams, replays, spoofed top-of-space
//! sequences, rate limiting and table bounds. Every case: dropped without panic, counted by
//! reason, and never answered by a reply as large as the datagram.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

mod netsim;

use std::net::SocketAddr;
use std::time::Duration;

use netsim::*;
use zone_core::netcode::packet::{read_header, read_packet, write_packet};
use zone_core::netcode::*;

const T0: Duration = Duration::from_secs(1000);

fn request_bytes(spec: &TokenSpec) -> Vec<u8> {
    let mut c = Client::new(T0, &spec.bytes());
    c.update(T0);
    let t = c.poll_transmit().unwrap();
    assert_eq!(t.payload.len(), CONNECTION_REQUEST_BYTES);
    t.payload.to_vec()
}

fn drain(server: &mut Server) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(t) = server.poll_transmit() {
        out.push((t.destination, t.payload.to_vec()));
    }
    out
}

/// Sends `datagram` to a fresh server and returns the one drop reason counted.
fn rejected_by_fresh_server(datagram: &[u8], unix: u64) -> DropReason {
    let mut server = new_server(4);
    let mut d = datagram.to_vec();
    assert!(server.process(T0, unix, client_addr(1), &mut d).is_none());
    assert!(drain(&mut server).is_empty(), "no reply");
    assert_eq!(server.pending_clients(), 0);
    assert_eq!(server.drop_counters().total(), 1);
    server.drop_counters().iter().next().unwrap().0
}

#[test]
fn valid_request_is_answered_by_a_smaller_challenge() {
    let mut server = new_server(4);
    let mut d = request_bytes(&TokenSpec::new(1));
    assert!(
        server
            .process(T0, UNIX_START, client_addr(1), &mut d)
            .is_none()
    );
    let out = drain(&mut server);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, client_addr(1));
    assert_eq!(out[0].1.len(), 1 + 8 + 8 + 300 + 16);
    assert!(out[0].1.len() < CONNECTION_REQUEST_BYTES);
    assert_eq!(server.pending_clients(), 1);
}

#[test]
fn expired_token_is_dropped() {
    let spec = TokenSpec::new(1);
    let d = request_bytes(&spec);
    assert_eq!(
        rejected_by_fresh_server(&d, spec.expire),
        DropReason::TokenExpired
    );
    assert_eq!(
        rejected_by_fresh_server(&d, spec.expire + 1000),
        DropReason::TokenExpired
    );
}

#[test]
fn wrong_protocol_id_is_dropped() {
    let mut spec = TokenSpec::new(1);
    spec.protocol_id = PROTOCOL_ID + 1;
    assert_eq!(
        rejected_by_fresh_server(&request_bytes(&spec), UNIX_START),
        DropReason::WrongProtocolId
    );
}

#[test]
fn wrong_server_address_is_dropped() {
    let mut spec = TokenSpec::new(1);
    spec.addresses = vec![
        "10.0.0.1:40001".parse().unwrap(),
        "10.0.0.2:40000".parse().unwrap(),
    ];
    assert_eq!(
        rejected_by_fresh_server(&request_bytes(&spec), UNIX_START),
        DropReason::WrongServerAddress
    );
}

#[test]
fn foreign_private_key_is_dropped() {
    let mut spec = TokenSpec::new(1);
    spec.private_key = Key::from_bytes([0xEE; 32]);
    assert_eq!(
        rejected_by_fresh_server(&request_bytes(&spec), UNIX_START),
        DropReason::TokenDecryptFailed
    );
}

#[test]
fn every_single_bit_flip_of_a_connection_request_is_rejected() {
    let good = request_bytes(&TokenSpec::new(1));
    let mut server = new_server(4);
    let mut reasons = std::collections::BTreeMap::<DropReason, u32>::new();
    let mut n: u16 = 0;
    for i in 0..good.len() {
        for bit in [0x01u8, 0x80] {
            let mut d = good.clone();
            d[i] ^= bit;
            n += 1;
            let from = SocketAddr::from(([172, 16, (n >> 8) as u8, n as u8], 7000));
            let before = server.drop_counters().total();
            assert!(server.process(T0, UNIX_START, from, &mut d).is_none());
            assert_eq!(
                server.drop_counters().total(),
                before + 1,
                "byte {i} bit {bit:#x}"
            );
            assert!(
                drain(&mut server).is_empty(),
                "byte {i} bit {bit:#x} was answered"
            );
        }
    }
    assert_eq!(server.pending_clients(), 0);
    for (r, c) in server.drop_counters().iter() {
        reasons.insert(r, c as u32);
    }
    // Version info flips, protocol id flips, expire/nonce/ciphertext/tag flips, prefix flips.
    assert_eq!(reasons[&DropReason::WrongVersion], 26);
    assert_eq!(reasons[&DropReason::WrongProtocolId], 16);
    // Expire timestamp, nonce, ciphertext and tag: authenticated, so either the decryption
    // fails or (a flip that moves the expire timestamp into the past) the token is expired.
    let expired = reasons.get(&DropReason::TokenExpired).copied().unwrap_or(0);
    assert!(expired <= 16);
    assert_eq!(
        reasons[&DropReason::TokenDecryptFailed] + expired,
        (8 + 24 + 1024) * 2
    );
    // Prefix byte: 0x01 makes it an encrypted type from an unknown peer, 0x80 gives a
    // connection request with sequence bytes.
    assert_eq!(reasons[&DropReason::UnexpectedPacketType], 1);
    assert_eq!(reasons[&DropReason::InvalidSequenceBytes], 1);
    assert_eq!(reasons.values().sum::<u32>(), 1078 * 2);
    // The untampered request still works.
    let mut d = good.clone();
    server.process(T0, UNIX_START, client_addr(1), &mut d);
    assert_eq!(drain(&mut server).len(), 1);
}

#[test]
fn token_used_from_a_second_address_is_dropped() {
    let d = request_bytes(&TokenSpec::new(1));
    let mut server = new_server(4);
    server.process(T0, UNIX_START, client_addr(1), &mut d.clone());
    assert_eq!(drain(&mut server).len(), 1);
    server.process(T0, UNIX_START, client_addr(2), &mut d.clone());
    assert!(drain(&mut server).is_empty());
    assert_eq!(server.drop_counters().get(DropReason::TokenAlreadyUsed), 1);
    // The first address may resend it.
    server.process(T0, UNIX_START, client_addr(1), &mut d.clone());
    assert_eq!(drain(&mut server).len(), 1);
}

#[test]
fn same_client_id_cannot_connect_twice() {
    let mut sim = Sim::new(new_server(4));
    sim.add_client(&TokenSpec::new(1), client_addr(1));
    sim.connect_all();
    let mut other = TokenSpec::new(1);
    other.seed = 999; // a second token for the same client id
    let c = sim.add_client(&other, client_addr(2));
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.state(c), ClientState::SendingConnectionRequest);
    assert!(
        sim.server
            .drop_counters()
            .get(DropReason::ClientIdAlreadyConnected)
            > 0
    );
    assert_eq!(sim.server.connected_clients(), 1);
}

fn hostile_datagrams(seed: u64) -> Vec<Vec<u8>> {
    let mut rng = TestRng::new(seed);
    let mut out = Vec::new();
    let lens = [
        0usize, 1, 2, 8, 17, 18, 19, 24, 25, 26, 100, 333, 334, 1077, 1078, 1079, 1224, 1225, 1226,
        1500, 9000,
    ];
    for prefix in 0..=255u8 {
        for &len in &lens {
            let mut d = vec![0u8; len];
            rng.fill(&mut d);
            if let Some(p) = d.first_mut() {
                *p = prefix;
            }
            out.push(d);
        }
    }
    out
}

#[test]
fn garbage_truncated_and_oversized_datagrams_never_panic_and_are_counted() {
    let mut sim = Sim::new(new_server(4));
    let c = sim.add_client(&TokenSpec::new(1), client_addr(1));
    sim.connect_all();
    // Also have a pending (challenged) peer.
    let mut pending_req = request_bytes(&TokenSpec::new(2));
    sim.server
        .process(sim.now, sim.unix(), client_addr(9), &mut pending_req);
    drain(&mut sim.server);
    assert_eq!(sim.server.pending_clients(), 1);

    let datagrams = hostile_datagrams(7);
    for from in [client_addr(1), client_addr(9), client_addr(77)] {
        for d in &datagrams {
            let before = sim.server.drop_counters().total();
            let mut bytes = d.clone();
            let event = sim.server.process(sim.now, sim.unix(), from, &mut bytes);
            assert!(
                event.is_none(),
                "{} bytes from {from} produced an event",
                d.len()
            );
            assert_eq!(sim.server.drop_counters().total(), before + 1);
            assert!(drain(&mut sim.server).is_empty());
        }
    }
    let counters = sim.server.drop_counters();
    for r in [
        DropReason::TooSmall,
        DropReason::TooLarge,
        DropReason::InvalidPacketType,
        DropReason::UnexpectedPacketType,
        DropReason::InvalidSequenceBytes,
        DropReason::DecryptFailed,
        DropReason::UnknownAddress,
        DropReason::WrongVersion,
        DropReason::AddressAlreadyConnected,
    ] {
        assert!(counters.get(r) > 0, "{r} not seen: {counters:?}");
    }
    // The client side gets the same treatment, from the server's address.
    for d in &datagrams {
        let mut bytes = d.clone();
        let now = sim.now;
        assert!(
            sim.clients[c]
                .client
                .process(now, server_addr(), &mut bytes)
                .is_none()
        );
    }
    assert_eq!(
        sim.clients[c].client.drop_counters().total(),
        datagrams.len() as u64
    );
    // Everyone is still connected and working.
    assert_eq!(sim.state(c), ClientState::Connected);
    sim.clients[c].client.send_payload(b"still here").unwrap();
    sim.flush_client(c);
    assert_eq!(
        sim.server_events.last(),
        Some(&SEvent::Payload {
            index: 0,
            data: b"still here".to_vec()
        })
    );
}

#[test]
fn decoders_are_total_on_random_input() {
    let key = Key::from_bytes([1; 32]);
    let mut rng = TestRng::new(99);
    for _ in 0..20_000 {
        let len = rng.below(2100) as usize;
        let mut d = vec![0u8; len];
        rng.fill(&mut d);
        let _ = ConnectToken::read(&d);
        let _ = ConnectionRequest::read(&d);
        let _ = read_header(&d, &PacketType::ALL);
        let mut w = ReplayWindow::new();
        let _ = read_packet(&mut d.clone(), 1, &key, &PacketType::ALL, Some(&mut w));
        assert_eq!(
            w.most_recent(),
            0,
            "a failed decrypt never advances the window"
        );
        if len >= 1008 {
            let _ = PrivateConnectToken::read_plaintext(&d[..1008]);
        }
    }
    // Structured near-misses of a valid token: every field mutated.
    let good = TokenSpec::new(1).bytes();
    for i in 0..1300 {
        for v in [0u8, 1, 2, 3, 0x7F, 0xFF] {
            let mut d = good;
            d[i] = v;
            if let Ok(t) = ConnectToken::read(&d) {
                assert_eq!(
                    t.to_bytes().unwrap(),
                    d,
                    "parse/serialize round trip at byte {i}"
                );
            }
        }
    }
}

#[test]
fn replayed_packets_are_dropped_on_both_sides() {
    let mut sim = Sim::new(new_server(4));
    let c = sim.add_client(&TokenSpec::new(1), client_addr(1));
    sim.connect_all();

    sim.clients[c].client.send_payload(b"once").unwrap();
    let out = sim.drain_client(c);
    let first = out[0].bytes.clone();
    sim.deliver_to_server(client_addr(1), first.clone());
    sim.deliver_to_server(client_addr(1), first.clone());
    let payloads = sim
        .server_events
        .iter()
        .filter(|e| matches!(e, SEvent::Payload { .. }))
        .count();
    assert_eq!(payloads, 1);
    assert_eq!(sim.server.drop_counters().get(DropReason::Replayed), 1);

    // Older than the window.
    for i in 0..300u32 {
        sim.clients[c]
            .client
            .send_payload(&i.to_le_bytes())
            .unwrap();
        sim.flush_client(c);
    }
    sim.deliver_to_server(client_addr(1), first);
    assert_eq!(sim.server.drop_counters().get(DropReason::Replayed), 2);

    // Server to client.
    sim.server.send_payload(0, b"to client").unwrap();
    let out = sim.drain_server();
    let bytes = out.last().unwrap().bytes.clone();
    sim.deliver_to_clients(out);
    let n = sim.clients[c].events.len();
    sim.deliver_to_clients(vec![Wire {
        from: server_addr(),
        to: client_addr(1),
        bytes,
    }]);
    assert_eq!(sim.clients[c].events.len(), n);
    assert_eq!(
        sim.clients[c]
            .client
            .drop_counters()
            .get(DropReason::Replayed),
        1
    );
}

#[test]
fn replayed_handshake_packets_get_no_reply() {
    let mut sim = Sim::new(new_server(4));
    let c = sim.add_client(&TokenSpec::new(1), client_addr(1));
    sim.connect_all();
    // Replay every datagram the client sent during the handshake (requests and responses).
    let sent: Vec<Wire> = sim.to_server.clone();
    for w in sent {
        let mut d = w.bytes.clone();
        assert!(
            sim.server
                .process(sim.now, sim.unix(), w.from, &mut d)
                .is_none()
        );
        assert!(sim.drain_server().is_empty());
    }
    assert!(
        sim.server
            .drop_counters()
            .get(DropReason::AddressAlreadyConnected)
            > 0
    );
    assert_eq!(sim.server.connected_clients(), 1);
    assert_eq!(sim.state(c), ClientState::Connected);
}

#[test]
fn server_ignores_challenge_packets() {
    let mut sim = Sim::new(new_server(4));
    let c = sim.add_client(&TokenSpec::new(1), client_addr(1));
    sim.connect_all();
    let key = sim.clients[c].token.client_to_server_key.clone();
    let mut out = [0u8; MAX_PACKET_BYTES];
    let n = write_packet(
        &mut out,
        &Packet::ConnectionChallenge {
            token_sequence: 0,
            token: &[0; 300],
        },
        900,
        PROTOCOL_ID,
        &key,
    )
    .unwrap();
    sim.deliver_to_server(client_addr(1), out[..n].to_vec());
    assert_eq!(
        sim.server
            .drop_counters()
            .get(DropReason::UnexpectedPacketType),
        1
    );
}

fn spoof(packet_type: PacketType, sequence: u64, body_len: usize, seed: u64) -> Vec<u8> {
    let mut rng = TestRng::new(seed);
    let mut d = vec![(8u8 << 4) | packet_type as u8];
    d.extend_from_slice(&sequence.to_le_bytes());
    let mut rest = vec![0u8; body_len + 16];
    rng.fill(&mut rest);
    d.extend_from_slice(&rest);
    d
}

/// renetcode 2.0.0 computes `sequence + 256` before decrypting, which overflows (a panic in
/// debug builds) for sequences near `u64::MAX`. Ours: no panic, counted as a failed
/// decryption, and the replay window is not moved, so the real client is unaffected.
#[test]
fn spoofed_top_of_space_sequence_from_a_connected_address() {
    let mut sim = Sim::new(new_server(4));
    let c = sim.add_client(&TokenSpec::new(1), client_addr(1));
    sim.connect_all();
    let mut k = 0;
    for ty in [
        PacketType::KeepAlive,
        PacketType::Payload,
        PacketType::Disconnect,
    ] {
        for seq in [
            u64::MAX,
            u64::MAX - 1,
            u64::MAX - 10,
            u64::MAX - 255,
            u64::MAX - 256,
        ] {
            let len = match ty {
                PacketType::KeepAlive => 8,
                PacketType::Payload => 1000,
                _ => 0,
            };
            k += 1;
            sim.deliver_to_server(client_addr(1), spoof(ty, seq, len, k));
            // And the same at the client, spoofing the server.
            let mut d = spoof(ty, seq, len, k + 100);
            let now = sim.now;
            assert!(
                sim.clients[c]
                    .client
                    .process(now, server_addr(), &mut d)
                    .is_none()
            );
        }
    }
    assert_eq!(sim.server.drop_counters().get(DropReason::DecryptFailed), k);
    assert_eq!(sim.server.drop_counters().total(), k);
    assert_eq!(
        sim.clients[c]
            .client
            .drop_counters()
            .get(DropReason::DecryptFailed),
        k
    );
    assert!(sim.server.is_connected(0));
    // Low, genuine sequences still pass in both directions: the windows did not move.
    sim.clients[c].client.send_payload(b"genuine").unwrap();
    sim.flush_client(c);
    assert_eq!(
        sim.server_events.last(),
        Some(&SEvent::Payload {
            index: 0,
            data: b"genuine".to_vec()
        })
    );
    sim.server.send_payload(0, b"genuine too").unwrap();
    let out = sim.drain_server();
    sim.deliver_to_clients(out);
    assert_eq!(
        sim.clients[c].events.last(),
        Some(&CEvent::Payload(b"genuine too".to_vec()))
    );
    // The same at the packet level: the window's most recent sequence is untouched.
    let mut w = ReplayWindow::new();
    w.advance(5);
    let key = Key::from_bytes([1; 32]);
    let mut d = spoof(PacketType::Payload, u64::MAX - 1, 1000, 1);
    assert!(matches!(
        read_packet(&mut d, PROTOCOL_ID, &key, &PacketType::ALL, Some(&mut w)),
        Err(PacketError::DecryptFailed { .. })
    ));
    assert_eq!(w.most_recent(), 5);
    assert!(!w.already_received(6));
}

/// A restarted server given a random start never repeats a challenge sequence of the
/// previous run; a start among per-client sequences is refused.
#[test]
fn the_global_sequence_start_is_configurable_and_kept_above_half_the_space() {
    use zone_core::netcode::{ConfigError, random_global_sequence_start};
    let start = random_global_sequence_start([0xff; 8]);
    assert_eq!(start, (1 << 63) | ((1 << 62) - 1));
    assert_eq!(random_global_sequence_start([0; 8]), 1 << 63);
    let mut config = ServerConfig::new(PROTOCOL_ID, private_key(), 4, vec![server_addr()]);
    config.global_sequence_start = start;
    let server = Server::new(config.clone(), Key::from_bytes([9; 32])).unwrap();
    assert_eq!(server.next_global_sequence(), Some(start));
    config.global_sequence_start = (1 << 63) - 1;
    assert!(matches!(
        Server::new(config, Key::from_bytes([9; 32])),
        Err(ConfigError::GlobalSequenceStart { .. })
    ));
}

/// renetcode 2.0.0 starts its global sequence at 0, colliding with per-client sequences
/// under the same server-to-client key. Ours starts at `1 << 63` by default.
#[test]
fn first_global_sequence_packets_are_above_half_the_space() {
    for round in 0..3 {
        let mut server = new_server(1);
        assert_eq!(server.next_global_sequence(), Some(1 << 63));
        let mut d = request_bytes(&TokenSpec::new(1 + round));
        server.process(T0, UNIX_START, client_addr(1), &mut d);
        let out = drain(&mut server);
        let h = read_header(&out[0].1, &PacketType::ALL).unwrap();
        assert_eq!(h.packet_type, PacketType::ConnectionChallenge);
        assert_eq!(h.sequence, 1 << 63, "first challenge");
        server.process(T0, UNIX_START, client_addr(1), &mut d);
        let out = drain(&mut server);
        assert_eq!(
            read_header(&out[0].1, &PacketType::ALL).unwrap().sequence,
            (1 << 63) + 1
        );
    }
    // Denied packets too.
    let mut sim = Sim::new(new_server(1));
    sim.add_client(&TokenSpec::new(1), client_addr(1));
    sim.connect_all();
    let mut d = request_bytes(&TokenSpec::new(2));
    let (now, unix) = (sim.now, sim.unix());
    sim.server.process(now, unix, client_addr(2), &mut d);
    let out = drain(&mut sim.server);
    let h = read_header(&out[0].1, &PacketType::ALL).unwrap();
    assert_eq!(h.packet_type, PacketType::ConnectionDenied);
    assert!(h.sequence > 1 << 63);
    assert_eq!(out[0].1.len(), 1 + 8 + 16, "denied is 25 bytes");
}

#[test]
fn connection_requests_are_rate_limited_per_address() {
    let mut server = new_server(4);
    let d = request_bytes(&TokenSpec::new(1));
    let mut answered = 0;
    for _ in 0..40 {
        server.process(T0, UNIX_START, client_addr(1), &mut d.clone());
        answered += drain(&mut server).len();
    }
    assert_eq!(answered, 30);
    assert_eq!(server.drop_counters().get(DropReason::RateLimited), 10);
    // Another address is not affected.
    let d2 = request_bytes(&TokenSpec::new(2));
    server.process(T0, UNIX_START, client_addr(2), &mut d2.clone());
    assert_eq!(drain(&mut server).len(), 1);
    // The next window admits again.
    let t = T0 + Duration::from_secs(1);
    server.process(t, UNIX_START + 1, client_addr(1), &mut d.clone());
    assert_eq!(drain(&mut server).len(), 1);
}

#[test]
fn tables_stay_bounded() {
    let mut config = server_config(2);
    config.max_pending = 8;
    config.token_history_capacity = 16;
    config.rate_limit.table_capacity = 32;
    let mut server = Server::new(config, Key::from_bytes([3; 32])).unwrap();
    for i in 0..200u64 {
        let mut d = request_bytes(&TokenSpec::new(100 + i));
        let from = SocketAddr::from(([172, 20, (i >> 8) as u8, i as u8], 9000));
        server.process(T0, UNIX_START, from, &mut d);
        drain(&mut server);
        assert!(server.pending_clients() <= 8);
        assert!(server.token_history_len() <= 16);
        assert!(server.rate_limit_table_len() <= 32);
    }
    assert!(server.drop_counters().get(DropReason::PendingTableFull) > 0);
    // Pending entries expire after the token timeout (5 s) and make room again.
    server.update(T0 + Duration::from_secs(6));
    assert_eq!(server.pending_clients(), 0);
    let mut d = request_bytes(&TokenSpec::new(5000));
    server.process(
        T0 + Duration::from_secs(6),
        UNIX_START + 6,
        client_addr(3),
        &mut d,
    );
    assert_eq!(drain(&mut server).len(), 1);
}

#[test]
fn every_reply_to_an_unauthenticated_peer_is_smaller_than_its_request() {
    // Challenge and denied answer a 1078-byte request; keep-alive and denied answer a
    // connection response (1 + sequence + 308 + 16 bytes).
    let mut sim = Sim::new(new_server(1));
    let a = sim.add_client(&TokenSpec::new(1), client_addr(1));
    let b = sim.add_client(&TokenSpec::new(2), client_addr(2));
    let c = sim.add_client(&TokenSpec::new(3), client_addr(3));
    // The Sim asserts the rule on every delivery; run a crowded handshake.
    sim.run_for(Duration::from_secs(2));
    let states = [sim.state(a), sim.state(b), sim.state(c)];
    assert_eq!(
        states
            .iter()
            .filter(|s| **s == ClientState::Connected)
            .count(),
        1
    );
    assert_eq!(
        states
            .iter()
            .filter(|s| **s == ClientState::ConnectionDenied)
            .count(),
        2
    );
    let sizes: std::collections::BTreeSet<usize> =
        sim.from_server.iter().map(|w| w.bytes.len()).collect();
    assert!(
        sizes.iter().all(|&s| s < CONNECTION_REQUEST_BYTES),
        "{sizes:?}"
    );
}

#[test]
fn client_drops_datagrams_from_other_sources_and_out_of_state() {
    let mut sim = Sim::new(new_server(2));
    let c = sim.add_client(&TokenSpec::new(1), client_addr(1));
    let key = sim.clients[c].token.server_to_client_key.clone();
    let mut out = [0u8; MAX_PACKET_BYTES];
    // A well-encrypted payload before connection: ignored in state.
    let n = write_packet(&mut out, &Packet::Payload(b"early"), 0, PROTOCOL_ID, &key).unwrap();
    let mut d = out[..n].to_vec();
    assert!(
        sim.clients[c]
            .client
            .process(T0, server_addr(), &mut d)
            .is_none()
    );
    assert_eq!(
        sim.clients[c]
            .client
            .drop_counters()
            .get(DropReason::IgnoredInState),
        1
    );
    // From another address: wrong source, not even decrypted.
    let n = write_packet(&mut out, &Packet::Payload(b"x"), 1, PROTOCOL_ID, &key).unwrap();
    let mut d = out[..n].to_vec();
    let elsewhere: SocketAddr = "10.0.0.99:40000".parse().unwrap();
    assert!(
        sim.clients[c]
            .client
            .process(T0, elsewhere, &mut d)
            .is_none()
    );
    assert_eq!(
        sim.clients[c]
            .client
            .drop_counters()
            .get(DropReason::WrongSource),
        1
    );
    // Requests and responses are never accepted by a client.
    let n = write_packet(
        &mut out,
        &Packet::ConnectionResponse {
            token_sequence: 1,
            token: &[0; 300],
        },
        2,
        PROTOCOL_ID,
        &key,
    )
    .unwrap();
    let mut d = out[..n].to_vec();
    assert!(
        sim.clients[c]
            .client
            .process(T0, server_addr(), &mut d)
            .is_none()
    );
    assert_eq!(
        sim.clients[c]
            .client
            .drop_counters()
            .get(DropReason::UnexpectedPacketType),
        1
    );
    sim.connect_all();
}

#[test]
fn response_after_the_pending_mapping_expired_is_dropped() {
    let mut server = new_server(2);
    let spec = TokenSpec::new(1);
    let mut client = Client::new(T0, &spec.bytes());
    client.update(T0);
    let mut req = client.poll_transmit().unwrap().payload.to_vec();
    server.process(T0, UNIX_START, client_addr(1), &mut req);
    let mut challenge = drain(&mut server).pop().unwrap().1;
    client.process(T0, server_addr(), &mut challenge);
    assert_eq!(client.state(), ClientState::SendingConnectionResponse);
    client.update(T0);
    let mut response = client.poll_transmit().unwrap().payload.to_vec();
    // The token's timeout is 5 s; no `update` ran on the server in between.
    let late = T0 + Duration::from_secs(6);
    assert!(
        server
            .process(late, UNIX_START + 6, client_addr(1), &mut response)
            .is_none()
    );
    assert!(drain(&mut server).is_empty());
    assert_eq!(server.drop_counters().get(DropReason::UnknownAddress), 1);
    assert_eq!(server.pending_clients(), 0);
    assert_eq!(server.connected_clients(), 0);
}

/// Issue 23's repro: with room for 4 clients (16 pending), 16 valid tokens for one player id
/// from 16 addresses, re-sent and never answered, used to fill the pending table and refuse
/// every legitimate login for as long as the tokens lived. A client id now holds one pending
/// entry, so the others get in.
#[test]
fn one_player_id_with_many_tokens_cannot_fill_the_pending_table() {
    let mut sim = Sim::new(new_server(4));
    let attack: Vec<(SocketAddr, Vec<u8>)> = (0..16u64)
        .map(|i| {
            let mut spec = TokenSpec::new(9);
            spec.seed = 1_000 + i;
            let from = SocketAddr::from(([172, 21, 0, i as u8 + 1], 7000));
            (from, request_bytes(&spec))
        })
        .collect();
    let legit: Vec<usize> = (1..=3u16)
        .map(|i| sim.add_client(&TokenSpec::new(u64::from(i)), client_addr(i)))
        .collect();
    for _ in 0..100 {
        for (from, bytes) in &attack {
            sim.deliver_to_server(*from, bytes.clone());
        }
        sim.drain_server();
        sim.run_for(Duration::from_millis(100));
        assert!(sim.server.pending_clients() <= 1 + legit.len());
    }
    for c in legit {
        assert_eq!(sim.state(c), ClientState::Connected, "client {c} got in");
    }
}

/// Many player ids from one IP (any ports) hold at most `max_pending_per_ip` entries; a
/// client from another IP is still challenged.
#[test]
fn one_ip_holds_a_bounded_share_of_the_pending_table() {
    let mut server = new_server(16);
    // 25 requests: under the per-IP rate limit (30 a second), over the pending share.
    for i in 0..25u64 {
        let mut d = request_bytes(&TokenSpec::new(200 + i));
        let from = SocketAddr::from(([172, 22, 0, 1], 7000 + i as u16));
        server.process(T0, UNIX_START, from, &mut d);
        drain(&mut server);
    }
    assert_eq!(server.pending_clients(), 8);
    assert_eq!(server.drop_counters().get(DropReason::PendingPerIpFull), 17);
    let mut d = request_bytes(&TokenSpec::new(999));
    server.process(T0, UNIX_START, client_addr(5), &mut d);
    assert_eq!(drain(&mut server).len(), 1, "another IP is challenged");
}

/// Forged requests from many IPs and fresh ports: each IP gets one window whatever its ports,
/// and all of them together get at most the global decrypt budget a second.
#[test]
fn request_floods_cost_at_most_the_decrypt_budget() {
    let mut config = server_config(64);
    config.rate_limit.max_decrypts_per_second = 50;
    let mut server = Server::new(config, Key::from_bytes([3; 32])).unwrap();
    let mut answered = 0;
    for i in 0..400u64 {
        let mut d = request_bytes(&TokenSpec::new(300 + i));
        // 100 IPs, 4 source ports each.
        let from = SocketAddr::from(([172, 23, 0, (i % 100) as u8 + 1], 5_000 + i as u16));
        server.process(T0, UNIX_START, from, &mut d);
        answered += drain(&mut server).len();
    }
    assert_eq!(answered, 50);
    assert_eq!(
        server.drop_counters().get(DropReason::DecryptBudgetSpent),
        350
    );
    let mut d = request_bytes(&TokenSpec::new(9_999));
    let next = T0 + Duration::from_secs(1);
    server.process(next, UNIX_START + 1, client_addr(7), &mut d);
    assert_eq!(
        drain(&mut server).len(),
        1,
        "the next second has a new budget"
    );
}

#[test]
fn fresh_source_ports_do_not_buy_fresh_rate_limit_windows() {
    let mut server = new_server(4);
    let d = request_bytes(&TokenSpec::new(1));
    let mut answered = 0;
    for port in 0..40u16 {
        let from = SocketAddr::from(([192, 168, 9, 9], 20_000 + port));
        server.process(T0, UNIX_START, from, &mut d.clone());
        answered += drain(&mut server).len();
    }
    // One IP, one window of 30 (the first answers and its re-sends; other ports reuse the
    // token and are refused as already used, after the window counted them).
    assert!(answered <= 30, "{answered}");
    assert_eq!(server.drop_counters().get(DropReason::RateLimited), 10);
}

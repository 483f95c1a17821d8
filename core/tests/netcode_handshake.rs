//! Our client against our server, datagrams moved by hand: handshake, payloads both ways,
//! keep-alives, timeouts, disconnects, server full, several server addresses, token expiry,
//! and nonce uniqueness over a long run.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

mod netsim;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use netsim::*;
use zone_core::netcode::crypto::packet_nonce;
use zone_core::netcode::packet::read_header;
use zone_core::netcode::*;

#[test]
fn handshake_and_payloads_both_ways() {
    let mut sim = Sim::new(new_server(4));
    let spec = TokenSpec::new(42);
    let c = sim.add_client(&spec, client_addr(1));
    assert_eq!(sim.state(c), ClientState::SendingConnectionRequest);
    sim.connect_all();

    assert_eq!(
        sim.clients[c].states,
        [
            ClientState::Disconnected,
            ClientState::SendingConnectionRequest,
            ClientState::SendingConnectionResponse,
            ClientState::Connected
        ]
    );
    assert_eq!(
        sim.server_events[0],
        SEvent::Connected {
            index: 0,
            client_id: 42,
            address: client_addr(1),
            user_data: spec.user_data().to_vec()
        }
    );
    assert_eq!(
        sim.clients[c].events[0],
        CEvent::Connected {
            client_index: 0,
            max_clients: 4
        }
    );
    assert_eq!(sim.clients[c].client.client_index(), Some(0));
    assert_eq!(sim.server.client_id(0), Some(42));
    assert_eq!(sim.server.user_data(0), Some(&spec.user_data()));
    assert_eq!(sim.server.pending_clients(), 0);

    // Server to client, before the client confirmed: a keep-alive goes first.
    sim.server.send_payload(0, b"hello client").unwrap();
    let out = sim.drain_server();
    let types: Vec<PacketType> = out
        .iter()
        .map(|w| read_header(&w.bytes, &PacketType::ALL).unwrap().packet_type)
        .collect();
    assert!(
        types.ends_with(&[PacketType::KeepAlive, PacketType::Payload]),
        "{types:?}"
    );
    sim.deliver_to_clients(out);
    assert!(
        sim.clients[c]
            .events
            .contains(&CEvent::Payload(b"hello client".to_vec()))
    );

    // Client to server.
    sim.clients[c].client.send_payload(b"hello server").unwrap();
    sim.flush_client(c);
    assert_eq!(
        sim.server_events.last(),
        Some(&SEvent::Payload {
            index: 0,
            data: b"hello server".to_vec()
        })
    );

    // Now confirmed: no keep-alive prefix any more.
    sim.server.send_payload(0, &[9u8; 1200]).unwrap();
    let out = sim.drain_server();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].bytes.len(), 1 + 1 + 1200 + 16);
    sim.deliver_to_clients(out);
    assert_eq!(
        sim.clients[c].events.last(),
        Some(&CEvent::Payload(vec![9u8; 1200]))
    );

    // Many payloads both ways, in order.
    for i in 0..500u32 {
        sim.server.send_payload(0, &i.to_le_bytes()).unwrap();
        sim.clients[c]
            .client
            .send_payload(&i.to_be_bytes())
            .unwrap();
        sim.step();
    }
    let got_client: Vec<Vec<u8>> = sim.clients[c]
        .events
        .iter()
        .filter_map(|e| match e {
            CEvent::Payload(d) if d.len() == 4 => Some(d.clone()),
            _ => None,
        })
        .collect();
    let want: Vec<Vec<u8>> = (0..500u32).map(|i| i.to_le_bytes().to_vec()).collect();
    assert_eq!(got_client, want);
    let got_server: Vec<Vec<u8>> = sim
        .server_events
        .iter()
        .filter_map(|e| match e {
            SEvent::Payload { data, .. } if data.len() == 4 => Some(data.clone()),
            _ => None,
        })
        .collect();
    let want: Vec<Vec<u8>> = (0..500u32).map(|i| i.to_be_bytes().to_vec()).collect();
    assert_eq!(got_server, want);
    assert_eq!(
        sim.server.drop_counters().total(),
        0,
        "{:?}",
        sim.server.drop_counters()
    );
    assert_eq!(
        sim.clients[c].client.drop_counters().total(),
        0,
        "{:?}",
        sim.clients[c].client.drop_counters()
    );
}

#[test]
fn payload_size_limits_on_send() {
    let mut sim = Sim::new(new_server(2));
    let c = sim.add_client(&TokenSpec::new(1), client_addr(1));
    assert_eq!(
        sim.clients[c].client.send_payload(b"x"),
        Err(SendError::NotConnected)
    );
    sim.connect_all();
    assert_eq!(
        sim.clients[c].client.send_payload(&[]),
        Err(SendError::PayloadSize { got: 0 })
    );
    assert_eq!(
        sim.clients[c].client.send_payload(&[0; 1201]),
        Err(SendError::PayloadSize { got: 1201 })
    );
    assert_eq!(
        sim.server.send_payload(0, &[0; 1201]),
        Err(SendError::PayloadSize { got: 1201 })
    );
    assert_eq!(
        sim.server.send_payload(1, b"x"),
        Err(SendError::NotConnected)
    );
    assert_eq!(
        sim.server.send_payload(2, b"x"),
        Err(SendError::InvalidClientIndex {
            got: 2,
            max_clients: 2
        })
    );
}

#[test]
fn keep_alives_hold_an_idle_connection() {
    let mut sim = Sim::new(new_server(2));
    let c = sim.add_client(&TokenSpec::new(1), client_addr(1));
    sim.connect_all();
    let before = sim.from_server.len();
    sim.run_for(Duration::from_secs(30));
    assert_eq!(sim.state(c), ClientState::Connected);
    assert!(sim.server.is_connected(0));
    let keep_alives = sim.from_server[before..]
        .iter()
        .filter(|w| {
            read_header(&w.bytes, &PacketType::ALL).unwrap().packet_type == PacketType::KeepAlive
        })
        .count();
    // 10 Hz for 30 s.
    assert!(
        (280..=310).contains(&keep_alives),
        "{keep_alives} keep-alives"
    );
}

#[test]
fn server_times_out_a_silent_client() {
    let mut sim = Sim::new(new_server(2));
    let c = sim.add_client(&TokenSpec::new(1), client_addr(1));
    sim.connect_all();
    sim.clients[c].online = false;
    sim.run_for(Duration::from_millis(4900));
    assert!(sim.server.is_connected(0), "timeout is 5 s");
    sim.run_for(Duration::from_millis(300));
    assert!(!sim.server.is_connected(0));
    assert_eq!(
        sim.server_events.last(),
        Some(&SEvent::Disconnected {
            index: 0,
            client_id: 1,
            reason: DisconnectReason::TimedOut
        })
    );
}

#[test]
fn client_times_out_a_silent_server() {
    let mut sim = Sim::new(new_server(2));
    let c = sim.add_client(&TokenSpec::new(1), client_addr(1));
    sim.connect_all();
    sim.server_online = false;
    sim.run_for(Duration::from_millis(5200));
    assert_eq!(sim.state(c), ClientState::ConnectionTimedOut);
    assert_eq!(
        sim.clients[c].events.last(),
        Some(&CEvent::Disconnected(ClientState::ConnectionTimedOut))
    );
    // Terminal: nothing more is sent.
    sim.drain_client(c);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.clients[c].client.poll_transmit().is_none());
}

#[test]
fn client_disconnect_is_redundant_and_reaches_the_server() {
    let mut sim = Sim::new(new_server(2));
    let c = sim.add_client(&TokenSpec::new(7), client_addr(1));
    sim.connect_all();
    sim.clients[c].client.disconnect().unwrap();
    let out = sim.drain_client(c);
    assert_eq!(out.len(), 10);
    assert!(out.iter().all(
        |w| read_header(&w.bytes, &PacketType::ALL).unwrap().packet_type == PacketType::Disconnect
    ));
    assert_eq!(sim.state(c), ClientState::Disconnected);
    let straggler = out[0].clone();
    for w in out {
        sim.deliver_to_server(w.from, w.bytes);
    }
    assert!(!sim.server.is_connected(0));
    assert_eq!(
        sim.server_events.last(),
        Some(&SEvent::Disconnected {
            index: 0,
            client_id: 7,
            reason: DisconnectReason::ClientRequested
        })
    );
    // The 9 redundant copies come from an address that is no longer mapped, but that left
    // just now: benign, not counted with the unknown addresses (the hostile-traffic signal).
    assert_eq!(
        sim.server.drop_counters().get(DropReason::AfterDisconnect),
        9
    );
    assert_eq!(
        sim.server.drop_counters().get(DropReason::UnknownAddress),
        0
    );
    // Seconds later, a packet from that address is unknown again.
    sim.run_for(Duration::from_secs(3));
    sim.deliver_to_server(straggler.from, straggler.bytes);
    assert_eq!(
        sim.server.drop_counters().get(DropReason::UnknownAddress),
        1
    );
    assert_eq!(
        sim.clients[c].client.disconnect(),
        Err(SendError::NotConnected)
    );
}

#[test]
fn server_disconnect_and_disconnect_all() {
    let mut sim = Sim::new(new_server(3));
    for i in 0..3 {
        sim.add_client(&TokenSpec::new(100 + i), client_addr(i as u16));
    }
    sim.connect_all();
    sim.server.disconnect(1).unwrap();
    assert_eq!(sim.server.disconnect(1), Err(SendError::NotConnected));
    let out = sim.drain_server();
    assert_eq!(out.len(), 10, "redundant disconnect packets");
    assert!(out.iter().all(|w| w.to == client_addr(1)));
    sim.deliver_to_clients(out);
    assert_eq!(sim.state(1), ClientState::Disconnected);
    assert_eq!(
        sim.server.poll_event().map(SEvent::from),
        Some(SEvent::Disconnected {
            index: 1,
            client_id: 101,
            reason: DisconnectReason::ServerRequested
        })
    );
    sim.server.disconnect_all();
    let out = sim.drain_server();
    assert_eq!(out.len(), 20);
    sim.deliver_to_clients(out);
    assert_eq!(sim.state(0), ClientState::Disconnected);
    assert_eq!(sim.state(2), ClientState::Disconnected);
    assert_eq!(sim.server.connected_clients(), 0);
    let mut events = Vec::new();
    while let Some(e) = sim.server.poll_event() {
        events.push(SEvent::from(e));
    }
    assert_eq!(events.len(), 2);
}

#[test]
fn server_full_denies_at_request_time() {
    let mut sim = Sim::new(new_server(1));
    let a = sim.add_client(&TokenSpec::new(1), client_addr(1));
    sim.run_until(Duration::from_secs(2), |s| {
        s.state(a) == ClientState::Connected
    });
    let b = sim.add_client(&TokenSpec::new(2), client_addr(2));
    sim.run_until(Duration::from_secs(2), |s| s.state(b).is_error());
    assert_eq!(sim.state(b), ClientState::ConnectionDenied);
    assert!(sim.server.denied_sent() >= 1);
    assert_eq!(sim.state(a), ClientState::Connected);
    // The denied packet uses the global sequence.
    let denied = sim
        .from_server
        .iter()
        .find(|w| {
            read_header(&w.bytes, &PacketType::ALL).unwrap().packet_type
                == PacketType::ConnectionDenied
        })
        .unwrap();
    assert!(
        read_header(&denied.bytes, &PacketType::ALL)
            .unwrap()
            .sequence
            >= 1 << 63
    );
}

#[test]
fn server_full_denies_at_response_time() {
    let mut sim = Sim::new(new_server(1));
    let a = sim.add_client(&TokenSpec::new(1), client_addr(1));
    let b = sim.add_client(&TokenSpec::new(2), client_addr(2));
    // Both get challenged before either connects: exercise one step at a time.
    sim.run_until(Duration::from_secs(3), |s| {
        s.state(a).is_error() || s.state(b).is_error()
    });
    sim.run_for(Duration::from_millis(200));
    let states = [sim.state(a), sim.state(b)];
    assert!(states.contains(&ClientState::Connected), "{states:?}");
    assert!(
        states.contains(&ClientState::ConnectionDenied),
        "{states:?}"
    );
    assert_eq!(sim.server.connected_clients(), 1);
}

#[test]
fn second_server_address_used_after_request_timeout() {
    let dead: SocketAddr = "10.9.9.9:1".parse().unwrap();
    let mut spec = TokenSpec::new(5);
    spec.addresses = vec![dead, server_addr()];
    spec.timeout_seconds = 1;
    let mut sim = Sim::new(new_server(2));
    let c = sim.add_client(&spec, client_addr(1));
    assert_eq!(sim.clients[c].client.server_address(), Some(dead));
    sim.run_until(Duration::from_secs(3), |s| {
        s.state(c) == ClientState::Connected
    });
    assert_eq!(sim.clients[c].client.server_address(), Some(server_addr()));
    assert_eq!(
        sim.clients[c].states,
        [
            ClientState::Disconnected,
            ClientState::SendingConnectionRequest,
            ClientState::SendingConnectionResponse,
            ClientState::Connected
        ],
        "the self-transition to the next server is not a state change"
    );
    assert!(sim.to_server.iter().any(|w| w.to == dead));
}

#[test]
fn all_servers_silent_gives_request_timed_out() {
    let mut spec = TokenSpec::new(5);
    spec.addresses = vec!["10.9.9.9:1".parse().unwrap(), "10.9.9.9:2".parse().unwrap()];
    spec.timeout_seconds = 1;
    let mut sim = Sim::new(new_server(2));
    let c = sim.add_client(&spec, client_addr(1));
    sim.run_until(Duration::from_secs(5), |s| s.state(c).is_error());
    assert_eq!(sim.state(c), ClientState::ConnectionRequestTimedOut);
    let tried: HashSet<SocketAddr> = sim.to_server.iter().map(|w| w.to).collect();
    assert_eq!(tried.len(), 2);
    // About one second per server.
    assert!(sim.now - Duration::from_secs(1000) >= Duration::from_secs(2));
}

#[test]
fn response_timed_out_when_keep_alive_never_comes() {
    let mut sim = Sim::new(new_server(2));
    let mut spec = TokenSpec::new(5);
    spec.timeout_seconds = 1;
    let c = sim.add_client(&spec, client_addr(1));
    sim.run_until(Duration::from_secs(1), |s| {
        s.state(c) == ClientState::SendingConnectionResponse
    });
    sim.server_online = false;
    sim.run_until(Duration::from_secs(3), |s| s.state(c).is_error());
    assert_eq!(sim.state(c), ClientState::ConnectionResponseTimedOut);
}

#[test]
fn denied_by_first_server_then_second_server_connects() {
    // Server 1 (full) denies; the client moves on to server 2.
    let other: SocketAddr = "10.0.0.2:40000".parse().unwrap();
    let mut spec = TokenSpec::new(9);
    spec.addresses = vec![server_addr(), other];
    let mut sim = Sim::new(new_server(1));
    let filler = sim.add_client(&TokenSpec::new(1), client_addr(50));
    sim.run_until(Duration::from_secs(2), |s| {
        s.state(filler) == ClientState::Connected
    });
    let c = sim.add_client(&spec, client_addr(1));
    sim.run_until(Duration::from_secs(2), |s| {
        s.clients[c].client.server_address() == Some(other)
    });
    assert_eq!(sim.state(c), ClientState::SendingConnectionRequest);
    // Server 2, reached by hand.
    let mut server2 = Server::new(
        ServerConfig::new(PROTOCOL_ID, private_key(), 4, vec![other]),
        Key::from_bytes([1; 32]),
    )
    .unwrap();
    let now = sim.now;
    let unix = sim.unix();
    let mut connected = false;
    for i in 0..100u32 {
        let t = now + Duration::from_millis(10 * u64::from(i));
        let client = &mut sim.clients[c].client;
        client.update(t);
        let mut outs = Vec::new();
        while let Some(tx) = client.poll_transmit() {
            assert_eq!(tx.destination, other);
            outs.push(tx.payload.to_vec());
        }
        for mut d in outs {
            server2.process(t, unix, client_addr(1), &mut d);
        }
        let mut back = Vec::new();
        while let Some(tx) = server2.poll_transmit() {
            back.push(tx.payload.to_vec());
        }
        for mut d in back {
            if let Some(ClientEvent::Connected { .. }) = client.process(t, other, &mut d) {
                connected = true;
            }
        }
        if connected {
            break;
        }
    }
    assert!(connected);
    assert_eq!(server2.client_id(0), Some(9));
}

#[test]
fn connect_token_expiry_while_connecting() {
    let mut spec = TokenSpec::new(5);
    spec.addresses = vec!["10.9.9.9:1".parse().unwrap()];
    spec.expire = spec.create + 2;
    spec.timeout_seconds = -1;
    let mut sim = Sim::new(new_server(2));
    let c = sim.add_client(&spec, client_addr(1));
    sim.run_for(Duration::from_millis(1990));
    assert_eq!(sim.state(c), ClientState::SendingConnectionRequest);
    sim.run_for(Duration::from_millis(20));
    assert_eq!(sim.state(c), ClientState::ConnectTokenExpired);
}

#[test]
fn disabled_timeout_keeps_connection_without_traffic() {
    let mut spec = TokenSpec::new(5);
    spec.timeout_seconds = -1;
    let mut sim = Sim::new(new_server(2));
    let c = sim.add_client(&spec, client_addr(1));
    sim.connect_all();
    sim.clients[c].online = false;
    sim.server_online = false;
    sim.run_for(Duration::from_secs(20));
    sim.server_online = true;
    sim.clients[c].online = true;
    sim.step();
    assert!(sim.server.is_connected(0));
    assert_eq!(sim.state(c), ClientState::Connected);
}

#[test]
fn slot_is_reused_after_disconnect_with_a_new_token() {
    let mut sim = Sim::new(new_server(1));
    let a = sim.add_client(&TokenSpec::new(1), client_addr(1));
    sim.connect_all();
    sim.clients[a].client.disconnect().unwrap();
    sim.flush_client(a);
    assert_eq!(sim.server.connected_clients(), 0);
    let b = sim.add_client(&TokenSpec::new(2), client_addr(2));
    sim.run_until(Duration::from_secs(2), |s| {
        s.state(b) == ClientState::Connected
    });
    assert_eq!(sim.server.client_id(0), Some(2));
}

#[test]
fn many_clients_connect_and_exchange() {
    let n = 64;
    let mut sim = Sim::new(new_server(n));
    for i in 0..n {
        sim.add_client(&TokenSpec::new(1000 + i as u64), client_addr(i as u16));
    }
    sim.connect_all();
    assert_eq!(sim.server.connected_clients(), n);
    for i in 0..n {
        let idx = sim.server.client_index(client_addr(i as u16)).unwrap();
        assert_eq!(sim.server.client_id(idx), Some(1000 + i as u64));
        sim.server.send_payload(idx, &[i as u8; 100]).unwrap();
    }
    let out = sim.drain_server();
    sim.deliver_to_clients(out);
    for i in 0..n {
        assert_eq!(
            sim.clients[i].events.last(),
            Some(&CEvent::Payload(vec![i as u8; 100]))
        );
    }
}

/// (key, nonce) pairs of every datagram the server sent, over a long run that mixes
/// challenges and denials (global sequence) with keep-alives and payloads (per-client
/// sequence) under the same server-to-client keys.
#[test]
fn nonces_never_collide_over_a_long_run() {
    const N: usize = 12;
    let mut sim = Sim::new(new_server(2));
    // Clients 0 and 1 connect, but lose the server's first replies for a second, so the server
    // answers ten or so connection requests from each with global-sequence challenges under
    // their keys before the per-client sequence starts. Clients 2.. are denied (server full),
    // one every 250 steps, under their own keys.
    sim.add_client(&TokenSpec::new(10), client_addr(0));
    sim.add_client(&TokenSpec::new(11), client_addr(1));
    sim.lose_server_replies = true;
    sim.run_for(Duration::from_secs(1));
    sim.lose_server_replies = false;
    sim.connect_all();
    for round in 0..3000u32 {
        if round % 3 == 0 {
            sim.server.send_payload(0, &round.to_le_bytes()).unwrap();
        }
        if round % 5 == 0 {
            sim.server.send_payload(1, &round.to_le_bytes()).unwrap();
        }
        if round % 250 == 0 && sim.clients.len() < N {
            let i = sim.clients.len();
            sim.add_client(&TokenSpec::new(10 + i as u64), client_addr(i as u16));
        }
        sim.step();
    }
    for i in 2..N {
        assert_eq!(sim.state(i), ClientState::ConnectionDenied);
    }
    // Key of each destination.
    let key_of = |to: SocketAddr| -> [u8; 32] {
        let i = (0..N).find(|&i| client_addr(i as u16) == to).unwrap();
        *sim.clients[i].token.server_to_client_key.as_bytes()
    };
    let mut seen = HashSet::new();
    let mut global = 0;
    let mut per_client = 0;
    for w in &sim.from_server {
        let h = read_header(&w.bytes, &PacketType::ALL).unwrap();
        if h.sequence >= 1 << 63 {
            global += 1;
        } else {
            per_client += 1;
        }
        assert!(
            seen.insert((key_of(w.to), packet_nonce(h.sequence))),
            "nonce reused: {:?} seq {}",
            h.packet_type,
            h.sequence
        );
    }
    assert!(global > 10, "{global} global-sequence packets");
    assert!(per_client > 1500, "{per_client} per-client packets");
    // Client to server: each client's own sequence never repeats under its key either.
    let mut seen = HashSet::new();
    for w in &sim.to_server {
        if w.bytes.first() == Some(&0) {
            continue; // connection request: not encrypted with a packet key
        }
        let h = read_header(&w.bytes, &PacketType::ALL).unwrap();
        let i = (0..N).find(|&i| client_addr(i as u16) == w.from).unwrap();
        let key = *sim.clients[i].token.client_to_server_key.as_bytes();
        assert!(seen.insert((key, h.sequence)));
    }
}

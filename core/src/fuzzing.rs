//! Fuzz target bodies, compiled into the crate so that `fuzz/` (cargo fuzz, nightly) and the
//! corpus replay test (`core/tests/fuzz_corpus.rs`, stable `cargo test`) run the same code.
//! Each body takes arbitrary bytes, must never panic, and asserts the invariants of its area.
//! Not part of the supported API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use crate::client::ClientSession;
use crate::netcode::{
    self, Client, ClientEvent, ClientState, ConnectToken, ConnectTokenParams, Key, Server,
    ServerConfig,
};
use crate::protocol::{ClientPacket, EntityUpdate, NetEntity, NetKind, ServerPacket};
use crate::replication::{ReplicationConfig, Replicator};
use crate::{AbilityId, AbilityUse, EntityId, PlayerId, PlayerInput, Zone, ZoneConfig, ZoneId};

/// A fuzz target body.
pub type Body = fn(&[u8]);

/// Every target, by name (the file names under `fuzz/fuzz_targets/` and `fuzz/corpus/`).
pub const TARGETS: &[(&str, Body)] = &[
    ("netcode_server", netcode_server),
    ("netcode_client", netcode_client),
    ("connect_token", connect_token),
    ("client_packet", client_packet),
    ("client_session", client_session),
    ("protocol_roundtrip", protocol_roundtrip),
    ("server_packet", server_packet),
    ("replication_loss", replication_loss),
    ("zone_script", zone_script),
    ("replicator_payloads", replicator_payloads),
    ("rules_toml", rules_toml),
];

/// A little cursor over fuzz bytes that never fails (zeros when exhausted).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const PROTOCOL: u64 = 0x00F0_22F0_22F0_22F0;
const UNIX: u64 = 1_800_000_000;

fn server_addr() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 40_000))
}

fn client_addr(i: u8) -> SocketAddr {
    SocketAddr::from(([192, 168, 0, i], 50_000))
}

fn token(client_id: u64) -> [u8; 2048] {
    let servers = [server_addr()];
    let params = ConnectTokenParams {
        protocol_id: PROTOCOL,
        create_timestamp: UNIX,
        expire_timestamp: UNIX + 300,
        timeout_seconds: 10,
        client_id,
        server_addresses: &servers,
        client_to_server_key: Key::from_bytes([client_id as u8; 32]),
        server_to_client_key: Key::from_bytes([!(client_id as u8); 32]),
        user_data: [0; 256],
        nonce: [client_id as u8 ^ 0x5A; 24],
    };
    ConnectToken::generate(&params, &Key::from_bytes([9; 32]))
        .unwrap()
        .to_bytes()
        .unwrap()
}

/// A server with one connected client (at `client_addr(1)`), and that client.
fn connected_pair() -> (Server, Client, Duration) {
    let config = ServerConfig::new(PROTOCOL, Key::from_bytes([9; 32]), 4, vec![server_addr()]);
    let mut server = Server::new(config, Key::from_bytes([3; 32])).unwrap();
    let mut client = Client::new(Duration::ZERO, &token(1));
    let mut now = Duration::ZERO;
    for _ in 0..200 {
        now += Duration::from_millis(20);
        client.update(now);
        let mut up = Vec::new();
        while let Some(t) = client.poll_transmit() {
            up.push(t.payload.to_vec());
        }
        for mut d in up {
            let _ = server.process(now, UNIX + 1, client_addr(1), &mut d);
        }
        server.update(now);
        let mut down = Vec::new();
        while let Some(t) = server.poll_transmit() {
            down.push(t.payload.to_vec());
        }
        for mut d in down {
            let _ = client.process(now, server_addr(), &mut d);
        }
        if client.state() == ClientState::Connected {
            break;
        }
    }
    assert_eq!(
        client.state(),
        ClientState::Connected,
        "fuzz fixture handshake"
    );
    (server, client, now)
}

/// Arbitrary datagrams from arbitrary (or the connected client's) addresses into a server with
/// a live connection: no panic, and no reply to an unauthenticated address larger than what
/// it answers.
pub fn netcode_server(data: &[u8]) {
    let (mut server, _client, mut now) = connected_pair();
    let mut b = Bytes(data);
    while !b.is_empty() {
        let from = match b.u8() % 4 {
            0 => client_addr(1),
            n => client_addr(n + 1),
        };
        now += Duration::from_millis(u64::from(b.u8()));
        let len = usize::from(b.u16() % 1_600);
        let mut datagram = b.take(len).to_vec();
        let size = datagram.len();
        let _ = server.process(now, UNIX + 2, from, &mut datagram);
        while let Some(t) = server.poll_transmit() {
            if t.destination != client_addr(1) {
                assert!(
                    t.payload.len() < size.max(1),
                    "amplification: {} byte reply to {size} bytes",
                    t.payload.len()
                );
            }
        }
        server.update(now);
        while server.poll_transmit().is_some() {}
    }
}

/// Arbitrary datagrams into a connected client: no panic.
pub fn netcode_client(data: &[u8]) {
    let (_server, mut client, mut now) = connected_pair();
    let mut b = Bytes(data);
    while !b.is_empty() {
        let from = if b.u8() % 2 == 0 {
            server_addr()
        } else {
            client_addr(7)
        };
        now += Duration::from_millis(u64::from(b.u8()));
        let len = usize::from(b.u16() % 1_600);
        let mut datagram = b.take(len).to_vec();
        if let Some(ClientEvent::Payload(p)) = client.process(now, from, &mut datagram) {
            assert!(!p.is_empty() && p.len() <= netcode::MAX_PAYLOAD_BYTES);
        }
        client.update(now);
        while client.poll_transmit().is_some() {}
    }
}

/// Connect-token decoding, public and private parts: no panic; what parses re-encodes.
pub fn connect_token(data: &[u8]) {
    if let Ok(t) = ConnectToken::read(data)
        && let Ok(bytes) = t.to_bytes()
    {
        assert_eq!(ConnectToken::read(&bytes).ok().as_ref(), Some(&t));
    }
    let _ = netcode::PrivateConnectToken::read_plaintext(data);
    let mut server = Server::new(
        ServerConfig::new(PROTOCOL, Key::from_bytes([9; 32]), 2, vec![server_addr()]),
        Key::from_bytes([3; 32]),
    )
    .unwrap();
    let mut request = data.to_vec();
    let _ = server.process(
        Duration::from_secs(1),
        UNIX + 1,
        client_addr(2),
        &mut request,
    );
}

/// Client -> server packet decoding: no panic; what decodes re-encodes to the same packet.
pub fn client_packet(data: &[u8]) {
    if let Ok(p) = ClientPacket::decode(data) {
        let mut buf = Vec::new();
        p.encode(&mut buf);
        assert_eq!(ClientPacket::decode(&buf).as_ref(), Ok(&p));
    }
}

/// A sequence of server payloads into one client session: no panic.
pub fn client_session(data: &[u8]) {
    let mut session = ClientSession::new(PlayerId(1));
    let mut b = Bytes(data);
    while !b.is_empty() {
        let len = usize::from(b.u16() % 1_300);
        let _ = session.handle_packet(b.take(len));
        while session.poll_event().is_some() {}
    }
    let v = session.entities();
    assert!(
        v.windows(2).all(|w| w[0].id < w[1].id),
        "view sorted by id, no duplicates"
    );
}

fn net_entity(b: &mut Bytes<'_>, id: u32, tick: u64) -> NetEntity {
    let mut e = NetEntity {
        id: EntityId(id),
        anchor: tick.saturating_sub(u64::from(b.u16())),
        kind: match b.u8() % 3 {
            0 => NetKind::Npc,
            1 => NetKind::Player,
            _ => NetKind::Prop,
        },
        x: b.u32() as i32,
        y: b.u32() as i32,
        vx: b.u16() as i16,
        vy: b.u16() as i16,
        facing: b.u8(),
        health: b.u16(),
        max_health: b.u16(),
        alive: b.u8().is_multiple_of(2),
        ext: ext(b),
    };
    if !e.moving() {
        e.anchor = 0;
    }
    e
}

/// Replicated plugin state in its one form: no bytes without a component.
fn ext(b: &mut Bytes<'_>) -> crate::protocol::Ext {
    let mut ext = crate::protocol::Ext {
        present: b.u8(),
        ..Default::default()
    };
    if ext.present != 0 {
        let used = usize::from(b.u8()) % (ext.bytes.len() + 1);
        for v in &mut ext.bytes[..used] {
            *v = b.u8();
        }
    }
    ext
}

/// Server -> client packet decoding (protocol 2: section flags, tracks, pairs) from raw bytes:
/// no panic; what decodes re-encodes (shortest forms) to bytes that decode to the same
/// packet; its updates apply to any record without panicking (checked arithmetic).
pub fn server_packet(data: &[u8]) {
    let Ok(p) = ServerPacket::decode(data) else {
        return;
    };
    let mut buf = Vec::new();
    p.encode(&mut buf);
    assert!(buf.len() <= data.len(), "re-encoding is never longer");
    assert_eq!(
        ServerPacket::decode(&buf).as_ref(),
        Ok(&p),
        "decode(encode(p)) == p"
    );
    let mut b = Bytes(data);
    let base = net_entity(&mut b, 1, p.tick);
    for u in &p.updates {
        for hz in [1, 20, 60, u32::MAX] {
            let _ = u.apply(&base, p.tick, hz);
        }
    }
    for e in &p.spawns {
        let _ = e.at(u64::MAX, 60);
        let _ = e.at(0, 1);
    }
}

/// Structured packets built from the bytes: encode -> decode is the identity.
pub fn protocol_roundtrip(data: &[u8]) {
    let mut b = Bytes(data);
    let tick = b.u64().max(1);
    let mut p = ServerPacket {
        tick,
        baseline: if b.u8() % 2 == 0 { 0 } else { tick / 2 },
        reliable_ack: b.u16(),
        ..ServerPacket::default()
    };
    let mut index = 0u32;
    for _ in 0..b.u8() % 32 {
        index = index.saturating_add(u32::from(b.u8()));
        if index == u32::MAX {
            break;
        }
        p.removed.push(index);
        index += 1;
    }
    let mut index = 0u32;
    for _ in 0..b.u8() % 32 {
        index = index.saturating_add(u32::from(b.u8()));
        if index >= u32::MAX - 1 {
            break;
        }
        let mask = b.u8() % 15 + 1;
        let u = EntityUpdate {
            index,
            track: (mask & 1 != 0).then(|| {
                (
                    (b.u8() % 2 == 0).then(|| u64::from(b.u16()).min(tick)),
                    b.u32() as i32,
                    b.u32() as i32,
                )
            }),
            vel: (mask & 2 != 0).then(|| (i32::from(b.u16() as i16), i32::from(b.u16() as i16))),
            facing: (mask & 4 != 0).then(|| b.u8()),
            status: (mask & 8 != 0).then(|| (b.u16(), b.u16(), b.u8() % 2 == 0)),
            ext: None,
        };
        let mut u = u;
        if u.status.is_some() && b.u8() % 2 == 0 {
            u.ext = Some(ext(&mut b));
        }
        p.updates.push(u);
        index += 1;
    }
    let mut id = 0u32;
    for _ in 0..b.u8() % 16 {
        id = id.saturating_add(u32::from(b.u16()));
        if id >= u32::MAX - 1 {
            break;
        }
        p.spawns.push(net_entity(&mut b, id, tick));
        id += 1;
    }
    let mut buf = Vec::new();
    p.encode(&mut buf);
    if buf.len() <= crate::protocol::MAX_PACKET {
        assert_eq!(ServerPacket::decode(&buf), Ok(p));
    }
}

fn small_zone(players: u64) -> Zone {
    let mut zone = Zone::new(ZoneConfig::arena(ZoneId(1), 48, 48, 40), 7).unwrap();
    for p in 1..=players {
        let s = zone.new_character(PlayerId(p));
        zone.join(PlayerId(p), s).unwrap();
    }
    zone
}

/// Zone + replicator + two clients; the bytes decide which packets are lost, duplicated or
/// delayed and which acks go back. Every packet a client accepts leaves it holding exactly
/// what the server recorded for that tick.
pub fn replication_loss(data: &[u8]) {
    let mut zone = small_zone(2);
    let mut rep = Replicator::new(
        ReplicationConfig {
            packet_budget: 300,
            ..ReplicationConfig::default()
        },
        zone.map().size(),
    );
    let players = [PlayerId(1), PlayerId(2)];
    let mut clients: Vec<ClientSession> = players.iter().map(|p| ClientSession::new(*p)).collect();
    for p in players {
        rep.connect(&zone, p);
    }
    let mut delayed: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut b = Bytes(data);
    let mut n = 0u32;
    while !b.is_empty() && n < 300 {
        n += 1;
        let ctl = b.u8();
        for (i, c) in clients.iter_mut().enumerate() {
            let dir = glam::Vec2::new(f32::from(b.u8() as i8), f32::from(b.u8() as i8))
                .normalize_or_zero();
            c.push_input(PlayerInput::movement(
                0,
                zone.current_tick(),
                dir,
                ctl & 1 == 0,
            ));
            if ctl & (2 << i) == 0 {
                let mut buf = Vec::new();
                c.write_packet(&mut buf);
                let _ = rep.handle_packet(&mut zone, players[i], &buf);
            }
        }
        zone.tick();
        rep.update(&zone);
        let packets: Vec<(usize, Vec<u8>)> = rep
            .packets()
            .enumerate()
            .map(|(i, (_, p))| (i, p.to_vec()))
            .collect();
        for (i, p) in packets {
            match (ctl >> 4) & 3 {
                0 => delayed.push((i, p)),
                1 => {}
                _ => {
                    if clients[i].handle_packet(&p).is_ok() {
                        let t = clients[i].newest_tick();
                        if let Some(sent) = rep.sent_view(players[i], t) {
                            assert_eq!(
                                clients[i].entities(),
                                sent.as_slice(),
                                "client view equals the server's record"
                            );
                        }
                    }
                }
            }
        }
        if ctl >> 6 == 3 {
            for (i, p) in delayed.drain(..).rev() {
                let _ = clients[i].handle_packet(&p);
            }
        }
    }
}

/// A zone driven by an arbitrary input script, twice: no panic, equal hashes, speed cap holds.
pub fn zone_script(data: &[u8]) {
    let run = || {
        let mut zone = small_zone(3);
        let mut b = Bytes(data);
        let mut seq = [0u32; 3];
        let mut n = 0;
        while !b.is_empty() && n < 400 {
            n += 1;
            for p in 0..3u64 {
                let op = b.u8();
                let player = PlayerId(p + 1);
                match op % 8 {
                    0 => {
                        let _ = zone.leave(player);
                    }
                    1 => {
                        let s = zone.new_character(player);
                        let _ = zone.join(player, s);
                    }
                    _ => {
                        seq[p as usize] = seq[p as usize].wrapping_add(u32::from(b.u8() % 3));
                        let input = PlayerInput {
                            seq: seq[p as usize],
                            tick: zone
                                .current_tick()
                                .wrapping_add(u64::from(b.u8()))
                                .wrapping_sub(100),
                            move_x: f32::from_bits(b.u32()),
                            move_y: f32::from(b.u8() as i8) / 100.0,
                            run: op & 8 != 0,
                            facing: f32::from(b.u8() as i8) / 40.0,
                            ability: (op & 16 != 0).then(|| AbilityUse {
                                ability: AbilityId(b.u8() % 3),
                                target: EntityId(u32::from(b.u8())),
                                view_tick: 0,
                            }),
                        };
                        let _ = zone.handle_input(player, input);
                    }
                }
            }
            let before: Vec<_> = zone.entities().map(|e| (e.id, e.position)).collect();
            zone.tick();
            let cap =
                zone.rules().run_speed.max(zone.rules().npc.chase_speed) * zone.rules().dt() + 1e-3;
            for e in zone.entities() {
                if let Some((_, p)) = before.iter().find(|(id, _)| *id == e.id)
                    && e.alive
                    && p.distance(e.position) < 10.0
                {
                    assert!(
                        p.distance(e.position) <= cap,
                        "entity {:?} moved too fast",
                        e.id
                    );
                }
            }
        }
        zone.state_hash()
    };
    assert_eq!(run(), run(), "same script, same hash");
}

/// Arbitrary decrypted payloads from connected players into the replicator (what the shell
/// does with every netcode payload): no panic, zone keeps ticking.
pub fn replicator_payloads(data: &[u8]) {
    let mut zone = small_zone(2);
    let mut rep = Replicator::new(ReplicationConfig::default(), zone.map().size());
    rep.connect(&zone, PlayerId(1));
    rep.connect(&zone, PlayerId(2));
    let mut b = Bytes(data);
    while !b.is_empty() {
        let player = PlayerId(u64::from(b.u8() % 3) + 1);
        let len = usize::from(b.u16() % 1_300);
        let _ = rep.handle_packet(&mut zone, player, b.take(len));
        if b.u8() % 4 == 0 {
            zone.tick();
            rep.update(&zone);
        }
    }
    zone.tick();
    rep.update(&zone);
}

/// Rules files: no panic; what validates round-trips through TOML.
pub fn rules_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rules) = crate::Rules::from_toml_str(text) {
        let again = toml::to_string(&rules).unwrap();
        assert_eq!(crate::Rules::from_toml_str(&again).unwrap(), rules);
    }
    let _ = crate::TileMap::parse(text);
}

/// Meaningful starting inputs per target (valid packets, a real token, handshake-shaped data).
/// Real server packets (split out of a framed stream) and the worked example of PROTOCOL.md.
fn server_packet_seeds(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = stream;
    while let [lo, hi, tail @ ..] = rest {
        let n = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        out.push(tail[..n].to_vec());
        rest = &tail[n..];
    }
    out.push(vec![
        2, 1, 0xFB, 0xE9, 3, 1, 1, 0x1D, 0xFB, 0x2C, 1, 1, 2, 2, 3, 1, 0x1E, 0x20, 0, 0x28, 0x5A,
        0x64, 1, 1, 9, 7, 0, 0xFB, 0, 5, 0xFB, 0xFF, 0, 0x40, 0, 0x80, 0x64, 0x64,
    ]);
    out
}

/// The seed corpus of every target.
pub fn seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let tok = token(5).to_vec();
    let mut client_pkt = Vec::new();
    let mut cp = ClientPacket {
        ack_tick: 9,
        reliable_ack: 1,
        ping: Some(77),
        ..ClientPacket::default()
    };
    cp.inputs.push(crate::protocol::WireInput::from_input(
        &PlayerInput::movement(3, 8, glam::Vec2::X, true),
    ));
    cp.reliable.push(crate::protocol::ClientMessage::Chat {
        text: "hello".into(),
    });
    cp.encode(&mut client_pkt);
    // A real server packet stream for one client.
    let mut zone = small_zone(1);
    let mut rep = Replicator::new(ReplicationConfig::default(), zone.map().size());
    rep.connect(&zone, PlayerId(1));
    let mut stream = Vec::new();
    let mut single = Vec::new();
    for _ in 0..4 {
        zone.tick();
        rep.update(&zone);
        let p = rep
            .packets()
            .next()
            .map(|(_, p)| p.to_vec())
            .unwrap_or_default();
        stream.extend_from_slice(&(p.len() as u16).to_le_bytes());
        stream.extend_from_slice(&p);
        single = p;
    }
    // The same client handed off: its avatar leaves and a redirect follows in parts.
    let mut redirected = stream.clone();
    zone.leave(PlayerId(1));
    let mut fake_token = [0u8; crate::protocol::CONNECT_TOKEN_BYTES];
    fake_token[..1_100].fill(0xA5);
    for m in crate::protocol::redirect_messages(
        crate::ZoneId(2),
        std::net::SocketAddr::from(([10, 0, 0, 2], 40_001)),
        &fake_token,
    ) {
        rep.send_reliable(PlayerId(1), m);
    }
    for _ in 0..6 {
        zone.tick();
        rep.update(&zone);
        if let Some((_, p)) = rep.packets().next() {
            redirected.extend_from_slice(&(p.len() as u16).to_le_bytes());
            redirected.extend_from_slice(p);
        }
    }
    let framed = |chunks: &[&[u8]]| {
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&[0, 5]);
            out.extend_from_slice(&(c.len() as u16).to_le_bytes());
            out.extend_from_slice(c);
        }
        out
    };
    let script: Vec<u8> = (0..600u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    vec![
        (
            "netcode_server",
            vec![framed(&[&[0u8; 1078]]), framed(&[&[0x15; 40], &[0x16; 30]])],
        ),
        (
            "netcode_client",
            vec![framed(&[&[0x12; 60]]), framed(&[&[0x13; 30], &[0x17; 1]])],
        ),
        ("connect_token", vec![tok, vec![0; 1078]]),
        ("client_packet", vec![client_pkt.clone()]),
        (
            "client_session",
            vec![stream.clone(), single.clone(), redirected],
        ),
        ("protocol_roundtrip", vec![script.clone(), vec![7; 64]]),
        ("server_packet", server_packet_seeds(&stream)),
        (
            "replication_loss",
            vec![script.clone(), vec![0x20; 200], vec![0xE0; 200]],
        ),
        ("zone_script", vec![script.clone(), vec![2; 120]]),
        (
            "replicator_payloads",
            vec![
                [
                    &[
                        0u8,
                        (client_pkt.len() as u16 & 0xFF) as u8,
                        (client_pkt.len() >> 8) as u8,
                    ][..],
                    &client_pkt,
                ]
                .concat(),
                single,
            ],
        ),
        (
            "rules_toml",
            vec![
                toml::to_string(&crate::Rules::default())
                    .unwrap_or_default()
                    .into_bytes(),
                b"tick_hz = 30\n[npc]\nability = 1\n".to_vec(),
            ],
        ),
    ]
}

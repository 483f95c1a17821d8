//! Property tests of the wire protocol: encode -> decode is the identity for arbitrary
//! messages, and decoding arbitrary bytes never panics (it returns a typed error).

#![allow(clippy::unwrap_used)]

use proptest::collection::vec;
use proptest::prelude::*;
use zone_core::client::ClientSession;
use zone_core::game::MAX_ACTION_BYTES;
use zone_core::protocol::{
    ClientMessage, ClientPacket, EXT_BYTES, EntityUpdate, Ext, MAX_PACKET, NetEntity, NetKind,
    PROTOCOL_VERSION, ServerMessage, ServerPacket, WireInput,
};
use zone_core::{AbilityId, EntityId, PlayerId, ZoneId};

fn wire_input() -> impl Strategy<Value = WireInput> {
    (
        any::<u32>(),
        any::<u64>(),
        -127i8..=127,
        -127i8..=127,
        any::<bool>(),
        any::<u8>(),
        proptest::option::of((any::<u8>(), any::<u32>(), any::<u16>())),
    )
        .prop_map(
            |(seq, tick, move_x, move_y, run, facing, ability)| WireInput {
                seq,
                tick,
                move_x,
                move_y,
                run,
                facing,
                ability: ability.map(|(a, t, age)| (AbilityId(a), EntityId(t), age)),
            },
        )
}

fn chat() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 äöü€✓]{0,40}"
}

fn client_packet() -> impl Strategy<Value = ClientPacket> {
    (
        any::<u64>(),
        any::<u16>(),
        proptest::option::of(any::<u64>()),
        vec(wire_input(), 0..=8),
        any::<u16>(),
        vec(client_message(), 0..4),
    )
        .prop_map(
            |(ack_tick, reliable_ack, ping, inputs, first, reliable)| ClientPacket {
                ack_tick,
                reliable_ack,
                ping,
                inputs: inputs.into_iter().collect(),
                reliable_first: if reliable.is_empty() { 0 } else { first },
                reliable,
            },
        )
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        chat().prop_map(|text| ClientMessage::Chat { text }),
        any::<u64>().prop_map(|protocol_hash| ClientMessage::Game { protocol_hash }),
        (any::<u16>(), vec(any::<u8>(), 0..=MAX_ACTION_BYTES))
            .prop_map(|(kind, payload)| ClientMessage::Action { kind, payload }),
    ]
}

/// Replicated plugin state in its one form: no bytes without a component.
fn ext() -> impl Strategy<Value = Ext> {
    (any::<u8>(), any::<[u8; EXT_BYTES]>()).prop_map(|(present, bytes)| Ext {
        present,
        bytes: if present == 0 { [0; EXT_BYTES] } else { bytes },
    })
}

fn net_entity(id: u32, tick: u64) -> impl Strategy<Value = NetEntity> {
    (
        0..=tick.min(100_000),
        0u8..3,
        any::<i32>(),
        any::<i32>(),
        any::<i16>(),
        any::<i16>(),
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        any::<bool>(),
        ext(),
    )
        .prop_map(
            move |(age, kind, x, y, vx, vy, facing, health, max_health, alive, ext)| NetEntity {
                id: EntityId(id),
                // A standing entity's anchor is 0: its one form on the wire.
                anchor: if vx != 0 || vy != 0 { tick - age } else { 0 },
                kind: match kind {
                    0 => NetKind::Npc,
                    1 => NetKind::Player,
                    _ => NetKind::Prop,
                },
                x,
                y,
                vx,
                vy,
                facing,
                health,
                max_health,
                alive,
                ext,
            },
        )
}

fn update(index: u32, tick: u64) -> impl Strategy<Value = EntityUpdate> {
    (
        proptest::option::of((
            proptest::option::of(0..=tick.min(1_000_000)),
            any::<i32>(),
            any::<i32>(),
        )),
        proptest::option::of((-70_000i32..70_000, -70_000i32..70_000)),
        proptest::option::of(any::<u8>()),
        proptest::option::of((any::<u16>(), any::<u16>(), any::<bool>())),
        proptest::option::of(ext()),
    )
        .prop_map(move |(track, vel, facing, status, ext)| EntityUpdate {
            index,
            track,
            vel,
            facing,
            // Plugin state travels with the status.
            ext: ext.filter(|_| status.is_some()),
            status,
        })
        .prop_filter("an update changes something", |u| !u.is_empty())
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        (any::<u32>(), any::<u64>(), any::<u32>(), any::<u16>()).prop_map(|(z, p, e, hz)| {
            ServerMessage::Welcome {
                zone: ZoneId(z),
                player: PlayerId(p),
                entity: EntityId(e),
                tick_hz: hz,
            }
        }),
        (any::<u64>(), chat()).prop_map(|(p, text)| ServerMessage::Chat {
            from: PlayerId(p),
            text
        }),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
            any::<u16>(),
            any::<bool>()
        )
            .prop_map(|(a, t, ab, d, k)| ServerMessage::Hit {
                attacker: EntityId(a),
                target: EntityId(t),
                ability: AbilityId(ab),
                damage: d,
                killed: k
            }),
        any::<u8>().prop_map(|reason| ServerMessage::Goodbye { reason }),
        any::<u64>().prop_map(|protocol_hash| ServerMessage::Game { protocol_hash }),
        (
            any::<u32>(),
            any::<[u8; 4]>(),
            any::<u16>(),
            1u8..=zone_core::protocol::MAX_REDIRECT_PARTS,
            vec(any::<u8>(), 0..=zone_core::protocol::REDIRECT_PART_BYTES)
        )
            .prop_flat_map(|(z, ip, port, parts, token)| {
                (0..parts).prop_map(move |part| ServerMessage::Redirect {
                    zone: ZoneId(z),
                    address: std::net::SocketAddr::from((ip, port)),
                    part,
                    parts,
                    token: token.clone(),
                })
            }),
    ]
}

/// Strictly increasing values from sorted, deduplicated picks.
fn increasing(max_len: usize, bound: u32) -> impl Strategy<Value = Vec<u32>> {
    vec(0..bound, 0..max_len).prop_map(|mut v| {
        v.sort_unstable();
        v.dedup();
        v
    })
}

fn server_packet() -> impl Strategy<Value = ServerPacket> {
    (
        1u64..u64::MAX,
        any::<u16>(),
        proptest::option::of(any::<u64>()),
        any::<u16>(),
        vec(server_message(), 0..4),
        increasing(20, 5_000),
        increasing(20, 5_000),
        increasing(10, 1_000_000),
        any::<bool>(),
    )
        .prop_flat_map(
            |(tick, rack, pong, first, reliable, removed, upd_idx, spawn_ids, has_base)| {
                let updates: Vec<_> = upd_idx.iter().map(|&i| update(i, tick)).collect();
                let spawns: Vec<_> = spawn_ids.iter().map(|&id| net_entity(id, tick)).collect();
                let baseline = if has_base { tick / 2 } else { 0 };
                (
                    Just((tick, baseline, rack, pong, first, reliable, removed)),
                    updates,
                    spawns,
                    avatar(),
                )
            },
        )
        .prop_map(
            |(
                (tick, baseline, reliable_ack, pong, first, reliable, removed),
                updates,
                spawns,
                avatar,
            )| {
                ServerPacket {
                    tick,
                    baseline,
                    reliable_ack,
                    pong,
                    reliable_first: if reliable.is_empty() { 0 } else { first },
                    reliable,
                    removed,
                    updates,
                    spawns,
                    avatar,
                }
            },
        )
}

/// An avatar section: any subset of its fields (none: no section), finite numbers.
fn avatar() -> impl Strategy<Value = Option<zone_core::protocol::AvatarUpdate>> {
    let v = || proptest::option::of((-1e6f32..1e6, -1e6f32..1e6));
    (
        proptest::option::of(any::<u32>()),
        v(),
        v(),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|(seq, pos, vel, alive, late)| {
            let u = zone_core::protocol::AvatarUpdate {
                seq,
                pos: pos.map(|(x, y)| zone_core::Vec2::new(x, y)),
                vel: vel.map(|(x, y)| zone_core::Vec2::new(x, y)),
                alive,
                late,
            };
            (u != zone_core::protocol::AvatarUpdate::default()).then_some(u)
        })
}

proptest! {
    #[test]
    fn client_packets_round_trip(p in client_packet()) {
        let mut buf = Vec::new();
        p.encode(&mut buf);
        prop_assert!(buf.len() <= MAX_PACKET);
        prop_assert_eq!(ClientPacket::decode(&buf).unwrap(), p);
    }

    #[test]
    fn server_packets_round_trip(p in server_packet()) {
        let mut buf = Vec::new();
        p.encode(&mut buf);
        prop_assume!(buf.len() <= MAX_PACKET);
        prop_assert_eq!(ServerPacket::decode(&buf).unwrap(), p);
    }

    #[test]
    fn update_sizes_are_exact(p in server_packet()) {
        // The sizes the encoder reports add up to what it writes: the updates section is its
        // count and the records.
        let mut with = Vec::new();
        p.encode(&mut with);
        let without = ServerPacket { updates: Vec::new(), ..p.clone() };
        let mut without_buf = Vec::new();
        without.encode(&mut without_buf);
        let mut sum = 0;
        let mut prev = None;
        for u in &p.updates {
            sum += u.encoded_len(prev);
            prev = Some(u.index);
        }
        if !p.updates.is_empty() {
            sum += zone_core::protocol::wire::varint_len(p.updates.len() as u64);
        }
        prop_assert_eq!(with.len() - without_buf.len(), sum);
    }

    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(bytes in vec(any::<u8>(), 0..1400)) {
        let _ = ClientPacket::decode(&bytes);
        let _ = ServerPacket::decode(&bytes);
        let mut session = ClientSession::new(PlayerId(1));
        let _ = session.handle_packet(&bytes);
    }

    #[test]
    fn mutated_valid_packets_never_panic(p in server_packet(), flips in vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut buf = Vec::new();
        p.encode(&mut buf);
        for (at, x) in flips {
            let n = buf.len();
            if n > 0 {
                buf[at % n] ^= x;
            }
        }
        let mut session = ClientSession::new(PlayerId(1));
        let _ = session.handle_packet(&buf);
        let _ = ClientPacket::decode(&buf);
    }
}

#[test]
fn decoders_refuse_with_typed_reasons() {
    use zone_core::protocol::DecodeError;
    assert_eq!(ClientPacket::decode(&[]), Err(DecodeError::Truncated));
    assert_eq!(
        ClientPacket::decode(&[9, 1]),
        Err(DecodeError::BadVersion { got: 9 })
    );
    assert!(matches!(
        ClientPacket::decode(&[PROTOCOL_VERSION, 7]),
        Err(DecodeError::BadTag { .. })
    ));
    // Server packets: unknown section flags, an empty section, a baseline not before the tick,
    // an anchor before tick 0.
    let header =
        |tick: u8, age: u8, sections: u8| vec![PROTOCOL_VERSION, 1, tick, age, 0, sections];
    assert_eq!(
        ServerPacket::decode(&header(5, 0, 0)).map(|p| p.tick),
        Ok(5)
    );
    assert!(matches!(
        ServerPacket::decode(&header(5, 0, 64)),
        Err(DecodeError::BadTag {
            what: "packet sections",
            got: 64
        })
    ));
    // The avatar section: an empty or unknown mask, a truncated or non-finite number.
    for (mask, rest, want) in [(0u8, &[][..], "avatar mask"), (32, &[][..], "avatar mask")] {
        let mut p = header(5, 0, 32);
        p.push(mask);
        p.extend_from_slice(rest);
        assert!(
            matches!(ServerPacket::decode(&p), Err(DecodeError::BadTag { what, .. }) if what == want),
            "mask {mask}"
        );
    }
    let mut nan = header(5, 0, 32);
    nan.push(2);
    nan.extend_from_slice(&f32::NAN.to_le_bytes());
    nan.extend_from_slice(&1.0f32.to_le_bytes());
    assert_eq!(
        ServerPacket::decode(&nan),
        Err(DecodeError::OutOfRange("avatar number"))
    );
    let mut short = header(5, 0, 32);
    short.extend_from_slice(&[4, 0, 0]);
    assert_eq!(ServerPacket::decode(&short), Err(DecodeError::Truncated));
    let mut empty = header(5, 0, 4);
    empty.push(0);
    assert_eq!(
        ServerPacket::decode(&empty),
        Err(DecodeError::OutOfRange("empty section"))
    );
    assert_eq!(
        ServerPacket::decode(&header(5, 5, 0)),
        Err(DecodeError::OutOfRange("baseline tick"))
    );
    // One moving spawn of id 3 whose anchor age (6) is past the packet's tick (5).
    let mut early = header(5, 0, 16);
    early.extend_from_slice(&[1, 3, 4 | 1, 6, 0, 0, 2, 0, 0, 10, 10]);
    assert_eq!(
        ServerPacket::decode(&early),
        Err(DecodeError::OutOfRange("anchor tick"))
    );
    assert_eq!(
        ClientPacket::decode(&vec![1u8; MAX_PACKET + 1]),
        Err(DecodeError::TooLarge)
    );
    let mut ok = Vec::new();
    ClientPacket::default().encode(&mut ok);
    ok.push(0);
    assert_eq!(
        ClientPacket::decode(&ok),
        Err(DecodeError::TrailingBytes(1))
    );
    // 9 inputs: over the cap, refused before reading them.
    let mut nine = Vec::new();
    ClientPacket::default().encode(&mut nine);
    let inputs_at = nine.len() - 2;
    nine[inputs_at] = 9;
    assert!(matches!(
        ClientPacket::decode(&nine),
        Err(DecodeError::TooMany {
            what: "inputs",
            got: 9,
            ..
        })
    ));
}

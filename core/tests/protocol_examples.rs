//! The worked examples of `core/PROTOCOL.md`, byte for byte: a client written from the
//! document alone must produce and accept exactly these bytes.

#![allow(clippy::unwrap_used)]

use zone_core::protocol::wire::{WireReader, put_pair};
use zone_core::protocol::{
    ClientMessage, ClientPacket, EntityUpdate, Ext, NetEntity, NetKind, ServerPacket, WireInput,
};
use zone_core::{AbilityId, EntityId};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

#[test]
fn section_2_5_pairs() {
    for ((x, y), bytes) in [
        ((1, 0), "04"),
        ((0, 1), "08"),
        ((-1, 2), "21"),
        ((3, -2), "1E"),
    ] {
        let mut buf = Vec::new();
        put_pair(&mut buf, x, y);
        assert_eq!(buf, hex(bytes), "({x}, {y})");
        assert_eq!(WireReader::new(&buf).pair(), Ok((x, y)));
    }
}

#[test]
fn section_10_1_a_client_packet() {
    let p = ClientPacket {
        ack_tick: 1000,
        reliable_ack: 2,
        ping: Some(300),
        inputs: [WireInput {
            seq: 42,
            tick: 1003,
            move_x: 0,
            move_y: -127,
            run: true,
            facing: 64,
            ability: Some((AbilityId(2), EntityId(517), 3)),
        }]
        .into_iter()
        .collect(),
        reliable_first: 5,
        reliable: vec![ClientMessage::Chat { text: "hi".into() }],
    };
    let bytes = hex(
        "03 01 FB E8 03 02 01 FB 2C 01 01 2A FB EB 03 00 81 01 40 01 02 FB 05 02 03 01 05 00 02 68 69",
    );
    let mut buf = Vec::new();
    p.encode(&mut buf);
    assert_eq!(buf, bytes);
    assert_eq!(ClientPacket::decode(&bytes), Ok(p));
}

#[test]
fn section_10_2_a_server_packet() {
    let p = ServerPacket {
        tick: 1001,
        baseline: 1000,
        reliable_ack: 1,
        pong: Some(300),
        reliable_first: 0,
        reliable: Vec::new(),
        removed: vec![2],
        updates: vec![
            EntityUpdate {
                index: 0,
                track: Some((Some(0), 3, -2)),
                vel: Some((16, 0)),
                facing: None,
                status: None,
                ext: None,
            },
            EntityUpdate {
                index: 3,
                track: None,
                vel: None,
                facing: None,
                status: Some((90, 100, true)),
                ext: None,
            },
        ],
        spawns: vec![NetEntity {
            id: EntityId(9),
            kind: NetKind::Player,
            alive: true,
            x: 640,
            y: -128,
            anchor: 1001,
            vx: 32,
            vy: 0,
            facing: 128,
            health: 100,
            max_health: 100,
            ext: Ext::default(),
        }],
        avatar: None,
    };
    let bytes = hex(
        "03 01 FB E9 03 01 01 1D FB 2C 01 01 02 02 03 01 1E 20 00 28 5A 64 01 01 09 07 00 FB 00 05 FB FF 00 40 00 80 64 64",
    );
    let mut buf = Vec::new();
    p.encode(&mut buf);
    assert_eq!(buf, bytes);
    assert_eq!(buf.len(), 38);
    assert_eq!(ServerPacket::decode(&bytes), Ok(p.clone()));
    // Applied: baseline entity 0 moved 2 units/s east from x = 100 since tick 990 (standing
    // in y at 50); its track at the new anchor (1001) is 100 + travel(32, 11) = 100 + 23 = 123.
    let base = NetEntity {
        id: EntityId(4),
        kind: NetKind::Npc,
        alive: true,
        x: 100,
        y: 50,
        anchor: 990,
        vx: 32,
        vy: 0,
        facing: 0,
        health: 30,
        max_health: 30,
        ext: Ext::default(),
    };
    let now = p.updates[0].apply(&base, p.tick, 60).unwrap();
    assert_eq!(
        (now.x, now.y, now.anchor, now.vx),
        (123 + 3, 50 - 2, 1001, 48)
    );
    // A standing spawn: no age, no velocity.
    let standing = ServerPacket {
        tick: 7,
        spawns: vec![NetEntity {
            anchor: 0,
            vx: 0,
            kind: NetKind::Npc,
            ..p.spawns[0]
        }],
        ..ServerPacket::default()
    };
    let mut buf = Vec::new();
    standing.encode(&mut buf);
    assert_eq!(
        buf,
        hex("03 01 07 00 00 10 01 09 02 FB 00 05 FB FF 00 80 64 64")
    );
}

#[test]
fn section_10_3_an_avatar_section() {
    let p = ServerPacket {
        tick: 1001,
        baseline: 1000,
        avatar: Some(zone_core::protocol::AvatarUpdate {
            seq: Some(42),
            pos: Some(zone_core::Vec2::new(10.5, -2.25)),
            vel: None,
            alive: None,
            late: None,
        }),
        ..ServerPacket::default()
    };
    let bytes = hex("03 01 FB E9 03 01 00 20 03 2A 00 00 28 41 00 00 10 C0");
    let mut buf = Vec::new();
    p.encode(&mut buf);
    assert_eq!(buf, bytes);
    assert_eq!(ServerPacket::decode(&bytes), Ok(p));
}

#[test]
fn section_5_6_a_prop_spawn_with_plugin_state() {
    // The standing spawn of section 10.2 as a capture point (a prop, no health) owned by
    // entity 5: flags 0x1A (prop, alive, ext), then the ext block `01 01 05` (trailing zero
    // bytes are not sent).
    let mut bytes = [0u8; zone_core::protocol::EXT_BYTES];
    bytes[0] = 5;
    let p = ServerPacket {
        tick: 7,
        spawns: vec![NetEntity {
            id: EntityId(9),
            kind: NetKind::Prop,
            alive: true,
            x: 640,
            y: -128,
            anchor: 0,
            vx: 0,
            vy: 0,
            facing: 128,
            health: 0,
            max_health: 0,
            ext: Ext { present: 1, bytes },
        }],
        ..ServerPacket::default()
    };
    let mut buf = Vec::new();
    p.encode(&mut buf);
    assert_eq!(
        buf,
        hex("03 01 07 00 00 10 01 09 1A FB 00 05 FB FF 00 80 00 00 01 01 05")
    );
    assert_eq!(ServerPacket::decode(&buf), Ok(p));
}

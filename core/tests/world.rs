//! Zones as parts of one world: world coordinates, border crossings, NPCs that stay home,
//! ghosts of a neighbour's entities in a client's view, a frozen view while a handoff is under
//! way, and redirects that survive a lossy link.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod testkit;

use testkit::LossyLink;
use zone_core::client::{ClientEvent, ClientSession};
use zone_core::protocol::{EntitySample, NetEntity, NetKind, quantize_pos, redirect_messages};
use zone_core::replication::{GHOST_ID_BASE, ReplicationConfig, Replicator};
use zone_core::world::{WorldGrid, ghost_id};
use zone_core::{EntityKind, PlayerId, PlayerInput, Vec2, Zone, ZoneId};

fn world() -> WorldGrid {
    WorldGrid::of_tiles(2, 1, 64, 1).unwrap()
}

fn zone(grid: &WorldGrid, id: u32, npcs: u32) -> Zone {
    Zone::new(grid.zone_config(ZoneId(id), npcs).unwrap(), 5).unwrap()
}

fn join_at(zone: &mut Zone, player: u64, at: Vec2) {
    let mut s = zone.new_character(PlayerId(player));
    (s.x, s.y) = (at.x, at.y);
    zone.join(PlayerId(player), s).unwrap();
}

fn walk(zone: &mut Zone, player: u64, seq: u32, dir: Vec2) {
    let input = PlayerInput::movement(seq, zone.current_tick(), dir, true);
    zone.handle_input(PlayerId(player), input).unwrap();
}

#[test]
fn a_player_walks_over_the_border_and_carries_world_coordinates_to_the_next_zone() {
    let grid = world();
    let (mut west, mut east) = (zone(&grid, 1, 0), zone(&grid, 2, 0));
    join_at(&mut west, 7, Vec2::new(60.5, 20.5));
    let mut crossed = None;
    for seq in 1..200 {
        walk(&mut west, 7, seq, Vec2::X);
        let out = west.tick();
        if let Some(c) = out.crossings.first() {
            crossed = Some(*c);
            break;
        }
    }
    let c = crossed.expect("the player reached the open east edge and stepped over it");
    assert_eq!(c.player, PlayerId(7));
    let at = Vec2::new(c.x, c.y);
    assert!(at.x >= 64.0 && at.x < 64.5, "just over the border: {at}");
    assert_eq!(grid.zone_at(at), Some(ZoneId(2)));
    let state = west.leave(PlayerId(7)).unwrap();
    assert_eq!((state.x, state.y), (c.x, c.y), "saved in world coordinates");
    east.join(PlayerId(7), state).unwrap();
    let me = east
        .entity(east.player_entity(PlayerId(7)).unwrap())
        .unwrap();
    assert_eq!(
        me.position, at,
        "the east zone puts the avatar where it left the west"
    );
    east.tick();
    assert!(
        east.last_output().crossings.is_empty(),
        "inside its new zone"
    );
    // The west edge of the world is closed: walking on west from the west zone stops at the wall.
    join_at(&mut west, 8, Vec2::new(3.5, 20.5));
    for seq in 1..120 {
        walk(&mut west, 8, seq, -Vec2::X);
        assert!(west.tick().crossings.is_empty());
    }
}

#[test]
fn a_player_put_back_inside_stays_in_the_zone() {
    let grid = world();
    let mut west = zone(&grid, 1, 0);
    join_at(&mut west, 3, Vec2::new(63.7, 30.5));
    for seq in 1..30 {
        walk(&mut west, 3, seq, Vec2::X);
        west.tick();
    }
    assert_eq!(west.last_output().crossings.len(), 1);
    assert!(west.place_inside(PlayerId(3)));
    west.tick();
    assert!(west.last_output().crossings.is_empty());
    let me = west
        .entity(west.player_entity(PlayerId(3)).unwrap())
        .unwrap();
    assert!(west.map().contains(me.position), "{}", me.position);
    assert!(!west.place_inside(PlayerId(99)));
}

#[test]
fn npcs_never_leave_their_zone_even_chasing_a_player_over_the_border() {
    let grid = world();
    let mut west = zone(&grid, 1, 60);
    // A player starts among a camp, draws aggro, runs over the open east edge and walks up
    // and down just beyond it (nobody hands it off here), with the NPCs in pursuit: their leash
    // reaches past the border, their zone does not.
    let camp = west
        .entities()
        .find(|e| e.kind == EntityKind::Npc && e.position.x > 32.0)
        .unwrap()
        .position;
    join_at(&mut west, 1, camp + Vec2::new(1.0, 0.0));
    let mut max_npc_x = 0.0f32;
    for seq in 1..1_500u32 {
        let me = west
            .entity(west.player_entity(PlayerId(1)).unwrap())
            .unwrap();
        let dir = if me.position.x < 65.5 {
            Vec2::X
        } else if (seq / 100) % 2 == 0 {
            Vec2::Y
        } else {
            -Vec2::Y
        };
        walk(&mut west, 1, seq, dir);
        west.tick();
        for e in west.entities() {
            if e.kind == EntityKind::Npc {
                assert!(
                    west.map().contains(e.position),
                    "NPC {:?} at {}",
                    e.id,
                    e.position
                );
                max_npc_x = max_npc_x.max(e.position.x);
            }
        }
    }
    assert!(
        !west.last_output().crossings.is_empty(),
        "the player is over the border"
    );
    assert!(
        max_npc_x > 63.0,
        "the chase reached the border (max NPC x {max_npc_x})"
    );
}

fn ghost(slot: u8, id: u32, x: f32, y: f32) -> EntitySample {
    EntitySample {
        id: ghost_id(slot, zone_core::EntityId(id)),
        kind: NetKind::Npc,
        x: quantize_pos(x),
        y: quantize_pos(y),
        vx: 0,
        vy: 0,
        facing: 0,
        health: 50,
        max_health: 50,
        alive: true,
        ext: Default::default(),
    }
}

#[test]
fn ghosts_of_the_neighbour_are_seen_and_a_handoff_freezes_the_view_until_the_redirect() {
    let grid = world();
    let mut west = zone(&grid, 1, 0);
    join_at(&mut west, 7, Vec2::new(60.5, 20.5));
    let mut rep = Replicator::for_zone(ReplicationConfig::default(), &west);
    assert!(rep.connect(&west, PlayerId(7)));
    let mut client = ClientSession::new(PlayerId(7));
    let mut ghosts = vec![ghost(4, 3, 66.0, 20.5), ghost(4, 9, 70.0, 22.0)];
    ghosts.sort_by_key(|g| g.id);
    let mut buf = Vec::new();
    let mut step = |west: &mut Zone, rep: &mut Replicator, client: &mut ClientSession| {
        west.tick();
        rep.update_with_ghosts(west, &ghosts);
        let (_, bytes) = rep.packets().next().unwrap();
        client.handle_packet(bytes).unwrap();
        buf.clear();
        client.write_packet(&mut buf);
        rep.handle_packet(west, PlayerId(7), &buf).unwrap();
    };
    for _ in 0..5 {
        step(&mut west, &mut rep, &mut client);
    }
    let seen: Vec<_> = client.entities().iter().map(|e| e.id).collect();
    assert!(
        seen.contains(&ghosts[0].id) && seen.contains(&ghosts[1].id),
        "{seen:?}"
    );
    assert!(ghosts.iter().all(|g| g.id.0 >= GHOST_ID_BASE));
    let before: Vec<NetEntity> = client.entities().to_vec();
    // The avatar leaves (handed off): the client keeps seeing what it saw, and gets the redirect.
    west.leave(PlayerId(7)).unwrap();
    let mut token = [0u8; 2048];
    token[..1_200].fill(0x5A);
    for m in redirect_messages(ZoneId(2), "127.0.0.1:40001".parse().unwrap(), &token) {
        assert!(rep.send_reliable(PlayerId(7), m));
    }
    let mut redirect = None;
    for _ in 0..10 {
        step(&mut west, &mut rep, &mut client);
        assert_eq!(
            client.entities(),
            before.as_slice(),
            "view frozen during the handoff"
        );
        while let Some(ev) = client.poll_event() {
            if let ClientEvent::Redirect(r) = ev {
                redirect = Some(r);
            }
        }
    }
    let r = redirect.expect("the whole redirect arrived");
    assert_eq!((r.zone, *r.token), (ZoneId(2), token));
}

#[test]
fn a_redirect_arrives_whole_over_a_lossy_reordering_link() {
    let grid = world();
    let mut west = zone(&grid, 1, 20);
    join_at(&mut west, 7, Vec2::new(30.5, 20.5));
    let mut rep = Replicator::for_zone(ReplicationConfig::default(), &west);
    rep.connect(&west, PlayerId(7));
    let mut client = ClientSession::new(PlayerId(7));
    let (mut down, mut up) = (
        LossyLink::new(1, 0.3, 0.1, 3, 4),
        LossyLink::new(2, 0.3, 0.1, 3, 4),
    );
    let mut token = [0u8; 2048];
    for (i, b) in token.iter_mut().take(1_300).enumerate() {
        *b = (i % 200) as u8 + 1;
    }
    let address = "[::1]:41000".parse().unwrap();
    let mut redirect = None;
    let mut buf = Vec::new();
    for t in 0..400u64 {
        if t == 20 {
            west.leave(PlayerId(7)).unwrap();
            for m in redirect_messages(ZoneId(2), address, &token) {
                rep.send_reliable(PlayerId(7), m);
            }
        }
        west.tick();
        rep.update(&west);
        for (_, bytes) in rep.packets() {
            down.send(t, bytes);
        }
        for bytes in down.receive(t) {
            let _ = client.handle_packet(&bytes);
        }
        while let Some(ev) = client.poll_event() {
            if let ClientEvent::Redirect(r) = ev {
                assert!(redirect.is_none(), "delivered once");
                redirect = Some(r);
            }
        }
        buf.clear();
        client.write_packet(&mut buf);
        up.send(t, &buf);
        for bytes in up.receive(t) {
            let _ = rep.handle_packet(&mut west, PlayerId(7), &bytes);
        }
    }
    let r = redirect.expect("redirect delivered despite 30% loss");
    assert_eq!((r.zone, r.address, *r.token), (ZoneId(2), address, token));
    assert_eq!(client.redirects_refused(), 0);
}

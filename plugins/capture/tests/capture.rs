//! The capture-points plugin, tested with the kits a game team uses on its own code: scripted
//! scenarios, typed refusals, the determinism checker, the state hash, persistence through the
//! player's save, replication to typed client components, and the fuzz entries.

#![allow(clippy::unwrap_used)]

use zone_capture::{CapturePoints, CaptureRules, CaptureScore, Flag, PlantFlag, points};
use zone_core::client::{ClientEvent, ClientSession};
use zone_core::game::{Action, ActionError, Game, action_kind, kit};
use zone_core::protocol::{GOODBYE_GAME_MISMATCH, ServerMessage};
use zone_core::replication::{PacketError, ReplicationConfig, Replicator};
use zone_core::{
    EntityId, PlayerId, PlayerInput, PlayerState, SavedPlugins, Vec2, Zone, ZoneConfig, ZoneId,
};
use zone_kit::{Script, check_determinism};

/// Quick captures for tests: 30 ticks.
fn game() -> Game {
    Game::default().with(CapturePoints {
        rules: CaptureRules {
            radius: 4.0,
            capture_ticks: 30,
        },
        ..CapturePoints::demo()
    })
}

fn zone() -> Zone {
    Zone::with_game(ZoneConfig::arena(ZoneId(1), 64, 64, 0), 11, &game()).unwrap()
}

/// Joins `player` standing on point `index` (or `offset` away from it).
fn join_at_point(zone: &mut Zone, player: u64, index: usize, offset: Vec2) -> EntityId {
    let (_, point, _) = points(zone).nth(index).unwrap();
    let mut s: PlayerState = zone.new_character(PlayerId(player));
    (s.x, s.y) = (point.center.x + offset.x, point.center.y + offset.y);
    zone.join(PlayerId(player), s).unwrap()
}

fn plant(zone: &mut Zone, player: u64, index: usize) -> Result<(), ActionError> {
    let point = points(zone)
        .nth(index)
        .map_or(EntityId(999_999), |(id, _, _)| id);
    let mut payload = Vec::new();
    PlantFlag { point }.encode(&mut payload);
    zone.handle_action(PlayerId(player), action_kind::<PlantFlag>(), &payload)
}

fn flag(zone: &Zone, index: usize) -> Flag {
    points(zone).nth(index).unwrap().2
}

fn score(zone: &Zone, player: u64) -> CaptureScore {
    let id = zone.player_entity(PlayerId(player)).unwrap();
    *zone
        .world()
        .get::<CaptureScore>(zone.ecs_entity(id).unwrap())
        .unwrap()
}

#[test]
fn a_flag_planted_and_held_captures_the_point_and_scores() {
    let mut zone = zone();
    assert_eq!(zone.plugins(), ["zone.builtin", "example.capture"]);
    let me = join_at_point(&mut zone, 1, 0, Vec2::ZERO);
    plant(&mut zone, 1, 0).unwrap();
    zone.tick();
    assert_eq!(flag(&zone, 0).claimant, Some(me));
    for _ in 0..28 {
        zone.tick();
    }
    let f = flag(&zone, 0);
    assert_eq!((f.owner, f.claimant, f.percent), (None, Some(me), 96));
    zone.tick();
    let f = flag(&zone, 0);
    assert_eq!(
        (f.owner, f.claimant),
        (Some(me), None),
        "captured after 30 ticks"
    );
    assert_eq!(
        score(&zone, 1),
        CaptureScore {
            captures: 1,
            planted: 1
        }
    );
    assert_eq!(
        plant(&mut zone, 1, 0),
        Err(ActionError::Rejected {
            action: PlantFlag::NAME,
            reason: "already_owner"
        })
    );
}

#[test]
fn a_contested_point_holds_and_a_claim_drops_when_the_claimant_walks_off() {
    let mut zone = zone();
    join_at_point(&mut zone, 1, 1, Vec2::ZERO);
    plant(&mut zone, 1, 1).unwrap();
    for _ in 0..10 {
        zone.tick();
    }
    let held = flag(&zone, 1).percent;
    assert!(held > 0);
    // A rival steps on: no progress while both stand there.
    join_at_point(&mut zone, 2, 1, Vec2::new(1.0, 0.0));
    for _ in 0..20 {
        zone.tick();
    }
    assert_eq!(flag(&zone, 1).percent, held, "contested: held where it was");
    assert_eq!(
        plant(&mut zone, 2, 1),
        Err(ActionError::Rejected {
            action: PlantFlag::NAME,
            reason: "claimed"
        })
    );
    // The claimant runs off: the claim drops.
    let away = PlayerInput::movement(1, zone.current_tick() + 1, Vec2::X, true);
    zone.handle_input(PlayerId(1), away).unwrap();
    for _ in 0..60 {
        zone.tick();
    }
    let f = flag(&zone, 1);
    assert_eq!((f.owner, f.claimant, f.percent), (None, None, 0));
}

#[test]
fn plants_are_refused_with_typed_counted_reasons_and_never_panic() {
    let mut zone = zone();
    join_at_point(&mut zone, 1, 0, Vec2::new(10.0, 0.0));
    let refused = |reason| {
        Err(ActionError::Rejected {
            action: PlantFlag::NAME,
            reason,
        })
    };
    assert_eq!(plant(&mut zone, 1, 0), refused("out_of_range"));
    assert_eq!(plant(&mut zone, 1, 9), refused("no_such_point"));
    assert_eq!(
        plant(&mut zone, 7, 0),
        Err(ActionError::UnknownPlayer {
            action: PlantFlag::NAME
        })
    );
    let kind = action_kind::<PlantFlag>();
    assert!(matches!(
        zone.handle_action(PlayerId(1), kind, &[0, 1]),
        Err(ActionError::Malformed { .. })
    ));
    assert_eq!(
        zone.handle_action(PlayerId(1), kind, &[0; 4]),
        refused("no_such_point")
    );
    assert_eq!(
        zone.handle_action(PlayerId(1), kind, &[0; 65]),
        Err(ActionError::TooLong(65))
    );
    assert_eq!(
        zone.handle_action(PlayerId(1), kind ^ 1, &[0]),
        Err(ActionError::UnknownKind(kind ^ 1))
    );
    // Four actions per player and tick, then the queue is full until the next tick.
    join_at_point(&mut zone, 2, 2, Vec2::ZERO);
    for _ in 0..4 {
        plant(&mut zone, 2, 2).unwrap();
    }
    assert_eq!(
        plant(&mut zone, 2, 2),
        Err(ActionError::QueueFull {
            action: PlantFlag::NAME
        })
    );
    zone.tick();
    plant(&mut zone, 2, 2).unwrap();
    let counts = &zone.action_counts()[0];
    assert_eq!(counts.action, PlantFlag::NAME);
    assert_eq!(counts.accepted, 5);
    let counted: Vec<_> = counts.refused.iter().copied().collect();
    assert_eq!(
        counted,
        [
            ("out_of_range", 1),
            ("no_such_point", 2),
            ("unknown_player", 1),
            ("malformed", 1),
            ("too_long", 1),
            ("queue_full", 1)
        ]
    );
    assert_eq!(zone.unknown_actions(), 1);
    // A dead player cannot plant.
    let dead = PlayerState {
        health: 0,
        ..zone.new_character(PlayerId(3))
    };
    let (_, p, _) = points(&zone).next().unwrap();
    zone.join(
        PlayerId(3),
        PlayerState {
            x: p.center.x,
            y: p.center.y,
            ..dead
        },
    )
    .unwrap();
    assert_eq!(plant(&mut zone, 3, 0), refused("dead"));
}

#[test]
fn a_crowd_with_capture_points_is_deterministic() {
    let make = || {
        let mut zone =
            Zone::with_game(ZoneConfig::arena(ZoneId(1), 64, 64, 40), 3, &game()).unwrap();
        Script::new(9, 1, 120).join_all(&mut zone);
        zone
    };
    let mut scripts = [Script::new(9, 1, 120), Script::new(9, 1, 120)];
    let mut turn = 0;
    let report = check_determinism(make, 600, |zone, tick| {
        let script = &mut scripts[turn % 2];
        turn += 1;
        script.drive(zone);
        if tick.is_multiple_of(20) {
            for p in 1..=120 {
                let _ = plant(zone, p, (p % 3) as usize);
            }
        }
    })
    .unwrap();
    assert!(report.changed >= 590, "{report:?}");
    let zone = make();
    let counts = &zone.action_counts()[0];
    assert_eq!(counts.accepted, 0, "a fresh zone counted nothing");
}

#[test]
fn the_state_hash_covers_the_plugins_state() {
    let mut zone = zone();
    join_at_point(&mut zone, 1, 0, Vec2::ZERO);
    zone.tick();
    let before = zone.state_hash();
    let (id, _, _) = points(&zone).next().unwrap();
    let point = zone.ecs_entity(id).unwrap();
    zone.world_mut().get_mut::<Flag>(point).unwrap().held += 1;
    let flagged = zone.state_hash();
    assert_ne!(before, flagged, "a flag's hidden tick count is covered");
    let me = zone
        .ecs_entity(zone.player_entity(PlayerId(1)).unwrap())
        .unwrap();
    zone.world_mut()
        .get_mut::<CaptureScore>(me)
        .unwrap()
        .planted += 1;
    assert_ne!(flagged, zone.state_hash(), "a player's score is covered");
    zone.world_mut().resource_mut::<CaptureRules>().radius += 1.0;
    assert_ne!(flagged, zone.state_hash(), "the rules resource is covered");
}

#[test]
fn the_score_is_saved_and_loaded_with_the_player() {
    let mut zone = zone();
    join_at_point(&mut zone, 1, 0, Vec2::ZERO);
    plant(&mut zone, 1, 0).unwrap();
    for _ in 0..31 {
        zone.tick();
    }
    assert_eq!(score(&zone, 1).captures, 1);
    // A checkpoint carries it.
    let mut checkpoint = None;
    for _ in 0..=zone.rules().checkpoint_interval_ticks {
        if let Some(s) = zone.tick().player_saves.first() {
            checkpoint = Some(s.state);
        }
    }
    let checkpoint = checkpoint.expect("a checkpoint within one interval");
    assert_eq!(checkpoint.plugins.records().count(), 1);
    // Leaving and joining another zone of the game restores it.
    let saved = zone.leave(PlayerId(1)).unwrap();
    let mut other = self::zone();
    other.join(PlayerId(1), saved).unwrap();
    assert_eq!(
        score(&other, 1),
        CaptureScore {
            captures: 1,
            planted: 1
        }
    );
    // A zone without the plugin carries the record through its saves unchanged...
    let mut plain = Zone::new(ZoneConfig::arena(ZoneId(2), 64, 64, 0), 1).unwrap();
    plain.join(PlayerId(1), saved).unwrap();
    let through = plain.leave(PlayerId(1)).unwrap();
    assert_eq!(through.plugins, saved.plugins);
    // ...so the score survives the trip.
    let mut back = self::zone();
    back.join(PlayerId(1), through).unwrap();
    assert_eq!(score(&back, 1).captures, 1);
}

#[test]
fn older_and_corrupt_saved_scores_load_as_the_schema_says() {
    let score_tag = zone_core::game::record_tag::<CaptureScore>();
    // Version 1 (captures only) loads with planted = 0.
    let mut v1 = SavedPlugins::default();
    v1.push(score_tag, 1, &7u32.to_le_bytes()).unwrap();
    let mut zone = zone();
    let state = PlayerState {
        plugins: v1,
        ..zone.new_character(PlayerId(1))
    };
    zone.join(PlayerId(1), state).unwrap();
    assert_eq!(
        score(&zone, 1),
        CaptureScore {
            captures: 7,
            planted: 0
        }
    );
    assert_eq!(zone.plugin_state_errors(), (0, 0));
    // A record that does not load is counted and the join default kept.
    let mut bad = SavedPlugins::default();
    bad.push(score_tag, 9, &[1, 2]).unwrap();
    let state = PlayerState {
        plugins: bad,
        ..zone.new_character(PlayerId(2))
    };
    zone.join(PlayerId(2), state).unwrap();
    assert_eq!(score(&zone, 2), CaptureScore::default());
    assert_eq!(zone.plugin_state_errors(), (1, 0));
    // ...and the record it could not read is saved again as it came (a newer server may
    // read it), not overwritten by the default.
    let kept = zone.leave(PlayerId(2)).unwrap();
    let kept: Vec<_> = kept
        .plugins
        .records()
        .map(|(t, v, b)| (t, v, b.to_vec()))
        .collect();
    assert_eq!(kept, [(score_tag, 9, vec![1, 2])]);
    // Saved again: the current version.
    let out = zone.leave(PlayerId(1)).unwrap();
    let records: Vec<_> = out
        .plugins
        .records()
        .map(|(t, v, b)| (t, v, b.to_vec()))
        .collect();
    assert_eq!(records, [(score_tag, 2, [7, 0, 0, 0, 0, 0, 0, 0].to_vec())]);
}

/// One server zone and its replicator, and client sessions talking to it without loss.
struct Link {
    zone: Zone,
    rep: Replicator,
}

impl Link {
    fn exchange(&mut self, client: &mut ClientSession) -> Result<(), PacketError> {
        let mut buf = Vec::new();
        client.write_packet(&mut buf);
        let result = self
            .rep
            .handle_packet(&mut self.zone, client.player(), &buf);
        let _ = self.zone.tick();
        self.rep.update(&self.zone);
        let packets: Vec<Vec<u8>> = self
            .rep
            .packets()
            .filter(|(p, _)| *p == client.player())
            .map(|(_, b)| b.to_vec())
            .collect();
        for p in packets {
            client.handle_packet(&p).unwrap();
        }
        result
    }
}

#[test]
fn clients_read_flags_as_typed_components_and_other_games_are_refused() {
    let mut zone = zone();
    let me = join_at_point(&mut zone, 1, 0, Vec2::ZERO);
    let mut rep = Replicator::new(ReplicationConfig::default(), zone.map().size());
    assert!(rep.connect(&zone, PlayerId(1)));
    let mut link = Link { zone, rep };
    let mut client = ClientSession::with_game(PlayerId(1), game().wire().unwrap());
    link.exchange(&mut client).unwrap();
    let (point, _, _) = points(&link.zone).next().unwrap();
    assert_eq!(client.component::<Flag>(point), Some(Flag::default()));
    client.send_action(&PlantFlag { point }).unwrap();
    for _ in 0..40 {
        link.exchange(&mut client).unwrap();
    }
    let seen = client.component::<Flag>(point).unwrap();
    assert_eq!(
        (seen.owner, seen.claimant),
        (Some(me), None),
        "the capture replicated"
    );
    assert_eq!(client.component::<Flag>(me), None, "players carry no flag");
    let mut events = Vec::new();
    while let Some(e) = client.poll_event() {
        events.push(e);
    }
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ClientEvent::GameMismatch { .. }))
    );

    // A client of the built-in game alone is told at the welcome.
    let other = join_at_point(&mut link.zone, 2, 2, Vec2::ZERO);
    assert!(other.0 > 0);
    assert!(link.rep.connect(&link.zone, PlayerId(2)));
    let mut bare = ClientSession::new(PlayerId(2));
    link.exchange(&mut bare).unwrap();
    let server_hash = game().wire().unwrap().protocol_hash();
    let mut mismatch = None;
    while let Some(e) = bare.poll_event() {
        if let ClientEvent::GameMismatch { ours, theirs } = e {
            mismatch = Some((ours, theirs));
        }
    }
    assert_eq!(mismatch, Some((None, Some(server_hash))));

    // A client that declares another game is refused by the server: goodbye, ignored.
    let elsewhere = Game::default().with(CapturePoints {
        at: vec![Vec2::splat(0.5)],
        ..CapturePoints::demo()
    });
    assert_eq!(
        elsewhere.wire().unwrap().protocol_hash(),
        server_hash,
        "the layout, not the point placement, is the protocol"
    );
    let mut foreign = Game::default().with(Renamed);
    let _ = &mut foreign;
    let join3 = join_at_point(&mut link.zone, 3, 1, Vec2::ZERO);
    assert!(join3.0 > 0);
    assert!(link.rep.connect(&link.zone, PlayerId(3)));
    let mut stranger = ClientSession::with_game(PlayerId(3), foreign.wire().unwrap());
    assert!(matches!(
        link.exchange(&mut stranger),
        Err(PacketError::GameMismatch { .. })
    ));
    assert_eq!(link.rep.metrics().game_mismatches, 1);
    link.exchange(&mut stranger).unwrap();
    let mut told = false;
    while let Some(e) = stranger.poll_event() {
        told |= e
            == ClientEvent::Message(ServerMessage::Goodbye {
                reason: GOODBYE_GAME_MISMATCH,
            });
    }
    assert!(
        told,
        "the server said goodbye with the game-mismatch reason"
    );
}

/// A plugin that declares an action of another name: another protocol.
struct Renamed;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Wave;

impl zone_core::game::Reason for Wave {
    fn name(self) -> &'static str {
        "never"
    }
}

impl Action for Wave {
    const NAME: &'static str = "test.wave";
    type Reject = Wave;
    fn decode(_: &[u8]) -> Result<Self, zone_core::game::CodecError> {
        Ok(Wave)
    }
    fn encode(&self, _: &mut Vec<u8>) {}
    fn validate(&self, _: zone_core::game::Actor<'_>) -> Result<(), Wave> {
        Ok(())
    }
}

impl zone_core::game::ZonePlugin for Renamed {
    fn name(&self) -> &'static str {
        "test.renamed"
    }
    fn declare(&self, wire: &mut zone_core::game::Wire) {
        wire.action::<Wave>();
    }
    fn build(&self, _: &mut zone_core::game::GameApp<'_>) {}
}

#[test]
fn the_decoders_survive_the_fuzz_entries() {
    // The same entries `fuzz/fuzz_targets/capture.rs` runs, over a deterministic byte stream.
    let mut zone = zone();
    join_at_point(&mut zone, 1, 0, Vec2::ZERO);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut bytes = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..2_000u64 {
        let data: Vec<u8> = (0..(round % 24)).map(|_| bytes() as u8).collect();
        kit::fuzz_action::<PlantFlag>(&data);
        kit::fuzz_replicated::<Flag>(&data);
        let mut stream = data.clone();
        if round % 2 == 0 {
            // Half the streams start with a well-formed plant on a random point.
            let k = action_kind::<PlantFlag>().to_le_bytes();
            let id = (bytes() % 8) as u8;
            let head = [k[0], k[1], 4, id, 0, 0, 0];
            stream.splice(0..0, head);
        }
        kit::fuzz_zone_actions(&mut zone, PlayerId(1), &stream);
    }
    assert!(zone.action_counts()[0].accepted > 0);
}

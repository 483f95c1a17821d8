//! Gameplay rules as specifications: movement limits, walls, combat, death, respawn, NPC AI,
//! regeneration, persistence events and input validation.

#![allow(clippy::unwrap_used)]

mod testkit;

use testkit::*;
use zone_core::{
    AbilityId, AbilityUse, EntityKind, InputError, JoinError, PlayerId, PlayerInput, PlayerState,
    SaveReason, Vec2, Zone, ZoneConfig, ZoneId,
};

#[test]
fn running_player_never_exceeds_the_rules_speed() {
    let mut zone = room_zone();
    let me = join_at(&mut zone, 1, 3.5, 2.5);
    let max_step = zone.rules().run_speed * zone.rules().dt() + 1e-4;
    let mut last = zone.entity(me).unwrap().position;
    for seq in 1..200 {
        let i = input(&zone, seq, Vec2::new(1.0, 0.0), true);
        zone.handle_input(PlayerId(1), i).unwrap();
        zone.tick();
        let now = zone.entity(me).unwrap().position;
        assert!(
            now.distance(last) <= max_step,
            "moved {} > {max_step}",
            now.distance(last)
        );
        last = now;
    }
    // It reached full running speed at some point and then was stopped by the east wall.
    assert!(last.x > 20.0 && last.x < 29.0, "{last:?}");
}

#[test]
fn walls_stop_movement() {
    let mut zone = room_zone();
    let me = join_at(&mut zone, 1, 12.5, 5.5); // just west of the wall segment at x = 14
    for seq in 1..120 {
        let i = input(&zone, seq, Vec2::X, false);
        zone.handle_input(PlayerId(1), i).unwrap();
        zone.tick();
    }
    let p = zone.entity(me).unwrap().position;
    assert!(
        p.x < 14.0 - zone.rules().body_radius + 1e-3,
        "walked into the wall: {p:?}"
    );
    assert!(zone.map().walkable(p));
}

#[test]
fn hostile_inputs_are_refused_with_a_reason_and_counted() {
    let mut zone = room_zone();
    join_at(&mut zone, 1, 3.5, 2.5);
    let now = zone.current_tick();
    let nan = PlayerInput {
        move_x: f32::NAN,
        ..PlayerInput::movement(1, now, Vec2::ZERO, false)
    };
    let inf = PlayerInput {
        facing: f32::INFINITY,
        ..PlayerInput::movement(1, now, Vec2::ZERO, false)
    };
    let long = PlayerInput::movement(1, now, Vec2::new(5.0, 0.0), true);
    let ghost_ability = PlayerInput {
        ability: Some(AbilityUse {
            ability: AbilityId(200),
            target: zone_core::EntityId(1),
            view_tick: 0,
        }),
        ..PlayerInput::movement(1, now, Vec2::ZERO, false)
    };
    let future = PlayerInput::movement(1, now + 10_000, Vec2::X, false);
    assert_eq!(
        zone.handle_input(PlayerId(1), nan),
        Err(InputError::NonFinite)
    );
    assert_eq!(
        zone.handle_input(PlayerId(1), inf),
        Err(InputError::NonFinite)
    );
    assert_eq!(
        zone.handle_input(PlayerId(1), long),
        Err(InputError::OutOfRange)
    );
    assert_eq!(
        zone.handle_input(PlayerId(1), ghost_ability),
        Err(InputError::UnknownAbility)
    );
    assert_eq!(
        zone.handle_input(PlayerId(1), future),
        Err(InputError::FromFuture)
    );
    assert_eq!(
        zone.handle_input(PlayerId(99), PlayerInput::movement(1, now, Vec2::X, false)),
        Err(InputError::UnknownPlayer)
    );
    zone.handle_input(PlayerId(1), PlayerInput::movement(5, now, Vec2::X, false))
        .unwrap();
    assert_eq!(
        zone.handle_input(PlayerId(1), PlayerInput::movement(5, now, Vec2::X, false)),
        Err(InputError::Stale)
    );
    for _ in 0..300 {
        zone.tick();
    }
    let old = PlayerInput::movement(6, 1, Vec2::X, false);
    assert_eq!(zone.handle_input(PlayerId(1), old), Err(InputError::TooOld));
    let m = zone.tick().metrics;
    assert_eq!(m.inputs_rejected[InputError::TooOld.index()], 1);
    assert_eq!(m.inputs_rejected_total(), 1);
}

#[test]
fn refused_inputs_appear_in_the_next_ticks_metrics() {
    let mut zone = room_zone();
    join_at(&mut zone, 1, 3.5, 2.5);
    let _ = zone.handle_input(PlayerId(2), input(&zone, 1, Vec2::X, false));
    zone.handle_input(PlayerId(1), input(&zone, 1, Vec2::X, false))
        .unwrap();
    let m = zone.tick().metrics;
    assert_eq!(m.inputs_applied, 1);
    assert_eq!(m.inputs_rejected[InputError::UnknownPlayer.index()], 1);
    assert_eq!(zone.tick().metrics.inputs_rejected_total(), 0);
}

fn attack(
    zone: &mut Zone,
    player: u64,
    seq: u32,
    ability: u8,
    target: zone_core::EntityId,
) -> Result<(), InputError> {
    let i = PlayerInput {
        ability: Some(AbilityUse {
            ability: AbilityId(ability),
            target,
            view_tick: 0,
        }),
        ..input(zone, seq, Vec2::ZERO, false)
    };
    zone.handle_input(PlayerId(player), i)
}

#[test]
fn melee_hits_in_range_respects_cooldown_and_emits_events() {
    let mut zone = room_zone();
    let a = join_at(&mut zone, 1, 5.5, 2.5);
    let b = join_at(&mut zone, 2, 6.5, 2.5);
    attack(&mut zone, 1, 1, 0, b).unwrap();
    let out = zone.tick();
    assert_eq!(out.combat_events.len(), 1);
    let hit = out.combat_events[0];
    assert_eq!((hit.attacker, hit.target, hit.damage), (a, b, 12));
    assert_eq!(
        (hit.attacker_player, hit.target_player),
        (Some(PlayerId(1)), Some(PlayerId(2)))
    );
    assert_eq!(hit.id.tick(), out.tick);
    assert_eq!(zone.entity(b).unwrap().health, 88);
    // Immediately again: on cooldown.
    attack(&mut zone, 1, 2, 0, b).unwrap();
    let out = zone.tick();
    assert!(out.combat_events.is_empty());
    assert_eq!(out.metrics.attacks_denied, 1);
    let s = zone.player_state(PlayerId(1)).unwrap();
    assert_eq!(s.stats.damage_dealt, 12);
    assert_eq!(
        zone.player_state(PlayerId(2)).unwrap().stats.damage_taken,
        12
    );
}

#[test]
fn out_of_range_and_behind_walls_do_not_hit() {
    let mut zone = room_zone();
    join_at(&mut zone, 1, 12.5, 5.5);
    let far = join_at(&mut zone, 2, 12.5, 1.5); // 4 units: out of melee range
    let behind = join_at(&mut zone, 3, 16.5, 5.5); // wall at x = 14 between
    attack(&mut zone, 1, 1, 0, far).unwrap();
    assert!(zone.tick().combat_events.is_empty());
    attack(&mut zone, 1, 2, 1, behind).unwrap(); // ranged, in range, no line of sight
    let out = zone.tick();
    assert!(out.combat_events.is_empty());
    assert!(out.metrics.los_steps > 0);
    attack(&mut zone, 1, 3, 1, far).unwrap(); // ranged, clear line
    assert_eq!(zone.tick().combat_events.len(), 1);
}

#[test]
fn pvp_can_be_switched_off() {
    let mut config = ZoneConfig {
        zone: ZoneId(2),
        rules: Default::default(),
        map: zone_core::TileMap::parse(ROOM).unwrap(),
        npc_spawns: vec![],
    };
    config.rules.pvp = false;
    let mut zone = Zone::new(config, 3).unwrap();
    join_at(&mut zone, 1, 5.5, 2.5);
    let b = join_at(&mut zone, 2, 6.5, 2.5);
    attack(&mut zone, 1, 1, 0, b).unwrap();
    assert!(zone.tick().combat_events.is_empty());
}

#[test]
fn death_credits_the_killer_saves_and_respawns_at_spawn() {
    let mut zone = room_zone();
    let a = join_at(&mut zone, 1, 5.5, 2.5);
    let mut weak = zone.new_character(PlayerId(2));
    (weak.x, weak.y, weak.health) = (6.5, 2.5, 5);
    let b = zone.join(PlayerId(2), weak).unwrap();
    attack(&mut zone, 1, 1, 0, b).unwrap();
    let out = zone.tick();
    assert!(out.combat_events[0].killed);
    assert_eq!(
        out.combat_events[0].damage, 5,
        "damage is capped at remaining health"
    );
    assert_eq!(out.deaths.len(), 1);
    assert_eq!((out.deaths[0].victim, out.deaths[0].killer), (b, Some(a)));
    assert_ne!(
        out.deaths[0].id, out.combat_events[0].id,
        "event ids are unique within a tick"
    );
    let save = out
        .player_saves
        .iter()
        .find(|s| s.player == PlayerId(2))
        .unwrap();
    assert_eq!(save.reason, SaveReason::Death);
    assert_eq!(save.state.stats.deaths, 1);
    assert_eq!(zone.player_state(PlayerId(1)).unwrap().stats.kills, 1);
    assert_eq!(
        zone.player_state(PlayerId(1)).unwrap().stats.xp,
        u64::from(zone.rules().xp_per_player_kill)
    );
    // Dead players do not move.
    zone.handle_input(PlayerId(2), input(&zone, 1, Vec2::X, true))
        .unwrap();
    let mut respawned = None;
    for _ in 0..zone.rules().player_respawn_ticks + 2 {
        let out = zone.tick();
        if let Some(r) = out.respawns.first() {
            respawned = Some((
                *r,
                out.player_saves
                    .iter()
                    .any(|s| s.reason == SaveReason::Respawn),
            ));
            break;
        }
        assert_eq!(zone.entity(b).unwrap().position, Vec2::new(6.5, 2.5));
    }
    let (r, saved) = respawned.expect("respawned within the delay");
    assert!(saved);
    assert_eq!(Vec2::new(r.x, r.y), zone.map().player_spawns()[0]);
    let view = zone.entity(b).unwrap();
    assert!(view.alive);
    assert_eq!(view.health, view.max_health);
}

#[test]
fn health_regenerates_only_out_of_combat() {
    let mut zone = room_zone();
    let mut hurt = zone.new_character(PlayerId(1));
    (hurt.x, hurt.y, hurt.health) = (5.5, 2.5, 50);
    let me = zone.join(PlayerId(1), hurt).unwrap();
    for _ in 0..zone.rules().regen_delay_ticks - 1 {
        zone.tick();
    }
    assert_eq!(zone.entity(me).unwrap().health, 50);
    for _ in 0..zone.rules().tick_hz * 2 {
        zone.tick();
    }
    let hp = zone.entity(me).unwrap().health;
    assert!((55..=57).contains(&hp), "two seconds at 3/s: {hp}");
}

#[test]
fn npcs_aggro_chase_attack_and_leash_home() {
    let mut config = ZoneConfig::arena(ZoneId(3), 96, 96, 0);
    config.npc_spawns = vec![zone_core::NpcSpawnRegion {
        center: Vec2::new(30.5, 30.5),
        radius: 0.0,
        count: 1,
    }];
    let mut zone = Zone::new(config, 5).unwrap();
    let npc = zone.entities().find(|e| e.kind == EntityKind::Npc).unwrap();
    let home = npc.position;
    let me = join_at(&mut zone, 1, home.x + 6.0, home.y);
    let mut hit_me = false;
    for _ in 0..400 {
        let out = zone.tick();
        hit_me |= out
            .combat_events
            .iter()
            .any(|e| e.attacker == npc.id && e.target == me);
        if hit_me {
            break;
        }
    }
    assert!(
        hit_me,
        "an NPC attacks a player standing within its aggro radius"
    );
    // Run far away (beyond the leash); the NPC gives up and returns home.
    let mut seq = 1;
    for _ in 0..600 {
        seq += 1;
        let dir = (Vec2::new(90.0, 90.0) - zone.entity(me).unwrap().position).normalize_or_zero();
        zone.handle_input(PlayerId(1), input(&zone, seq, dir, true))
            .unwrap();
        zone.tick();
    }
    for _ in 0..1200 {
        zone.tick();
    }
    let back = zone.entity(npc.id).unwrap();
    let near_home = zone.rules().npc.wander_radius + 1.0;
    assert!(
        back.position.distance(home) <= near_home,
        "NPC went home: {:?} vs {home:?}",
        back.position
    );
    assert!(zone.entity(me).unwrap().position.distance(home) > zone.rules().npc.leash_radius);
    assert_eq!(back.health, back.max_health);
}

#[test]
fn join_refuses_corrupt_states_and_relocates_unwalkable_ones() {
    let mut zone = room_zone();
    let good = zone.new_character(PlayerId(1));
    let nan = PlayerState {
        x: f32::NAN,
        ..good
    };
    assert!(matches!(
        zone.join(PlayerId(1), nan),
        Err(JoinError::InvalidState(_))
    ));
    let too_healthy = PlayerState {
        health: 60_000,
        ..good
    };
    assert!(matches!(
        zone.join(PlayerId(1), too_healthy),
        Err(JoinError::InvalidState(_))
    ));
    let in_wall = PlayerState {
        x: 14.5,
        y: 5.5,
        ..good
    };
    let id = zone.join(PlayerId(1), in_wall).unwrap();
    assert_eq!(
        zone.entity(id).unwrap().position,
        zone.map().player_spawns()[0]
    );
    assert_eq!(
        zone.join(PlayerId(1), good),
        Err(JoinError::AlreadyInZone(PlayerId(1)))
    );
}

#[test]
fn leave_returns_the_state_that_join_restores() {
    let (mut zone, mut script) = busy_zone(11, 20, 200, 96);
    for _ in 0..400 {
        script.drive(&mut zone);
        zone.tick();
    }
    let before = zone.player_state(PlayerId(3)).unwrap();
    let saved = zone.leave(PlayerId(3)).unwrap();
    assert_eq!(saved.version, before.version.next(), "leaving is a save");
    assert_eq!(
        PlayerState {
            version: before.version,
            ..saved
        },
        before
    );
    assert!(zone.player_state(PlayerId(3)).is_none());
    zone.join(PlayerId(3), saved).unwrap();
    assert_eq!(zone.player_state(PlayerId(3)).unwrap(), saved);
}

#[test]
fn checkpoints_are_staggered_and_versions_increase() {
    let (mut zone, _) = busy_zone(2, 50, 0, 96);
    let interval = zone.rules().checkpoint_interval_ticks;
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..interval * 2 {
        let out = zone.tick();
        assert!(
            out.player_saves.len() < 10,
            "checkpoints are spread over the interval"
        );
        for s in &out.player_saves {
            if let Some(prev) = seen.insert(s.player, s.state.version) {
                assert!(s.state.version > prev);
            }
        }
    }
    assert_eq!(seen.len(), 50, "every player was checkpointed");
}

#[test]
fn busy_zone_has_combat_and_deaths() {
    let (mut zone, mut script) = busy_zone(4, 100, 1_000, 192);
    let (mut hits, mut deaths, mut respawns) = (0, 0, 0);
    for _ in 0..1_500 {
        script.drive(&mut zone);
        let out = zone.tick();
        hits += out.combat_events.len();
        deaths += out.deaths.len();
        respawns += out.respawns.len();
    }
    assert!(
        hits > 100 && deaths > 5 && respawns > 0,
        "hits {hits}, deaths {deaths}, respawns {respawns}"
    );
}

//! Scripted players: a deterministic input script for tests, benchmarks and bots.
//!
//! Each scripted player wanders (turning at random intervals, sometimes running) and fights
//! back: it targets whoever hit it last, or a nearby NPC it picked, with melee or ranged
//! abilities. All choices come from [`crate::rng::stream`], so a script is a pure function of its
//! seed and the zone's state.

use glam::Vec2;

use crate::rng::{self, Purpose};
use crate::{AbilityId, AbilityUse, EntityId, PlayerId, PlayerInput, Zone};

/// One scripted player's memory.
#[derive(Clone, Debug)]
pub struct ScriptedPlayer {
    /// The account it plays.
    pub player: PlayerId,
    seq: u32,
    dir: Vec2,
    run: bool,
}

/// A crowd of scripted players driving a zone.
#[derive(Clone, Debug)]
pub struct Script {
    seed: u64,
    players: Vec<ScriptedPlayer>,
}

impl Script {
    /// A script for `count` players with ids `first_id..first_id + count`.
    pub fn new(seed: u64, first_id: u64, count: u32) -> Self {
        let players = (0..u64::from(count))
            .map(|i| ScriptedPlayer {
                player: PlayerId(first_id + i),
                seq: 0,
                dir: Vec2::ZERO,
                run: false,
            })
            .collect();
        Self { seed, players }
    }

    /// The scripted players.
    pub fn players(&self) -> &[ScriptedPlayer] {
        &self.players
    }

    /// Joins every scripted player at a random walkable spot of the map (deterministic).
    pub fn join_all(&self, zone: &mut Zone) {
        for p in &self.players {
            let _ = zone.join(p.player, self.start_state(zone, p.player));
        }
    }

    /// A fresh character for `player` at a scripted random spot.
    pub fn start_state(&self, zone: &Zone, player: PlayerId) -> crate::PlayerState {
        let size = zone.map().size();
        let mut d = rng::stream(self.seed, player.0, 0, Purpose::Script);
        let spot = zone.map().nearest_walkable(Vec2::new(
            d.range(1.0, size.x - 1.0),
            d.range(1.0, size.y - 1.0),
        ));
        let mut s = zone.new_character(player);
        (s.x, s.y) = (spot.x, spot.y);
        s
    }

    /// Feeds one input per scripted player present in the zone, for the upcoming tick.
    pub fn drive(&mut self, zone: &mut Zone) {
        let tick = zone.current_tick();
        let seed = self.seed;
        for p in &mut self.players {
            let Some(me) = zone.player_entity(p.player).and_then(|id| zone.entity(id)) else {
                continue;
            };
            let mut d = rng::stream(seed, p.player.0, tick, Purpose::Script);
            if p.dir == Vec2::ZERO || d.below(90) == 0 {
                let angle = d.range(0.0, std::f32::consts::TAU);
                p.dir = if d.below(5) == 0 {
                    Vec2::ZERO
                } else {
                    Vec2::new(angle.cos(), angle.sin())
                };
                p.run = d.below(3) == 0;
            }
            let ability = pick_attack(zone, me.position, me.last_hit_by, &mut d);
            p.seq = p.seq.wrapping_add(1);
            let input = PlayerInput {
                seq: p.seq,
                tick: tick + 1,
                move_x: p.dir.x,
                move_y: p.dir.y,
                run: p.run,
                facing: p.dir.y.atan2(p.dir.x),
                ability,
            };
            let _ = zone.handle_input(p.player, input);
        }
    }
}

fn pick_attack(
    zone: &Zone,
    me: Vec2,
    last_hit_by: Option<EntityId>,
    d: &mut rng::Draw,
) -> Option<AbilityUse> {
    let target = last_hit_by
        .and_then(|id| zone.entity(id))
        .filter(|t| t.alive)?;
    let dist = target.position.distance(me);
    let ability = zone
        .rules()
        .abilities
        .iter()
        .filter(|a| a.range >= dist)
        .min_by_key(|a| a.id)?;
    // Players do not spam: roughly every third tick they try.
    (d.below(3) == 0).then_some(AbilityUse {
        ability: AbilityId(ability.id),
        target: target.id,
        view_tick: 0,
    })
}

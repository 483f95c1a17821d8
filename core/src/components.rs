//! ECS components and resources of the zone world: small plain structs, one concern each.
//!
//! Nothing structural changes in a steady-state tick (death is a [`Life`] value, not a removed
//! component), so archetypes never move and ticks do not allocate.

use std::collections::BTreeMap;

use bevy_ecs::prelude::*;
use glam::Vec2;
use smallvec::SmallVec;

use crate::{
    AbilityId, AbilityUse, EntityId, PlayerId, PlayerInput, PlayerStats, Rules, TileMap, ZoneId,
};

/// The replicated id of an entity.
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetId(pub EntityId);

/// World position, units.
#[derive(Component, Clone, Copy, Debug, PartialEq)]
pub struct Position(pub Vec2);

/// Velocity, units per second.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq)]
pub struct Velocity(pub Vec2);

/// Facing angle, radians.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq)]
pub struct Facing(pub f32);

/// Where the entity wants to go: a unit (or zero) direction and a speed already capped by the
/// rules for its kind. Set by inputs (players) or AI (NPCs), enforced by the movement system.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq)]
pub struct Intent {
    /// Direction, length <= 1.
    pub dir: Vec2,
    /// Desired speed, units per second.
    pub speed: f32,
}

/// Hit points.
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    /// Current.
    pub current: u16,
    /// Maximum.
    pub max: u16,
}

/// Alive, or dead until a tick.
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    /// Moving, fighting.
    Alive,
    /// Respawns at the given tick.
    Dead {
        /// Tick of respawn.
        respawn_at: u64,
    },
}

impl Life {
    /// Whether alive.
    pub fn is_alive(self) -> bool {
        matches!(self, Life::Alive)
    }
}

/// Combat bookkeeping: who hit last, when the entity last fought, regeneration remainder.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq)]
pub struct Combatant {
    /// Last attacker.
    pub last_hit_by: Option<EntityId>,
    /// Last tick this entity dealt or took damage.
    pub last_combat_tick: u64,
    /// Fractional health regenerated but not yet applied.
    pub regen_carry: f32,
}

/// Tick at which each ability is ready again. Few abilities: stays inline.
#[derive(Component, Clone, Debug, Default, PartialEq)]
pub struct Cooldowns(pub SmallVec<[(AbilityId, u64); 4]>);

impl Cooldowns {
    /// Whether `ability` can be used at `tick`.
    pub fn ready(&self, ability: AbilityId, tick: u64) -> bool {
        self.0
            .iter()
            .find(|(a, _)| *a == ability)
            .is_none_or(|(_, t)| *t <= tick)
    }

    /// Starts the cooldown of `ability` until `ready_at`.
    pub fn start(&mut self, ability: AbilityId, ready_at: u64) {
        match self.0.iter_mut().find(|(a, _)| *a == ability) {
            Some(slot) => slot.1 = ready_at,
            None => self.0.push((ability, ready_at)),
        }
    }
}

/// Room of [`Player::queued`] (one input per tick ahead; when it is full, the oldest queued
/// input takes effect at once).
pub const INPUT_QUEUE: usize = 32;

/// Where every entity was at each of the last [`TRAIL_LEN`] ticks: the history lag
/// compensation rewinds a target to. One array per tick (slot `tick % TRAIL_LEN`), indexed by
/// entity id, so recording a tick writes one array front to back.
#[derive(Resource, Clone, Debug, Default)]
pub struct Trails {
    slots: Vec<Vec<glam::Vec2>>,
}

/// Ticks of [`Trails`] kept: more than the largest rewind the rules allow.
pub const TRAIL_LEN: usize = 64;

impl Trails {
    /// Makes room for ids below `ids` (at spawn and join, never in a tick).
    pub fn reserve(&mut self, ids: usize) {
        if self.slots.len() != TRAIL_LEN {
            self.slots = vec![Vec::new(); TRAIL_LEN];
        }
        for s in &mut self.slots {
            if s.len() < ids {
                s.resize(ids, glam::Vec2::ZERO);
            }
        }
    }

    /// A new entity `id` has stood at `p` for as long as the trail remembers.
    pub fn place(&mut self, id: EntityId, p: glam::Vec2) {
        self.reserve(id.0 as usize + 1);
        for s in &mut self.slots {
            s[id.0 as usize] = p;
        }
    }

    /// Records `id` at `p` for `tick`.
    pub fn record(&mut self, tick: u64, id: EntityId, p: glam::Vec2) {
        if let Some(v) = self
            .slots
            .get_mut((tick % TRAIL_LEN as u64) as usize)
            .and_then(|s| s.get_mut(id.0 as usize))
        {
            *v = p;
        }
    }

    /// Where `id` was at the end of `tick` (within the last [`TRAIL_LEN`] ticks).
    pub fn at(&self, tick: u64, id: EntityId) -> Option<glam::Vec2> {
        self.slots
            .get((tick % TRAIL_LEN as u64) as usize)?
            .get(id.0 as usize)
            .copied()
    }
}

/// An ability use waiting for the combat system.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq)]
pub struct PendingAbility(pub Option<AbilityUse>);

/// A player avatar: who controls it and its persistent counters.
#[derive(Component, Clone, Debug, PartialEq)]
pub struct Player {
    /// The account.
    pub id: PlayerId,
    /// The input in effect (movement is sticky until replaced).
    pub input: Option<PlayerInput>,
    /// Newest accepted input sequence number.
    pub last_seq: Option<u32>,
    /// Accepted inputs stamped for ticks not simulated yet, by increasing tick (at most
    /// [`INPUT_QUEUE`]): each takes effect in the simulation of its tick, as the client that
    /// predicted it assumed.
    pub queued: std::collections::VecDeque<PlayerInput>,
    /// Inputs that took effect later than the tick they were stamped for (arrived late, or
    /// pushed out of a full queue early), so far.
    pub late_inputs: u32,
    /// Lifetime counters.
    pub stats: PlayerStats,
    /// Version of the last emitted save.
    pub version: crate::Version,
    /// Index of the spawn point the player respawns at.
    pub spawn_index: u32,
}

/// What an NPC is doing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AiState {
    /// Standing still until a tick.
    Idle {
        /// When to consider wandering.
        until: u64,
    },
    /// Walking to a point near home, giving up at a tick.
    Wander {
        /// Destination.
        goal: Vec2,
        /// Give up at this tick.
        until: u64,
    },
    /// Chasing and attacking a target.
    Chase {
        /// The target.
        target: EntityId,
    },
    /// Walking home after losing or leashing from a target.
    Return,
}

/// A non-player character and its AI.
#[derive(Component, Clone, Copy, Debug, PartialEq)]
pub struct Npc {
    /// Spawn point and leash anchor.
    pub home: Vec2,
    /// Current behaviour.
    pub state: AiState,
}

/// A game plugin's object ([`crate::game::GameApp::spawn_prop`]): replicated, positioned, no
/// health, no AI.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prop;

/// The tick counter.
#[derive(Resource, Clone, Copy, Debug, Default)]
pub struct Clock {
    /// Last simulated tick.
    pub tick: u64,
}

/// Zone identity and its seed.
#[derive(Resource, Clone, Copy, Debug)]
pub struct ZoneInfo {
    /// Zone id.
    pub zone: ZoneId,
    /// Seed of all randomness.
    pub seed: u64,
}

/// The rules, as a resource.
#[derive(Resource, Clone, Debug)]
pub struct RulesRes(pub Rules);

/// The map, as a resource.
#[derive(Resource, Clone, Debug)]
pub struct MapRes(pub TileMap);

/// Canonical lookup tables: ordered maps, so iteration is deterministic.
#[derive(Resource, Debug, Default)]
pub struct Registry {
    /// Every entity by replicated id.
    pub entities: BTreeMap<EntityId, Entity>,
    /// Player avatars by account.
    pub players: BTreeMap<PlayerId, EntityId>,
    /// Next replicated id.
    pub next_id: u32,
    /// NPC count.
    pub npcs: u32,
}

/// Inputs counted between ticks, moved into the next tick's metrics.
#[derive(Resource, Debug, Default)]
pub struct InputCounters {
    /// Accepted.
    pub applied: u32,
    /// Refused, by kind.
    pub rejected: [u32; crate::InputError::COUNT],
    /// Accepted after the tick they were stamped for had been simulated.
    pub late: u32,
}

/// Actions a player has queued for the coming tick (at most
/// [`crate::game::ACTIONS_PER_PLAYER_TICK`]): `used` counts for tick `tick` only.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActionBudget {
    /// The tick the count is for.
    pub tick: u64,
    /// Actions queued for it.
    pub used: u8,
}

mod hashing {
    //! The entity model's share of the zone's state hash.

    use super::*;
    use crate::game::{StateHash, StateHasher};

    macro_rules! newtype {
        ($($t:ty),*) => {$(
            impl StateHash for $t {
                fn hash_state(&self, h: &mut StateHasher<'_>) {
                    h.put(&self.0);
                }
            }
        )*};
    }
    newtype!(Position, Velocity, Facing);

    impl StateHash for Intent {
        fn hash_state(&self, h: &mut StateHasher<'_>) {
            h.put(&self.dir);
            h.put(&self.speed);
        }
    }

    impl StateHash for Health {
        fn hash_state(&self, h: &mut StateHasher<'_>) {
            h.put(&self.current);
            h.put(&self.max);
        }
    }

    impl StateHash for Life {
        fn hash_state(&self, h: &mut StateHasher<'_>) {
            match self {
                Life::Alive => h.put(&1u8),
                Life::Dead { respawn_at } => {
                    h.put(&2u8);
                    h.put(respawn_at);
                }
            }
        }
    }

    impl StateHash for Combatant {
        fn hash_state(&self, h: &mut StateHasher<'_>) {
            h.put(&self.last_hit_by);
            h.put(&self.last_combat_tick);
            h.put(&self.regen_carry);
        }
    }

    impl StateHash for Cooldowns {
        fn hash_state(&self, h: &mut StateHasher<'_>) {
            h.put(&(self.0.len() as u8));
            for (a, t) in &self.0 {
                h.put(&a.0);
                h.put(t);
            }
        }
    }

    impl StateHash for PendingAbility {
        fn hash_state(&self, h: &mut StateHasher<'_>) {
            h.put(&self.0.map(|u| (u.ability.0, u.target)));
        }
    }

    impl StateHash for Player {
        fn hash_state(&self, h: &mut StateHasher<'_>) {
            h.put(&self.id);
            h.put(&self.last_seq);
            let s = self.stats;
            h.put(&s.kills);
            h.put(&s.deaths);
            h.put(&s.damage_dealt);
            h.put(&s.damage_taken);
            h.put(&s.xp);
            h.put(&self.version.raw());
            h.put(&self.input.map(|i| (i.seq, (i.direction(), i.run))));
            h.put(&(self.queued.len() as u32));
            for q in &self.queued {
                h.put(&(q.seq, q.tick));
            }
            h.put(&self.spawn_index);
        }
    }

    impl StateHash for AiState {
        fn hash_state(&self, h: &mut StateHasher<'_>) {
            match *self {
                AiState::Idle { until } => h.put(&(1u8, until)),
                AiState::Wander { goal, until } => {
                    h.put(&2u8);
                    h.put(&(goal, until));
                }
                AiState::Chase { target } => h.put(&(3u8, target)),
                AiState::Return => h.put(&4u8),
            }
        }
    }

    impl StateHash for Npc {
        fn hash_state(&self, h: &mut StateHasher<'_>) {
            h.put(&self.home);
            h.put(&self.state);
        }
    }

    impl StateHash for ActionBudget {
        fn hash_state(&self, h: &mut StateHasher<'_>) {
            h.put(&(self.tick, self.used));
        }
    }
}

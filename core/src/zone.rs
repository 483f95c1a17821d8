//! [`Zone`]: the sans-IO facade over the ECS world. Inputs are method calls with plain data;
//! each [`Zone::tick`] runs the systems once in their fixed order and returns what happened.
//!
//! The zone owns no clock, socket or thread: the caller decides when a tick happens.

use bevy_ecs::prelude::*;
use glam::Vec2;
use xxhash_rust::xxh3::Xxh3;

use crate::components::{
    ActionBudget, AiState, Clock, Combatant, Cooldowns, Facing, Health, INPUT_QUEUE, InputCounters,
    Intent, Life, MapRes, NetId, Npc, PendingAbility, Player, Position, Prop, Registry, RulesRes,
    Trails, Velocity, ZoneInfo,
};
use crate::game::{
    ACTIONS_PER_PLAYER_TICK, ActionCount, ActionError, Game, GameTables, MAX_ACTION_BYTES,
    Population, StateHasher, Submitter, load_all, save_all,
};
use crate::rng::{self, Purpose};
use crate::systems;
use crate::{
    ConfigError, EntityId, InputError, PlayerId, PlayerInput, PlayerState, Rules, TickOutput,
    TileMap, ZoneConfig, ZoneId,
};

/// Why a player could not join.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JoinError {
    /// The player already has an avatar here.
    #[error("player {0:?} is already in the zone")]
    AlreadyInZone(PlayerId),
    /// `max_players` reached.
    #[error("zone is full ({0} players)")]
    ZoneFull(u32),
    /// The saved state cannot be used (e.g. a corrupt database row).
    #[error("saved player state rejected: {0}")]
    InvalidState(&'static str),
}

/// What kind of entity, and whose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntityKind {
    /// A player avatar.
    Player(PlayerId),
    /// A non-player character.
    Npc,
    /// A game plugin's object ([`crate::game::GameApp::spawn_prop`]).
    Prop,
}

/// A read-only copy of one entity's replicated state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EntityView {
    /// Replicated id.
    pub id: EntityId,
    /// Player or NPC.
    pub kind: EntityKind,
    /// Position.
    pub position: Vec2,
    /// Velocity, units per second.
    pub velocity: Vec2,
    /// Facing, radians.
    pub facing: f32,
    /// Current health.
    pub health: u16,
    /// Maximum health.
    pub max_health: u16,
    /// Alive or dead.
    pub alive: bool,
    /// Who hit it last.
    pub last_hit_by: Option<EntityId>,
    /// A player's input in effect (its sequence number, 0: none) and count of late inputs;
    /// `(0, 0)` for an NPC.
    pub input: (u32, u32),
    /// The game plugins' replicated components, encoded.
    pub ext: crate::protocol::Ext,
}

/// One simulated zone.
///
/// ```
/// use zone_core::{PlayerId, PlayerInput, Zone, ZoneConfig, ZoneId};
/// let mut zone = Zone::new(ZoneConfig::arena(ZoneId(1), 64, 64, 20), 42).unwrap();
/// let state = zone.new_character(PlayerId(7));
/// zone.join(PlayerId(7), state).unwrap();
/// let input = PlayerInput::movement(1, zone.current_tick(), glam::Vec2::X, true);
/// zone.handle_input(PlayerId(7), input).unwrap();
/// let out = zone.tick();
/// assert_eq!(out.tick, 1);
/// assert_eq!(out.metrics.players, 1);
/// ```
pub struct Zone {
    world: World,
    schedule: Schedule,
    /// What the game's plugins registered: hashed state, actions, hooks.
    game: GameTables,
    /// Reads an entity's replicated state in one lookup ([`Zone::entities`] runs every tick);
    /// its archetype cache is refreshed after everything that spawns.
    views: QueryState<ViewData>,
    /// Every entity in id order (the registry's map, flattened for the per-tick walk);
    /// rebuilt after every join and leave.
    order: Vec<(EntityId, Entity)>,
}

/// The components an [`EntityView`] is read from.
type ViewData = (
    Option<&'static Health>,
    Option<&'static Player>,
    &'static Position,
    &'static Velocity,
    &'static Facing,
    &'static Life,
    Option<&'static Combatant>,
    Has<Prop>,
);

impl std::fmt::Debug for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zone")
            .field("zone", &self.zone_id())
            .field("tick", &self.current_tick())
            .field("entities", &self.entity_count())
            .finish_non_exhaustive()
    }
}

impl Zone {
    /// Builds a zone of the built-in game ([`Game::default`]) and spawns its NPCs. The same
    /// config and seed always give the same zone.
    pub fn new(config: ZoneConfig, seed: u64) -> Result<Self, ConfigError> {
        Self::with_game(config, seed, &Game::default())
    }

    /// Builds a zone running `game`'s plugins, in order, and spawns its NPCs.
    pub fn with_game(config: ZoneConfig, seed: u64, game: &Game) -> Result<Self, ConfigError> {
        config.validate()?;
        let ZoneConfig {
            zone,
            rules,
            map,
            npc_spawns,
        } = config;
        let mut world = World::new();
        world.insert_resource(Clock::default());
        world.insert_resource(ZoneInfo { zone, seed });
        world.insert_resource(TickOutput::default());
        world.insert_resource(InputCounters::default());
        let mut registry = Registry {
            next_id: 1,
            ..Registry::default()
        };
        let mut trails = Trails::default();
        for (region_index, region) in npc_spawns.iter().enumerate() {
            for i in 0..region.count {
                let mut draw = rng::stream(
                    seed,
                    region_index as u64,
                    u64::from(i),
                    Purpose::NpcPlacement,
                );
                let spot = draw.in_disc(region.center, region.radius);
                let home = if map.body_fits_within(spot, rules.body_radius) {
                    spot
                } else {
                    map.nearest_walkable(spot)
                };
                let id = EntityId(registry.next_id);
                registry.next_id += 1;
                let entity = world
                    .spawn((
                        NetId(id),
                        Position(home),
                        Velocity::default(),
                        Facing::default(),
                        Intent::default(),
                        Health {
                            current: rules.npc.max_health,
                            max: rules.npc.max_health,
                        },
                        Life::Alive,
                        Combatant::default(),
                        Cooldowns::default(),
                        PendingAbility::default(),
                        Npc {
                            home,
                            state: AiState::Idle {
                                until: u64::from(draw.below(240)),
                            },
                        },
                    ))
                    .id();
                registry.entities.insert(id, entity);
                registry.npcs += 1;
                trails.place(id, home);
            }
        }
        trails.reserve(registry.next_id as usize);
        world.insert_resource(trails);
        world.insert_resource(registry);
        world.insert_resource(RulesRes(rules));
        world.insert_resource(MapRes(map));
        let mut tables = GameTables::default();
        tables.hash_component::<Position>();
        tables.hash_component::<Velocity>();
        tables.hash_component::<Facing>();
        tables.hash_component::<Intent>();
        tables.hash_component::<Health>();
        tables.hash_component::<Life>();
        tables.hash_component::<Combatant>();
        tables.hash_component::<Cooldowns>();
        tables.hash_component::<PendingAbility>();
        tables.hash_component::<Player>();
        tables.hash_component::<ActionBudget>();
        tables.hash_component::<Npc>();
        let mut schedule = GameTables::schedule();
        game.build(&mut world, &mut schedule, &mut tables)?;
        if let Err(e) = schedule.initialize(&mut world) {
            return Err(ConfigError::Schedule(e.to_string(schedule.graph(), &world)));
        }
        let views = world.query::<ViewData>();
        let mut zone = Self {
            world,
            schedule,
            game: tables,
            views,
            order: Vec::new(),
        };
        zone.reindex();
        zone.reserve_for_population();
        Ok(zone)
    }

    /// The last simulated tick (0 before the first).
    pub fn current_tick(&self) -> u64 {
        self.world.resource::<Clock>().tick
    }

    /// The zone id.
    pub fn zone_id(&self) -> ZoneId {
        self.world.resource::<ZoneInfo>().zone
    }

    /// The rules in force.
    pub fn rules(&self) -> &Rules {
        &self.world.resource::<RulesRes>().0
    }

    /// The map.
    pub fn map(&self) -> &TileMap {
        &self.world.resource::<MapRes>().0
    }

    /// A fresh character for `player`: full health at the player's spawn point.
    pub fn new_character(&self, player: PlayerId) -> PlayerState {
        let spawns = self.map().player_spawns();
        let at = spawns
            .get(player.0 as usize % spawns.len().max(1))
            .copied()
            .unwrap_or(Vec2::splat(0.5));
        PlayerState::new_character(at.x, at.y, self.rules().player_max_health)
    }

    /// Puts a player's avatar into the zone from its saved state.
    ///
    /// A position that is no longer walkable (the map changed) moves to the player's spawn
    /// point; a state with non-finite numbers or impossible health is refused.
    pub fn join(&mut self, player: PlayerId, state: PlayerState) -> Result<EntityId, JoinError> {
        let rules = self.rules();
        let max_health = rules.player_max_health;
        let (radius, respawn, max_players) = (
            rules.body_radius,
            rules.player_respawn_ticks,
            rules.max_players,
        );
        let registry = self.world.resource::<Registry>();
        if registry.players.contains_key(&player) {
            return Err(JoinError::AlreadyInZone(player));
        }
        if registry.players.len() as u32 >= max_players {
            return Err(JoinError::ZoneFull(max_players));
        }
        if !state.x.is_finite() || !state.y.is_finite() || !state.facing.is_finite() {
            return Err(JoinError::InvalidState(
                "position or facing is not a finite number",
            ));
        }
        if state.health > max_health {
            return Err(JoinError::InvalidState("health above the rules' maximum"));
        }
        let spawns_len = self.map().player_spawns().len().max(1);
        let mut position = Vec2::new(state.x, state.y);
        if !self.map().body_fits(position, radius) {
            let fresh = self.new_character(player);
            position = Vec2::new(fresh.x, fresh.y);
        }
        let tick = self.current_tick();
        let life = if state.health == 0 {
            Life::Dead {
                respawn_at: tick + u64::from(respawn.max(1)),
            }
        } else {
            Life::Alive
        };
        let pi = std::f32::consts::PI;
        let facing = if state.facing.abs() <= pi {
            state.facing
        } else {
            (state.facing + pi).rem_euclid(2.0 * pi) - pi
        };
        let mut registry = self.world.resource_mut::<Registry>();
        let id = EntityId(registry.next_id);
        registry.next_id += 1;
        let entity = self
            .world
            .spawn((
                NetId(id),
                Position(position),
                Velocity::default(),
                Facing(facing),
                Intent::default(),
                Health {
                    current: state.health,
                    max: max_health,
                },
                life,
                Combatant::default(),
                Cooldowns::default(),
                PendingAbility::default(),
                Player {
                    id: player,
                    input: None,
                    last_seq: None,
                    queued: std::collections::VecDeque::with_capacity(INPUT_QUEUE),
                    late_inputs: 0,
                    stats: state.stats,
                    version: state.version,
                    spawn_index: (player.0 % spawns_len as u64) as u32,
                },
                ActionBudget::default(),
            ))
            .id();
        let mut avatar = self.world.entity_mut(entity);
        for hook in &self.game.join_hooks {
            hook(&mut avatar);
        }
        self.game.persist_errors.0 += load_all(&self.game.persist, &mut avatar, &state.plugins);
        self.views.update_archetypes(&self.world);
        let mut registry = self.world.resource_mut::<Registry>();
        registry.entities.insert(id, entity);
        registry.players.insert(player, id);
        self.world.resource_mut::<Trails>().place(id, position);
        self.reindex();
        self.reserve_for_population();
        Ok(id)
    }

    /// Grows per-tick buffers to their worst case for the current population, so that no tick
    /// allocates: each entity uses at most one ability and dies or respawns at most once per
    /// tick, and each player gets at most two saves (event + checkpoint).
    fn reserve_for_population(&mut self) {
        let entities = self.entity_count();
        let players = self.player_count();
        fn at_least<T>(v: &mut Vec<T>, n: usize) {
            v.reserve(n.saturating_sub(v.len()));
        }
        let mut out = self.world.resource_mut::<TickOutput>();
        let out = &mut *out;
        at_least(&mut out.combat_events, entities);
        at_least(&mut out.deaths, entities);
        at_least(&mut out.respawns, entities);
        at_least(&mut out.player_saves, 2 * players);
        at_least(&mut out.crossings, players);
        let population = Population { entities, players };
        for hook in &self.game.population_hooks {
            hook(&mut self.world, population);
        }
        for action in &self.game.actions {
            (action.reserve)(&mut self.world, ACTIONS_PER_PLAYER_TICK * players);
        }
    }

    /// Puts a player who stepped over the border back inside the zone (nearest spot inside,
    /// standing still): the shell does this when the neighbouring zone cannot take them.
    /// Returns `false` if the player is not here.
    pub fn place_inside(&mut self, player: PlayerId) -> bool {
        let Some(entity) = self.player_ecs_entity(player) else {
            return false;
        };
        let radius = self.rules().body_radius;
        let Some(now) = self.world.get::<Position>(entity).map(|p| p.0) else {
            return false;
        };
        let map = self.map();
        let mut spot = map.clamp_inside(now, radius + 0.05);
        if !map.body_fits_within(spot, radius) {
            spot = map.nearest_walkable(spot);
        }
        if let Ok(mut e) = self.world.get_entity_mut(entity) {
            if let Some(mut p) = e.get_mut::<Position>() {
                p.0 = spot;
            }
            if let Some(mut v) = e.get_mut::<Velocity>() {
                v.0 = Vec2::ZERO;
            }
        }
        true
    }

    fn player_ecs_entity(&self, player: PlayerId) -> Option<Entity> {
        let registry = self.world.resource::<Registry>();
        registry
            .players
            .get(&player)
            .and_then(|id| registry.entities.get(id))
            .copied()
    }

    /// Takes a player's avatar out of the zone and returns its state to save (version bumped).
    pub fn leave(&mut self, player: PlayerId) -> Option<PlayerState> {
        let entity = {
            let mut registry = self.world.resource_mut::<Registry>();
            let id = registry.players.remove(&player)?;
            registry.entities.remove(&id)?
        };
        self.reindex();
        let mut state = self.player_state_of(entity)?;
        state.version = state.version.next();
        self.world.despawn(entity);
        Some(state)
    }

    fn reindex(&mut self) {
        let registry = self.world.resource::<Registry>();
        self.order.clear();
        self.order
            .extend(registry.entities.iter().map(|(id, e)| (*id, *e)));
    }

    /// The current state of a player in the zone (version as last saved).
    pub fn player_state(&self, player: PlayerId) -> Option<PlayerState> {
        let registry = self.world.resource::<Registry>();
        let entity = registry.entities.get(registry.players.get(&player)?)?;
        self.player_state_of(*entity)
    }

    fn player_state_of(&self, entity: Entity) -> Option<PlayerState> {
        let w = &self.world;
        let mut state = systems::player_state(
            w.get::<Player>(entity)?,
            w.get::<Position>(entity)?,
            w.get::<Facing>(entity)?,
            w.get::<Health>(entity)?,
        );
        // What does not fit was refused when the game was built; a plugin that writes past
        // its declared size is counted at its checkpoints.
        let _ = save_all(
            &self.game.persist,
            &w.get_entity(entity).ok()?,
            &mut state.plugins,
        );
        Some(state)
    }

    /// Fills the plugin state of the tick's player saves (the systems emit them with the
    /// entity model's fields).
    fn fill_plugin_saves(&mut self) {
        let mut saves = std::mem::take(&mut self.world.resource_mut::<TickOutput>().player_saves);
        let registry = self.world.resource::<Registry>();
        for save in &mut saves {
            let entity = registry
                .players
                .get(&save.player)
                .and_then(|id| registry.entities.get(id))
                .and_then(|e| self.world.get_entity(*e).ok());
            if let Some(e) = entity
                && save_all(&self.game.persist, &e, &mut save.state.plugins).is_err()
            {
                self.game.persist_errors.1 += 1;
            }
        }
        self.world.resource_mut::<TickOutput>().player_saves = saves;
    }

    /// Plugin records that did not load when their player joined (their plugin's join value
    /// was kept), and saves whose plugin state did not fit, since the zone was built.
    pub fn plugin_state_errors(&self) -> (u64, u64) {
        self.game.persist_errors
    }

    /// The replicated id of a player's avatar.
    pub fn player_entity(&self, player: PlayerId) -> Option<EntityId> {
        self.world
            .resource::<Registry>()
            .players
            .get(&player)
            .copied()
    }

    /// A player's avatar exactly as simulated, with the sequence number of the input in effect
    /// (what the avatar section of its snapshots carries).
    pub fn avatar_state(&self, player: PlayerId) -> Option<crate::protocol::AvatarState> {
        let registry = self.world.resource::<Registry>();
        let id = registry.players.get(&player)?;
        let entity = *registry.entities.get(id)?;
        let e = self.world.get_entity(entity).ok()?;
        Some(crate::protocol::AvatarState {
            seq: e.get::<Player>()?.input.map_or(0, |i| i.seq),
            pos: e.get::<Position>()?.0,
            vel: e.get::<Velocity>()?.0,
            alive: e.get::<Life>()?.is_alive(),
            late: e.get::<Player>()?.late_inputs,
        })
    }

    /// Players in the zone, in id order.
    pub fn players(&self) -> impl Iterator<Item = (PlayerId, EntityId)> + '_ {
        self.world
            .resource::<Registry>()
            .players
            .iter()
            .map(|(p, e)| (*p, *e))
    }

    /// Number of players in the zone.
    pub fn player_count(&self) -> usize {
        self.world.resource::<Registry>().players.len()
    }

    /// Number of entities (players and NPCs).
    pub fn entity_count(&self) -> usize {
        self.world.resource::<Registry>().entities.len()
    }

    /// The ECS entity behind a replicated id (to read a plugin's components between ticks
    /// through [`Zone::world`]).
    pub fn ecs_entity(&self, id: EntityId) -> Option<Entity> {
        self.world.resource::<Registry>().entities.get(&id).copied()
    }

    /// A copy of one entity's replicated state.
    pub fn entity(&self, id: EntityId) -> Option<EntityView> {
        let entity = *self.world.resource::<Registry>().entities.get(&id)?;
        self.view(id, entity)
    }

    /// Every entity's replicated state, in id order.
    pub fn entities(&self) -> impl Iterator<Item = EntityView> + '_ {
        self.order.iter().filter_map(|(id, e)| self.view(*id, *e))
    }

    fn view(&self, id: EntityId, entity: Entity) -> Option<EntityView> {
        let row = match self.views.get_manual(&self.world, entity) {
            Ok(row) => row,
            // An archetype the cache has not seen yet: the slow way.
            Err(_) => {
                let e = self.world.get_entity(entity).ok()?;
                (
                    e.get::<Health>(),
                    e.get::<Player>(),
                    e.get::<Position>()?,
                    e.get::<Velocity>()?,
                    e.get::<Facing>()?,
                    e.get::<Life>()?,
                    e.get::<Combatant>(),
                    e.contains::<Prop>(),
                )
            }
        };
        let (health, player, position, velocity, facing, life, combatant, prop) = row;
        let layout = &self.game.layout;
        let ext = if layout.components().is_empty() {
            crate::protocol::Ext::default()
        } else {
            layout.read(&self.world.get_entity(entity).ok()?)
        };
        Some(EntityView {
            id,
            kind: match player {
                Some(p) => EntityKind::Player(p.id),
                None if prop => EntityKind::Prop,
                None => EntityKind::Npc,
            },
            input: player.map_or((0, 0), |p| (p.input.map_or(0, |i| i.seq), p.late_inputs)),
            position: position.0,
            velocity: velocity.0,
            facing: facing.0,
            health: health.map_or(0, |h| h.current),
            max_health: health.map_or(0, |h| h.max),
            alive: life.is_alive(),
            last_hit_by: combatant.and_then(|c| c.last_hit_by),
            ext,
        })
    }

    /// Validates and queues one input of a player. Refusals are typed and counted in the next
    /// tick's metrics; nothing here can move anyone faster than the rules allow.
    pub fn handle_input(&mut self, player: PlayerId, input: PlayerInput) -> Result<(), InputError> {
        let result = self.accept_input(player, input);
        let mut counters = self.world.resource_mut::<InputCounters>();
        match result {
            Ok(()) => counters.applied += 1,
            Err(e) => counters.rejected[e.index()] += 1,
        }
        result
    }

    fn accept_input(&mut self, player: PlayerId, input: PlayerInput) -> Result<(), InputError> {
        input.check_values()?;
        let registry = self.world.resource::<Registry>();
        let entity = registry
            .players
            .get(&player)
            .and_then(|id| registry.entities.get(id))
            .copied()
            .ok_or(InputError::UnknownPlayer)?;
        let now = self.current_tick();
        let rules = self.rules();
        if input.tick > now + u64::from(rules.max_input_lead_ticks) {
            return Err(InputError::FromFuture);
        }
        if input.tick + u64::from(rules.max_input_age_ticks) < now {
            return Err(InputError::TooOld);
        }
        if let Some(u) = input.ability
            && rules.ability(u.ability).is_none()
        {
            return Err(InputError::UnknownAbility);
        }
        let mut e = self
            .world
            .get_entity_mut(entity)
            .map_err(|_| InputError::UnknownPlayer)?;
        let mut p = e.get_mut::<Player>().ok_or(InputError::UnknownPlayer)?;
        if p.last_seq.is_some_and(|last| input.seq <= last) {
            return Err(InputError::Stale);
        }
        p.last_seq = Some(input.seq);
        let late = input.tick <= now;
        // An input stamped for a tick not simulated yet waits for it (the client predicted it
        // there); one for the next tick or earlier takes effect at once.
        let effective = if input.tick > now + 1 {
            while p.queued.back().is_some_and(|q| q.tick >= input.tick) {
                p.queued.pop_back();
            }
            let early = if p.queued.len() == INPUT_QUEUE {
                p.queued.pop_front()
            } else {
                None
            };
            p.queued.push_back(input);
            if early.is_some() {
                p.late_inputs = p.late_inputs.wrapping_add(1);
            }
            early
        } else {
            // Anything queued is older than this input, which replaces it.
            p.queued.clear();
            Some(input)
        };
        if late {
            p.late_inputs = p.late_inputs.wrapping_add(1);
        }
        if let Some(input) = effective {
            p.input = Some(input);
            if let Some(u) = input.ability
                && let Some(mut pending) = e.get_mut::<PendingAbility>()
            {
                pending.0 = Some(u);
            }
        }
        if late {
            self.world.resource_mut::<InputCounters>().late += 1;
        }
        Ok(())
    }

    /// Simulates one tick and returns what happened. The output is valid until the next call.
    pub fn tick(&mut self) -> &TickOutput {
        let tick = {
            let mut clock = self.world.resource_mut::<Clock>();
            clock.tick += 1;
            clock.tick
        };
        let counters = std::mem::take(&mut *self.world.resource_mut::<InputCounters>());
        {
            let mut out = self.world.resource_mut::<TickOutput>();
            out.reset(tick);
            out.metrics.inputs_applied = counters.applied;
            out.metrics.inputs_rejected = counters.rejected;
            out.metrics.inputs_late = counters.late;
        }
        self.schedule.run(&mut self.world);
        for action in &self.game.actions {
            (action.clear)(&mut self.world);
        }
        if !self.world.resource::<TickOutput>().player_saves.is_empty() {
            self.fill_plugin_saves();
        }
        self.views.update_archetypes(&self.world);
        self.world.resource::<TickOutput>()
    }

    /// Hands a player's custom action (its wire kind and payload, from an untrusted client)
    /// to the plugin that registered it: decoded, validated and queued for the next tick, or
    /// refused with a typed reason. Either way it is counted ([`Zone::action_counts`]).
    pub fn handle_action(
        &mut self,
        player: PlayerId,
        kind: u16,
        payload: &[u8],
    ) -> Result<(), ActionError> {
        let Some(index) = self.game.actions.iter().position(|a| a.kind == kind) else {
            self.game.unknown_actions += 1;
            return Err(ActionError::UnknownKind(kind));
        };
        let result = self.submit_action(index, player, payload);
        let count = &mut self.game.action_counts[index];
        match &result {
            Ok(()) => count.accepted += 1,
            Err(e) => count.refuse(e.reason()),
        }
        result
    }

    fn submit_action(
        &mut self,
        index: usize,
        player: PlayerId,
        payload: &[u8],
    ) -> Result<(), ActionError> {
        let action = self.game.actions[index].name;
        if payload.len() > MAX_ACTION_BYTES {
            return Err(ActionError::TooLong(payload.len()));
        }
        let registry = self.world.resource::<Registry>();
        let (id, entity) = registry
            .players
            .get(&player)
            .and_then(|id| Some((*id, *registry.entities.get(id)?)))
            .ok_or(ActionError::UnknownPlayer { action })?;
        let tick = self.current_tick();
        let budget = self
            .world
            .get::<ActionBudget>(entity)
            .copied()
            .unwrap_or_default();
        let used = if budget.tick == tick { budget.used } else { 0 };
        if usize::from(used) >= ACTIONS_PER_PLAYER_TICK {
            return Err(ActionError::QueueFull { action });
        }
        // Every attempt spends the budget, refused or not: decoding and validating are the
        // work it bounds.
        if let Some(mut b) = self.world.get_mut::<ActionBudget>(entity) {
            *b = ActionBudget {
                tick,
                used: used + 1,
            };
        }
        let by = Submitter {
            entity,
            id,
            player,
            tick,
        };
        (self.game.actions[index].submit)(&mut self.world, by, payload)
    }

    /// Accepted and refused actions of every registered kind since the zone was built, in
    /// registration order.
    pub fn action_counts(&self) -> &[ActionCount] {
        &self.game.action_counts
    }

    /// Actions of a kind no plugin registered, since the zone was built.
    pub fn unknown_actions(&self) -> u64 {
        self.game.unknown_actions
    }

    /// The game's wire layout: its actions, replicated components and protocol hash.
    pub fn wire(&self) -> &crate::game::WireLayout {
        &self.game.layout
    }

    /// The plugins this zone runs, in order.
    pub fn plugins(&self) -> &[&'static str] {
        &self.game.plugins
    }

    /// The ECS world, to read (tests, tools, a plugin's queries between ticks).
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The ECS world, to change between ticks. For tests and tools: a change made here skips
    /// every check a system or [`Zone::handle_input`] makes.
    pub fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }

    /// The output of the last tick.
    pub fn last_output(&self) -> &TickOutput {
        self.world.resource::<TickOutput>()
    }

    /// A 64-bit hash of all gameplay state in canonical (entity id) order: the entity model and
    /// every component and resource the game's plugins registered
    /// ([`crate::game::GameApp::hash_component`]). Equal hashes mean equal zones, bit for bit.
    pub fn state_hash(&self) -> u64 {
        let mut xxh = Xxh3::new();
        let w = &self.world;
        let mut h = StateHasher(&mut xxh);
        h.put(&self.current_tick());
        for (id, &entity) in &w.resource::<Registry>().entities {
            h.put(id);
            let Ok(e) = w.get_entity(entity) else {
                continue;
            };
            for hash in &self.game.entity_hashers {
                hash(&e, &mut h);
            }
        }
        for hash in &self.game.resource_hashers {
            hash(w, &mut h);
        }
        xxh.digest()
    }
}

/// Spawns a plugin's object: see [`crate::game::GameApp::spawn_prop`].
pub(crate) fn spawn_prop(world: &mut World, at: Vec2, bundle: impl Bundle) -> (EntityId, Entity) {
    let id = {
        let mut registry = world.resource_mut::<Registry>();
        let id = EntityId(registry.next_id);
        registry.next_id += 1;
        id
    };
    let entity = world
        .spawn((
            NetId(id),
            Position(at),
            Velocity::default(),
            Facing::default(),
            Life::Alive,
            Prop,
        ))
        .insert(bundle)
        .id();
    world.resource_mut::<Registry>().entities.insert(id, entity);
    world.resource_mut::<Trails>().place(id, at);
    (id, entity)
}

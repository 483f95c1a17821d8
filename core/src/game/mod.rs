//! The game definition: what a zone simulates, as a list of plugins on one public API.
//!
//! The zone itself owns the entity model every game shares (replicated ids, players and NPCs,
//! position, velocity, facing, health, life: what replication, persistence and handoffs move)
//! and the fixed tick order. Everything a game *does* with it comes from [`ZonePlugin`]s, the
//! built-in game ([`BuiltinGame`]: movement, melee and ranged abilities, NPC AI, deaths,
//! respawns, regeneration, stats and checkpoints) included: it registers its systems, resources
//! and hashed state through the same [`GameApp`] calls a game team's plugin uses.
//!
//! ```
//! use zone_core::game::{At, Game, GameApp, Stage, ZonePlugin};
//! use zone_core::{Zone, ZoneConfig, ZoneId};
//! use bevy_ecs::prelude::*;
//!
//! #[derive(Resource, Default)]
//! struct Ticks(u64);
//! impl zone_core::game::StateHash for Ticks {
//!     fn hash_state(&self, h: &mut zone_core::game::StateHasher<'_>) { h.put(&self.0) }
//! }
//! fn count(mut t: ResMut<Ticks>) { t.0 += 1 }
//!
//! struct Counter;
//! impl ZonePlugin for Counter {
//!     fn name(&self) -> &'static str { "example.counter" }
//!     fn build(&self, app: &mut GameApp<'_>) {
//!         app.insert_resource(Ticks::default())
//!             .hash_resource::<Ticks>()
//!             .add_systems(At::After(Stage::Bookkeeping), count);
//!     }
//! }
//!
//! let game = Game::default().with(Counter);
//! let mut zone = Zone::with_game(ZoneConfig::arena(ZoneId(1), 32, 32, 0), 1, &game).unwrap();
//! zone.tick();
//! assert_eq!(zone.world().resource::<Ticks>().0, 1);
//! ```

use std::sync::Arc;

use bevy_ecs::prelude::*;
use bevy_ecs::schedule::SingleThreadedExecutor;
use bevy_ecs::system::ScheduleSystem;

mod action;
mod builtin;
mod hash;
pub mod kit;
mod persist;
mod wire;

pub use action::{
    ACTIONS_PER_PLAYER_TICK, Action, ActionCount, ActionError, Actions, Actor, CodecError,
    MAX_ACTION_BYTES, Reason, Submitted, action_kind,
};
pub(crate) use action::{ActionEntry, Submitter};
pub use builtin::BuiltinGame;
pub use hash::{StateHash, StateHasher};
pub use persist::{CarriedPlugins, Persistent, SaveBuf, record_tag};
pub(crate) use persist::{PersistEntry, load_all, save_all};
pub use wire::{MAX_REPLICATED, Replicated, Wire, WireLayout};

/// The entity model and zone resources plugins read and write.
pub mod components {
    pub use crate::components::{
        ActionBudget, AiState, Clock, Combatant, Cooldowns, Facing, Health, Intent, Life, MapRes,
        NetId, Npc, PendingAbility, Player, Position, Prop, RulesRes, Velocity, ZoneInfo,
    };
}

use crate::{Rules, TileMap, ZoneId};

/// The stages of a tick, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Players' inputs become intents.
    Inputs,
    /// Intents move bodies.
    Movement,
    /// Ability uses resolve.
    Combat,
    /// Deaths, respawns, regeneration.
    Life,
    /// NPCs decide.
    Ai,
    /// Checkpoints, border crossings, counts.
    Bookkeeping,
}

impl Stage {
    /// Every stage, in tick order.
    pub const ALL: [Stage; 6] = [
        Stage::Inputs,
        Stage::Movement,
        Stage::Combat,
        Stage::Life,
        Stage::Ai,
        Stage::Bookkeeping,
    ];
}

/// Where in the tick a plugin's systems run: just before a stage, in it (the built-in game's
/// place), or just after it. Systems registered at one place run in registration order
/// (plugins in the order the [`Game`] lists them), so a tick never depends on a scheduler's
/// choice.
#[derive(SystemSet, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum At {
    /// Before the stage's own systems.
    Before(Stage),
    /// With the stage's own systems (after those registered earlier).
    On(Stage),
    /// After the stage's own systems.
    After(Stage),
}

impl At {
    /// Every place, in tick order.
    fn all() -> impl Iterator<Item = At> {
        Stage::ALL
            .into_iter()
            .flat_map(|s| [At::Before(s), At::On(s), At::After(s)])
    }

    fn index(self) -> usize {
        let (s, part) = match self {
            At::Before(s) => (s, 0),
            At::On(s) => (s, 1),
            At::After(s) => (s, 2),
        };
        s as usize * 3 + part
    }
}

/// One registration at one place: systems at `n` run after those at `n - 1`.
#[derive(SystemSet, Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Slot {
    at: At,
    n: u16,
}

/// A piece of gameplay: components, resources, systems, hashed state and actions.
///
/// `build` runs once for every zone built with the plugin; read the zone's id, seed, rules and
/// map from the [`GameApp`] rather than from globals, so zones stay independent and
/// deterministic.
pub trait ZonePlugin: Send + Sync + 'static {
    /// A unique, stable name (`"team.mechanic"`).
    fn name(&self) -> &'static str;
    /// Declares what the plugin puts on the wire: its client actions and replicated
    /// components. Runs on clients too (no world here), so it must not depend on a zone.
    fn declare(&self, wire: &mut Wire) {
        let _ = wire;
    }
    /// Registers everything the plugin adds to a zone.
    fn build(&self, app: &mut GameApp<'_>);
}

/// The plugins a zone runs, in order. [`Game::default`] is the built-in game alone.
#[derive(Clone)]
pub struct Game {
    plugins: Vec<Arc<dyn ZonePlugin>>,
}

impl std::fmt::Debug for Game {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.plugin_names()).finish()
    }
}

impl Default for Game {
    fn default() -> Self {
        Self::empty().with(BuiltinGame)
    }
}

impl Game {
    /// No plugins: the entity model and nothing that changes it (players stand still, nobody
    /// fights). For tests of a plugin alone.
    pub fn empty() -> Self {
        Self {
            plugins: Vec::new(),
        }
    }

    /// Adds a plugin after those already listed.
    pub fn with(mut self, plugin: impl ZonePlugin) -> Self {
        self.plugins.push(Arc::new(plugin));
        self
    }

    /// The plugins' names, in order.
    pub fn plugin_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.plugins.iter().map(|p| p.name())
    }

    /// The wire layout of the plugins' declarations (what a [`crate::client::ClientSession`]
    /// needs to read their state and send their actions).
    pub fn wire(&self) -> Result<WireLayout, GameError> {
        let mut wire = Wire::default();
        for plugin in &self.plugins {
            plugin.declare(&mut wire);
        }
        wire.finish()
    }

    pub(crate) fn build(
        &self,
        world: &mut World,
        schedule: &mut Schedule,
        tables: &mut GameTables,
    ) -> Result<(), GameError> {
        let layout = self.wire()?;
        for action in layout.actions() {
            (action.init)(world);
            tables.actions.push(*action);
            tables.action_counts.push(ActionCount {
                action: action.name,
                ..ActionCount::default()
            });
        }
        tables.layout = layout;
        for plugin in &self.plugins {
            let name = plugin.name();
            if tables.plugins.contains(&name) {
                return Err(GameError::DuplicatePlugin(name));
            }
            tables.plugins.push(name);
            let mut app = GameApp {
                world: &mut *world,
                schedule: &mut *schedule,
                tables: &mut *tables,
                error: None,
            };
            plugin.build(&mut app);
            if let Some(e) = app.error {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// A game that cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GameError {
    /// Two plugins with one name.
    #[error("plugin {0:?} is listed twice")]
    DuplicatePlugin(&'static str),
    /// Two actions whose names hash to one wire kind (or one action registered twice).
    #[error("actions {0:?} and {1:?} share a wire kind: rename one")]
    ActionKindClash(&'static str, &'static str),
    /// More than [`MAX_REPLICATED`] replicated component kinds.
    #[error("replicated component {0:?}: at most {MAX_REPLICATED} kinds per game")]
    TooManyReplicated(&'static str),
    /// The replicated components' encodings do not fit [`crate::protocol::EXT_BYTES`].
    #[error(
        "replicated component {component:?} ends at byte {end}: at most {} bytes per entity",
        crate::protocol::EXT_BYTES
    )]
    ReplicatedTooLarge {
        /// The component that does not fit.
        component: &'static str,
        /// Where it would end.
        end: usize,
    },
    /// One component replicated twice.
    #[error("replicated component {0:?} is declared twice")]
    DuplicateReplicated(&'static str),
    /// Two persistent components whose names hash to one record tag (or one registered
    /// twice).
    #[error("persistent components {0:?} and {1:?} share a record tag: rename one")]
    PersistTagClash(&'static str, &'static str),
    /// The persistent components' records do not fit a save.
    #[error(
        "persistent component {0:?}: all records together exceed {max} bytes",
        max = crate::SAVED_PLUGIN_BYTES
    )]
    PersistTooLarge(&'static str),
}

/// The zone's population, for [`GameApp::on_population`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Population {
    /// Entities (players and NPCs).
    pub entities: usize,
    /// Players.
    pub players: usize,
}

type EntityHasher = fn(&EntityRef<'_>, &mut StateHasher<'_>);
type ResourceHasher = fn(&World, &mut StateHasher<'_>);
type JoinHook = fn(&mut EntityWorldMut<'_>);
type PopulationHook = fn(&mut World, Population);

/// What the plugins registered, kept by the zone.
#[derive(Default)]
pub(crate) struct GameTables {
    pub(crate) plugins: Vec<&'static str>,
    pub(crate) entity_hashers: Vec<EntityHasher>,
    pub(crate) resource_hashers: Vec<ResourceHasher>,
    pub(crate) actions: Vec<ActionEntry>,
    pub(crate) action_counts: Vec<ActionCount>,
    pub(crate) unknown_actions: u64,
    pub(crate) join_hooks: Vec<JoinHook>,
    pub(crate) population_hooks: Vec<PopulationHook>,
    pub(crate) persist: Vec<PersistEntry>,
    /// Plugin records that did not load on join, and saves whose plugin state did not fit.
    pub(crate) persist_errors: (u64, u64),
    /// The game's wire layout.
    pub(crate) layout: WireLayout,
    slots: [u16; 18],
}

impl std::fmt::Debug for GameTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GameTables")
            .field("plugins", &self.plugins)
            .field("actions", &self.actions)
            .finish_non_exhaustive()
    }
}

impl GameTables {
    /// A schedule with the tick's places configured in order.
    pub(crate) fn schedule() -> Schedule {
        let mut schedule = Schedule::default();
        schedule.set_executor(SingleThreadedExecutor::new());
        let places: Vec<At> = At::all().collect();
        for pair in places.windows(2) {
            schedule.configure_sets(pair[1].after(pair[0]));
        }
        schedule
    }

    /// Registers a component hasher (the zone's own model uses this too).
    pub(crate) fn hash_component<C: Component + StateHash>(&mut self) {
        self.entity_hashers.push(|e, h| match e.get::<C>() {
            Some(c) => {
                h.bytes(&[1]);
                c.hash_state(h);
            }
            None => h.bytes(&[0]),
        });
    }
}

/// What a plugin's [`ZonePlugin::build`] registers through. Calls chain.
pub struct GameApp<'a> {
    world: &'a mut World,
    schedule: &'a mut Schedule,
    tables: &'a mut GameTables,
    error: Option<GameError>,
}

impl std::fmt::Debug for GameApp<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GameApp")
            .field("plugins", &self.tables.plugins)
            .finish_non_exhaustive()
    }
}

impl GameApp<'_> {
    /// The zone being built.
    pub fn zone(&self) -> ZoneId {
        self.world.resource::<crate::components::ZoneInfo>().zone
    }

    /// The zone's seed (derive a plugin's randomness from it with [`crate::rng`]).
    pub fn seed(&self) -> u64 {
        self.world.resource::<crate::components::ZoneInfo>().seed
    }

    /// The zone's rules.
    pub fn rules(&self) -> &Rules {
        &self.world.resource::<crate::components::RulesRes>().0
    }

    /// The zone's map.
    pub fn map(&self) -> &TileMap {
        &self.world.resource::<crate::components::MapRes>().0
    }

    /// The zone's world, e.g. to spawn a plugin's own entities.
    pub fn world(&mut self) -> &mut World {
        self.world
    }

    /// Adds a resource.
    pub fn insert_resource<R: Resource>(&mut self, resource: R) -> &mut Self {
        self.world.insert_resource(resource);
        self
    }

    /// Adds systems at a place in the tick, after any registered there before.
    pub fn add_systems<M>(
        &mut self,
        at: At,
        systems: impl IntoScheduleConfigs<ScheduleSystem, M>,
    ) -> &mut Self {
        let i = at.index();
        let n = self.tables.slots[i];
        self.tables.slots[i] += 1;
        let slot = Slot { at, n };
        self.schedule.configure_sets(slot.in_set(at));
        if n > 0 {
            self.schedule
                .configure_sets(slot.after(Slot { at, n: n - 1 }));
        }
        self.schedule.add_systems(systems.in_set(slot));
        self
    }

    /// Makes [`crate::Zone::state_hash`] cover component `C` of every entity.
    pub fn hash_component<C: Component + StateHash>(&mut self) -> &mut Self {
        self.tables.hash_component::<C>();
        self
    }

    /// Makes [`crate::Zone::state_hash`] cover resource `R`.
    pub fn hash_resource<R: Resource + StateHash>(&mut self) -> &mut Self {
        self.tables
            .resource_hashers
            .push(|w, h| match w.get_resource::<R>() {
                Some(r) => {
                    h.bytes(&[1]);
                    r.hash_state(h);
                }
                None => h.bytes(&[0]),
            });
        self
    }

    /// Spawns a plugin's object (a [`components::Prop`]): a replicated entity with a
    /// position and the plugin's `bundle`, no health and no AI. Returns its replicated id and
    /// its ECS entity.
    pub fn spawn_prop(&mut self, at: glam::Vec2, bundle: impl Bundle) -> (crate::EntityId, Entity) {
        crate::zone::spawn_prop(self.world, at, bundle)
    }

    /// Saves component `C` of player avatars with the player and loads it on join (after the
    /// [`GameApp::on_join`] hooks, so a loaded value replaces a join default).
    pub fn persist<C: Persistent>(&mut self) -> &mut Self {
        let entry = PersistEntry::of::<C>();
        if let Some(other) = self.tables.persist.iter().find(|p| p.tag == entry.tag) {
            self.error
                .get_or_insert(GameError::PersistTagClash(other.name, entry.name));
            return self;
        }
        let total: usize = self
            .tables
            .persist
            .iter()
            .chain([&entry])
            .map(|p| 4 + p.max_bytes)
            .sum();
        if total > crate::SAVED_PLUGIN_BYTES || entry.max_bytes > usize::from(u8::MAX) {
            self.error
                .get_or_insert(GameError::PersistTooLarge(C::NAME));
            return self;
        }
        self.tables.persist.push(entry);
        self
    }

    /// Runs `hook` on every player avatar as it joins, after the zone's own components are
    /// in place: add the plugin's components here.
    pub fn on_join(&mut self, hook: fn(&mut EntityWorldMut<'_>)) -> &mut Self {
        self.tables.join_hooks.push(hook);
        self
    }

    /// Runs `hook` whenever the population grows (at build, join): grow per-tick buffers here
    /// to their worst case, so that no tick allocates.
    pub fn on_population(&mut self, hook: fn(&mut World, Population)) -> &mut Self {
        self.tables.population_hooks.push(hook);
        self
    }
}

//! [`BuiltinGame`]: the default game, registered through the same [`GameApp`] calls as any
//! plugin: movement, melee and ranged abilities with lag compensation, deaths, respawns and
//! regeneration, NPC AI, checkpoints and border crossings.

use super::{At, GameApp, Population, Stage, ZonePlugin};
use crate::grid::SpatialGrid;
use crate::systems::{self, CombatScratch, PlayerGrid};

/// The built-in game (see the [module](self) doc). Listed first by [`super::Game::default`].
#[derive(Clone, Copy, Debug, Default)]
pub struct BuiltinGame;

impl ZonePlugin for BuiltinGame {
    fn name(&self) -> &'static str {
        "zone.builtin"
    }

    fn build(&self, app: &mut GameApp<'_>) {
        let cell = app.rules().npc.aggro_radius.max(4.0);
        let grid = SpatialGrid::covering(app.map().origin(), app.map().size(), cell);
        app.insert_resource(PlayerGrid(grid))
            .insert_resource(CombatScratch::default())
            .add_systems(At::On(Stage::Inputs), systems::apply_inputs)
            .add_systems(At::On(Stage::Movement), systems::movement)
            .add_systems(At::On(Stage::Combat), systems::combat)
            .add_systems(At::On(Stage::Life), systems::life)
            .add_systems(At::On(Stage::Ai), systems::npc_ai)
            .add_systems(At::On(Stage::Bookkeeping), systems::bookkeeping)
            // Lag compensation's history is written last, once every body has moved.
            .add_systems(At::After(Stage::Bookkeeping), systems::record_trails)
            .on_population(|world, Population { entities, players }| {
                world.resource_mut::<CombatScratch>().reserve(entities);
                world.resource_mut::<PlayerGrid>().0.reserve(players);
            });
    }
}

//! The built-in game's systems, one module each, registered by [`crate::game::BuiltinGame`] at
//! the tick's stages: inputs -> movement -> combat -> life (deaths, respawns, regeneration) ->
//! NPC AI -> bookkeeping.
//!
//! Systems are plain functions over typed queries. None depends on the order a query visits
//! entities: where order matters (combat resolution, event lists) they sort by [`crate::EntityId`].

mod bookkeeping;
mod combat;
mod inputs;
mod life;
mod movement;
mod npc_ai;

pub(crate) use bookkeeping::bookkeeping;
pub(crate) use combat::{CombatScratch, combat, record_trails};
pub(crate) use inputs::apply_inputs;
pub(crate) use life::life;
pub(crate) use movement::movement;
pub(crate) use npc_ai::{PlayerGrid, npc_ai};

use crate::PlayerState;
use crate::components::{Facing, Health, Player, Position};

/// The persistent state of a player avatar, as stored.
pub(crate) fn player_state(
    p: &Player,
    pos: &Position,
    facing: &Facing,
    health: &Health,
) -> PlayerState {
    PlayerState {
        x: pos.0.x,
        y: pos.0.y,
        facing: facing.0,
        health: health.current,
        stats: p.stats,
        version: p.version,
        plugins: crate::SavedPlugins::default(),
    }
}

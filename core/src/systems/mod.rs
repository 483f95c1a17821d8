//! The zone's systems, one module each, and the fixed order they run in every tick:
//! inputs -> movement -> combat -> life (deaths, respawns, regeneration) -> NPC AI -> bookkeeping.
//!
//! Systems are plain functions over typed queries. None depends on the order a query visits
//! entities: where order matters (combat resolution, event lists) they sort by [`crate::EntityId`].

use bevy_ecs::prelude::*;
use bevy_ecs::schedule::SingleThreadedExecutor;

mod bookkeeping;
mod combat;
mod inputs;
mod life;
mod movement;
mod npc_ai;

pub(crate) use combat::CombatScratch;
pub(crate) use npc_ai::PlayerGrid;

use crate::PlayerState;
use crate::components::{Facing, Health, Player, Position};

/// Builds the tick schedule with the single-threaded executor and the fixed system order.
pub(crate) fn schedule() -> Schedule {
    let mut schedule = Schedule::default();
    schedule.set_executor(SingleThreadedExecutor::new());
    schedule.add_systems(
        (
            inputs::apply_inputs,
            movement::movement,
            combat::combat,
            life::life,
            npc_ai::npc_ai,
            bookkeeping::bookkeeping,
            combat::record_trails,
        )
            .chain(),
    );
    schedule
}

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
    }
}

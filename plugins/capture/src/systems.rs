//! The plugin's systems: flags planted by [`crate::PlantFlag`] become claims, and claims
//! progress to captures while uncontested.

use bevy_ecs::prelude::*;
use zone_core::EntityId;
use zone_core::game::Actions;
use zone_core::game::components::{Life, NetId, Player, Position};

use crate::action::check_flag;
use crate::{CapturePoint, CaptureRules, CaptureScore, Flag, PlantFlag};

/// The point entities: replicated id and ECS entity, by index (filled when the zone is built).
#[derive(Resource, Debug, Default)]
pub(crate) struct Points(pub(crate) Vec<(EntityId, Entity)>);

impl Points {
    pub(crate) fn entity(&self, id: EntityId) -> Option<Entity> {
        self.0.iter().find(|(p, _)| *p == id).map(|(_, e)| *e)
    }
}

/// Point `id` and its flag, between ticks.
pub(crate) fn find_point(world: &World, id: EntityId) -> Option<(CapturePoint, Flag)> {
    let entity = world.get_resource::<Points>()?.entity(id)?;
    let e = world.get_entity(entity).ok()?;
    Some((*e.get::<CapturePoint>()?, *e.get::<Flag>()?))
}

/// Turns this tick's accepted plants into claims, in arrival order: of two plants on one
/// point in one tick, the first wins (the second was valid when it arrived, and is dropped).
pub(crate) fn plant_flags(
    planted: Res<Actions<PlantFlag>>,
    points: Res<Points>,
    mut flags: Query<&mut Flag>,
    mut scores: Query<&mut CaptureScore>,
) {
    for a in planted.iter() {
        let Some(point) = points.entity(a.action.point) else {
            continue;
        };
        let Ok(mut flag) = flags.get_mut(point) else {
            continue;
        };
        if check_flag(&flag, a.id).is_err() || flag.claimant == Some(a.id) {
            continue;
        }
        *flag = Flag {
            claimant: Some(a.id),
            held: 0,
            percent: 0,
            ..*flag
        };
        if let Ok(mut score) = scores.get_mut(a.entity) {
            score.planted += 1;
        }
    }
}

/// Advances every claim: the claimant must be alive and on the point; another living player
/// on it holds the claim where it is (contested); `capture_ticks` uncontested ticks capture.
pub(crate) fn capture_progress(
    rules: Res<CaptureRules>,
    mut flags: Query<(&CapturePoint, &mut Flag)>,
    players: Query<(Entity, &NetId, &Position, &Life), With<Player>>,
    mut scores: Query<&mut CaptureScore>,
) {
    let need = rules.capture_ticks.max(1);
    for (point, mut flag) in &mut flags {
        let Some(claimant) = flag.claimant else {
            continue;
        };
        let (mut holder, mut contested) = (None, false);
        for (entity, net, pos, life) in &players {
            if !life.is_alive() || pos.0.distance(point.center) > rules.radius {
                continue;
            }
            if net.0 == claimant {
                holder = Some(entity);
            } else {
                contested = true;
            }
        }
        let Some(holder) = holder else {
            // Dead, gone or walked off: the claim drops.
            *flag = Flag {
                claimant: None,
                held: 0,
                percent: 0,
                ..*flag
            };
            continue;
        };
        if contested {
            continue;
        }
        let held = flag.held + 1;
        if held >= need {
            *flag = Flag {
                owner: Some(claimant),
                claimant: None,
                held: 0,
                percent: 0,
            };
            if let Ok(mut score) = scores.get_mut(holder) {
                score.captures += 1;
            }
        } else {
            flag.held = held;
            flag.percent = (u64::from(held) * 100 / u64::from(need)) as u8;
        }
    }
}

//! # zone-capture
//!
//! An example game plugin built only with `zone-core`'s public API ([`zone_core::game`]):
//! **capture points**. A point is a plugin object on the map. A living player standing on a
//! point plants a flag on it ([`PlantFlag`], a client action), then holds the point for
//! [`CaptureRules::capture_ticks`] while no other living player stands on it (a contested
//! point does not progress; the claim drops if the claimant dies or leaves). A completed
//! capture makes the claimant the point's owner and adds one to the player's
//! [`CaptureScore`], which is saved with the player.
//!
//! - replicated: each point's [`Flag`] (owner, claimant, progress) travels in the snapshot
//!   stream; clients read it with `ClientSession::component::<Flag>(id)`;
//! - persistent: [`CaptureScore`] is saved and loaded with the player (spool, hot and cold
//!   stores, versions);
//! - hashed: points, flags and scores are in the zone's state hash;
//! - zero allocations per tick.
//!
//! ```
//! use zone_capture::CapturePoints;
//! use zone_core::game::Game;
//! use zone_core::{Zone, ZoneConfig, ZoneId};
//! let game = Game::default().with(CapturePoints::demo());
//! let zone = Zone::with_game(ZoneConfig::arena(ZoneId(1), 64, 64, 10), 1, &game).unwrap();
//! assert_eq!(zone_capture::points(&zone).count(), 3);
//! ```

mod action;
mod components;
mod systems;

use glam::Vec2;
use zone_core::game::{At, GameApp, Stage, Wire, ZonePlugin};
use zone_core::{EntityId, Zone};

pub use action::{PlantFlag, PlantRefused};
pub use components::{CapturePoint, CaptureRules, CaptureScore, Flag};

/// The plugin's name ([`ZonePlugin::name`]).
pub const NAME: &str = "example.capture";

/// The plugin: where the points are, as fractions of the map (so one layout fits every zone
/// of a world), and the rules.
#[derive(Clone, Debug, PartialEq)]
pub struct CapturePoints {
    /// Point centres, each coordinate a fraction (0..1) of the map's size from its origin.
    pub at: Vec<Vec2>,
    /// The rules.
    pub rules: CaptureRules,
}

impl CapturePoints {
    /// Three points: the demo world's layout.
    pub fn demo() -> Self {
        Self {
            at: vec![
                Vec2::new(0.3, 0.3),
                Vec2::new(0.7, 0.45),
                Vec2::new(0.45, 0.75),
            ],
            rules: CaptureRules::default(),
        }
    }
}

impl ZonePlugin for CapturePoints {
    fn name(&self) -> &'static str {
        NAME
    }

    fn declare(&self, wire: &mut Wire) {
        wire.action::<PlantFlag>().replicate::<Flag>();
    }

    fn build(&self, app: &mut GameApp<'_>) {
        let (origin, size) = (app.map().origin(), app.map().size());
        let mut points = systems::Points::default();
        for (i, frac) in self.at.iter().take(usize::from(u8::MAX)).enumerate() {
            let spot = app.map().nearest_walkable(origin + *frac * size);
            let point = CapturePoint {
                index: i as u8,
                center: spot,
            };
            let (id, entity) = app.spawn_prop(spot, (point, Flag::default()));
            points.0.push((id, entity));
        }
        app.insert_resource(points)
            .insert_resource(self.rules)
            .hash_component::<CapturePoint>()
            .hash_component::<Flag>()
            .hash_component::<CaptureScore>()
            .hash_resource::<CaptureRules>()
            .persist::<CaptureScore>()
            .on_join(|avatar| {
                if !avatar.contains::<CaptureScore>() {
                    avatar.insert(CaptureScore::default());
                }
            })
            // Flags planted between ticks take effect once this tick's inputs have.
            .add_systems(At::After(Stage::Inputs), systems::plant_flags)
            // Who stands where is known once everyone has moved, fought and died.
            .add_systems(At::After(Stage::Life), systems::capture_progress);
    }
}

/// The zone's capture points: `(replicated id, point, flag)`, by point index.
pub fn points(zone: &Zone) -> impl Iterator<Item = (EntityId, CapturePoint, Flag)> + '_ {
    let mut found: Vec<(EntityId, CapturePoint, Flag)> = zone
        .entities()
        .filter_map(|v| {
            let e = zone.world().get_entity(zone.ecs_entity(v.id)?).ok()?;
            Some((v.id, *e.get::<CapturePoint>()?, *e.get::<Flag>()?))
        })
        .collect();
    found.sort_by_key(|(_, p, _)| p.index);
    found.into_iter()
}

/// The fuzz target `fuzz/fuzz_targets/capture.rs` (and its corpus replay in `cargo test`):
/// the first byte picks the plant-flag decoder, the flag's codec, or the whole action path of
/// a zone running the plugin, built with [`zone_core::game::kit`]'s fuzz entries.
pub fn fuzz(data: &[u8]) {
    use zone_core::game::kit;
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => kit::fuzz_action::<PlantFlag>(rest),
        1 => kit::fuzz_replicated::<Flag>(rest),
        _ => {
            let game = zone_core::game::Game::default().with(CapturePoints::demo());
            let config = zone_core::ZoneConfig::arena(zone_core::ZoneId(1), 32, 32, 0);
            let Ok(mut zone) = Zone::with_game(config, 1, &game) else {
                return;
            };
            let player = zone_core::PlayerId(1);
            let mut state = zone.new_character(player);
            if let Some((_, point, _)) = points(&zone).next() {
                (state.x, state.y) = (point.center.x, point.center.y);
            }
            if zone.join(player, state).is_ok() {
                kit::fuzz_zone_actions(&mut zone, player, rest);
            }
        }
    }
}

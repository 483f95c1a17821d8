//! Every gameplay number of a zone, in one serde struct that loads from TOML.
//!
//! Rules are data: designers tune them without touching systems. [`Rules::validate`] runs before a
//! zone is built and names the offending field, so a bad file fails at start-up, not mid-fight.

use serde::{Deserialize, Serialize};

use crate::AbilityId;

/// How an ability reaches its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbilityKind {
    /// Close range; still needs a clear line.
    Melee,
    /// Long range projectile; needs line of sight.
    Ranged,
}

/// One ability usable by players (and NPCs, through [`NpcRules::ability`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbilityRule {
    /// Wire id of the ability.
    pub id: u8,
    /// Human name, for logs and tools.
    pub name: String,
    /// Melee or ranged.
    pub kind: AbilityKind,
    /// Maximum distance from attacker to target, in world units.
    pub range: f32,
    /// Ticks before the same attacker can use it again.
    pub cooldown_ticks: u32,
    /// Health removed from the target.
    pub damage: u16,
}

/// NPC behaviour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NpcRules {
    /// Maximum health of an NPC.
    pub max_health: u16,
    /// Distance at which an idle NPC notices a player.
    pub aggro_radius: f32,
    /// Distance from home beyond which a chasing NPC gives up and walks back.
    pub leash_radius: f32,
    /// Radius around home an idle NPC wanders in.
    pub wander_radius: f32,
    /// Speed while wandering or returning, units per second.
    pub walk_speed: f32,
    /// Speed while chasing, units per second.
    pub chase_speed: f32,
    /// An NPC decides what to do every this many ticks (staggered across NPCs).
    pub think_interval_ticks: u32,
    /// Shortest idle pause between wanders, ticks.
    pub idle_min_ticks: u32,
    /// Longest idle pause between wanders, ticks.
    pub idle_max_ticks: u32,
    /// Ability id the NPC attacks with.
    pub ability: u8,
    /// Ticks a dead NPC waits before respawning at home.
    pub respawn_ticks: u32,
}

impl Default for NpcRules {
    fn default() -> Self {
        Self {
            max_health: 60,
            aggro_radius: 10.0,
            leash_radius: 30.0,
            wander_radius: 8.0,
            walk_speed: 2.5,
            chase_speed: 5.5,
            think_interval_ticks: 12,
            idle_min_ticks: 180,
            idle_max_ticks: 900,
            ability: 0,
            respawn_ticks: 600,
        }
    }
}

/// All gameplay numbers of one zone.
///
/// ```
/// let rules = zone_core::Rules::from_toml_str("tick_hz = 30\n[npc]\naggro_radius = 12.0\n").unwrap();
/// assert_eq!(rules.tick_hz, 30);
/// assert_eq!(rules.npc.aggro_radius, 12.0);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// Simulation ticks per second.
    pub tick_hz: u32,
    /// Walking speed of a player, units per second.
    pub walk_speed: f32,
    /// Running speed of a player, units per second (the server-enforced maximum).
    pub run_speed: f32,
    /// Maximum change of velocity, units per second squared.
    pub acceleration: f32,
    /// Radius of a player or NPC body against walls, units.
    pub body_radius: f32,
    /// Maximum health of a player.
    pub player_max_health: u16,
    /// Ticks a dead player waits before respawning.
    pub player_respawn_ticks: u32,
    /// Health regained per second when out of combat.
    pub regen_per_second: f32,
    /// Ticks without taking or dealing damage before regeneration starts.
    pub regen_delay_ticks: u32,
    /// Whether players can damage each other.
    pub pvp: bool,
    /// Experience for killing an NPC.
    pub xp_per_npc_kill: u32,
    /// Experience for killing a player.
    pub xp_per_player_kill: u32,
    /// A player's state is checkpointed for persistence every this many ticks (staggered).
    pub checkpoint_interval_ticks: u32,
    /// Inputs stamped more than this many ticks ahead of the server are rejected.
    pub max_input_lead_ticks: u32,
    /// Inputs stamped more than this many ticks behind the server are rejected.
    pub max_input_age_ticks: u32,
    /// Most players one zone admits.
    pub max_players: u32,
    /// Lag compensation: an ability is checked against where its target was in the view the
    /// attacker's input names, rewound at most this many ticks (at most 60).
    pub lag_compensation_ticks: u32,
    /// Abilities, by id.
    pub abilities: Vec<AbilityRule>,
    /// NPC behaviour.
    pub npc: NpcRules,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            tick_hz: 60,
            walk_speed: 4.0,
            run_speed: 7.0,
            acceleration: 60.0,
            body_radius: 0.3,
            player_max_health: 100,
            player_respawn_ticks: 300,
            regen_per_second: 3.0,
            regen_delay_ticks: 300,
            pvp: true,
            xp_per_npc_kill: 10,
            xp_per_player_kill: 25,
            checkpoint_interval_ticks: 600,
            max_input_lead_ticks: 30,
            max_input_age_ticks: 120,
            max_players: 4_000,
            lag_compensation_ticks: 12,
            abilities: vec![
                AbilityRule {
                    id: 0,
                    name: "strike".into(),
                    kind: AbilityKind::Melee,
                    range: 2.0,
                    cooldown_ticks: 45,
                    damage: 12,
                },
                AbilityRule {
                    id: 1,
                    name: "bolt".into(),
                    kind: AbilityKind::Ranged,
                    range: 18.0,
                    cooldown_ticks: 90,
                    damage: 18,
                },
            ],
            npc: NpcRules::default(),
        }
    }
}

/// Largest [`Rules::lag_compensation_ticks`]: the trail each entity keeps is longer.
pub const MAX_LAG_COMPENSATION_TICKS: u32 = 60;

/// A rules file that cannot be used, naming the field at fault.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RulesError {
    /// The TOML text does not parse or has unknown/mistyped fields.
    #[error("rules: cannot parse TOML: {0}")]
    Parse(String),
    /// A field holds a value the simulation cannot run with.
    #[error("rules: field `{field}` {problem}")]
    Invalid {
        /// Dotted path of the field.
        field: &'static str,
        /// What is wrong with it, and what was expected.
        problem: String,
    },
}

impl Rules {
    /// Parses rules from TOML (missing fields take defaults) and validates them.
    pub fn from_toml_str(text: &str) -> Result<Self, RulesError> {
        let rules: Rules = toml::from_str(text).map_err(|e| RulesError::Parse(e.to_string()))?;
        rules.validate()?;
        Ok(rules)
    }

    /// Checks every number is finite and in a range the simulation supports.
    pub fn validate(&self) -> Result<(), RulesError> {
        fn positive(field: &'static str, v: f32) -> Result<(), RulesError> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(RulesError::Invalid {
                    field,
                    problem: format!("must be a finite number > 0, got {v}"),
                })
            }
        }
        fn non_negative(field: &'static str, v: f32) -> Result<(), RulesError> {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(RulesError::Invalid {
                    field,
                    problem: format!("must be a finite number >= 0, got {v}"),
                })
            }
        }
        fn at_least(field: &'static str, v: u64, min: u64) -> Result<(), RulesError> {
            if v >= min {
                Ok(())
            } else {
                Err(RulesError::Invalid {
                    field,
                    problem: format!("must be >= {min}, got {v}"),
                })
            }
        }
        if !(1..=1000).contains(&self.tick_hz) {
            return Err(RulesError::Invalid {
                field: "tick_hz",
                problem: format!("must be between 1 and 1000, got {}", self.tick_hz),
            });
        }
        positive("walk_speed", self.walk_speed)?;
        positive("run_speed", self.run_speed)?;
        if self.run_speed < self.walk_speed {
            return Err(RulesError::Invalid {
                field: "run_speed",
                problem: format!(
                    "must be >= walk_speed ({}), got {}",
                    self.walk_speed, self.run_speed
                ),
            });
        }
        positive("acceleration", self.acceleration)?;
        positive("body_radius", self.body_radius)?;
        if self.body_radius >= 0.5 {
            return Err(RulesError::Invalid {
                field: "body_radius",
                problem: format!("must be < 0.5 tile, got {}", self.body_radius),
            });
        }
        at_least("player_max_health", self.player_max_health.into(), 1)?;
        non_negative("regen_per_second", self.regen_per_second)?;
        at_least(
            "checkpoint_interval_ticks",
            self.checkpoint_interval_ticks.into(),
            1,
        )?;
        at_least("max_players", self.max_players.into(), 1)?;
        if self.lag_compensation_ticks > MAX_LAG_COMPENSATION_TICKS {
            return Err(RulesError::Invalid {
                field: "lag_compensation_ticks",
                problem: format!(
                    "must be at most {MAX_LAG_COMPENSATION_TICKS}, got {}",
                    self.lag_compensation_ticks
                ),
            });
        }
        if self.abilities.is_empty() {
            return Err(RulesError::Invalid {
                field: "abilities",
                problem: "must list at least one ability".into(),
            });
        }
        for (i, a) in self.abilities.iter().enumerate() {
            positive("abilities.range", a.range)?;
            at_least("abilities.cooldown_ticks", a.cooldown_ticks.into(), 1)?;
            if self.abilities[..i].iter().any(|b| b.id == a.id) {
                return Err(RulesError::Invalid {
                    field: "abilities.id",
                    problem: format!("must be unique, id {} appears twice", a.id),
                });
            }
        }
        let n = &self.npc;
        at_least("npc.max_health", n.max_health.into(), 1)?;
        positive("npc.aggro_radius", n.aggro_radius)?;
        positive("npc.leash_radius", n.leash_radius)?;
        non_negative("npc.wander_radius", n.wander_radius)?;
        positive("npc.walk_speed", n.walk_speed)?;
        positive("npc.chase_speed", n.chase_speed)?;
        at_least("npc.think_interval_ticks", n.think_interval_ticks.into(), 1)?;
        at_least(
            "npc.idle_max_ticks",
            n.idle_max_ticks.into(),
            n.idle_min_ticks.into(),
        )?;
        if self.ability(AbilityId(n.ability)).is_none() {
            return Err(RulesError::Invalid {
                field: "npc.ability",
                problem: format!("must name an ability in `abilities`, got {}", n.ability),
            });
        }
        Ok(())
    }

    /// The ability with this id, if the rules define it.
    pub fn ability(&self, id: AbilityId) -> Option<&AbilityRule> {
        self.abilities.iter().find(|a| a.id == id.0)
    }

    /// Seconds per tick.
    pub fn dt(&self) -> f32 {
        1.0 / self.tick_hz as f32
    }

    /// Longest ability range: an upper bound for any interaction distance.
    pub fn max_ability_range(&self) -> f32 {
        self.abilities.iter().map(|a| a.range).fold(0.0, f32::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let rules = Rules::default();
        rules.validate().unwrap();
        let text = toml::to_string(&rules).unwrap();
        assert_eq!(Rules::from_toml_str(&text).unwrap(), rules);
    }

    #[test]
    fn bad_values_name_their_field() {
        let err = Rules::from_toml_str("walk_speed = -1.0").unwrap_err();
        assert!(
            matches!(
                err,
                RulesError::Invalid {
                    field: "walk_speed",
                    ..
                }
            ),
            "{err}"
        );
        let err = Rules::from_toml_str("[npc]\nability = 9").unwrap_err();
        assert!(
            matches!(
                err,
                RulesError::Invalid {
                    field: "npc.ability",
                    ..
                }
            ),
            "{err}"
        );
        let err = Rules::from_toml_str("tick_hz = 0").unwrap_err();
        assert!(
            matches!(
                err,
                RulesError::Invalid {
                    field: "tick_hz",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(matches!(
            Rules::from_toml_str("walk_sped = 3.0"),
            Err(RulesError::Parse(_))
        ));
    }
}

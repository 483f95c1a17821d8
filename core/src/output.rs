//! What one tick hands to the shell: events to persist and replicate, player saves, and metrics.
//!
//! Plain data only. The vectors are cleared and refilled every tick, so after warm-up a tick
//! allocates nothing; callers read them through [`crate::Zone::tick`]'s borrow and copy what they keep.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::{AbilityId, EntityId, EventId, InputError, PlayerId, PlayerState};

/// One hit of one ability.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct CombatEvent {
    /// Deterministic unique id (zone, tick, sequence).
    pub id: EventId,
    /// Tick of the hit.
    pub tick: u64,
    /// Who used the ability.
    pub attacker: EntityId,
    /// The attacker's player, if a player.
    pub attacker_player: Option<PlayerId>,
    /// Who was hit.
    pub target: EntityId,
    /// The target's player, if a player.
    pub target_player: Option<PlayerId>,
    /// Which ability.
    pub ability: AbilityId,
    /// Health removed.
    pub damage: u16,
    /// Whether the hit killed the target.
    pub killed: bool,
    /// Target position x at the hit.
    pub x: f32,
    /// Target position y at the hit.
    pub y: f32,
}

/// An entity died.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct DeathEvent {
    /// Deterministic unique id.
    pub id: EventId,
    /// Who died.
    pub victim: EntityId,
    /// The victim's player, if a player.
    pub victim_player: Option<PlayerId>,
    /// Who dealt the last hit, if anyone.
    pub killer: Option<EntityId>,
}

/// An entity came back to life.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct RespawnEvent {
    /// Who respawned.
    pub entity: EntityId,
    /// Its player, if a player.
    pub player: Option<PlayerId>,
    /// Where, x.
    pub x: f32,
    /// Where, y.
    pub y: f32,
}

/// Why a player's state was emitted for saving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum SaveReason {
    /// Periodic checkpoint.
    Checkpoint,
    /// The player died.
    Death,
    /// The player respawned.
    Respawn,
}

/// A player state to persist.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct PlayerSave {
    /// Whose.
    pub player: PlayerId,
    /// The state, with its version.
    pub state: PlayerState,
    /// Why now.
    pub reason: SaveReason,
}

/// A player whose avatar stands outside the zone's own rectangle (it stepped over an open
/// edge): the shell hands it to the zone that owns `x, y`, or puts it back inside.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BorderCrossing {
    /// Whose avatar.
    pub player: PlayerId,
    /// The avatar.
    pub entity: EntityId,
    /// World position x, outside the zone.
    pub x: f32,
    /// World position y, outside the zone.
    pub y: f32,
}

/// Work and population counters of one tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickMetrics {
    /// Players in the zone.
    pub players: u32,
    /// NPCs in the zone.
    pub npcs: u32,
    /// Living entities.
    pub alive: u32,
    /// Entities whose position changed this tick.
    pub moved: u32,
    /// Inputs accepted since the previous tick.
    pub inputs_applied: u32,
    /// Inputs refused since the previous tick, by [`InputError::index`].
    pub inputs_rejected: [u32; InputError::COUNT],
    /// Of the accepted inputs, those that arrived after the tick they were stamped for had been
    /// simulated (the client's prediction of them will need correcting).
    pub inputs_late: u32,
    /// Ability uses attempted.
    pub attacks_attempted: u32,
    /// Ability uses that hit.
    pub attacks_hit: u32,
    /// Ability uses refused (cooldown, range, line of sight, dead or missing target).
    pub attacks_denied: u32,
    /// Ability uses checked against a rewound target (lag compensation).
    pub lag_rewinds: u32,
    /// Deaths.
    pub deaths: u32,
    /// Respawns.
    pub respawns: u32,
    /// NPC decisions taken.
    pub npc_thinks: u32,
    /// Tiles visited by line-of-sight checks.
    pub los_steps: u32,
    /// Entities examined by spatial queries.
    pub grid_candidates: u32,
}

impl TickMetrics {
    /// All refused inputs, whatever the reason.
    pub fn inputs_rejected_total(&self) -> u32 {
        self.inputs_rejected.iter().sum()
    }
}

/// Everything one tick produced. Read it before the next tick; it is refilled in place.
#[derive(Debug, Default, bevy_ecs::resource::Resource)]
pub struct TickOutput {
    /// The tick just simulated.
    pub tick: u64,
    /// Hits, in resolution order.
    pub combat_events: Vec<CombatEvent>,
    /// Deaths, in canonical order.
    pub deaths: Vec<DeathEvent>,
    /// Respawns, in canonical order.
    pub respawns: Vec<RespawnEvent>,
    /// Player states to persist.
    pub player_saves: Vec<PlayerSave>,
    /// Players standing outside the zone after this tick, by player id (every tick until the
    /// shell acts).
    pub crossings: Vec<BorderCrossing>,
    /// Work counters.
    pub metrics: TickMetrics,
    next_seq: u32,
}

impl TickOutput {
    pub(crate) fn reset(&mut self, tick: u64) {
        self.tick = tick;
        self.combat_events.clear();
        self.deaths.clear();
        self.respawns.clear();
        self.player_saves.clear();
        self.crossings.clear();
        self.metrics = TickMetrics::default();
        self.next_seq = 0;
    }

    /// The sequence number of the next event of this tick (events share one id space).
    pub(crate) fn next_event_seq(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }
}

//! Custom client actions: typed, decoded from untrusted bytes, validated by the plugin that
//! registered them, queued for its systems, and refused with a typed, counted reason.
//!
//! An action travels as a reliable [`crate::protocol::ClientMessage::Action`]: its kind
//! ([`action_kind`], a hash of [`Action::NAME`]) and at most [`MAX_ACTION_BYTES`] of payload in
//! the action's own encoding. The zone decodes it ([`Action::decode`]), checks it against the
//! world as it stands ([`Action::validate`]) and appends it to [`Actions<A>`], which the
//! plugin's systems read during the next tick; the queue is emptied after every tick.

use bevy_ecs::prelude::*;
use smallvec::SmallVec;

use crate::{EntityId, PlayerId};

/// Most payload bytes of one action.
pub const MAX_ACTION_BYTES: usize = 64;

/// Most actions one player may hand the zone for one tick (of all kinds; refused ones count
/// too); more are refused ([`ActionError::QueueFull`]) without being decoded.
pub const ACTIONS_PER_PLAYER_TICK: usize = 4;

/// A plugin's reason to refuse an action: a small enum whose variants name themselves (the
/// name is the `reason` label of the zone's action counters).
pub trait Reason: Copy + Send + Sync + 'static {
    /// A short `snake_case` name.
    fn name(self) -> &'static str;
}

/// Who submitted an action, and the world it is judged against.
#[derive(Clone, Copy, Debug)]
pub struct Actor<'w> {
    /// The zone's world, as it stands between ticks.
    pub world: &'w World,
    /// The player's avatar.
    pub entity: Entity,
    /// Its replicated id.
    pub id: EntityId,
    /// The account.
    pub player: PlayerId,
    /// The last simulated tick.
    pub tick: u64,
}

/// A client action a plugin defines.
///
/// ```
/// use zone_core::game::{Action, CodecError, Actor, Reason};
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// struct Wave { emote: u8 }
/// #[derive(Clone, Copy, Debug)]
/// enum WaveRefused { UnknownEmote }
/// impl Reason for WaveRefused {
///     fn name(self) -> &'static str { "unknown_emote" }
/// }
/// impl Action for Wave {
///     const NAME: &'static str = "example.wave";
///     type Reject = WaveRefused;
///     fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
///         match bytes {
///             [emote] => Ok(Wave { emote: *emote }),
///             _ => Err(CodecError("wave is one byte")),
///         }
///     }
///     fn encode(&self, out: &mut Vec<u8>) { out.push(self.emote) }
///     fn validate(&self, _: Actor<'_>) -> Result<(), WaveRefused> {
///         if self.emote < 8 { Ok(()) } else { Err(WaveRefused::UnknownEmote) }
///     }
/// }
/// ```
pub trait Action: Sized + Send + Sync + 'static {
    /// Unique, stable name (`"plugin.action"`); its hash is the action's kind on the wire.
    const NAME: &'static str;
    /// Why the plugin refuses one.
    type Reject: Reason;
    /// Decodes a payload from an untrusted client: total (any bytes give a value or an error).
    fn decode(bytes: &[u8]) -> Result<Self, CodecError>;
    /// Appends the payload (at most [`MAX_ACTION_BYTES`]).
    fn encode(&self, out: &mut Vec<u8>);
    /// Whether the actor may do this now. Runs between ticks, on arrival.
    fn validate(&self, actor: Actor<'_>) -> Result<(), Self::Reject>;
}

/// Bytes that are not a valid encoding of an action or a replicated component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed encoding: {0}")]
pub struct CodecError(pub &'static str);

/// The wire kind of action `A`: the low 16 bits of the xxh3 hash of its name. Two actions of
/// one game with the same kind are refused when the game is built.
pub fn action_kind<A: Action>() -> u16 {
    kind_of(A::NAME)
}

pub(crate) fn kind_of(name: &str) -> u16 {
    xxhash_rust::xxh3::xxh3_64(name.as_bytes()) as u16
}

/// Why an action was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// No action of this kind is registered (a client built with other plugins).
    #[error("unknown action kind {0:#06x}")]
    UnknownKind(u16),
    /// Payload longer than [`MAX_ACTION_BYTES`].
    #[error("action payload of {0} bytes is too long")]
    TooLong(usize),
    /// The payload does not decode.
    #[error("{action}: {error}")]
    Malformed {
        /// The action's name.
        action: &'static str,
        /// What was wrong.
        error: CodecError,
    },
    /// The player has no avatar in the zone.
    #[error("{action}: player not in the zone")]
    UnknownPlayer {
        /// The action's name.
        action: &'static str,
    },
    /// The player already queued [`ACTIONS_PER_PLAYER_TICK`] actions for this tick.
    #[error("{action}: too many actions this tick")]
    QueueFull {
        /// The action's name.
        action: &'static str,
    },
    /// The plugin refused it.
    #[error("{action} refused: {reason}")]
    Rejected {
        /// The action's name.
        action: &'static str,
        /// The plugin's [`Reason::name`].
        reason: &'static str,
    },
}

impl ActionError {
    /// The `reason` label it is counted under.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownKind(_) => "unknown_kind",
            Self::TooLong(_) => "too_long",
            Self::Malformed { .. } => "malformed",
            Self::UnknownPlayer { .. } => "unknown_player",
            Self::QueueFull { .. } => "queue_full",
            Self::Rejected { reason, .. } => reason,
        }
    }
}

/// One accepted action, as the plugin's systems see it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Submitted<A> {
    /// The account.
    pub player: PlayerId,
    /// The avatar.
    pub entity: Entity,
    /// Its replicated id.
    pub id: EntityId,
    /// The action.
    pub action: A,
}

/// The accepted actions of kind `A` for the coming tick, in arrival order (deterministic: the
/// order the zone was handed them). Emptied after every tick.
#[derive(Resource, Debug)]
pub struct Actions<A: Action> {
    queued: Vec<Submitted<A>>,
}

impl<A: Action> Default for Actions<A> {
    fn default() -> Self {
        Self { queued: Vec::new() }
    }
}

impl<A: Action> Actions<A> {
    /// The queued actions.
    pub fn iter(&self) -> impl Iterator<Item = &Submitted<A>> {
        self.queued.iter()
    }

    /// How many are queued.
    pub fn len(&self) -> usize {
        self.queued.len()
    }

    /// Whether none are queued.
    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }
}

/// Accepted and refused counts of one action kind since the zone was built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActionCount {
    /// The action's name.
    pub action: &'static str,
    /// Accepted.
    pub accepted: u64,
    /// Refused, by [`ActionError::reason`] (in the order first seen).
    pub refused: SmallVec<[(&'static str, u64); 10]>,
}

impl ActionCount {
    pub(crate) fn refuse(&mut self, reason: &'static str) {
        match self.refused.iter_mut().find(|(r, _)| *r == reason) {
            Some(slot) => slot.1 += 1,
            None => self.refused.push((reason, 1)),
        }
    }
}

/// One registered action kind, type-erased.
#[derive(Clone, Copy)]
pub(crate) struct ActionEntry {
    pub(crate) kind: u16,
    pub(crate) name: &'static str,
    /// Decodes, validates and queues.
    pub(crate) submit: fn(&mut World, Submitter, &[u8]) -> Result<(), ActionError>,
    /// Inserts the empty queue.
    pub(crate) init: fn(&mut World),
    /// Empties the queue (after a tick).
    pub(crate) clear: fn(&mut World),
    /// Makes room for `n` actions.
    pub(crate) reserve: fn(&mut World, usize),
}

impl std::fmt::Debug for ActionEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionEntry")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ActionEntry {
    pub(crate) fn of<A: Action>() -> Self {
        Self {
            kind: action_kind::<A>(),
            name: A::NAME,
            submit: submit::<A>,
            init: |world| world.insert_resource(Actions::<A>::default()),
            clear: |world| {
                if let Some(mut q) = world.get_resource_mut::<Actions<A>>() {
                    q.queued.clear();
                }
            },
            reserve: |world, n| {
                if let Some(mut q) = world.get_resource_mut::<Actions<A>>() {
                    let len = q.queued.len();
                    q.queued.reserve(n.saturating_sub(len));
                }
            },
        }
    }
}

/// Who submits an action (an [`Actor`] without the world).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Submitter {
    pub(crate) entity: Entity,
    pub(crate) id: EntityId,
    pub(crate) player: PlayerId,
    pub(crate) tick: u64,
}

fn submit<A: Action>(world: &mut World, by: Submitter, payload: &[u8]) -> Result<(), ActionError> {
    let action = A::decode(payload).map_err(|error| ActionError::Malformed {
        action: A::NAME,
        error,
    })?;
    let actor = Actor {
        world,
        entity: by.entity,
        id: by.id,
        player: by.player,
        tick: by.tick,
    };
    action.validate(actor).map_err(|r| ActionError::Rejected {
        action: A::NAME,
        reason: r.name(),
    })?;
    world.resource_mut::<Actions<A>>().queued.push(Submitted {
        player: by.player,
        entity: by.entity,
        id: by.id,
        action,
    });
    Ok(())
}

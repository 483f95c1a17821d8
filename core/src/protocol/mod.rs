//! The wire protocol between zone server and game client: versioned packets encoded with
//! bincode 2 primitives, quantized entity state, delta snapshots and a small reliable channel.
//!
//! Every decoder here is total: any byte string gives `Ok` or a typed [`DecodeError`], never a
//! panic, and allocation is bounded by the packet size and fixed caps. `core/PROTOCOL.md`
//! documents the byte layout for clients in other languages.

mod avatar;
mod messages;
mod quantize;
mod redirect;
mod reliable;
pub mod wire;

pub use avatar::{
    AVATAR_ALL, AVATAR_LATE, AVATAR_LIFE, AVATAR_MAX_LEN, AVATAR_POS, AVATAR_SEQ, AVATAR_VEL,
    AvatarState, AvatarUpdate,
};
pub use messages::{
    ClientMessage, ClientPacket, EntityUpdate, GOODBYE_GAME_MISMATCH, SECTION_AVATAR,
    ServerMessage, ServerPacket, UPDATE_FACING, UPDATE_STATUS, UPDATE_TRACK, UPDATE_VEL, WireInput,
    anchor_field, server_sections, spawn_len, update_header, write_server_header, write_spawn,
    write_spawn_body, write_update_body,
};
pub use quantize::{
    EXT_BYTES, EntitySample, Ext, NetEntity, NetKind, POS_PER_VEL, POS_SCALE, TRACK_TOLERANCE,
    VEL_SCALE, dequantize_angle, quantize_angle, quantize_pos, quantize_vel, travel,
};
pub use redirect::{
    CONNECT_TOKEN_BYTES, MAX_REDIRECT_PARTS, REDIRECT_PART_BYTES, Redirect, RedirectAssembler,
    RedirectError, redirect_messages,
};
pub use reliable::{ReliableReceiver, ReliableSender};

/// Version byte that opens every packet (3: the avatar section and the view age of an ability
/// use; 2: tracked entities, section flags, baseline age).
pub const PROTOCOL_VERSION: u8 = 3;
/// Largest payload in either direction (one netcode.io packet).
pub const MAX_PACKET: usize = 1200;
/// Most inputs one client packet carries (the newest ones, for redundancy against loss).
pub const MAX_INPUTS: usize = 8;
/// Longest chat message, in bytes of UTF-8.
pub const MAX_CHAT: usize = 200;
/// Most reliable messages in one packet.
pub const MAX_RELIABLE_PER_PACKET: usize = 64;

/// Why bytes could not be decoded. Counted by kind and dropped; never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end inside a field.
    #[error("packet truncated")]
    Truncated,
    /// The packet is larger than [`MAX_PACKET`] or a length claims more than it could hold.
    #[error("packet or length prefix too large")]
    TooLarge,
    /// The version byte is not [`PROTOCOL_VERSION`].
    #[error("protocol version {got}, expected {PROTOCOL_VERSION}")]
    BadVersion {
        /// The version found.
        got: u8,
    },
    /// An unknown message or variant tag.
    #[error("unknown {what} tag {got}")]
    BadTag {
        /// Which tag.
        what: &'static str,
        /// The value found.
        got: u32,
    },
    /// A count above its cap.
    #[error("{got} {what}, at most {max} allowed")]
    TooMany {
        /// What was counted.
        what: &'static str,
        /// The count found.
        got: usize,
        /// The cap.
        max: usize,
    },
    /// A value outside its legal range.
    #[error("{0} out of range")]
    OutOfRange(&'static str),
    /// Text that is not UTF-8.
    #[error("text is not valid UTF-8")]
    Utf8,
    /// Bytes left over after a complete packet.
    #[error("{0} trailing bytes after the packet")]
    TrailingBytes(usize),
    /// Any other malformed encoding.
    #[error("malformed field encoding")]
    Malformed,
}

impl DecodeError {
    /// Number of kinds, for per-kind counters.
    pub const COUNT: usize = 9;

    /// Dense index of the kind, for per-kind counters.
    pub const fn index(self) -> usize {
        match self {
            Self::Truncated => 0,
            Self::TooLarge => 1,
            Self::BadVersion { .. } => 2,
            Self::BadTag { .. } => 3,
            Self::TooMany { .. } => 4,
            Self::OutOfRange(_) => 5,
            Self::Utf8 => 6,
            Self::TrailingBytes(_) => 7,
            Self::Malformed => 8,
        }
    }

    /// Every kind's [`DecodeError::name`], in [`DecodeError::index`] order.
    pub const NAMES: [&'static str; Self::COUNT] = [
        "truncated",
        "too_large",
        "bad_version",
        "bad_tag",
        "too_many",
        "out_of_range",
        "utf8",
        "trailing_bytes",
        "malformed",
    ];

    /// Short stable name of the kind, for metrics labels.
    pub const fn name(self) -> &'static str {
        Self::NAMES[self.index()]
    }

    pub(crate) fn from_bincode(e: bincode::error::DecodeError) -> Self {
        use bincode::error::DecodeError as B;
        match e {
            B::UnexpectedEnd { .. } => Self::Truncated,
            B::LimitExceeded => Self::TooLarge,
            B::UnexpectedVariant { found, .. } => Self::BadTag {
                what: "variant",
                got: found,
            },
            B::Utf8 { .. } => Self::Utf8,
            B::InvalidBooleanValue(_) => Self::OutOfRange("bool"),
            B::InvalidCharEncoding(_) => Self::Utf8,
            _ => Self::Malformed,
        }
    }
}

/// Why a decoded server packet could not be applied to the client's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The bytes did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The snapshot is a delta against a tick the client no longer (or never) had.
    #[error("baseline snapshot {0} is not held by the client")]
    BaselineMissing(u64),
    /// A removal or update names an index past the baseline's entity list, or out of order.
    #[error("entity index out of range or not increasing")]
    BadIndex,
    /// A spawn names an entity the snapshot already has, or spawns are not in id order.
    #[error("spawned entity already present or out of order")]
    Duplicate,
    /// A delta overflows the field it changes.
    #[error("delta overflows its field")]
    Overflow,
}

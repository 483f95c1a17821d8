//! Typed errors of the netcode transport and the per-reason drop counters.
//!
//! Owns every error enum (wire, token, packet, send, config) and [`DropReason`], the flat,
//! countable classification of why an incoming datagram was ignored. It must never carry key
//! material in an error or a message, and never panic while classifying.

use std::fmt;

use thiserror::Error;

use super::packet::PacketType;

/// A bounds problem while reading or writing bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WireError {
    /// The input ended before a field could be read.
    #[error("truncated {field} at offset {offset}: expected {needed} bytes, {remaining} left")]
    Truncated {
        /// Field being read.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// The output buffer is too small for a field.
    #[error("buffer full writing {field}: expected room for {needed} bytes, {remaining} left")]
    BufferFull {
        /// Field being written.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// Padding that the standard fills with zeros holds a non-zero byte.
    #[error("expected zero padding, found a non-zero byte at offset {offset}")]
    NonZeroPadding {
        /// Offset of the first non-zero byte.
        offset: usize,
    },
}

/// Why a connect token (public or private part) could not be generated or read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// The token is not of its fixed size.
    #[error("expected a {expected}-byte {what}, got {got} bytes")]
    WrongLength {
        /// Which structure.
        what: &'static str,
        /// Required size.
        expected: usize,
        /// Size received.
        got: usize,
    },
    /// The version info is not `"NETCODE 1.02\0"`.
    #[error("expected version info \"NETCODE 1.02\\0\", got {got:?}")]
    WrongVersion {
        /// The 13 bytes found.
        got: [u8; 13],
    },
    /// The number of server addresses is outside `1..=32`.
    #[error("expected 1..=32 server addresses, got {got}")]
    AddressCount {
        /// The count found or supplied.
        got: u64,
    },
    /// An address type byte is neither 1 (IPv4) nor 2 (IPv6).
    #[error("expected address type 1 (IPv4) or 2 (IPv6) for server address {index}, got {got}")]
    AddressType {
        /// Position of the address in the list.
        index: usize,
        /// The type byte found.
        got: u8,
    },
    /// The create timestamp is later than the expire timestamp.
    #[error("expected create timestamp <= expire timestamp, got create {create} > expire {expire}")]
    CreatedAfterExpiry {
        /// Create timestamp.
        create: u64,
        /// Expire timestamp.
        expire: u64,
    },
    /// The private connect token failed authentication: wrong private key, protocol id,
    /// expire timestamp or nonce, or tampered bytes.
    #[error(
        "private connect token failed to decrypt: wrong key, protocol id, expire timestamp or nonce, or tampered bytes"
    )]
    DecryptFailed,
    /// Encryption failed (the AEAD refused the input).
    #[error("private connect token failed to encrypt")]
    EncryptFailed,
    /// A bounds problem in the byte layout.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Why a packet could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PacketError {
    /// The datagram is shorter than the smallest valid packet of its kind.
    #[error("expected at least {min} bytes, got {got}")]
    TooSmall {
        /// Minimum size.
        min: usize,
        /// Size received.
        got: usize,
    },
    /// The datagram is larger than any packet this transport accepts.
    #[error("expected at most {max} bytes, got {got}")]
    TooLarge {
        /// Maximum size.
        max: usize,
        /// Size received.
        got: usize,
    },
    /// The low 4 bits of the prefix byte are not a packet type (0..=6).
    #[error("expected a packet type in 0..=6 in the prefix byte, got {got}")]
    InvalidPacketType {
        /// The low nibble found.
        got: u8,
    },
    /// A valid packet type that this receiver, in this context, does not accept.
    #[error("packet type {packet_type:?} is not accepted here")]
    UnexpectedPacketType {
        /// The packet type found.
        packet_type: PacketType,
    },
    /// The high 4 bits of the prefix byte are outside `1..=8` (or non-zero on a connection
    /// request).
    #[error("expected {expected} sequence bytes in the prefix byte, got {got}")]
    InvalidSequenceBytes {
        /// What was allowed.
        expected: &'static str,
        /// The high nibble found.
        got: u8,
    },
    /// The version info of a connection request is not `"NETCODE 1.02\0"`.
    #[error("expected version info \"NETCODE 1.02\\0\", got {got:?}")]
    WrongVersion {
        /// The 13 bytes found.
        got: [u8; 13],
    },
    /// The sequence number was already received or is older than the replay window.
    #[error("sequence {sequence} already received or older than the replay window")]
    Replayed {
        /// The sequence number.
        sequence: u64,
    },
    /// The packet failed AEAD authentication.
    #[error(
        "{packet_type:?} packet failed to decrypt (wrong key, sequence, prefix or protocol id, or tampered)"
    )]
    DecryptFailed {
        /// The packet type claimed by the prefix byte.
        packet_type: PacketType,
    },
    /// The decrypted per-packet data has the wrong size for its type.
    #[error("expected {min}..={max} bytes of {packet_type:?} data after decryption, got {got}")]
    WrongBodySize {
        /// Packet type.
        packet_type: PacketType,
        /// Minimum body size.
        min: usize,
        /// Maximum body size.
        max: usize,
        /// Body size received.
        got: usize,
    },
    /// A challenge token failed to decrypt or parse.
    #[error("challenge token failed to decrypt or has non-zero padding")]
    ChallengeTokenInvalid,
    /// A payload to send is empty or larger than 1200 bytes.
    #[error("expected a payload of 1..=1200 bytes, got {got}")]
    PayloadSize {
        /// Payload size supplied.
        got: usize,
    },
    /// A connection request cannot be encoded as an encrypted packet, or vice versa.
    #[error("connection requests are not encrypted packets")]
    NotEncrypted,
    /// Encryption failed (the AEAD refused the input).
    #[error("packet failed to encrypt")]
    EncryptFailed,
    /// A bounds problem in the byte layout.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Why an outgoing send was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendError {
    /// No connected client in that slot, or the client is not connected.
    #[error("expected a connected client, but the connection is not established")]
    NotConnected,
    /// The client index is outside `0..max_clients`.
    #[error("expected a client index below {max_clients}, got {got}")]
    InvalidClientIndex {
        /// Index supplied.
        got: usize,
        /// Number of slots.
        max_clients: usize,
    },
    /// The payload is empty or larger than 1200 bytes.
    #[error("expected a payload of 1..=1200 bytes, got {got}")]
    PayloadSize {
        /// Payload size supplied.
        got: usize,
    },
    /// The outgoing queue is full; drain `poll_transmit` more often.
    #[error("transmit queue full ({capacity} datagrams): drain poll_transmit")]
    TransmitQueueFull {
        /// Capacity of the queue.
        capacity: usize,
    },
    /// This connection has used every sequence number.
    #[error("sequence numbers exhausted for this connection")]
    SequenceExhausted,
    /// The packet could not be encoded.
    #[error(transparent)]
    Packet(#[from] PacketError),
}

/// Why a server configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// `max_clients` is outside `1..=MAX_CLIENTS`.
    #[error("expected max_clients in 1..={max}, got {got}")]
    MaxClients {
        /// Value supplied.
        got: usize,
        /// Upper bound.
        max: usize,
    },
    /// No public address: the server would accept no connect token.
    #[error("expected at least one public address")]
    NoPublicAddress,
    /// A capacity or rate that must be positive is zero.
    #[error("expected {field} > 0, got 0")]
    Zero {
        /// Field name.
        field: &'static str,
    },
    /// The global sequence would start among per-client sequence numbers.
    #[error("expected global_sequence_start >= 1 << 63, got {got}")]
    GlobalSequenceStart {
        /// Value supplied.
        got: u64,
    },
}

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Why an incoming datagram was ignored. Every drop is counted by reason in
        /// [`DropCounters`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum DropReason {
            $($(#[$doc])* $name,)*
        }

        impl DropReason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            /// Number of reasons.
            pub const COUNT: usize = Self::ALL.len();
        }
    };
}

drop_reasons! {
    /// Shorter than the smallest valid packet.
    TooSmall,
    /// Larger than the largest valid packet.
    TooLarge,
    /// Prefix byte names no packet type.
    InvalidPacketType,
    /// A packet type this receiver does not accept in this context.
    UnexpectedPacketType,
    /// Sequence byte count outside `1..=8`.
    InvalidSequenceBytes,
    /// Sequence already received or too old.
    Replayed,
    /// AEAD authentication failed.
    DecryptFailed,
    /// Decrypted body of the wrong size.
    WrongBodySize,
    /// Version info is not "NETCODE 1.02".
    WrongVersion,
    /// Connection request for another protocol id.
    WrongProtocolId,
    /// Connection request whose token expired.
    TokenExpired,
    /// Private connect token failed to decrypt.
    TokenDecryptFailed,
    /// Private connect token decrypted but is malformed.
    InvalidPrivateToken,
    /// None of the token's server addresses is this server.
    WrongServerAddress,
    /// The source address is already connected.
    AddressAlreadyConnected,
    /// The token's client id is already connected.
    ClientIdAlreadyConnected,
    /// The token was already used from another address.
    TokenAlreadyUsed,
    /// Too many connection requests from this source (IP, or /64).
    RateLimited,
    /// This second's budget of connection-request decryptions is spent.
    DecryptBudgetSpent,
    /// No room for another pending connection.
    PendingTableFull,
    /// This IP already has its share of pending connections.
    PendingPerIpFull,
    /// Encrypted packet from an address with no encryption mapping.
    UnknownAddress,
    /// Packet from an address whose client left within the last
    /// [`crate::netcode::server::AFTER_DISCONNECT_SECONDS`] (the redundant copies of a
    /// disconnect, or packets in flight): benign, counted apart from `UnknownAddress`.
    AfterDisconnect,
    /// Challenge token failed to decrypt.
    ChallengeTokenInvalid,
    /// Client only: the datagram did not come from the server being talked to.
    WrongSource,
    /// A valid packet that the current state does not act on.
    IgnoredInState,
    /// The reply could not be queued: transmit queue full.
    TransmitQueueFull,
    /// The reply could not be sent: sequence numbers exhausted.
    SequenceExhausted,
    /// Any other malformed input.
    Malformed,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl From<&PacketError> for DropReason {
    fn from(e: &PacketError) -> Self {
        match e {
            PacketError::TooSmall { .. } => DropReason::TooSmall,
            PacketError::TooLarge { .. } => DropReason::TooLarge,
            PacketError::InvalidPacketType { .. } => DropReason::InvalidPacketType,
            PacketError::UnexpectedPacketType { .. } | PacketError::NotEncrypted => {
                DropReason::UnexpectedPacketType
            }
            PacketError::InvalidSequenceBytes { .. } => DropReason::InvalidSequenceBytes,
            PacketError::WrongVersion { .. } => DropReason::WrongVersion,
            PacketError::Replayed { .. } => DropReason::Replayed,
            PacketError::DecryptFailed { .. } => DropReason::DecryptFailed,
            PacketError::WrongBodySize { .. } => DropReason::WrongBodySize,
            PacketError::ChallengeTokenInvalid => DropReason::ChallengeTokenInvalid,
            PacketError::PayloadSize { .. } | PacketError::EncryptFailed | PacketError::Wire(_) => {
                DropReason::Malformed
            }
        }
    }
}

impl From<PacketError> for DropReason {
    fn from(e: PacketError) -> Self {
        DropReason::from(&e)
    }
}

/// Count of ignored datagrams, by [`DropReason`]. Fixed size; never allocates.
#[derive(Clone, PartialEq, Eq)]
pub struct DropCounters {
    counts: [u64; DropReason::COUNT],
}

impl Default for DropCounters {
    fn default() -> Self {
        Self {
            counts: [0; DropReason::COUNT],
        }
    }
}

impl DropCounters {
    /// Counts one drop.
    pub fn record(&mut self, reason: DropReason) {
        if let Some(c) = self.counts.get_mut(reason as usize) {
            *c = c.saturating_add(1);
        }
    }

    /// Drops counted for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts.get(reason as usize).copied().unwrap_or(0)
    }

    /// Drops counted over all reasons.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &c| a.saturating_add(c))
    }

    /// Non-zero counters, in [`DropReason::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|&r| (r, self.get(r)))
            .filter(|&(_, c)| c > 0)
    }
}

impl fmt::Debug for DropCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

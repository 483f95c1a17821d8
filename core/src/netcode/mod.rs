//! netcode.io 1.02 transport: server and client halves, pure and sans-IO.
//!
//! This module owns the whole netcode protocol as described by `STANDARD.md` (netcode 1.02):
//! connect tokens, challenge tokens, packet framing and AEAD encryption, replay protection,
//! the server's connection slots and the client's state machine.
//!
//! It must never touch the outside world: no sockets, no clocks, no operating-system
//! randomness, no threads, no logging of key material. Time comes in as arguments
//! (`now: Duration` since an arbitrary, caller-chosen monotonic epoch, plus the UNIX time in
//! seconds where connect-token expiry is checked), randomness comes in as bytes, datagrams
//! come in as `&mut [u8]` and go out through `poll_transmit`.
//!
//! Layout:
//! - [`crypto`]: keys, nonces, associated data, the ChaCha20-Poly1305 / XChaCha20-Poly1305 calls.
//! - [`wire`]: bounds-checked little-endian reader and writer.
//! - [`address`]: server address lists and their on-the-wire encoding.
//! - [`token`]: connect tokens (public and private parts) and challenge tokens.
//! - [`sequence`]: prefix byte and variable-length sequence number encoding.
//! - [`packet`]: the seven packet types, their encoding and decoding.
//! - [`replay`]: the 256-entry replay protection window.
//! - [`server`] and [`client`]: the two protocol endpoints.
//! - [`error`]: typed errors and the drop-reason counters.
//!
//! Choices where `STANDARD.md` is silent or where implementations differ:
//! - A token timeout of zero or less disables timeouts (the reference implementation and
//!   renetcode test `timeout > 0`; the standard only says "negative").
//! - Parsers are strict: zero padding must be zero, so that parse then serialize is the
//!   identity (useful for fuzzing). The reference implementation and renetcode write zeros.
//! - The sequence byte count must be 1..=8 as the standard says. renetcode 2.0.0 writes
//!   sequence 0 with zero bytes; such packets are ignored here (renetcode resends, so
//!   interop still works).
//! - IPv6 addresses are eight `u16` little-endian segments (standard, reference
//!   implementation). renetcode writes 16 network-order octets instead: IPv6 server
//!   addresses do not interoperate with renetcode.
//! - renetcode prepends the client id to its serialized connect token; strip or add those
//!   8 bytes when exchanging tokens with it.
//! - The server replies to the source address exactly as received, and matches peers by its
//!   canonical form (IPv4-mapped IPv6 as IPv4), so dual-stack sockets work.
//! - Per-address connection-request rate limiting, bounded pending / token-history /
//!   rate-limit tables and bounded queues are additions; none changes the wire format.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unsafe_code
)]
#![warn(missing_docs)]

pub mod address;
pub mod client;
pub mod crypto;
pub mod error;
pub mod packet;
mod rate_limit;
pub mod replay;
pub mod sequence;
pub mod server;
pub mod token;
mod token_history;
mod transmit;
pub mod wire;

pub use address::AddressList;
pub use client::{Client, ClientConfig, ClientEvent, ClientState};
pub use crypto::Key;
pub use error::{
    ConfigError, DropCounters, DropReason, PacketError, SendError, TokenError, WireError,
};
pub use packet::{ConnectionRequest, Packet, PacketType};
pub use replay::ReplayWindow;
pub use server::{
    DisconnectReason, PayloadTicket, RateLimitConfig, Server, ServerConfig, ServerEvent,
    random_global_sequence_start,
};
pub use token::{ChallengeToken, ConnectToken, ConnectTokenParams, PrivateConnectToken};
pub use transmit::Transmit;

/// Version info that starts every connect token and every associated-data block:
/// `"NETCODE 1.02"` in ASCII followed by a NUL terminator (13 bytes).
pub const VERSION_INFO: [u8; VERSION_INFO_BYTES] = *b"NETCODE 1.02\0";
/// Length of [`VERSION_INFO`].
pub const VERSION_INFO_BYTES: usize = 13;
/// Size of a serialized public connect token.
pub const CONNECT_TOKEN_BYTES: usize = 2048;
/// Size of the encrypted private connect token data (1008 bytes of ciphertext + 16-byte tag).
pub const CONNECT_TOKEN_PRIVATE_BYTES: usize = 1024;
/// Size of the XChaCha20-Poly1305 nonce carried in the public connect token.
pub const CONNECT_TOKEN_NONCE_BYTES: usize = 24;
/// Size of every key (private key, challenge key, per-client keys).
pub const KEY_BYTES: usize = 32;
/// Size of the Poly1305 authentication tag.
pub const MAC_BYTES: usize = 16;
/// Size of the user data carried in the private connect token and the challenge token.
pub const USER_DATA_BYTES: usize = 256;
/// Size of the encrypted challenge token data (284 bytes of ciphertext + 16-byte tag).
pub const CHALLENGE_TOKEN_BYTES: usize = 300;
/// Maximum number of server addresses in a connect token.
pub const MAX_SERVER_ADDRESSES: usize = 32;
/// Largest payload a payload packet may carry.
pub const MAX_PAYLOAD_BYTES: usize = 1200;
/// Exact size of a connection request packet.
pub const CONNECTION_REQUEST_BYTES: usize =
    1 + VERSION_INFO_BYTES + 8 + 8 + CONNECT_TOKEN_NONCE_BYTES + CONNECT_TOKEN_PRIVATE_BYTES;
/// Largest datagram this transport ever produces or accepts: a payload packet carrying
/// [`MAX_PAYLOAD_BYTES`] with an 8-byte sequence number.
pub const MAX_PACKET_BYTES: usize = 1 + 8 + MAX_PAYLOAD_BYTES + MAC_BYTES;
/// Smallest encrypted packet the standard allows (prefix + 1 sequence byte + tag).
pub const MIN_ENCRYPTED_PACKET_BYTES: usize = 18;
/// Largest number of client slots a [`Server`] accepts.
pub const MAX_CLIENTS: usize = 4096;
/// Sequence number the server's global sequence starts at, so that packets encrypted with a
/// client's server-to-client key under the global sequence (challenge, denied) can never share
/// a nonce with that client's per-connection packets, whose sequence starts at zero.
pub const GLOBAL_SEQUENCE_START: u64 = 1 << 63;

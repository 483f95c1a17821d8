//! Minting netcode.io connect tokens, as a login backend would (and as `zone-server token` and
//! the bots do for development).

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use zone_core::netcode::{ConnectToken, ConnectTokenParams, Key};

use zone_core::netcode::{CONNECT_TOKEN_NONCE_BYTES, TokenError};

use crate::keys::{RandomnessError, random_bytes};

/// What a token grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// netcode protocol id.
    pub protocol_id: u64,
    /// The player's account id (becomes the zone's `PlayerId`).
    pub client_id: u64,
    /// Server addresses the client may connect to, tried in order.
    pub servers: Vec<SocketAddr>,
    /// Lifetime, seconds.
    pub expiry_s: u64,
    /// Connection timeout, seconds.
    pub timeout_s: i32,
}

/// Seconds since the UNIX epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the UNIX epoch (record timestamps, run ids).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// No randomness for its keys and nonce.
    #[error(transparent)]
    Randomness(#[from] RandomnessError),
    /// The request does not make a valid token (addresses, lifetime).
    #[error("minting token: {0}")]
    Token(#[source] TokenError),
    /// A redirect named an address its zone did not publish (or none is known yet).
    #[error("zone {zone} did not publish {named} (published: {published:?}); no token minted")]
    Unpublished {
        /// The zone the redirect is for.
        zone: zone_core::ZoneId,
        /// The address the redirect named.
        named: SocketAddr,
        /// What the zone published, if anything was seen.
        published: Option<SocketAddr>,
    },
}

/// The per-token secrets: both packet keys and the nonce of the private part. Fresh random
/// bytes for every token ([`mint`]); a simulation may bring its own ([`mint_with`]).
#[derive(Clone)]
pub struct TokenSecrets {
    /// Key of client-to-server packets.
    pub client_to_server: [u8; 32],
    /// Key of server-to-client packets.
    pub server_to_client: [u8; 32],
    /// Nonce of the encrypted private part.
    pub nonce: [u8; CONNECT_TOKEN_NONCE_BYTES],
}

impl std::fmt::Debug for TokenSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSecrets(..)")
    }
}

/// A fresh 2048-byte connect token signed with `private_key`, created now.
pub fn mint(request: &TokenRequest, private_key: &Key) -> Result<[u8; 2048], MintError> {
    let secrets = TokenSecrets {
        client_to_server: random_bytes()?,
        server_to_client: random_bytes()?,
        nonce: random_bytes()?,
    };
    mint_with(request, private_key, unix_now(), secrets)
}

/// A 2048-byte connect token signed with `private_key`, created at `unix_time` (seconds)
/// with `secrets`: no clock, no OS randomness.
pub fn mint_with(
    request: &TokenRequest,
    private_key: &Key,
    unix_time: u64,
    secrets: TokenSecrets,
) -> Result<[u8; 2048], MintError> {
    let params = ConnectTokenParams {
        protocol_id: request.protocol_id,
        create_timestamp: unix_time,
        expire_timestamp: unix_time + request.expiry_s,
        timeout_seconds: request.timeout_s,
        client_id: request.client_id,
        server_addresses: &request.servers,
        client_to_server_key: Key::from_bytes(secrets.client_to_server),
        server_to_client_key: Key::from_bytes(secrets.server_to_client),
        user_data: [0; 256],
        nonce: secrets.nonce,
    };
    let token = ConnectToken::generate(&params, private_key).map_err(MintError::Token)?;
    token.to_bytes().map_err(MintError::Token)
}

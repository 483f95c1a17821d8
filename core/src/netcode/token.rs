//! Connect tokens (public and private parts) and challenge tokens.
//!
//! Owns the byte layouts of `STANDARD.md`:
//! - the 2048-byte public connect token handed to a client by the login backend;
//! - the 1024-byte private connect token (1008 bytes plaintext + 16-byte tag), encrypted with
//!   XChaCha20-Poly1305 under the backend/server private key, a random 24-byte nonce and the
//!   associated data `version info ++ protocol id ++ expire timestamp`;
//! - the 300-byte challenge token (284 bytes plaintext + tag), encrypted with
//!   ChaCha20-Poly1305 IETF under the server's challenge key and challenge sequence.
//!
//! Generation takes every random input (nonce, keys) as bytes. Parsers are total and strict:
//! any byte string gives `Ok` or a [`TokenError`]; zero padding must be zero, so that
//! re-encoding a parsed token gives back the same bytes. This module must never generate
//! randomness, never panic on input bytes, and never print key material.

use std::net::SocketAddr;

use super::address::AddressList;
use super::crypto::{self, Key};
use super::error::{PacketError, TokenError};
use super::wire::{Reader, Writer, to_array};
use super::{
    CHALLENGE_TOKEN_BYTES, CONNECT_TOKEN_BYTES, CONNECT_TOKEN_NONCE_BYTES,
    CONNECT_TOKEN_PRIVATE_BYTES, MAC_BYTES, USER_DATA_BYTES, VERSION_INFO, VERSION_INFO_BYTES,
};

/// Plaintext size of the private connect token (1024 minus the 16-byte tag).
pub const PRIVATE_PLAINTEXT_BYTES: usize = CONNECT_TOKEN_PRIVATE_BYTES - MAC_BYTES;
/// Plaintext size of the challenge token (300 minus the 16-byte tag).
pub const CHALLENGE_PLAINTEXT_BYTES: usize = CHALLENGE_TOKEN_BYTES - MAC_BYTES;

/// Everything a login backend (or the dev `token` command) supplies to mint a connect token.
/// Random inputs (keys, nonce) are supplied by the caller's CSPRNG.
#[derive(Debug, Clone)]
pub struct ConnectTokenParams<'a> {
    /// Protocol id of the game/application.
    pub protocol_id: u64,
    /// UNIX seconds the token was created.
    pub create_timestamp: u64,
    /// UNIX seconds the token expires.
    pub expire_timestamp: u64,
    /// Connection timeout in seconds; zero or negative disables timeouts (dev only).
    pub timeout_seconds: i32,
    /// Globally unique id of the authenticated client.
    pub client_id: u64,
    /// 1..=32 server addresses (IPv4 or IPv6), tried in order by the client.
    pub server_addresses: &'a [SocketAddr],
    /// Key for client to server packets (random, per token).
    pub client_to_server_key: Key,
    /// Key for server to client packets (random, per token).
    pub server_to_client_key: Key,
    /// Application data for the server (e.g. account/session info).
    pub user_data: [u8; USER_DATA_BYTES],
    /// Random XChaCha20 nonce for the private part (unique per token).
    pub nonce: [u8; CONNECT_TOKEN_NONCE_BYTES],
}

/// The public connect token a client holds (2048 bytes on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectToken {
    /// Protocol id.
    pub protocol_id: u64,
    /// UNIX seconds of creation.
    pub create_timestamp: u64,
    /// UNIX seconds of expiry.
    pub expire_timestamp: u64,
    /// XChaCha20 nonce of the private part.
    pub nonce: [u8; CONNECT_TOKEN_NONCE_BYTES],
    /// Encrypted private connect token, opaque to the client.
    pub private_data: [u8; CONNECT_TOKEN_PRIVATE_BYTES],
    /// Connection timeout in seconds (zero or negative: disabled).
    pub timeout_seconds: i32,
    /// Server addresses to try, in order.
    pub server_addresses: AddressList,
    /// Key for client to server packets.
    pub client_to_server_key: Key,
    /// Key for server to client packets.
    pub server_to_client_key: Key,
}

/// The decrypted private connect token, read by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateConnectToken {
    /// Globally unique id of the authenticated client.
    pub client_id: u64,
    /// Connection timeout in seconds (zero or negative: disabled).
    pub timeout_seconds: i32,
    /// Servers this token is valid for.
    pub server_addresses: AddressList,
    /// Key for client to server packets.
    pub client_to_server_key: Key,
    /// Key for server to client packets.
    pub server_to_client_key: Key,
    /// Application data for the server.
    pub user_data: [u8; USER_DATA_BYTES],
}

impl ConnectToken {
    /// Mints a connect token: encrypts the private part with `private_key` and assembles the
    /// public part.
    pub fn generate(
        params: &ConnectTokenParams<'_>,
        private_key: &Key,
    ) -> Result<Self, TokenError> {
        if params.create_timestamp > params.expire_timestamp {
            return Err(TokenError::CreatedAfterExpiry {
                create: params.create_timestamp,
                expire: params.expire_timestamp,
            });
        }
        let server_addresses = AddressList::new(params.server_addresses)?;
        let private = PrivateConnectToken {
            client_id: params.client_id,
            timeout_seconds: params.timeout_seconds,
            server_addresses,
            client_to_server_key: params.client_to_server_key.clone(),
            server_to_client_key: params.server_to_client_key.clone(),
            user_data: params.user_data,
        };
        let private_data = private.encrypt(
            params.protocol_id,
            params.expire_timestamp,
            &params.nonce,
            private_key,
        )?;
        Ok(Self {
            protocol_id: params.protocol_id,
            create_timestamp: params.create_timestamp,
            expire_timestamp: params.expire_timestamp,
            nonce: params.nonce,
            private_data,
            timeout_seconds: params.timeout_seconds,
            server_addresses,
            client_to_server_key: private.client_to_server_key,
            server_to_client_key: private.server_to_client_key,
        })
    }

    /// Serializes to the 2048-byte wire form (zero padded).
    pub fn to_bytes(&self) -> Result<[u8; CONNECT_TOKEN_BYTES], TokenError> {
        let mut out = [0u8; CONNECT_TOKEN_BYTES];
        let mut w = Writer::new(&mut out);
        w.bytes("version info", &VERSION_INFO)?;
        w.u64("protocol id", self.protocol_id)?;
        w.u64("create timestamp", self.create_timestamp)?;
        w.u64("expire timestamp", self.expire_timestamp)?;
        w.bytes("connect token nonce", &self.nonce)?;
        w.bytes("encrypted private connect token", &self.private_data)?;
        w.i32("timeout seconds", self.timeout_seconds)?;
        self.server_addresses.write(&mut w)?;
        w.bytes("client to server key", self.client_to_server_key.as_bytes())?;
        w.bytes("server to client key", self.server_to_client_key.as_bytes())?;
        Ok(out)
    }

    /// Parses the 2048-byte wire form. Checks length, version info, address count and types,
    /// create <= expire, and zero padding. Does not decrypt the private part.
    pub fn read(bytes: &[u8]) -> Result<Self, TokenError> {
        if bytes.len() != CONNECT_TOKEN_BYTES {
            return Err(TokenError::WrongLength {
                what: "connect token",
                expected: CONNECT_TOKEN_BYTES,
                got: bytes.len(),
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.array::<VERSION_INFO_BYTES>("version info")?;
        if *version != VERSION_INFO {
            return Err(TokenError::WrongVersion { got: *version });
        }
        let protocol_id = r.u64("protocol id")?;
        let create_timestamp = r.u64("create timestamp")?;
        let expire_timestamp = r.u64("expire timestamp")?;
        if create_timestamp > expire_timestamp {
            return Err(TokenError::CreatedAfterExpiry {
                create: create_timestamp,
                expire: expire_timestamp,
            });
        }
        let nonce = *r.array("connect token nonce")?;
        let private_data = *r.array("encrypted private connect token")?;
        let timeout_seconds = r.i32("timeout seconds")?;
        let server_addresses = AddressList::read(&mut r)?;
        let client_to_server_key = Key::from_bytes(*r.array("client to server key")?);
        let server_to_client_key = Key::from_bytes(*r.array("server to client key")?);
        r.expect_zero_padding()?;
        Ok(Self {
            protocol_id,
            create_timestamp,
            expire_timestamp,
            nonce,
            private_data,
            timeout_seconds,
            server_addresses,
            client_to_server_key,
            server_to_client_key,
        })
    }
}

impl PrivateConnectToken {
    /// The 1024-byte buffer before encryption: 1008 bytes of zero-padded plaintext followed
    /// by 16 zero bytes where the tag will go.
    pub fn to_plaintext(&self) -> Result<[u8; CONNECT_TOKEN_PRIVATE_BYTES], TokenError> {
        let mut out = [0u8; CONNECT_TOKEN_PRIVATE_BYTES];
        let mut w = Writer::new(&mut out);
        w.u64("client id", self.client_id)?;
        w.i32("timeout seconds", self.timeout_seconds)?;
        self.server_addresses.write(&mut w)?;
        w.bytes("client to server key", self.client_to_server_key.as_bytes())?;
        w.bytes("server to client key", self.server_to_client_key.as_bytes())?;
        w.bytes("user data", &self.user_data)?;
        if w.position() > PRIVATE_PLAINTEXT_BYTES {
            return Err(TokenError::WrongLength {
                what: "private connect token plaintext",
                expected: PRIVATE_PLAINTEXT_BYTES,
                got: w.position(),
            });
        }
        Ok(out)
    }

    /// Parses the 1008-byte decrypted plaintext. Checks address count and types and that
    /// the padding is zero.
    pub fn read_plaintext(plaintext: &[u8]) -> Result<Self, TokenError> {
        if plaintext.len() != PRIVATE_PLAINTEXT_BYTES {
            return Err(TokenError::WrongLength {
                what: "private connect token plaintext",
                expected: PRIVATE_PLAINTEXT_BYTES,
                got: plaintext.len(),
            });
        }
        let mut r = Reader::new(plaintext);
        let client_id = r.u64("client id")?;
        let timeout_seconds = r.i32("timeout seconds")?;
        let server_addresses = AddressList::read(&mut r)?;
        let client_to_server_key = Key::from_bytes(*r.array("client to server key")?);
        let server_to_client_key = Key::from_bytes(*r.array("server to client key")?);
        let user_data = *r.array("user data")?;
        r.expect_zero_padding()?;
        Ok(Self {
            client_id,
            timeout_seconds,
            server_addresses,
            client_to_server_key,
            server_to_client_key,
            user_data,
        })
    }

    /// Encrypts with XChaCha20-Poly1305 into the 1024-byte encrypted private token.
    pub fn encrypt(
        &self,
        protocol_id: u64,
        expire_timestamp: u64,
        nonce: &[u8; CONNECT_TOKEN_NONCE_BYTES],
        private_key: &Key,
    ) -> Result<[u8; CONNECT_TOKEN_PRIVATE_BYTES], TokenError> {
        let mut buf = self.to_plaintext()?;
        let ad = crypto::token_associated_data(protocol_id, expire_timestamp);
        crypto::seal_with_trailing_tag(&mut buf, |body| {
            crypto::seal_x(private_key, nonce, &ad, body)
        })
        .map_err(|_| TokenError::EncryptFailed)?;
        Ok(buf)
    }

    /// Authenticates, decrypts and parses a 1024-byte encrypted private token.
    pub fn decrypt(
        encrypted: &[u8; CONNECT_TOKEN_PRIVATE_BYTES],
        protocol_id: u64,
        expire_timestamp: u64,
        nonce: &[u8; CONNECT_TOKEN_NONCE_BYTES],
        private_key: &Key,
    ) -> Result<Self, TokenError> {
        let mut buf = *encrypted;
        let ad = crypto::token_associated_data(protocol_id, expire_timestamp);
        let plaintext = crypto::open_with_trailing_tag(&mut buf, |body, tag| {
            crypto::open_x(private_key, nonce, &ad, body, tag)
        })
        .map_err(|_| TokenError::DecryptFailed)?;
        Self::read_plaintext(plaintext)
    }
}

/// What the server entrusts to the client between challenge and response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeToken {
    /// Client id from the private connect token.
    pub client_id: u64,
    /// User data from the private connect token.
    pub user_data: [u8; USER_DATA_BYTES],
}

impl ChallengeToken {
    /// Encrypts into the 300-byte challenge token data: `[client id][user data]` zero padded
    /// to 284 bytes, ChaCha20-Poly1305 IETF with no associated data, nonce from `sequence`.
    pub fn encrypt(
        &self,
        sequence: u64,
        challenge_key: &Key,
    ) -> Result<[u8; CHALLENGE_TOKEN_BYTES], PacketError> {
        let mut buf = [0u8; CHALLENGE_TOKEN_BYTES];
        {
            let mut w = Writer::new(&mut buf);
            w.u64("client id", self.client_id)?;
            w.bytes("user data", &self.user_data)?;
        }
        crypto::seal_with_trailing_tag(&mut buf, |body| {
            crypto::seal(challenge_key, sequence, &[], body)
        })
        .map_err(|_| PacketError::EncryptFailed)?;
        Ok(buf)
    }

    /// Authenticates, decrypts and parses 300 bytes of challenge token data.
    pub fn decrypt(
        encrypted: &[u8; CHALLENGE_TOKEN_BYTES],
        sequence: u64,
        challenge_key: &Key,
    ) -> Result<Self, PacketError> {
        let mut buf = *encrypted;
        let plaintext = crypto::open_with_trailing_tag(&mut buf, |body, tag| {
            crypto::open(challenge_key, sequence, &[], body, tag)
        })
        .map_err(|_| PacketError::ChallengeTokenInvalid)?;
        let mut r = Reader::new(plaintext);
        let client_id = r.u64("client id")?;
        let user_data = to_array(r.array::<USER_DATA_BYTES>("user data")?);
        r.expect_zero_padding()
            .map_err(|_| PacketError::ChallengeTokenInvalid)?;
        Ok(Self {
            client_id,
            user_data,
        })
    }
}

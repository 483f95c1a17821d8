//! Redirect tokens: the host decides whom to send where ([`RedirectRequest`]); minting the
//! connect token needs the wall clock and fresh randomness, so it happens here, in the loop,
//! and the token goes back to the host.

use std::net::SocketAddr;

use zone_core::netcode::Key;
use zone_core::{PlayerId, ZoneId};

use crate::tokens::{MintError, TokenRequest, mint};

/// A client to send to another zone.
#[derive(Clone, Debug, PartialEq)]
pub struct RedirectRequest {
    /// Who.
    pub player: PlayerId,
    /// The zone taking them.
    pub to: ZoneId,
    /// Where that zone's clients connect.
    pub address: SocketAddr,
    /// The token to mint.
    pub token: TokenRequest,
}

/// Mints the token of `request` with `key`.
pub fn mint_for(request: &RedirectRequest, key: &Key) -> Result<RedirectToken, MintError> {
    Ok(RedirectToken {
        to: request.to,
        address: request.address,
        token: Box::new(mint(&request.token, key)?),
    })
}

/// A minted redirect, for [`crate::host::ZoneHost::handle_redirect_token`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectToken {
    /// The zone taking the player.
    pub to: ZoneId,
    /// Where its clients connect.
    pub address: SocketAddr,
    /// The connect token.
    pub token: Box<[u8; 2048]>,
}

//! Redirect tokens: the host decides whom to send where ([`RedirectRequest`]); minting the
//! connect token needs the wall clock and fresh randomness, so it happens here, in the loop,
//! and the token goes back to the host. A token is signed only for the address the target
//! zone published ([`mint_checked`]): the address in a neighbour's answer is a claim, not
//! a fact.

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

/// Mints the token of `request` with `key` if `published` (what the target zone published
/// as its address) is the address the request names.
pub fn mint_checked(
    request: &RedirectRequest,
    published: Option<SocketAddr>,
    key: &Key,
) -> Result<RedirectToken, MintError> {
    if published != Some(request.address) {
        return Err(MintError::Unpublished {
            zone: request.to,
            named: request.address,
            published,
        });
    }
    mint_for(request, key)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(address: &str) -> RedirectRequest {
        let address: SocketAddr = address.parse().unwrap();
        RedirectRequest {
            player: PlayerId(7),
            to: ZoneId(2),
            address,
            token: TokenRequest {
                protocol_id: 1,
                client_id: 7,
                servers: vec![address],
                expiry_s: 30,
                timeout_s: 10,
            },
        }
    }

    #[test]
    fn a_token_is_minted_only_for_the_address_the_zone_published() {
        let key = Key::from_bytes([9; 32]);
        let published: SocketAddr = "10.0.0.2:40000".parse().unwrap();
        let honest = mint_checked(&request("10.0.0.2:40000"), Some(published), &key).unwrap();
        assert_eq!(honest.address, published);
        // A forged answer naming the attacker's address gets no server-signed token.
        let forged = mint_checked(&request("203.0.113.66:40000"), Some(published), &key);
        assert!(
            matches!(forged, Err(MintError::Unpublished { named, published: Some(p), .. })
                if named.to_string() == "203.0.113.66:40000" && p == published),
            "{forged:?}"
        );
        // Nothing published yet: nothing minted.
        let unknown = mint_checked(&request("10.0.0.2:40000"), None, &key);
        assert!(matches!(
            unknown,
            Err(MintError::Unpublished {
                published: None,
                ..
            })
        ));
    }
}

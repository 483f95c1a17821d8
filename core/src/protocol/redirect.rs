//! Zone redirects: how a client learns that its player now belongs to another zone, where that
//! zone listens, and the fresh connect token to get in.
//!
//! A netcode.io connect token is 2,048 bytes, more than one packet's reliable budget, so the
//! server sends it as up to [`MAX_REDIRECT_PARTS`] consecutive [`ServerMessage::Redirect`]
//! parts of at most [`REDIRECT_PART_BYTES`] bytes (the zero padding at the token's end is not
//! sent). The reliable channel delivers them once and in order; [`RedirectAssembler`] puts the
//! token back together and refuses parts that do not continue what it holds.

use std::net::SocketAddr;

use super::ServerMessage;
use crate::ZoneId;

/// Size of a netcode.io connect token.
pub const CONNECT_TOKEN_BYTES: usize = 2048;
/// Most token bytes in one redirect part (fits the reliable budget of a packet).
pub const REDIRECT_PART_BYTES: usize = 320;
/// Most parts of one redirect.
pub const MAX_REDIRECT_PARTS: u8 = CONNECT_TOKEN_BYTES.div_ceil(REDIRECT_PART_BYTES) as u8;

/// A complete redirect: the zone, its address and the token to connect with.
#[derive(Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The zone the player now belongs to.
    pub zone: ZoneId,
    /// Where that zone's server listens.
    pub address: SocketAddr,
    /// The connect token (zero padded to its full size).
    pub token: Box<[u8; CONNECT_TOKEN_BYTES]>,
}

impl std::fmt::Debug for Redirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token grants entry: never printed.
        f.debug_struct("Redirect")
            .field("zone", &self.zone)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// The reliable messages that carry a redirect to `zone` at `address` with `token`.
///
/// ```
/// use zone_core::ZoneId;
/// use zone_core::protocol::{RedirectAssembler, redirect_messages};
/// let mut token = [0u8; 2048];
/// token[..1100].fill(7);
/// let parts = redirect_messages(ZoneId(2), "10.0.0.2:40001".parse().unwrap(), &token);
/// assert_eq!(parts.len(), 4);
/// let mut rx = RedirectAssembler::default();
/// let done: Vec<_> = parts.iter().filter_map(|m| rx.accept(m).ok().flatten()).collect();
/// assert_eq!(*done[0].token, token);
/// ```
pub fn redirect_messages(
    zone: ZoneId,
    address: SocketAddr,
    token: &[u8; CONNECT_TOKEN_BYTES],
) -> Vec<ServerMessage> {
    let used = token.iter().rposition(|b| *b != 0).map_or(1, |i| i + 1);
    let chunks: Vec<&[u8]> = token[..used].chunks(REDIRECT_PART_BYTES).collect();
    let parts = chunks.len() as u8;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| ServerMessage::Redirect {
            zone,
            address,
            part: i as u8,
            parts,
            token: bytes.to_vec(),
        })
        .collect()
}

/// Why a redirect part was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    /// The part does not continue the redirect being assembled (other zone, address or part
    /// count, or out of order).
    #[error("redirect part {part} of {parts} does not continue the redirect being assembled")]
    OutOfOrder {
        /// The part's index.
        part: u8,
        /// Its part count.
        parts: u8,
    },
    /// More token bytes than a connect token holds, or a part over its size.
    #[error("redirect token too large")]
    TooLarge,
}

/// Reassembles redirects from their parts, in order.
#[derive(Debug, Default)]
pub struct RedirectAssembler {
    current: Option<(ZoneId, SocketAddr, u8, u8)>,
    token: Vec<u8>,
}

impl RedirectAssembler {
    /// Takes one reliable message: `Ok(Some(_))` when it completes a redirect, `Ok(None)` for
    /// a part that continues one (or a message that is not a redirect), `Err` for a part that
    /// does not fit (the partial redirect is dropped).
    pub fn accept(&mut self, message: &ServerMessage) -> Result<Option<Redirect>, RedirectError> {
        let ServerMessage::Redirect {
            zone,
            address,
            part,
            parts,
            token,
        } = message
        else {
            return Ok(None);
        };
        let (zone, address, part, parts) = (*zone, *address, *part, *parts);
        let continues = match self.current {
            None => part == 0,
            Some((z, a, next, n)) => {
                part == 0 || (z == zone && a == address && n == parts && next == part)
            }
        };
        if !continues || part >= parts || parts > MAX_REDIRECT_PARTS {
            self.reset();
            return Err(RedirectError::OutOfOrder { part, parts });
        }
        if part == 0 {
            self.token.clear();
        }
        if token.len() > REDIRECT_PART_BYTES || self.token.len() + token.len() > CONNECT_TOKEN_BYTES
        {
            self.reset();
            return Err(RedirectError::TooLarge);
        }
        self.token.extend_from_slice(token);
        if part + 1 < parts {
            self.current = Some((zone, address, part + 1, parts));
            return Ok(None);
        }
        let mut full = Box::new([0u8; CONNECT_TOKEN_BYTES]);
        full[..self.token.len()].copy_from_slice(&self.token);
        self.reset();
        Ok(Some(Redirect {
            zone,
            address,
            token: full,
        }))
    }

    fn reset(&mut self) {
        self.current = None;
        self.token.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(fill: usize) -> [u8; CONNECT_TOKEN_BYTES] {
        let mut t = [0u8; CONNECT_TOKEN_BYTES];
        for (i, b) in t.iter_mut().take(fill).enumerate() {
            *b = (i % 251) as u8 + 1;
        }
        t
    }

    #[test]
    fn a_full_token_survives_the_round_trip() {
        let addr: SocketAddr = "[::1]:9".parse().unwrap();
        for fill in [0, 1, 319, 320, 321, 1_180, 2_048] {
            let t = token(fill);
            let parts = redirect_messages(ZoneId(4), addr, &t);
            assert!(parts.len() <= usize::from(MAX_REDIRECT_PARTS));
            let mut rx = RedirectAssembler::default();
            let mut done = None;
            for p in &parts {
                if let Some(r) = rx.accept(p).unwrap() {
                    done = Some(r);
                }
            }
            let r = done.expect("complete");
            assert_eq!(
                (r.zone, r.address, *r.token),
                (ZoneId(4), addr, t),
                "{fill}"
            );
        }
    }

    #[test]
    fn parts_out_of_order_or_mixed_are_refused_and_a_new_redirect_restarts() {
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:2".parse().unwrap();
        let one = redirect_messages(ZoneId(1), a, &token(1_000));
        let two = redirect_messages(ZoneId(2), b, &token(700));
        let mut rx = RedirectAssembler::default();
        assert!(rx.accept(&one[1]).is_err(), "must start at part 0");
        assert_eq!(rx.accept(&one[0]), Ok(None));
        assert!(rx.accept(&two[1]).is_err(), "another redirect's part");
        // Starting again from part 0 of the newer redirect works.
        let mut done = None;
        for p in &two {
            done = rx.accept(p).unwrap().or(done);
        }
        assert_eq!(done.unwrap().zone, ZoneId(2));
        let oversized = ServerMessage::Redirect {
            zone: ZoneId(1),
            address: a,
            part: 0,
            parts: 2,
            token: vec![1; REDIRECT_PART_BYTES + 1],
        };
        assert_eq!(rx.accept(&oversized), Err(RedirectError::TooLarge));
        let not_redirect = ServerMessage::Goodbye { reason: 2 };
        assert_eq!(rx.accept(&not_redirect), Ok(None));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let mut rx = RedirectAssembler::default();
        let parts = redirect_messages(ZoneId(1), "1.2.3.4:5".parse().unwrap(), &token(10));
        let r = rx.accept(&parts[0]).unwrap().unwrap();
        let text = format!("{r:?}");
        assert!(!text.contains("token"), "{text}");
    }
}

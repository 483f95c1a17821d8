//! Server address lists and their netcode encoding.
//!
//! Owns [`AddressList`] (1..=32 socket addresses, fixed size, no heap) and the on-the-wire
//! address format shared by the public and private connect token: type byte (1 = IPv4,
//! 2 = IPv6), then four `u8` octets or eight `u16` little-endian segments, then the port as a
//! `u16` little-endian. It also canonicalises addresses (IPv4-mapped IPv6 becomes IPv4; IPv6
//! flow info and scope id are dropped) so that comparisons match what the wire can carry.
//! It must never panic on a count or type byte taken from the wire.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::MAX_SERVER_ADDRESSES;
use super::error::TokenError;
use super::wire::{Reader, Writer};

/// Wire value of an IPv4 address type.
pub const ADDRESS_IPV4: u8 = 1;
/// Wire value of an IPv6 address type.
pub const ADDRESS_IPV6: u8 = 2;

const PLACEHOLDER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

/// The form of an address that survives a round trip through a connect token: IPv4-mapped
/// IPv6 addresses become IPv4, IPv6 flow info and scope id are cleared.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => SocketAddr::V4(SocketAddrV4::new(ip, addr.port())),
        IpAddr::V6(ip) => SocketAddr::V6(SocketAddrV6::new(ip, addr.port(), 0, 0)),
    }
}

/// One to 32 server addresses, stored inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AddressList {
    addrs: [SocketAddr; MAX_SERVER_ADDRESSES],
    len: usize,
}

impl AddressList {
    /// Builds a list from 1..=32 addresses (each canonicalised).
    pub fn new(addrs: &[SocketAddr]) -> Result<Self, TokenError> {
        if addrs.is_empty() || addrs.len() > MAX_SERVER_ADDRESSES {
            return Err(TokenError::AddressCount {
                got: addrs.len() as u64,
            });
        }
        let mut out = [PLACEHOLDER; MAX_SERVER_ADDRESSES];
        for (dst, src) in out.iter_mut().zip(addrs) {
            *dst = canonical(*src);
        }
        Ok(Self {
            addrs: out,
            len: addrs.len(),
        })
    }

    /// The addresses, in token order.
    pub fn as_slice(&self) -> &[SocketAddr] {
        self.addrs.get(..self.len).unwrap_or_default()
    }

    /// Number of addresses (1..=32).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a list holds at least one address.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes this list occupies on the wire, count included.
    pub fn encoded_len(&self) -> usize {
        4 + self
            .as_slice()
            .iter()
            .map(|a| match a {
                SocketAddr::V4(_) => 1 + 4 + 2,
                SocketAddr::V6(_) => 1 + 16 + 2,
            })
            .sum::<usize>()
    }

    /// Reads `[count u32][address]*` from untrusted bytes.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, TokenError> {
        let count = r.u32("server address count")?;
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        if count == 0 || count > MAX_SERVER_ADDRESSES {
            return Err(TokenError::AddressCount { got: count as u64 });
        }
        let mut out = [PLACEHOLDER; MAX_SERVER_ADDRESSES];
        for (index, slot) in out.iter_mut().take(count).enumerate() {
            let kind = r.u8("server address type")?;
            let ip = match kind {
                ADDRESS_IPV4 => {
                    let o = r.array::<4>("IPv4 address")?;
                    IpAddr::V4(Ipv4Addr::from(*o))
                }
                ADDRESS_IPV6 => {
                    let mut seg = [0u16; 8];
                    for s in seg.iter_mut() {
                        *s = r.u16("IPv6 address segment")?;
                    }
                    let [a, b, c, d, e, f, g, h] = seg;
                    IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h))
                }
                got => return Err(TokenError::AddressType { index, got }),
            };
            let port = r.u16("server address port")?;
            *slot = SocketAddr::new(ip, port);
        }
        Ok(Self {
            addrs: out,
            len: count,
        })
    }

    /// Writes `[count u32][address]*`.
    pub fn write(&self, w: &mut Writer<'_>) -> Result<(), TokenError> {
        w.u32("server address count", self.len as u32)?;
        for addr in self.as_slice() {
            match addr {
                SocketAddr::V4(a) => {
                    w.u8("server address type", ADDRESS_IPV4)?;
                    w.bytes("IPv4 address", &a.ip().octets())?;
                }
                SocketAddr::V6(a) => {
                    w.u8("server address type", ADDRESS_IPV6)?;
                    for s in a.ip().segments() {
                        w.u16("IPv6 address segment", s)?;
                    }
                }
            }
            w.u16("server address port", addr.port())?;
        }
        Ok(())
    }
}

impl fmt::Debug for AddressList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

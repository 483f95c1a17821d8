//! The seven netcode packet types and their encoding.
//!
//! Owns the connection request layout (unencrypted, exactly 1078 bytes) and the framing of
//! encrypted packets: prefix byte, variable-length sequence number, per-packet-type data
//! encrypted with ChaCha20-Poly1305 IETF (nonce `[0; 4] ++ sequence.to_le_bytes()`,
//! associated data `version info ++ protocol id LE ++ prefix byte`), 16-byte tag.
//!
//! Decoding follows the reading order of `STANDARD.md` exactly: size, type, accepted type,
//! sequence byte count, size again, replay test, decryption, replay advance, decrypted size.
//! Every decoder is total: any byte string gives `Ok` or a [`PacketError`]; it must never
//! panic, never allocate, and never advance the replay window for a packet that did not
//! authenticate.

use super::crypto::{self, Key};
use super::error::{PacketError, WireError};
use super::replay::ReplayWindow;
use super::sequence::{encode_prefix, sequence_from_bytes, sequence_to_bytes, split_prefix};
use super::wire::{Reader, Writer};
use super::{
    CHALLENGE_TOKEN_BYTES, CONNECT_TOKEN_NONCE_BYTES, CONNECT_TOKEN_PRIVATE_BYTES,
    CONNECTION_REQUEST_BYTES, MAC_BYTES, MAX_PACKET_BYTES, MAX_PAYLOAD_BYTES,
    MIN_ENCRYPTED_PACKET_BYTES, VERSION_INFO, VERSION_INFO_BYTES,
};

/// Packet type, the low 4 bits of the prefix byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum PacketType {
    /// Client to server, unencrypted, carries the private connect token.
    ConnectionRequest = 0,
    /// Server to client: no slot free.
    ConnectionDenied = 1,
    /// Server to client: carries the encrypted challenge token.
    ConnectionChallenge = 2,
    /// Client to server: echoes the encrypted challenge token.
    ConnectionResponse = 3,
    /// Both ways: liveness, and the client index / max clients from the server.
    KeepAlive = 4,
    /// Both ways: 1..=1200 bytes of application data.
    Payload = 5,
    /// Both ways: the connection is over.
    Disconnect = 6,
}

impl PacketType {
    /// Every packet type, by wire value.
    pub const ALL: [PacketType; 7] = [
        PacketType::ConnectionRequest,
        PacketType::ConnectionDenied,
        PacketType::ConnectionChallenge,
        PacketType::ConnectionResponse,
        PacketType::KeepAlive,
        PacketType::Payload,
        PacketType::Disconnect,
    ];

    /// The packet type with wire value `bits`, if any.
    pub fn from_bits(bits: u8) -> Option<Self> {
        Self::ALL.get(usize::from(bits)).copied()
    }

    /// True for the types replay protection applies to: keep-alive, payload, disconnect.
    pub fn is_replay_protected(self) -> bool {
        matches!(
            self,
            PacketType::KeepAlive | PacketType::Payload | PacketType::Disconnect
        )
    }

    /// Allowed size range of the decrypted per-packet data.
    pub fn body_size_range(self) -> (usize, usize) {
        match self {
            PacketType::ConnectionRequest => {
                (CONNECTION_REQUEST_BYTES - 1, CONNECTION_REQUEST_BYTES - 1)
            }
            PacketType::ConnectionDenied | PacketType::Disconnect => (0, 0),
            PacketType::ConnectionChallenge | PacketType::ConnectionResponse => {
                (8 + CHALLENGE_TOKEN_BYTES, 8 + CHALLENGE_TOKEN_BYTES)
            }
            PacketType::KeepAlive => (8, 8),
            PacketType::Payload => (1, MAX_PAYLOAD_BYTES),
        }
    }
}

/// A parsed connection request, borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionRequest<'a> {
    /// Protocol id (authenticated as associated data of the private token).
    pub protocol_id: u64,
    /// Connect token expire timestamp (authenticated as associated data).
    pub expire_timestamp: u64,
    /// XChaCha20 nonce of the private connect token.
    pub nonce: &'a [u8; CONNECT_TOKEN_NONCE_BYTES],
    /// Encrypted private connect token (1008 bytes ciphertext + 16-byte tag).
    pub private_data: &'a [u8; CONNECT_TOKEN_PRIVATE_BYTES],
}

impl<'a> ConnectionRequest<'a> {
    /// Parses a connection request: exactly 1078 bytes, prefix byte zero, version info
    /// "NETCODE 1.02". Does not check protocol id or expiry (the server does).
    pub fn read(datagram: &'a [u8]) -> Result<Self, PacketError> {
        if datagram.len() < CONNECTION_REQUEST_BYTES {
            return Err(PacketError::TooSmall {
                min: CONNECTION_REQUEST_BYTES,
                got: datagram.len(),
            });
        }
        if datagram.len() > CONNECTION_REQUEST_BYTES {
            return Err(PacketError::TooLarge {
                max: CONNECTION_REQUEST_BYTES,
                got: datagram.len(),
            });
        }
        let mut r = Reader::new(datagram);
        let prefix = r.u8("prefix byte")?;
        let (type_bits, sequence_bytes) = split_prefix(prefix);
        if type_bits != PacketType::ConnectionRequest as u8 {
            return Err(match PacketType::from_bits(type_bits) {
                Some(packet_type) => PacketError::UnexpectedPacketType { packet_type },
                None => PacketError::InvalidPacketType { got: type_bits },
            });
        }
        if sequence_bytes != 0 {
            return Err(PacketError::InvalidSequenceBytes {
                expected: "0 (connection request)",
                got: sequence_bytes,
            });
        }
        let version = r.array::<VERSION_INFO_BYTES>("version info")?;
        if *version != VERSION_INFO {
            return Err(PacketError::WrongVersion { got: *version });
        }
        Ok(Self {
            protocol_id: r.u64("protocol id")?,
            expire_timestamp: r.u64("expire timestamp")?,
            nonce: r.array("connect token nonce")?,
            private_data: r.array("encrypted private connect token")?,
        })
    }

    /// Writes the 1078-byte connection request into `out`; returns 1078.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, PacketError> {
        let mut w = Writer::new(out);
        w.u8("prefix byte", 0)?;
        w.bytes("version info", &VERSION_INFO)?;
        w.u64("protocol id", self.protocol_id)?;
        w.u64("expire timestamp", self.expire_timestamp)?;
        w.bytes("connect token nonce", self.nonce)?;
        w.bytes("encrypted private connect token", self.private_data)?;
        Ok(w.position())
    }
}

/// An encrypted packet's content (everything but the connection request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// No data.
    ConnectionDenied,
    /// Challenge token sequence and encrypted challenge token.
    ConnectionChallenge {
        /// Sequence the challenge token was encrypted with.
        token_sequence: u64,
        /// Encrypted challenge token data.
        token: &'a [u8; CHALLENGE_TOKEN_BYTES],
    },
    /// Echo of a challenge.
    ConnectionResponse {
        /// Sequence the challenge token was encrypted with.
        token_sequence: u64,
        /// Encrypted challenge token data.
        token: &'a [u8; CHALLENGE_TOKEN_BYTES],
    },
    /// Client index and max clients (meaningful server to client).
    KeepAlive {
        /// Slot of the client on the server.
        client_index: u32,
        /// Number of slots on the server.
        max_clients: u32,
    },
    /// Application data, 1..=1200 bytes.
    Payload(&'a [u8]),
    /// No data.
    Disconnect,
}

impl Packet<'_> {
    /// The wire type of this packet.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::ConnectionDenied => PacketType::ConnectionDenied,
            Packet::ConnectionChallenge { .. } => PacketType::ConnectionChallenge,
            Packet::ConnectionResponse { .. } => PacketType::ConnectionResponse,
            Packet::KeepAlive { .. } => PacketType::KeepAlive,
            Packet::Payload(_) => PacketType::Payload,
            Packet::Disconnect => PacketType::Disconnect,
        }
    }

    fn write_body(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        match self {
            Packet::ConnectionDenied | Packet::Disconnect => Ok(()),
            Packet::ConnectionChallenge {
                token_sequence,
                token,
            }
            | Packet::ConnectionResponse {
                token_sequence,
                token,
            } => {
                w.u64("challenge token sequence", *token_sequence)?;
                w.bytes("encrypted challenge token", *token)
            }
            Packet::KeepAlive {
                client_index,
                max_clients,
            } => {
                w.u32("client index", *client_index)?;
                w.u32("max clients", *max_clients)
            }
            Packet::Payload(data) => w.bytes("payload", data),
        }
    }

    fn body_len(&self) -> usize {
        match self {
            Packet::Payload(data) => data.len(),
            other => other.packet_type().body_size_range().0,
        }
    }
}

/// The cleartext header of an encrypted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Packet type from the low 4 bits of the prefix byte.
    pub packet_type: PacketType,
    /// The prefix byte itself (part of the associated data).
    pub prefix: u8,
    /// Sequence number.
    pub sequence: u64,
    /// Bytes taken by prefix and sequence.
    pub len: usize,
}

/// Reads and validates the cleartext header of an encrypted packet (steps 1 to 6 of
/// "Reading Encrypted Packets"): size, packet type, whether `accepted` contains it, sequence
/// byte count, size again. Datagrams above [`MAX_PACKET_BYTES`] are also refused.
pub fn read_header(datagram: &[u8], accepted: &[PacketType]) -> Result<Header, PacketError> {
    if datagram.len() < MIN_ENCRYPTED_PACKET_BYTES {
        return Err(PacketError::TooSmall {
            min: MIN_ENCRYPTED_PACKET_BYTES,
            got: datagram.len(),
        });
    }
    if datagram.len() > MAX_PACKET_BYTES {
        return Err(PacketError::TooLarge {
            max: MAX_PACKET_BYTES,
            got: datagram.len(),
        });
    }
    let mut r = Reader::new(datagram);
    let prefix = r.u8("prefix byte")?;
    let (type_bits, sequence_bytes) = split_prefix(prefix);
    let packet_type = PacketType::from_bits(type_bits)
        .ok_or(PacketError::InvalidPacketType { got: type_bits })?;
    if !accepted.contains(&packet_type) {
        return Err(PacketError::UnexpectedPacketType { packet_type });
    }
    if packet_type == PacketType::ConnectionRequest {
        return Err(PacketError::NotEncrypted);
    }
    if !(1..=8).contains(&sequence_bytes) {
        return Err(PacketError::InvalidSequenceBytes {
            expected: "1..=8",
            got: sequence_bytes,
        });
    }
    let len = 1 + usize::from(sequence_bytes);
    if datagram.len() < len + MAC_BYTES {
        return Err(PacketError::TooSmall {
            min: len + MAC_BYTES,
            got: datagram.len(),
        });
    }
    let sequence = datagram
        .get(1..len)
        .map(sequence_from_bytes)
        .ok_or(PacketError::TooSmall {
            min: len,
            got: datagram.len(),
        })?;
    Ok(Header {
        packet_type,
        prefix,
        sequence,
        len,
    })
}

/// Encrypts `packet` with `key` under `sequence` into `out`; returns the datagram length
/// (prefix + sequence bytes + data + 16-byte tag).
pub fn write_packet(
    out: &mut [u8],
    packet: &Packet<'_>,
    sequence: u64,
    protocol_id: u64,
    key: &Key,
) -> Result<usize, PacketError> {
    let packet_type = packet.packet_type();
    if let Packet::Payload(data) = packet
        && (data.is_empty() || data.len() > MAX_PAYLOAD_BYTES)
    {
        return Err(PacketError::PayloadSize { got: data.len() });
    }
    let prefix = encode_prefix(packet_type, sequence);
    let (sequence_bytes, sequence_len) = sequence_to_bytes(sequence);
    let header_len = 1 + sequence_len;
    let total = header_len + packet.body_len() + MAC_BYTES;
    let out_len = out.len();
    let buf = out.get_mut(..total).ok_or(WireError::BufferFull {
        field: "packet",
        needed: total,
        remaining: out_len,
    })?;
    {
        let mut w = Writer::new(buf);
        w.u8("prefix byte", prefix)?;
        w.bytes(
            "sequence",
            sequence_bytes.get(..sequence_len).unwrap_or_default(),
        )?;
        packet.write_body(&mut w)?;
    }
    let (_, encrypted) = buf
        .split_at_mut_checked(header_len)
        .ok_or(PacketError::EncryptFailed)?;
    let ad = crypto::packet_associated_data(protocol_id, prefix);
    crypto::seal_with_trailing_tag(encrypted, |body| crypto::seal(key, sequence, &ad, body))
        .map_err(|_| PacketError::EncryptFailed)?;
    Ok(total)
}

/// Reads an encrypted packet in place, in the exact order of `STANDARD.md`: header checks
/// ([`read_header`]), replay test (keep-alive, payload, disconnect only, when `replay` is
/// given), decryption with `key`, replay advance, decrypted size check. Returns the sequence
/// number and the packet, which borrows the decrypted bytes of `datagram`.
pub fn read_packet<'a>(
    datagram: &'a mut [u8],
    protocol_id: u64,
    key: &Key,
    accepted: &[PacketType],
    replay: Option<&mut ReplayWindow>,
) -> Result<(u64, Packet<'a>), PacketError> {
    let header = read_header(datagram, accepted)?;
    let protected = header.packet_type.is_replay_protected();
    if protected
        && let Some(window) = replay.as_deref()
        && window.already_received(header.sequence)
    {
        return Err(PacketError::Replayed {
            sequence: header.sequence,
        });
    }
    let (_, encrypted) =
        datagram
            .split_at_mut_checked(header.len)
            .ok_or(PacketError::TooSmall {
                min: header.len,
                got: 0,
            })?;
    let ad = crypto::packet_associated_data(protocol_id, header.prefix);
    let body = crypto::open_with_trailing_tag(encrypted, |ciphertext, tag| {
        crypto::open(key, header.sequence, &ad, ciphertext, tag)
    })
    .map_err(|_| PacketError::DecryptFailed {
        packet_type: header.packet_type,
    })?;
    if protected && let Some(window) = replay {
        window.advance(header.sequence);
    }
    let body: &'a [u8] = body;
    parse_body(header.packet_type, body).map(|packet| (header.sequence, packet))
}

fn parse_body(packet_type: PacketType, body: &[u8]) -> Result<Packet<'_>, PacketError> {
    let (min, max) = packet_type.body_size_range();
    if body.len() < min || body.len() > max {
        return Err(PacketError::WrongBodySize {
            packet_type,
            min,
            max,
            got: body.len(),
        });
    }
    let mut r = Reader::new(body);
    Ok(match packet_type {
        PacketType::ConnectionRequest => return Err(PacketError::NotEncrypted),
        PacketType::ConnectionDenied => Packet::ConnectionDenied,
        PacketType::ConnectionChallenge => Packet::ConnectionChallenge {
            token_sequence: r.u64("challenge token sequence")?,
            token: r.array("encrypted challenge token")?,
        },
        PacketType::ConnectionResponse => Packet::ConnectionResponse {
            token_sequence: r.u64("challenge token sequence")?,
            token: r.array("encrypted challenge token")?,
        },
        PacketType::KeepAlive => Packet::KeepAlive {
            client_index: r.u32("client index")?,
            max_clients: r.u32("max clients")?,
        },
        PacketType::Payload => Packet::Payload(body),
        PacketType::Disconnect => Packet::Disconnect,
    })
}

/// Benchmark helper: encrypts `payload` as a payload packet into `scratch`, then
/// authenticates and decrypts it back in place. Returns the encrypted datagram size.
pub fn payload_roundtrip(
    scratch: &mut [u8; MAX_PACKET_BYTES],
    key: &Key,
    protocol_id: u64,
    sequence: u64,
    payload: &[u8],
) -> Result<usize, PacketError> {
    let n = write_packet(
        scratch,
        &Packet::Payload(payload),
        sequence,
        protocol_id,
        key,
    )?;
    let datagram = scratch.get_mut(..n).ok_or(PacketError::TooSmall {
        min: n,
        got: MAX_PACKET_BYTES,
    })?;
    match read_packet(datagram, protocol_id, key, &[PacketType::Payload], None)? {
        (_, Packet::Payload(data)) if data.len() == payload.len() => Ok(n),
        (_, other) => Err(PacketError::UnexpectedPacketType {
            packet_type: other.packet_type(),
        }),
    }
}

//! Prefix byte and variable-length sequence number encoding.
//!
//! Owns the first bytes of every encrypted packet: the prefix byte (packet type in the low 4
//! bits, number of sequence bytes in the high 4 bits) and the sequence number written
//! low byte first with high zero bytes omitted (at least one byte, at most eight). It must
//! never accept a sequence byte count outside `1..=8` and never panic on any prefix byte.

use super::packet::PacketType;

/// Number of bytes needed to write `sequence` with high zero bytes omitted: `1..=8`
/// (zero still takes one byte).
pub fn sequence_bytes_required(sequence: u64) -> u8 {
    let significant_bits = u64::BITS - sequence.leading_zeros();
    significant_bits.div_ceil(8).max(1) as u8
}

/// Prefix byte of an encrypted packet: `(sequence_bytes << 4) | packet_type`.
pub fn encode_prefix(packet_type: PacketType, sequence: u64) -> u8 {
    (sequence_bytes_required(sequence) << 4) | packet_type as u8
}

/// Splits a prefix byte into `(packet type bits, sequence byte count)`, unvalidated.
pub fn split_prefix(prefix: u8) -> (u8, u8) {
    (prefix & 0x0F, prefix >> 4)
}

/// The low `count` bytes of `sequence`, low byte first, and `count`.
pub fn sequence_to_bytes(sequence: u64) -> ([u8; 8], usize) {
    (
        sequence.to_le_bytes(),
        usize::from(sequence_bytes_required(sequence)),
    )
}

/// Reads a sequence number written low byte first from up to eight bytes.
pub fn sequence_from_bytes(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(8)
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

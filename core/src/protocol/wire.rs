//! Byte-level reading and writing of wire fields through bincode 2's standard configuration
//! (little-endian, variable-length integers, zigzag for signed ones).
//!
//! The reader never reads past its slice and caps every decode with a byte limit, so a hostile
//! length prefix cannot make it allocate more than the packet could hold.
//!
//! The hot paths (the server writing snapshots, clients reading them) use the hand-written
//! integer codecs below ([`put_varint`], [`WireReader::varint`], ...): the same bytes and the
//! same refusals as bincode's, without its per-field call overhead (tested against bincode).

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use bincode::{Decode, Encode};

use super::DecodeError;

/// The bincode configuration of every wire field (limit: one max-size packet).
pub type WireConfig = Configuration<LittleEndian, Varint, Limit<{ super::MAX_PACKET }>>;

/// The configuration value.
pub const CONFIG: WireConfig = bincode::config::standard().with_limit::<{ super::MAX_PACKET }>();

/// Appends encoded fields to a reused buffer.
#[derive(Debug)]
pub struct WireWriter<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> WireWriter<'a> {
    /// Writes after whatever `buf` holds already.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Self { buf }
    }

    /// Appends one field.
    pub fn put<T: Encode>(&mut self, value: T) {
        // Writing into a Vec cannot fail for the plain field types used on the wire.
        if bincode::encode_into_std_write(value, &mut *self.buf, CONFIG).is_err() {
            debug_assert!(false, "encoding into a Vec failed");
        }
    }

    /// Bytes written so far (including what the buffer held before).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Reads fields from a byte slice, front to back.
#[derive(Debug)]
pub struct WireReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> WireReader<'a> {
    /// Reads `bytes` from the start.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Reads one field.
    pub fn get<T: Decode<()>>(&mut self) -> Result<T, DecodeError> {
        let rest = self.bytes.get(self.pos..).unwrap_or(&[]);
        let (value, used) =
            bincode::decode_from_slice(rest, CONFIG).map_err(DecodeError::from_bincode)?;
        self.pos += used;
        Ok(value)
    }

    /// Reads a raw byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.bytes.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads a bool byte (0 or 1).
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::OutOfRange("bool")),
        }
    }

    fn le(&mut self, n: usize) -> Result<u64, DecodeError> {
        let end = self.pos + 1 + n;
        let bytes = self
            .bytes
            .get(self.pos + 1..end)
            .ok_or(DecodeError::Truncated)?;
        let mut v = 0u64;
        for (i, b) in bytes.iter().enumerate() {
            v |= u64::from(*b) << (8 * i);
        }
        self.pos = end;
        Ok(v)
    }

    /// Reads an unsigned varint of a field `width_bytes` wide (2, 4 or 8): a marker wider than
    /// the field is `Malformed`, a varint cut short `Truncated` (bincode's rules).
    pub fn varint(&mut self, width_bytes: usize) -> Result<u64, DecodeError> {
        let first = *self.bytes.get(self.pos).ok_or(DecodeError::Truncated)?;
        match first {
            0..=250 => {
                self.pos += 1;
                Ok(u64::from(first))
            }
            251 if width_bytes >= 2 => self.le(2),
            252 if width_bytes >= 4 => self.le(4),
            253 if width_bytes >= 8 => self.le(8),
            _ => Err(DecodeError::Malformed),
        }
    }

    /// Reads a `u16` varint.
    pub fn u16v(&mut self) -> Result<u16, DecodeError> {
        self.varint(2).map(|v| v as u16)
    }

    /// Reads a `u32` varint.
    pub fn u32v(&mut self) -> Result<u32, DecodeError> {
        self.varint(4).map(|v| v as u32)
    }

    /// Reads a `u64` varint.
    pub fn u64v(&mut self) -> Result<u64, DecodeError> {
        self.varint(8)
    }

    /// Reads an `i16` (zigzag over a `u16` varint).
    pub fn i16z(&mut self) -> Result<i16, DecodeError> {
        let z = self.varint(2)? as u16;
        Ok(((z >> 1) as i16) ^ -((z & 1) as i16))
    }

    /// Reads an `i32` (zigzag over a `u32` varint).
    pub fn i32z(&mut self) -> Result<i32, DecodeError> {
        let z = self.varint(4)? as u32;
        Ok(((z >> 1) as i32) ^ -((z & 1) as i32))
    }

    /// Reads a pair written by [`put_pair`].
    pub fn pair(&mut self) -> Result<(i32, i32), DecodeError> {
        let v = self.u64v()?;
        Ok((unzigzag32(gather(v)), unzigzag32(gather(v >> 1))))
    }

    /// Reads a count and checks it against a cap.
    pub fn count(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let n: u32 = self.get()?;
        if n as usize > max {
            return Err(DecodeError::TooMany {
                what,
                got: n as usize,
                max,
            });
        }
        Ok(n as usize)
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes(extra)),
        }
    }
}

/// Somewhere bytes can be appended: a `Vec`, or a fixed [`SmallBytes`] buffer.
pub trait ByteSink {
    /// Appends bytes.
    fn put_bytes(&mut self, bytes: &[u8]);
}

impl ByteSink for Vec<u8> {
    fn put_bytes(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Most bytes of a prepared record body: an update is at most 41 bytes (track pair 9,
/// velocity deltas 5 + 5, facing 1, health 3 + 3, life 1, plugin state 2 + 12), a spawn 38.
pub const SMALL_BYTES: usize = 41;

/// Up to [`SMALL_BYTES`] bytes kept inline (prepared record bodies); bytes past the end are
/// dropped and flagged, which the encoders' size bounds rule out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmallBytes {
    len: u8,
    bytes: [u8; SMALL_BYTES],
}

impl Default for SmallBytes {
    fn default() -> Self {
        Self {
            len: 0,
            bytes: [0; SMALL_BYTES],
        }
    }
}

impl SmallBytes {
    /// The bytes held.
    pub fn as_slice(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Number of bytes held.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties it.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl ByteSink for SmallBytes {
    fn put_bytes(&mut self, bytes: &[u8]) {
        let start = usize::from(self.len);
        let end = start + bytes.len();
        if let Some(dst) = self.bytes.get_mut(start..end) {
            dst.copy_from_slice(bytes);
            self.len = end as u8;
        } else {
            debug_assert!(false, "SmallBytes overflow");
        }
    }
}

/// Appends `v` as a bincode varint, shortest form.
#[inline]
pub fn put_varint(out: &mut impl ByteSink, v: u64) {
    if v < 251 {
        out.put_bytes(&[v as u8]);
    } else if v <= u64::from(u16::MAX) {
        let b = (v as u16).to_le_bytes();
        out.put_bytes(&[251, b[0], b[1]]);
    } else if v <= u64::from(u32::MAX) {
        let b = (v as u32).to_le_bytes();
        out.put_bytes(&[252, b[0], b[1], b[2], b[3]]);
    } else {
        let b = v.to_le_bytes();
        out.put_bytes(&[253, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    }
}

/// Appends a signed `i16`/`i32`/`i64` value as bincode does: zigzag, then the varint.
#[inline]
pub fn put_zigzag(out: &mut impl ByteSink, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Appends a pair of small signed values as one varint: their zigzag forms interleaved bit by
/// bit (x in the even bits, y in the odd), so two values within -7..=7 usually take one byte.
#[inline]
pub fn put_pair(out: &mut impl ByteSink, x: i32, y: i32) {
    put_varint(out, interleave(zigzag32(x), zigzag32(y)));
}

fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

fn unzigzag32(z: u32) -> i32 {
    ((z >> 1) as i32) ^ -((z & 1) as i32)
}

/// Spreads the bits of `v` to the even positions of a `u64`.
fn spread(v: u32) -> u64 {
    let mut x = u64::from(v);
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// Gathers the even bits of `v` (the inverse of `spread`).
fn gather(v: u64) -> u32 {
    let mut x = v & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    ((x | (x >> 16)) & 0x0000_0000_FFFF_FFFF) as u32
}

fn interleave(x: u32, y: u32) -> u64 {
    spread(x) | (spread(y) << 1)
}

/// Encoded length of a pair ([`put_pair`]).
pub fn pair_len(x: i32, y: i32) -> usize {
    varint_len(interleave(zigzag32(x), zigzag32(y)))
}

/// Encoded length of an unsigned integer in bincode's varint format.
pub const fn varint_len(v: u64) -> usize {
    if v < 251 {
        1
    } else if v <= u16::MAX as u64 {
        3
    } else if v <= u32::MAX as u64 {
        5
    } else {
        9
    }
}

/// Encoded length of a signed integer (zigzag, then varint).
pub const fn zigzag_len(v: i64) -> usize {
    varint_len(((v << 1) ^ (v >> 63)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_helpers_match_bincode() {
        for v in [
            0u64,
            1,
            250,
            251,
            65_535,
            65_536,
            u32::MAX as u64,
            u32::MAX as u64 + 1,
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            WireWriter::new(&mut buf).put(v);
            assert_eq!(buf.len(), varint_len(v), "{v}");
        }
        for v in [
            0i64,
            -1,
            1,
            -126,
            125,
            126,
            -40_000,
            40_000,
            i64::MIN,
            i64::MAX,
        ] {
            let mut buf = Vec::new();
            WireWriter::new(&mut buf).put(v);
            assert_eq!(buf.len(), zigzag_len(v), "{v}");
        }
    }

    #[test]
    fn hand_written_codecs_match_bincode() {
        let values: Vec<i64> = (-70_000..70_000)
            .step_by(97)
            .chain([
                0,
                1,
                -1,
                125,
                -126,
                250,
                251,
                32_767,
                -32_768,
                i64::from(i32::MAX),
            ])
            .chain([
                i64::from(i32::MIN),
                u32::MAX.into(),
                5_000_000_000,
                i64::MAX,
                i64::MIN,
            ])
            .collect();
        for &v in &values {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            put_varint(&mut ours, v as u64);
            WireWriter::new(&mut theirs).put(v as u64);
            assert_eq!(ours, theirs, "u64 {v}");
            ours.clear();
            theirs.clear();
            put_zigzag(&mut ours, v);
            WireWriter::new(&mut theirs).put(v);
            assert_eq!(ours, theirs, "i64 {v}");
            if let Ok(v32) = i32::try_from(v) {
                theirs.clear();
                WireWriter::new(&mut theirs).put(v32);
                assert_eq!(ours, theirs, "i32 {v}");
                assert_eq!(WireReader::new(&ours).i32z(), Ok(v32));
            }
            if let Ok(v16) = i16::try_from(v) {
                assert_eq!(WireReader::new(&ours).i16z(), Ok(v16));
            }
        }
        // Every 1-, 2- and 3-byte string reads the same (value or error kind) as bincode.
        let mut all = Vec::new();
        for a in 0..=255u8 {
            all.push(vec![a]);
            for b in [0u8, 1, 0x7F, 0xFF] {
                all.push(vec![a, b]);
                all.push(vec![a, b, 0x80]);
                all.push(vec![a, b, 0x80, 1, 2, 3, 4, 5, 6]);
            }
        }
        for bytes in &all {
            let kind = |r: Result<u64, DecodeError>| r.map_err(|e| e.index());
            let bin =
                |r: Result<(u64, usize), DecodeError>| r.map(|(v, _)| v).map_err(|e| e.index());
            let mut r = WireReader::new(bytes);
            let got16 = kind(r.u16v().map(u64::from));
            let want16 = bin(WireReader::new(bytes)
                .get::<u16>()
                .map(|v| (u64::from(v), 0)));
            assert_eq!(got16, want16, "u16 {bytes:?}");
            let got32 = kind(WireReader::new(bytes).u32v().map(u64::from));
            let want32 = bin(WireReader::new(bytes)
                .get::<u32>()
                .map(|v| (u64::from(v), 0)));
            assert_eq!(got32, want32, "u32 {bytes:?}");
            let got64 = kind(WireReader::new(bytes).u64v());
            let want64 = bin(WireReader::new(bytes).get::<u64>().map(|v| (v, 0)));
            assert_eq!(got64, want64, "u64 {bytes:?}");
            let got_b = WireReader::new(bytes).bool().map_err(|e| e.index());
            let want_b = WireReader::new(bytes).get::<bool>().map_err(|e| e.index());
            assert_eq!(got_b, want_b, "bool {bytes:?}");
        }
    }

    #[test]
    fn pairs_round_trip_and_small_ones_take_a_byte() {
        for (x, y) in [
            (0, 0),
            (1, -1),
            (-7, 7),
            (300, -4),
            (i32::MAX, i32::MIN),
            (i32::MIN, -1),
            (123_456, -987_654),
        ] {
            let mut buf = Vec::new();
            put_pair(&mut buf, x, y);
            assert_eq!(buf.len(), pair_len(x, y));
            let mut r = WireReader::new(&buf);
            assert_eq!(r.pair(), Ok((x, y)));
            assert_eq!(r.finish(), Ok(()));
        }
        let one_byte = (-7..=7)
            .flat_map(|x| (-7..=7).map(move |y| (x, y)))
            .filter(|&(x, y)| pair_len(x, y) == 1)
            .count();
        assert!(one_byte >= 200, "{one_byte} of 225 small pairs in one byte");
        // Interleaving: (1, 0) -> zigzag (2, 0) -> 0b0100; (0, 1) -> 0b1000.
        let mut buf = Vec::new();
        put_pair(&mut buf, 1, 0);
        put_pair(&mut buf, 0, 1);
        assert_eq!(buf, [4, 8]);
    }

    #[test]
    fn small_bytes_hold_up_to_31() {
        let mut s = SmallBytes::default();
        put_varint(&mut s, 70_000);
        put_zigzag(&mut s, -3);
        assert_eq!(s.as_slice(), &[252, 0x70, 0x11, 1, 0, 5]);
        assert_eq!(s.len(), 6);
        s.clear();
        assert!(s.is_empty());
    }

    #[test]
    fn reader_reports_truncation_and_caps() {
        let mut buf = Vec::new();
        let mut w = WireWriter::new(&mut buf);
        w.put(70_000u32);
        w.put(3u32);
        let mut r = WireReader::new(&buf[..2]);
        assert!(matches!(r.get::<u32>(), Err(DecodeError::Truncated)));
        let mut r = WireReader::new(&buf);
        assert_eq!(r.get::<u32>().unwrap(), 70_000);
        assert!(matches!(
            r.count("things", 2),
            Err(DecodeError::TooMany { got: 3, max: 2, .. })
        ));
    }
}

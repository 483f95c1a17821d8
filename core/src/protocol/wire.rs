//! Byte-level reading and writing of wire fields through bincode 2's standard configuration
//! (little-endian, variable-length integers, zigzag for signed ones).
//!
//! The reader never reads past its slice and caps every decode with a byte limit, so a hostile
//! length prefix cannot make it allocate more than the packet could hold.

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

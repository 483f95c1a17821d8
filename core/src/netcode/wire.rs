//! Bounds-checked little-endian reading and writing of byte slices.
//!
//! Owns the only code that turns untrusted bytes into integers and fixed-size arrays. Every
//! read checks the remaining length and answers a typed [`WireError`]; it must never index or
//! slice without a check, never panic, and never allocate.

use super::error::WireError;

/// A cursor over untrusted bytes. Each read names the field it reads so that errors say
/// what was expected.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Reads a fixed-size byte array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<&'a [u8; N], WireError> {
        let rest = self.remaining();
        match rest.split_first_chunk::<N>() {
            Some((head, _)) => {
                self.pos = self.pos.saturating_add(N);
                Ok(head)
            }
            None => Err(WireError::Truncated {
                field,
                offset: self.pos,
                needed: N,
                remaining: rest.len(),
            }),
        }
    }

    /// Reads one byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        self.array::<1>(field).map(|b| b[0])
    }

    /// Reads a little-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        self.array(field).map(|b| u16::from_le_bytes(*b))
    }

    /// Reads a little-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        self.array(field).map(|b| u32::from_le_bytes(*b))
    }

    /// Reads a little-endian `i32`.
    pub fn i32(&mut self, field: &'static str) -> Result<i32, WireError> {
        self.array(field).map(|b| i32::from_le_bytes(*b))
    }

    /// Reads a little-endian `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        self.array(field).map(|b| u64::from_le_bytes(*b))
    }

    /// Checks that every remaining byte is zero (the standard's zero padding).
    pub fn expect_zero_padding(&self) -> Result<(), WireError> {
        match self.remaining().iter().position(|&b| b != 0) {
            None => Ok(()),
            Some(i) => Err(WireError::NonZeroPadding {
                offset: self.pos.saturating_add(i),
            }),
        }
    }
}

/// A cursor writing into a caller-provided buffer. Writing past the end is an error, never a
/// panic.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// Starts writing at the beginning of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes written so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Writes raw bytes.
    pub fn bytes(&mut self, field: &'static str, data: &[u8]) -> Result<(), WireError> {
        let end = self.pos.checked_add(data.len());
        match end.and_then(|end| self.buf.get_mut(self.pos..end)) {
            Some(dst) => {
                dst.copy_from_slice(data);
                self.pos = self.pos.saturating_add(data.len());
                Ok(())
            }
            None => Err(WireError::BufferFull {
                field,
                needed: data.len(),
                remaining: self.buf.len().saturating_sub(self.pos),
            }),
        }
    }

    /// Writes one byte.
    pub fn u8(&mut self, field: &'static str, v: u8) -> Result<(), WireError> {
        self.bytes(field, &[v])
    }

    /// Writes a little-endian `u16`.
    pub fn u16(&mut self, field: &'static str, v: u16) -> Result<(), WireError> {
        self.bytes(field, &v.to_le_bytes())
    }

    /// Writes a little-endian `u32`.
    pub fn u32(&mut self, field: &'static str, v: u32) -> Result<(), WireError> {
        self.bytes(field, &v.to_le_bytes())
    }

    /// Writes a little-endian `i32`.
    pub fn i32(&mut self, field: &'static str, v: i32) -> Result<(), WireError> {
        self.bytes(field, &v.to_le_bytes())
    }

    /// Writes a little-endian `u64`.
    pub fn u64(&mut self, field: &'static str, v: u64) -> Result<(), WireError> {
        self.bytes(field, &v.to_le_bytes())
    }
}

/// Copies `src` into a fixed-size array, zero-filling or truncating; never panics.
pub(crate) fn to_array<const N: usize>(src: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (dst, s) in out.iter_mut().zip(src) {
        *dst = *s;
    }
    out
}

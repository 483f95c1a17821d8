//! Keys, nonces, associated data and the AEAD calls of netcode 1.02.
//!
//! Owns the only calls into the AEAD libraries: `ring`'s ChaCha20-Poly1305 (IETF, 12-byte
//! nonce; BoringSSL's assembly) for packets and challenge tokens, the hot path, and
//! RustCrypto's XChaCha20-Poly1305 (24-byte nonce; ring has none) for the private connect
//! token. The report measures both libraries (and aws-lc-rs) side by side. It must never
//! implement a cryptographic primitive itself, never print or log key bytes (the [`Key`]
//! `Debug` impl is redacted), and never modify a buffer whose authentication fails.

use std::fmt;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, Tag, XChaCha20Poly1305, XNonce};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

use super::{KEY_BYTES, MAC_BYTES, VERSION_INFO};

/// A 32-byte symmetric key. Its `Debug` output never shows the bytes.
///
/// `PartialEq` is not constant-time: it exists for tests and round trips, never compare keys
/// on a path an attacker can time.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_BYTES]);

impl Key {
    /// Wraps raw key bytes (supplied by the caller's CSPRNG or a config file).
    pub const fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes. Handle with care: never log them.
    pub fn as_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// The AEAD refused to encrypt or failed to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AeadFailure;

/// The 12-byte ChaCha20-Poly1305 IETF nonce for a sequence number:
/// `[0, 0, 0, 0]` followed by the sequence as a little-endian `u64`.
pub fn packet_nonce(sequence: u64) -> [u8; 12] {
    let [a, b, c, d, e, f, g, h] = sequence.to_le_bytes();
    [0, 0, 0, 0, a, b, c, d, e, f, g, h]
}

/// Associated data of an encrypted packet: version info (13 bytes), protocol id (`u64` LE),
/// prefix byte.
pub fn packet_associated_data(protocol_id: u64, prefix: u8) -> [u8; 22] {
    let mut ad = [0u8; 22];
    let src = VERSION_INFO
        .iter()
        .copied()
        .chain(protocol_id.to_le_bytes())
        .chain(std::iter::once(prefix));
    for (dst, s) in ad.iter_mut().zip(src) {
        *dst = s;
    }
    ad
}

/// Associated data of the private connect token: version info (13 bytes), protocol id
/// (`u64` LE), expire timestamp (`u64` LE).
pub fn token_associated_data(protocol_id: u64, expire_timestamp: u64) -> [u8; 29] {
    let mut ad = [0u8; 29];
    let src = VERSION_INFO
        .iter()
        .copied()
        .chain(protocol_id.to_le_bytes())
        .chain(expire_timestamp.to_le_bytes());
    for (dst, s) in ad.iter_mut().zip(src) {
        *dst = s;
    }
    ad
}

fn packet_key(key: &Key) -> Result<LessSafeKey, AeadFailure> {
    UnboundKey::new(&CHACHA20_POLY1305, key.as_bytes())
        .map(LessSafeKey::new)
        .map_err(|_| AeadFailure)
}

/// Encrypts `plaintext` in place with ChaCha20-Poly1305 IETF under the nonce of `sequence`
/// and returns the 16-byte tag.
pub fn seal(
    key: &Key,
    sequence: u64,
    associated_data: &[u8],
    plaintext: &mut [u8],
) -> Result<[u8; MAC_BYTES], AeadFailure> {
    let nonce = Nonce::assume_unique_for_key(packet_nonce(sequence));
    let tag = packet_key(key)?
        .seal_in_place_separate_tag(nonce, Aad::from(associated_data), plaintext)
        .map_err(|_| AeadFailure)?;
    let mut out = [0u8; MAC_BYTES];
    out.copy_from_slice(tag.as_ref());
    Ok(out)
}

/// Authenticates and decrypts `ciphertext` in place with ChaCha20-Poly1305 IETF. On failure
/// the buffer is left unchanged.
pub fn open(
    key: &Key,
    sequence: u64,
    associated_data: &[u8],
    ciphertext: &mut [u8],
    tag: &[u8; MAC_BYTES],
) -> Result<(), AeadFailure> {
    let key = packet_key(key)?;
    // ring decrypts before it verifies (and then wipes): keep the ciphertext to restore.
    let mut kept = [0u8; super::MAX_PACKET_BYTES];
    let kept = kept.get_mut(..ciphertext.len()).ok_or(AeadFailure)?;
    kept.copy_from_slice(ciphertext);
    let nonce = Nonce::assume_unique_for_key(packet_nonce(sequence));
    let tag = ring::aead::Tag::from(*tag);
    #[allow(deprecated)] // renamed open_within_separate_tag after 0.17; same call
    let opened =
        key.open_in_place_separate_tag(nonce, Aad::from(associated_data), tag, ciphertext, 0..);
    if opened.is_err() {
        ciphertext.copy_from_slice(kept);
        return Err(AeadFailure);
    }
    Ok(())
}

/// Encrypts `plaintext` in place with XChaCha20-Poly1305 (24-byte nonce) and returns the tag.
pub fn seal_x(
    key: &Key,
    nonce: &[u8; 24],
    associated_data: &[u8],
    plaintext: &mut [u8],
) -> Result<[u8; MAC_BYTES], AeadFailure> {
    let cipher = XChaCha20Poly1305::new(key.as_bytes().into());
    cipher
        .encrypt_in_place_detached(&XNonce::from(*nonce), associated_data, plaintext)
        .map(|tag| tag.into())
        .map_err(|_| AeadFailure)
}

/// Authenticates and decrypts `ciphertext` in place with XChaCha20-Poly1305. On failure the
/// buffer is left unchanged.
pub fn open_x(
    key: &Key,
    nonce: &[u8; 24],
    associated_data: &[u8],
    ciphertext: &mut [u8],
    tag: &[u8; MAC_BYTES],
) -> Result<(), AeadFailure> {
    let cipher = XChaCha20Poly1305::new(key.as_bytes().into());
    cipher
        .decrypt_in_place_detached(
            &XNonce::from(*nonce),
            associated_data,
            ciphertext,
            &Tag::from(*tag),
        )
        .map_err(|_| AeadFailure)
}

/// Seals a buffer whose last 16 bytes receive the tag (`[plaintext][tag space]`).
pub(crate) fn seal_with_trailing_tag(
    buffer: &mut [u8],
    seal_fn: impl FnOnce(&mut [u8]) -> Result<[u8; MAC_BYTES], AeadFailure>,
) -> Result<(), AeadFailure> {
    let (body, tag) = buffer
        .split_last_chunk_mut::<MAC_BYTES>()
        .ok_or(AeadFailure)?;
    *tag = seal_fn(body)?;
    Ok(())
}

/// Opens a buffer laid out as `[ciphertext][tag]`, returning the plaintext part.
pub(crate) fn open_with_trailing_tag(
    buffer: &mut [u8],
    open_fn: impl FnOnce(&mut [u8], &[u8; MAC_BYTES]) -> Result<(), AeadFailure>,
) -> Result<&mut [u8], AeadFailure> {
    let (body, tag) = buffer
        .split_last_chunk_mut::<MAC_BYTES>()
        .ok_or(AeadFailure)?;
    open_fn(body, tag)?;
    Ok(body)
}

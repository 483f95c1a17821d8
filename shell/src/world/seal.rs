//! Authenticity of the zone bus. Anyone who can `PUBLISH` on the hot store could otherwise
//! speak as any zone: hand over made-up players, evict online ones, pick the address a zone
//! signs redirect tokens for, flood it with ghosts. So every message is sealed:
//!
//! `SEAL_VERSION u8 | sender u32 LE | run u64 LE | seq u64 LE | body | HMAC-SHA256 [32]`
//!
//! where `body` is [`BusMessage::encode`] and the MAC, under a key derived from the world's
//! shared netcode private key, covers everything before it. The opener rejects a bad MAC
//! (forged or damaged), a message whose `from` is not its sender (a zone speaks only for
//! itself), and replays: per sender it keeps the newest `(run, seq)` seen, and takes only
//! later ones (`run` is the sender's start time, `seq` counts its messages), so a captured
//! message can be neither repeated nor sent after a newer one.
//!
//! What this does not cover: a holder of the private key is a full peer (it can mint connect
//! tokens too); the first message a restarted opener sees from a sender sets the mark, so a
//! message captured before the opener's restart and still newer than anything it has seen
//! since is taken once. The hot store should still be private (see infra/README.md).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zone_core::ZoneId;
use zone_core::netcode::Key;

use super::bus::{BusError, BusMessage, MAX_BUS_MESSAGE};

/// The envelope format this build writes and reads.
pub const SEAL_VERSION: u8 = 2;
const HEADER: usize = 1 + 4 + 8 + 8;
const MAC_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// The bus key, derived from the netcode private key (never the key itself, so a MAC says
/// nothing about it).
#[derive(Clone)]
pub struct BusKey([u8; 32]);

impl std::fmt::Debug for BusKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BusKey(<redacted>)")
    }
}

impl BusKey {
    /// `HMAC-SHA256(private key, "zone bus mac v1")`.
    pub fn derive(private_key: &Key) -> Self {
        let mut mac = mac_with(private_key.as_bytes());
        mac.update(b"zone bus mac v1");
        Self(mac.finalize().into_bytes().into())
    }
}

fn mac_with(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length: this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// Seals one zone's messages (shared by its publishing tasks).
#[derive(Debug)]
pub struct Sealer {
    key: BusKey,
    sender: ZoneId,
    run: u64,
    next: AtomicU64,
}

impl Sealer {
    /// The sealer of zone `sender` in its run `run` (its start time, unix ms).
    pub fn new(key: BusKey, sender: ZoneId, run: u64) -> Self {
        Self {
            key,
            sender,
            run,
            next: AtomicU64::new(1),
        }
    }

    /// The sealed bytes of `message`.
    pub fn seal(&self, message: &BusMessage) -> Result<Vec<u8>, BusError> {
        let body = message.encode()?;
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::with_capacity(HEADER + body.len() + MAC_BYTES);
        out.push(SEAL_VERSION);
        out.extend_from_slice(&self.sender.0.to_le_bytes());
        out.extend_from_slice(&self.run.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&body);
        let mut mac = mac_with(&self.key.0);
        mac.update(&out);
        out.extend_from_slice(&mac.finalize().into_bytes());
        if out.len() > MAX_BUS_MESSAGE {
            return Err(BusError::TooLarge(out.len()));
        }
        Ok(out)
    }
}

/// Opens sealed messages for one receiving zone, remembering each sender's newest message.
#[derive(Debug)]
pub struct Opener {
    key: BusKey,
    newest: BTreeMap<ZoneId, (u64, u64)>,
}

/// Most senders an opener remembers (a world has at most 64 x 64 zones).
const MAX_SENDERS: usize = 4_096;

impl Opener {
    /// An opener with no sender seen yet.
    pub fn new(key: BusKey) -> Self {
        Self {
            key,
            newest: BTreeMap::new(),
        }
    }

    /// The message in `bytes`, if it is sealed with the bus key, speaks for its sender and is
    /// newer than everything seen from that sender; a typed error otherwise. Total: any bytes.
    pub fn open(&mut self, bytes: &[u8]) -> Result<(ZoneId, BusMessage), BusError> {
        if bytes.len() > MAX_BUS_MESSAGE {
            return Err(BusError::TooLarge(bytes.len()));
        }
        if bytes.len() < HEADER + MAC_BYTES {
            return Err(BusError::Decode("shorter than a sealed message".into()));
        }
        let (signed, tag) = bytes.split_at(bytes.len() - MAC_BYTES);
        let version = signed[0];
        if version != SEAL_VERSION {
            return Err(BusError::Version(version));
        }
        let mut mac = mac_with(&self.key.0);
        mac.update(signed);
        mac.verify_slice(tag).map_err(|_| BusError::BadMac)?;
        let le8 = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&signed[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut sender = [0u8; 4];
        sender.copy_from_slice(&signed[1..5]);
        let sender = ZoneId(u32::from_le_bytes(sender));
        let (run, seq) = (le8(5), le8(13));
        let message = BusMessage::decode(&signed[HEADER..])?;
        if message.from() != sender {
            return Err(BusError::WrongSender);
        }
        if self
            .newest
            .get(&sender)
            .is_some_and(|&newest| (run, seq) <= newest)
        {
            return Err(BusError::Replayed);
        }
        if self.newest.len() >= MAX_SENDERS && !self.newest.contains_key(&sender) {
            return Err(BusError::OutOfRange("senders"));
        }
        self.newest.insert(sender, (run, seq));
        Ok((sender, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zone_core::{PlayerId, PlayerState};

    fn key() -> BusKey {
        BusKey::derive(&Key::from_bytes([5; 32]))
    }

    /// The forgeries of issue 23, as an attacker with `PUBLISH` but not the key would send
    /// them: a made-up player handed over, an online player moved or evicted, an address
    /// for the zone to sign tokens for, a flood of ghosts.
    fn forgeries() -> Vec<BusMessage> {
        let mut rich = PlayerState::new_character(10.0, 10.0, 100);
        rich.stats.kills = 1_000_000;
        rich.stats.xp = 1_000_000_000_000;
        vec![
            BusMessage::Transfer {
                handoff: 1,
                from: ZoneId(2),
                to: ZoneId(1),
                player: PlayerId(424_242),
                state: rich,
                epoch: 1,
            },
            BusMessage::Transfer {
                handoff: 2,
                from: ZoneId(2),
                to: ZoneId(1),
                player: PlayerId(7),
                state: PlayerState::new_character(1.0, 1.0, 100),
                epoch: 3,
            },
            BusMessage::Evict {
                from: ZoneId(2),
                to: ZoneId(1),
                player: PlayerId(7),
                epoch: u64::MAX,
            },
            BusMessage::Accepted {
                handoff: 9,
                from: ZoneId(1),
                to: ZoneId(2),
                player: PlayerId(7),
                epoch: 4,
                address: "203.0.113.66:40000".parse().unwrap(),
            },
            BusMessage::Ghosts {
                from: ZoneId(77),
                to: ZoneId(1),
                tick: u64::MAX,
                entities: Vec::new(),
            },
        ]
    }

    #[test]
    fn a_sealed_message_opens_once_and_in_order() {
        let sealer = Sealer::new(key(), ZoneId(2), 1_000);
        let mut opener = Opener::new(key());
        let m = forgeries().remove(0);
        let (a, b) = (sealer.seal(&m).unwrap(), sealer.seal(&m).unwrap());
        assert_eq!(opener.open(&a).unwrap(), (ZoneId(2), m.clone()));
        assert_eq!(opener.open(&b).unwrap().1, m);
        assert_eq!(opener.open(&a), Err(BusError::Replayed), "a replay");
        assert_eq!(opener.open(&b), Err(BusError::Replayed), "a repeat");
        // The sender restarted (a later run): its count starts again.
        let restarted = Sealer::new(key(), ZoneId(2), 2_000);
        assert!(opener.open(&restarted.seal(&m).unwrap()).is_ok());
        assert_eq!(
            opener.open(&b),
            Err(BusError::Replayed),
            "the old run is over"
        );
    }

    #[test]
    fn every_forgery_without_the_key_is_refused() {
        let mut opener = Opener::new(key());
        let attacker = Sealer::new(BusKey::derive(&Key::from_bytes([6; 32])), ZoneId(2), 1);
        for m in forgeries() {
            // Unsealed, as the bus carried them before.
            assert!(opener.open(&m.encode().unwrap()).is_err(), "{m:?}");
            // Sealed with a key of the attacker's own.
            let sender_of = |m: &BusMessage| m.from();
            let forged = Sealer::new(attacker.key.clone(), sender_of(&m), 1)
                .seal(&m)
                .unwrap();
            assert_eq!(opener.open(&forged), Err(BusError::BadMac), "{m:?}");
            // A real message with one bit changed.
            let mut flipped = Sealer::new(key(), sender_of(&m), 5).seal(&m).unwrap();
            let at = flipped.len() / 2;
            flipped[at] ^= 1;
            assert_eq!(opener.open(&flipped), Err(BusError::BadMac), "{m:?}");
        }
    }

    #[test]
    fn a_zone_speaks_only_for_itself() {
        let mut opener = Opener::new(key());
        let m = forgeries().remove(0); // from zone 2
        let posing = Sealer::new(key(), ZoneId(3), 1).seal(&m).unwrap();
        assert_eq!(opener.open(&posing), Err(BusError::WrongSender));
    }

    #[test]
    fn any_bytes_open_to_a_message_or_a_typed_error() {
        let mut opener = Opener::new(key());
        let sealed = Sealer::new(key(), ZoneId(2), 1)
            .seal(&forgeries().remove(2))
            .unwrap();
        for len in 0..sealed.len() {
            assert!(opener.open(&sealed[..len]).is_err());
        }
    }
}

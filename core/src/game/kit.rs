//! Test kit for a game's own code (pure; the counting allocator and the network harness live
//! in `zone-kit`): the determinism checker.
//!
//! ```
//! use zone_core::game::{Game, kit};
//! use zone_core::{Zone, ZoneConfig, ZoneId};
//! let make = || Zone::with_game(ZoneConfig::arena(ZoneId(1), 48, 48, 20), 5, &Game::default());
//! let report = kit::check_determinism(|| make().unwrap(), 60, |_zone, _tick| {}).unwrap();
//! assert_eq!(report.ticks, 60);
//! ```

use crate::Zone;

/// Two runs of one zone that stopped agreeing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("zones diverged at tick {tick}: state hash {a:#018x} vs {b:#018x}")]
pub struct Divergence {
    /// The first tick whose hashes differ (0: before the first tick).
    pub tick: u64,
    /// The first run's hash.
    pub a: u64,
    /// The second run's hash.
    pub b: u64,
}

/// What a deterministic pair of runs did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Determinism {
    /// Ticks compared.
    pub ticks: u64,
    /// The final state hash (equal in both runs).
    pub hash: u64,
    /// How many ticks changed the hash (a run whose state never changes proves little).
    pub changed: u64,
}

/// Builds two zones with `make`, drives both with `drive` (called before every tick with the
/// zone and the tick about to be simulated: join players, hand over inputs and actions) for
/// `ticks` ticks, and compares their state hashes after every tick.
pub fn check_determinism(
    make: impl Fn() -> Zone,
    ticks: u64,
    mut drive: impl FnMut(&mut Zone, u64),
) -> Result<Determinism, Divergence> {
    let (mut a, mut b) = (make(), make());
    let (ha, hb) = (a.state_hash(), b.state_hash());
    if ha != hb {
        return Err(Divergence {
            tick: 0,
            a: ha,
            b: hb,
        });
    }
    let mut last = ha;
    let mut changed = 0;
    for _ in 0..ticks {
        let next = a.current_tick() + 1;
        drive(&mut a, next);
        drive(&mut b, next);
        a.tick();
        b.tick();
        let (ha, hb) = (a.state_hash(), b.state_hash());
        if ha != hb {
            return Err(Divergence {
                tick: next,
                a: ha,
                b: hb,
            });
        }
        changed += u64::from(ha != last);
        last = ha;
    }
    Ok(Determinism {
        ticks,
        hash: last,
        changed,
    })
}

/// Fuzz entry for an action's decoder: any bytes decode to an action or a typed error, never a
/// panic; what decodes encodes (within [`super::MAX_ACTION_BYTES`]) to bytes that decode to
/// the same action.
pub fn fuzz_action<A: super::Action + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let Ok(action) = A::decode(data) else {
        return;
    };
    let mut again = Vec::new();
    action.encode(&mut again);
    assert!(
        again.len() <= super::MAX_ACTION_BYTES,
        "{} encodes to {} bytes",
        A::NAME,
        again.len()
    );
    assert_eq!(
        A::decode(&again).as_ref(),
        Ok(&action),
        "{}: decode(encode(a)) == a",
        A::NAME
    );
}

/// Fuzz entry for a replicated component's codec: any [`super::Replicated::SIZE`] bytes decode
/// to a value or a typed error, never a panic; what decodes encodes to bytes that decode to the
/// same value.
pub fn fuzz_replicated<C: super::Replicated + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let mut bytes = vec![0; C::SIZE];
    for (b, d) in bytes.iter_mut().zip(data) {
        *b = *d;
    }
    let Ok(value) = C::decode(&bytes) else {
        return;
    };
    let mut again = vec![0; C::SIZE];
    value.encode(&mut again);
    assert_eq!(
        C::decode(&again).as_ref(),
        Ok(&value),
        "{}: decode(encode(c)) == c",
        C::NAME
    );
}

/// Fuzz entry for a zone's whole action path: `data` is read as `(kind: u16, len: u8,
/// payload)` records handed to [`Zone::handle_action`] for `player` between ticks. Every
/// one is accepted or refused with a typed reason and counted; the zone keeps ticking.
pub fn fuzz_zone_actions(zone: &mut Zone, player: crate::PlayerId, data: &[u8]) {
    let mut rest = data;
    let mut handled = 0u64;
    while let [k0, k1, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, after) = tail.split_at(len);
        let _ = zone.handle_action(player, u16::from_le_bytes([*k0, *k1]), payload);
        handled += 1;
        if handled.is_multiple_of(3) {
            zone.tick();
        }
        rest = after;
    }
    zone.tick();
    let counted: u64 = zone
        .action_counts()
        .iter()
        .map(|c| c.accepted + c.refused.iter().map(|(_, n)| n).sum::<u64>())
        .sum::<u64>()
        + zone.unknown_actions();
    assert!(
        counted >= handled,
        "every action is counted ({counted} < {handled})"
    );
}

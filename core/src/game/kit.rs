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

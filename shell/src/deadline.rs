//! Instants a duration from now that never overflow: `Instant + Duration` panics past the
//! platform's range, and durations come from config and the network. The config bounds its
//! durations; this is the second line.

use std::time::Duration;

/// `self + d`, or the latest instant this platform can add to `self` on the way there.
pub trait SaturatingAfter: Sized + Copy {
    /// `self + d` if representable, else the furthest representable instant toward it.
    fn saturating_after(self, d: Duration) -> Self;
}

fn saturating<I: Copy>(now: I, mut d: Duration, add: impl Fn(I, Duration) -> Option<I>) -> I {
    let mut at = now;
    // Halving converges in at most ~100 steps (a Duration has 94 bits).
    while !d.is_zero() {
        match add(at, d) {
            Some(t) => return t,
            None => {
                let half = d / 2;
                if let Some(t) = add(at, half) {
                    at = t;
                }
                d = half;
            }
        }
    }
    at
}

impl SaturatingAfter for std::time::Instant {
    fn saturating_after(self, d: Duration) -> Self {
        saturating(self, d, |i, d| i.checked_add(d))
    }
}

impl SaturatingAfter for tokio::time::Instant {
    fn saturating_after(self, d: Duration) -> Self {
        saturating(self, d, |i, d| i.checked_add(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_duration_saturates_instead_of_panicking() {
        let now = std::time::Instant::now();
        let far = now.saturating_after(Duration::MAX);
        assert!(far > now + Duration::from_secs(86_400 * 365));
        assert_eq!(
            far.saturating_after(Duration::MAX),
            far.saturating_after(Duration::MAX)
        );
        assert_eq!(
            now.saturating_after(Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        let tokio_now = tokio::time::Instant::now();
        assert!(tokio_now.saturating_after(Duration::MAX) > tokio_now);
    }
}

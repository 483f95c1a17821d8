//! A circuit breaker for the cold store: after `threshold` consecutive failures it opens and
//! the flusher stops calling the store for a cool-down (doubling up to a cap while failures
//! continue); then one probe batch is let through (half-open) and its outcome closes or
//! re-opens the breaker. Time is passed in (tokio time, so simulations control it), so the
//! breaker is testable without clocks.

use std::time::Duration;

use tokio::time::Instant;

/// The breaker's state, as exported in the `zone_breaker_state` gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed = 0,
    /// One probe call may go through.
    HalfOpen = 1,
    /// Calls are held back until the cool-down ends.
    Open = 2,
}

/// The breaker.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    base_cooldown: Duration,
    max_cooldown: Duration,
    failures: u32,
    cooldown: Duration,
    open_until: Option<Instant>,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures, cooling down from `base` up to `max`.
    pub fn new(threshold: u32, base: Duration, max: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            base_cooldown: base,
            max_cooldown: max.max(base),
            failures: 0,
            cooldown: base,
            open_until: None,
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(until) if now < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// How long to wait before the next call may go through (zero when it may go now).
    pub fn wait(&self, now: Instant) -> Duration {
        match self.open_until {
            Some(until) if now < until => until - now,
            _ => Duration::ZERO,
        }
    }

    /// A call succeeded: close.
    pub fn success(&mut self) {
        self.failures = 0;
        self.cooldown = self.base_cooldown;
        self.open_until = None;
    }

    /// A call failed (retryably). Returns whether the breaker is now open.
    pub fn failure(&mut self, now: Instant) -> bool {
        self.failures = self.failures.saturating_add(1);
        let half_open = self.open_until.is_some_and(|u| now >= u);
        if half_open {
            // The probe failed: open again for longer.
            self.cooldown = (self.cooldown * 2).min(self.max_cooldown);
            self.open_until = Some(now + self.cooldown);
            return true;
        }
        if self.open_until.is_none() && self.failures >= self.threshold {
            self.cooldown = self.base_cooldown;
            self.open_until = Some(now + self.cooldown);
            return true;
        }
        self.open_until.is_some()
    }
}

/// Exponential backoff with full jitter: attempt `n` (0-based) waits a uniformly random time
/// in `[base * 2^n / 2, base * 2^n]`, capped at `max`. `random` is a value in `0..=u32::MAX`.
pub fn backoff(attempt: u32, base: Duration, max: Duration, random: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16)).min(max);
    let half = exp / 2;
    half + half.mul_f64(f64::from(random) / f64::from(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_probes_then_closes() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(1), Duration::from_secs(8));
        assert!(!b.failure(t0));
        assert!(!b.failure(t0));
        assert_eq!(b.state(t0), BreakerState::Closed);
        assert!(b.failure(t0));
        assert_eq!(b.state(t0), BreakerState::Open);
        assert_eq!(b.wait(t0), Duration::from_secs(1));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        // Failed probe: open for twice as long.
        assert!(b.failure(t1));
        assert_eq!(b.wait(t1), Duration::from_secs(2));
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(b.state(t2), BreakerState::HalfOpen);
        b.success();
        assert_eq!(b.state(t2), BreakerState::Closed);
        assert!(!b.failure(t2));
    }

    #[test]
    fn cooldown_is_capped() {
        let t = Instant::now();
        let mut b = Breaker::new(1, Duration::from_secs(1), Duration::from_secs(4));
        let mut now = t;
        for _ in 0..10 {
            b.failure(now);
            now += b.wait(now);
        }
        assert_eq!(
            b.failure(now).then(|| b.wait(now)),
            Some(Duration::from_secs(4))
        );
    }

    #[test]
    fn backoff_grows_with_jitter_and_cap() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        assert_eq!(backoff(0, base, max, 0), Duration::from_millis(50));
        assert_eq!(backoff(0, base, max, u32::MAX), Duration::from_millis(100));
        assert_eq!(backoff(3, base, max, u32::MAX), Duration::from_millis(800));
        assert_eq!(backoff(30, base, max, u32::MAX), max);
        assert!(backoff(30, base, max, 0) >= max / 2);
    }
}

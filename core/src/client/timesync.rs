//! [`TimeSync`]: the client's estimate of the server's clock, from snapshots and pongs.
//!
//! The application passes its own monotonic time in seconds (`now`); nothing here reads a
//! clock. The algorithm, which `core/PROTOCOL.md` states for clients in other languages:
//!
//! - **Round trip.** Every [`PING_INTERVAL`] the client pings with a fresh nonce and notes when;
//!   the pong's arrival gives a sample. `rtt` is their moving average (weight 1/8), starting at
//!   the first sample.
//! - **Rate.** A server that falls behind skips ticks, so its clock can run slower than
//!   `tick_hz`. Each snapshot newer than any before gives a sample `(now, tick)`; over the last
//!   [`OFFSET_WINDOW`] samples, once they span at least [`MIN_RATE_SPAN`] seconds, the least-
//!   squares slope of tick over `now` is the server's rate (ticks per second of our clock),
//!   clamped to `[tick_hz / 20, tick_hz]`; within [`RATE_TOLERANCE`] of `tick_hz` it is
//!   `tick_hz` exactly. Before that, the rate is `tick_hz`.
//! - **Offset.** A snapshot of tick `T` leaves the server right after it simulated `T`. On
//!   arrival at `now`, `T - rate * now` is the server's clock minus ours (in ticks), less that
//!   packet's one-way delay. The largest over the window is the least delayed packet's
//!   (`best`); the server's tick at `now` is `rate * now + best + rtt / 2 * tick_hz`: over a
//!   round trip the server may run at full speed (it catches up on missed ticks back to
//!   back), so projections forward use the nominal rate, and inputs are never late for that.
//! - **Jitter.** The mean, over the window, of how much later than the best sample each
//!   packet came, in ticks. Rate, best offset and jitter are computed once per snapshot.
//! - **Input ticks.** None before the first pong. An input sent at `now` reaches the server at about
//!   `server_tick(now) + rtt / 2 * tick_hz`; it is stamped for the tick after that, plus a margin
//!   of twice the jitter (at most [`MAX_JITTER_MARGIN_TICKS`]) and [`INPUT_MARGIN_TICKS`] (the
//!   packets of the next ticks carry it again, so a lost packet or two still lands in time),
//!   and never more than [`MAX_INPUT_LEAD_TICKS`] ahead of the server's tick.
//! - **Snapshot spacing.** The moving average (1/8) of the gap between consecutive snapshot
//!   ticks: the interpolation delay needs it.

/// Seconds between two pings.
pub const PING_INTERVAL: f64 = 0.25;
/// Clock samples kept (about a second at 60 Hz): the rate is fitted over them and the best
/// offset is the estimate.
pub const OFFSET_WINDOW: usize = 64;
/// Seconds the samples must span before the rate is fitted (before: the nominal rate).
pub const MIN_RATE_SPAN: f64 = 0.5;
/// A fitted rate within this fraction of the nominal one is the nominal one (a server on
/// schedule: the fit's noise is not drift).
pub const RATE_TOLERANCE: f64 = 0.02;
/// Ticks an input is stamped ahead beyond the estimated arrival and twice the jitter.
pub const INPUT_MARGIN_TICKS: f64 = 2.0;
/// Most ticks the jitter adds to the margin.
pub const MAX_JITTER_MARGIN_TICKS: f64 = 6.0;
/// Most ticks an input is stamped ahead of the server's estimated tick (the server refuses
/// inputs more than `max_input_lead_ticks`, default 30, ahead).
pub const MAX_INPUT_LEAD_TICKS: f64 = 24.0;

/// The client's view of the server's clock (see the module docs).
#[derive(Clone, Debug)]
pub struct TimeSync {
    hz: f64,
    /// `(now, tick)` of the last snapshots, a ring.
    samples: [(f64, f64); OFFSET_WINDOW],
    filled: usize,
    next: usize,
    /// Fitted from the samples at each snapshot: ticks per second, best offset, jitter.
    rate: f64,
    best: Option<f64>,
    jitter: f64,
    rtt: Option<f64>,
    pings: [(u64, f64); 8],
    nonce: u64,
    last_ping: Option<f64>,
    newest_tick: u64,
    gap: Option<f64>,
}

impl TimeSync {
    /// A clock for a server running at `tick_hz` (the welcome's).
    pub fn new(tick_hz: u16) -> Self {
        Self {
            hz: f64::from(tick_hz.max(1)),
            samples: [(0.0, 0.0); OFFSET_WINDOW],
            filled: 0,
            next: 0,
            rate: f64::from(tick_hz.max(1)),
            best: None,
            jitter: 0.0,
            rtt: None,
            pings: [(0, 0.0); 8],
            nonce: 0,
            last_ping: None,
            newest_tick: 0,
            gap: None,
        }
    }

    /// The server's tick rate.
    pub fn tick_hz(&self) -> f64 {
        self.hz
    }

    /// A snapshot of `tick` arrived at `now` (call for snapshots newer than any before).
    pub fn on_snapshot(&mut self, tick: u64, now: f64) {
        if tick <= self.newest_tick {
            return;
        }
        if self.newest_tick != 0 {
            let g = (tick - self.newest_tick) as f64;
            self.gap = Some(self.gap.map_or(g, |a| a + (g - a) / 8.0));
        }
        self.newest_tick = tick;
        self.samples[self.next] = (now, tick as f64);
        self.next = (self.next + 1) % OFFSET_WINDOW;
        self.filled = (self.filled + 1).min(OFFSET_WINDOW);
        self.fit(now);
    }

    /// Rate, best offset and jitter from the samples (`now`: the newest sample's time).
    fn fit(&mut self, now: f64) {
        let samples = &self.samples[..self.filled];
        // The ring's oldest sample: the next slot to write once it is full, else the first.
        let oldest = samples
            .get(if self.filled == OFFSET_WINDOW {
                self.next
            } else {
                0
            })
            .map_or(now, |s| s.0);
        self.rate = if now - oldest >= MIN_RATE_SPAN {
            // Least squares, centred on the newest sample (the numbers stay small).
            let n = samples.len() as f64;
            let (mx, my) = samples.iter().fold((0.0, 0.0), |(x, y), s| {
                (x + (s.0 - now) / n, y + (s.1 - self.newest_tick as f64) / n)
            });
            let (mut sxy, mut sxx) = (0.0, 0.0);
            for s in samples {
                let dx = s.0 - now - mx;
                sxy += dx * (s.1 - self.newest_tick as f64 - my);
                sxx += dx * dx;
            }
            let fitted = if sxx > 0.0 { sxy / sxx } else { self.hz };
            if (fitted - self.hz).abs() <= RATE_TOLERANCE * self.hz {
                self.hz
            } else {
                fitted.clamp(self.hz / 20.0, self.hz)
            }
        } else {
            self.hz
        };
        // Offsets relative to the newest sample's time, in ticks.
        let offset = |s: &(f64, f64)| s.1 - self.rate * (s.0 - now);
        let best = samples.iter().map(offset).fold(f64::MIN, f64::max);
        self.jitter = samples.iter().map(|s| best - offset(s)).sum::<f64>() / samples.len() as f64;
        // Stored against time 0 of the caller's clock.
        self.best = Some(best - self.rate * now);
    }

    /// A nonce to ping with now, when one is due (pass it to
    /// [`crate::client::ClientSession::ping`]).
    pub fn ping_due(&mut self, now: f64) -> Option<u64> {
        if self.last_ping.is_some_and(|t| now - t < PING_INTERVAL) {
            return None;
        }
        self.last_ping = Some(now);
        self.nonce = self.nonce.wrapping_add(1);
        self.pings[(self.nonce % 8) as usize] = (self.nonce, now);
        Some(self.nonce)
    }

    /// The pong of `nonce` arrived at `now` (unknown or stale nonces are ignored).
    pub fn on_pong(&mut self, nonce: u64, now: f64) {
        let (sent_nonce, sent) = self.pings[(nonce % 8) as usize];
        if sent_nonce != nonce || nonce == 0 || now < sent {
            return;
        }
        let sample = now - sent;
        self.rtt = Some(self.rtt.map_or(sample, |r| r + (sample - r) / 8.0));
        self.pings[(nonce % 8) as usize] = (0, 0.0);
    }

    /// The round trip, seconds (none before the first pong).
    pub fn rtt(&self) -> Option<f64> {
        self.rtt
    }

    /// The server's clock rate as this client sees it, ticks per second of the caller's clock:
    /// `tick_hz` while the server keeps its schedule, less while it skips ticks.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The server's current tick at `now`, fractional (none before the first snapshot).
    pub fn server_tick(&self, now: f64) -> Option<f64> {
        Some(self.received_tick(now)? + self.rtt.unwrap_or(0.0) / 2.0 * self.hz)
    }

    /// The tick of a snapshot that would arrive at `now` by the quickest path: the newest the
    /// client can expect to hold (the interpolation delay counts back from it).
    pub fn received_tick(&self, now: f64) -> Option<f64> {
        Some(self.rate * now + self.best?)
    }

    /// How late packets come after the best one, on average, in ticks.
    pub fn jitter_ticks(&self) -> f64 {
        self.jitter
    }

    /// Ticks between consecutive snapshots, on average (1 before two have come).
    pub fn snapshot_gap_ticks(&self) -> f64 {
        self.gap.unwrap_or(1.0)
    }

    /// The earliest tick an input sent at `now` can still arrive in time for (none before the
    /// first snapshot and the first pong). After a stall, make inputs from here, not from the
    /// last tick predicted: older ones would arrive late.
    pub fn earliest_input_tick(&self, now: f64) -> Option<u64> {
        let rtt = self.rtt?;
        let arrival = self.server_tick(now)? + rtt / 2.0 * self.hz;
        Some(arrival.floor().max(0.0) as u64 + 1)
    }

    /// The tick to stamp an input made at `now` with, so that it arrives before the server
    /// simulates that tick (none before the first snapshot and the first pong: send no inputs
    /// until the clock knows both).
    pub fn input_tick(&self, now: f64) -> Option<u64> {
        let rtt = self.rtt?;
        let server = self.server_tick(now)?;
        let arrival = server + rtt / 2.0 * self.hz;
        let margin = (2.0 * self.jitter_ticks()).min(MAX_JITTER_MARGIN_TICKS) + INPUT_MARGIN_TICKS;
        let stamp = (arrival + margin).floor() + 1.0;
        Some(stamp.min((server + MAX_INPUT_LEAD_TICKS).floor()).max(0.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_server_tick_round_trip_and_jitter() {
        // The server's clock is ahead of ours by 500 s; packets take 40 ms plus 0-20 ms each
        // way; the server runs at 60 Hz.
        let hz = 60.0;
        let mut sync = TimeSync::new(60);
        assert_eq!(
            sync.input_tick(0.0),
            None,
            "no inputs before the first snapshot"
        );
        sync.on_snapshot(1, -499.9);
        assert_eq!(sync.input_tick(0.0), None, "nor before the first pong");
        let owd = |i: u64| 0.040 + ((i * 7919) % 21) as f64 / 1_000.0;
        for tick in 1..=600u64 {
            let server_time = tick as f64 / hz;
            let arrival = server_time - 500.0 + owd(tick);
            sync.on_snapshot(tick, arrival);
            if let Some(n) = sync.ping_due(arrival) {
                sync.on_pong(n, arrival + owd(tick) + owd(tick + 1));
            }
        }
        let now = 600.0 / hz - 500.0 + 0.1;
        let truth = (now + 500.0) * hz;
        let est = sync.server_tick(now).unwrap();
        assert!((est - truth).abs() < 1.0, "tick {est} vs {truth}");
        let rtt = sync.rtt().unwrap();
        assert!((0.08..0.12).contains(&rtt), "rtt {rtt}");
        let jitter = sync.jitter_ticks();
        assert!((0.1..1.2).contains(&jitter), "jitter {jitter} ticks");
        // An input sent now must arrive before its tick: arrival is ~3 ticks away.
        let due = sync.input_tick(now).unwrap() as f64;
        assert!(
            due > truth + 0.05 * hz,
            "input tick {due} vs server {truth}"
        );
        assert!(due < truth + 0.05 * hz + 6.0, "not needlessly early: {due}");
        assert!((sync.snapshot_gap_ticks() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn follows_a_server_that_skips_ticks() {
        // An overloaded server: 36 ticks per second instead of 60 (it skips the rest), packets
        // 40 ms plus 0-20 ms each way. The nominal rate would put the estimate 24 ticks further
        // ahead every second; the fitted one keeps it within a tick.
        let rate = 36.0;
        let mut sync = TimeSync::new(60);
        let owd = |i: u64| 0.040 + ((i * 7919) % 21) as f64 / 1_000.0;
        let mut now = 0.0;
        for tick in 1..=400u64 {
            let server_time = tick as f64 / rate;
            now = server_time + owd(tick);
            sync.on_snapshot(tick, now);
            if let Some(n) = sync.ping_due(now) {
                sync.on_pong(n, now + owd(tick) + owd(tick + 1));
            }
        }
        assert!((sync.rate() - rate).abs() < 0.5, "rate {}", sync.rate());
        for later in [0.0, 0.1, 0.5] {
            let at = now + later;
            let truth = at * rate;
            let est = sync.server_tick(at).unwrap();
            assert!(
                (est - truth).abs() < 1.5,
                "{later} s on: tick {est} vs {truth}"
            );
        }
        let truth = now * rate;
        let due = sync.input_tick(now).unwrap() as f64;
        let arrives = truth + 0.06 * rate;
        assert!(due > arrives, "input tick {due} arrives at {arrives}");
        assert!(
            due < arrives + 10.0,
            "not needlessly early: {due} vs {arrives}"
        );
        let jitter = sync.jitter_ticks();
        assert!((0.1..1.0).contains(&jitter), "jitter {jitter} ticks");
    }

    #[test]
    fn a_server_on_schedule_keeps_the_nominal_rate() {
        let mut sync = TimeSync::new(60);
        let owd = |i: u64| 0.030 + ((i * 104_729) % 31) as f64 / 1_000.0;
        for tick in 1..=300u64 {
            sync.on_snapshot(tick, tick as f64 / 60.0 + owd(tick));
        }
        assert_eq!(sync.rate(), 60.0, "the fit's noise is not drift");
    }

    #[test]
    fn stale_and_unknown_pongs_are_ignored() {
        let mut sync = TimeSync::new(60);
        sync.on_pong(42, 1.0);
        assert_eq!(sync.rtt(), None);
        let n = sync.ping_due(1.0).unwrap();
        assert_eq!(sync.ping_due(1.1), None, "not due yet");
        sync.on_pong(n, 1.05);
        sync.on_pong(n, 9.0);
        assert!(
            (sync.rtt().unwrap() - 0.05).abs() < 1e-9,
            "a second pong of one ping"
        );
    }
}

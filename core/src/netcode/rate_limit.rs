//! Per-address rate limit for connection requests.
//!
//! Owns a bounded table of fixed windows keyed by source address. It is consulted before the
//! server spends an XChaCha20-Poly1305 decryption on a connection request. The table never
//! holds more than `capacity` entries: when full, one entry is evicted, which can only make
//! the limiter more lenient for that address, never lock anyone out. It must never allocate
//! without bound and never read a clock (time is passed in).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Duration,
    count: u32,
}

#[derive(Debug)]
pub(crate) struct RateLimiter {
    table: BTreeMap<SocketAddr, Window>,
    capacity: usize,
    max_per_window: u32,
    window: Duration,
    last_purge: Duration,
}

impl RateLimiter {
    pub(crate) fn new(capacity: usize, max_per_window: u32, window: Duration) -> Self {
        Self {
            table: BTreeMap::new(),
            capacity,
            max_per_window,
            window,
            last_purge: Duration::ZERO,
        }
    }

    /// Counts one request from `addr` at `now`; false if over the limit.
    pub(crate) fn allow(&mut self, now: Duration, addr: SocketAddr) -> bool {
        if let Some(w) = self.table.get_mut(&addr) {
            if now.saturating_sub(w.start) >= self.window {
                *w = Window {
                    start: now,
                    count: 1,
                };
                return true;
            }
            if w.count >= self.max_per_window {
                return false;
            }
            w.count = w.count.saturating_add(1);
            return true;
        }
        if self.table.len() >= self.capacity {
            self.purge(now);
        }
        if self.table.len() >= self.capacity {
            self.table.pop_first();
        }
        self.table.insert(
            addr,
            Window {
                start: now,
                count: 1,
            },
        );
        true
    }

    /// Forgets windows that have ended.
    pub(crate) fn purge(&mut self, now: Duration) {
        let window = self.window;
        self.table
            .retain(|_, w| now.saturating_sub(w.start) < window);
        self.last_purge = now;
    }

    /// Purges at most once per window.
    pub(crate) fn maybe_purge(&mut self, now: Duration) {
        if now.saturating_sub(self.last_purge) >= self.window {
            self.purge(now);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}

//! Connection-request limits, consulted before the server spends an XChaCha20-Poly1305
//! decryption on a request: a per-source window ([`RateLimiter`]) and a global per-second
//! budget ([`DecryptBudget`]).
//!
//! Sources are keyed by IP, not by IP and port, so fresh source ports do not buy fresh
//! windows: an IPv4 address, an IPv6 /64 (one site's prefix). Loopback peers are keyed by
//! port as well: they are local processes (bots, tests), not remote hosts.
//!
//! The window table never holds more than `capacity` entries. When it is full, the entry
//! inserted longest ago is evicted in O(1) (a FIFO of keys beside the map), which can only
//! make the limiter more lenient for that source, never lock anyone out; expired windows are
//! purged at most once per window. It never allocates without bound and never reads a clock
//! (time is passed in).

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// What a request is counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    /// An IPv4 address, or an IPv6 /64 (upper 64 bits).
    Ip(u128),
    /// A loopback peer: address and port.
    Local(SocketAddr),
}

impl Source {
    fn of(addr: SocketAddr) -> Self {
        let ip = addr.ip().to_canonical();
        if ip.is_loopback() {
            return Source::Local(addr);
        }
        match ip {
            IpAddr::V4(v4) => Source::Ip(u128::from(u32::from(v4))),
            // The /64 prefix, with the low bit set so it never equals an IPv4 key (< 2^32).
            IpAddr::V6(v6) => Source::Ip((u128::from(v6) >> 64) << 64 | 1),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Duration,
    count: u32,
}

#[derive(Debug)]
pub(crate) struct RateLimiter {
    table: BTreeMap<Source, Window>,
    /// Keys in insertion order (a key may appear again after being purged and re-inserted;
    /// a stale one is skipped or evicts a little early).
    order: VecDeque<Source>,
    capacity: usize,
    max_per_window: u32,
    window: Duration,
    last_purge: Duration,
}

impl RateLimiter {
    pub(crate) fn new(capacity: usize, max_per_window: u32, window: Duration) -> Self {
        Self {
            table: BTreeMap::new(),
            order: VecDeque::with_capacity(capacity),
            capacity,
            max_per_window,
            window,
            last_purge: Duration::ZERO,
        }
    }

    /// Counts one request from `addr` at `now`; false if over the limit.
    pub(crate) fn allow(&mut self, now: Duration, addr: SocketAddr) -> bool {
        let key = Source::of(addr);
        if let Some(w) = self.table.get_mut(&key) {
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
        self.maybe_purge(now);
        while self.table.len() >= self.capacity.max(1) {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.table.remove(&oldest);
                }
                None => break,
            }
        }
        self.table.insert(
            key,
            Window {
                start: now,
                count: 1,
            },
        );
        self.order.push_back(key);
        true
    }

    /// Forgets windows that have ended (a scan: call it at most once per window).
    pub(crate) fn purge(&mut self, now: Duration) {
        let window = self.window;
        self.table
            .retain(|_, w| now.saturating_sub(w.start) < window);
        let table = &self.table;
        self.order.retain(|k| table.contains_key(k));
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

/// A global budget of connection-request decryptions per second, whatever their sources: a
/// flood from many (possibly forged) addresses costs at most this much CPU.
#[derive(Debug)]
pub(crate) struct DecryptBudget {
    per_second: u32,
    second: Duration,
    used: u32,
}

impl DecryptBudget {
    pub(crate) fn new(per_second: u32) -> Self {
        Self {
            per_second,
            second: Duration::ZERO,
            used: 0,
        }
    }

    /// Takes one decryption at `now`; false when this second's budget is spent.
    pub(crate) fn take(&mut self, now: Duration) -> bool {
        let second = Duration::from_secs(now.as_secs());
        if second != self.second {
            (self.second, self.used) = (second, 0);
        }
        if self.used >= self.per_second {
            return false;
        }
        self.used += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ip: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((ip, port))
    }

    #[test]
    fn fresh_source_ports_share_their_ips_window() {
        let mut r = RateLimiter::new(16, 3, Duration::from_secs(1));
        let now = Duration::from_secs(5);
        let allowed = (0..10u16)
            .filter(|p| r.allow(now, at([203, 0, 113, 7], 1_000 + p)))
            .count();
        assert_eq!(allowed, 3);
        assert!(r.allow(now, at([203, 0, 113, 8], 1_000)), "another IP");
        let v6 = |last: u16, port| {
            SocketAddr::from((
                std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last),
                port,
            ))
        };
        let allowed = (0..10u16).filter(|p| r.allow(now, v6(*p, *p))).count();
        assert_eq!(allowed, 3, "an IPv6 /64 is one source");
        // Local processes are told apart by port.
        assert!((0..10u16).all(|p| r.allow(now, at([127, 0, 0, 1], 2_000 + p))));
    }

    #[test]
    fn a_full_table_evicts_the_oldest_without_scanning_and_stays_bounded() {
        let mut r = RateLimiter::new(8, 1, Duration::from_secs(60));
        let now = Duration::from_secs(1);
        for i in 0..1_000u32 {
            assert!(r.allow(now, at([10, 1, (i >> 8) as u8, i as u8], 9)));
            assert!(r.len() <= 8);
            assert!(r.order.len() <= 16);
        }
        // The newest sources are still limited; the oldest was forgotten.
        assert!(!r.allow(now, at([10, 1, 3, 231], 9)));
        assert!(r.allow(now, at([10, 1, 0, 0], 9)));
    }

    #[test]
    fn the_decrypt_budget_refills_each_second() {
        let mut b = DecryptBudget::new(2);
        let t = Duration::from_millis(10_100);
        assert!(b.take(t) && b.take(t));
        assert!(!b.take(t + Duration::from_millis(500)));
        assert!(b.take(t + Duration::from_millis(900)));
    }
}

//! A junk-datagram generator for load and abuse testing (`zone-server flood`): random,
//! truncated, oversized and request-shaped datagrams at a fixed rate from one socket.
//! Only ever aim it at your own server.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{Instant, MissedTickBehavior};
use zone_core::rng::{self, Purpose};

/// Writes the `n`-th junk datagram into `buf` (at least 1,500 bytes) and returns its length:
/// short random bytes, a request-sized datagram, mid-sized and oversized ones; every third
/// starts with a connection-request prefix (0), so the server parses it as one.
pub fn junk(n: u64, buf: &mut [u8]) -> usize {
    let mut d = rng::stream(0xF100D, n, 0, Purpose::Script);
    let len = match n % 4 {
        0 => 1 + d.below(40) as usize,
        1 => 1_078,
        2 => 200 + d.below(1_000) as usize,
        _ => 1_500,
    }
    .min(buf.len());
    for b in buf.iter_mut().take(len) {
        *b = d.below(256) as u8;
    }
    if n.is_multiple_of(3)
        && let Some(first) = buf.first_mut()
    {
        *first = 0;
    }
    len
}

/// Sends about `rate` datagrams per second to `target` for `seconds`; returns how many were sent.
pub async fn flood(target: SocketAddr, rate: u32, seconds: u64) -> std::io::Result<u64> {
    let bind = if target.is_ipv4() {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
    };
    let socket = UdpSocket::bind(bind).await?;
    // Send in 1 ms batches.
    let per_batch = (rate / 1_000).max(1);
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut sent = 0u64;
    let mut buf = vec![0u8; 1_500];
    while Instant::now() < end {
        ticker.tick().await;
        for _ in 0..per_batch {
            let len = junk(sent, &mut buf);
            if socket.send_to(&buf[..len], target).await.is_ok() {
                sent += 1;
            }
        }
    }
    Ok(sent)
}

//! The tick loop: a fixed-rate schedule that runs [`ZoneHost::tick`], reads datagrams between
//! ticks and sends what the host queues. It never awaits anything but the socket and the timer.
//!
//! Overruns: when a tick ends past the next deadline, the missed ticks run back to back (up to
//! `max_catch_up` of them); if the loop is still behind after that, the remaining ticks are
//! skipped and counted, and the schedule restarts from now. The tick deadline always wins over
//! datagrams (`biased` select), and at most `MAX_BATCHES_PER_WAKE` receive batches are read
//! per wake-up, so a flood of junk cannot starve the ticks. Before each tick the loop reads
//! what has already arrived (the same bound), so an input that came while the last tick ran
//! is not late for this one. Receives and the tick's snapshot
//! sends go through the socket's batch calls (recvmmsg, sendmmsg: [`crate::socket`]); the
//! sealed batches of the lanes are handed to the kernel from the lanes' threads at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::effects::EffectLink;
use crate::host::ZoneHost;
use crate::host::lanes::{Datagrams, Lane, MAX_LANES};
use crate::metrics::{Direction, HostExport, Metrics};
use crate::socket::{BatchSent, DatagramSocket, DatagramSource, RecvBatch};
use crate::tokens::{unix_ms, unix_now};
use crate::view::{Sampler, ZoneView};
use smallvec::SmallVec;
use zone_core::netcode::Transmit;

/// Receive batches read per wake-up before the loop looks at the clock again (each up to the
/// socket's batch, 32 datagrams for the production socket).
const MAX_BATCHES_PER_WAKE: usize = 16;

/// Liveness and readiness, shared with the admin endpoint.
#[derive(Debug, Default)]
pub struct Status {
    /// Accepting players and ticking.
    pub ready: AtomicBool,
    /// This process holds the zone's lease (it simulates the zone, or is about to). False
    /// while it waits to claim the lease again after losing it.
    pub held: AtomicBool,
    /// The zone's hot-store writes fail (a Redis outage): not ready for new players.
    pub hot_store_down: AtomicBool,
    /// Ticks run so far.
    pub ticks: AtomicU64,
    /// Longest time between the starts of two consecutive ticks, microseconds (a stall shows
    /// here; simulations assert on it).
    pub max_tick_gap_us: AtomicU64,
    /// The zone as the world page shows it (sampled by the loop while someone looks).
    pub view: ZoneView,
}

/// How the loop runs.
#[derive(Clone, Copy, Debug)]
pub struct LoopConfig {
    /// Ticks per second.
    pub tick_hz: u32,
    /// Most ticks run back to back to catch up.
    pub max_catch_up: u32,
    /// Stop after this many ticks (tests, benchmarks); `None` runs until shutdown.
    pub max_ticks: Option<u64>,
}

/// Tick durations in 50 µs buckets up to 100 ms (the last bucket holds everything slower).
#[derive(Clone, Debug)]
pub struct TickHistogram {
    buckets: Vec<u64>,
}

impl Default for TickHistogram {
    fn default() -> Self {
        Self {
            buckets: vec![0; 2_001],
        }
    }
}

impl TickHistogram {
    const STEP_US: u64 = 50;

    /// Records one tick.
    pub fn record(&mut self, took: Duration) {
        let i =
            (took.as_micros() as u64 / Self::STEP_US).min(self.buckets.len() as u64 - 1) as usize;
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
        }
    }

    /// The `q` quantile (0..=1) in milliseconds, as the upper edge of its bucket.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let total: u64 = self.buckets.iter().sum();
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want {
                return ((i as u64 + 1) * Self::STEP_US) as f64 / 1000.0;
            }
        }
        0.0
    }
}

/// What a finished loop reports.
#[derive(Clone, Debug, Default)]
pub struct LoopSummary {
    /// Tick durations.
    pub tick_times: TickHistogram,
    /// Ticks run.
    pub ticks: u64,
    /// Ticks that overran their period.
    pub overruns: u64,
    /// Ticks skipped.
    pub skipped: u64,
    /// Players saved at shutdown.
    pub saved_at_shutdown: usize,
}

/// Runs `host` on `socket` until `shutdown` is cancelled (or `max_ticks`), then shuts down
/// gracefully: stops accepting, disconnects every client, saves every player and hands the
/// saves to the spool. Persistence goes through `persist` without ever waiting on a store.
pub async fn run_loop<S: DatagramSocket>(
    host: &mut ZoneHost,
    socket: &S,
    persist: &mut EffectLink,
    config: LoopConfig,
    metrics: &Metrics,
    status: &Status,
    shutdown: CancellationToken,
) -> LoopSummary {
    let epoch = Instant::now();
    let period = Duration::from_secs_f64(1.0 / f64::from(config.tick_hz.max(1)));
    let mut next = epoch + period;
    let mut summary = LoopSummary::default();
    let mut rx = socket.recv_batch_buffers();
    let mut last_tick: Option<Instant> = None;
    let mut export = HostExport::default();
    let mut sampler = Sampler::new(config.tick_hz);
    status.ready.store(true, Ordering::Release);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = sleep_until(next) => {
                let mut ran = 0;
                while Instant::now() >= next && ran <= config.max_catch_up {
                    // What arrived while the last tick ran (an input stamped for this tick,
                    // above all when ticks run back to back to catch up) is fed first.
                    drain(host, socket, &mut rx, epoch, metrics);
                    let started = Instant::now();
                    if let Some(last) = last_tick {
                        let gap = (started - last).as_micros() as u64;
                        status.max_tick_gap_us.fetch_max(gap, Ordering::Relaxed);
                    }
                    last_tick = Some(started);
                    host.tick(started - epoch, unix_ms());
                    let took = started.elapsed();
                    export.export(host, metrics);
                    metrics.tick_seconds.observe(took.as_secs_f64());
                    summary.tick_times.record(took);
                    sampler.record(took);
                    if took > period {
                        summary.overruns += 1;
                        metrics.tick_overruns.inc();
                    }
                    summary.ticks += 1;
                    ran += 1;
                    next += period;
                }
                let now = Instant::now();
                if now >= next {
                    let behind = ((now - next).as_secs_f64() / period.as_secs_f64()) as u64 + 1;
                    summary.skipped += behind;
                    metrics.ticks_skipped.inc_by(behind);
                    warn!(behind, "tick loop overloaded; skipping ticks");
                    next = now + period;
                }
                status.ticks.store(summary.ticks, Ordering::Release);
                persist.pump(host);
                // Not ready while the spool's disk budget is full or its disk refuses writes,
                // or the hot store (the ledger logins need) is down: route new players
                // elsewhere. The zone plays on either way.
                let hot_up = persist.hot_store_up();
                status.hot_store_down.store(!hot_up, Ordering::Release);
                status
                    .ready
                    .store(persist.spool_ready() && hot_up, Ordering::Release);
                flush(host, socket, metrics).await;
                // Off the tick: the datagrams are with the kernel already.
                sampler.after_tick(host, &status.view);
                if config.max_ticks.is_some_and(|m| summary.ticks >= m) {
                    break;
                }
            }
            received = socket.recv_batch(&mut rx) => {
                let started = Instant::now();
                handle(host, &mut rx, received, epoch, metrics);
                metrics.receive_seconds.inc_by(started.elapsed().as_secs_f64());
                drain(host, socket, &mut rx, epoch, metrics);
                persist.pump(host);
                flush(host, socket, metrics).await;
            }
            Some(event) = persist.next_event() => {
                event.deliver(host, Instant::now() - epoch);
                persist.pump(host);
                flush(host, socket, metrics).await;
            }
        }
    }
    status.ready.store(false, Ordering::Release);
    summary.saved_at_shutdown = host.shutdown();
    persist.final_pump(host);
    export.export(host, metrics);
    flush(host, socket, metrics).await;
    info!(
        saved = summary.saved_at_shutdown,
        ticks = summary.ticks,
        "zone loop stopped"
    );
    summary
}

/// Reads what the socket already holds, at most `MAX_BATCHES_PER_WAKE` batches (a flood
/// cannot hold the tick back), without waiting.
fn drain<S: DatagramSocket>(
    host: &mut ZoneHost,
    socket: &S,
    rx: &mut RecvBatch,
    epoch: Instant,
    metrics: &Metrics,
) {
    let started = Instant::now();
    for _ in 0..MAX_BATCHES_PER_WAKE {
        let more = socket.try_recv_batch(rx);
        if matches!(&more, Ok(()) if rx.is_empty()) {
            break;
        }
        handle(host, rx, more, epoch, metrics);
    }
    metrics
        .receive_seconds
        .inc_by(started.elapsed().as_secs_f64());
}

fn handle(
    host: &mut ZoneHost,
    rx: &mut RecvBatch,
    received: std::io::Result<()>,
    epoch: Instant,
    metrics: &Metrics,
) {
    match received {
        Ok(()) => {
            let (mut packets, mut bytes) = (0u64, 0u64);
            for i in 0..rx.len() {
                if let Some((from, datagram)) = rx.get_mut(i) {
                    packets += 1;
                    bytes += datagram.len() as u64;
                    host.handle_datagram(Instant::now() - epoch, unix_now(), from, datagram);
                }
            }
            metrics
                .packets
                .get_or_create(&Direction { direction: "in" })
                .inc_by(packets);
            metrics
                .bytes
                .get_or_create(&Direction { direction: "in" })
                .inc_by(bytes);
        }
        Err(e) => {
            // ICMP port-unreachable and friends surface here on some platforms: count, go on.
            metrics.drop_reason("socket_error");
            tracing::debug!(error = %e, "receive failed");
        }
    }
}

impl DatagramSource for Datagrams {
    fn count(&self) -> usize {
        self.len()
    }

    fn get(&self, i: usize) -> Option<Transmit<'_>> {
        Datagrams::get(self, i)
    }
}

/// Sends what the host queued, then the tick's sealed batches: each lane's batch handed to
/// the kernel in batches from the lanes' threads at once (`try_send_batch`), what the kernel
/// did not take at once sent here, one by one, awaiting the socket.
async fn flush<S: DatagramSocket>(host: &mut ZoneHost, socket: &S, metrics: &Metrics) {
    let (mut packets, mut bytes) = (0u64, 0u64);
    while let Some(t) = host.poll_transmit() {
        send_one(socket, t, metrics, &mut packets, &mut bytes).await;
    }
    let mut sent: SmallVec<[BatchSent; MAX_LANES]> = SmallVec::new();
    let lanes = hand_batches_to_kernel(host, socket, &mut sent);
    if !lanes.is_empty() {
        for (lane, out) in lanes.iter().zip(&sent) {
            packets += (out.done - out.refused) as u64;
            bytes += out.bytes as u64;
            for _ in 0..out.refused {
                metrics.drop_reason("send_error");
            }
            let datagrams = lane.datagrams();
            for i in out.done..datagrams.len() {
                if let Some(t) = datagrams.get(i) {
                    send_one(socket, t, metrics, &mut packets, &mut bytes).await;
                }
            }
        }
    }
    metrics
        .packets
        .get_or_create(&Direction { direction: "out" })
        .inc_by(packets);
    metrics
        .bytes
        .get_or_create(&Direction { direction: "out" })
        .inc_by(bytes);
}

/// Hands the tick's sealed batches to the kernel without waiting, each lane's from the lanes'
/// threads at once ([`DatagramSocket::try_send_batch`]); `sent` gets what each did. Returns
/// the lanes, whose datagrams past `sent[i].done` are still to send. Allocates nothing.
pub fn hand_batches_to_kernel<'h, S: DatagramSocket>(
    host: &'h mut ZoneHost,
    socket: &S,
    sent: &mut SmallVec<[BatchSent; MAX_LANES]>,
) -> &'h [Lane] {
    let parallel = host.parallel();
    let lanes = host.poll_batches();
    sent.clear();
    sent.extend(lanes.iter().map(|_| BatchSent::default()));
    if lanes.is_empty() {
        return lanes;
    }
    let mut jobs: SmallVec<[_; MAX_LANES]> = lanes
        .iter()
        .zip(sent.iter_mut())
        .map(|(lane, out)| move || *out = socket.try_send_batch(lane.datagrams(), 0))
        .collect();
    let mut refs: SmallVec<[&mut (dyn FnMut() + Send); MAX_LANES]> = jobs
        .iter_mut()
        .map(|j| j as &mut (dyn FnMut() + Send))
        .collect();
    parallel.run(&mut refs);
    lanes
}

async fn send_one<S: DatagramSocket>(
    socket: &S,
    t: Transmit<'_>,
    metrics: &Metrics,
    packets: &mut u64,
    bytes: &mut u64,
) {
    match socket.send_to(t.payload, t.destination).await {
        Ok(n) => {
            *packets += 1;
            *bytes += n as u64;
        }
        Err(e) => {
            metrics.drop_reason("send_error");
            tracing::debug!(error = %e, to = %t.destination, "send_to failed");
        }
    }
}

/// Shares status with the admin endpoint.
pub type SharedStatus = Arc<Status>;

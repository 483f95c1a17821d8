//! The flusher: drains durable spool records to the cold store in batches, retrying with
//! exponential backoff and jitter behind a circuit breaker, dead-lettering records the store
//! rejects as invalid, and acknowledging what the store has so the spool can delete it.
//!
//! It runs as one tokio task, apart from the tick loop: a store outage makes the spool grow,
//! never the tick slower.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::deadline::SaturatingAfter;

use base64::Engine;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::breaker::{Breaker, BreakerState, backoff};
use super::cold::{ColdStore, StoreError};
use super::record::Record;
use super::spool::{ReadBatch, Spool, SpoolReader};
use crate::metrics::Metrics;
use crate::tokens::unix_ms;

/// Flusher settings.
#[derive(Clone, Debug)]
pub struct FlusherConfig {
    /// Records per batch.
    pub batch: usize,
    /// Timeout of one store write.
    pub timeout: Duration,
    /// First retry delay.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Consecutive failures that open the breaker.
    pub breaker_threshold: u32,
    /// First breaker cool-down.
    pub breaker_cooldown: Duration,
    /// Where rejected records go.
    pub dead_letter_path: PathBuf,
    /// Seed of the retry jitter; `None` draws one from the OS (simulations fix it).
    pub jitter_seed: Option<u64>,
}

impl FlusherConfig {
    /// Defaults for a spool in `data_dir`.
    pub fn new(data_dir: &std::path::Path, batch: usize, timeout: Duration) -> Self {
        Self {
            batch,
            timeout,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(2),
            dead_letter_path: data_dir.join("dead-letter.log"),
            jitter_seed: None,
        }
    }
}

/// Appends rejected records, with the reason, to the dead-letter file (one line each:
/// `seq <tab> kind <tab> reason <tab> base64 of the encoded record`), fsynced.
#[derive(Debug)]
pub struct DeadLetters {
    path: PathBuf,
}

impl DeadLetters {
    /// Dead letters go to `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Writes one dead letter.
    pub fn write(&self, seq: u64, kind: &str, reason: &str, bytes: &[u8]) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let reason = reason.replace(['\t', '\n'], " ");
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        writeln!(f, "{seq}\t{kind}\t{reason}\t{encoded}")?;
        f.sync_data()
    }
}

/// The flusher task.
#[derive(Debug)]
pub struct Flusher {
    spool: Spool,
    store: Arc<dyn ColdStore>,
    config: FlusherConfig,
    metrics: Arc<Metrics>,
    dead: DeadLetters,
    breaker: Breaker,
    rng: u64,
    drain: Duration,
    stopping_since: Option<Instant>,
    /// The spool's write-error count already exported.
    write_errors_seen: u64,
}

fn record_time(r: &Record) -> u64 {
    match r {
        Record::Combat(c) => c.unix_ms,
        Record::PlayerSave(s) => s.unix_ms,
        Record::Profile(p) => p.created_unix_ms,
    }
}

impl Flusher {
    /// A flusher from `spool` to `store`.
    pub fn new(
        spool: Spool,
        store: Arc<dyn ColdStore>,
        config: FlusherConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        let breaker = Breaker::new(
            config.breaker_threshold,
            config.breaker_cooldown,
            Duration::from_secs(30),
        );
        let mut seed = [0u8; 8];
        match config.jitter_seed {
            Some(s) => seed = s.to_le_bytes(),
            None => {
                let _ = getrandom::fill(&mut seed);
            }
        }
        Self {
            dead: DeadLetters::new(config.dead_letter_path.clone()),
            spool,
            store,
            config,
            metrics,
            breaker,
            write_errors_seen: 0,
            rng: u64::from_le_bytes(seed) | 1,
            drain: Duration::ZERO,
            stopping_since: None,
        }
    }

    fn random(&mut self) -> u32 {
        // xorshift64: jitter only, no need for more.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 32) as u32
    }

    /// Dead-letters records that were found undecodable (at recovery or while reading).
    pub fn dead_letter_undecodable(&self, items: &[(u64, Vec<u8>, super::RecordError)]) {
        for (seq, bytes, err) in items {
            self.dead_letter(*seq, "undecodable", &err.to_string(), bytes);
        }
    }

    /// Writes one dead letter; false when the file cannot be written (the record must then
    /// not be acknowledged: it stays in the spool and is retried).
    fn dead_letter(&self, seq: u64, kind: &str, reason: &str, bytes: &[u8]) -> bool {
        match self.dead.write(seq, kind, reason, bytes) {
            Ok(()) => {
                self.metrics.dead_letters.inc();
                warn!(seq, kind, reason, "record dead-lettered");
                true
            }
            Err(e) => {
                tracing::error!(seq, kind, error = %e, "cannot write the dead-letter file; the record stays in the spool");
                false
            }
        }
    }

    /// Runs until `stop` is cancelled, then drains what it can until `drain_deadline` elapses.
    pub async fn run(mut self, stop: CancellationToken, drain_deadline: Duration) {
        self.drain = drain_deadline;
        let start = self.spool.stats().acked_seq.load(Ordering::Relaxed);
        let reader = Arc::new(Mutex::new(self.spool.reader(start)));
        let mut durable = self.spool.durable();
        loop {
            if self.deadline(&stop).is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let batch = if self.spool.is_manual() {
                // Simulations: no blocking pool (its threads would escape the simulated clock).
                match reader.lock() {
                    Ok(mut r) => r.read(self.config.batch),
                    Err(_) => Err(std::io::Error::other("spool reader poisoned")),
                }
            } else {
                read_batch(&reader, self.config.batch).await
            };
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    warn!(error = %e, "spool read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if batch.last_seq == 0 {
                self.update_gauges(None);
                if self.stopping_since.is_some() {
                    break;
                }
                tokio::select! {
                    _ = durable.changed() => {}
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                continue;
            }
            if !self.deliver(batch, &stop).await {
                break;
            }
        }
        self.update_gauges(None);
        info!(
            acked = self.spool.stats().acked_seq.load(Ordering::Relaxed),
            durable = self.spool.durable_seq(),
            "flusher stopped"
        );
    }

    /// The drain deadline, once a stop was requested.
    fn deadline(&mut self, stop: &CancellationToken) -> Option<Instant> {
        if self.stopping_since.is_none() && stop.is_cancelled() {
            self.stopping_since = Some(Instant::now());
        }
        self.stopping_since.map(|s| s + self.drain)
    }

    fn update_gauges(&mut self, oldest_ms: Option<u64>) {
        let s = self.spool.stats();
        self.metrics
            .spool_writable
            .set(i64::from(!s.failing.load(Ordering::Relaxed)));
        let errors = s.io_errors.load(Ordering::Relaxed);
        if errors > self.write_errors_seen {
            self.metrics
                .spool_write_errors
                .inc_by(errors - self.write_errors_seen);
            self.write_errors_seen = errors;
        }
        self.metrics
            .spool_records
            .set(s.records.load(Ordering::Relaxed) as i64);
        self.metrics
            .spool_bytes
            .set(s.bytes.load(Ordering::Relaxed) as i64);
        let lag = oldest_ms.map_or(0.0, |t| unix_ms().saturating_sub(t) as f64 / 1000.0);
        self.metrics.flush_lag_seconds.set(lag);
        self.metrics
            .breaker_state
            .set(self.breaker.state(Instant::now()) as i64);
    }

    /// Delivers one batch, retrying until it is in the store. Returns false when it gave up
    /// because the shutdown drain deadline passed (the records stay in the spool).
    async fn deliver(&mut self, batch: ReadBatch, stop: &CancellationToken) -> bool {
        let (last_seq, bytes) = (batch.last_seq, batch.bytes);
        let count = (batch.records.len() + batch.undecodable.len()) as u64;
        let (mut seqs, mut items): (Vec<u64>, Vec<Record>) = batch.records.into_iter().unzip();
        let mut undecodable = batch.undecodable;
        let mut attempt = 0u32;
        while !items.is_empty() || !undecodable.is_empty() {
            undecodable.retain(|(seq, bytes, err)| {
                !self.dead_letter(*seq, "undecodable", &err.to_string(), bytes)
            });
            if items.is_empty() {
                if !undecodable.is_empty() && !self.sleep(self.config.backoff_max, stop).await {
                    return false;
                }
                continue;
            }
            let oldest = items.first().map(record_time);
            self.update_gauges(oldest);
            let wait = self.breaker.wait(Instant::now());
            if !wait.is_zero() && !self.sleep(wait, stop).await {
                return false;
            }
            let result =
                match tokio::time::timeout(self.config.timeout, self.store.write(&items)).await {
                    Ok(r) => r,
                    Err(_) => Err(StoreError::Timeout(self.config.timeout.as_millis() as u64)),
                };
            match result {
                Ok(()) => {
                    self.breaker.success();
                    self.metrics.flushed_records.inc_by(items.len() as u64);
                    items.clear();
                    seqs.clear();
                }
                Err(StoreError::Rejected { index, reason })
                    if index < items.len() && {
                        let (seq, record) = (seqs.get(index), items.get(index));
                        let mut bytes = Vec::new();
                        if let Some(r) = record {
                            let _ = r.encode_into(&mut bytes);
                        }
                        let kind = record.map_or("record", Record::kind);
                        self.dead_letter(seq.copied().unwrap_or(0), kind, &reason, &bytes)
                    } =>
                {
                    seqs.remove(index);
                    items.remove(index);
                }
                Err(e) => {
                    self.metrics.flush_retries.inc();
                    let opened = self.breaker.failure(Instant::now());
                    let delay = backoff(
                        attempt,
                        self.config.backoff_base,
                        self.config.backoff_max,
                        self.random(),
                    );
                    attempt = attempt.saturating_add(1);
                    if attempt == 1 || opened && attempt.is_multiple_of(10) {
                        warn!(error = %e, store = self.store.name(), attempt, breaker = ?self.breaker.state(Instant::now()), "cold store write failed; retrying");
                    }
                    self.update_gauges(oldest);
                    if !self.sleep(delay, stop).await {
                        return false;
                    }
                }
            }
        }
        self.spool.ack(last_seq, count, bytes);
        self.update_gauges(None);
        if self.breaker.state(Instant::now()) == BreakerState::Closed && attempt > 0 {
            info!(attempts = attempt, "cold store writes recovered");
        }
        true
    }

    /// Sleeps `d`, but not past the shutdown drain deadline. False once that deadline passed:
    /// the caller gives up and leaves the records in the spool for the next start.
    async fn sleep(&mut self, d: Duration, stop: &CancellationToken) -> bool {
        let until = Instant::now().saturating_after(d);
        match self.deadline(stop) {
            None => {
                // A stop request ends the wait early; the next round applies the deadline.
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = stop.cancelled() => {}
                }
                self.deadline(stop).is_none_or(|dl| Instant::now() < dl)
            }
            Some(dl) => {
                tokio::time::sleep_until(until.min(dl)).await;
                Instant::now() < dl
            }
        }
    }
}

/// Reads a batch on the blocking pool (file reads stay off the async workers).
async fn read_batch(reader: &Arc<Mutex<SpoolReader>>, max: usize) -> std::io::Result<ReadBatch> {
    let reader = reader.clone();
    tokio::task::spawn_blocking(move || match reader.lock() {
        Ok(mut r) => r.read(max),
        Err(_) => Err(std::io::Error::other("spool reader poisoned")),
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(format!("spool read task: {e}"))))
}

//! The durable local spool: an append-only log of [`Record`]s in numbered segment files.
//!
//! - The tick loop calls [`Spool::append`]: the record is framed into a memory buffer and the
//!   call returns at once (no I/O on the tick).
//! - A writer thread group-commits: at most every `group_commit` it writes the buffer to the
//!   active segment and `fsync`s it, then publishes the highest durable sequence number.
//! - The flusher reads durable records with a [`SpoolReader`] and, once the cold store has
//!   them, calls [`Spool::ack`]; segments holding only acknowledged records are deleted.
//! - On open, every segment is scanned: torn tails are cut off, corrupt frames are skipped (the
//!   scan resynchronises on the next valid frame) and counted, and everything valid and not
//!   yet deleted is replayed (the cold store's writes are idempotent, so replaying an already
//!   flushed record is harmless).
//!
//! Frame: `version u8 | len u32 LE | crc32 u32 LE (of seq and payload) | seq u64 LE | payload`.
//! The first byte names the encoding of the payload ([`Record`] version 1 is `0x5A`, the
//! byte every spool has begun its frames with); the header layout is the same for every
//! version, so a reader finds, checks and keeps a frame of a version it cannot decode (it is
//! dead-lettered with [`RecordError::UnknownVersion`], never skipped as corrupt or lost).
//! Sequence numbers increase across segments, and across restarts while the spool holds
//! records; a spool drained to nothing starts again after the highest sequence it still
//! finds (nothing refers to an acknowledged sequence number).
//!
//! Limits and health:
//! - Disk budget: when the records not yet acknowledged by the cold store exceed `max_bytes`,
//!   combat records are refused with [`SpoolError::Full`] (the caller counts them and reports
//!   not ready). An active segment whose records are all acknowledged is retired and deleted,
//!   so flushed data never counts against the disk for long.
//! - Write failures (a full disk, I/O errors): the batch goes back in front of the buffer and
//!   is retried with backoff into a fresh segment; until a commit succeeds the spool reports
//!   itself [not writable](Spool::is_writable) and refuses combat records with
//!   [`SpoolError::Unwritable`].
//! - Memory: the buffer never grows past `max_buffer_bytes`; beyond it every record is refused
//!   with [`SpoolError::BufferFull`]. Player saves and profiles are refused only there, so
//!   they are accepted as long as the process can hold them.
//!
//! The spool also knows, process-wide, the newest save of every player that the cold store
//! has not acknowledged yet ([`Spool::newest_save`]) and the largest zone fence it has
//! spooled ([`Spool::max_fence`]): a join never loads an older state than one spooled here.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::deadline::SaturatingAfter;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use tracing::{error, info, warn};
use zone_core::{PlayerId, PlayerState, ZoneId};

use super::record::{MAX_RECORD_BYTES, RECORD_VERSION, Record, RecordError};
use super::spool_fs::{SpoolFs, StdFs};

/// Byte 0 of a frame of record version `v` is `VERSION_BASE + v`.
const VERSION_BASE: u8 = 0x59;
/// Byte 0 of the frames written now.
const MAGIC: u8 = VERSION_BASE + RECORD_VERSION;
/// Record versions a frame may name: this one and later ones (frames of a newer server are
/// found and kept, not taken for corruption).
const VERSIONS: std::ops::RangeInclusive<u8> = VERSION_BASE + 1..=VERSION_BASE + 16;

/// The record version a frame's first byte names, if it names one.
pub fn frame_version(first: u8) -> Option<u8> {
    VERSIONS.contains(&first).then(|| first - VERSION_BASE)
}
/// Bytes before the payload.
pub const FRAME_HEADER: usize = 1 + 4 + 4 + 8;
/// A segment is closed once it holds this many bytes.
const SEGMENT_BYTES: u64 = 8 << 20;
/// An active segment holding at least this many bytes, all acknowledged, is retired (the next
/// commit starts a new one) and deleted.
const RETIRE_BYTES: u64 = 64 << 10;
/// Default bound of the memory buffer.
pub const DEFAULT_MAX_BUFFER_BYTES: u64 = 64 << 20;
/// Longest wait between retries of a failed commit.
const MAX_RETRY: Duration = Duration::from_secs(1);

/// Why a record was not appended.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpoolError {
    /// The disk budget is used up; combat records are refused until the flusher catches up.
    #[error("spool is full ({bytes} bytes of {max})")]
    Full {
        /// Bytes held.
        bytes: u64,
        /// The budget.
        max: u64,
    },
    /// The disk is refusing writes (full or failing); combat records are refused until a
    /// commit succeeds again.
    #[error("spool disk is not writable")]
    Unwritable,
    /// The memory buffer is at its bound (the disk has not taken a write for a while).
    #[error("spool buffer is full ({bytes} bytes of {max})")]
    BufferFull {
        /// Bytes buffered.
        bytes: u64,
        /// The bound.
        max: u64,
    },
    /// The record could not be encoded.
    #[error("record: {0}")]
    Record(#[from] RecordError),
    /// The spool has been closed.
    #[error("spool is closed")]
    Closed,
}

/// Spool settings.
#[derive(Clone, Debug)]
pub struct SpoolConfig {
    /// Directory of the segment files.
    pub dir: PathBuf,
    /// fsync at most this often.
    pub group_commit: Duration,
    /// Disk budget (bytes not yet acknowledged by the cold store).
    pub max_bytes: u64,
    /// Bound of the memory buffer, bytes.
    pub max_buffer_bytes: u64,
}

impl SpoolConfig {
    /// A spool in `dir` with the default buffer bound.
    pub fn new(dir: PathBuf, group_commit: Duration, max_bytes: u64) -> Self {
        Self {
            dir,
            group_commit,
            max_bytes,
            max_buffer_bytes: DEFAULT_MAX_BUFFER_BYTES,
        }
    }
}

/// What [`Spool::sync`] or [`Spool::close`] could not make durable before its deadline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotDurable {
    /// Records buffered and not written.
    pub records: u64,
    /// Their sequence numbers, first and last (0, 0 when none).
    pub seqs: (u64, u64),
    /// Players whose newest save is among them.
    pub players: Vec<PlayerId>,
}

impl NotDurable {
    /// Whether everything was made durable.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
}

/// Who commits the buffer to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterMode {
    /// A writer thread, every `group_commit` (production).
    Thread,
    /// The owner calls [`Spool::commit_now`] (simulations, where threads would escape the
    /// simulated clock).
    Manual,
}

/// Counters and gauges of the spool, shared with the metrics endpoint.
#[derive(Debug, Default)]
pub struct SpoolStats {
    /// Records appended and not yet acknowledged.
    pub records: AtomicU64,
    /// Bytes of the records not yet acknowledged (buffered or on disk): the budget.
    pub bytes: AtomicU64,
    /// Bytes of the segment files on disk.
    pub disk_bytes: AtomicU64,
    /// Whether the last commit failed (the disk refuses writes).
    pub failing: AtomicBool,
    /// Highest sequence number made durable.
    pub durable_seq: AtomicU64,
    /// Highest sequence number acknowledged by the cold store.
    pub acked_seq: AtomicU64,
    /// fsyncs done (group commits).
    pub commits: AtomicU64,
    /// Records refused (budget or buffer full, disk not writable).
    pub refused: AtomicU64,
    /// Write or fsync failures (retried).
    pub io_errors: AtomicU64,
    /// Corrupt frames skipped while scanning.
    pub corrupt_frames: AtomicU64,
    /// Torn tails cut off at open.
    pub torn_tails: AtomicU64,
}

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    last_seq: u64,
    path: PathBuf,
    bytes: u64,
}

#[derive(Debug)]
struct Inner {
    buffer: Vec<u8>,
    buffered_last_seq: u64,
    next_seq: u64,
    segments: Vec<Segment>,
    closing: bool,
    acked: u64,
    /// First sequence number of the segment the writer appends to (recovered segments are
    /// never appended to, so they can all be deleted once acknowledged).
    active: Option<u64>,
    /// The newest unacknowledged save of each player: its sequence number and state.
    saves: BTreeMap<PlayerId, (u64, PlayerState)>,
    /// The largest fence spooled per zone.
    fences: BTreeMap<ZoneId, u64>,
    /// When a closing writer gives up retrying a failing disk.
    close_by: Option<Instant>,
}

impl Inner {
    /// Notes a spooled record in the save index: the highest version wins, the later of two
    /// equal versions too.
    fn note(&mut self, seq: u64, record: &Record) {
        if let Record::PlayerSave(s) = record {
            let newer = self
                .saves
                .get(&s.player)
                .is_none_or(|(_, old)| old.version <= s.state.version);
            if newer {
                self.saves.insert(s.player, (seq, s.state));
            }
            let fence = self.fences.entry(s.zone).or_default();
            *fence = (*fence).max(s.fence);
        }
    }
}

#[derive(Debug)]
struct Shared {
    fs: Arc<dyn SpoolFs>,
    mode: WriterMode,
    /// The segment being appended to and its length (writer side only).
    active_file: Mutex<Option<(PathBuf, u64)>>,
    inner: Mutex<Inner>,
    wake: Condvar,
    durable: tokio::sync::watch::Sender<u64>,
    stats: Arc<SpoolStats>,
    config: SpoolConfig,
}

/// The spool. Cheap to clone; the writer thread stops when [`Spool::close`] is called.
#[derive(Clone, Debug)]
pub struct Spool {
    shared: Arc<Shared>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// What [`Spool::open`] found on disk.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Valid records not yet deleted, in sequence order: replay them.
    pub records: Vec<(u64, Record)>,
    /// Frames whose checksum passed but whose payload does not decode: dead-letter them.
    pub undecodable: Vec<(u64, Vec<u8>, RecordError)>,
    /// Corrupt frames skipped.
    pub corrupt_frames: u64,
    /// Torn tails cut off.
    pub torn_tails: u64,
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("seg-{first_seq:020}.log"))
}

/// One frame parsed from bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A valid frame: its sequence number, record version, payload and total length.
    Valid {
        /// Sequence number.
        seq: u64,
        /// The version of the record encoding in the payload.
        version: u8,
        /// The encoded record.
        payload: &'a [u8],
        /// Frame length in bytes.
        len: usize,
    },
    /// Too few bytes for a whole frame: a torn write at the end of a file, or a damaged length
    /// (only what follows can tell; see [`scan`]).
    Incomplete,
    /// Not a valid frame at this offset.
    Corrupt,
}

/// Parses the frame at the start of `bytes`. Never panics, whatever the bytes.
pub fn parse_frame(bytes: &[u8]) -> Frame<'_> {
    let Some(header) = bytes.get(..FRAME_HEADER) else {
        return if bytes.first().is_some_and(|b| frame_version(*b).is_none()) {
            Frame::Corrupt
        } else {
            Frame::Incomplete
        };
    };
    let u32_at = |i: usize| {
        header
            .get(i..i + 4)
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
            .map(u32::from_le_bytes)
    };
    let (Some(len), Some(crc)) = (u32_at(1), u32_at(5)) else {
        return Frame::Corrupt;
    };
    let Some(version) = header.first().and_then(|b| frame_version(*b)) else {
        return Frame::Corrupt;
    };
    if len as usize > MAX_RECORD_BYTES || len == 0 {
        return Frame::Corrupt;
    }
    let total = FRAME_HEADER + len as usize;
    let Some(frame) = bytes.get(..total) else {
        return Frame::Incomplete;
    };
    let (Some(seq_bytes), Some(payload)) = (frame.get(9..17), frame.get(17..)) else {
        return Frame::Corrupt;
    };
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(seq_bytes);
    hasher.update(payload);
    if hasher.finalize() != crc {
        return Frame::Corrupt;
    }
    let seq = <[u8; 8]>::try_from(seq_bytes).map_or(0, u64::from_le_bytes);
    Frame::Valid {
        seq,
        version,
        payload,
        len: total,
    }
}

/// Appends one frame of the current record version to `out`.
pub fn write_frame(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let start = out.len();
    out.resize(start + FRAME_HEADER, 0);
    out.extend_from_slice(payload);
    if let Some(frame) = out.get_mut(start..) {
        fill_header(frame, seq);
    }
}

/// Writes the header of `frame` (header space followed by the payload): the current record
/// version, payload length, CRC32 of sequence number and payload, sequence number.
fn fill_header(frame: &mut [u8], seq: u64) {
    let (header, payload) = frame.split_at_mut(FRAME_HEADER.min(frame.len()));
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    let mut h = [0u8; FRAME_HEADER];
    h[0] = MAGIC;
    h[1..5].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[5..9].copy_from_slice(&hasher.finalize().to_le_bytes());
    h[9..17].copy_from_slice(&seq.to_le_bytes());
    if header.len() == FRAME_HEADER {
        header.copy_from_slice(&h);
    }
}

/// A valid frame found by [`scan`]: its offset, sequence number and payload.
pub type ScannedFrame<'a> = (usize, u64, &'a [u8]);

/// Scans a segment's bytes: valid frames in order (with the offset each starts at), how many
/// corrupt stretches were skipped, and where the valid data ends (a torn tail starts there).
/// A valid frame anywhere after a damaged one is found: only damaged frames are lost.
pub fn scan(bytes: &[u8]) -> (Vec<ScannedFrame<'_>>, u64, usize) {
    let mut frames = Vec::new();
    let mut corrupt = 0;
    let mut at = 0;
    let mut valid_end = 0;
    let mut in_corrupt = false;
    let mut last_seq = 0u64;
    while at < bytes.len() {
        let rest = bytes.get(at..).unwrap_or_default();
        match parse_frame(rest) {
            Frame::Valid {
                seq, payload, len, ..
            } if seq > last_seq || frames.is_empty() => {
                frames.push((at, seq, payload));
                last_seq = seq;
                at += len;
                valid_end = at;
                in_corrupt = false;
            }
            // Incomplete is not necessarily a torn tail: a damaged length in the middle of a
            // segment can point past its end. Skip it like corruption; if no valid frame
            // follows, the stretch is the torn tail after all (and is cut, not counted).
            _ => {
                if !in_corrupt {
                    corrupt += 1;
                    in_corrupt = true;
                }
                at += 1;
            }
        }
    }
    if in_corrupt {
        // Garbage after the last valid frame is a torn tail, not a skipped middle.
        corrupt -= 1;
    }
    (frames, corrupt, valid_end)
}

impl Spool {
    /// Opens (or creates) the spool in `config.dir`, recovers what is there and starts the
    /// writer thread.
    pub fn open(config: SpoolConfig, stats: Arc<SpoolStats>) -> std::io::Result<(Self, Recovery)> {
        Self::open_on(Arc::new(StdFs), WriterMode::Thread, config, stats)
    }

    /// Opens the spool on any [`SpoolFs`], with the given writer mode.
    pub fn open_on(
        fs: Arc<dyn SpoolFs>,
        mode: WriterMode,
        config: SpoolConfig,
        stats: Arc<SpoolStats>,
    ) -> std::io::Result<(Self, Recovery)> {
        fs.create_dir_all(&config.dir)?;
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for path in fs.list(&config.dir)? {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(first) = name
                .strip_prefix("seg-")
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                names.push((first, path));
            }
        }
        names.sort();
        let mut recovery = Recovery::default();
        let mut segments = Vec::new();
        let mut max_seq = 0u64;
        for (first, path) in names {
            let bytes = fs.read(&path)?;
            let (frames, corrupt, valid_end) = scan(&bytes);
            recovery.corrupt_frames += corrupt;
            if valid_end < bytes.len() {
                recovery.torn_tails += 1;
                warn!(path = %path.display(), cut = bytes.len() - valid_end, "spool: cutting a torn or corrupt tail");
                fs.truncate_durable(&path, valid_end as u64)?;
            }
            let mut last = first.saturating_sub(1);
            for (at, seq, payload) in frames {
                // A scanned frame starts with its version byte.
                let version = bytes.get(at).and_then(|b| frame_version(*b)).unwrap_or(0);
                if seq <= max_seq && max_seq > 0 {
                    recovery.corrupt_frames += 1;
                    continue;
                }
                max_seq = seq;
                last = seq;
                match Record::decode_version(version, payload) {
                    Ok(r) => recovery.records.push((seq, r)),
                    Err(e) => recovery.undecodable.push((seq, payload.to_vec(), e)),
                }
            }
            if last < first {
                fs.remove(&path)?;
                continue;
            }
            segments.push(Segment {
                first_seq: first,
                last_seq: last,
                path,
                bytes: valid_end as u64,
            });
        }
        fs.sync_dir(&config.dir)?;
        let on_disk: u64 = segments.iter().map(|s| s.bytes).sum();
        stats.bytes.store(on_disk, Ordering::Relaxed);
        stats.disk_bytes.store(on_disk, Ordering::Relaxed);
        stats.failing.store(false, Ordering::Relaxed);
        stats.records.store(
            (recovery.records.len() + recovery.undecodable.len()) as u64,
            Ordering::Relaxed,
        );
        stats.durable_seq.store(max_seq, Ordering::Relaxed);
        stats
            .corrupt_frames
            .fetch_add(recovery.corrupt_frames, Ordering::Relaxed);
        stats
            .torn_tails
            .fetch_add(recovery.torn_tails, Ordering::Relaxed);
        let acked = segments.first().map_or(max_seq, |s| s.first_seq - 1);
        stats.acked_seq.store(acked, Ordering::Relaxed);
        let (durable, _) = tokio::sync::watch::channel(max_seq);
        let mut index = Inner {
            buffer: Vec::with_capacity(64 << 10),
            buffered_last_seq: max_seq,
            next_seq: max_seq + 1,
            segments,
            closing: false,
            acked,
            active: None,
            saves: BTreeMap::new(),
            fences: BTreeMap::new(),
            close_by: None,
        };
        for (seq, record) in &recovery.records {
            index.note(*seq, record);
        }
        let shared = Arc::new(Shared {
            fs,
            mode,
            active_file: Mutex::new(None),
            inner: Mutex::new(index),
            wake: Condvar::new(),
            durable,
            stats,
            config,
        });
        let writer = match mode {
            WriterMode::Thread => {
                let writer_shared = shared.clone();
                Some(
                    std::thread::Builder::new()
                        .name("spool-writer".into())
                        .spawn(move || writer_loop(&writer_shared))?,
                )
            }
            WriterMode::Manual => None,
        };
        Ok((
            Self {
                shared,
                writer: Arc::new(Mutex::new(writer)),
            },
            recovery,
        ))
    }

    /// Buffers one record for the next group commit and returns its sequence number. Never
    /// blocks on I/O. Combat records are refused when the disk budget is used up.
    pub fn append(&self, record: &Record) -> Result<u64, SpoolError> {
        let Ok(mut inner) = self.shared.inner.lock() else {
            return Err(SpoolError::Closed);
        };
        if inner.closing {
            return Err(SpoolError::Closed);
        }
        let stats = &self.shared.stats;
        let config = &self.shared.config;
        let bytes = stats.bytes.load(Ordering::Relaxed);
        let combat = matches!(record, Record::Combat(_));
        let refusal = if inner.buffer.len() as u64 >= config.max_buffer_bytes {
            Some(SpoolError::BufferFull {
                bytes: inner.buffer.len() as u64,
                max: config.max_buffer_bytes,
            })
        } else if combat && stats.failing.load(Ordering::Relaxed) {
            Some(SpoolError::Unwritable)
        } else if combat && bytes >= config.max_bytes {
            Some(SpoolError::Full {
                bytes,
                max: config.max_bytes,
            })
        } else {
            None
        };
        if let Some(e) = refusal {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        // Encoded straight into the group-commit buffer behind a header filled in afterwards:
        // no per-record allocation.
        let before = inner.buffer.len();
        inner.buffer.resize(before + FRAME_HEADER, 0);
        let encoded = record.encode_into(&mut inner.buffer);
        let len = inner.buffer.len() - before - FRAME_HEADER;
        if let Err(e) = encoded {
            inner.buffer.truncate(before);
            return Err(e.into());
        }
        if len > MAX_RECORD_BYTES {
            inner.buffer.truncate(before);
            return Err(RecordError::TooLarge(len).into());
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        if let Some(frame) = inner.buffer.get_mut(before..) {
            fill_header(frame, seq);
        }
        inner.buffered_last_seq = seq;
        inner.note(seq, record);
        let added = (inner.buffer.len() - before) as u64;
        drop(inner);
        self.shared.stats.bytes.fetch_add(added, Ordering::Relaxed);
        self.shared.stats.records.fetch_add(1, Ordering::Relaxed);
        self.shared.wake.notify_one();
        Ok(seq)
    }

    /// Whether the disk budget is used up.
    pub fn is_full(&self) -> bool {
        self.shared.stats.bytes.load(Ordering::Relaxed) >= self.shared.config.max_bytes
    }

    /// Whether the last commit succeeded (false while the disk refuses writes).
    pub fn is_writable(&self) -> bool {
        !self.shared.stats.failing.load(Ordering::Relaxed)
    }

    /// The newest save of `player` spooled by any zone of this process and not yet
    /// acknowledged by the cold store.
    pub fn newest_save(&self, player: PlayerId) -> Option<PlayerState> {
        let inner = self.shared.inner.lock().ok()?;
        inner.saves.get(&player).map(|(_, s)| *s)
    }

    /// The largest fence of `zone` found in the spool (recovered or appended since).
    pub fn max_fence(&self, zone: ZoneId) -> u64 {
        self.shared
            .inner
            .lock()
            .ok()
            .and_then(|i| i.fences.get(&zone).copied())
            .unwrap_or(0)
    }

    /// Highest durable sequence number, and a way to wait for it to move.
    pub fn durable(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.durable.subscribe()
    }

    /// Highest durable sequence number now.
    pub fn durable_seq(&self) -> u64 {
        *self.shared.durable.borrow()
    }

    /// The stats.
    pub fn stats(&self) -> &Arc<SpoolStats> {
        &self.shared.stats
    }

    /// The cold store has every record up to `seq` (`records` of them, `bytes` framed bytes,
    /// as the reader counted them): forget them in the budget and the save index, delete
    /// closed segments wholly covered, and retire the active segment once it is.
    pub fn ack(&self, seq: u64, records: u64, bytes: u64) {
        let stats = &self.shared.stats;
        let sub = |counter: &AtomicU64, n: u64| {
            let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
        };
        let Ok(mut inner) = self.shared.inner.lock() else {
            return;
        };
        if seq <= inner.acked {
            return;
        }
        inner.acked = seq;
        stats.acked_seq.store(seq, Ordering::Relaxed);
        sub(&stats.records, records);
        sub(&stats.bytes, bytes);
        inner.saves.retain(|_, (at, _)| *at > seq);
        let active = inner.active;
        let mut removed = 0usize;
        let mut freed = 0u64;
        for segment in &inner.segments {
            if segment.last_seq > seq || Some(segment.first_seq) == active {
                break;
            }
            if let Err(e) = self.shared.fs.remove(&segment.path) {
                warn!(path = %segment.path.display(), error = %e, "spool: cannot delete an acknowledged segment");
                break;
            }
            removed += 1;
            freed += segment.bytes;
        }
        inner.segments.drain(..removed);
        drop(inner);
        freed += self.retire_active(seq);
        if freed > 0 {
            if let Err(e) = self.shared.fs.sync_dir(&self.shared.config.dir) {
                warn!(error = %e, "spool: cannot sync the directory after deleting segments");
            }
            sub(&stats.disk_bytes, freed);
        }
    }

    /// Deletes the active segment if it is big enough and every record in it is acknowledged
    /// (the next commit starts a new one). Skipped while the writer is committing. Returns
    /// the bytes freed.
    fn retire_active(&self, acked: u64) -> u64 {
        // Lock order as in `commit`: the writer's file, then the index.
        let Ok(mut file) = self.shared.active_file.try_lock() else {
            return 0;
        };
        let Ok(mut inner) = self.shared.inner.lock() else {
            return 0;
        };
        let Some(first) = inner.active else {
            return 0;
        };
        let Some(at) = inner.segments.iter().position(|s| s.first_seq == first) else {
            return 0;
        };
        let Some(segment) = inner.segments.get(at) else {
            return 0;
        };
        if segment.last_seq > acked
            || segment.bytes < RETIRE_BYTES
            || at + 1 != inner.segments.len()
        {
            return 0;
        }
        if let Err(e) = self.shared.fs.remove(&segment.path) {
            warn!(path = %segment.path.display(), error = %e, "spool: cannot delete an acknowledged segment");
            return 0;
        }
        let freed = segment.bytes;
        inner.segments.remove(at);
        inner.active = None;
        *file = None;
        freed
    }

    /// A reader starting after sequence `after`.
    pub fn reader(&self, after: u64) -> SpoolReader {
        SpoolReader {
            spool: self.clone(),
            after,
            file: None,
        }
    }

    /// Stops taking records, commits what is buffered (retrying a failing disk until
    /// `deadline` has passed) and stops the writer. Returns what could not be made durable.
    pub fn close_within(&self, deadline: Duration) -> NotDurable {
        if let Ok(mut inner) = self.shared.inner.lock() {
            inner.closing = true;
            inner.close_by = Some(Instant::now().saturating_after(deadline));
        }
        if self.shared.mode == WriterMode::Manual {
            self.commit_until(deadline);
            return self.not_durable();
        }
        self.shared.wake.notify_all();
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle
            && h.join().is_err()
        {
            error!("spool writer thread panicked");
        }
        self.not_durable()
    }

    /// Forces a commit of everything buffered now and waits, at most `deadline`, until it is
    /// durable (tests and shutdown; the tick loop never calls this). Returns what is still not
    /// durable.
    pub fn sync_within(&self, deadline: Duration) -> NotDurable {
        if self.shared.mode == WriterMode::Manual {
            self.commit_until(deadline);
            return self.not_durable();
        }
        let target = match self.shared.inner.lock() {
            Ok(inner) => inner.buffered_last_seq,
            Err(_) => return self.not_durable(),
        };
        self.shared.wake.notify_all();
        let mut rx = self.durable();
        let until = Instant::now().saturating_after(deadline);
        while *rx.borrow_and_update() < target && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
            if self.writer.lock().map(|w| w.is_none()).unwrap_or(true) {
                break;
            }
        }
        self.not_durable()
    }

    /// [`Self::sync_within`] 30 s (tests and tools).
    pub fn sync(&self) -> NotDurable {
        self.sync_within(Duration::from_secs(30))
    }

    /// [`Self::close_within`] 30 s (tests and tools).
    pub fn close(&self) -> NotDurable {
        self.close_within(Duration::from_secs(30))
    }

    /// What is appended but not durable now.
    pub fn not_durable(&self) -> NotDurable {
        let durable = self.durable_seq();
        let Ok(inner) = self.shared.inner.lock() else {
            return NotDurable::default();
        };
        if inner.buffered_last_seq <= durable {
            return NotDurable::default();
        }
        NotDurable {
            records: inner.buffered_last_seq - durable,
            seqs: (durable + 1, inner.buffered_last_seq),
            players: inner
                .saves
                .iter()
                .filter(|(_, (seq, _))| *seq > durable)
                .map(|(p, _)| *p)
                .collect(),
        }
    }

    /// Writer-mode `Manual`: commits what is buffered now (one write and one fsync). Returns
    /// false when the write failed (the records stay buffered for the next call, which
    /// writes them to a new segment).
    pub fn commit_now(&self) -> bool {
        let Some((batch, last_seq)) = take_batch(&self.shared) else {
            return true;
        };
        match commit_batch(&self.shared, &batch, last_seq) {
            Ok(()) => true,
            Err(e) => {
                commit_failed(&self.shared, batch, &e);
                false
            }
        }
    }

    /// Writer-mode `Manual`: commits, retrying failed commits until `deadline` has passed.
    fn commit_until(&self, deadline: Duration) {
        let until = Instant::now().saturating_after(deadline);
        while !self.commit_now() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether the writer is the owner's job ([`WriterMode::Manual`]).
    pub fn is_manual(&self) -> bool {
        self.shared.mode == WriterMode::Manual
    }
}

/// Takes the buffer for a commit, if anything is buffered.
fn take_batch(shared: &Shared) -> Option<(Vec<u8>, u64)> {
    let mut inner = shared.inner.lock().ok()?;
    if inner.buffer.is_empty() {
        return None;
    }
    let batch = std::mem::replace(&mut inner.buffer, Vec::with_capacity(64 << 10));
    Some((batch, inner.buffered_last_seq))
}

/// Writes one batch durably and publishes its last sequence number.
fn commit_batch(shared: &Shared, batch: &[u8], last_seq: u64) -> std::io::Result<()> {
    let first_seq = parse_first_seq(batch);
    commit(shared, batch, first_seq, last_seq)?;
    if shared.stats.failing.swap(false, Ordering::Relaxed) {
        info!("spool: writes recovered");
    }
    shared
        .stats
        .disk_bytes
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    shared.stats.commits.fetch_add(1, Ordering::Relaxed);
    shared.stats.durable_seq.store(last_seq, Ordering::Relaxed);
    shared.durable.send_replace(last_seq);
    Ok(())
}

/// A commit failed: count it, mark the spool not writable, put the batch back in front of
/// anything appended since, and start a new segment next time (the failed one may end in a
/// partial frame, which the scan at the next open cuts off).
fn commit_failed(shared: &Shared, batch: Vec<u8>, e: &std::io::Error) {
    let n = shared.stats.io_errors.fetch_add(1, Ordering::Relaxed);
    if !shared.stats.failing.swap(true, Ordering::Relaxed) {
        error!(error = %e, "spool: write failed; refusing combat records and retrying until the disk takes writes again");
    } else if n % 100 == 99 {
        warn!(error = %e, failures = n + 1, "spool: writes still failing");
    }
    if let Ok(mut f) = shared.active_file.lock() {
        *f = None;
    }
    if let Ok(mut inner) = shared.inner.lock() {
        let mut rest = std::mem::replace(&mut inner.buffer, batch);
        inner.buffer.append(&mut rest);
    }
}

fn writer_loop(shared: &Shared) {
    let mut last_commit = Instant::now();
    let mut retry = Duration::ZERO;
    loop {
        let (batch, last_seq, closing) = {
            let Ok(mut inner) = shared.inner.lock() else {
                return;
            };
            while inner.buffer.is_empty() && !inner.closing {
                inner = match shared.wake.wait(inner) {
                    Ok(g) => g,
                    Err(_) => return,
                };
            }
            if inner.buffer.is_empty() && inner.closing {
                return;
            }
            if inner.closing
                && !retry.is_zero()
                && inner.close_by.is_some_and(|t| Instant::now() >= t)
            {
                return; // the disk kept failing past the close deadline
            }
            // Group commit: let a few ticks' records gather before the next fsync; after a
            // failure, back off.
            let since = last_commit.elapsed();
            let wait = if retry.is_zero() {
                shared.config.group_commit
            } else {
                retry
            };
            if since < wait && !(inner.closing && retry.is_zero()) {
                drop(inner);
                std::thread::sleep((wait - since).min(Duration::from_millis(50)));
                continue;
            }
            let batch = std::mem::replace(&mut inner.buffer, Vec::with_capacity(64 << 10));
            (batch, inner.buffered_last_seq, inner.closing)
        };
        last_commit = Instant::now();
        match commit_batch(shared, &batch, last_seq) {
            Ok(()) => retry = Duration::ZERO,
            Err(e) => {
                commit_failed(shared, batch, &e);
                retry = (retry * 2).clamp(Duration::from_millis(50), MAX_RETRY);
                continue;
            }
        }
        if closing {
            let more = shared.inner.lock().map(|i| !i.buffer.is_empty());
            if !matches!(more, Ok(true)) {
                return;
            }
        }
    }
}

fn parse_first_seq(batch: &[u8]) -> u64 {
    match parse_frame(batch) {
        Frame::Valid { seq, .. } => seq,
        _ => 0,
    }
}

/// Writes one group-commit batch to the active segment (starting a new one when there is none
/// or it is full) and makes it durable.
fn commit(shared: &Shared, batch: &[u8], first_seq: u64, last_seq: u64) -> std::io::Result<()> {
    let mut active = shared
        .active_file
        .lock()
        .map_err(|_| std::io::Error::other("spool writer state poisoned"))?;
    let needs_new = match &*active {
        None => true,
        Some((_, len)) => *len >= SEGMENT_BYTES,
    };
    if needs_new {
        let path = segment_path(&shared.config.dir, first_seq);
        shared.fs.append_durable(&path, &[])?;
        shared.fs.sync_dir(&shared.config.dir)?;
        if let Ok(mut inner) = shared.inner.lock()
            && !inner.segments.iter().any(|s| s.path == path)
        {
            inner.active = Some(first_seq);
            inner.segments.push(Segment {
                first_seq,
                last_seq: first_seq.saturating_sub(1),
                path: path.clone(),
                bytes: 0,
            });
        }
        *active = Some((path, 0));
    }
    let Some((path, len)) = active.as_mut() else {
        return Err(std::io::Error::other("no segment"));
    };
    shared.fs.append_durable(path, batch)?;
    *len += batch.len() as u64;
    if let Ok(mut inner) = shared.inner.lock()
        && let Some(seg) = inner.segments.last_mut()
    {
        seg.last_seq = last_seq;
        seg.bytes = *len;
    }
    Ok(())
}

/// Bytes a [`SpoolReader`] reads at a time.
const CHUNK: usize = 64 << 10;

/// Whether the incomplete frame at `data[at..]` has a damaged length rather than being cut by
/// the chunk or still being written: the read reached the end of the file (`at_eof`) and a
/// durable frame follows it, which a write in progress never has.
fn damaged_length(data: &[u8], at: usize, at_eof: bool, durable: u64) -> bool {
    at_eof
        && scan(data.get(at + 1..).unwrap_or_default())
            .0
            .first()
            .is_some_and(|(_, seq, _)| *seq <= durable)
}

/// Reads durable records in sequence order, across segments.
#[derive(Debug)]
pub struct SpoolReader {
    spool: Spool,
    after: u64,
    file: Option<(PathBuf, u64)>,
}

/// A batch read from the spool.
#[derive(Debug, Default)]
pub struct ReadBatch {
    /// Decoded records.
    pub records: Vec<(u64, Record)>,
    /// Frames that passed the checksum but do not decode.
    pub undecodable: Vec<(u64, Vec<u8>, RecordError)>,
    /// Highest sequence number in the batch (0 when empty).
    pub last_seq: u64,
    /// Framed bytes of the batch's records (what acknowledging them frees of the budget).
    pub bytes: u64,
}

impl SpoolReader {
    /// Reads up to `max` durable records after the current position.
    pub fn read(&mut self, max: usize) -> std::io::Result<ReadBatch> {
        let durable = self.spool.durable_seq();
        let mut out = ReadBatch::default();
        while out.records.len() + out.undecodable.len() < max && self.after < durable {
            if self.file.is_none() && !self.open_next()? {
                break;
            }
            let Some((path, pos)) = self.file.as_mut() else {
                break;
            };
            let mut chunk = vec![0u8; CHUNK];
            let n = match self.spool.shared.fs.read_at(path, *pos, &mut chunk) {
                Ok(n) => n,
                // Deleted after acknowledgement (this reader had passed it): move on.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => return Err(e),
            };
            chunk.truncate(n);
            let data = chunk;
            *pos += n as u64;
            let mut at = 0;
            let mut progressed = false;
            while at < data.len() && out.records.len() + out.undecodable.len() < max {
                match parse_frame(data.get(at..).unwrap_or_default()) {
                    Frame::Valid {
                        seq,
                        version,
                        payload,
                        len,
                    } => {
                        if seq > durable {
                            break;
                        }
                        if seq > self.after {
                            match Record::decode_version(version, payload) {
                                Ok(r) => out.records.push((seq, r)),
                                Err(e) => out.undecodable.push((seq, payload.to_vec(), e)),
                            }
                            self.after = seq;
                            out.last_seq = seq;
                            out.bytes += len as u64;
                        }
                        at += len;
                        progressed = true;
                    }
                    Frame::Incomplete if !damaged_length(&data, at, n < CHUNK, durable) => {
                        break;
                    }
                    Frame::Incomplete | Frame::Corrupt => {
                        // Only durable, checksummed data is read; corruption here means the
                        // disk changed under us. Skip a byte and count it.
                        self.spool
                            .shared
                            .stats
                            .corrupt_frames
                            .fetch_add(1, Ordering::Relaxed);
                        at += 1;
                    }
                }
            }
            let rest = data.get(at..).unwrap_or_default();
            // Unconsumed bytes are re-read next time from the file position they start at.
            if let Some((_, pos)) = self.file.as_mut() {
                *pos -= rest.len() as u64;
            }
            if !progressed {
                // End of this segment (or a frame that cannot complete): move on to the next
                // segment if there is one.
                if !self.advance_segment()? {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn segment_list(&self) -> Vec<(u64, PathBuf)> {
        self.spool
            .shared
            .inner
            .lock()
            .map(|i| {
                i.segments
                    .iter()
                    .map(|s| (s.first_seq, s.path.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn open_next(&mut self) -> std::io::Result<bool> {
        let segments = self.segment_list();
        // The segment holding `after + 1`: the last one whose first_seq <= after + 1.
        let target = self.after + 1;
        let pick = segments
            .iter()
            .rev()
            .find(|(first, _)| *first <= target)
            .or_else(|| segments.first());
        let Some((_, path)) = pick else {
            return Ok(false);
        };
        self.file = Some((path.clone(), 0));
        Ok(true)
    }

    fn advance_segment(&mut self) -> std::io::Result<bool> {
        let segments = self.segment_list();
        let current = self.file.as_ref().map(|(p, _)| p.clone());
        let idx = segments
            .iter()
            .position(|(_, p)| Some(p) == current.as_ref());
        let next = match idx {
            Some(i) => segments.get(i + 1),
            None => segments.iter().find(|(first, _)| *first > self.after),
        };
        match next {
            Some((_, path)) => {
                self.file = Some((path.clone(), 0));
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

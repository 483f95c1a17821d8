//! A simulated, crash-consistent disk for the spool: what `append_durable` returned `Ok` for
//! survives a crash of the zone server's host; the spool's unsynced buffer dies with the host.
//! It also keeps every durable byte ever written, so invariants can name exactly which records
//! were durable at any crash. It can be filled up (every write fails, as `ENOSPC` does) and
//! can fail a seeded share of writes at random (I/O errors); a failed append leaves nothing.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use zone_shell::persist::spool_fs::SpoolFs;

#[derive(Debug, Default)]
struct Files {
    files: BTreeMap<PathBuf, Vec<u8>>,
    history: Vec<u8>,
    /// xorshift state of the random write errors.
    rng: u64,
}

/// The disk. Shared by every incarnation of the zone server host.
#[derive(Debug, Default)]
pub struct SimFs {
    inner: Mutex<Files>,
    full: AtomicBool,
    error_per_mille: AtomicU32,
    failed_writes: AtomicU64,
}

impl SimFs {
    /// Fills the disk up (every write fails) or frees it.
    pub fn set_full(&self, full: bool) {
        self.full.store(full, Ordering::SeqCst);
    }

    /// Fails `per_mille` of the writes at random, seeded (deterministic per seed).
    pub fn set_error_rate(&self, per_mille: u32, seed: u64) {
        self.error_per_mille.store(per_mille, Ordering::SeqCst);
        if let Ok(mut f) = self.inner.lock() {
            f.rng = seed | 1;
        }
    }

    /// Writes that failed (full or I/O error).
    pub fn failed_writes(&self) -> u64 {
        self.failed_writes.load(Ordering::SeqCst)
    }

    /// Every durable append ever made, concatenated (frames only, in commit order).
    pub fn history(&self) -> Vec<u8> {
        self.inner
            .lock()
            .map(|f| f.history.clone())
            .unwrap_or_default()
    }

    /// Bytes currently held.
    pub fn bytes(&self) -> usize {
        self.inner
            .lock()
            .map(|f| f.files.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, Files>> {
        self.inner
            .lock()
            .map_err(|_| io::Error::other("sim disk poisoned"))
    }
}

impl SpoolFs for SimFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(self
            .lock()?
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.lock()?
            .files
            .get(path)
            .cloned()
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let files = self.lock()?;
        let data = files.files.get(path).ok_or(io::ErrorKind::NotFound)?;
        let from = (offset as usize).min(data.len());
        let n = (data.len() - from).min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), data.get(from..from + n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }

    fn append_durable(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut f = self.lock()?;
        if self.full.load(Ordering::SeqCst) {
            self.failed_writes.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on the simulated disk",
            ));
        }
        let rate = self.error_per_mille.load(Ordering::SeqCst);
        if rate > 0 {
            f.rng ^= f.rng << 13;
            f.rng ^= f.rng >> 7;
            f.rng ^= f.rng << 17;
            if (f.rng % 1_000) < u64::from(rate) {
                self.failed_writes.fetch_add(1, Ordering::SeqCst);
                return Err(io::Error::other("simulated I/O error"));
            }
        }
        f.files
            .entry(path.to_path_buf())
            .or_default()
            .extend_from_slice(bytes);
        f.history.extend_from_slice(bytes);
        Ok(())
    }

    fn truncate_durable(&self, path: &Path, len: u64) -> io::Result<()> {
        if let Some(d) = self.lock()?.files.get_mut(path) {
            d.truncate(len as usize);
        }
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.lock()?.files.remove(path);
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

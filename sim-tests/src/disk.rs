//! A simulated, crash-consistent disk for the spool: what `append_durable` returned `Ok` for
//! survives a crash of the zone server's host; the spool's unsynced buffer dies with the host.
//! It also keeps every durable byte ever written, so invariants can name exactly which records
//! were durable at any crash.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use zone_shell::persist::spool_fs::SpoolFs;

#[derive(Debug, Default)]
struct Files {
    files: BTreeMap<PathBuf, Vec<u8>>,
    history: Vec<u8>,
}

/// The disk. Shared by every incarnation of the zone server host.
#[derive(Debug, Default)]
pub struct SimFs {
    inner: Mutex<Files>,
}

impl SimFs {
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

//! The spool's file seam: the few file operations the spool needs, so the same spool code runs
//! on the real filesystem ([`StdFs`]) and on a simulated, crash-consistent disk in the
//! whole-network simulations (`sim-tests`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// What the spool does with files. `append_durable` is the one durability point: when it
/// returns `Ok`, the bytes survive a crash; when it fails, none of them may remain.
pub trait SpoolFs: Send + Sync + std::fmt::Debug {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The files in a directory.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// A whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Reads into `buf` from `offset`; 0 at the end of the file.
    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Appends `bytes` (creating the file) and makes them durable (fsync).
    fn append_durable(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Cuts a file to `len` bytes, durably.
    fn truncate_durable(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Deletes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes a directory's entries (created and deleted files) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

impl SpoolFs for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect()
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut n = 0;
        while n < buf.len() {
            let got = f.read(buf.get_mut(n..).unwrap_or_default())?;
            if got == 0 {
                break;
            }
            n += got;
        }
        Ok(n)
    }

    fn append_durable(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut f = OpenOptions::new().create(true).append(true).open(path)?;
        let len = f.metadata()?.len();
        if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_data()) {
            // Undo a partial write so the file stays a clean sequence of frames. If even that
            // fails, the file ends in a partial frame: the spool writes on in a new segment and
            // the scan at the next open cuts the tail off.
            if let Err(undo) = f.set_len(len) {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{e}; undoing the partial write failed too: {undo}"),
                ));
            }
            return Err(e);
        }
        Ok(())
    }

    fn truncate_durable(&self, path: &Path, len: u64) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(len)?;
        f.sync_all()
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

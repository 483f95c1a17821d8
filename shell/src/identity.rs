//! This server's identity across restarts: a random id kept in `data_dir/server-id`, held
//! exclusively through a lock on `data_dir/server.lock` for as long as the process runs, and
//! the last lease fence it held per zone (`data_dir/leases/zone-N`). Two live processes
//! cannot share an identity (the second is refused at start), so a lease naming this
//! identity was taken by this process or an earlier, dead, run of it: a restarted server
//! takes its own leases back at once, and knows whether it was the zone's last holder
//! ([`crate::effects::lease`]).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use zone_core::ZoneId;

use crate::keys::{RandomnessError, random_bytes};

/// Why the identity could not be had.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Another process runs on this data directory.
    #[error(
        "another zone-server uses data_dir {} (its lock {} is held): give each server its own data_dir",
        .0.display(), .0.join("server.lock").display()
    )]
    InUse(PathBuf),
    /// A file of the identity could not be read or written.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `server-id` does not hold an id.
    #[error("{}: not a server id (16 hex digits); delete it to get a new identity", .0.display())]
    Corrupt(PathBuf),
    /// No randomness for a fresh id.
    #[error(transparent)]
    Randomness(#[from] RandomnessError),
}

/// The identity of this server, held while the value lives.
#[derive(Debug)]
pub struct Identity {
    id: String,
    dir: PathBuf,
    _lock: File,
}

impl Identity {
    /// Takes the identity of `data_dir` (creating it on first use). Refused while another
    /// process holds it.
    pub fn open(data_dir: &Path) -> Result<Self, IdentityError> {
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| IdentityError::Io { what, path, source }
        };
        let lock_path = data_dir.join("server.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("opening", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(IdentityError::InUse(data_dir.to_path_buf()));
            }
            Err(TryLockError::Error(e)) => return Err(io("locking", &lock_path)(e)),
        }
        let id_path = data_dir.join("server-id");
        let id = match std::fs::read_to_string(&id_path) {
            Ok(text) => {
                let id = text.trim().to_owned();
                if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(IdentityError::Corrupt(id_path));
                }
                id
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = format!("{:016x}", u64::from_le_bytes(random_bytes()?));
                write_durably(&id_path, id.as_bytes()).map_err(io("writing", &id_path))?;
                id
            }
            Err(e) => return Err(io("reading", &id_path)(e)),
        };
        Ok(Self {
            id,
            dir: data_dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// The id (what leases name as their owner).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The last fence this server held for `zone` (0 when none or unreadable).
    pub fn last_fence(&self, zone: ZoneId) -> u64 {
        std::fs::read_to_string(self.fence_path(zone))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Remembers that this server holds `zone` under `fence` (durably, before it simulates).
    pub fn remember_fence(&self, zone: ZoneId, fence: u64) -> Result<(), IdentityError> {
        let dir = self.dir.join("leases");
        crate::keys::create_private_dir(&dir).map_err(|source| IdentityError::Io {
            what: "creating",
            path: dir.clone(),
            source,
        })?;
        let path = self.fence_path(zone);
        let tmp = path.with_extension("tmp");
        write_durably(&tmp, fence.to_string().as_bytes())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| IdentityError::Io {
                what: "writing",
                path,
                source,
            })
    }

    fn fence_path(&self, zone: ZoneId) -> PathBuf {
        self.dir.join("leases").join(format!("zone-{zone}"))
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_survives_restarts_and_is_held_by_one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::open(dir.path()).unwrap();
        assert_eq!(first.id().len(), 16);
        assert!(matches!(
            Identity::open(dir.path()),
            Err(IdentityError::InUse(_))
        ));
        assert_eq!(first.last_fence(ZoneId(3)), 0);
        first.remember_fence(ZoneId(3), 41).unwrap();
        let id = first.id().to_owned();
        drop(first);
        let again = Identity::open(dir.path()).unwrap();
        assert_eq!(again.id(), id, "the same data_dir is the same server");
        assert_eq!(again.last_fence(ZoneId(3)), 41);
        drop(again);
        std::fs::write(dir.path().join("server-id"), "zz").unwrap();
        assert!(matches!(
            Identity::open(dir.path()),
            Err(IdentityError::Corrupt(_))
        ));
    }
}

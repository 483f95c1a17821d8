//! Key material and randomness for netcode: the private key from config or a development key
//! file, fresh random keys for challenge tokens and minted connect tokens. OS randomness lives
//! here in the shell, never in the core.

use std::path::Path;

use std::path::PathBuf;

use zone_core::netcode::Key;

use crate::config::{Config, format_key, parse_key};

/// The operating system could not give randomness.
#[derive(Debug, thiserror::Error)]
#[error("operating system randomness unavailable: {0}")]
pub struct RandomnessError(#[source] pub getrandom::Error);

/// `N` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomnessError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(RandomnessError)?;
    Ok(out)
}

/// Why the netcode private key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `net.private_key` is not a key.
    #[error("net.private_key {0}")]
    Config(String),
    /// The development key file holds no key.
    #[error("{}: key {problem}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Reading or writing the development key file failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The development key file does not exist (and was not to be created).
    #[error(
        "no development key at {} (start the server once to create it, or set net.private_key / ZONE_PRIVATE_KEY)",
        .0.display()
    )]
    Missing(PathBuf),
    /// No randomness for a fresh development key.
    #[error(transparent)]
    Randomness(#[from] RandomnessError),
}

/// The netcode private key: from config, else from (or freshly written to) the development key
/// file in the data directory. Returns the key and whether it is the development key.
pub fn private_key(config: &Config) -> Result<(Key, bool), KeyError> {
    key_of(config, true)
}

/// Like [`private_key`], but a missing development key file is an error instead of being
/// created: for commands (`zone-server token`) whose key must be the running server's.
pub fn existing_private_key(config: &Config) -> Result<(Key, bool), KeyError> {
    key_of(config, false)
}

fn key_of(config: &Config, create: bool) -> Result<(Key, bool), KeyError> {
    if let Some(text) = &config.net.private_key {
        let bytes = parse_key(text).map_err(KeyError::Config)?;
        return Ok((Key::from_bytes(bytes), false));
    }
    let path = config.data_dir.join("dev-private.key");
    Ok((Key::from_bytes(dev_key(&path, create)?), true))
}

fn dev_key(path: &Path, create: bool) -> Result<[u8; 32], KeyError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Io { what, path, source }
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            warn_if_loose(path);
            parse_key(&text).map_err(|p| KeyError::File {
                path: path.to_path_buf(),
                problem: p,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => {
            Err(KeyError::Missing(path.to_path_buf()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = random_bytes::<32>()?;
            if let Some(dir) = path.parent() {
                create_private_dir(dir).map_err(io("creating", dir))?;
            }
            match write_private(path, &(format_key(&key) + "\n")) {
                Ok(()) => Ok(key),
                // Another process wrote it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => dev_key(path, false),
                Err(e) => Err(io("writing", path)(e)),
            }
        }
        Err(e) => Err(io("reading", path)(e)),
    }
}

/// Creates `dir` (and its parents) readable by the owner only (`0700` on Unix; directories
/// that exist keep their mode).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Writes a new file that is the owner's alone from its first byte (`0600`, never
/// world-readable in between); an existing file is an `AlreadyExists` error.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(unix)]
fn warn_if_loose(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the development key file is readable by others; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_loose(_path: &Path) {}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn config(dir: &Path) -> Config {
        Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        }
    }

    #[test]
    fn a_new_development_key_is_the_owners_alone_in_a_private_directory() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let (key, dev) = private_key(&config(&data)).unwrap();
        assert!(dev);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data.join("dev-private.key")), 0o600);
        assert_eq!(mode(&data), 0o700);
        let (again, _) = existing_private_key(&config(&data)).unwrap();
        assert_eq!(again.as_bytes(), key.as_bytes(), "read back, not replaced");
    }

    #[test]
    fn a_missing_key_is_not_created_where_the_key_must_already_exist() {
        let root = tempfile::tempdir().unwrap();
        let err = existing_private_key(&config(root.path())).unwrap_err();
        assert!(matches!(err, KeyError::Missing(_)), "{err}");
        assert!(!root.path().join("dev-private.key").exists());
    }
}

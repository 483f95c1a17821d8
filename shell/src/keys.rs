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
    /// No randomness for a fresh development key.
    #[error(transparent)]
    Randomness(#[from] RandomnessError),
}

/// The netcode private key: from config, else from (or freshly written to) the development key
/// file in the data directory. Returns the key and whether it is the development key.
pub fn private_key(config: &Config) -> Result<(Key, bool), KeyError> {
    if let Some(text) = &config.net.private_key {
        let bytes = parse_key(text).map_err(KeyError::Config)?;
        return Ok((Key::from_bytes(bytes), false));
    }
    let path = config.data_dir.join("dev-private.key");
    Ok((Key::from_bytes(dev_key(&path)?), true))
}

fn dev_key(path: &Path) -> Result<[u8; 32], KeyError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Io { what, path, source }
    };
    match std::fs::read_to_string(path) {
        Ok(text) => parse_key(&text).map_err(|p| KeyError::File {
            path: path.to_path_buf(),
            problem: p,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = random_bytes::<32>()?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
            }
            std::fs::write(path, format_key(&key) + "\n").map_err(io("writing", path))?;
            restrict(path);
            Ok(key)
        }
        Err(e) => Err(io("reading", path)(e)),
    }
}

#[cfg(unix)]
fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict(_path: &Path) {}

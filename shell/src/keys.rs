//! Key material and randomness for netcode: the private key from config or a development key
//! file, fresh random keys for challenge tokens and minted connect tokens. OS randomness lives
//! here in the shell, never in the core.

use std::path::Path;

use anyhow::Context;
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

/// The netcode private key: from config, else from (or freshly written to) the development key
/// file in the data directory. Returns the key and whether it is the development key.
pub fn private_key(config: &Config) -> anyhow::Result<(Key, bool)> {
    if let Some(text) = &config.net.private_key {
        let bytes = parse_key(text).map_err(|p| anyhow::anyhow!("net.private_key {p}"))?;
        return Ok((Key::from_bytes(bytes), false));
    }
    let path = config.data_dir.join("dev-private.key");
    Ok((Key::from_bytes(dev_key(&path)?), true))
}

fn dev_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_key(&text).map_err(|p| anyhow::anyhow!("{}: key {p}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = random_bytes::<32>()?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(path, format_key(&key) + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            restrict(path);
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(unix)]
fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict(_path: &Path) {}

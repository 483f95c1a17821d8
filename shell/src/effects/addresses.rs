//! The neighbours' published addresses: each zone's lease holder publishes where its clients
//! connect ([`crate::persist::HotStore::set_zone_address`]); a redirect token is minted only
//! for the address the target zone published, never for one a bus message names. The book
//! is refreshed in the background and keeps the last known address through a hot-store
//! outage (handoffs pause then anyway).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing::warn;
use zone_core::ZoneId;

use crate::persist::HotStore;

/// How often the book is refreshed.
pub const REFRESH: Duration = Duration::from_secs(2);

/// The last published address of each neighbour, shared by the refresher and the loop.
#[derive(Clone, Debug, Default)]
pub struct AddressBook {
    known: Arc<Mutex<BTreeMap<ZoneId, SocketAddr>>>,
}

impl AddressBook {
    /// The address `zone` last published, if any was seen.
    pub fn get(&self, zone: ZoneId) -> Option<SocketAddr> {
        self.lock().get(&zone).copied()
    }

    /// Records what `zone` published.
    pub fn set(&self, zone: ZoneId, address: SocketAddr) {
        self.lock().insert(zone, address);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ZoneId, SocketAddr>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reads the addresses of `zones` every [`REFRESH`] into `book` until dropped. A published
/// value that is not an address is ignored (with one warning per zone and value).
pub(super) async fn refresher(
    hot: Arc<dyn HotStore>,
    zones: Vec<ZoneId>,
    timeout: Duration,
    book: AddressBook,
) {
    let mut warned: BTreeMap<ZoneId, String> = BTreeMap::new();
    loop {
        for &zone in &zones {
            let Ok(Ok(Some(published))) =
                tokio::time::timeout(timeout, hot.zone_address(zone)).await
            else {
                continue; // unknown, or the store is away: keep what we knew
            };
            match published.parse() {
                Ok(address) => book.set(zone, address),
                Err(_) if warned.get(&zone) != Some(&published) => {
                    warn!(%zone, %published, "a zone published an address that does not parse; ignored");
                    warned.insert(zone, published);
                }
                Err(_) => {}
            }
        }
        tokio::time::sleep(REFRESH).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::embedded_hot::MemoryHotStore;

    #[tokio::test]
    async fn the_book_follows_what_zones_publish_and_ignores_garbage() {
        let hot: Arc<dyn HotStore> = Arc::new(MemoryHotStore::new());
        let ttl = Duration::from_secs(600);
        hot.set_zone_address(ZoneId(2), "10.0.0.2:40000", ttl)
            .await
            .unwrap();
        hot.set_zone_address(ZoneId(3), "not an address", ttl)
            .await
            .unwrap();
        let book = AddressBook::default();
        let task = tokio::spawn(refresher(
            hot.clone(),
            vec![ZoneId(2), ZoneId(3)],
            Duration::from_secs(1),
            book.clone(),
        ));
        let seen = |want: &'static str| {
            let book = book.clone();
            async move {
                for _ in 0..300 {
                    if book.get(ZoneId(2)) == Some(want.parse().unwrap()) {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                false
            }
        };
        assert!(seen("10.0.0.2:40000").await);
        assert_eq!(book.get(ZoneId(3)), None);
        hot.set_zone_address(ZoneId(2), "10.0.0.9:40000", ttl)
            .await
            .unwrap();
        assert!(
            seen("10.0.0.9:40000").await,
            "a new address replaces the old"
        );
        assert_eq!(book.get(ZoneId(3)), None);
        task.abort();
    }
}

//! The world page's links between servers: for every zone this process holds, it publishes
//! where its world page is served (the hot store's `set_zone_admin`, renewed with the lease's
//! lifetime so that a holder that died stops being linked), and it reads the client address and
//! page that the holders of the other zones published. What it reads is a database row, not to
//! be trusted: an address that does not parse, or a page that is not a plain `http(s)://` URL,
//! is ignored (a `javascript:` link must never reach a viewer's browser).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use zone_core::ZoneId;

use super::page::Page;
use crate::persist::HotStore;

/// How often the links are published and read.
pub const REFRESH: Duration = Duration::from_secs(2);
/// Longest page URL taken.
const MAX_URL: usize = 200;

/// Whether `url` may be shown as a link: `http://` or `https://`, short, one line.
pub fn is_page_url(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() <= MAX_URL
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// A store's text as the page may show it: control characters dropped, at most
/// [`MAX_URL`] characters (the page escapes it besides).
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_URL)
        .collect()
}

/// This process's world-page URL: the configured one, else the admin bind address, or (a
/// wildcard bind) the zones' public host with the admin port.
pub fn page_url(configured: Option<&str>, admin: SocketAddr, public: SocketAddr) -> String {
    if let Some(url) = configured {
        return url.trim_end_matches('/').to_owned();
    }
    let host = if admin.ip().is_unspecified() {
        SocketAddr::new(public.ip(), admin.port())
    } else {
        admin
    };
    format!("http://{host}")
}

/// What the holder of another zone published.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// Who holds its lease (`None`: nobody; released or expired), and the lease's fence.
    pub holder: Option<(String, u64)>,
    /// Where its clients connect.
    pub address: Option<SocketAddr>,
    /// Where its world page is.
    pub page: Option<String>,
}

/// The other zones' publications, as last read.
#[derive(Clone, Debug, Default)]
pub struct Neighbours {
    known: Arc<Mutex<BTreeMap<ZoneId, Published>>>,
}

impl Neighbours {
    /// What `zone`'s holder published, as last read.
    pub fn get(&self, zone: ZoneId) -> Published {
        self.lock().get(&zone).cloned().unwrap_or_default()
    }

    fn set(&self, zone: ZoneId, published: Published) {
        self.lock().insert(zone, published);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ZoneId, Published>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Publishes `url` for every zone of `page` this process holds, and reads the other zones'
/// publications into `page.neighbours`, every [`REFRESH`], until dropped. A store call that
/// fails or takes longer than `timeout` is skipped (what was read before is kept).
pub async fn follow(
    hot: Arc<dyn HotStore>,
    page: Arc<Page>,
    url: String,
    ttl: Duration,
    timeout: Duration,
) {
    let elsewhere: Vec<ZoneId> = page
        .grid
        .zones()
        .filter(|z| page.zones.iter().all(|p| p.zone != *z))
        .collect();
    loop {
        for z in &page.zones {
            if z.status.held.load(Ordering::Acquire) {
                let _ = tokio::time::timeout(timeout, hot.set_zone_admin(z.zone, &url, ttl)).await;
            }
        }
        for &zone in &elsewhere {
            let holder = tokio::time::timeout(timeout, hot.lease_holder(zone)).await;
            let address = tokio::time::timeout(timeout, hot.zone_address(zone)).await;
            let admin = tokio::time::timeout(timeout, hot.zone_admin(zone)).await;
            let (Ok(Ok(holder)), Ok(Ok(address)), Ok(Ok(admin))) = (holder, address, admin) else {
                continue; // the store is away: keep what we knew
            };
            page.neighbours.set(
                zone,
                Published {
                    holder: holder
                        .filter(|h| !h.released)
                        .map(|h| (printable(&h.lease.owner), h.lease.fence)),
                    address: address.and_then(|a| a.parse().ok()),
                    page: admin.filter(|u| is_page_url(u)),
                },
            );
        }
        tokio::time::sleep(REFRESH).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_web_urls_are_links() {
        assert!(is_page_url("http://10.0.0.2:9100"));
        assert!(is_page_url("https://zone-2.example/"));
        for bad in [
            "javascript:alert(1)",
            "http://a b",
            "http://a\n",
            "ftp://x",
            "",
            &format!("http://{}", "a".repeat(300)),
        ] {
            assert!(!is_page_url(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_page_url_is_configured_or_the_reachable_admin_address() {
        let public: SocketAddr = "10.1.2.3:40000".parse().unwrap();
        assert_eq!(
            page_url(None, "127.0.0.1:9100".parse().unwrap(), public),
            "http://127.0.0.1:9100"
        );
        assert_eq!(
            page_url(None, "0.0.0.0:9101".parse().unwrap(), public),
            "http://10.1.2.3:9101"
        );
        assert_eq!(
            page_url(
                Some("https://z1.example/"),
                "0.0.0.0:9101".parse().unwrap(),
                public
            ),
            "https://z1.example"
        );
    }
}

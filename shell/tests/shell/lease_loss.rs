//! Issue 18, item 4: a zone whose lease really went to another holder stops alone, and its
//! process claims it again once the lease is free instead of exiting; `/healthz` and the
//! metrics say which zones the process holds. A whole two-zone server in one process, on the
//! embedded stores shared with a "thief" that takes zone 1's lease as another server would.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use zone_core::ZoneId;
use zone_shell::app::start_with;
use zone_shell::config::Config;
use zone_shell::effects::Stores;
use zone_shell::persist::embedded_cold::SqliteStore;
use zone_shell::persist::embedded_hot::MemoryHotStore;

use crate::support::{http_get, loopback_config, metric, wait_until as wait_for};

const TTL: Duration = Duration::from_millis(1_500);

fn two_zones(dir: &std::path::Path) -> Config {
    let mut c = loopback_config(dir);
    (c.world.columns, c.world.rows) = (2, 1);
    c.zone.arena_size = 32;
    c.zone.npcs = 10;
    c.shutdown_deadline_s = 2;
    c.store.lease_ttl_ms = TTL.as_millis() as u64;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_whose_lease_was_taken_stops_alone_and_is_claimed_again_when_free() {
    let _live = crate::support::live(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = two_zones(dir.path());
    let stores = Stores {
        hot: Arc::new(MemoryHotStore::new()),
        cold: Arc::new(SqliteStore::open(&dir.path().join("cold.sqlite")).unwrap()),
    };
    let running = start_with(config, None, stores.clone()).await.unwrap();
    let (one, two) = (&running.zones[0], &running.zones[1]);
    assert_eq!((one.zone, two.zone), (ZoneId(1), ZoneId(2)));
    let admin = running.admin_addr.port();
    wait_for("both zones ticking", Duration::from_secs(10), || {
        one.status.ticks.load(Ordering::Acquire) > 10
            && two.status.ticks.load(Ordering::Acquire) > 10
    })
    .await;
    let healthz = || http_get(admin, "/healthz").unwrap();
    let (code, body) = healthz();
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("zone 1: held, ticking") && body.contains("zone 2: held, ticking"),
        "{body}"
    );
    let mine = stores
        .hot
        .lease_holder(ZoneId(1))
        .await
        .unwrap()
        .expect("zone 1 is leased");

    // Another server takes zone 1's lease (as one would after it expired) and registers its
    // fence. The race with the holder's own renewal is retried until the thief holds it.
    let thief = loop {
        let now = stores.hot.lease_holder(ZoneId(1)).await.unwrap();
        if let Some(h) = now {
            stores.hot.release_lease(&h.lease).await.unwrap();
        }
        let floor = stores.cold.zone_fence(ZoneId(1)).await.unwrap();
        if let Some(l) = stores
            .hot
            .acquire_lease(ZoneId(1), "thief@elsewhere", TTL, floor)
            .await
            .unwrap()
        {
            stores
                .cold
                .register_fence(l.zone, l.fence, zone_shell::tokens::unix_ms())
                .await
                .unwrap();
            break l;
        }
    };
    assert!(thief.fence > mine.lease.fence);
    // The thief keeps its lease for a while, renewing it.
    let renewing = {
        let (hot, thief) = (stores.hot.clone(), thief.clone());
        tokio::spawn(async move {
            for _ in 0..25 {
                assert!(
                    hot.renew_lease(&thief, TTL).await.unwrap(),
                    "the thief keeps it"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            hot.release_lease(&thief).await.unwrap();
        })
    };
    wait_for("zone 1 let its lease go", Duration::from_secs(10), || {
        !one.status.held.load(Ordering::Acquire)
    })
    .await;
    // Zone 1 stopped alone: zone 2 goes on ticking, the process is alive and says so.
    let two_before = two.status.ticks.load(Ordering::Acquire);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        two.status.ticks.load(Ordering::Acquire) > two_before,
        "zone 2 goes on"
    );
    let (code, body) = healthz();
    assert_eq!(code, 200, "waiting for a lease is not a fault: {body}");
    assert!(
        body.contains("zone 1: not held") && body.contains("zone 2: held, ticking"),
        "{body}"
    );
    let (code, body) = http_get(admin, "/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("zone 1: not held by this process"), "{body}");
    let text = running.export.text();
    assert_eq!(
        metric(&text, "zone_lease_held", &["zone=\"1\""]),
        0.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "zone_lease_held", &["zone=\"2\""]),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "zone_leases_lost_total", &["zone=\"1\""]),
        1.0
    );
    assert!(
        !one.status.ready.load(Ordering::Acquire),
        "zone 1 takes no players"
    );
    let held = stores
        .hot
        .lease_holder(ZoneId(1))
        .await
        .unwrap()
        .expect("held");
    assert_eq!(
        held.lease, thief,
        "never two holders: the thief's lease stands"
    );

    // The thief lets go: the process claims zone 1 again, above the thief's fence.
    renewing.await.unwrap();
    wait_for(
        "zone 1 claimed again and ticking",
        Duration::from_secs(15),
        || one.status.held.load(Ordering::Acquire) && one.status.ready.load(Ordering::Acquire),
    )
    .await;
    let again = stores
        .hot
        .lease_holder(ZoneId(1))
        .await
        .unwrap()
        .expect("held again");
    assert_eq!(
        again.lease.owner,
        format!("{}#1", mine.lease.owner),
        "by this server, under a name of its second life"
    );
    assert!(again.lease.fence > thief.fence, "under a newer fence");
    let ticks = one.status.ticks.load(Ordering::Acquire);
    wait_for("zone 1 ticks again", Duration::from_secs(5), || {
        one.status.ticks.load(Ordering::Acquire) > ticks + 10
    })
    .await;
    let (code, body) = healthz();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("zone 1: held, ticking"), "{body}");
    assert_eq!(http_get(admin, "/readyz").unwrap().0, 200);
    assert_eq!(
        metric(&running.export.text(), "zone_lease_held", &["zone=\"1\""]),
        1.0
    );

    running.shutdown();
    let finished = running
        .finish()
        .await
        .expect("a lost lease is not a failed server");
    let z1 = &finished.zones[0];
    assert_eq!(
        (z1.leases_lost, z1.lease_lost),
        (1, false),
        "lost once, held at the end"
    );
    assert_eq!(finished.zones[1].leases_lost, 0);
}

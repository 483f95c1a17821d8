//! Crash safety of the write-behind pipeline, on the real binary: the cold store is made
//! unreachable (the test holds an exclusive lock on the embedded SQLite store) while bots
//! fight, so records pile up in the spool; the server is killed with SIGKILL; the lock is
//! released and the server restarted. Every record that was durable in the spool at the kill
//! must then be in the cold store, exactly once, with the same content.

#![cfg(unix)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zone_core::{PlayerId, Version};
use zone_shell::persist::embedded_cold::SqliteStore;
use zone_shell::persist::{ColdStore, Record};

use crate::support::{free_port, http_get, metric, spooled};

fn get(port: u16, path: &str) -> Option<String> {
    http_get(port, path).map(|(_, text)| text)
}

fn server(dir: &std::path::Path, admin: u16, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zone-server"));
    c.args(["run", "--npcs", "150", "--arena-size", "48"])
        .args(["--bind", &format!("127.0.0.1:{}", free_port())])
        .args(["--admin-bind", &format!("127.0.0.1:{admin}")])
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .env("ZONE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

#[test]
fn sigkill_with_the_store_down_loses_nothing_that_was_spooled() {
    let _live = crate::support::live(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let admin = free_port();
    let mut child = server(dir.path(), admin, &["--bots", "12"])
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !get(admin, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Take the cold store away: an exclusive lock makes every server write fail (busy).
    let lock = rusqlite::Connection::open(dir.path().join("cold.sqlite")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // Fight until the spool holds a good number of combat events the store does not have.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = get(admin, "/metrics").unwrap_or_default();
        if metric(&m, "zone_spool_records", &[]) >= 200.0
            && metric(&m, "zone_flush_retries_total", &[]) >= 1.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no combat piled up in the spool:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL: no shutdown, no flush.
    child.wait().unwrap();
    let durable = spooled(dir.path());
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    let combat_spooled: Vec<_> = durable
        .iter()
        .filter_map(|(_, r)| match r {
            Record::Combat(c) => Some(*c),
            _ => None,
        })
        .collect();
    assert!(
        combat_spooled.len() >= 100,
        "{} combat records spooled",
        combat_spooled.len()
    );

    // Restart without bots: the spool is replayed; a graceful stop drains the rest.
    let status = server(dir.path(), free_port(), &["--ticks", "180"])
        .status()
        .unwrap();
    assert!(status.success(), "restart exited {status:?}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = SqliteStore::open(&dir.path().join("cold.sqlite")).unwrap();
    rt.block_on(async {
        // The default world's four zones share the process's spool.
        let mut stored = BTreeMap::new();
        let partitions: std::collections::BTreeSet<(zone_core::ZoneId, u32)> =
            combat_spooled.iter().map(|c| (c.zone, c.day())).collect();
        for (zone, day) in partitions {
            for (run, e) in store.combat_events(zone, day).await.unwrap() {
                assert!(
                    stored.insert((zone, run, e.id), e).is_none(),
                    "event stored twice: {zone} {run} {:?}",
                    e.id
                );
            }
        }
        for c in &combat_spooled {
            assert_eq!(
                stored.get(&(c.zone, c.run, c.event.id)),
                Some(&c.event),
                "spooled event {:?} of run {} is in the cold store with the same content",
                c.event.id,
                c.run
            );
        }
        let mut newest: BTreeMap<PlayerId, Version> = BTreeMap::new();
        for (_, r) in &durable {
            if let Record::PlayerSave(s) = r {
                let v = newest.entry(s.player).or_default();
                *v = (*v).max(s.state.version);
            }
        }
        for (player, version) in newest {
            let got = store.load_player(player).await.unwrap().unwrap();
            assert!(
                got.state.version >= version,
                "{player:?}: stored version {} < spooled {version}",
                got.state.version
            );
        }
    });
    // Nothing left behind: the restart flushed and deleted what it replayed.
    let left = spooled(dir.path());
    assert!(
        left.iter()
            .all(|(seq, _)| *seq > durable.last().map_or(0, |d| d.0)),
        "replayed records were acknowledged and deleted"
    );
}

//! Reproductions of the data-safety defects, on a whole server in one process over loopback UDP:
//! - a multi-zone process restarted while its cold store refuses writes (the disk is full):
//!   nobody may come back older than their newest spooled save;
//! - a player held longer than the ownership ledger's TTL, then logged in again in another
//!   zone: the first zone must let go (never two holders).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use zone_core::{PlayerId, ZoneId};
use zone_shell::app::{Running, start_with};
use zone_shell::bots::{BotConfig, play_on, run_crowd};
use zone_shell::config::Config;
use zone_shell::effects::Stores;
use zone_shell::persist::embedded_cold::SqliteStore;
use zone_shell::persist::embedded_hot::MemoryHotStore;
use zone_shell::persist::{ColdStore, Record, SaveRecord, StoreError, StoredPlayer};
use zone_shell::tokens::{TokenRequest, mint};

use crate::support::{metric, spooled};

/// The embedded cold store with its disk full: reads work, every write fails.
#[derive(Debug)]
struct WritesFail(SqliteStore);

#[async_trait::async_trait]
impl ColdStore for WritesFail {
    fn name(&self) -> &'static str {
        "sqlite-disk-full"
    }

    async fn write(&self, _batch: &[Record]) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(
            "database or disk is full (test)".into(),
        ))
    }

    async fn load_player(&self, player: PlayerId) -> Result<Option<StoredPlayer>, StoreError> {
        self.0.load_player(player).await
    }

    async fn combat_events(
        &self,
        zone: ZoneId,
        day: u32,
    ) -> Result<Vec<(u64, zone_core::CombatEvent)>, StoreError> {
        self.0.combat_events(zone, day).await
    }
}

fn world_2x1(dir: &std::path::Path) -> Config {
    let mut c = crate::support::loopback_config(dir);
    (c.world.columns, c.world.rows) = (2, 1);
    c.zone.arena_size = 32;
    c.zone.npcs = 30;
    c.shutdown_deadline_s = 2;
    c
}

fn stores(dir: &std::path::Path, cold_writes_fail: bool) -> Stores {
    let sqlite = SqliteStore::open(&dir.join("cold.sqlite")).unwrap();
    Stores {
        hot: Arc::new(MemoryHotStore::new()),
        cold: if cold_writes_fail {
            Arc::new(WritesFail(sqlite))
        } else {
            Arc::new(sqlite)
        },
    }
}

/// Every valid player save in the spool's segment files, in sequence order.
fn spooled_saves(dir: &std::path::Path) -> Vec<(u64, SaveRecord)> {
    spooled(dir)
        .into_iter()
        .filter_map(|(seq, r)| match r {
            Record::PlayerSave(s) => Some((seq, s)),
            _ => None,
        })
        .collect()
}

async fn roam(running: &Running, config: &Config, seconds: u64) -> zone_shell::bots::CrowdReport {
    let bots = BotConfig {
        server: running.udp_addr,
        servers: running.zones.iter().map(|z| z.public_address).collect(),
        protocol_id: running.protocol_id,
        first_player: 1,
        count: 12,
        tick_hz: running.tick_hz,
        duration: None,
        seed: 11,
        roam: Some(config.grid().unwrap()),
        layout: None,
        stand: false,
        game: zone_shell::game::demo_wire(),
    };
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let key = running.private_key.clone();
    let crowd = tokio::spawn(async move { run_crowd(bots, &key, stop).await });
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let _ = stop_tx.send(true);
    crowd.await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_zone_restart_with_the_cold_store_behind_rolls_nobody_back() {
    let _live = crate::support::live(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = world_2x1(dir.path());

    // First life: bots roam and cross the border back and forth; nothing reaches the cold
    // store, so every save of both zones stays in the one spool of the process.
    let running = start_with(config.clone(), None, stores(dir.path(), true))
        .await
        .unwrap();
    let crowd = roam(&running, &config, 20).await;
    let handoffs = metric(&running.export.text(), "zone_handoffs_total", &["accepted"]);
    running.shutdown();
    running.finish().await.unwrap();
    println!(
        "first life: {} redirects followed, {handoffs} handoffs accepted",
        crowd.redirects()
    );
    assert!(
        handoffs >= 8.0,
        "players crossed the border: {handoffs} handoffs"
    );

    // Second life on the same disk, the cold store still full: the same players come back,
    // each to one of the zones.
    let running = start_with(config.clone(), None, stores(dir.path(), true))
        .await
        .unwrap();
    let again = roam(&running, &config, 6).await;
    running.shutdown();
    running.finish().await.unwrap();
    assert_eq!(again.connected(), 12, "every player came back");

    // Along each player's saves, in the order the process made them, the version only grows
    // and no lifetime counter goes back: nobody was loaded from an older copy.
    let mut by_player: BTreeMap<PlayerId, Vec<(u64, SaveRecord)>> = BTreeMap::new();
    for (seq, s) in spooled_saves(dir.path()) {
        by_player.entry(s.player).or_default().push((seq, s));
    }
    assert_eq!(by_player.len(), 12, "every player saved");
    let mut violations = Vec::new();
    for (player, saves) in &by_player {
        for w in saves.windows(2) {
            let ((sa, a), (sb, b)) = (&w[0], &w[1]);
            let (x, y) = (a.state.stats, b.state.stats);
            let back = y.kills < x.kills
                || y.deaths < x.deaths
                || y.damage_dealt < x.damage_dealt
                || y.damage_taken < x.damage_taken
                || y.xp < x.xp;
            if b.state.version <= a.state.version || back {
                violations.push(format!(
                    "player {}: seq {sa} zone {} version {} {x:?} -> seq {sb} zone {} version {} {y:?}",
                    player.0, a.zone, a.state.version, b.zone, b.state.version
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "{} rollbacks:\n{}",
        violations.len(),
        violations.join("\n")
    );
}

/// One client of `player` to `server`, playing until `stop` (it wanders but stays near the
/// spawn point of a zone of this size for seconds).
async fn client(
    running: &Running,
    server: std::net::SocketAddr,
    player: u64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<zone_shell::bots::BotReport> {
    let config = BotConfig {
        server,
        servers: Vec::new(),
        protocol_id: running.protocol_id,
        first_player: player,
        count: 1,
        tick_hz: running.tick_hz,
        duration: None,
        seed: 3,
        roam: None,
        layout: None,
        stand: false,
        game: zone_shell::game::demo_wire(),
    };
    let token = mint(
        &TokenRequest {
            protocol_id: running.protocol_id,
            client_id: player,
            servers: vec![server],
            expiry_s: 600,
            timeout_s: 10,
        },
        &running.private_key,
    )
    .unwrap();
    tokio::spawn(async move {
        let mut stop = stop;
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        play_on(&socket, &config, player, token, &mut stop)
            .await
            .unwrap()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_held_past_the_ledger_ttl_is_never_held_by_two_zones() {
    let _live = crate::support::live(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let mut config = world_2x1(dir.path());
    config.zone.arena_size = 128;
    config.store.hot_ttl_s = 2;
    config.store.position_flush_ms = 200;
    let running = start_with(config.clone(), None, stores(dir.path(), false))
        .await
        .unwrap();
    let (z1, z2) = (&running.zones[0], &running.zones[1]);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let first = client(&running, z1.public_address, 7, stop.clone()).await;
    // Held by zone 1 for longer than the ledger's TTL.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(z1.metrics.clients.get(), 1, "zone 1 holds the player");
    // A second login of the same player, at zone 2 (an old token, a confused login backend).
    let second = client(&running, z2.public_address, 7, stop.clone()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = (z1.metrics.clients.get(), z2.metrics.clients.get());
    running.shutdown();
    let finished = running.finish().await.unwrap();
    let _ = stop_tx.send(true);
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert!(second.connected, "the second login connected");
    assert_eq!(
        held,
        (0, 1),
        "the second login took the player over and zone 1 let go (clients of zone 1, zone 2)"
    );
    assert!(
        first.lost.is_some() || first.server_closed,
        "zone 1 disconnected its copy: {first:?}"
    );
    let holders: usize = finished
        .zones
        .iter()
        .filter(|z| z.host.zone().player_entity(PlayerId(7)).is_some())
        .count();
    assert!(holders <= 1, "held by {holders} zones at the end");
}

//! Issue 18, item 5: Redis Sentinel failover under a running zone, with real processes: a
//! `redis-server` primary and replica and a sentinel (`redis-server sentinel.conf
//! --sentinel`). The zone server connects through the sentinel form of `--redis-url`; the
//! primary is killed mid-run with bots playing. The zone keeps ticking, no bot is
//! disconnected, and the lease and the players' records carry over to the promoted replica.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use zone_core::{PlayerId, ZoneId};
use zone_shell::app::start;
use zone_shell::bots::{BotConfig, run_crowd};
use zone_shell::persist::HotStore;
use zone_shell::persist::redis::RedisHotStore;

use crate::persist_redis::{RedisServer, wait_presence};
use crate::support::{loopback_config, wait_until as until};

/// The sentinel's name for the primary it watches.
const SERVICE: &str = "zs";

/// One command to a Redis (or sentinel) on loopback, its raw reply.
fn ask(port: u16, command: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
    let _ = s.write_all(format!("{command}\r\n").as_bytes());
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_play_keeps_the_zone_ticking_and_its_lease() {
    let _live = crate::support::live(module_path!());
    let mut primary = RedisServer::start();
    let replica = RedisServer::start_with(vec![
        "--replicaof".into(),
        "127.0.0.1".into(),
        primary.port().to_string(),
    ]);
    let sentinel = RedisServer::sentinel(vec![
        format!("sentinel monitor {SERVICE} 127.0.0.1 {} 1", primary.port()),
        format!("sentinel down-after-milliseconds {SERVICE} 1000"),
        format!("sentinel failover-timeout {SERVICE} 5000"),
    ]);
    let url = format!(
        "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName={SERVICE}",
        sentinel.port()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = loopback_config(dir.path());
    config.zone.arena_size = 96;
    config.zone.npcs = 100;
    (config.world.columns, config.world.rows) = (1, 1);
    config.store.redis_url = Some(url.clone());
    config.store.position_flush_ms = 200;
    config
        .validate()
        .expect("the sentinel form of redis_url is valid");
    let running = start(config, None).await.unwrap();
    let hot: Arc<dyn HotStore> = Arc::new(
        RedisHotStore::connect(&url, Duration::from_millis(500))
            .await
            .unwrap(),
    );
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let bots = BotConfig {
        server: running.udp_addr,
        servers: Vec::new(),
        roam: None,
        layout: None,
        stand: false,
        game: zone_shell::game::demo_wire(),
        protocol_id: running.protocol_id,
        first_player: 800,
        count: 6,
        tick_hz: running.tick_hz,
        duration: None,
        seed: 9,
    };
    let key = running.private_key.clone();
    let crowd = tokio::spawn(async move { run_crowd(bots, &key, stop).await });
    let expected: Vec<PlayerId> = (800..806).map(PlayerId).collect();
    wait_presence(
        hot.clone(),
        expected.clone(),
        Duration::from_secs(30),
        "written",
    )
    .await;
    let lease = hot.lease_holder(ZoneId(1)).await.unwrap().expect("leased");
    // The replica has the writes and the sentinel knows it (it finds replicas by polling).
    let replica_port = replica.port().to_string();
    until("the replica in sync", Duration::from_secs(20), || {
        ask(replica.port(), "INFO replication").contains("master_link_status:up")
    })
    .await;
    until(
        "the sentinel sees the replica",
        Duration::from_secs(30),
        || ask(sentinel.port(), &format!("SENTINEL replicas {SERVICE}")).contains(&replica_port),
    )
    .await;

    primary.kill();
    let ticks = || {
        running
            .status
            .ticks
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let mut last = ticks();
    let started = tokio::time::Instant::now();
    let mut promoted_after = None;
    for second in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = ticks();
        assert!(now > last, "no tick in second {second} of the failover");
        last = now;
        if promoted_after.is_none()
            && ask(
                sentinel.port(),
                &format!("SENTINEL get-master-addr-by-name {SERVICE}"),
            )
            .contains(&replica_port)
        {
            promoted_after = Some(started.elapsed());
        }
    }
    let promoted_after = promoted_after.expect("the sentinel promoted the replica within 20 s");
    println!("sentinel promoted the replica {promoted_after:?} after the primary was killed");
    // On the promoted replica: presence rewritten, the same lease still held (renewed there).
    wait_presence(
        hot.clone(),
        expected,
        Duration::from_secs(30),
        "rebuilt on the new primary",
    )
    .await;
    let after = hot
        .lease_holder(ZoneId(1))
        .await
        .unwrap()
        .expect("still leased");
    assert_eq!(
        after.lease.owner, lease.lease.owner,
        "the same server holds the zone"
    );
    assert!(after.lease.fence >= lease.lease.fence);
    let text = running.metrics.encode();
    assert_eq!(
        crate::support::metric(&text, "zone_leases_lost_total", &[]),
        0.0
    );

    let _ = stop_tx.send(true);
    let report = crowd.await.unwrap().unwrap();
    crate::support::assert_no_bot_disconnected(&report, "the failover");
    running.shutdown();
    running.finish().await.expect("a clean stop");
}

//! The real shell on loopback: bots connect over UDP with connect tokens, play, receive
//! snapshots; junk is thrown at the socket; a renetcode client (another netcode.io
//! implementation) connects too; the server shuts down gracefully and saves every player.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use zone_core::client::{ClientEvent, ClientSession};
use zone_core::protocol::ServerMessage;
use zone_core::rng::{self, Purpose};
use zone_core::{PlayerId, PlayerInput, Vec2, Version};
use zone_shell::app::{Running, start};
use zone_shell::bots::{BotConfig, run_crowd};
use zone_shell::config::Config;
use zone_shell::tokens::{TokenRequest, mint, unix_now};

use crate::support::metric;

fn test_config(dir: &std::path::Path) -> Config {
    let mut c = crate::support::loopback_config(dir);
    c.zone.arena_size = 96;
    c.zone.npcs = 300;
    (c.world.columns, c.world.rows) = (1, 1);
    c
}

fn bots(running: &Running, count: u32, first: u64, seconds: f64) -> BotConfig {
    BotConfig {
        server: running.udp_addr,
        servers: Vec::new(),
        roam: None,
        layout: None,
        stand: false,
        game: zone_shell::game::demo_wire(),
        protocol_id: running.protocol_id,
        first_player: first,
        count,
        tick_hz: running.tick_hz,
        duration: Some(Duration::from_secs_f64(seconds)),
        seed: 9,
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

/// The metric's value once it reaches `at_least`, or after 2 s (metrics are exported after
/// each tick, so what just happened may need one more).
async fn metric_reaching(admin: SocketAddr, name: &str, labels: &[&str], at_least: f64) -> f64 {
    let mut value = 0.0;
    for _ in 0..40 {
        value = metric(&http_get(admin, "/metrics").await.1, name, labels);
        if value >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_play_junk_is_dropped_and_shutdown_saves_everyone() {
    let _live = crate::support::live(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let running = start(test_config(dir.path()), None).await.unwrap();
    assert_eq!(http_get(running.admin_addr, "/readyz").await.0, 200);

    // Junk from another socket while the bots play: garbage, truncated, oversized, and a
    // replayed copy of nothing in particular.
    let junk_target = running.udp_addr;
    let junk = tokio::task::spawn_blocking(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut d = rng::stream(5, 6, 7, Purpose::Script);
        for i in 0..20_000u32 {
            let len = match i % 4 {
                0 => 1,
                1 => 1 + d.below(64) as usize,
                2 => 1078,
                _ => 1500,
            };
            let mut bytes: Vec<u8> = (0..len).map(|_| d.below(256) as u8).collect();
            if i % 3 == 0 {
                bytes[0] = 0; // looks like a connection request
            }
            let _ = s.send_to(&bytes, junk_target);
            if i % 200 == 0 {
                // Paced a little, so the kernel's receive buffer (not the server) is not what drops it.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });

    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let crowd = run_crowd(bots(&running, 12, 100, 3.0), &running.private_key, stop)
        .await
        .unwrap();
    junk.await.unwrap();

    assert_eq!(
        crowd.connected(),
        12,
        "every bot connected: {:?}",
        crowd.bots
    );
    assert_eq!(crowd.faulted(), 0, "no bot lost its connection");
    for b in &crowd.bots {
        assert!(b.welcomed, "bot {} welcomed", b.player);
        assert_eq!(b.refused, 0, "bot {} applied every snapshot", b.player);
        assert!(
            b.snapshots > 60,
            "bot {} got {} snapshots",
            b.player,
            b.snapshots
        );
        assert!(b.max_visible > 1, "bot {} saw the world", b.player);
    }
    assert!(
        crowd.snapshots_per_bot_s() > 30.0,
        "{}",
        crowd.snapshots_per_bot_s()
    );

    let (code, text) = http_get(running.admin_addr, "/metrics").await;
    assert_eq!(code, 200);
    let dropped = metric(&text, "zone_dropped_packets_total", &[]);
    assert!(dropped >= 15_000.0, "junk counted as dropped: {dropped}");
    assert!(metric(&text, "zone_ticks_total", &[]) > 100.0);
    assert!(metric(&text, "zone_connects_total", &[]) >= 12.0);
    assert!(metric(&text, "zone_tick_seconds_count", &[]) > 100.0);
    // The 12 bots left cleanly, each with 10 redundant disconnect packets: the 9 after the
    // first are benign, counted apart from packets of unknown addresses (hostile traffic).
    let after = metric_reaching(
        running.admin_addr,
        "zone_dropped_packets_total",
        &["reason=\"netcode_AfterDisconnect\""],
        12.0 * 9.0 * 0.9,
    )
    .await;
    assert!(
        after >= 12.0 * 9.0 * 0.9,
        "benign disconnect copies: {after}"
    );
    // Every netcode reason is listed from the start (at 0 until it happens).
    for reason in zone_core::netcode::DropReason::ALL {
        assert!(
            text.contains(&format!("reason=\"netcode_{reason:?}\"")),
            "netcode_{reason:?} listed"
        );
    }
    assert_eq!(http_get(running.admin_addr, "/healthz").await.0, 200);

    // The bots disconnected when their time was up; another one stays for shutdown.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let cfg = BotConfig {
        duration: None,
        ..bots(&running, 3, 500, 0.0)
    };
    let key = running.private_key.clone();
    let stayers = tokio::spawn(async move { run_crowd(cfg, &key, stop).await });
    tokio::time::sleep(Duration::from_millis(800)).await;
    running.shutdown();
    let stores = running.stores.clone();
    let finished = running.finish().await.unwrap();
    let (summary, host) = finished.first().unwrap();
    let stayers = tokio::time::timeout(Duration::from_secs(5), async {
        // Stop the stayers once they noticed the disconnect (or after a moment).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = stop_tx.send(true);
        stayers.await
    })
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert_eq!(
        summary.saved_at_shutdown, 3,
        "players connected at shutdown were saved"
    );
    for b in &stayers.bots {
        assert!(b.connected);
        assert!(
            b.server_closed,
            "bot {} was told the server closed: {:?}",
            b.player, b.lost
        );
        let stored = stores.cold.load_player(PlayerId(b.player)).await.unwrap();
        assert!(
            stored.is_some_and(|s| s.state.version > Version::ZERO && s.profile.is_some()),
            "bot {} saved to the cold store at shutdown",
            b.player
        );
    }
    for b in &crowd.bots {
        let stored = stores.cold.load_player(PlayerId(b.player)).await.unwrap();
        assert!(
            stored.is_some_and(|s| s.state.version > Version::ZERO),
            "bot {} saved to the cold store when it left",
            b.player
        );
    }

    assert_eq!(host.stats().connects, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renetcode_client_connects_and_receives_snapshots() {
    let _live = crate::support::live(module_path!());
    use renetcode::{ClientAuthentication, NetcodeClient};

    let dir = tempfile::tempdir().unwrap();
    let running = start(test_config(dir.path()), None).await.unwrap();
    let token = mint(
        &TokenRequest {
            protocol_id: running.protocol_id,
            client_id: 4242,
            servers: vec![running.udp_addr],
            expiry_s: 300,
            timeout_s: 10,
        },
        &running.private_key,
    )
    .unwrap();
    // renetcode serializes tokens with the client id in front.
    let bytes = [&4242u64.to_le_bytes()[..], &token[..]].concat();
    let rtoken = renetcode::ConnectToken::read(&mut bytes.as_slice()).unwrap();

    let result = tokio::task::spawn_blocking(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let mut client = NetcodeClient::new(
            Duration::from_secs(unix_now()),
            ClientAuthentication::Secure {
                connect_token: rtoken,
            },
        )
        .unwrap();
        let mut session = ClientSession::new(PlayerId(4242));
        let started = Instant::now();
        let mut last = Instant::now();
        let mut buf = [0u8; 1500];
        let mut snapshots = 0u32;
        let mut welcomed = false;
        let mut n = 0u64;
        while started.elapsed() < Duration::from_secs(8) && snapshots < 60 {
            std::thread::sleep(Duration::from_millis(10));
            let dt = last.elapsed();
            last = Instant::now();
            if let Some((packet, addr)) = client.update(dt) {
                socket.send_to(packet, addr).unwrap();
            }
            while let Ok((len, _)) = socket.recv_from(&mut buf) {
                if let Some(payload) = client.process_packet(&mut buf[..len]) {
                    let before = session.newest_tick();
                    session.handle_packet(payload).unwrap();
                    if session.newest_tick() > before {
                        snapshots += 1;
                    }
                }
            }
            while let Some(ev) = session.poll_event() {
                if let ClientEvent::Message(ServerMessage::Welcome { player, .. }) = ev {
                    welcomed = player == PlayerId(4242);
                }
            }
            if client.is_connected() {
                n += 1;
                let mut d = rng::stream(1, 2, n, Purpose::Script);
                let a = d.range(0.0, std::f32::consts::TAU);
                session.push_input(PlayerInput::movement(
                    0,
                    session.newest_tick() + 1,
                    Vec2::new(a.cos(), a.sin()),
                    false,
                ));
                let mut out = Vec::new();
                session.write_packet(&mut out);
                let (addr, packet) = client.generate_payload_packet(&out).unwrap();
                socket.send_to(packet, addr).unwrap();
            }
        }
        (
            client.is_connected(),
            welcomed,
            snapshots,
            session.entities().len(),
        )
    })
    .await
    .unwrap();
    let (connected, welcomed, snapshots, visible) = result;
    assert!(connected, "renetcode client connected");
    assert!(welcomed, "and was welcomed as player 4242");
    assert!(snapshots >= 60, "and applied {snapshots} snapshots");
    assert!(visible > 1);
    running.shutdown();
    let finished = running.finish().await.unwrap();
    let (summary, _) = finished.first().unwrap();
    assert_eq!(summary.saved_at_shutdown, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_counts_and_logs_the_connections_it_denies() {
    let _live = crate::support::live(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.net.max_clients = 2;
    let running = start(config, None).await.unwrap();
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let crowd = run_crowd(bots(&running, 5, 700, 2.0), &running.private_key, stop)
        .await
        .unwrap();
    assert_eq!(crowd.connected(), 2, "two slots: {:?}", crowd.bots);
    let denied = metric_reaching(
        running.admin_addr,
        "zone_connections_denied_total",
        &[],
        3.0,
    )
    .await;
    assert!(
        denied >= 3.0,
        "three bots were denied at least once: {denied}"
    );
    running.shutdown();
    running.finish().await.unwrap();
}

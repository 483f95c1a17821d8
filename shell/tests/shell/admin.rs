//! The admin endpoint under clients that open connections and never finish a request: they
//! are cut at the header timeout, the connection count is bounded, and health checks are
//! answered again once they are gone.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zone_shell::admin::{self, HEADER_TIMEOUT, MAX_CONNECTIONS};
use zone_shell::metrics::Metrics;

use crate::support::http_get;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_at_the_header_timeout_and_bounded_in_number() {
    let _live = crate::support::live(module_path!());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(admin::serve(
        listener,
        admin::router(Arc::new(Metrics::new()), Vec::new(), None),
        async {
            let _ = stopped.await;
        },
    ));
    let port2 = port;
    let outcome = tokio::task::spawn_blocking(move || {
        let port = port2;
        assert_eq!(http_get(port, "/healthz").map(|(c, _)| c), Some(200));
        // More half-sent requests than the server serves at once.
        let mut slow: Vec<TcpStream> = (0..MAX_CONNECTIONS + 16)
            .map(|_| {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                    .unwrap();
                s
            })
            .collect();
        // Every one of them is closed by the server: those over the limit at once, the rest
        // at the header timeout. None is answered.
        let deadline = Instant::now() + HEADER_TIMEOUT + Duration::from_secs(10);
        for s in &mut slow {
            let left = deadline.saturating_duration_since(Instant::now());
            s.set_read_timeout(Some(left.max(Duration::from_millis(10))))
                .unwrap();
            let mut buf = [0u8; 256];
            match s.read(&mut buf) {
                Ok(0) => {}
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    assert!(
                        !text.contains(" 200 "),
                        "a half-sent request was answered: {text}"
                    );
                }
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
                Err(e) => panic!("a slow connection was still open after the header timeout: {e}"),
            }
        }
        http_get(port, "/healthz").map(|(c, _)| c)
    })
    .await
    .unwrap();
    assert_eq!(
        outcome,
        Some(200),
        "answered again once the slow clients are gone"
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// Opens a map stream: the status line, and the connection (kept open by the caller).
fn open_stream(port: u16) -> (String, TcpStream) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /world/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    (head.lines().next().unwrap_or_default().to_owned(), s)
}

fn zones_json(port: u16) -> serde_json::Value {
    let (code, response) = http_get(port, "/world/zones").unwrap();
    assert_eq!(code, 200, "{response}");
    let body = response.split_once("\r\n\r\n").unwrap().1;
    serde_json::from_str(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_world_page_serves_status_streams_within_a_bound_and_entities() {
    use zone_shell::admin::page::MAX_STREAMS;
    let _live = crate::support::live(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::support::loopback_config(dir.path());
    (config.world.columns, config.world.rows) = (2, 2);
    config.zone.arena_size = 32;
    config.zone.npcs = 10;
    let running = zone_shell::app::start(config, None).await.unwrap();
    let port = running.admin_addr.port();
    let statuses: Vec<_> = running.zones.iter().map(|z| z.status.clone()).collect();
    tokio::task::spawn_blocking(move || {
        let (code, page) = http_get(port, "/").unwrap();
        assert_eq!(code, 200);
        assert!(page.contains("<canvas id=\"map\""), "the page is served");

        // Nobody looks: the loops copy nothing.
        std::thread::sleep(Duration::from_millis(500));
        assert!(statuses.iter().all(|s| s.view.version() == 0));

        // Streams are served up to the bound; each counts as a viewer of every zone.
        let mut open = Vec::new();
        for _ in 0..MAX_STREAMS {
            let (status, s) = open_stream(port);
            assert!(status.contains(" 200 "), "{status}");
            open.push(s);
        }
        let (refused, _s) = open_stream(port);
        assert!(refused.contains(" 503 "), "one stream too many: {refused}");
        let zones = zones_json(port);
        let listed = zones["zones"].as_array().unwrap();
        assert_eq!(listed.len(), 4);
        for z in listed {
            assert_eq!(z["viewers"], MAX_STREAMS, "{z}");
            assert_eq!(z["held"], true);
        }
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            statuses.iter().all(|s| s.view.version() > 0),
            "the loops sample while someone looks"
        );
        let zones = zones_json(port);
        assert!(
            zones["zones"][0]["tick_p99_ms"].as_f64().is_some(),
            "{zones}"
        );
        assert!(zones["budget_ms"].as_f64().unwrap() > 16.0);

        // Viewers that leave are forgotten (a frame to a closed connection fails).
        drop(open);
        let deadline = Instant::now() + Duration::from_secs(10);
        while zones_json(port)["zones"][0]["viewers"] != 0 {
            assert!(Instant::now() < deadline, "closed streams still counted");
            std::thread::sleep(Duration::from_millis(100));
        }

        // An entity of the last sample is served; an unknown one, or zone, is 404.
        let id = statuses[0].view.latest().dots[0].id;
        let (code, body) = http_get(port, &format!("/world/entity/1/{id}")).unwrap();
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("\"health\""), "{body}");
        assert_eq!(http_get(port, "/world/entity/1/999999").unwrap().0, 404);
        assert_eq!(http_get(port, "/world/entity/77/1").unwrap().0, 404);
        assert_eq!(http_get(port, "/world/entity/x/1").unwrap().0, 400);
    })
    .await
    .unwrap();
    running.shutdown();
    running.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn world_pages_of_servers_sharing_a_world_link_to_each_other() {
    use zone_shell::effects::Stores;
    use zone_shell::persist::embedded_cold::SqliteStore;
    use zone_shell::persist::embedded_hot::MemoryHotStore;
    let _live = crate::support::live(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let stores = Stores {
        hot: Arc::new(MemoryHotStore::new()),
        cold: Arc::new(SqliteStore::open(&dir.path().join("cold.sqlite")).unwrap()),
    };
    let server = |name: &str, zones: Vec<u32>| {
        let mut c = crate::support::loopback_config(&dir.path().join(name));
        (c.world.columns, c.world.rows) = (2, 1);
        c.world.zones = zones;
        c.zone.arena_size = 32;
        c.zone.npcs = 5;
        c
    };
    let one = zone_shell::app::start_with(server("one", vec![1]), None, stores.clone())
        .await
        .unwrap();
    let mut two_config = server("two", vec![2]);
    two_config.admin.public_url = Some("http://zone-two.example:9102/".into());
    let two = zone_shell::app::start_with(two_config, None, stores.clone())
        .await
        .unwrap();
    let (port_one, port_two) = (one.admin_addr.port(), two.admin_addr.port());
    let two_address = two.zones[0].public_address.to_string();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let on_one = zones_json(port_one);
            let on_two = zones_json(port_two);
            let (z2, z1) = (&on_one["zones"][1], &on_two["zones"][0]);
            if z2["page"] == "http://zone-two.example:9102"
                && z1["page"] == format!("http://127.0.0.1:{port_one}")
            {
                assert_eq!(z2["here"], false);
                let holder = z2["holder"].as_str().unwrap_or_default();
                assert!(holder.ends_with(&format!("@{two_address}")), "{z2}");
                assert!(z2["fence"].as_u64() >= Some(1), "{z2}");
                assert_eq!(z2["address"], two_address.as_str());
                assert_eq!(on_one["zones"][0]["here"], true);
                assert_eq!(on_one["zones"][0]["page"], serde_json::Value::Null);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "each page links to the other: {on_one} / {on_two}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .unwrap();
    // A row that is not a web URL (a hostile or broken publisher) is not linked.
    two.shutdown();
    two.finish().await.unwrap();
    let ttl = Duration::from_secs(60);
    stores
        .hot
        .set_zone_address(zone_core::ZoneId(2), "10.9.9.9:40001", ttl)
        .await
        .unwrap();
    stores
        .hot
        .set_zone_admin(zone_core::ZoneId(2), "javascript:alert(1)", ttl)
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let z2 = zones_json(port_one)["zones"][1].clone();
            if z2["address"] == "10.9.9.9:40001" {
                assert_eq!(
                    z2["page"],
                    serde_json::Value::Null,
                    "a javascript: row was linked"
                );
                break;
            }
            assert!(Instant::now() < deadline, "the new rows were read: {z2}");
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .unwrap();
    one.shutdown();
    one.finish().await.unwrap();
}

//! The world page in a real browser: Debian's headless `chromium`, driven through
//! `chromedriver` (WebDriver), loads the admin page of a running 2x2 world with roaming bots.
//! Players appear and move, a handoff is drawn, a click on a player shows its state (stats,
//! ownership epoch), and the same page, never reloaded, shows the world again after the server
//! is stopped and started anew on the same admin port. A screenshot is written to
//! `target/world-page.png`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};
use zone_shell::app::{Running, start};
use zone_shell::config::Config;

use crate::support::{free_port, loopback_config};

/// chromedriver and the browser it started, both killed when dropped (also when the test
/// fails before closing its session: chromium outlives a killed chromedriver otherwise).
struct Driver {
    child: Child,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("pkill")
            .args(["-f", "--"])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .status();
    }
}

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect(
            "this test needs Debian's chromium and chromium-driver \
             (apt-get install chromium chromium-driver; .ci/run installs them)",
        )
}

async fn browser() -> (Driver, Client) {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "this test needs chromedriver (apt-get install chromium-driver; .ci/run installs it): {e}"
            )
        });
    let driver = Driver {
        child: driver,
        profile: tempfile::tempdir().unwrap(),
    };
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium(),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,900",
                     format!("--user-data-dir={}", driver.profile.path().display())],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut last = None;
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return (driver, client),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start a session: {last:?}");
}

/// What the page knows (`window.worldPage`, see `shell/src/admin/page/index.html`).
async fn page_state(client: &Client) -> Value {
    client
        .execute(
            "const W = window.worldPage; if (!W) return null;
             const players = {};
             for (const z of Object.values(W.zones)) for (const e of z.e)
               if (e[1] !== null) players[e[1]] = [e[2], e[3]];
             return { frames: W.frames, handoffs: W.handoffs, accepted: W.handoffsAccepted || 0,
                      connected: W.connected,
                      polls: W.statusPolls, players,
                      entity: W.entityShown || null,
                      panel: document.getElementById('entity').innerText };",
            vec![],
        )
        .await
        .unwrap_or(Value::Null)
}

/// Polls the page until `check` holds; fails naming `what` after `within`.
async fn until(
    client: &Client,
    what: &str,
    within: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let state = page_state(client).await;
        if check(&state) {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {within:?}; the page: {state}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn players(state: &Value) -> serde_json::Map<String, Value> {
    state["players"].as_object().cloned().unwrap_or_default()
}

fn world_config(dir: &Path, admin_port: u16) -> Config {
    let mut c = loopback_config(dir);
    c.admin.bind = format!("127.0.0.1:{admin_port}").parse().unwrap();
    (c.world.columns, c.world.rows) = (2, 2);
    c.zone.arena_size = 48;
    c.zone.npcs = 20;
    c.bots = 16;
    c
}

async fn stop(running: Running) {
    running.shutdown();
    running.finish().await.unwrap();
}

fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("world-page.png")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_world_page_shows_players_moving_handoffs_and_survives_a_restart() {
    let _live = crate::support::live(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let admin_port = free_port();
    let config = world_config(dir.path(), admin_port);
    let running = start(config.clone(), None).await.unwrap();
    let (_driver, client) = browser().await;
    client
        .goto(&format!("http://127.0.0.1:{admin_port}/"))
        .await
        .unwrap();

    // Players appear, then move.
    let first = until(
        &client,
        "ten players on the map",
        Duration::from_secs(60),
        |s| players(s).len() >= 10,
    )
    .await;
    let moved = |s: &Value| {
        let (before, now) = (players(&first), players(s));
        before
            .iter()
            .filter(|(p, at)| {
                now.get(*p).is_some_and(|to| {
                    let d =
                        |i: usize| to[i].as_f64().unwrap_or(0.0) - at[i].as_f64().unwrap_or(0.0);
                    d(0).hypot(d(1)) > 1.0
                })
            })
            .count()
            >= 3
    };
    until(
        &client,
        "players moving on the map",
        Duration::from_secs(30),
        moved,
    )
    .await;

    // A player crossing a border is drawn as a handoff, and the zones count it.
    until(
        &client,
        "a handoff drawn and counted",
        Duration::from_secs(90),
        |s| s["handoffs"].as_u64() >= Some(1) && s["accepted"].as_u64() >= Some(1),
    )
    .await;

    // A click on a player shows its state: health, stats, ownership epoch.
    let clicked = client
        .execute(
            "const W = window.worldPage, c = document.getElementById('map');
             for (const z of Object.values(W.zones)) for (const e of z.e) {
               if (e[1] === null || !e[6]) continue;
               const r = c.getBoundingClientRect(), k = c.width / r.width;
               const x = r.left + sx(e[2]) / k, y = r.top + sy(e[3]) / k;
               c.dispatchEvent(new MouseEvent('click', { clientX: x, clientY: y, bubbles: true }));
               return e[1];
             }
             return null;",
            vec![],
        )
        .await
        .unwrap();
    assert!(clicked.is_string(), "a live player to click: {clicked}");
    let shown = until(
        &client,
        "the clicked entity's state",
        Duration::from_secs(10),
        |s| s["entity"]["epoch"].is_u64(),
    )
    .await;
    let panel = shown["panel"].as_str().unwrap_or_default();
    for field in ["owner epoch", "health", "kills", "xp"] {
        assert!(panel.contains(field), "entity panel lacks {field}: {panel}");
    }

    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let path = screenshot_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &png).unwrap();
    println!("screenshot: {}", path.display());

    // The server stops: the page says so. It starts again on the same admin port: the same
    // page (not reloaded) shows the world again.
    stop(running).await;
    let down = until(
        &client,
        "the page noticing the server is gone",
        Duration::from_secs(20),
        |s| s["connected"] == false,
    )
    .await;
    let running = start(config, None).await.unwrap();
    let frames = down["frames"].as_u64().unwrap_or(0);
    until(
        &client,
        "the page live again after the restart",
        Duration::from_secs(60),
        |s| {
            s["connected"] == true
                && s["frames"].as_u64() > Some(frames + 5)
                && players(s).len() >= 10
        },
    )
    .await;
    client.close().await.unwrap();
    stop(running).await;
}

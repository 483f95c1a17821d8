//! What the shell's tests share: a loopback server configuration, free ports, polling until a
//! condition holds, plain HTTP gets of the admin endpoints, metric sums from a scrape, the
//! spool's records on disk, and [`live`], which keeps tests that run
//! live servers from different files apart (they each ran in a binary of their own before
//! the tests became one binary, and some of their deadlines assume that).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use zone_shell::config::Config;
use zone_shell::persist::Record;
use zone_shell::persist::spool::{frame_version, scan};

/// A whole server's configuration for a test: UDP and admin on free loopback ports, its
/// data_dir in `dir`, defaults otherwise.
pub fn loopback_config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.net.bind = "127.0.0.1:0".parse().unwrap();
    c.admin.bind = "127.0.0.1:0".parse().unwrap();
    c.data_dir = dir.to_path_buf();
    c
}

/// Fails the test if any bot of `report` lost its connection (or was never connected), naming
/// `what` (the fault that must not have disconnected it).
pub fn assert_no_bot_disconnected(report: &zone_shell::bots::CrowdReport, what: &str) {
    for b in &report.bots {
        assert!(
            b.connected && b.lost.is_none() && !b.server_closed,
            "bot {} was disconnected by {what}: {b:?}",
            b.player
        );
    }
}

/// Polls `check` every 50 ms until it holds; fails the test, naming `what`, after `within`.
pub async fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP port free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:`port`: the status code and the whole response, or `None` when
/// nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split(' ').nth(1)?.parse().ok()?;
    Some((code, out))
}

/// The sum of the samples of `name` whose line contains every one of `labels`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every valid record in the segment files of the spool under `data_dir`, in sequence order.
pub fn spooled(data_dir: &Path) -> Vec<(u64, Record)> {
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(data_dir.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    paths.sort();
    for p in paths {
        let bytes = std::fs::read(&p).unwrap();
        for (at, seq, payload) in scan(&bytes).0 {
            let version = frame_version(bytes[at]).expect("a scanned frame names its version");
            out.push((seq, Record::decode_version(version, payload).unwrap()));
        }
    }
    out.sort_by_key(|(seq, _)| *seq);
    out
}

/// Which file's live tests are running, and how many of them.
static LIVE: Mutex<(Option<&'static str>, usize)> = Mutex::new((None, 0));
static LIVE_FREED: Condvar = Condvar::new();

/// Held by a test that runs live servers (sockets, processes, bots on wall-clock deadlines).
pub struct Live(());

/// Waits until no live test of another file runs, then lets this one run; tests of the same
/// file (`module_path!()`) run side by side, as they did in a binary of their own.
pub fn live(file: &'static str) -> Live {
    let mut state = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    while state.0.is_some_and(|f| f != file) {
        state = LIVE_FREED.wait(state).unwrap_or_else(|e| e.into_inner());
    }
    *state = (Some(file), state.1 + 1);
    Live(())
}

impl Drop for Live {
    fn drop(&mut self) {
        let mut state = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        state.1 -= 1;
        if state.1 == 0 {
            state.0 = None;
            LIVE_FREED.notify_all();
        }
    }
}

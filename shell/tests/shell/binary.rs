//! The `zone-server` binary itself: runs on embedded defaults, answers health checks, exits 0
//! on SIGTERM after a graceful shutdown, refuses bad config naming the field, mints tokens.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{free_port, http_get};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zone-server"))
}

fn get(port: u16, path: &str) -> Option<u16> {
    http_get(port, path).map(|(code, _)| code)
}

#[test]
fn runs_with_bots_for_a_fixed_number_of_ticks_and_exits_cleanly() {
    let _live = crate::support::live(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "run",
            "--ticks",
            "180",
            "--bots",
            "3",
            "--npcs",
            "200",
            "--arena-size",
            "64",
        ])
        .args([
            "--bind",
            &format!("127.0.0.1:{}", free_port()),
            "--admin-bind",
            &format!("127.0.0.1:{}", free_port()),
        ])
        // A data directory that does not exist yet, as on a fresh machine.
        .arg("--data-dir")
        .arg(dir.path().join("fresh"))
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{logs}", out.status);
    assert!(logs.contains("zone server stopped cleanly"), "{logs}");
    assert!(logs.contains("connected=3"), "demo bots connected: {logs}");
    assert!(
        dir.path().join("fresh/dev-private.key").exists(),
        "development key written"
    );
    assert!(
        dir.path().join("fresh/cold.sqlite").exists(),
        "embedded cold store created"
    );
}

#[cfg(unix)]
#[test]
fn sigterm_drains_and_exits_zero() {
    let _live = crate::support::live(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let admin = free_port();
    let mut child = bin()
        .args([
            "run",
            "--bots",
            "2",
            "--npcs",
            "100",
            "--arena-size",
            "64",
            "--log-format",
            "json",
        ])
        .args([
            "--bind",
            &format!("127.0.0.1:{}", free_port()),
            "--admin-bind",
            &format!("127.0.0.1:{admin}"),
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while get(admin, "/readyz") != Some(200) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "server never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(admin, "/healthz"), Some(200));
    std::thread::sleep(Duration::from_millis(500));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let code = loop {
        if let Some(code) = child.try_wait().unwrap() {
            break code;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(code.success(), "exit {code:?}\n{logs}");
    assert!(logs.contains("signal received"), "{logs}");
    // The default world is 2x2 zones in this one process: each zone logs whom it saved.
    let saved: u64 = logs
        .lines()
        .filter(|l| l.contains("zone stopped cleanly"))
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["fields"]["saved"].as_u64()
        })
        .sum();
    assert_eq!(saved, 2, "both bots' players saved: {logs}");
    assert!(
        !logs.contains(
            &std::fs::read_to_string(dir.path().join("dev-private.key"))
                .unwrap()
                .trim()
                .to_string()
        ),
        "key never logged"
    );
}

#[test]
fn bad_config_is_refused_naming_the_field() {
    let _live = crate::support::live(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("zone.toml");
    std::fs::write(&file, "[net]\nmax_clients = 0\n").unwrap();
    let out = bin().args(["run", "--config"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("net.max_clients"), "{err}");

    std::fs::write(&file, "[net]\nbindd = \"127.0.0.1:1\"\n").unwrap();
    let out = bin().args(["run", "--config"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bindd"));

    let out = bin()
        .args(["run", "--arena-size", "3"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("zone.arena_size"));
    let out = bin()
        .args(["run"])
        .env("ZONE_NPCS", "not-a-number")
        .output()
        .unwrap();
    assert!(!out.status.success(), "env values are validated too");
}

#[test]
fn token_command_mints_a_parseable_token() {
    let _live = crate::support::live(module_path!());
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    // No key anywhere: refused, and no new key is made up (it would not be the server's).
    let out = bin()
        .args(["token", "--player-id", "77"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dev-private.key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("dev-private.key").exists());
    let out = bin()
        .args(["token", "--player-id", "77"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("ZONE_PRIVATE_KEY", "ab".repeat(32))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap();
    assert_eq!(bytes.len(), 2048);
    let token = zone_core::netcode::ConnectToken::read(&bytes).unwrap();
    assert_eq!(
        token.protocol_id,
        zone_shell::config::Config::default().net.protocol_id
    );
    assert!(token.expire_timestamp > token.create_timestamp);
    // The token names one server address: the first zone's by default, another zone's with
    // --zone (default world 2x2 on 127.0.0.1:40000: zone n on port 40000 + n - 1).
    let mint_with = |args: &[&str]| {
        bin()
            .args(["token", "--player-id", "77"])
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .env("ZONE_PRIVATE_KEY", "ab".repeat(32))
            .output()
            .unwrap()
    };
    let addresses = |args: &[&str]| {
        let out = mint_with(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(String::from_utf8(out.stdout).unwrap().trim())
            .unwrap();
        zone_core::netcode::ConnectToken::read(&bytes)
            .unwrap()
            .server_addresses
            .as_slice()
            .to_vec()
    };
    let at = |a: &str| vec![a.parse::<std::net::SocketAddr>().unwrap()];
    assert_eq!(addresses(&[]), at("127.0.0.1:40000"));
    assert_eq!(addresses(&["--zone", "3"]), at("127.0.0.1:40002"));
    assert_eq!(
        addresses(&["--zone", "2", "--public-address", "10.1.2.3:5000"]),
        at("10.1.2.3:5001")
    );
    let out = mint_with(&["--zone", "9"]);
    assert!(!out.status.success(), "zone 9 is not in the 2x2 world");
    assert!(String::from_utf8_lossy(&out.stderr).contains("zone 9"));
}

//! Fuzz target bodies for the shell's untrusted inputs, compiled into the crate so that `fuzz/`
//! (cargo fuzz, nightly) and the corpus replay test (`shell/tests/fuzz_corpus.rs`, stable
//! `cargo test`) run the same code. Each body takes arbitrary bytes, must never panic, and
//! asserts the invariants of its area. Not part of the supported API.
//!
//! The shell reads three things it cannot trust: spool segments from its own disk (a crash
//! tears them, a bad disk flips bits), its configuration file, and the messages other zones
//! send on the zone bus (through Redis). Connect tokens are decoded by `zone_core::netcode` and
//! fuzzed there (`zone_core::fuzzing::connect_token`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use zone_core::{
    AbilityId, CombatEvent, EntityId, EventId, PlayerId, PlayerState, PlayerStats, Version, ZoneId,
};

use crate::config::{Config, ConfigError};
use crate::persist::record::{CombatRecord, ProfileRecord, Record, SaveRecord};
use crate::persist::spool::{self, FRAME_HEADER, Frame};

/// A fuzz target body.
pub type Body = fn(&[u8]);

/// Every target, by name (the file names under `fuzz/fuzz_targets/` and `fuzz/corpus/`).
pub const TARGETS: &[(&str, Body)] = &[
    ("spool_decode", spool_decode),
    ("config_parse", config_parse),
    ("bus_decode", bus_decode),
];

/// A little cursor over fuzz bytes that never fails (zeros when exhausted).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    fn f32(&mut self) -> f32 {
        f32::from_bits(self.u32())
    }
    fn flag(&mut self) -> bool {
        self.u8().is_multiple_of(2)
    }
}

/// Spool segments and records, three ways from the same bytes:
/// - the bytes as a segment: `scan` returns in-bounds, ordered, non-overlapping frames with
///   strictly increasing sequence numbers, each of which `parse_frame` finds again at its
///   offset, and `valid_end` is where the last one ends;
/// - the bytes (and every valid frame's payload) as a record: what decodes re-encodes and
///   decodes to the same record;
/// - the bytes as a recipe: records framed by `write_frame`, then damaged (bytes flipped, runs
///   zeroed, the tail cut). Every frame the scan returns was written (the checksum catches the
///   damage), every frame the damage did not touch is returned at its offset, and a cut alone
///   loses exactly the frames it reaches.
pub fn spool_decode(data: &[u8]) {
    check_segment(data);
    check_record(data);
    damaged_segment(data);
}

fn check_segment(bytes: &[u8]) {
    if let Frame::Valid { payload, len, .. } = spool::parse_frame(bytes) {
        assert!(len <= bytes.len(), "frame longer than its bytes");
        assert_eq!(len, FRAME_HEADER + payload.len(), "frame length");
    }
    let (frames, corrupt, valid_end) = spool::scan(bytes);
    assert!(
        valid_end <= bytes.len(),
        "valid_end {valid_end} past {}",
        bytes.len()
    );
    let mut end = 0;
    let mut last_seq: Option<u64> = None;
    for &(at, seq, payload) in &frames {
        assert!(
            at >= end,
            "frame at {at} overlaps the previous one ending at {end}"
        );
        let len = FRAME_HEADER + payload.len();
        assert!(at + len <= bytes.len(), "frame at {at} runs past the end");
        assert_eq!(
            spool::parse_frame(&bytes[at..]),
            Frame::Valid {
                seq,
                version: spool::frame_version(bytes[at]).expect("a scanned frame names a version"),
                payload,
                len
            },
            "the frame at {at} parses as scanned"
        );
        assert!(
            last_seq.is_none_or(|l| seq > l),
            "sequence {seq} after {last_seq:?}"
        );
        last_seq = Some(seq);
        end = at + len;
        check_record(payload);
    }
    assert_eq!(valid_end, end, "valid data ends where the last frame does");
    assert!(
        corrupt <= frames.len() as u64,
        "{corrupt} skipped stretches but only {} frames end one",
        frames.len()
    );
}

/// `Record::decode` on any bytes: no panic; what decodes re-encodes and decodes to the same
/// record. Floats compare by bits (a NaN position is still the same record), which is what the
/// encodings being equal says.
fn check_record(payload: &[u8]) {
    let Ok(record) = Record::decode(payload) else {
        return;
    };
    let mut once = Vec::new();
    record
        .encode_into(&mut once)
        .expect("a decoded record encodes");
    let again = Record::decode(&once).expect("a re-encoded record decodes");
    let mut twice = Vec::new();
    again.encode_into(&mut twice).expect("encodes again");
    assert_eq!(once, twice, "encode -> decode -> encode is stable");
    assert!(
        again == record || has_nan(&record),
        "round trip changed {record:?} into {again:?}"
    );
}

fn has_nan(record: &Record) -> bool {
    match record {
        Record::Combat(c) => c.event.x.is_nan() || c.event.y.is_nan(),
        Record::PlayerSave(s) => {
            s.state.x.is_nan() || s.state.y.is_nan() || s.state.facing.is_nan()
        }
        Record::Profile(_) => false,
    }
}

fn player_id(b: &mut Bytes<'_>) -> PlayerId {
    PlayerId(b.u64())
}

/// A record with every field from the bytes. Profile names are printable ASCII, as the server
/// writes them (`player-<id>`).
fn record(b: &mut Bytes<'_>) -> Record {
    match b.u8() % 3 {
        0 => Record::Combat(CombatRecord {
            zone: ZoneId(b.u32()),
            run: b.u64(),
            unix_ms: b.u64(),
            event: CombatEvent {
                id: EventId(u128::from(b.u64()) << 64 | u128::from(b.u64())),
                tick: b.u64(),
                attacker: EntityId(b.u32()),
                attacker_player: b.flag().then(|| player_id(b)),
                target: EntityId(b.u32()),
                target_player: b.flag().then(|| player_id(b)),
                ability: AbilityId(b.u8()),
                damage: b.u16(),
                killed: b.flag(),
                x: b.f32(),
                y: b.f32(),
            },
        }),
        1 => Record::PlayerSave(SaveRecord {
            zone: ZoneId(b.u32()),
            player: player_id(b),
            state: PlayerState {
                x: b.f32(),
                y: b.f32(),
                facing: b.f32(),
                health: b.u16(),
                stats: PlayerStats {
                    kills: b.u32(),
                    deaths: b.u32(),
                    damage_dealt: b.u64(),
                    damage_taken: b.u64(),
                    xp: b.u64(),
                },
                version: Version::from_raw(b.u64()),
                plugins: {
                    let mut p = zone_core::SavedPlugins::default();
                    for _ in 0..b.u8() % 3 {
                        let body: Vec<u8> = (0..b.u8() % 12).map(|_| b.u8()).collect();
                        let _ = p.push(b.u16(), b.u8(), &body);
                    }
                    p
                },
            },
            fence: b.u64(),
            unix_ms: b.u64(),
        }),
        _ => Record::Profile(ProfileRecord {
            player: player_id(b),
            name: (0..b.u8() % 40)
                .map(|_| char::from(b' ' + b.u8() % 95))
                .collect(),
            created_unix_ms: b.u64(),
        }),
    }
}

/// A frame as written: where it starts, its sequence number and its payload.
type Written = (usize, u64, Vec<u8>);

fn damaged_segment(data: &[u8]) {
    let mut b = Bytes(data);
    let count = b.u8() % 12;
    let mut seq = u64::from(b.u16());
    let mut segment = Vec::new();
    let mut written: Vec<Written> = Vec::new();
    for _ in 0..count {
        let r = record(&mut b);
        let mut payload = Vec::new();
        r.encode_into(&mut payload).expect("a record encodes");
        written.push((segment.len(), seq, payload.clone()));
        spool::write_frame(&mut segment, seq, &payload);
        seq += 1 + u64::from(b.u8() % 4);
    }

    // Undamaged: exactly what was written, nothing skipped, nothing torn.
    let (frames, corrupt, valid_end) = spool::scan(&segment);
    let as_written: Vec<(usize, u64, &[u8])> = written
        .iter()
        .map(|(at, s, p)| (*at, *s, p.as_slice()))
        .collect();
    assert_eq!(frames, as_written, "a clean segment scans as written");
    assert_eq!((corrupt, valid_end), (0, segment.len()));

    // Damage: flips and zeroed runs in place, then perhaps a cut.
    let mut damaged = segment.clone();
    for _ in 0..b.u8() % 8 {
        if damaged.is_empty() {
            break;
        }
        let at = usize::from(b.u16()) % damaged.len();
        if b.flag() {
            damaged[at] ^= b.u8().max(1);
        } else {
            let end = (at + usize::from(b.u8() % 64) + 1).min(damaged.len());
            damaged[at..end].fill(0);
        }
    }
    let cut = if b.flag() {
        damaged.len()
    } else {
        usize::from(b.u16()) % (damaged.len() + 1)
    };
    damaged.truncate(cut);
    check_segment(&damaged);

    let changed = |from: usize, to: usize| damaged[from..to] != segment[from..to];
    let intact: Vec<(usize, u64, &[u8])> = written
        .iter()
        .filter(|(at, _, p)| {
            let end = at + FRAME_HEADER + p.len();
            end <= cut && !changed(*at, end)
        })
        .map(|(at, s, p)| (*at, *s, p.as_slice()))
        .collect();
    let (frames, _, valid_end) = spool::scan(&damaged);
    for (at, seq, payload) in &frames {
        assert!(
            written.iter().any(|(_, s, p)| s == seq && p == payload),
            "frame at {at} (seq {seq}, {} bytes) was never written: a checksum missed the damage",
            payload.len()
        );
    }
    for frame in &intact {
        assert!(
            frames.contains(frame),
            "undamaged frame at {} (seq {}) lost; scan returned {:?}, valid data ends at {valid_end} \
             of {cut} where the next frame is {:?}",
            frame.0,
            frame.1,
            frames.iter().map(|f| (f.0, f.1)).collect::<Vec<_>>(),
            spool::parse_frame(&damaged[valid_end..]),
        );
    }
    if !changed(0, cut) {
        // A cut alone loses a suffix: exactly the frames it reaches.
        assert_eq!(frames, intact, "a cut loses only the frames it reaches");
        let end = intact
            .last()
            .map_or(0, |(at, _, p)| at + FRAME_HEADER + p.len());
        assert_eq!(valid_end, end, "valid data ends after the last whole frame");
    }
}

/// Configuration files: no panic parsing, validating or printing (`Debug` redacts secrets);
/// a config that parses and validates serialises and parses back to an equal config.
pub fn config_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = toml::from_str::<Config>(text) else {
        return;
    };
    let _ = format!("{config:?}");
    match config.validate() {
        Ok(()) => {
            let again = toml::to_string(&config).expect("a valid config serialises");
            let back = toml::from_str::<Config>(&again)
                .unwrap_or_else(|e| panic!("{again:?} does not parse back: {e}"));
            assert_eq!(back, config, "round trip through {again:?}");
            back.validate().expect("still valid after the round trip");
            // What the server adds to its clocks from a valid config never overflows.
            let now = std::time::Instant::now();
            for d in [
                std::time::Duration::from_secs(config.store.hot_ttl_s),
                std::time::Duration::from_secs(config.shutdown_deadline_s),
                std::time::Duration::from_secs(config.net.token_expiry_s),
                std::time::Duration::from_millis(config.store.lease_ttl_ms),
                std::time::Duration::from_millis(config.store.command_timeout_ms),
                std::time::Duration::from_millis(config.world.handoff_timeout_ms),
            ] {
                assert!(now.checked_add(d * 4).is_some(), "{d:?} overflows a clock");
            }
        }
        Err(e) => {
            assert!(
                matches!(e, ConfigError::Invalid { .. }),
                "validate only reports invalid fields: {e}"
            );
            let _ = e.to_string();
            let _ = toml::to_string(&config);
        }
    }
}

fn segment(records: &[Record], first_seq: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for (seq, r) in (first_seq..).zip(records) {
        let mut payload = Vec::new();
        r.encode_into(&mut payload).expect("a record encodes");
        spool::write_frame(&mut out, seq, &payload);
    }
    out
}

fn sample_records() -> Vec<Record> {
    let state = PlayerState {
        version: Version::from_raw(7),
        ..PlayerState::new_character(12.5, 40.0, 100)
    };
    vec![
        Record::Profile(ProfileRecord {
            player: PlayerId(42),
            name: "player-42".into(),
            created_unix_ms: 1_800_000_000_000,
        }),
        Record::Combat(CombatRecord {
            zone: ZoneId(1),
            run: 1_800_000_000_000,
            unix_ms: 1_800_000_000_050,
            event: CombatEvent {
                id: EventId(0x0001_0000_0000_0000_0009_0000_0000_0001),
                tick: 9,
                attacker: EntityId(3),
                attacker_player: Some(PlayerId(42)),
                target: EntityId(17),
                target_player: None,
                ability: AbilityId(1),
                damage: 12,
                killed: false,
                x: 13.0,
                y: 41.5,
            },
        }),
        Record::PlayerSave(SaveRecord {
            zone: ZoneId(1),
            player: PlayerId(42),
            state,
            fence: 3,
            unix_ms: 1_800_000_000_100,
        }),
    ]
}

/// Zone bus messages, decoded and handed to a live host of a 2x1 world:
/// - any bytes decode to a message or a typed error; a message re-encodes to what decodes to it;
/// - the input as a stream of frames (`len: u16`, bytes, one control byte): every message that
///   decodes is given to the host of zone 1, whose outstanding claims are answered (won, lost
///   or failed as the control byte says), with ticks in between. The host never panics, holds
///   each player at most once, and every player it holds came in a transfer it claimed.
pub fn bus_decode(data: &[u8]) {
    use crate::persist::{Claim, Owner, StoreError};
    use crate::world::bus::BusMessage;

    if let Ok(m) = BusMessage::decode(data) {
        let again = m.encode().expect("a decoded message encodes");
        assert_eq!(BusMessage::decode(&again).as_ref(), Ok(&m), "round trip");
    }
    // The sealed envelope: any bytes open to a message or a typed error, and what a sealer
    // of the same key writes opens to the same message.
    {
        use crate::world::seal::{BusKey, Opener, Sealer};
        let key = BusKey::derive(&zone_core::netcode::Key::from_bytes([5; 32]));
        let mut opener = Opener::new(key.clone());
        let _ = opener.open(data);
        if let Ok(m) = BusMessage::decode(data) {
            let sealed = Sealer::new(key, m.from(), u64::MAX).seal(&m);
            if let Ok(sealed) = sealed {
                let opened = Opener::new(BusKey::derive(&zone_core::netcode::Key::from_bytes(
                    [5; 32],
                )))
                .open(&sealed);
                assert_eq!(opened.map(|(_, o)| o), Ok(m), "a sealed message opens");
            }
        }
    }
    let Some(mut host) = bus_host() else {
        return;
    };
    let mut b = Bytes(data);
    let mut won: std::collections::BTreeSet<u64> = std::collections::BTreeSet::new();
    let mut now = std::time::Duration::ZERO;
    let mut claims = Vec::new();
    let mut records = 0;
    for _ in 0..64 {
        if b.0.is_empty() {
            break;
        }
        let len = usize::from(b.u16() % 2_048).min(b.0.len());
        let (frame, rest) = b.0.split_at(len);
        b.0 = rest;
        let control = b.u8();
        if let Ok(m) = BusMessage::decode(frame) {
            host.handle_bus(now, m);
        }
        // Everything spooled so far becomes durable, unless the control byte's bit 6 says
        // the disk is slow this time.
        while let Some(effect) = host.poll_effect() {
            match effect {
                crate::effects::Effect::Claim(req) => claims.push(req),
                crate::effects::Effect::Spool(_) => records += 1,
                _ => {}
            }
        }
        if control & 0x40 == 0 {
            host.handle_flushed(records);
        }
        for req in claims.drain(..) {
            let result = match control % 3 {
                0 => {
                    won.insert(req.player.0);
                    Ok(Claim::Won(Owner {
                        zone: ZoneId(1),
                        epoch: req.floor + 1,
                    }))
                }
                1 => Ok(Claim::Lost(None)),
                _ => Err(StoreError::Unavailable("fuzz".into())),
            };
            host.handle_claimed(now, req, result);
        }
        if control & 0x80 != 0 {
            now += std::time::Duration::from_millis(u64::from(control & 0x3F) * 16);
            host.tick(now, 1_800_000_000_000);
        }
        host.check_invariants().expect("presence invariants");
    }
    let players: Vec<PlayerId> = host.zone().players().map(|(p, _)| p).collect();
    for p in &players {
        assert!(won.contains(&p.0), "player {p:?} held without a won claim");
    }
    let mut sorted = players.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), players.len(), "a player held twice");
}

fn bus_host() -> Option<crate::host::ZoneHost> {
    use zone_core::netcode::Key;
    let grid = zone_core::world::WorldGrid::of_tiles(2, 1, 32, 1).ok()?;
    let zone = zone_core::Zone::new(grid.zone_config(zone_core::ZoneId(1), 4)?, 1).ok()?;
    let public: std::net::SocketAddr = "127.0.0.1:40000".parse().ok()?;
    let config = crate::host::HostConfig {
        protocol_id: 1,
        public_addresses: vec![public],
        max_clients: 8,
        max_packets_per_client_tick: 8,
        run: 1,
        fence: 1,
        global_sequence_random: [3; 8],
        world: Some(crate::world::WorldPlace::new(
            grid,
            zone_core::ZoneId(1),
            public,
        )),
        snapshot_interval: 1,
    };
    crate::host::ZoneHost::new(
        zone,
        &config,
        Key::from_bytes([1; 32]),
        Key::from_bytes([2; 32]),
    )
    .ok()
}

fn bus_samples() -> Vec<crate::world::bus::BusMessage> {
    use crate::world::bus::{BusMessage, GhostEntity, RefuseReason};
    let state = PlayerState::new_character(31.5, 10.0, 100).claimed(3);
    vec![
        BusMessage::Transfer {
            handoff: 1,
            from: zone_core::ZoneId(2),
            to: zone_core::ZoneId(1),
            player: PlayerId(7),
            state,
            epoch: 3,
        },
        BusMessage::Accepted {
            handoff: 9,
            from: zone_core::ZoneId(1),
            to: zone_core::ZoneId(2),
            player: PlayerId(8),
            epoch: 4,
            address: std::net::SocketAddr::from(([127, 0, 0, 1], 40_001)),
        },
        BusMessage::Refused {
            handoff: 9,
            from: zone_core::ZoneId(1),
            to: zone_core::ZoneId(2),
            player: PlayerId(8),
            reason: RefuseReason::Full,
        },
        BusMessage::Evict {
            from: zone_core::ZoneId(2),
            to: zone_core::ZoneId(1),
            player: PlayerId(7),
            epoch: 99,
        },
        BusMessage::Ghosts {
            from: zone_core::ZoneId(2),
            to: zone_core::ZoneId(1),
            tick: 40,
            entities: (0..5)
                .map(|i| GhostEntity {
                    entity: zone_core::protocol::EntitySample {
                        id: EntityId(i),
                        kind: if i == 2 {
                            zone_core::protocol::NetKind::Player
                        } else {
                            zone_core::protocol::NetKind::Npc
                        },
                        x: 2_100 + i as i32 * 64,
                        y: 640,
                        vx: 0,
                        vy: 0,
                        facing: 0,
                        health: 30,
                        max_health: 30,
                        alive: true,
                        ext: Default::default(),
                    },
                    player: (i == 2).then_some(PlayerId(7)),
                })
                .collect(),
        },
    ]
}

/// Meaningful starting inputs per target: whole, torn and corrupted segments, a record, valid
/// and invalid configuration files.
pub fn seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let records = sample_records();
    let whole = segment(&records, 1);
    let torn = whole[..whole.len() - 5].to_vec();
    let mut corrupt_middle = whole.clone();
    let second = FRAME_HEADER + {
        let mut p = Vec::new();
        records[0].encode_into(&mut p).expect("encodes");
        p.len()
    };
    corrupt_middle[second + FRAME_HEADER + 2] ^= 0x40;
    let mut record = Vec::new();
    records[2].encode_into(&mut record).expect("encodes");
    // A recipe for the structured part: 5 records from seq 100, some damage and a cut.
    let recipe: Vec<u8> = [5u8, 100, 0]
        .into_iter()
        .chain((0..400u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8))
        .collect();

    let default = toml::to_string(&Config::default()).unwrap_or_default();
    let full = r#"data_dir = "/var/lib/zone"
shutdown_deadline_s = 20
max_catch_up_ticks = 5
bots = 0

[zone]
id = 7
seed = 99
arena_size = 512
npcs = 500
rules_file = "rules.toml"

[net]
bind = "0.0.0.0:40000"
public_address = "203.0.113.9:40000"
protocol_id = 6507881400474222593
private_key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
max_clients = 256
token_expiry_s = 120
timeout_s = 15
max_packets_per_client_tick = 4

[admin]
bind = "[::1]:9100"

[log]
format = "json"
level = "zone_shell=debug,info"

[store]
redis_url = "redis://:secret@10.0.0.5:6379/0"
scylla_uri = "10.0.0.6:9042,10.0.0.7:9042"
scylla_keyspace = "zone_eu"
scylla_replication_factor = 3
command_timeout_ms = 1500
group_commit_ms = 5
spool_max_bytes = 1073741824
flush_batch = 512
position_flush_ms = 1000
hot_ttl_s = 600
lease_ttl_ms = 6000

[world]
columns = 3
rows = 2
zones = [7, 8]
ghost_margin = 30.0
handoff_timeout_ms = 1500
"#;
    let bus: Vec<Vec<u8>> = bus_samples()
        .iter()
        .map(|m| m.encode().expect("encodes"))
        .collect();
    let mut stream = Vec::new();
    for (i, m) in bus.iter().enumerate() {
        stream.extend_from_slice(&(m.len() as u16).to_le_bytes());
        stream.extend_from_slice(m);
        stream.push(if i % 2 == 0 { 0x81 } else { 0x03 });
    }
    let mut bus_seeds = bus;
    bus_seeds.push(stream);
    vec![
        (
            "spool_decode",
            vec![whole, torn, corrupt_middle, record, recipe],
        ),
        ("bus_decode", bus_seeds),
        (
            "config_parse",
            vec![
                default.into_bytes(),
                full.as_bytes().to_vec(),
                b"[net]\nbindd = \"127.0.0.1:1\"\n".to_vec(),
                b"[zone]\narena_size = 3\n[store]\nredis_url = \"http://x\"\n".to_vec(),
            ],
        ),
    ]
}

//! Server configuration: one serde struct with defaults, loaded from a TOML file, overridden by
//! `ZONE_*` environment variables and command-line flags (in that order of precedence, lowest
//! first), and validated at start-up with errors that name the bad field.
//!
//! Secrets (the netcode private key) are never logged: `Debug` redacts them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zone_core::ZoneId;

/// Most NPCs `zone.npcs` accepts: what one zone simulates at 60 Hz with room for its players
/// (the standard scenario runs 5,000).
pub const MAX_ZONE_NPCS: u32 = 20_000;

/// Everything `zone-server run` can be told.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The simulated zone (of a world of several: every zone's common settings).
    pub zone: ZoneSection,
    /// The world of zones: its grid and which zones this process simulates.
    pub world: WorldSection,
    /// UDP transport and netcode.io.
    pub net: NetSection,
    /// Admin HTTP: metrics and health.
    pub admin: AdminSection,
    /// Logging.
    pub log: LogSection,
    /// Persistence: hot store (Redis or embedded), cold store (ScyllaDB or embedded), spool.
    pub store: StoreSection,
    /// Where the server keeps local state: dev key, write-behind spool, embedded stores.
    pub data_dir: PathBuf,
    /// Most time a graceful shutdown may take, seconds.
    pub shutdown_deadline_s: u64,
    /// Ticks run back to back to catch up after an overrun before the schedule is reset.
    pub max_catch_up_ticks: u32,
    /// In-process demo bots that connect over loopback UDP (0 in production).
    pub bots: u32,
}

/// The simulated zone; in a world of several, the settings every zone shares.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ZoneSection {
    /// Zone id (in a world: the first zone's; the others follow row by row).
    pub id: u32,
    /// Seed of all of the zone's randomness (each further zone of a world mixes in its id).
    pub seed: u64,
    /// Side of the generated arena map, tiles (in a world: of each zone).
    pub arena_size: u32,
    /// NPCs in the zone (in a world: in each zone).
    pub npcs: u32,
    /// Gameplay rules file (TOML); built-in defaults when absent.
    pub rules_file: Option<PathBuf>,
    /// Game plugins every zone runs after the built-in game, by name (see
    /// [`crate::game::KNOWN_PLUGINS`]); the demo world runs the example capture points.
    pub plugins: Vec<String>,
}

/// The world: `columns x rows` zones of `zone.arena_size` tiles, numbered row by row from
/// `zone.id`. A process simulates `zones` of them (all by default: the whole world in one
/// process); zone number `i` of that list listens on `net.bind`'s port + `i` (and is reached
/// at `net.public_address`'s port + `i`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorldSection {
    /// Zones across.
    pub columns: u32,
    /// Zones down.
    pub rows: u32,
    /// The zones this process simulates; empty: every zone of the world.
    pub zones: Vec<u32>,
    /// Entities this close to a border are shown across it (world units).
    pub ghost_margin: f32,
    /// A handoff unanswered for this long is taken back, milliseconds.
    pub handoff_timeout_ms: u64,
}

impl Default for WorldSection {
    fn default() -> Self {
        Self {
            columns: 2,
            rows: 2,
            zones: Vec::new(),
            ghost_margin: 36.0,
            handoff_timeout_ms: 2_000,
        }
    }
}

/// One zone this process simulates, with its sockets' addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostedZone {
    /// The zone.
    pub zone: ZoneId,
    /// Seed of its randomness.
    pub seed: u64,
    /// Address its UDP socket binds.
    pub bind: SocketAddr,
    /// Address its clients reach it at (written into connect tokens).
    pub public_address: SocketAddr,
}

/// UDP transport, netcode.io and the packet phase of a tick.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NetSection {
    /// Address the UDP socket binds.
    pub bind: SocketAddr,
    /// Address clients reach the server at (written into connect tokens); defaults to `bind`.
    pub public_address: Option<SocketAddr>,
    /// netcode.io protocol id shared with clients and the login backend.
    pub protocol_id: u64,
    /// netcode.io private key, 64 hex digits, shared with the login backend. When absent, a
    /// development key is created in `data_dir/dev-private.key`.
    pub private_key: Option<String>,
    /// Most connected clients.
    pub max_clients: usize,
    /// Lifetime of minted connect tokens, seconds.
    pub token_expiry_s: u64,
    /// Connection timeout written into minted tokens, seconds.
    pub timeout_s: i32,
    /// Most packets one client may send per tick; the rest are dropped and counted.
    pub max_packets_per_client_tick: u32,
    /// Receive buffer asked for the UDP socket, bytes (the kernel may grant less: raise
    /// `net.core.rmem_max`; a warning says so). 0 keeps the OS default (about 208 KiB on
    /// Linux, which a loaded server overflows).
    pub recv_buffer_bytes: usize,
    /// Snapshots per second each client gets: a divisor of the tick rate (the rules'
    /// `tick_hz`, 60 by default). Absent: one every tick. Clients are spread evenly over the
    /// ticks, so each tick builds `snapshot_hz / tick_hz` of the packets.
    pub snapshot_hz: Option<u32>,
    /// Threads each zone builds and seals its packets on, its tick thread included
    /// (0: the available cores divided among the zones this process hosts).
    pub replication_threads: usize,
}

/// Persistence. Without `redis_url` the hot store lives in the process; without `scylla_uri`
/// the cold store is an SQLite file in `data_dir`; either way the spool is in `data_dir/spool`.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// Redis URL, e.g. `redis://127.0.0.1:6379/0` (may carry a password: never logged).
    pub redis_url: Option<String>,
    /// ScyllaDB contact points, comma-separated `host:port`.
    pub scylla_uri: Option<String>,
    /// ScyllaDB keyspace.
    pub scylla_keyspace: String,
    /// Replication factor `zone-server migrate` gives the keyspace (NetworkTopologyStrategy).
    pub scylla_replication_factor: u32,
    /// Timeout of every store command, milliseconds.
    pub command_timeout_ms: u64,
    /// Group commit: the spool fsyncs at most this often, milliseconds.
    pub group_commit_ms: u64,
    /// Disk budget of the spool, bytes. When full, new combat events are dropped (counted)
    /// and the server reports not ready; player saves are still written.
    pub spool_max_bytes: u64,
    /// Records per flush batch to the cold store.
    pub flush_batch: usize,
    /// Player positions are written to the hot store this often, milliseconds.
    pub position_flush_ms: u64,
    /// Sessions, presence and hot player state expire after this many seconds unless refreshed.
    pub hot_ttl_s: u64,
    /// Zone lease lifetime, milliseconds (renewed every third of it, at most every 5 s). The hot-store
    /// outage a zone plays through is 7/9 of it (70 s of the default 90 s); a standby takes
    /// over a crashed holder's zone within about one lifetime (see `effects::lease`).
    pub lease_ttl_ms: u64,
}

/// Admin HTTP.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// Address of `/metrics`, `/healthz`, `/readyz` and the world page (`/`).
    pub bind: SocketAddr,
    /// Where other zone servers' world pages link to this one (`http://host:port`); unset: the
    /// bind address, or, when that is a wildcard, the zone's public host with the bind port.
    pub public_url: Option<String>,
}

/// Logging.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// `human` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `zone_shell=debug,info`.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            zone: ZoneSection::default(),
            world: WorldSection::default(),
            net: NetSection::default(),
            admin: AdminSection::default(),
            log: LogSection::default(),
            store: StoreSection::default(),
            data_dir: PathBuf::from("zone-data"),
            shutdown_deadline_s: 10,
            max_catch_up_ticks: 3,
            bots: 0,
        }
    }
}

impl Default for ZoneSection {
    fn default() -> Self {
        Self {
            id: 1,
            seed: 1,
            arena_size: 128,
            npcs: 100,
            rules_file: None,
            plugins: vec![zone_capture::NAME.to_owned()],
        }
    }
}

impl Default for NetSection {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 40_000)),
            public_address: None,
            protocol_id: 0x5A4F_4E45_0000_0001,
            private_key: None,
            max_clients: 1_024,
            token_expiry_s: 300,
            timeout_s: 10,
            max_packets_per_client_tick: 8,
            recv_buffer_bytes: 4 << 20,
            snapshot_hz: None,
            replication_threads: 0,
        }
    }
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            redis_url: None,
            scylla_uri: None,
            scylla_keyspace: "zone".into(),
            scylla_replication_factor: 3,
            command_timeout_ms: 2_000,
            group_commit_ms: 5,
            spool_max_bytes: 1 << 30,
            flush_batch: 256,
            position_flush_ms: 1_000,
            hot_ttl_s: 600,
            lease_ttl_ms: 90_000,
        }
    }
}

impl std::fmt::Debug for StoreSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSection")
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("scylla_uri", &self.scylla_uri)
            .field("scylla_keyspace", &self.scylla_keyspace)
            .field("scylla_replication_factor", &self.scylla_replication_factor)
            .field("command_timeout_ms", &self.command_timeout_ms)
            .field("group_commit_ms", &self.group_commit_ms)
            .field("spool_max_bytes", &self.spool_max_bytes)
            .field("flush_batch", &self.flush_batch)
            .field("position_flush_ms", &self.position_flush_ms)
            .field("hot_ttl_s", &self.hot_ttl_s)
            .field("lease_ttl_ms", &self.lease_ttl_ms)
            .finish()
    }
}

/// A URL with any password replaced, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}<redacted>{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 9_100)),
            public_url: None,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: "human".into(),
            level: "info".into(),
        }
    }
}

impl NetSection {
    /// Ticks between two snapshots of a client at `tick_hz`, from `snapshot_hz`; an error
    /// naming the field when it does not divide the tick rate.
    pub fn snapshot_interval(&self, tick_hz: u32) -> Result<u32, ConfigError> {
        let Some(hz) = self.snapshot_hz else {
            return Ok(1);
        };
        if hz == 0 || hz > tick_hz || !tick_hz.is_multiple_of(hz) {
            return Err(invalid(
                "net.snapshot_hz",
                format!("must divide the tick rate ({tick_hz} Hz), got {hz}"),
            ));
        }
        Ok(tick_hz / hz)
    }

    /// Lane threads per zone when `zones` zones share this process.
    pub fn threads_per_zone(&self, zones: usize) -> usize {
        if self.replication_threads > 0 {
            return self.replication_threads;
        }
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        (cores / zones.max(1)).clamp(1, crate::host::lanes::MAX_LANES)
    }
}

impl std::fmt::Debug for NetSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetSection")
            .field("bind", &self.bind)
            .field("public_address", &self.public_address)
            .field("protocol_id", &format_args!("{:#x}", self.protocol_id))
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "<redacted>"),
            )
            .field("max_clients", &self.max_clients)
            .field("token_expiry_s", &self.token_expiry_s)
            .field("timeout_s", &self.timeout_s)
            .field(
                "max_packets_per_client_tick",
                &self.max_packets_per_client_tick,
            )
            .field("recv_buffer_bytes", &self.recv_buffer_bytes)
            .field("snapshot_hz", &self.snapshot_hz)
            .field("replication_threads", &self.replication_threads)
            .finish()
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("zone", &self.zone)
            .field("world", &self.world)
            .field("net", &self.net)
            .field("admin", &self.admin)
            .field("log", &self.log)
            .field("store", &self.store)
            .field("data_dir", &self.data_dir)
            .field("shutdown_deadline_s", &self.shutdown_deadline_s)
            .field("max_catch_up_ticks", &self.max_catch_up_ticks)
            .field("bots", &self.bots)
            .finish()
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config: cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this struct (unknown or mistyped field).
    #[error("config: {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the field.
        message: String,
    },
    /// A field holds a value the server cannot run with.
    #[error("config: field `{field}` {problem}")]
    Invalid {
        /// Dotted path of the field.
        field: &'static str,
        /// What is wrong, and what was expected.
        problem: String,
    },
}

fn invalid(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        problem: problem.into(),
    }
}

impl Config {
    /// Reads a TOML file (missing fields take defaults).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })
    }

    /// The address written into connect tokens (of the first zone this process simulates).
    pub fn public_address(&self) -> SocketAddr {
        self.net.public_address.unwrap_or(self.net.bind)
    }

    /// The world grid.
    pub fn grid(&self) -> Result<zone_core::world::WorldGrid, ConfigError> {
        zone_core::world::WorldGrid::of_tiles(
            self.world.columns,
            self.world.rows,
            self.zone.arena_size,
            self.zone.id,
        )
        .map_err(|e| invalid("world", e.to_string()))
    }

    /// Whether this is a world of more than one zone.
    pub fn is_world(&self) -> bool {
        u64::from(self.world.columns) * u64::from(self.world.rows) > 1
    }

    /// The zones this process simulates, in order, with their seeds and addresses.
    pub fn hosted_zones(&self) -> Result<Vec<HostedZone>, ConfigError> {
        let grid = self.grid()?;
        let ids: Vec<u32> = if self.world.zones.is_empty() {
            grid.zones().map(|z| z.0).collect()
        } else {
            self.world.zones.clone()
        };
        let public = self.public_address();
        let shifted = |a: SocketAddr, i: usize| {
            let mut a = a;
            if a.port() != 0 {
                a.set_port(a.port().saturating_add(i as u16));
            }
            a
        };
        let zones = ids
            .iter()
            .enumerate()
            .map(|(i, &zone)| HostedZone {
                zone: ZoneId(zone),
                seed: if zone == self.zone.id {
                    self.zone.seed
                } else {
                    self.zone.seed ^ u64::from(zone).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                },
                bind: shifted(self.net.bind, i),
                public_address: shifted(public, i),
            })
            .collect::<Vec<_>>();
        Ok(zones)
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Err(e) = crate::game::game_of(&self.zone.plugins) {
            return Err(invalid("zone.plugins", e.to_string()));
        }
        if let Some(url) = &self.admin.public_url
            && !crate::admin::neighbours::is_page_url(url)
        {
            return Err(invalid(
                "admin.public_url",
                format!(
                    "must be an http:// or https:// URL of at most 200 characters, got {url:?}"
                ),
            ));
        }
        if !(16..=4096).contains(&self.zone.arena_size) {
            return Err(invalid(
                "zone.arena_size",
                format!("must be 16..=4096 tiles, got {}", self.zone.arena_size),
            ));
        }
        let w = &self.world;
        if !(1..=64).contains(&w.columns) || !(1..=64).contains(&w.rows) {
            return Err(invalid(
                "world.columns",
                format!(
                    "columns and rows must be 1..=64, got {}x{}",
                    w.columns, w.rows
                ),
            ));
        }
        let count = u64::from(w.columns) * u64::from(w.rows);
        if u64::from(self.zone.id) + count - 1 > u64::from(u32::MAX) {
            return Err(invalid(
                "zone.id",
                "the world's zone ids would overflow u32",
            ));
        }
        let last = u64::from(self.zone.id) + count - 1;
        let mut seen = std::collections::BTreeSet::new();
        for z in &w.zones {
            if u64::from(*z) < u64::from(self.zone.id) || u64::from(*z) > last {
                return Err(invalid(
                    "world.zones",
                    format!(
                        "zone {z} is not in the world (zones {}..={last})",
                        self.zone.id
                    ),
                ));
            }
            if !seen.insert(*z) {
                return Err(invalid("world.zones", format!("zone {z} listed twice")));
            }
        }
        let hosted = if w.zones.is_empty() {
            count
        } else {
            w.zones.len() as u64
        };
        for (field, port) in [
            ("net.bind", self.net.bind.port()),
            ("net.public_address", self.public_address().port()),
        ] {
            if port != 0 && u64::from(port) + hosted - 1 > 65_535 {
                return Err(invalid(
                    field,
                    format!("port {port} + {hosted} zones runs past 65535"),
                ));
            }
        }
        if !(w.ghost_margin.is_finite() && (0.0..=1_000.0).contains(&w.ghost_margin)) {
            return Err(invalid(
                "world.ghost_margin",
                format!("must be 0..=1000 world units, got {}", w.ghost_margin),
            ));
        }
        // What one zone can simulate at its tick rate with room for players (the standard
        // scenario has 5,000); the core's own bound is far above it.
        if self.zone.npcs > MAX_ZONE_NPCS {
            return Err(invalid(
                "zone.npcs",
                format!("must be at most {MAX_ZONE_NPCS}, got {}", self.zone.npcs),
            ));
        }
        if !(1..=zone_core::netcode::MAX_CLIENTS).contains(&self.net.max_clients) {
            return Err(invalid(
                "net.max_clients",
                format!(
                    "must be 1..={}, got {}",
                    zone_core::netcode::MAX_CLIENTS,
                    self.net.max_clients
                ),
            ));
        }
        if let Some(key) = &self.net.private_key {
            parse_key(key).map_err(|p| invalid("net.private_key", p))?;
        }
        if self.public_address().ip().is_unspecified() {
            return Err(invalid(
                "net.public_address",
                "must be set to a reachable address when net.bind is a wildcard (0.0.0.0 or ::)",
            ));
        }
        if self.net.recv_buffer_bytes > 1 << 30 {
            return Err(invalid(
                "net.recv_buffer_bytes",
                format!("must be at most 1 GiB, got {}", self.net.recv_buffer_bytes),
            ));
        }
        if self.net.max_packets_per_client_tick == 0 {
            return Err(invalid("net.max_packets_per_client_tick", "must be > 0"));
        }
        if self.net.snapshot_hz == Some(0) {
            return Err(invalid("net.snapshot_hz", "must be > 0"));
        }
        if self.net.replication_threads > crate::host::lanes::MAX_LANES {
            return Err(invalid(
                "net.replication_threads",
                format!(
                    "must be at most {}, got {}",
                    crate::host::lanes::MAX_LANES,
                    self.net.replication_threads
                ),
            ));
        }
        if !matches!(self.log.format.as_str(), "human" | "json") {
            return Err(invalid(
                "log.format",
                format!("must be \"human\" or \"json\", got {:?}", self.log.format),
            ));
        }
        let st = &self.store;
        if let Some(url) = &st.redis_url {
            let scheme_ok = [
                "redis://",
                "rediss://",
                "redis-sentinel://",
                "rediss-sentinel://",
            ]
            .iter()
            .any(|s| url.starts_with(s));
            if !scheme_ok {
                return Err(invalid(
                    "store.redis_url",
                    format!(
                        "must start with redis://, rediss:// or (behind Sentinel) redis-sentinel://, got {:?}",
                        redact_url(url)
                    ),
                ));
            }
            // The client's own parser: a sentinel URL needs ?sentinelServiceName=NAME.
            if let Err(e) = fred::types::config::Config::from_url(url) {
                return Err(invalid(
                    "store.redis_url",
                    format!("{:?} is not a valid Redis URL: {e}", redact_url(url)),
                ));
            }
        }
        if let Some(uri) = &st.scylla_uri
            && uri.split(',').any(|h| h.trim().is_empty())
        {
            return Err(invalid(
                "store.scylla_uri",
                "must be comma-separated host:port contact points",
            ));
        }
        let keyspace_ok = !st.scylla_keyspace.is_empty()
            && st.scylla_keyspace.len() <= 48
            && st
                .scylla_keyspace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && st
                .scylla_keyspace
                .starts_with(|c: char| c.is_ascii_alphabetic());
        if !keyspace_ok {
            return Err(invalid(
                "store.scylla_keyspace",
                "must be 1-48 characters of letters, digits and _, starting with a letter",
            ));
        }
        // Upper bounds too: every duration here is added to a clock somewhere, and none is
        // useful beyond these.
        const DAY_S: u64 = 86_400;
        for (field, value, min, max) in [
            (
                "store.command_timeout_ms",
                st.command_timeout_ms,
                1,
                600_000,
            ),
            ("store.group_commit_ms", st.group_commit_ms, 1, 10_000),
            (
                "store.spool_max_bytes",
                st.spool_max_bytes,
                1 << 20,
                1 << 44,
            ),
            (
                "store.position_flush_ms",
                st.position_flush_ms,
                10,
                3_600_000,
            ),
            ("store.hot_ttl_s", st.hot_ttl_s, 1, 30 * DAY_S),
            ("store.lease_ttl_ms", st.lease_ttl_ms, 300, 3_600_000),
            (
                "store.scylla_replication_factor",
                u64::from(st.scylla_replication_factor),
                1,
                16,
            ),
            ("shutdown_deadline_s", self.shutdown_deadline_s, 1, 3_600),
            ("net.token_expiry_s", self.net.token_expiry_s, 1, 30 * DAY_S),
            (
                "world.handoff_timeout_ms",
                w.handoff_timeout_ms,
                100,
                60_000,
            ),
        ] {
            if !(min..=max).contains(&value) {
                return Err(invalid(
                    field,
                    format!("must be {min}..={max}, got {value}"),
                ));
            }
        }
        // A client that vanishes must lose its slot: netcode's "no timeout" (<= 0) is refused.
        if !(1..=300).contains(&self.net.timeout_s) {
            return Err(invalid(
                "net.timeout_s",
                format!("must be 1..=300 seconds, got {}", self.net.timeout_s),
            ));
        }
        if !(1..=10_000).contains(&st.flush_batch) {
            return Err(invalid(
                "store.flush_batch",
                format!("must be 1..=10000, got {}", st.flush_batch),
            ));
        }
        // The ownership records of held players are refreshed with positions: several
        // refreshes must fit in their lifetime.
        if st.position_flush_ms.saturating_mul(3) > st.hot_ttl_s.saturating_mul(1_000) {
            return Err(invalid(
                "store.position_flush_ms",
                format!(
                    "must be at most a third of store.hot_ttl_s ({} s), got {} ms",
                    st.hot_ttl_s, st.position_flush_ms
                ),
            ));
        }
        Ok(())
    }
}

/// Parses 64 hex digits into a 32-byte key.
pub fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    if text.len() != 64 {
        return Err(format!(
            "must be 64 hex digits, got {} characters",
            text.len()
        ));
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        let pair = text.get(2 * i..2 * i + 2).ok_or("must be ASCII hex")?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| format!("must be hex, found {pair:?}"))?;
    }
    Ok(key)
}

/// Formats a key as 64 hex digits (for writing the dev key file only).
pub fn format_key(key: &[u8; 32]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let c = Config::default();
        c.validate().unwrap();
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), c);
    }

    #[test]
    fn errors_name_the_field() {
        let mut c = Config::default();
        c.net.private_key = Some("abc".into());
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                field: "net.private_key",
                ..
            })
        ));
        let mut c = Config::default();
        c.net.bind = "0.0.0.0:1".parse().unwrap();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                field: "net.public_address",
                ..
            })
        ));
        let err = toml::from_str::<Config>("[net]\nbindd = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bindd"), "{err}");
    }

    /// The values of issue 23 that panicked or were accepted and then did harm.
    #[test]
    fn durations_and_counts_past_their_bounds_are_refused_naming_the_field() {
        type Case = (&'static str, fn(&mut Config));
        let cases: [Case; 6] = [
            ("store.hot_ttl_s", |c| c.store.hot_ttl_s = u64::MAX),
            ("shutdown_deadline_s", |c| c.shutdown_deadline_s = u64::MAX),
            ("net.timeout_s", |c| c.net.timeout_s = 0),
            ("net.timeout_s", |c| c.net.timeout_s = -1),
            ("zone.npcs", |c| c.zone.npcs = 200_000),
            ("store.lease_ttl_ms", |c| c.store.lease_ttl_ms = u64::MAX),
        ];
        for (field, set) in cases {
            let mut c = Config::default();
            set(&mut c);
            match c.validate() {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn redis_urls_plain_tls_and_behind_sentinel() {
        let with = |url: &str| {
            let mut c = Config::default();
            c.store.redis_url = Some(url.to_owned());
            c.validate()
        };
        for ok in [
            "redis://127.0.0.1:6379/0",
            "rediss://user:pw@cache.internal:6380",
            "redis-sentinel://10.0.0.1:26379/0?sentinelServiceName=zs&node=10.0.0.2:26379",
        ] {
            with(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "127.0.0.1:6379",
            "http://127.0.0.1:6379",
            "redis-sentinel://10.0.0.1:26379/0",
            // More sentinels are `&node=host:port`, not a comma list.
            "redis-sentinel://10.0.0.1:26379,10.0.0.2:26379/0?sentinelServiceName=zs",
        ] {
            assert!(
                matches!(
                    with(bad),
                    Err(ConfigError::Invalid {
                        field: "store.redis_url",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn keys_parse_and_never_print() {
        let hex = "00".repeat(31) + "ff";
        assert_eq!(parse_key(&hex).unwrap()[31], 0xff);
        assert_eq!(format_key(&parse_key(&hex).unwrap()), hex);
        let mut c = Config::default();
        c.net.private_key = Some(hex.clone());
        assert!(!format!("{c:?}").contains(&hex));
    }
}

//! The embedded cold store: one SQLite file (`data_dir/cold.sqlite`, WAL, `synchronous=FULL`)
//! with the same tables and the same idempotence rules as the ScyllaDB schema, used when no
//! `store.scylla_uri` is configured. Calls run on tokio's blocking pool.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use zone_core::{
    AbilityId, CombatEvent, EntityId, EventId, PlayerId, PlayerState, PlayerStats, SavedPlugins,
    Version, ZoneId,
};

use super::cold::{ColdStore, StoreError, StoredPlayer};
use super::record::{ProfileRecord, Record};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS combat_events (
    zone_id INTEGER NOT NULL, day INTEGER NOT NULL, run INTEGER NOT NULL, event_id BLOB NOT NULL,
    tick INTEGER NOT NULL, attacker INTEGER NOT NULL, attacker_player INTEGER,
    target INTEGER NOT NULL, target_player INTEGER, ability INTEGER NOT NULL,
    damage INTEGER NOT NULL, killed INTEGER NOT NULL, x REAL NOT NULL, y REAL NOT NULL,
    unix_ms INTEGER NOT NULL,
    PRIMARY KEY (zone_id, day, run, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS player_state (
    player_id INTEGER PRIMARY KEY, zone_id INTEGER NOT NULL,
    x REAL NOT NULL, y REAL NOT NULL, facing REAL NOT NULL, health INTEGER NOT NULL,
    kills INTEGER NOT NULL, deaths INTEGER NOT NULL, damage_dealt INTEGER NOT NULL,
    damage_taken INTEGER NOT NULL, xp INTEGER NOT NULL,
    version INTEGER NOT NULL, write_order INTEGER NOT NULL, unix_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS player_plugins (
    player_id INTEGER PRIMARY KEY, plugins BLOB NOT NULL, write_order INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS player_profiles (
    player_id INTEGER PRIMARY KEY, name TEXT NOT NULL, created_unix_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS zone_fences (
    zone_id INTEGER NOT NULL, fence INTEGER NOT NULL, since_ms INTEGER NOT NULL,
    PRIMARY KEY (zone_id, fence)
) WITHOUT ROWID;
";

/// The SQLite cold store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// u64 values are stored as the i64 with the same bits.
fn to_sql(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

fn from_sql(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

/// Why a record cannot be stored, if it cannot.
fn invalid(record: &Record) -> Option<String> {
    match record {
        Record::Combat(c) => (!c.event.x.is_finite() || !c.event.y.is_finite())
            .then(|| "combat event position is not finite".to_owned()),
        Record::PlayerSave(s) => {
            (!s.state.x.is_finite() || !s.state.y.is_finite() || !s.state.facing.is_finite())
                .then(|| "player state is not finite".to_owned())
        }
        Record::Profile(p) => (p.name.is_empty() || p.name.len() > 64)
            .then(|| format!("profile name of {} bytes (1..=64)", p.name.len())),
    }
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(unavailable)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(unavailable)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(unavailable)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn
                .lock()
                .map_err(|_| StoreError::Unavailable("sqlite connection poisoned".into()))?;
            f(&mut c)
        })
        .await
        .map_err(unavailable)?
    }
}

fn write_batch(conn: &mut Connection, batch: &[Record]) -> Result<(), StoreError> {
    if let Some((index, reason)) = batch
        .iter()
        .enumerate()
        .find_map(|(i, r)| invalid(r).map(|why| (i, why)))
    {
        return Err(StoreError::Rejected { index, reason });
    }
    {
        let mut superseded = conn
            .prepare_cached(
                "SELECT fence FROM zone_fences WHERE zone_id = ?1 AND fence > ?2 \
                 AND since_ms <= ?3 LIMIT 1",
            )
            .map_err(unavailable)?;
        for (index, record) in batch.iter().enumerate() {
            if let Record::PlayerSave(s) = record {
                let newer: Option<i64> = superseded
                    .query_row(params![s.zone.0, to_sql(s.fence), to_sql(s.unix_ms)], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(unavailable)?;
                if let Some(f) = newer {
                    let reason = format!(
                        "save of zone {} under fence {} after fence {} took over",
                        s.zone,
                        s.fence,
                        from_sql(f)
                    );
                    return Err(StoreError::Rejected { index, reason });
                }
            }
        }
    }
    let tx = conn.transaction().map_err(unavailable)?;
    {
        let mut combat = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO combat_events VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )
            .map_err(unavailable)?;
        let mut save = tx
            .prepare_cached(
                "INSERT INTO player_state VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
                 ON CONFLICT(player_id) DO UPDATE SET zone_id = excluded.zone_id, \
                 x = excluded.x, y = excluded.y, facing = excluded.facing, \
                 health = excluded.health, kills = excluded.kills, deaths = excluded.deaths, \
                 damage_dealt = excluded.damage_dealt, damage_taken = excluded.damage_taken, \
                 xp = excluded.xp, version = excluded.version, \
                 write_order = excluded.write_order, unix_ms = excluded.unix_ms \
                 WHERE excluded.write_order > player_state.write_order",
            )
            .map_err(unavailable)?;
        let mut plugins = tx
            .prepare_cached(
                "INSERT INTO player_plugins VALUES (?1, ?2, ?3) \
                 ON CONFLICT(player_id) DO UPDATE SET plugins = excluded.plugins, \
                 write_order = excluded.write_order \
                 WHERE excluded.write_order > player_plugins.write_order",
            )
            .map_err(unavailable)?;
        let mut profile = tx
            .prepare_cached("INSERT OR IGNORE INTO player_profiles VALUES (?1, ?2, ?3)")
            .map_err(unavailable)?;
        for record in batch {
            match record {
                Record::Combat(c) => {
                    let e = &c.event;
                    combat
                        .execute(params![
                            c.zone.0,
                            c.day(),
                            to_sql(c.run),
                            e.id.0.to_be_bytes().to_vec(),
                            to_sql(e.tick),
                            e.attacker.0,
                            e.attacker_player.map(|p| to_sql(p.0)),
                            e.target.0,
                            e.target_player.map(|p| to_sql(p.0)),
                            e.ability.0,
                            e.damage,
                            e.killed,
                            f64::from(e.x),
                            f64::from(e.y),
                            to_sql(c.unix_ms),
                        ])
                        .map_err(unavailable)?;
                }
                Record::PlayerSave(s) => {
                    let st = &s.state;
                    save.execute(params![
                        to_sql(s.player.0),
                        s.zone.0,
                        f64::from(st.x),
                        f64::from(st.y),
                        f64::from(st.facing),
                        st.health,
                        st.stats.kills,
                        st.stats.deaths,
                        to_sql(st.stats.damage_dealt),
                        to_sql(st.stats.damage_taken),
                        to_sql(st.stats.xp),
                        to_sql(st.version.raw()),
                        s.write_order(),
                        to_sql(s.unix_ms),
                    ])
                    .map_err(unavailable)?;
                    plugins
                        .execute(params![
                            to_sql(s.player.0),
                            st.plugins.as_bytes(),
                            s.write_order()
                        ])
                        .map_err(unavailable)?;
                }
                Record::Profile(p) => {
                    profile
                        .execute(params![
                            to_sql(p.player.0),
                            p.name,
                            to_sql(p.created_unix_ms)
                        ])
                        .map_err(unavailable)?;
                }
            }
        }
    }
    tx.commit().map_err(unavailable)
}

/// A player's plugin state; empty for a player last saved before plugins (no row).
fn plugins_of(conn: &Connection, player: PlayerId) -> Result<SavedPlugins, StoreError> {
    let bytes: Option<Vec<u8>> = conn
        .query_row(
            "SELECT plugins FROM player_plugins WHERE player_id = ?1",
            params![to_sql(player.0)],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| StoreError::BadRow(e.to_string()))?;
    let bytes = bytes.unwrap_or_default();
    SavedPlugins::from_bytes(&bytes).ok_or_else(|| {
        StoreError::BadRow(format!(
            "player_plugins: {} bytes that are not saved plugin records",
            bytes.len()
        ))
    })
}

fn f32_of(v: f64, what: &str) -> Result<f32, StoreError> {
    let f = v as f32;
    if f.is_finite() {
        Ok(f)
    } else {
        Err(StoreError::BadRow(format!("{what} is not finite")))
    }
}

fn u32_of(v: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::BadRow(format!("{what} = {v} out of range")))
}

fn load(conn: &mut Connection, player: PlayerId) -> Result<Option<StoredPlayer>, StoreError> {
    type Row = (f64, f64, f64, i64, i64, i64, i64, i64, i64, i64);
    let row: Option<Row> = conn
        .query_row(
            "SELECT x, y, facing, health, kills, deaths, damage_dealt, damage_taken, xp, version \
             FROM player_state WHERE player_id = ?1",
            params![to_sql(player.0)],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            },
        )
        .optional()
        .map_err(|e| match e {
            rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::FromSqlConversionFailure(..) => StoreError::BadRow(e.to_string()),
            other => unavailable(other),
        })?;
    let Some((x, y, facing, health, kills, deaths, dealt, taken, xp, version)) = row else {
        return Ok(None);
    };
    let state = PlayerState {
        x: f32_of(x, "x")?,
        y: f32_of(y, "y")?,
        facing: f32_of(facing, "facing")?,
        health: u16::try_from(health)
            .map_err(|_| StoreError::BadRow(format!("health = {health} out of range")))?,
        stats: PlayerStats {
            kills: u32_of(kills, "kills")?,
            deaths: u32_of(deaths, "deaths")?,
            damage_dealt: from_sql(dealt),
            damage_taken: from_sql(taken),
            xp: from_sql(xp),
        },
        version: Version::from_raw(from_sql(version)),
        plugins: plugins_of(conn, player)?,
    };
    let profile = conn
        .query_row(
            "SELECT name, created_unix_ms FROM player_profiles WHERE player_id = ?1",
            params![to_sql(player.0)],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
        )
        .optional()
        .map_err(|e| StoreError::BadRow(e.to_string()))?
        .map(|(name, created)| ProfileRecord {
            player,
            name,
            created_unix_ms: from_sql(created),
        });
    Ok(Some(StoredPlayer { state, profile }))
}

fn events(
    conn: &mut Connection,
    zone: ZoneId,
    day: u32,
) -> Result<Vec<(u64, CombatEvent)>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT run, event_id, tick, attacker, attacker_player, target, target_player, \
             ability, damage, killed, x, y FROM combat_events \
             WHERE zone_id = ?1 AND day = ?2 ORDER BY run, event_id",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(params![zone.0, day], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, i64>(8)?,
                r.get::<_, bool>(9)?,
                r.get::<_, f64>(10)?,
                r.get::<_, f64>(11)?,
            ))
        })
        .map_err(unavailable)?;
    let mut out = Vec::new();
    for row in rows {
        let (run, id, tick, attacker, ap, target, tp, ability, damage, killed, x, y) =
            row.map_err(|e| StoreError::BadRow(e.to_string()))?;
        let id: [u8; 16] = id
            .try_into()
            .map_err(|_| StoreError::BadRow("event_id is not 16 bytes".into()))?;
        let event = CombatEvent {
            id: EventId(u128::from_be_bytes(id)),
            tick: from_sql(tick),
            attacker: EntityId(u32_of(attacker, "attacker")?),
            attacker_player: ap.map(|p| PlayerId(from_sql(p))),
            target: EntityId(u32_of(target, "target")?),
            target_player: tp.map(|p| PlayerId(from_sql(p))),
            ability: AbilityId(
                u8::try_from(ability)
                    .map_err(|_| StoreError::BadRow(format!("ability = {ability}")))?,
            ),
            damage: u16::try_from(damage)
                .map_err(|_| StoreError::BadRow(format!("damage = {damage}")))?,
            killed,
            x: f32_of(x, "x")?,
            y: f32_of(y, "y")?,
        };
        out.push((from_sql(run), event));
    }
    Ok(out)
}

#[async_trait::async_trait]
impl ColdStore for SqliteStore {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn write(&self, batch: &[Record]) -> Result<(), StoreError> {
        let batch = batch.to_vec();
        self.with(move |c| write_batch(c, &batch)).await
    }

    async fn load_player(&self, player: PlayerId) -> Result<Option<StoredPlayer>, StoreError> {
        self.with(move |c| load(c, player)).await
    }

    async fn combat_events(
        &self,
        zone: ZoneId,
        day: u32,
    ) -> Result<Vec<(u64, CombatEvent)>, StoreError> {
        self.with(move |c| events(c, zone, day)).await
    }

    async fn register_fence(
        &self,
        zone: ZoneId,
        fence: u64,
        since_ms: u64,
    ) -> Result<u64, StoreError> {
        self.with(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO zone_fences VALUES (?1, ?2, ?3)",
                params![zone.0, to_sql(fence), to_sql(since_ms)],
            )
            .map_err(unavailable)?;
            max_fence(c, zone)
        })
        .await
    }

    async fn zone_fence(&self, zone: ZoneId) -> Result<u64, StoreError> {
        self.with(move |c| max_fence(c, zone)).await
    }
}

fn max_fence(c: &mut Connection, zone: ZoneId) -> Result<u64, StoreError> {
    let max: Option<i64> = c
        .query_row(
            "SELECT MAX(fence) FROM zone_fences WHERE zone_id = ?1",
            params![zone.0],
            |r| r.get(0),
        )
        .map_err(unavailable)?;
    Ok(max.map_or(0, from_sql))
}

//! The ScyllaDB adapter of the [`ColdStore`] port: owns the CQL statements of the cold store, the
//! mapping of records to bound values and of rows back to records, and the mapping of driver
//! errors to [`StoreError`]. The tables are defined in `infra/scylla/schema.cql` (see
//! [`super::schema`]).
//!
//! Every statement is prepared once at connect (so the driver routes each request to a replica
//! of its partition: the default load balancing is token-aware), marked idempotent (so the
//! driver may retry or speculate it), and carries a request timeout. Combat records are grouped
//! into one unlogged batch per `(zone, day)` partition, at most [`MAX_BATCH_STATEMENTS`] each;
//! nothing is ever batched across partitions. Player state and stats are absolute values written
//! `USING TIMESTAMP` [`SaveRecord::write_order`], so an older save never overwrites a newer one,
//! and no write needs a read, a counter or a lightweight transaction.
//!
//! It must never panic on what it reads: a row that does not make sense is a
//! [`StoreError::BadRow`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, NewSessionError, PrepareError, RequestAttemptError};
use scylla::response::query_result::QueryResult;
use scylla::response::{PagingState, PagingStateResponse};
use scylla::statement::Consistency;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::{DeserializeRow, SerializeRow};
use tokio::task::JoinSet;
use zone_core::{
    AbilityId, CombatEvent, EntityId, EventId, PlayerId, PlayerState, PlayerStats, SavedPlugins,
    Version, ZoneId,
};

use super::cold::{ColdStore, StoreError, StoredPlayer, fenced_out};
use super::record::{CombatRecord, ProfileRecord, Record, SaveRecord};
use super::schema::valid_keyspace;

/// Most combat events in one unlogged batch (all of one partition): a few kilobytes, far below
/// ScyllaDB's batch size warning threshold.
pub const MAX_BATCH_STATEMENTS: usize = 64;

/// Most requests one [`ColdStore::write`] call has in flight at once.
const MAX_IN_FLIGHT: usize = 16;

/// Rows fetched per page when reading a combat partition.
const COMBAT_PAGE_SIZE: i32 = 1_000;

/// The cold store's CQL, for one keyspace. This module is the only place that spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cql {
    /// Inserts one combat event (15 values).
    pub insert_combat: String,
    /// Upserts a player's position and health, `USING TIMESTAMP` the save's write order.
    pub insert_state: String,
    /// A player's plugin state row.
    pub insert_plugins: String,
    /// Reads a player's plugin state row.
    pub select_plugins: String,
    /// Upserts a player's lifetime counters (absolute), `USING TIMESTAMP` the save's write order.
    pub insert_stats: String,
    /// Upserts a profile, `USING TIMESTAMP` its creation time in microseconds.
    pub insert_profile: String,
    /// Reads a player's state.
    pub select_state: String,
    /// Reads a player's stats.
    pub select_stats: String,
    /// Reads a player's profile.
    pub select_profile: String,
    /// Reads one `(zone, day)` partition of combat events, in clustering order.
    pub select_combat: String,
    /// Registers a zone fence, `USING TIMESTAMP` [`fence_write_order`] of its start.
    pub insert_fence: String,
    /// Reads a zone's fences above a given one, largest first.
    pub select_fences: String,
}

impl Cql {
    /// The statements for `keyspace` (which must be a plain identifier: see
    /// [`super::schema::valid_keyspace`]).
    pub fn new(keyspace: &str) -> Self {
        Self {
            insert_combat: format!(
                "INSERT INTO {keyspace}.combat_events (zone_id, day, run, event_id, unix_ms, tick, \
                 attacker, attacker_player, target, target_player, ability, damage, killed, x, y) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            insert_state: format!(
                "INSERT INTO {keyspace}.player_state (player_id, x, y, facing, health, version) \
                 VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ),
            insert_plugins: format!(
                "INSERT INTO {keyspace}.player_plugins (player_id, plugins, version) \
                 VALUES (?, ?, ?) USING TIMESTAMP ?"
            ),
            select_plugins: format!(
                "SELECT plugins, version FROM {keyspace}.player_plugins WHERE player_id = ?"
            ),
            insert_stats: format!(
                "INSERT INTO {keyspace}.player_stats (player_id, kills, deaths, damage_dealt, \
                 damage_taken, xp, version) VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ),
            insert_profile: format!(
                "INSERT INTO {keyspace}.player_profiles (player_id, name, created_unix_ms) \
                 VALUES (?, ?, ?) USING TIMESTAMP ?"
            ),
            select_state: format!(
                "SELECT x, y, facing, health, version FROM {keyspace}.player_state \
                 WHERE player_id = ?"
            ),
            select_stats: format!(
                "SELECT kills, deaths, damage_dealt, damage_taken, xp, version \
                 FROM {keyspace}.player_stats WHERE player_id = ?"
            ),
            select_profile: format!(
                "SELECT name, created_unix_ms FROM {keyspace}.player_profiles WHERE player_id = ?"
            ),
            select_combat: format!(
                "SELECT run, event_id, unix_ms, tick, attacker, attacker_player, target, \
                 target_player, ability, damage, killed, x, y FROM {keyspace}.combat_events \
                 WHERE zone_id = ? AND day = ?"
            ),
            insert_fence: format!(
                "INSERT INTO {keyspace}.zone_fences (zone_id, fence, since_ms) VALUES (?, ?, ?) \
                 USING TIMESTAMP ?"
            ),
            select_fences: format!(
                "SELECT fence, since_ms FROM {keyspace}.zone_fences \
                 WHERE zone_id = ? AND fence > ?"
            ),
        }
    }
}

/// The prepared statements.
#[derive(Debug)]
struct Prepared {
    insert_combat: PreparedStatement,
    insert_state: PreparedStatement,
    insert_plugins: PreparedStatement,
    select_plugins: PreparedStatement,
    insert_stats: PreparedStatement,
    insert_profile: PreparedStatement,
    select_state: PreparedStatement,
    select_stats: PreparedStatement,
    select_profile: PreparedStatement,
    select_combat: PreparedStatement,
    insert_fence: PreparedStatement,
    select_fences: PreparedStatement,
}

#[derive(Debug)]
struct Inner {
    session: Session,
    prepared: Prepared,
    timeout: Duration,
}

/// The ScyllaDB cold store. Cheap to clone (one shared session).
#[derive(Debug, Clone)]
pub struct ScyllaStore {
    inner: Arc<Inner>,
}

impl ScyllaStore {
    /// Connects to the cluster through `contact_points` (comma-separated `host:port`), fetching
    /// schema metadata of `keyspace` only (the token-aware load balancer needs its replication),
    /// and prepares every statement. `timeout` bounds connecting and every request.
    pub async fn connect(
        contact_points: &str,
        keyspace: &str,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let nodes: Vec<&str> = contact_points
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if nodes.is_empty() {
            return Err(StoreError::Unavailable(format!(
                "no ScyllaDB contact points in {contact_points:?}"
            )));
        }
        let builder = SessionBuilder::new()
            .known_nodes(nodes)
            .connection_timeout(timeout)
            .keyspaces_to_fetch([keyspace]);
        Self::connect_with(builder, keyspace, timeout).await
    }

    /// Like [`Self::connect`], with a caller-configured [`SessionBuilder`] (contact points,
    /// TLS, authentication, address translation, metadata fetching).
    pub async fn connect_with(
        builder: SessionBuilder,
        keyspace: &str,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        if !valid_keyspace(keyspace) {
            return Err(StoreError::Unavailable(format!(
                "invalid keyspace name {keyspace:?}"
            )));
        }
        let session = tokio::time::timeout(timeout, builder.build())
            .await
            .map_err(|_| StoreError::Timeout(millis(timeout)))?
            .map_err(session_error)?;
        Self::from_session(session, keyspace, timeout).await
    }

    /// Prepares the statements on an existing session.
    pub async fn from_session(
        session: Session,
        keyspace: &str,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        if !valid_keyspace(keyspace) {
            return Err(StoreError::Unavailable(format!(
                "invalid keyspace name {keyspace:?}"
            )));
        }
        let cql = Cql::new(keyspace);
        let prepared = Prepared {
            insert_combat: prepare(&session, &cql.insert_combat, timeout).await?,
            insert_state: prepare(&session, &cql.insert_state, timeout).await?,
            insert_stats: prepare(&session, &cql.insert_stats, timeout).await?,
            insert_plugins: prepare(&session, &cql.insert_plugins, timeout).await?,
            select_plugins: prepare(&session, &cql.select_plugins, timeout).await?,
            insert_profile: prepare(&session, &cql.insert_profile, timeout).await?,
            select_state: prepare(&session, &cql.select_state, timeout).await?,
            select_stats: prepare(&session, &cql.select_stats, timeout).await?,
            select_profile: prepare(&session, &cql.select_profile, timeout).await?,
            select_combat: prepare(&session, &cql.select_combat, timeout).await?,
            insert_fence: prepare(&session, &cql.insert_fence, timeout).await?,
            select_fences: prepare(&session, &cql.select_fences, timeout).await?,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                session,
                prepared,
                timeout,
            }),
        })
    }

    /// The underlying session (for `migrate` and diagnostics).
    pub fn session(&self) -> &Session {
        &self.inner.session
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn prepare(
    session: &Session,
    cql: &str,
    timeout: Duration,
) -> Result<PreparedStatement, StoreError> {
    let mut statement = tokio::time::timeout(timeout, session.prepare(cql))
        .await
        .map_err(|_| StoreError::Timeout(millis(timeout)))?
        .map_err(|e| prepare_error(cql, e))?;
    statement.set_is_idempotent(true);
    statement.set_request_timeout(Some(timeout));
    statement.set_consistency(Consistency::LocalQuorum);
    Ok(statement)
}

fn session_error(e: NewSessionError) -> StoreError {
    StoreError::Unavailable(format!("cannot open a ScyllaDB session: {e}"))
}

fn prepare_error(cql: &str, e: PrepareError) -> StoreError {
    // A statement the cluster refuses (schema not migrated, wrong keyspace) is a deployment
    // fault, not a bad record: report it as unavailability so nothing is dead-lettered.
    StoreError::Unavailable(format!("cannot prepare {cql:?}: {e}"))
}

/// What one failed request means for the flusher.
#[derive(Debug)]
enum Failure {
    /// Transient: retry the batch later.
    Retry(StoreError),
    /// The request itself is refused: retrying the same values will fail again.
    Reject(String),
}

impl Failure {
    fn into_store_error(self, index: usize) -> StoreError {
        match self {
            Failure::Retry(e) => e,
            Failure::Reject(reason) => StoreError::Rejected { index, reason },
        }
    }
}

/// Classifies a driver error.
fn classify(e: &ExecutionError, timeout: Duration) -> Failure {
    match e {
        ExecutionError::RequestTimeout(d) => Failure::Retry(StoreError::Timeout(millis(*d))),
        ExecutionError::BadQuery(bad) => Failure::Reject(bad.to_string()),
        ExecutionError::LastAttemptError(attempt) => classify_attempt(attempt, timeout),
        other => Failure::Retry(StoreError::Unavailable(other.to_string())),
    }
}

fn classify_attempt(e: &RequestAttemptError, timeout: Duration) -> Failure {
    match e {
        RequestAttemptError::DbError(db, message) => classify_db(db, message, timeout),
        RequestAttemptError::SerializationError(s) => Failure::Reject(s.to_string()),
        other => Failure::Retry(StoreError::Unavailable(other.to_string())),
    }
}

fn classify_db(db: &DbError, message: &str, timeout: Duration) -> Failure {
    let text = || format!("{db}: {message}");
    match db {
        // The coordinator gave up waiting for replicas: the write may or may not have landed;
        // it is idempotent, so retrying is right.
        DbError::ReadTimeout { .. } | DbError::WriteTimeout { .. } => {
            Failure::Retry(StoreError::Timeout(millis(timeout)))
        }
        // The statement or its values are refused: the same values will be refused again.
        DbError::SyntaxError | DbError::Invalid | DbError::FunctionFailure { .. } => {
            Failure::Reject(text())
        }
        // Everything else (unavailable, overloaded, bootstrapping, rate limits, server errors,
        // and deployment faults such as authorization or a missing table) is retried: no
        // record is to blame, so none may be dead-lettered for it.
        _ => Failure::Retry(StoreError::Unavailable(text())),
    }
}

/// A record turned into bound values, or refused before sending.
fn to_i64(value: u64, what: &str) -> Result<i64, String> {
    i64::try_from(value).map_err(|_| format!("{what} {value} exceeds the bigint range"))
}

/// A player id, bit for bit (see the schema file).
fn player_to_cql(p: PlayerId) -> i64 {
    i64::from_be_bytes(p.0.to_be_bytes())
}

fn player_from_cql(v: i64) -> PlayerId {
    PlayerId(u64::from_be_bytes(v.to_be_bytes()))
}

/// The bound values of one combat event, by column name.
#[derive(Debug, Clone, PartialEq, SerializeRow)]
struct CombatValues {
    zone_id: i64,
    day: i32,
    run: i64,
    event_id: Vec<u8>,
    unix_ms: i64,
    tick: i64,
    attacker: i64,
    attacker_player: Option<i64>,
    target: i64,
    target_player: Option<i64>,
    ability: i32,
    damage: i32,
    killed: bool,
    x: f32,
    y: f32,
}

type StateValues = (i64, f32, f32, f32, i32, i64, i64);
type StatsValues = (i64, i64, i64, i64, i64, i64, i64, i64);
type PluginsValues = (i64, Vec<u8>, i64, i64);
type ProfileValues = (i64, String, i64, i64);

fn combat_values(r: &CombatRecord) -> Result<CombatValues, String> {
    let day = i32::try_from(r.day()).map_err(|_| format!("day {} out of range", r.day()))?;
    let e = &r.event;
    Ok(CombatValues {
        zone_id: i64::from(r.zone.0),
        day,
        run: to_i64(r.run, "run")?,
        event_id: e.id.0.to_be_bytes().to_vec(),
        unix_ms: to_i64(r.unix_ms, "unix_ms")?,
        tick: to_i64(e.tick, "tick")?,
        attacker: i64::from(e.attacker.0),
        attacker_player: e.attacker_player.map(player_to_cql),
        target: i64::from(e.target.0),
        target_player: e.target_player.map(player_to_cql),
        ability: i32::from(e.ability.0),
        damage: i32::from(e.damage),
        killed: e.killed,
        x: e.x,
        y: e.y,
    })
}

fn save_values(r: &SaveRecord) -> Result<(StateValues, StatsValues, PluginsValues), String> {
    let s = &r.state;
    let player = player_to_cql(r.player);
    let version = to_i64(s.version.raw(), "version")?;
    let ts = r.write_order();
    let state = (player, s.x, s.y, s.facing, i32::from(s.health), version, ts);
    let st = &s.stats;
    let stats = (
        player,
        i64::from(st.kills),
        i64::from(st.deaths),
        to_i64(st.damage_dealt, "damage_dealt")?,
        to_i64(st.damage_taken, "damage_taken")?,
        to_i64(st.xp, "xp")?,
        version,
        ts,
    );
    let plugins = (player, s.plugins.as_bytes().to_vec(), version, ts);
    Ok((state, stats, plugins))
}

fn profile_values(r: &ProfileRecord) -> Result<ProfileValues, String> {
    let created = to_i64(r.created_unix_ms, "created_unix_ms")?;
    let ts = created
        .checked_mul(1_000)
        .ok_or_else(|| format!("created_unix_ms {created} is too far in the future"))?;
    Ok((player_to_cql(r.player), r.name.clone(), created, ts))
}

/// The write timestamp of a fence registration: earlier starts write larger timestamps, so
/// the earliest registration of a fence is the one that stays (see the schema file).
pub fn fence_write_order(since_ms: u64) -> i64 {
    const BASE: i64 = 1 << 62;
    BASE - i64::try_from(since_ms).unwrap_or(BASE).min(BASE)
}

/// The smallest fence among each zone's saves in `batch`: the fences to read before writing.
fn save_fence_floors(batch: &[Record]) -> BTreeMap<ZoneId, u64> {
    let mut floors: BTreeMap<ZoneId, u64> = BTreeMap::new();
    for record in batch {
        if let Record::PlayerSave(s) = record {
            let floor = floors.entry(s.zone).or_insert(s.fence);
            *floor = (*floor).min(s.fence);
        }
    }
    floors
}

/// The first save of `batch` that `histories` (per zone) fences out, with the reason.
fn first_fenced_out(
    batch: &[Record],
    histories: &BTreeMap<ZoneId, Vec<(u64, u64)>>,
) -> Option<(usize, String)> {
    batch.iter().enumerate().find_map(|(index, record)| {
        let Record::PlayerSave(s) = record else {
            return None;
        };
        let history = histories.get(&s.zone)?;
        fenced_out(history, s.fence, s.unix_ms).then(|| {
            let newest = history.iter().map(|&(f, _)| f).max().unwrap_or(0);
            let reason = format!(
                "save of zone {} under fence {} after fence {newest} took over",
                s.zone, s.fence
            );
            (index, reason)
        })
    })
}

/// Combat events of one partition with their indexes in the caller's batch.
type CombatChunk = Vec<(usize, CombatValues)>;

/// One request of a write: a partition's combat batch or a single statement.
#[derive(Debug)]
enum Unit {
    /// Combat events of one partition, with their indexes in the caller's batch.
    Combat(Vec<(usize, CombatValues)>),
    /// A player's save: its plugin state row first, then its state and stats rows (a state
    /// row without a plugin row of the same or a newer version then means a save from before
    /// plugins, never a plugin row still in flight).
    Save(usize, Box<(PluginsValues, StateValues, StatsValues)>),
    /// A profile row.
    Profile(usize, ProfileValues),
}

/// Builds the requests of a write, or refuses the first record that cannot be bound.
fn plan(batch: &[Record]) -> Result<Vec<Unit>, StoreError> {
    let reject = |index, reason| StoreError::Rejected { index, reason };
    // (zone, day) -> chunks of at most MAX_BATCH_STATEMENTS (record index, values).
    let mut partitions: BTreeMap<(ZoneId, u32), Vec<CombatChunk>> = BTreeMap::new();
    let mut units = Vec::new();
    for (index, record) in batch.iter().enumerate() {
        match record {
            Record::Combat(c) => {
                let values = combat_values(c).map_err(|r| reject(index, r))?;
                let chunks = partitions.entry((c.zone, c.day())).or_default();
                match chunks.last_mut() {
                    Some(chunk) if chunk.len() < MAX_BATCH_STATEMENTS => {
                        chunk.push((index, values));
                    }
                    _ => chunks.push(vec![(index, values)]),
                }
            }
            Record::PlayerSave(s) => {
                let (state, stats, plugins) = save_values(s).map_err(|r| reject(index, r))?;
                units.push(Unit::Save(index, Box::new((plugins, state, stats))));
            }
            Record::Profile(p) => {
                let values = profile_values(p).map_err(|r| reject(index, r))?;
                units.push(Unit::Profile(index, values));
            }
        }
    }
    units.extend(partitions.into_values().flatten().map(Unit::Combat));
    Ok(units)
}

impl Inner {
    async fn execute<V: scylla::serialize::row::SerializeRow>(
        &self,
        statement: &PreparedStatement,
        values: V,
    ) -> Result<QueryResult, Failure> {
        self.session
            .execute_unpaged(statement, values)
            .await
            .map_err(|e| classify(&e, self.timeout))
    }

    /// Runs one unit. On failure, the index of the record to blame (for a rejection).
    async fn run(&self, unit: Unit) -> Result<(), (usize, Failure)> {
        let p = &self.prepared;
        match unit {
            Unit::Save(i, values) => {
                let (plugins, state, stats) = *values;
                self.execute(&p.insert_plugins, plugins)
                    .await
                    .map_err(|f| (i, f))?;
                self.execute(&p.insert_state, state)
                    .await
                    .map_err(|f| (i, f))?;
                self.execute(&p.insert_stats, stats)
                    .await
                    .map_err(|f| (i, f))?;
            }
            Unit::Profile(i, v) => {
                self.execute(&p.insert_profile, v)
                    .await
                    .map_err(|f| (i, f))?;
            }
            Unit::Combat(items) => return self.run_combat(items).await,
        };
        Ok(())
    }

    async fn run_combat(&self, items: Vec<(usize, CombatValues)>) -> Result<(), (usize, Failure)> {
        let first = items.first().map_or(usize::MAX, |(i, _)| *i);
        if items.len() == 1 {
            let Some((index, values)) = items.into_iter().next() else {
                return Ok(());
            };
            return self
                .execute(&self.prepared.insert_combat, values)
                .await
                .map(|_| ())
                .map_err(|f| (index, f));
        }
        let mut batch = Batch::new(BatchType::Unlogged);
        for _ in &items {
            batch.append_statement(self.prepared.insert_combat.clone());
        }
        batch.set_is_idempotent(true);
        batch.set_request_timeout(Some(self.timeout));
        batch.set_consistency(Consistency::LocalQuorum);
        let values: Vec<&CombatValues> = items.iter().map(|(_, v)| v).collect();
        match self.session.batch(&batch, values).await {
            Ok(_) => Ok(()),
            Err(e) => match classify(&e, self.timeout) {
                Failure::Retry(err) => Err((first, Failure::Retry(err))),
                // One statement of the batch is refused, but the error does not say which:
                // write them one by one to find it (and write the others).
                Failure::Reject(_) => {
                    let mut rejected = None;
                    for (index, values) in items {
                        match self.execute(&self.prepared.insert_combat, values).await {
                            Ok(_) => {}
                            Err(Failure::Retry(err)) => return Err((index, Failure::Retry(err))),
                            Err(Failure::Reject(reason)) => {
                                if rejected.is_none() {
                                    rejected = Some((index, Failure::Reject(reason)));
                                }
                            }
                        }
                    }
                    rejected.map_or(Ok(()), Err)
                }
            },
        }
    }

    /// The fences of `zone` above `fence`, as `(fence, since_ms)`, largest first.
    async fn fences_above(&self, zone: ZoneId, fence: u64) -> Result<Vec<(u64, u64)>, StoreError> {
        const T: &str = "zone_fences";
        let above = i64::try_from(fence).unwrap_or(i64::MAX);
        let result = self
            .execute(&self.prepared.select_fences, (i64::from(zone.0), above))
            .await
            .map_err(read_failure)?;
        let rows = result
            .into_rows_result()
            .map_err(|e| bad(T, format_args!("not a rows result: {e}")))?;
        let iter = rows
            .rows::<FenceRow>()
            .map_err(|e| bad(T, format_args!("unexpected row shape: {e}")))?;
        let mut out = Vec::new();
        for row in iter {
            let row = row.map_err(|e| bad(T, e))?;
            let fence: u64 = in_range(T, "fence", Some(row.fence))?;
            out.push((fence, in_range(T, "since_ms", row.since_ms)?));
        }
        Ok(out)
    }

    /// Reads the fence histories a batch's saves must be checked against.
    async fn fence_histories(
        &self,
        batch: &[Record],
    ) -> Result<BTreeMap<ZoneId, Vec<(u64, u64)>>, StoreError> {
        let mut histories = BTreeMap::new();
        for (zone, floor) in save_fence_floors(batch) {
            histories.insert(zone, self.fences_above(zone, floor).await?);
        }
        Ok(histories)
    }

    async fn select_one(
        &self,
        statement: &PreparedStatement,
        player: PlayerId,
    ) -> Result<QueryResult, StoreError> {
        self.execute(statement, (player_to_cql(player),))
            .await
            .map_err(read_failure)
    }
}

/// A failed read is never the record's fault: both kinds are for the caller to retry.
fn read_failure(f: Failure) -> StoreError {
    match f {
        Failure::Retry(e) => e,
        Failure::Reject(reason) => StoreError::Unavailable(format!("read refused: {reason}")),
    }
}

#[derive(Debug, DeserializeRow)]
struct FenceRow {
    fence: i64,
    since_ms: Option<i64>,
}

#[derive(Debug, DeserializeRow)]
struct StateRow {
    x: Option<f32>,
    y: Option<f32>,
    facing: Option<f32>,
    health: Option<i32>,
    version: Option<i64>,
}

#[derive(Debug, DeserializeRow)]
struct PluginsRow {
    plugins: Option<Vec<u8>>,
    version: Option<i64>,
}

/// A player's plugin state: none for a player last saved before plugins (no row); a row of
/// another version than the state's is a save still being flushed (transient, as for stats).
fn plugins_from_row(version: u64, row: Option<PluginsRow>) -> Result<SavedPlugins, StoreError> {
    const T: &str = "player_plugins";
    let Some(row) = row else {
        return Ok(SavedPlugins::default());
    };
    let row_version: u64 = in_range(T, "version", row.version)?;
    if row_version != version {
        return Err(StoreError::Unavailable(format!(
            "player_state at version {version} but player_plugins at {row_version}: \
             a save is still being flushed"
        )));
    }
    let bytes = row.plugins.unwrap_or_default();
    SavedPlugins::from_bytes(&bytes).ok_or_else(|| {
        bad(
            T,
            format_args!(
                "plugins: {} bytes that are not saved plugin records",
                bytes.len()
            ),
        )
    })
}

#[derive(Debug, DeserializeRow)]
struct StatsRow {
    kills: Option<i64>,
    deaths: Option<i64>,
    damage_dealt: Option<i64>,
    damage_taken: Option<i64>,
    xp: Option<i64>,
    version: Option<i64>,
}

#[derive(Debug, DeserializeRow)]
struct ProfileRow {
    name: Option<String>,
    created_unix_ms: Option<i64>,
}

#[derive(Debug, DeserializeRow)]
struct CombatRow {
    run: i64,
    event_id: Vec<u8>,
    unix_ms: Option<i64>,
    tick: Option<i64>,
    attacker: Option<i64>,
    attacker_player: Option<i64>,
    target: Option<i64>,
    target_player: Option<i64>,
    ability: Option<i32>,
    damage: Option<i32>,
    killed: Option<bool>,
    x: Option<f32>,
    y: Option<f32>,
}

fn bad(table: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::BadRow(format!("{table}: {what}"))
}

fn present<T>(table: &str, column: &str, value: Option<T>) -> Result<T, StoreError> {
    value.ok_or_else(|| bad(table, format_args!("{column} is null")))
}

fn in_range<T: TryFrom<i64>>(
    table: &str,
    column: &str,
    value: Option<i64>,
) -> Result<T, StoreError> {
    let v = present(table, column, value)?;
    T::try_from(v).map_err(|_| bad(table, format_args!("{column} = {v} is out of range")))
}

fn finite(table: &str, column: &str, value: Option<f32>) -> Result<f32, StoreError> {
    let v = present(table, column, value)?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(bad(table, format_args!("{column} = {v} is not finite")))
    }
}

fn first_row<R>(table: &str, result: QueryResult) -> Result<Option<R>, StoreError>
where
    R: for<'f> scylla::deserialize::row::DeserializeRow<'f, 'f>,
{
    let rows = result
        .into_rows_result()
        .map_err(|e| bad(table, format_args!("not a rows result: {e}")))?;
    rows.maybe_first_row::<R>()
        .map_err(|e| bad(table, format_args!("unexpected row shape: {e}")))
}

fn state_from_rows(state: StateRow, stats: Option<StatsRow>) -> Result<PlayerState, StoreError> {
    const T: &str = "player_state";
    const S: &str = "player_stats";
    let version: u64 = in_range(T, "version", state.version)?;
    let Some(stats) = stats else {
        return Err(StoreError::Unavailable(format!(
            "player_stats row missing for state version {version}: a save is still being flushed"
        )));
    };
    let stats_version: u64 = in_range(S, "version", stats.version)?;
    if stats_version != version {
        // Both rows are written by the same save; they differ only while a save is in flight
        // (or one of its two writes is being retried). Transient: ask the caller to retry.
        return Err(StoreError::Unavailable(format!(
            "player_state at version {version} but player_stats at {stats_version}: \
             a save is still being flushed"
        )));
    }
    let health: u16 = in_range(T, "health", state.health.map(i64::from))?;
    Ok(PlayerState {
        x: finite(T, "x", state.x)?,
        y: finite(T, "y", state.y)?,
        facing: finite(T, "facing", state.facing)?,
        health,
        stats: PlayerStats {
            kills: in_range(S, "kills", stats.kills)?,
            deaths: in_range(S, "deaths", stats.deaths)?,
            damage_dealt: in_range(S, "damage_dealt", stats.damage_dealt)?,
            damage_taken: in_range(S, "damage_taken", stats.damage_taken)?,
            xp: in_range(S, "xp", stats.xp)?,
        },
        version: Version::from_raw(version),
        plugins: SavedPlugins::default(),
    })
}

fn profile_from_row(player: PlayerId, row: ProfileRow) -> Result<ProfileRecord, StoreError> {
    const T: &str = "player_profiles";
    Ok(ProfileRecord {
        player,
        name: present(T, "name", row.name)?,
        created_unix_ms: in_range(T, "created_unix_ms", row.created_unix_ms)?,
    })
}

fn combat_from_row(row: CombatRow) -> Result<(u64, CombatEvent), StoreError> {
    const T: &str = "combat_events";
    let run: u64 = in_range(T, "run", Some(row.run))?;
    let id: [u8; 16] = row.event_id.as_slice().try_into().map_err(|_| {
        bad(
            T,
            format_args!("event_id is {} bytes, not 16", row.event_id.len()),
        )
    })?;
    let _: u64 = in_range(T, "unix_ms", row.unix_ms)?;
    let event = CombatEvent {
        id: EventId(u128::from_be_bytes(id)),
        tick: in_range(T, "tick", row.tick)?,
        attacker: EntityId(in_range(T, "attacker", row.attacker)?),
        attacker_player: row.attacker_player.map(player_from_cql),
        target: EntityId(in_range(T, "target", row.target)?),
        target_player: row.target_player.map(player_from_cql),
        ability: AbilityId(in_range(T, "ability", row.ability.map(i64::from))?),
        damage: in_range(T, "damage", row.damage.map(i64::from))?,
        killed: present(T, "killed", row.killed)?,
        x: finite(T, "x", row.x)?,
        y: finite(T, "y", row.y)?,
    };
    Ok((run, event))
}

#[async_trait::async_trait]
impl ColdStore for ScyllaStore {
    fn name(&self) -> &'static str {
        "scylla"
    }

    async fn write(&self, batch: &[Record]) -> Result<(), StoreError> {
        let units = plan(batch)?;
        // Read the fences only now, after every save of the batch was stamped: a fence that
        // took effect before a stamp is visible (LOCAL_QUORUM both ways).
        let histories = self.inner.fence_histories(batch).await?;
        if let Some((index, reason)) = first_fenced_out(batch, &histories) {
            return Err(StoreError::Rejected { index, reason });
        }
        let mut pending = units.into_iter();
        let mut tasks = JoinSet::new();
        let mut rejected: Option<(usize, Failure)> = None;
        let mut retry: Option<StoreError> = None;
        loop {
            while tasks.len() < MAX_IN_FLIGHT {
                let Some(unit) = pending.next() else { break };
                let inner = Arc::clone(&self.inner);
                tasks.spawn(async move { inner.run(unit).await });
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            match joined {
                Ok(Ok(())) => {}
                Ok(Err((index, Failure::Reject(reason)))) => {
                    if rejected.as_ref().is_none_or(|(i, _)| index < *i) {
                        rejected = Some((index, Failure::Reject(reason)));
                    }
                }
                Ok(Err((_, Failure::Retry(e)))) => {
                    retry.get_or_insert(e);
                }
                Err(join) => {
                    retry.get_or_insert(StoreError::Unavailable(format!("write task: {join}")));
                }
            }
        }
        // A rejection first: the flusher dead-letters that record and retries the rest (which
        // covers whatever failed transiently).
        if let Some((index, failure)) = rejected {
            return Err(failure.into_store_error(index));
        }
        retry.map_or(Ok(()), Err)
    }

    async fn load_player(&self, player: PlayerId) -> Result<Option<StoredPlayer>, StoreError> {
        let p = &self.inner.prepared;
        let (state, stats, plugins, profile) = tokio::join!(
            self.inner.select_one(&p.select_state, player),
            self.inner.select_one(&p.select_stats, player),
            self.inner.select_one(&p.select_plugins, player),
            self.inner.select_one(&p.select_profile, player),
        );
        let Some(state_row) = first_row::<StateRow>("player_state", state?)? else {
            return Ok(None);
        };
        let stats_row = first_row::<StatsRow>("player_stats", stats?)?;
        let mut state = state_from_rows(state_row, stats_row)?;
        let plugins_row = first_row::<PluginsRow>("player_plugins", plugins?)?;
        state.plugins = plugins_from_row(state.version.raw(), plugins_row)?;
        let profile = first_row::<ProfileRow>("player_profiles", profile?)?
            .map(|row| profile_from_row(player, row))
            .transpose()?;
        Ok(Some(StoredPlayer { state, profile }))
    }

    async fn register_fence(
        &self,
        zone: ZoneId,
        fence: u64,
        since_ms: u64,
    ) -> Result<u64, StoreError> {
        let values = (
            i64::from(zone.0),
            i64::try_from(fence).map_err(|_| StoreError::Rejected {
                index: 0,
                reason: format!("fence {fence} exceeds the bigint range"),
            })?,
            i64::try_from(since_ms).unwrap_or(i64::MAX),
            fence_write_order(since_ms),
        );
        self.inner
            .execute(&self.inner.prepared.insert_fence, values)
            .await
            .map_err(|f| f.into_store_error(0))?;
        self.zone_fence(zone).await.map(|known| known.max(fence))
    }

    async fn zone_fence(&self, zone: ZoneId) -> Result<u64, StoreError> {
        let fences = self.inner.fences_above(zone, 0).await?;
        Ok(fences.iter().map(|&(f, _)| f).max().unwrap_or(0))
    }

    async fn combat_events(
        &self,
        zone: ZoneId,
        day: u32,
    ) -> Result<Vec<(u64, CombatEvent)>, StoreError> {
        let day = i32::try_from(day).map_err(|_| StoreError::Rejected {
            index: 0,
            reason: format!("day {day} out of range"),
        })?;
        let mut statement = self.inner.prepared.select_combat.clone();
        statement.set_page_size(COMBAT_PAGE_SIZE);
        let values = (i64::from(zone.0), day);
        let mut out = Vec::new();
        let mut paging = PagingState::start();
        loop {
            let (result, next) = self
                .inner
                .session
                .execute_single_page(&statement, values, paging)
                .await
                .map_err(|e| read_failure(classify(&e, self.inner.timeout)))?;
            let rows = result
                .into_rows_result()
                .map_err(|e| bad("combat_events", format_args!("not a rows result: {e}")))?;
            let iter = rows
                .rows::<CombatRow>()
                .map_err(|e| bad("combat_events", format_args!("unexpected row shape: {e}")))?;
            for row in iter {
                let row = row.map_err(|e| bad("combat_events", e))?;
                out.push(combat_from_row(row)?);
            }
            match next {
                PagingStateResponse::HasMorePages { state } => paging = state,
                PagingStateResponse::NoMorePages => break,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zone_core::ZoneId;

    fn combat(zone: u32, unix_ms: u64, seq: u32) -> Record {
        Record::Combat(CombatRecord {
            zone: ZoneId(zone),
            run: 7,
            unix_ms,
            event: CombatEvent {
                id: EventId::new(ZoneId(zone), 100, seq),
                tick: 100,
                attacker: EntityId(1),
                attacker_player: Some(PlayerId(u64::MAX)),
                target: EntityId(2),
                target_player: None,
                ability: AbilityId(3),
                damage: 65_535,
                killed: true,
                x: 1.5,
                y: -2.5,
            },
        })
    }

    #[test]
    fn combat_records_are_batched_per_partition_and_bounded() {
        let day = super::super::record::DAY_MS;
        let mut records = Vec::new();
        for i in 0..(MAX_BATCH_STATEMENTS as u32 + 3) {
            records.push(combat(1, 10, i));
        }
        records.push(combat(1, day + 10, 0));
        records.push(combat(2, 10, 0));
        let units = plan(&records).expect("plan");
        let sizes: Vec<usize> = units
            .iter()
            .map(|u| match u {
                Unit::Combat(items) => items.len(),
                _ => 0,
            })
            .collect();
        assert_eq!(sizes, [MAX_BATCH_STATEMENTS, 3, 1, 1]);
        for unit in &units {
            let Unit::Combat(items) = unit else { continue };
            let key = |i: usize| match &records[i] {
                Record::Combat(c) => (c.zone, c.day()),
                _ => unreachable!(),
            };
            assert!(items.iter().all(|(i, _)| key(*i) == key(items[0].0)));
        }
    }

    #[test]
    fn values_out_of_the_cql_range_are_rejected_with_their_index() {
        let mut save = SaveRecord {
            zone: ZoneId(1),
            player: PlayerId(9),
            state: PlayerState::new_character(0.0, 0.0, 100),
            fence: 0,
            unix_ms: 0,
        };
        save.state.stats.xp = u64::MAX;
        let records = vec![combat(1, 0, 0), Record::PlayerSave(save)];
        assert!(matches!(
            plan(&records),
            Err(StoreError::Rejected { index: 1, .. })
        ));
        let far = combat(1, u64::MAX, 0);
        assert!(matches!(
            plan(&[far]),
            Err(StoreError::Rejected { index: 0, .. })
        ));
    }

    #[test]
    fn player_ids_round_trip_bit_for_bit() {
        for id in [0, 1, u64::MAX, 1 << 63, 12345] {
            assert_eq!(player_from_cql(player_to_cql(PlayerId(id))), PlayerId(id));
        }
    }

    #[test]
    fn combat_rows_round_trip_and_bad_rows_are_refused() {
        let Record::Combat(c) = combat(4, 99, 5) else {
            unreachable!()
        };
        let v = combat_values(&c).expect("values");
        let row = CombatRow {
            run: v.run,
            event_id: v.event_id.clone(),
            unix_ms: Some(v.unix_ms),
            tick: Some(v.tick),
            attacker: Some(v.attacker),
            attacker_player: v.attacker_player,
            target: Some(v.target),
            target_player: v.target_player,
            ability: Some(v.ability),
            damage: Some(v.damage),
            killed: Some(v.killed),
            x: Some(v.x),
            y: Some(v.y),
        };
        assert_eq!(combat_from_row(row).expect("row"), (7, c.event));
        let short = CombatRow {
            run: 1,
            event_id: vec![1, 2, 3],
            unix_ms: Some(0),
            tick: Some(0),
            attacker: Some(0),
            attacker_player: None,
            target: Some(0),
            target_player: None,
            ability: Some(0),
            damage: Some(0),
            killed: Some(false),
            x: Some(0.0),
            y: Some(0.0),
        };
        assert!(matches!(combat_from_row(short), Err(StoreError::BadRow(_))));
    }

    #[test]
    fn state_rows_are_validated() {
        let state = |health| StateRow {
            x: Some(1.0),
            y: Some(2.0),
            facing: Some(0.5),
            health: Some(health),
            version: Some(4),
        };
        let stats = |kills, version| StatsRow {
            kills: Some(kills),
            deaths: Some(1),
            damage_dealt: Some(10),
            damage_taken: Some(20),
            xp: Some(30),
            version: Some(version),
        };
        let ok = state_from_rows(state(90), Some(stats(2, 4))).expect("valid");
        assert_eq!((ok.health, ok.stats.kills, ok.version.raw()), (90, 2, 4));
        for (st, sts) in [
            (state(-1), stats(2, 4)),
            (state(70_000), stats(2, 4)),
            (state(5), stats(-3, 4)),
        ] {
            assert!(matches!(
                state_from_rows(st, Some(sts)),
                Err(StoreError::BadRow(_))
            ));
        }
        let mut nan = state(5);
        nan.x = Some(f32::NAN);
        assert!(matches!(
            state_from_rows(nan, Some(stats(1, 4))),
            Err(StoreError::BadRow(_))
        ));
        // A save whose two writes have not both landed yet is transient, not corrupt.
        let lagging = state_from_rows(state(5), Some(stats(1, 3)));
        assert!(lagging.is_err_and(|e| e.is_retryable()));
        assert!(state_from_rows(state(5), None).is_err_and(|e| e.is_retryable()));
    }
}

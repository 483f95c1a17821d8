//! The simulated "redis" and "scylla" hosts and the shell-side adapters that reach them over
//! turmoil TCP. Each request is one connection carrying one length-prefixed bincode frame each
//! way, so a crashed or partitioned store shows up to the shell as refused or timed-out calls,
//! exactly what the real adapters see.
//!
//! The sim redis keeps its data in the host's memory (a crash or bounce loses it, like a Redis
//! without persistence); the sim scylla keeps its data in [`ColdData`], owned by the test, so it
//! survives crashes. Pub/sub is a long-lived connection per subscription on which the redis
//! host streams the channel's messages (and a heartbeat); the adapter reconnects when it breaks,
//! losing what was published meanwhile, like Redis pub/sub.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bincode::{Decode, Encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use turmoil::net::{TcpListener, TcpStream};
use zone_core::{CombatEvent, EventId, PlayerId, PlayerState, ZoneId};
use zone_shell::persist::embedded_hot::MemoryHotStore;
use zone_shell::persist::{
    Claim, ColdStore, CombatRecord, HotStore, Lease, LeaseHolder, Message, Owner, Position,
    ProfileRecord, Record, SaveRecord, Session, StoreError, StoredPlayer,
};

/// Port of both store hosts.
pub const PORT: u16 = 7000;

#[derive(Debug, Encode, Decode)]
enum Req {
    Write(Vec<Record>),
    LoadPlayer(PlayerId),
    CombatEvents(ZoneId, u32),
    PutSession(Session, u64),
    PutSessions(Vec<Session>, u64),
    GetSession(PlayerId),
    DropSession(PlayerId),
    SetPresence(ZoneId, Vec<PlayerId>, u64),
    Presence(ZoneId),
    FlushPositions(ZoneId, Vec<Position>, u64),
    Positions(ZoneId),
    PutState(PlayerId, PlayerState, u64),
    GetState(PlayerId),
    Publish(String, Vec<u8>),
    RateLimit(String, u32, u64),
    Acquire(ZoneId, String, u64, u64),
    Renew(Lease, u64),
    LeaseHolder(ZoneId),
    Release(Lease),
    PlayerOwner(PlayerId),
    ClaimPlayer(PlayerId, ZoneId, Option<Owner>, u64, u64),
    KeepPlayers(ZoneId, Vec<(PlayerId, u64)>, u64),
    RegisterFence(ZoneId, u64, u64),
    ZoneFence(ZoneId),
    SetZoneAddress(ZoneId, String, u64),
    ZoneAddress(ZoneId),
    Subscribe(String),
}

#[derive(Debug, Encode, Decode)]
enum Resp {
    Done,
    Failed(String),
    Rejected(u64, String),
    Player(Option<StoredPlayer>),
    Events(Vec<(u64, CombatEvent)>),
    Session(Option<Session>),
    Players(Vec<PlayerId>),
    Positions(Vec<Position>),
    State(Option<PlayerState>),
    Flag(bool),
    Lease(Option<Lease>),
    Holder(Option<LeaseHolder>),
    Owner(Option<Owner>),
    Claim(Claim),
    Superseded(Vec<(PlayerId, Owner)>),
    Fence(u64),
    Address(Option<String>),
    /// A message on a subscribed channel.
    Published(String, Vec<u8>),
    /// Keeps a subscription connection alive (and shows it is).
    Heartbeat,
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 16 << 20 }>()
}

async fn write_frame<T: Encode>(s: &mut TcpStream, v: &T) -> std::io::Result<()> {
    let bytes = bincode::encode_to_vec(v, config()).map_err(std::io::Error::other)?;
    s.write_all(&(bytes.len() as u32).to_le_bytes()).await?;
    s.write_all(&bytes).await?;
    s.flush().await
}

async fn read_frame<T: Decode<()>>(s: &mut TcpStream) -> std::io::Result<T> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut buf).await?;
    bincode::decode_from_slice(&buf, config())
        .map(|(v, _)| v)
        .map_err(std::io::Error::other)
}

/// The durable contents of the sim scylla: one row per key, newest-wins player state.
#[derive(Debug, Default)]
pub struct ColdData {
    /// Combat events by (zone, day, run, event id).
    pub combat: BTreeMap<(ZoneId, u32, u64, EventId), CombatRecord>,
    /// Newest save per player.
    pub saves: BTreeMap<PlayerId, SaveRecord>,
    /// Profiles.
    pub profiles: BTreeMap<PlayerId, ProfileRecord>,
    /// Writes of a key that already held a different value (must stay 0).
    pub conflicting_writes: u64,
    /// Record writes received, including idempotent repeats.
    pub writes: u64,
    /// Registered fences per zone: `(fence, since_ms)`.
    pub fences: BTreeMap<ZoneId, Vec<(u64, u64)>>,
    /// Saves rejected for a stale fence.
    pub fenced_out: u64,
}

impl ColdData {
    /// Writes a batch; the index and reason of a save under a superseded fence instead.
    fn write(&mut self, batch: &[Record]) -> Result<(), (u64, String)> {
        for (i, r) in batch.iter().enumerate() {
            if let Record::PlayerSave(s) = r
                && let Some(history) = self.fences.get(&s.zone)
                && zone_shell::persist::cold::fenced_out(history, s.fence, s.unix_ms)
            {
                self.fenced_out += 1;
                return Err((
                    i as u64,
                    format!("zone {} fence {} superseded", s.zone, s.fence),
                ));
            }
        }
        for r in batch {
            self.writes += 1;
            match r {
                Record::Combat(c) => {
                    let key = (c.zone, c.day(), c.run, c.event.id);
                    if let Some(old) = self.combat.get(&key) {
                        if old.event != c.event {
                            self.conflicting_writes += 1;
                        }
                    } else {
                        self.combat.insert(key, *c);
                    }
                }
                Record::PlayerSave(s) => {
                    let newer = self
                        .saves
                        .get(&s.player)
                        .is_none_or(|o| o.write_order() < s.write_order());
                    if newer {
                        self.saves.insert(s.player, *s);
                    }
                }
                Record::Profile(p) => {
                    self.profiles.entry(p.player).or_insert_with(|| p.clone());
                }
            }
        }
        Ok(())
    }
}

/// Serves the sim scylla on [`PORT`] from `data`.
pub async fn scylla_host(data: Arc<Mutex<ColdData>>) -> turmoil::Result {
    let listener = TcpListener::bind(("0.0.0.0", PORT)).await?;
    loop {
        let (mut s, _) = listener.accept().await?;
        let data = data.clone();
        tokio::spawn(async move {
            let Ok(req) = read_frame::<Req>(&mut s).await else {
                return;
            };
            let resp = {
                let Ok(mut d) = data.lock() else { return };
                match req {
                    Req::Write(batch) => match d.write(&batch) {
                        Ok(()) => Resp::Done,
                        Err((index, reason)) => Resp::Rejected(index, reason),
                    },
                    Req::RegisterFence(zone, fence, since) => {
                        let history = d.fences.entry(zone).or_default();
                        if !history.iter().any(|(f, _)| *f == fence) {
                            history.push((fence, since));
                        }
                        Resp::Fence(history.iter().map(|(f, _)| *f).max().unwrap_or(0))
                    }
                    Req::ZoneFence(zone) => Resp::Fence(
                        d.fences
                            .get(&zone)
                            .and_then(|h| h.iter().map(|(f, _)| *f).max())
                            .unwrap_or(0),
                    ),
                    Req::LoadPlayer(p) => Resp::Player(d.saves.get(&p).map(|s| StoredPlayer {
                        state: s.state,
                        profile: d.profiles.get(&p).cloned(),
                    })),
                    Req::CombatEvents(zone, day) => Resp::Events(
                        d.combat
                            .iter()
                            .filter(|((z, dd, _, _), _)| *z == zone && *dd == day)
                            .map(|((_, _, run, _), c)| (*run, c.event))
                            .collect(),
                    ),
                    other => Resp::Failed(format!("not a cold-store request: {other:?}")),
                }
            };
            let _ = write_frame(&mut s, &resp).await;
        });
    }
}

/// Serves the sim redis on [`PORT`]; its data lives as long as this host incarnation.
pub async fn redis_host() -> turmoil::Result {
    redis_host_with(Arc::default()).await
}

/// [`redis_host`], showing its current store in `slot` (for invariants that read the ledger
/// between simulation steps).
pub async fn redis_host_with(slot: Arc<Mutex<Option<Arc<MemoryHotStore>>>>) -> turmoil::Result {
    let store = Arc::new(MemoryHotStore::new());
    if let Ok(mut s) = slot.lock() {
        *s = Some(store.clone());
    }
    let listener = TcpListener::bind(("0.0.0.0", PORT)).await?;
    loop {
        let (mut s, _) = listener.accept().await?;
        let store = store.clone();
        tokio::spawn(async move {
            let Ok(req) = read_frame::<Req>(&mut s).await else {
                return;
            };
            let ms = Duration::from_millis;
            let r = |x: Result<Resp, StoreError>| x.unwrap_or_else(|e| Resp::Failed(e.to_string()));
            if let Req::Subscribe(channel) = req {
                let Ok(mut rx) = store.subscribe(&channel).await else {
                    return;
                };
                loop {
                    let frame = tokio::select! {
                        m = rx.recv() => match m {
                            Ok(m) => Resp::Published(m.channel, m.payload),
                            Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(broadcast::error::RecvError::Closed) => return,
                        },
                        _ = tokio::time::sleep(Duration::from_millis(250)) => Resp::Heartbeat,
                    };
                    if write_frame(&mut s, &frame).await.is_err() {
                        return;
                    }
                }
            }
            let resp = match req {
                Req::PutSession(sess, ttl) => {
                    r(store.put_session(&sess, ms(ttl)).await.map(|()| Resp::Done))
                }
                Req::PutSessions(sess, ttl) => r(store
                    .put_sessions(&sess, ms(ttl))
                    .await
                    .map(|()| Resp::Done)),
                Req::GetSession(p) => r(store.session(p).await.map(Resp::Session)),
                Req::DropSession(p) => r(store.drop_session(p).await.map(|()| Resp::Done)),
                Req::SetPresence(z, ps, ttl) => r(store
                    .set_presence(z, &ps, ms(ttl))
                    .await
                    .map(|()| Resp::Done)),
                Req::Presence(z) => r(store.presence(z).await.map(Resp::Players)),
                Req::FlushPositions(z, ps, ttl) => r(store
                    .flush_positions(z, &ps, ms(ttl))
                    .await
                    .map(|()| Resp::Done)),
                Req::Positions(z) => r(store.positions(z).await.map(Resp::Positions)),
                Req::PutState(p, st, ttl) => r(store
                    .put_player_state(p, &st, ms(ttl))
                    .await
                    .map(|()| Resp::Done)),
                Req::GetState(p) => r(store.player_state(p).await.map(Resp::State)),
                Req::Publish(c, b) => r(store.publish(&c, &b).await.map(|()| Resp::Done)),
                Req::RateLimit(k, l, w) => r(store.rate_limit(&k, l, ms(w)).await.map(Resp::Flag)),
                Req::Acquire(z, o, ttl, after) => r(store
                    .acquire_lease(z, &o, ms(ttl), after)
                    .await
                    .map(Resp::Lease)),
                Req::Renew(l, ttl) => r(store.renew_lease(&l, ms(ttl)).await.map(Resp::Flag)),
                Req::LeaseHolder(z) => r(store.lease_holder(z).await.map(Resp::Holder)),
                Req::Release(l) => r(store.release_lease(&l).await.map(|()| Resp::Done)),
                Req::PlayerOwner(p) => r(store.player_owner(p).await.map(Resp::Owner)),
                Req::ClaimPlayer(p, zone, expect, floor, ttl) => r(store
                    .claim_player(p, zone, expect, floor, ms(ttl))
                    .await
                    .map(Resp::Claim)),
                Req::KeepPlayers(zone, held, ttl) => r(store
                    .keep_players(zone, &held, ms(ttl))
                    .await
                    .map(Resp::Superseded)),
                Req::SetZoneAddress(z, a, ttl) => r(store
                    .set_zone_address(z, &a, ms(ttl))
                    .await
                    .map(|()| Resp::Done)),
                Req::ZoneAddress(z) => r(store.zone_address(z).await.map(Resp::Address)),
                other => Resp::Failed(format!("not a hot-store request: {other:?}")),
            };
            let _ = write_frame(&mut s, &resp).await;
        });
    }
}

/// One request to `host`, bounded by `timeout`.
async fn call(host: &'static str, req: Req, timeout: Duration) -> Result<Resp, StoreError> {
    let attempt = async {
        let mut s = TcpStream::connect((host, PORT)).await?;
        write_frame(&mut s, &req).await?;
        read_frame::<Resp>(&mut s).await
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(Resp::Failed(e))) => Err(StoreError::Unavailable(e)),
        Ok(Ok(Resp::Rejected(index, reason))) => Err(StoreError::Rejected {
            index: index as usize,
            reason,
        }),
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(StoreError::Unavailable(format!("{host}: {e}"))),
        Err(_) => Err(StoreError::Timeout(timeout.as_millis() as u64)),
    }
}

fn unexpected(r: Resp) -> StoreError {
    StoreError::BadRow(format!("unexpected reply {r:?}"))
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// The shell's cold-store port, reaching the sim scylla.
#[derive(Debug, Clone)]
pub struct SimCold {
    /// Per-call timeout.
    pub timeout: Duration,
    /// Planted bug for the test that shows the invariants work: drop the combat records of
    /// every tenth tick, and report success anyway.
    pub lose_writes: bool,
}

#[async_trait::async_trait]
impl ColdStore for SimCold {
    fn name(&self) -> &'static str {
        "sim-scylla"
    }

    async fn write(&self, batch: &[Record]) -> Result<(), StoreError> {
        let mut batch = batch.to_vec();
        if self.lose_writes {
            batch.retain(|r| !matches!(r, Record::Combat(c) if c.event.tick % 10 == 3));
        }
        match call("scylla", Req::Write(batch), self.timeout).await? {
            Resp::Done => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    async fn register_fence(
        &self,
        zone: ZoneId,
        fence: u64,
        since_ms: u64,
    ) -> Result<u64, StoreError> {
        match call(
            "scylla",
            Req::RegisterFence(zone, fence, since_ms),
            self.timeout,
        )
        .await?
        {
            Resp::Fence(f) => Ok(f),
            r => Err(unexpected(r)),
        }
    }

    async fn zone_fence(&self, zone: ZoneId) -> Result<u64, StoreError> {
        match call("scylla", Req::ZoneFence(zone), self.timeout).await? {
            Resp::Fence(f) => Ok(f),
            r => Err(unexpected(r)),
        }
    }

    async fn load_player(&self, player: PlayerId) -> Result<Option<StoredPlayer>, StoreError> {
        match call("scylla", Req::LoadPlayer(player), self.timeout).await? {
            Resp::Player(p) => Ok(p),
            r => Err(unexpected(r)),
        }
    }

    async fn combat_events(
        &self,
        zone: ZoneId,
        day: u32,
    ) -> Result<Vec<(u64, CombatEvent)>, StoreError> {
        match call("scylla", Req::CombatEvents(zone, day), self.timeout).await? {
            Resp::Events(e) => Ok(e),
            r => Err(unexpected(r)),
        }
    }
}

/// The shell's hot-store port, reaching the sim redis.
#[derive(Debug, Clone, Default)]
pub struct SimHot {
    /// Per-call timeout.
    pub timeout: Duration,
    /// Planted bug for the test that shows the ownership invariants work: conditional claims
    /// (handoffs, recalls) are sent as unconditional ones, so both sides of a race win.
    pub broken_claims: bool,
}

impl SimHot {
    async fn done(&self, req: Req) -> Result<(), StoreError> {
        match call("redis", req, self.timeout).await? {
            Resp::Done => Ok(()),
            r => Err(unexpected(r)),
        }
    }
}

#[async_trait::async_trait]
impl HotStore for SimHot {
    fn name(&self) -> &'static str {
        "sim-redis"
    }

    async fn put_session(&self, session: &Session, ttl: Duration) -> Result<(), StoreError> {
        self.done(Req::PutSession(session.clone(), ms(ttl))).await
    }

    async fn put_sessions(&self, sessions: &[Session], ttl: Duration) -> Result<(), StoreError> {
        self.done(Req::PutSessions(sessions.to_vec(), ms(ttl)))
            .await
    }

    async fn session(&self, player: PlayerId) -> Result<Option<Session>, StoreError> {
        match call("redis", Req::GetSession(player), self.timeout).await? {
            Resp::Session(s) => Ok(s),
            r => Err(unexpected(r)),
        }
    }

    async fn drop_session(&self, player: PlayerId) -> Result<(), StoreError> {
        self.done(Req::DropSession(player)).await
    }

    async fn set_presence(
        &self,
        zone: ZoneId,
        players: &[PlayerId],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.done(Req::SetPresence(zone, players.to_vec(), ms(ttl)))
            .await
    }

    async fn presence(&self, zone: ZoneId) -> Result<Vec<PlayerId>, StoreError> {
        match call("redis", Req::Presence(zone), self.timeout).await? {
            Resp::Players(p) => Ok(p),
            r => Err(unexpected(r)),
        }
    }

    async fn flush_positions(
        &self,
        zone: ZoneId,
        positions: &[Position],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.done(Req::FlushPositions(zone, positions.to_vec(), ms(ttl)))
            .await
    }

    async fn positions(&self, zone: ZoneId) -> Result<Vec<Position>, StoreError> {
        match call("redis", Req::Positions(zone), self.timeout).await? {
            Resp::Positions(p) => Ok(p),
            r => Err(unexpected(r)),
        }
    }

    async fn put_player_state(
        &self,
        player: PlayerId,
        state: &PlayerState,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.done(Req::PutState(player, *state, ms(ttl))).await
    }

    async fn player_state(&self, player: PlayerId) -> Result<Option<PlayerState>, StoreError> {
        match call("redis", Req::GetState(player), self.timeout).await? {
            Resp::State(s) => Ok(s),
            r => Err(unexpected(r)),
        }
    }

    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), StoreError> {
        self.done(Req::Publish(channel.to_owned(), payload.to_vec()))
            .await
    }

    async fn subscribe(&self, channel: &str) -> Result<broadcast::Receiver<Message>, StoreError> {
        let (tx, rx) = broadcast::channel(4_096);
        let channel = channel.to_owned();
        tokio::spawn(async move {
            // One connection at a time; a silent or broken one is replaced.
            while tx.receiver_count() > 0 {
                let attempt = async {
                    let mut s = TcpStream::connect(("redis", PORT)).await?;
                    write_frame(&mut s, &Req::Subscribe(channel.clone())).await?;
                    loop {
                        let frame = tokio::time::timeout(
                            Duration::from_secs(1),
                            read_frame::<Resp>(&mut s),
                        )
                        .await
                        .map_err(|_| std::io::Error::other("subscription went quiet"))??;
                        if let Resp::Published(channel, payload) = frame
                            && tx.send(Message { channel, payload }).is_err()
                        {
                            return Ok::<(), std::io::Error>(());
                        }
                    }
                };
                let _ = attempt.await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(rx)
    }

    async fn player_owner(&self, player: PlayerId) -> Result<Option<Owner>, StoreError> {
        match call("redis", Req::PlayerOwner(player), self.timeout).await? {
            Resp::Owner(o) => Ok(o),
            r => Err(unexpected(r)),
        }
    }

    async fn claim_player(
        &self,
        player: PlayerId,
        zone: ZoneId,
        expect: Option<Owner>,
        floor: u64,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let expect = if self.broken_claims { None } else { expect };
        let req = Req::ClaimPlayer(player, zone, expect, floor, ms(ttl));
        match call("redis", req, self.timeout).await? {
            Resp::Claim(c) => Ok(c),
            r => Err(unexpected(r)),
        }
    }

    async fn keep_players(
        &self,
        zone: ZoneId,
        held: &[(PlayerId, u64)],
        ttl: Duration,
    ) -> Result<Vec<(PlayerId, Owner)>, StoreError> {
        match call(
            "redis",
            Req::KeepPlayers(zone, held.to_vec(), ms(ttl)),
            self.timeout,
        )
        .await?
        {
            Resp::Superseded(s) => Ok(s),
            r => Err(unexpected(r)),
        }
    }

    async fn set_zone_address(
        &self,
        zone: ZoneId,
        address: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.done(Req::SetZoneAddress(zone, address.to_owned(), ms(ttl)))
            .await
    }

    async fn zone_address(&self, zone: ZoneId) -> Result<Option<String>, StoreError> {
        match call("redis", Req::ZoneAddress(zone), self.timeout).await? {
            Resp::Address(a) => Ok(a),
            r => Err(unexpected(r)),
        }
    }

    async fn rate_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<bool, StoreError> {
        match call(
            "redis",
            Req::RateLimit(key.to_owned(), limit, ms(window)),
            self.timeout,
        )
        .await?
        {
            Resp::Flag(b) => Ok(b),
            r => Err(unexpected(r)),
        }
    }

    async fn acquire_lease(
        &self,
        zone: ZoneId,
        owner: &str,
        ttl: Duration,
        after_fence: u64,
    ) -> Result<Option<Lease>, StoreError> {
        match call(
            "redis",
            Req::Acquire(zone, owner.to_owned(), ms(ttl), after_fence),
            self.timeout,
        )
        .await?
        {
            Resp::Lease(l) => Ok(l),
            r => Err(unexpected(r)),
        }
    }

    async fn lease_holder(&self, zone: ZoneId) -> Result<Option<LeaseHolder>, StoreError> {
        match call("redis", Req::LeaseHolder(zone), self.timeout).await? {
            Resp::Holder(h) => Ok(h),
            r => Err(unexpected(r)),
        }
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError> {
        match call("redis", Req::Renew(lease.clone(), ms(ttl)), self.timeout).await? {
            Resp::Flag(b) => Ok(b),
            r => Err(unexpected(r)),
        }
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.done(Req::Release(lease.clone())).await
    }
}

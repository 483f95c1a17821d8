//! The Redis adapter of the [`HotStore`] port, on fred 10: one pooled client for commands
//! (pipelined batch writes, command timeouts, exponential reconnect), one subscriber client
//! whose subscriptions are re-established after every reconnect, and a semaphore bounding the
//! work in flight (when Redis is slow, callers get `Unavailable` at once instead of queueing
//! without bound). Key names come from [`super::redis_keys`] only.

use std::sync::Arc;
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::{Expiration, ExpireOptions};
use tokio::sync::{Semaphore, broadcast};
use zone_core::{PlayerId, PlayerState, ZoneId};

use super::cold::StoreError;
use super::hot::{Claim, HotStore, Lease, LeaseHolder, Message, Owner, Position, Session};
use super::redis_keys as keys;

/// Most Redis calls in flight at once.
const MAX_IN_FLIGHT: usize = 256;

/// Keeps the newer of two versioned player states. KEYS[1] the state hash; ARGV version,
/// encoded state, ttl ms. Versions are compared as decimal strings (length, then digits):
/// they exceed the 2^53 that Lua's numbers hold exactly.
const PUT_STATE: &str = r"
local v = redis.call('HGET', KEYS[1], 'v')
local function le(a, b)
  if #a ~= #b then return #a < #b end
  return a <= b
end
if (not v) or le(v, ARGV[1]) then
  redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// Extends a lease if still held by this owner and token. KEYS[1] lease; ARGV value, ttl ms.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Claims a lease: raises the fence counter to at least ARGV[3] (a wiped Redis restarts
/// counters at zero), takes the next token, sets the lease if free, released (no owner) or
/// held by this very owner (a failover may bring back its own lease under an older token). KEYS[1] lease, KEYS[2]
/// fence counter; ARGV owner, ttl ms, floor. Returns the token, or 0 when another holds it.
const ACQUIRE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local holder = string.match(cur, '^(.*)|[^|]*$')
  if holder ~= ARGV[1] and holder ~= '' then
    return 0
  end
end
local n = tonumber(redis.call('GET', KEYS[2]) or '0')
if n < tonumber(ARGV[3]) then
  redis.call('SET', KEYS[2], ARGV[3])
end
local f = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. f, 'PX', ARGV[2])
return f
";

/// Who holds a lease: KEYS[1] lease. Returns {} or {value, remaining ms}.
const HOLDER: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  return {}
end
return {v, redis.call('PTTL', KEYS[1])}
";

/// Claims a player (the ownership ledger): KEYS[1] the owner record; ARGV zone, expected zone
/// ('' for an unconditional claim), expected epoch, floor, ttl ms. A missing record matches
/// only an expectation naming the claimer (`hot::claim_allowed`). Returns {1, record} when
/// won, {0, record or ''} when lost.
const CLAIM: &str = r"
local cur = redis.call('GET', KEYS[1])
local cz, ce = nil, 0
if cur then
  local sep = string.find(cur, '|', 1, true)
  if sep then
    cz = string.sub(cur, 1, sep - 1)
    ce = tonumber(string.sub(cur, sep + 1)) or 0
  end
end
if ARGV[2] ~= '' and cur and (cz ~= ARGV[2] or ce ~= tonumber(ARGV[3])) then
  return {0, cur}
end
if ARGV[2] ~= '' and (not cur) and ARGV[2] ~= ARGV[1] then
  return {0, ''}
end
local e = math.max(ce, tonumber(ARGV[3]) or 0, tonumber(ARGV[4]) or 0) + 1
local rec = ARGV[1] .. '|' .. string.format('%d', e)
redis.call('SET', KEYS[1], rec, 'PX', ARGV[5])
return {1, rec}
";

/// Keeps ownership records alive (see `HotStore::keep_players`): KEYS the owner records;
/// ARGV zone, ttl ms, then one epoch per key. Returns {index, record, ...} of the records that
/// supersede the holding (1-based key indexes).
const KEEP: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local want = tonumber(ARGV[i + 2])
  local cur = redis.call('GET', key)
  local cz, ce = nil, -1
  if cur then
    local sep = string.find(cur, '|', 1, true)
    if sep then
      cz = string.sub(cur, 1, sep - 1)
      ce = tonumber(string.sub(cur, sep + 1)) or -1
    end
  end
  if ce > want or (ce == want and cz ~= ARGV[1]) then
    table.insert(out, i)
    table.insert(out, cur)
  elseif ce == want then
    redis.call('PEXPIRE', key, ARGV[2])
  else
    redis.call('SET', key, ARGV[1] .. '|' .. ARGV[i + 2], 'PX', ARGV[2])
  end
end
return out
";

/// Players kept alive per `KEEP` call.
const KEEP_BATCH: usize = 256;

fn parse_owner(record: &str) -> Result<Option<Owner>, StoreError> {
    if record.is_empty() {
        return Ok(None);
    }
    let bad = || StoreError::BadRow(format!("owner record {record:?}"));
    let (zone, epoch) = record.split_once('|').ok_or_else(bad)?;
    Ok(Some(Owner {
        zone: ZoneId(zone.parse().map_err(|_| bad())?),
        epoch: epoch.parse().map_err(|_| bad())?,
    }))
}

/// Releases a lease if still held by this owner and token: the key keeps its fence and the
/// rest of its lifetime without an owner (see `LeaseHolder::released`). KEYS[1] lease; ARGV
/// value, released value.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', left)
  else
    redis.call('DEL', KEYS[1])
  end
  return 1
end
return 0
";

/// The Redis hot store.
pub struct RedisHotStore {
    client: Client,
    subscriber: SubscriberClient,
    messages: broadcast::Sender<Message>,
    in_flight: Arc<Semaphore>,
    timeout: Duration,
    /// Players last written to each zone's position hash, so departed ones are removed with
    /// one HDEL instead of rewriting the whole hash.
    last_positions: std::sync::Mutex<std::collections::BTreeMap<ZoneId, Vec<PlayerId>>>,
}

impl std::fmt::Debug for RedisHotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHotStore")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A fred error as a store error; `timeout`: the command timeout fred was given (its own
/// timeout errors do not say it).
fn err_after(e: Error, timeout: Duration) -> StoreError {
    match e.kind() {
        ErrorKind::Timeout => StoreError::Timeout(timeout.as_millis() as u64),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

fn encode_position(p: &Position) -> Vec<u8> {
    let mut v = Vec::with_capacity(8);
    v.extend_from_slice(&p.x.to_le_bytes());
    v.extend_from_slice(&p.y.to_le_bytes());
    v
}

fn decode_position(player: PlayerId, bytes: &[u8]) -> Option<Position> {
    let x = f32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?);
    let y = f32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    (bytes.len() == 8 && x.is_finite() && y.is_finite()).then_some(Position { player, x, y })
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<256>()
}

impl RedisHotStore {
    /// Connects to `url` (fails if Redis cannot be reached within `timeout` at start; later
    /// outages are survived by reconnecting with backoff).
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let err = |e: Error| err_after(e, timeout);
        let config = Config::from_url(url).map_err(err)?;
        let builder = {
            let mut b = Builder::from_config(config);
            b.with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
                c.max_command_attempts = 2;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = timeout;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
            b
        };
        let client = builder.build().map_err(err)?;
        let subscriber = builder.build_subscriber_client().map_err(err)?;
        for c in [&client as &dyn ClientLikeInit, &subscriber] {
            match tokio::time::timeout(timeout * 2, c.start()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(err(e)),
                Err(_) => return Err(StoreError::Timeout(ms(timeout * 2) as u64)),
            }
        }
        let _resubscribe = subscriber.manage_subscriptions();
        let (messages, _) = broadcast::channel(1024);
        let mut rx = subscriber.message_rx();
        let tx = messages.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(m) => {
                        let payload = m.value.as_bytes().map(<[u8]>::to_vec).unwrap_or_default();
                        let _ = tx.send(Message {
                            channel: m.channel.to_string(),
                            payload,
                        });
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "pub/sub receiver lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok(Self {
            client,
            subscriber,
            messages,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            timeout,
            last_positions: std::sync::Mutex::default(),
        })
    }

    /// `SET key value PX ttl`.
    async fn set_expiring(
        &self,
        key: String,
        value: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.call(self.client.set::<(), _, _>(
            key,
            value,
            Some(Expiration::PX(ms(ttl))),
            None,
            false,
        ))
        .await
    }

    /// Runs one Redis call within the in-flight bound and the timeout.
    async fn call<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, StoreError> {
        let Ok(_permit) = self.in_flight.try_acquire() else {
            return Err(StoreError::Unavailable(
                "too many Redis calls in flight".into(),
            ));
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(|e| err_after(e, self.timeout)),
            Err(_) => Err(StoreError::Timeout(self.timeout.as_millis() as u64)),
        }
    }

    /// Closes both connections.
    pub async fn quit(&self) {
        let _ = self.subscriber.quit().await;
        let _ = self.client.quit().await;
    }
}

/// `init` for both client kinds, so start-up can treat them alike.
#[async_trait::async_trait]
trait ClientLikeInit: Sync {
    async fn start(&self) -> Result<(), Error>;
}

#[async_trait::async_trait]
impl ClientLikeInit for Client {
    async fn start(&self) -> Result<(), Error> {
        self.init().await.map(|_| ())
    }
}

#[async_trait::async_trait]
impl ClientLikeInit for SubscriberClient {
    async fn start(&self) -> Result<(), Error> {
        self.init().await.map(|_| ())
    }
}

#[async_trait::async_trait]
impl HotStore for RedisHotStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn put_session(&self, session: &Session, ttl: Duration) -> Result<(), StoreError> {
        let value = format!("{}\t{}", session.zone, session.server);
        self.call(self.client.set::<(), _, _>(
            keys::session(session.player),
            value,
            Some(Expiration::PX(ms(ttl))),
            None,
            false,
        ))
        .await
    }

    async fn put_sessions(&self, sessions: &[Session], ttl: Duration) -> Result<(), StoreError> {
        if sessions.is_empty() {
            return Ok(());
        }
        let pipe = self.client.pipeline();
        let queue = async {
            for s in sessions {
                pipe.set::<(), _, _>(
                    keys::session(s.player),
                    format!("{}\t{}", s.zone, s.server),
                    Some(Expiration::PX(ms(ttl))),
                    None,
                    false,
                )
                .await?;
            }
            pipe.all::<Value>().await.map(|_| ())
        };
        self.call(queue).await
    }

    async fn session(&self, player: PlayerId) -> Result<Option<Session>, StoreError> {
        let v: Option<String> = self.call(self.client.get(keys::session(player))).await?;
        let Some(v) = v else { return Ok(None) };
        let (zone, server) = v
            .split_once('\t')
            .ok_or_else(|| StoreError::BadRow(format!("session value {v:?}")))?;
        let zone = zone
            .parse()
            .map(ZoneId)
            .map_err(|_| StoreError::BadRow(format!("session zone {zone:?}")))?;
        Ok(Some(Session {
            player,
            zone,
            server: server.to_owned(),
        }))
    }

    async fn drop_session(&self, player: PlayerId) -> Result<(), StoreError> {
        self.call(self.client.del::<(), _>(keys::session(player)))
            .await
    }

    async fn set_presence(
        &self,
        zone: ZoneId,
        players: &[PlayerId],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = keys::presence(zone);
        let members: Vec<String> = players.iter().map(|p| p.0.to_string()).collect();
        let tx = self.client.multi();
        let queue = async {
            tx.del::<(), _>(&key).await?;
            if !members.is_empty() {
                tx.sadd::<(), _, _>(&key, members).await?;
                tx.pexpire::<(), _>(&key, ms(ttl), None).await?;
            }
            tx.exec::<Value>(true).await.map(|_| ())
        };
        self.call(queue).await
    }

    async fn presence(&self, zone: ZoneId) -> Result<Vec<PlayerId>, StoreError> {
        let members: Vec<String> = self
            .call(self.client.smembers(keys::presence(zone)))
            .await?;
        let mut out: Vec<PlayerId> = members
            .iter()
            .filter_map(|m| m.parse().ok().map(PlayerId))
            .collect();
        out.sort();
        Ok(out)
    }

    async fn flush_positions(
        &self,
        zone: ZoneId,
        positions: &[Position],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        // One multi-field HSET for the whole zone (NOTES.md: 1,000 fields in one command is
        // ~6x faster than 1,000 pipelined commands), overwriting in place; players who left
        // since the last flush are removed with one HDEL; all in one pipeline with the expiry.
        let key = keys::positions(zone);
        let mut now: Vec<PlayerId> = positions.iter().map(|p| p.player).collect();
        now.sort();
        let (full, departed): (bool, Vec<String>) = {
            let last = self
                .last_positions
                .lock()
                .map_err(|_| StoreError::Unavailable("position cache poisoned".into()))?;
            // Without a known previous write (first flush, or the last one failed), rewrite.
            let full = !last.contains_key(&zone);
            let departed = last
                .get(&zone)
                .map(|before| {
                    before
                        .iter()
                        .filter(|p| now.binary_search(p).is_err())
                        .map(|p| p.0.to_string())
                        .collect()
                })
                .unwrap_or_default();
            (full, departed)
        };
        let fields: Vec<(String, Vec<u8>)> = positions
            .iter()
            .map(|p| (p.player.0.to_string(), encode_position(p)))
            .collect();
        let pipe = self.client.pipeline();
        let queue = async {
            if full || fields.is_empty() {
                pipe.del::<(), _>(&key).await?;
            }
            if !fields.is_empty() {
                pipe.hset::<(), _, _>(&key, fields).await?;
                if !departed.is_empty() {
                    pipe.hdel::<(), _, _>(&key, departed).await?;
                }
                pipe.pexpire::<(), _>(&key, ms(ttl), None).await?;
            }
            pipe.all::<Value>().await.map(|_| ())
        };
        let result = self.call(queue).await;
        if let Ok(mut last) = self.last_positions.lock() {
            if result.is_ok() {
                last.insert(zone, now);
            } else {
                // Unknown what was written: the next flush must not rely on it.
                last.remove(&zone);
            }
        }
        result
    }

    async fn positions(&self, zone: ZoneId) -> Result<Vec<Position>, StoreError> {
        let map: std::collections::HashMap<String, Vec<u8>> = self
            .call(self.client.hgetall(keys::positions(zone)))
            .await?;
        let mut out: Vec<Position> = map
            .iter()
            .filter_map(|(k, v)| decode_position(PlayerId(k.parse().ok()?), v))
            .collect();
        out.sort_by_key(|p| p.player);
        Ok(out)
    }

    async fn put_player_state(
        &self,
        player: PlayerId,
        state: &PlayerState,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let data =
            bincode::encode_to_vec(state, bincode_config()).map_err(|e| StoreError::Rejected {
                index: 0,
                reason: e.to_string(),
            })?;
        let args: Vec<Value> = vec![
            Value::from(state.version.raw().to_string()),
            Value::Bytes(data.into()),
            Value::from(ms(ttl)),
        ];
        self.call(self.client.eval::<i64, _, _, _>(
            PUT_STATE,
            vec![keys::player_state(player)],
            args,
        ))
        .await
        .map(|_| ())
    }

    async fn player_state(&self, player: PlayerId) -> Result<Option<PlayerState>, StoreError> {
        let data: Option<Vec<u8>> = self
            .call(self.client.hget(keys::player_state(player), "d"))
            .await?;
        let Some(data) = data else { return Ok(None) };
        let (state, used): (PlayerState, usize) =
            bincode::decode_from_slice(&data, bincode_config())
                .map_err(|e| StoreError::BadRow(format!("hot player state: {e}")))?;
        if used != data.len() || !state.x.is_finite() || !state.y.is_finite() {
            return Err(StoreError::BadRow("hot player state is malformed".into()));
        }
        Ok(Some(state))
    }

    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), StoreError> {
        self.call(
            self.client
                .publish::<(), _, _>(channel, Value::Bytes(payload.to_vec().into())),
        )
        .await
    }

    async fn subscribe(&self, channel: &str) -> Result<broadcast::Receiver<Message>, StoreError> {
        let rx = self.messages.subscribe();
        self.call(self.subscriber.subscribe(channel)).await?;
        Ok(rx)
    }

    async fn rate_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<bool, StoreError> {
        let key = keys::rate_limit(key);
        let pipe = self.client.pipeline();
        let queue = async {
            pipe.incr::<(), _>(&key).await?;
            pipe.pexpire::<(), _>(&key, ms(window), Some(ExpireOptions::NX))
                .await?;
            pipe.all::<Vec<Value>>().await
        };
        let replies = self.call(queue).await?;
        let count = replies
            .first()
            .and_then(|v| v.as_i64())
            .ok_or_else(|| StoreError::BadRow("INCR reply".into()))?;
        Ok(count <= i64::from(limit))
    }

    async fn player_owner(&self, player: PlayerId) -> Result<Option<Owner>, StoreError> {
        let v: Option<String> = self.call(self.client.get(keys::owner(player))).await?;
        v.map_or(Ok(None), |v| parse_owner(&v))
    }

    async fn claim_player(
        &self,
        player: PlayerId,
        zone: ZoneId,
        expect: Option<Owner>,
        floor: u64,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let (ez, ee) = expect.map_or((String::new(), 0), |o| (o.zone.to_string(), o.epoch));
        let reply: Vec<Value> = self
            .call(self.client.eval(
                CLAIM,
                vec![keys::owner(player)],
                vec![
                    Value::from(zone.to_string()),
                    Value::from(ez),
                    Value::from(ee.to_string()),
                    Value::from(floor.to_string()),
                    Value::from(ms(ttl)),
                ],
            ))
            .await?;
        let won = reply.first().and_then(Value::as_i64);
        let record = reply.get(1).and_then(|v| v.as_string()).unwrap_or_default();
        match (won, parse_owner(&record)?) {
            (Some(1), Some(owner)) => Ok(Claim::Won(owner)),
            (Some(0), current) => Ok(Claim::Lost(current)),
            _ => Err(StoreError::BadRow(format!("claim reply {reply:?}"))),
        }
    }

    async fn keep_players(
        &self,
        zone: ZoneId,
        held: &[(PlayerId, u64)],
        ttl: Duration,
    ) -> Result<Vec<(PlayerId, Owner)>, StoreError> {
        let mut superseded = Vec::new();
        for chunk in held.chunks(KEEP_BATCH) {
            let keys: Vec<String> = chunk.iter().map(|(p, _)| keys::owner(*p)).collect();
            let mut args = vec![Value::from(zone.to_string()), Value::from(ms(ttl))];
            args.extend(chunk.iter().map(|(_, e)| Value::from(e.to_string())));
            let reply: Vec<Value> = self.call(self.client.eval(KEEP, keys, args)).await?;
            for pair in reply.chunks(2) {
                let (Some(i), Some(record)) = (
                    pair.first().and_then(Value::as_i64),
                    pair.get(1).and_then(Value::as_string),
                ) else {
                    return Err(StoreError::BadRow(format!("keep reply {reply:?}")));
                };
                let player = usize::try_from(i - 1)
                    .ok()
                    .and_then(|i| chunk.get(i))
                    .map(|(p, _)| *p)
                    .ok_or_else(|| StoreError::BadRow(format!("keep reply index {i}")))?;
                if let Some(owner) = parse_owner(&record)? {
                    superseded.push((player, owner));
                }
            }
        }
        Ok(superseded)
    }

    async fn set_zone_address(
        &self,
        zone: ZoneId,
        address: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.set_expiring(keys::zone_address(zone), address, ttl)
            .await
    }

    async fn zone_address(&self, zone: ZoneId) -> Result<Option<String>, StoreError> {
        self.call(self.client.get(keys::zone_address(zone))).await
    }

    async fn set_zone_admin(
        &self,
        zone: ZoneId,
        url: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.set_expiring(keys::zone_admin(zone), url, ttl).await
    }

    async fn zone_admin(&self, zone: ZoneId) -> Result<Option<String>, StoreError> {
        self.call(self.client.get(keys::zone_admin(zone))).await
    }

    async fn acquire_lease(
        &self,
        zone: ZoneId,
        owner: &str,
        ttl: Duration,
        after_fence: u64,
    ) -> Result<Option<Lease>, StoreError> {
        let fence: i64 = self
            .call(self.client.eval(
                ACQUIRE,
                vec![keys::lease(zone), keys::FENCE.to_owned()],
                vec![
                    Value::from(owner),
                    Value::from(ms(ttl)),
                    Value::from(after_fence.to_string()),
                ],
            ))
            .await?;
        Ok((fence > 0).then(|| Lease {
            zone,
            owner: owner.to_owned(),
            fence: fence as u64,
        }))
    }

    async fn lease_holder(&self, zone: ZoneId) -> Result<Option<LeaseHolder>, StoreError> {
        let reply: Vec<Value> = self
            .call(
                self.client
                    .eval(HOLDER, vec![keys::lease(zone)], Vec::<Value>::new()),
            )
            .await?;
        let (Some(value), Some(remaining)) = (
            reply.first().and_then(|v| v.as_string()),
            reply.get(1).and_then(Value::as_i64),
        ) else {
            return Ok(None);
        };
        let bad = || StoreError::BadRow(format!("lease record {value:?}"));
        let (owner, fence) = value.rsplit_once('|').ok_or_else(bad)?;
        Ok(Some(LeaseHolder {
            released: owner.is_empty(),
            lease: Lease {
                zone,
                owner: owner.to_owned(),
                fence: fence.parse().map_err(|_| bad())?,
            },
            // -1: no expiry (set by hand); count it as a full lease still running.
            remaining: Duration::from_millis(u64::try_from(remaining).unwrap_or(u64::MAX)),
        }))
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError> {
        let value = format!("{}|{}", lease.owner, lease.fence);
        let r: i64 = self
            .call(self.client.eval(
                RENEW,
                vec![keys::lease(lease.zone)],
                vec![Value::from(value), Value::from(ms(ttl))],
            ))
            .await?;
        Ok(r == 1)
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let value = format!("{}|{}", lease.owner, lease.fence);
        let released = format!("|{}", lease.fence);
        self.call(self.client.eval::<i64, _, _, _>(
            RELEASE,
            vec![keys::lease(lease.zone)],
            vec![value, released],
        ))
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fred_timeout_says_how_long_it_waited() {
        let e = err_after(
            Error::new(ErrorKind::Timeout, "Request timed out."),
            Duration::from_millis(250),
        );
        assert_eq!(e.to_string(), "store timed out after 250 ms");
    }
}

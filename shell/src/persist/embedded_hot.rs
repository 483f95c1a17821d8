//! The embedded hot store: the [`HotStore`] port in process memory, used when no
//! `store.redis_url` is configured (one process hosting the whole world). Same semantics as
//! the Redis adapter: TTLs, fencing tokens that only grow, newest-version-wins player state.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::deadline::SaturatingAfter;
use zone_core::{PlayerId, PlayerState, ZoneId};

use super::cold::StoreError;
use super::hot::{
    Claim, HotStore, Lease, LeaseHolder, Message, Owner, Position, Session, claim_allowed,
    keep_decision, next_epoch,
};

#[derive(Debug, Default)]
struct State {
    sessions: BTreeMap<PlayerId, (Session, Instant)>,
    presence: BTreeMap<ZoneId, (Vec<PlayerId>, Instant)>,
    positions: BTreeMap<ZoneId, (Vec<Position>, Instant)>,
    states: BTreeMap<PlayerId, (PlayerState, Instant)>,
    limits: BTreeMap<String, (u32, Instant)>,
    leases: BTreeMap<ZoneId, (String, u64, Instant)>,
    owners: BTreeMap<PlayerId, (Owner, Instant)>,
    addresses: BTreeMap<ZoneId, (String, Instant)>,
    admins: BTreeMap<ZoneId, (String, Instant)>,
    fence: u64,
    channels: BTreeMap<String, broadcast::Sender<Message>>,
}

/// The in-process hot store.
#[derive(Debug, Default)]
pub struct MemoryHotStore {
    state: Mutex<State>,
}

impl MemoryHotStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every live ownership record, now (simulations compare it with who holds whom).
    pub fn owners(&self) -> BTreeMap<PlayerId, Owner> {
        self.state
            .lock()
            .map(|s| {
                let now = Instant::now();
                s.owners
                    .iter()
                    .filter(|(_, (_, exp))| *exp > now)
                    .map(|(p, (o, _))| (*p, *o))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets everything but the pub/sub subscriptions, as `FLUSHALL` does to a Redis
    /// (simulations wipe the store under running servers).
    pub fn wipe(&self) {
        if let Ok(mut s) = self.state.lock() {
            let channels = std::mem::take(&mut s.channels);
            *s = State {
                channels,
                ..State::default()
            };
        }
    }

    /// Forgets one zone's lease key, as a failover to a replica that missed the latest lease
    /// write does (simulations lose the key under a running holder).
    pub fn forget_lease(&self, zone: ZoneId) {
        if let Ok(mut s) = self.state.lock() {
            s.leases.remove(&zone);
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError::Unavailable("hot store poisoned".into()))
    }
}

fn live<T>(entry: Option<&(T, Instant)>) -> Option<&T> {
    entry
        .filter(|(_, exp)| *exp > Instant::now())
        .map(|(v, _)| v)
}

#[async_trait::async_trait]
impl HotStore for MemoryHotStore {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn put_session(&self, session: &Session, ttl: Duration) -> Result<(), StoreError> {
        self.lock()?.sessions.insert(
            session.player,
            (session.clone(), Instant::now().saturating_after(ttl)),
        );
        Ok(())
    }

    async fn session(&self, player: PlayerId) -> Result<Option<Session>, StoreError> {
        Ok(live(self.lock()?.sessions.get(&player)).cloned())
    }

    async fn drop_session(&self, player: PlayerId) -> Result<(), StoreError> {
        self.lock()?.sessions.remove(&player);
        Ok(())
    }

    async fn set_presence(
        &self,
        zone: ZoneId,
        players: &[PlayerId],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut players = players.to_vec();
        players.sort();
        players.dedup();
        self.lock()?
            .presence
            .insert(zone, (players, Instant::now().saturating_after(ttl)));
        Ok(())
    }

    async fn presence(&self, zone: ZoneId) -> Result<Vec<PlayerId>, StoreError> {
        Ok(live(self.lock()?.presence.get(&zone))
            .cloned()
            .unwrap_or_default())
    }

    async fn flush_positions(
        &self,
        zone: ZoneId,
        positions: &[Position],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.lock()?.positions.insert(
            zone,
            (positions.to_vec(), Instant::now().saturating_after(ttl)),
        );
        Ok(())
    }

    async fn positions(&self, zone: ZoneId) -> Result<Vec<Position>, StoreError> {
        Ok(live(self.lock()?.positions.get(&zone))
            .cloned()
            .unwrap_or_default())
    }

    async fn put_player_state(
        &self,
        player: PlayerId,
        state: &PlayerState,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut s = self.lock()?;
        let newer = live(s.states.get(&player)).is_none_or(|old| old.version <= state.version);
        if newer {
            s.states
                .insert(player, (*state, Instant::now().saturating_after(ttl)));
        }
        Ok(())
    }

    async fn player_state(&self, player: PlayerId) -> Result<Option<PlayerState>, StoreError> {
        Ok(live(self.lock()?.states.get(&player)).copied())
    }

    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), StoreError> {
        if let Some(tx) = self.lock()?.channels.get(channel) {
            let _ = tx.send(Message {
                channel: channel.to_owned(),
                payload: payload.to_vec(),
            });
        }
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> Result<broadcast::Receiver<Message>, StoreError> {
        Ok(self
            .lock()?
            .channels
            .entry(channel.to_owned())
            .or_insert_with(|| broadcast::channel(1024).0)
            .subscribe())
    }

    async fn rate_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<bool, StoreError> {
        let mut s = self.lock()?;
        let now = Instant::now();
        let entry = s
            .limits
            .entry(key.to_owned())
            .or_insert((0, now.saturating_after(window)));
        if entry.1 <= now {
            *entry = (0, now.saturating_after(window));
        }
        entry.0 = entry.0.saturating_add(1);
        Ok(entry.0 <= limit)
    }

    async fn player_owner(&self, player: PlayerId) -> Result<Option<Owner>, StoreError> {
        Ok(live(self.lock()?.owners.get(&player)).copied())
    }

    async fn claim_player(
        &self,
        player: PlayerId,
        zone: ZoneId,
        expect: Option<Owner>,
        floor: u64,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let mut s = self.lock()?;
        let current = live(s.owners.get(&player)).copied();
        if !claim_allowed(current, expect, zone) {
            return Ok(Claim::Lost(current));
        }
        let owner = Owner {
            zone,
            epoch: next_epoch(current, expect, floor),
        };
        s.owners
            .insert(player, (owner, Instant::now().saturating_after(ttl)));
        Ok(Claim::Won(owner))
    }

    async fn keep_players(
        &self,
        zone: ZoneId,
        held: &[(PlayerId, u64)],
        ttl: Duration,
    ) -> Result<Vec<(PlayerId, Owner)>, StoreError> {
        let mut s = self.lock()?;
        let until = Instant::now().saturating_after(ttl);
        let mut superseded = Vec::new();
        for &(player, epoch) in held {
            let current = live(s.owners.get(&player)).copied();
            match keep_decision(current, zone, epoch) {
                Some(other) => superseded.push((player, other)),
                None => {
                    s.owners.insert(player, (Owner { zone, epoch }, until));
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
        self.lock()?.addresses.insert(
            zone,
            (address.to_owned(), Instant::now().saturating_after(ttl)),
        );
        Ok(())
    }

    async fn zone_address(&self, zone: ZoneId) -> Result<Option<String>, StoreError> {
        Ok(live(self.lock()?.addresses.get(&zone)).cloned())
    }

    async fn set_zone_admin(
        &self,
        zone: ZoneId,
        url: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.lock()?
            .admins
            .insert(zone, (url.to_owned(), Instant::now().saturating_after(ttl)));
        Ok(())
    }

    async fn zone_admin(&self, zone: ZoneId) -> Result<Option<String>, StoreError> {
        Ok(live(self.lock()?.admins.get(&zone)).cloned())
    }

    async fn acquire_lease(
        &self,
        zone: ZoneId,
        owner: &str,
        ttl: Duration,
        after_fence: u64,
    ) -> Result<Option<Lease>, StoreError> {
        let mut s = self.lock()?;
        let now = Instant::now();
        if s.leases
            .get(&zone)
            .is_some_and(|(o, _, exp)| *exp > now && o != owner && !o.is_empty())
        {
            return Ok(None);
        }
        s.fence = s.fence.max(after_fence) + 1;
        let fence = s.fence;
        s.leases
            .insert(zone, (owner.to_owned(), fence, now.saturating_after(ttl)));
        Ok(Some(Lease {
            zone,
            owner: owner.to_owned(),
            fence,
        }))
    }

    async fn lease_holder(&self, zone: ZoneId) -> Result<Option<LeaseHolder>, StoreError> {
        let s = self.lock()?;
        let now = Instant::now();
        Ok(s.leases
            .get(&zone)
            .filter(|(_, _, exp)| *exp > now)
            .map(|(owner, fence, exp)| LeaseHolder {
                released: owner.is_empty(),
                lease: Lease {
                    zone,
                    owner: owner.clone(),
                    fence: *fence,
                },
                remaining: *exp - now,
            }))
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError> {
        let mut s = self.lock()?;
        let now = Instant::now();
        match s.leases.get_mut(&lease.zone) {
            Some((owner, fence, exp))
                if *owner == lease.owner && *fence == lease.fence && *exp > now =>
            {
                *exp = now.saturating_after(ttl);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let mut s = self.lock()?;
        if s.leases
            .get(&lease.zone)
            .is_some_and(|(o, f, _)| *o == lease.owner && *f == lease.fence)
            && let Some(held) = s.leases.get_mut(&lease.zone)
        {
            // Released: no owner, the fence and the rest of the lifetime kept.
            held.0.clear();
        }
        Ok(())
    }
}

//! The hot-store port: fast, shared, losable state. Sessions with a TTL, who is in which zone,
//! a position cache flushed in batches, a hot copy of each player's last state, cross-zone
//! pub/sub, per-key rate limits and zone leases with fencing tokens. Implemented by Redis
//! ([`super::redis`]) and an in-process map ([`super::embedded_hot`]).
//!
//! Nothing here is the only copy of anything durable: the cold store is the record, so a Redis
//! wipe costs a cache refill, never data.

use std::fmt::Debug;
use std::time::Duration;

use bincode::{Decode, Encode};
use tokio::sync::broadcast;
use zone_core::{PlayerId, PlayerState, ZoneId};

/// The new epoch of a claim (see [`HotStore::claim_player`]): every adapter computes it so.
pub fn next_epoch(current: Option<Owner>, expect: Option<Owner>, floor: u64) -> u64 {
    current
        .map_or(0, |o| o.epoch)
        .max(expect.map_or(0, |o| o.epoch))
        .max(floor)
        .saturating_add(1)
}

/// What [`HotStore::keep_players`] does with a record: `None` to refresh or rewrite it as
/// `(zone, epoch)`, or the superseding owner to report. Every adapter decides so.
pub fn keep_decision(current: Option<Owner>, zone: ZoneId, epoch: u64) -> Option<Owner> {
    match current {
        Some(c) if c.epoch > epoch || (c.epoch == epoch && c.zone != zone) => Some(c),
        _ => None,
    }
}

/// Whether `zone`'s claim with `expect` may take a player whose record is `current`. A
/// conditional claim needs the record it is conditional on: a missing one (expired, wiped)
/// matches only an expectation naming the claimer itself (taking back its own player), never
/// a handoff from another zone, which waits until the sender's keep-alive has written the
/// record again.
pub fn claim_allowed(current: Option<Owner>, expect: Option<Owner>, zone: ZoneId) -> bool {
    match (current, expect) {
        (_, None) => true,
        (None, Some(e)) => e.zone == zone,
        (Some(c), Some(e)) => c == e,
    }
}

use super::cold::StoreError;

/// A player's session: which zone holds them, since when.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Session {
    /// Whose.
    pub player: PlayerId,
    /// The zone the player is in.
    pub zone: ZoneId,
    /// The server instance holding them.
    pub server: String,
}

/// A cached position.
#[derive(Clone, Copy, Debug, PartialEq, Encode, Decode)]
pub struct Position {
    /// Whose.
    pub player: PlayerId,
    /// World x.
    pub x: f32,
    /// World y.
    pub y: f32,
}

/// A held zone lease. `fence` increases with every acquisition of any lease, so a later owner
/// always holds a larger token than an earlier one.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Lease {
    /// The zone.
    pub zone: ZoneId,
    /// Who holds it.
    pub owner: String,
    /// The fencing token.
    pub fence: u64,
}

/// A zone lease as others see it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct LeaseHolder {
    /// The lease.
    pub lease: Lease,
    /// Until the store expires it, unless renewed.
    pub remaining: Duration,
    /// Given up by its holder, which has stopped simulating the zone: anyone may claim it at
    /// once. A released lease keeps its key (without an owner) for the rest of its lifetime,
    /// so that a watcher tells a graceful release from a key lost to a wipe or a failover.
    pub released: bool,
}

/// Who holds a player: the zone simulating them and the ownership epoch of that holding. The
/// epoch grows with every change of hands (a join, a handoff, a recall), and every save the
/// holder writes carries it (the upper half of [`PlayerState::version`]), so a former holder's
/// late writes can never overwrite the current holder's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Owner {
    /// The zone.
    pub zone: ZoneId,
    /// The ownership epoch.
    pub epoch: u64,
}

/// What a claim of a player came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Claim {
    /// The claimer holds the player now, as this owner record.
    Won(Owner),
    /// Someone else holds them (the record found, if any): nothing was changed.
    Lost(Option<Owner>),
}

/// A pub/sub message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The channel it came on.
    pub channel: String,
    /// The payload.
    pub payload: Vec<u8>,
}

/// The hot store.
#[async_trait::async_trait]
pub trait HotStore: Send + Sync + Debug {
    /// A short name for logs ("redis", "embedded").
    fn name(&self) -> &'static str;

    /// Records (or refreshes) a session; it expires after `ttl` unless refreshed.
    async fn put_session(&self, session: &Session, ttl: Duration) -> Result<(), StoreError>;
    /// Records (or refreshes) many sessions in one round trip.
    async fn put_sessions(&self, sessions: &[Session], ttl: Duration) -> Result<(), StoreError> {
        for s in sessions {
            self.put_session(s, ttl).await?;
        }
        Ok(())
    }
    /// A player's session, if live.
    async fn session(&self, player: PlayerId) -> Result<Option<Session>, StoreError>;
    /// Ends a session.
    async fn drop_session(&self, player: PlayerId) -> Result<(), StoreError>;

    /// Replaces the set of players present in a zone (expires after `ttl` unless refreshed).
    async fn set_presence(
        &self,
        zone: ZoneId,
        players: &[PlayerId],
        ttl: Duration,
    ) -> Result<(), StoreError>;
    /// The players present in a zone.
    async fn presence(&self, zone: ZoneId) -> Result<Vec<PlayerId>, StoreError>;

    /// Replaces a zone's position cache in one batched write.
    async fn flush_positions(
        &self,
        zone: ZoneId,
        positions: &[Position],
        ttl: Duration,
    ) -> Result<(), StoreError>;
    /// A zone's cached positions.
    async fn positions(&self, zone: ZoneId) -> Result<Vec<Position>, StoreError>;

    /// Keeps a player's last state hot (written on leave), keeping the newer version.
    async fn put_player_state(
        &self,
        player: PlayerId,
        state: &PlayerState,
        ttl: Duration,
    ) -> Result<(), StoreError>;
    /// A player's hot state.
    async fn player_state(&self, player: PlayerId) -> Result<Option<PlayerState>, StoreError>;

    /// Publishes to a channel.
    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), StoreError>;
    /// Subscribes to a channel; the subscription survives reconnects.
    async fn subscribe(&self, channel: &str) -> Result<broadcast::Receiver<Message>, StoreError>;

    /// Counts one use of `key`; `false` when more than `limit` uses fell in the current window.
    async fn rate_limit(&self, key: &str, limit: u32, window: Duration)
    -> Result<bool, StoreError>;

    /// Who holds a player, if the ledger knows.
    async fn player_owner(&self, player: PlayerId) -> Result<Option<Owner>, StoreError>;
    /// Takes `player` for `zone`, atomically. With `expect` (a handoff or its recall) only if
    /// the ledger still names that owner (a missing record matches only an `expect` naming
    /// `zone` itself: [`claim_allowed`]); without (a join) always. The new epoch is one above the largest of the record's,
    /// `expect`'s and `floor` (the epoch of the state being taken over), so epochs only grow.
    /// The record expires after `ttl` (each claim rewrites it; the holder keeps it alive with
    /// [`HotStore::keep_players`]).
    async fn claim_player(
        &self,
        player: PlayerId,
        zone: ZoneId,
        expect: Option<Owner>,
        floor: u64,
        ttl: Duration,
    ) -> Result<Claim, StoreError>;

    /// Keeps alive the ownership records of the players `zone` holds, as `(player, epoch)`:
    /// a record naming this zone and epoch expires `ttl` from now again; a missing one
    /// (expired, wiped) or one of an older epoch is written again. A record naming another
    /// zone at the same or a later epoch, or a later epoch of this zone, is left alone and
    /// returned: that holding supersedes this one.
    async fn keep_players(
        &self,
        zone: ZoneId,
        held: &[(PlayerId, u64)],
        ttl: Duration,
    ) -> Result<Vec<(PlayerId, Owner)>, StoreError>;

    /// Publishes where a zone's server listens (the lease holder does, on claiming).
    async fn set_zone_address(
        &self,
        zone: ZoneId,
        address: &str,
        ttl: Duration,
    ) -> Result<(), StoreError>;
    /// Where a zone's server listens, if published and not expired.
    async fn zone_address(&self, zone: ZoneId) -> Result<Option<String>, StoreError>;

    /// Publishes where the holder of a zone serves its world page (an `http://` URL), for the
    /// pages of the other zones' servers to link to. A store that cannot keep it (the
    /// simulations' store) publishes nothing: the pages show no link.
    async fn set_zone_admin(
        &self,
        _zone: ZoneId,
        _url: &str,
        _ttl: Duration,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    /// Where the holder of a zone serves its world page, if published and not expired.
    async fn zone_admin(&self, _zone: ZoneId) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    /// Claims a zone for `owner` for `ttl`, if nobody else holds it (a lease naming `owner`
    /// itself, say one a failover brought back with an older fence, is taken over). The
    /// fencing token handed out is greater than `after_fence` even if the store lost its
    /// counter (a Redis wipe).
    async fn acquire_lease(
        &self,
        zone: ZoneId,
        owner: &str,
        ttl: Duration,
        after_fence: u64,
    ) -> Result<Option<Lease>, StoreError>;
    /// Who holds `zone`'s lease and for how much longer, if anyone (what a standby watches).
    async fn lease_holder(&self, zone: ZoneId) -> Result<Option<LeaseHolder>, StoreError>;
    /// Extends a held lease; `false` when it was lost (expired or taken).
    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError>;
    /// Gives a lease up, if still held.
    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError>;
}

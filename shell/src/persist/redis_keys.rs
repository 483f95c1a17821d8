//! The Redis key schema, in one place. Every key the server writes is built here.
//!
//! | key | type | holds | expiry |
//! |---|---|---|---|
//! | `zs:session:{player}` | string | `"{zone}\t{server}"` | `store.hot_ttl_s`, refreshed |
//! | `zs:zone:{zone}:presence` | set | player ids in the zone | refreshed each position flush |
//! | `zs:zone:{zone}:positions` | hash | player id -> 8 bytes (x, y as f32 LE) | same |
//! | `zs:player:{player}:state` | hash | `v` version, `d` bincode `PlayerState` | `store.hot_ttl_s` |
//! | `zs:player:{player}:owner` | string | `"{zone}\|{epoch}"`: the ownership ledger | `store.hot_ttl_s`, rewritten by every claim |
//! | `zs:zone:{zone}:address` | string | `"{ip}:{port}"` clients reach the zone's server at | `store.lease_ttl_ms`, renewed with the lease |
//! | `zs:zone:{zone}:bus` | pub/sub channel | handoffs and ghosts for the zone ([`crate::world::bus`]) | - |
//! | `zs:rl:{key}` | counter | uses in the current window | the window |
//! | `zs:lease:zone:{zone}` | string | `"{owner}\|{fence}"` | `store.lease_ttl_ms`, renewed |
//! | `zs:lease:fence` | counter | last fencing token handed out | never |

use zone_core::{PlayerId, ZoneId};

/// The fencing-token counter shared by every lease.
pub const FENCE: &str = "zs:lease:fence";

/// A player's session.
pub fn session(player: PlayerId) -> String {
    format!("zs:session:{}", player.0)
}

/// The players in a zone.
pub fn presence(zone: ZoneId) -> String {
    format!("zs:zone:{}:presence", zone.0)
}

/// A zone's position cache.
pub fn positions(zone: ZoneId) -> String {
    format!("zs:zone:{}:positions", zone.0)
}

/// A player's hot state.
pub fn player_state(player: PlayerId) -> String {
    format!("zs:player:{}:state", player.0)
}

/// A player's ownership record.
pub fn owner(player: PlayerId) -> String {
    format!("zs:player:{}:owner", player.0)
}

/// Where a zone's server listens.
pub fn zone_address(zone: ZoneId) -> String {
    format!("zs:zone:{}:address", zone.0)
}

/// Where a zone's holder serves its world page.
pub fn zone_admin(zone: ZoneId) -> String {
    format!("zs:zone:{}:admin", zone.0)
}

/// The pub/sub channel other zones send a zone handoffs and ghosts on.
pub fn zone_bus(zone: ZoneId) -> String {
    format!("zs:zone:{}:bus", zone.0)
}

/// A rate-limit counter.
pub fn rate_limit(key: &str) -> String {
    format!("zs:rl:{key}")
}

/// A zone's lease.
pub fn lease(zone: ZoneId) -> String {
    format!("zs:lease:zone:{}", zone.0)
}

/// The pub/sub channel of a zone's events.
pub fn zone_channel(zone: ZoneId) -> String {
    format!("zs:zone:{}:events", zone.0)
}

//! The Redis key schema, in one place. Every key the server writes is built here.
//!
//! | key | type | holds | expiry |
//! |---|---|---|---|
//! | `zs:session:{player}` | string | `"{zone}\t{server}"` | `store.hot_ttl_s`, refreshed |
//! | `zs:zone:{zone}:presence` | set | player ids in the zone | refreshed each position flush |
//! | `zs:zone:{zone}:positions` | hash | player id -> 8 bytes (x, y as f32 LE) | same |
//! | `zs:player:{player}:state` | hash | `v` version, `d` bincode `PlayerState` | `store.hot_ttl_s` |
//! | `zs:rl:{key}` | counter | uses in the current window | the window |
//! | `zs:lease:zone:{zone}` | string | `"{owner}\|{fence}"` | `store.lease_ttl_ms`, renewed |
//! | `zs:lease:fence` | counter | last fencing token handed out | never |

use zone_core::PlayerId;

/// The fencing-token counter shared by every lease.
pub const FENCE: &str = "zs:lease:fence";

/// A player's session.
pub fn session(player: PlayerId) -> String {
    format!("zs:session:{}", player.0)
}

/// The players in a zone.
pub fn presence(zone: u32) -> String {
    format!("zs:zone:{zone}:presence")
}

/// A zone's position cache.
pub fn positions(zone: u32) -> String {
    format!("zs:zone:{zone}:positions")
}

/// A player's hot state.
pub fn player_state(player: PlayerId) -> String {
    format!("zs:player:{}:state", player.0)
}

/// A rate-limit counter.
pub fn rate_limit(key: &str) -> String {
    format!("zs:rl:{key}")
}

/// A zone's lease.
pub fn lease(zone: u32) -> String {
    format!("zs:lease:zone:{zone}")
}

/// The pub/sub channel of a zone's events.
pub fn zone_channel(zone: u32) -> String {
    format!("zs:zone:{zone}:events")
}

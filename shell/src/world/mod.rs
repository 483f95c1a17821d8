//! Multi-zone worlds: what a zone server needs to be one zone among many. The world is a
//! [`WorldGrid`]; each zone is held by at most one server at a time (a lease with a fencing
//! token, `effects::lease`); players who step over a border are handed to the neighbour
//! (`host::handoff`, with the messages of [`bus`]) and their clients redirected; entities
//! near a border are shown across it as [`ghosts`].
//!
//! The handoff protocol, zone A handing player P to zone B:
//!
//! 1. A's tick reports P standing over the border into B. If B has not been heard from lately
//!    (no ghost batch within `neighbour_timeout`), the border is closed: P is put back inside.
//! 2. Otherwise A takes P out of its simulation, spools P's state, and once the spool has made
//!    it durable (the host holds the message until `handle_flushed` says so) sends
//!    `Transfer{state, epoch e}` to B, again every `handoff_resend` until answered.
//! 3. B claims P in the ownership ledger *only if it still says (A, e)*, getting epoch e + 1;
//!    joins P's avatar (simulated at once, awaiting its client), spools the state under the new
//!    epoch and answers `Accepted{epoch, address}`, or `Refused`.
//! 4. A sends P's client a reliable redirect (B's address, a fresh connect token) and lets
//!    it go. B attaches the client when it connects.
//! 5. If A hears nothing within `handoff_timeout`, or is refused, it claims P back with the
//!    same conditional claim (expect (A, e)). Exactly one of the two claims can win, so P is
//!    never held by two zones; the loser learns who won. A recalled P is put back inside A.
//!
//! Saves carry the epoch (the upper half of the state's version), so the cold store orders a
//! former holder's late writes before the current holder's. A fresh login claims the player
//! unconditionally; if the ledger named another zone, that zone is sent `Evict` and drops any
//! copy it still holds under an older epoch.

pub mod bus;
pub mod ghosts;
pub mod seal;

use std::net::SocketAddr;
use std::time::Duration;

use zone_core::ZoneId;
use zone_core::world::WorldGrid;

/// Where a zone sits in its world and how it deals with its neighbours.
#[derive(Clone, Debug)]
pub struct WorldPlace {
    /// The world.
    pub grid: WorldGrid,
    /// This zone.
    pub zone: ZoneId,
    /// Where this zone's clients connect (sent to neighbours in `Accepted`).
    pub public_address: SocketAddr,
    /// Entities this close to a neighbour's rectangle are ghosts there (world units; the
    /// replication exit radius, so a player at the border sees as far across as along).
    pub ghost_margin: f32,
    /// Ghost batches (and heartbeats) go out every this many ticks.
    pub ghost_every_ticks: u32,
    /// A neighbour silent for this long is down: its border is closed.
    pub neighbour_timeout: Duration,
    /// An unanswered transfer is sent again after this long.
    pub handoff_resend: Duration,
    /// An unanswered transfer is recalled after this long.
    pub handoff_timeout: Duration,
    /// A redirected client that has not left by then is disconnected.
    pub redirect_timeout: Duration,
    /// A handed-over avatar whose client has not arrived by then is saved and removed.
    pub arrival_timeout: Duration,
    /// Lifetime of the connect tokens minted for redirects, seconds: short (30 s at most), as
    /// the client uses one at once and a leaked one should not stay good for long.
    pub token_expiry_s: u64,
    /// Connection timeout written into those tokens, seconds.
    pub token_timeout_s: i32,
}

impl WorldPlace {
    /// The defaults for zone `zone` of `grid`, reached at `public_address`.
    pub fn new(grid: WorldGrid, zone: ZoneId, public_address: SocketAddr) -> Self {
        Self {
            grid,
            zone,
            public_address,
            ghost_margin: 36.0,
            ghost_every_ticks: 3,
            neighbour_timeout: Duration::from_millis(1_500),
            handoff_resend: Duration::from_millis(250),
            handoff_timeout: Duration::from_millis(2_000),
            redirect_timeout: Duration::from_secs(5),
            arrival_timeout: Duration::from_secs(15),
            token_expiry_s: 30,
            token_timeout_s: 10,
        }
    }
}

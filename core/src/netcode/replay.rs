//! Replay protection: a 256-entry window of received sequence numbers.
//!
//! Owns the "already received" test and the window advance of `STANDARD.md`. The age test is
//! written subtraction-side (`most_recent >= 256 && sequence <= most_recent - 256`) so it is
//! correct and panic-free for every `u64`, including the top of the sequence space. The
//! window must only be advanced after a packet has been authenticated; it must never be
//! touched by bytes that failed decryption, and never allocate.

/// Number of sequence numbers the window remembers.
pub const REPLAY_WINDOW_SIZE: u64 = 256;
const SLOTS: usize = REPLAY_WINDOW_SIZE as usize;

/// Per-connection replay protection state.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    most_recent: u64,
    received: [u64; SLOTS],
    occupied: [u64; SLOTS / 64],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("most_recent", &self.most_recent)
            .finish_non_exhaustive()
    }
}

impl ReplayWindow {
    /// An empty window: nothing received, most recent sequence zero.
    pub fn new() -> Self {
        Self {
            most_recent: 0,
            received: [0; SLOTS],
            occupied: [0; SLOTS / 64],
        }
    }

    /// Most recent sequence number accepted so far (zero before any).
    pub fn most_recent(&self) -> u64 {
        self.most_recent
    }

    fn slot(sequence: u64) -> usize {
        (sequence % REPLAY_WINDOW_SIZE) as usize
    }

    fn is_occupied(&self, slot: usize) -> bool {
        self.occupied
            .get(slot / 64)
            .is_some_and(|w| w & (1u64 << (slot % 64)) != 0)
    }

    /// True if `sequence` must be ignored: older than the window, or already received.
    pub fn already_received(&self, sequence: u64) -> bool {
        if self.most_recent >= REPLAY_WINDOW_SIZE
            && sequence <= self.most_recent - REPLAY_WINDOW_SIZE
        {
            return true;
        }
        let slot = Self::slot(sequence);
        if !self.is_occupied(slot) {
            return false;
        }
        self.received
            .get(slot)
            .is_some_and(|&stored| stored >= sequence)
    }

    /// Records `sequence` as received. Call only after the packet authenticated.
    pub fn advance(&mut self, sequence: u64) {
        let slot = Self::slot(sequence);
        let newer =
            !self.is_occupied(slot) || self.received.get(slot).is_some_and(|&s| s < sequence);
        if newer {
            if let Some(s) = self.received.get_mut(slot) {
                *s = sequence;
            }
            if let Some(w) = self.occupied.get_mut(slot / 64) {
                *w |= 1u64 << (slot % 64);
            }
        }
        if sequence > self.most_recent {
            self.most_recent = sequence;
        }
    }
}

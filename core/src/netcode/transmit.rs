//! Outgoing datagram queue shared by server and client.
//!
//! Owns a bounded FIFO of encrypted datagrams stored back to back in one reusable byte arena,
//! so that steady-state sending allocates nothing once the arena has grown to its working
//! size. The arena is reset whenever the queue has been fully drained. It must never grow
//! past `max_datagrams` entries and never hand out a datagram twice.

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::MAX_PACKET_BYTES;

/// One datagram to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit<'a> {
    /// Where to send it.
    pub destination: SocketAddr,
    /// The bytes to send, as one UDP datagram.
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    destination: SocketAddr,
    start: usize,
    len: usize,
}

/// Bounded queue of datagrams awaiting `poll_transmit`.
#[derive(Debug)]
pub(crate) struct TransmitQueue {
    arena: Vec<u8>,
    entries: VecDeque<Entry>,
    max_datagrams: usize,
}

/// The queue already holds `max_datagrams` datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueFull;

impl TransmitQueue {
    pub(crate) fn new(max_datagrams: usize) -> Self {
        let initial = max_datagrams.min(64);
        Self {
            arena: Vec::with_capacity(initial.saturating_mul(MAX_PACKET_BYTES)),
            entries: VecDeque::with_capacity(initial),
            max_datagrams,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.max_datagrams
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Lets `write` fill up to [`MAX_PACKET_BYTES`] bytes and queues what it wrote.
    pub(crate) fn push_with<E>(
        &mut self,
        destination: SocketAddr,
        write: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<Result<(), E>, QueueFull> {
        if self.entries.len() >= self.max_datagrams {
            return Err(QueueFull);
        }
        if self.entries.is_empty() {
            self.arena.clear();
        }
        let start = self.arena.len();
        self.arena.resize(start.saturating_add(MAX_PACKET_BYTES), 0);
        let region = self.arena.get_mut(start..).unwrap_or_default();
        match write(region) {
            Ok(len) => {
                let len = len.min(MAX_PACKET_BYTES);
                self.arena.truncate(start.saturating_add(len));
                self.entries.push_back(Entry {
                    destination,
                    start,
                    len,
                });
                Ok(Ok(()))
            }
            Err(e) => {
                self.arena.truncate(start);
                Ok(Err(e))
            }
        }
    }

    /// Next datagram, oldest first.
    pub(crate) fn pop(&mut self) -> Option<Transmit<'_>> {
        let entry = self.entries.pop_front()?;
        let payload = self
            .arena
            .get(entry.start..entry.start.saturating_add(entry.len))?;
        Some(Transmit {
            destination: entry.destination,
            payload,
        })
    }
}

//! Bounded history of connect tokens already used, by token tag.
//!
//! Owns the "connect token already used by a different address" rule of `STANDARD.md`:
//! the 16-byte tag of the encrypted private connect token identifies the token, and is
//! remembered with the first source address that presented it. The history holds at most
//! `capacity` tokens; the oldest is forgotten first. It must never grow without bound.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use super::MAC_BYTES;

#[derive(Debug)]
pub(crate) struct TokenHistory {
    by_tag: BTreeMap<[u8; MAC_BYTES], SocketAddr>,
    order: VecDeque<[u8; MAC_BYTES]>,
    capacity: usize,
}

impl TokenHistory {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            by_tag: BTreeMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// False if the token was already used from another address; otherwise records it.
    pub(crate) fn check_and_record(&mut self, tag: [u8; MAC_BYTES], addr: SocketAddr) -> bool {
        if let Some(first) = self.by_tag.get(&tag) {
            return *first == addr;
        }
        while self.by_tag.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.by_tag.remove(&old);
                }
                None => break,
            }
        }
        self.by_tag.insert(tag, addr);
        self.order.push_back(tag);
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.by_tag.len()
    }
}

//! The packet phase of a tick, fanned out: every client's snapshot is built and sealed in one
//! of a few lanes, each a [`Worker`] over the tick's shared frame and a buffer of sealed
//! datagrams ([`Datagrams`]). Lanes run on the threads a [`Parallel`] gives (the server's pool)
//! or one after the other ([`Sequential`], the default and what simulations use); either way
//! the datagrams are the same bytes.
//!
//! The host stays sans-IO: lanes compute, they never touch a socket. The loop hands the sealed
//! batches to the kernel afterwards ([`super::ZoneHost::poll_batches`]).

use std::net::SocketAddr;

use smallvec::SmallVec;
use zone_core::netcode::{MAX_PACKET_BYTES, PayloadTicket, Transmit};
use zone_core::replication::{ClientLink, Frame, Replicator, Worker};

/// Lanes at most (the inline capacity of the per-tick job list: more would allocate).
pub const MAX_LANES: usize = 32;

/// Runs independent jobs, possibly at once (a thread pool), and returns when all are done.
pub trait Parallel: Send + Sync + std::fmt::Debug {
    /// How many jobs it runs at once: the host cuts its clients into this many lanes.
    fn width(&self) -> usize;
    /// Runs every job once.
    fn run(&self, jobs: &mut [&mut (dyn FnMut() + Send)]);
}

/// Runs jobs one after the other on the calling thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sequential;

impl Parallel for Sequential {
    fn width(&self) -> usize {
        1
    }

    fn run(&self, jobs: &mut [&mut (dyn FnMut() + Send)]) {
        for job in jobs {
            job();
        }
    }
}

/// Sealed datagrams back to back in one reused buffer.
#[derive(Debug, Default)]
pub struct Datagrams {
    bytes: Vec<u8>,
    entries: Vec<(SocketAddr, u32, u32)>,
}

impl Datagrams {
    /// The datagrams, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Transmit<'_>> {
        self.entries.iter().map(|&(destination, a, b)| Transmit {
            destination,
            payload: self.bytes.get(a as usize..b as usize).unwrap_or(&[]),
        })
    }

    /// The `i`-th datagram.
    pub fn get(&self, i: usize) -> Option<Transmit<'_>> {
        let &(destination, a, b) = self.entries.get(i)?;
        Some(Transmit {
            destination,
            payload: self.bytes.get(a as usize..b as usize)?,
        })
    }

    /// Number of datagrams.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
    }

    /// Seals `payload` under `ticket` at the end; false if it could not be sealed.
    fn seal(&mut self, ticket: &PayloadTicket, payload: &[u8]) -> bool {
        let start = self.bytes.len();
        self.bytes.resize(start + MAX_PACKET_BYTES, 0);
        match ticket.seal(payload, &mut self.bytes[start..]) {
            Ok(n) => {
                self.bytes.truncate(start + n);
                self.entries
                    .push((ticket.destination, start as u32, (start + n) as u32));
                true
            }
            Err(_) => {
                self.bytes.truncate(start);
                false
            }
        }
    }
}

/// One lane's worker and output.
#[derive(Debug, Default)]
pub struct Lane {
    worker: Worker,
    datagrams: Datagrams,
    /// Packets built whose client had no ticket (gone, or its sequence exhausted).
    unsealed: u64,
}

impl Lane {
    /// The sealed datagrams of the last tick.
    pub fn datagrams(&self) -> &Datagrams {
        &self.datagrams
    }

    /// Builds the packets of the due clients of `links` and seals each with its ticket
    /// (`tickets` is aligned with `links`).
    fn run(
        &mut self,
        frame: &Frame<'_>,
        links: &mut [ClientLink],
        tickets: &[Option<PayloadTicket>],
    ) {
        Replicator::build(frame, links, &mut self.worker);
        self.datagrams.clear();
        self.unsealed = 0;
        let mut packets = self.worker.packets();
        for (link, ticket) in links.iter().zip(tickets) {
            if !frame.is_due(link) {
                continue;
            }
            let Some((player, payload)) = packets.next() else {
                break;
            };
            debug_assert_eq!(player, link.player(), "packets come in client order");
            let sealed = ticket
                .as_ref()
                .is_some_and(|t| self.datagrams.seal(t, payload));
            if !sealed {
                self.unsealed += 1;
            }
        }
    }
}

/// Cuts the clients into `lanes.len()` chunks, builds and seals each lane's on `parallel`,
/// and counts the work into the replicator. Returns packets left unsealed.
pub fn build_and_seal(
    rep: &mut Replicator,
    tickets: &[Option<PayloadTicket>],
    lanes: &mut [Lane],
    parallel: &dyn Parallel,
) -> u64 {
    {
        let (frame, mut links) = rep.split();
        let mut tickets = tickets;
        let chunk = links.len().div_ceil(lanes.len().max(1));
        // Every lane runs, those past the clients with none (so none keeps old datagrams).
        let mut jobs: SmallVec<[_; MAX_LANES]> = SmallVec::new();
        for lane in lanes.iter_mut() {
            let n = chunk.min(links.len());
            let (mine, rest) = std::mem::take(&mut links).split_at_mut(n);
            links = rest;
            let (my_tickets, rest) = tickets.split_at(n.min(tickets.len()));
            tickets = rest;
            jobs.push(move || lane.run(&frame, mine, my_tickets));
        }
        let mut refs: SmallVec<[&mut (dyn FnMut() + Send); MAX_LANES]> = jobs
            .iter_mut()
            .map(|j| j as &mut (dyn FnMut() + Send))
            .collect();
        parallel.run(&mut refs);
    }
    let mut unsealed = 0;
    for lane in lanes.iter_mut() {
        rep.absorb(&lane.worker);
        unsealed += lane.unsealed;
    }
    unsealed
}

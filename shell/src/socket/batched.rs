//! [`BatchedUdp`]: the production UDP socket, moving many datagrams per system call.
//!
//! Receiving goes through `quinn-udp` (the crate quinn uses): `recvmmsg`, up to 32 datagrams a
//! call, and UDP GRO where the kernel coalesces datagrams of one sender (split back by their
//! stride here). Sending a tick's snapshots, one datagram per client to as many addresses,
//! goes out through `sendmmsg` (rustix's safe wrapper: quinn-udp sends one destination per
//! call), 32 datagrams a call; a run of datagrams to one address (the redundant disconnect
//! packets) goes as one UDP GSO send through `quinn-udp` where the kernel offers it. Where a
//! feature is missing the socket falls back quietly: without GSO, runs go through `sendmmsg`
//! too.
//!
//! It never blocks: what the kernel does not take at once (`WouldBlock`) is left for the
//! loop's ordinary asynchronous sends.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Mutex;

use quinn_udp::{RecvMeta, Transmit as QuinnTransmit, UdpSocketState};
use rustix::net::addr::SocketAddrArg;
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny, sendmmsg};
use smallvec::SmallVec;
use tokio::io::Interest;

use super::{BatchSent, DatagramSocket, DatagramSource, RecvBatch};

/// Datagrams per system call at most (quinn-udp's receive batch; the send batch alike).
pub const BATCH: usize = 32;

/// Largest datagram expected (netcode's largest packet is 1,225 bytes).
const MAX_DATAGRAM: usize = 2_048;

/// A UDP socket with batched receives and sends (see the module docs).
#[derive(Debug)]
pub struct BatchedUdp {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
    /// Datagrams of a coalesced receive not yet handed out by `recv_from`, and the bytes a
    /// GSO send is gathered in. Uncontended: one loop uses a socket.
    spare: Mutex<Spare>,
}

#[derive(Debug, Default)]
struct Spare {
    buf: Vec<u8>,
    queued: std::collections::VecDeque<(SocketAddr, usize, usize)>,
    gather: Vec<u8>,
}

impl BatchedUdp {
    /// Wraps a bound, non-blocking tokio socket (turning on what the kernel offers).
    pub fn new(io: tokio::net::UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new((&io).into())?;
        Ok(Self {
            io,
            state,
            spare: Mutex::new(Spare::default()),
        })
    }

    /// Segments UDP GSO sends at most (1: no GSO here).
    pub fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Datagrams one receive may hand back coalesced (1: no GRO here).
    pub fn gro_segments(&self) -> usize {
        self.state.gro_segments()
    }

    /// One non-blocking `recvmmsg` into the batch's slots.
    fn recv_into(&self, batch: &mut RecvBatch) -> io::Result<()> {
        batch.clear();
        let (slots, slot_len) = (batch.slots().min(BATCH), batch.slot_len());
        let mut meta: [RecvMeta; BATCH] = std::array::from_fn(|_| RecvMeta::default());
        let n = {
            let mut bufs: SmallVec<[IoSliceMut<'_>; BATCH]> = batch
                .buffer_mut()
                .chunks_mut(slot_len)
                .take(slots)
                .map(IoSliceMut::new)
                .collect();
            self.io.try_io(Interest::READABLE, || {
                self.state
                    .recv((&self.io).into(), &mut bufs, &mut meta[..slots])
            })?
        };
        for (i, m) in meta.iter().take(n).enumerate() {
            let stride = m.stride.max(1);
            let mut offset = 0;
            while offset < m.len.min(slot_len) {
                let len = stride.min(m.len - offset);
                batch.push(m.addr, i * slot_len + offset, len);
                offset += stride;
            }
        }
        Ok(())
    }

    /// One non-blocking receive for `recv_from`: a queued datagram of an earlier coalesced
    /// receive first.
    fn try_recv_one(&self, out: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let mut spare = self
            .spare
            .lock()
            .map_err(|_| io::Error::other("socket lock poisoned"))?;
        let spare = &mut *spare;
        if spare.queued.is_empty() {
            let slot_len = MAX_DATAGRAM * self.gro_segments().max(1);
            spare.buf.resize(slot_len, 0);
            let mut meta = [RecvMeta::default()];
            let n = {
                let mut bufs = [IoSliceMut::new(&mut spare.buf)];
                self.io.try_io(Interest::READABLE, || {
                    self.state.recv((&self.io).into(), &mut bufs, &mut meta)
                })?
            };
            if n == 1 {
                let m = &meta[0];
                let stride = m.stride.max(1);
                let mut offset = 0;
                while offset < m.len.min(slot_len) {
                    spare
                        .queued
                        .push_back((m.addr, offset, stride.min(m.len - offset)));
                    offset += stride;
                }
            }
        }
        let (from, start, len) = spare
            .queued
            .pop_front()
            .ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock))?;
        let n = len.min(out.len());
        out[..n].copy_from_slice(&spare.buf[start..start + n]);
        Ok((n, from))
    }

    /// Sends `source[from..]` (at most [`BATCH`]) datagrams without runs through `sendmmsg`.
    fn send_many(&self, datagrams: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
        let addrs: SmallVec<[SocketAddrAny; BATCH]> =
            datagrams.iter().map(|(to, _)| to.as_any()).collect();
        let iovs: SmallVec<[[IoSlice<'_>; 1]; BATCH]> = datagrams
            .iter()
            .map(|(_, bytes)| [IoSlice::new(bytes)])
            .collect();
        let mut controls: SmallVec<[SendAncillaryBuffer<'_, '_, '_>; BATCH]> = datagrams
            .iter()
            .map(|_| SendAncillaryBuffer::default())
            .collect();
        let mut messages: SmallVec<[MMsgHdr<'_>; BATCH]> = addrs
            .iter()
            .zip(&iovs)
            .zip(controls.iter_mut())
            .map(|((to, iov), control)| MMsgHdr::new_with_addr(to, iov, control))
            .collect();
        self.io.try_io(Interest::WRITABLE, || {
            sendmmsg(&self.io, &mut messages, SendFlags::empty()).map_err(io::Error::from)
        })
    }

    /// Sends a run of datagrams to one address, all of `segment` bytes but the last, as one
    /// GSO send.
    fn send_run(&self, to: SocketAddr, parts: &[&[u8]], segment: usize) -> io::Result<usize> {
        let mut spare = self
            .spare
            .lock()
            .map_err(|_| io::Error::other("socket lock poisoned"))?;
        spare.gather.clear();
        for part in parts {
            spare.gather.extend_from_slice(part);
        }
        let transmit = QuinnTransmit {
            destination: to,
            ecn: None,
            contents: &spare.gather,
            segment_size: Some(segment),
            src_ip: None,
        };
        self.io.try_io(Interest::WRITABLE, || {
            self.state.try_send((&self.io).into(), &transmit)
        })?;
        Ok(parts.len())
    }
}

/// How many datagrams from `i` on go to the same address as the `i`-th, each the size of the
/// first but the last (a run GSO can send at once).
fn run_at(source: &dyn DatagramSource, i: usize, max: usize) -> usize {
    let Some(first) = source.get(i) else {
        return 0;
    };
    let size = first.payload.len();
    let mut n = 1;
    while n < max {
        match source.get(i + n) {
            Some(t) if t.destination == first.destination && t.payload.len() <= size => {
                n += 1;
                if t.payload.len() < size {
                    break;
                }
            }
            _ => break,
        }
    }
    n
}

impl DatagramSocket for BatchedUdp {
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            match self.try_recv_one(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.io.readable().await?,
                other => return other,
            }
        }
    }

    fn send_to(
        &self,
        buf: &[u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send {
        self.io.send_to(buf, to)
    }

    fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.try_recv_one(buf)
    }

    async fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<()> {
        loop {
            match self.try_recv_batch(batch) {
                Ok(()) if batch.is_empty() => self.io.readable().await?,
                other => return other,
            }
        }
    }

    fn try_recv_batch(&self, batch: &mut RecvBatch) -> io::Result<()> {
        match self.recv_into(batch) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                batch.clear();
                Ok(())
            }
            other => other,
        }
    }

    fn try_send_batch(&self, source: &dyn DatagramSource, from: usize) -> BatchSent {
        let count = source.count();
        let mut gso = self.max_gso_segments();
        let mut out = BatchSent::default();
        let mut i = from;
        while i < count {
            let run = if gso > 1 { run_at(source, i, gso) } else { 1 };
            let result = if run >= 2 {
                let parts: SmallVec<[&[u8]; 64]> = (i..i + run)
                    .filter_map(|k| source.get(k).map(|t| t.payload))
                    .collect();
                let to = source.get(i).map(|t| t.destination);
                match to {
                    Some(to) => self.send_run(to, &parts, parts[0].len()),
                    None => break,
                }
            } else {
                // Singles up to the next run (or the batch's end).
                let mut singles: SmallVec<[(SocketAddr, &[u8]); BATCH]> = SmallVec::new();
                let mut k = i;
                while k < count && singles.len() < BATCH {
                    if k > i && gso > 1 && run_at(source, k, 2) >= 2 {
                        break;
                    }
                    if let Some(t) = source.get(k) {
                        singles.push((t.destination, t.payload));
                    }
                    k += 1;
                }
                self.send_many(&singles)
            };
            out.calls += 1;
            match result {
                Ok(n) if n > 0 => {
                    out.bytes += (i..i + n)
                        .filter_map(|k| source.get(k).map(|t| t.payload.len()))
                        .sum::<usize>();
                    out.done += n;
                    i += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) if run >= 2 => {
                    // The kernel or the device refused segmentation: send the run one by one.
                    gso = 1;
                }
                Ok(_) | Err(_) => {
                    // Refused for this datagram alone (a bad address, an unreachable network):
                    // skip it, count it, go on.
                    out.done += 1;
                    out.refused += 1;
                    i += 1;
                }
            }
        }
        out
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    fn recv_batch_buffers(&self) -> RecvBatch {
        RecvBatch::new(BATCH, MAX_DATAGRAM * self.gro_segments().max(1))
    }
}

//! The datagram socket seam: the tick loop talks to this trait, so a batched UDP socket
//! ([`batched::BatchedUdp`]: recvmmsg, sendmmsg and UDP GSO/GRO where the kernel offers them)
//! serves in production and a simulated one (turmoil) can stand in for whole-network tests.
//! The batch methods have plain defaults (one datagram at a time), which is all a simulated
//! socket needs.

pub mod batched;

use std::io;
use std::net::SocketAddr;

use zone_core::netcode::Transmit;

/// Datagrams to send, by index (the sealed batches of a tick).
pub trait DatagramSource {
    /// How many.
    fn count(&self) -> usize;
    /// The `i`-th.
    fn get(&self, i: usize) -> Option<Transmit<'_>>;
}

/// Datagrams received in one go: slots of one reused buffer (a slot holds one datagram, or
/// with receive offload several from one sender back to back), read back by index.
#[derive(Debug)]
pub struct RecvBatch {
    buf: Vec<u8>,
    slot_len: usize,
    slots: usize,
    /// (sender, start, length) of each datagram received.
    datagrams: Vec<(SocketAddr, usize, usize)>,
}

impl RecvBatch {
    /// Room for `slots` receives of up to `slot_len` bytes each.
    pub fn new(slots: usize, slot_len: usize) -> Self {
        let (slots, slot_len) = (slots.max(1), slot_len.max(1));
        Self {
            buf: vec![0; slots * slot_len],
            slot_len,
            slots,
            datagrams: Vec::with_capacity(slots),
        }
    }

    /// Datagrams received by the last call.
    pub fn len(&self) -> usize {
        self.datagrams.len()
    }

    /// Whether the last call received nothing.
    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    /// The `i`-th datagram and its sender.
    pub fn get_mut(&mut self, i: usize) -> Option<(SocketAddr, &mut [u8])> {
        let &(from, start, len) = self.datagrams.get(i)?;
        Some((from, self.buf.get_mut(start..start + len)?))
    }

    pub(crate) fn clear(&mut self) {
        self.datagrams.clear();
    }

    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    pub(crate) fn slot_len(&self) -> usize {
        self.slot_len
    }

    pub(crate) fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        let start = (i * self.slot_len).min(self.buf.len());
        let end = (start + self.slot_len).min(self.buf.len());
        &mut self.buf[start..end]
    }

    pub(crate) fn buffer_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Records a datagram of `len` bytes at `start` from `from`.
    pub(crate) fn push(&mut self, from: SocketAddr, start: usize, len: usize) {
        self.datagrams.push((from, start, len));
    }
}

/// A UDP-like socket.
pub trait DatagramSocket: Send + Sync {
    /// Waits for one datagram.
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;

    /// Sends one datagram.
    fn send_to(&self, buf: &[u8], to: SocketAddr)
    -> impl Future<Output = io::Result<usize>> + Send;

    /// Takes one datagram if one is waiting (`WouldBlock` otherwise). The default never has one,
    /// which only makes the loop await more often.
    fn try_recv_from(&self, _buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Waits for datagrams and takes those waiting, up to the batch's slots (at least one on
    /// `Ok`). The default: one `recv_from`, then `try_recv_from` while there are more.
    fn recv_batch(&self, batch: &mut RecvBatch) -> impl Future<Output = io::Result<()>> + Send {
        async move {
            batch.clear();
            let (n, from) = self.recv_from(batch.slot_mut(0)).await?;
            batch.push(from, 0, n);
            fill_with_try_recv(self, batch, 1);
            Ok(())
        }
    }

    /// Takes the datagrams waiting, up to the batch's slots, without waiting (none: an empty
    /// batch). The default: `try_recv_from` while there are more.
    fn try_recv_batch(&self, batch: &mut RecvBatch) -> io::Result<()> {
        batch.clear();
        fill_with_try_recv(self, batch, 0);
        Ok(())
    }

    /// A batch sized for this socket's receives (32 slots of 2 KiB by default).
    fn recv_batch_buffers(&self) -> RecvBatch {
        RecvBatch::new(32, 2_048)
    }

    /// Hands datagrams `from..` of `source` to the kernel without waiting, as many as it takes
    /// at once; returns how many were handed over (the caller sends the rest with
    /// `send_to`) and how many the kernel refused (skipped, counted). The default hands over
    /// none.
    fn try_send_batch(&self, _source: &dyn DatagramSource, _from: usize) -> BatchSent {
        BatchSent::default()
    }

    /// The bound address.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// What [`DatagramSocket::try_send_batch`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchSent {
    /// Datagrams dealt with: handed to the kernel, or refused by it.
    pub done: usize,
    /// Of those, refused (an error for that datagram alone).
    pub refused: usize,
    /// Bytes handed over.
    pub bytes: usize,
    /// System calls made.
    pub calls: usize,
}

fn fill_with_try_recv<S: DatagramSocket + ?Sized>(socket: &S, batch: &mut RecvBatch, first: usize) {
    for slot in first..batch.slots() {
        match socket.try_recv_from(batch.slot_mut(slot)) {
            Ok((n, from)) => {
                let start = slot * batch.slot_len();
                batch.push(from, start, n);
            }
            Err(_) => break,
        }
    }
}

impl DatagramSocket for tokio::net::UdpSocket {
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send {
        tokio::net::UdpSocket::recv_from(self, buf)
    }

    fn send_to(
        &self,
        buf: &[u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send {
        tokio::net::UdpSocket::send_to(self, buf, to)
    }

    fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        tokio::net::UdpSocket::try_recv_from(self, buf)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::UdpSocket::local_addr(self)
    }
}

/// Binds the zone's UDP socket at `addr` with a receive buffer of `recv_buffer` bytes (0: the
/// OS default), batched ([`batched::BatchedUdp`]). Returns the socket and the buffer the kernel
/// granted (Linux reports twice what it keeps for bookkeeping, and caps it at
/// `net.core.rmem_max`).
pub fn bind_udp(addr: SocketAddr, recv_buffer: usize) -> io::Result<(batched::BatchedUdp, usize)> {
    let (socket, granted) = bind_plain_udp(addr, recv_buffer)?;
    Ok((batched::BatchedUdp::new(socket)?, granted))
}

/// [`bind_udp`] without batching: tokio's socket as it is.
pub fn bind_plain_udp(
    addr: SocketAddr,
    recv_buffer: usize,
) -> io::Result<(tokio::net::UdpSocket, usize)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if recv_buffer > 0 {
        socket.set_recv_buffer_size(recv_buffer)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let granted = socket.recv_buffer_size()?;
    let socket = tokio::net::UdpSocket::from_std(socket.into())?;
    Ok((socket, granted))
}

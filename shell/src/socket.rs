//! The datagram socket seam: the tick loop talks to this trait, so tokio's UDP socket serves in
//! production and a simulated one (turmoil) can stand in for whole-network tests.

use std::io;
use std::net::SocketAddr;

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

    /// The bound address.
    fn local_addr(&self) -> io::Result<SocketAddr>;
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
/// OS default). Returns the socket and the buffer the kernel granted (Linux reports twice
/// what it keeps for bookkeeping, and caps it at `net.core.rmem_max`).
pub fn bind_udp(
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

//! A tunnel's UDP socket: one dual-stack socket on `[::]:port`, so peers reach the node over
//! IPv6 and IPv4 on the same port, and the kernel picks the source address of each reply by its
//! routes (the uplink that reaches that peer). A kernel without IPv6 gets an IPv4 socket.

use std::{
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6},
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// Socket buffer size asked for in each direction. The task encrypts a batch of packets and then
/// sends them, so datagrams arrive in bursts while it is busy; a few megabytes hold a burst at
/// gigabit rates. The kernel caps the value at `net.core.rmem_max` / `wmem_max`.
const SOCKET_BUFFER: usize = 4 << 20;

/// A bound tunnel socket.
pub(super) struct TunnelSocket {
    pub socket: UdpSocket,
    /// The socket is AF_INET6: IPv4 peers are addressed as `::ffff:a.b.c.d`.
    dual_stack: bool,
    /// The port bound (the kernel's pick when 0 was asked for).
    port: u16,
}

impl TunnelSocket {
    /// Binds `port` (0: any) in the calling thread's network namespace. Needs a tokio runtime.
    pub fn bind(port: u16) -> io::Result<Self> {
        let (socket, dual_stack) = match Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))
        {
            Ok(socket) => {
                socket.set_only_v6(false)?;
                socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
                (socket, true)
            }
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
                socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
                (socket, false)
            }
            Err(e) => return Err(e),
        };
        // Best effort: a smaller buffer only costs throughput.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket.into())?;
        let port = socket.local_addr()?.port();
        Ok(Self {
            socket,
            dual_stack,
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address to send to for `peer`, in this socket's family.
    pub fn target(&self, peer: SocketAddr) -> SocketAddr {
        match peer {
            SocketAddr::V4(v4) if self.dual_stack => {
                SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0).into()
            }
            other => other,
        }
    }
}

//! Traffic between test namespaces: pings, a server that says who it is, a client that asks, and
//! raw Ethernet frames.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context as _, ensure};

use crate::{Node, run_in, within};

/// How long [`fetch`] waits to connect and then to read: a reachable server on a veth answers in
/// well under a millisecond; this leaves room for a slow emulated kernel and keeps a test that
/// expects isolation from waiting long on each blocked connection.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// `ping` from inside a namespace: true when replies came back.
pub fn ping(ns: &str, target: &str, count: u32) -> anyhow::Result<bool> {
    let count = count.to_string();
    let out = run_in(ns, "ping", &["-c", &count, "-i", "0.2", "-W", "1", target])?;
    Ok(out.status.success())
}

/// `ping` from inside a namespace with source address `source` (one the namespace holds, or
/// not: a forged source): true when replies came back.
pub fn ping_from(ns: &str, source: &str, target: &str, count: u32) -> anyhow::Result<bool> {
    let count = count.to_string();
    let out = run_in(
        ns,
        "ping",
        &["-c", &count, "-i", "0.2", "-W", "1", "-I", source, target],
    )?;
    Ok(out.status.success())
}

/// Starts a TCP server in container `container` of `node` that answers every connection with
/// `identity` and closes it; the thread lives as long as the process.
pub fn serve_identity(
    node: &Node,
    container: &str,
    port: u16,
    identity: &str,
) -> anyhow::Result<()> {
    serve_identity_in(&node.container_ns(container), port, identity)
}

/// [`serve_identity`] in any namespace.
pub fn serve_identity_in(ns: &str, port: u16, identity: &str) -> anyhow::Result<()> {
    let listener = within(ns, move || std::net::TcpListener::bind(("::", port)))??;
    let identity = identity.to_owned();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut stream, identity.as_bytes());
        }
    });
    Ok(())
}

/// Connects from container `container` to `addr` and returns what the server said.
pub fn fetch(node: &Node, container: &str, addr: SocketAddr) -> anyhow::Result<String> {
    fetch_in(&node.container_ns(container), addr).with_context(|| format!("from {container}"))
}

/// [`fetch`] from any namespace.
pub fn fetch_in(ns: &str, addr: SocketAddr) -> anyhow::Result<String> {
    let mut stream = within(ns, move || {
        std::net::TcpStream::connect_timeout(&addr, FETCH_TIMEOUT)
    })?
    .with_context(|| format!("connect to {addr}"))?;
    stream.set_read_timeout(Some(FETCH_TIMEOUT))?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stream, &mut text)?;
    Ok(text)
}

/// An AF_PACKET socket that sends whole Ethernet frames out of one interface, closed on drop.
/// Open it inside the namespace that holds the interface; it may then send from any thread.
pub struct RawSender {
    fd: std::os::fd::OwnedFd,
    addr: libc::sockaddr_ll,
}

impl RawSender {
    pub fn open(interface: &std::ffi::CStr) -> anyhow::Result<Self> {
        use std::os::fd::FromRawFd as _;
        // SAFETY: plain socket calls with checked results; the descriptor is owned from here.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        ensure!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // SAFETY: a NUL-terminated name; `if_nametoindex` only reads it.
        let ifindex = unsafe { libc::if_nametoindex(interface.as_ptr()) };
        ensure!(ifindex != 0, "no interface {interface:?} here");
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        Ok(Self { fd, addr })
    }

    /// Sends one frame (its own Ethernet header included).
    pub fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        use std::os::fd::AsRawFd as _;
        // SAFETY: the buffer and the address struct are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const self.addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if sent < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

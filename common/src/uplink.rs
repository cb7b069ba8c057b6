//! The packet logic of `xdp_uplink`, the guard on the node's uplinks: the node accepts no
//! unsolicited inbound traffic. Pure over a [`Frame`], an [`UplinkTables`] view of the maps and a
//! [`SocketTable`] view of the node's sockets.
//!
//! Let through: ARP; ICMP errors and echo replies; IPv6 neighbour discovery, MLD and ICMPv6
//! errors and echo replies; TCP and UDP to an allowed port (WireGuard listen ports, gateway
//! ports); replies to connections the node opened. Everything else is dropped and counted.
//!
//! A reply is known, not guessed: it goes to the node's ephemeral range (where the kernel picks
//! the source port of every connection the node opens), it is not a bare TCP SYN (nobody opens a
//! connection *to* an ephemeral port), and the kernel's socket table holds what it belongs to: a
//! TCP connection in any state but listening (connecting, established, closing, time-wait), or a
//! UDP socket. The table is searched the way the stack will search it for this packet, so what
//! passes is exactly what some socket of the node will receive.

use crate::{
    maps::{PortBit, UplinkConfig},
    packet::{
        ETH_LEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, EthHdr, Frame, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS,
        IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr, Ipv6Hdr,
    },
    verdict::{DropReason, Verdict},
};

/// TCP header flags.
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// Read access to the guard's maps.
pub trait UplinkTables {
    /// The guard's settings (index 0 of its config map), read in place: a packet loads only the
    /// fields it needs, when it needs them.
    fn config(&self) -> Option<&UplinkConfig>;
    /// Word `index` of the allowed ports' bitmap ([`crate::maps::MAP_UPLINK_PORT_BITS`]); 0
    /// past its end.
    fn port_word(&self, index: u32) -> u64;
}

/// The node's sockets, in the network namespace of the uplink, as its stack finds them for a
/// received packet (in the kernel: `bpf_skc_lookup_tcp`, `bpf_sk_lookup_udp`).
pub trait SocketTable {
    /// The state of the socket that a TCP segment or UDP datagram (`protocol`) with this tuple
    /// belongs to: an established connection first, else a listening or bound socket.
    fn lookup(&self, protocol: u8, tuple: &SocketTuple) -> Option<SocketState>;
}

/// A packet's addresses and ports as the kernel's socket lookup takes them (the IPv4 half of
/// `struct bpf_sock_tuple`): the packet's source is the remote end, its destination the node.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Tuple {
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<Ipv4Tuple>() == 12);

/// The IPv6 half of `struct bpf_sock_tuple`, read the same way as [`Ipv4Tuple`].
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv6Tuple {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<Ipv6Tuple>() == 36);

/// What a socket lookup searches for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SocketTuple {
    V4(Ipv4Tuple),
    V6(Ipv6Tuple),
}

/// A socket's state, in the kernel's TCP state numbers (`include/net/tcp_states.h`), which UDP
/// sockets reuse: established when connected, closed when only bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketState(pub u32);

impl SocketState {
    pub const ESTABLISHED: Self = Self(1);
    pub const SYN_SENT: Self = Self(2);
    pub const FIN_WAIT1: Self = Self(4);
    pub const TIME_WAIT: Self = Self(6);
    pub const CLOSE: Self = Self(7);
    pub const LISTEN: Self = Self(10);
    /// A connection the node accepted whose handshake is not finished (a request socket).
    pub const NEW_SYN_RECV: Self = Self(12);
}

/// The guard's verdict on one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    Pass,
    Drop(DropReason),
}

impl Guard {
    /// The outcome's slot in the guard's counters ([`crate::maps::MAP_UPLINK_STATS`]): 0 for a
    /// pass, the reason's number for a drop (never `None`, so never 0).
    #[inline(always)]
    pub const fn stats_slot(self) -> u32 {
        match self {
            Guard::Pass => 0,
            Guard::Drop(reason) => reason as u32,
        }
    }

    /// The outcome counted in `slot`: the verdict, and the reason's number for a drop (which a
    /// newer guard may know and this code not); `None` past the numbers a reason can have.
    pub const fn of_stats_slot(slot: u32) -> Option<(Verdict, u8)> {
        match slot {
            0 => Some((Verdict::Pass, 0)),
            1..=0xff => Some((Verdict::Drop, slot as u8)),
            _ => None,
        }
    }
}

/// The first bytes of a TCP or UDP header: the ports, and for TCP the flags byte after them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub src: [u8; 2],
    pub dst: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<Ports>() == 4);
crate::packet::wire!(Ports);

/// Decides whether a frame that arrived on an uplink may reach the node.
#[inline(always)]
pub fn from_uplink<F: Frame + ?Sized, T: UplinkTables, S: SocketTable>(
    frame: &F,
    tables: &T,
    sockets: &S,
) -> Guard {
    let config = match tables.config() {
        Some(config) if config.enforcing != 0 => config,
        // Not configured yet: never lock a node out while it starts.
        _ => return Guard::Pass,
    };
    if let Some(guard) = plain_transport(frame, tables, sockets, config) {
        return guard;
    }
    let Some(eth) = frame.load::<EthHdr>(0) else {
        return Guard::Drop(DropReason::Malformed);
    };
    match eth.ether_type() {
        ETH_P_ARP => Guard::Pass,
        ETH_P_IP => ipv4(frame, tables, sockets, config),
        ETH_P_IPV6 => ipv6(frame, tables, sockets, config),
        _ => Guard::Drop(DropReason::UnsupportedProtocol),
    }
}

/// TCP or UDP in IPv4 without options or in IPv6 without extension headers: nearly all that
/// an uplink carries. Its verdict needs only the frame's first bytes, up to the ports, at fixed
/// offsets: they are read with one bounds check, where the general path checks each header in
/// turn at offsets it computes. `None` for any other frame (or one too short for the head),
/// which the general path decides; both reach the same verdict for every frame.
#[inline(always)]
fn plain_transport<F: Frame + ?Sized, T: UplinkTables, S: SocketTable>(
    frame: &F,
    tables: &T,
    sockets: &S,
    config: &UplinkConfig,
) -> Option<Guard> {
    // The source port is read where it lies, and only if a socket lookup needs it.
    let decide = |packet: Transport, dst: [u8; 2]| {
        let offset = packet.offset;
        let source = || frame.load::<[u8; 2]>(offset);
        let port = u16::from_be_bytes(dst);
        to_port(frame, tables, sockets, config, &packet, port, source)
    };
    if let Some(head) = frame.load::<Ipv4Head>(0)
        && head.eth.ether_type() == ETH_P_IP
        && head.ip.version_ihl == IPV4_WITHOUT_OPTIONS
        && matches!(head.ip.protocol, IPPROTO_TCP | IPPROTO_UDP)
    {
        if head.ip.is_later_fragment() {
            return Some(Guard::Drop(DropReason::Fragment));
        }
        let packet = Transport {
            protocol: head.ip.protocol,
            offset: IPV4_PLAIN_L4,
            family: Family::V4,
        };
        return Some(decide(packet, head.ports.dst));
    }
    if let Some(head) = frame.load::<Ipv6Head>(0)
        && head.eth.ether_type() == ETH_P_IPV6
        && head.ip.is_well_formed()
        && matches!(head.ip.next_header, IPPROTO_TCP | IPPROTO_UDP)
    {
        let packet = Transport {
            protocol: head.ip.next_header,
            offset: IPV6_PLAIN_L4,
            family: Family::V6,
        };
        return Some(decide(packet, head.ports.dst));
    }
    None
}

/// The first byte of an IPv4 header without options: version 4, five 32-bit words.
const IPV4_WITHOUT_OPTIONS: u8 = 0x45;
/// Where TCP or UDP starts in IPv4 without options.
const IPV4_PLAIN_L4: usize = ETH_LEN + core::mem::size_of::<Ipv4Hdr>();
/// Where TCP or UDP starts in IPv6 without extension headers.
const IPV6_PLAIN_L4: usize = ETH_LEN + core::mem::size_of::<Ipv6Hdr>();

/// A frame's headers up to the ports, when IPv4 carries no options.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv4Head {
    eth: EthHdr,
    ip: Ipv4Hdr,
    ports: Ports,
}
const _: () = assert!(core::mem::size_of::<Ipv4Head>() == IPV4_PLAIN_L4 + 4);

/// A frame's headers up to the ports, when IPv6 has no extension headers.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv6Head {
    eth: EthHdr,
    ip: Ipv6Hdr,
    ports: Ports,
}
const _: () = assert!(core::mem::size_of::<Ipv6Head>() == IPV6_PLAIN_L4 + 4);
crate::packet::wire!(Ipv4Head, Ipv6Head);

/// A TCP or UDP packet: its protocol, where its header starts, its IP version.
struct Transport {
    protocol: u8,
    offset: usize,
    family: Family,
}

#[derive(Clone, Copy)]
enum Family {
    V4,
    V6,
}

/// An IPv4 header's addresses (its bytes 12-19).
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv4Addresses {
    src: [u8; 4],
    dst: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<Ipv4Addresses>() == 8);

/// An IPv6 header's addresses (its bytes 8-39).
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv6Addresses {
    src: [u8; 16],
    dst: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<Ipv6Addresses>() == 32);
crate::packet::wire!(Ipv4Addresses, Ipv6Addresses);

#[inline(always)]
fn ipv4<F: Frame + ?Sized, T: UplinkTables, S: SocketTable>(
    frame: &F,
    tables: &T,
    sockets: &S,
    config: &UplinkConfig,
) -> Guard {
    let Some(ip) = frame.load::<Ipv4Hdr>(ETH_LEN) else {
        return Guard::Drop(DropReason::Malformed);
    };
    if !ip.is_well_formed() {
        return Guard::Drop(DropReason::Malformed);
    }
    if ip.is_later_fragment() {
        return Guard::Drop(DropReason::Fragment);
    }
    let l4 = ETH_LEN + usize::from(ip.version_ihl & 0x0f) * 4;
    match ip.protocol {
        IPPROTO_ICMP => match frame.load::<u8>(l4) {
            // Echo reply, destination unreachable, time exceeded, parameter problem.
            Some(0 | 3 | 11 | 12) => Guard::Pass,
            Some(_) => Guard::Drop(DropReason::Unsolicited),
            None => Guard::Drop(DropReason::Malformed),
        },
        IPPROTO_TCP | IPPROTO_UDP => {
            let packet = Transport {
                protocol: ip.protocol,
                offset: l4,
                family: Family::V4,
            };
            transport(frame, tables, sockets, config, &packet)
        }
        _ => Guard::Drop(DropReason::Unsolicited),
    }
}

#[inline(always)]
fn ipv6<F: Frame + ?Sized, T: UplinkTables, S: SocketTable>(
    frame: &F,
    tables: &T,
    sockets: &S,
    config: &UplinkConfig,
) -> Guard {
    let Some(ip) = frame.load::<Ipv6Hdr>(ETH_LEN) else {
        return Guard::Drop(DropReason::Malformed);
    };
    if !ip.is_well_formed() {
        return Guard::Drop(DropReason::Malformed);
    }
    let mut next = ip.next_header;
    let mut l4 = ETH_LEN + core::mem::size_of::<Ipv6Hdr>();
    if next == IPPROTO_HOPOPTS {
        // MLD queries and reports carry a hop-by-hop router alert; look behind it, once.
        let Some([header, len]) = frame.load::<[u8; 2]>(l4) else {
            return Guard::Drop(DropReason::Malformed);
        };
        next = header;
        l4 += (usize::from(len) + 1) * 8;
    }
    match next {
        IPPROTO_ICMPV6 => match frame.load::<u8>(l4) {
            // Errors (1-4), echo reply (129), MLD (130-132, 143), router and neighbour
            // discovery (133-137): what a host needs to stay reachable and learn its paths.
            Some(1..=4 | 129..=137 | 143) => Guard::Pass,
            Some(_) => Guard::Drop(DropReason::Unsolicited),
            None => Guard::Drop(DropReason::Malformed),
        },
        IPPROTO_TCP | IPPROTO_UDP => {
            let packet = Transport {
                protocol: next,
                offset: l4,
                family: Family::V6,
            };
            transport(frame, tables, sockets, config, &packet)
        }
        IPPROTO_FRAGMENT => Guard::Drop(DropReason::Fragment),
        _ => Guard::Drop(DropReason::Unsolicited),
    }
}

#[inline(always)]
fn transport<F: Frame + ?Sized, T: UplinkTables, S: SocketTable>(
    frame: &F,
    tables: &T,
    sockets: &S,
    config: &UplinkConfig,
    packet: &Transport,
) -> Guard {
    let Some(ports) = frame.load::<Ports>(packet.offset) else {
        return Guard::Drop(DropReason::Malformed);
    };
    let port = u16::from_be_bytes(ports.dst);
    to_port(frame, tables, sockets, config, packet, port, || {
        Some(ports.src)
    })
}

/// The verdict on a TCP or UDP packet to `port`. `source` gives its source port, which only the
/// few packets that need a socket lookup read.
#[inline(always)]
fn to_port<F: Frame + ?Sized, T: UplinkTables, S: SocketTable>(
    frame: &F,
    tables: &T,
    sockets: &S,
    config: &UplinkConfig,
    packet: &Transport,
    port: u16,
    source: impl FnOnce() -> Option<[u8; 2]>,
) -> Guard {
    let allowed = PortBit::of(packet.protocol, port)
        .is_some_and(|bit| bit.is_set_in(tables.port_word(bit.word)));
    if allowed {
        return Guard::Pass;
    }
    if port < config.ephemeral_low || port > config.ephemeral_high {
        return Guard::Drop(DropReason::Unsolicited);
    }
    if packet.protocol == IPPROTO_TCP {
        // Byte 13 of the TCP header holds the flags.
        let Some(flags) = frame.load::<u8>(packet.offset + 13) else {
            return Guard::Drop(DropReason::Malformed);
        };
        if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 {
            return Guard::Drop(DropReason::Unsolicited);
        }
    }
    // The addresses are read only now, for the few packets that get this far.
    let Some(src) = source() else {
        return Guard::Drop(DropReason::Malformed);
    };
    let tuple = match packet.family {
        Family::V4 => match frame.load::<Ipv4Addresses>(ETH_LEN + 12) {
            Some(a) => SocketTuple::V4(Ipv4Tuple {
                saddr: a.src,
                daddr: a.dst,
                sport: src,
                dport: port.to_be_bytes(),
            }),
            None => return Guard::Drop(DropReason::Malformed),
        },
        Family::V6 => match frame.load::<Ipv6Addresses>(ETH_LEN + 8) {
            Some(a) => SocketTuple::V6(Ipv6Tuple {
                saddr: a.src,
                daddr: a.dst,
                sport: src,
                dport: port.to_be_bytes(),
            }),
            None => return Guard::Drop(DropReason::Malformed),
        },
    };
    match sockets.lookup(packet.protocol, &tuple) {
        Some(state) if belongs(packet.protocol, state) => Guard::Pass,
        _ => Guard::Drop(DropReason::NoSocket),
    }
}

/// Whether a reply-shaped packet belongs to the socket its lookup found.
#[inline(always)]
fn belongs(protocol: u8, state: SocketState) -> bool {
    match protocol {
        // A listener matches any remote end; a segment that opens nothing has no connection
        // there to belong to (and gateway ports, the only ones to connect to, passed already).
        IPPROTO_TCP => state != SocketState::LISTEN,
        // A connected UDP socket is only found by its own remote end; an unconnected one
        // receives from anyone, and its ephemeral port says it is a client's.
        _ => true,
    }
}

#[cfg(test)]
mod tests;

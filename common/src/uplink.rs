//! The packet logic of `xdp_uplink`, the guard on the node's uplinks: the node accepts no
//! unsolicited inbound traffic. Pure over a [`Frame`] and an [`UplinkTables`] view of the maps.
//!
//! Let through: ARP; ICMP errors and echo replies; IPv6 neighbour discovery, MLD and ICMPv6
//! errors and echo replies; TCP and UDP to an allowed port (WireGuard listen ports, gateway
//! ports); replies to connections the node opened. Everything else is dropped and counted.
//!
//! Replies are recognised without state: their destination port is in the node's ephemeral
//! range (where the kernel picks source ports for outgoing connections), and for TCP they are not
//! a bare SYN (nobody can *open* a connection to an ephemeral port). A forged packet that passes
//! reaches a stack with no socket for it, which answers with a reset: the guard's job is that no
//! service the node runs can be reached, and that holds.

use crate::{
    maps::{PortKey, UplinkConfig},
    packet::{
        ETH_LEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, EthHdr, Frame, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS,
        IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr, Ipv6Hdr,
    },
    verdict::DropReason,
};

/// TCP header flags.
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// Read access to the guard's maps.
pub trait UplinkTables {
    /// The guard's settings (index 0 of its config map).
    fn config(&self) -> Option<UplinkConfig>;
    /// Whether inbound traffic to this protocol and port is allowed.
    fn port_allowed(&self, key: &PortKey) -> bool;
}

/// The guard's verdict on one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    Pass,
    Drop(DropReason),
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
pub fn from_uplink<F: Frame + ?Sized, T: UplinkTables>(frame: &F, tables: &T) -> Guard {
    let config = match tables.config() {
        Some(config) if config.enforcing != 0 => config,
        // Not configured yet: never lock a node out while it starts.
        _ => return Guard::Pass,
    };
    let Some(eth) = frame.load::<EthHdr>(0) else {
        return Guard::Drop(DropReason::Malformed);
    };
    match eth.ether_type() {
        ETH_P_ARP => Guard::Pass,
        ETH_P_IP => ipv4(frame, tables, &config),
        ETH_P_IPV6 => ipv6(frame, tables, &config),
        _ => Guard::Drop(DropReason::UnsupportedProtocol),
    }
}

#[inline(always)]
fn ipv4<F: Frame + ?Sized, T: UplinkTables>(frame: &F, tables: &T, config: &UplinkConfig) -> Guard {
    let Some(ip) = frame.load::<Ipv4Hdr>(ETH_LEN) else {
        return Guard::Drop(DropReason::Malformed);
    };
    if !ip.is_well_formed() {
        return Guard::Drop(DropReason::Malformed);
    }
    if u16::from_be_bytes(ip.frag_off) & 0x1fff != 0 {
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
        IPPROTO_TCP | IPPROTO_UDP => transport(frame, tables, config, ip.protocol, l4),
        _ => Guard::Drop(DropReason::Unsolicited),
    }
}

#[inline(always)]
fn ipv6<F: Frame + ?Sized, T: UplinkTables>(frame: &F, tables: &T, config: &UplinkConfig) -> Guard {
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
        IPPROTO_TCP | IPPROTO_UDP => transport(frame, tables, config, next, l4),
        IPPROTO_FRAGMENT => Guard::Drop(DropReason::Fragment),
        _ => Guard::Drop(DropReason::Unsolicited),
    }
}

#[inline(always)]
fn transport<F: Frame + ?Sized, T: UplinkTables>(
    frame: &F,
    tables: &T,
    config: &UplinkConfig,
    protocol: u8,
    l4: usize,
) -> Guard {
    let Some(ports) = frame.load::<Ports>(l4) else {
        return Guard::Drop(DropReason::Malformed);
    };
    let port = u16::from_be_bytes(ports.dst);
    if tables.port_allowed(&PortKey {
        protocol,
        _pad: 0,
        port: ports.dst,
    }) {
        return Guard::Pass;
    }
    if port < config.ephemeral_low || port > config.ephemeral_high {
        return Guard::Drop(DropReason::Unsolicited);
    }
    if protocol == IPPROTO_TCP {
        // Byte 13 of the TCP header holds the flags.
        let Some(flags) = frame.load::<u8>(l4 + 13) else {
            return Guard::Drop(DropReason::Malformed);
        };
        if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 {
            return Guard::Drop(DropReason::Unsolicited);
        }
    }
    Guard::Pass
}

#[cfg(test)]
mod tests;

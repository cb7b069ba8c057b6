//! The packet logic of `tc_from_tunnel`: a decrypted packet from another node of the tunnel's
//! network is delivered to a local container of THAT network, or dropped and counted.
//!
//! A tunnel device is layer 3: the packet starts with its IP header. Pure over a [`Frame`] and
//! a [`TunnelTables`] view of the maps, like [`crate::datapath`].

use crate::{
    datapath::{Tables, headers::is_ipv4_mapped},
    maps::{ENDPOINT_DOWN, EndpointKey},
    packet::{ETH_P_IP, ETH_P_IPV6, Frame, Ipv4Hdr, Ipv6Hdr},
    verdict::DropReason,
};

/// Read access to the maps `tc_from_tunnel` needs.
pub trait TunnelTables: Tables {
    /// The network a tunnel device carries.
    fn tunnel_network(&self, ifindex: u32) -> Option<u32>;
}

/// What to do with a packet from a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelAction {
    /// Put an Ethernet header in front (destination `dst_mac`, source the gateway MAC, type
    /// `ether_type`) and hand the frame to the peer of `ifindex`: the container.
    Deliver {
        ifindex: u32,
        dst_mac: [u8; 6],
        ether_type: u16,
    },
    Drop(DropReason),
}

/// A [`TunnelAction`] and the network it is counted under (0 when not known).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelDecision {
    pub network_id: u32,
    pub action: TunnelAction,
}

/// Decides the fate of a packet of `len` bytes that arrived on tunnel device `ifindex`.
#[inline(always)]
pub fn from_tunnel<F: Frame + ?Sized, T: TunnelTables>(
    frame: &F,
    ifindex: u32,
    len: usize,
    tables: &T,
) -> TunnelDecision {
    let Some(network_id) = tables.tunnel_network(ifindex) else {
        return TunnelDecision {
            network_id: 0,
            action: TunnelAction::Drop(DropReason::UnknownInterface),
        };
    };
    TunnelDecision {
        network_id,
        action: classify(frame, network_id, len, tables),
    }
}

#[inline(always)]
fn classify<F: Frame + ?Sized, T: Tables>(
    frame: &F,
    network_id: u32,
    len: usize,
    tables: &T,
) -> TunnelAction {
    let Some(first) = frame.load::<u8>(0) else {
        return TunnelAction::Drop(DropReason::Malformed);
    };
    let (key, ether_type) = match first >> 4 {
        4 => {
            let Some(ip) = frame.load::<Ipv4Hdr>(0) else {
                return TunnelAction::Drop(DropReason::Malformed);
            };
            let header = usize::from(ip.version_ihl & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes(ip.total_len));
            if !ip.is_well_formed() || total < header || total > len {
                return TunnelAction::Drop(DropReason::Malformed);
            }
            (EndpointKey::v4(network_id, ip.dst), ETH_P_IP)
        }
        6 => {
            let Some(ip) = frame.load::<Ipv6Hdr>(0) else {
                return TunnelAction::Drop(DropReason::Malformed);
            };
            if usize::from(ip.payload_len()) + core::mem::size_of::<Ipv6Hdr>() > len {
                return TunnelAction::Drop(DropReason::Malformed);
            }
            // The endpoint map keys IPv4 addresses IPv4-mapped: an IPv6 packet must never reach
            // an IPv4 container through them.
            if is_ipv4_mapped(&ip.dst) {
                return TunnelAction::Drop(DropReason::MappedAddress);
            }
            (EndpointKey::v6(network_id, ip.dst), ETH_P_IPV6)
        }
        _ => return TunnelAction::Drop(DropReason::UnsupportedProtocol),
    };
    match tables.endpoint(&key) {
        // The redirect would report success and the kernel drop the packet silently.
        Some(endpoint) if endpoint.flags & ENDPOINT_DOWN != 0 => {
            TunnelAction::Drop(DropReason::EndpointDown)
        }
        Some(endpoint) => TunnelAction::Deliver {
            ifindex: endpoint.ifindex,
            dst_mac: endpoint.mac,
            ether_type,
        },
        None => TunnelAction::Drop(DropReason::CrossNetwork),
    }
}

#[cfg(test)]
mod tests;

//! The packet logic of `tc_from_container`: parse -> classify -> look up -> decide.
//!
//! Pure over a [`Frame`] and a [`Tables`] view of the maps, so it runs unchanged in the kernel
//! and in host unit tests. The eBPF entry point only performs the returned [`Action`].

use core::mem::MaybeUninit;

use crate::{
    maps::{ENDPOINT_DOWN, Endpoint, EndpointKey, Iface, Route, RouteKey},
    packet::{
        ARP_REQUEST, ArpIpv4, ETH_LEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, EthHdr, Frame,
        ICMPV6_NEIGHBOR_SOLICIT, IPPROTO_ICMPV6, Ipv4Hdr, Ipv6Hdr, ND_OPT_SOURCE_LL, NdMessage,
        link_local_of,
    },
    verdict::DropReason,
};
use headers::{is_group, is_ipv4_mapped, transport_is_consistent};
pub use replies::{arp_reply, neighbor_advert};

/// EtherType of an 802.1Q VLAN tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// EtherType of an 802.1ad (QinQ) service tag.
pub const ETH_P_8021AD: u16 = 0x88a8;
/// Bytes a VLAN tag adds to a frame.
pub const VLAN_TAG_LEN: u32 = 4;

/// A frame as the kernel hands it to `tc_from_container`: where it came in, and what the kernel
/// already did to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ingress {
    /// The ifindex of the host-side veth the frame came in on.
    pub ifindex: u32,
    /// The frame's length (`skb->len`): the bytes a [`Frame`] can load.
    pub len: u32,
    /// The kernel lifted a VLAN tag off the frame into the socket buffer's metadata before the
    /// program ran (`skb->vlan_present`): the frame's bytes look untagged, but it was not, and a
    /// redirect would hand the tag on.
    pub vlan_tag_stripped: bool,
}

impl Ingress {
    /// The frame's length as the container sent it: a lifted tag counts.
    pub const fn wire_len(&self) -> u32 {
        if self.vlan_tag_stripped {
            self.len.saturating_add(VLAN_TAG_LEN)
        } else {
            self.len
        }
    }
}

/// Read access to the datapath's maps.
pub trait Tables {
    /// The container behind a host-side veth.
    fn iface(&self, ifindex: u32) -> Option<Iface>;
    /// A local endpoint of a network.
    fn endpoint(&self, key: &EndpointKey) -> Option<Endpoint>;
    /// The route to another node's subnet holding an address of a network (longest prefix).
    fn route(&self, key: &RouteKey) -> Option<Route>;
}

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Overwrite the frame with the [`arp_reply`] to `asked` and send it back to the container.
    /// (Actions stay small: the kernel's 512-byte stack cannot hold several frames.)
    ArpReply {
        mac: [u8; 6],
        ip: [u8; 4],
        asked: [u8; 4],
    },
    /// Overwrite the frame with the [`neighbor_advert`] for `target` sent to `dst` and send it
    /// back to the container.
    NdReply {
        mac: [u8; 6],
        target: [u8; 16],
        dst: [u8; 16],
    },
    /// Rewrite the Ethernet addresses (destination `dst_mac`, source [`GATEWAY_MAC`]) and hand
    /// the frame to the peer of `ifindex`: the fast path.
    Deliver { ifindex: u32, dst_mac: [u8; 6] },
    /// Hand the packet to the network's tunnel device `ifindex`: its destination is a
    /// container on another node.
    Tunnel { ifindex: u32 },
    /// Drop it, counted with the reason.
    Drop(DropReason),
}

/// An [`Action`] and the network it is counted under (0 when not known).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub network_id: u32,
    pub action: Action,
}

/// Decides the fate of a frame that a container sent into its veth.
#[inline(always)]
pub fn from_container<F: Frame + ?Sized, T: Tables>(
    frame: &F,
    ingress: &Ingress,
    tables: &T,
) -> Decision {
    let Some(iface) = tables.iface(ingress.ifindex) else {
        return Decision {
            network_id: 0,
            action: Action::Drop(DropReason::UnknownInterface),
        };
    };
    Decision {
        network_id: iface.network_id,
        action: classify(frame, ingress, &iface, tables),
    }
}

#[inline(always)]
fn classify<F: Frame + ?Sized, T: Tables>(
    frame: &F,
    ingress: &Ingress,
    iface: &Iface,
    tables: &T,
) -> Action {
    if ingress.vlan_tag_stripped {
        // Container links are untagged. Forwarded, the frame would reach its neighbour still
        // tagged; answered, the reply would be too.
        return Action::Drop(DropReason::VlanTagged);
    }
    let mut eth = MaybeUninit::uninit();
    let Some(eth) = frame.load_into::<EthHdr>(0, &mut eth) else {
        return Action::Drop(DropReason::Malformed);
    };
    if eth.src != iface.mac {
        return Action::Drop(DropReason::SpoofedMac);
    }
    let len = ingress.len as usize;
    match eth.ether_type() {
        ETH_P_ARP => arp(frame, iface),
        ETH_P_IP => ipv4(frame, len, eth, iface, tables),
        ETH_P_IPV6 => ipv6(frame, len, eth, iface, tables),
        // A tag in the frame's bytes: the kernel lifts the outer one into the metadata (above),
        // so this is only reached if it did not.
        ETH_P_8021Q | ETH_P_8021AD => Action::Drop(DropReason::VlanTagged),
        _ => Action::Drop(DropReason::UnsupportedProtocol),
    }
}

/// Answers every ARP request of the container with the gateway MAC: all its traffic, to the
/// gateway or to a neighbour in its subnet, goes through the datapath, which enforces isolation
/// at layer 3.
#[inline(always)]
fn arp<F: Frame + ?Sized>(frame: &F, iface: &Iface) -> Action {
    let mut arp = MaybeUninit::uninit();
    let Some(arp) = frame.load_into::<ArpIpv4>(ETH_LEN, &mut arp) else {
        return Action::Drop(DropReason::Malformed);
    };
    if !arp.is_ethernet_ipv4() {
        return Action::Drop(DropReason::Malformed);
    }
    if arp.sha != iface.mac {
        return Action::Drop(DropReason::SpoofedMac);
    }
    if arp.spa != [0; 4] && arp.spa != iface.ipv4 {
        // Claiming a neighbour's or the gateway's address, whatever the operation.
        return Action::Drop(DropReason::SpoofedIp);
    }
    if arp.spa == [0; 4] || arp.oper() != ARP_REQUEST || arp.tpa == iface.ipv4 {
        // Probes, announcements and replies: nothing to answer.
        return Action::Drop(DropReason::LinkControl);
    }
    if arp.tpa == [0; 4] || arp.tpa[0] >= 224 {
        // No host has a multicast, broadcast or unspecified address; a reply would claim one.
        return Action::Drop(DropReason::Malformed);
    }
    Action::ArpReply {
        mac: iface.mac,
        ip: iface.ipv4,
        asked: arp.tpa,
    }
}

#[inline(always)]
fn ipv4<F: Frame + ?Sized, T: Tables>(
    frame: &F,
    len: usize,
    eth: &EthHdr,
    iface: &Iface,
    tables: &T,
) -> Action {
    let mut ip = MaybeUninit::uninit();
    let Some(ip) = frame.load_into::<Ipv4Hdr>(ETH_LEN, &mut ip) else {
        return Action::Drop(DropReason::Malformed);
    };
    if !ip.is_well_formed() {
        return Action::Drop(DropReason::Malformed);
    }
    let header_len = usize::from(ip.version_ihl & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes(ip.total_len));
    // Bytes beyond the total length are Ethernet padding; fewer bytes are a lie, and the
    // receiving stack would read past the packet or drop it after we counted it forwarded.
    if total_len < header_len || ETH_LEN + total_len > len {
        return Action::Drop(DropReason::Malformed);
    }
    // Only the first fragment carries the transport header: it must hold all of it
    // (RFC 1858); the length fields describe the whole datagram, so they are checked only
    // when there is one fragment.
    if !ip.is_later_fragment()
        && !transport_is_consistent(
            frame,
            ip.protocol,
            ETH_LEN + header_len,
            total_len - header_len,
            !ip.has_more_fragments(),
        )
    {
        return Action::Drop(DropReason::Malformed);
    }
    if ip.src != iface.ipv4 {
        return Action::Drop(DropReason::SpoofedIp);
    }
    if ip.dst[0] >= 224 || is_group(&eth.dst) {
        // Multicast, reserved and limited broadcast; the subnet broadcast, sent to the
        // broadcast MAC.
        return Action::Drop(DropReason::LinkControl);
    }
    match tables.endpoint(&EndpointKey::v4(iface.network_id, ip.dst)) {
        Some(endpoint) => deliver(&endpoint),
        // The subnet broadcast sent to the gateway MAC. Checked only on a miss, so that the
        // rule can never hide a container, whatever a subnet's size.
        None if ip.dst == subnet_broadcast(iface.ipv4) => Action::Drop(DropReason::LinkControl),
        None => beyond_this_node(tables, &EndpointKey::v4(iface.network_id, ip.dst)),
    }
}

#[inline(always)]
fn ipv6<F: Frame + ?Sized, T: Tables>(
    frame: &F,
    len: usize,
    eth: &EthHdr,
    iface: &Iface,
    tables: &T,
) -> Action {
    let mut ip = MaybeUninit::uninit();
    let Some(ip) = frame.load_into::<Ipv6Hdr>(ETH_LEN, &mut ip) else {
        return Action::Drop(DropReason::Malformed);
    };
    if !ip.is_well_formed() {
        return Action::Drop(DropReason::Malformed);
    }
    let payload = ETH_LEN + core::mem::size_of::<Ipv6Hdr>();
    let payload_len = usize::from(ip.payload_len());
    if payload + payload_len > len {
        return Action::Drop(DropReason::Malformed);
    }
    // Extension headers are not followed: behind them, the transport header is the
    // destination's to judge.
    if !transport_is_consistent(frame, ip.next_header, payload, payload_len, true) {
        return Action::Drop(DropReason::Malformed);
    }
    if is_ipv4_mapped(&ip.src) || is_ipv4_mapped(&ip.dst) {
        // IPv4 endpoints are keyed by their IPv4-mapped address: such a destination would
        // reach an IPv4 container over IPv6.
        return Action::Drop(DropReason::MappedAddress);
    }
    let link_local = link_local_of(iface.mac);
    let mut nd = MaybeUninit::uninit();
    if ip.next_header == IPPROTO_ICMPV6
        && let Some(nd) = frame.load_into::<NdMessage>(payload, &mut nd)
        && nd.icmp_type == ICMPV6_NEIGHBOR_SOLICIT
    {
        return neighbor_solicit(ip, nd, iface, &link_local);
    }
    if ip.dst[0] == 0xff {
        return Action::Drop(DropReason::LinkControl);
    }
    if ip.src != iface.ipv6 {
        // Link-local sources only speak neighbour discovery, answered above.
        return Action::Drop(if ip.src == link_local || ip.src == [0; 16] {
            DropReason::LinkControl
        } else {
            DropReason::SpoofedIp
        });
    }
    if is_group(&eth.dst) {
        return Action::Drop(DropReason::LinkControl);
    }
    let key = EndpointKey::v6(iface.network_id, ip.dst);
    match tables.endpoint(&key) {
        Some(endpoint) => deliver(&endpoint),
        None => beyond_this_node(tables, &key),
    }
}

/// The broadcast address of a container's subnet: node subnets are /24 (the ledger refuses any
/// other size).
#[inline(always)]
const fn subnet_broadcast(ipv4: [u8; 4]) -> [u8; 4] {
    [ipv4[0], ipv4[1], ipv4[2], 255]
}

/// Answers a neighbour solicitation for any address with the gateway MAC (see [`arp`]).
#[inline(always)]
fn neighbor_solicit(ip: &Ipv6Hdr, ns: &NdMessage, iface: &Iface, link_local: &[u8; 16]) -> Action {
    if ip.src == [0; 16] || ns.target == iface.ipv6 || ns.target == *link_local {
        // Duplicate address detection: never claim the container's own address.
        return Action::Drop(DropReason::LinkControl);
    }
    if ip.src != iface.ipv6 && ip.src != *link_local {
        return Action::Drop(DropReason::SpoofedIp);
    }
    if usize::from(ip.payload_len()) != core::mem::size_of::<NdMessage>()
        || ip.hop_limit != 255
        || ns.code != 0
        || ns.opt_type != ND_OPT_SOURCE_LL
        || ns.opt_len != 1
        // RFC 4861 §7.1.1: a solicitation for a multicast target is invalid; the unspecified
        // address is no one's either. The advertisement would come from that address.
        || ns.target[0] == 0xff
        || ns.target == [0; 16]
    {
        return Action::Drop(DropReason::Malformed);
    }
    if is_ipv4_mapped(&ns.target) {
        return Action::Drop(DropReason::MappedAddress);
    }
    if ns.opt_mac != iface.mac {
        return Action::Drop(DropReason::SpoofedMac);
    }
    Action::NdReply {
        mac: iface.mac,
        target: ns.target,
        dst: ip.src,
    }
}

/// Another node's subnet of the network, through its tunnel; else nothing: networks are closed.
#[inline(always)]
fn beyond_this_node<T: Tables>(tables: &T, key: &EndpointKey) -> Action {
    let route = RouteKey {
        network_id: key.network_id.to_be_bytes(),
        addr: key.addr,
    };
    match tables.route(&route) {
        Some(route) => Action::Tunnel {
            ifindex: route.ifindex,
        },
        None => Action::Drop(DropReason::CrossNetwork),
    }
}

#[inline(always)]
fn deliver(endpoint: &Endpoint) -> Action {
    if endpoint.flags & ENDPOINT_DOWN != 0 {
        // The redirect would report success and the kernel drop the packet silently.
        return Action::Drop(DropReason::EndpointDown);
    }
    Action::Deliver {
        ifindex: endpoint.ifindex,
        dst_mac: endpoint.mac,
    }
}

pub(crate) mod headers;
mod replies;
#[cfg(test)]
mod tests;

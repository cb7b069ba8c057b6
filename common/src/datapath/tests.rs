use std::{collections::HashMap, vec::Vec};

use super::*;
use crate::{
    GATEWAY_MAC,
    packet::{ARP_REPLY, ICMPV6_NEIGHBOR_ADVERT, ND_OPT_TARGET_LL, nd_checksum},
};

mod hardening;

const A_NET: u32 = 1;
const B_NET: u32 = 2;
const A1_IF: u32 = 11;
const A2_IF: u32 = 12;
const B1_IF: u32 = 21;
const A1_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xa1];
const A2_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xa2];
const B1_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xb1];
const A1_V4: [u8; 4] = [10, 1, 1, 2];
const A2_V4: [u8; 4] = [10, 1, 1, 3];
const B1_V4: [u8; 4] = [10, 1, 1, 3]; // the same address as a2, in another network
const B2_V4: [u8; 4] = [10, 1, 1, 4];

fn v6(last: u8) -> [u8; 16] {
    let mut a = [0xfd, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    a[15] = last;
    a
}

struct Maps {
    ifaces: HashMap<u32, Iface>,
    endpoints: HashMap<EndpointKey, Endpoint>,
    /// (prefix length in bits of the key, key, route): a longest-prefix match, as the trie.
    routes: Vec<(u32, RouteKey, Route)>,
}

/// Whether the first `bits` bits of two keys are equal.
fn prefix_matches(bits: u32, a: &RouteKey, b: &RouteKey) -> bool {
    let bytes = |k: &RouteKey| {
        let mut all = [0u8; 20];
        all[..4].copy_from_slice(&k.network_id);
        all[4..].copy_from_slice(&k.addr);
        all
    };
    let (a, b) = (bytes(a), bytes(b));
    (0..bits as usize).all(|bit| (a[bit / 8] ^ b[bit / 8]) & (0x80 >> (bit % 8)) == 0)
}

impl Tables for Maps {
    fn iface(&self, ifindex: u32) -> Option<Iface> {
        self.ifaces.get(&ifindex).copied()
    }
    fn endpoint(&self, key: &EndpointKey) -> Option<Endpoint> {
        self.endpoints.get(key).copied()
    }
    fn route(&self, key: &RouteKey) -> Option<Route> {
        self.routes
            .iter()
            .filter(|(bits, prefix, _)| prefix_matches(*bits, prefix, key))
            .max_by_key(|(bits, ..)| *bits)
            .map(|(.., route)| *route)
    }
}

fn maps() -> Maps {
    let mut m = Maps {
        ifaces: HashMap::new(),
        endpoints: HashMap::new(),
        routes: Vec::new(),
    };
    for (ifindex, net, mac, v4, v6last) in [
        (A1_IF, A_NET, A1_MAC, A1_V4, 2),
        (A2_IF, A_NET, A2_MAC, A2_V4, 3),
        (B1_IF, B_NET, B1_MAC, B1_V4, 3),
        (31, B_NET, [2, 0, 0, 0, 0, 0xb2], B2_V4, 4),
    ] {
        m.ifaces.insert(
            ifindex,
            Iface {
                network_id: net,
                ipv4: v4,
                ipv6: v6(v6last),
                mac,
                _pad: [0; 2],
            },
        );
        let ep = Endpoint {
            ifindex,
            mac,
            flags: 0,
            _pad: 0,
        };
        m.endpoints.insert(EndpointKey::v4(net, v4), ep);
        m.endpoints.insert(EndpointKey::v6(net, v6(v6last)), ep);
    }
    m
}

fn bytes<T: Copy>(value: &T) -> Vec<u8> {
    // SAFETY: only called with the byte-array header structs of this crate.
    unsafe { core::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
        .to_vec()
}
use core::mem::size_of;

fn eth(src: [u8; 6], ether_type: u16) -> Vec<u8> {
    bytes(&EthHdr {
        dst: GATEWAY_MAC,
        src,
        ether_type: ether_type.to_be_bytes(),
    })
}

fn ipv4_frame(src_mac: [u8; 6], src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut f = eth(src_mac, ETH_P_IP);
    f.extend(bytes(&Ipv4Hdr {
        version_ihl: 0x45,
        tos: 0,
        total_len: 28u16.to_be_bytes(),
        id: [0; 2],
        frag_off: [0; 2],
        ttl: 64,
        protocol: 17,
        checksum: [0; 2],
        src,
        dst,
    }));
    f.extend(udp_header(8));
    f
}

/// A UDP header with ports and checksum, `len` bytes long as it says.
fn udp_header(len: u16) -> [u8; 8] {
    let [l0, l1] = len.to_be_bytes();
    [0x9c, 0x40, 0x1b, 0x58, l0, l1, 0, 0]
}

fn ipv6_frame(src_mac: [u8; 6], src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
    let mut f = eth(src_mac, ETH_P_IPV6);
    f.extend(bytes(&Ipv6Hdr {
        version_class_flow: [0x60, 0, 0, 0],
        payload_len: 8u16.to_be_bytes(),
        next_header: 17,
        hop_limit: 64,
        src,
        dst,
    }));
    f.extend(udp_header(8));
    f
}

fn arp_frame(src_mac: [u8; 6], oper: u16, sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = eth(src_mac, ETH_P_ARP);
    f.extend(bytes(&ArpIpv4 {
        htype: 1u16.to_be_bytes(),
        ptype: ETH_P_IP.to_be_bytes(),
        hlen: 6,
        plen: 4,
        oper: oper.to_be_bytes(),
        sha,
        spa,
        tha: [0; 6],
        tpa,
    }));
    f
}

fn ns_frame(src_mac: [u8; 6], src: [u8; 16], target: [u8; 16]) -> Vec<u8> {
    let mut f = eth(src_mac, ETH_P_IPV6);
    let mut dst = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0];
    dst[13..].copy_from_slice(&target[13..]);
    f.extend(bytes(&Ipv6Hdr {
        version_class_flow: [0x60, 0, 0, 0],
        payload_len: 32u16.to_be_bytes(),
        next_header: IPPROTO_ICMPV6,
        hop_limit: 255,
        src,
        dst,
    }));
    let mut ns = NdMessage {
        icmp_type: ICMPV6_NEIGHBOR_SOLICIT,
        code: 0,
        checksum: [0; 2],
        flags: [0; 4],
        target,
        opt_type: ND_OPT_SOURCE_LL,
        opt_len: 1,
        opt_mac: src_mac,
    };
    ns.checksum = nd_checksum(&src, &dst, &ns);
    f.extend(bytes(&ns));
    f
}

/// How the kernel hands over an untagged frame.
fn untagged(frame: &[u8], ifindex: u32) -> Ingress {
    Ingress {
        ifindex,
        len: frame.len() as u32,
        vlan_tag_stripped: false,
    }
}

fn decide(frame: &[u8], ifindex: u32) -> Decision {
    from_container(frame, &untagged(frame, ifindex), &maps())
}

fn dropped(frame: &[u8], ifindex: u32) -> DropReason {
    match decide(frame, ifindex).action {
        Action::Drop(reason) => reason,
        other => panic!("expected a drop, got {other:?}"),
    }
}

#[test]
fn local_same_network_ipv4_takes_the_fast_path() {
    let d = decide(&ipv4_frame(A1_MAC, A1_V4, A2_V4), A1_IF);
    assert_eq!(
        d,
        Decision {
            network_id: A_NET,
            action: Action::Deliver {
                ifindex: A2_IF,
                dst_mac: A2_MAC
            }
        }
    );
}

#[test]
fn same_address_in_another_network_is_never_reached() {
    // b1 has a2's address; a1 reaches a2, b1 reaches nothing of network A.
    assert_eq!(
        decide(&ipv4_frame(A1_MAC, A1_V4, B1_V4), A1_IF).action,
        Action::Deliver {
            ifindex: A2_IF,
            dst_mac: A2_MAC
        }
    );
    assert_eq!(
        dropped(&ipv4_frame(A1_MAC, A1_V4, B2_V4), A1_IF),
        DropReason::CrossNetwork
    );
    let d = decide(&ipv4_frame(B1_MAC, B1_V4, A1_V4), B1_IF);
    assert_eq!(
        d,
        Decision {
            network_id: B_NET,
            action: Action::Drop(DropReason::CrossNetwork)
        }
    );
}

#[test]
fn local_same_network_ipv6_takes_the_fast_path() {
    let d = decide(&ipv6_frame(A1_MAC, v6(2), v6(3)), A1_IF);
    assert_eq!(
        d.action,
        Action::Deliver {
            ifindex: A2_IF,
            dst_mac: A2_MAC
        }
    );
    assert_eq!(
        dropped(&ipv6_frame(A1_MAC, v6(2), v6(4)), A1_IF),
        DropReason::CrossNetwork
    );
}

#[test]
fn spoofed_sources_are_dropped() {
    assert_eq!(
        dropped(&ipv4_frame(A2_MAC, A1_V4, A2_V4), A1_IF),
        DropReason::SpoofedMac
    );
    assert_eq!(
        dropped(&ipv4_frame(A1_MAC, [10, 1, 1, 99], A2_V4), A1_IF),
        DropReason::SpoofedIp
    );
    assert_eq!(
        dropped(&ipv6_frame(A1_MAC, v6(9), v6(3)), A1_IF),
        DropReason::SpoofedIp
    );
    assert_eq!(
        dropped(&arp_frame(A1_MAC, ARP_REQUEST, A2_MAC, A1_V4, A2_V4), A1_IF),
        DropReason::SpoofedMac
    );
    assert_eq!(
        dropped(
            &arp_frame(A1_MAC, ARP_REQUEST, A1_MAC, [10, 1, 1, 9], A2_V4),
            A1_IF
        ),
        DropReason::SpoofedIp
    );
}

#[test]
fn unknown_interfaces_and_garbage_are_dropped() {
    assert_eq!(
        decide(&ipv4_frame(A1_MAC, A1_V4, A2_V4), 999),
        Decision {
            network_id: 0,
            action: Action::Drop(DropReason::UnknownInterface)
        }
    );
    let frame = ipv4_frame(A1_MAC, A1_V4, A2_V4);
    for len in [0, 5, 13, 14, 20, 33] {
        assert_eq!(
            dropped(&frame[..len], A1_IF),
            DropReason::Malformed,
            "truncated to {len}"
        );
    }
    let mut bad_version = frame.clone();
    bad_version[14] = 0x65;
    assert_eq!(dropped(&bad_version, A1_IF), DropReason::Malformed);
    assert_eq!(
        dropped(&eth(A1_MAC, 0x88cc), A1_IF),
        DropReason::UnsupportedProtocol
    );
    let mut arp = arp_frame(A1_MAC, ARP_REQUEST, A1_MAC, A1_V4, A2_V4);
    arp[14 + 4] = 8; // hlen
    assert_eq!(dropped(&arp, A1_IF), DropReason::Malformed);
}

#[test]
fn arp_requests_are_answered_with_the_gateway_mac() {
    let action = decide(
        &arp_frame(A1_MAC, ARP_REQUEST, A1_MAC, A1_V4, [10, 1, 1, 1]),
        A1_IF,
    )
    .action;
    assert_eq!(
        action,
        Action::ArpReply {
            mac: A1_MAC,
            ip: A1_V4,
            asked: [10, 1, 1, 1]
        }
    );
    let reply = arp_reply(A1_MAC, A1_V4, [10, 1, 1, 1]);
    assert_eq!(reply.eth.dst, A1_MAC);
    assert_eq!(reply.eth.src, GATEWAY_MAC);
    assert_eq!(reply.arp.oper(), ARP_REPLY);
    assert_eq!((reply.arp.sha, reply.arp.spa), (GATEWAY_MAC, [10, 1, 1, 1]));
    assert_eq!((reply.arp.tha, reply.arp.tpa), (A1_MAC, A1_V4));
    assert!(reply.arp.is_ethernet_ipv4());
    // Announcements and probes get no answer.
    assert_eq!(
        dropped(&arp_frame(A1_MAC, ARP_REQUEST, A1_MAC, A1_V4, A1_V4), A1_IF),
        DropReason::LinkControl
    );
    assert_eq!(
        dropped(
            &arp_frame(A1_MAC, ARP_REQUEST, A1_MAC, [0; 4], A2_V4),
            A1_IF
        ),
        DropReason::LinkControl
    );
    assert_eq!(
        dropped(&arp_frame(A1_MAC, ARP_REPLY, A1_MAC, A1_V4, A2_V4), A1_IF),
        DropReason::LinkControl
    );
}

/// An independent Internet checksum over a pseudo-header and message.
fn reference_checksum(src: &[u8; 16], dst: &[u8; 16], msg: &[u8]) -> u16 {
    let mut data = Vec::new();
    data.extend_from_slice(src);
    data.extend_from_slice(dst);
    data.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    data.extend_from_slice(&[0, 0, 0, IPPROTO_ICMPV6]);
    data.extend_from_slice(msg);
    let mut sum: u64 = data
        .chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn neighbour_solicitations_are_answered_with_a_valid_advertisement() {
    for src in [v6(2), link_local_of(A1_MAC)] {
        let action = decide(&ns_frame(A1_MAC, src, v6(1)), A1_IF).action;
        assert_eq!(
            action,
            Action::NdReply {
                mac: A1_MAC,
                target: v6(1),
                dst: src
            }
        );
        let na = neighbor_advert(A1_MAC, v6(1), src);
        assert_eq!((na.eth.dst, na.eth.src), (A1_MAC, GATEWAY_MAC));
        assert_eq!((na.ip.src, na.ip.dst, na.ip.hop_limit), (v6(1), src, 255));
        assert_eq!(na.nd.icmp_type, ICMPV6_NEIGHBOR_ADVERT);
        assert_eq!(
            (na.nd.target, na.nd.opt_type, na.nd.opt_mac),
            (v6(1), ND_OPT_TARGET_LL, GATEWAY_MAC)
        );
        let mut zeroed = na.nd;
        zeroed.checksum = [0; 2];
        assert_eq!(
            u16::from_be_bytes(na.nd.checksum),
            reference_checksum(&na.ip.src, &na.ip.dst, &bytes(&zeroed))
        );
    }
}

#[test]
fn duplicate_address_detection_is_never_answered() {
    assert_eq!(
        dropped(&ns_frame(A1_MAC, [0; 16], v6(2)), A1_IF),
        DropReason::LinkControl
    );
    assert_eq!(
        dropped(&ns_frame(A1_MAC, v6(2), v6(2)), A1_IF),
        DropReason::LinkControl
    );
    assert_eq!(
        dropped(&ns_frame(A1_MAC, v6(7), v6(3)), A1_IF),
        DropReason::SpoofedIp
    );
}

#[test]
fn multicast_is_link_control() {
    assert_eq!(
        dropped(&ipv4_frame(A1_MAC, A1_V4, [224, 0, 0, 22]), A1_IF),
        DropReason::LinkControl
    );
    assert_eq!(
        dropped(&ipv4_frame(A1_MAC, A1_V4, [255; 4]), A1_IF),
        DropReason::LinkControl
    );
    let mut mld = [0u8; 16];
    mld[0] = 0xff;
    mld[1] = 0x02;
    mld[15] = 0x16;
    assert_eq!(
        dropped(&ipv6_frame(A1_MAC, link_local_of(A1_MAC), mld), A1_IF),
        DropReason::LinkControl
    );
}

/// Network A's other node holds 10.1.2.0/24 and fd00:1:0:2::/64, behind tunnel device 40.
const A_TUNNEL: u32 = 40;

fn with_routes() -> Maps {
    let mut m = maps();
    let mut v6_subnet = v6(0);
    v6_subnet[7] = 2;
    m.routes.push((
        crate::maps::ROUTE_V4_OFFSET_BITS + 24,
        RouteKey::v4(A_NET, [10, 1, 2, 0]),
        Route { ifindex: A_TUNNEL },
    ));
    m.routes.push((
        crate::maps::ROUTE_V6_OFFSET_BITS + 64,
        RouteKey::v6(A_NET, v6_subnet),
        Route { ifindex: A_TUNNEL },
    ));
    m
}

#[test]
fn packets_to_another_nodes_subnet_of_the_same_network_go_into_its_tunnel() {
    let m = with_routes();
    let to = |src_if, src_mac, src, dst| {
        let frame = ipv4_frame(src_mac, src, dst);
        from_container(&frame[..], &untagged(&frame, src_if), &m).action
    };
    assert_eq!(
        to(A1_IF, A1_MAC, A1_V4, [10, 1, 2, 7]),
        Action::Tunnel { ifindex: A_TUNNEL }
    );
    // The same address from network B: B has no route there.
    assert_eq!(
        to(B1_IF, B1_MAC, B1_V4, [10, 1, 2, 7]),
        Action::Drop(DropReason::CrossNetwork)
    );
    // Outside every subnet of the network.
    assert_eq!(
        to(A1_IF, A1_MAC, A1_V4, [10, 1, 3, 7]),
        Action::Drop(DropReason::CrossNetwork)
    );
    // A local container still takes the fast path.
    assert!(matches!(
        to(A1_IF, A1_MAC, A1_V4, A2_V4),
        Action::Deliver { .. }
    ));
}

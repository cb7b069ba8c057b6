//! Frames a container must not get through, or get answered, by bending the rules: VLAN tags,
//! lengths that disagree, IPv4-mapped addresses, down endpoints, and reasons that must be right.

use super::*;

/// An IPv4 packet from a1 to a2 with the given header fields, then `rest` (transport header,
/// payload, padding: whatever the case needs).
fn a1_to_a2_v4(ihl: u8, total_len: u16, protocol: u8, frag_off: u16, rest: &[u8]) -> Vec<u8> {
    let mut f = eth(A1_MAC, ETH_P_IP);
    f.extend(bytes(&Ipv4Hdr {
        version_ihl: 0x40 | ihl,
        tos: 0,
        total_len: total_len.to_be_bytes(),
        id: [0; 2],
        frag_off: frag_off.to_be_bytes(),
        ttl: 64,
        protocol,
        checksum: [0; 2],
        src: A1_V4,
        dst: A2_V4,
    }));
    f.extend(rest);
    f
}

/// An IPv6 packet with the given header fields, then `rest`.
fn ipv6_with(
    payload_len: u16,
    next_header: u8,
    src: [u8; 16],
    dst: [u8; 16],
    rest: &[u8],
) -> Vec<u8> {
    let mut f = eth(A1_MAC, ETH_P_IPV6);
    f.extend(bytes(&Ipv6Hdr {
        version_class_flow: [0x60, 0, 0, 0],
        payload_len: payload_len.to_be_bytes(),
        next_header,
        hop_limit: 64,
        src,
        dst,
    }));
    f.extend(rest);
    f
}

/// A TCP header whose data offset is `words` 32-bit words.
fn tcp_header(words: u8) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[12] = words << 4;
    h
}

fn v4_mapped(v4: [u8; 4]) -> [u8; 16] {
    std::net::Ipv4Addr::from(v4).to_ipv6_mapped().octets()
}

const TO_A2: Action = Action::Deliver {
    ifindex: A2_IF,
    dst_mac: A2_MAC,
};

#[test]
fn vlan_tagged_frames_are_dropped_and_counted_with_their_tag() {
    let ipv4 = ipv4_frame(A1_MAC, A1_V4, A2_V4);
    let request = arp_frame(A1_MAC, ARP_REQUEST, A1_MAC, A1_V4, A2_V4);
    for frame in [&ipv4, &request] {
        // The kernel lifted the tag (any VID, 0 included): the bytes look untagged.
        let ingress = Ingress {
            vlan_tag_stripped: true,
            ..untagged(frame, A1_IF)
        };
        assert_eq!(
            from_container(&frame[..], &ingress, &maps()),
            Decision {
                network_id: A_NET,
                action: Action::Drop(DropReason::VlanTagged)
            }
        );
        assert_eq!(ingress.wire_len(), frame.len() as u32 + 4);
        assert_eq!(untagged(frame, A1_IF).wire_len(), frame.len() as u32);
    }
    // The inner tag of a QinQ pair stays in the frame.
    for tpid in [ETH_P_8021Q, ETH_P_8021AD] {
        let mut inner = ipv4.clone();
        inner.splice(12..12, tpid.to_be_bytes().into_iter().chain([0, 5]));
        assert_eq!(dropped(&inner, A1_IF), DropReason::VlanTagged);
    }
}

#[test]
fn inconsistent_ipv4_lengths_are_malformed() {
    let udp = udp_header(8);
    // Consistent, and with Ethernet padding behind the packet: delivered.
    assert_eq!(
        decide(&a1_to_a2_v4(5, 28, 17, 0, &udp), A1_IF).action,
        TO_A2
    );
    let mut padded = udp.to_vec();
    padded.extend([0xee; 18]);
    assert_eq!(
        decide(&a1_to_a2_v4(5, 28, 17, 0, &padded), A1_IF).action,
        TO_A2
    );
    let mut options = [1u8; 4].to_vec(); // four NOP options
    options.extend(udp);
    assert_eq!(
        decide(&a1_to_a2_v4(6, 32, 17, 0, &options), A1_IF).action,
        TO_A2
    );

    for (case, frame) in [
        (
            "total length beyond the frame",
            a1_to_a2_v4(5, 29, 17, 0, &udp),
        ),
        ("total length far beyond", a1_to_a2_v4(5, 1500, 17, 0, &udp)),
        (
            "total length shorter than the header",
            a1_to_a2_v4(5, 16, 17, 0, &udp),
        ),
        (
            "total length shorter than the options",
            a1_to_a2_v4(6, 20, 17, 0, &options),
        ),
        (
            "header length beyond the frame",
            a1_to_a2_v4(15, 28, 17, 0, &udp),
        ),
        ("header length below 20", a1_to_a2_v4(4, 28, 17, 0, &udp)),
    ] {
        assert_eq!(dropped(&frame, A1_IF), DropReason::Malformed, "{case}");
    }
}

#[test]
fn inconsistent_ipv6_payload_lengths_are_malformed() {
    let udp = udp_header(8);
    assert_eq!(
        decide(&ipv6_with(8, 17, v6(2), v6(3), &udp), A1_IF).action,
        TO_A2
    );
    let mut padded = udp.to_vec();
    padded.extend([0xee; 8]);
    assert_eq!(
        decide(&ipv6_with(8, 17, v6(2), v6(3), &padded), A1_IF).action,
        TO_A2
    );
    for payload_len in [9, 100, u16::MAX] {
        assert_eq!(
            dropped(&ipv6_with(payload_len, 17, v6(2), v6(3), &udp), A1_IF),
            DropReason::Malformed,
            "payload length {payload_len} of 8 bytes"
        );
    }
}

#[test]
fn transport_headers_shorter_than_their_minimum_are_malformed() {
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    const ICMP: u8 = 1;
    for (protocol, minimum) in [(TCP, 20), (UDP, 8), (ICMP, 8)] {
        for short in 0..minimum {
            // The header's bytes inside the IP length, padding behind it to make a full frame.
            let mut rest = vec![0u8; short];
            rest.extend([0xee; 26]);
            let frame = a1_to_a2_v4(5, 20 + short as u16, protocol, 0, &rest);
            assert_eq!(
                dropped(&frame, A1_IF),
                DropReason::Malformed,
                "protocol {protocol}, {short} bytes"
            );
        }
    }
    for short in 0..8u16 {
        let frame = ipv6_with(short, IPPROTO_ICMPV6, v6(2), v6(3), &[0xee; 32]);
        assert_eq!(
            dropped(&frame, A1_IF),
            DropReason::Malformed,
            "ICMPv6, {short} bytes"
        );
        let frame = ipv6_with(short, UDP, v6(2), v6(3), &[0xee; 32]);
        assert_eq!(
            dropped(&frame, A1_IF),
            DropReason::Malformed,
            "UDP/IPv6, {short} bytes"
        );
    }
    // Length fields inside the transport header that contradict the packet.
    for (case, frame) in [
        (
            "TCP data offset below 5",
            a1_to_a2_v4(5, 40, TCP, 0, &tcp_header(4)),
        ),
        (
            "TCP data offset beyond the segment",
            a1_to_a2_v4(5, 40, TCP, 0, &tcp_header(6)),
        ),
        (
            "UDP length beyond the packet",
            a1_to_a2_v4(5, 28, UDP, 0, &udp_header(9)),
        ),
        (
            "UDP length below its header",
            a1_to_a2_v4(5, 28, UDP, 0, &udp_header(7)),
        ),
    ] {
        assert_eq!(dropped(&frame, A1_IF), DropReason::Malformed, "{case}");
    }
    assert_eq!(
        decide(&a1_to_a2_v4(5, 40, TCP, 0, &tcp_header(5)), A1_IF).action,
        TO_A2
    );
    let mut icmp = [0u8; 8].to_vec();
    icmp.extend([0xee; 18]);
    assert_eq!(
        decide(&a1_to_a2_v4(5, 28, ICMP, 0, &icmp), A1_IF).action,
        TO_A2
    );

    // A first fragment must hold the whole header (RFC 1858) but its length fields describe the
    // whole datagram; later fragments carry no header at all.
    const MORE_FRAGMENTS: u16 = 0x2000;
    let first = a1_to_a2_v4(5, 28, UDP, MORE_FRAGMENTS, &udp_header(1000));
    assert_eq!(decide(&first, A1_IF).action, TO_A2);
    let mut tiny = [0u8; 8].to_vec();
    tiny.extend([0xee; 18]);
    let tiny_first = a1_to_a2_v4(5, 28, TCP, MORE_FRAGMENTS, &tiny);
    assert_eq!(dropped(&tiny_first, A1_IF), DropReason::Malformed);
    let later = a1_to_a2_v4(5, 28, TCP, 3, &tiny);
    assert_eq!(decide(&later, A1_IF).action, TO_A2);
}

#[test]
fn ipv4_mapped_ipv6_addresses_never_alias_an_ipv4_endpoint() {
    // a2's IPv4 key is its IPv4-mapped address: this would reach it over IPv6.
    assert_eq!(
        dropped(&ipv6_frame(A1_MAC, v6(2), v4_mapped(A2_V4)), A1_IF),
        DropReason::MappedAddress
    );
    assert_eq!(
        dropped(&ipv6_frame(A1_MAC, v4_mapped(A1_V4), v6(3)), A1_IF),
        DropReason::MappedAddress
    );
    assert_eq!(
        dropped(&ns_frame(A1_MAC, v6(2), v4_mapped(A2_V4)), A1_IF),
        DropReason::MappedAddress
    );
    // Other addresses with zeros up front are not mapped ones.
    let mut compatible = [0u8; 16];
    compatible[12..].copy_from_slice(&A2_V4);
    assert_eq!(
        dropped(&ipv6_frame(A1_MAC, v6(2), compatible), A1_IF),
        DropReason::CrossNetwork
    );
}

#[test]
fn packets_to_a_down_endpoint_are_dropped() {
    let mut tables = maps();
    for key in [EndpointKey::v4(A_NET, A2_V4), EndpointKey::v6(A_NET, v6(3))] {
        let endpoint = tables.endpoints.get_mut(&key).expect("a2's endpoint");
        endpoint.flags |= ENDPOINT_DOWN;
    }
    for frame in [
        ipv4_frame(A1_MAC, A1_V4, A2_V4),
        ipv6_frame(A1_MAC, v6(2), v6(3)),
    ] {
        assert_eq!(
            from_container(&frame[..], &untagged(&frame, A1_IF), &tables).action,
            Action::Drop(DropReason::EndpointDown)
        );
    }
    // Other bits are not "down": entries from before the flags existed read as up.
    let key = EndpointKey::v4(A_NET, A2_V4);
    tables.endpoints.get_mut(&key).expect("a2").flags = 0x80;
    let frame = ipv4_frame(A1_MAC, A1_V4, A2_V4);
    assert_eq!(
        from_container(&frame[..], &untagged(&frame, A1_IF), &tables).action,
        TO_A2
    );
}

#[test]
fn arp_claiming_another_address_is_spoofed_ip_whatever_the_operation() {
    const GATEWAY_V4: [u8; 4] = [10, 1, 1, 1];
    for (oper, spa) in [
        (ARP_REPLY, A2_V4),
        (ARP_REPLY, GATEWAY_V4),
        (ARP_REQUEST, GATEWAY_V4),
        (ARP_REQUEST, A2_V4),
        (3, A2_V4),
    ] {
        assert_eq!(
            dropped(&arp_frame(A1_MAC, oper, A1_MAC, spa, A2_V4), A1_IF),
            DropReason::SpoofedIp,
            "operation {oper} from {spa:?}"
        );
    }
    // Its own address in a reply, or none in a probe: link control, as before.
    assert_eq!(
        dropped(&arp_frame(A1_MAC, ARP_REPLY, A1_MAC, A1_V4, A2_V4), A1_IF),
        DropReason::LinkControl
    );
    assert_eq!(
        dropped(&arp_frame(A1_MAC, ARP_REPLY, A1_MAC, [0; 4], A2_V4), A1_IF),
        DropReason::LinkControl
    );
}

#[test]
fn subnet_broadcasts_are_link_control() {
    let broadcast = [10, 1, 1, 255];
    // To the gateway MAC, and to the broadcast MAC as Linux sends it.
    assert_eq!(
        dropped(&ipv4_frame(A1_MAC, A1_V4, broadcast), A1_IF),
        DropReason::LinkControl
    );
    let mut frame = ipv4_frame(A1_MAC, A1_V4, broadcast);
    frame[..6].copy_from_slice(&[0xff; 6]);
    assert_eq!(dropped(&frame, A1_IF), DropReason::LinkControl);
    // Unicast IP in a group frame, either family, is never a container's traffic.
    let mut frame = ipv4_frame(A1_MAC, A1_V4, A2_V4);
    frame[..6].copy_from_slice(&[0xff; 6]);
    assert_eq!(dropped(&frame, A1_IF), DropReason::LinkControl);
    let mut frame = ipv6_frame(A1_MAC, v6(2), v6(3));
    frame[..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 3]);
    assert_eq!(dropped(&frame, A1_IF), DropReason::LinkControl);
    // Elsewhere in the network is still cross-network.
    assert_eq!(
        dropped(&ipv4_frame(A1_MAC, A1_V4, [10, 1, 2, 255]), A1_IF),
        DropReason::CrossNetwork
    );
    // The rule only names a miss: a container at that address (in a subnet larger than a /24)
    // is still reached.
    let mut tables = maps();
    let a2 = tables.endpoints[&EndpointKey::v4(A_NET, A2_V4)];
    tables
        .endpoints
        .insert(EndpointKey::v4(A_NET, broadcast), a2);
    let frame = ipv4_frame(A1_MAC, A1_V4, broadcast);
    assert_eq!(
        from_container(&frame[..], &untagged(&frame, A1_IF), &tables).action,
        TO_A2
    );
}

#[test]
fn requests_for_addresses_no_host_has_are_not_answered() {
    let mut all_nodes = [0u8; 16];
    all_nodes[..2].copy_from_slice(&[0xff, 0x02]);
    all_nodes[15] = 1;
    for target in [all_nodes, [0; 16]] {
        assert_eq!(
            dropped(&ns_frame(A1_MAC, v6(2), target), A1_IF),
            DropReason::Malformed,
            "solicitation for {target:?}"
        );
    }
    for target in [[224, 0, 0, 1], [255; 4], [0; 4]] {
        assert_eq!(
            dropped(
                &arp_frame(A1_MAC, ARP_REQUEST, A1_MAC, A1_V4, target),
                A1_IF
            ),
            DropReason::Malformed,
            "ARP for {target:?}"
        );
    }
}

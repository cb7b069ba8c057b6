//! Packets too big for the tunnel. A container that raises its MTU above the tunnel's sends
//! packets the underlay cannot carry in one datagram; eBPF redirects them into the TUN device
//! past the kernel's own MTU checks, so the tunnel answers as a router would: ICMP
//! "fragmentation needed" for IPv4 with Don't Fragment, "packet too big" for IPv6. Path MTU
//! discovery in the container then converges on the tunnel's MTU; nothing is lost silently.
//!
//! IPv4 without Don't Fragment may be fragmented on the way: such a packet goes through, and
//! the underlay fragments the datagram that carries it.
//!
//! Packets are built with etherparse (headers and checksums), not by hand.

use etherparse::{
    Icmpv4Type, Icmpv6Type, Ipv4HeaderSlice, Ipv6HeaderSlice, PacketBuilder,
    icmpv4::DestUnreachableHeader,
};

/// How much of the offending packet an ICMPv4 error quotes: the whole error stays within 576
/// bytes, the size every IPv4 host must accept (RFC 1812 4.3.2.3).
const ICMPV4_QUOTE: usize = 576 - 20 - 8;
/// How much an ICMPv6 error quotes: the error stays within IPv6's minimum MTU (RFC 4443 2.4).
const ICMPV6_QUOTE: usize = 1280 - 40 - 8;
/// Hop limit of the answers: they come from the node, one hop from the container.
const HOP_LIMIT: u8 = 64;

/// The answer to `packet`, longer than `mtu`, if it must not go through: the ICMP error,
/// addressed to the packet's sender (from the address it tried to reach). `None` when the
/// packet may be fragmented, or is not IP.
pub fn answer(packet: &[u8], mtu: u16) -> Option<Vec<u8>> {
    match packet.first()? >> 4 {
        4 => {
            let ip = Ipv4HeaderSlice::from_slice(packet).ok()?;
            if !ip.dont_fragment() {
                return None;
            }
            let quote = &packet[..packet.len().min(ICMPV4_QUOTE)];
            let builder = PacketBuilder::ipv4(ip.destination(), ip.source(), HOP_LIMIT).icmpv4(
                Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: mtu,
                }),
            );
            let mut out = Vec::with_capacity(builder.size(quote.len()));
            builder.write(&mut out, quote).ok()?;
            Some(out)
        }
        6 => {
            let ip = Ipv6HeaderSlice::from_slice(packet).ok()?;
            let quote = &packet[..packet.len().min(ICMPV6_QUOTE)];
            let builder = PacketBuilder::ipv6(ip.destination(), ip.source(), HOP_LIMIT).icmpv6(
                Icmpv6Type::PacketTooBig {
                    mtu: u32::from(mtu),
                },
            );
            let mut out = Vec::with_capacity(builder.size(quote.len()));
            builder.write(&mut out, quote).ok()?;
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    use super::*;

    /// A UDP packet of `len` bytes; the Don't Fragment bit set or not (the header checksum is
    /// not judged here).
    fn ipv4(len: usize, dont_fragment: bool) -> Vec<u8> {
        let mut packet = Vec::new();
        PacketBuilder::ipv4([10, 1, 1, 2], [10, 1, 2, 2], 64)
            .udp(4000, 5000)
            .write(&mut packet, &vec![0xab; len - 28])
            .expect("build");
        if dont_fragment {
            packet[6] |= 0x40;
        } else {
            packet[6] &= !0x40;
        }
        packet
    }

    #[test]
    fn ipv4_with_dont_fragment_gets_fragmentation_needed_from_the_destination() {
        let answer = answer(&ipv4(3000, true), 1420).expect("an answer");
        let sliced = SlicedPacket::from_ip(&answer).expect("parse");
        let Some(NetSlice::Ipv4(ip)) = sliced.net else {
            panic!("not IPv4");
        };
        assert_eq!(ip.header().source(), [10, 1, 2, 2]);
        assert_eq!(ip.header().destination(), [10, 1, 1, 2]);
        let Some(TransportSlice::Icmpv4(icmp)) = sliced.transport else {
            panic!("not ICMPv4");
        };
        assert_eq!(
            icmp.icmp_type(),
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: 1420
            })
        );
        assert!(answer.len() <= 576);
    }

    #[test]
    fn ipv4_that_may_be_fragmented_and_what_is_not_ip_get_none() {
        assert_eq!(answer(&ipv4(3000, false), 1420), None);
        assert_eq!(answer(&[0x10, 0, 0], 1420), None);
        assert_eq!(answer(&[], 1420), None);
        assert_eq!(answer(&[0x45, 0, 0], 1420), None);
    }

    #[test]
    fn ipv6_gets_packet_too_big_within_the_minimum_mtu() {
        let src = [0xfd, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2];
        let dst = [0xfd, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2];
        let mut packet = Vec::new();
        PacketBuilder::ipv6(src, dst, 64)
            .udp(4000, 5000)
            .write(&mut packet, &vec![0xcd; 3000])
            .expect("build");
        let answer = answer(&packet, 1420).expect("an answer");
        assert!(answer.len() <= 1280);
        let sliced = SlicedPacket::from_ip(&answer).expect("parse");
        let Some(TransportSlice::Icmpv6(icmp)) = sliced.transport else {
            panic!("not ICMPv6");
        };
        assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1420 });
        let Some(NetSlice::Ipv6(ip)) = sliced.net else {
            panic!("not IPv6");
        };
        assert_eq!(ip.header().destination(), src);
    }
}

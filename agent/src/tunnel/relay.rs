//! Packets one peer of a tunnel sends to another: an access peer reaching containers on other
//! member nodes goes in through the node it connects to, which passes the packet on to the
//! member node that hosts the destination (and the way back). The tunnel does it itself, without
//! the TUN device and the kernel's forwarding, so a node needs no IP forwarding for it.
//!
//! The node is a router hop: the packet's TTL or hop limit goes down by one, and one that runs
//! out is dropped. Plans that disagree for a moment (one node already knows an access peer moved,
//! another not yet) could otherwise pass a packet between two nodes forever.

/// Takes one hop off an IPv4 or IPv6 packet's TTL or hop limit, updating the IPv4 header
/// checksum. Returns false, leaving the packet as it is, when the packet may not be forwarded
/// (the limit is spent) or is too short to have the field.
pub(super) fn hop(packet: &mut [u8]) -> bool {
    match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= IPV4_HEADER => {
            if packet[IPV4_TTL] <= 1 {
                return false;
            }
            let header_len = usize::from(packet[0] & 0x0f) * 4;
            if header_len < IPV4_HEADER || header_len > packet.len() {
                return false;
            }
            packet[IPV4_TTL] -= 1;
            // Recomputed over the header (at most 60 bytes) rather than updated incrementally,
            // which can leave the other zero (0xffff) where senders write 0.
            packet[IPV4_CHECKSUM..IPV4_CHECKSUM + 2].fill(0);
            let sum = ipv4_checksum(&packet[..header_len]);
            packet[IPV4_CHECKSUM..IPV4_CHECKSUM + 2].copy_from_slice(&sum.to_be_bytes());
            true
        }
        Some(6) if packet.len() >= IPV6_HEADER => {
            if packet[IPV6_HOP_LIMIT] <= 1 {
                return false;
            }
            packet[IPV6_HOP_LIMIT] -= 1;
            true
        }
        _ => false,
    }
}

/// The Internet checksum of an IPv4 header whose checksum field is zero (etherparse's sum, as
/// the tunnel's other packets are checksummed).
fn ipv4_checksum(header: &[u8]) -> u16 {
    etherparse::checksum::Sum16BitWords::new()
        .add_slice(header)
        .ones_complement()
        .to_be()
}

const IPV4_HEADER: usize = 20;
const IPV4_TTL: usize = 8;
const IPV4_CHECKSUM: usize = 10;
const IPV6_HEADER: usize = 40;
const IPV6_HOP_LIMIT: usize = 7;

#[cfg(test)]
mod tests {
    use etherparse::{Ipv4Header, Ipv6Header, PacketBuilder};

    use super::hop;

    fn ipv4(ttl: u8) -> Vec<u8> {
        let mut packet = Vec::new();
        PacketBuilder::ipv4([10, 1, 200, 5], [10, 1, 2, 2], ttl)
            .udp(4000, 5000)
            .write(&mut packet, b"payload")
            .expect("build");
        packet
    }

    #[test]
    fn ipv4_loses_one_ttl_and_keeps_a_valid_checksum() {
        for ttl in [2, 64, 255] {
            let mut packet = ipv4(ttl);
            assert!(hop(&mut packet));
            let (header, _) = Ipv4Header::from_slice(&packet).expect("header");
            assert_eq!(header.time_to_live, ttl - 1);
            assert_eq!(
                header.header_checksum,
                header.calc_header_checksum(),
                "ttl {ttl}"
            );
        }
    }

    #[test]
    fn a_checksum_that_wraps_stays_valid() {
        // Every starting checksum, so the carry out of the top byte is exercised.
        for id in 0..=u16::MAX {
            let mut packet = ipv4(64);
            packet[4..6].copy_from_slice(&id.to_be_bytes());
            let (mut header, _) = Ipv4Header::from_slice(&packet).expect("header");
            header.header_checksum = header.calc_header_checksum();
            packet[10..12].copy_from_slice(&header.header_checksum.to_be_bytes());
            assert!(hop(&mut packet));
            let (after, _) = Ipv4Header::from_slice(&packet).expect("header");
            assert_eq!(
                after.header_checksum,
                after.calc_header_checksum(),
                "id {id}"
            );
        }
    }

    #[test]
    fn ipv6_loses_one_hop() {
        let mut packet = Vec::new();
        PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 9)
            .udp(1, 2)
            .write(&mut packet, b"x")
            .expect("build");
        assert!(hop(&mut packet));
        let (header, _) = Ipv6Header::from_slice(&packet).expect("header");
        assert_eq!(header.hop_limit, 8);
    }

    #[test]
    fn a_spent_limit_or_a_stub_is_not_forwarded_nor_changed() {
        for mut packet in [
            ipv4(1),
            ipv4(0),
            vec![0x45; 10],
            vec![0x60; 39],
            vec![],
            vec![0x10; 60],
        ] {
            let before = packet.clone();
            assert!(!hop(&mut packet));
            assert_eq!(packet, before);
        }
    }
}

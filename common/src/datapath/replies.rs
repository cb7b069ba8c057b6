//! The frames the datapath answers with, written over the request.

use crate::{
    GATEWAY_MAC,
    packet::{
        ARP_REPLY, ArpFrame, ArpIpv4, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, EthHdr,
        ICMPV6_NEIGHBOR_ADVERT, IPPROTO_ICMPV6, Ipv6Hdr, ND_OPT_TARGET_LL, NaFrame, NdMessage,
        nd_checksum,
    },
};

/// The ARP reply telling the container (`mac`, `ip`) that `asked` is at the gateway MAC.
#[inline(always)]
pub fn arp_reply(mac: [u8; 6], ip: [u8; 4], asked: [u8; 4]) -> ArpFrame {
    ArpFrame {
        eth: EthHdr {
            dst: mac,
            src: GATEWAY_MAC,
            ether_type: ETH_P_ARP.to_be_bytes(),
        },
        arp: ArpIpv4 {
            htype: 1u16.to_be_bytes(),
            ptype: ETH_P_IP.to_be_bytes(),
            hlen: 6,
            plen: 4,
            oper: ARP_REPLY.to_be_bytes(),
            sha: GATEWAY_MAC,
            spa: asked,
            tha: mac,
            tpa: ip,
        },
    }
}

/// The neighbour advertisement telling the container (`mac`, at `dst`) that `target` is at the
/// gateway MAC.
#[inline(always)]
pub fn neighbor_advert(mac: [u8; 6], target: [u8; 16], dst: [u8; 16]) -> NaFrame {
    let mut nd = NdMessage {
        icmp_type: ICMPV6_NEIGHBOR_ADVERT,
        code: 0,
        checksum: [0; 2],
        // Router, Solicited, Override: the gateway answers for the whole network.
        flags: [0xe0, 0, 0, 0],
        target,
        opt_type: ND_OPT_TARGET_LL,
        opt_len: 1,
        opt_mac: GATEWAY_MAC,
    };
    nd.checksum = nd_checksum(&target, &dst, &nd);
    NaFrame {
        eth: EthHdr {
            dst: mac,
            src: GATEWAY_MAC,
            ether_type: ETH_P_IPV6.to_be_bytes(),
        },
        ip: Ipv6Hdr {
            version_class_flow: [0x60, 0, 0, 0],
            payload_len: (core::mem::size_of::<NdMessage>() as u16).to_be_bytes(),
            next_header: IPPROTO_ICMPV6,
            hop_limit: 255,
            src: target,
            dst,
        },
        nd,
    }
}

//! The frames the guard's benchmark sends and times: Ethernet/IPv4 from the internet side to
//! the node.

use gridnet_common::packet::{IPPROTO_TCP, IPPROTO_UDP};
use gridnet_tests::{INET_IP, NODE_IP};

/// UDP payload bytes per datagram: small packets stress per-packet cost.
pub const PAYLOAD: usize = 18;
/// The source port of every frame.
const SOURCE_PORT: u16 = 40000;

/// What a frame carries.
#[derive(Clone, Copy)]
pub enum Transport {
    /// A UDP datagram of [`PAYLOAD`] bytes to this port.
    Udp(u16),
    /// A TCP segment without data to this port, with these flags.
    Tcp(u16, u8),
}

/// An Ethernet/IPv4 frame from the internet side to the node, with a valid IPv4 checksum (the
/// transport checksum stays zero: nothing here gets that far).
pub fn ipv4(src: [u8; 6], dst: [u8; 6], transport: Transport) -> anyhow::Result<Vec<u8>> {
    let src_ip: std::net::Ipv4Addr = INET_IP.parse()?;
    let dst_ip: std::net::Ipv4Addr = NODE_IP.parse()?;
    let mut l4 = SOURCE_PORT.to_be_bytes().to_vec();
    let protocol = match transport {
        Transport::Udp(port) => {
            l4.extend(port.to_be_bytes());
            l4.extend((8 + PAYLOAD as u16).to_be_bytes());
            l4.extend([0, 0]);
            l4.extend([0u8; PAYLOAD]);
            IPPROTO_UDP
        }
        Transport::Tcp(port, flags) => {
            l4.extend(port.to_be_bytes());
            // Sequence and acknowledgement numbers, data offset 5 words, the flags, a window;
            // checksum and urgent pointer zero.
            l4.extend([0, 0, 0, 1, 0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
            IPPROTO_TCP
        }
    };
    let total = u16::try_from(20 + l4.len())?;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, protocol, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend(src_ip.octets());
    ip.extend(dst_ip.octets());
    let sum = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let checksum = !((sum & 0xffff) + (sum >> 16)) as u16;
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    let mut frame = dst.to_vec();
    frame.extend(src);
    frame.extend(0x0800u16.to_be_bytes());
    frame.extend(ip);
    frame.extend(l4);
    Ok(frame)
}

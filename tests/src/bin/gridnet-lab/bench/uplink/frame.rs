//! The frames the guard's benchmark sends and times: Ethernet/IPv4 and IPv6 from the internet
//! side to the node.

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

/// The IP header of a frame.
#[derive(Clone, Copy)]
pub enum Ip {
    /// IPv4 without options.
    V4,
    /// IPv4 with one 4-byte option (four no-ops): the guard then reads the header the general
    /// way, at offsets it computes, instead of at fixed ones.
    V4WithOptions,
    /// IPv6 without extension headers, between ULA addresses (the frames only go through
    /// `BPF_PROG_TEST_RUN`, never onto a link).
    V6,
}

/// The IPv6 source and destination of [`Ip::V6`] frames.
const INET_IP6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 2);
const NODE_IP6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 1);

/// An Ethernet frame from the internet side to the node, with a valid IPv4 header checksum (the
/// transport checksum stays zero: nothing here gets that far).
pub fn frame(src: [u8; 6], dst: [u8; 6], ip: Ip, transport: Transport) -> anyhow::Result<Vec<u8>> {
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
    let (ether_type, header) = match ip {
        Ip::V4 => (0x0800u16, ipv4_header(protocol, &[], l4.len())?),
        // IPOPT_NOP, four times.
        Ip::V4WithOptions => (0x0800, ipv4_header(protocol, &[1; 4], l4.len())?),
        Ip::V6 => {
            let mut header = vec![0x60, 0, 0, 0];
            header.extend(u16::try_from(l4.len())?.to_be_bytes());
            header.extend([protocol, 64]);
            header.extend(INET_IP6.octets());
            header.extend(NODE_IP6.octets());
            (0x86dd, header)
        }
    };
    let mut frame = dst.to_vec();
    frame.extend(src);
    frame.extend(ether_type.to_be_bytes());
    frame.extend(header);
    frame.extend(l4);
    Ok(frame)
}

/// An IPv4 header from [`INET_IP`] to [`NODE_IP`] with `options`, before `l4_len` bytes of
/// `protocol`.
fn ipv4_header(protocol: u8, options: &[u8], l4_len: usize) -> anyhow::Result<Vec<u8>> {
    let src_ip: std::net::Ipv4Addr = INET_IP.parse()?;
    let dst_ip: std::net::Ipv4Addr = NODE_IP.parse()?;
    let header_len = 20 + options.len();
    anyhow::ensure!(
        options.len().is_multiple_of(4) && header_len <= 60,
        "bad IPv4 options"
    );
    let total = u16::try_from(header_len + l4_len)?;
    let version_ihl = 0x40 | (header_len / 4) as u8;
    let mut ip = vec![version_ihl, 0, 0, 0, 0, 0, 0x40, 0, 64, protocol, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend(src_ip.octets());
    ip.extend(dst_ip.octets());
    ip.extend(options);
    let sum = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let checksum = !((sum & 0xffff) + (sum >> 16)) as u16;
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    Ok(ip)
}

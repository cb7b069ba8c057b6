//! Whether a packet's headers agree with each other and with the frame, and what an address is.

use crate::packet::{Frame, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

/// Smallest TCP header (no options).
pub(super) const TCP_MIN_LEN: usize = 20;
/// UDP header.
pub(super) const UDP_LEN: usize = 8;
/// Smallest ICMP and ICMPv6 message: type, code, checksum and the 4 bytes every message
/// defines (the stacks read 8 bytes before looking at the type).
pub(super) const ICMP_MIN_LEN: usize = 8;

/// Whether the transport header at `offset`, with `l4_len` bytes of IP payload behind it, is
/// whole and agrees with itself. `whole` says the payload is the whole datagram (not a first
/// fragment), so the header's own length fields can be checked against it.
#[inline(always)]
pub(super) fn transport_is_consistent<F: Frame + ?Sized>(
    frame: &F,
    protocol: u8,
    offset: usize,
    l4_len: usize,
    whole: bool,
) -> bool {
    match protocol {
        IPPROTO_TCP => {
            if l4_len < TCP_MIN_LEN {
                return false;
            }
            // The data offset, in 32-bit words, is the high nibble of byte 12.
            let Some(data_offset) = frame.load::<u8>(offset + 12) else {
                return false;
            };
            let header_len = usize::from(data_offset >> 4) * 4;
            header_len >= TCP_MIN_LEN && (!whole || header_len <= l4_len)
        }
        IPPROTO_UDP => {
            if l4_len < UDP_LEN {
                return false;
            }
            let Some(length) = frame.load::<[u8; 2]>(offset + 4) else {
                return false;
            };
            let length = usize::from(u16::from_be_bytes(length));
            !whole || (UDP_LEN..=l4_len).contains(&length)
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => l4_len >= ICMP_MIN_LEN,
        _ => true,
    }
}

/// A multicast or broadcast Ethernet address (the group bit).
#[inline(always)]
pub(super) const fn is_group(mac: &[u8; 6]) -> bool {
    mac[0] & 1 != 0
}

/// `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2).
#[inline(always)]
pub(crate) fn is_ipv4_mapped(addr: &[u8; 16]) -> bool {
    // A loop, not a slice comparison: with the slice the compiler emitted a read of a register
    // a helper call had clobbered, which the verifier refuses.
    let mut i = 0;
    while i < 10 {
        if addr[i] != 0 {
            return false;
        }
        i += 1;
    }
    addr[10] == 0xff && addr[11] == 0xff
}

//! The uplink guard's allow-list as the guard reads it: one bit per (protocol, port).
//!
//! The guard judges every TCP and UDP packet by its destination port. A hash map keyed by
//! protocol and port costs a helper call and a hash per packet; an array of 64-bit words is
//! found by pointer arithmetic (the verifier inlines an array lookup), which is most of the
//! guard's time saved on its common path. The allow-list has no addresses in it, so the bitmap
//! is exact, not a pre-filter: a set bit is an allowed port.

use crate::packet::{IPPROTO_TCP, IPPROTO_UDP};

/// The guard's allowed ports as a bitmap: an array `u32 -> u64`, word [`PortBit::word`] holding
/// 64 ports' bits. TCP's ports fill the first [`PORT_WORDS_PER_PROTOCOL`] words, UDP's the next.
pub const MAP_UPLINK_PORT_BITS: &str = "GRIDNET_PORTBITS_1";

/// Words of one protocol's ports: 65,536 ports, 64 to a word.
pub const PORT_WORDS_PER_PROTOCOL: u32 = (u16::MAX as u32 + 1) / 64;
/// Entries of [`MAP_UPLINK_PORT_BITS`]: TCP's words, then UDP's. 16 KiB in all.
pub const UPLINK_PORT_WORDS: u32 = 2 * PORT_WORDS_PER_PROTOCOL;

/// Where one (protocol, port) lives in [`MAP_UPLINK_PORT_BITS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortBit {
    /// The index of its word.
    pub word: u32,
    /// Its bit in that word.
    pub mask: u64,
}

impl PortBit {
    /// The bit of `port` for `protocol`; `None` for a protocol without ports in the bitmap
    /// (anything but TCP and UDP).
    #[inline(always)]
    pub const fn of(protocol: u8, port: u16) -> Option<Self> {
        let first = match protocol {
            IPPROTO_TCP => 0,
            IPPROTO_UDP => PORT_WORDS_PER_PROTOCOL,
            _ => return None,
        };
        Some(Self {
            word: first + (port / 64) as u32,
            mask: 1 << (port % 64),
        })
    }

    /// Whether `word` (the content of word [`PortBit::word`]) has this bit set.
    #[inline(always)]
    pub const fn is_set_in(self, word: u64) -> bool {
        word & self.mask != 0
    }
}

/// A whole bitmap, as the agent builds it from its allow-list to compare with the map.
#[derive(Clone, PartialEq, Eq)]
pub struct PortBitmap {
    words: [u64; UPLINK_PORT_WORDS as usize],
}

impl Default for PortBitmap {
    fn default() -> Self {
        Self {
            words: [0; UPLINK_PORT_WORDS as usize],
        }
    }
}

impl core::fmt::Debug for PortBitmap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_set().entries(self.ports()).finish()
    }
}

impl PortBitmap {
    /// Sets the bit of (protocol, port); `false` (and nothing set) for a protocol the bitmap has
    /// no ports for.
    pub fn insert(&mut self, protocol: u8, port: u16) -> bool {
        let Some(bit) = PortBit::of(protocol, port) else {
            return false;
        };
        self.words[bit.word as usize] |= bit.mask;
        true
    }

    /// Whether (protocol, port) is set.
    pub fn contains(&self, protocol: u8, port: u16) -> bool {
        PortBit::of(protocol, port).is_some_and(|bit| bit.is_set_in(self.words[bit.word as usize]))
    }

    /// The words, by index into [`MAP_UPLINK_PORT_BITS`].
    pub fn words(&self) -> &[u64; UPLINK_PORT_WORDS as usize] {
        &self.words
    }

    /// The (protocol, port) pairs set, TCP's first, each protocol's in port order.
    pub fn ports(&self) -> impl Iterator<Item = (u8, u16)> + '_ {
        self.words.iter().zip(0u32..).flat_map(|(&word, index)| {
            let protocol = if index < PORT_WORDS_PER_PROTOCOL {
                IPPROTO_TCP
            } else {
                IPPROTO_UDP
            };
            let base = (index % PORT_WORDS_PER_PROTOCOL) * 64;
            (0..64u32)
                .filter(move |bit| word & (1 << bit) != 0)
                .map(move |bit| (protocol, (base + bit) as u16))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_port_has_its_own_bit_per_protocol() {
        assert_eq!(
            PortBit::of(IPPROTO_TCP, 0),
            Some(PortBit { word: 0, mask: 1 })
        );
        assert_eq!(
            PortBit::of(IPPROTO_TCP, 443),
            Some(PortBit {
                word: 6,
                mask: 1 << 59
            })
        );
        assert_eq!(
            PortBit::of(IPPROTO_UDP, 51820),
            Some(PortBit {
                word: 1024 + 809,
                mask: 1 << 44
            })
        );
        assert_eq!(
            PortBit::of(IPPROTO_UDP, u16::MAX),
            Some(PortBit {
                word: UPLINK_PORT_WORDS - 1,
                mask: 1 << 63
            })
        );
        let mut seen = std::collections::HashSet::new();
        for protocol in [IPPROTO_TCP, IPPROTO_UDP] {
            for port in 0..=u16::MAX {
                let bit = PortBit::of(protocol, port).expect("TCP and UDP have bits");
                assert!(bit.word < UPLINK_PORT_WORDS, "{protocol}/{port}");
                assert_eq!(bit.mask.count_ones(), 1, "{protocol}/{port}");
                assert!(
                    seen.insert((bit.word, bit.mask)),
                    "{protocol}/{port} shared"
                );
            }
        }
    }

    #[test]
    fn other_protocols_have_no_bits() {
        assert_eq!(PortBit::of(crate::packet::IPPROTO_ICMP, 80), None);
        let mut bitmap = PortBitmap::default();
        assert!(!bitmap.insert(47, 80));
        assert_eq!(bitmap, PortBitmap::default());
        assert!(!bitmap.contains(47, 80));
    }

    #[test]
    fn a_bitmap_holds_exactly_its_ports() {
        let mut bitmap = PortBitmap::default();
        for (protocol, port) in [(IPPROTO_UDP, 51820), (IPPROTO_TCP, 443), (IPPROTO_TCP, 80)] {
            assert!(bitmap.insert(protocol, port));
        }
        assert!(bitmap.contains(IPPROTO_TCP, 443));
        assert!(!bitmap.contains(IPPROTO_UDP, 443), "443 is TCP only");
        assert!(!bitmap.contains(IPPROTO_TCP, 444));
        assert!(!bitmap.contains(IPPROTO_TCP, 442));
        assert_eq!(
            bitmap.ports().collect::<Vec<_>>(),
            [(IPPROTO_TCP, 80), (IPPROTO_TCP, 443), (IPPROTO_UDP, 51820)]
        );
        assert_eq!(
            bitmap.words().iter().map(|w| w.count_ones()).sum::<u32>(),
            3
        );
        let bit = PortBit::of(IPPROTO_UDP, 51820).expect("UDP");
        assert!(bit.is_set_in(bitmap.words()[bit.word as usize]));
    }
}

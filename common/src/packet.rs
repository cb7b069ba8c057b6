//! Wire headers and bounds-checked access to a frame.
//!
//! Headers are byte arrays in network order, so they have alignment 1, no padding, and can be
//! read from any offset.

use core::mem::{MaybeUninit, size_of};

/// A received frame the datapath can read typed headers from.
pub trait Frame {
    /// The `T` at byte `offset`, or `None` when the frame is too short.
    fn load<T: Wire>(&self, offset: usize) -> Option<T>;

    /// [`Frame::load`] into `buf`, borrowed back; `None` when the frame is too short.
    ///
    /// For headers that are read field by field: one kept in memory is read there, where a
    /// returned value is copied into registers, which the eBPF compiler spills to the
    /// 512-byte stack a byte per 8-byte slot.
    #[inline(always)]
    fn load_into<'b, T: Wire>(&self, offset: usize, buf: &'b mut MaybeUninit<T>) -> Option<&'b T> {
        let value = self.load(offset)?;
        Some(buf.write(value))
    }
}

impl Frame for [u8] {
    #[inline(always)]
    fn load<T: Wire>(&self, offset: usize) -> Option<T> {
        let end = offset.checked_add(size_of::<T>())?;
        if end > self.len() {
            return None;
        }
        // SAFETY: `offset..end` is inside the slice (checked above), so the read stays in bounds;
        // `T: Wire` is valid for any bit pattern (see `Wire`), so any bytes make a valid `T`;
        // `read_unaligned` needs no alignment.
        Some(unsafe { self.as_ptr().add(offset).cast::<T>().read_unaligned() })
    }
}

/// What a [`Frame`] can be read as: a wire header, a byte, or a byte array.
///
/// # Safety
///
/// Reading a `Wire` type out of packet bytes must be sound whatever the bytes are, so every
/// implementor is made of `u8` and `[u8; N]` only (a `#[repr(C)]` struct when it has fields):
/// any bit pattern is a valid value, there is no padding to leave uninitialised, and nothing in
/// it points anywhere. The trait is sealed so that only this crate, which checks that, can
/// implement it; each implementation also asserts alignment 1 at compile time.
///
/// ```
/// use gridnet_common::packet::Frame;
///
/// let bytes = [0x86, 0xdd, 0x60];
/// assert_eq!(bytes[..].load::<[u8; 2]>(0), Some([0x86, 0xdd]));
/// assert_eq!(bytes[..].load::<[u8; 2]>(2), None);
/// ```
///
/// Nothing else can be loaded, a reference for one:
///
/// ```compile_fail,E0277
/// use gridnet_common::packet::Frame;
///
/// let bytes = [0u8; 16];
/// let _ = bytes[..].load::<&u8>(0);
/// ```
///
/// and no other crate can add one:
///
/// ```compile_fail,E0277
/// #[derive(Clone, Copy)]
/// struct Flag(bool);
/// impl gridnet_common::packet::Wire for Flag {}
/// ```
pub trait Wire: sealed::Sealed + Copy {}

pub(crate) mod sealed {
    /// Not nameable outside this crate, so no other crate can implement [`super::Wire`].
    pub trait Sealed {}
}

/// Makes types [`Wire`]: only for types made of `u8` and `[u8; N]` (see its `# Safety`).
macro_rules! wire {
    ($($t:ty),+ $(,)?) => {$(
        impl $crate::packet::sealed::Sealed for $t {}
        impl $crate::packet::Wire for $t {}
        const _: () = assert!(core::mem::align_of::<$t>() == 1);
    )+};
}
pub(crate) use wire;

// Single bytes (ICMP types, TCP flags) and short runs of them (an IPv6 extension header's
// first two bytes); wider integers are read as byte arrays, since their byte order is the
// caller's to choose.
wire!(u8);
impl<const N: usize> sealed::Sealed for [u8; N] {}
impl<const N: usize> Wire for [u8; N] {}

wire!(EthHdr, ArpIpv4, Ipv4Hdr, Ipv6Hdr, NdMessage);

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
/// IP protocol numbers (IANA), the one place gridnet spells them.
pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;
pub const ICMPV6_ROUTER_SOLICIT: u8 = 133;
pub const ICMPV6_NEIGHBOR_SOLICIT: u8 = 135;
pub const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;
/// NDP option: source link-layer address.
pub const ND_OPT_SOURCE_LL: u8 = 1;
/// NDP option: target link-layer address.
pub const ND_OPT_TARGET_LL: u8 = 2;

pub const ETH_LEN: usize = size_of::<EthHdr>();

/// Ethernet II header.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ether_type: [u8; 2],
}
const _: () = assert!(size_of::<EthHdr>() == 14);

impl EthHdr {
    pub const fn ether_type(&self) -> u16 {
        u16::from_be_bytes(self.ether_type)
    }
}

/// ARP for IPv4 over Ethernet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpIpv4 {
    pub htype: [u8; 2],
    pub ptype: [u8; 2],
    pub hlen: u8,
    pub plen: u8,
    pub oper: [u8; 2],
    pub sha: [u8; 6],
    pub spa: [u8; 4],
    pub tha: [u8; 6],
    pub tpa: [u8; 4],
}
const _: () = assert!(size_of::<ArpIpv4>() == 28);

impl ArpIpv4 {
    /// Whether this is ARP for IPv4 over Ethernet (the only kind there is on a veth).
    pub const fn is_ethernet_ipv4(&self) -> bool {
        u16::from_be_bytes(self.htype) == 1
            && u16::from_be_bytes(self.ptype) == ETH_P_IP
            && self.hlen == 6
            && self.plen == 4
    }

    pub const fn oper(&self) -> u16 {
        u16::from_be_bytes(self.oper)
    }
}

/// IPv4 header without options.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub total_len: [u8; 2],
    pub id: [u8; 2],
    pub frag_off: [u8; 2],
    pub ttl: u8,
    pub protocol: u8,
    pub checksum: [u8; 2],
    pub src: [u8; 4],
    pub dst: [u8; 4],
}
const _: () = assert!(size_of::<Ipv4Hdr>() == 20);

/// IPv4 `frag_off`: the More Fragments flag.
const IP_MF: u16 = 0x2000;
/// IPv4 `frag_off`: the fragment offset.
const IP_OFFSET: u16 = 0x1fff;

impl Ipv4Hdr {
    /// Version 4 and a header length of at least 20 bytes.
    pub const fn is_well_formed(&self) -> bool {
        self.version_ihl >> 4 == 4 && self.version_ihl & 0x0f >= 5
    }

    /// A fragment other than the first: its offset is not 0, so it carries no transport header.
    pub const fn is_later_fragment(&self) -> bool {
        u16::from_be_bytes(self.frag_off) & IP_OFFSET != 0
    }

    /// More fragments of its datagram follow (the More Fragments flag).
    pub const fn has_more_fragments(&self) -> bool {
        u16::from_be_bytes(self.frag_off) & IP_MF != 0
    }
}

/// IPv6 fixed header.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Hdr {
    pub version_class_flow: [u8; 4],
    pub payload_len: [u8; 2],
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}
const _: () = assert!(size_of::<Ipv6Hdr>() == 40);

impl Ipv6Hdr {
    pub const fn is_well_formed(&self) -> bool {
        self.version_class_flow[0] >> 4 == 6
    }

    pub const fn payload_len(&self) -> u16 {
        u16::from_be_bytes(self.payload_len)
    }
}

/// A neighbour solicitation or advertisement carrying one link-layer address option, the form
/// Linux sends for address resolution.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdMessage {
    pub icmp_type: u8,
    pub code: u8,
    pub checksum: [u8; 2],
    /// Reserved in a solicitation; R, S, O flags in an advertisement.
    pub flags: [u8; 4],
    pub target: [u8; 16],
    pub opt_type: u8,
    /// Option length in units of 8 bytes.
    pub opt_len: u8,
    pub opt_mac: [u8; 6],
}
const _: () = assert!(size_of::<NdMessage>() == 32);

/// A whole ARP frame, as the datapath writes its replies.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpFrame {
    pub eth: EthHdr,
    pub arp: ArpIpv4,
}
const _: () = assert!(size_of::<ArpFrame>() == 42);

/// A whole neighbour advertisement frame, as the datapath writes its replies.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NaFrame {
    pub eth: EthHdr,
    pub ip: Ipv6Hdr,
    pub nd: NdMessage,
}
const _: () = assert!(size_of::<NaFrame>() == 86);

/// The ICMPv6 checksum of a neighbour discovery message between `src` and `dst`
/// (RFC 4443 §2.3: over the pseudo-header and the message with its checksum field zero).
pub fn nd_checksum(src: &[u8; 16], dst: &[u8; 16], nd: &NdMessage) -> [u8; 2] {
    let mut msg = *nd;
    msg.checksum = [0, 0];
    // SAFETY: `NdMessage` is `repr(C)`, 32 bytes of byte arrays without padding.
    let body: [u8; 32] = unsafe { core::mem::transmute(msg) };
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8; 16]| {
        let mut i = 0;
        while i < 16 {
            sum += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
            i += 2;
        }
    };
    add(src);
    add(dst);
    // Upper-layer length (32) and next header (58), as 32-bit fields.
    sum += size_of::<NdMessage>() as u32;
    sum += u32::from(IPPROTO_ICMPV6);
    let mut i = 0;
    while i < 32 {
        sum += u32::from(u16::from_be_bytes([body[i], body[i + 1]]));
        i += 2;
    }
    // Two folds bring any 32-bit sum into 16 bits; a data-dependent loop would not pass the
    // verifier.
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    (!(sum as u16)).to_be_bytes()
}

/// The IPv6 link-local address Linux derives from a MAC (modified EUI-64, RFC 4291 App. A).
pub const fn link_local_of(mac: [u8; 6]) -> [u8; 16] {
    let [a, b, c, d, e, f] = mac;
    [
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        a ^ 0x02,
        b,
        c,
        0xff,
        0xfe,
        d,
        e,
        f,
    ]
}

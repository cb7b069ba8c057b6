//! What happened to a packet: the program that saw it, its verdict, and why it was dropped.
//!
//! The numbers are part of the pinned counters' layout: never reuse or renumber one.

/// The eBPF program that counted a packet.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// TC ingress on the host side of a container's veth.
    TcFromContainer = 1,
    /// XDP on the node's uplinks: the guard against unsolicited inbound traffic.
    XdpUplink = 2,
    /// TC ingress on each network's tunnel device: decrypted packets from other nodes.
    TcFromTunnel = 3,
}

impl Program {
    /// Every program, for tools that list them.
    pub const ALL: [Program; 3] = [
        Program::TcFromContainer,
        Program::XdpUplink,
        Program::TcFromTunnel,
    ];

    /// The program's stable name, as shown by `gridnet bpf-stats`.
    pub const fn name(self) -> &'static str {
        match self {
            Program::TcFromContainer => "tc_from_container",
            Program::XdpUplink => "xdp_uplink",
            Program::TcFromTunnel => "tc_from_tunnel",
        }
    }

    /// The program with this number, if any.
    pub fn from_u8(value: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|p| *p as u8 == value)
    }
}

/// The outcome of one packet.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered to a local container of the same network (the fast path).
    Forward = 1,
    /// Answered by the program itself (ARP reply, neighbour advertisement).
    Reply = 2,
    /// Dropped; the counter key carries a [`DropReason`].
    Drop = 3,
    /// Let through to the node's own stack (the uplink guard's allowed traffic).
    Pass = 4,
    /// Sent into the network's tunnel, to a container on another node.
    Tunnel = 5,
}

impl Verdict {
    /// Every verdict, for tools that list them.
    pub const ALL: [Verdict; 5] = [
        Verdict::Forward,
        Verdict::Reply,
        Verdict::Drop,
        Verdict::Pass,
        Verdict::Tunnel,
    ];

    /// The verdict's stable name, as shown by `gridnet bpf-stats`.
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Forward => "forward",
            Verdict::Reply => "reply",
            Verdict::Drop => "drop",
            Verdict::Pass => "pass",
            Verdict::Tunnel => "tunnel",
        }
    }

    /// The verdict with this number, if any.
    pub fn from_u8(value: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|v| *v as u8 == value)
    }
}

/// Why a packet was dropped. Fixed numbers, never reused.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Not a drop (the counter of a forward or reply verdict).
    None = 0,
    /// Truncated or inconsistent headers.
    Malformed = 1,
    /// The interface is not a container gridnet knows (no entry for its ifindex).
    UnknownInterface = 2,
    /// Source MAC (Ethernet or ARP sender) is not the container's own.
    SpoofedMac = 3,
    /// Source IP (IPv4, IPv6 or ARP sender) is not the container's own.
    SpoofedIp = 4,
    /// The destination is not a member of the sender's network: another network's address,
    /// an unused address, or the outside world. Networks are closed.
    CrossNetwork = 5,
    /// An EtherType gridnet does not carry (only ARP, IPv4 and IPv6 are).
    UnsupportedProtocol = 6,
    /// Link-local control traffic that needs no answer: duplicate address detection, router
    /// solicitations, MLD reports, gratuitous ARP, multicast and broadcast.
    LinkControl = 7,
    /// The kernel refused the redirect to the destination's interface.
    RedirectFailed = 8,
    /// Inbound traffic nobody asked for: not to an allowed port (WireGuard, gateways), not a
    /// reply to a connection the node opened, not control traffic the host needs.
    Unsolicited = 9,
    /// A non-first IP fragment: it carries no ports to judge it by.
    Fragment = 10,
    /// An 802.1Q or 802.1ad tagged frame: container links are untagged.
    VlanTagged = 11,
    /// An IPv6 packet from or to an IPv4-mapped address (`::ffff:a.b.c.d`): the families do
    /// not alias, so no such packet may reach an IPv4 endpoint.
    MappedAddress = 12,
    /// The destination container is there but its interface is down.
    EndpointDown = 13,
    /// Shaped like a reply (to the node's ephemeral range, not a connection attempt), but the
    /// node has no connection or socket it belongs to: forged, or late for a connection gone.
    NoSocket = 14,
}

impl DropReason {
    /// Every reason, for tools that list them.
    pub const ALL: [DropReason; 15] = [
        DropReason::None,
        DropReason::Malformed,
        DropReason::UnknownInterface,
        DropReason::SpoofedMac,
        DropReason::SpoofedIp,
        DropReason::CrossNetwork,
        DropReason::UnsupportedProtocol,
        DropReason::LinkControl,
        DropReason::RedirectFailed,
        DropReason::Unsolicited,
        DropReason::Fragment,
        DropReason::VlanTagged,
        DropReason::MappedAddress,
        DropReason::EndpointDown,
        DropReason::NoSocket,
    ];

    /// The reason's stable name, as shown by `gridnet bpf-stats`.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::None => "none",
            DropReason::Malformed => "malformed",
            DropReason::UnknownInterface => "unknown_interface",
            DropReason::SpoofedMac => "spoofed_mac",
            DropReason::SpoofedIp => "spoofed_ip",
            DropReason::CrossNetwork => "cross_network",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::LinkControl => "link_control",
            DropReason::RedirectFailed => "redirect_failed",
            DropReason::Unsolicited => "unsolicited",
            DropReason::Fragment => "fragment",
            DropReason::VlanTagged => "vlan_tagged",
            DropReason::MappedAddress => "mapped_address",
            DropReason::EndpointDown => "endpoint_down",
            DropReason::NoSocket => "no_socket",
        }
    }

    /// The reason with this number, if any.
    pub fn from_u8(value: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| *r as u8 == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_names_are_unique() {
        for r in DropReason::ALL {
            assert_eq!(DropReason::from_u8(r as u8), Some(r));
            assert_eq!(
                DropReason::ALL
                    .iter()
                    .filter(|o| o.name() == r.name())
                    .count(),
                1
            );
        }
        for v in Verdict::ALL {
            assert_eq!(Verdict::from_u8(v as u8), Some(v));
        }
        for p in Program::ALL {
            assert_eq!(Program::from_u8(p as u8), Some(p));
        }
        assert_eq!(DropReason::from_u8(200), None);
    }
}

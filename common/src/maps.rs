//! Map names, keys and values. A name carries a version suffix; bump it when a layout changes,
//! so a new agent never reads an old pinned map with the wrong layout.

use core::mem::size_of;

mod tunnel;
mod uplink;
pub use tunnel::*;
pub use uplink::*;

/// Container interfaces by the ifindex of their host-side veth: `u32 -> Iface`.
pub const MAP_IFACES: &str = "GRIDNET_IFACE_1";
/// Container endpoints by network and address: `EndpointKey -> Endpoint`.
pub const MAP_ENDPOINTS: &str = "GRIDNET_ENDPT_1";
/// Per-CPU packet and byte counters: `StatsKey -> Stats`.
pub const MAP_STATS: &str = "GRIDNET_STATS_1";
/// Network names by id, for tools that read the pins without an agent: `u32 -> NetworkName`.
pub const MAP_NETWORKS: &str = "GRIDNET_NETS_1";
/// Ports the uplink guard lets in, as a list: `PortKey -> u32` (the value is unused, 1). The
/// guard itself reads the same ports from [`MAP_UPLINK_PORT_BITS`]; this list is the agent's
/// record of them, and what an operator reads (`bpftool map dump`).
pub const MAP_UPLINK_PORTS: &str = "GRIDNET_PORTS_1";
/// The uplink guard's settings, one entry at index 0: `u32 -> UplinkConfig`.
pub const MAP_UPLINK_CONFIG: &str = "GRIDNET_UPCFG_1";
/// The uplink guard's per-CPU packet and byte counters, an array by outcome: `u32 -> Stats`,
/// the slot being [`crate::uplink::Guard::stats_slot`]. An array, not the keyed counters of
/// [`MAP_STATS`]: the guard has one program, no networks and a few outcomes, and an array slot
/// is found without hashing a key (the verifier even inlines the lookup on recent kernels).
pub const MAP_UPLINK_STATS: &str = "GRIDNET_UPCNT_1";

/// Every map of the datapath. The agent pins each under `<pin root>/maps/<name>` (BTF map
/// definitions carry no pinning of their own) and reuses the pinned map when there is one.
pub const ALL_MAPS: [&str; 10] = [
    MAP_IFACES,
    MAP_ENDPOINTS,
    MAP_STATS,
    MAP_NETWORKS,
    MAP_UPLINK_PORTS,
    uplink::MAP_UPLINK_PORT_BITS,
    MAP_UPLINK_CONFIG,
    MAP_UPLINK_STATS,
    MAP_ROUTES,
    MAP_TUNNELS,
];

/// Capacity of [`MAP_UPLINK_PORTS`]: WireGuard ports of every network plus gateway ports.
pub const MAX_UPLINK_PORTS: u32 = 8 * 1024;
/// Slots of [`MAP_UPLINK_STATS`]: one for every number a drop reason can have (a `u8`), so no
/// reason added later can miss its slot. 4 KiB per CPU.
pub const UPLINK_STATS_SLOTS: u32 = 256;

/// Capacity of [`MAP_IFACES`]: containers on one node.
pub const MAX_IFACES: u32 = 16 * 1024;
/// Capacity of [`MAP_ENDPOINTS`]: two addresses (IPv4 and IPv6) per container.
pub const MAX_ENDPOINTS: u32 = 2 * MAX_IFACES;
/// Capacity of [`MAP_NETWORKS`]: networks on one node.
pub const MAX_NETWORKS: u32 = 4 * 1024;
/// Capacity of [`MAP_STATS`]: a few verdicts and reasons per network.
pub const MAX_STATS: u32 = 16 * MAX_NETWORKS;

/// A container's identity, looked up by the ifindex of its host-side veth.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Iface {
    /// The network the container belongs to.
    pub network_id: u32,
    /// Its IPv4 address, network order.
    pub ipv4: [u8; 4],
    /// Its IPv6 address, network order.
    pub ipv6: [u8; 16],
    /// Its MAC address.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<Iface>() == 32);

/// A destination inside one network. IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`),
/// so one map serves both families.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    pub network_id: u32,
    pub addr: [u8; 16],
}
const _: () = assert!(size_of::<EndpointKey>() == 20);

impl EndpointKey {
    /// The key of an IPv4 address.
    pub const fn v4(network_id: u32, addr: [u8; 4]) -> Self {
        let [a, b, c, d] = addr;
        Self {
            network_id,
            addr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d],
        }
    }

    /// The key of an IPv6 address.
    pub const fn v6(network_id: u32, addr: [u8; 16]) -> Self {
        Self { network_id, addr }
    }
}

/// Where a local container is reached.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Ifindex of the container's host-side veth (its peer is the container's interface).
    pub ifindex: u32,
    /// The container's MAC address.
    pub mac: [u8; 6],
    /// `ENDPOINT_*` bits; 0 is a container that is up, so an entry from an agent that zeroes
    /// this byte as padding reads as up (same size and name: the pinned map is kept).
    pub flags: u8,
    pub _pad: u8,
}
const _: () = assert!(size_of::<Endpoint>() == 12);

/// [`Endpoint::flags`]: the container's interface is down. `bpf_redirect_peer` reports success
/// before the kernel finds the peer down, so a packet redirected there would be counted as
/// forwarded and silently lost; the datapath drops it as `endpoint_down` instead.
pub const ENDPOINT_DOWN: u8 = 1;

/// A counter's key: which program, what outcome, which network.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatsKey {
    /// A [`crate::verdict::Program`].
    pub program: u8,
    /// A [`crate::verdict::Verdict`].
    pub verdict: u8,
    /// A [`crate::verdict::DropReason`] (`None` unless the verdict is a drop).
    pub reason: u8,
    pub _pad: u8,
    /// The network the packet belonged to (0 when it could not be told).
    pub network_id: u32,
}
const _: () = assert!(size_of::<StatsKey>() == 8);

/// Packets and bytes, per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(size_of::<Stats>() == 16);

/// A network's name, for display.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkName {
    /// Length of the name in `bytes`.
    pub len: u8,
    /// UTF-8, truncated to 63 bytes.
    pub bytes: [u8; 63],
}
const _: () = assert!(size_of::<NetworkName>() == 64);

impl NetworkName {
    /// A name, truncated at a character boundary to fit.
    pub fn new(name: &str) -> Self {
        let mut end = name.len().min(63);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0u8; 63];
        bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
        Self {
            len: end as u8,
            bytes,
        }
    }

    /// The name as text (lossy if a foreign tool wrote invalid bytes).
    pub fn as_str(&self) -> &str {
        let len = usize::from(self.len).min(self.bytes.len());
        core::str::from_utf8(&self.bytes[..len]).unwrap_or("<invalid name>")
    }
}

/// An allowed inbound destination port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortKey {
    /// IP protocol number (6 TCP, 17 UDP).
    pub protocol: u8,
    pub _pad: u8,
    /// The port, network order.
    pub port: [u8; 2],
}
const _: () = assert!(size_of::<PortKey>() == 4);

impl PortKey {
    pub const fn new(protocol: u8, port: u16) -> Self {
        Self {
            protocol,
            _pad: 0,
            port: port.to_be_bytes(),
        }
    }
}

/// The uplink guard's settings.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UplinkConfig {
    /// First port of the node's ephemeral range (`net.ipv4.ip_local_port_range`): replies to
    /// connections the node opened arrive there.
    pub ephemeral_low: u16,
    /// Last port of that range.
    pub ephemeral_high: u16,
    /// 1 once the agent wrote the settings; until then the guard lets everything pass, so a
    /// half-configured node never locks itself out.
    pub enforcing: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<UplinkConfig>() == 8);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: as below.
    unsafe impl aya::Pod for super::PortKey {}
    unsafe impl aya::Pod for super::UplinkConfig {}
    // SAFETY: all of these are `repr(C)`, `Copy`, made only of integers and byte arrays, with
    // explicit padding (asserted sizes), so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::Iface {}
    unsafe impl aya::Pod for super::EndpointKey {}
    unsafe impl aya::Pod for super::Endpoint {}
    unsafe impl aya::Pod for super::StatsKey {}
    unsafe impl aya::Pod for super::Stats {}
    unsafe impl aya::Pod for super::NetworkName {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_keys_are_ipv4_mapped() {
        let key = EndpointKey::v4(7, [10, 1, 1, 2]);
        assert_eq!(key.network_id, 7);
        let mapped: std::net::Ipv6Addr = std::net::Ipv4Addr::new(10, 1, 1, 2).to_ipv6_mapped();
        assert_eq!(key.addr, mapped.octets());
    }

    #[test]
    fn network_names_truncate_on_char_boundaries() {
        assert_eq!(NetworkName::new("alice/web").as_str(), "alice/web");
        let long = "é".repeat(40); // 80 bytes
        let name = NetworkName::new(&long);
        assert_eq!(name.as_str(), "é".repeat(31));
    }
}

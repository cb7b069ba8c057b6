//! The maps of the encrypted overlay: routes to other nodes' subnets, and the networks of the
//! tunnel devices.

use core::mem::size_of;

use super::MAX_NETWORKS;

/// Routes to the subnets of a network's other member nodes, longest prefix first:
/// LPM trie `RouteKey (with a prefix length) -> Route`.
pub const MAP_ROUTES: &str = "GRIDNET_ROUTE_1";
/// The network of each tunnel device, by its ifindex: `u32 -> u32`.
pub const MAP_TUNNELS: &str = "GRIDNET_TUNL_1";

/// Capacity of [`MAP_ROUTES`]: two prefixes (IPv4, IPv6) per peer node per network, and room
/// for access peers' prefixes.
pub const MAX_ROUTES: u32 = 64 * 1024;
/// Capacity of [`MAP_TUNNELS`]: one tunnel per network.
pub const MAX_TUNNELS: u32 = MAX_NETWORKS;

/// The bits a route lookup matches: the network id, then the address (IPv4 mapped into IPv6,
/// so both families share one trie; IPv6 packets to mapped addresses never get here).
pub const ROUTE_KEY_BITS: u32 = (size_of::<RouteKey>() * 8) as u32;
/// Bits of [`ROUTE_KEY_BITS`] before an IPv4 address starts.
pub const ROUTE_V4_OFFSET_BITS: u32 = 32 + 96;
/// Bits of [`ROUTE_KEY_BITS`] before an IPv6 address starts.
pub const ROUTE_V6_OFFSET_BITS: u32 = 32;

/// The data of a route key: the network id in network order (the trie matches bytes from the
/// first, so the id must come first and big-endian) and the address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    pub network_id: [u8; 4],
    pub addr: [u8; 16],
}
const _: () = assert!(size_of::<RouteKey>() == 20);

impl RouteKey {
    pub const fn v4(network_id: u32, addr: [u8; 4]) -> Self {
        let [a, b, c, d] = addr;
        Self {
            network_id: network_id.to_be_bytes(),
            addr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d],
        }
    }

    pub const fn v6(network_id: u32, addr: [u8; 16]) -> Self {
        Self {
            network_id: network_id.to_be_bytes(),
            addr,
        }
    }

    pub const fn network_id(&self) -> u32 {
        u32::from_be_bytes(self.network_id)
    }
}

/// Where a route leads: the network's tunnel device.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub ifindex: u32,
}
const _: () = assert!(size_of::<Route>() == 4);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain old data: `repr(C)`, byte arrays and integers, no padding (sizes asserted).
    unsafe impl aya::Pod for super::RouteKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Route {}
}

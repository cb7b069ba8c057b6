//! Names of the kernel objects that realize a container. Deterministic, so a restarted agent
//! finds what an earlier one made.

/// The MTU of a container link's host side: the largest a veth takes, so a frame of any size the
/// container sends reaches `tc_from_container`, which hands it on or has it answered (a packet
/// too big for the tunnel gets ICMP, never silence). The container's side has the node's MTU.
pub const HOST_SIDE_MTU: u32 = 65_535;

/// The interface name of a container inside its namespace.
pub const CONTAINER_IFNAME: &str = "eth0";

/// Prefix of the host-side veths gridnet makes ("gn" + 8 hex digits fits IFNAMSIZ).
pub const HOST_IFNAME_PREFIX: &str = "gn";

/// The prefix of the container namespaces an agent owns unless configured otherwise.
pub const DEFAULT_NETNS_PREFIX: &str = "gn-";

/// Whether `name` has the shape of a host-side veth name gridnet makes.
pub fn is_host_ifname(name: &str) -> bool {
    name.strip_prefix(HOST_IFNAME_PREFIX)
        .is_some_and(|hash| hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Prefix of the tunnel devices gridnet makes.
pub const TUNNEL_IFNAME_PREFIX: &str = "gnt";

/// The tunnel device of the network with datapath id `network_id`: node-local ids keep it
/// short and unique (network names are longer than an interface name can be).
pub fn tunnel_ifname(network_id: u32) -> String {
    format!("{TUNNEL_IFNAME_PREFIX}{network_id}")
}

/// Whether `name` has the shape of a tunnel device name gridnet makes.
pub fn is_tunnel_ifname(name: &str) -> bool {
    name.strip_prefix(TUNNEL_IFNAME_PREFIX)
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// The name of a container's network namespace.
pub fn netns_name(prefix: &str, container: &str) -> String {
    format!("{prefix}{container}")
}

/// The host-side veth of a container: a hash of its name, because interface names are limited
/// to 15 bytes.
pub fn host_ifname(container: &str) -> String {
    // FNV-1a, 32 bits: stable across releases, unlike std's hasher.
    let hash = container.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{HOST_IFNAME_PREFIX}{hash:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ifnames_fit_and_are_stable() {
        let name = host_ifname("a-very-long-container-name-that-goes-on");
        assert!(name.len() <= 15);
        assert_eq!(name, host_ifname("a-very-long-container-name-that-goes-on"));
        assert_ne!(host_ifname("a1"), host_ifname("a2"));
        assert_eq!(netns_name("gn-", "web"), "gn-web");
        assert!(is_host_ifname(&name));
        assert!(!is_host_ifname("gnome0") && !is_host_ifname("eth0"));
    }
}

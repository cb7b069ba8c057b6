//! Address rules shared by the kinds: which addresses a node or container may take.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv6Net};

use super::rules::Rejection;

/// The IPv6 address of a container without one: its member subnet plus its IPv4 host number.
pub fn derive_ipv6(subnet_v6: &Ipv6Net, ipv4: Ipv4Addr) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(subnet_v6.network()) | u128::from(ipv4.octets()[3]))
}

/// Whether an address may be a node's underlay or public address.
pub fn usable(address: IpAddr) -> bool {
    !(address.is_unspecified() || address.is_loopback() || address.is_multicast())
}

/// An address a container may take in `subnet`: inside it, and not its network, gateway (first
/// host) or (IPv4) broadcast address.
pub fn check_host(field: &'static str, address: IpAddr, subnet: &IpNet) -> Result<(), Rejection> {
    if !subnet.contains(&address) {
        return Err(Rejection::OutsideSubnet {
            field,
            address,
            subnet: subnet.to_string(),
        });
    }
    let offset = match (address, subnet) {
        (IpAddr::V4(a), IpNet::V4(n)) => u128::from(u32::from(a) - u32::from(n.network())),
        (IpAddr::V6(a), IpNet::V6(n)) => u128::from(a) - u128::from(n.network()),
        _ => 0,
    };
    let broadcast = matches!(subnet, IpNet::V4(n) if IpAddr::V4(n.broadcast()) == address);
    if offset <= 1 || broadcast {
        return Err(Rejection::ReservedAddress {
            field,
            address,
            subnet: subnet.to_string(),
        });
    }
    Ok(())
}

/// Whether two prefixes share an address (one contains the other's first address).
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

//! Address rules shared by the kinds: which addresses a node or container may take.
//!
//! An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) reaches the IPv4 address a.b.c.d through
//! every dual-stack socket, so the rules judge it, and the state keeps it, in its IPv4 form:
//! [`canonical`] and [`canonical_net`] come before every address rule.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::rules::Rejection;

/// The IPv6 address of a container without one: its member subnet plus its IPv4 host number.
pub fn derive_ipv6(subnet_v6: &Ipv6Net, ipv4: Ipv4Addr) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(subnet_v6.network()) | u128::from(ipv4.octets()[3]))
}

/// `address`, with an IPv4-mapped IPv6 address as the IPv4 address it reaches.
pub fn canonical(address: IpAddr) -> IpAddr {
    address.to_canonical()
}

/// `socket` with its address in [`canonical`] form.
pub fn canonical_socket(socket: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical(socket.ip()), socket.port())
}

/// `prefix`, as an IPv4 prefix when it lies within the IPv4-mapped range `::ffff:0:0/96`.
pub fn canonical_net(prefix: IpNet) -> IpNet {
    match prefix {
        IpNet::V6(net) if net.prefix_len() >= 96 => net
            .network()
            .to_ipv4_mapped()
            .and_then(|v4| Ipv4Net::new(v4, net.prefix_len() - 96).ok())
            .map_or(prefix, IpNet::V4),
        other => other,
    }
}

/// Whether an address may be a node's underlay or public address (judged in its
/// [`canonical`] form by the caller).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_and_prefixes_become_ipv4() {
        let v4 = |a: &str| a.parse::<IpAddr>().expect("addr");
        assert_eq!(canonical(v4("::ffff:127.0.0.1")), v4("127.0.0.1"));
        assert_eq!(canonical(v4("::1")), v4("::1"));
        assert!(!usable(canonical(v4("::ffff:127.0.0.1"))));
        let net = |n: &str| n.parse::<IpNet>().expect("net");
        assert_eq!(
            canonical_net(net("::ffff:10.1.1.0/120")),
            net("10.1.1.0/24")
        );
        assert_eq!(canonical_net(net("::ffff:0:0/96")), net("0.0.0.0/0"));
        assert_eq!(canonical_net(net("::/0")), net("::/0"));
        assert_eq!(canonical_net(net("fd00::/120")), net("fd00::/120"));
    }
}

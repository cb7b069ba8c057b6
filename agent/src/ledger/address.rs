//! Address rules shared by the kinds: which addresses a node or container may take.
//!
//! An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) reaches the IPv4 address a.b.c.d through
//! every dual-stack socket, so the rules judge it, and the state keeps it, in its IPv4 form:
//! [`canonical`] and [`canonical_net`] come before every address rule.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{model::Member, rules::Rejection};

/// The IPv4 host number of a node's gateway endpoint in its member subnet: the last usable
/// address of the /24, far from where containers are usually numbered (from .2 upwards), and
/// the same on every node so an operator recognises it.
pub const GATEWAY_ENDPOINT_HOST: u8 = 254;

/// The IPv6 address of a container without one: its member subnet plus its IPv4 host number.
pub fn derive_ipv6(subnet_v6: &Ipv6Net, ipv4: Ipv4Addr) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(subnet_v6.network()) | u128::from(ipv4.octets()[3]))
}

/// The overlay addresses of the gateway endpoint of a network on the node of `member`: the
/// [`GATEWAY_ENDPOINT_HOST`] of its IPv4 subnet, and the IPv6 address a container with that
/// IPv4 address would derive (`::fe`). Every gateway of the network on that node shares it, and
/// no container may take it.
pub fn gateway_endpoint(member: &Member) -> (Ipv4Addr, Ipv6Addr) {
    let [a, b, c, _] = member.subnet.network().octets();
    let ipv4 = Ipv4Addr::new(a, b, c, GATEWAY_ENDPOINT_HOST);
    (ipv4, derive_ipv6(&member.subnet_v6, ipv4))
}

/// Refuses `address` when it is the gateway endpoint's address in `member`'s subnets.
pub fn check_not_endpoint(
    field: &'static str,
    address: IpAddr,
    member: &Member,
) -> Result<(), Rejection> {
    let (v4, v6) = gateway_endpoint(member);
    let subnet = match address {
        IpAddr::V4(a) if a == v4 => member.subnet.to_string(),
        IpAddr::V6(a) if a == v6 => member.subnet_v6.to_string(),
        _ => return Ok(()),
    };
    Err(Rejection::GatewayEndpointAddress {
        field,
        address,
        subnet,
    })
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
    fn the_gateway_endpoint_is_the_last_host_of_each_subnet() {
        let member = Member {
            node_id: 1,
            subnet: "10.1.7.0/24".parse().expect("net"),
            subnet_v6: "fd00:1:0:7::/64".parse().expect("net"),
            wireguard_listen_port: 51820,
        };
        let (v4, v6) = gateway_endpoint(&member);
        assert_eq!(v4, Ipv4Addr::new(10, 1, 7, 254));
        assert_eq!(v6, "fd00:1:0:7::fe".parse::<Ipv6Addr>().expect("addr"));
        assert!(check_host("ipv4", v4.into(), &IpNet::V4(member.subnet)).is_ok());
        assert!(check_not_endpoint("ipv4", v4.into(), &member).is_err());
        assert!(check_not_endpoint("ipv6", v6.into(), &member).is_err());
        assert!(check_not_endpoint("ipv4", Ipv4Addr::new(10, 1, 7, 253).into(), &member).is_ok());
    }

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

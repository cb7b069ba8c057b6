//! The desired state of one node: what the agent must realize.
//!
//! A [`NodePlan`] is pure data. It is computed from the ledger (see [`crate::ledger`]) or written
//! by hand for tests, and handed to [`crate::reconcile`], which makes the kernel match it. Nothing
//! here performs I/O.

pub mod access;
pub mod from_ledger;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

pub use crate::vocab::{GatewayMode, WgKey};

/// Everything one node hosts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    /// The networks this node is a member of.
    pub networks: Vec<NetworkPlan>,
    /// The containers running on this node, each attached to one of `networks`.
    pub containers: Vec<ContainerPlan>,
    /// The web gateways this node serves.
    pub gateways: Vec<GatewayPlan>,
}

/// One private network as seen from this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPlan {
    /// The network's name, unique on the grid (`<owner twin>/<name>` once it comes from the ledger).
    pub name: String,
    /// The network's whole IPv4 range (e.g. a /16). Other networks may use the same range.
    pub ip_range: Ipv4Net,
    /// The network's IPv6 ULA prefix (e.g. a /48).
    pub ipv6_range: Ipv6Net,
    /// This node's IPv4 subnet inside `ip_range` (a /24); its first host address is the gateway.
    pub subnet: Ipv4Net,
    /// This node's IPv6 subnet inside `ipv6_range` (a /64); `::1` in it is the gateway.
    pub subnet_v6: Ipv6Net,
    /// The UDP port this node's WireGuard endpoint of the network listens on.
    pub wireguard_listen_port: u16,
    /// The other member nodes of the network.
    pub peers: Vec<PeerPlan>,
    /// External WireGuard peers (laptops, site bridges) that connect through this node.
    pub access: Vec<AccessPlan>,
}

/// Another member node of a network: a WireGuard peer of this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerPlan {
    /// The peer node's id on the ledger.
    pub node_id: u32,
    /// The peer node's WireGuard (x25519) public key.
    pub wireguard_public_key: WgKey,
    /// The peer's underlay endpoints (several when it is multi-homed), with its listen port.
    pub endpoints: Vec<SocketAddr>,
    /// The peer's IPv4 subnet in this network.
    pub subnet: Ipv4Net,
    /// The peer's IPv6 subnet in this network.
    pub subnet_v6: Ipv6Net,
    /// The allowed IPs of the network's access peers that connect through that node: reached
    /// through it, and the addresses it may forward from.
    #[serde(default)]
    pub access: Vec<IpNet>,
}

/// An external WireGuard peer of a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessPlan {
    /// The access peer's name on the ledger.
    pub name: String,
    /// Its WireGuard public key.
    pub wireguard_public_key: WgKey,
    /// The addresses it may use inside the network (one for a laptop, site prefixes for a bridge).
    pub allowed_ips: Vec<IpNet>,
}

/// A web gateway served by this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayPlan {
    /// The gateway's name on the ledger.
    pub name: String,
    /// The network whose members it proxies to.
    pub network: String,
    /// The public host names it answers for (HTTP `Host`, TLS SNI).
    pub hostnames: Vec<String>,
    /// Overlay addresses of the backends.
    pub backends: Vec<SocketAddr>,
    /// Plain HTTP routed by `Host`, or TLS passed through by SNI.
    pub mode: GatewayMode,
    /// The node's public addresses the gateway listens on.
    pub public_ips: Vec<IpAddr>,
    /// The gateway's own endpoint in the network: the name of a container in
    /// [`NodePlan::containers`] whose namespace the connections to backends are opened from.
    pub endpoint: String,
    /// Whether backends get a PROXY protocol v2 header carrying the client's address (TLS
    /// passthrough, where the address is otherwise lost).
    pub proxy_protocol: bool,
}

impl NetworkPlan {
    /// A network as one node sees it before it has peers, access peers or a WireGuard port.
    pub fn local(
        name: &str,
        ip_range: Ipv4Net,
        ipv6_range: Ipv6Net,
        subnet: Ipv4Net,
        subnet_v6: Ipv6Net,
    ) -> Self {
        Self {
            name: name.to_owned(),
            ip_range,
            ipv6_range,
            subnet,
            subnet_v6,
            wireguard_listen_port: 0,
            peers: Vec::new(),
            access: Vec::new(),
        }
    }

    /// The address containers use as their IPv4 default gateway on this node.
    pub fn gateway_v4(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.network()) + 1)
    }

    /// The address containers use as their IPv6 default gateway on this node.
    pub fn gateway_v6(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.subnet_v6.network()) + 1)
    }
}

/// One container's attachment to a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerPlan {
    /// The container's name, unique on this node.
    pub name: String,
    /// The name of the [`NetworkPlan`] it is attached to.
    pub network: String,
    /// Its IPv4 address, inside the network's `subnet`.
    pub ipv4: Ipv4Addr,
    /// Its IPv6 address, inside the network's `subnet_v6`.
    pub ipv6: Ipv6Addr,
    /// Its MAC address (locally administered, unicast).
    pub mac: Mac,
}

impl ContainerPlan {
    /// A container whose MAC is derived from its network and IPv4 address.
    pub fn new(name: &str, network: &str, ipv4: Ipv4Addr, ipv6: Ipv6Addr) -> Self {
        Self {
            name: name.to_owned(),
            network: network.to_owned(),
            ipv4,
            ipv6,
            mac: Mac::derive(network, ipv4),
        }
    }
}

/// An Ethernet address, written `02:00:00:00:00:01` in files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The MAC of the container with address `ipv4` in `network`: `02`, a byte of the
    /// network's name, then the four address bytes. A container is known on the datapath by
    /// (network, address), and an address is taken once per network, so two containers of a
    /// network never share a MAC. Containers of different networks may (their links never
    /// meet); the network byte only makes that rarer to the eye.
    pub fn derive(network: &str, ipv4: Ipv4Addr) -> Self {
        // FNV-1a: stable across releases and platforms, unlike std's hasher.
        let mut hash: u32 = 0x811c_9dc5;
        for byte in network.bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        let [a, b, c, d] = ipv4.octets();
        // 0x02: locally administered, unicast.
        Self([0x02, hash.to_be_bytes()[3], a, b, c, d])
    }
}

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// The reason a text is not a MAC address.
#[derive(Debug, thiserror::Error)]
#[error("`{text}` is not a MAC address (expected six hex bytes like 02:00:00:00:00:01)")]
pub struct ParseMacError {
    text: String,
}

impl std::str::FromStr for Mac {
    type Err = ParseMacError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError {
            text: text.to_owned(),
        };
        let mut mac = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut mac {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Self(mac))
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trips_and_rejects_garbage() {
        let mac: Mac = "02:0a:ff:00:10:01".parse().expect("valid");
        assert_eq!(mac.0, [0x02, 0x0a, 0xff, 0x00, 0x10, 0x01]);
        assert_eq!(mac.to_string(), "02:0a:ff:00:10:01");
        for bad in [
            "",
            "02:0a:ff:00:10",
            "02:0a:ff:00:10:01:02",
            "2:0a:ff:00:10:01",
            "zz:0a:ff:00:10:01",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }

    #[test]
    fn derived_macs_are_local_unicast_and_stable() {
        let ip = Ipv4Addr::new(10, 1, 1, 2);
        let a = Mac::derive("alice/net", ip);
        assert_eq!(a, Mac::derive("alice/net", ip));
        assert_eq!(a.0[2..], [10, 1, 1, 2]);
        assert_ne!(a, Mac::derive("alice/net", Ipv4Addr::new(10, 1, 1, 3)));
        assert_eq!(a.0[0] & 0b11, 0b10);
    }

    proptest::proptest! {
        /// Distinct addresses in one network give distinct MACs, all local unicast.
        #[test]
        fn distinct_addresses_give_distinct_macs(
            network in "[a-z]{1,8}/[a-z0-9-]{1,24}",
            a in proptest::prelude::any::<u32>(),
            b in proptest::prelude::any::<u32>(),
        ) {
            let (a, b) = (Ipv4Addr::from(a), Ipv4Addr::from(b));
            let (mac_a, mac_b) = (Mac::derive(&network, a), Mac::derive(&network, b));
            proptest::prop_assert_eq!(a == b, mac_a == mac_b);
            proptest::prop_assert_eq!(mac_a.0[0] & 0b11, 0b10);
        }
    }

    #[test]
    fn gateways_are_first_hosts() {
        let net = NetworkPlan {
            name: "n".into(),
            ip_range: "10.1.0.0/16".parse().expect("net"),
            ipv6_range: "fd00:1::/48".parse().expect("net"),
            subnet: "10.1.3.0/24".parse().expect("net"),
            subnet_v6: "fd00:1:0:3::/64".parse().expect("net"),
            wireguard_listen_port: 0,
            peers: Vec::new(),
            access: Vec::new(),
        };
        assert_eq!(net.gateway_v4(), Ipv4Addr::new(10, 1, 3, 1));
        assert_eq!(
            net.gateway_v6(),
            "fd00:1:0:3::1".parse::<Ipv6Addr>().expect("addr")
        );
    }
}

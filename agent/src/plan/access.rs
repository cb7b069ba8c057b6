//! What an access peer's own machine needs to join its network: a wg-quick configuration, from
//! the grid state. Pure; `gridnet access-config` prints it.

use std::{
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
};

use ipnet::IpNet;
use serde::Serialize;

use crate::{ledger::GridState, vocab::WgKey};

/// How often the client sends a keepalive: it is usually behind NAT, and the node can only
/// answer it while the NAT's mapping lives (`wg`'s usual 25 s keeps common NATs open).
pub const CLIENT_KEEPALIVE_SECS: u16 = 25;

/// What stands in the `PrivateKey` line when the client's key was not given: wg-quick refuses
/// it, so a configuration without a key cannot come up by mistake.
pub const PRIVATE_KEY_PLACEHOLDER: &str = "<your private key: the file `wg genkey` wrote>";

/// An access peer's client configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClientConfig {
    /// The network, `<owner>/<name>`.
    pub network: String,
    /// The access peer, `<owner>/<name>`.
    pub peer: String,
    /// The client's own public key, as registered.
    pub public_key: WgKey,
    /// The addresses the client's interface gets: each host allowed IP itself; for a site
    /// prefix, its first host address, which the site's router uses on the tunnel.
    pub addresses: Vec<IpNet>,
    /// The prefixes the network routes to the client.
    pub allowed_ips: Vec<IpNet>,
    /// The member node the client connects through.
    pub node: NodeSide,
}

/// The node's side of an access peer's tunnel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeSide {
    pub node_id: u32,
    pub public_key: WgKey,
    /// The node's endpoints with the network's port on that node, in the node's order of
    /// preference (wg-quick takes one; the others are listed as comments).
    pub endpoints: Vec<SocketAddr>,
    /// What the client routes into the tunnel: the whole network, both families.
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: u16,
}

/// Why no configuration could be made.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessConfigError {
    #[error("no network `{network}` on the ledger")]
    UnknownNetwork { network: String },
    #[error("network `{network}` has no access peer `{peer}` (it has: {known})")]
    UnknownPeer {
        network: String,
        peer: String,
        known: String,
    },
    #[error("access peer `{peer}` connects through node {node_id}, which is not on the ledger")]
    UnknownNode { peer: String, node_id: u32 },
    #[error(
        "access peer `{peer}` connects through node {node_id}, which is not a member of `{network}`"
    )]
    NotAMember {
        peer: String,
        node_id: u32,
        network: String,
    },
}

/// The configuration of access peer `peer` (`name` or `<owner>/<name>`) of `network`.
pub fn client_config(
    state: &GridState,
    network: &str,
    peer: &str,
) -> Result<ClientConfig, AccessConfigError> {
    let net = state
        .networks
        .get(network)
        .ok_or_else(|| AccessConfigError::UnknownNetwork {
            network: network.into(),
        })?;
    let key = if peer.contains('/') {
        peer.to_owned()
    } else {
        format!("{}/{peer}", net.owner)
    };
    let access = state
        .access
        .get(&key)
        .filter(|a| a.network == network)
        .ok_or_else(|| {
            let known: Vec<&str> = state
                .access
                .iter()
                .filter(|(_, a)| a.network == network)
                .map(|(name, _)| name.as_str())
                .collect();
            AccessConfigError::UnknownPeer {
                network: network.into(),
                peer: peer.into(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            }
        })?;
    let node = state
        .nodes
        .get(&access.node_id)
        .ok_or(AccessConfigError::UnknownNode {
            peer: key.clone(),
            node_id: access.node_id,
        })?;
    let member = net
        .members
        .iter()
        .find(|m| m.node_id == access.node_id)
        .ok_or_else(|| AccessConfigError::NotAMember {
            peer: key.clone(),
            node_id: access.node_id,
            network: network.into(),
        })?;
    Ok(ClientConfig {
        network: network.into(),
        peer: key,
        public_key: access.wireguard_public_key,
        addresses: access
            .allowed_ips
            .iter()
            .map(|p| interface_address(*p))
            .collect(),
        allowed_ips: access.allowed_ips.clone(),
        node: NodeSide {
            node_id: access.node_id,
            public_key: node.wireguard_public_key,
            endpoints: node
                .endpoints
                .iter()
                .map(|ip| SocketAddr::new(*ip, member.wireguard_listen_port))
                .collect(),
            allowed_ips: vec![IpNet::V4(net.ip_range), IpNet::V6(net.ipv6_range)],
            persistent_keepalive: CLIENT_KEEPALIVE_SECS,
        },
    })
}

/// The interface address for an allowed prefix: a host prefix is the address; a site prefix
/// gives its first host address as a host route, so the tunnel does not claim the site's LAN.
fn interface_address(prefix: IpNet) -> IpNet {
    if prefix.prefix_len() == prefix.max_prefix_len() {
        return prefix;
    }
    let first: IpAddr = match prefix.trunc() {
        IpNet::V4(n) => (u32::from(n.network()) + 1).to_be_bytes().into(),
        IpNet::V6(n) => (u128::from(n.network()) + 1).to_be_bytes().into(),
    };
    IpNet::from(first)
}

impl ClientConfig {
    /// The wg-quick file. `private_key` is the client's own key (base64); without it the line
    /// holds [`PRIVATE_KEY_PLACEHOLDER`].
    pub fn wg_quick(&self, private_key: Option<&str>) -> String {
        let list = |nets: &[IpNet]| {
            nets.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut text = String::new();
        let _ = writeln!(text, "# {} in network {}", self.peer, self.network);
        let _ = writeln!(text, "[Interface]");
        let _ = writeln!(
            text,
            "PrivateKey = {}",
            private_key.unwrap_or(PRIVATE_KEY_PLACEHOLDER)
        );
        let _ = writeln!(text, "Address = {}", list(&self.addresses));
        let _ = writeln!(text);
        let _ = writeln!(text, "[Peer]");
        let _ = writeln!(text, "# node {}", self.node.node_id);
        let _ = writeln!(text, "PublicKey = {}", self.node.public_key);
        let mut endpoints = self.node.endpoints.iter();
        if let Some(first) = endpoints.next() {
            let _ = writeln!(text, "Endpoint = {first}");
        }
        for other in endpoints {
            let _ = writeln!(text, "# also reachable at {other}");
        }
        let _ = writeln!(text, "AllowedIPs = {}", list(&self.node.allowed_ips));
        let _ = writeln!(
            text,
            "PersistentKeepalive = {}",
            self.node.persistent_keepalive
        );
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{
        Body,
        fixture::{Grid, node},
    };

    #[test]
    fn a_laptop_gets_its_address_the_node_and_the_whole_network() {
        let grid = Grid::new();
        let config = client_config(grid.chain.state(), "alice/web", "laptop").expect("config");
        assert_eq!(
            config,
            client_config(grid.chain.state(), "alice/web", "alice/laptop").expect("config")
        );
        let text = config.wg_quick(Some("cHJpdmF0ZQ=="));
        let node_key = grid.chain.state().nodes[&2].wireguard_public_key;
        let want = format!(
            "# alice/laptop in network alice/web\n\
             [Interface]\n\
             PrivateKey = cHJpdmF0ZQ==\n\
             Address = 10.1.200.5/32\n\
             \n\
             [Peer]\n\
             # node 2\n\
             PublicKey = {node_key}\n\
             Endpoint = 192.0.2.2:51820\n\
             AllowedIPs = 10.1.0.0/16, fd00:1::/48\n\
             PersistentKeepalive = 25\n"
        );
        assert_eq!(text, want);
        assert!(config.wg_quick(None).contains(PRIVATE_KEY_PLACEHOLDER));
    }

    #[test]
    fn a_site_router_takes_the_first_address_of_its_prefix_and_all_endpoints_are_shown() {
        let mut grid = Grid::new();
        let mut multi = node(2, "carol", None);
        if let Body::Node { endpoints, .. } = &mut multi {
            endpoints.push("2001:db8::2".parse().expect("addr"));
        }
        grid.push_ok("carol", multi);
        grid.push_ok(
            "alice",
            Body::Access {
                name: "office".into(),
                network: "web".into(),
                node_id: 2,
                wireguard_public_key: WgKey([31; 32]),
                allowed_ips: vec![
                    "192.168.50.0/24".parse().expect("net"),
                    "fd50::/64".parse().expect("net"),
                ],
            },
        );
        let config = client_config(grid.chain.state(), "alice/web", "office").expect("config");
        let text = config.wg_quick(None);
        assert!(
            text.contains("Address = 192.168.50.1/32, fd50::1/128\n"),
            "{text}"
        );
        assert!(
            text.contains("Endpoint = 192.0.2.2:51820\n# also reachable at [2001:db8::2]:51820\n"),
            "{text}"
        );
    }

    #[test]
    fn unknown_networks_and_peers_are_named() {
        let grid = Grid::new();
        let state = grid.chain.state();
        assert_eq!(
            client_config(state, "alice/nope", "laptop"),
            Err(AccessConfigError::UnknownNetwork {
                network: "alice/nope".into()
            })
        );
        let err = client_config(state, "alice/web", "phone").expect_err("no phone");
        assert_eq!(
            err.to_string(),
            "network `alice/web` has no access peer `phone` (it has: alice/laptop)"
        );
        let err = client_config(state, "bob/db", "alice/laptop").expect_err("other network");
        assert!(err.to_string().contains("(it has: none)"), "{err}");
    }
}

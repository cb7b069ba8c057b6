//! One node's desired state, from the grid state. Pure.

use std::{collections::BTreeSet, net::SocketAddr};

use super::{AccessPlan, ContainerPlan, GatewayPlan, Mac, NetworkPlan, NodePlan, PeerPlan};
use crate::ledger::{GridState, address::gateway_endpoint};

/// The container name a node uses for `<owner>/<name>`: unique on the node, and a valid
/// namespace name (ledger names cannot contain `.`).
pub fn container_name(key: &str) -> String {
    key.replacen('/', ".", 1)
}

/// Starts the name of every gateway endpoint. `_` is in no ledger name, so no container name
/// `<owner>.<name>` can equal an endpoint's name; kept short so the longest endpoint name (a
/// longest twin's longest network) is still a valid container name.
pub const GATEWAY_ENDPOINT_PREFIX: &str = "gw_";

/// The container name of the gateway endpoint of network `<owner>/<name>` on a node,
/// `gw_<owner>.<name>`: one per network and node, shared by the network's gateways there.
pub fn gateway_endpoint_name(network: &str) -> String {
    format!("{GATEWAY_ENDPOINT_PREFIX}{}", container_name(network))
}

/// What node `node_id` must host according to `state`.
pub fn plan_node(state: &GridState, node_id: u32) -> NodePlan {
    let mut plan = NodePlan::default();
    for (key, network) in &state.networks {
        let Some(me) = network.members.iter().find(|m| m.node_id == node_id) else {
            continue;
        };
        let peers = network
            .members
            .iter()
            .filter(|m| m.node_id != node_id)
            .filter_map(|m| {
                let node = state.nodes.get(&m.node_id)?;
                Some(PeerPlan {
                    node_id: m.node_id,
                    wireguard_public_key: node.wireguard_public_key,
                    endpoints: node
                        .endpoints
                        .iter()
                        .map(|ip| SocketAddr::new(*ip, m.wireguard_listen_port))
                        .collect(),
                    subnet: m.subnet,
                    subnet_v6: m.subnet_v6,
                    access: state
                        .access
                        .values()
                        .filter(|a| a.network == *key && a.node_id == m.node_id)
                        .flat_map(|a| a.allowed_ips.iter().copied())
                        .collect(),
                })
            })
            .collect();
        let access = state
            .access
            .iter()
            .filter(|(_, a)| a.network == *key && a.node_id == node_id)
            .map(|(name, a)| AccessPlan {
                name: name.clone(),
                wireguard_public_key: a.wireguard_public_key,
                allowed_ips: a.allowed_ips.clone(),
            })
            .collect();
        plan.networks.push(NetworkPlan {
            wireguard_listen_port: me.wireguard_listen_port,
            peers,
            access,
            ..NetworkPlan::local(
                key,
                network.ip_range,
                network.ipv6_range,
                me.subnet,
                me.subnet_v6,
            )
        });
    }
    for (key, container) in state
        .containers
        .iter()
        .filter(|(_, c)| c.node_id == node_id)
    {
        let name = container_name(key);
        plan.containers.push(ContainerPlan {
            mac: Mac::derive(&container.network, container.ipv4),
            name,
            network: container.network.clone(),
            ipv4: container.ipv4,
            ipv6: container.ipv6,
        });
    }
    plan_gateways(state, node_id, &mut plan);
    plan
}

/// The gateways on node `node_id`, and one endpoint container for each network they serve.
fn plan_gateways(state: &GridState, node_id: u32, plan: &mut NodePlan) {
    let Some(node) = state.nodes.get(&node_id) else {
        return;
    };
    let mut endpoints = BTreeSet::new();
    for (key, gateway) in state.gateways.iter().filter(|(_, g)| g.node_id == node_id) {
        // The ledger keeps a gateway's node a member of its network; a plan never names an
        // endpoint it does not hold.
        let Some(member) = state
            .networks
            .get(&gateway.network)
            .and_then(|n| n.members.iter().find(|m| m.node_id == node_id))
        else {
            continue;
        };
        let endpoint = gateway_endpoint_name(&gateway.network);
        if endpoints.insert(endpoint.clone()) {
            let (ipv4, ipv6) = gateway_endpoint(member);
            plan.containers
                .push(ContainerPlan::new(&endpoint, &gateway.network, ipv4, ipv6));
        }
        plan.gateways.push(GatewayPlan {
            name: key.clone(),
            network: gateway.network.clone(),
            hostnames: gateway.hostnames.clone(),
            backends: gateway.backends.clone(),
            mode: gateway.mode,
            public_ips: node.public_ips().collect(),
            endpoint,
            proxy_protocol: gateway.proxy_protocol,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use super::{gateway_endpoint_name, plan_node};
    use crate::{
        ledger::{
            Body,
            fixture::{Grid, container, node},
            limits::{MAX_OBJECT_NAME, MAX_TWIN_NAME},
        },
        plan::{ContainerPlan, GatewayMode},
        reconcile::{MAX_CONTAINER_NAME, validate},
    };

    fn gateway(name: &str, network: &str, hostname: &str, mode: GatewayMode) -> Body {
        Body::Gateway {
            name: name.into(),
            network: network.into(),
            node_id: 1,
            hostnames: vec![hostname.into()],
            backends: vec!["10.1.1.2:443".parse().expect("addr")],
            mode,
            proxy_protocol: mode == GatewayMode::TlsPassthrough,
        }
    }

    /// Node 1 hosts alice/web's gateways `www` (fixture) and `tls`, and bob/db's `shop`: one
    /// endpoint per network, at the last host of the node's subnets, named by the gateways.
    #[test]
    fn each_network_with_gateways_gets_one_endpoint_on_the_node() {
        let mut grid = Grid::new();
        grid.push_ok(
            "alice",
            gateway("tls", "web", "www.example.org", GatewayMode::TlsPassthrough),
        );
        grid.push_ok(
            "bob",
            gateway("shop", "db", "shop.example.org", GatewayMode::Http),
        );
        let plan = plan_node(grid.chain.state(), 1);
        let endpoints: Vec<&ContainerPlan> = plan
            .containers
            .iter()
            .filter(|c| c.name.starts_with("gw_"))
            .collect();
        assert_eq!(
            endpoints
                .iter()
                .map(|c| (
                    c.name.as_str(),
                    c.network.as_str(),
                    c.ipv4.to_string(),
                    c.ipv6.to_string()
                ))
                .collect::<Vec<_>>(),
            [
                (
                    "gw_alice.web",
                    "alice/web",
                    "10.1.1.254".into(),
                    "fd00:1:0:1::fe".into()
                ),
                (
                    "gw_bob.db",
                    "bob/db",
                    "10.1.1.254".into(),
                    "fd00:1:0:1::fe".into()
                ),
            ]
        );
        let by_name = |name: &str| {
            plan.gateways
                .iter()
                .find(|g| g.name == name)
                .expect("planned")
        };
        assert_eq!(by_name("alice/www").endpoint, "gw_alice.web");
        assert_eq!(by_name("alice/tls").endpoint, "gw_alice.web");
        assert_eq!(by_name("bob/shop").endpoint, "gw_bob.db");
        assert!(by_name("alice/tls").proxy_protocol);
        assert!(!by_name("alice/www").proxy_protocol);
        for gateway in &plan.gateways {
            assert!(
                plan.containers
                    .iter()
                    .any(|c| c.name == gateway.endpoint && c.network == gateway.network),
                "{} names no endpoint of its network",
                gateway.name
            );
        }
        assert_eq!(validate(&plan), Ok(()));
        // Node 2 is a member of alice/web too, but serves no gateway: no endpoint there.
        grid.push_ok("carol", node(2, "carol", Some([203, 0, 113, 2])));
        let two = plan_node(grid.chain.state(), 2);
        assert!(two.containers.is_empty() && two.gateways.is_empty());
    }

    #[test]
    fn endpoint_names_fit_and_never_meet_container_names() {
        let longest = format!(
            "{}/{}",
            "t".repeat(MAX_TWIN_NAME),
            "n".repeat(MAX_OBJECT_NAME)
        );
        let name = gateway_endpoint_name(&longest);
        assert!(name.len() <= MAX_CONTAINER_NAME, "{name}");
        assert!(crate::netlink::is_plain_name(&name, MAX_CONTAINER_NAME));
        // Container names come from ledger names, which never hold `_`.
        assert!(name.contains('_'));
        assert!(!super::container_name(&longest).contains('_'));
    }

    #[test]
    fn a_good_chain_plans_each_node() {
        let grid = Grid::new();
        let state = grid.chain.state();
        let one = plan_node(state, 1);
        assert_eq!(
            one.networks
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>(),
            ["alice/web", "bob/db"]
        );
        let web = &one.networks[0];
        assert_eq!(
            (web.subnet.to_string(), web.wireguard_listen_port),
            ("10.1.1.0/24".into(), 51820)
        );
        assert_eq!(web.peers.len(), 1);
        assert_eq!(
            web.peers[0].access,
            vec!["10.1.200.5/32".parse::<ipnet::IpNet>().expect("net")],
            "the laptop that connects through node 2 is reached through node 2"
        );
        assert_eq!(
            web.peers[0].endpoints,
            vec!["192.0.2.2:51820".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(
            one.containers
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["alice.web1", "bob.db1", "gw_alice.web"],
            "alice.web1 and bob.db1 share an address in different networks; alice/www's \
             endpoint joins alice/web"
        );
        assert_eq!(
            one.gateways[0].public_ips,
            vec![IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1))]
        );
        let two = plan_node(state, 2);
        assert_eq!(two.networks[0].access[0].name, "alice/laptop");
        assert!(
            two.networks[0].peers[0].access.is_empty(),
            "node 1 has no access peers"
        );
        assert!(two.containers.is_empty());
    }

    /// Two names whose hashes share 40 bits: MACs taken from names collided for them.
    #[test]
    fn containers_of_one_network_never_share_a_mac() {
        let mut grid = Grid::new();
        grid.push_ok("alice", container("c1465398", "web", 1, [10, 1, 1, 80]));
        grid.push_ok("alice", container("c23541142", "web", 1, [10, 1, 1, 81]));
        let plan = plan_node(grid.chain.state(), 1);
        let mac = |name: &str| {
            plan.containers
                .iter()
                .find(|c| c.name == name)
                .map(|c| c.mac)
                .expect("planned")
        };
        assert_ne!(mac("alice.c1465398"), mac("alice.c23541142"));
        assert!(crate::reconcile::validate(&plan).is_ok());
    }
}

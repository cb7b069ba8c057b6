//! One node's desired state, from the grid state. Pure.

use std::net::SocketAddr;

use super::{AccessPlan, ContainerPlan, GatewayPlan, Mac, NetworkPlan, NodePlan, PeerPlan};
use crate::ledger::GridState;

/// The container name a node uses for `<owner>/<name>`: unique on the node, and a valid
/// namespace name (ledger names cannot contain `.`).
pub fn container_name(key: &str) -> String {
    key.replacen('/', ".", 1)
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
    for (key, gateway) in state.gateways.iter().filter(|(_, g)| g.node_id == node_id) {
        let node = &state.nodes[&node_id];
        plan.gateways.push(GatewayPlan {
            name: key.clone(),
            network: gateway.network.clone(),
            hostnames: gateway.hostnames.clone(),
            backends: gateway.backends.clone(),
            mode: gateway.mode,
            public_ips: node
                .public_ipv4
                .map(Into::into)
                .into_iter()
                .chain(node.public_ipv6.map(Into::into))
                .collect(),
            endpoint: String::new(),
            proxy_protocol: false,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use super::plan_node;
    use crate::ledger::fixture::{Grid, container};

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
            one.containers.len(),
            2,
            "alice.web1 and bob.db1 share an address in different networks"
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

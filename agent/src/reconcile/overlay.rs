//! The encrypted overlay's part of a pass: each network with other member nodes gets a tunnel
//! (WireGuard to those nodes), `tc_from_tunnel` on its device, and routes from the network's
//! containers to the other nodes' subnets. Pure, like [`super::diff`].

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use super::{
    NodeConfig,
    change::{Change, TunnelStep},
    names,
    observe::Observed,
};
use crate::{
    dataplane::Attachment,
    plan::{NetworkPlan, NodePlan, PeerPlan},
    tunnel::{PeerSpec, TunnelSpec},
};

/// Keepalive toward other nodes: a session that carries nothing still answers within a few
/// seconds of a peer's restart, and NAT mappings on the way stay open (`wg`'s usual 25 s).
const NODE_KEEPALIVE_SECS: u16 = 25;

/// The tunnel a network needs on this node, if any: one per network with other member nodes or
/// access peers.
///
/// A member node is reached at its endpoints for its subnets and for the access peers that
/// connect through it. An access peer has no endpoint until it connects (it roams, usually
/// behind NAT, and keeps its own mapping open), so this node sends it no keepalive.
pub fn tunnel_spec(
    network: &NetworkPlan,
    network_id: u32,
    config: &NodeConfig,
) -> Option<TunnelSpec> {
    if network.peers.is_empty() && network.access.is_empty() {
        return None;
    }
    let nodes = network.peers.iter().map(|peer| PeerSpec {
        public_key: peer.wireguard_public_key.0,
        endpoints: peer.endpoints.clone(),
        allowed_ips: peer_prefixes(peer).collect(),
        keepalive: Some(NODE_KEEPALIVE_SECS),
    });
    let access = network.access.iter().map(|access| PeerSpec {
        public_key: access.wireguard_public_key.0,
        endpoints: Vec::new(),
        allowed_ips: access.allowed_ips.clone(),
        keepalive: None,
    });
    let peers = nodes.chain(access).collect();
    Some(TunnelSpec {
        network: network.name.clone(),
        ifname: names::tunnel_ifname(network_id),
        listen_port: network.wireguard_listen_port,
        mtu: config.mtu,
        peers,
    })
}

/// What a member node is reached for: its subnets and its access peers' allowed IPs.
fn peer_prefixes(peer: &PeerPlan) -> impl Iterator<Item = IpNet> + '_ {
    [IpNet::V4(peer.subnet), IpNet::V6(peer.subnet_v6)]
        .into_iter()
        .chain(peer.access.iter().copied())
}

/// The overlay's changes, given each planned network's datapath id.
pub fn diff(
    plan: &NodePlan,
    ids: &BTreeMap<&str, u32>,
    observed: &Observed,
    config: &NodeConfig,
    out: &mut Vec<Change>,
) {
    let mut wanted_networks = BTreeSet::new();
    let mut wanted_devices = BTreeSet::new();
    let mut wanted_routes = BTreeSet::new();
    for network in &plan.networks {
        let Some(&id) = ids.get(network.name.as_str()) else {
            continue;
        };
        let Some(spec) = tunnel_spec(network, id, config) else {
            continue;
        };
        wanted_networks.insert(spec.network.clone());
        wanted_devices.insert(spec.ifname.clone());
        let device = observed.tunnel_links.get(&spec.ifname).copied();
        let mut steps = Vec::new();
        if observed.tunnels.get(&spec.network) != Some(&spec) || device.is_none() {
            steps.push(TunnelStep::Ensure);
        }
        let registered =
            device.is_some_and(|index| observed.tunnel_networks.get(&index) == Some(&id));
        if !registered {
            steps.push(TunnelStep::Register);
        }
        let attachment = device
            .and_then(|index| observed.tunnel_attachments.get(&index).copied())
            .unwrap_or(Attachment::Missing);
        if attachment != Attachment::Current {
            steps.push(TunnelStep::Attach(attachment));
        }
        for prefix in spec.peers.iter().flat_map(|peer| &peer.allowed_ips) {
            let prefix = prefix.trunc();
            wanted_routes.insert((id, prefix));
            let routed = device.is_some() && observed.routes.get(&(id, prefix)) == device.as_ref();
            if !routed {
                steps.push(TunnelStep::Route(prefix));
            }
        }
        if !steps.is_empty() {
            out.push(Change::Tunnel {
                spec: Box::new(spec),
                network_id: id,
                steps,
            });
        }
    }
    for (&(network_id, prefix), &ifindex) in &observed.routes {
        if !wanted_routes.contains(&(network_id, prefix)) {
            out.push(Change::ForgetRoute {
                network_id,
                prefix,
                ifindex,
            });
        }
    }
    let kept: BTreeSet<u32> = observed
        .tunnel_links
        .iter()
        .filter(|(name, _)| wanted_devices.contains(*name))
        .map(|(_, &index)| index)
        .collect();
    for &ifindex in observed.tunnel_networks.keys() {
        if !kept.contains(&ifindex) {
            out.push(Change::ForgetTunnelDevice { ifindex });
        }
    }
    for network in observed.tunnels.keys() {
        if !wanted_networks.contains(network) {
            out.push(Change::RemoveTunnel {
                network: network.clone(),
            });
        }
    }
    // Devices an earlier run left for networks this node no longer has a tunnel for.
    for (name, &index) in &observed.tunnel_links {
        let running = observed.tunnels.values().any(|spec| &spec.ifname == name);
        if !wanted_devices.contains(name) && !running {
            out.push(Change::RemoveLink {
                name: name.clone(),
                index,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::plan::{AccessPlan, WgKey};

    fn net(text: &str) -> IpNet {
        text.parse().expect("net")
    }

    fn network() -> NetworkPlan {
        NetworkPlan::local(
            "alice/web",
            "10.1.0.0/16".parse().expect("net"),
            "fd00:1::/48".parse().expect("net"),
            "10.1.1.0/24".parse().expect("net"),
            "fd00:1:0:1::/64".parse().expect("net"),
        )
    }

    fn laptop() -> AccessPlan {
        AccessPlan {
            name: "alice/laptop".into(),
            wireguard_public_key: WgKey([9; 32]),
            allowed_ips: vec![net("10.1.200.5/32")],
        }
    }

    fn node_two(access: Vec<IpNet>) -> PeerPlan {
        PeerPlan {
            node_id: 2,
            wireguard_public_key: WgKey([2; 32]),
            endpoints: vec!["192.0.2.2:51820".parse().expect("addr")],
            subnet: "10.1.2.0/24".parse().expect("net"),
            subnet_v6: "fd00:1:0:2::/64".parse().expect("net"),
            access,
        }
    }

    /// The routes a pass on an empty node would add, by prefix.
    fn routes(plan: &NodePlan) -> Vec<IpNet> {
        let ids = BTreeMap::from([("alice/web", 7)]);
        let mut out = Vec::new();
        diff(
            plan,
            &ids,
            &Observed::default(),
            &NodeConfig::default(),
            &mut out,
        );
        out.iter()
            .flat_map(|change| match change {
                Change::Tunnel { steps, .. } => steps.clone(),
                _ => Vec::new(),
            })
            .filter_map(|step| match step {
                TunnelStep::Route(prefix) => Some(prefix),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_access_node_alone_has_a_tunnel_for_its_access_peers() {
        let mut alone = network();
        assert!(tunnel_spec(&alone, 7, &NodeConfig::default()).is_none());
        alone.access.push(laptop());
        let spec = tunnel_spec(&alone, 7, &NodeConfig::default()).expect("a tunnel");
        let peer = &spec.peers[0];
        assert_eq!(peer.allowed_ips, vec![net("10.1.200.5/32")]);
        assert!(peer.endpoints.is_empty(), "it connects first");
        assert_eq!(peer.keepalive, None);
        let plan = NodePlan {
            networks: vec![alone],
            ..NodePlan::default()
        };
        assert_eq!(routes(&plan), vec![net("10.1.200.5/32")]);
    }

    #[test]
    fn access_peers_of_another_node_are_reached_through_it() {
        let mut web = network();
        web.peers.push(node_two(vec![net("192.168.50.0/24")]));
        let spec = tunnel_spec(&web, 7, &NodeConfig::default()).expect("a tunnel");
        assert_eq!(
            spec.peers[0].allowed_ips,
            vec![
                net("10.1.2.0/24"),
                net("fd00:1:0:2::/64"),
                net("192.168.50.0/24")
            ]
        );
        let plan = NodePlan {
            networks: vec![web],
            ..NodePlan::default()
        };
        assert_eq!(
            routes(&plan),
            vec![
                net("10.1.2.0/24"),
                net("fd00:1:0:2::/64"),
                net("192.168.50.0/24")
            ]
        );
    }
}

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
    plan::{NetworkPlan, NodePlan},
    tunnel::{PeerSpec, TunnelSpec},
};

/// Keepalive toward other nodes: a session that carries nothing still answers within a few
/// seconds of a peer's restart, and NAT mappings on the way stay open (`wg`'s usual 25 s).
const NODE_KEEPALIVE_SECS: u16 = 25;

/// The tunnel a network needs on this node, if any: one per network with other member nodes.
pub fn tunnel_spec(
    network: &NetworkPlan,
    network_id: u32,
    config: &NodeConfig,
) -> Option<TunnelSpec> {
    if network.peers.is_empty() {
        return None;
    }
    let peers = network
        .peers
        .iter()
        .map(|peer| PeerSpec {
            public_key: peer.wireguard_public_key.0,
            endpoints: peer.endpoints.clone(),
            allowed_ips: vec![IpNet::V4(peer.subnet), IpNet::V6(peer.subnet_v6)],
            keepalive: Some(NODE_KEEPALIVE_SECS),
        })
        .collect();
    Some(TunnelSpec {
        network: network.name.clone(),
        ifname: names::tunnel_ifname(network_id),
        listen_port: network.wireguard_listen_port,
        mtu: config.mtu,
        peers,
    })
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
        for peer in &network.peers {
            for prefix in [IpNet::V4(peer.subnet), IpNet::V6(peer.subnet_v6)] {
                wanted_routes.insert((id, prefix));
                let routed =
                    device.is_some() && observed.routes.get(&(id, prefix)) == device.as_ref();
                if !routed {
                    steps.push(TunnelStep::Route(prefix));
                }
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

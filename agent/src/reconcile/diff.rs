//! The decision: a plan and what the kernel holds in, the changes that make them agree out.
//! Pure: no I/O, tested without root.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use ipnet::IpNet;

use super::{
    NodeConfig,
    change::{Change, ContainerTarget, Object, Step},
    names,
    observe::Observed,
    uplink,
};
use crate::{
    dataplane::{Attachment, ContainerIdentity, EndpointState},
    netlink::NamespaceState,
    plan::{ContainerPlan, NetworkPlan, NodePlan},
};

/// The changes that make the kernel match a plan, and the objects that cannot be realized.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub changes: Vec<Change>,
    pub refused: Vec<(Object, String)>,
}

/// What the datapath must know of `container` in network `network_id`.
pub fn identity(container: &ContainerPlan, network_id: u32) -> ContainerIdentity {
    ContainerIdentity {
        network_id,
        ipv4: container.ipv4,
        ipv6: container.ipv6,
        mac: container.mac.0,
    }
}

/// Compares `plan` (already validated) with `observed`. Departed objects go first, so what
/// they free is free for the new ones; a network's id goes last, after its containers.
pub fn diff(plan: &NodePlan, observed: &Observed, config: &NodeConfig) -> Diff {
    let mut out = Diff::default();
    let ids = network_ids(plan, observed, &mut out);
    let networks: BTreeMap<&str, &NetworkPlan> =
        plan.networks.iter().map(|n| (n.name.as_str(), n)).collect();
    let realizable: Vec<(&ContainerPlan, &NetworkPlan, u32)> = plan
        .containers
        .iter()
        .filter_map(|c| {
            let network = networks.get(c.network.as_str())?;
            Some((c, *network, *ids.get(c.network.as_str())?))
        })
        .collect();

    let host_names = names::host_ifnames(
        plan.containers.iter().map(|c| c.name.as_str()),
        &observed.host_links,
    );
    let wanted_hosts: BTreeSet<String> = host_names.values().cloned().collect();
    let wanted_namespaces: BTreeSet<String> = plan
        .containers
        .iter()
        .map(|c| names::netns_name(&config.netns_prefix, &c.name))
        .collect();
    for (name, link) in &observed.host_links {
        if link.veth && !wanted_hosts.contains(name) {
            out.changes.push(Change::RemoveLink {
                name: name.clone(),
                index: link.index,
            });
        }
    }
    for interface in observed.link_pins.difference(&wanted_hosts) {
        out.changes.push(Change::UnpinLink {
            interface: interface.clone(),
        });
    }
    for name in observed.namespaces.keys() {
        if !wanted_namespaces.contains(name) {
            out.changes
                .push(Change::RemoveNamespace { name: name.clone() });
        }
    }

    // Host interfaces whose datapath entries stay valid: they are neither removed nor recreated.
    let mut kept = BTreeSet::new();
    let mut containers = Vec::new();
    for &(container, network, id) in &realizable {
        let Some(host_ifname) = host_names.get(&container.name) else {
            continue;
        };
        let (change, keeps) =
            container_change(container, network, id, host_ifname, observed, config);
        kept.extend(keeps);
        containers.extend(change);
    }
    let planned_endpoints: BTreeSet<(u32, IpAddr)> = realizable
        .iter()
        .flat_map(|&(c, _, id)| [(id, IpAddr::V4(c.ipv4)), (id, IpAddr::V6(c.ipv6))])
        .collect();
    for &ifindex in observed.identities.keys() {
        if !kept.contains(&ifindex) {
            out.changes.push(Change::ForgetInterface { ifindex });
        }
    }
    for (&(network_id, address), endpoint) in &observed.endpoints {
        if !planned_endpoints.contains(&(network_id, address)) {
            out.changes.push(Change::ForgetEndpoint {
                network_id,
                address,
                ifindex: endpoint.ifindex,
            });
        }
    }
    out.changes.extend(containers);
    if observed.overlay {
        super::overlay::diff(plan, &ids, observed, config, &mut out.changes);
    }

    if !config.uplinks.is_empty() {
        guard_changes(plan, observed, config, &mut out.changes);
    }
    for (network, &id) in &observed.networks {
        if !networks.contains_key(network.as_str()) {
            out.changes.push(Change::ForgetNetworkId {
                network: network.clone(),
                id,
            });
        }
    }
    out
}

/// Every network of the plan gets a datapath id: the one it has, or the lowest free one.
fn network_ids<'p>(
    plan: &'p NodePlan,
    observed: &Observed,
    out: &mut Diff,
) -> BTreeMap<&'p str, u32> {
    let mut used: BTreeSet<u32> = observed.networks.values().copied().collect();
    let mut ids = BTreeMap::new();
    for network in &plan.networks {
        if let Some(&id) = observed.networks.get(&network.name) {
            ids.insert(network.name.as_str(), id);
            continue;
        }
        let max = gridnet_common::maps::MAX_NETWORKS;
        match (1..=max).find(|id| !used.contains(id)) {
            Some(id) => {
                used.insert(id);
                ids.insert(network.name.as_str(), id);
                out.changes.push(Change::AssignNetworkId {
                    network: network.name.clone(),
                    id,
                });
            }
            None => out.refused.push((
                Object::Network(network.name.clone()),
                format!("more than {max} networks on one node"),
            )),
        }
    }
    ids
}

/// The steps one container needs (none when it is realized), and the host interface index
/// whose datapath entries stay valid.
fn container_change(
    container: &ContainerPlan,
    network: &NetworkPlan,
    network_id: u32,
    host_ifname: &str,
    observed: &Observed,
    config: &NodeConfig,
) -> (Option<Change>, Option<u32>) {
    let target = ContainerTarget {
        name: container.name.clone(),
        network: network.name.clone(),
        netns: names::netns_name(&config.netns_prefix, &container.name),
        host_ifname: host_ifname.to_owned(),
        ipv4: IpNet::from(IpAddr::V4(container.ipv4)),
        ipv6: IpNet::from(IpAddr::V6(container.ipv6)),
        gateway_v4: network.gateway_v4(),
        gateway_v6: network.gateway_v6(),
        identity: identity(container, network_id),
    };
    let mut steps = Vec::new();
    let namespace = observed.namespaces.get(&target.netns);
    match namespace {
        None => steps.push(Step::CreateNamespace),
        Some(NamespaceState::Empty) => steps.push(Step::RepairNamespace),
        Some(NamespaceState::Mounted) => {}
    }
    let host = observed.host_links.get(&target.host_ifname);
    let realized = host.and_then(|h| observed.identities.get(&h.index)) == Some(&target.identity);
    let inside = observed.inside.get(&container.name);
    // The container's side, where it was read: its eth0 is there (a wrong MAC is set in place).
    let container_side_intact = match inside {
        Some(inside) => inside.mac.is_some(),
        None => realized,
    };
    let link_intact = namespace == Some(&NamespaceState::Mounted)
        && host.is_some_and(|h| h.veth)
        && container_side_intact;

    let mut kept = None;
    if !link_intact {
        steps.push(Step::CreateLink {
            stale_host: host.filter(|h| h.veth).map(|h| h.index),
        });
        steps.extend([
            Step::LabelHost,
            Step::SilenceHost,
            Step::BringUp,
            Step::AddAddress(target.ipv4),
            Step::AddAddress(target.ipv6),
            Step::SetDefaultRoute(IpAddr::V4(target.gateway_v4)),
            Step::SetDefaultRoute(IpAddr::V6(target.gateway_v6)),
            Step::WriteIdentity,
            Step::Attach(Attachment::Missing),
        ]);
    } else if let Some(host) = host {
        kept = Some(host.index);
        if host.alias.as_deref() != Some(container.name.as_str()) {
            steps.push(Step::LabelHost);
        }
        if !host.silent {
            steps.push(Step::SilenceHost);
        }
        if host.mtu != Some(names::HOST_SIDE_MTU) {
            steps.push(Step::OpenHostMtu);
        }
        match inside {
            Some(inside) => {
                if inside.mac != Some(target.identity.mac) {
                    steps.push(Step::SetMac);
                }
                if !inside.up || !host.up {
                    steps.push(Step::BringUp);
                }
                let wanted: BTreeSet<IpNet> = [target.ipv4, target.ipv6].into();
                let before = steps.len();
                for net in inside.addresses.difference(&wanted) {
                    steps.push(Step::RemoveAddress(*net));
                }
                for net in wanted.difference(&inside.addresses) {
                    steps.push(Step::AddAddress(*net));
                }
                // Removing a container's last address flushes its routes: set them again.
                let readdressed = steps.len() > before;
                for gateway in [IpAddr::V4(target.gateway_v4), IpAddr::V6(target.gateway_v6)] {
                    if readdressed || !inside.gateways.contains(&gateway) {
                        steps.push(Step::SetDefaultRoute(gateway));
                    }
                }
                if !realized {
                    steps.push(Step::WriteIdentity);
                }
            }
            None if !host.up => steps.push(Step::BringUp),
            None => {}
        }
        // A realized container's endpoints follow its link: down while its side is down.
        let down = !host.carrier;
        let marked = [IpAddr::V4(container.ipv4), IpAddr::V6(container.ipv6)]
            .iter()
            .all(|&address| {
                observed.endpoints.get(&(network_id, address))
                    == Some(&EndpointState {
                        ifindex: host.index,
                        down,
                    })
            });
        if realized && !marked {
            steps.push(Step::MarkLink { down });
        }
        let attachment = observed
            .attachments
            .get(&host.index)
            .copied()
            .unwrap_or(Attachment::Missing);
        if attachment != Attachment::Current {
            steps.push(Step::Attach(attachment));
        }
    }
    if steps.is_empty() {
        return (None, kept);
    }
    let change = Change::Container {
        target: Box::new(target),
        steps,
    };
    (Some(change), kept)
}

/// The guard on every configured uplink, its allow-list following the plan. An uplink removed
/// from the configuration keeps its guard: unprotecting is explicit.
fn guard_changes(plan: &NodePlan, observed: &Observed, config: &NodeConfig, out: &mut Vec<Change>) {
    for uplink in &config.uplinks {
        if observed.guards.get(uplink) != Some(&true) {
            out.push(Change::AttachGuard {
                uplink: uplink.clone(),
                mode: None,
            });
        }
    }
    let wanted = uplink::allowed_ports(plan);
    for &(protocol, port) in wanted.difference(&observed.uplink_ports) {
        out.push(Change::OpenPort { protocol, port });
    }
    for &(protocol, port) in observed.uplink_ports.difference(&wanted) {
        out.push(Change::ClosePort { protocol, port });
    }
    if !observed.guard_enforcing {
        out.push(Change::EnforceGuard);
    }
}

#[cfg(test)]
mod tests;

//! Making the kernel match a [`NodePlan`]: namespaces, veths, addresses, routes, tc filters and
//! datapath maps. Applying the same plan twice changes nothing; objects of containers that left
//! the plan are removed. A plan that fails [`validate`] changes nothing at all.

pub mod names;
pub mod uplink;
mod validate;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    path::PathBuf,
};

use gridnet_common::maps::{Endpoint, EndpointKey, Iface};
use ipnet::IpNet;
use tracing::debug;

pub use validate::{MAX_CONTAINER_NAME, PlanError, validate};

use crate::{
    dataplane::{
        AttachMode, AttachPreference, Dataplane, DataplaneError, FILTER_HANDLE, FILTER_PRIORITY,
    },
    netlink::{Netlink, NetlinkError, Netns, NetnsError},
    plan::{ContainerPlan, NetworkPlan, NodePlan},
};

/// Where this node keeps its objects.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The bpffs directory of the datapath's pins.
    pub pin_root: PathBuf,
    /// Prefix of the container namespaces this agent owns; it never touches others.
    pub netns_prefix: String,
    /// TCX or netlink attachments (default: probed).
    pub attach: AttachPreference,
    /// Underlay interfaces the XDP guard protects.
    pub uplinks: Vec<String>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            pin_root: crate::dataplane::DEFAULT_PIN_ROOT.into(),
            netns_prefix: "gn-".into(),
            attach: AttachPreference::Auto,
            uplinks: Vec::new(),
        }
    }
}

/// What an apply changed, one line per change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub changes: Vec<String>,
}

impl Report {
    fn change(&mut self, what: String) {
        debug!(change = %what);
        self.changes.push(what);
    }
}

/// Why an apply failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the plan is invalid")]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("cannot list network namespaces")]
    ListNetns(#[source] std::io::Error),
    #[error("more than {max} networks on one node")]
    TooManyNetworks { max: u32 },
    #[error("link `{name}` vanished while it was being set up")]
    LinkVanished { name: String },
}

/// Makes the kernel match `plan`.
pub async fn apply(plan: &NodePlan, config: &NodeConfig) -> Result<Report, ReconcileError> {
    validate(plan)?;
    let mut report = Report::default();
    let mut dataplane = Dataplane::open(&config.pin_root, config.attach)?;
    let node = Netlink::connect()?;
    let network_ids = assign_network_ids(plan, &mut dataplane, &mut report)?;
    let networks: BTreeMap<&str, &NetworkPlan> =
        plan.networks.iter().map(|n| (n.name.as_str(), n)).collect();

    // Read the maps once; a node may host thousands of containers.
    let mut view = MapView {
        ifaces: dataplane.ifaces()?.into_iter().collect(),
        endpoints: dataplane.endpoints()?.into_iter().collect(),
    };
    let mut live_ifindexes = BTreeSet::new();
    let mut kernel = Kernel {
        config,
        node: &node,
        dataplane: &mut dataplane,
        view: &mut view,
        report: &mut report,
    };
    for container in &plan.containers {
        let network = networks[container.network.as_str()];
        let id = network_ids[container.network.as_str()];
        live_ifindexes.insert(kernel.ensure_container(container, network, id).await?);
    }
    // The guard: attached to every uplink, its allow-list following the plan. Removing an
    // uplink from the configuration leaves its guard in place: unprotecting is explicit.
    if !config.uplinks.is_empty() {
        for uplink in &config.uplinks {
            if let Some(change) = dataplane.ensure_xdp(uplink)? {
                report.change(change);
            }
        }
        for change in dataplane.set_uplink_ports(&uplink::allowed_ports(plan))? {
            report.change(change);
        }
    }
    remove_departed(
        plan,
        config,
        &node,
        &mut dataplane,
        &view,
        &live_ifindexes,
        &mut report,
    )
    .await?;
    for (id, name) in dataplane.networks()? {
        if !network_ids.values().any(|&live| live == id) {
            dataplane.remove_network(id)?;
            report.change(format!("forget network {} (id {id})", name.as_str()));
        }
    }
    Ok(report)
}

/// What one apply works on.
struct Kernel<'a> {
    config: &'a NodeConfig,
    node: &'a Netlink,
    dataplane: &'a mut Dataplane,
    view: &'a mut MapView,
    report: &'a mut Report,
}

/// The datapath maps as last read or written by this apply.
struct MapView {
    ifaces: HashMap<u32, Iface>,
    endpoints: HashMap<EndpointKey, Endpoint>,
}

/// Gives every network of the plan a datapath id: the one it already has, or the lowest free.
fn assign_network_ids<'p>(
    plan: &'p NodePlan,
    dataplane: &mut Dataplane,
    report: &mut Report,
) -> Result<BTreeMap<&'p str, u32>, ReconcileError> {
    let existing: BTreeMap<String, u32> = dataplane
        .networks()?
        .into_iter()
        .map(|(id, name)| (name.as_str().to_owned(), id))
        .collect();
    let mut used: BTreeSet<u32> = existing.values().copied().collect();
    let mut ids = BTreeMap::new();
    for network in &plan.networks {
        let id = match existing.get(&network.name) {
            Some(&id) => id,
            None => {
                let max = gridnet_common::maps::MAX_NETWORKS;
                let id = (1..=max)
                    .find(|id| !used.contains(id))
                    .ok_or(ReconcileError::TooManyNetworks { max })?;
                used.insert(id);
                dataplane.set_network(id, &network.name)?;
                report.change(format!("network {} gets datapath id {id}", network.name));
                id
            }
        };
        ids.insert(network.name.as_str(), id);
    }
    Ok(ids)
}

/// Makes one container's namespace, veth, addresses, routes, filter and map entries right.
/// Returns the ifindex of its host-side veth.
impl Kernel<'_> {
    async fn ensure_container(
        &mut self,
        container: &ContainerPlan,
        network: &NetworkPlan,
        network_id: u32,
    ) -> Result<u32, ReconcileError> {
        let config = self.config;
        let node = self.node;
        let dataplane = &mut *self.dataplane;
        let view = &mut *self.view;
        let report = &mut *self.report;
        let ns_name = names::netns_name(&config.netns_prefix, &container.name);
        let host_name = names::host_ifname(&container.name);
        let ns = match Netns::open(&ns_name) {
            Ok(ns) => ns,
            Err(_) => {
                report.change(format!("create netns {ns_name}"));
                Netns::create(&ns_name)?
            }
        };
        let inside = Netlink::connect_in(&ns)?;

        // The veth: recreated when either end is missing or the container side has another MAC.
        let host = node.link(&host_name).await?;
        let peer = inside.link(names::CONTAINER_IFNAME).await?;
        let intact = matches!((&host, &peer), (Some(_), Some(p)) if p.mac == Some(container.mac.0));
        if !intact {
            if let Some(host) = &host {
                node.delete_link(host.index).await?;
            }
            if let Some(peer) = &peer {
                inside.delete_link(peer.index).await?;
            }
            node.add_veth(&host_name, names::CONTAINER_IFNAME, container.mac.0, &ns)
                .await?;
            report.change(format!(
                "create veth {host_name} <-> {ns_name}/{}",
                names::CONTAINER_IFNAME
            ));
        }
        let host = node
            .link(&host_name)
            .await?
            .ok_or(ReconcileError::LinkVanished {
                name: host_name.clone(),
            })?;
        let peer =
            inside
                .link(names::CONTAINER_IFNAME)
                .await?
                .ok_or(ReconcileError::LinkVanished {
                    name: format!("{ns_name}/{}", names::CONTAINER_IFNAME),
                })?;
        let lo = inside
            .link("lo")
            .await?
            .ok_or(ReconcileError::LinkVanished {
                name: format!("{ns_name}/lo"),
            })?;
        for (netlink, link, label) in [
            (node, &host, host_name.as_str()),
            (&inside, &peer, "eth0"),
            (&inside, &lo, "lo"),
        ] {
            if !link.up {
                netlink.set_up(link.index).await?;
                report.change(format!(
                    "set {label} up in {}",
                    if label == host_name { "node" } else { &ns_name }
                ));
            }
        }

        // Addresses and default routes inside the container.
        let have = inside.addresses(peer.index).await?;
        let want = [
            IpNet::new(IpAddr::V4(container.ipv4), network.subnet.prefix_len()),
            IpNet::new(IpAddr::V6(container.ipv6), network.subnet_v6.prefix_len()),
        ];
        for net in want.into_iter().flatten() {
            if !have.contains(&net) {
                inside.add_address(peer.index, net).await?;
                report.change(format!("add {net} to {ns_name}/eth0"));
            }
        }
        let gateways = inside.default_gateways().await?;
        for gateway in [
            IpAddr::V4(network.gateway_v4()),
            IpAddr::V6(network.gateway_v6()),
        ] {
            if !gateways.contains(&gateway) {
                inside.add_default_route(peer.index, gateway).await?;
                report.change(format!("add default route via {gateway} in {ns_name}"));
            }
        }

        // The datapath's view of the container, before its program runs: no packet of it is
        // ever judged without its identity.
        let iface = Iface {
            network_id,
            ipv4: container.ipv4.octets(),
            ipv6: container.ipv6.octets(),
            mac: container.mac.0,
            _pad: [0; 2],
        };
        if view.ifaces.get(&host.index) != Some(&iface) {
            dataplane.set_iface(host.index, iface)?;
            view.ifaces.insert(host.index, iface);
            report.change(format!(
                "datapath: interface {host_name} is {} in network {}",
                container.name, network.name
            ));
        }
        let endpoint = Endpoint {
            ifindex: host.index,
            mac: container.mac.0,
            _pad: [0; 2],
        };
        for key in [
            EndpointKey::v4(network_id, iface.ipv4),
            EndpointKey::v6(network_id, iface.ipv6),
        ] {
            if view.endpoints.get(&key) != Some(&endpoint) {
                dataplane.set_endpoint(key, endpoint)?;
                view.endpoints.insert(key, endpoint);
                report.change(format!(
                    "datapath: endpoint of {} in network {}",
                    container.name, network.name
                ));
            }
        }
        // The program on the host veth's ingress.
        match dataplane.attach_mode() {
            AttachMode::Tcx => {
                if let Some(change) = dataplane.ensure_tcx(&host_name)? {
                    report.change(change);
                }
            }
            AttachMode::Netlink => {
                // Ours: at our priority and handle, with our program's tag.
                let filters = node.ingress_bpf_filters(host.index).await?;
                let ours = filters
                    .iter()
                    .find(|f| f.priority == FILTER_PRIORITY && f.handle == FILTER_HANDLE);
                match ours {
                    Some(filter) if filter.tag == Some(dataplane.program_tag()) => {}
                    Some(_) => {
                        dataplane.attach(&host_name, true)?;
                        report.change(format!(
                            "replace the filter on {host_name} with the current program"
                        ));
                    }
                    None => {
                        dataplane.attach(&host_name, false)?;
                        report.change(format!("attach tc_from_container to {host_name}"));
                    }
                }
            }
        }

        Ok(host.index)
    }
}

/// Removes the namespaces, veths and map entries of containers no longer in the plan.
async fn remove_departed(
    plan: &NodePlan,
    config: &NodeConfig,
    node: &Netlink,
    dataplane: &mut Dataplane,
    view: &MapView,
    live_ifindexes: &BTreeSet<u32>,
    report: &mut Report,
) -> Result<(), ReconcileError> {
    let wanted_ns: BTreeSet<String> = plan
        .containers
        .iter()
        .map(|c| names::netns_name(&config.netns_prefix, &c.name))
        .collect();
    let wanted_hosts: BTreeSet<String> = plan
        .containers
        .iter()
        .map(|c| names::host_ifname(&c.name))
        .collect();
    // Veths first: deleting one removes its peer at once, while a namespace's interfaces go
    // only when the kernel gets round to freeing it.
    for link in node.links(names::HOST_IFNAME_PREFIX).await? {
        let ours = link.name.len() == 10 && link.name[2..].bytes().all(|b| b.is_ascii_hexdigit());
        if ours && !wanted_hosts.contains(&link.name) {
            node.delete_link(link.index).await?;
            report.change(format!("delete veth {}", link.name));
        }
    }
    for link in dataplane.forget_tcx_links(&wanted_hosts) {
        report.change(format!("unpin the TCX link of {link}"));
    }
    for ns in Netns::list(&config.netns_prefix).map_err(ReconcileError::ListNetns)? {
        if !wanted_ns.contains(&ns) {
            Netns::delete(&ns)?;
            report.change(format!("delete netns {ns}"));
        }
    }
    for &ifindex in view.ifaces.keys() {
        if !live_ifindexes.contains(&ifindex) {
            dataplane.remove_iface(ifindex)?;
            report.change(format!("datapath: forget interface {ifindex}"));
        }
    }
    for (key, endpoint) in &view.endpoints {
        if !live_ifindexes.contains(&endpoint.ifindex) {
            dataplane.remove_endpoint(key)?;
            report.change(format!(
                "datapath: forget an endpoint of interface {}",
                endpoint.ifindex
            ));
        }
    }
    Ok(())
}

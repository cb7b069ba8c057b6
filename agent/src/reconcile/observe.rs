//! What the kernel holds of this node's objects, read through the subsystem handles. The diff
//! ([`super::diff`]) compares it with the plan; nothing here decides anything.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use ipnet::IpNet;

use super::{ReconcileError, Reconciler, diff, names};
use crate::{
    dataplane::{Attachment, ContainerIdentity, EndpointState, TcProgram},
    netlink::{NamespaceState, Netlink, Netns, sysctl},
    plan::NodePlan,
    tunnel::TunnelSpec,
};

/// A host-side interface named like gridnet's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostLink {
    pub index: u32,
    pub up: bool,
    /// Only veths are gridnet's; an interface of another kind with such a name is never touched.
    pub veth: bool,
    /// Whether IPv6 is off on it (read for planned containers only).
    pub silent: bool,
    /// Whether it has a carrier: a veth loses it when the container's side goes down.
    pub carrier: bool,
    pub mtu: Option<u32>,
    /// The container it was made for: the agent labels each veth it makes with the name.
    pub alias: Option<String>,
}

#[cfg(test)]
impl HostLink {
    /// A veth the agent made and finished, labelled `alias`, as tests of the decisions need.
    pub fn finished_veth(index: u32, alias: Option<&str>) -> Self {
        Self {
            index,
            up: true,
            veth: true,
            silent: true,
            carrier: true,
            mtu: Some(super::names::HOST_SIDE_MTU),
            alias: alias.map(str::to_owned),
        }
    }
}

/// The container side of a veth, read once per agent lifetime and whenever the datapath has no
/// matching identity (a new, changed or half-made container); see
/// [`super::change::Step::WriteIdentity`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inside {
    /// `eth0`'s MAC, if `eth0` exists.
    pub mac: Option<[u8; 6]>,
    /// Whether `eth0` and `lo` are both up.
    pub up: bool,
    /// Addresses on `eth0` (link-local ones left out: the kernel manages them).
    pub addresses: BTreeSet<IpNet>,
    /// Gateways of the default routes.
    pub gateways: BTreeSet<IpAddr>,
}

/// The kernel's side of this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Datapath network ids, by network name.
    pub networks: BTreeMap<String, u32>,
    /// Namespaces with this node's prefix.
    pub namespaces: BTreeMap<String, NamespaceState>,
    /// Interfaces named like gridnet's host-side veths, by name.
    pub host_links: BTreeMap<String, HostLink>,
    /// Container identities in the datapath, by host-side ifindex.
    pub identities: BTreeMap<u32, ContainerIdentity>,
    /// Datapath endpoints: (network id, address) -> the host-side interface behind it.
    pub endpoints: BTreeMap<(u32, IpAddr), EndpointState>,
    /// How `tc_from_container` is attached, by host-side ifindex (planned containers only).
    pub attachments: BTreeMap<u32, Attachment>,
    /// Interfaces with a pinned link of `tc_from_container`.
    pub link_pins: BTreeSet<String>,
    /// The container side of planned containers without a matching identity, by container.
    pub inside: BTreeMap<String, Inside>,
    /// Whether the guard runs on each configured uplink as the current program.
    pub guards: BTreeMap<String, bool>,
    /// The guard's allow-list.
    pub uplink_ports: BTreeSet<(u8, u16)>,
    pub guard_enforcing: bool,
    /// Whether this node runs tunnels (it has a WireGuard key).
    pub overlay: bool,
    /// The tunnels running, by network.
    pub tunnels: BTreeMap<String, TunnelSpec>,
    /// Interfaces named like gridnet's tunnel devices, by name.
    pub tunnel_links: BTreeMap<String, u32>,
    /// Tunnel devices in the datapath: ifindex -> network id.
    pub tunnel_networks: BTreeMap<u32, u32>,
    /// How `tc_from_tunnel` is attached, by the ifindex of planned tunnel devices.
    pub tunnel_attachments: BTreeMap<u32, Attachment>,
    /// Routes to other nodes' subnets: (network id, prefix) -> tunnel ifindex.
    pub routes: BTreeMap<(u32, IpNet), u32>,
}

impl Reconciler {
    /// Reads what the kernel holds. Opens a socket into a container's namespace only for
    /// containers whose datapath identity does not match the plan.
    pub(super) async fn observe(&mut self, plan: &NodePlan) -> Result<Observed, ReconcileError> {
        let mut observed = Observed {
            networks: self.dataplane.networks()?,
            identities: self.dataplane.containers()?,
            endpoints: self.dataplane.endpoints()?,
            link_pins: self.dataplane.tc_link_pins(TcProgram::FromContainer),
            ..Observed::default()
        };
        observed.namespaces = Netns::states(&self.config.netns_prefix)
            .map_err(ReconcileError::ListNetns)?
            .into_iter()
            .collect();
        observed.overlay = self.tunnels.is_some();
        if let Some(tunnels) = &self.tunnels {
            observed.tunnels = tunnels
                .specs()
                .into_iter()
                .map(|spec| (spec.network.clone(), spec))
                .collect();
        }
        observed.tunnel_networks = self.dataplane.tunnels()?;
        observed.routes = self.dataplane.routes()?;
        for link in self.netlink.links(names::HOST_IFNAME_PREFIX).await? {
            if names::is_tunnel_ifname(&link.name) {
                observed.tunnel_links.insert(link.name, link.index);
            } else if names::is_host_ifname(&link.name) {
                let host = HostLink {
                    index: link.index,
                    up: link.up,
                    veth: link.veth,
                    silent: false,
                    carrier: link.carrier,
                    mtu: link.mtu,
                    alias: link.alias,
                };
                observed.host_links.insert(link.name, host);
            }
        }
        let host_names = names::host_ifnames(
            plan.containers.iter().map(|c| c.name.as_str()),
            &observed.host_links,
        );
        for container in &plan.containers {
            let Some(host_name) = host_names.get(&container.name) else {
                continue;
            };
            let Some(host) = observed.host_links.get_mut(host_name) else {
                continue;
            };
            if !host.veth {
                continue;
            }
            host.silent = sysctl::ipv6_disabled(host_name).unwrap_or(false);
            let host = host.clone();
            let attachment = self
                .dataplane
                .tc_attachment(TcProgram::FromContainer, host_name, host.index)
                .await?;
            observed.attachments.insert(host.index, attachment);
            let wanted = observed
                .networks
                .get(&container.network)
                .map(|&id| diff::identity(container, id));
            let matches =
                wanted.is_some() && observed.identities.get(&host.index) == wanted.as_ref();
            let ns_name = names::netns_name(&self.config.netns_prefix, &container.name);
            let mounted = observed.namespaces.get(&ns_name) == Some(&NamespaceState::Mounted);
            // Each container's side is read once in the agent's lifetime (at start: an upgrade
            // or a tenant may have changed it), again once its link is back after being down
            // (the kernel flushed its routes), and whenever its identity does not match. Never
            // while its side is down: taking it down is the container's own business.
            let unverified = !self.verified.contains(&container.name) && host.carrier;
            if (!matches || unverified) && mounted {
                let inside = read_inside(&ns_name).await?;
                observed.inside.insert(container.name.clone(), inside);
            }
        }
        for network in &plan.networks {
            let Some(&id) = observed.networks.get(&network.name) else {
                continue;
            };
            let ifname = names::tunnel_ifname(id);
            if let Some(&index) = observed.tunnel_links.get(&ifname)
                && !network.peers.is_empty()
            {
                let attachment = self
                    .dataplane
                    .tc_attachment(TcProgram::FromTunnel, &ifname, index)
                    .await?;
                observed.tunnel_attachments.insert(index, attachment);
            }
        }
        if !self.config.uplinks.is_empty() {
            for uplink in &self.config.uplinks {
                let current = self.dataplane.guard_is_current(uplink)?;
                observed.guards.insert(uplink.clone(), current);
            }
            observed.uplink_ports = self.dataplane.uplink_ports()?;
            observed.guard_enforcing = self.dataplane.guard_is_enforcing();
        }
        Ok(observed)
    }
}

/// Reads a container's side through a netlink socket opened in its namespace for this call.
async fn read_inside(ns_name: &str) -> Result<Inside, ReconcileError> {
    let ns = Netns::open(ns_name)?;
    let inside = Netlink::connect_in(&ns)?;
    let mut seen = Inside::default();
    let Some(eth0) = inside.link(names::CONTAINER_IFNAME).await? else {
        return Ok(seen);
    };
    let lo_up = inside.link("lo").await?.is_some_and(|lo| lo.up);
    seen.mac = eth0.mac;
    seen.up = eth0.up && lo_up;
    seen.addresses = inside
        .addresses(eth0.index)
        .await?
        .into_iter()
        .filter(|net| !is_link_local(net.addr()))
        .collect();
    seen.gateways = inside.default_gateways().await?.into_iter().collect();
    Ok(seen)
}

fn is_link_local(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.is_unicast_link_local(),
    }
}

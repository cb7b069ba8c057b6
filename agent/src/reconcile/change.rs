//! What reconciling decides: typed changes, each about one object. They are rendered for
//! people (`gridnet apply`, the log, `gridnet status`) and applied by [`super::apply`].

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::IpNet;
use serde::Serialize;

use crate::{
    dataplane::{Attachment, ContainerIdentity, XdpAttachMode},
    tunnel::TunnelSpec,
};

/// The object a change is about. Changes are applied, and fail, per object: one object that
/// fails is reported and retried, and the others go ahead.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Object {
    Network(String),
    Container(String),
    /// A host-side interface gridnet made, by name.
    Interface(String),
    /// A container namespace gridnet made, by name.
    Namespace(String),
    /// The datapath's entries for a host interface index.
    Datapath(u32),
    Uplink(String),
    /// The uplink guard's allow-list and settings.
    Guard,
    /// A network's tunnel to the other member nodes.
    Tunnel(String),
    /// A web gateway, by its name on the ledger.
    Gateway(String),
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Network(name) => write!(f, "network {name}"),
            Self::Container(name) => write!(f, "container {name}"),
            Self::Interface(name) => write!(f, "interface {name}"),
            Self::Namespace(name) => write!(f, "namespace {name}"),
            Self::Datapath(ifindex) => write!(f, "datapath entries of interface {ifindex}"),
            Self::Uplink(name) => write!(f, "uplink {name}"),
            Self::Guard => f.write_str("the uplink guard's settings"),
            Self::Tunnel(network) => write!(f, "tunnel of network {network}"),
            Self::Gateway(name) => write!(f, "gateway {name}"),
        }
    }
}

/// Everything the kernel side needs to know to realize one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerTarget {
    pub name: String,
    pub network: String,
    /// Its namespace.
    pub netns: String,
    /// Its veth's host-side name.
    pub host_ifname: String,
    /// Its addresses, as a /32 and a /128: every other address is reached through the gateway,
    /// so a container keeps one neighbour entry (the gateway's) however large its network is.
    pub ipv4: IpNet,
    pub ipv6: IpNet,
    pub gateway_v4: Ipv4Addr,
    pub gateway_v6: Ipv6Addr,
    /// What the datapath must know of it.
    pub identity: ContainerIdentity,
}

/// One step of realizing a container, in the order they are applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    CreateNamespace,
    /// Its mount point exists but holds no namespace (see [`crate::netlink::NamespaceState`]).
    RepairNamespace,
    /// Creates the veth pair, deleting `stale_host`, a host half left without its peer or with
    /// the wrong MAC on its container side, first.
    CreateLink {
        stale_host: Option<u32>,
    },
    /// Sets the host side's alias to the container's name: how the agent knows whose veth it is
    /// (see [`super::names::host_ifnames`]). Right after the link is made, and on a veth an
    /// earlier release made.
    LabelHost,
    /// Turns IPv6 off on the host side, before it comes up: the host side carries no address
    /// and originates nothing into the container.
    SilenceHost,
    /// Gives the container's `eth0` its MAC (derived from its address: a new address, a new
    /// MAC), in place.
    SetMac,
    /// Sets the container's `eth0` and `lo` and the host side up.
    BringUp,
    AddAddress(IpNet),
    RemoveAddress(IpNet),
    SetDefaultRoute(IpAddr),
    /// Writes the container's identity and endpoints into the datapath. Last but one, so a
    /// written identity certifies that the container side is configured.
    WriteIdentity,
    /// Attaches `tc_from_container` to the host side, replacing what was found.
    Attach(Attachment),
    /// Gives the host side [`super::names::HOST_SIDE_MTU`] (a link made by an earlier release
    /// has the container's MTU on both sides).
    OpenHostMtu,
    /// Marks the container's endpoints down (its side of the link is down: packets to it are
    /// dropped and counted) or up again.
    MarkLink {
        down: bool,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CreateNamespace => f.write_str("create its namespace"),
            Self::RepairNamespace => f.write_str("repair its empty namespace mount point"),
            Self::CreateLink { stale_host: None } => f.write_str("create its veth"),
            Self::CreateLink {
                stale_host: Some(i),
            } => {
                write!(f, "recreate its veth (replacing interface {i})")
            }
            Self::LabelHost => f.write_str("label its host side"),
            Self::SilenceHost => f.write_str("turn IPv6 off on its host side"),
            Self::SetMac => f.write_str("set its MAC"),
            Self::BringUp => f.write_str("set its links up"),
            Self::AddAddress(net) => write!(f, "add {net}"),
            Self::RemoveAddress(net) => write!(f, "remove {net}"),
            Self::SetDefaultRoute(gateway) => write!(f, "route by default via {gateway}"),
            Self::WriteIdentity => f.write_str("write its datapath identity"),
            Self::Attach(Attachment::Outdated) => f.write_str("replace its program"),
            Self::Attach(_) => f.write_str("attach tc_from_container"),
            Self::OpenHostMtu => f.write_str("open its host side's MTU"),
            Self::MarkLink { down: true } => f.write_str("mark its link down"),
            Self::MarkLink { down: false } => f.write_str("mark its link up"),
        }
    }
}

/// One step of realizing a network's tunnel, in the order they are applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TunnelStep {
    /// Starts the tunnel or brings its peers in line with the plan (unchanged peers keep their
    /// sessions).
    Ensure,
    /// Tells `tc_from_tunnel` which network the device carries.
    Register,
    /// Attaches `tc_from_tunnel` to the device, replacing what was found.
    Attach(Attachment),
    /// Routes the network's packets for `prefix` (another node's subnet) into the tunnel.
    Route(IpNet),
}

impl fmt::Display for TunnelStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ensure => f.write_str("start or update it"),
            Self::Register => f.write_str("register its device"),
            Self::Attach(Attachment::Outdated) => f.write_str("replace its program"),
            Self::Attach(_) => f.write_str("attach tc_from_tunnel"),
            Self::Route(prefix) => write!(f, "route {prefix} into it"),
        }
    }
}

/// One change to the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    AssignNetworkId {
        network: String,
        id: u32,
    },
    ForgetNetworkId {
        network: String,
        id: u32,
    },
    /// Realizes or repairs a container with `steps`, in order.
    Container {
        target: Box<ContainerTarget>,
        steps: Vec<Step>,
    },
    /// Deletes a host-side veth of a container that left (its peer goes with it).
    RemoveLink {
        name: String,
        index: u32,
    },
    /// Drops the pinned program link of an interface that is gone or leaving.
    UnpinLink {
        interface: String,
    },
    RemoveNamespace {
        name: String,
    },
    ForgetInterface {
        ifindex: u32,
    },
    ForgetEndpoint {
        network_id: u32,
        address: IpAddr,
        ifindex: u32,
    },
    /// Attaches the guard to an uplink; `mode` is how it runs, once it does.
    /// Realizes or repairs a network's tunnel with `steps`, in order.
    Tunnel {
        spec: Box<TunnelSpec>,
        network_id: u32,
        steps: Vec<TunnelStep>,
    },
    /// Stops a tunnel the plan no longer has (its device goes with it).
    RemoveTunnel {
        network: String,
    },
    /// Drops a route to another node's subnet the plan no longer has.
    ForgetRoute {
        network_id: u32,
        prefix: IpNet,
        ifindex: u32,
    },
    /// Drops the datapath's entry for a tunnel device that is gone or leaving.
    ForgetTunnelDevice {
        ifindex: u32,
    },
    AttachGuard {
        uplink: String,
        mode: Option<XdpAttachMode>,
    },
    OpenPort {
        protocol: u8,
        port: u16,
    },
    ClosePort {
        protocol: u8,
        port: u16,
    },
    EnforceGuard,
}

impl Change {
    /// The object this change is about.
    pub fn object(&self) -> Object {
        match self {
            Self::AssignNetworkId { network, .. } | Self::ForgetNetworkId { network, .. } => {
                Object::Network(network.clone())
            }
            Self::Container { target, .. } => Object::Container(target.name.clone()),
            Self::RemoveLink { name, .. } => Object::Interface(name.clone()),
            Self::UnpinLink { interface } => Object::Interface(interface.clone()),
            Self::RemoveNamespace { name } => Object::Namespace(name.clone()),
            Self::ForgetInterface { ifindex } => Object::Datapath(*ifindex),
            Self::ForgetEndpoint { ifindex, .. } => Object::Datapath(*ifindex),
            Self::Tunnel { spec, .. } => Object::Tunnel(spec.network.clone()),
            Self::RemoveTunnel { network } => Object::Tunnel(network.clone()),
            Self::ForgetRoute { ifindex, .. } | Self::ForgetTunnelDevice { ifindex } => {
                Object::Datapath(*ifindex)
            }
            Self::AttachGuard { uplink, .. } => Object::Uplink(uplink.clone()),
            Self::OpenPort { .. } | Self::ClosePort { .. } | Self::EnforceGuard => Object::Guard,
        }
    }
}

fn protocol_name(protocol: u8) -> &'static str {
    match protocol {
        gridnet_common::packet::IPPROTO_TCP => "tcp",
        gridnet_common::packet::IPPROTO_UDP => "udp",
        _ => "ip",
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AssignNetworkId { network, id } => {
                write!(f, "network {network} gets datapath id {id}")
            }
            Self::ForgetNetworkId { network, id } => {
                write!(f, "forget network {network} (id {id})")
            }
            Self::Container { target, steps } => {
                write!(f, "container {}:", target.name)?;
                for (i, step) in steps.iter().enumerate() {
                    write!(f, "{} {step}", if i == 0 { "" } else { "," })?;
                }
                Ok(())
            }
            Self::RemoveLink { name, .. } => write!(f, "delete veth {name}"),
            Self::UnpinLink { interface } => write!(f, "unpin the program link of {interface}"),
            Self::RemoveNamespace { name } => write!(f, "delete netns {name}"),
            Self::ForgetInterface { ifindex } => {
                write!(f, "datapath: forget interface {ifindex}")
            }
            Self::ForgetEndpoint {
                network_id,
                address,
                ..
            } => write!(
                f,
                "datapath: forget endpoint {address} of network id {network_id}"
            ),
            Self::Tunnel { spec, steps, .. } => {
                write!(f, "tunnel of network {}:", spec.network)?;
                for (i, step) in steps.iter().enumerate() {
                    write!(f, "{} {step}", if i == 0 { "" } else { "," })?;
                }
                Ok(())
            }
            Self::RemoveTunnel { network } => write!(f, "stop the tunnel of network {network}"),
            Self::ForgetRoute {
                network_id, prefix, ..
            } => write!(
                f,
                "datapath: forget the route to {prefix} of network id {network_id}"
            ),
            Self::ForgetTunnelDevice { ifindex } => {
                write!(f, "datapath: forget tunnel device {ifindex}")
            }
            Self::AttachGuard { uplink, mode } => {
                write!(f, "attach the XDP guard to {uplink}")?;
                match mode {
                    Some(mode) => write!(f, " ({})", mode.name()),
                    None => Ok(()),
                }
            }
            Self::OpenPort { protocol, port } => {
                write!(
                    f,
                    "uplink guard: open {} port {port}",
                    protocol_name(*protocol)
                )
            }
            Self::ClosePort { protocol, port } => {
                write!(
                    f,
                    "uplink guard: close {} port {port}",
                    protocol_name(*protocol)
                )
            }
            Self::EnforceGuard => f.write_str("uplink guard: enforcing"),
        }
    }
}

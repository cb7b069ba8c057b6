//! The eBPF datapath: loading, pinning, attaching, typed maps, statistics.
//!
//! [`Dataplane`] is a long-lived handle: the daemon opens it once and keeps it. It speaks the
//! domain (containers, networks, uplink ports); callers never see map names or raw map values.
//! Each program is loaded the first time it is needed, so a node without uplinks never loads
//! the guard, and one without containers loads no TC program. The pin layout is in [`pins`].
//!
//! Attachments are TCX links (pinned) where the kernel has TCX, else netlink cls_bpf filters;
//! both outlive the agent, so forwarding goes on across restarts. A restarted agent finds the
//! attachments, compares program tags, and leaves identical programs in place.
//!
//! # Minimum kernel version
//! Container forwarding and the overlay: 5.10 (`bpf_redirect_peer`); TCX links 6.6 (netlink
//! cls_bpf before). The uplink guard: 5.2 (`bpf_skc_lookup_tcp`). Tested on 6.1, 6.12 and 6.18;
//! see `docs/kernels.md`.

mod attach;
mod bpffs;
mod maps;
pub mod pins;
mod program;
pub mod stats;
mod uplink;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::{Path, PathBuf},
};

use ipnet::IpNet;

use aya::{
    Ebpf, EbpfLoader,
    programs::{SchedClassifier, Xdp},
};
use gridnet_common::{maps::ALL_MAPS, verdict::Program};

pub use attach::{AttachMode, AttachPreference, Attachment, FILTER_HANDLE, FILTER_PRIORITY};
pub use bpffs::ensure_bpffs;
pub use maps::{ContainerIdentity, EndpointState};
pub use uplink::{XdpAttachMode, detach_xdp};

use crate::netlink::{Netlink, NetlinkError};
use program::Loaded;

/// Where the datapath is pinned unless configured otherwise.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/gridnet";

/// The compiled programs, built by `build.rs`.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gridnet-ebpf"));

/// The TC programs of the datapath, each attached to the ingress of its kind of interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TcProgram {
    /// On the host side of each container's veth.
    FromContainer,
    /// On each network's tunnel device.
    FromTunnel,
}

impl TcProgram {
    pub const fn program(self) -> Program {
        match self {
            Self::FromContainer => Program::TcFromContainer,
            Self::FromTunnel => Program::TcFromTunnel,
        }
    }
}

/// Errors of the datapath, each saying what the operator can do.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("pin root {path} is not usable: {reason}")]
    PinRoot { path: PathBuf, reason: String },
    #[error("cannot load the eBPF object (are you root, with BPF in the kernel?)")]
    Load(#[source] aya::EbpfError),
    #[error("cannot {action} program `{}`", program.name())]
    Program {
        action: &'static str,
        program: Program,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("cannot pin program `{}` at {path}", program.name())]
    Pin {
        program: Program,
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("the loaded object has no map `{name}` (agent and programs are out of step)")]
    MissingMap { name: &'static str },
    #[error("map `{name}`: cannot {action}")]
    Map {
        name: &'static str,
        action: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error(
        "the uplink guard filters ports of TCP and UDP only, not of protocol {protocol} (port {port})"
    )]
    PortProtocol { protocol: u8, port: u16 },
    #[error("cannot add the clsact qdisc on `{interface}`")]
    Qdisc {
        interface: String,
        #[source]
        source: aya::programs::tc::TcError,
    },
    #[error("cannot unpin the link of `{}` on `{interface}`", program.name())]
    Unpin {
        program: Program,
        interface: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// The datapath of this node, for the agent's lifetime.
pub struct Dataplane {
    pin_root: PathBuf,
    mode: AttachMode,
    netlink: Netlink,
    ebpf: Ebpf,
    tc: BTreeMap<TcProgram, Loaded<SchedClassifier>>,
    guard: Option<Loaded<Xdp>>,
    maps: maps::Maps,
    /// Programs put through the verifier since the handle was opened.
    loads: u64,
}

impl Dataplane {
    /// Opens the datapath pinned under `pin_root`: creates or reuses the pinned maps. No program
    /// is loaded until it is needed. `netlink` is the node's one netlink handle.
    pub fn open(
        pin_root: &Path,
        attach: AttachPreference,
        netlink: Netlink,
    ) -> Result<Self, DataplaneError> {
        ensure_bpffs(pin_root)?;
        let pin_err = |e: std::io::Error| DataplaneError::PinRoot {
            path: pin_root.to_owned(),
            reason: e.to_string(),
        };
        pins::adopt_earlier_layout(pin_root).map_err(pin_err)?;
        pins::create_dirs(pin_root).map_err(pin_err)?;
        let mut loader = EbpfLoader::new();
        // BTF map definitions carry no pinning: each map is given its pin here. The loader
        // reuses the map pinned there, or creates the map and pins it.
        for name in ALL_MAPS {
            loader.map_pin_path(name, pins::map_pin(pin_root, name));
        }
        let mut ebpf = loader.load(PROGRAMS).map_err(DataplaneError::Load)?;
        let maps = maps::Maps::take(&mut ebpf)?;
        Ok(Self {
            pin_root: pin_root.to_owned(),
            mode: AttachMode::resolve(attach),
            netlink,
            ebpf,
            tc: BTreeMap::new(),
            guard: None,
            maps,
            loads: 0,
        })
    }

    pub fn pin_root(&self) -> &Path {
        &self.pin_root
    }

    /// How TC programs are attached on this kernel.
    pub fn attach_mode(&self) -> AttachMode {
        self.mode
    }

    /// The programs loaded so far, with their kernel ids.
    pub fn loaded_programs(&self) -> Vec<(Program, u32)> {
        let tc = self.tc.iter().map(|(p, l)| (p.program(), l.id));
        tc.chain(self.guard.iter().map(|l| (Program::XdpUplink, l.id)))
            .collect()
    }

    /// How many programs this handle has loaded (each goes through the verifier once).
    pub fn program_loads(&self) -> u64 {
        self.loads
    }

    fn tc_program(
        &mut self,
        which: TcProgram,
    ) -> Result<&mut Loaded<SchedClassifier>, DataplaneError> {
        if !self.tc.contains_key(&which) {
            let loaded = program::load(&mut self.ebpf, &self.pin_root, which.program())?;
            self.loads += 1;
            self.tc.insert(which, loaded);
        }
        self.tc.get_mut(&which).ok_or(DataplaneError::Program {
            action: "keep",
            program: which.program(),
            source: aya::programs::ProgramError::NotLoaded,
        })
    }

    fn guard(&mut self) -> Result<&mut Loaded<Xdp>, DataplaneError> {
        if self.guard.is_none() {
            self.guard = Some(program::load(
                &mut self.ebpf,
                &self.pin_root,
                Program::XdpUplink,
            )?);
            self.loads += 1;
        }
        self.guard.as_mut().ok_or(DataplaneError::Program {
            action: "keep",
            program: Program::XdpUplink,
            source: aya::programs::ProgramError::NotLoaded,
        })
    }

    /// How `which` is attached to the ingress of `interface`. Loads the program if needed.
    pub async fn tc_attachment(
        &mut self,
        which: TcProgram,
        interface: &str,
        ifindex: u32,
    ) -> Result<Attachment, DataplaneError> {
        let mode = self.mode;
        let netlink = self.netlink.clone();
        let pin_root = self.pin_root.clone();
        let loaded = self.tc_program(which)?;
        attach::observe(
            mode,
            &netlink,
            &pin_root,
            loaded,
            which.program(),
            interface,
            ifindex,
        )
        .await
    }

    /// Makes `which` the program on the ingress of `interface`, replacing `found` in place.
    pub fn attach_tc(
        &mut self,
        which: TcProgram,
        interface: &str,
        found: Attachment,
    ) -> Result<(), DataplaneError> {
        let (mode, pin_root) = (self.mode, self.pin_root.clone());
        let loaded = self.tc_program(which)?;
        attach::attach(mode, &pin_root, loaded, which.program(), interface, found)
    }

    /// Interfaces with a pinned TCX link of `which`.
    pub fn tc_link_pins(&self, which: TcProgram) -> BTreeSet<String> {
        pins::link_pins(&self.pin_root, which.program())
    }

    /// Drops the pinned link of `which` on `interface` (its interface is gone or leaving).
    pub fn unpin_tc_link(&self, which: TcProgram, interface: &str) -> Result<(), DataplaneError> {
        pins::unpin_link(&self.pin_root, which.program(), interface).map_err(|source| {
            DataplaneError::Unpin {
                program: which.program(),
                interface: interface.to_owned(),
                source,
            }
        })
    }

    /// Whether the guard runs on `uplink` as this agent's program. Loads the guard if needed.
    pub fn guard_is_current(&mut self, uplink: &str) -> Result<bool, DataplaneError> {
        let pin_root = self.pin_root.clone();
        Ok(uplink::is_current(&pin_root, self.guard()?, uplink))
    }

    /// Attaches the guard to `uplink`; returns the XDP mode of a new attachment.
    pub fn attach_guard(&mut self, uplink: &str) -> Result<Option<XdpAttachMode>, DataplaneError> {
        let pin_root = self.pin_root.clone();
        uplink::attach(&pin_root, self.guard()?, uplink)
    }

    /// The guard's allow-list: (IP protocol, port).
    pub fn uplink_ports(&self) -> Result<BTreeSet<(u8, u16)>, DataplaneError> {
        self.maps.uplink_ports()
    }

    pub fn open_uplink_port(&mut self, protocol: u8, port: u16) -> Result<(), DataplaneError> {
        self.maps.open_uplink_port(protocol, port)
    }

    pub fn close_uplink_port(&mut self, protocol: u8, port: u16) -> Result<(), DataplaneError> {
        self.maps.close_uplink_port(protocol, port)
    }

    /// Whether the guard enforces its allow-list with this node's settings.
    pub fn guard_is_enforcing(&self) -> bool {
        self.maps.uplink_config() == Some(uplink::enforcing_config())
    }

    /// Turns the guard's enforcement on, with this node's ephemeral port range.
    pub fn enforce_guard(&mut self) -> Result<(), DataplaneError> {
        self.maps.set_uplink_config(uplink::enforcing_config())
    }

    /// The containers in the datapath, by the ifindex of their host-side interface.
    pub fn containers(&self) -> Result<BTreeMap<u32, ContainerIdentity>, DataplaneError> {
        self.maps.containers()
    }

    /// The datapath's endpoints: (network id, address) -> the host-side interface behind it.
    pub fn endpoints(&self) -> Result<BTreeMap<(u32, IpAddr), EndpointState>, DataplaneError> {
        self.maps.endpoints()
    }

    /// Writes a container's identity and its two endpoints, marked `down` when its link is.
    pub fn set_container(
        &mut self,
        ifindex: u32,
        identity: &ContainerIdentity,
        down: bool,
    ) -> Result<(), DataplaneError> {
        self.maps.set_container(ifindex, identity, down)
    }

    /// Forgets the container behind host interface `ifindex`.
    pub fn forget_interface(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        self.maps.forget_interface(ifindex)
    }

    /// Forgets the endpoint of `address` in network `network_id`.
    pub fn forget_endpoint(
        &mut self,
        network_id: u32,
        address: IpAddr,
    ) -> Result<(), DataplaneError> {
        self.maps.forget_endpoint(network_id, address)
    }

    /// Routes to other nodes' subnets: (network id, prefix) -> tunnel ifindex.
    pub fn routes(&self) -> Result<BTreeMap<(u32, IpNet), u32>, DataplaneError> {
        self.maps.routes()
    }

    /// Sends what network `network_id` addresses to `prefix` into the tunnel device `tunnel`.
    pub fn set_route(
        &mut self,
        network_id: u32,
        prefix: IpNet,
        tunnel: u32,
    ) -> Result<(), DataplaneError> {
        self.maps.set_route(network_id, prefix, tunnel)
    }

    pub fn remove_route(&mut self, network_id: u32, prefix: IpNet) -> Result<(), DataplaneError> {
        self.maps.remove_route(network_id, prefix)
    }

    /// Tunnel devices and their networks: ifindex -> network id.
    pub fn tunnels(&self) -> Result<BTreeMap<u32, u32>, DataplaneError> {
        self.maps.tunnels()
    }

    /// Tells `tc_from_tunnel` that device `ifindex` carries network `network_id`.
    pub fn set_tunnel(&mut self, ifindex: u32, network_id: u32) -> Result<(), DataplaneError> {
        self.maps.set_tunnel(ifindex, network_id)
    }

    pub fn forget_tunnel(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        self.maps.forget_tunnel(ifindex)
    }

    /// Network ids by network name.
    pub fn networks(&self) -> Result<BTreeMap<String, u32>, DataplaneError> {
        self.maps.networks()
    }

    pub fn set_network(&mut self, id: u32, name: &str) -> Result<(), DataplaneError> {
        self.maps.set_network(id, name)
    }

    pub fn remove_network(&mut self, id: u32) -> Result<(), DataplaneError> {
        self.maps.remove_network(id)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use gridnet_common::maps::ALL_MAPS;

    use super::PROGRAMS;

    /// A map of the object missing from `ALL_MAPS` would get no pin: a new map on every start,
    /// and a restarted agent would lose what the datapath holds.
    #[test]
    fn every_map_of_the_object_is_pinned_and_carries_btf() -> Result<(), aya_obj::ParseError> {
        let object = aya_obj::Object::parse(PROGRAMS)?;
        let gridnet: BTreeSet<&str> = object
            .maps
            .keys()
            .map(String::as_str)
            .filter(|name| name.starts_with("GRIDNET_"))
            .collect();
        assert_eq!(gridnet, BTreeSet::from(ALL_MAPS));
        for name in ALL_MAPS {
            assert!(
                matches!(object.maps[name], aya_obj::Map::Btf(_)),
                "{name} is not a BTF map definition"
            );
        }
        Ok(())
    }
}

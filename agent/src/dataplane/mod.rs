//! The eBPF datapath: loading, pinning, attaching, typed maps, statistics.
//!
//! [`Dataplane`] owns the loaded object and the typed maps; callers never see map names.
//! Everything lives under a pin root on a bpffs (default [`DEFAULT_PIN_ROOT`]):
//!
//! ```text
//! <pin root>/maps/GRIDNET_*        the maps, pinned by name (reused by every load)
//! <pin root>/tc_from_container     the program attached to container veths
//! ```
//!
//! Attachments are TCX links (pinned under `<pin root>/tcx/`) where the kernel has TCX, else
//! netlink cls_bpf filters; both outlive the agent, so forwarding goes on across restarts. A
//! restarted agent finds the attachments, compares program tags, and leaves identical programs
//! in place.
//!
//! # Minimum kernel version
//! 5.10 (`bpf_redirect_peer`); tested on 6.1, 6.12 and 6.18.

mod attach;
mod bpffs;
pub mod stats;
mod uplink;

use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData},
    programs::{
        SchedClassifier, TcAttachType, Xdp,
        tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
    },
};
use gridnet_common::maps::{
    Endpoint, EndpointKey, Iface, MAP_ENDPOINTS, MAP_IFACES, MAP_NETWORKS, MAP_UPLINK_CONFIG,
    MAP_UPLINK_PORTS, NetworkName, PortKey, UplinkConfig,
};

pub use attach::{AttachMode, AttachPreference};
pub use bpffs::ensure_bpffs;
pub use uplink::{XdpAttachMode, detach_xdp};

/// Where the datapath is pinned unless configured otherwise.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/gridnet";

/// The program on each container veth, and its pin's file name.
pub const TC_FROM_CONTAINER: &str = "tc_from_container";
/// The guard on each uplink, and its pin's file name.
pub const XDP_UPLINK: &str = "xdp_uplink";

/// Priority of gridnet's filter on a container veth: first, before anything an operator adds.
pub const FILTER_PRIORITY: u16 = 1;
/// Handle of gridnet's filter at [`FILTER_PRIORITY`].
pub const FILTER_HANDLE: u32 = 1;

/// The compiled programs, built by `build.rs`.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gridnet-ebpf"));

/// Errors of the datapath, each saying what the operator can do.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("pin root {path} is not usable: {reason}")]
    PinRoot { path: PathBuf, reason: String },
    #[error("cannot load the eBPF programs (are you root, with BPF and BTF in the kernel?)")]
    Load(#[source] aya::EbpfError),
    #[error("cannot {action} program `{program}`")]
    Program {
        action: &'static str,
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("cannot pin program `{program}` at {path}")]
    Pin {
        program: &'static str,
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
    #[error("cannot add the clsact qdisc on `{interface}`")]
    Qdisc {
        interface: String,
        #[source]
        source: aya::programs::tc::TcError,
    },
}

/// The loaded datapath of this node.
pub struct Dataplane {
    pin_root: PathBuf,
    mode: AttachMode,
    program: SchedClassifier,
    tag: [u8; 8],
    ifaces: HashMap<MapData, u32, Iface>,
    endpoints: HashMap<MapData, EndpointKey, Endpoint>,
    networks: HashMap<MapData, u32, NetworkName>,
    xdp: Xdp,
    uplink_ports: HashMap<MapData, PortKey, u32>,
    uplink_config: Array<MapData, UplinkConfig>,
    /// Keeps the maps open (their pins keep them alive too).
    _ebpf: Ebpf,
}

impl Dataplane {
    /// Loads the programs, reusing the maps and the program pinned under `pin_root`.
    pub fn open(pin_root: &Path, attach: AttachPreference) -> Result<Self, DataplaneError> {
        ensure_bpffs(pin_root)?;
        let maps_dir = pin_root.join("maps");
        std::fs::create_dir_all(&maps_dir).map_err(|e| DataplaneError::PinRoot {
            path: maps_dir.clone(),
            reason: e.to_string(),
        })?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&maps_dir)
            .load(PROGRAMS)
            .map_err(DataplaneError::Load)?;
        let (program, tag) = adopt_or_pin!(
            ebpf,
            pin_root,
            TC_FROM_CONTAINER,
            SchedClassifier,
            |p: &mut SchedClassifier| p.load(),
            SchedClassifier::from_pin
        );
        let (xdp, _) = adopt_or_pin!(
            ebpf,
            pin_root,
            XDP_UPLINK,
            Xdp,
            |p: &mut Xdp| p.load(),
            |path| Xdp::from_pin(path, aya_obj::programs::XdpAttachType::Interface)
        );
        Ok(Self {
            pin_root: pin_root.to_owned(),
            mode: AttachMode::resolve(attach),
            program,
            tag,
            ifaces: take_map(&mut ebpf, MAP_IFACES)?,
            endpoints: take_map(&mut ebpf, MAP_ENDPOINTS)?,
            networks: take_map(&mut ebpf, MAP_NETWORKS)?,
            xdp,
            uplink_ports: take_map(&mut ebpf, MAP_UPLINK_PORTS)?,
            uplink_config: {
                let map = ebpf
                    .take_map(MAP_UPLINK_CONFIG)
                    .ok_or(DataplaneError::MissingMap {
                        name: MAP_UPLINK_CONFIG,
                    })?;
                Array::try_from(map).map_err(map_err(MAP_UPLINK_CONFIG, "open"))?
            },
            _ebpf: ebpf,
        })
    }

    pub fn pin_root(&self) -> &Path {
        &self.pin_root
    }

    /// How programs are attached on this kernel.
    pub fn attach_mode(&self) -> AttachMode {
        self.mode
    }

    /// In TCX mode: makes sure `interface` runs the current program; returns the change made.
    pub fn ensure_tcx(&mut self, interface: &str) -> Result<Option<String>, DataplaneError> {
        attach::ensure_tcx(&mut self.program, self.tag, &self.pin_root, interface)
    }

    /// In TCX mode: drops the link pins of interfaces other than `keep`.
    pub fn forget_tcx_links(&self, keep: &std::collections::BTreeSet<String>) -> Vec<String> {
        attach::forget_tcx_links(&self.pin_root, keep)
    }

    /// The tag (instruction hash) of the program attached to container veths.
    pub fn program_tag(&self) -> [u8; 8] {
        self.tag
    }

    /// In netlink mode: attaches `tc_from_container` to the ingress of `interface` (in the
    /// calling thread's namespace). `replace` swaps an existing gridnet filter atomically, with no moment in
    /// which the container's packets go unfiltered.
    pub fn attach(&mut self, interface: &str, replace: bool) -> Result<(), DataplaneError> {
        let handle = TcHandle::from(FILTER_HANDLE);
        let link_id = if replace {
            let existing = SchedClassifierLink::attached(
                interface,
                TcAttachType::Ingress,
                FILTER_PRIORITY,
                handle,
                None,
            )
            .map_err(|source| DataplaneError::Qdisc {
                interface: interface.to_owned(),
                source: tc::TcError::IoError(source),
            })?;
            self.program.attach_to_link(existing)
        } else {
            match tc::qdisc_add_clsact(interface) {
                Ok(()) => {}
                Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(source) => {
                    return Err(DataplaneError::Qdisc {
                        interface: interface.to_owned(),
                        source,
                    });
                }
            }
            self.program.attach_with_options(
                interface,
                TcAttachType::Ingress,
                TcAttachOptions::Netlink(NlOptions {
                    priority: FILTER_PRIORITY,
                    handle,
                    classid: None,
                }),
            )
        }
        .map_err(|source| DataplaneError::Program {
            action: "attach",
            program: TC_FROM_CONTAINER,
            source,
        })?;
        // The filter must outlive this process: take the link out of aya's bookkeeping, which
        // would detach it on drop. A netlink link holds no file descriptor, so nothing leaks.
        let link = self
            .program
            .take_link(link_id)
            .map_err(|source| DataplaneError::Program {
                action: "keep the attachment of",
                program: TC_FROM_CONTAINER,
                source,
            })?;
        std::mem::forget(link);
        Ok(())
    }

    /// Makes sure the uplink guard runs on `interface`; returns the change made, if any.
    pub fn ensure_xdp(&mut self, interface: &str) -> Result<Option<String>, DataplaneError> {
        uplink::ensure_xdp(&mut self.xdp, &self.pin_root, interface)
    }

    /// Makes the guard's allow-list exactly `ports` and turns enforcement on; returns the
    /// changes made.
    pub fn set_uplink_ports(
        &mut self,
        ports: &std::collections::BTreeSet<(u8, u16)>,
    ) -> Result<Vec<String>, DataplaneError> {
        let want = uplink::port_keys(ports);
        let have: std::collections::BTreeSet<(u8, u16)> = self
            .uplink_ports
            .keys()
            .collect::<Result<Vec<PortKey>, _>>()
            .map_err(map_err(MAP_UPLINK_PORTS, "read"))?
            .into_iter()
            .map(|k| (k.protocol, u16::from_be_bytes(k.port)))
            .collect();
        let mut changes = Vec::new();
        for key in &want {
            let entry = (key.protocol, u16::from_be_bytes(key.port));
            if !have.contains(&entry) {
                self.uplink_ports
                    .insert(*key, 1, 0)
                    .map_err(map_err(MAP_UPLINK_PORTS, "insert"))?;
                changes.push(format!(
                    "uplink guard: open {} port {}",
                    protocol_name(entry.0),
                    entry.1
                ));
            }
        }
        for &(protocol, port) in have.difference(ports) {
            ignore_missing(self.uplink_ports.remove(&PortKey::new(protocol, port)))
                .map_err(map_err(MAP_UPLINK_PORTS, "remove"))?;
            changes.push(format!(
                "uplink guard: close {} port {port}",
                protocol_name(protocol)
            ));
        }
        let config = uplink::enforcing_config();
        if self.uplink_config.get(&0, 0).ok() != Some(config) {
            self.uplink_config
                .set(0, config, 0)
                .map_err(map_err(MAP_UPLINK_CONFIG, "write"))?;
            changes.push(format!(
                "uplink guard: enforcing, replies expected on ports {}-{}",
                config.ephemeral_low, config.ephemeral_high
            ));
        }
        Ok(changes)
    }

    /// All container interfaces in the datapath.
    pub fn ifaces(&self) -> Result<Vec<(u32, Iface)>, DataplaneError> {
        collect(MAP_IFACES, self.ifaces.iter())
    }

    pub fn set_iface(&mut self, ifindex: u32, iface: Iface) -> Result<(), DataplaneError> {
        self.ifaces
            .insert(ifindex, iface, 0)
            .map_err(map_err(MAP_IFACES, "insert"))
    }

    pub fn remove_iface(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        ignore_missing(self.ifaces.remove(&ifindex)).map_err(map_err(MAP_IFACES, "remove"))
    }

    /// All endpoints in the datapath.
    pub fn endpoints(&self) -> Result<Vec<(EndpointKey, Endpoint)>, DataplaneError> {
        collect(MAP_ENDPOINTS, self.endpoints.iter())
    }

    pub fn set_endpoint(
        &mut self,
        key: EndpointKey,
        endpoint: Endpoint,
    ) -> Result<(), DataplaneError> {
        self.endpoints
            .insert(key, endpoint, 0)
            .map_err(map_err(MAP_ENDPOINTS, "insert"))
    }

    pub fn remove_endpoint(&mut self, key: &EndpointKey) -> Result<(), DataplaneError> {
        ignore_missing(self.endpoints.remove(key)).map_err(map_err(MAP_ENDPOINTS, "remove"))
    }

    /// Network ids and names.
    pub fn networks(&self) -> Result<Vec<(u32, NetworkName)>, DataplaneError> {
        collect(MAP_NETWORKS, self.networks.iter())
    }

    pub fn set_network(&mut self, id: u32, name: &str) -> Result<(), DataplaneError> {
        self.networks
            .insert(id, NetworkName::new(name), 0)
            .map_err(map_err(MAP_NETWORKS, "insert"))
    }

    pub fn remove_network(&mut self, id: u32) -> Result<(), DataplaneError> {
        ignore_missing(self.networks.remove(&id)).map_err(map_err(MAP_NETWORKS, "remove"))
    }
}

/// Loads program `$name` and returns the pinned instance to attach, with its tag: the one
/// already pinned when it has the same instructions (so a restart changes nothing), else the new
/// one, pinned in its place (an upgrade).
macro_rules! adopt_or_pin {
    ($ebpf:expr, $pin_root:expr, $name:expr, $ty:ty, $load:expr, $from_pin:expr) => {{
        let program_err = |action| {
            move |source| DataplaneError::Program {
                action,
                program: $name,
                source,
            }
        };
        let fresh: &mut $ty = $ebpf
            .program_mut($name)
            .ok_or(DataplaneError::Program {
                action: "find",
                program: $name,
                source: aya::programs::ProgramError::NotLoaded,
            })?
            .try_into()
            .map_err(program_err("use"))?;
        ($load)(&mut *fresh).map_err(program_err("load"))?;
        let tag = fresh
            .info()
            .map_err(program_err("inspect"))?
            .tag()
            .to_be_bytes();
        let pin = $pin_root.join($name);
        let pinned_tag = ($from_pin)(&pin)
            .ok()
            .and_then(|p: $ty| p.info().ok())
            .map(|i| i.tag().to_be_bytes());
        if pinned_tag != Some(tag) {
            let _ = std::fs::remove_file(&pin);
            fresh.pin(&pin).map_err(|source| DataplaneError::Pin {
                program: $name,
                path: pin.clone(),
                source,
            })?;
        }
        (($from_pin)(&pin).map_err(program_err("reopen"))?, tag)
    }};
}
use adopt_or_pin;

/// Creates the directory a link pin goes into (`tcx/`, `xdp/` under the pin root).
fn link_pin_dir(pin: &Path, pin_root: &Path) -> Result<(), DataplaneError> {
    std::fs::create_dir_all(pin.parent().unwrap_or(pin_root)).map_err(|e| DataplaneError::PinRoot {
        path: pin.to_owned(),
        reason: e.to_string(),
    })
}

fn take_map<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<HashMap<MapData, K, V>, DataplaneError> {
    let map = ebpf
        .take_map(name)
        .ok_or(DataplaneError::MissingMap { name })?;
    HashMap::try_from(map).map_err(map_err(name, "open"))
}

fn collect<K, V>(
    name: &'static str,
    iter: impl Iterator<Item = Result<(K, V), aya::maps::MapError>>,
) -> Result<Vec<(K, V)>, DataplaneError> {
    iter.collect::<Result<_, _>>()
        .map_err(map_err(name, "read"))
}

fn map_err(
    name: &'static str,
    action: &'static str,
) -> impl FnOnce(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map {
        name,
        action,
        source,
    }
}

fn ignore_missing(result: Result<(), aya::maps::MapError>) -> Result<(), aya::maps::MapError> {
    match result {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn protocol_name(protocol: u8) -> &'static str {
    match protocol {
        6 => "tcp",
        17 => "udp",
        _ => "ip",
    }
}

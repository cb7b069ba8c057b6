//! The datapath's maps, typed, behind domain operations: the raw map values (with their padding
//! fields and IPv4-mapped keys) are built here and nowhere else.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use aya::{
    Ebpf,
    maps::{
        Array, HashMap, MapData, MapError,
        lpm_trie::{Key, LpmTrie},
    },
};
use gridnet_common::maps::{
    ENDPOINT_DOWN, Endpoint, EndpointKey, Iface, MAP_ENDPOINTS, MAP_IFACES, MAP_NETWORKS,
    MAP_ROUTES, MAP_TUNNELS, MAP_UPLINK_CONFIG, MAP_UPLINK_PORT_BITS, MAP_UPLINK_PORTS,
    NetworkName, PortBit, PortBitmap, PortKey, ROUTE_V4_OFFSET_BITS, ROUTE_V6_OFFSET_BITS, Route,
    RouteKey, UplinkConfig,
};
use ipnet::IpNet;

use super::DataplaneError;

/// An endpoint as the datapath holds it: the host-side interface behind it, and whether that
/// interface has lost its link (the container's side is down), so packets to it are dropped
/// and counted instead of lost in a redirect that reports success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointState {
    pub ifindex: u32,
    pub down: bool,
}

/// A container as the datapath knows it: the network of its host-side interface, and the only
/// addresses and MAC it may send from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContainerIdentity {
    pub network_id: u32,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    pub mac: [u8; 6],
}

impl ContainerIdentity {
    fn iface(&self) -> Iface {
        Iface {
            network_id: self.network_id,
            ipv4: self.ipv4.octets(),
            ipv6: self.ipv6.octets(),
            mac: self.mac,
            _pad: [0; 2],
        }
    }

    fn from_iface(iface: &Iface) -> Self {
        Self {
            network_id: iface.network_id,
            ipv4: iface.ipv4.into(),
            ipv6: iface.ipv6.into(),
            mac: iface.mac,
        }
    }
}

fn endpoint_key(network_id: u32, address: IpAddr) -> EndpointKey {
    match address {
        IpAddr::V4(a) => EndpointKey::v4(network_id, a.octets()),
        IpAddr::V6(a) => EndpointKey::v6(network_id, a.octets()),
    }
}

fn endpoint_address(key: &EndpointKey) -> IpAddr {
    let v6 = Ipv6Addr::from(key.addr);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// The trie key of a route to `prefix` in network `network_id`.
fn route_key(network_id: u32, prefix: IpNet) -> Key<RouteKey> {
    match prefix {
        IpNet::V4(net) => Key::new(
            ROUTE_V4_OFFSET_BITS + u32::from(net.prefix_len()),
            RouteKey::v4(network_id, net.network().octets()),
        ),
        IpNet::V6(net) => Key::new(
            ROUTE_V6_OFFSET_BITS + u32::from(net.prefix_len()),
            RouteKey::v6(network_id, net.network().octets()),
        ),
    }
}

/// The network and prefix of a trie key; `None` for a key gridnet would not write.
fn route_of(key: &Key<RouteKey>) -> Option<(u32, IpNet)> {
    let data = key.data();
    let v6 = Ipv6Addr::from(data.addr);
    let bits = key.prefix_len().checked_sub(ROUTE_V6_OFFSET_BITS)?;
    let prefix = match v6.to_ipv4_mapped() {
        Some(v4) if bits >= ROUTE_V4_OFFSET_BITS - ROUTE_V6_OFFSET_BITS => {
            let len = bits - (ROUTE_V4_OFFSET_BITS - ROUTE_V6_OFFSET_BITS);
            IpNet::new(IpAddr::V4(v4), u8::try_from(len).ok()?).ok()?
        }
        _ => IpNet::new(IpAddr::V6(v6), u8::try_from(bits).ok()?).ok()?,
    };
    Some((data.network_id(), prefix))
}

pub struct Maps {
    ifaces: HashMap<MapData, u32, Iface>,
    routes: LpmTrie<MapData, RouteKey, Route>,
    tunnels: HashMap<MapData, u32, u32>,
    endpoints: HashMap<MapData, EndpointKey, Endpoint>,
    networks: HashMap<MapData, u32, NetworkName>,
    uplink_ports: HashMap<MapData, PortKey, u32>,
    uplink_port_bits: Array<MapData, u64>,
    uplink_config: Array<MapData, UplinkConfig>,
}

impl Maps {
    /// The maps of `ebpf`, with the guard's port bitmap made to match its list.
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, DataplaneError> {
        let mut maps = Self {
            ifaces: take_hash(ebpf, MAP_IFACES)?,
            routes: {
                let map = ebpf
                    .take_map(MAP_ROUTES)
                    .ok_or(DataplaneError::MissingMap { name: MAP_ROUTES })?;
                LpmTrie::try_from(map).map_err(map_err(MAP_ROUTES, "open"))?
            },
            tunnels: take_hash(ebpf, MAP_TUNNELS)?,
            endpoints: take_hash(ebpf, MAP_ENDPOINTS)?,
            networks: take_hash(ebpf, MAP_NETWORKS)?,
            uplink_ports: take_hash(ebpf, MAP_UPLINK_PORTS)?,
            uplink_port_bits: take_array(ebpf, MAP_UPLINK_PORT_BITS)?,
            uplink_config: take_array(ebpf, MAP_UPLINK_CONFIG)?,
        };
        maps.sync_uplink_port_bits()?;
        Ok(maps)
    }

    pub fn containers(&self) -> Result<BTreeMap<u32, ContainerIdentity>, DataplaneError> {
        self.ifaces
            .iter()
            .map(|entry| entry.map(|(i, iface)| (i, ContainerIdentity::from_iface(&iface))))
            .collect::<Result<_, _>>()
            .map_err(map_err(MAP_IFACES, "read"))
    }

    pub fn endpoints(&self) -> Result<BTreeMap<(u32, IpAddr), EndpointState>, DataplaneError> {
        self.endpoints
            .iter()
            .map(|entry| {
                entry.map(|(key, e)| {
                    let state = EndpointState {
                        ifindex: e.ifindex,
                        down: e.flags & ENDPOINT_DOWN != 0,
                    };
                    ((key.network_id, endpoint_address(&key)), state)
                })
            })
            .collect::<Result<_, _>>()
            .map_err(map_err(MAP_ENDPOINTS, "read"))
    }

    /// The identity goes first: no packet of the container is judged without it, and its
    /// endpoints are only reachable once it is there.
    pub fn set_container(
        &mut self,
        ifindex: u32,
        identity: &ContainerIdentity,
        down: bool,
    ) -> Result<(), DataplaneError> {
        self.ifaces
            .insert(ifindex, identity.iface(), 0)
            .map_err(map_err(MAP_IFACES, "insert"))?;
        let endpoint = Endpoint {
            ifindex,
            mac: identity.mac,
            flags: if down { ENDPOINT_DOWN } else { 0 },
            _pad: 0,
        };
        for address in [IpAddr::V4(identity.ipv4), IpAddr::V6(identity.ipv6)] {
            self.endpoints
                .insert(endpoint_key(identity.network_id, address), endpoint, 0)
                .map_err(map_err(MAP_ENDPOINTS, "insert"))?;
        }
        Ok(())
    }

    pub fn forget_interface(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        ignore_missing(self.ifaces.remove(&ifindex)).map_err(map_err(MAP_IFACES, "remove"))
    }

    pub fn forget_endpoint(
        &mut self,
        network_id: u32,
        address: IpAddr,
    ) -> Result<(), DataplaneError> {
        ignore_missing(self.endpoints.remove(&endpoint_key(network_id, address)))
            .map_err(map_err(MAP_ENDPOINTS, "remove"))
    }

    pub fn networks(&self) -> Result<BTreeMap<String, u32>, DataplaneError> {
        self.networks
            .iter()
            .map(|entry| entry.map(|(id, name)| (name.as_str().to_owned(), id)))
            .collect::<Result<_, _>>()
            .map_err(map_err(MAP_NETWORKS, "read"))
    }

    pub fn set_network(&mut self, id: u32, name: &str) -> Result<(), DataplaneError> {
        self.networks
            .insert(id, NetworkName::new(name), 0)
            .map_err(map_err(MAP_NETWORKS, "insert"))
    }

    pub fn remove_network(&mut self, id: u32) -> Result<(), DataplaneError> {
        ignore_missing(self.networks.remove(&id)).map_err(map_err(MAP_NETWORKS, "remove"))
    }

    pub fn routes(&self) -> Result<BTreeMap<(u32, IpNet), u32>, DataplaneError> {
        let mut routes = BTreeMap::new();
        for entry in self.routes.iter() {
            let (key, route) = entry.map_err(map_err(MAP_ROUTES, "read"))?;
            if let Some(route_key) = route_of(&key) {
                routes.insert(route_key, route.ifindex);
            }
        }
        Ok(routes)
    }

    pub fn set_route(
        &mut self,
        network_id: u32,
        prefix: IpNet,
        tunnel: u32,
    ) -> Result<(), DataplaneError> {
        self.routes
            .insert(&route_key(network_id, prefix), Route { ifindex: tunnel }, 0)
            .map_err(map_err(MAP_ROUTES, "insert"))
    }

    pub fn remove_route(&mut self, network_id: u32, prefix: IpNet) -> Result<(), DataplaneError> {
        ignore_missing(self.routes.remove(&route_key(network_id, prefix)))
            .map_err(map_err(MAP_ROUTES, "remove"))
    }

    pub fn tunnels(&self) -> Result<BTreeMap<u32, u32>, DataplaneError> {
        self.tunnels
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(MAP_TUNNELS, "read"))
    }

    pub fn set_tunnel(&mut self, ifindex: u32, network_id: u32) -> Result<(), DataplaneError> {
        self.tunnels
            .insert(ifindex, network_id, 0)
            .map_err(map_err(MAP_TUNNELS, "insert"))
    }

    pub fn forget_tunnel(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        ignore_missing(self.tunnels.remove(&ifindex)).map_err(map_err(MAP_TUNNELS, "remove"))
    }

    pub fn uplink_ports(&self) -> Result<BTreeSet<(u8, u16)>, DataplaneError> {
        self.uplink_ports
            .keys()
            .map(|key| key.map(|k| (k.protocol, u16::from_be_bytes(k.port))))
            .collect::<Result<_, _>>()
            .map_err(map_err(MAP_UPLINK_PORTS, "read"))
    }

    /// Lets (protocol, port) in: the list records it first, then the guard's bitmap, so that a
    /// set bit always has its entry in the list (which [`Maps::take`] restores the bits from).
    pub fn open_uplink_port(&mut self, protocol: u8, port: u16) -> Result<(), DataplaneError> {
        let bit = port_bit(protocol, port)?;
        self.uplink_ports
            .insert(PortKey::new(protocol, port), 1, 0)
            .map_err(map_err(MAP_UPLINK_PORTS, "insert"))?;
        self.set_uplink_port_bit(bit, true)
    }

    /// Shuts (protocol, port) out: the guard's bit first, then the list's entry.
    pub fn close_uplink_port(&mut self, protocol: u8, port: u16) -> Result<(), DataplaneError> {
        let bit = port_bit(protocol, port)?;
        self.set_uplink_port_bit(bit, false)?;
        ignore_missing(self.uplink_ports.remove(&PortKey::new(protocol, port)))
            .map_err(map_err(MAP_UPLINK_PORTS, "remove"))
    }

    fn set_uplink_port_bit(&mut self, bit: PortBit, set: bool) -> Result<(), DataplaneError> {
        let word = self
            .uplink_port_bits
            .get(&bit.word, 0)
            .map_err(map_err(MAP_UPLINK_PORT_BITS, "read"))?;
        let word = if set {
            word | bit.mask
        } else {
            word & !bit.mask
        };
        self.uplink_port_bits
            .set(bit.word, word, 0)
            .map_err(map_err(MAP_UPLINK_PORT_BITS, "write"))
    }

    /// Makes the guard's bitmap hold exactly the list's ports. They part when the bitmap is new
    /// next to a list an older agent filled, or when the agent stopped between the two writes
    /// of an open or close; only the words that differ are written, so the guard never sees a
    /// port it keeps closed for a moment.
    fn sync_uplink_port_bits(&mut self) -> Result<(), DataplaneError> {
        let mut wanted = PortBitmap::default();
        for (protocol, port) in self.uplink_ports()? {
            // Only TCP and UDP have ports the guard checks; the agent writes no others.
            wanted.insert(protocol, port);
        }
        for (index, &word) in (0u32..).zip(wanted.words()) {
            let current = self
                .uplink_port_bits
                .get(&index, 0)
                .map_err(map_err(MAP_UPLINK_PORT_BITS, "read"))?;
            if current != word {
                self.uplink_port_bits
                    .set(index, word, 0)
                    .map_err(map_err(MAP_UPLINK_PORT_BITS, "write"))?;
            }
        }
        Ok(())
    }

    pub fn uplink_config(&self) -> Option<UplinkConfig> {
        self.uplink_config.get(&0, 0).ok()
    }

    pub fn set_uplink_config(&mut self, config: UplinkConfig) -> Result<(), DataplaneError> {
        self.uplink_config
            .set(0, config, 0)
            .map_err(map_err(MAP_UPLINK_CONFIG, "write"))
    }
}

fn take_hash<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<HashMap<MapData, K, V>, DataplaneError> {
    let map = ebpf
        .take_map(name)
        .ok_or(DataplaneError::MissingMap { name })?;
    HashMap::try_from(map).map_err(map_err(name, "open"))
}

fn take_array<V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<Array<MapData, V>, DataplaneError> {
    let map = ebpf
        .take_map(name)
        .ok_or(DataplaneError::MissingMap { name })?;
    Array::try_from(map).map_err(map_err(name, "open"))
}

/// The guard's bit for (protocol, port).
fn port_bit(protocol: u8, port: u16) -> Result<PortBit, DataplaneError> {
    PortBit::of(protocol, port).ok_or(DataplaneError::PortProtocol { protocol, port })
}

fn map_err(name: &'static str, action: &'static str) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map {
        name,
        action,
        source,
    }
}

fn ignore_missing(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

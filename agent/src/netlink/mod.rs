//! Kernel network objects through rtnetlink: namespaces, veths, addresses, routes, tc filters.
//!
//! One [`Netlink`] talks to one network namespace: the one its socket was opened in.

mod netns;
pub mod sysctl;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::atomic::{AtomicU64, Ordering},
};

use futures::TryStreamExt as _;
use ipnet::IpNet;
use rtnetlink::{
    Handle, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder,
    packet_route::{
        address::{AddressAttribute, AddressFlags, AddressMessage},
        link::{
            InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, LinkXdp,
            XdpAttached,
        },
        route::{RouteAttribute, RouteMessage},
        tc::{TcAttribute, TcFilterBpfOption, TcOption},
    },
};

pub use netns::{NETNS_DIR, NamespaceState, Netns, NetnsError, is_plain_name};

/// Errors of netlink operations, naming the object concerned.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket")]
    Connect(#[source] std::io::Error),
    #[error("cannot enter network namespace `{name}`")]
    Enter {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink: cannot {action} `{object}`")]
    Request {
        action: &'static str,
        object: String,
        #[source]
        source: rtnetlink::Error,
    },
}

/// A link as the agent needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub up: bool,
    /// How an XDP program runs on it, if one does: `native`, `generic`, `offload`.
    pub xdp: Option<&'static str>,
    /// Whether it is one end of a veth pair.
    pub veth: bool,
    /// Whether it has a carrier (`IFF_LOWER_UP`): a veth loses it when its peer goes down.
    pub carrier: bool,
    pub mtu: Option<u32>,
    /// Its alias (`IFLA_IFALIAS`), if it has a non-empty one.
    pub alias: Option<String>,
}

/// A BPF tc filter found on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BpfFilter {
    pub priority: u16,
    pub handle: u32,
    pub tag: Option<[u8; 8]>,
}

/// A netlink connection bound to one network namespace.
#[derive(Clone, Debug)]
pub struct Netlink {
    handle: Handle,
}

/// How many netlink sockets this process has opened, for `gridnet status`: a pass over an
/// unchanged plan must open none.
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// How many netlink sockets this process has opened so far.
pub fn connections_opened() -> u64 {
    CONNECTIONS.load(Ordering::Relaxed)
}

impl Netlink {
    /// A connection in the calling thread's namespace. Needs a tokio runtime.
    pub fn connect() -> Result<Self, NetlinkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Connect)?;
        CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// A stream that yields whenever a link of the calling thread's namespace changes (comes,
    /// goes, goes up or down, loses or finds its carrier), on a socket of its own subscribed to
    /// link notifications. Needs a tokio runtime.
    pub fn link_events() -> Result<impl futures::Stream<Item = ()> + Unpin, NetlinkError> {
        let (connection, _handle, messages) =
            rtnetlink::new_multicast_connection(&[rtnetlink::MulticastGroup::Link])
                .map_err(NetlinkError::Connect)?;
        CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(connection);
        Ok(futures::StreamExt::map(messages, |_| ()))
    }

    /// A connection in `ns`. Needs a tokio runtime.
    pub fn connect_in(ns: &Netns) -> Result<Self, NetlinkError> {
        ns.enter(Self::connect)
            .map_err(|source| NetlinkError::Enter {
                name: ns.name().to_owned(),
                source,
            })?
    }

    /// The link called `name`, if there is one.
    pub async fn link(&self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(Some(message)) => Ok(Some(link_of(&message))),
            // The kernel answers an unknown name with ENODEV.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Ok(None) => Ok(None),
            Err(source) => Err(request("look up link", name, source)),
        }
    }

    /// All links whose names start with `prefix`.
    pub async fn links(&self, prefix: &str) -> Result<Vec<Link>, NetlinkError> {
        let messages: Vec<_> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|source| request("list", "links", source))?;
        Ok(messages
            .iter()
            .map(link_of)
            .filter(|l| l.name.starts_with(prefix))
            .collect())
    }

    /// Creates a veth pair: `host` here with MTU `host_mtu`, and `peer` with `peer_mac` and MTU
    /// `peer_mtu` directly inside `peer_ns`.
    pub async fn add_veth(
        &self,
        (host, host_mtu): (&str, u32),
        (peer, peer_mtu): (&str, u32),
        peer_mac: [u8; 6],
        peer_ns: &Netns,
    ) -> Result<(), NetlinkError> {
        use std::os::fd::AsRawFd as _;
        let peer_message = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_owned())
            .address(peer_mac.to_vec())
            .mtu(peer_mtu)
            .setns_by_fd(peer_ns.file().as_raw_fd())
            .build();
        let message = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name(host.to_owned())
            .mtu(host_mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_message)))
            .build();
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(|source| request("create veth", host, source))
    }

    /// Sets a link's MAC address.
    pub async fn set_mac(&self, index: u32, mac: [u8; 6]) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index).address(mac.to_vec());
        self.set_link(message.build(), "set the MAC of", index)
            .await
    }

    /// Sets a link's MTU.
    pub async fn set_mtu(&self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.set_link(message, "set the MTU of", index).await
    }

    /// Sets a link's alias (`IFLA_IFALIAS`, at most 255 bytes): the kernel keeps it with the
    /// link and `ip link` shows it.
    pub async fn set_alias(&self, index: u32, alias: &str) -> Result<(), NetlinkError> {
        let mut message = LinkUnspec::new_with_index(index).build();
        message
            .attributes
            .push(LinkAttribute::IfAlias(alias.to_owned()));
        self.set_link(message, "set the alias of", index).await
    }

    /// Sets a link up.
    pub async fn set_up(&self, index: u32) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index).up().build();
        self.set_link(message, "set up", index).await
    }

    async fn set_link(
        &self,
        message: LinkMessage,
        action: &'static str,
        index: u32,
    ) -> Result<(), NetlinkError> {
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(|source| request(action, &index.to_string(), source))
    }

    /// Deletes a link (a veth takes its peer along). A link that is already gone is fine: the
    /// kernel also removes veths on its own when their namespace goes away.
    pub async fn delete_link(&self, index: u32) -> Result<(), NetlinkError> {
        match self.handle.link().del(index).execute().await {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(()),
            other => other.map_err(|source| request("delete link", &index.to_string(), source)),
        }
    }

    /// The kernel's address messages of link `index`.
    async fn address_messages(&self, index: u32) -> Result<Vec<AddressMessage>, NetlinkError> {
        self.handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|source| request("list addresses of", &index.to_string(), source))
    }

    /// The addresses on a link (link-local IPv6 included).
    pub async fn addresses(&self, index: u32) -> Result<Vec<IpNet>, NetlinkError> {
        let messages = self.address_messages(index).await?;
        let mut nets = Vec::new();
        for message in messages {
            for attribute in &message.attributes {
                if let AddressAttribute::Address(addr) = attribute
                    && let Ok(net) = IpNet::new(*addr, message.header.prefix_len)
                {
                    nets.push(net);
                }
            }
        }
        Ok(nets)
    }

    /// Adds an address; IPv6 ones skip duplicate address detection, since the plan guarantees
    /// uniqueness and DAD would delay the container's first packets by seconds.
    pub async fn add_address(&self, index: u32, net: IpNet) -> Result<(), NetlinkError> {
        let mut add = self
            .handle
            .address()
            .add(index, net.addr(), net.prefix_len());
        if net.addr().is_ipv6() {
            let message = add.message_mut();
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        add.execute()
            .await
            .map_err(|source| request("add address", &net.to_string(), source))
    }

    /// Removes address `net` from link `index`; an address that is not there is fine.
    pub async fn delete_address(&self, index: u32, net: IpNet) -> Result<(), NetlinkError> {
        for message in self.address_messages(index).await? {
            let matches = message.header.prefix_len == net.prefix_len()
                && message
                    .attributes
                    .iter()
                    .any(|a| matches!(a, AddressAttribute::Address(addr) if *addr == net.addr()));
            if matches {
                self.handle
                    .address()
                    .del(message)
                    .execute()
                    .await
                    .map_err(|source| request("delete address", &net.to_string(), source))?;
            }
        }
        Ok(())
    }

    /// The gateways of the default routes in the main table.
    pub async fn default_gateways(&self) -> Result<Vec<IpAddr>, NetlinkError> {
        let mut gateways = Vec::new();
        for message in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let routes: Vec<RouteMessage> = self
                .handle
                .route()
                .get(message)
                .execute()
                .try_collect()
                .await
                .map_err(|source| request("list", "routes", source))?;
            for route in routes {
                if route.header.destination_prefix_length != 0 {
                    continue;
                }
                for attribute in &route.attributes {
                    if let RouteAttribute::Gateway(gateway) = attribute {
                        match gateway {
                            rtnetlink::packet_route::route::RouteAddress::Inet(a) => {
                                gateways.push(IpAddr::V4(*a));
                            }
                            rtnetlink::packet_route::route::RouteAddress::Inet6(a) => {
                                gateways.push(IpAddr::V6(*a));
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(gateways)
    }

    /// Makes the default route of `gateway`'s family go through `gateway` on link `index`,
    /// replacing one that goes elsewhere. The gateway is on-link whatever the link's addresses
    /// say: containers hold a /32 and a /128, so they never need a neighbour but the gateway.
    pub async fn set_default_route(&self, index: u32, gateway: IpAddr) -> Result<(), NetlinkError> {
        let message = match gateway {
            IpAddr::V4(gw) => RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .onlink()
                .build(),
            IpAddr::V6(gw) => RouteMessageBuilder::<Ipv6Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .onlink()
                .build(),
        };
        self.handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .map_err(|source| request("set the default route via", &gateway.to_string(), source))
    }

    /// The BPF filters on the ingress hook of link `index`.
    pub async fn ingress_bpf_filters(&self, index: u32) -> Result<Vec<BpfFilter>, NetlinkError> {
        let messages: Vec<_> = match self
            .handle
            .traffic_filter(index as i32)
            .get()
            .ingress()
            .execute()
            .try_collect()
            .await
        {
            Ok(messages) => messages,
            // No clsact qdisc yet: no filters.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EINVAL => Vec::new(),
            Err(source) => return Err(request("list filters of", &index.to_string(), source)),
        };
        let mut filters = Vec::new();
        for message in messages {
            let mut kind_bpf = false;
            let mut tag = None;
            for attribute in &message.attributes {
                match attribute {
                    TcAttribute::Kind(kind) => kind_bpf = kind == "bpf",
                    TcAttribute::Options(options) => {
                        for option in options {
                            if let TcOption::Bpf(TcFilterBpfOption::ProgTag(t)) = option {
                                tag = Some(*t);
                            }
                        }
                    }
                    _ => {}
                }
            }
            // A dump lists one header entry per priority without options; keep real filters.
            if kind_bpf && u32::from(message.header.handle) != 0 {
                filters.push(BpfFilter {
                    priority: (message.header.info >> 16) as u16,
                    handle: u32::from(message.header.handle),
                    tag,
                });
            }
        }
        Ok(filters)
    }
}

fn link_of(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        mac: None,
        up: message.header.flags.contains(LinkFlags::Up),
        xdp: None,
        veth: false,
        carrier: message.header.flags.contains(LinkFlags::LowerUp),
        mtu: None,
        alias: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name.clone_from(name),
            LinkAttribute::Mtu(mtu) => link.mtu = Some(*mtu),
            LinkAttribute::IfAlias(alias) if !alias.is_empty() => {
                link.alias = Some(alias.clone());
            }
            LinkAttribute::Address(mac) => link.mac = mac.as_slice().try_into().ok(),
            LinkAttribute::LinkInfo(infos) => {
                link.veth = infos
                    .iter()
                    .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth)));
            }
            LinkAttribute::Xdp(xdp) => {
                for attribute in xdp {
                    if let LinkXdp::Attached(mode) = attribute {
                        link.xdp = match mode {
                            XdpAttached::Driver => Some("native"),
                            XdpAttached::SocketBuffer => Some("generic"),
                            XdpAttached::Hardware => Some("offload"),
                            XdpAttached::Multiple => Some("multiple"),
                            _ => None,
                        };
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn request(action: &'static str, object: &str, source: rtnetlink::Error) -> NetlinkError {
    NetlinkError::Request {
        action,
        object: object.to_owned(),
        source,
    }
}

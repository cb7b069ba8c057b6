//! The grid state a ledger builds, and the rules every entry must pass to change it.
//!
//! [`Chain::apply`] judges an entry in two steps. Its place in the chain (seq, prev) is judged
//! against the last entry that was part of the chain; an entry out of place never becomes part
//! of it, so rewriting history breaks every later entry. Its content (signature, ownership,
//! addresses) is judged against the last good state; an entry refused for its content stays
//! in the chain but changes nothing. Each body is checked completely before its single change,
//! so nothing is ever half-applied.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;

use super::{
    keys::{Hash, PublicKey, verify},
    model::{Body, Entry, Member, ObjectKind},
    rules::{MAX_OBJECT_NAME, MAX_TWIN_NAME, Rejection, check_name, is_hostname, usable},
};
use crate::vocab::{GatewayMode, WgKey};

/// A registered node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Node {
    pub farmer: String,
    pub wireguard_public_key: WgKey,
    pub endpoints: Vec<IpAddr>,
    pub public_ipv4: Option<Ipv4Addr>,
    pub public_ipv6: Option<Ipv6Addr>,
}

/// A network, keyed by `<owner>/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Network {
    pub owner: String,
    pub name: String,
    pub version: u64,
    pub ip_range: Ipv4Net,
    pub ipv6_range: Ipv6Net,
    pub members: Vec<Member>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Container {
    pub network: String,
    pub node_id: u32,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gateway {
    pub network: String,
    pub node_id: u32,
    pub hostnames: Vec<String>,
    pub backends: Vec<SocketAddr>,
    pub mode: GatewayMode,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Access {
    pub network: String,
    pub node_id: u32,
    pub wireguard_public_key: WgKey,
    pub allowed_ips: Vec<IpNet>,
}

/// Everything the accepted entries say. Objects of users are keyed `<owner>/<name>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GridState {
    pub twins: BTreeMap<String, PublicKey>,
    pub nodes: BTreeMap<u32, Node>,
    pub networks: BTreeMap<String, Network>,
    pub containers: BTreeMap<String, Container>,
    pub gateways: BTreeMap<String, Gateway>,
    pub access: BTreeMap<String, Access>,
    /// Which network listens on each (node, WireGuard port): derived, for the port rule.
    #[serde(skip)]
    ports: BTreeMap<(u32, u16), String>,
}

/// The entries of `map` whose key starts with `<owner>/`: users' objects are keyed that way, so
/// an owner's objects are one range, and no rule scans the whole grid.
fn owned_by<'a, V>(
    map: &'a BTreeMap<String, V>,
    owner: &str,
) -> impl Iterator<Item = (&'a String, &'a V)> {
    let prefix = format!("{owner}/");
    map.range(prefix.clone()..)
        .take_while(move |(k, _)| k.starts_with(&prefix))
}

/// The owner part of a `<owner>/<name>` key.
fn owner_of(key: &str) -> &str {
    key.split('/').next().unwrap_or("")
}

/// A ledger being replayed: the chain's head and the state.
#[derive(Clone, Debug, Default)]
pub struct Chain {
    /// The last entry that is part of the chain (seq and hash), if any.
    head: Option<(u64, Hash)>,
    state: GridState,
    /// The seq of the last entry that changed the state.
    last_applied: Option<u64>,
}

impl Chain {
    pub fn state(&self) -> &GridState {
        &self.state
    }

    /// The seq the next entry must carry.
    pub fn next_seq(&self) -> u64 {
        self.head.map_or(0, |(seq, _)| seq + 1)
    }

    /// The hash the next entry's `prev` must carry.
    pub fn head_hash(&self) -> Hash {
        self.head.map_or(Hash::default(), |(_, hash)| hash)
    }

    pub fn last_applied(&self) -> Option<u64> {
        self.last_applied
    }

    /// Applies one entry, or says why it changes nothing.
    pub fn apply(&mut self, entry: &Entry) -> Result<(), Rejection> {
        if entry.seq != self.next_seq() {
            return Err(Rejection::Sequence {
                expected: self.next_seq(),
                got: entry.seq,
            });
        }
        if entry.prev != self.head_hash() {
            return Err(Rejection::BrokenChain {
                seq: entry.seq.saturating_sub(1),
            });
        }
        // In the chain from here on, whatever its content.
        self.head = Some((entry.seq, entry.hash()));
        check_signature(&self.state, entry)?;
        // Every rule is checked before the one insertion or removal that applies a body, so a
        // refused body leaves the state as it was without copying it (the tests hold this).
        self.state.apply_body(&entry.author, &entry.body)?;
        self.last_applied = Some(entry.seq);
        Ok(())
    }
}

fn check_signature(state: &GridState, entry: &Entry) -> Result<(), Rejection> {
    let key = match (&entry.body, state.twins.get(&entry.author)) {
        // A twin is signed by the key it registers.
        (Body::Twin { public_key, .. }, _) => *public_key,
        (_, Some(key)) => *key,
        (_, None) => {
            return Err(Rejection::UnknownAuthor {
                author: entry.author.clone(),
            });
        }
    };
    if verify(&key, &entry.signing_bytes(), &entry.signature) {
        Ok(())
    } else {
        Err(Rejection::BadSignature {
            author: entry.author.clone(),
        })
    }
}

impl GridState {
    pub(super) fn apply_body(&mut self, author: &str, body: &Body) -> Result<(), Rejection> {
        match body {
            Body::Twin { name, public_key } => {
                check_name("name", name, MAX_TWIN_NAME)?;
                if name != author {
                    return Err(Rejection::TwinAuthor {
                        name: name.clone(),
                        author: author.to_owned(),
                    });
                }
                if self.twins.contains_key(name) {
                    return Err(Rejection::DuplicateTwin { name: name.clone() });
                }
                self.twins.insert(name.clone(), *public_key);
            }
            Body::Node {
                node_id,
                farmer,
                wireguard_public_key,
                endpoints,
                public_ipv4,
                public_ipv6,
            } => {
                if *node_id == 0 {
                    return Err(Rejection::ZeroNodeId);
                }
                if farmer != author {
                    return Err(Rejection::NotFarmer {
                        author: author.to_owned(),
                        farmer: farmer.clone(),
                    });
                }
                if let Some(existing) = self.nodes.get(node_id)
                    && existing.farmer != *farmer
                {
                    return Err(Rejection::NodeOwned {
                        node_id: *node_id,
                        owner: existing.farmer.clone(),
                    });
                }
                if endpoints.is_empty() {
                    return Err(Rejection::NoEndpoints);
                }
                let public = public_ipv4
                    .map(IpAddr::V4)
                    .into_iter()
                    .chain(public_ipv6.map(IpAddr::V6));
                for (field, address) in endpoints
                    .iter()
                    .map(|a| ("endpoints", *a))
                    .chain(public.map(|a| ("public_ip", a)))
                {
                    if !usable(address) {
                        return Err(Rejection::BadAddress { field, address });
                    }
                }
                self.nodes.insert(
                    *node_id,
                    Node {
                        farmer: farmer.clone(),
                        wireguard_public_key: *wireguard_public_key,
                        endpoints: endpoints.clone(),
                        public_ipv4: *public_ipv4,
                        public_ipv6: *public_ipv6,
                    },
                );
            }
            Body::Network {
                name,
                version,
                ip_range,
                ipv6_range,
                members,
            } => {
                self.apply_network(author, name, *version, *ip_range, *ipv6_range, members)?;
            }
            Body::Container {
                name,
                network,
                node_id,
                ipv4,
                ipv6,
            } => {
                check_name("name", name, MAX_OBJECT_NAME)?;
                let key = format!("{author}/{name}");
                if self.containers.contains_key(&key) {
                    return Err(Rejection::Exists {
                        kind: "container",
                        name: key,
                    });
                }
                let (net_key, member) = self.member(author, network, *node_id)?;
                let ipv6 = ipv6.unwrap_or_else(|| derive_ipv6(&member.subnet_v6, *ipv4));
                check_host("ipv4", IpAddr::V4(*ipv4), &IpNet::V4(member.subnet))?;
                check_host("ipv6", IpAddr::V6(ipv6), &IpNet::V6(member.subnet_v6))?;
                for (field, address) in [("ipv4", IpAddr::V4(*ipv4)), ("ipv6", IpAddr::V6(ipv6))] {
                    if let Some(by) = self.address_user(&net_key, address) {
                        return Err(Rejection::AddressInUse { field, address, by });
                    }
                }
                self.containers.insert(
                    key,
                    Container {
                        network: net_key,
                        node_id: *node_id,
                        ipv4: *ipv4,
                        ipv6,
                    },
                );
            }
            Body::Gateway {
                name,
                network,
                node_id,
                hostnames,
                backends,
                mode,
            } => {
                check_name("name", name, MAX_OBJECT_NAME)?;
                let key = format!("{author}/{name}");
                if self.gateways.contains_key(&key) {
                    return Err(Rejection::Exists {
                        kind: "gateway",
                        name: key,
                    });
                }
                let (net_key, _) = self.member(author, network, *node_id)?;
                let node = &self.nodes[node_id];
                if node.public_ipv4.is_none() && node.public_ipv6.is_none() {
                    return Err(Rejection::NoPublicAddress { node_id: *node_id });
                }
                if hostnames.is_empty() {
                    return Err(Rejection::Empty { field: "hostnames" });
                }
                if let Some(bad) = hostnames.iter().find(|h| !is_hostname(h)) {
                    return Err(Rejection::BadHostname { value: bad.clone() });
                }
                if backends.is_empty() {
                    return Err(Rejection::Empty { field: "backends" });
                }
                let net = &self.networks[&net_key];
                for backend in backends {
                    let inside = match backend.ip() {
                        IpAddr::V4(a) => net.ip_range.contains(&a),
                        IpAddr::V6(a) => net.ipv6_range.contains(&a),
                    };
                    if !inside {
                        let range = format!("{} / {}", net.ip_range, net.ipv6_range);
                        return Err(Rejection::OutsideSubnet {
                            field: "backends",
                            address: backend.ip(),
                            subnet: range,
                        });
                    }
                }
                self.gateways.insert(
                    key,
                    Gateway {
                        network: net_key,
                        node_id: *node_id,
                        hostnames: hostnames.clone(),
                        backends: backends.clone(),
                        mode: *mode,
                    },
                );
            }
            Body::Access {
                name,
                network,
                node_id,
                wireguard_public_key,
                allowed_ips,
            } => {
                check_name("name", name, MAX_OBJECT_NAME)?;
                let key = format!("{author}/{name}");
                if self.access.contains_key(&key) {
                    return Err(Rejection::Exists {
                        kind: "access",
                        name: key,
                    });
                }
                let (net_key, _) = self.member(author, network, *node_id)?;
                if allowed_ips.is_empty() {
                    return Err(Rejection::Empty {
                        field: "allowed_ips",
                    });
                }
                for prefix in allowed_ips {
                    for member in &self.networks[&net_key].members {
                        if overlaps(prefix, &IpNet::V4(member.subnet))
                            || overlaps(prefix, &IpNet::V6(member.subnet_v6))
                        {
                            return Err(Rejection::AccessOverlapsMember {
                                prefix: prefix.to_string(),
                                node_id: member.node_id,
                            });
                        }
                    }
                }
                self.access.insert(
                    key,
                    Access {
                        network: net_key,
                        node_id: *node_id,
                        wireguard_public_key: *wireguard_public_key,
                        allowed_ips: allowed_ips.clone(),
                    },
                );
            }
            Body::Delete { object, name } => self.delete(author, *object, name)?,
        }
        Ok(())
    }

    fn apply_network(
        &mut self,
        author: &str,
        name: &str,
        version: u64,
        ip_range: Ipv4Net,
        ipv6_range: Ipv6Net,
        members: &[Member],
    ) -> Result<(), Rejection> {
        check_name("name", name, MAX_OBJECT_NAME)?;
        let key = format!("{author}/{name}");
        if let Some(current) = self.networks.get(&key)
            && version <= current.version
        {
            return Err(Rejection::StaleVersion {
                current: current.version,
                got: version,
            });
        }
        if ip_range.prefix_len() > 24 {
            return Err(Rejection::BadPrefix {
                field: "ip_range",
                value: ip_range.to_string(),
                problem: "must be a /24 or larger",
            });
        }
        if ipv6_range.prefix_len() > 64 {
            return Err(Rejection::BadPrefix {
                field: "ipv6_range",
                value: ipv6_range.to_string(),
                problem: "must be a /64 or larger",
            });
        }
        if ipv6_range.network().segments()[0] & 0xfe00 != 0xfc00 {
            return Err(Rejection::BadPrefix {
                field: "ipv6_range",
                value: ipv6_range.to_string(),
                problem: "must be a unique local prefix (fc00::/7)",
            });
        }
        if members.is_empty() {
            return Err(Rejection::Empty { field: "members" });
        }
        for (i, member) in members.iter().enumerate() {
            if !self.nodes.contains_key(&member.node_id) {
                return Err(Rejection::UnknownNode {
                    field: "members",
                    node_id: member.node_id,
                });
            }
            if members[..i].iter().any(|m| m.node_id == member.node_id) {
                return Err(Rejection::DuplicateMember {
                    node_id: member.node_id,
                });
            }
            if member.subnet.prefix_len() != 24
                || !ip_range.contains(&member.subnet)
                || member.subnet != member.subnet.trunc()
            {
                return Err(Rejection::BadPrefix {
                    field: "subnet",
                    value: member.subnet.to_string(),
                    problem: "must be a /24 inside ip_range",
                });
            }
            if member.subnet_v6.prefix_len() != 64
                || !ipv6_range.contains(&member.subnet_v6)
                || member.subnet_v6 != member.subnet_v6.trunc()
            {
                return Err(Rejection::BadPrefix {
                    field: "subnet_v6",
                    value: member.subnet_v6.to_string(),
                    problem: "must be a /64 inside ipv6_range",
                });
            }
            if let Some(other) = members[..i]
                .iter()
                .find(|m| m.subnet == member.subnet || m.subnet_v6 == member.subnet_v6)
            {
                let (first, second) = if other.subnet == member.subnet {
                    (other.subnet.to_string(), member.subnet.to_string())
                } else {
                    (other.subnet_v6.to_string(), member.subnet_v6.to_string())
                };
                return Err(Rejection::OverlappingSubnets { first, second });
            }
            let port = member.wireguard_listen_port;
            if port < 1024 {
                return Err(Rejection::BadPort {
                    port,
                    problem: "must be 1024 or more".into(),
                });
            }
            if let Some(other) = self
                .ports
                .get(&(member.node_id, port))
                .filter(|other| **other != key)
            {
                return Err(Rejection::BadPort {
                    port,
                    problem: format!(
                        "is already used by network `{other}` on node {}",
                        member.node_id
                    ),
                });
            }
        }
        if let Some(current) = self.networks.get(&key) {
            if current.owner != author {
                return Err(Rejection::NotOwner {
                    name: key,
                    owner: current.owner.clone(),
                });
            }
            // A member that leaves must not strand anything of this network.
            for gone in current.members.iter().filter(|m| {
                !members.iter().any(|n| {
                    n.node_id == m.node_id && n.subnet == m.subnet && n.subnet_v6 == m.subnet_v6
                })
            }) {
                if let Some(object) = self.objects_on(&key, gone.node_id) {
                    return Err(Rejection::MemberInUse {
                        node_id: gone.node_id,
                        object,
                    });
                }
            }
        }
        if let Some(old) = self.networks.get(&key) {
            for m in &old.members {
                self.ports.remove(&(m.node_id, m.wireguard_listen_port));
            }
        }
        for m in members {
            self.ports
                .insert((m.node_id, m.wireguard_listen_port), key.clone());
        }
        self.networks.insert(
            key,
            Network {
                owner: author.to_owned(),
                name: name.to_owned(),
                version,
                ip_range,
                ipv6_range,
                members: members.to_vec(),
            },
        );
        Ok(())
    }

    /// The author's network `network` and its member entry for `node_id`.
    fn member(
        &self,
        author: &str,
        network: &str,
        node_id: u32,
    ) -> Result<(String, Member), Rejection> {
        let key = format!("{author}/{network}");
        let net = self
            .networks
            .get(&key)
            .ok_or_else(|| Rejection::UnknownNetwork {
                owner: author.to_owned(),
                name: network.to_owned(),
            })?;
        let member = net
            .members
            .iter()
            .find(|m| m.node_id == node_id)
            .ok_or_else(|| Rejection::NotMember {
                node_id,
                network: key.clone(),
            })?;
        Ok((key, member.clone()))
    }

    /// Who already uses `address` in network `net_key`.
    fn address_user(&self, net_key: &str, address: IpAddr) -> Option<String> {
        owned_by(&self.containers, owner_of(net_key))
            .find(|(_, c)| {
                c.network == net_key
                    && (IpAddr::V4(c.ipv4) == address || IpAddr::V6(c.ipv6) == address)
            })
            .map(|(k, _)| k.clone())
    }

    /// Something of network `net_key` on node `node_id`, if any.
    fn objects_on(&self, net_key: &str, node_id: u32) -> Option<String> {
        let owner = owner_of(net_key);
        let on = |network: &str, node: u32| network == net_key && node == node_id;
        let containers = owned_by(&self.containers, owner)
            .filter(|(_, c)| on(&c.network, c.node_id))
            .map(|(k, _)| k);
        let gateways = owned_by(&self.gateways, owner)
            .filter(|(_, g)| on(&g.network, g.node_id))
            .map(|(k, _)| k);
        let access = owned_by(&self.access, owner)
            .filter(|(_, a)| on(&a.network, a.node_id))
            .map(|(k, _)| k);
        containers.chain(gateways).chain(access).next().cloned()
    }

    fn delete(&mut self, author: &str, object: ObjectKind, name: &str) -> Result<(), Rejection> {
        let key = format!("{author}/{name}");
        let (kind, removed) = match object {
            ObjectKind::Network => {
                if let Some((other, kind)) = self.network_user(&key) {
                    return Err(Rejection::NetworkInUse {
                        name: key,
                        kind,
                        object: other,
                    });
                }
                let removed = self.networks.remove(&key);
                for m in removed.iter().flat_map(|n| &n.members) {
                    self.ports.remove(&(m.node_id, m.wireguard_listen_port));
                }
                ("network", removed.is_some())
            }
            ObjectKind::Container => ("container", self.containers.remove(&key).is_some()),
            ObjectKind::Gateway => ("gateway", self.gateways.remove(&key).is_some()),
            ObjectKind::Access => ("access", self.access.remove(&key).is_some()),
        };
        if removed {
            Ok(())
        } else {
            Err(Rejection::UnknownObject {
                kind,
                name: name.to_owned(),
            })
        }
    }

    fn network_user(&self, net_key: &str) -> Option<(String, &'static str)> {
        let owner = owner_of(net_key);
        let c = owned_by(&self.containers, owner)
            .find(|(_, c)| c.network == net_key)
            .map(|(k, _)| (k.clone(), "container"));
        let g = owned_by(&self.gateways, owner)
            .find(|(_, g)| g.network == net_key)
            .map(|(k, _)| (k.clone(), "gateway"));
        let a = owned_by(&self.access, owner)
            .find(|(_, a)| a.network == net_key)
            .map(|(k, _)| (k.clone(), "access"));
        c.or(g).or(a)
    }
}

/// The IPv6 address of a container without one: its member subnet plus its IPv4 host number.
pub fn derive_ipv6(subnet_v6: &Ipv6Net, ipv4: Ipv4Addr) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(subnet_v6.network()) | u128::from(ipv4.octets()[3]))
}

/// An address a container may take in `subnet`: inside it, and not its network, gateway (first
/// host) or (IPv4) broadcast address.
fn check_host(field: &'static str, address: IpAddr, subnet: &IpNet) -> Result<(), Rejection> {
    if !subnet.contains(&address) {
        return Err(Rejection::OutsideSubnet {
            field,
            address,
            subnet: subnet.to_string(),
        });
    }
    let offset = match (address, subnet) {
        (IpAddr::V4(a), IpNet::V4(n)) => u128::from(u32::from(a) - u32::from(n.network())),
        (IpAddr::V6(a), IpNet::V6(n)) => u128::from(a) - u128::from(n.network()),
        _ => 0,
    };
    let broadcast = matches!(subnet, IpNet::V4(n) if IpAddr::V4(n.broadcast()) == address);
    if offset <= 1 || broadcast {
        return Err(Rejection::ReservedAddress {
            field,
            address,
            subnet: subnet.to_string(),
        });
    }
    Ok(())
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

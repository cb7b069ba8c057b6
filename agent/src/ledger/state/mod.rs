//! The grid state a ledger builds, and the rules each kind of entry must pass to change it.
//!
//! [`GridState::apply_body`] sends each body to its kind's function. Each checks the body
//! completely against the state before its single insertion or removal, so a refused body is
//! never half-applied and the state needs no copy to roll back.

mod access;
mod container;
mod delete;
mod gateway;
mod identity;
mod lookup;
mod network;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;

use super::{
    keys::PublicKey,
    model::{Body, Member},
    rules::{KeyUser, Rejection},
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

impl Node {
    /// The node's public addresses, IPv4 first: where its gateways listen.
    pub fn public_ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.public_ipv4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.public_ipv6.map(IpAddr::V6))
    }
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
    pub proxy_protocol: bool,
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
    /// Who uses each WireGuard key: derived, for the rule that keys are never shared.
    #[serde(skip)]
    wg_keys: BTreeMap<WgKey, KeyUser>,
    /// The gateways serving each host name: derived, for the rule that one owner holds a name.
    #[serde(skip)]
    hostnames: BTreeMap<String, BTreeSet<String>>,
}

/// Where a new container, gateway or access peer goes: its author and name, the author's
/// network it joins, and the member node it is on.
struct Placement<'a> {
    author: &'a str,
    name: &'a str,
    network: &'a str,
    node_id: u32,
}

impl<'a> Placement<'a> {
    fn new(author: &'a str, name: &'a str, network: &'a str, node_id: u32) -> Self {
        Self {
            author,
            name,
            network,
            node_id,
        }
    }
}

impl GridState {
    /// Refuses `key` when something other than `me` uses it.
    fn check_key_free(&self, key: &WgKey, me: &KeyUser) -> Result<(), Rejection> {
        match self.wg_keys.get(key) {
            Some(user) if user != me => Err(Rejection::KeyInUse { by: user.clone() }),
            _ => Ok(()),
        }
    }

    /// Applies one body by `author`, or says why it changes nothing.
    pub(super) fn apply_body(&mut self, author: &str, body: &Body) -> Result<(), Rejection> {
        match body {
            Body::Twin { name, public_key } => self.apply_twin(author, name, *public_key),
            Body::Node {
                node_id,
                farmer,
                wireguard_public_key,
                endpoints,
                public_ipv4,
                public_ipv6,
            } => self.apply_node(
                author,
                *node_id,
                farmer,
                *wireguard_public_key,
                endpoints,
                (*public_ipv4, *public_ipv6),
            ),
            Body::Network {
                name,
                version,
                ip_range,
                ipv6_range,
                members,
            } => self.apply_network(author, name, *version, (*ip_range, *ipv6_range), members),
            Body::Container {
                name,
                network,
                node_id,
                ipv4,
                ipv6,
            } => self.apply_container(
                &Placement::new(author, name, network, *node_id),
                *ipv4,
                *ipv6,
            ),
            Body::Gateway {
                name,
                network,
                node_id,
                hostnames,
                backends,
                mode,
                proxy_protocol,
            } => self.apply_gateway(
                &Placement::new(author, name, network, *node_id),
                hostnames,
                backends,
                (*mode, *proxy_protocol),
            ),
            Body::Access {
                name,
                network,
                node_id,
                wireguard_public_key,
                allowed_ips,
            } => self.apply_access(
                &Placement::new(author, name, network, *node_id),
                *wireguard_public_key,
                allowed_ips,
            ),
            Body::Delete { object, name } => self.delete(author, *object, name),
        }
    }
}

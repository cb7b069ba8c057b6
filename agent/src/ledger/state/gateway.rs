//! Web gateways: public host names proxied into a network from a node with a public address.
//!
//! A host name belongs to one owner at a time: DNS for it points at every gateway serving it,
//! so a second owner's gateway would receive part of the first owner's traffic. The owner may
//! serve a name from several nodes (redundancy), but not twice in one mode on one node, where
//! the node could not tell which gateway a connection is for.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
};

use super::{Gateway, GridState, Placement, lookup::owner_of};
use crate::{
    ledger::{
        address::canonical_socket,
        limits::{MAX_BACKENDS, MAX_HOSTNAMES},
        rules::{Rejection, is_hostname, too_many},
    },
    vocab::GatewayMode,
};

impl GridState {
    /// A new gateway: on a member node with a public address, DNS names no other owner serves,
    /// backends inside the network.
    pub(super) fn apply_gateway(
        &mut self,
        place: &Placement<'_>,
        hostnames: &[String],
        backends: &[SocketAddr],
        (mode, proxy_protocol): (GatewayMode, bool),
    ) -> Result<(), Rejection> {
        let (key, net_key, _) = self.place(&self.gateways, "gateway", place)?;
        let node = &self.nodes[&place.node_id];
        if node.public_ipv4.is_none() && node.public_ipv6.is_none() {
            return Err(Rejection::NoPublicAddress {
                node_id: place.node_id,
            });
        }
        if proxy_protocol && mode == GatewayMode::Http {
            return Err(Rejection::ProxyProtocolWithHttp);
        }
        let hostnames = self.check_hostnames(place, hostnames, mode)?;
        if backends.is_empty() {
            return Err(Rejection::Empty { field: "backends" });
        }
        too_many("backends", backends, MAX_BACKENDS)?;
        let backends: Vec<SocketAddr> = backends.iter().map(|b| canonical_socket(*b)).collect();
        let net = &self.networks[&net_key];
        for backend in &backends {
            let inside = match backend.ip() {
                IpAddr::V4(a) => net.ip_range.contains(&a),
                IpAddr::V6(a) => net.ipv6_range.contains(&a),
            };
            if !inside {
                return Err(Rejection::OutsideSubnet {
                    field: "backends",
                    address: backend.ip(),
                    subnet: format!("{} / {}", net.ip_range, net.ipv6_range),
                });
            }
        }
        for hostname in &hostnames {
            self.hostnames
                .entry(hostname.clone())
                .or_default()
                .insert(key.clone());
        }
        self.gateways.insert(
            key,
            Gateway {
                network: net_key,
                node_id: place.node_id,
                hostnames,
                backends,
                mode,
                proxy_protocol,
            },
        );
        Ok(())
    }

    /// A new gateway's host names, lowercased (DNS names compare without case): valid, each
    /// once, none served by another owner nor by the author in `mode` on the same node.
    fn check_hostnames(
        &self,
        place: &Placement<'_>,
        hostnames: &[String],
        mode: GatewayMode,
    ) -> Result<Vec<String>, Rejection> {
        if hostnames.is_empty() {
            return Err(Rejection::Empty { field: "hostnames" });
        }
        too_many("hostnames", hostnames, MAX_HOSTNAMES)?;
        if let Some(bad) = hostnames.iter().find(|h| !is_hostname(h)) {
            return Err(Rejection::BadHostname { value: bad.into() });
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(hostnames.len());
        for hostname in hostnames.iter().map(|h| h.to_ascii_lowercase()) {
            if !seen.insert(hostname.clone()) {
                return Err(Rejection::DuplicateHostname {
                    hostname: (&hostname).into(),
                });
            }
            for other in self.hostnames.get(&hostname).into_iter().flatten() {
                if owner_of(other) != place.author {
                    return Err(Rejection::HostnameTaken {
                        hostname: (&hostname).into(),
                        gateway: other.into(),
                    });
                }
                let gateway = &self.gateways[other];
                if gateway.node_id == place.node_id && gateway.mode == mode {
                    return Err(Rejection::HostnameOnNode {
                        hostname: (&hostname).into(),
                        node_id: place.node_id,
                        gateway: other.into(),
                    });
                }
            }
            out.push(hostname);
        }
        Ok(out)
    }

    /// Forgets that gateway `key` serves `hostname`.
    pub(super) fn release_hostname(&mut self, hostname: &str, key: &str) {
        if let Some(serving) = self.hostnames.get_mut(hostname) {
            serving.remove(key);
            if serving.is_empty() {
                self.hostnames.remove(hostname);
            }
        }
    }
}

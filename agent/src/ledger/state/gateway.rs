//! Web gateways: public host names proxied into a network from a node with a public address.

use std::net::{IpAddr, SocketAddr};

use super::{Gateway, GridState, Placement};
use crate::{
    ledger::{
        address::canonical_socket,
        limits::{MAX_BACKENDS, MAX_HOSTNAMES},
        rules::{Rejection, is_hostname, too_many},
    },
    vocab::GatewayMode,
};

impl GridState {
    /// A new gateway: on a member node with a public address, DNS names, backends inside the
    /// network.
    pub(super) fn apply_gateway(
        &mut self,
        place: &Placement<'_>,
        hostnames: &[String],
        backends: &[SocketAddr],
        mode: GatewayMode,
    ) -> Result<(), Rejection> {
        let (key, net_key, _) = self.place(&self.gateways, "gateway", place)?;
        let node = &self.nodes[&place.node_id];
        if node.public_ipv4.is_none() && node.public_ipv6.is_none() {
            return Err(Rejection::NoPublicAddress {
                node_id: place.node_id,
            });
        }
        if hostnames.is_empty() {
            return Err(Rejection::Empty { field: "hostnames" });
        }
        too_many("hostnames", hostnames, MAX_HOSTNAMES)?;
        if let Some(bad) = hostnames.iter().find(|h| !is_hostname(h)) {
            return Err(Rejection::BadHostname { value: bad.into() });
        }
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
        self.gateways.insert(
            key,
            Gateway {
                network: net_key,
                node_id: place.node_id,
                hostnames: hostnames.to_vec(),
                backends,
                mode,
            },
        );
        Ok(())
    }
}

//! Containers: a workload's attachment to a network on one member node.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::{Container, GridState, Placement};
use crate::ledger::{
    address::{check_host, check_not_endpoint, derive_ipv6},
    rules::Rejection,
};

impl GridState {
    /// A new container: its addresses inside the member's subnets and free in the network.
    pub(super) fn apply_container(
        &mut self,
        place: &Placement<'_>,
        ipv4: Ipv4Addr,
        ipv6: Option<Ipv6Addr>,
    ) -> Result<(), Rejection> {
        let (key, net_key, member) = self.place(&self.containers, "container", place)?;
        let ipv6 = ipv6.unwrap_or_else(|| derive_ipv6(&member.subnet_v6, ipv4));
        check_host("ipv4", IpAddr::V4(ipv4), &IpNet::V4(member.subnet))?;
        check_host("ipv6", IpAddr::V6(ipv6), &IpNet::V6(member.subnet_v6))?;
        check_not_endpoint("ipv4", IpAddr::V4(ipv4), &member)?;
        check_not_endpoint("ipv6", IpAddr::V6(ipv6), &member)?;
        for (field, address) in [("ipv4", IpAddr::V4(ipv4)), ("ipv6", IpAddr::V6(ipv6))] {
            if let Some(by) = self.address_user(&net_key, address) {
                return Err(Rejection::AddressInUse {
                    field,
                    address,
                    by: by.into(),
                });
            }
        }
        self.containers.insert(
            key,
            Container {
                network: net_key,
                node_id: place.node_id,
                ipv4,
                ipv6,
            },
        );
        Ok(())
    }
}

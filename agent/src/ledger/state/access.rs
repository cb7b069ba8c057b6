//! Access peers: external WireGuard peers (a laptop, a site's router) of a network.

use ipnet::IpNet;

use super::{Access, GridState, Placement};
use crate::{
    ledger::{
        address::{canonical_net, overlaps},
        limits::MAX_ALLOWED_IPS,
        rules::{KeyUser, Rejection, too_many},
    },
    vocab::WgKey,
};

impl GridState {
    /// A new access peer: its allowed IPs clear of every member's subnets.
    pub(super) fn apply_access(
        &mut self,
        place: &Placement<'_>,
        wireguard_public_key: WgKey,
        allowed_ips: &[IpNet],
    ) -> Result<(), Rejection> {
        let (key, net_key, _) = self.place(&self.access, "access", place)?;
        if allowed_ips.is_empty() {
            return Err(Rejection::Empty {
                field: "allowed_ips",
            });
        }
        too_many("allowed_ips", allowed_ips, MAX_ALLOWED_IPS)?;
        let allowed_ips: Vec<IpNet> = allowed_ips.iter().map(|p| canonical_net(*p)).collect();
        for prefix in &allowed_ips {
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
        let user = KeyUser::Access(key.clone());
        self.check_key_free(&wireguard_public_key, &user)?;
        self.wg_keys.insert(wireguard_public_key, user);
        self.access.insert(
            key,
            Access {
                network: net_key,
                node_id: place.node_id,
                wireguard_public_key,
                allowed_ips,
            },
        );
        Ok(())
    }
}

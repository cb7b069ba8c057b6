//! Access peers: external WireGuard peers (a laptop, a site's router) of a network.

use ipnet::IpNet;

use super::{
    Access, GridState, Placement,
    lookup::{owned_by, owner_of},
};
use crate::{
    ledger::{
        address::{canonical_net, overlaps},
        limits::MAX_ALLOWED_IPS,
        rules::{KeyUser, Rejection, too_many},
    },
    vocab::{UserText, WgKey},
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
        // Both would claim the same addresses: the tunnels could not tell whom to send to. A
        // network's access peers are its owner's objects.
        let peers =
            owned_by(&self.access, owner_of(&net_key)).filter(|(_, a)| a.network == net_key);
        for (other, access) in peers {
            if let Some(prefix) = allowed_ips
                .iter()
                .find(|p| access.allowed_ips.iter().any(|q| overlaps(p, q)))
            {
                return Err(Rejection::AccessOverlapsAccess {
                    prefix: prefix.to_string(),
                    other: UserText::new(other),
                });
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

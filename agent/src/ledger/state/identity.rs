//! Identities: twins (who signs) and nodes (who hosts).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{GridState, Node};
use crate::{
    ledger::{
        address::{canonical, usable},
        keys::PublicKey,
        limits::{MAX_ENDPOINTS, MAX_TWIN_NAME},
        rules::{KeyUser, Rejection, check_name, too_many},
    },
    vocab::WgKey,
};

impl GridState {
    /// A new twin; the chain has already checked that `public_key` signed the entry.
    pub(super) fn apply_twin(
        &mut self,
        author: &str,
        name: &str,
        public_key: PublicKey,
    ) -> Result<(), Rejection> {
        check_name("name", name, MAX_TWIN_NAME)?;
        if name != author {
            return Err(Rejection::TwinAuthor {
                name: name.into(),
                author: author.into(),
            });
        }
        if self.twins.contains_key(name) {
            return Err(Rejection::DuplicateTwin { name: name.into() });
        }
        // A small-order key satisfies the signature equation for many (R, S) whatever the
        // message: whoever registered it would give its name to everyone.
        let weak =
            ed25519_dalek::VerifyingKey::from_bytes(&public_key.0).is_ok_and(|k| k.is_weak());
        if weak {
            return Err(Rejection::WeakTwinKey { name: name.into() });
        }
        self.twins.insert(name.to_owned(), public_key);
        Ok(())
    }

    /// A new node, or an update of one by its farmer.
    pub(super) fn apply_node(
        &mut self,
        author: &str,
        node_id: u32,
        farmer: &str,
        wireguard_public_key: WgKey,
        endpoints: &[IpAddr],
        (public_ipv4, public_ipv6): (Option<Ipv4Addr>, Option<Ipv6Addr>),
    ) -> Result<(), Rejection> {
        if node_id == 0 {
            return Err(Rejection::ZeroNodeId);
        }
        if farmer != author {
            return Err(Rejection::NotFarmer {
                author: author.into(),
                farmer: farmer.into(),
            });
        }
        if let Some(existing) = self.nodes.get(&node_id)
            && existing.farmer != farmer
        {
            return Err(Rejection::NodeOwned {
                node_id,
                owner: (&existing.farmer).into(),
            });
        }
        if endpoints.is_empty() {
            return Err(Rejection::NoEndpoints);
        }
        too_many("endpoints", endpoints, MAX_ENDPOINTS)?;
        let endpoints: Vec<IpAddr> = endpoints.iter().map(|a| canonical(*a)).collect();
        if let Some(address) = public_ipv6.filter(|a| a.to_ipv4_mapped().is_some()) {
            return Err(Rejection::Ipv4Mapped {
                field: "public_ipv6",
                address,
            });
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
        self.check_public_kept(node_id, (public_ipv4, public_ipv6))?;
        let user = KeyUser::Node(node_id);
        self.check_key_free(&wireguard_public_key, &user)?;
        if let Some(old) = self.nodes.get(&node_id) {
            self.wg_keys.remove(&old.wireguard_public_key);
        }
        self.wg_keys.insert(wireguard_public_key, user);
        self.nodes.insert(
            node_id,
            Node {
                farmer: farmer.to_owned(),
                wireguard_public_key,
                endpoints,
                public_ipv4,
                public_ipv6,
            },
        );
        Ok(())
    }

    /// A node update keeps every public address a gateway on the node stands on.
    fn check_public_kept(
        &self,
        node_id: u32,
        (public_ipv4, public_ipv6): (Option<Ipv4Addr>, Option<Ipv6Addr>),
    ) -> Result<(), Rejection> {
        let Some(old) = self.nodes.get(&node_id) else {
            return Ok(());
        };
        let dropped = [
            (
                "public_ipv4",
                old.public_ipv4.map(IpAddr::V4),
                public_ipv4.map(IpAddr::V4),
            ),
            (
                "public_ipv6",
                old.public_ipv6.map(IpAddr::V6),
                public_ipv6.map(IpAddr::V6),
            ),
        ]
        .into_iter()
        .filter_map(|(field, old, new)| old.filter(|_| old != new).map(|a| (field, a)));
        for (field, address) in dropped {
            // One pass over the gateways per node update, which is rare: no index to keep.
            if let Some((gateway, _)) = self.gateways.iter().find(|(_, g)| g.node_id == node_id) {
                return Err(Rejection::PublicAddressInUse {
                    field,
                    address,
                    gateway: gateway.into(),
                });
            }
        }
        Ok(())
    }
}

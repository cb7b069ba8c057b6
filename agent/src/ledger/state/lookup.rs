//! Questions the rules ask of the state: whose objects, which member, who uses what.

use std::{collections::BTreeMap, net::IpAddr};

use super::{GridState, Placement};
use crate::ledger::{
    limits::MAX_OBJECT_NAME,
    model::Member,
    rules::{Rejection, check_name},
};

/// The entries of `map` whose key starts with `<owner>/`: users' objects are keyed that way, so
/// an owner's objects are one range, and no rule scans the whole grid.
pub(super) fn owned_by<'a, V>(
    map: &'a BTreeMap<String, V>,
    owner: &str,
) -> impl Iterator<Item = (&'a String, &'a V)> {
    let prefix = format!("{owner}/");
    map.range(prefix.clone()..)
        .take_while(move |(k, _)| k.starts_with(&prefix))
}

/// The owner part of a `<owner>/<name>` key.
pub(super) fn owner_of(key: &str) -> &str {
    key.split('/').next().unwrap_or("")
}

impl GridState {
    /// Checks where a new `kind` object goes: a valid name the author has not used in
    /// `existing`, on a member node of the author's network. Returns the object's key, the
    /// network's key and the member.
    pub(super) fn place<V>(
        &self,
        existing: &BTreeMap<String, V>,
        kind: &'static str,
        place: &Placement<'_>,
    ) -> Result<(String, String, Member), Rejection> {
        check_name("name", place.name, MAX_OBJECT_NAME)?;
        let key = format!("{}/{}", place.author, place.name);
        if existing.contains_key(&key) {
            return Err(Rejection::Exists {
                kind,
                name: key.into(),
            });
        }
        let (net_key, member) = self.member(place.author, place.network, place.node_id)?;
        Ok((key, net_key, member))
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
                owner: author.into(),
                name: network.into(),
            })?;
        let member = net
            .members
            .iter()
            .find(|m| m.node_id == node_id)
            .ok_or_else(|| Rejection::NotMember {
                node_id,
                network: (&key).into(),
            })?;
        Ok((key, member.clone()))
    }

    /// Who already uses `address` in network `net_key`.
    pub(super) fn address_user(&self, net_key: &str, address: IpAddr) -> Option<String> {
        owned_by(&self.containers, owner_of(net_key))
            .find(|(_, c)| {
                c.network == net_key
                    && (IpAddr::V4(c.ipv4) == address || IpAddr::V6(c.ipv6) == address)
            })
            .map(|(k, _)| k.clone())
    }

    /// Something of network `net_key` on node `node_id`, if any.
    pub(super) fn objects_on(&self, net_key: &str, node_id: u32) -> Option<String> {
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

    /// Something that uses network `net_key` (its key and kind), if any.
    pub(super) fn network_user(&self, net_key: &str) -> Option<(String, &'static str)> {
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

//! Networks: ranges, member nodes with their subnets and WireGuard ports, versioned updates.

use ipnet::{Ipv4Net, Ipv6Net};

use super::{GridState, Network};
use crate::ledger::{
    limits::{MAX_MEMBERS, MAX_OBJECT_NAME},
    model::Member,
    rules::{Rejection, check_name, too_many},
};

impl GridState {
    /// A new network, or its owner's update with a greater version.
    pub(super) fn apply_network(
        &mut self,
        author: &str,
        name: &str,
        version: u64,
        (ip_range, ipv6_range): (Ipv4Net, Ipv6Net),
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
        check_ranges(ip_range, ipv6_range)?;
        if members.is_empty() {
            return Err(Rejection::Empty { field: "members" });
        }
        too_many("members", members, MAX_MEMBERS)?;
        for (i, member) in members.iter().enumerate() {
            self.check_member(&key, member, &members[..i], (ip_range, ipv6_range))?;
        }
        if let Some(current) = self.networks.get(&key) {
            if current.owner != author {
                return Err(Rejection::NotOwner {
                    name: key.into(),
                    owner: (&current.owner).into(),
                });
            }
            self.check_leaving(&key, &current.members, members)?;
        }
        self.set_ports(&key, members);
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

    /// One member of network `key`, given the members listed before it.
    fn check_member(
        &self,
        key: &str,
        member: &Member,
        before: &[Member],
        (ip_range, ipv6_range): (Ipv4Net, Ipv6Net),
    ) -> Result<(), Rejection> {
        if !self.nodes.contains_key(&member.node_id) {
            return Err(Rejection::UnknownNode {
                field: "members",
                node_id: member.node_id,
            });
        }
        if before.iter().any(|m| m.node_id == member.node_id) {
            return Err(Rejection::DuplicateMember {
                node_id: member.node_id,
            });
        }
        check_subnets(member, ip_range, ipv6_range)?;
        if let Some(other) = before
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
        self.check_port(key, member)
    }

    /// A member's WireGuard port: unprivileged, and not another network's on that node.
    fn check_port(&self, key: &str, member: &Member) -> Result<(), Rejection> {
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
            .filter(|other| *other != key)
        {
            return Err(Rejection::BadPort {
                port,
                problem: format!(
                    "is already used by network `{other}` on node {}",
                    member.node_id
                ),
            });
        }
        Ok(())
    }

    /// A member that leaves network `key` (or changes its subnets) must not strand anything.
    fn check_leaving(
        &self,
        key: &str,
        current: &[Member],
        members: &[Member],
    ) -> Result<(), Rejection> {
        let stays = |m: &Member| {
            members.iter().any(|n| {
                n.node_id == m.node_id && n.subnet == m.subnet && n.subnet_v6 == m.subnet_v6
            })
        };
        for gone in current.iter().filter(|m| !stays(m)) {
            if let Some(object) = self.objects_on(key, gone.node_id) {
                return Err(Rejection::MemberInUse {
                    node_id: gone.node_id,
                    object: object.into(),
                });
            }
        }
        Ok(())
    }

    /// Records the ports network `key` listens on, releasing those of its previous version.
    fn set_ports(&mut self, key: &str, members: &[Member]) {
        if let Some(old) = self.networks.get(key) {
            for m in &old.members {
                self.ports.remove(&(m.node_id, m.wireguard_listen_port));
            }
        }
        for m in members {
            self.ports
                .insert((m.node_id, m.wireguard_listen_port), key.to_owned());
        }
    }
}

/// A network's ranges: room for /24 and /64 subnets, and IPv6 unique local.
fn check_ranges(ip_range: Ipv4Net, ipv6_range: Ipv6Net) -> Result<(), Rejection> {
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
    Ok(())
}

/// A member's subnets: an aligned /24 and /64 inside the network's ranges.
fn check_subnets(member: &Member, ip_range: Ipv4Net, ipv6_range: Ipv6Net) -> Result<(), Rejection> {
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
    Ok(())
}

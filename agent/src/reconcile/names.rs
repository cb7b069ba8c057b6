//! Names of the kernel objects that realize a container. A namespace is named after its
//! container; a host-side veth gets an allocated name and its container's name as alias. Either
//! way a restarted agent finds what an earlier one made.

use std::collections::{BTreeMap, BTreeSet};

use super::observe::HostLink;

/// The MTU of a container link's host side: the largest a veth takes, so a frame of any size the
/// container sends reaches `tc_from_container`, which hands it on or has it answered (a packet
/// too big for the tunnel gets ICMP, never silence). The container's side has the node's MTU.
pub const HOST_SIDE_MTU: u32 = 65_535;

/// The interface name of a container inside its namespace.
pub const CONTAINER_IFNAME: &str = "eth0";

/// Starts the name of every interface gridnet makes in the node's namespace.
pub const HOST_IFNAME_PREFIX: &str = "gn";

/// Starts the name of a host-side veth: `gnv` and a number the agent allocates. `v` is not a
/// hex digit, so no such name has the shape of a [`legacy_host_ifname`].
pub const HOST_VETH_PREFIX: &str = "gnv";

/// Whether `name` has the shape of a host-side veth name gridnet makes (or made).
pub fn is_host_ifname(name: &str) -> bool {
    let allocated = name
        .strip_prefix(HOST_VETH_PREFIX)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let legacy = name
        .strip_prefix(HOST_IFNAME_PREFIX)
        .is_some_and(|hash| hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
    allocated || legacy
}

/// The prefix of the container namespaces an agent owns unless configured otherwise.
pub const DEFAULT_NETNS_PREFIX: &str = "gn-";

/// Prefix of the tunnel devices gridnet makes.
pub const TUNNEL_IFNAME_PREFIX: &str = "gnt";

/// The tunnel device of the network with datapath id `network_id`: node-local ids keep it
/// short and unique (network names are longer than an interface name can be).
pub fn tunnel_ifname(network_id: u32) -> String {
    format!("{TUNNEL_IFNAME_PREFIX}{network_id}")
}

/// Whether `name` has the shape of a tunnel device name gridnet makes.
pub fn is_tunnel_ifname(name: &str) -> bool {
    name.strip_prefix(TUNNEL_IFNAME_PREFIX)
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// The name of a container's network namespace.
pub fn netns_name(prefix: &str, container: &str) -> String {
    format!("{prefix}{container}")
}

/// The host-side veth name earlier releases derived from a container's name (32-bit FNV-1a).
/// Two names can share it, so it is no longer given out; a veth that has it and no alias is
/// adopted by its container and labelled, so an upgrade keeps every container running.
pub fn legacy_host_ifname(container: &str) -> String {
    let hash = container.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{HOST_IFNAME_PREFIX}{hash:08x}")
}

/// The host-side veth name of each of `containers`, given the host links there are.
///
/// Names are allocated, never derived from container names, so no tenant can pick a name that
/// takes another's interface: a container keeps the veth labelled with its name (the link's
/// alias, which the agent sets and `ip link` shows); a container without one gets the lowest
/// `gnv<N>` that no interface holds, whatever its kind. Pure and deterministic: the same plan
/// and links give the same names, so every part of a pass agrees.
pub fn host_ifnames<'a>(
    containers: impl IntoIterator<Item = &'a str>,
    links: &BTreeMap<String, HostLink>,
) -> BTreeMap<String, String> {
    let containers: BTreeSet<&str> = containers.into_iter().collect();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut taken: BTreeSet<String> = BTreeSet::new();
    for (name, link) in links.iter().filter(|(_, l)| l.veth) {
        if let Some(container) = link.alias.as_deref()
            && containers.contains(container)
            && !names.contains_key(container)
        {
            names.insert(container.to_owned(), name.clone());
            taken.insert(name.clone());
        }
    }
    for &container in &containers {
        let legacy = legacy_host_ifname(container);
        let unlabelled = links
            .get(&legacy)
            .is_some_and(|l| l.veth && l.alias.is_none());
        if !names.contains_key(container) && unlabelled && taken.insert(legacy.clone()) {
            names.insert(container.to_owned(), legacy);
        }
    }
    let mut next = 0_u32;
    for &container in &containers {
        if names.contains_key(container) {
            continue;
        }
        let name = loop {
            let candidate = format!("{HOST_VETH_PREFIX}{next}");
            next += 1;
            if !links.contains_key(&candidate) {
                break candidate;
            }
        };
        names.insert(container.to_owned(), name);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn veth(index: u32, alias: Option<&str>) -> HostLink {
        HostLink::finished_veth(index, alias)
    }

    fn links(entries: &[(&str, HostLink)]) -> BTreeMap<String, HostLink> {
        entries
            .iter()
            .map(|(name, link)| ((*name).to_owned(), link.clone()))
            .collect()
    }

    #[test]
    fn names_that_shared_a_hash_get_their_own_interfaces() {
        // Found by a tenant: both had the same derived name.
        assert_eq!(
            legacy_host_ifname("bob.hy7pa52"),
            legacy_host_ifname("alice.web1")
        );
        let names = host_ifnames(["alice.web1", "bob.hy7pa52"], &BTreeMap::new());
        assert_eq!(names["alice.web1"], "gnv0");
        assert_eq!(names["bob.hy7pa52"], "gnv1");
        for name in names.values() {
            assert!(name.len() <= 15 && is_host_ifname(name), "{name}");
        }
    }

    #[test]
    fn a_labelled_veth_stays_its_containers_and_new_ones_take_free_numbers() {
        let seen = links(&[
            ("gnv0", veth(10, Some("b"))),
            ("gnv1", veth(11, Some("gone"))),
            // Another kind of interface holding a name: passed over, never used.
            (
                "gnv2",
                HostLink {
                    veth: false,
                    ..veth(12, None)
                },
            ),
            // A second veth claiming `b`: the first keeps it, this one is nobody's.
            ("gnv3", veth(13, Some("b"))),
        ]);
        let names = host_ifnames(["a", "b", "c"], &seen);
        assert_eq!(names["b"], "gnv0");
        assert_eq!(names["a"], "gnv4");
        assert_eq!(names["c"], "gnv5");
        assert_eq!(host_ifnames(["a", "b", "c"], &seen), names, "stable");
    }

    #[test]
    fn an_unlabelled_veth_of_the_earlier_naming_is_adopted() {
        let old = legacy_host_ifname("alice.web1");
        let seen = links(&[(old.as_str(), veth(10, None))]);
        let names = host_ifnames(["alice.web1", "bob.hy7pa52"], &seen);
        assert_eq!(names["alice.web1"], old);
        assert_eq!(names["bob.hy7pa52"], "gnv0");

        // Labelled for someone else: not adopted by name.
        let seen = links(&[(old.as_str(), veth(10, Some("bob.hy7pa52")))]);
        let names = host_ifnames(["alice.web1", "bob.hy7pa52"], &seen);
        assert_eq!(names["bob.hy7pa52"], old);
        assert_eq!(names["alice.web1"], "gnv0");
    }

    #[test]
    fn shapes() {
        assert!(is_host_ifname("gnv0") && is_host_ifname("gnv4294967295"));
        assert!(is_host_ifname(&legacy_host_ifname("x")));
        assert!(!is_host_ifname("gnv") && !is_host_ifname("gnvx1"));
        assert!(!is_host_ifname("gnt1") && !is_tunnel_ifname("gnv1"));
        assert!(!is_host_ifname("gnome0") && !is_host_ifname("eth0"));
        assert_eq!(netns_name("gn-", "web"), "gn-web");
    }
}

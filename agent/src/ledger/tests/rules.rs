//! Rules about what an entry may hold: limits, keys, public addresses, address forms.

use std::net::{IpAddr, Ipv4Addr};

use super::super::{
    fixture::{Grid, container, key, member, network, node},
    *,
};
use crate::vocab::{GatewayMode, WgKey};

#[test]
fn oversized_entries_are_refused_and_quoted_short() {
    use Rejection as R;
    let mut g = Grid::new();
    let too_many = |field: &'static str| move |e: &Rejection| matches!(e, R::TooMany { field: f, .. } if *f == field);

    let mut crowded = node(1, "alice", Some([203, 0, 113, 1]));
    if let Body::Node { endpoints, .. } = &mut crowded {
        *endpoints = (1..=u8::try_from(limits::MAX_ENDPOINTS + 1).expect("small"))
            .map(|i| IpAddr::V4(Ipv4Addr::new(192, 0, 2, i)))
            .collect();
    }
    let e = g.sign("alice", crowded);
    g.refuse(e, too_many("endpoints"));

    let members = (0..=limits::MAX_MEMBERS)
        .map(|i| member(1, (i % 250) as u8, 52000))
        .collect();
    let e = g.sign("alice", network("big", 1, members));
    g.refuse(e, too_many("members"));

    let gateway = |hostnames: usize, backends: usize| Body::Gateway {
        name: "wide".into(),
        network: "web".into(),
        node_id: 1,
        hostnames: (0..hostnames)
            .map(|i| format!("h{i}.example.org"))
            .collect(),
        backends: (0..backends)
            .map(|i| std::net::SocketAddr::from(([10, 1, 1, 2], 1000 + i as u16)))
            .collect(),
        mode: GatewayMode::Http,
        proxy_protocol: false,
    };
    let e = g.sign("alice", gateway(limits::MAX_HOSTNAMES + 1, 1));
    g.refuse(e, too_many("hostnames"));
    let e = g.sign("alice", gateway(1, limits::MAX_BACKENDS + 1));
    g.refuse(e, too_many("backends"));

    let e = g.sign(
        "alice",
        Body::Access {
            name: "site".into(),
            network: "web".into(),
            node_id: 1,
            wireguard_public_key: WgKey([5; 32]),
            allowed_ips: (0..=limits::MAX_ALLOWED_IPS)
                .map(|i| format!("10.2.{}.0/24", i % 250).parse().expect("net"))
                .collect(),
        },
    );
    g.refuse(e, too_many("allowed_ips"));

    let e = g.sign(
        "alice",
        container(&"x".repeat(70_000), "web", 1, [10, 1, 1, 60]),
    );
    g.refuse(e, |e| matches!(e, R::TooLarge { .. }));

    // Long user text is quoted cut short, wherever a refusal quotes it.
    let long = "n".repeat(10_000);
    let quoted = |e: &Rejection| {
        let shown = e.to_string();
        shown.len() < 300 && shown.contains("nnnn…")
    };
    let e = g.sign("alice", container(&long[..2000], "web", 1, [10, 1, 1, 61]));
    g.refuse(e, |e| matches!(e, R::InvalidName { .. }) && quoted(e));
    let e = g.sign("alice", container("c", &long[..2000], 1, [10, 1, 1, 61]));
    g.refuse(e, |e| matches!(e, R::UnknownNetwork { .. }) && quoted(e));
    let e = g.sign(
        "alice",
        Body::Delete {
            object: model::ObjectKind::Gateway,
            name: long[..2000].into(),
        },
    );
    g.refuse(e, |e| matches!(e, R::UnknownObject { .. }) && quoted(e));
    let e = g.sign(
        "alice",
        Body::Gateway {
            name: "long".into(),
            network: "web".into(),
            node_id: 1,
            hostnames: vec![format!("{}.org", &long[..2000])],
            backends: vec!["10.1.1.2:80".parse().expect("addr")],
            mode: GatewayMode::Http,
            proxy_protocol: false,
        },
    );
    g.refuse(e, |e| matches!(e, R::BadHostname { .. }) && quoted(e));
    let e = sign_next(
        &g.chain,
        &long[..2000],
        container("c", "web", 1, [10, 1, 1, 62]),
        &key(66),
    );
    g.refuse(e, |e| matches!(e, R::UnknownAuthor { .. }) && quoted(e));
}

/// A WireGuard key names one thing on the grid: one node or one access peer. Another user of
/// it would take over its traffic on the member nodes.
#[test]
fn wireguard_keys_are_never_shared() {
    use Rejection as R;
    let mut g = Grid::new();
    let access = |name: &str, key: WgKey| Body::Access {
        name: name.into(),
        network: "web".into(),
        node_id: 1,
        wireguard_public_key: key,
        allowed_ips: vec!["10.1.201.5/32".parse().expect("net")],
    };
    let in_use = |e: &Rejection| matches!(e, R::KeyInUse { .. });
    // Fixture keys: node n has [n; 32]; the access peer alice/laptop has [9; 32].
    let e = g.sign("alice", access("phone", WgKey([1; 32])));
    g.refuse(e, in_use); // a member node's key
    let e = g.sign("alice", access("phone", WgKey([2; 32])));
    g.refuse(e, in_use); // the other member's
    let e = g.sign("alice", access("phone", WgKey([9; 32])));
    g.refuse(e, in_use); // another access peer's
    let mut twin = node(3, "bob", None);
    if let Body::Node {
        wireguard_public_key,
        ..
    } = &mut twin
    {
        *wireguard_public_key = WgKey([2; 32]);
    }
    let e = g.sign("bob", twin.clone());
    g.refuse(e, in_use); // another node's key
    if let Body::Node {
        wireguard_public_key,
        ..
    } = &mut twin
    {
        *wireguard_public_key = WgKey([9; 32]);
    }
    let e = g.sign("bob", twin);
    g.refuse(e, in_use); // an access peer's key
    // A node keeps its own key across updates; a key set free can be used again.
    g.push_ok("carol", node(2, "carol", None));
    g.push_ok(
        "alice",
        Body::Delete {
            object: model::ObjectKind::Access,
            name: "laptop".into(),
        },
    );
    g.push_ok("alice", access("phone", WgKey([9; 32])));
}

/// Gateways listen on their node's public addresses and DNS points there: a node may not drop
/// one while a gateway stands on it.
#[test]
fn a_node_keeps_the_public_address_its_gateways_use() {
    use Rejection as R;
    let mut g = Grid::new();
    let in_use = |e: &Rejection| matches!(e, R::PublicAddressInUse { .. });
    let e = g.sign("alice", node(1, "alice", None));
    g.refuse(e, in_use);
    let e = g.sign("alice", node(1, "alice", Some([203, 0, 113, 9])));
    g.refuse(e, in_use);
    // Adding an address is fine, and so is dropping one once no gateway uses it.
    let mut more = node(1, "alice", Some([203, 0, 113, 1]));
    if let Body::Node { public_ipv6, .. } = &mut more {
        *public_ipv6 = Some("2001:db8::1".parse().expect("addr"));
    }
    g.push_ok("alice", more);
    g.push_ok(
        "alice",
        Body::Delete {
            object: model::ObjectKind::Gateway,
            name: "www".into(),
        },
    );
    g.push_ok("alice", node(1, "alice", None));
}

/// `::ffff:a.b.c.d` is the IPv4 address a.b.c.d to every socket: each address rule judges it
/// as that, and the state keeps it in its IPv4 form.
#[test]
fn ipv4_mapped_addresses_are_judged_as_ipv4() {
    use Rejection as R;
    let mut g = Grid::new();
    let with = |endpoint: &str, public_ipv6: Option<&str>| Body::Node {
        node_id: 3,
        farmer: "bob".into(),
        wireguard_public_key: WgKey([3; 32]),
        endpoints: vec![endpoint.parse().expect("addr")],
        public_ipv4: None,
        public_ipv6: public_ipv6.map(|a| a.parse().expect("addr")),
    };
    for bad in ["::ffff:127.0.0.1", "::ffff:0.0.0.0", "::ffff:224.0.0.1"] {
        let e = g.sign("bob", with(bad, None));
        g.refuse(e, |e| matches!(e, R::BadAddress { .. }));
    }
    let e = g.sign("bob", with("192.0.2.3", Some("::ffff:203.0.113.3")));
    g.refuse(e, |e| matches!(e, R::Ipv4Mapped { .. }));
    let e = g.sign(
        "alice",
        Body::Access {
            name: "site".into(),
            network: "web".into(),
            node_id: 1,
            wireguard_public_key: WgKey([5; 32]),
            allowed_ips: vec!["::ffff:10.1.1.0/120".parse().expect("net")],
        },
    );
    g.refuse(e, |e| matches!(e, R::AccessOverlapsMember { .. }));
    let e = g.sign(
        "alice",
        Body::Gateway {
            name: "www2".into(),
            network: "web".into(),
            node_id: 1,
            hostnames: vec!["www2.example.org".into()],
            backends: vec!["[::ffff:10.9.0.1]:80".parse().expect("addr")],
            mode: GatewayMode::Http,
            proxy_protocol: false,
        },
    );
    g.refuse(e, |e| {
        matches!(e, R::OutsideSubnet { address, .. } if *address == IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1)))
    });

    g.push_ok("bob", with("::ffff:192.0.2.3", None));
    assert_eq!(
        g.chain.state().nodes[&3].endpoints,
        [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3))]
    );
    g.push_ok(
        "alice",
        Body::Gateway {
            name: "www2".into(),
            network: "web".into(),
            node_id: 1,
            hostnames: vec!["www2.example.org".into()],
            backends: vec!["[::ffff:10.1.1.2]:80".parse().expect("addr")],
            mode: GatewayMode::Http,
            proxy_protocol: false,
        },
    );
    assert_eq!(
        g.chain.state().gateways["alice/www2"].backends,
        ["10.1.1.2:80".parse::<std::net::SocketAddr>().expect("addr")]
    );
}

#[test]
fn access_peers_of_one_network_never_share_addresses() {
    let mut g = Grid::new();
    let site = |name: &str, key: u8, prefix: &str| Body::Access {
        name: name.into(),
        network: "web".into(),
        node_id: 1,
        wireguard_public_key: WgKey([key; 32]),
        allowed_ips: vec![prefix.parse().expect("net")],
    };
    // The fixture's laptop holds 10.1.200.5/32; a site prefix around it would take it over.
    let e = g.sign("alice", site("office", 20, "10.1.200.0/24"));
    g.refuse(e, |e| {
        matches!(e, Rejection::AccessOverlapsAccess { prefix, other }
            if prefix == "10.1.200.0/24" && other.to_string() == "alice/laptop")
    });
    g.push_ok("alice", site("office", 20, "192.168.50.0/24"));
    // Another network may use the same addresses.
    g.push_ok(
        "bob",
        Body::Access {
            name: "office".into(),
            network: "db".into(),
            node_id: 1,
            wireguard_public_key: WgKey([21; 32]),
            allowed_ips: vec!["192.168.50.0/24".parse().expect("net")],
        },
    );
}

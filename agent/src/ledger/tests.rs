//! The ledger's rules, one bad entry at a time, and random damage to a good chain.

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::{
    fixture::{Grid, container, key, member, network, node},
    keys::Signature,
    *,
};
use crate::vocab::{GatewayMode, WgKey};

#[test]
fn a_good_chain_builds_the_grid() {
    let grid = Grid::new();
    let state = grid.chain.state();
    assert_eq!(state.twins.len(), 3);
    assert_eq!(state.nodes.len(), 2);
    assert_eq!(state.networks.len(), 2);
    assert_eq!(
        state.containers["alice/web1"].ipv6,
        "fd00:1:0:1::2".parse::<std::net::Ipv6Addr>().expect("addr")
    );
    assert_eq!(state.gateways["alice/www"].node_id, 1);
    assert_eq!(state.access["alice/laptop"].node_id, 2);
    let replayed = replay(&grid.entries);
    assert!(replayed.refused.is_empty());
    assert_eq!(replayed.chain.state(), state);
}

#[test]
fn bad_entries_are_refused_with_their_reason_and_change_nothing() {
    use Rejection as R;
    let mut g = Grid::new();
    let mut n = 0;
    let mut check = |g: &mut Grid, entry: Entry, expected: &dyn Fn(&Rejection) -> bool| {
        g.refuse(entry, expected);
        n += 1;
    };

    // 1. a body changed after signing
    let mut tampered = g.sign("alice", container("c1", "web", 1, [10, 1, 1, 10]));
    if let Body::Container { ipv4, .. } = &mut tampered.body {
        *ipv4 = [10, 1, 1, 11].into();
    }
    check(&mut g, tampered, &|e| matches!(e, R::BadSignature { .. }));
    // 2. a forged signature
    let mut forged = g.sign("alice", container("c2", "web", 1, [10, 1, 1, 12]));
    forged.signature = Signature([7; 64]);
    check(&mut g, forged, &|e| matches!(e, R::BadSignature { .. }));
    // 3. signed by bob, claiming to be alice
    let impostor = sign_next(
        &g.chain,
        "alice",
        container("c3", "web", 1, [10, 1, 1, 13]),
        &g.bob,
    );
    check(&mut g, impostor, &|e| matches!(e, R::BadSignature { .. }));
    // 4. an author nobody registered
    let stranger = sign_next(
        &g.chain,
        "mallory",
        container("c4", "web", 1, [10, 1, 1, 14]),
        &key(66),
    );
    check(&mut g, stranger, &|e| matches!(e, R::UnknownAuthor { .. }));
    // 5. a broken prev
    let mut unlinked = g.sign("alice", container("c5", "web", 1, [10, 1, 1, 15]));
    unlinked.prev = Hash([1; 32]);
    unlinked.signature = g.alice.sign(&unlinked.signing_bytes());
    check(&mut g, unlinked, &|e| matches!(e, R::BrokenChain { .. }));
    // 6. a skipped seq, 7. a repeated seq
    for delta in [1i64, -1] {
        let mut misnumbered = g.sign("alice", container("c6", "web", 1, [10, 1, 1, 16]));
        misnumbered.seq = (misnumbered.seq as i64 + delta) as u64;
        misnumbered.signature = g.alice.sign(&misnumbered.signing_bytes());
        check(&mut g, misnumbered, &|e| matches!(e, R::Sequence { .. }));
    }
    let e = g.sign(
        "alice",
        network("web2", 1, vec![member(1, 5, 52000), member(2, 5, 52000)]),
    );
    check(&mut g, e, &|e| matches!(e, R::OverlappingSubnets { .. })); // 8
    let e = g.sign("alice", container("c7", "web", 1, [10, 1, 2, 7]));
    check(&mut g, e, &|e| matches!(e, R::OutsideSubnet { .. })); // 9: node 1's subnet is 10.1.1.0/24
    let e = g.sign("bob", container("c8", "web", 1, [10, 1, 1, 30]));
    check(&mut g, e, &|e| matches!(e, R::UnknownNetwork { .. })); // 10: bob cannot use alice's network
    let e = g.sign(
        "bob",
        Body::Delete {
            object: model::ObjectKind::Container,
            name: "web1".into(),
        },
    );
    check(&mut g, e, &|e| matches!(e, R::UnknownObject { .. })); // 11: nor delete her container
    let e = g.sign(
        "alice",
        network("web", 1, vec![member(1, 1, 51820), member(2, 2, 51820)]),
    );
    check(&mut g, e, &|e| matches!(e, R::StaleVersion { .. })); // 12
    let e = sign_next(
        &g.chain,
        "bob",
        Body::Twin {
            name: "bob".into(),
            public_key: key(9).public(),
        },
        &key(9),
    );
    check(&mut g, e, &|e| matches!(e, R::DuplicateTwin { .. })); // 13
    let e = g.sign("bob", node(7, "alice", None));
    check(&mut g, e, &|e| matches!(e, R::NotFarmer { .. })); // 14
    let e = g.sign("bob", node(1, "bob", None));
    check(&mut g, e, &|e| matches!(e, R::NodeOwned { .. })); // 15: a node taken over
    let e = g.sign("bob", container("c9", "db", 2, [10, 1, 1, 40]));
    check(&mut g, e, &|e| matches!(e, R::NotMember { .. })); // 16
    let e = g.sign("alice", container("c10", "web", 1, [10, 1, 1, 2]));
    check(&mut g, e, &|e| matches!(e, R::AddressInUse { .. })); // 17
    let e = g.sign("alice", container("c11", "web", 1, [10, 1, 1, 1]));
    check(&mut g, e, &|e| matches!(e, R::ReservedAddress { .. })); // 18: the gateway address
    let e = g.sign("alice", network("web3", 1, vec![member(1, 9, 51821)]));
    check(&mut g, e, &|e| matches!(e, R::BadPort { .. })); // 19: bob/db listens there on node 1
    let e = g.sign("alice", network("web4", 1, vec![member(1, 9, 80)]));
    check(&mut g, e, &|e| matches!(e, R::BadPort { .. })); // 20: a privileged port
    let e = g.sign(
        "alice",
        Body::Gateway {
            name: "www2".into(),
            network: "web".into(),
            node_id: 2,
            hostnames: vec!["a.example.org".into()],
            backends: vec!["10.1.1.2:80".parse().expect("addr")],
            mode: GatewayMode::Http,
        },
    );
    check(&mut g, e, &|e| matches!(e, R::NoPublicAddress { .. })); // 21
    let e = g.sign("alice", network("web5", 1, vec![member(9, 9, 52000)]));
    check(&mut g, e, &|e| matches!(e, R::UnknownNode { .. })); // 22
    let e = g.sign("alice", container("Web_1", "web", 1, [10, 1, 1, 50]));
    check(&mut g, e, &|e| matches!(e, R::InvalidName { .. })); // 23
    let e = g.sign(
        "alice",
        Body::Delete {
            object: model::ObjectKind::Network,
            name: "web".into(),
        },
    );
    check(&mut g, e, &|e| matches!(e, R::NetworkInUse { .. })); // 24
    let e = g.sign(
        "alice",
        Body::Network {
            name: "web6".into(),
            version: 1,
            ip_range: "10.1.0.0/16".parse().expect("net"),
            ipv6_range: "2001:db8::/48".parse().expect("net"),
            members: vec![],
        },
    );
    check(&mut g, e, &|e| matches!(e, R::BadPrefix { .. })); // 25: not a ULA
    let e = g.sign(
        "alice",
        Body::Access {
            name: "site".into(),
            network: "web".into(),
            node_id: 1,
            wireguard_public_key: WgKey([5; 32]),
            allowed_ips: vec!["10.1.2.0/25".parse().expect("net")],
        },
    );
    check(&mut g, e, &|e| matches!(e, R::AccessOverlapsMember { .. })); // 26
    let e = g.sign("alice", network("web", 2, vec![member(2, 2, 51820)]));
    check(&mut g, e, &|e| matches!(e, R::MemberInUse { .. })); // 27: node 1 still hosts web1
    let e = g.sign(
        "alice",
        Body::Gateway {
            name: "www3".into(),
            network: "web".into(),
            node_id: 1,
            hostnames: vec!["not a host".into()],
            backends: vec!["10.1.1.2:80".parse().expect("addr")],
            mode: GatewayMode::TlsPassthrough,
        },
    );
    check(&mut g, e, &|e| matches!(e, R::BadHostname { .. })); // 28
    assert!(n >= 20, "only {n} bad entries");
}

#[test]
fn malformed_yaml_is_refused_with_the_document_and_reason() {
    let grid = Grid::new();
    let good = serde_yaml::to_string(&grid.entries[3]).expect("yaml");
    let cases = [
        (
            good.replace(&grid.entries[3].signature.to_string(), "AAAA"),
            "signature",
        ),
        (good[..good.len() / 2].to_owned(), ""),
        (good.replace("kind: node", "kind: spaceship"), "spaceship"),
        (
            good.replace(&WgKey([1; 32]).to_string(), "AQID"),
            "WireGuard key",
        ),
        (good.replace("seq: 3", "seq: -3"), ""),
        (good + "surprise: true\n", "surprise"),
    ];
    for (text, needle) in cases {
        let (index, reason) = file::parse(&format!("---\n{text}")).expect_err(&text);
        assert_eq!(index, 0);
        assert!(
            reason.to_string().contains(needle),
            "{reason:?} should mention {needle:?}"
        );
    }
}

#[test]
fn keys_signatures_and_hashes_are_checked_when_read() {
    let good = key(1).public().to_string();
    assert_eq!(good.parse::<PublicKey>().expect("valid"), key(1).public());
    for bad in ["not base64!", "AAAA", &good[..40], &format!("{good}AAAA")] {
        assert!(bad.parse::<PublicKey>().is_err(), "{bad}");
        assert!(bad.parse::<WgKey>().is_err(), "{bad}");
    }
    assert!("AAAA".parse::<Signature>().is_err());
    assert!("00".parse::<Hash>().is_err());
    assert!("G".repeat(64).parse::<Hash>().is_err());
    assert_eq!(
        Hash([0xab; 32])
            .to_string()
            .parse::<Hash>()
            .expect("round trip"),
        Hash([0xab; 32])
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Damaged chains never panic, and what they build is exactly the accepted entries'
    /// bodies applied in order: nothing refused leaves a trace.
    #[test]
    fn damage_never_panics_nor_half_applies(
        ops in prop::collection::vec((0usize..64, 0usize..5, any::<u8>()), 1..6),
        text_flip in prop::option::of((0usize..100_000, any::<u8>())),
    ) {
        let grid = Grid::new();
        let mut entries = grid.entries.clone();
        for (at, op, byte) in ops {
            let i = at % entries.len();
            match op {
                0 => entries[i].signature.0[usize::from(byte) % 64] ^= 1,
                1 => entries[i].seq = entries[i].seq.wrapping_add(u64::from(byte % 3)),
                2 => { entries.remove(i); if entries.is_empty() { break; } }
                3 => { let j = usize::from(byte) % entries.len(); entries.swap(i, j); }
                _ => { let copy = entries[i].clone(); entries.insert(i, copy); }
            }
        }
        let mut text = String::new();
        for entry in &entries {
            text.push_str("---\n");
            text.push_str(&serde_yaml::to_string(entry).expect("yaml"));
        }
        if let Some((at, byte)) = text_flip {
            let mut bytes = text.into_bytes();
            let at = at % bytes.len();
            bytes[at] = byte.clamp(0x20, 0x7e);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        let Ok(parsed) = file::parse(&text) else { return Ok(()); };
        let replayed = replay(&parsed);
        let refused: std::collections::BTreeSet<u64> = replayed.refused.iter().map(|r| r.seq).collect();
        let mut expected = GridState::default();
        let mut chain = Chain::default();
        for entry in &parsed {
            if chain.apply(entry).is_ok() {
                expected.apply_body(&entry.author, &entry.body).expect("an accepted body applies again");
            }
        }
        prop_assert_eq!(replayed.chain.state(), &expected);
        let again = replay(&parsed);
        prop_assert_eq!(again.chain.state(), replayed.chain.state());
        prop_assert!(refused.len() <= parsed.len());
    }
}

/// Nesting bombs cost the YAML parser time quadratic in their depth; they must be refused
/// before it runs.
#[test]
fn nesting_bombs_are_refused_quickly() {
    for (what, bomb) in [
        ("200 KB of `[`", "[".repeat(200_000)),
        ("`{a: ` x 100,000", "{a: ".repeat(100_000)),
        ("`a: [` x 16,000", "a: [".repeat(16_000)),
        ("`- ` x 100,000", "- ".repeat(100_000)),
        // Within the size limit: block nesting meets serde_yaml's depth limit in linear time.
        ("`- ` x 30,000", "- ".repeat(30_000)),
        ("`? ` x 30,000", "? ".repeat(30_000)),
    ] {
        let start = std::time::Instant::now();
        let text = format!("---\n{bomb}\n");
        assert!(file::parse(&text).is_err(), "{what} was accepted");
        assert!(
            start.elapsed() < std::time::Duration::from_secs(2),
            "refusing {what} took {:?}",
            start.elapsed()
        );
    }
}

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

/// A refusal is printed as one line (`entry N: refused: ...`); text from the entry must not be
/// able to end it and print a line of its own.
#[test]
fn refusals_quote_user_text_on_one_line() {
    use Rejection as R;
    let mut g = Grid::new();
    let forged = "x\nentry 9: refused: \u{1b}[2Kforged\r\u{2028}\u{202e}";
    let one_line = |e: &Rejection| {
        let shown = e.to_string();
        !shown.contains(['\n', '\r', '\u{1b}', '\u{2028}', '\u{202e}']) && shown.contains("\\n")
    };
    let e = g.sign("alice", container(forged, "web", 1, [10, 1, 1, 70]));
    g.refuse(e, |e| matches!(e, R::InvalidName { .. }) && one_line(e));
    let e = g.sign("alice", container("c", forged, 1, [10, 1, 1, 70]));
    g.refuse(e, |e| matches!(e, R::UnknownNetwork { .. }) && one_line(e));
    let e = g.sign(
        "alice",
        Body::Delete {
            object: model::ObjectKind::Access,
            name: forged.into(),
        },
    );
    g.refuse(e, |e| matches!(e, R::UnknownObject { .. }) && one_line(e));
    let e = sign_next(
        &g.chain,
        forged,
        container("c", "web", 1, [10, 1, 1, 70]),
        &key(66),
    );
    g.refuse(e, |e| matches!(e, R::UnknownAuthor { .. }) && one_line(e));
    let e = sign_next(
        &g.chain,
        forged,
        Body::Twin {
            name: "dave".into(),
            public_key: key(66).public(),
        },
        &key(66),
    );
    g.refuse(e, |e| matches!(e, R::TwinAuthor { .. }) && one_line(e));
}

/// The YAML parser's messages quote the text they refuse; they are shown on one line too.
#[test]
fn malformed_documents_are_reported_on_one_line() {
    let grid = Grid::new();
    let good = serde_yaml::to_string(&grid.entries[3]).expect("yaml");
    let text = good.replace("kind: node", "kind: \"node\\nentry 9: refused: forged\"");
    let (_, reason) = file::parse(&format!("---\n{text}")).expect_err("an unknown kind");
    let shown = reason.to_string();
    assert!(shown.contains("forged") && !shown.contains('\n'), "{shown}");
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
        },
    );
    assert_eq!(
        g.chain.state().gateways["alice/www2"].backends,
        ["10.1.1.2:80".parse::<std::net::SocketAddr>().expect("addr")]
    );
}

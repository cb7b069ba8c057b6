//! Each rule refuses what breaks it, with its reason, and the refused entry changes nothing.

use super::super::{
    fixture::{Grid, container, key, member, network, node},
    keys::{PublicKey, Signature},
    *,
};
use crate::vocab::{GatewayMode, WgKey};

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
    // 13b. a key of small order (the identity point), with the signature anyone can make for
    // it on any message: R the identity, S zero.
    let identity = {
        let mut bytes = [0; 32];
        bytes[0] = 1;
        bytes
    };
    let mut e = sign_next(
        &g.chain,
        "mallory",
        Body::Twin {
            name: "mallory".into(),
            public_key: PublicKey(identity),
        },
        &key(9),
    );
    let mut anyones = [0; 64];
    anyones[..32].copy_from_slice(&identity);
    e.signature = Signature(anyones);
    check(&mut g, e, &|e| matches!(e, R::WeakTwinKey { .. }));
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
            proxy_protocol: false,
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
            proxy_protocol: false,
        },
    );
    check(&mut g, e, &|e| matches!(e, R::BadHostname { .. })); // 28
    assert!(n >= 20, "only {n} bad entries");
}

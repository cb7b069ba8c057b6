//! A small grid built from a good chain, for the tests of the ledger and of what reads it.

use std::net::{IpAddr, Ipv4Addr};

use super::{Body, Chain, Entry, Rejection, SigningKey, model::Member, sign_next};
use crate::vocab::{GatewayMode, WgKey};

pub(crate) struct Grid {
    pub(crate) entries: Vec<Entry>,
    pub(crate) chain: Chain,
    pub(crate) alice: SigningKey,
    pub(crate) bob: SigningKey,
    carol: SigningKey,
    probes: u8,
}

pub(crate) fn key(n: u8) -> SigningKey {
    SigningKey::from_seed([n; 32])
}

pub(crate) fn member(node_id: u32, third: u8, port: u16) -> Member {
    Member {
        node_id,
        subnet: format!("10.1.{third}.0/24").parse().expect("net"),
        subnet_v6: format!("fd00:1:0:{third:x}::/64").parse().expect("net"),
        wireguard_listen_port: port,
    }
}

pub(crate) fn network(name: &str, version: u64, members: Vec<Member>) -> Body {
    Body::Network {
        name: name.into(),
        version,
        ip_range: "10.1.0.0/16".parse().expect("net"),
        ipv6_range: "fd00:1::/48".parse().expect("net"),
        members,
    }
}

pub(crate) fn container(name: &str, network: &str, node_id: u32, ipv4: [u8; 4]) -> Body {
    Body::Container {
        name: name.into(),
        network: network.into(),
        node_id,
        ipv4: ipv4.into(),
        ipv6: None,
    }
}

impl Grid {
    /// Twins alice, bob, carol; nodes 1 (alice, public) and 2 (carol); alice/web on both with
    /// a container, a gateway and an access peer; bob/db on node 1 with the same subnet.
    pub(crate) fn new() -> Self {
        let mut grid = Self {
            entries: Vec::new(),
            chain: Chain::default(),
            alice: key(1),
            bob: key(2),
            carol: key(3),
            probes: 0,
        };
        for (name, n) in [("alice", 1), ("bob", 2), ("carol", 3)] {
            let public_key = key(n).public();
            grid.push_ok(
                name,
                Body::Twin {
                    name: name.into(),
                    public_key,
                },
            );
        }
        grid.push_ok("alice", node(1, "alice", Some([203, 0, 113, 1])));
        grid.push_ok("carol", node(2, "carol", None));
        grid.push_ok(
            "alice",
            network("web", 1, vec![member(1, 1, 51820), member(2, 2, 51820)]),
        );
        grid.push_ok("alice", container("web1", "web", 1, [10, 1, 1, 2]));
        grid.push_ok("bob", network("db", 1, vec![member(1, 1, 51821)]));
        grid.push_ok("bob", container("db1", "db", 1, [10, 1, 1, 2]));
        grid.push_ok(
            "alice",
            Body::Gateway {
                name: "www".into(),
                network: "web".into(),
                node_id: 1,
                hostnames: vec!["www.example.org".into()],
                backends: vec!["10.1.1.2:80".parse().expect("addr")],
                mode: GatewayMode::Http,
                proxy_protocol: false,
            },
        );
        grid.push_ok(
            "alice",
            Body::Access {
                name: "laptop".into(),
                network: "web".into(),
                node_id: 2,
                wireguard_public_key: WgKey([9; 32]),
                allowed_ips: vec!["10.1.200.5/32".parse().expect("net")],
            },
        );
        grid
    }

    pub(crate) fn key_of(&self, author: &str) -> &SigningKey {
        match author {
            "alice" => &self.alice,
            "bob" => &self.bob,
            _ => &self.carol,
        }
    }

    pub(crate) fn sign(&self, author: &str, body: Body) -> Entry {
        sign_next(&self.chain, author, body, self.key_of(author))
    }

    pub(crate) fn push_ok(&mut self, author: &str, body: Body) {
        let entry = self.sign(author, body);
        self.chain
            .apply(&entry)
            .unwrap_or_else(|e| panic!("fixture entry refused: {e}"));
        self.entries.push(entry);
    }

    /// Applies a bad entry: it must be refused with a reason `expected` accepts, and change
    /// nothing; a good entry afterwards must still be accepted.
    pub(crate) fn refuse(&mut self, entry: Entry, expected: impl Fn(&Rejection) -> bool) {
        let before = self.chain.state().clone();
        let err = self
            .chain
            .apply(&entry)
            .expect_err("a bad entry was accepted");
        assert!(expected(&err), "unexpected reason: {err}");
        assert!(!err.to_string().is_empty());
        assert_eq!(
            self.chain.state(),
            &before,
            "a refused entry changed the state ({err})"
        );
        self.probes += 1;
        let probe = self.sign(
            "alice",
            container(
                &format!("probe{}", self.probes),
                "web",
                1,
                [10, 1, 1, 100 + self.probes],
            ),
        );
        self.chain
            .apply(&probe)
            .expect("the ledger goes on after a refused entry");
    }
}

pub(crate) fn node(node_id: u32, farmer: &str, public: Option<[u8; 4]>) -> Body {
    Body::Node {
        node_id,
        farmer: farmer.into(),
        wireguard_public_key: WgKey([node_id as u8; 32]),
        endpoints: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, node_id as u8))],
        public_ipv4: public.map(Into::into),
        public_ipv6: None,
    }
}

//! Gateways' own rules: PROXY headers, the endpoint's address, who may serve a host name.

use super::super::{
    fixture::{Grid, container, member, network, node},
    *,
};
use crate::vocab::GatewayMode;

fn gateway(name: &str, network: &str, node_id: u32, hostnames: &[&str], mode: GatewayMode) -> Body {
    let backend = if network == "db" {
        "10.1.1.2:80"
    } else {
        "10.1.1.2:443"
    };
    Body::Gateway {
        name: name.into(),
        network: network.into(),
        node_id,
        hostnames: hostnames.iter().map(|&h| h.to_owned()).collect(),
        backends: vec![backend.parse().expect("addr")],
        mode,
        proxy_protocol: false,
    }
}

fn with_proxy_protocol(mut body: Body) -> Body {
    if let Body::Gateway { proxy_protocol, .. } = &mut body {
        *proxy_protocol = true;
    }
    body
}

fn delete(name: &str) -> Body {
    Body::Delete {
        object: model::ObjectKind::Gateway,
        name: name.into(),
    }
}

/// Node 2 (carol's) gets a public address, so both fixture nodes can carry gateways.
fn grid_with_two_public_nodes() -> Grid {
    let mut g = Grid::new();
    g.push_ok("carol", node(2, "carol", Some([203, 0, 113, 2])));
    g
}

#[test]
fn proxy_protocol_is_for_tls_passthrough_only() {
    let mut g = Grid::new();
    let http = with_proxy_protocol(gateway(
        "api",
        "web",
        1,
        &["api.example.org"],
        GatewayMode::Http,
    ));
    let e = g.sign("alice", http);
    g.refuse(e, |e| matches!(e, Rejection::ProxyProtocolWithHttp));
    let tls = with_proxy_protocol(gateway(
        "api",
        "web",
        1,
        &["api.example.org"],
        GatewayMode::TlsPassthrough,
    ));
    g.push_ok("alice", tls);
    assert!(g.chain.state().gateways["alice/api"].proxy_protocol);
    assert!(!g.chain.state().gateways["alice/www"].proxy_protocol);
}

/// Entries written before `proxy_protocol` existed keep their signed bytes and still verify.
#[test]
fn gateways_without_proxy_protocol_keep_their_signed_bytes() {
    let g = Grid::new();
    let gateway = g
        .entries
        .iter()
        .find(|e| e.body.kind() == "gateway")
        .expect("the fixture has a gateway");
    let signed = String::from_utf8(gateway.signing_bytes()).expect("json");
    assert!(!signed.contains("proxy_protocol"), "{signed}");
    let yaml = serde_yaml::to_string(gateway).expect("yaml");
    assert!(!yaml.contains("proxy_protocol"), "{yaml}");
    let parsed = file::parse(&format!("---\n{yaml}")).expect("an old gateway entry parses");
    assert_eq!(&parsed[0], gateway);
    assert!(replay(&g.entries).refused.is_empty());
}

/// The last host of every member subnet is the gateway endpoint's, whether or not a gateway
/// stands there yet: a container there would block every later gateway of the network.
#[test]
fn containers_cannot_take_the_gateway_endpoint_address() {
    let mut g = Grid::new();
    let endpoint = |e: &Rejection| matches!(e, Rejection::GatewayEndpointAddress { .. });
    let e = g.sign("alice", container("c1", "web", 1, [10, 1, 1, 254]));
    g.refuse(e, endpoint);
    let e = g.sign("alice", container("c2", "web", 2, [10, 1, 2, 254]));
    g.refuse(e, endpoint); // node 2 has no gateway: the address is kept all the same
    let mut v6 = container("c3", "web", 1, [10, 1, 1, 30]);
    if let Body::Container { ipv6, .. } = &mut v6 {
        *ipv6 = Some("fd00:1:0:1::fe".parse().expect("addr"));
    }
    let e = g.sign("alice", v6);
    g.refuse(e, |e| {
        endpoint(e)
            && e.to_string()
                .starts_with("ipv6: fd00:1:0:1::fe is the gateway endpoint")
    });
    g.push_ok("alice", container("c4", "web", 1, [10, 1, 1, 253]));
}

#[test]
fn a_gateway_stands_on_a_member_node_with_a_public_address() {
    let mut g = Grid::new();
    g.push_ok("bob", node(3, "bob", Some([203, 0, 113, 3])));
    let e = g.sign(
        "alice",
        gateway("far", "web", 3, &["far.example.org"], GatewayMode::Http),
    );
    g.refuse(e, |e| matches!(e, Rejection::NotMember { node_id: 3, .. }));
    g.push_ok(
        "alice",
        network(
            "web",
            2,
            vec![
                member(1, 1, 51820),
                member(2, 2, 51820),
                member(3, 3, 51820),
            ],
        ),
    );
    g.push_ok(
        "alice",
        gateway("far", "web", 3, &["far.example.org"], GatewayMode::Http),
    );
}

/// alice's gateway `www` serves www.example.org; nobody else may serve it until it is gone.
#[test]
fn a_host_name_belongs_to_one_owner_until_their_gateways_are_deleted() {
    let mut g = grid_with_two_public_nodes();
    let taken = |e: &Rejection| matches!(e, Rejection::HostnameTaken { .. });
    for claim in ["www.example.org", "WWW.Example.ORG"] {
        let e = g.sign(
            "bob",
            gateway(
                "steal",
                "db",
                1,
                &["shop.example.org", claim],
                GatewayMode::Http,
            ),
        );
        g.refuse(e, |e| {
            taken(e)
                && e.to_string().contains("`www.example.org`")
                && e.to_string().contains("alice/www")
        });
    }
    // Another mode does not make the name anyone else's either.
    let e = g.sign(
        "bob",
        gateway(
            "steal",
            "db",
            1,
            &["www.example.org"],
            GatewayMode::TlsPassthrough,
        ),
    );
    g.refuse(e, taken);

    // alice serves it from node 2 as well; deleting one of her gateways keeps the name hers.
    g.push_ok(
        "alice",
        gateway("www2", "web", 2, &["www.example.org"], GatewayMode::Http),
    );
    g.push_ok("alice", delete("www"));
    let e = g.sign(
        "bob",
        gateway("steal", "db", 1, &["www.example.org"], GatewayMode::Http),
    );
    g.refuse(e, taken);
    g.push_ok("alice", delete("www2"));
    g.push_ok(
        "bob",
        gateway("mine", "db", 1, &["www.example.org"], GatewayMode::Http),
    );
    let e = g.sign(
        "alice",
        gateway("back", "web", 2, &["www.example.org"], GatewayMode::Http),
    );
    g.refuse(e, |e| taken(e) && e.to_string().contains("bob/mine"));
}

#[test]
fn one_owner_serves_a_name_once_per_node_and_mode() {
    let mut g = grid_with_two_public_nodes();
    let e = g.sign(
        "alice",
        gateway("again", "web", 1, &["www.example.org"], GatewayMode::Http),
    );
    g.refuse(e, |e| {
        matches!(e, Rejection::HostnameOnNode { node_id: 1, .. })
            && e.to_string().contains("alice/www")
    });
    // The other mode on the same node, and the same mode on another node, are fine.
    g.push_ok(
        "alice",
        gateway(
            "tls",
            "web",
            1,
            &["www.example.org"],
            GatewayMode::TlsPassthrough,
        ),
    );
    g.push_ok(
        "alice",
        gateway("www2", "web", 2, &["www.example.org"], GatewayMode::Http),
    );
    let e = g.sign(
        "alice",
        gateway(
            "tls2",
            "web",
            1,
            &["WWW.example.org"],
            GatewayMode::TlsPassthrough,
        ),
    );
    g.refuse(e, |e| matches!(e, Rejection::HostnameOnNode { .. }));
}

#[test]
fn host_names_are_kept_lowercase_and_listed_once() {
    let mut g = Grid::new();
    let e = g.sign(
        "alice",
        gateway(
            "twice",
            "web",
            1,
            &["a.example.org", "A.Example.org"],
            GatewayMode::Http,
        ),
    );
    g.refuse(e, |e| matches!(e, Rejection::DuplicateHostname { .. }));
    g.push_ok(
        "alice",
        gateway("mixed", "web", 1, &["Blog.Example.ORG"], GatewayMode::Http),
    );
    assert_eq!(
        g.chain.state().gateways["alice/mixed"].hostnames,
        ["blog.example.org"]
    );
}

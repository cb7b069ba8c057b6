//! What `gridnet gateway dns` asks and prints, without the asking: which public addresses serve
//! a name according to the ledger, which of them go into DNS after the probes, and the three
//! ways of printing them. Pure, so it is tested without a network.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
};

use serde_json::json;

use crate::{
    ledger::{GridState, rules::is_hostname},
    reconcile::uplink::gateway_port,
    vocab::GatewayMode,
};

/// Why there is nothing to probe for a name.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("`{name}` is not a DNS name (like web.example.org)")]
    NotADnsName { name: String },
    #[error("no gateway on the ledger serves `{name}`")]
    NoGateway { name: String },
}

/// One public address of one gateway serving the name: what is probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The gateway's `<owner>/<name>`.
    pub gateway: String,
    pub node_id: u32,
    pub mode: GatewayMode,
    /// One of the node's public addresses.
    pub address: IpAddr,
}

impl Target {
    /// Where the gateway listens: its node's public address, on its mode's port.
    pub fn socket(&self) -> SocketAddr {
        SocketAddr::new(self.address, gateway_port(self.mode))
    }
}

/// A probed target: `Ok` when it answered, else why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probed {
    pub target: Target,
    pub answer: Result<(), String>,
}

/// `name` as the ledger keeps host names: lowercase, without a final dot.
pub fn normalize(name: &str) -> Result<String, DnsError> {
    let bare = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if is_hostname(&bare) {
        Ok(bare)
    } else {
        Err(DnsError::NotADnsName {
            name: name.to_owned(),
        })
    }
}

/// Every public address of every gateway that serves `name` (normalized), in gateway order.
pub fn targets(state: &GridState, name: &str) -> Result<Vec<Target>, DnsError> {
    let mut out = Vec::new();
    for (key, gateway) in &state.gateways {
        if !gateway
            .hostnames
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
        {
            continue;
        }
        // The ledger refuses a gateway on a node without a public address, and a node update
        // that drops one a gateway uses.
        let Some(node) = state.nodes.get(&gateway.node_id) else {
            continue;
        };
        out.extend(node.public_ips().map(|address| Target {
            gateway: key.clone(),
            node_id: gateway.node_id,
            mode: gateway.mode,
            address,
        }));
    }
    if out.is_empty() {
        return Err(DnsError::NoGateway {
            name: name.to_owned(),
        });
    }
    Ok(out)
}

/// What goes into DNS for a name.
#[derive(Debug, PartialEq, Eq)]
pub struct Records {
    /// The name, fully qualified (with its final dot).
    pub fqdn: String,
    pub ttl: u32,
    /// The addresses to publish, IPv4 first.
    pub addresses: Vec<IpAddr>,
    /// Every probe, in target order.
    pub probed: Vec<Probed>,
}

impl Records {
    /// An address is published when every gateway of the name on it answered: clients of
    /// either mode may be sent there, and a dead port would fail them.
    pub fn new(name: &str, ttl: u32, probed: Vec<Probed>) -> Self {
        let mut healthy: BTreeMap<IpAddr, bool> = BTreeMap::new();
        for p in &probed {
            *healthy.entry(p.target.address).or_insert(true) &= p.answer.is_ok();
        }
        Self {
            fqdn: format!("{name}."),
            ttl,
            addresses: healthy
                .into_iter()
                .filter_map(|(address, ok)| ok.then_some(address))
                .collect(),
            probed,
        }
    }

    /// The probes that failed, each with why: the reason their address is left out.
    pub fn failed(&self) -> impl Iterator<Item = (&Target, &str)> {
        self.probed
            .iter()
            .filter_map(|p| p.answer.as_ref().err().map(|e| (&p.target, e.as_str())))
    }

    /// One record a line: `web.example.org. 60 IN A 203.0.113.1`.
    pub fn lines(&self) -> String {
        let mut out = String::new();
        for address in &self.addresses {
            let _ = writeln!(
                out,
                "{} {} IN {} {address}",
                self.fqdn,
                self.ttl,
                record_type(*address)
            );
        }
        out
    }

    /// A zone-file fragment: `$TTL`, the records, and a comment for each gateway left out.
    pub fn zone(&self) -> String {
        let mut out = format!("$TTL {}\n", self.ttl);
        for address in &self.addresses {
            let _ = writeln!(out, "{} IN {} {address}", self.fqdn, record_type(*address));
        }
        let published: BTreeSet<&IpAddr> = self.addresses.iter().collect();
        for (target, reason) in self.failed() {
            debug_assert!(!published.contains(&target.address));
            let _ = writeln!(
                out,
                "; left out {}: {}: {}",
                target.address,
                describe(target),
                one_line(reason)
            );
        }
        out
    }

    /// Everything, for scripts.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "name": self.fqdn,
            "ttl": self.ttl,
            "records": self.addresses.iter().map(|a| json!({
                "type": record_type(*a),
                "address": a,
            })).collect::<Vec<_>>(),
            "gateways": self.probed.iter().map(|p| json!({
                "gateway": p.target.gateway,
                "node_id": p.target.node_id,
                "mode": p.target.mode,
                "address": p.target.address,
                "port": gateway_port(p.target.mode),
                "answered": p.answer.is_ok(),
                "error": p.answer.as_ref().err(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// `A` or `AAAA`.
fn record_type(address: IpAddr) -> &'static str {
    match address {
        IpAddr::V4(_) => "A",
        IpAddr::V6(_) => "AAAA",
    }
}

/// `gateway alice/www on node 1 (http, port 80)`.
pub fn describe(target: &Target) -> String {
    let mode = match target.mode {
        GatewayMode::Http => "http",
        GatewayMode::TlsPassthrough => "tls_passthrough",
    };
    format!(
        "gateway {} on node {} ({mode}, port {})",
        target.gateway,
        target.node_id,
        gateway_port(target.mode)
    )
}

/// An error's text on one line, so a comment stays one comment.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Body, fixture::Grid, fixture::node};

    fn probed(state: &GridState, name: &str, dead: &[&str]) -> Vec<Probed> {
        targets(state, name)
            .expect("served")
            .into_iter()
            .map(|target| Probed {
                answer: if dead.contains(&target.gateway.as_str()) {
                    Err("connection refused\n(os error 111)".into())
                } else {
                    Ok(())
                },
                target,
            })
            .collect()
    }

    /// alice/www (fixture, node 1, 203.0.113.1) and alice/www2 on node 2, which has an IPv4
    /// and an IPv6 public address.
    fn grid() -> Grid {
        let mut g = Grid::new();
        let mut two = node(2, "carol", Some([203, 0, 113, 2]));
        if let Body::Node { public_ipv6, .. } = &mut two {
            *public_ipv6 = Some("2001:db8::2".parse().expect("addr"));
        }
        g.push_ok("carol", two);
        g.push_ok(
            "alice",
            Body::Gateway {
                name: "www2".into(),
                network: "web".into(),
                node_id: 2,
                hostnames: vec!["www.example.org".into()],
                backends: vec!["10.1.1.2:80".parse().expect("addr")],
                mode: GatewayMode::Http,
                proxy_protocol: false,
            },
        );
        g
    }

    #[test]
    fn names_are_checked_and_matched_without_case() {
        assert_eq!(
            normalize("WWW.Example.org.").as_deref(),
            Ok("www.example.org")
        );
        assert!(matches!(
            normalize("not a name"),
            Err(DnsError::NotADnsName { .. })
        ));
        let g = grid();
        let found = targets(g.chain.state(), "www.example.org").expect("served");
        assert_eq!(
            found
                .iter()
                .map(|t| (t.gateway.as_str(), t.socket().to_string()))
                .collect::<Vec<_>>(),
            [
                ("alice/www", "203.0.113.1:80".to_owned()),
                ("alice/www2", "203.0.113.2:80".to_owned()),
                ("alice/www2", "[2001:db8::2]:80".to_owned()),
            ]
        );
        assert_eq!(
            targets(g.chain.state(), "nobody.example.org"),
            Err(DnsError::NoGateway {
                name: "nobody.example.org".into()
            })
        );
    }

    #[test]
    fn every_answering_address_is_printed_as_a_record() {
        let g = grid();
        let records = Records::new(
            "www.example.org",
            60,
            probed(g.chain.state(), "www.example.org", &[]),
        );
        assert_eq!(
            records.lines(),
            "www.example.org. 60 IN A 203.0.113.1\n\
             www.example.org. 60 IN A 203.0.113.2\n\
             www.example.org. 60 IN AAAA 2001:db8::2\n"
        );
        let json = records.json();
        assert_eq!(json["records"][2]["type"], "AAAA");
        assert_eq!(json["gateways"][0]["answered"], true);
        assert_eq!(json["gateways"][0]["port"], 80);
    }

    #[test]
    fn dead_gateways_are_left_out_with_the_reason() {
        let g = grid();
        let records = Records::new(
            "www.example.org",
            300,
            probed(g.chain.state(), "www.example.org", &["alice/www2"]),
        );
        assert_eq!(
            records.addresses,
            ["203.0.113.1".parse::<IpAddr>().expect("addr")]
        );
        assert_eq!(
            records.zone(),
            "$TTL 300\n\
             www.example.org. IN A 203.0.113.1\n\
             ; left out 203.0.113.2: gateway alice/www2 on node 2 (http, port 80): connection refused (os error 111)\n\
             ; left out 2001:db8::2: gateway alice/www2 on node 2 (http, port 80): connection refused (os error 111)\n"
        );
        let json = records.json();
        assert_eq!(json["gateways"][1]["answered"], false);
        assert_eq!(
            json["gateways"][1]["error"],
            "connection refused\n(os error 111)"
        );

        let none = Records::new(
            "www.example.org",
            60,
            probed(
                g.chain.state(),
                "www.example.org",
                &["alice/www", "alice/www2"],
            ),
        );
        assert!(none.addresses.is_empty());
        assert_eq!(none.lines(), "");
        assert_eq!(none.failed().count(), 3);
    }

    /// Two gateways of the name on one address (one per mode): the address goes into DNS only
    /// when both answer.
    #[test]
    fn an_address_is_published_only_when_all_its_gateways_answer() {
        let mut g = grid();
        g.push_ok(
            "alice",
            Body::Gateway {
                name: "tls".into(),
                network: "web".into(),
                node_id: 1,
                hostnames: vec!["www.example.org".into()],
                backends: vec!["10.1.1.2:443".parse().expect("addr")],
                mode: GatewayMode::TlsPassthrough,
                proxy_protocol: false,
            },
        );
        let records = Records::new(
            "www.example.org",
            60,
            probed(g.chain.state(), "www.example.org", &["alice/tls"]),
        );
        assert!(
            !records
                .addresses
                .contains(&"203.0.113.1".parse().expect("addr"))
        );
        assert!(records.zone().contains(
            "; left out 203.0.113.1: gateway alice/tls on node 1 (tls_passthrough, port 443)"
        ));
        assert_eq!(records.addresses.len(), 2);
    }
}

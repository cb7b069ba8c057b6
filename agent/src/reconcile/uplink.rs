//! What the uplink guard must let in, from a plan. Pure.

use std::collections::BTreeSet;

use crate::plan::{GatewayMode, NodePlan};

use gridnet_common::packet::{IPPROTO_TCP as TCP, IPPROTO_UDP as UDP};

/// The public port of a gateway mode.
pub const fn gateway_port(mode: GatewayMode) -> u16 {
    match mode {
        GatewayMode::Http => 80,
        GatewayMode::TlsPassthrough => 443,
    }
}

/// (protocol, port) pairs to allow: every network's WireGuard listen port (UDP) and every
/// gateway's public port (TCP).
pub fn allowed_ports(plan: &NodePlan) -> BTreeSet<(u8, u16)> {
    let wireguard = plan
        .networks
        .iter()
        .filter(|n| n.wireguard_listen_port != 0)
        .map(|n| (UDP, n.wireguard_listen_port));
    let gateways = plan.gateways.iter().map(|g| (TCP, gateway_port(g.mode)));
    wireguard.chain(gateways).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{GatewayPlan, NetworkPlan};

    #[test]
    fn wireguard_and_gateway_ports_are_allowed() {
        let network = |name: &str, port| NetworkPlan {
            wireguard_listen_port: port,
            ..NetworkPlan::local(
                name,
                "10.1.0.0/16".parse().expect("net"),
                "fd00:1::/48".parse().expect("net"),
                "10.1.1.0/24".parse().expect("net"),
                "fd00:1:0:1::/64".parse().expect("net"),
            )
        };
        let gateway = |mode| GatewayPlan {
            name: "g".into(),
            network: "a".into(),
            hostnames: vec!["example.org".into()],
            backends: Vec::new(),
            mode,
            public_ips: Vec::new(),
            endpoint: "alice.gw".into(),
            proxy_protocol: false,
        };
        let plan = NodePlan {
            networks: vec![network("a", 51820), network("b", 0), network("c", 51821)],
            containers: Vec::new(),
            gateways: vec![
                gateway(GatewayMode::TlsPassthrough),
                gateway(GatewayMode::Http),
            ],
        };
        let want: BTreeSet<(u8, u16)> = [(UDP, 51820), (UDP, 51821), (TCP, 80), (TCP, 443)].into();
        assert_eq!(allowed_ports(&plan), want);
        assert!(allowed_ports(&NodePlan::default()).is_empty());
    }
}

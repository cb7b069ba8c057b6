//! The web gateways' part of a pass: what the plan's gateways should be on this node, as the
//! gateway handle takes them. Pure; the handle ([`crate::gateway::Gateways`]) does the rest.

use std::{net::SocketAddr, path::Path};

use super::{NodeConfig, names, uplink::gateway_port};
use crate::{gateway::GatewaySpec, netlink::NETNS_DIR, plan::NodePlan};

/// Every planned gateway, sorted by name: listening on each of the node's public addresses at
/// its mode's port, and dialling its backends from its endpoint container's namespace.
pub fn specs(plan: &NodePlan, config: &NodeConfig) -> Vec<GatewaySpec> {
    let mut specs: Vec<GatewaySpec> = plan
        .gateways
        .iter()
        .map(|gateway| GatewaySpec {
            name: gateway.name.clone(),
            hostnames: gateway.hostnames.clone(),
            mode: gateway.mode,
            listen: gateway
                .public_ips
                .iter()
                .map(|&ip| SocketAddr::new(ip, gateway_port(gateway.mode)))
                .collect(),
            backends: gateway.backends.clone(),
            netns: Some(
                Path::new(NETNS_DIR)
                    .join(names::netns_name(&config.netns_prefix, &gateway.endpoint)),
            ),
            proxy_protocol: gateway.proxy_protocol,
        })
        .collect();
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    specs
}

/// Whether the running gateways (`running`, in any order) already are `wanted` (sorted by name).
pub fn unchanged(running: &[GatewaySpec], wanted: &[GatewaySpec]) -> bool {
    let mut running = running.to_vec();
    running.sort_by(|a, b| a.name.cmp(&b.name));
    running == wanted
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::{plan::GatewayPlan, vocab::GatewayMode};

    fn gateway(name: &str, mode: GatewayMode) -> GatewayPlan {
        GatewayPlan {
            name: name.into(),
            network: "alice/net".into(),
            hostnames: vec!["shop.example.org".into()],
            backends: vec!["10.1.2.5:8080".parse().expect("addr")],
            mode,
            public_ips: vec![
                "192.0.2.10".parse().expect("ip"),
                "2001:db8::10".parse().expect("ip"),
            ],
            endpoint: "alice.gw".into(),
            proxy_protocol: mode == GatewayMode::TlsPassthrough,
        }
    }

    #[test]
    fn gateways_listen_on_every_public_address_and_dial_from_their_endpoint() {
        let plan = NodePlan {
            gateways: vec![
                gateway("alice/tls", GatewayMode::TlsPassthrough),
                gateway("alice/site", GatewayMode::Http),
            ],
            ..NodePlan::default()
        };
        let specs = specs(&plan, &NodeConfig::default());
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].name, "alice/site", "sorted by name");
        assert_eq!(
            specs[0].listen,
            [
                "192.0.2.10:80".parse::<SocketAddr>().expect("addr"),
                "[2001:db8::10]:80".parse().expect("addr")
            ]
        );
        assert_eq!(specs[1].listen[0].port(), 443);
        assert_eq!(
            specs[0].netns,
            Some(PathBuf::from("/run/netns/gn-alice.gw"))
        );
        assert_eq!(specs[0].backends, plan.gateways[1].backends);
        assert!(specs[1].proxy_protocol && !specs[0].proxy_protocol);
        assert!(unchanged(&[specs[1].clone(), specs[0].clone()], &specs));
        assert!(!unchanged(&specs[..1], &specs));
    }
}

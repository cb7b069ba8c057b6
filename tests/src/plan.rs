//! The plans tests apply: one network shape on fixed ranges, and containers on it.

use gridnet_agent::plan::{ContainerPlan, NetworkPlan};

/// A network on the ranges every test and demo uses: 10.1.0.0/16 and fd00:1::/48, with this
/// node's subnets 10.1.1.0/24 and fd00:1:0:1::/64. Networks may share them: that is the point.
pub fn test_network(name: &str) -> NetworkPlan {
    let v4 = |text: &str| text.parse().expect("literal prefix");
    let v6 = |text: &str| text.parse().expect("literal prefix");
    NetworkPlan::local(
        name,
        v4("10.1.0.0/16"),
        v6("fd00:1::/48"),
        v4("10.1.1.0/24"),
        v6("fd00:1:0:1::/64"),
    )
}

/// A container of a [`test_network`] at host number `host` (10.1.1.`host`, fd00:1:0:1::`host`).
pub fn test_container(name: &str, network: &str, host: u8) -> ContainerPlan {
    let ipv6 = format!("fd00:1:0:1::{host:x}")
        .parse()
        .expect("literal address");
    ContainerPlan::new(name, network, [10, 1, 1, host].into(), ipv6)
}

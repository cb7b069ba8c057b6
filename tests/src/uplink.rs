//! A node with an uplink into an "internet": the topology of the uplink guard's tests.

use crate::{Node, TestNetns, ip};

/// The node's address on its test uplink.
pub const NODE_IP: &str = "10.200.0.1";
/// The "internet" side's address.
pub const INET_IP: &str = "10.200.0.2";

/// A node with an uplink `up0` into an "internet" namespace (`inet0`), both removed on drop.
pub struct Uplinked {
    pub node: Node,
    /// The "internet" namespace.
    pub inet: TestNetns,
}

/// A node whose uplink `up0` ({NODE_IP}/24) is a veth into a fresh "internet" namespace
/// (`inet0`, {INET_IP}/24).
pub fn uplinked() -> anyhow::Result<Uplinked> {
    let up = Uplinked {
        node: Node::new()?,
        inet: TestNetns::new("inet")?,
    };
    let node_ns = up.node.ns.name();
    ip(
        node_ns,
        &[
            "link",
            "add",
            "up0",
            "type",
            "veth",
            "peer",
            "name",
            "inet0",
            "netns",
            up.inet.name(),
        ],
    )?;
    for (ns, dev, addr) in [
        (node_ns, "up0", NODE_IP),
        (up.inet.name(), "inet0", INET_IP),
    ] {
        ip(ns, &["addr", "add", &format!("{addr}/24"), "dev", dev])?;
        ip(ns, &["link", "set", dev, "up"])?;
        ip(ns, &["link", "set", "lo", "up"])?;
    }
    Ok(up)
}

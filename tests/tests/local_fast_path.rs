//! One node, two networks on the same address ranges: the local fast path, isolation,
//! anti-spoofing and exact counters, on the running kernel.

use std::{net::UdpSocket, time::Duration};

use anyhow::{Context as _, ensure};
use gridnet_agent::plan::{ContainerPlan, NetworkPlan, NodePlan};
use gridnet_tests::{
    Node, counter, ping, run_in, serve_identity, test_container, test_network, wait, within,
};

const A: &str = "alice/a";
const B: &str = "bob/b";

fn network(name: &str) -> NetworkPlan {
    test_network(name)
}

fn container(name: &str, network: &str, last: u8) -> ContainerPlan {
    test_container(name, network, last)
}

/// a1 (.2) and a2 (.3) in A; b1 has a2's address (.3) in B, b2 (.4) exists only in B.
fn two_networks() -> NodePlan {
    NodePlan {
        networks: vec![network(A), network(B)],
        containers: vec![
            container("a1", A, 2),
            container("a2", A, 3),
            container("b1", B, 3),
            container("b2", B, 4),
        ],
        gateways: Vec::new(),
    }
}

fn node_with_two_networks() -> anyhow::Result<Node> {
    let node = Node::new()?;
    node.apply(&two_networks())?;
    Ok(node)
}

/// Connects from `container` to `addr` (text) and reads what the server says.
fn fetch(node: &Node, container: &str, addr: &str) -> anyhow::Result<String> {
    gridnet_tests::fetch(node, container, addr.parse()?)
}

#[test]
fn same_network_talks_over_ipv4_and_ipv6_with_tcp_udp_and_ping() -> anyhow::Result<()> {
    let node = node_with_two_networks()?;
    let a1 = node.container_ns("a1");
    ensure!(ping(&a1, "10.1.1.3", 3)?, "a1 cannot ping a2 over IPv4");
    ensure!(
        ping(&a1, "fd00:1:0:1::3", 3)?,
        "a1 cannot ping a2 over IPv6"
    );

    serve_identity(&node, "a2", 7001, "a2")?;
    serve_identity(&node, "b1", 7001, "b1")?;
    assert_eq!(fetch(&node, "a1", "10.1.1.3:7001")?, "a2");
    assert_eq!(fetch(&node, "a1", "[fd00:1:0:1::3]:7001")?, "a2");

    for (bind, target) in [
        ("0.0.0.0:7002", "10.1.1.3:7002"),
        ("[::]:7003", "[fd00:1:0:1::3]:7003"),
    ] {
        let server = within(&node.container_ns("a2"), move || UdpSocket::bind(bind))??;
        let client = within(&a1, || {
            UdpSocket::bind("[::]:0").or_else(|_| UdpSocket::bind("0.0.0.0:0"))
        })??;
        let target: std::net::SocketAddr = target.parse()?;
        let client = if target.is_ipv4() {
            within(&a1, || UdpSocket::bind("0.0.0.0:0"))??
        } else {
            client
        };
        server.set_read_timeout(Some(Duration::from_secs(2)))?;
        client.send_to(b"hello over udp", target)?;
        let mut buf = [0u8; 64];
        let (n, from) = server
            .recv_from(&mut buf)
            .context("a2 got no UDP datagram")?;
        assert_eq!(&buf[..n], b"hello over udp");
        server.send_to(b"reply", from)?;
        client.set_read_timeout(Some(Duration::from_secs(2)))?;
        let (n, _) = client.recv_from(&mut buf).context("a1 got no UDP reply")?;
        assert_eq!(&buf[..n], b"reply");
    }
    Ok(())
}

#[test]
fn networks_are_isolated_even_with_the_same_addresses() -> anyhow::Result<()> {
    let node = node_with_two_networks()?;
    serve_identity(&node, "b1", 7101, "b1")?;
    serve_identity(&node, "b2", 7101, "b2")?;
    serve_identity(&node, "a1", 7101, "a1")?;
    let before = node.bpf_stats()?;

    // b2's address does not exist in A; b1's address is a2's in A, which has no server.
    ensure!(
        fetch(&node, "a1", "10.1.1.4:7101").is_err(),
        "a1 reached b2"
    );
    ensure!(
        fetch(&node, "a1", "[fd00:1:0:1::4]:7101").is_err(),
        "a1 reached b2 over IPv6"
    );
    ensure!(
        !ping(&node.container_ns("a1"), "10.1.1.4", 2)?,
        "a1 pinged b2"
    );
    ensure!(
        fetch(&node, "a1", "10.1.1.3:7101").is_err(),
        "a1 reached b1's server through a2's address"
    );
    ensure!(
        fetch(&node, "b1", "10.1.1.2:7101").is_err(),
        "b1 reached a1"
    );
    ensure!(
        !ping(&node.container_ns("b1"), "fd00:1:0:1::2", 2)?,
        "b1 pinged a1 over IPv6"
    );

    let after = node.bpf_stats()?;
    let dropped = |stats, network| counter(stats, network, "drop", Some("cross_network")).0;
    ensure!(
        dropped(&after, A) > dropped(&before, A),
        "no cross-network drop counted in A: {after}"
    );
    ensure!(
        dropped(&after, B) > dropped(&before, B),
        "no cross-network drop counted in B: {after}"
    );
    Ok(())
}

#[test]
fn forged_source_addresses_are_dropped_and_counted() -> anyhow::Result<()> {
    let node = node_with_two_networks()?;
    let a1 = node.container_ns("a1");
    ensure!(ping(&a1, "10.1.1.3", 1)?, "baseline ping failed");

    // A second, unreserved address on a1: packets from it are forged.
    let out = run_in(&a1, "ip", &["addr", "add", "10.1.1.99/24", "dev", "eth0"])?;
    ensure!(
        out.status.success(),
        "ip addr add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = counter(&node.bpf_stats()?, A, "drop", Some("spoofed_ip")).0;
    ensure!(
        !run_in(
            &a1,
            "ping",
            &[
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "1",
                "-I",
                "10.1.1.99",
                "10.1.1.3"
            ]
        )?
        .status
        .success()
    );
    let after = counter(&node.bpf_stats()?, A, "drop", Some("spoofed_ip")).0;
    ensure!(after > before, "forged IP not counted: {before} -> {after}");

    // A forged MAC: every frame a1 sends now carries it.
    let out = run_in(
        &a1,
        "ip",
        &["link", "set", "eth0", "address", "02:66:6f:72:67:65"],
    )?;
    ensure!(
        out.status.success(),
        "ip link set: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = counter(&node.bpf_stats()?, A, "drop", Some("spoofed_mac")).0;
    ensure!(
        !ping(&a1, "10.1.1.3", 3)?,
        "a1 still reaches a2 with a forged MAC"
    );
    let after = counter(&node.bpf_stats()?, A, "drop", Some("spoofed_mac")).0;
    ensure!(
        after > before,
        "forged MAC not counted: {before} -> {after}"
    );
    Ok(())
}

/// How long a counter may take to show a packet already delivered: it is counted before the
/// delivery, so this only bounds a broken counter's wait.
const COUNTED: Duration = Duration::from_secs(3);

#[test]
fn forwarded_counters_are_exact() -> anyhow::Result<()> {
    const N: u64 = 1000;
    const PAYLOAD: usize = 100;
    let node = node_with_two_networks()?;
    let server = within(&node.container_ns("a2"), || {
        UdpSocket::bind("10.1.1.3:7201")
    })??;
    let client = within(&node.container_ns("a1"), || UdpSocket::bind("10.1.1.2:0"))??;
    // Resolve the neighbour first: ARP is answered (a "reply"), not forwarded.
    client.send_to(&[0; PAYLOAD], "10.1.1.3:7201")?;
    server.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 2048];
    server
        .recv_from(&mut buf)
        .context("warm-up datagram lost")?;
    // Nothing but these datagrams is forwarded in A (ARP and neighbour discovery are answered or
    // dropped, never forwarded), and each is counted before it is delivered. So once the
    // warm-up shows, the counter is still, and moves only with the datagrams below.
    let before = wait::until(
        COUNTED,
        "the warm-up datagram in A's forward counter",
        || Ok(counter(&node.bpf_stats()?, A, "forward", None)),
        |&(packets, _)| packets >= 1,
    )?;
    // In lock step, so no datagram is lost to a full socket buffer.
    for sent in 0..N {
        client.send_to(&[0; PAYLOAD], "10.1.1.3:7201")?;
        server
            .recv_from(&mut buf)
            .with_context(|| format!("datagram {sent} of {N} was lost"))?;
    }
    let after = counter(&node.bpf_stats()?, A, "forward", None);
    assert_eq!(after.0 - before.0, N, "forwarded packets in A");
    // Ethernet 14 + IPv4 20 + UDP 8 + payload.
    assert_eq!(
        after.1 - before.1,
        N * (14 + 20 + 8 + PAYLOAD as u64),
        "forwarded bytes in A"
    );
    Ok(())
}

#[test]
fn fast_path_needs_no_forwarding_and_no_routes_in_the_node() -> anyhow::Result<()> {
    let node = node_with_two_networks()?;
    let forwarding = within(node.ns.name(), || {
        [
            "/proc/sys/net/ipv4/ip_forward",
            "/proc/sys/net/ipv6/conf/all/forwarding",
        ]
        .map(std::fs::read_to_string)
    })?;
    for value in forwarding {
        assert_eq!(value?.trim(), "0", "forwarding is on in the node namespace");
    }
    let routes = run_in(node.ns.name(), "ip", &["route", "show", "table", "all"])?;
    let routes = String::from_utf8_lossy(&routes.stdout);
    ensure!(
        !routes.contains("10.1.") && !routes.contains("fd00:1:"),
        "the node has routes to containers:\n{routes}"
    );
    ensure!(
        ping(&node.container_ns("a1"), "10.1.1.3", 2)?,
        "no IPv4 traffic without forwarding"
    );
    ensure!(
        ping(&node.container_ns("a1"), "fd00:1:0:1::3", 2)?,
        "no IPv6 traffic without forwarding"
    );
    Ok(())
}

#[test]
fn applying_the_same_plan_twice_changes_nothing_and_removal_is_complete() -> anyhow::Result<()> {
    let node = Node::new()?;
    let first = node.apply(&two_networks())?;
    ensure!(
        first.contains("changes"),
        "first apply made no changes:\n{first}"
    );
    assert_eq!(node.apply(&two_networks())?.trim(), "no changes");

    // Drop b2 and network B's other container: their namespaces, veths and entries go.
    let mut smaller = two_networks();
    smaller.containers.retain(|c| c.network == A);
    smaller.networks.retain(|n| n.name == A);
    node.apply(&smaller)?;
    let names = gridnet_agent::netlink::Netns::list(&node.prefix)?;
    assert_eq!(
        names,
        vec![node.container_ns("a1"), node.container_ns("a2")]
    );
    let links = run_in(node.ns.name(), "ip", &["-o", "link", "show"])?;
    let gn_links = String::from_utf8_lossy(&links.stdout)
        .lines()
        .filter(|l| l.contains(": gn"))
        .count();
    assert_eq!(gn_links, 2, "host veths left behind");
    let stats = node.bpf_stats()?;
    let maps = stats["maps"].as_array().context("maps")?;
    let entries = |name: &str| {
        maps.iter()
            .find(|m| m["name"] == name)
            .and_then(|m| m["entries"].as_u64())
    };
    assert_eq!(entries("GRIDNET_IFACE_1"), Some(2));
    assert_eq!(entries("GRIDNET_ENDPT_1"), Some(4));
    assert_eq!(entries("GRIDNET_NETS_1"), Some(1));
    assert_eq!(node.apply(&smaller)?.trim(), "no changes");
    ensure!(
        ping(&node.container_ns("a1"), "10.1.1.3", 2)?,
        "a1 lost a2 after B was removed"
    );
    Ok(())
}

#[test]
fn a_bad_plan_changes_nothing() -> anyhow::Result<()> {
    let node = node_with_two_networks()?;
    let mut bad = two_networks();
    bad.containers.push(container("a3", A, 2)); // a1's address again
    bad.containers.retain(|c| c.name != "b2");
    let err = node
        .apply(&bad)
        .expect_err("a duplicate address must be refused");
    ensure!(
        err.to_string().contains("both use 10.1.1.2"),
        "unclear error: {err}"
    );
    assert_eq!(
        node.apply(&two_networks())?.trim(),
        "no changes",
        "the refused plan changed something"
    );
    Ok(())
}

#[test]
fn bpf_stats_without_pins_fails_clearly() -> anyhow::Result<()> {
    // A fresh name, so nothing can be pinned there.
    let pin_root = gridnet_tests::names::pin_root(&gridnet_tests::names::unique_name("unpinned"));
    let out = std::process::Command::new(gridnet_tests::gridnet_bin()?)
        .arg("bpf-stats")
        .arg("--pin-root")
        .arg(&pin_root)
        .output()?;
    ensure!(
        !out.status.success(),
        "bpf-stats succeeded with nothing pinned"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        stderr.contains("nothing is pinned"),
        "unclear message: {stderr}"
    );
    ensure!(!stderr.contains("panicked"), "bpf-stats panicked: {stderr}");
    Ok(())
}

/// Whether this kernel has TCX (6.6+), read from `uname -r`, independently of the agent's probe.
fn kernel_has_tcx() -> anyhow::Result<bool> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    Ok((major, minor) >= (6, 6))
}

#[test]
fn attach_mode_is_probed_and_netlink_fallback_works() -> anyhow::Result<()> {
    for (mode, extra) in [("auto", &[][..]), ("netlink", &["--attach", "netlink"][..])] {
        let node = Node::new()?;
        node.apply_with(&two_networks(), extra)?;
        let host = node.host_ifname("a1")?;
        let tcx_pin = gridnet_agent::dataplane::pins::link_pin(
            &node.pin_root,
            gridnet_common::verdict::Program::TcFromContainer,
            &host,
        );
        let filters = run_in(
            node.ns.name(),
            "tc",
            &["filter", "show", "dev", &host, "ingress"],
        )?;
        let filters = String::from_utf8_lossy(&filters.stdout).into_owned();
        let expect_tcx = mode == "auto" && kernel_has_tcx()?;
        if expect_tcx {
            ensure!(tcx_pin.exists(), "{mode}: no TCX link pinned for {host}");
            ensure!(
                !filters.contains("tc_from_contain"),
                "{mode}: a cls_bpf filter besides TCX:\n{filters}"
            );
        } else {
            ensure!(!tcx_pin.exists(), "{mode}: a TCX link was pinned");
            ensure!(
                filters.contains("tc_from_contain"),
                "{mode}: no cls_bpf filter on {host}:\n{filters}"
            );
        }
        ensure!(
            ping(&node.container_ns("a1"), "10.1.1.3", 2)?,
            "{mode}: a1 cannot reach a2"
        );
        assert_eq!(
            node.apply_with(&two_networks(), extra)?.trim(),
            "no changes",
            "{mode}: second apply"
        );
    }
    Ok(())
}

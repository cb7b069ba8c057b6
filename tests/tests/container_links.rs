//! A container's link as the agent makes it: a silent host side, host addresses inside, one
//! neighbour, and addresses that follow the plan.

use anyhow::ensure;
use gridnet_agent::plan::NodePlan;
use gridnet_tests::{Node, ping, run_in, test_container, test_network};

const A: &str = "alice/a";

fn plan(hosts: &[(&str, u8)]) -> NodePlan {
    NodePlan {
        networks: vec![test_network(A)],
        containers: hosts
            .iter()
            .map(|&(name, host)| test_container(name, A, host))
            .collect(),
        gateways: Vec::new(),
    }
}

/// `ip ARGS` inside `ns`, its stdout, failing on a non-zero exit.
fn ip(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = run_in(ns, "ip", args)?;
    ensure!(out.status.success(), "ip {args:?} in {ns}: {out:?}");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_host_side_is_silent_and_containers_keep_one_neighbour() -> anyhow::Result<()> {
    let node = Node::new()?;
    node.apply(&plan(&[("a1", 2), ("a2", 3), ("a3", 4), ("a4", 5)]))?;
    let host = node.host_ifname("a1")?;
    let addresses = ip(node.ns.name(), &["addr", "show", "dev", &host])?;
    ensure!(
        !addresses.contains("inet"),
        "the host side has an address:\n{addresses}"
    );
    let disabled = run_in(
        node.ns.name(),
        "cat",
        &[&format!("/proc/sys/net/ipv6/conf/{host}/disable_ipv6")],
    )?;
    assert_eq!(String::from_utf8_lossy(&disabled.stdout).trim(), "1");

    let a1 = node.container_ns("a1");
    let v4 = ip(&a1, &["-4", "addr", "show", "dev", "eth0"])?;
    ensure!(v4.contains("10.1.1.2/32"), "not a host address:\n{v4}");
    let v6 = ip(&a1, &["-6", "addr", "show", "dev", "eth0"])?;
    ensure!(
        v6.contains("fd00:1:0:1::2/128"),
        "not a host address:\n{v6}"
    );
    for neighbour in [
        "10.1.1.3",
        "10.1.1.4",
        "10.1.1.5",
        "fd00:1:0:1::3",
        "fd00:1:0:1::4",
    ] {
        ensure!(ping(&a1, neighbour, 1)?, "a1 cannot reach {neighbour}");
    }
    // Every neighbour is reached through the gateway: one entry per family, the gateway's.
    let neighbours = ip(&a1, &["neigh", "show", "dev", "eth0"])?;
    let entries: Vec<&str> = neighbours
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("fe80:"))
        .collect();
    ensure!(
        entries.len() == 2
            && entries.iter().any(|l| l.starts_with("10.1.1.1 "))
            && entries.iter().any(|l| l.starts_with("fd00:1:0:1::1 ")),
        "neighbour entries besides the gateway:\n{neighbours}"
    );
    Ok(())
}

#[test]
fn a_changed_address_moves_inside_the_running_container() -> anyhow::Result<()> {
    let node = Node::new()?;
    node.apply(&plan(&[("a1", 2), ("a2", 3)]))?;
    let changed = node.apply(&plan(&[("a1", 2), ("a2", 9)]))?;
    ensure!(
        changed.contains("remove 10.1.1.3/32") && changed.contains("add 10.1.1.9/32"),
        "the address was not moved in place:\n{changed}"
    );
    ensure!(
        !changed.contains("veth"),
        "the container's link was rebuilt:\n{changed}"
    );
    let a2 = node.container_ns("a2");
    let v4 = ip(&a2, &["-4", "addr", "show", "dev", "eth0"])?;
    ensure!(
        v4.contains("10.1.1.9/32") && !v4.contains("10.1.1.3"),
        "{v4}"
    );
    let a1 = node.container_ns("a1");
    ensure!(
        ping(&a1, "10.1.1.9", 2)?,
        "a1 cannot reach a2's new address"
    );
    ensure!(ping(&a2, "10.1.1.2", 2)?, "a2 lost its default route");
    ensure!(!ping(&a1, "10.1.1.3", 1)?, "a2's old address still answers");
    assert_eq!(
        node.apply(&plan(&[("a1", 2), ("a2", 9)]))?.trim(),
        "no changes"
    );
    Ok(())
}

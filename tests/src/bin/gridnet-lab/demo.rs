//! `cargo xtask demo` (run by `gridnet-lab demo`): a three-node grid on this machine, from a local ledger.
//!
//! Creates three nodes (network namespaces joined by an underlay bridge),
//! each running its own `gridnet run` with its own node id and key, all following one ledger;
//! writes the ledger (three twins, three nodes, two users' networks on overlapping ranges,
//! containers on several nodes); then shows what works: a connectivity matrix checked against
//! what the ledger allows, each agent's status, and the datapath counters. Keeps running until
//! Ctrl-C (or, with `--once`, exits non-zero on any mismatch), then removes everything.
//!
//! Containers on different nodes need the encrypted tunnels between nodes, which gridnet does
//! not build yet: those cells say `tunnel`, honestly, instead of pretending.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, bail};
use gridnet_agent::{
    ledger::{Body, model::Member},
    plan::WgKey,
};
use gridnet_tests::{
    Agent, Node, TestLedger, TestNetns, fetch, ip, proto::WIREGUARD_PORT, serve_identity,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Check the matrix, tear down and exit (non-zero on any mismatch).
    #[arg(long)]
    once: bool,
}

/// Port of the identity server the demo runs in every container.
const IDENTITY_PORT: u16 = 7000;

/// (owner, container, network, node, IPv4 host in the node's /24).
const CONTAINERS: &[(&str, &str, &str, u32, u8)] = &[
    ("alice", "web1", "web", 1, 2),
    ("alice", "web2", "web", 1, 3),
    ("alice", "web3", "web", 2, 2),
    ("alice", "web4", "web", 3, 2),
    ("bob", "db1", "db", 1, 3), // web2's address, in bob's network
    ("bob", "db2", "db", 3, 2), // web4's address
];

pub fn run(args: Args) -> anyhow::Result<()> {
    println!("demo: creating three nodes on an underlay bridge");
    // The underlay: a bridge in a namespace of its own.
    let underlay_ns = TestNetns::new("demo-underlay")?;
    let underlay = underlay_ns.name();
    ip(underlay, &["link", "add", "br0", "type", "bridge"])?;
    ip(underlay, &["link", "set", "br0", "up"])?;
    let mut nodes = Vec::new();
    for id in 1..=3u32 {
        let node = Node::labelled("demo")?;
        let port = format!("n{id}");
        ip(
            underlay,
            &[
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "up0",
                "netns",
                node.ns.name(),
            ],
        )?;
        ip(underlay, &["link", "set", &port, "master", "br0", "up"])?;
        ip(
            node.ns.name(),
            &["addr", "add", &format!("192.0.2.{id}/24"), "dev", "up0"],
        )?;
        ip(node.ns.name(), &["link", "set", "up0", "up"])?;
        ip(node.ns.name(), &["link", "set", "lo", "up"])?;
        nodes.push(node);
    }

    println!(
        "demo: writing the ledger: twins, nodes, alice/web on nodes 1-3, bob/db on nodes 1 and 3"
    );
    let mut ledger = TestLedger::new(nodes[0].workdir())?;
    for twin in ["farmer", "alice", "bob"] {
        ledger.twin(twin)?;
    }
    for id in 1..=3u32 {
        ledger.submit(
            "farmer",
            Body::Node {
                node_id: id,
                farmer: "farmer".into(),
                wireguard_public_key: WgKey([id as u8; 32]),
                endpoints: vec![format!("192.0.2.{id}").parse()?],
                public_ipv4: None,
                public_ipv6: None,
            },
        )?;
    }
    for (owner, name, members, port) in [
        ("alice", "web", &[1u32, 2, 3][..], WIREGUARD_PORT),
        ("bob", "db", &[1, 3][..], WIREGUARD_PORT + 1),
    ] {
        let members = members
            .iter()
            .map(|&n| -> anyhow::Result<Member> {
                Ok(Member {
                    node_id: n,
                    subnet: format!("10.1.{n}.0/24").parse()?,
                    subnet_v6: format!("fd00:1:0:{n}::/64").parse()?,
                    wireguard_listen_port: port,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        ledger.submit(
            owner,
            Body::Network {
                name: name.into(),
                version: 1,
                ip_range: "10.1.0.0/16".parse()?,
                ipv6_range: "fd00:1::/48".parse()?,
                members,
            },
        )?;
    }
    let mut last = 0;
    for &(owner, name, network, node, host) in CONTAINERS {
        last = ledger.submit(
            owner,
            Body::Container {
                name: name.into(),
                network: network.into(),
                node_id: node,
                ipv4: [10, 1, node as u8, host].into(),
                ipv6: None,
            },
        )?;
    }

    println!("demo: starting `gridnet run` on each node (XDP guard on its uplink)");
    let mut agents: Vec<Agent> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        agents.push(node.run_agent(i as u32 + 1, ledger.file.path(), "uplinks: [up0]\n")?);
    }
    for (i, agent) in agents.iter().enumerate() {
        agent
            .wait_for(60, |s| s["last_seq"] == last && gridnet_tests::healthy(s))
            .with_context(|| nodes[i].agent_log())?;
    }

    let mismatches = matrix(&nodes)?;
    println!();
    for (i, agent) in agents.iter().enumerate() {
        let s = agent.status()?;
        let uplink = s["uplinks"][0]["xdp"].as_str().unwrap_or("?").to_owned();
        println!(
            "node {}: ledger seq {}, attach {}, XDP guard {uplink}, networks {}, {} containers, {} refused entries",
            i + 1,
            s["last_seq"],
            s["attach_mode"].as_str().unwrap_or("?"),
            s["networks"],
            s["containers"].as_array().map_or(0, Vec::len),
            s["rejected"].as_array().map_or(0, Vec::len)
        );
    }
    println!(
        "\n`gridnet bpf-stats` on node 1:\n{}",
        nodes[0].bpf_stats_table()?
    );
    if args.once {
        println!("demo: {mismatches} mismatches; tearing down");
        drop(agents);
        drop(nodes);
        if mismatches > 0 {
            bail!("{mismatches} cells of the matrix differ from what the ledger allows");
        }
        return Ok(());
    }
    println!(
        "demo: running; containers are namespaces like {}; Ctrl-C removes everything",
        nodes[0].container_ns("alice.web1")
    );
    wait_for_interrupt()?;
    println!("demo: tearing down");
    Ok(())
}

/// Every container connects to every other's IPv4 and IPv6 address, where each runs a server
/// answering with its name. Addresses overlap across networks, so "reached" means the intended
/// container answered. Same network and node: must reach; other network: must not; same
/// network on another node: needs a tunnel (not built yet), must not reach either.
fn matrix(nodes: &[Node]) -> anyhow::Result<usize> {
    let name = |owner: &str, c: &str| format!("{owner}.{c}");
    for &(owner, c, _, node, _) in CONTAINERS {
        serve_identity(&nodes[node as usize - 1], &name(owner, c), IDENTITY_PORT, c)?;
    }
    println!("\nconnectivity (row connects to column over IPv4/IPv6):");
    println!(
        "  ok = reached, -- = isolated (other network), tunnel = other node: needs the WireGuard tunnels, not built yet\n"
    );
    print!("{:>16}", "");
    for &(owner, c, _, node, _) in CONTAINERS {
        print!("{:>18}", format!("{c} ({owner}@n{node})"));
    }
    println!();
    let mut mismatches = 0;
    for &(owner, from, network, node, _) in CONTAINERS {
        print!("{:>16}", format!("{from} ({owner}@n{node})"));
        for &(_, to, to_network, to_node, to_host) in CONTAINERS {
            if from == to {
                print!("{:>18}", "·");
                continue;
            }
            let v4: IpAddr = [10, 1, to_node as u8, to_host].into();
            let v6: IpAddr = format!("fd00:1:0:{to_node}::{to_host:x}").parse()?;
            let mut cell = Vec::new();
            for ip in [v4, v6] {
                let answer = fetch(
                    &nodes[node as usize - 1],
                    &name(owner, from),
                    SocketAddr::new(ip, IDENTITY_PORT),
                )
                .ok();
                let reached = answer.as_deref() == Some(to);
                let expected = network == to_network && node == to_node;
                if reached != expected {
                    mismatches += 1;
                }
                cell.push(match (reached, expected, network == to_network) {
                    (true, true, _) => "ok",
                    (false, false, false) => "--",
                    (false, false, true) => "tunnel",
                    (true, false, _) => "LEAK",
                    (false, true, _) => "FAIL",
                });
            }
            print!(
                "{:>18}",
                if cell[0] == cell[1] {
                    cell[0].to_owned()
                } else {
                    cell.join("/")
                }
            );
        }
        println!();
    }
    Ok(mismatches)
}

fn wait_for_interrupt() -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block().context("block signals")?;
    set.wait().context("wait for Ctrl-C")?;
    Ok(())
}

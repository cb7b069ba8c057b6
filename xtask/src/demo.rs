//! `cargo xtask demo`: a gridnet node with two users' networks on this machine, shown working.
//!
//! Builds everything, creates a node (a network namespace running `gridnet apply`), gives two
//! users overlapping networks with containers, then shows the connectivity matrix against what
//! the plan allows and the datapath's counters. Keeps running until Ctrl-C (or, with `--once`,
//! checks the matrix and exits non-zero on any mismatch), then removes everything.

use std::process::Command;

use anyhow::{Context as _, bail};
use gridnet_agent::plan::{ContainerPlan, NodePlan};
use std::net::{IpAddr, SocketAddr};

use gridnet_tests::{Node, fetch, serve_identity};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Check the matrix, tear down and exit (non-zero on any mismatch).
    #[arg(long)]
    once: bool,
}

const ALICE: &str = "alice/web";
const BOB: &str = "bob/db";

// Both users chose the same ranges (`test_network`): the grid allows it, isolation must hold.
use gridnet_tests::{test_container as container, test_network as network};

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::setup::run()?;
    if !crate::setup::is_root() {
        bail!(
            "the demo creates namespaces and loads eBPF: run it as root (`sudo -E cargo xtask demo`)"
        );
    }
    println!("demo: building the agent and its eBPF programs");
    crate::setup::run_cmd(
        Command::new("cargo").args(["build", "-p", "gridnet-agent"]),
        "cargo build",
    )?;

    let plan = NodePlan {
        networks: vec![network(ALICE), network(BOB)],
        containers: vec![
            container("web1", ALICE, 2),
            container("web2", ALICE, 3),
            container("db1", BOB, 3), // web2's address, in Bob's network
            container("db2", BOB, 4),
        ],
        gateways: Vec::new(),
    };
    println!(
        "demo: creating a node with networks {ALICE} and {BOB} (both 10.1.0.0/16, fd00:1::/48)"
    );
    let node = Node::labelled("demo")?;
    let changes = node.apply(&plan)?;
    println!(
        "demo: node namespace {}, {} kernel changes applied",
        node.ns.name(),
        changes.lines().count().saturating_sub(1)
    );

    let mismatches = matrix(&node, &plan)?;
    println!("\n{}", node.bpf_stats_table()?);
    println!(
        "(containers are namespaces {}<name>; try `ip netns exec {}web1 ping 10.1.1.3`)",
        node.prefix, node.prefix
    );
    if args.once {
        println!("demo: {} mismatches; tearing down", mismatches);
        drop(node);
        if mismatches > 0 {
            bail!("{mismatches} cells of the matrix differ from what the plan allows");
        }
        return Ok(());
    }
    println!("demo: running; Ctrl-C removes everything");
    wait_for_interrupt()?;
    println!("demo: tearing down");
    Ok(())
}

/// Port of the identity server the demo runs in every container.
const IDENTITY_PORT: u16 = 7000;

/// Connects from every container to every other's IPv4 and IPv6 address, where each runs a
/// server answering with its name, and compares with the plan: only containers of the same
/// network may reach each other. Addresses overlap across networks, so "reached" means the
/// intended container answered. Returns the number of mismatches.
fn matrix(node: &Node, plan: &NodePlan) -> anyhow::Result<usize> {
    for c in &plan.containers {
        serve_identity(node, &c.name, IDENTITY_PORT, &c.name)?;
    }
    let label =
        |c: &ContainerPlan| format!("{} ({})", c.name, c.network.split('/').next().unwrap_or(""));
    println!(
        "\nconnectivity (row connects to column over IPv4/IPv6; ok = reached, -- = isolated):"
    );
    print!("{:>14}", "");
    for c in &plan.containers {
        print!("{:>16}", label(c));
    }
    println!();
    let mut mismatches = 0;
    for from in &plan.containers {
        print!("{:>14}", label(from));
        for to in &plan.containers {
            if from.name == to.name {
                print!("{:>16}", "·");
                continue;
            }
            let allowed = from.network == to.network;
            let mut cell = Vec::new();
            for ip in [IpAddr::V4(to.ipv4), IpAddr::V6(to.ipv6)] {
                let answer = fetch(node, &from.name, SocketAddr::new(ip, IDENTITY_PORT)).ok();
                let reached = answer.as_deref() == Some(to.name.as_str());
                if reached != allowed {
                    mismatches += 1;
                }
                cell.push(match (reached, allowed) {
                    (true, true) => "ok",
                    (false, false) => "--",
                    (true, false) => "LEAK",
                    (false, true) => "FAIL",
                });
            }
            print!("{:>16}", cell.join("/"));
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

//! The agent as it runs: time from a container's ledger entry to its first delivered packet,
//! and the agent's memory while it hosts 1,000 containers.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use gridnet_agent::ledger::Body;
use gridnet_tests::{Node, TestLedger, network_entry, node_entry, proto::WIREGUARD_PORT, run_in};

use super::Section;

/// Containers per network (a /24 per node) in the memory run.
const PER_NETWORK: u32 = 250;

fn setup(ledger: &mut TestLedger, networks: u32) -> anyhow::Result<()> {
    for twin in ["farmer", "alice"] {
        ledger.twin(twin)?;
    }
    ledger.submit("farmer", node_entry(1, "192.0.2.1", None)?)?;
    for n in 0..networks {
        ledger.submit(
            "alice",
            network_entry(&format!("n{n}"), 1, WIREGUARD_PORT + n as u16)?,
        )?;
    }
    Ok(())
}

fn container(ledger: &mut TestLedger, network: u32, index: u32) -> anyhow::Result<u64> {
    ledger.submit(
        "alice",
        Body::Container {
            name: format!("c{network}-{index}"),
            network: format!("n{network}"),
            node_id: 1,
            ipv4: [10, 1, 1, 2 + index as u8].into(),
            ipv6: None,
        },
    )
}

pub fn run() -> anyhow::Result<Section> {
    println!("bench: ledger entry to first packet");
    let node = Node::labelled("bench")?;
    let mut ledger = TestLedger::new(node.workdir())?;
    setup(&mut ledger, 1)?;
    container(&mut ledger, 0, 0)?;
    let agent = node.run_agent(1, ledger.file.path(), "")?;
    agent.wait_for(30, |s| {
        s["containers"].as_array().is_some_and(|c| c.len() == 1)
    })?;
    let from = node.container_ns("alice.c0-0");
    let mut samples = Vec::new();
    for i in 1..=5u32 {
        let start = Instant::now();
        container(&mut ledger, 0, i)?;
        let target = format!("10.1.1.{}", 2 + i);
        loop {
            if run_in(&from, "ping", &["-c", "1", "-W", "0.05", &target])?
                .status
                .success()
            {
                break;
            }
            ensure!(
                start.elapsed() < Duration::from_secs(30),
                "container {i} never answered"
            );
        }
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    drop(agent);
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];

    println!("bench: agent memory at 1,000 containers");
    let node = Node::labelled("bench")?;
    let mut ledger = TestLedger::new(node.workdir())?;
    setup(&mut ledger, 4)?;
    let mut last = 0;
    for n in 0..4 {
        for i in 0..PER_NETWORK {
            last = container(&mut ledger, n, i)?;
        }
    }
    let start = Instant::now();
    let agent = node.run_agent(1, ledger.file.path(), "")?;
    // The status names the last entry only once the reconcile that realised it is done: memory
    // is read after the whole first reconcile, not in the middle of it.
    agent.wait_for(300, |s| {
        s["last_seq"] == last
            && s["containers"].as_array().is_some_and(|c| c.len() == 1000)
            && gridnet_tests::healthy(s)
    })?;
    let converge = start.elapsed().as_secs_f64();
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).context("agent status")?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    let (rss, hwm) = (field("VmRSS:"), field("VmHWM:"));
    let body = format!(
        "`gridnet run` (release) following a ledger file.\n\n\
         - ledger entry appended -> first ping answered by the new container: median {median:.0} ms of 5 \
         (samples {}); the file is polled every 200 ms, then the agent creates the namespace, veth, \
         addresses, routes, attachment and map entries.\n\
         - 1,000 containers (4 networks x 250) from a cold start: converged in {converge:.1} s; agent \
         memory then {rss:.1} MiB resident, {hwm:.1} MiB at peak.\n",
        samples
            .iter()
            .map(|s| format!("{s:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Section {
        title: "Agent: ledger to traffic, and memory",
        body,
    })
}

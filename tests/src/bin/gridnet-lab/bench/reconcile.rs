//! Reconcile time for 1, 100 and 1,000 containers on one node (first apply, which creates
//! everything, and a second, which finds nothing to do), and the agent's peak memory.

use std::{process::Command, time::Instant};

use anyhow::{Context as _, ensure};
use gridnet_agent::plan::NodePlan;
use gridnet_tests::{Node, gridnet_bin, in_netns, test_container, test_network};

use super::Section;

/// Containers per network: a /24 subnet holds 253 besides the gateway; keep a margin.
const PER_NETWORK: usize = 250;

fn plan(containers: usize) -> NodePlan {
    let networks = containers.div_ceil(PER_NETWORK).max(1);
    NodePlan {
        networks: (0..networks)
            .map(|n| test_network(&format!("bench/n{n}")))
            .collect(),
        containers: (0..containers)
            .map(|i| {
                test_container(
                    &format!("c{i}"),
                    &format!("bench/n{}", i / PER_NETWORK),
                    (i % PER_NETWORK) as u8 + 2,
                )
            })
            .collect(),
        gateways: Vec::new(),
    }
}

/// Runs `gridnet apply` in the node and returns (seconds, peak RSS in KiB, stdout).
fn timed_apply(node: &Node, plan: &NodePlan) -> anyhow::Result<(f64, i64, String)> {
    let path = node.workdir().join("plan.yaml");
    std::fs::write(&path, serde_yaml::to_string(plan)?)?;
    let mut command = Command::new(gridnet_bin()?);
    command
        .arg("apply")
        .arg(&path)
        .args([
            "--pin-root",
            node.pin_root.to_str().context("pin root")?,
            "--netns-prefix",
            &node.prefix,
        ])
        .stdout(std::process::Stdio::piped());
    in_netns(&mut command, node.ns.name())?;
    let start = Instant::now();
    let child = command.spawn()?;
    let pid = child.id() as i32;
    let mut stdout = child.stdout.context("stdout")?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut text)?;
    let mut status = 0;
    // SAFETY: wait4 on our own child with valid out-pointers; it reaps the child (the `Child`
    // handle was consumed above, so nothing waits twice).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = start.elapsed().as_secs_f64();
    ensure!(
        rc == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "gridnet apply failed: {text}"
    );
    Ok((seconds, usage.ru_maxrss, text))
}

pub fn run() -> anyhow::Result<Section> {
    let mut rows = String::new();
    for containers in [1, 100, 1000] {
        println!("bench: reconcile {containers} containers");
        let node = Node::labelled("bench")?;
        let plan = plan(containers);
        let (create, create_rss, _) = timed_apply(&node, &plan)?;
        let (noop, noop_rss, out) = timed_apply(&node, &plan)?;
        ensure!(
            out.trim() == "no changes",
            "second apply changed things: {out}"
        );
        rows.push_str(&format!(
            "| {containers} | {create:.2} s | {:.2} ms | {noop:.2} s | {:.1} MiB | {:.1} MiB |\n",
            create * 1000.0 / containers as f64,
            create_rss as f64 / 1024.0,
            noop_rss as f64 / 1024.0,
        ));
    }
    let body = format!(
        "`gridnet apply` in a node namespace (release build): the first apply creates every \
         namespace, veth, address, route, attachment and map entry; the second finds all in place \
         and changes nothing. Peak RSS is the agent process's maximum resident set.\n\n\
         | containers | first apply | per container | second apply (no-op) | peak RSS, first | peak RSS, second |\n\
         |---|---|---|---|---|---|\n{rows}"
    );
    Ok(Section {
        title: "Reconcile time and memory",
        body,
    })
}

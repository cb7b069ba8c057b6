//! The agent's passes: long-lived handles, and objects that fail one at a time.

use std::{collections::BTreeSet, time::Duration, time::Instant};

use anyhow::{Context as _, bail, ensure};
use gridnet_agent::ledger::Body;
use gridnet_tests::{Agent, Node, TestLedger, network_entry, node_entry, ping, run_in, run_ok};

const NODE: u32 = 1;

fn container(name: &str, host: u8) -> Body {
    Body::Container {
        name: name.into(),
        network: "web".into(),
        node_id: NODE,
        ipv4: [10, 1, 1, host].into(),
        ipv6: None,
    }
}

/// A ledger with alice's network `web` on the node and `containers` (name, host byte) in it;
/// returns the ledger and its last seq.
fn ledger(node: &Node, containers: &[(&str, u8)]) -> anyhow::Result<(TestLedger, u64)> {
    let mut ledger = TestLedger::new(node.workdir())?;
    for twin in ["farmer", "alice"] {
        ledger.twin(twin)?;
    }
    ledger.submit("farmer", node_entry(NODE, "192.0.2.1", None)?)?;
    let mut seq = ledger.submit("alice", network_entry("web", NODE, 51820)?)?;
    for &(name, host) in containers {
        seq = ledger.submit("alice", container(name, host))?;
    }
    Ok((ledger, seq))
}

/// Removes a directory the test made, even when the test fails.
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn passes(status: &serde_json::Value) -> u64 {
    status["passes"].as_u64().unwrap_or(0)
}

fn failing(status: &serde_json::Value) -> Vec<String> {
    status["failing"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|f| f["object"].as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The ids of the BPF programs a process holds, from its descriptors' fdinfo.
fn held_program_ids(pid: u32) -> anyhow::Result<BTreeSet<u32>> {
    let mut ids = BTreeSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let info = std::fs::read_to_string(fd?.path()).unwrap_or_default();
        for line in info.lines() {
            if let Some(id) = line.strip_prefix("prog_id:") {
                ids.insert(id.trim().parse()?);
            }
        }
    }
    Ok(ids)
}

fn fd_count(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Waits until the agent's descriptor count is `want`: a status request holds one for a moment.
fn fds_settle(agent: &Agent, want: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let count = fd_count(agent.pid())?;
        if count == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the agent holds {count} descriptors, it held {want} before");
        }
        std::thread::yield_now();
    }
}

#[test]
fn resyncs_of_an_unchanged_plan_load_no_program_and_open_no_netlink_socket() -> anyhow::Result<()> {
    let node = Node::new()?;
    let (ledger, seq) = ledger(&node, &[("a1", 2), ("a2", 3)])?;
    let agent = node.run_agent(NODE, ledger.file.path(), "resync_seconds: 1\n")?;
    let before = agent
        .wait_for(60, |s| {
            s["last_seq"] == seq
                && passes(s) >= 2
                && failing(s).is_empty()
                && s["last_error"].is_null()
        })
        .with_context(|| node.agent_log())?;
    let programs = before["programs"].clone();
    ensure!(
        programs.as_array().map(Vec::len) == Some(1) && programs[0]["name"] == "tc_from_container",
        "a node without uplinks loads tc_from_container only: {programs}"
    );
    let pin_root = &node.pin_root;
    let guard_pin = gridnet_agent::dataplane::pins::program_pin(
        pin_root,
        gridnet_common::verdict::Program::XdpUplink,
    );
    ensure!(
        !guard_pin.exists(),
        "the guard was loaded without an uplink"
    );
    let held = held_program_ids(agent.pid())?;
    let fds = fd_count(agent.pid())?;

    let after = agent.wait_for(60, |s| passes(s) >= passes(&before) + 5)?;
    assert_eq!(after["programs"], programs, "program ids changed");
    assert_eq!(after["program_loads"], before["program_loads"]);
    assert_eq!(
        after["netlink_sockets_opened"], before["netlink_sockets_opened"],
        "a pass opened a netlink socket"
    );
    assert_eq!(
        held_program_ids(agent.pid())?,
        held,
        "held programs changed"
    );
    fds_settle(&agent, fds)?;
    assert_eq!(
        after["reconciles"], before["reconciles"],
        "an unchanged plan changed something"
    );
    ensure!(
        ping(&node.container_ns("alice.a1"), "10.1.1.3", 2)?,
        "a1 cannot reach a2"
    );
    Ok(())
}

#[test]
fn a_crash_leftover_is_repaired_and_a_refused_container_blocks_no_other() -> anyhow::Result<()> {
    let node = Node::new()?;
    std::fs::create_dir_all(gridnet_agent::netlink::NETNS_DIR)?;
    // What a SIGKILL between creating a namespace's mount point and mounting it leaves.
    let leftover =
        std::path::Path::new(gridnet_agent::netlink::NETNS_DIR).join(node.container_ns("alice.x1"));
    std::fs::File::create(&leftover)?;
    // A directory where x2's namespace goes: nothing the agent may remove, so x2 fails.
    let blocked =
        std::path::Path::new(gridnet_agent::netlink::NETNS_DIR).join(node.container_ns("alice.x2"));
    std::fs::create_dir(&blocked)?;
    let _blocked = RemoveDir(blocked.clone());
    // An interface of another kind (a bridge) holding the first name the agent gives a veth:
    // passed over, never touched.
    let taken = format!("{}0", gridnet_agent::reconcile::names::HOST_VETH_PREFIX);
    run_ok(
        node.ns.name(),
        "ip",
        &["link", "add", "name", &taken, "type", "bridge"],
    )?;

    let (ledger, seq) = ledger(&node, &[("x1", 2), ("x2", 3), ("x3", 4)])?;
    let agent = node.run_agent(NODE, ledger.file.path(), "resync_seconds: 1\n")?;
    let status = agent
        .wait_for(60, |s| s["last_seq"] == seq && passes(s) >= 2)
        .with_context(|| node.agent_log())?;
    assert_eq!(failing(&status), ["container alice.x2"], "{status:#}");
    let error = status["failing"][0]["error"].as_str().unwrap_or_default();
    ensure!(
        error.contains("namespace"),
        "the error names the step: {error}"
    );
    ensure!(status["last_error"].is_null(), "{status:#}");
    for (from, to) in [("alice.x1", "10.1.1.4"), ("alice.x3", "10.1.1.2")] {
        ensure!(
            ping(&node.container_ns(from), to, 2)?,
            "{from} cannot reach {to}"
        );
    }
    run_ok(node.ns.name(), "ip", &["link", "show", &taken])
        .context("the agent deleted an interface it did not make")?;
    for container in ["alice.x1", "alice.x3"] {
        let host = node.host_ifname(container)?;
        ensure!(host != taken, "{container} was given the bridge's name");
    }

    // Once the path is free, the next pass realizes x2.
    std::fs::remove_dir(&blocked)?;
    agent
        .wait_for(30, |s| failing(s).is_empty())
        .with_context(|| node.agent_log())?;
    ensure!(
        ping(&node.container_ns("alice.x1"), "10.1.1.3", 2)?,
        "x1 cannot reach x2 once it is realized"
    );
    Ok(())
}

/// Two tenants' containers whose names gave the same interface name under the earlier naming
/// (a 32-bit hash, so a colliding name is found in seconds) both run on one node.
#[test]
fn containers_whose_names_once_collided_both_run() -> anyhow::Result<()> {
    let node = Node::new()?;
    let mut ledger = TestLedger::new(node.workdir())?;
    for twin in ["farmer", "alice", "bob"] {
        ledger.twin(twin)?;
    }
    ledger.submit("farmer", node_entry(NODE, "192.0.2.1", None)?)?;
    ledger.submit("alice", network_entry("web", NODE, 51820)?)?;
    ledger.submit("alice", container("web1", 2))?;
    ledger.submit("alice", container("web2", 3))?;
    ledger.submit("bob", network_entry("lan", NODE, 51821)?)?;
    let mut seq = 0;
    // The same addresses as alice's: networks may overlap.
    for (name, host) in [("hy7pa52", 2), ("b2", 3)] {
        let entry = Body::Container {
            name: name.into(),
            network: "lan".into(),
            node_id: NODE,
            ipv4: [10, 1, 1, host].into(),
            ipv6: None,
        };
        seq = ledger.submit("bob", entry)?;
    }
    let agent = node.run_agent(NODE, ledger.file.path(), "")?;
    agent
        .wait_for(60, |s| {
            s["last_seq"] == seq && passes(s) >= 1 && failing(s).is_empty()
        })
        .with_context(|| node.agent_log())?;
    let alice = node.host_ifname("alice.web1")?;
    let bob = node.host_ifname("bob.hy7pa52")?;
    ensure!(alice != bob, "both on {alice}");
    for (from, to) in [
        ("alice.web1", "10.1.1.3"),
        ("alice.web2", "10.1.1.2"),
        ("bob.hy7pa52", "10.1.1.3"),
        ("bob.b2", "10.1.1.2"),
    ] {
        ensure!(
            ping(&node.container_ns(from), to, 2)?,
            "{from} cannot reach {to}"
        );
    }
    Ok(())
}

#[test]
fn a_damaged_ledger_shows_in_status_and_keeps_the_last_good_state() -> anyhow::Result<()> {
    let node = Node::new()?;
    let (ledger, seq) = ledger(&node, &[("d1", 2), ("d2", 3)])?;
    let agent = node.run_agent(NODE, ledger.file.path(), "resync_seconds: 1\n")?;
    agent
        .wait_for(60, |s| s["last_seq"] == seq && failing(s).is_empty())
        .with_context(|| node.agent_log())?;
    std::fs::write(ledger.file.path(), b"- seq: [not a ledger\n")?;
    let status = agent
        .wait_for(30, |s| !s["ledger_error"].is_null())
        .with_context(|| node.agent_log())?;
    assert_eq!(status["last_seq"], seq, "the last good state was lost");
    ensure!(
        ping(&node.container_ns("alice.d1"), "10.1.1.3", 2)?,
        "forwarding stopped with the ledger"
    );
    Ok(())
}

#[test]
fn a_container_whose_link_goes_down_is_counted_endpoint_down_until_it_comes_back()
-> anyhow::Result<()> {
    let node = Node::new()?;
    let (ledger, seq) = ledger(&node, &[("e1", 2), ("e2", 3)])?;
    let agent = node.run_agent(NODE, ledger.file.path(), "")?;
    agent
        .wait_for(60, |s| s["last_seq"] == seq && gridnet_tests::healthy(s))
        .with_context(|| node.agent_log())?;
    let e1 = node.container_ns("alice.e1");
    let e2 = node.container_ns("alice.e2");
    ensure!(ping(&e1, "10.1.1.3", 1)?, "e1 cannot reach e2");

    // The container takes its own side down: the agent hears of it at once (a link
    // notification), and packets to it are dropped and counted instead of lost silently.
    let down = run_in(&e2, "ip", &["link", "set", "eth0", "down"])?;
    ensure!(down.status.success(), "{down:?}");
    gridnet_tests::wait::until(
        Duration::from_secs(20),
        "packets to e2 counted as endpoint_down",
        || {
            let _ = ping(&e1, "10.1.1.3", 1)?;
            let stats = node.bpf_stats()?;
            Ok(gridnet_tests::counter(&stats, "alice/web", "drop", Some("endpoint_down")).0)
        },
        |&dropped| dropped > 0,
    )?;

    let up = run_in(&e2, "ip", &["link", "set", "eth0", "up"])?;
    ensure!(up.status.success(), "{up:?}");
    gridnet_tests::wait::until(
        Duration::from_secs(20),
        "e1 reaching e2 again",
        || ping(&e1, "10.1.1.3", 1),
        |&reached| reached,
    )?;
    Ok(())
}

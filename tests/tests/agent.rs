//! `gridnet run`: from a ledger to running networks, with restarts, bad entries and removal.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    time::Duration,
};

use anyhow::{Context as _, ensure};
use gridnet_agent::ledger::{Body, model::ObjectKind};
use gridnet_tests::{
    Agent, Node, TestLedger, inet_sockets, network_entry, node_entry, ping, proto::WIREGUARD_PORT,
    run_in, socket_inodes, within,
};

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

/// A node running `gridnet run`, following a ledger with alice's network `web` and containers
/// a1 (.2) and a2 (.3) on it.
fn grid() -> anyhow::Result<(Node, TestLedger, Agent)> {
    let node = Node::new()?;
    let mut ledger = TestLedger::new(node.workdir())?;
    for twin in ["farmer", "alice", "bob"] {
        ledger.twin(twin)?;
    }
    ledger.submit("farmer", node_entry(NODE, "192.0.2.1", None)?)?;
    ledger.submit("alice", network_entry("web", NODE, WIREGUARD_PORT)?)?;
    ledger.submit("alice", container("a1", 2))?;
    let seq = ledger.submit("alice", container("a2", 3))?;
    let agent = node.run_agent(NODE, ledger.file.path(), "")?;
    agent
        .wait_for(30, |s| {
            s["last_seq"] == seq
                && s["containers"].as_array().is_some_and(|c| c.len() == 2)
                && gridnet_tests::healthy(s)
        })
        .with_context(|| node.agent_log())?;
    Ok((node, ledger, agent))
}

fn ns(node: &Node, container: &str) -> String {
    node.container_ns(&format!("alice.{container}"))
}

#[test]
fn the_agent_realizes_the_ledger_and_listens_on_no_network_port() -> anyhow::Result<()> {
    let (node, mut ledger, agent) = grid()?;
    ensure!(ping(&ns(&node, "a1"), "10.1.1.3", 2)?, "a1 cannot reach a2");
    ensure!(
        ping(&ns(&node, "a1"), "fd00:1:0:1::3", 2)?,
        "a1 cannot reach a2 over IPv6"
    );

    // No TCP or UDP socket of the agent's, listening or not: it only talks netlink, BPF and its
    // unix control socket.
    let inodes = socket_inodes(agent.pid())?;
    ensure!(
        !inodes.is_empty(),
        "the agent holds no sockets at all? (control socket missing)"
    );
    for socket in inet_sockets(agent.pid())? {
        ensure!(
            !inodes.contains(&socket.inode),
            "the agent has a {} socket: {}",
            socket.table,
            socket.line
        );
    }

    // With TCX, each container veth's attachment is a pinned link.
    let tcx_pins = gridnet_agent::dataplane::pins::links_dir(
        &node.pin_root,
        gridnet_common::verdict::Program::TcFromContainer,
    );
    if agent.status()?["attach_mode"] == "tcx" {
        ensure!(
            std::fs::read_dir(&tcx_pins)?.count() == 2,
            "expected one TCX link pin per container"
        );
    }

    // Deleting a container removes its namespace, veth and datapath entries.
    ledger.submit(
        "alice",
        Body::Delete {
            object: ObjectKind::Container,
            name: "a2".into(),
        },
    )?;
    agent.wait_for(30, |s| {
        s["containers"].as_array().is_some_and(|c| c.len() == 1)
    })?;
    let names = gridnet_agent::netlink::Netns::list(&node.prefix)?;
    assert_eq!(names, vec![ns(&node, "a1")]);
    // Deleting the last container and the network leaves nothing behind.
    ledger.submit(
        "alice",
        Body::Delete {
            object: ObjectKind::Container,
            name: "a1".into(),
        },
    )?;
    let seq = ledger.submit(
        "alice",
        Body::Delete {
            object: ObjectKind::Network,
            name: "web".into(),
        },
    )?;
    let status = agent.wait_for(30, |s| {
        s["last_seq"] == seq && s["networks"].as_array().is_some_and(Vec::is_empty)
    })?;
    ensure!(gridnet_tests::healthy(&status), "{status}");
    assert!(
        gridnet_agent::netlink::Netns::list(&node.prefix)?.is_empty(),
        "container namespaces left"
    );
    // The per-container attachment pins go with their veths.
    if tcx_pins.exists() {
        let left: Vec<_> = std::fs::read_dir(&tcx_pins)?.collect::<Result<_, _>>()?;
        ensure!(left.is_empty(), "attachment pins left: {left:?}");
    }
    let links = run_in(node.ns.name(), "ip", &["-o", "link", "show"])?;
    ensure!(
        !String::from_utf8_lossy(&links.stdout).contains(": gn"),
        "veths left behind"
    );
    let stats = node.bpf_stats()?;
    for map in stats["maps"].as_array().context("maps")? {
        if ["GRIDNET_IFACE_1", "GRIDNET_ENDPT_1", "GRIDNET_NETS_1"]
            .contains(&map["name"].as_str().unwrap_or(""))
        {
            assert_eq!(map["entries"], 0, "entries left in {}", map["name"]);
        }
    }
    Ok(())
}

#[test]
fn forwarding_survives_a_crash_and_a_restarted_agent_converges() -> anyhow::Result<()> {
    let (node, mut ledger, agent) = grid()?;
    // An echo server in a2 and a long-lived connection from a1.
    let listener = within(&ns(&node, "a2"), || TcpListener::bind("10.1.1.3:7400"))??;
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut buf = [0u8; 64];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 || stream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    let addr = "10.1.1.3:7400".parse()?;
    let mut stream = within(&ns(&node, "a1"), move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(2))
    })??;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut echo = |text: &[u8]| -> anyhow::Result<()> {
        stream.write_all(text)?;
        let mut buf = vec![0u8; text.len()];
        stream.read_exact(&mut buf)?;
        ensure!(buf == text, "echo mismatch");
        Ok(())
    };
    echo(b"before")?;

    agent.kill();
    echo(b"while the agent is dead")?;
    // The ledger moves on while the agent is down.
    let seq = ledger.submit("alice", container("a3", 4))?;
    let agent = node.run_agent(NODE, ledger.file.path(), "")?;
    let status = agent
        .wait_for(30, |s| {
            s["last_seq"] == seq && s["containers"].as_array().is_some_and(|c| c.len() == 3)
        })
        .with_context(|| node.agent_log())?;
    ensure!(gridnet_tests::healthy(&status), "{status}");
    echo(b"after the restart")?;
    ensure!(
        ping(&ns(&node, "a1"), "10.1.1.4", 2)?,
        "a3, added while the agent was down, is unreachable"
    );
    Ok(())
}

#[test]
fn a_bad_entry_is_refused_while_running_and_disturbs_nothing() -> anyhow::Result<()> {
    let (node, mut ledger, agent) = grid()?;
    // Signed by bob, claiming to be alice.
    let bad = ledger.append_raw("alice", container("evil", 9), "bob")?;
    let status = agent.wait_for(30, |s| {
        s["rejected"].as_array().is_some_and(|r| !r.is_empty())
    })?;
    let rejected = &status["rejected"][0];
    assert_eq!(rejected["seq"], bad);
    ensure!(
        rejected["reason"]
            .as_str()
            .unwrap_or("")
            .contains("signature"),
        "{rejected}"
    );
    assert_eq!(status["containers"].as_array().map(Vec::len), Some(2));
    ensure!(
        ping(&ns(&node, "a1"), "10.1.1.3", 2)?,
        "a running container was disturbed"
    );
    ensure!(
        node.agent_log().contains("refused"),
        "the log does not mention the refused entry"
    );
    // And the ledger goes on.
    let seq = ledger.submit("alice", container("a4", 5))?;
    agent.wait_for(30, |s| {
        s["last_seq"] == seq && s["containers"].as_array().is_some_and(|c| c.len() == 3)
    })?;
    Ok(())
}

#[test]
fn the_uplink_guard_follows_gateways_on_the_ledger_and_reports_its_mode() -> anyhow::Result<()> {
    let up = gridnet_tests::uplinked()?;
    let node = &up.node;
    let mut ledger = TestLedger::new(node.workdir())?;
    for twin in ["farmer", "alice"] {
        ledger.twin(twin)?;
    }
    let public = gridnet_tests::NODE_IP;
    ledger.submit("farmer", node_entry(NODE, public, Some(public))?)?;
    ledger.submit("alice", network_entry("web", NODE, WIREGUARD_PORT)?)?;
    let seq = ledger.submit("alice", container("a1", 2))?;
    let agent = node.run_agent(NODE, ledger.file.path(), "uplinks: [up0]\n")?;
    let status = agent.wait_for(30, |s| {
        s["last_seq"] == seq && s["uplinks"][0]["xdp"] == "native"
    })?;
    ensure!(gridnet_tests::healthy(&status), "{status}");

    // A service on the gateway port is unreachable until a gateway on the ledger opens it
    // (the kernel completes connections to a listening socket without an accept).
    let stand_in = within(node.ns.name(), || TcpListener::bind("0.0.0.0:80"))??;
    let addr: std::net::SocketAddr = format!("{}:80", gridnet_tests::NODE_IP).parse()?;
    let reachable = || -> anyhow::Result<bool> {
        Ok(within(up.inet.name(), move || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        })?
        .is_ok())
    };
    ensure!(!reachable()?, "port 80 is open before any gateway");
    // The gateway itself listens on the port: the stand-in makes way.
    drop(stand_in);
    let seq = ledger.submit(
        "alice",
        Body::Gateway {
            name: "www".into(),
            network: "web".into(),
            node_id: NODE,
            hostnames: vec!["www.example.org".into()],
            backends: vec!["10.1.1.2:80".parse()?],
            mode: gridnet_agent::plan::GatewayMode::Http,
            proxy_protocol: false,
        },
    )?;
    // The status reports a seq only once the reconcile that realized it is done.
    agent.wait_for(30, |s| s["last_seq"] == seq && gridnet_tests::healthy(s))?;
    ensure!(
        reachable()?,
        "the gateway on the ledger did not open port 80"
    );
    let seq = ledger.submit(
        "alice",
        Body::Delete {
            object: ObjectKind::Gateway,
            name: "www".into(),
        },
    )?;
    agent.wait_for(30, |s| s["last_seq"] == seq && gridnet_tests::healthy(s))?;
    let _stand_in = within(node.ns.name(), || TcpListener::bind("0.0.0.0:80"))??;
    ensure!(!reachable()?, "deleting the gateway did not close port 80");
    Ok(())
}

//! The encrypted overlay: containers on different nodes reach each other over WireGuard, and
//! networks stay apart across nodes even with the same addresses.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context as _, ensure};
use gridnet_tests::{
    Capture, Grid, fetch, ping, proto::WIREGUARD_PORT, read_capture, serve_identity, wait,
};

const PORT: u16 = 7000;

/// alice/web on nodes 1-3 (w1, w2, w3 at .2 of each node's /24); bob/db on nodes 1 and 3 (d1,
/// d3 at .2 too: the very same addresses as w1 and w3).
fn grid() -> anyhow::Result<Grid> {
    let mut grid = Grid::new("overlay", 3)?;
    grid.network("alice", "web", &[1, 2, 3], WIREGUARD_PORT)?;
    grid.network("bob", "db", &[1, 3], WIREGUARD_PORT + 1)?;
    for (owner, name, network, node) in [
        ("alice", "w1", "web", 1),
        ("alice", "w2", "web", 2),
        ("alice", "w3", "web", 3),
        ("bob", "d1", "db", 1),
    ] {
        grid.container(owner, name, network, node, 2)?;
    }
    let seq = grid.container("bob", "d3", "db", 3, 2)?;
    grid.start("uplinks: [up0]\n", seq)?;
    for (owner, name, node) in [
        ("alice", "w1", 1),
        ("alice", "w2", 2),
        ("alice", "w3", 3),
        ("bob", "d1", 1),
        ("bob", "d3", 3),
    ] {
        serve_identity(grid.node(node), &format!("{owner}.{name}"), PORT, name)?;
    }
    Ok(grid)
}

fn at(address: &str) -> anyhow::Result<SocketAddr> {
    Ok(SocketAddr::new(address.parse()?, PORT))
}

/// Fetches `address` from `container` on node `node`, retrying while the first handshake of
/// the pair completes.
fn fetch_through(grid: &Grid, node: u32, container: &str, address: &str) -> anyhow::Result<String> {
    let target = at(address)?;
    wait::until(
        Duration::from_secs(20),
        &format!("{container} reaching {address}"),
        || Ok(fetch(grid.node(node), container, target).ok()),
        Option::is_some,
    )
    .map(Option::unwrap_or_default)
}

#[test]
fn containers_on_every_node_pair_reach_each_other_and_networks_stay_apart() -> anyhow::Result<()> {
    let grid = grid()?;
    for (from_node, from, to, want) in [
        (1, "alice.w1", "10.1.2.2", "w2"),
        (1, "alice.w1", "fd00:1:0:3::2", "w3"),
        (2, "alice.w2", "10.1.3.2", "w3"),
        (2, "alice.w2", "fd00:1:0:1::2", "w1"),
        (3, "alice.w3", "10.1.1.2", "w1"),
        (3, "alice.w3", "fd00:1:0:2::2", "w2"),
        // The same addresses in bob's network lead to bob's containers, never to alice's.
        (1, "bob.d1", "10.1.3.2", "d3"),
        (3, "bob.d3", "fd00:1:0:1::2", "d1"),
    ] {
        let got = fetch_through(&grid, from_node, from, to)?;
        assert_eq!(got, want, "{from} -> {to}");
    }
    for (node, from, to) in [
        (1, "alice.w1", "10.1.2.2"),
        (3, "alice.w3", "fd00:1:0:1::2"),
    ] {
        ensure!(
            ping(&grid.node(node).container_ns(from), to, 2)?,
            "{from} cannot ping {to}"
        );
    }
    // bob's network has no member on node 2: nothing of it is reachable there.
    let target = at("10.1.2.2")?;
    ensure!(
        fetch(grid.node(1), "bob.d1", target).is_err(),
        "bob reached node 2, where his network has no member"
    );

    let status = grid.agent(1)?.status()?;
    let tunnels = status["tunnels"].as_array().context("tunnels in status")?;
    ensure!(tunnels.len() == 2, "node 1 has two tunnels: {status:#}");
    let web = tunnels
        .iter()
        .find(|t| t["network"] == "alice/web")
        .context("alice/web's tunnel")?;
    let peers = web["peers"].as_array().context("peers")?;
    ensure!(peers.len() == 2, "{web:#}");
    for peer in peers {
        ensure!(!peer["last_handshake"].is_null(), "no handshake: {peer:#}");
        ensure!(
            peer["rx_bytes"].as_u64() > Some(0),
            "nothing received: {peer:#}"
        );
    }
    Ok(())
}

#[test]
fn the_underlay_carries_only_wireguard_and_never_the_payload_in_clear() -> anyhow::Result<()> {
    let grid = grid()?;
    // Handshakes done before the capture, so it holds data packets.
    assert_eq!(fetch_through(&grid, 1, "alice.w1", "10.1.2.2")?, "w2");
    let marker = "gridnet-marker-5e1c9d";
    serve_identity(grid.node(2), "alice.w2", PORT + 1, marker)?;

    // Node 1's port on the underlay bridge.
    let capture = Capture::start(
        grid.underlay.name(),
        "n1",
        grid.node(1).workdir().join("underlay.pcap"),
    )?;
    let got = fetch(
        grid.node(1),
        "alice.w1",
        SocketAddr::new("10.1.2.2".parse()?, PORT + 1),
    )?;
    assert_eq!(got, marker);
    ensure!(
        ping(&grid.node(1).container_ns("alice.w1"), "10.1.2.2", 2)?,
        "ping through the tunnel"
    );
    let file = capture.stop()?;

    let bytes = std::fs::read(&file)?;
    ensure!(
        !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
        "the payload crossed the underlay in clear"
    );
    let read =
        |filter: &str| -> anyhow::Result<String> { Ok(read_capture(&file, filter)?.join("\n")) };
    let wireguard = read(&format!("udp port {WIREGUARD_PORT}"))?;
    ensure!(
        wireguard.lines().count() >= 4,
        "the traffic was not seen as WireGuard:\n{wireguard}"
    );
    let other = read(&format!(
        // IGMP membership reports are the underlay's own link control (a bridge port or an
        // interface joining a group), not traffic between nodes.
        "ip and not (igmp or udp port {WIREGUARD_PORT} or udp port {})",
        WIREGUARD_PORT + 1
    ))?;
    ensure!(
        other.trim().is_empty(),
        "IPv4 other than WireGuard on the underlay:\n{other}"
    );
    Ok(())
}

/// A line echo server in `container` of `node`, for a connection that must survive.
fn serve_echo(grid: &Grid, node: u32, container: &str, port: u16) -> anyhow::Result<()> {
    let listener = gridnet_tests::within(&grid.node(node).container_ns(container), move || {
        std::net::TcpListener::bind(("::", port))
    })??;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(&stream);
                let mut line = String::new();
                while std::io::BufRead::read_line(&mut reader, &mut line).is_ok_and(|n| n > 0) {
                    if std::io::Write::write_all(&mut &stream, line.as_bytes()).is_err() {
                        break;
                    }
                    line.clear();
                }
            });
        }
    });
    Ok(())
}

/// Sends `line` on `stream` and reads the echo.
fn echo(stream: &std::net::TcpStream, line: &str) -> anyhow::Result<String> {
    std::io::Write::write_all(&mut &*stream, format!("{line}\n").as_bytes())?;
    let mut reader = std::io::BufReader::new(stream);
    let mut back = String::new();
    std::io::BufRead::read_line(&mut reader, &mut back)?;
    Ok(back.trim_end().to_owned())
}

fn peer_status(
    grid: &Grid,
    node: u32,
    network: &str,
    key: &str,
) -> anyhow::Result<serde_json::Value> {
    grid.tunnel_peer(node, network, key)?
        .with_context(|| format!("node {node} has no peer {key} in {network}"))
}

fn node_key(grid: &Grid, node: u32) -> anyhow::Result<String> {
    let key =
        gridnet_agent::ledger::keys::NodeKey::read(&grid.node(node).workdir().join("node.key"))?;
    Ok(key.public().to_string())
}

#[test]
fn a_connection_survives_an_agent_restart_and_a_dead_peer_costs_only_itself() -> anyhow::Result<()>
{
    let mut grid = grid()?;
    let seq = grid.container("alice", "w4", "web", 3, 3)?;
    for id in 1..=3 {
        grid.agent(id)?
            .wait_for(30, |s| s["last_seq"] == seq && gridnet_tests::healthy(s))?;
    }
    serve_echo(&grid, 2, "alice.w2", PORT + 2)?;
    let target = SocketAddr::new("10.1.2.2".parse()?, PORT + 2);
    let w1 = grid.node(1).container_ns("alice.w1");
    let stream = wait::until(
        Duration::from_secs(20),
        "w1 connecting to w2's echo server",
        || {
            Ok(gridnet_tests::within(&w1, move || {
                std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2))
            })?
            .ok())
        },
        Option::is_some,
    )?
    .context("connected")?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    assert_eq!(echo(&stream, "before")?, "before");

    // Node 1's agent crashes and comes back: its tunnel device (with its program) stayed, the
    // new agent takes it over and handshakes again, and TCP carries on.
    grid.restart(1, "uplinks: [up0]\n", seq)?;
    assert_eq!(echo(&stream, "after a restart")?, "after a restart");

    // Node 3's agent dies for good: nodes 1 and 2 carry on as before.
    grid.kill(3);
    assert_eq!(echo(&stream, "without node 3")?, "without node 3");
    assert_eq!(fetch_through(&grid, 2, "alice.w2", "fd00:1:0:1::2")?, "w1");
    Ok(())
}

#[test]
fn ledger_changes_move_peers_and_leave_the_others_sessions_alone() -> anyhow::Result<()> {
    let mut grid = grid()?;
    assert_eq!(fetch_through(&grid, 1, "alice.w1", "10.1.2.2")?, "w2");
    assert_eq!(fetch_through(&grid, 1, "alice.w1", "10.1.3.2")?, "w3");
    let node2 = node_key(&grid, 2)?;
    // The status learns handshakes within a second.
    let before = wait::until(
        Duration::from_secs(10),
        "node 1's status showing its handshake with node 2",
        || peer_status(&grid, 1, "alice/web", &node2),
        |peer| !peer["last_handshake"].is_null(),
    )?;

    // Node 3 moves to another underlay address.
    gridnet_tests::ip(
        grid.node(3).ns.name(),
        &["addr", "add", "192.0.2.13/24", "dev", "up0"],
    )?;
    let seq = grid.move_node(3, "192.0.2.13")?;
    grid.agent(1)?
        .wait_for(30, |s| s["last_seq"] == seq && gridnet_tests::healthy(s))?;
    let node3 = node_key(&grid, 3)?;
    wait::until(
        Duration::from_secs(20),
        "node 1 using node 3's new endpoint",
        || peer_status(&grid, 1, "alice/web", &node3),
        |peer| peer["endpoint"] == "192.0.2.13:51820",
    )?;
    assert_eq!(fetch_through(&grid, 1, "alice.w1", "10.1.3.2")?, "w3");

    // Node 3 changes its key (its agent reads the new one when it starts).
    let seq = grid.rekey(3, "192.0.2.13")?;
    grid.restart(3, "uplinks: [up0]\n", seq)?;
    grid.agent(1)?
        .wait_for(30, |s| s["last_seq"] == seq && gridnet_tests::healthy(s))?;
    assert_eq!(fetch_through(&grid, 1, "alice.w1", "fd00:1:0:3::2")?, "w3");

    let after = peer_status(&grid, 1, "alice/web", &node2)?;
    assert_eq!(
        after["last_handshake"], before["last_handshake"],
        "node 2's session was restarted by changes that were not its"
    );
    assert_eq!(fetch_through(&grid, 1, "alice.w1", "10.1.2.2")?, "w2");
    Ok(())
}

#[test]
fn a_container_that_raises_its_mtu_is_told_the_tunnels_and_path_mtu_converges() -> anyhow::Result<()>
{
    let grid = grid()?;
    assert_eq!(fetch_through(&grid, 1, "alice.w1", "10.1.2.2")?, "w2");
    let w1 = grid.node(1).container_ns("alice.w1");
    let raised = gridnet_tests::run_in(&w1, "ip", &["link", "set", "eth0", "mtu", "9000"])?;
    ensure!(raised.status.success(), "{raised:?}");
    for (target, family) in [("10.1.2.2", "-4"), ("fd00:1:0:2::2", "-6")] {
        // Don't fragment, 3,000 bytes: the tunnel (MTU 1420) answers with ICMP, and the
        // container's kernel learns the path's MTU for that destination.
        let out = gridnet_tests::run_in(
            &w1,
            "ping",
            &[
                family, "-M", "do", "-s", "3000", "-c", "2", "-W", "2", target,
            ],
        )?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            text.contains("1420"),
            "no ICMP with the tunnel's MTU for {target}:\n{text}"
        );
        let route = gridnet_tests::run_in(&w1, "ip", &[family, "route", "get", target])?;
        let route = String::from_utf8_lossy(&route.stdout).into_owned();
        ensure!(
            route.contains("mtu 1420"),
            "path MTU to {target} not learned:\n{route}"
        );
        // Packets that fit go through.
        ensure!(
            ping(&w1, target, 1)?,
            "{target} unreachable once the path MTU is known"
        );
    }
    wait::until(
        Duration::from_secs(10),
        "node 1 counting the too-big packets it answered",
        || {
            Ok(grid
                .tunnel(1, "alice/web")?
                .and_then(|web| web["drops"]["too_big"].as_u64())
                .unwrap_or(0))
        },
        |&answered| answered >= 2,
    )?;
    Ok(())
}

#[test]
fn a_node_joins_and_leaves_a_network_and_the_other_sessions_stay() -> anyhow::Result<()> {
    let mut grid = grid()?;
    assert_eq!(fetch_through(&grid, 1, "bob.d1", "10.1.3.2")?, "d3");
    let node3 = node_key(&grid, 3)?;
    let before = wait::until(
        Duration::from_secs(10),
        "node 1's status showing its handshake with node 3 in bob/db",
        || peer_status(&grid, 1, "bob/db", &node3),
        |peer| !peer["last_handshake"].is_null(),
    )?;

    // Node 2 joins bob's network, with a container of its own.
    grid.network_version("bob", "db", &[1, 2, 3], WIREGUARD_PORT + 1, 2)?;
    let seq = grid.container("bob", "d2", "db", 2, 2)?;
    grid.settle(seq)?;
    serve_identity(grid.node(2), "bob.d2", PORT, "d2")?;
    assert_eq!(fetch_through(&grid, 1, "bob.d1", "10.1.2.2")?, "d2");
    assert_eq!(fetch_through(&grid, 3, "bob.d3", "fd00:1:0:2::2")?, "d2");

    // And leaves it again: its container first, then its membership.
    grid.ledger.submit(
        "bob",
        gridnet_agent::ledger::Body::Delete {
            object: gridnet_agent::ledger::model::ObjectKind::Container,
            name: "d2".into(),
        },
    )?;
    let seq = grid.network_version("bob", "db", &[1, 3], WIREGUARD_PORT + 1, 3)?;
    grid.settle(seq)?;
    let node2 = node_key(&grid, 2)?;
    wait::until(
        Duration::from_secs(10),
        "node 1's bob/db tunnel without node 2",
        || {
            Ok(grid
                .tunnel(1, "bob/db")?
                .and_then(|t| t["peers"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .any(|p| p["public_key"] == node2.as_str()))
        },
        |&still_there| !still_there,
    )?;
    ensure!(
        fetch(grid.node(1), "bob.d1", at("10.1.2.2")?).is_err(),
        "bob still reaches node 2 after it left"
    );
    let after = peer_status(&grid, 1, "bob/db", &node3)?;
    assert_eq!(
        after["last_handshake"], before["last_handshake"],
        "node 3's session was restarted by node 2 coming and going"
    );
    assert_eq!(fetch_through(&grid, 1, "bob.d1", "10.1.3.2")?, "d3");
    Ok(())
}
